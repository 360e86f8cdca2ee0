//! Patients: `GET /patients?q=` (find a record the user may see), `GET /patients/{id}` (the
//! record, its records at the other organisations, appointments, referrals, consents and
//! labels, who looked at it) and `POST /patients/{id}/refer` (a referral in one step, `$refer`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use fhir::IssueType;
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};

use super::view::{Names, PatientCard, appointments_of, patient_card, referral_status_words, when};
use super::{
    AppState, done_words, error_page, posted, query_of, read, render, render_flash, see_other,
    session, tpl, write,
};
use crate::app::resources::{body, search_request};
use crate::error::ApiError;

pub async fn search(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/patients").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.is_family() {
        return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            "/family",
        ));
    }
    let term = q.get("q").map(|t| t.trim().to_string()).unwrap_or_default();
    if term.is_empty() {
        return render(
            &s,
            "/patients",
            "console/patients.html",
            "Patients",
            context! { q => "", results => Vec::<PatientCard>::new(), searched => false },
        );
    }
    let t = term.clone();
    let result = read(&state, &s, "console-patients", move |tx, ctx| {
        let now = tx.now();
        let mut req = if fhir::primitive::is_id(&t) && t.contains('-') {
            search_request(
                ctx.registry,
                "Patient",
                &[("_id", t.clone()), ("_count", "50".into())],
            )?
        } else {
            search_request(
                ctx.registry,
                "Patient",
                &[("name", t.clone()), ("_count", "50".into())],
            )?
        };
        req.total = fhir::search::TotalMode::None;
        let page = tx.search(&req)?;
        Ok(page
            .matches
            .iter()
            .map(|p| patient_card(&p.id, &body(p), now))
            .collect::<Vec<_>>())
    })
    .await;
    match result {
        Ok(results) => render(
            &s,
            "/patients",
            "console/patients.html",
            "Patients",
            context! { q => term, results => tpl(&results), searched => true },
        ),
        Err(e) => error_page(Some(&s), &e),
    }
}

#[derive(Serialize)]
struct Referral {
    id: String,
    service: String,
    status: String,
    owner: String,
    requester: String,
    authored: String,
}

#[derive(Serialize)]
struct Access {
    when: String,
    who: String,
    what: String,
}

#[derive(Serialize)]
struct ServiceOption {
    id: String,
    label: String,
}

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, &format!("/patients/{id}")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !fhir::primitive::is_id(&id) {
        return error_page(Some(&s), &ApiError::not_found("there is no such patient"));
    }
    let may_refer = !s.organizations().is_empty() || s.is_admin();
    let flash = done_words(q.get("done"));
    let pid = id.clone();
    let result = read(&state, &s, "console-patient", move |tx, ctx| {
        let now = tx.now();
        let Some(p) = tx.current("Patient", &pid, false)?.filter(|p| !p.deleted) else {
            return Err(ApiError::not_found(format!("there is no patient Patient/{pid} you may see")));
        };
        let patient = body(&p);
        let card = patient_card(&pid, &patient, now);
        let mut names = Names::default();
        let organization = if card.organization.is_empty() {
            String::new()
        } else {
            names.of(tx, &format!("Organization/{}", card.organization))?
        };
        // the same person's records at the other organisations (the identity links)
        let mut linked: Vec<PatientCard> = Vec::new();
        for person in crate::app::resources::search(
            tx,
            ctx,
            "Person",
            &[("link", format!("Patient/{pid}"))],
        )? {
            for l in body(&person)["link"].as_array().into_iter().flatten() {
                let Some(other) = l
                    .pointer("/target/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("Patient/"))
                else {
                    continue;
                };
                if other == pid || linked.iter().any(|c| c.id == other) {
                    continue;
                }
                if let Some(o) = tx.current("Patient", other, false)?.filter(|o| !o.deleted) {
                    let mut c = patient_card(other, &body(&o), now);
                    if !c.organization.is_empty() {
                        c.organization = names.of(tx, &format!("Organization/{}", c.organization))?;
                    }
                    linked.push(c);
                }
            }
        }
        let appointments = appointments_of(tx, ctx, &mut names, &pid)?;
        let mut referrals = Vec::new();
        for t in crate::app::resources::search(
            tx,
            ctx,
            "Task",
            &[("patient", format!("Patient/{pid}"))],
        )? {
            let b = body(&t);
            if !care::referral::is_referral(&b) {
                continue;
            }
            let side = |k: &str, names: &mut Names, tx: &mut store::CallerTx| -> Result<String, ApiError> {
                match b.pointer(&format!("/{k}/reference")).and_then(Value::as_str) {
                    Some(r) => names.of(tx, r),
                    None => Ok(String::new()),
                }
            };
            let owner = side("owner", &mut names, tx)?;
            let requester = side("requester", &mut names, tx)?;
            let service = match b.pointer("/focus/reference").and_then(Value::as_str) {
                Some(r) => {
                    let sid = r.trim_start_matches("ServiceRequest/");
                    match tx.current("ServiceRequest", sid, false)? {
                        Some(x) => super::view::referral_need(tx, &mut names, &body(&x))?.0,
                        None => String::new(),
                    }
                }
                None => String::new(),
            };
            referrals.push(Referral {
                id: t.id.clone(),
                service,
                status: referral_status_words(b["status"].as_str().unwrap_or("")).to_string(),
                owner,
                requester,
                authored: when(b["authoredOn"].as_str()),
            });
        }
        let consents: Vec<_> = crate::app::resources::search(
            tx,
            ctx,
            "Consent",
            &[("patient", format!("Patient/{pid}"))],
        )?
        .iter()
        .map(|c| {
            let b = body(c);
            let kind = b.pointer("/provision/type").and_then(Value::as_str).unwrap_or("");
            let actors: Vec<String> = b
                .pointer("/provision/actor")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.pointer("/reference/reference").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            let labels: Vec<String> = b
                .pointer("/provision/securityLabel")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l["code"].as_str().map(str::to_string))
                .collect();
            context! {
                id => c.id, status => b["status"].as_str(), kind => kind,
                actors => actors.join(", "),
                labels => if labels.is_empty() { "the whole record".to_string() } else { labels.join(", ") },
                since => b.pointer("/provision/period/start").and_then(Value::as_str),
            }
        })
        .collect();
        // resources of this record that carry confidentiality or sensitivity labels (the
        // ones this user may see)
        let mut labelled = 0usize;
        for rt in ["Encounter", "Condition", "Observation"] {
            for r in crate::app::resources::search(tx, ctx, rt, &[("patient", format!("Patient/{pid}"))])? {
                if !store::access::label_codes(&body(&r)).is_empty() {
                    labelled += 1;
                }
            }
        }
        // who looked at this record: for those the audit accounting is open to
        let audit_open = !matches!(tx.view().audit, care::access::AuditAccess::None);
        let mut accesses = Vec::new();
        if audit_open {
            let mut req = search_request(
                ctx.registry,
                "AuditEvent",
                &[
                    ("entity", format!("Patient/{pid}")),
                    ("date", format!("ge{}", fhir::primitive::format_instant(now - 30 * 86_400_000))),
                    ("_sort", "-date".into()),
                    ("_count", "25".into()),
                ],
            )?;
            req.total = fhir::search::TotalMode::None;
            let page = tx.search(&req)?;
            for e in page.matches.iter() {
                let b = body(e);
                let who = b["agent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["requestor"] == json!(true))
                    .and_then(|a| {
                        a.pointer("/who/display")
                            .or_else(|| a.pointer("/who/identifier/value"))
                            .or_else(|| a.pointer("/who/reference"))
                            .and_then(Value::as_str)
                    })
                    .unwrap_or("")
                    .trim_start_matches("user:")
                    .to_string();
                accesses.push(Access {
                    when: when(b["recorded"].as_str()),
                    who,
                    what: b
                        .pointer("/subtype/0/display")
                        .or_else(|| b.pointer("/subtype/0/code"))
                        .or_else(|| b.pointer("/action"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
        }
        // what may be referred to: the directory's services
        let mut services = Vec::new();
        if may_refer {
            for hs in crate::app::resources::search(tx, ctx, "HealthcareService", &[("active", "true".into())])? {
                let b = body(&hs);
                let org = match b.pointer("/providedBy/reference").and_then(Value::as_str) {
                    Some(r) => names.of(tx, r)?,
                    None => String::new(),
                };
                services.push(ServiceOption {
                    id: hs.id.clone(),
                    label: format!("{} — {org}", b["name"].as_str().unwrap_or(&hs.id)),
                });
            }
            services.sort_by(|a, b| a.label.cmp(&b.label));
        }
        Ok(context! {
            patient => tpl(&card), organization => organization,
            linked => tpl(&linked), appointments => tpl(&appointments),
            referrals => tpl(&referrals), consents => consents, labelled => labelled,
            audit_open => audit_open, accesses => tpl(&accesses),
            services => tpl(&services), may_refer => may_refer,
        })
    })
    .await;
    match result {
        Ok(data) => render_flash(
            &s,
            "/patients",
            "console/patient.html",
            "Patient",
            data,
            flash,
        ),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `POST /patients/{id}/refer`: `$refer` with the form's service, priority and reason.
pub async fn refer(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, &format!("/patients/{id}")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(service) = form.opt("service").filter(|v| fhir::primitive::is_id(v)) else {
        return error_page(
            Some(&s),
            &ApiError::new(
                422,
                IssueType::Required,
                "choose the service the child is referred to",
            ),
        );
    };
    let Some(reason) = form.opt("reason") else {
        return error_page(
            Some(&s),
            &ApiError::new(
                422,
                IssueType::Required,
                "say why the child is referred (the reason for referral)",
            ),
        );
    };
    let priority = match form.get("priority") {
        "" | "routine" => "routine",
        "urgent" => "urgent",
        "asap" => "asap",
        _ => {
            return error_page(
                Some(&s),
                &ApiError::new(
                    400,
                    IssueType::Value,
                    "the priority is routine, urgent or as soon as possible",
                ),
            );
        }
    };
    let pid = id.clone();
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": format!("Patient/{pid}")}},
        {"name": "service", "valueReference": {"reference": format!("HealthcareService/{service}")}},
        {"name": "reason", "valueString": reason},
        {"name": "priority", "valueCode": priority},
    ]});
    let done = write(&state, &s, &form, "console-refer", move |tx, ctx| {
        let op = crate::rest::ops::OPERATIONS
            .iter()
            .find(|o| o.code == "refer")
            .ok_or_else(|| ApiError::new(500, IssueType::Exception, "$refer is not registered"))?;
        let outcome = (op.run)(tx, ctx, crate::rest::ops::Input { id: None, params })?;
        let bundle = match outcome {
            crate::rest::execute::Outcome::Json(_, v) => v,
            _ => {
                return Err(ApiError::new(
                    500,
                    IssueType::Exception,
                    "$refer answered no Bundle",
                ));
            }
        };
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e.pointer("/resource/resourceType") == Some(&json!("Task")))
            .and_then(|e| e.pointer("/resource/id").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| ApiError::new(500, IssueType::Exception, "$refer wrote no Task"))
    })
    .await;
    match done {
        Ok(task) => see_other(&format!("/referrals/{task}"), "referred"),
        Err(e) => error_page(Some(&s), &e),
    }
}
