//! What the pages show of FHIR resources: names, ages, times in Eastern time, an
//! appointment's place and join state — read inside the page's unit of work.

use std::collections::HashMap;

use care::booking::{JoinTime, join_time};
use serde::Serialize;
use serde_json::Value;
use store::CallerTx;

use crate::app::Ctx;
use crate::app::resources::body;
use crate::error::ApiError;

/// A person's name as written: the official (or first) name's given names and family name.
pub fn person_name(r: &Value) -> String {
    let names = r.get("name").and_then(Value::as_array);
    let name = names.and_then(|n| {
        n.iter()
            .find(|x| x.get("use").and_then(Value::as_str) == Some("official"))
            .or_else(|| n.first())
    });
    let Some(name) = name else {
        return "(no name recorded)".into();
    };
    if let Some(t) = name.get("text").and_then(Value::as_str) {
        return t.to_string();
    }
    let given: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let family = name.get("family").and_then(Value::as_str).unwrap_or("");
    let full = format!("{} {family}", given.join(" "));
    let full = full.trim();
    if full.is_empty() {
        "(no name recorded)".into()
    } else {
        full.to_string()
    }
}

/// "9 years", "7 months", "12 days".
pub fn age_words(birth: Option<&str>, now_ms: i64) -> Option<String> {
    let b = care::access::BirthDate::parse(birth?)?;
    let years = care::access::age_on(b, now_ms);
    if years >= 2 {
        return Some(format!("{years} years"));
    }
    let born = care::access::age::day_ms(b.year, b.month.unwrap_or(1), b.day.unwrap_or(1));
    let days = (now_ms - born) / 86_400_000;
    Some(if days < 60 {
        format!("{days} days")
    } else {
        format!("{} months", days * 12 / 365)
    })
}

/// An instant in Eastern time, or the text as given.
pub fn when(instant: Option<&str>) -> String {
    instant
        .and_then(fhir::json::instant_ms)
        .map(care::notify::eastern)
        .unwrap_or_else(|| instant.unwrap_or("").to_string())
}

/// A day (YYYY-MM-DD) in words.

#[derive(Debug, Clone, Serialize)]
pub struct PatientCard {
    pub id: String,
    pub name: String,
    pub birth_date: String,
    pub age: String,
    pub gender: String,
    pub home: String,
    pub organization: String,
    pub identifiers: Vec<String>,
}

pub fn patient_card(id: &str, p: &Value, now_ms: i64) -> PatientCard {
    let address = crate::app::findcare::home_address(p);
    let home = address
        .map(|a| {
            let city = a.get("city").and_then(Value::as_str).unwrap_or("");
            let zip = a.get("postalCode").and_then(Value::as_str).unwrap_or("");
            format!("{city} {zip}").trim().to_string()
        })
        .unwrap_or_default();
    PatientCard {
        id: id.to_string(),
        name: person_name(p),
        birth_date: p
            .get("birthDate")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        age: age_words(p.get("birthDate").and_then(Value::as_str), now_ms).unwrap_or_default(),
        gender: p
            .get("gender")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        home,
        organization: p
            .pointer("/managingOrganization/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Organization/"))
            .unwrap_or("")
            .to_string(),
        identifiers: p
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let v = i.get("value").and_then(Value::as_str)?;
                let system = i.get("system").and_then(Value::as_str).unwrap_or("");
                Some(format!("{} {v}", system.rsplit(':').next().unwrap_or("")))
            })
            .collect(),
    }
}

/// Names of directory resources read once per page.
#[derive(Default)]
pub struct Names(HashMap<String, String>);

impl Names {
    /// The name of `Type/id` (an Organization, Location, HealthcareService, Practitioner, …),
    /// or the reference when it cannot be read.
    pub fn of(&mut self, tx: &mut CallerTx, reference: &str) -> Result<String, ApiError> {
        if let Some(n) = self.0.get(reference) {
            return Ok(n.clone());
        }
        let name = match fhir::json::split_reference(reference) {
            Some((rt, id)) => match tx.current(rt, id, false)? {
                Some(s) if !s.deleted => {
                    let r = body(&s);
                    match r.get("name") {
                        Some(Value::String(n)) => n.clone(),
                        Some(Value::Array(_)) => person_name(&r),
                        _ => reference.to_string(),
                    }
                }
                _ => reference.to_string(),
            },
            None => reference.to_string(),
        };
        self.0.insert(reference.to_string(), name.clone());
        Ok(name)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppointmentCard {
    pub id: String,
    pub status: String,
    pub when: String,
    pub start_ms: i64,
    pub service: String,
    pub place: String,
    pub video: bool,
    /// The join link, when the caller may see it.
    pub join_url: Option<String>,
    /// "open" (join now), "early" (opens at …), "over".
    pub join: String,
    pub join_opens: String,
    pub patient_id: String,
    /// Starts within the hour (or has begun): no earlier time to ask for.
    pub soon: bool,
    pub offer_until: Option<String>,
    pub cancel_reason: Option<String>,
}

pub fn appointment_card(
    tx: &mut CallerTx,
    ctx: &Ctx,
    names: &mut Names,
    id: &str,
    a: &Value,
) -> Result<AppointmentCard, ApiError> {
    let refs: Vec<String> = crate::app::appointments::participant_refs(a)
        .map(str::to_string)
        .collect();
    let mut service = String::new();
    let mut place = String::new();
    for r in &refs {
        if r.starts_with("HealthcareService/") && service.is_empty() {
            service = names.of(tx, r)?;
        } else if r.starts_with("Location/") && place.is_empty() {
            place = names.of(tx, r)?;
        }
    }
    let video = crate::app::appointments::is_video(a);
    let join_url = a
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(care::booking::VIRTUAL_SERVICE))
        .flat_map(|e| {
            e.get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|e| e.get("url").and_then(Value::as_str) == Some("addressUrl"))
        .and_then(|e| e.get("valueUrl").and_then(Value::as_str))
        .map(str::to_string);
    let start = a
        .get("start")
        .and_then(Value::as_str)
        .and_then(fhir::json::instant_ms);
    let end = a
        .get("end")
        .and_then(Value::as_str)
        .and_then(fhir::json::instant_ms);
    let (join, opens) = match (start, end) {
        (Some(s), Some(e)) => {
            match join_time(s, e, ctx.booking.join_opens_minutes * 60_000, tx.now()) {
                JoinTime::Open => ("open".to_string(), String::new()),
                JoinTime::TooEarly { opens_ms } => {
                    ("early".to_string(), care::notify::eastern(opens_ms))
                }
                JoinTime::Over => ("over".to_string(), String::new()),
            }
        }
        _ => ("over".to_string(), String::new()),
    };
    let offer_until = fhir::json::extensions(a, care::profile::WAITLIST_OFFER)
        .next()
        .and_then(|e| e.get("valueInstant").and_then(Value::as_str))
        .map(|t| when(Some(t)));
    Ok(AppointmentCard {
        id: id.to_string(),
        status: a
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        when: when(a.get("start").and_then(Value::as_str)),
        start_ms: start.unwrap_or(0),
        service,
        place: if video {
            "Video visit".to_string()
        } else {
            place
        },
        video,
        join_url,
        join,
        join_opens: opens,
        patient_id: refs
            .iter()
            .find_map(|r| r.strip_prefix("Patient/"))
            .unwrap_or("")
            .to_string(),
        soon: start.is_some_and(|s| s <= tx.now() + 3_600_000),
        offer_until,
        cancel_reason: a
            .pointer("/cancelationReason/text")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The Patient's appointments the caller may read, soonest first (upcoming) then past.
pub fn appointments_of(
    tx: &mut CallerTx,
    ctx: &Ctx,
    names: &mut Names,
    patient: &str,
) -> Result<Vec<AppointmentCard>, ApiError> {
    let found = crate::app::resources::search(
        tx,
        ctx,
        "Appointment",
        &[("patient", format!("Patient/{patient}"))],
    )?;
    let mut cards = Vec::new();
    for a in found {
        let b = body(&a);
        cards.push(appointment_card(tx, ctx, names, &a.id, &b)?);
    }
    cards.sort_by_key(|c| c.start_ms);
    Ok(cards)
}

/// Words for a Task status as a person reads it.
pub fn referral_status_words(status: &str) -> &'static str {
    match status {
        "draft" => "Draft (not sent)",
        "requested" => "Requested",
        "received" => "Received",
        "accepted" => "Accepted",
        "rejected" => "Declined",
        "in-progress" => "In progress",
        "on-hold" => "On hold",
        "completed" => "Completed",
        "cancelled" => "Cancelled",
        "failed" => "Failed",
        "entered-in-error" => "Entered in error",
        _ => "Unknown",
    }
}

/// What a referral's ServiceRequest asks for: (the words to show, the term the care finder
/// searches for) — from its code, or from the service it names as performer.
pub fn referral_need(
    tx: &mut CallerTx,
    names: &mut Names,
    sr: &Value,
) -> Result<(String, String), ApiError> {
    let code_words = match sr
        .pointer("/code/text")
        .or_else(|| sr.pointer("/code/coding/0/display"))
        .and_then(Value::as_str)
    {
        // a code that names a directory entry by its reference: its name
        Some(r) if fhir::json::split_reference(r).is_some() => Some(names.of(tx, r)?),
        Some(w) => Some(w.to_string()),
        None => None,
    };
    let performer = sr
        .get("performer")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("reference").and_then(Value::as_str))
        .find(|r| r.starts_with("HealthcareService/"))
        .map(str::to_string);
    let mut specialty = None;
    let mut service_name = None;
    if let Some(r) = &performer {
        let id = r.trim_start_matches("HealthcareService/");
        if let Some(hs) = tx
            .current("HealthcareService", id, false)?
            .filter(|h| !h.deleted)
        {
            let hs = body(&hs);
            specialty = hs
                .pointer("/specialty/0/text")
                .or_else(|| hs.pointer("/specialty/0/coding/0/display"))
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        service_name = Some(names.of(tx, r)?);
    }
    let shown = code_words
        .clone()
        .or_else(|| service_name.clone())
        .unwrap_or_default();
    let term = specialty
        .or_else(|| {
            code_words
                .as_deref()
                .map(|w| w.trim_start_matches("Referral to ").to_string())
        })
        .or(service_name)
        .unwrap_or_default();
    Ok((shown, term))
}
