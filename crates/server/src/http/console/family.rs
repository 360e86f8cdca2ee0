//! The family's page (`GET /family`, for patients and their parents or guardians): the
//! children a parent may see (by the age and sensitivity rules of the access policy — a
//! 12–17-year-old's sensitive care is not there), or the young person's own record; upcoming
//! appointments with their video join button inside its window; an earlier time offered from
//! the waiting list, to accept. `POST /family/appointments/{id}/cancel|accept|earlier` cancels,
//! accepts an offer (`$book` of the held appointment) or asks for an earlier time (a waitlist
//! request) — what `care::access` lets a family do, for someone they act for.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use fhir::IssueType;
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};

use super::view::{AppointmentCard, Names, PatientCard, appointments_of, patient_card, when};
use super::{
    AppState, done_words, error_page, posted, query_of, read, render_flash, see_other, session,
    tpl, write,
};
use crate::app::booking::BookingRequest;
use crate::app::resources::body;
use crate::error::ApiError;

#[derive(Serialize)]
struct Visit {
    when: String,
    what: String,
    place: String,
}

#[derive(Serialize)]
struct Person {
    card: PatientCard,
    acts_for: bool,
    upcoming: Vec<AppointmentCard>,
    offers: Vec<AppointmentCard>,
    waiting: Vec<AppointmentCard>,
    past: Vec<AppointmentCard>,
    visits: Vec<Visit>,
}

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/family").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let flash = done_words(q.get("done"));
    let result = read(&state, &s, "console-family", move |tx, ctx| {
        let now = tx.now();
        let view = tx.view().clone();
        let mut people = Vec::new();
        let mut names = Names::default();
        for access in &view.patients {
            let pid = access.patient_id.clone();
            let Some(p) = tx.current("Patient", &pid, false)?.filter(|p| !p.deleted) else {
                continue;
            };
            let card = patient_card(&pid, &body(&p), now);
            let mut upcoming = Vec::new();
            let mut offers = Vec::new();
            let mut waiting = Vec::new();
            let mut past = Vec::new();
            for a in appointments_of(tx, ctx, &mut names, &pid)? {
                match a.status.as_str() {
                    "pending" if a.offer_until.is_some() => offers.push(a),
                    "waitlist" => waiting.push(a),
                    "booked" | "pending" | "arrived" | "checked-in"
                        if a.start_ms + 3_600_000 >= now =>
                    {
                        upcoming.push(a)
                    }
                    _ => past.push(a),
                }
            }
            past.reverse();
            past.truncate(5);
            let mut visits = Vec::new();
            let mut encounters = crate::app::resources::search(
                tx,
                ctx,
                "Encounter",
                &[("patient", format!("Patient/{pid}"))],
            )?;
            encounters.sort_by_key(|e| {
                std::cmp::Reverse(
                    body(e)
                        .pointer("/period/start")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            });
            for e in encounters.iter().take(8) {
                let b = body(e);
                let place = match b
                    .pointer("/serviceProvider/reference")
                    .and_then(Value::as_str)
                {
                    Some(r) => names.of(tx, r)?,
                    None => String::new(),
                };
                visits.push(Visit {
                    when: when(b.pointer("/period/start").and_then(Value::as_str)),
                    what: b
                        .pointer("/type/0/text")
                        .or_else(|| b.pointer("/reasonCode/0/text"))
                        .or_else(|| b.pointer("/serviceType/text"))
                        .and_then(Value::as_str)
                        .unwrap_or("Visit")
                        .to_string(),
                    place,
                });
            }
            people.push(Person {
                acts_for: view.acts_for.contains(&pid),
                card,
                upcoming,
                offers,
                waiting,
                past,
                visits,
            });
        }
        Ok(people)
    })
    .await;
    match result {
        Ok(people) => render_flash(
            &s,
            "/family",
            "console/family.html",
            "My family",
            context! { people => tpl(&people), self_only => s.has(care::access::Role::Patient) && !s.has(care::access::Role::Proxy) },
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
    let (s, form) = match posted(&state, req, addr, "/family").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !fhir::primitive::is_id(&id) || !["cancel", "accept", "earlier"].contains(&action.as_str()) {
        return error_page(
            Some(&s),
            &ApiError::not_found("there is no such appointment action"),
        );
    }
    let reason = form.opt("reason");
    let aid = id.clone();
    let act = action.clone();
    let done = write(&state, &s, &form, "console-family-appointment", move |tx, ctx| {
        let Some(stored) = tx.current("Appointment", &aid, false)?.filter(|a| !a.deleted) else {
            return Err(ApiError::not_found(format!("there is no appointment {aid} you may see")));
        };
        let mut a = body(&stored);
        match act.as_str() {
            "cancel" => {
                a["status"] = json!("cancelled");
                if let Some(r) = &reason {
                    a["cancelationReason"] = json!({"text": r});
                }
                crate::rest::execute::update(tx, ctx, "Appointment", &aid, a, Some(stored.version))?;
                Ok("appointment-cancelled")
            }
            "accept" => {
                let open = a["status"] == "pending"
                    && fhir::json::extensions(&a, care::profile::WAITLIST_OFFER)
                        .next()
                        .and_then(|e| e.get("valueInstant").and_then(Value::as_str))
                        .and_then(fhir::json::instant_ms)
                        .is_some_and(|until| until > tx.now());
                if !open {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        "this earlier time is no longer on offer (it was taken, declined or has lapsed)",
                    ));
                }
                if !crate::app::waitlist::is_offer(&a) {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        "this appointment is not an offer from the waiting list (it may have lapsed)",
                    ));
                }
                crate::app::booking::hold_or_book(
                    tx,
                    ctx,
                    BookingRequest {
                        hold: false,
                        slot_id: None,
                        patient_id: None,
                        held: Some(aid.clone()),
                        based_on: None,
                    },
                )?;
                Ok("offer-accepted")
            }
            _ => {
                // an earlier time of the same service, before this one, replacing it
                if a["status"] != "booked" {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        "an earlier time is asked for a booked appointment",
                    ));
                }
                let refs: Vec<String> = crate::app::appointments::participant_refs(&a)
                    .map(str::to_string)
                    .collect();
                let Some(service) = refs.iter().find(|r| r.starts_with("HealthcareService/")) else {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        "this appointment names no service to wait for",
                    ));
                };
                let patient = refs
                    .iter()
                    .find(|r| r.starts_with("Patient/"))
                    .cloned()
                    .unwrap_or_default();
                // strictly earlier than the visit it would replace, which must be ahead
                let Some(start) = a["start"].as_str().and_then(fhir::json::instant_ms) else {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        "this appointment has no time to ask an earlier one than",
                    ));
                };
                if start <= tx.now() + 60 * 60_000 {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        "this appointment is about to begin: there is no earlier time to wait for",
                    ));
                }
                let before = fhir::primitive::format_instant(start - 60_000);
                // one request per appointment
                let pid = patient.trim_start_matches("Patient/").to_string();
                let waiting = crate::app::resources::search(
                    tx,
                    ctx,
                    "Appointment",
                    &[("patient", format!("Patient/{pid}")), ("status", "waitlist".into())],
                )?;
                let replaces = format!("Appointment/{aid}");
                if waiting.iter().any(|w| {
                    body(w)["supportingInformation"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|r| r["reference"] == replaces.as_str()))
                }) {
                    return Err(ApiError::new(
                        409,
                        IssueType::Duplicate,
                        "you already asked for an earlier time for this appointment",
                    ));
                }
                let mut entry = json!({"resourceType": "Appointment", "status": "waitlist",
                    "participant": [
                        {"actor": {"reference": patient}, "status": "accepted"},
                        {"actor": {"reference": service}, "status": "needs-action"}],
                    "requestedPeriod": [{"start": fhir::primitive::format_instant(tx.now()), "end": before}],
                    "supportingInformation": [{"reference": format!("Appointment/{aid}")}]});
                if crate::app::appointments::is_video(&a) {
                    entry["extension"] = json!([{"url": care::profile::MODALITY, "valueCode": "video"}]);
                }
                crate::rest::execute::create(tx, ctx, "Appointment", entry, None)?;
                Ok("waitlist")
            }
        }
    })
    .await;
    match done {
        Ok(code) => see_other("/family", code),
        Err(e) => error_page(Some(&s), &e),
    }
}
