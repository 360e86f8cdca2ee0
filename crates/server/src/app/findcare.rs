//! The close-to-home care finder behind `$find-care` (the operation reads its Parameters in
//! `rest/ops/find_care.rs`). This file gathers the facts — the patient (age, home, state, pediatric-onset conditions), the services that
//! match the need, their sites, organisations, clinicians' licences and first free slots — all
//! read through the caller's access rules, hands them to `care::findcare::rank`, and writes the
//! answer as `Parameters`.

use std::collections::BTreeSet;

use care::findcare::{
    Ask, Candidate, FindCareConfig, Modality, PatientFacts, Site, Urgency, Wanted,
};
use care::geo::Point;
use serde_json::{Value, json};
use store::{CallerTx, Stored};

use super::Ctx;
use super::directory::directory_snapshot;
use super::params::bad;
use super::resources::{body, ref_id, scope_reads, search};
use crate::error::ApiError;

/// The canonical base of the alliance's extensions and operations.
pub const CANONICAL: &str = care::profile::CANONICAL_BASE;

/// The alliance's extensions the care finder reads (`care::profile` lists them all).
pub mod ext {
    pub use care::profile::{
        ACCEPTING, AGE_RANGE, GEOLOCATION, LICENSED_STATE, MODALITY, SLOT_MINUTES,
    };
}

pub use fhir::json::extensions;

/// What the service parameter asks for.
#[derive(Debug, Clone)]
pub enum ServiceQuery {
    Code {
        system: Option<String>,
        code: String,
    },
    Text(String),
}

/// What `$find-care` is asked: for a patient (or a birth date and postal code), a service, a
/// modality, an urgency, a radius, where the patient will be for video, how many options.
#[derive(Debug)]
pub struct CareRequest {
    pub patient: Option<String>,
    pub birth_date: Option<String>,
    pub postal_code: Option<String>,
    pub service: ServiceQuery,
    pub wanted: Wanted,
    pub urgency: Urgency,
    pub radius: f64,
    pub patient_state: Option<String>,
    pub count: usize,
}

/// A patient's home address: the one with `use` home, else the first.
pub fn home_address(patient: &Value) -> Option<&Value> {
    let addresses = patient.get("address").and_then(Value::as_array)?;
    addresses
        .iter()
        .find(|a| a.get("use").and_then(Value::as_str) == Some("home"))
        .or_else(|| addresses.first())
}

/// An address's state (USPS code, upper case).
pub fn address_state(address: &Value) -> Option<String> {
    address
        .get("state")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
}

/// Where a patient lives: an address's geolocation, else its postal code's centroid.
pub fn home_of(address: &Value) -> Option<(Point, Option<String>)> {
    let state = address_state(address);
    if let Some(geo) = extensions(address, ext::GEOLOCATION).next() {
        let part = |name: &str| {
            extensions(geo, name)
                .next()
                .and_then(|e| e.get("valueDecimal"))
                .and_then(Value::as_f64)
        };
        if let (Some(lat), Some(lng)) = (part("latitude"), part("longitude")) {
            return Some((Point { lat, lng }, state));
        }
    }
    let zip = address.get("postalCode").and_then(Value::as_str)?;
    let (point, zip_state) = care::geo::zip_centroid(zip)?;
    Some((point, state.or(Some(zip_state))))
}

/// The care finder: the facts gathered through the caller's access rules, ranked by
/// `care::findcare::rank`, answered as `Parameters` (options with their reasons, exclusions
/// with theirs).
pub fn find_care(tx: &mut CallerTx, ctx: &Ctx, input: CareRequest) -> Result<Value, ApiError> {
    let config: &FindCareConfig = &ctx.find_care;
    let now = tx.now();
    scope_reads(
        tx,
        &[
            "HealthcareService",
            "Location",
            "Organization",
            "PractitionerRole",
            "Schedule",
            "Slot",
        ],
    )?;
    // the patient
    let facts = match &input.patient {
        Some(pid) => {
            scope_reads(tx, &["Patient", "Condition"])?;
            let stored = tx
                .current("Patient", pid, false)?
                .filter(|s| !s.deleted)
                .ok_or_else(|| bad("patient", format!("Patient/{pid} is not known")))?;
            let patient = body(&stored);
            let birth = patient
                .get("birthDate")
                .and_then(Value::as_str)
                .and_then(care::access::age::BirthDate::parse)
                .ok_or_else(|| {
                    bad(
                        "patient",
                        format!(
                            "Patient/{pid} has no birthDate; send birthDate and postalCode instead"
                        ),
                    )
                })?;
            let home = home_address(&patient).and_then(home_of).ok_or_else(|| {
                bad(
                    "patient",
                    format!(
                        "Patient/{pid} has no home address with a known postal code or position"
                    ),
                )
            })?;
            let conditions = search(tx, ctx, "Condition", &[("patient", pid.clone())])?;
            let onset = conditions
                .iter()
                .map(body)
                .any(|c| config.counts_as_pediatric_onset(&c));
            PatientFacts {
                age: care::access::age::age_on(birth, now),
                home: home.0,
                state: input.patient_state.clone().or(home.1),
                pediatric_onset: onset,
            }
        }
        None => {
            let birth = input
                .birth_date
                .as_deref()
                .and_then(care::access::age::BirthDate::parse)
                .ok_or_else(|| bad("birthDate", "'birthDate' is not a date"))?;
            let zip = input.postal_code.clone().unwrap_or_default();
            let (home, zip_state) = care::geo::zip_centroid(&zip).ok_or_else(|| {
                bad(
                    "postalCode",
                    format!("'{zip}' is not a known US postal code"),
                )
            })?;
            PatientFacts {
                age: care::access::age::age_on(birth, now),
                home,
                state: input.patient_state.clone().or(Some(zip_state)),
                pediatric_onset: false,
            }
        }
    };
    // the services that match the need
    let started = std::time::Instant::now();
    let mut services: Vec<Stored> = Vec::new();
    let mut seen = BTreeSet::new();
    let searches: Vec<(&str, String)> = match &input.service {
        ServiceQuery::Code { system, code } => {
            let token = match system {
                Some(s) => format!("{s}|{code}"),
                None => code.clone(),
            };
            ["specialty", "service-type", "program"]
                .into_iter()
                .map(|p| (p, token.clone()))
                .collect()
        }
        ServiceQuery::Text(t) => vec![
            ("name:contains", t.clone()),
            ("specialty:text", t.clone()),
            ("service-type:text", t.clone()),
            ("program:text", t.clone()),
        ],
    };
    for (param, value) in searches {
        for s in search(tx, ctx, "HealthcareService", &[(param, value)])? {
            if seen.insert(s.id.clone()) {
                services.push(s);
            }
        }
    }
    let t_services = started.elapsed();
    let services: Vec<(Stored, Value)> = services
        .into_iter()
        .map(|s| {
            let b = body(&s);
            (s, b)
        })
        .filter(|(_, b)| b.get("active").and_then(Value::as_bool) != Some(false))
        .collect();
    if services.is_empty() {
        let asked = match &input.service {
            ServiceQuery::Code { system, code } => match system {
                Some(s) => format!("{s}|{code}"),
                None => code.clone(),
            },
            ServiceQuery::Text(t) => t.clone(),
        };
        return Err(bad(
            "service",
            format!(
                "no active HealthcareService matches '{asked}' by specialty, type, programme or name"
            ),
        ));
    }
    // their organisations, sites, clinicians and schedules: from the directory snapshot
    let directory = directory_snapshot(tx, ctx)?;
    let t_directory = started.elapsed();
    let (orgs, locations, licensed, schedule_of) = (
        &directory.organizations,
        &directory.locations,
        &directory.licensed,
        &directory.schedule_of,
    );
    let matched: BTreeSet<&str> = services.iter().map(|(s, _)| s.id.as_str()).collect();
    let all_schedules: Vec<&str> = schedule_of
        .iter()
        .filter(|(key, _)| matched.contains(key.0.as_str()))
        .flat_map(|(_, ids)| ids.iter().map(String::as_str))
        .collect();
    let horizon = now + (config.window_days.iter().copied().max().unwrap_or(30) + 1) * 86_400_000;
    let firsts =
        tx.on_behalf(store::OnBehalf::Directory)
            .first_free_slots(&all_schedules, now, horizon)?;
    let t_slots = started.elapsed();
    let first_of = |key: &(String, Option<String>, Modality)| -> Option<(String, i64)> {
        schedule_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| firsts.get(id).cloned())
            .min_by_key(|(_, start)| *start)
    };
    // one candidate per service and site in person, and per service by video
    let mut candidates: Vec<Candidate> = Vec::new();
    for (s, b) in &services {
        let org_id = b
            .get("providedBy")
            .and_then(|r| ref_id(r, "Organization"))
            .unwrap_or("")
            .to_string();
        let org_name = orgs
            .get(&org_id)
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str)
            .or_else(|| b.pointer("/providedBy/display").and_then(Value::as_str))
            .unwrap_or(&org_id)
            .to_string();
        let range = extensions(b, ext::AGE_RANGE)
            .next()
            .and_then(|e| e.get("valueRange"));
        let bound = |k: &str| {
            range
                .and_then(|r| r.pointer(&format!("/{k}/value")))
                .and_then(Value::as_f64)
                .map(|v| v as i32)
        };
        let accepting = extensions(b, ext::ACCEPTING)
            .next()
            .and_then(|e| e.get("valueBoolean"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let mut modalities: Vec<Modality> = extensions(b, ext::MODALITY)
            .filter_map(|e| e.get("valueCode").and_then(Value::as_str))
            .filter_map(Modality::parse)
            .collect();
        if modalities.is_empty() {
            modalities.push(Modality::InPerson);
        }
        let base = Candidate {
            service_id: s.id.clone(),
            service_name: b
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&s.id)
                .to_string(),
            organization_id: org_id,
            organization_name: org_name,
            age_range: (bound("low"), bound("high")),
            accepting,
            modality: Modality::InPerson,
            location: None,
            licensed_states: licensed
                .get(&s.id)
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default(),
            first_slot: None,
        };
        if modalities.contains(&Modality::InPerson) {
            for l in b
                .get("location")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(lid) = ref_id(l, "Location") else {
                    continue;
                };
                let Some(loc) = locations.get(lid) else {
                    continue;
                };
                let virtual_site = loc
                    .pointer("/physicalType/coding")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.get("code").and_then(Value::as_str) == Some("vi"))
                    });
                if virtual_site {
                    continue;
                }
                let position = loc.get("position").and_then(|p| {
                    Some(Point {
                        lat: p.get("latitude")?.as_f64()?,
                        lng: p.get("longitude")?.as_f64()?,
                    })
                });
                candidates.push(Candidate {
                    modality: Modality::InPerson,
                    location: Some(Site {
                        id: lid.to_string(),
                        name: loc
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or(lid)
                            .to_string(),
                        position,
                    }),
                    first_slot: first_of(&(
                        s.id.clone(),
                        Some(lid.to_string()),
                        Modality::InPerson,
                    )),
                    ..base.clone()
                });
            }
        }
        if modalities.contains(&Modality::Video) {
            candidates.push(Candidate {
                modality: Modality::Video,
                first_slot: first_of(&(s.id.clone(), None, Modality::Video)),
                ..base
            });
        }
    }
    let ask = Ask {
        wanted: input.wanted,
        urgency: input.urgency,
        radius_miles: input.radius,
        now_ms: now,
    };
    let (ranked, excluded) = care::findcare::rank(&facts, &candidates, &ask, config);
    tracing::debug!(
        services = services.len(),
        schedules = all_schedules.len(),
        candidates = candidates.len(),
        services_us = t_services.as_micros() as u64,
        directory_us = t_directory.as_micros() as u64,
        slots_us = t_slots.as_micros() as u64,
        ranked_us = started.elapsed().as_micros() as u64,
        "find-care phases"
    );
    let mut out: Vec<Value> = Vec::new();
    for r in ranked.iter().take(input.count) {
        let c = &candidates[r.candidate];
        let mut part = vec![
            json!({"name": "healthcareService", "valueReference": {"reference": format!("HealthcareService/{}", c.service_id), "display": c.service_name}}),
        ];
        if let Some(site) = &c.location {
            part.push(json!({"name": "location", "valueReference": {"reference": format!("Location/{}", site.id), "display": site.name}}));
        }
        part.push(json!({"name": "organization", "valueReference": {"reference": format!("Organization/{}", c.organization_id), "display": c.organization_name}}));
        part.push(json!({"name": "modality", "valueCode": c.modality.code()}));
        if let Some(d) = r.distance_miles {
            part.push(json!({"name": "distance", "valueQuantity": {"value": (d * 10.0).round() / 10.0, "unit": "mi", "system": "http://unitsofmeasure.org", "code": "[mi_i]"}}));
        }
        if let Some(m) = r.drive_minutes {
            part.push(json!({"name": "driveTimeEstimate", "valueQuantity": {"value": m, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}}));
        }
        if let Some((slot, start)) = &c.first_slot {
            part.push(json!({"name": "firstAvailable", "valueDateTime": fhir::primitive::format_instant(*start)}));
            part.push(
                json!({"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}}),
            );
        }
        part.push(json!({"name": "score", "valueDecimal": r.score}));
        if r.transition {
            part.push(json!({"name": "transition", "valueBoolean": true}));
        }
        for reason in &r.reasons {
            part.push(json!({"name": "reason", "valueString": reason}));
        }
        out.push(json!({"name": "option", "part": part}));
    }
    for e in &excluded {
        let c = &candidates[e.candidate];
        let mut part = vec![
            json!({"name": "healthcareService", "valueReference": {"reference": format!("HealthcareService/{}", c.service_id), "display": c.service_name}}),
        ];
        if let Some(site) = &c.location {
            part.push(json!({"name": "location", "valueReference": {"reference": format!("Location/{}", site.id), "display": site.name}}));
        }
        part.push(json!({"name": "modality", "valueCode": c.modality.code()}));
        part.push(json!({"name": "reason", "valueString": e.reason}));
        out.push(json!({"name": "excluded", "part": part}));
    }
    Ok(json!({"resourceType": "Parameters", "parameter": out}))
}
