//! The waitlist: a patient asks for an earlier slot of a kind by creating an Appointment in
//! status `waitlist` — a Patient participant, the HealthcareService wanted as a participant,
//! optionally `requestedPeriod` (the window) and the modality extension, and optionally
//! `supportingInformation` naming the booked Appointment it would replace. When a slot of that
//! kind is given up, `care::waitlist` picks the first request it fits; that Appointment becomes
//! `pending` on the slot (the offer, with a `waitlist-offer` expiry) and the slot is held for it;
//! booking it (`$book` with the appointment) accepts and cancels the appointment it replaces,
//! whose slot goes on down the list. A lapsed offer ends that request and passes the slot on.
//!
//! Offers are made for the alliance, not for the caller whose change freed the slot: the
//! waitlist is read and the offer written with the system's rights, in the same transaction.

use care::booking::AppointmentStatus;
use care::findcare::Modality;
use fhir::IssueType;
use fhir::search::extract;
use serde_json::{Value, json};
use store::CallerTx;
use store::access::Current;

use super::Ctx;
use super::resources::body;
use crate::error::ApiError;
use fhir::json::extensions;

/// Appointment: until when a waitlist offer is held, `valueInstant`.
pub use care::profile::WAITLIST_OFFER;

/// Waitlist entries read per service when a slot frees.
const ENTRIES_PER_SERVICE: usize = 500;

/// The references of an appointment's participants that are of type `rt` (ids).
fn participants_of<'a>(appointment: &'a Value, rt: &'a str) -> impl Iterator<Item = &'a str> {
    super::appointments::participant_refs(appointment)
        .filter_map(move |r| r.strip_prefix(rt).and_then(|s| s.strip_prefix('/')))
}

/// Whether an appointment is a waitlist offer.
pub(crate) fn is_offer(appointment: &Value) -> bool {
    extensions(appointment, WAITLIST_OFFER).next().is_some()
}

/// Checks a new waitlist entry (422 naming what is missing) and stamps when it was asked
/// (`created`, to the millisecond: the earliest request is offered first).
pub(crate) fn check_entry(tx: &mut CallerTx, appointment: &mut Value) -> Result<(), ApiError> {
    let unprocessable =
        |msg: &str, at: &str| ApiError::new(422, IssueType::Required, msg.to_string()).at(at);
    if participants_of(appointment, "Patient").next().is_none() {
        return Err(unprocessable(
            "a waitlist entry names the patient as a participant",
            "Appointment.participant",
        ));
    }
    if participants_of(appointment, "HealthcareService")
        .next()
        .is_none()
    {
        return Err(unprocessable(
            "a waitlist entry names the HealthcareService wanted as a participant",
            "Appointment.participant",
        ));
    }
    if let Some(period) = appointment
        .get("requestedPeriod")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        let (start, end) = (
            period
                .get("start")
                .and_then(Value::as_str)
                .and_then(fhir::primitive::instant_ms),
            period
                .get("end")
                .and_then(Value::as_str)
                .and_then(fhir::primitive::instant_ms),
        );
        if let (Some(s), Some(e)) = (start, end)
            && e < s
        {
            return Err(unprocessable(
                "requestedPeriod ends before it starts",
                "Appointment.requestedPeriod",
            ));
        }
    }
    appointment["created"] = json!(fhir::primitive::format_instant(tx.now()));
    Ok(())
}

/// Offers a slot that was just given up to the first waitlisted patient it fits: that
/// Appointment becomes a `pending` offer on the slot, its messages are written, and (its id,
/// the offer's expiry) is returned for the caller to hold the slot. `None` when nobody fits.
pub(crate) fn offer(
    tx: &mut CallerTx,
    ctx: &Ctx,
    slot_id: &str,
    slot: &Value,
) -> Result<Option<(String, i64)>, ApiError> {
    let now = tx.now();
    let Some(schedule_id) = slot
        .pointer("/schedule/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Schedule/"))
    else {
        return Ok(None);
    };
    let Some(schedule) =
        tx.on_behalf(store::OnBehalf::WaitlistOffer)
            .current("Schedule", schedule_id, false)?
    else {
        return Ok(None);
    };
    let schedule = body(&schedule);
    let services: Vec<String> = super::appointments::schedule_actors(&schedule)
        .filter_map(|r| r.strip_prefix("HealthcareService/"))
        .map(str::to_string)
        .collect();
    let Some(start_ms) = slot
        .get("start")
        .and_then(Value::as_str)
        .and_then(fhir::primitive::instant_ms)
    else {
        return Ok(None);
    };
    if services.is_empty() || start_ms <= now {
        return Ok(None);
    }
    let modality = super::appointments::modality_code(&schedule)
        .and_then(Modality::parse)
        .unwrap_or(Modality::InPerson);
    // the waitlist of these services, read with the system's rights
    let mut waiting: Vec<store::Stored> = Vec::new();
    for service in &services {
        let req = crate::app::resources::search_request(
            ctx.registry,
            "Appointment",
            &[
                ("status", "waitlist".into()),
                ("actor", format!("HealthcareService/{service}")),
                ("_count", ENTRIES_PER_SERVICE.to_string()),
            ],
        )?;
        for m in tx
            .on_behalf(store::OnBehalf::WaitlistOffer)
            .search(&req)?
            .matches
        {
            if !waiting.iter().any(|w| w.id == m.id) {
                waiting.push(m);
            }
        }
    }
    if waiting.is_empty() {
        return Ok(None);
    }
    let licensed_states: Vec<String> = if modality == Modality::Video {
        let directory = crate::app::directory::directory_snapshot(tx, ctx)?;
        services
            .iter()
            .filter_map(|s| directory.licensed.get(s))
            .flatten()
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let freed = care::waitlist::FreedSlot {
        services,
        modality,
        start_ms,
        licensed_states,
    };
    let mut entries = Vec::with_capacity(waiting.len());
    for stored in &waiting {
        let a = body(stored);
        let period = a
            .get("requestedPeriod")
            .and_then(Value::as_array)
            .and_then(|p| p.first());
        let patient_state = match participants_of(&a, "Patient").next() {
            Some(pid) => tx
                .on_behalf(store::OnBehalf::WaitlistOffer)
                .current("Patient", pid, false)?
                .map(|p| body(&p))
                .and_then(|p| {
                    crate::app::findcare::home_address(&p)
                        .and_then(crate::app::findcare::address_state)
                }),
            None => continue,
        };
        entries.push(care::waitlist::Entry {
            id: stored.id.clone(),
            asked_ms: a
                .get("created")
                .and_then(Value::as_str)
                .and_then(fhir::primitive::instant_ms)
                .unwrap_or(stored.last_updated),
            services: participants_of(&a, "HealthcareService")
                .map(str::to_string)
                .collect(),
            modality: super::appointments::modality_code(&a).and_then(Modality::parse),
            not_before_ms: period.and_then(|p| {
                p.get("start")
                    .and_then(Value::as_str)
                    .and_then(fhir::primitive::instant_ms)
            }),
            not_after_ms: period.and_then(|p| {
                p.get("end")
                    .and_then(Value::as_str)
                    .and_then(fhir::primitive::instant_ms)
            }),
            patient_state,
        });
    }
    let Some(chosen) = care::waitlist::first_fitting(&entries, &freed, now) else {
        return Ok(None);
    };
    let prev = waiting
        .iter()
        .find(|w| w.id == chosen.id)
        .expect("the chosen entry was read")
        .clone();
    let until = now + ctx.booking.waitlist_offer_minutes * 60_000;
    let mut appointment = body(&prev);
    appointment["status"] = json!(AppointmentStatus::Pending.code());
    appointment["slot"] = json!([{"reference": format!("Slot/{slot_id}")}]);
    appointment["start"] = slot.get("start").cloned().unwrap_or(Value::Null);
    appointment["end"] = slot.get("end").cloned().unwrap_or(Value::Null);
    // the schedule's other actors (the site, the clinician) take part too
    let mut participants: Vec<Value> = appointment
        .get("participant")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in super::appointments::schedule_actors(&schedule) {
        if !super::appointments::participant_refs(&appointment).any(|p| p == r) {
            participants.push(super::appointments::participant(r, "needs-action"));
        }
    }
    appointment["participant"] = Value::Array(participants);
    super::appointments::set_modality(&mut appointment, json!(modality.code()));
    let mut exts: Vec<Value> = appointment["extension"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    exts.retain(|e| e.get("url").and_then(Value::as_str) != Some(WAITLIST_OFFER));
    exts.push(
        json!({"url": WAITLIST_OFFER, "valueInstant": fhir::primitive::format_instant(until)}),
    );
    appointment["extension"] = Value::Array(exts);
    super::labels::apply_automatic_labels(tx, &mut appointment)?;
    crate::app::notify::appointment_changed(
        tx,
        ctx,
        &prev.id,
        Some(AppointmentStatus::Waitlist),
        &appointment,
        Some(until),
    )?;
    let index = extract(ctx.registry, &appointment);
    let patients: Vec<String> = participants_of(&appointment, "Patient")
        .map(str::to_string)
        .collect();
    tx.on_behalf(store::OnBehalf::WaitlistOffer)
        .update(&prev, &mut appointment, &index)?;
    tx.trail.add("Appointment", &prev.id, &patients);
    Ok(Some((prev.id.clone(), until)))
}

/// When a waitlist offer is booked, the appointment it replaces (`supportingInformation`) is
/// cancelled — its slot goes on to the next waitlisted patient.
pub(crate) fn cancel_superseded(
    tx: &mut CallerTx,
    ctx: &Ctx,
    booked: &Value,
) -> Result<(), ApiError> {
    if !is_offer(booked) {
        return Ok(());
    }
    let replaced: Vec<String> = booked
        .get("supportingInformation")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("reference").and_then(Value::as_str))
        .filter_map(|r| r.strip_prefix("Appointment/"))
        .map(str::to_string)
        .collect();
    for id in replaced {
        let Current::Visible(prev) = tx.current_for_write("Appointment", &id)? else {
            continue;
        };
        if prev.deleted {
            continue;
        }
        let before = body(&prev);
        let from = super::appointments::status_of(&before);
        if !matches!(
            from,
            Some(AppointmentStatus::Booked | AppointmentStatus::CheckedIn)
        ) {
            continue;
        }
        let mut after = before.clone();
        after["status"] = json!(AppointmentStatus::Cancelled.code());
        after["cancelationReason"] =
            json!({"text": "moved to an earlier appointment offered from the waitlist"});
        super::booking::appointment_written(tx, ctx, &id, Some(&before), Some(&mut after))?;
        let index = extract(ctx.registry, &after);
        tx.update(&prev, &mut after, &index)?
            .map_err(|r| ApiError::refused(r, "Appointment", &id))?;
    }
    Ok(())
}
