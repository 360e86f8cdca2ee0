//! A referral: `GET /referrals/{id}` — the patient, the request, where it stands against its
//! service level, the timeline of its steps (its Provenance), the consult note, and only the
//! moves this user's side may make from this state — and `POST /referrals/{id}/{action}`,
//! which makes one as a write of the Task through the referral machine (`app::referrals`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use base64::Engine as _;
use care::referral::{BusinessStatus, TaskStatus};
use fhir::IssueType;
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};

use super::view::{Names, patient_card, referral_status_words, when};
use super::{
    AppState, done_words, error_page, posted, query_of, read, render_flash, see_other, session,
    tpl, write,
};
use crate::app::resources::body;
use crate::error::ApiError;

#[derive(Serialize)]
struct Step {
    when: String,
    what: String,
    who: String,
    reason: String,
}

#[derive(Serialize)]
struct Action {
    code: &'static str,
    label: &'static str,
    /// What the form asks for: "" (nothing), "reason", "note".
    asks: &'static str,
    danger: bool,
}

fn action_for(to: TaskStatus) -> Option<Action> {
    use TaskStatus::*;
    let (label, asks, danger) = match to {
        Requested => ("Send the referral", "", false),
        Received => ("Mark received", "", false),
        Accepted => ("Accept", "", false),
        Rejected => ("Decline", "reason", true),
        OnHold => ("Put on hold", "", false),
        InProgress => ("Resume", "", false),
        Completed => ("Attach the consult note and complete", "note", false),
        Failed => ("Mark failed", "reason", true),
        Cancelled => ("Cancel the referral", "reason", true),
        Draft | Ready | EnteredInError => return None,
    };
    Some(Action {
        code: to.code(),
        label,
        asks,
        danger,
    })
}

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, &format!("/referrals/{id}")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !fhir::primitive::is_id(&id) {
        return error_page(Some(&s), &ApiError::not_found("there is no such referral"));
    }
    let flash = done_words(q.get("done"));
    let tid = id.clone();
    let result = read(&state, &s, "console-referral", move |tx, _ctx| {
        let now = tx.now();
        let Some(stored) = tx.current("Task", &tid, false)?.filter(|t| !t.deleted) else {
            return Err(ApiError::not_found(format!("there is no referral Task/{tid}")));
        };
        let task = body(&stored);
        if !care::referral::is_referral(&task) {
            return Err(ApiError::not_found(format!("Task/{tid} is not a referral")));
        }
        let mut names = Names::default();
        let reference = |k: &str| {
            task.pointer(&format!("/{k}/reference"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let pid = reference("for")
            .and_then(|r| r.strip_prefix("Patient/").map(str::to_string))
            .unwrap_or_default();
        let patient = match tx.current("Patient", &pid, false)? {
            Some(p) => patient_card(&pid, &body(&p), now),
            None => patient_card(&pid, &Value::Null, now),
        };
        let requester = match reference("requester") {
            Some(r) => names.of(tx, &r)?,
            None => String::new(),
        };
        let owner = match reference("owner") {
            Some(r) => names.of(tx, &r)?,
            None => String::new(),
        };
        let sr_id = reference("focus")
            .and_then(|r| r.strip_prefix("ServiceRequest/").map(str::to_string))
            .unwrap_or_default();
        let sr = match tx.current("ServiceRequest", &sr_id, false)? {
            Some(x) if !x.deleted => body(&x),
            _ => Value::Null,
        };
        let service = super::view::referral_need(tx, &mut names, &sr)?.0;
        let reason = sr
            .pointer("/reasonCode/0/text")
            .or_else(|| sr.pointer("/reasonCode/0/coding/0/display"))
            .or_else(|| task.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let status = care::referral::status_of(&task);
        let parties = crate::app::referrals::parties_of(tx, &task)?;
        let actions: Vec<Action> = status
            .map(|st| {
                st.next()
                    .iter()
                    .filter(|to| parties.may_set(to.set_by()))
                    .filter_map(|to| action_for(*to))
                    .collect()
            })
            .unwrap_or_default();
        // booking: the receiver schedules an accepted referral
        let may_schedule = parties.owner
            && matches!(status, Some(TaskStatus::Accepted | TaskStatus::InProgress));
        // the timeline: each step's Provenance
        let provenance = crate::app::resources::search(
            tx,
            _ctx,
            "Provenance",
            &[("patient", format!("Patient/{pid}"))],
        )?;
        let prefix = format!("Task/{tid}/");
        let mut steps = Vec::new();
        for p in provenance {
            let b = body(&p);
            let about = b["target"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["reference"].as_str())
                .any(|r| r.starts_with(&prefix) || r == format!("Task/{tid}"));
            if !about {
                continue;
            }
            let agent = &b["agent"][0];
            let mut who = match agent.pointer("/who/reference").and_then(Value::as_str) {
                Some(r) => names.of(tx, r)?,
                None => agent
                    .pointer("/who/display")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim_start_matches("user:")
                    .to_string(),
            };
            if let Some(o) = agent.pointer("/onBehalfOf/reference").and_then(Value::as_str) {
                who = format!("{who} for {}", names.of(tx, o)?);
            }
            steps.push(Step {
                when: when(b["recorded"].as_str()),
                what: b
                    .pointer("/activity/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                who,
                reason: b
                    .pointer("/reason/0/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        // the consult note
        let note = match care::referral::consult_note(&task) {
            Some(r) => {
                let id = r.trim_start_matches("DocumentReference/").to_string();
                match tx.current("DocumentReference", &id, false)? {
                    Some(d) if !d.deleted => {
                        let d = body(&d);
                        d.pointer("/content/0/attachment/data")
                            .and_then(Value::as_str)
                            .and_then(|b64| {
                                base64::engine::general_purpose::STANDARD.decode(b64).ok()
                            })
                            .and_then(|bytes| String::from_utf8(bytes).ok())
                            .or_else(|| {
                                d.get("description")
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            })
                    }
                    _ => None,
                }
            }
            None => None,
        };
        // the documents sent with the request
        let mut documents = Vec::new();
        for r in sr["supportingInfo"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["reference"].as_str())
        {
            let Some((rt, did)) = fhir::json::split_reference(r) else {
                continue;
            };
            // one the user may not read is not listed
            let Some(d) = tx.current(rt, did, false)?.filter(|d| !d.deleted) else {
                continue;
            };
            let d = body(&d);
            let title = d
                .pointer("/content/0/attachment/title")
                .or_else(|| d.get("description"))
                .or_else(|| d.pointer("/type/text"))
                .or_else(|| d.pointer("/code/text"))
                .and_then(Value::as_str)
                .unwrap_or(rt)
                .to_string();
            documents.push(context! { reference => r, title => title,
                date => when(d.get("date").and_then(Value::as_str)) });
        }
        let due = care::referral::Due::of(&task);
        let progress = care::referral::Progress::of(&task);
        let milestones: Vec<_> = care::referral::Milestone::ALL
            .iter()
            .map(|m| {
                let reached = progress.get(*m);
                context! {
                    name => m.code(),
                    reached => reached.map(care::notify::eastern),
                }
            })
            .collect();
        let business = care::referral::business_status_of(&task).map(BusinessStatus::label);
        let status_code = status.map(TaskStatus::code).unwrap_or("");
        Ok(context! {
            id => tid,
            version => stored.version,
            patient => tpl(&patient),
            requester => requester, owner => owner,
            service => service, reason => reason,
            service_request => sr_id,
            priority => task["priority"].as_str().unwrap_or("routine"),
            status => status_code,
            status_words => referral_status_words(status_code),
            business => business,
            status_reason => task.pointer("/statusReason/text").and_then(Value::as_str),
            authored => when(task["authoredOn"].as_str()),
            due_accept => due.as_ref().map(|d| care::notify::eastern(d.accept_ms)),
            due_book => due.as_ref().map(|d| care::notify::eastern(d.book_ms)),
            due_seen => due.as_ref().map(|d| care::notify::eastern(d.seen_ms)),
            milestones => milestones,
            steps => tpl(&steps),
            note => note,
            documents => documents,
            actions => tpl(&actions),
            may_schedule => may_schedule,
            side => if parties.owner && parties.requester { "both" } else if parties.owner { "receiver" } else if parties.requester { "referrer" } else { "none" },
        })
    })
    .await;
    match result {
        Ok(data) => render_flash(
            &s,
            "/worklist",
            "console/referral.html",
            "Referral",
            data,
            flash,
        ),
        Err(e) => error_page(Some(&s), &e),
    }
}

pub async fn act(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((id, action)): Path<(String, String)>,
    req: Request,
) -> Response {
    let back = format!("/referrals/{id}");
    let (s, form) = match posted(&state, req, addr, &back).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(to) = TaskStatus::parse(&action).filter(|t| action_for(*t).is_some()) else {
        return error_page(
            Some(&s),
            &ApiError::not_found("that is not a step of a referral"),
        );
    };
    if !fhir::primitive::is_id(&id) {
        return error_page(Some(&s), &ApiError::not_found("there is no such referral"));
    }
    let reason = form.opt("reason");
    let note = form.opt("note");
    if to.needs_reason() && reason.is_none() {
        return error_page(
            Some(&s),
            &ApiError::new(
                422,
                IssueType::Required,
                "say why (the reason is sent to the other side and kept in the referral's history)",
            ),
        );
    }
    if to == TaskStatus::Completed && note.is_none() {
        return error_page(
            Some(&s),
            &ApiError::new(
                422,
                IssueType::Required,
                "write the consult note: completing a referral sends its report back to the referring practice",
            ),
        );
    }
    let version: Option<i64> = form.get("version").parse().ok();
    let tid = id.clone();
    let done = write(&state, &s, &form, "console-referral-step", move |tx, ctx| {
        let Some(stored) = tx.current("Task", &tid, false)?.filter(|t| !t.deleted) else {
            return Err(ApiError::not_found(format!("there is no referral Task/{tid}")));
        };
        let mut task = body(&stored);
        if let Some(r) = &reason {
            task["statusReason"] = json!({"text": r});
        }
        if let Some(n) = &note {
            let pid = task
                .pointer("/for/reference")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let author = task.get("owner").cloned().unwrap_or(Value::Null);
            let doc = json!({
                "resourceType": "DocumentReference",
                "status": "current",
                "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}], "text": "Consult note"},
                "subject": {"reference": pid},
                "date": fhir::primitive::format_instant(tx.now()),
                "author": [author],
                "description": "Consult note",
                "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                    "data": base64::engine::general_purpose::STANDARD.encode(n.as_bytes()),
                    "title": "Consult note"}}],
            });
            let created = crate::rest::execute::create(tx, ctx, "DocumentReference", doc, None)?;
            let doc_id = match created {
                crate::rest::execute::Outcome::Resource { stored, .. } => stored.id,
                _ => return Err(ApiError::new(500, IssueType::Exception, "the note was not stored")),
            };
            let mut outputs = task
                .get("output")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            outputs.push(json!({"type": {"text": "consult note"},
                "valueReference": {"reference": format!("DocumentReference/{doc_id}")}}));
            task["output"] = Value::Array(outputs);
        }
        task["status"] = json!(to.code());
        crate::rest::execute::update(tx, ctx, "Task", &tid, task, version.or(Some(stored.version)))?;
        Ok(())
    })
    .await;
    match done {
        Ok(()) => see_other(&back, to.code()),
        Err(e) => error_page(Some(&s), &e),
    }
}
