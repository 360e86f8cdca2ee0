//! Transition to adult care in the console: `GET /transition` (the registry, filtered by state,
//! element, age band and organisation), `GET /transition/{id}` (one young person: each element,
//! recording one, the transfer — its parts, the letter, sending it, and where it stands),
//! `POST /transition/{id}/record`, `POST /transition/{id}/transfer`; and for a family,
//! `GET /readiness` (the readiness assessment of the young person, or of a child a parent may
//! answer for) and `POST /readiness/{id}`. Each page is one read unit; each form one write unit
//! through the same rules as the API (`app::transition`, `$transfer-package`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};

use super::view::Names;
use super::{
    AppState, done_words, error_page, posted, query_of, read, render, render_flash, see_other,
    session, tpl, write,
};
use crate::app::resources::body;
use crate::app::transition::RegistryRequest;
use crate::error::ApiError;
use care::transition::Element;

#[derive(Serialize)]
struct Row {
    id: String,
    name: String,
    age: i64,
    next: String,
    next_state: String,
    due: String,
    overdue: Vec<String>,
    transfer: String,
}

#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
    current: bool,
}

fn short_of(code: &str) -> String {
    Element::parse(code)
        .map(|e| e.short().to_string())
        .unwrap_or_else(|| code.to_string())
}

fn day_of(v: &Value) -> String {
    v.as_str()
        .map(|s| s.get(..10).unwrap_or(s).to_string())
        .unwrap_or_default()
}

fn may_use(s: &super::Session) -> bool {
    !s.is_family() && (!s.organizations().is_empty() || s.is_admin())
}

pub async fn registry(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/transition").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !may_use(&s) {
        return error_page(
            Some(&s),
            &ApiError::new(
                403,
                fhir::IssueType::Forbidden,
                "the transition registry is for care teams and coordinators",
            ),
        );
    }
    let st = q.get("state").cloned().unwrap_or_else(|| "due".into());
    let element = q.get("element").filter(|e| !e.is_empty()).cloned();
    let band = q.get("age").filter(|e| !e.is_empty()).cloned();
    let org = q.get("org").filter(|e| !e.is_empty()).cloned();
    let overdue = match st.as_str() {
        "overdue" => Some(true),
        "all" => None,
        _ => Some(false),
    };
    let ages = band.as_deref().and_then(|b| {
        let (lo, hi) = b.split_once('-')?;
        Some((lo.parse().ok()?, hi.parse().ok()?))
    });
    let request = RegistryRequest {
        as_of_ms: state.api.store().clock().now_ms(),
        overdue,
        element: element.as_deref().and_then(Element::parse),
        ages,
        organization: org.as_ref().map(|o| format!("Organization/{o}")),
        patient: None,
        count: 50,
    };
    let result = read(&state, &s, "console-transition", move |tx, ctx| {
        let reg = crate::app::transition::registry(tx, ctx, request)?;
        let mut names = Names::default();
        let mut orgs: Vec<(String, String)> = Vec::new();
        for o in ["cc", "hhc"] {
            orgs.push((o.to_string(), names.of(tx, &format!("Organization/{o}"))?));
        }
        Ok((reg, orgs))
    })
    .await;
    let (reg, orgs) = match result {
        Ok(x) => x,
        Err(e) => return error_page(Some(&s), &e),
    };
    let rows: Vec<Row> = reg["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let transfer = match i["transfer"].as_object() {
                None => String::new(),
                Some(t) => match t.get("firstAdultVisit").and_then(Value::as_str) {
                    Some(v) => format!("transferred: first adult visit {v}"),
                    None => format!(
                        "package sent {}",
                        t.get("packageSent").and_then(Value::as_str).unwrap_or("")
                    ),
                },
            };
            Row {
                id: i["patient"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("Patient/")
                    .to_string(),
                name: i["name"].as_str().unwrap_or("(no name)").to_string(),
                age: i["age"].as_i64().unwrap_or(0),
                next: i["next"]["words"].as_str().unwrap_or("").to_string(),
                next_state: i["next"]["state"].as_str().unwrap_or("").to_string(),
                due: day_of(&i["next"]["due"]),
                overdue: i["overdue"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(short_of)
                    .collect(),
                transfer,
            }
        })
        .collect();
    let states = [
        ("due", "Due or overdue"),
        ("overdue", "Overdue"),
        ("all", "Everyone 12–26"),
    ]
    .iter()
    .map(|(v, l)| Choice {
        value: v.to_string(),
        label: l.to_string(),
        current: st == *v,
    })
    .collect::<Vec<_>>();
    let elements = Element::ALL
        .iter()
        .map(|e| Choice {
            value: e.code().into(),
            label: e.words().into(),
            current: element.as_deref() == Some(e.code()),
        })
        .collect::<Vec<_>>();
    let bands = care::transition::metrics::BANDS
        .iter()
        .map(|(lo, hi)| {
            let v = format!("{lo}-{hi}");
            Choice {
                label: format!("{lo}–{hi}"),
                current: band.as_deref() == Some(v.as_str()),
                value: v,
            }
        })
        .collect::<Vec<_>>();
    let orgs = orgs
        .into_iter()
        .map(|(v, l)| Choice {
            current: org.as_deref() == Some(v.as_str()),
            value: v,
            label: l,
        })
        .collect::<Vec<_>>();
    render(
        &s,
        "/transition",
        "console/transition.html",
        "Transition to adult care",
        context! {
            rows => tpl(&rows), total => reg["total"].as_u64().unwrap_or(0),
            states => tpl(&states), elements => tpl(&elements), bands => tpl(&bands), orgs => tpl(&orgs),
        },
    )
}

#[derive(Serialize)]
struct ElementRow {
    code: String,
    words: String,
    state: String,
    when: String,
    recordable: bool,
}

#[derive(Serialize)]
struct Part {
    name: String,
    found: bool,
    words: String,
}

pub async fn person(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, &format!("/transition/{id}")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !may_use(&s) || !fhir::primitive::is_id(&id) {
        return error_page(
            Some(&s),
            &ApiError::not_found("there is no such young person"),
        );
    }
    let flash = done_words(q.get("done"));
    let pid = id.clone();
    let now = state.api.store().clock().now_ms();
    let result = read(&state, &s, "console-transition-person", move |tx, ctx| {
        let Some(p) = tx.current("Patient", &pid, false)?.filter(|p| !p.deleted) else {
            return Err(ApiError::not_found(format!(
                "there is no patient Patient/{pid} you may see"
            )));
        };
        let patient = body(&p);
        let reg = crate::app::transition::registry(
            tx,
            ctx,
            RegistryRequest {
                as_of_ms: now,
                overdue: None,
                element: None,
                ages: None,
                organization: None,
                patient: Some(pid.clone()),
                count: 1,
            },
        )?;
        let row = reg["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["patient"] == format!("Patient/{pid}"))
            .cloned();
        // the transfer: its parts as they stand (a refusal names what is missing)
        let parts = crate::app::transition::transfer_parts(tx, ctx, &pid);
        let mut services: Vec<(String, String)> = Vec::new();
        for sv in crate::app::resources::all_of(
            tx,
            ctx.registry,
            "HealthcareService",
            crate::app::resources::Reader::Caller,
        )? {
            let b = body(&sv);
            // the adult services of another organisation: those whose ages take a young adult
            let range = fhir::json::extension_value(&b, care::profile::AGE_RANGE, "valueRange");
            let (low, high) = (
                range
                    .and_then(|r| r.pointer("/low/value"))
                    .and_then(Value::as_f64),
                range
                    .and_then(|r| r.pointer("/high/value"))
                    .and_then(Value::as_f64),
            );
            if b["providedBy"]["reference"] == patient["managingOrganization"]["reference"]
                || high.is_some_and(|h| h < 19.0)
                || low.is_some_and(|l| l > 18.0)
            {
                continue;
            }
            services.push((
                format!("HealthcareService/{}", sv.id),
                b["name"].as_str().unwrap_or(&sv.id).to_string(),
            ));
        }
        services.sort_by(|a, b| a.1.cmp(&b.1));
        Ok((
            patient,
            row,
            parts.map(|p| {
                (
                    crate::app::transition::default_letter(&p, "the adult clinician"),
                    p.consent_words,
                )
            }),
            services,
        ))
    })
    .await;
    let (patient, row, parts, services) = match result {
        Ok(x) => x,
        Err(e) => return error_page(Some(&s), &e),
    };
    let name = super::view::person_name(&patient);
    let Some(row) = row else {
        return render_flash(
            &s,
            "/transition",
            "console/transition_person.html",
            "Transition",
            context! { id => id, name => name, in_registry => false },
            flash,
        );
    };
    let elements: Vec<ElementRow> = row["elements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let st = e["state"].as_str().unwrap_or("").to_string();
            let when = match st.as_str() {
                "done" => format!("done {}", day_of(&e["done"])),
                "due" => format!(
                    "due since {}, overdue from {}",
                    day_of(&e["due"]),
                    day_of(&e["overdueFrom"])
                ),
                "overdue" => format!("overdue since {}", day_of(&e["overdueFrom"])),
                "not-yet" if e.get("due").is_some() => format!("due from {}", day_of(&e["due"])),
                _ => String::new(),
            };
            let code = e["element"].as_str().unwrap_or("").to_string();
            // recorded here: the talks and checks; the assessment, the plan, the summary, the
            // package and the adult visit are recorded by what they are
            let recordable = match code.as_str() {
                "policy" | "education" | "consent-talk" | "decision-making" => {
                    matches!(st.as_str(), "due" | "overdue" | "not-yet")
                }
                "completion" | "feedback" => matches!(st.as_str(), "due" | "overdue"),
                _ => false,
            };
            ElementRow {
                words: e["words"].as_str().unwrap_or("").to_string(),
                code,
                state: st,
                when,
                recordable,
            }
        })
        .collect();
    let (missing, letter, consent) = match &parts {
        Ok((letter, consent)) => (Vec::new(), letter.clone(), consent.clone()),
        Err(e) => (
            e.issues
                .iter()
                .map(|i| Part {
                    name: i.expression.clone().unwrap_or_default(),
                    found: false,
                    words: i.diagnostics.clone(),
                })
                .collect::<Vec<_>>(),
            String::new(),
            String::new(),
        ),
    };
    let refusal = parts.as_ref().err().filter(|e| e.status != 422).map(|e| {
        e.issues
            .iter()
            .map(|i| i.diagnostics.clone())
            .collect::<Vec<_>>()
            .join("; ")
    });
    let services = services
        .into_iter()
        .map(|(v, l)| Choice {
            value: v,
            label: l,
            current: false,
        })
        .collect::<Vec<_>>();
    render_flash(
        &s,
        "/transition",
        "console/transition_person.html",
        "Transition",
        context! {
            id => id, name => name, in_registry => true, age => row["age"].as_i64().unwrap_or(0),
            elements => tpl(&elements), transfer => tpl(&row["transfer"]), at18 => tpl(&row["at18"]),
            ready => parts.is_ok(), missing => tpl(&missing), refusal => refusal, letter => letter, consent => consent,
            services => tpl(&services),
        },
        flash,
    )
}

pub async fn record(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let back = format!("/transition/{id}");
    let (s, form) = match posted(&state, req, addr, &back).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(element) = Element::parse(form.get("element")) else {
        return error_page(
            Some(&s),
            &ApiError::bad_request(fhir::IssueType::Value, "choose the element to record"),
        );
    };
    let note = form.opt("note");
    let pid = id.clone();
    let done = write(&state, &s, &form, "console-transition-record", move |tx, ctx| {
        let mut task = json!({"resourceType": "Task", "status": "completed", "intent": "plan",
            "code": {"coding": [{"system": care::profile::TRANSITION_ELEMENT, "code": element.code(), "display": element.words()}], "text": element.words()},
            "for": {"reference": format!("Patient/{pid}")}});
        if let Some(n) = note {
            task["note"] = json!([{"text": n}]);
        }
        crate::rest::execute::create(tx, ctx, "Task", task, None)?;
        Ok(())
    })
    .await;
    match done {
        Ok(()) => see_other(&back, "element-recorded"),
        Err(e) => error_page(Some(&s), &e),
    }
}

pub async fn transfer(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let back = format!("/transition/{id}");
    let (s, form) = match posted(&state, req, addr, &back).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut params =
        vec![json!({"name": "recipient", "valueReference": {"reference": form.get("recipient")}})];
    if let Some(l) = form.opt("letter") {
        params.push(json!({"name": "letter", "valueString": l}));
    }
    let pid = id.clone();
    let done = write(
        &state,
        &s,
        &form,
        "console-transition-transfer",
        move |tx, ctx| {
            let op = crate::rest::ops::OPERATIONS
                .iter()
                .find(|o| o.code == "transfer-package")
                .expect("the operation is registered");
            (op.run)(
                tx,
                ctx,
                crate::rest::ops::Input {
                    id: Some(pid),
                    params: json!({"resourceType": "Parameters", "parameter": params}),
                },
            )?;
            Ok(())
        },
    )
    .await;
    match done {
        Ok(()) => see_other(&back, "transfer-sent"),
        Err(e) => error_page(Some(&s), &e),
    }
}

#[derive(Serialize)]
struct Question {
    id: String,
    text: String,
}

#[derive(Serialize)]
struct Domain {
    title: String,
    questions: Vec<Question>,
}

#[derive(Serialize)]
struct Answerer {
    id: String,
    name: String,
    age: i32,
    may_answer: bool,
    why_not: String,
    last: String,
}

pub async fn readiness(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/readiness").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let flash = done_words(q.get("done"));
    let result = read(&state, &s, "console-readiness", move |tx, ctx| {
        let now = tx.now();
        let view = tx.view().clone();
        let mut people: Vec<Answerer> = Vec::new();
        let mut ids: Vec<String> = view.acts_for.clone();
        ids.extend(view.answers_for.iter().cloned());
        ids.sort();
        ids.dedup();
        for pid in ids {
            let Some(p) = tx.current("Patient", &pid, false)?.filter(|p| !p.deleted) else { continue };
            let b = body(&p);
            let Some(birth) = b["birthDate"].as_str().and_then(care::access::BirthDate::parse) else { continue };
            let age = care::access::age_on(birth, now);
            if age < 12 {
                continue;
            }
            let may = view.answers_for.contains(&pid);
            let last = crate::app::resources::all_matching(tx, ctx.registry, "QuestionnaireResponse", &[("patient", format!("Patient/{pid}")), ("status", "completed,amended".into())], crate::app::resources::Reader::Caller)?
                .iter()
                .map(body)
                .filter(|r| r["questionnaire"].as_str().is_some_and(|q| q.starts_with(care::transition::readiness::URL)))
                .filter_map(|r| r["authored"].as_str().map(|a| a[..10.min(a.len())].to_string()))
                .max()
                .unwrap_or_default();
            people.push(Answerer {
                name: super::view::person_name(&b),
                why_not: if may { String::new() } else { format!("From 16 the assessment is {}'s own to answer: a parent cannot fill it in for them.", super::view::person_name(&b)) },
                id: pid,
                age,
                may_answer: may,
                last,
            });
        }
        Ok(people)
    })
    .await;
    let people = match result {
        Ok(p) => p,
        Err(e) => return error_page(Some(&s), &e),
    };
    let domains: Vec<Domain> = care::transition::readiness::DOMAINS
        .iter()
        .map(|d| Domain {
            title: d.title.into(),
            questions: d
                .questions
                .iter()
                .map(|(id, text)| Question {
                    id: id.to_string(),
                    text: text.to_string(),
                })
                .collect(),
        })
        .collect();
    let scale: Vec<Choice> = care::transition::readiness::SCALE
        .iter()
        .map(|(v, l, _)| Choice {
            value: v.to_string(),
            label: l.to_string(),
            current: false,
        })
        .collect();
    render_flash(
        &s,
        "/readiness",
        "console/readiness.html",
        "Getting ready for adult care",
        context! { people => tpl(&people), domains => tpl(&domains), scale => tpl(&scale) },
        flash,
    )
}

pub async fn answer(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/readiness").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = care::transition::readiness::link_ids()
        .filter(|q| !form.get(q).is_empty())
        .map(|q| json!({"linkId": q, "answer": [{"valueCoding": {"system": care::transition::readiness::ANSWERS, "code": form.get(q)}}]}))
        .collect();
    let mut response = json!({"resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": care::transition::readiness::URL,
        "subject": {"reference": format!("Patient/{id}")}});
    if !items.is_empty() {
        response["item"] = Value::Array(items);
    }
    let done = write(
        &state,
        &s,
        &form,
        "console-readiness-answer",
        move |tx, ctx| {
            crate::rest::execute::create(tx, ctx, "QuestionnaireResponse", response, None)?;
            Ok(())
        },
    )
    .await;
    match done {
        Ok(()) => see_other("/readiness", "assessment-saved"),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `POST /transition/{id}/document`: the plan of care (a CarePlan of the category
/// plan-of-care), the medical summary or the emergency care plan (DocumentReferences), written
/// in words by the care team — each records its element through the same write rules as the
/// API.
pub async fn document(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let back = format!("/transition/{id}");
    let (s, form) = match posted(&state, req, addr, &back).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let kind = form.get("kind").to_string();
    let text = form.get("text").trim().to_string();
    if text.len() < 10 {
        return error_page(
            Some(&s),
            &ApiError::bad_request(
                fhir::IssueType::Required,
                "write the plan or the summary itself (at least 10 characters)",
            ),
        );
    }
    let author = s
        .caller()
        .subject
        .fhir_users
        .iter()
        .find(|(rt, _)| rt == "Practitioner" || rt == "PractitionerRole")
        .map(|(rt, i)| format!("{rt}/{i}"))
        .or_else(|| {
            s.organizations()
                .first()
                .map(|o| format!("Organization/{o}"))
        });
    let pid = id.clone();
    let done = write(&state, &s, &form, "console-transition-document", move |tx, ctx| {
        use base64::Engine as _;
        let now = fhir::primitive::format_instant(tx.now());
        let subject = json!({"reference": format!("Patient/{pid}")});
        let (rt, mut resource) = match kind.as_str() {
            "plan-of-care" => (
                "CarePlan",
                json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                    "category": [{"coding": [{"system": care::profile::TRANSITION_ELEMENT, "code": "plan-of-care"}], "text": "Transition plan of care"}],
                    "title": "Moving to adult care", "subject": subject, "description": text,
                    "period": {"start": now}}),
            ),
            "medical-summary" | "emergency-plan" => {
                let words = if kind == "medical-summary" { "Medical summary" } else { "Emergency care plan" };
                (
                    "DocumentReference",
                    json!({"resourceType": "DocumentReference", "status": "current", "docStatus": "final",
                        "type": {"coding": [{"system": care::profile::TRANSITION_DOCUMENT, "code": kind, "display": words}], "text": words},
                        "subject": subject, "date": now, "description": words,
                        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": words,
                            "data": base64::engine::general_purpose::STANDARD.encode(&text)}}]}),
                )
            }
            other => {
                return Err(ApiError::bad_request(
                    fhir::IssueType::Value,
                    format!("'{other}' is not a plan of care, a medical summary or an emergency care plan"),
                ));
            }
        };
        if let Some(a) = &author {
            if rt == "CarePlan" {
                resource["author"] = json!({"reference": a});
            } else {
                resource["author"] = json!([{"reference": a}]);
            }
        }
        crate::rest::execute::create(tx, ctx, rt, resource, None)?;
        Ok(())
    })
    .await;
    match done {
        Ok(()) => see_other(&back, "document-written"),
        Err(e) => error_page(Some(&s), &e),
    }
}
