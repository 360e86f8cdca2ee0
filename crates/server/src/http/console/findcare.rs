//! Finding care: `GET /find-care` (the care finder's form, its ranked options with their
//! reasons and the ones left out, and a map of Connecticut with the patient's home, the sites
//! and the radius), `GET /find-care/slots` (the slot picker: the next free times of one
//! option, in person or by video) and `POST /book` (`$book` of a slot, for a referral's
//! ServiceRequest when booked from one).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use care::findcare::Modality;
use fhir::IssueType;
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};

use super::view::{Names, patient_card, when};
use super::{AppState, error_page, posted, query_of, read, render, see_other, session, tpl, write};
use crate::app::booking::{BookingRequest, FindRequest};
use crate::app::resources::body;
use crate::error::ApiError;

#[derive(Serialize, Default)]
struct Option_ {
    rank: usize,
    service_id: String,
    service: String,
    location_id: String,
    location: String,
    organization_id: String,
    organization: String,
    modality: String,
    distance: String,
    drive: String,
    first: String,
    slot: String,
    reasons: Vec<String>,
    transition: bool,
    lat: Option<f64>,
    lng: Option<f64>,
}

#[derive(Serialize)]
struct Excluded {
    service: String,
    location: String,
    modality: String,
    reason: String,
}

fn part<'a>(parts: &'a [Value], name: &str) -> Option<&'a Value> {
    parts
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
}

fn reference_of(parts: &[Value], name: &str) -> (String, String) {
    part(parts, name)
        .map(|p| {
            (
                p.pointer("/valueReference/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.split('/').nth(1))
                    .unwrap_or("")
                    .to_string(),
                p.pointer("/valueReference/display")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .unwrap_or_default()
}

/// What the form was filled with.
#[derive(Debug, Clone, Default, Serialize)]
struct Asked {
    patient: String,
    service: String,
    modality: String,
    radius: String,
    referral: String,
    based_on: String,
}

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let back = format!(
        "/find-care{}",
        req.uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    let s = match session(&state, req.headers(), addr, &back).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut asked = Asked {
        patient: q.get("patient").cloned().unwrap_or_default(),
        service: q.get("service").cloned().unwrap_or_default(),
        modality: q.get("modality").cloned().unwrap_or_else(|| "any".into()),
        radius: q.get("radius").cloned().unwrap_or_else(|| "30".into()),
        referral: q.get("referral").cloned().unwrap_or_default(),
        based_on: String::new(),
    };
    if !["any", "in-person", "video"].contains(&asked.modality.as_str()) {
        asked.modality = "any".into();
    }
    for v in [&mut asked.patient, &mut asked.referral] {
        if !v.is_empty() && !fhir::primitive::is_id(v) {
            v.clear();
        }
    }
    let a = asked.clone();
    let result = read(&state, &s, "console-find-care", move |tx, ctx| {
        let now = tx.now();
        let mut asked = a;
        // from a referral: its patient, its need and its ServiceRequest
        if !asked.referral.is_empty() {
            if let Some(t) = tx.current("Task", &asked.referral, false)?.filter(|t| !t.deleted) {
                let t = body(&t);
                if let Some(p) = t.pointer("/for/reference").and_then(Value::as_str) {
                    asked.patient = p.trim_start_matches("Patient/").to_string();
                }
                if let Some(sr) = t.pointer("/focus/reference").and_then(Value::as_str) {
                    let sid = sr.trim_start_matches("ServiceRequest/").to_string();
                    if asked.service.is_empty()
                        && let Some(x) = tx.current("ServiceRequest", &sid, false)?
                    {
                        let mut names = Names::default();
                        asked.service = super::view::referral_need(tx, &mut names, &body(&x))?.1;
                    }
                    asked.based_on = sid;
                }
            } else {
                asked.referral.clear();
            }
        }
        let patient = if asked.patient.is_empty() {
            None
        } else {
            tx.current("Patient", &asked.patient, false)?
                .filter(|p| !p.deleted)
                .map(|p| body(&p))
        };
        let card = patient.as_ref().map(|p| patient_card(&asked.patient, p, now));
        let home = patient
            .as_ref()
            .and_then(crate::app::findcare::home_address)
            .and_then(crate::app::findcare::home_of)
            .map(|(pt, _)| (pt.lat, pt.lng));
        if patient.is_none() && !asked.patient.is_empty() {
            let problem = json!({"problem": "There is no patient with that record id that you may see (a record is shown to those whose organisation cares for the patient)."});
            return Ok((asked, card, home, Some(problem), Vec::new(), Vec::new()));
        }
        if patient.is_none() || asked.service.trim().is_empty() {
            return Ok((asked, card, home, None, Vec::new(), Vec::new()));
        }
        let params = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": format!("Patient/{}", asked.patient)}},
            {"name": "service", "valueString": asked.service.trim()},
            {"name": "modality", "valueCode": asked.modality},
            {"name": "radius", "valueDecimal": asked.radius.parse::<f64>().unwrap_or(30.0).clamp(1.0, 200.0)},
            {"name": "count", "valueInteger": 10},
        ]});
        // what the care finder cannot search for is said on the form, not instead of it
        let answer = match crate::rest::ops::find_care::parse_input(&params)
            .and_then(|input| crate::app::findcare::find_care(tx, ctx, input))
        {
            Ok(a) => a,
            Err(e) if e.status == 400 || e.status == 422 => {
                return Ok((asked, card, home, Some(json!({"problem": super::error_words(&e)})), Vec::new(), Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let mut options = Vec::new();
        let mut excluded = Vec::new();
        for p in answer["parameter"].as_array().into_iter().flatten() {
            let parts: Vec<Value> = p["part"].as_array().cloned().unwrap_or_default();
            let (service_id, service) = reference_of(&parts, "healthcareService");
            let (location_id, location) = reference_of(&parts, "location");
            let modality = part(&parts, "modality")
                .and_then(|m| m["valueCode"].as_str())
                .unwrap_or("")
                .to_string();
            match p["name"].as_str() {
                Some("option") => {
                    let (organization_id, organization) = reference_of(&parts, "organization");
                    let (lat, lng) = if location_id.is_empty() {
                        (None, None)
                    } else {
                        match tx.current("Location", &location_id, false)? {
                            Some(l) => {
                                let l = body(&l);
                                (
                                    l.pointer("/position/latitude").and_then(Value::as_f64),
                                    l.pointer("/position/longitude").and_then(Value::as_f64),
                                )
                            }
                            None => (None, None),
                        }
                    };
                    options.push(Option_ {
                        rank: options.len() + 1,
                        service_id,
                        service,
                        location_id,
                        location,
                        organization_id,
                        organization,
                        modality,
                        distance: part(&parts, "distance")
                            .and_then(|d| d.pointer("/valueQuantity/value"))
                            .map(|v| format!("{v} mi"))
                            .unwrap_or_default(),
                        drive: part(&parts, "driveTimeEstimate")
                            .and_then(|d| d.pointer("/valueQuantity/value"))
                            .map(|v| format!("about {v} min by car"))
                            .unwrap_or_default(),
                        first: part(&parts, "firstAvailable")
                            .and_then(|d| d["valueDateTime"].as_str())
                            .map(|t| when(Some(t)))
                            .unwrap_or_default(),
                        slot: reference_of(&parts, "slot").0,
                        reasons: parts
                            .iter()
                            .filter(|x| x["name"] == "reason")
                            .filter_map(|x| x["valueString"].as_str().map(str::to_string))
                            .collect(),
                        transition: part(&parts, "transition").is_some(),
                        lat,
                        lng,
                    });
                }
                Some("excluded") => excluded.push(Excluded {
                    service,
                    location,
                    modality,
                    reason: part(&parts, "reason")
                        .and_then(|r| r["valueString"].as_str())
                        .unwrap_or("")
                        .to_string(),
                }),
                _ => {}
            }
        }
        Ok((asked, card, home, Some(answer), options, excluded))
    })
    .await;
    match result {
        Ok((asked, card, home, answer, options, excluded)) => {
            let sites: Vec<Value> = options
                .iter()
                .filter(|o| o.lat.is_some() && o.modality != "video")
                .map(|o| json!({"rank": o.rank, "name": o.location, "service": o.service,
                    "organization": o.organization_id, "lat": o.lat, "lng": o.lng, "distance": o.distance}))
                .collect();
            let map = json!({"home": home.map(|(lat, lng)| json!({"lat": lat, "lng": lng})),
                "radius_miles": asked.radius.parse::<f64>().unwrap_or(30.0).clamp(1.0, 200.0), "sites": sites});
            render(
                &s,
                "/find-care",
                "console/findcare.html",
                "Find care",
                context! {
                    asked => tpl(&asked), patient => card.map(|c| tpl(&c)),
                    searched => answer.is_some(), options => tpl(&options), excluded => tpl(&excluded),
                    problem => answer.as_ref().and_then(|a| a["problem"].as_str().map(str::to_string)),
                    // JSON inside a script element: '<', '>' and '&' escaped, so no text of the
                    // directory can close the element
                    map => minijinja::Value::from_safe_string(
                        map.to_string()
                            .replace('<', "\\u003c")
                            .replace('>', "\\u003e")
                            .replace('&', "\\u0026"),
                    ),
                },
            )
        }
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `GET /find-care/slots?service=&location=&modality=&patient=&based_on=&referral=`.
pub async fn slots(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/find-care").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = |k: &str| {
        q.get(k)
            .filter(|v| fhir::primitive::is_id(v))
            .cloned()
            .unwrap_or_default()
    };
    let (service, location, patient, based_on, referral) = (
        id("service"),
        id("location"),
        id("patient"),
        id("based_on"),
        id("referral"),
    );
    let modality = q
        .get("modality")
        .and_then(|m| Modality::parse(m))
        .unwrap_or(Modality::InPerson);
    if service.is_empty() || patient.is_empty() {
        return error_page(
            Some(&s),
            &ApiError::new(
                400,
                IssueType::Required,
                "choose a patient and a service first (Find care)",
            ),
        );
    }
    let (sv, lo, pa) = (service.clone(), location.clone(), patient.clone());
    let result = read(&state, &s, "console-slots", move |tx, ctx| {
        let now = tx.now();
        let mut names = Names::default();
        let service_name = names.of(tx, &format!("HealthcareService/{sv}"))?;
        let location_name = if lo.is_empty() {
            String::new()
        } else {
            names.of(tx, &format!("Location/{lo}"))?
        };
        let card = match tx.current("Patient", &pa, false)? {
            Some(p) => patient_card(&pa, &body(&p), now),
            None => {
                return Err(ApiError::not_found(format!(
                    "there is no patient Patient/{pa} you may see"
                )));
            }
        };
        let found = crate::app::booking::find(
            tx,
            ctx,
            FindRequest {
                start: now,
                end: now + 8 * 7 * 86_400_000,
                count: 16,
                wanted_modality: Some(modality),
                practitioner: None,
                organization: None,
                location: (modality == Modality::InPerson && !lo.is_empty()).then(|| lo.clone()),
                patient: Some(pa.clone()),
                service_params: vec![("_id", sv.clone())],
            },
        )?;
        let times: Vec<Value> = found["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let a = &e["resource"];
                let slot = a
                    .pointer("/slot/0/reference")?
                    .as_str()?
                    .trim_start_matches("Slot/");
                Some(json!({"slot": slot, "when": when(a["start"].as_str())}))
            })
            .collect();
        Ok((service_name, location_name, card, times))
    })
    .await;
    match result {
        Ok((service_name, location_name, card, times)) => render(
            &s,
            "/find-care",
            "console/slots.html",
            "Choose a time",
            context! {
                service => service_name, location => location_name, patient => tpl(&card),
                times => times, video => modality == Modality::Video,
                based_on => based_on, referral => referral,
            },
        ),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `POST /book`: books a slot for a patient (`$book`), based on a referral's ServiceRequest
/// when booked from one; back to the referral, or the patient's page.
pub async fn book(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/find-care").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = |k: &str| form.opt(k).filter(|v| fhir::primitive::is_id(v));
    let (Some(slot), Some(patient)) = (id("slot"), id("patient")) else {
        return error_page(
            Some(&s),
            &ApiError::new(
                400,
                IssueType::Required,
                "choose a time and a patient to book",
            ),
        );
    };
    let based_on = id("based_on");
    let referral = id("referral");
    let back = match (&referral, s.is_family()) {
        (Some(t), _) => format!("/referrals/{t}"),
        (None, true) => "/family".to_string(),
        (None, false) => format!("/patients/{patient}"),
    };
    let request = BookingRequest {
        hold: false,
        slot_id: Some(slot),
        patient_id: Some(patient),
        held: None,
        based_on,
    };
    let done = write(&state, &s, &form, "console-book", move |tx, ctx| {
        crate::app::booking::refusal_before_writing(tx, &request)?;
        crate::app::booking::hold_or_book(tx, ctx, request)
    })
    .await;
    match done {
        Ok(_) => see_other(&back, "booked"),
        Err(e) => error_page(Some(&s), &e),
    }
}
