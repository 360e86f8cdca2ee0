//! Slot generation: for every active Schedule, the Slots its weekly template offers over the
//! coming weeks. The template is the Schedule's HealthcareService's `availableTime` (days and
//! hours, US Eastern time) and `notAvailable` (blocks and holidays), with the slot length from
//! the Schedule's `slot-minutes` extension (default 30). Slot ids are derived from the schedule
//! and the start time, so regenerating finds the slots it made before: it never duplicates a
//! slot and never overwrites one (a booked or held slot stays as it is).
//!
//! Run by `continuum slots generate --weeks N`, after `continuum demo load`, and daily by the
//! server.

use std::collections::HashMap;

use care::slots::{Template, WeeklyHours, parse_time, weekday_code};
use fhir::search::extract;
use serde_json::{Value, json};

use super::App as FhirApi;
use super::resources::{all_of, body};
use crate::error::ApiError;
use care::profile as ext;
use fhir::json::extensions;

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SlotReport {
    pub schedules: usize,
    pub created: usize,
    pub existing: usize,
}

/// The template of a schedule from its service (`None` when the service has no hours).
pub fn template_of(service: &Value, schedule: &Value) -> Option<Template> {
    let hours: Vec<WeeklyHours> = service
        .get("availableTime")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let days: Vec<u8> = t
                .get("daysOfWeek")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().and_then(weekday_code))
                .collect();
            let all_day = t.get("allDay").and_then(Value::as_bool) == Some(true);
            let (start, end) = if all_day {
                (0, 24 * 60)
            } else {
                (
                    parse_time(t.get("availableStartTime")?.as_str()?)?,
                    parse_time(t.get("availableEndTime")?.as_str()?)?,
                )
            };
            (!days.is_empty() && end > start).then_some(WeeklyHours {
                days,
                start_minute: start,
                end_minute: end,
            })
        })
        .collect();
    if hours.is_empty() {
        return None;
    }
    // [start, end) of a period bound; a plain date is a whole local (Eastern) day
    let bounds = |v: Option<&Value>| -> Option<(i64, i64)> {
        let text = v?.as_str()?;
        if let [y, m, d] = text.split('-').collect::<Vec<_>>()[..]
            && text.len() == 10
        {
            let day =
                care::slots::days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
            return Some((
                care::slots::local_to_utc(day, 0),
                care::slots::local_to_utc(day + 1, 0),
            ));
        }
        let dt =
            fhir::primitive::parse_date_time(text, fhir::primitive::Precision::Fraction, false)
                .ok()?;
        let r = dt.range();
        Some((r.low, r.high + 1))
    };
    let unavailable = service
        .get("notAvailable")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let during = n.get("during")?;
            let start = bounds(during.get("start")).map(|r| r.0).unwrap_or(i64::MIN);
            let end = bounds(during.get("end")).map(|r| r.1).unwrap_or(i64::MAX);
            Some((start, end))
        })
        .collect();
    let slot_minutes = extensions(schedule, ext::SLOT_MINUTES)
        .next()
        .and_then(|e| e.get("valueInteger"))
        .and_then(Value::as_u64)
        .filter(|m| (5..=480).contains(m))
        .unwrap_or(30) as u32;
    Some(Template {
        hours,
        slot_minutes,
        unavailable,
    })
}

/// A slot's id: the schedule's id and the start as `YYYYMMDDhhmm` (UTC).
pub fn slot_id(schedule_id: &str, start_ms: i64) -> String {
    let day = start_ms.div_euclid(86_400_000);
    let (y, m, d) = care::slots::civil_from_days(day);
    let minute = start_ms.rem_euclid(86_400_000) / 60_000;
    let stamp = format!("{y:04}{m:02}{d:02}{:02}{:02}", minute / 60, minute % 60);
    // ids are at most 64 characters
    let head: String = schedule_id.chars().take(64 - 1 - stamp.len()).collect();
    format!("{head}-{stamp}")
}

/// Frees the slots whose holds have lapsed (cancelling the pending appointments that held
/// them; a freed slot goes to the waitlist first), in one audited transaction; returns how many.
pub async fn release_lapsed_holds(api: &FhirApi) -> Result<usize, ApiError> {
    api.system_job("holds:release", |tx, ctx| {
        let released = crate::app::booking::release_lapsed(tx, ctx)?;
        let described = (released > 0).then(|| format!("released {released} lapsed slot holds"));
        Ok((released, described))
    })
    .await
}

/// Slots written per transaction: the writer is shared with requests, so a long run yields
/// between chunks instead of holding it for minutes.
const SLOTS_PER_TRANSACTION: usize = 10_000;

/// Generates the slots of every active Schedule for `weeks` weeks from now. The templates are
/// read in one transaction; the slots are written in transactions of at most
/// [`SLOTS_PER_TRANSACTION`], each audited with what it created. A run cut short leaves whole
/// chunks behind, and the next run fills in the rest (ids are derived from schedule and start).
pub async fn generate(api: &FhirApi, weeks: u32) -> Result<SlotReport, ApiError> {
    let registry = fhir::search::registry();
    let caller = std::sync::Arc::new(crate::app::system_caller("slots:generate"));
    let read = super::Work {
        name: "search-type",
        writes: false,
        alone: false,
        address: None,
        query: None,
        quiet: true,
        budgeted: false,
    };
    let (planned, schedules) = api
        .run(caller.clone(), read, api.job_ctx(), move |bound, _ctx| {
            let now = bound.now();
            let services: HashMap<String, Value> = all_of(
                bound,
                registry,
                "HealthcareService",
                crate::app::resources::Reader::Caller,
            )?
            .iter()
            .map(|s| (s.id.clone(), body(s)))
            .collect();
            let mut schedules = 0;
            let mut planned: Vec<(String, String, i64, i64)> = Vec::new();
            for schedule in all_of(
                bound,
                registry,
                "Schedule",
                crate::app::resources::Reader::Caller,
            )?
            .iter()
            .map(body)
            {
                let schedule = &schedule;
                if schedule.get("active").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let Some(sid) = schedule.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let service = schedule
                    .get("actor")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.get("reference").and_then(Value::as_str))
                    .find_map(|r| r.strip_prefix("HealthcareService/"))
                    .and_then(|id| services.get(id));
                let Some(template) = service.and_then(|s| template_of(s, schedule)) else {
                    continue;
                };
                schedules += 1;
                for (start, end) in care::slots::generate(&template, now, weeks * 7) {
                    planned.push((sid.to_string(), slot_id(sid, start), start, end));
                }
            }
            Ok::<_, ApiError>((planned, schedules))
        })
        .await?;
    let mut report = SlotReport {
        schedules,
        ..Default::default()
    };
    let mut planned = planned.into_iter().peekable();
    while planned.peek().is_some() {
        let chunk: Vec<(String, String, i64, i64)> =
            planned.by_ref().take(SLOTS_PER_TRANSACTION).collect();
        let write = super::Work {
            name: "import",
            ..super::Work::job()
        };
        let (created, existing) = api
            .run(caller.clone(), write, api.job_ctx(), move |bound, _ctx| {
                write_chunk(bound, registry, chunk, schedules)
            })
            .await?;
        report.created += created;
        report.existing += existing;
    }
    Ok(report)
}

/// Writes the slots of one chunk that are not there yet, and audits what it created; returns
/// (created, already there).
fn write_chunk(
    bound: &mut store::CallerTx,
    registry: &'static fhir::search::Registry,
    chunk: Vec<(String, String, i64, i64)>,
    schedules: usize,
) -> Result<(usize, usize), ApiError> {
    let (mut created, mut existing_count) = (0, 0);
    for part in chunk.chunks(2000) {
        let ids: Vec<&str> = part.iter().map(|(_, id, _, _)| id.as_str()).collect();
        let existing = bound.existing("Slot", &ids)?;
        let mut bodies: Vec<(String, Value, Vec<fhir::search::IndexEntry>)> = Vec::new();
        for (sid, id, start, end) in part {
            if existing.contains_key(id) {
                existing_count += 1;
                continue;
            }
            let slot = json!({
                "resourceType": "Slot",
                "id": id,
                "schedule": {"reference": format!("Schedule/{sid}")},
                "status": "free",
                "start": fhir::primitive::format_instant(*start),
                "end": fhir::primitive::format_instant(*end),
            });
            let index = extract(registry, &slot);
            bodies.push((id.clone(), slot, index));
        }
        let mut items: Vec<store::NewResource> = bodies
            .iter_mut()
            .map(|(id, slot, index)| store::NewResource {
                resource_type: "Slot",
                id: id.clone(),
                resource: slot,
                index,
            })
            .collect();
        match bound.create_many(&mut items)? {
            Ok(stored) => created += stored.len(),
            Err((_, refusal)) => {
                return Err(ApiError::new(
                    403,
                    fhir::IssueType::Forbidden,
                    format!("slot generation was refused: {refusal:?}"),
                ));
            }
        }
    }
    if created > 0 {
        bound.trail.description = Some(format!(
            "generated {created} slots ({existing_count} already there) of {schedules} schedules"
        ));
    }
    Ok((created, existing_count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_come_from_the_service_and_the_schedule() {
        let service = json!({"resourceType": "HealthcareService",
            "availableTime": [
                {"daysOfWeek": ["mon", "wed"], "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"},
                {"daysOfWeek": ["sat"], "allDay": true},
                {"daysOfWeek": [], "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"}],
            "notAvailable": [{"description": "Christmas", "during": {"start": "2026-12-25", "end": "2026-12-25"}}]});
        let schedule = json!({"resourceType": "Schedule", "extension": [{"url": ext::SLOT_MINUTES, "valueInteger": 20}]});
        let t = template_of(&service, &schedule).unwrap();
        assert_eq!(t.slot_minutes, 20);
        assert_eq!(t.hours.len(), 2);
        assert_eq!(t.hours[0].days, vec![1, 3]);
        assert_eq!((t.hours[0].start_minute, t.hours[0].end_minute), (540, 720));
        assert_eq!((t.hours[1].start_minute, t.hours[1].end_minute), (0, 1440));
        // the whole local day of 25 December: midnight to midnight Eastern (UTC−5)
        let day = care::slots::days_from_civil(2026, 12, 25) * 86_400_000;
        assert_eq!(
            t.unavailable,
            vec![(day + 5 * 3_600_000, day + 29 * 3_600_000)]
        );
        assert_eq!(
            template_of(&json!({"resourceType": "HealthcareService"}), &schedule),
            None
        );
    }

    #[test]
    fn slot_ids_are_stable_and_short_enough() {
        let start = care::slots::days_from_civil(2026, 12, 1) * 86_400_000 + 14 * 3_600_000;
        assert_eq!(slot_id("sch-1", start), "sch-1-202612011400");
        let long = "x".repeat(80);
        let id = slot_id(&long, start);
        assert_eq!(id.len(), 64);
        assert!(fhir::primitive::is_id(&id));
    }
}
