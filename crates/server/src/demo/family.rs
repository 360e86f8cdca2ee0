//! The console's family (illustrative): **Nora Reyes**, 16, of Norwich, a patient of
//! Connecticut Children's followed by pediatric cardiology, and her mother **Elena Reyes**
//! (`RelatedPerson/demo-nora-mother`), who signs in as the demo user `parent`. Nora was seen
//! alone for confidential care (labelled, so her mother does not see it). After the demo's
//! slots exist, her appointments are made the way the alliance makes them — through the
//! booking and waitlist rules as the system: a video visit starting ten minutes after the load
//! (its join button is live at once), a cardiology visit in three weeks, a request for an
//! earlier time, and — another family having given up a visit next week — that earlier time
//! offered to her, waiting for her mother to accept.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::tag;
use crate::app::booking::{BookingRequest, hold_or_book};
use crate::app::resources::{body, search};
use crate::rest::FhirApi;

const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;
/// The service Nora is followed by.
pub const SERVICE: &str = "cc-peds-cardiology";

/// Nora, her mother and her visits so far (bulk-loaded with the rest of the demo).
pub(super) fn people(out: &mut Vec<Value>, now_ms: i64) {
    let birth = now_ms - (16 * 36525 / 100 + 140) * DAY;
    let (y, m, d) = care::slots::civil_from_days(birth.div_euclid(DAY));
    out.push(json!({"resourceType": "Patient", "id": "demo-nora", "meta": tag(),
        "identifier": [{"system": "urn:mrn:cc", "value": "D-NORA"}],
        "name": [{"use": "official", "family": "Reyes", "given": ["Nora"]}], "gender": "female",
        "birthDate": format!("{y:04}-{m:02}-{d:02}"),
        "telecom": [{"system": "email", "value": "nora.reyes@example.org"}],
        "address": [{"use": "home", "line": ["22 Broadway"], "city": "Norwich", "state": "CT", "postalCode": "06360", "country": "US"}],
        "managingOrganization": {"reference": "Organization/cc"}}));
    out.push(json!({"resourceType": "RelatedPerson", "id": "demo-nora-mother", "meta": tag(),
        "active": true, "patient": {"reference": "Patient/demo-nora"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
        "name": [{"family": "Reyes", "given": ["Elena"]}],
        "telecom": [{"system": "email", "value": "elena.reyes@example.org"}]}));
    let at = |ms: i64| fhir::primitive::format_instant(ms);
    out.push(
        json!({"resourceType": "Encounter", "id": "demo-nora-cardiology", "meta": tag(),
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"text": "Pediatric cardiology: heart murmur evaluation"}],
        "subject": {"reference": "Patient/demo-nora"},
        "serviceProvider": {"reference": "Organization/cc"},
        "period": {"start": at(now_ms - 60 * DAY), "end": at(now_ms - 60 * DAY + 45 * MIN)}}),
    );
    super::clinical::sensitive_visit(
        out,
        "demo-nora-confidential",
        "demo-nora",
        "cc",
        "SEX",
        "Confidential adolescent health visit",
        now_ms - 25 * DAY,
    );
}

/// The free slots of a schedule starting at or after `from_ms`, earliest first.
fn free_slots(
    tx: &mut store::CallerTx,
    ctx: &crate::app::Ctx,
    schedule: &str,
    from_ms: i64,
) -> Result<Vec<(String, i64)>, crate::error::ApiError> {
    let slots = search(
        tx,
        ctx,
        "Slot",
        &[
            ("schedule", format!("Schedule/{schedule}")),
            ("status", "free".into()),
            (
                "start",
                format!("ge{}", fhir::primitive::format_instant(from_ms)),
            ),
        ],
    )?;
    let mut free: Vec<(String, i64)> = slots
        .iter()
        .filter_map(|s| {
            let start = body(s)["start"].as_str().and_then(fhir::json::instant_ms)?;
            Some((s.id.clone(), start))
        })
        .collect();
    free.sort_by_key(|(_, start)| *start);
    Ok(free)
}

/// Nora's appointments, made through the booking and waitlist rules (once, at the load).
pub(super) async fn appointments(api: &FhirApi) -> Result<()> {
    let caller = std::sync::Arc::new(crate::app::system_caller("demo"));
    let work = crate::app::Work::job();
    let done = api
        .run(caller, work, api.job_ctx(), move |tx, ctx| {
            let now = tx.now();
            // the in-person schedule of the service at the site closest to Norwich
            let schedules = search(
                tx,
                ctx,
                "Schedule",
                &[("actor", format!("HealthcareService/{SERVICE}"))],
            )?;
            let mut in_person: Vec<String> = schedules
                .iter()
                .filter(|s| !crate::app::appointments::is_video(&body(s)))
                .map(|s| s.id.clone())
                .collect();
            in_person.sort_by_key(|id| !id.ends_with("-waterford"));
            let Some(schedule) = in_person.first().cloned() else {
                return Ok(false);
            };
            // next week's slot, and one three weeks ahead (or the last there is, when fewer
            // weeks of slots were made)
            let free = free_slots(tx, ctx, &schedule, now + 6 * DAY)?;
            let Some((early, early_start)) = free.first().cloned() else {
                return Ok(false);
            };
            let Some((late, late_start)) = free
                .iter()
                .find(|(_, start)| *start >= now + 21 * DAY)
                .or_else(|| free.last())
                .filter(|(_, start)| *start > early_start + DAY)
                .cloned()
            else {
                return Ok(false);
            };
            // a video visit about to start: its join button is live
            let start = now - now.rem_euclid(5 * MIN) + 10 * MIN;
            let video = json!({"resourceType": "Appointment", "status": "booked",
                "serviceType": [{"text": "Pediatric cardiology follow-up"}],
                "start": fhir::primitive::format_instant(start),
                "end": fhir::primitive::format_instant(start + 20 * MIN),
                "extension": [{"url": care::profile::MODALITY, "valueCode": "video"}],
                "participant": [
                    {"actor": {"reference": "Patient/demo-nora"}, "status": "accepted"},
                    {"actor": {"reference": format!("HealthcareService/{SERVICE}")}, "status": "accepted"}]});
            crate::rest::execute::create(tx, ctx, "Appointment", video, None)?;
            // a visit in three weeks …
            let booked = hold_or_book(
                tx,
                ctx,
                BookingRequest {
                    hold: false,
                    slot_id: Some(late),
                    patient_id: Some("demo-nora".into()),
                    held: None,
                    based_on: None,
                },
            )?;
            let booked_id = booked["entry"][0]["resource"]["id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            // … and the wish for an earlier one
            let wish = json!({"resourceType": "Appointment", "status": "waitlist",
                "participant": [
                    {"actor": {"reference": "Patient/demo-nora"}, "status": "accepted"},
                    {"actor": {"reference": format!("HealthcareService/{SERVICE}")}, "status": "needs-action"}],
                "requestedPeriod": [{"start": fhir::primitive::format_instant(now), "end": fhir::primitive::format_instant(late_start)}],
                "supportingInformation": [{"reference": format!("Appointment/{booked_id}")}]});
            crate::rest::execute::create(tx, ctx, "Appointment", wish, None)?;
            // another family gives up next week's visit: it is offered to Nora
            let theirs = hold_or_book(
                tx,
                ctx,
                BookingRequest {
                    hold: false,
                    slot_id: Some(early),
                    patient_id: Some("demo-maya".into()),
                    held: None,
                    based_on: None,
                },
            )?;
            let mut cancelled = theirs["entry"][0]["resource"].clone();
            let id = cancelled["id"].as_str().unwrap_or("").to_string();
            cancelled["status"] = json!("cancelled");
            cancelled["cancelationReason"] = json!({"text": "The family moved the visit closer to home"});
            crate::rest::execute::update(tx, ctx, "Appointment", &id, cancelled, None)?;
            Ok(true)
        })
        .await
        .map_err(|e| {
            let words: Vec<&str> = e.issues.iter().map(|i| i.diagnostics.as_str()).collect();
            anyhow::anyhow!("{}", words.join(" "))
        })
        .context("booking the demo family's appointments")?;
    if !done {
        bail!("the demo has no free {SERVICE} slots for the family's appointments");
    }
    Ok(())
}
