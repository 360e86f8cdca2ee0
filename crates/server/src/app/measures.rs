//! The alliance's measures (`care::measures`, defined in `care::measures::catalog`) for a
//! period, cut by month, organisation, service and age band: the extracts read in one unit of
//! work after the reporting decision (`care::access::decide_organization_reports`: an
//! organisation's for those who work there, the alliance's for those who see everything), put
//! together here — each appointment's service, organisation, site and modality; each patient's
//! age and home; each schedule's service — and computed purely. Small cells are suppressed for
//! callers outside the alliance (`care::access::reports_in_full`) or when asked.

use std::collections::HashMap;

use care::geo::Point;
use care::measures::{Dimensions, Openings, PatientFacts, Row, TransitionCell, Visit};
use serde_json::Value;
use store::CallerTx;

use super::Ctx;
use crate::error::ApiError;

/// What was asked.
#[derive(Debug, Clone)]
pub struct MeasuresRequest {
    pub from_ms: i64,
    pub to_ms: i64,
    pub dims: Dimensions,
    /// One organisation's (an Organization id), or the alliance's (`None`).
    pub organization: Option<String>,
    /// Only these measures (ids of the catalogue); empty: all.
    pub measures: Vec<String>,
    /// Suppress small cells even for the alliance's own people.
    pub public: bool,
    /// Asked by the server's operator (`continuum measures`, as the alliance itself): in full
    /// unless `public`.
    pub operator: bool,
}

/// The rows, and whether small cells were suppressed.
#[derive(Debug)]
pub struct Measured {
    pub rows: Vec<Row>,
    pub suppressed: bool,
}

fn position(location: &Value) -> Option<Point> {
    let p = location.get("position")?;
    Some(Point {
        lat: p.get("latitude")?.as_f64()?,
        lng: p.get("longitude")?.as_f64()?,
    })
}

fn id_of<'a>(v: &'a Value, rt: &str) -> Option<&'a str> {
    fhir::json::reference_id(v, rt)
}

/// A service of the directory: its organisation and first site.
struct Service {
    organization: String,
    location: Option<String>,
}

pub fn measures(tx: &mut CallerTx, ctx: &Ctx, r: &MeasuresRequest) -> Result<Measured, ApiError> {
    super::referrals::may_see_reports(tx, r.organization.as_deref())?;
    let org = r.organization.as_deref();
    let now = tx.now();
    let parse = |rows: Vec<(String, String)>| -> HashMap<String, Value> {
        rows.into_iter()
            .filter_map(|(id, body)| Some((id, serde_json::from_str(&body).ok()?)))
            .collect()
    };
    let locations = parse(tx.measure_directory("Location", org)?);
    let services: HashMap<String, Service> = parse(tx.measure_directory("HealthcareService", org)?)
        .into_iter()
        .map(|(id, s)| {
            let organization = s
                .get("providedBy")
                .and_then(|p| id_of(p, "Organization"))
                .unwrap_or_default()
                .to_string();
            let location = s
                .get("location")
                .and_then(Value::as_array)
                .and_then(|l| l.first())
                .and_then(|l| id_of(l, "Location"))
                .map(str::to_string);
            (
                id,
                Service {
                    organization,
                    location,
                },
            )
        })
        .collect();
    let site_org = |loc: &str| -> String {
        locations
            .get(loc)
            .and_then(|l| l.get("managingOrganization"))
            .and_then(|o| id_of(o, "Organization"))
            .unwrap_or_default()
            .to_string()
    };
    let keep = |o: &str| org.is_none_or(|want| want == o);

    // an organisation's referral measures are those it received (the register also gives
    // those it sent)
    let mut referrals: Vec<_> = tx.referral_records(r.from_ms, r.to_ms, org)?;
    referrals.retain(|f| keep(&f.owner_org));

    // each appointment: its patient, its service (a HealthcareService participant), the
    // organisation providing it, its site (a Location participant, else the service's)
    let mut visits = Vec::new();
    for body in tx.measure_appointments(r.from_ms, r.to_ms, org)? {
        let Ok(a) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        let Some(status) = super::appointments::status_of(&a) else {
            continue;
        };
        let Some(start) = a
            .get("start")
            .and_then(Value::as_str)
            .and_then(fhir::primitive::instant_ms)
        else {
            continue;
        };
        let mut patient = None;
        let mut service = None;
        let mut location = None;
        for reference in super::appointments::participant_refs(&a) {
            match reference.split_once('/') {
                Some(("Patient", id)) => patient = patient.or(Some(id.to_string())),
                Some(("HealthcareService", id)) => service = service.or(Some(id.to_string())),
                Some(("Location", id)) => location = location.or(Some(id.to_string())),
                _ => {}
            }
        }
        let Some(patient) = patient else { continue };
        let known = service.as_deref().and_then(|s| services.get(s));
        let location = location.or_else(|| known.and_then(|s| s.location.clone()));
        let organization = known
            .map(|s| s.organization.clone())
            .filter(|o| !o.is_empty())
            .or_else(|| location.as_deref().map(site_org))
            .unwrap_or_default();
        if !keep(&organization) {
            continue;
        }
        let video = super::appointments::is_video(&a);
        visits.push(Visit {
            id: a
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            patient_id: patient,
            start_ms: start,
            status,
            video,
            organization,
            service: service
                .or_else(|| {
                    a.pointer("/serviceType/0/text")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default(),
            site: location
                .as_deref()
                .and_then(|l| locations.get(l))
                .and_then(position),
        });
    }

    let patients: HashMap<String, PatientFacts> = tx
        .measure_patients(org)?
        .into_iter()
        .map(|(id, (birth_ms, zip))| {
            let home = zip
                .as_deref()
                .and_then(care::geo::zip_centroid)
                .map(|(p, _)| p);
            (id, PatientFacts { birth_ms, home })
        })
        .collect();

    // each schedule's service (its HealthcareService actor) and organisation
    let schedules = parse(tx.measure_directory("Schedule", org)?);
    let mut by_schedule: HashMap<String, Vec<i64>> = HashMap::new();
    for (schedule, start) in tx.measure_free_slots(now, org)? {
        by_schedule.entry(schedule).or_default().push(start);
    }
    let mut openings = Vec::new();
    for (schedule, starts) in by_schedule {
        let Some(s) = schedules.get(&schedule) else {
            continue;
        };
        let Some(service) = super::appointments::schedule_actors(s)
            .find_map(|a| a.strip_prefix("HealthcareService/"))
            .map(str::to_string)
        else {
            continue;
        };
        let organization = services
            .get(&service)
            .map(|s| s.organization.clone())
            .unwrap_or_default();
        if keep(&organization) {
            openings.push(Openings {
                organization,
                service,
                starts_ms: starts,
            });
        }
    }

    // the transition registry as it stands, per managing organisation and its age bands
    let (groups, _) =
        super::transition::metrics(tx, ctx, now, org.map(|o| format!("Organization/{o}")))?;
    let transition: Vec<TransitionCell> = groups
        .into_iter()
        .filter(|g| g.organization != "all" && g.band != "all")
        .map(|g| TransitionCell {
            organization: g
                .organization
                .strip_prefix("Organization/")
                .unwrap_or(&g.organization)
                .to_string(),
            age_band: g.band,
            elements: g
                .elements
                .iter()
                .map(|(e, c)| (e.code(), c.applies, c.done))
                .collect(),
        })
        .collect();

    let mut rows = care::measures::compute(
        &care::measures::Inputs {
            from_ms: r.from_ms,
            to_ms: r.to_ms,
            now_ms: now,
            calendar: &ctx.referrals.calendar,
            referrals: &referrals,
            visits: &visits,
            patients: &patients,
            openings: &openings,
            transition: &transition,
        },
        r.dims,
    );
    if !r.measures.is_empty() {
        rows.retain(|row| r.measures.iter().any(|m| m == row.measure));
    }
    let suppressed =
        r.public || !(r.operator || care::access::reports_in_full(&tx.caller().subject));
    if suppressed {
        care::measures::suppress(&mut rows, care::measures::SMALL_CELL);
    }
    tx.trail.description = Some(format!(
        "measures over {} referrals, {} visits, {} schedules' openings and the transition registry{}",
        referrals.len(),
        visits.len(),
        openings.len(),
        if suppressed {
            " (small cells suppressed)"
        } else {
            ""
        }
    ));
    Ok(Measured { rows, suppressed })
}
