//! `POST Appointment/$hold` and `POST Appointment/$book` (IHE ITI-116/117 shapes): a slot
//! held for a patient (Appointment `pending`, Slot `busy-tentative` until the hold lapses) or
//! booked (Appointment `booked`, Slot `busy`), decided by `care::booking` and written in the
//! request's one transaction. The slot is read for write (row-locked on PostgreSQL, the single
//! writer on SQLite) and updated only at the version read, so of any number of concurrent
//! holds or books of one slot exactly one succeeds; the others get 409.

use care::booking::{AppointmentStatus, SlotState, SlotStatus, can_take, transition};
use fhir::IssueType;
use fhir::search::extract;
use serde_json::{Value, json};
use store::CallerTx;
use store::access::Current;

use super::Ctx;
use super::execute::Outcome;
use crate::error::ApiError;
use crate::rest::findcare::extensions;

/// Slot: when a hold lapses, `valueInstant`.
pub const HOLD_EXPIRES: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/hold-expires";
/// Slot: the Appointment that holds or booked it, `valueReference`.
pub const HELD_BY: &str = "http://continuum-alliance.org/fhir/StructureDefinition/held-by";
/// How long a hold lasts.
pub const HOLD_MINUTES: i64 = 10;

fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueType::Value, msg).at(param)
}

fn conflict(msg: impl Into<String>) -> ApiError {
    ApiError::new(409, IssueType::Conflict, msg)
}

/// The id in a `valueReference` to `rt`.
fn reference(params: &Value, name: &str, rt: &str) -> Result<Option<String>, ApiError> {
    let found: Vec<&Value> = params
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [p] => {
            let r = p
                .pointer("/valueReference/reference")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(name, format!("'{name}' is a valueReference to a {rt}")))?;
            let id = r
                .strip_prefix(rt)
                .and_then(|s| s.strip_prefix('/'))
                .filter(|id| fhir::primitive::is_id(id))
                .ok_or_else(|| bad(name, format!("'{name}' must reference a {rt} ({rt}/id)")))?;
            Ok(Some(id.to_string()))
        }
        _ => Err(bad(name, format!("'{name}' is given more than once"))),
    }
}

/// The booking facts of a stored Slot.
fn slot_state(slot: &Value) -> Result<SlotState, ApiError> {
    let status = slot
        .get("status")
        .and_then(Value::as_str)
        .and_then(SlotStatus::parse)
        .ok_or_else(|| ApiError::new(500, IssueType::Exception, "the slot has no valid status"))?;
    let instant = |v: Option<&Value>| -> Option<i64> {
        let text = v?.as_str()?;
        let dt =
            fhir::primitive::parse_date_time(text, fhir::primitive::Precision::Fraction, false)
                .ok()?;
        Some(dt.range().low)
    };
    Ok(SlotState {
        status,
        hold_expires_ms: extensions(slot, HOLD_EXPIRES)
            .next()
            .and_then(|e| instant(e.get("valueInstant"))),
        held_by: extensions(slot, HELD_BY)
            .next()
            .and_then(|e| e.pointer("/valueReference/reference"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Appointment/"))
            .map(str::to_string),
        start_ms: instant(slot.get("start")).unwrap_or(i64::MIN),
    })
}

fn body(stored: &store::Stored) -> Value {
    stored
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

/// `$hold` (`hold` true) or `$book`.
pub(crate) fn hold_or_book(
    tx: &mut CallerTx,
    ctx: &Ctx,
    hold: bool,
    params: Value,
) -> Result<Outcome, ApiError> {
    let op = if hold { "$hold" } else { "$book" };
    for p in params
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if !matches!(name, "slot" | "patient" | "appointment") {
            return Err(bad(
                name,
                format!("{op} has no parameter '{name}' (slot, patient, appointment)"),
            ));
        }
    }
    let slot_id = reference(&params, "slot", "Slot")?.ok_or_else(|| {
        bad(
            "slot",
            format!("{op} needs 'slot', a valueReference to the Slot"),
        )
    })?;
    let patient_id = reference(&params, "patient", "Patient")?;
    let held = reference(&params, "appointment", "Appointment")?;
    if hold && held.is_some() {
        return Err(bad(
            "appointment",
            "$hold makes a new appointment; book a hold with $book",
        ));
    }
    if held.is_none() && patient_id.is_none() {
        return Err(bad(
            "patient",
            format!("{op} needs 'patient' (or, for $book, the held 'appointment')"),
        ));
    }
    let now = tx.now();
    // the slot, read for write
    let prev_slot = match tx.current_for_write("Slot", &slot_id)? {
        Current::Visible(s) if !s.deleted => s,
        _ => {
            return Err(ApiError::new(
                404,
                IssueType::NotFound,
                format!("Slot/{slot_id} is not known (or no longer offered)"),
            )
            .at("slot"));
        }
    };
    let mut slot = body(&prev_slot);
    let state = slot_state(&slot)?;
    can_take(&state, held.as_deref(), now)
        .map_err(|why| conflict(format!("Slot/{slot_id}: {why}")))?;
    let target = if hold {
        AppointmentStatus::Pending
    } else {
        AppointmentStatus::Booked
    };
    // the appointment: the held one moves on, or a new one
    let stored_appointment = if let Some(aid) = &held {
        let prev = match tx.current_for_write("Appointment", aid)? {
            Current::Visible(a) if !a.deleted => a,
            _ => {
                return Err(bad(
                    "appointment",
                    format!("Appointment/{aid} is not known"),
                ));
            }
        };
        let mut appointment = body(&prev);
        let holds_this = appointment
            .get("slot")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| {
                s.get("reference").and_then(Value::as_str) == Some(&format!("Slot/{slot_id}"))
            });
        if !holds_this {
            return Err(bad(
                "appointment",
                format!("Appointment/{aid} is not for Slot/{slot_id}"),
            ));
        }
        let from = appointment
            .get("status")
            .and_then(Value::as_str)
            .and_then(AppointmentStatus::parse)
            .unwrap_or(AppointmentStatus::Proposed);
        transition(from, target).map_err(|f| conflict(f.to_string()))?;
        appointment["status"] = json!(target.code());
        let index = extract(ctx.registry, &appointment);
        tx.update(&prev, &mut appointment, &index)?
            .map_err(|r| refusal(r, "Appointment", aid))?
    } else {
        let pid = patient_id.clone().unwrap_or_default();
        match tx.current("Patient", &pid, false)? {
            Some(p) if !p.deleted => {}
            _ => return Err(bad("patient", format!("Patient/{pid} is not known"))),
        }
        // the schedule's actors take part: the service, the site, the clinician
        let schedule_ref = slot
            .pointer("/schedule/reference")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut participants = vec![json!({"actor": {"reference": format!("Patient/{pid}")},
            "required": "required", "status": "accepted"})];
        let mut modality = None;
        if let Some(sid) = schedule_ref.strip_prefix("Schedule/")
            && let Some(schedule) = tx.current("Schedule", sid, false)?
        {
            let schedule = body(&schedule);
            for a in schedule
                .get("actor")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = a.get("reference").and_then(Value::as_str) {
                    participants.push(json!({"actor": {"reference": r}, "required": "required", "status": "accepted"}));
                }
            }
            modality = extensions(&schedule, crate::rest::findcare::ext::MODALITY)
                .next()
                .and_then(|e| e.get("valueCode"))
                .cloned();
        }
        let mut appointment = json!({
            "resourceType": "Appointment",
            "status": target.code(),
            "slot": [{"reference": format!("Slot/{slot_id}")}],
            "start": slot.get("start").cloned().unwrap_or(Value::Null),
            "end": slot.get("end").cloned().unwrap_or(Value::Null),
            "created": fhir::primitive::format_instant(now).get(..10).unwrap_or_default(),
            "participant": participants,
        });
        if let Some(m) = modality {
            appointment["extension"] =
                json!([{"url": crate::rest::findcare::ext::MODALITY, "valueCode": m}]);
        }
        let id = tx.new_id();
        let index = extract(ctx.registry, &appointment);
        tx.create("Appointment", &id, &mut appointment, &index)?
            .map_err(|r| refusal(r, "Appointment", &id))?
    };
    // the slot follows, at the version read (a concurrent change fails this one)
    let mut exts: Vec<Value> = slot
        .get("extension")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|e| {
                    let url = e.get("url").and_then(Value::as_str);
                    url != Some(HOLD_EXPIRES) && url != Some(HELD_BY)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    exts.push(json!({"url": HELD_BY, "valueReference": {"reference": format!("Appointment/{}", stored_appointment.id)}}));
    if hold {
        exts.push(json!({"url": HOLD_EXPIRES,
            "valueInstant": fhir::primitive::format_instant(now + HOLD_MINUTES * 60_000)}));
    }
    slot["extension"] = Value::Array(exts);
    slot["status"] = json!(target.slot_status().code());
    let index = extract(ctx.registry, &slot);
    tx.update(&prev_slot, &mut slot, &index)?
        .map_err(|r| refusal(r, "Slot", &slot_id))?;
    let appointment = body(&stored_appointment);
    Ok(Outcome::Json(
        200,
        json!({"resourceType": "Bundle", "type": "searchset", "total": 1,
            "entry": [{"fullUrl": format!("{}/Appointment/{}", ctx.base_url, stored_appointment.id),
                "resource": appointment, "search": {"mode": "match"}}]}),
    ))
}

fn refusal(r: store::Refusal, rt: &str, id: &str) -> ApiError {
    match r {
        store::Refusal::Hidden => ApiError::not_found(format!("{rt}/{id} is not known")),
        store::Refusal::Forbidden(why) => ApiError::new(403, IssueType::Forbidden, why),
    }
}

/// The local Slot ids an Appointment references.
fn slot_ids(appointment: &Value) -> Vec<String> {
    appointment
        .get("slot")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("reference").and_then(Value::as_str))
        .filter_map(|r| r.strip_prefix("Slot/"))
        .filter(|id| fhir::primitive::is_id(id))
        .map(str::to_string)
        .collect()
}

/// Keeps a written Appointment and its Slots in step (a create, an update or a deletion —
/// `new` is `None` — through the plain REST interactions): the status change must be allowed
/// (409 naming the allowed ones), slots the appointment takes must be free, lapsed or its own
/// (409 otherwise), and slots it gives up — cancelled, entered in error, deleted, or dropped
/// from `slot` by a reschedule — are freed if it held them. Slots that are not stored here are
/// left alone. Runs in the request's transaction, before the Appointment is written.
pub(crate) fn appointment_written(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    previous: Option<&Value>,
    new: Option<&Value>,
) -> Result<(), ApiError> {
    let status = |v: Option<&Value>| {
        v.and_then(|a| a.get("status"))
            .and_then(Value::as_str)
            .and_then(AppointmentStatus::parse)
    };
    let (from, to) = (status(previous), status(new));
    if let (Some(from), Some(to)) = (from, to) {
        transition(from, to).map_err(|f| conflict(f.to_string()).at("Appointment.status"))?;
    }
    let now = tx.now();
    let old_slots = previous.map(slot_ids).unwrap_or_default();
    let new_slots = new.map(slot_ids).unwrap_or_default();
    // what each slot should become: the new status for the slots it names, free for the ones
    // it no longer names
    let mut wanted: Vec<(String, SlotStatus)> = Vec::new();
    for s in &new_slots {
        wanted.push((
            s.clone(),
            to.map(AppointmentStatus::slot_status)
                .unwrap_or(SlotStatus::Free),
        ));
    }
    for s in old_slots.iter().filter(|s| !new_slots.contains(s)) {
        wanted.push((s.clone(), SlotStatus::Free));
    }
    for (slot_id, desired) in wanted {
        let prev_slot = match tx.current_for_write("Slot", &slot_id)? {
            Current::Visible(s) if !s.deleted => s,
            _ => continue,
        };
        let mut slot = body(&prev_slot);
        let state = slot_state(&slot)?;
        let own = state.held_by.as_deref() == Some(id);
        let keep_hold = desired == SlotStatus::BusyTentative && own && state.status == desired;
        if desired == SlotStatus::Free {
            if !own {
                continue;
            }
        } else if own && state.status == desired {
            continue;
        } else if !(own && state.status != SlotStatus::Free) {
            can_take(&state, Some(id), now)
                .map_err(|why| conflict(format!("Slot/{slot_id}: {why}")).at("Appointment.slot"))?;
        }
        let mut exts: Vec<Value> = slot
            .get("extension")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|e| {
                        let url = e.get("url").and_then(Value::as_str);
                        url != Some(HOLD_EXPIRES) && url != Some(HELD_BY)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if desired != SlotStatus::Free {
            exts.push(json!({"url": HELD_BY, "valueReference": {"reference": format!("Appointment/{id}")}}));
        }
        if desired == SlotStatus::BusyTentative && !keep_hold {
            exts.push(json!({"url": HOLD_EXPIRES,
                "valueInstant": fhir::primitive::format_instant(now + HOLD_MINUTES * 60_000)}));
        }
        if exts.is_empty() {
            if let Value::Object(o) = &mut slot {
                o.remove("extension");
            }
        } else {
            slot["extension"] = Value::Array(exts);
        }
        slot["status"] = json!(desired.code());
        let index = extract(ctx.registry, &slot);
        tx.update(&prev_slot, &mut slot, &index)?
            .map_err(|r| refusal(r, "Slot", &slot_id))?;
    }
    Ok(())
}
