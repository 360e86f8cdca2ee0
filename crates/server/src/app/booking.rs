//! `POST Appointment/$hold` and `POST Appointment/$book` (IHE ITI-116/117 shapes): a slot
//! held for a patient (Appointment `pending`, Slot `busy-tentative` until the hold lapses) or
//! booked (Appointment `booked`, Slot `busy`), decided by `care::booking` and written in the
//! request's one transaction. The slot is read for write (row-locked on PostgreSQL, the single
//! writer on SQLite) and updated only at the version read, so of any number of concurrent
//! holds or books of one slot exactly one succeeds; the others get 409.
//!
//! A slot an appointment gives up (cancelled, rescheduled, deleted, a lapsed hold) goes to the
//! first fitting waitlisted patient as a time-limited hold ([`super::waitlist`]) or becomes
//! free; every status change writes its messages to the outbox ([`crate::notify`]) and a video
//! visit gets its join link ([`super::visit`]), all in the same transaction.

use care::booking::{AppointmentStatus, SlotState, SlotStatus, can_take, transition};
use fhir::IssueType;
use fhir::search::extract;
use serde_json::{Value, json};
use store::CallerTx;
use store::access::Current;

use super::Ctx;
use super::appointments::{
    modality_code, participant, schedule_actors, set_modality, slot_ids, status_of,
};
use super::params::bad;
use super::resources::body;
use crate::error::ApiError;

pub use care::booking::{HELD_BY, HOLD_EXPIRES};

/// Holds, video visits, the waitlist and reminders (configurable; see the README).
#[derive(Debug, Clone)]
pub struct BookingConfig {
    /// How long a `$hold` keeps its slot.
    pub hold_minutes: i64,
    /// How long a freed slot is held for the waitlisted patient it is offered to.
    pub waitlist_offer_minutes: i64,
    /// The video service's room URL; `{room}` is replaced by the visit's room token.
    pub video_url_template: String,
    /// The join link opens this many minutes before the start (and closes at the end).
    pub join_opens_minutes: i64,
    pub reminders: care::notify::ReminderConfig,
}

impl Default for BookingConfig {
    fn default() -> Self {
        BookingConfig {
            hold_minutes: 10,
            waitlist_offer_minutes: 30,
            video_url_template: "https://meet.jit.si/continuum-{room}".into(),
            join_opens_minutes: 15,
            reminders: Default::default(),
        }
    }
}

fn conflict(msg: impl Into<String>) -> ApiError {
    ApiError::new(409, IssueType::Conflict, msg)
}

/// For a stored Slot: the appointment that holds or booked it, unless the hold has lapsed
/// (`live_holder(now)(slot)`).
pub(crate) fn live_holder(now: i64) -> impl Fn(&Value) -> Option<String> {
    move |slot| {
        let state = slot_state(slot).ok()?;
        match state.status {
            SlotStatus::Busy => state.held_by,
            SlotStatus::BusyTentative if !care::booking::hold_lapsed(&state, now) => state.held_by,
            _ => None,
        }
    }
}

/// The booking facts of a stored Slot.
fn slot_state(slot: &Value) -> Result<SlotState, ApiError> {
    let status = slot
        .get("status")
        .and_then(Value::as_str)
        .and_then(SlotStatus::parse)
        .ok_or_else(|| ApiError::new(500, IssueType::Exception, "the slot has no valid status"))?;
    let instant = |v: Option<&Value>| v?.as_str().and_then(fhir::primitive::instant_ms);
    Ok(SlotState {
        status,
        hold_expires_ms: fhir::json::extensions(slot, HOLD_EXPIRES)
            .next()
            .and_then(|e| instant(e.get("valueInstant"))),
        held_by: fhir::json::extensions(slot, HELD_BY)
            .next()
            .and_then(|e| e.pointer("/valueReference/reference"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Appointment/"))
            .map(str::to_string),
        start_ms: instant(slot.get("start")).unwrap_or(i64::MIN),
    })
}

/// Writes a Slot's new status at the version read (`prev`): `holder` is the appointment that
/// holds or booked it (`held-by`; none frees it), and a hold (`busy-tentative`) lapses at
/// `hold_until` (`hold-expires`).
fn write_slot(
    tx: &mut CallerTx,
    prev: &store::Stored,
    mut slot: Value,
    status: SlotStatus,
    holder: Option<&str>,
    hold_until: i64,
) -> Result<(), ApiError> {
    let mut exts: Vec<Value> = slot
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| {
            let url = e.get("url").and_then(Value::as_str);
            url != Some(HOLD_EXPIRES) && url != Some(HELD_BY)
        })
        .cloned()
        .collect();
    if let Some(aid) = holder {
        exts.push(
            json!({"url": HELD_BY, "valueReference": {"reference": format!("Appointment/{aid}")}}),
        );
    }
    if status == SlotStatus::BusyTentative {
        exts.push(json!({"url": HOLD_EXPIRES,
            "valueInstant": fhir::primitive::format_instant(hold_until)}));
    }
    if exts.is_empty() {
        if let Value::Object(o) = &mut slot {
            o.remove("extension");
        }
    } else {
        slot["extension"] = Value::Array(exts);
    }
    slot["status"] = json!(status.code());
    let index = extract(fhir::search::registry(), &slot);
    // the slot follows the appointment, whose write was decided for the caller
    tx.on_behalf(store::OnBehalf::Slots)
        .update(prev, &mut slot, &index)?;
    Ok(())
}

/// `$hold` (`hold` true) or `$book`.
/// What `$hold` or `$book` is asked: the slot, and the patient or (for `$book`) the held
/// appointment.
#[derive(Debug, Clone)]
pub struct BookingRequest {
    pub hold: bool,
    /// The slot; for `$book` of a held appointment it may be left out (the hold's slot).
    pub slot_id: Option<String>,
    pub patient_id: Option<String>,
    pub held: Option<String>,
    /// The ServiceRequest (a referral's) the appointment is based on.
    pub based_on: Option<String>,
}

/// Names the ServiceRequest an appointment carries out (`basedOn`): one the caller can read,
/// for the appointment's patient.
fn add_based_on(
    tx: &mut CallerTx,
    appointment: &mut Value,
    sr: &str,
    patient_id: &str,
) -> Result<(), ApiError> {
    let request = tx
        .current("ServiceRequest", sr, false)?
        .filter(|s| !s.deleted)
        .map(|s| body(&s))
        .ok_or_else(|| bad("basedOn", format!("ServiceRequest/{sr} is not known")))?;
    if request
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        != Some(&format!("Patient/{patient_id}"))
    {
        return Err(bad(
            "basedOn",
            format!("ServiceRequest/{sr} is not for Patient/{patient_id}"),
        ));
    }
    let reference = json!({"reference": format!("ServiceRequest/{sr}")});
    match appointment.get_mut("basedOn").and_then(Value::as_array_mut) {
        Some(list) if list.contains(&reference) => {}
        Some(list) => list.push(reference),
        None => appointment["basedOn"] = json!([reference]),
    }
    Ok(())
}

/// The one Slot a held appointment is for.
fn held_slot(tx: &mut CallerTx, aid: &str) -> Result<String, ApiError> {
    let appointment = match tx.current_for_write("Appointment", aid)? {
        Current::Visible(a) if !a.deleted => body(&a),
        _ => {
            return Err(bad(
                "appointment",
                format!("Appointment/{aid} is not known"),
            ));
        }
    };
    match super::appointments::slot_ids(&appointment).as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(bad(
            "appointment",
            format!("Appointment/{aid} holds no slot; name the 'slot' to book"),
        )),
        _ => Err(bad(
            "slot",
            format!("Appointment/{aid} holds several slots; name the 'slot' to book"),
        )),
    }
}

/// Holds (`pending`, the slot `busy-tentative`) or books (`booked`, the slot `busy`) a slot, in
/// the caller's transaction; the answer is a Bundle with the one Appointment.
/// The refusal a hold or booking of a named slot would end in that reading alone can tell —
/// the slot unknown, or taken or held by another — so a race's losers are answered by a reader
/// without waiting for the writer. The booking decides again in its write transaction.
pub fn refusal_before_writing(tx: &mut CallerTx, request: &BookingRequest) -> Result<(), ApiError> {
    let (Some(slot_id), None) = (&request.slot_id, &request.held) else {
        return Ok(());
    };
    let Some(slot) = tx.current("Slot", slot_id, false)?.filter(|s| !s.deleted) else {
        return Err(unknown_slot(slot_id));
    };
    let state = slot_state(&body(&slot))?;
    can_take(&state, None, tx.now()).map_err(|why| conflict(format!("Slot/{slot_id}: {why}")))
}

fn unknown_slot(slot_id: &str) -> ApiError {
    ApiError::new(
        404,
        IssueType::NotFound,
        format!("Slot/{slot_id} is not known (or no longer offered)"),
    )
    .at("slot")
}

pub fn hold_or_book(
    tx: &mut CallerTx,
    ctx: &Ctx,
    request: BookingRequest,
) -> Result<Value, ApiError> {
    let BookingRequest {
        hold,
        slot_id,
        patient_id,
        held,
        based_on,
    } = request;
    let now = tx.now();
    let slot_id = match (slot_id, &held) {
        (Some(slot), _) => slot,
        (None, Some(aid)) => held_slot(tx, aid)?,
        (None, None) => {
            return Err(bad(
                "slot",
                "name the 'slot' (or, for $book, the held 'appointment')",
            ));
        }
    };
    // the slot, read for write
    let prev_slot = match tx.current_for_write("Slot", &slot_id)? {
        Current::Visible(s) if !s.deleted => s,
        _ => return Err(unknown_slot(&slot_id)),
    };
    let slot = body(&prev_slot);
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
        let from = status_of(&appointment).unwrap_or(AppointmentStatus::Proposed);
        transition(from, target).map_err(|f| conflict(f.to_string()))?;
        appointment["status"] = json!(target.code());
        if let Some(sr) = &based_on {
            let pid = crate::app::appointments::participant_refs(&appointment)
                .find_map(|r| r.strip_prefix("Patient/"))
                .unwrap_or("")
                .to_string();
            add_based_on(tx, &mut appointment, sr, &pid)?;
        }
        super::labels::apply_automatic_labels(tx, &mut appointment)?;
        super::visits::attach_join_link(tx, ctx, aid, &mut appointment)?;
        crate::app::notify::appointment_changed(tx, ctx, aid, Some(from), &appointment, None)?;
        crate::app::referrals::appointment_changed(tx, ctx, Some(from), &appointment)?;
        let index = extract(ctx.registry, &appointment);
        let stored = tx
            .update(&prev, &mut appointment, &index)?
            .map_err(|r| ApiError::refused(r, "Appointment", aid))?;
        if target == AppointmentStatus::Booked {
            super::waitlist::cancel_superseded(tx, ctx, &appointment)?;
        }
        stored
    } else {
        let pid = patient_id.clone().unwrap_or_default();
        let patient = match tx.current("Patient", &pid, false)? {
            Some(p) if !p.deleted => body(&p),
            _ => return Err(bad("patient", format!("Patient/{pid} is not known"))),
        };
        // the schedule's actors take part: the service, the site, the clinician
        let schedule_ref = slot
            .pointer("/schedule/reference")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut participants = vec![participant(&format!("Patient/{pid}"), "accepted")];
        let mut modality = None;
        if let Some(sid) = schedule_ref.strip_prefix("Schedule/")
            && let Some(schedule) = tx.current("Schedule", sid, false)?
        {
            let schedule = body(&schedule);
            participants.extend(schedule_actors(&schedule).map(|r| participant(r, "accepted")));
            modality = modality_code(&schedule).map(str::to_string);
            if modality.as_deref() == Some("video") {
                check_video_licence(tx, ctx, &schedule, &patient)?;
            }
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
            set_modality(&mut appointment, json!(m));
        }
        if let Some(sr) = &based_on {
            add_based_on(tx, &mut appointment, sr, &pid)?;
        }
        let id = tx.new_id();
        super::labels::apply_automatic_labels(tx, &mut appointment)?;
        super::visits::attach_join_link(tx, ctx, &id, &mut appointment)?;
        crate::app::notify::appointment_changed(tx, ctx, &id, None, &appointment, None)?;
        crate::app::referrals::appointment_changed(tx, ctx, None, &appointment)?;
        let index = extract(ctx.registry, &appointment);
        tx.create("Appointment", &id, &mut appointment, &index)?
            .map_err(|r| ApiError::refused(r, "Appointment", &id))?
    };
    // the slot follows, at the version read (a concurrent change fails this one)
    write_slot(
        tx,
        &prev_slot,
        slot,
        target.slot_status(),
        Some(&stored_appointment.id),
        now + ctx.booking.hold_minutes * 60_000,
    )?;
    let appointment = body(&stored_appointment);
    Ok(
        json!({"resourceType": "Bundle", "type": "searchset", "total": 1,
            "entry": [{"fullUrl": format!("{}/Appointment/{}", ctx.base_url, stored_appointment.id),
                "resource": appointment, "search": {"mode": "match"}}]}),
    )
}

/// A video visit needs a clinician of the service licensed in the state where the patient
/// is (their home address's state); 409 `business-rule` otherwise. Patients without a known
/// state are not refused here.
fn check_video_licence(
    tx: &mut CallerTx,
    ctx: &Ctx,
    schedule: &Value,
    patient: &Value,
) -> Result<(), ApiError> {
    let state =
        crate::app::findcare::home_address(patient).and_then(crate::app::findcare::address_state);
    let Some(state) = state else {
        return Ok(());
    };
    let directory = crate::app::directory::directory_snapshot(tx, ctx)?;
    let services: Vec<&str> = schedule_actors(schedule)
        .filter_map(|r| r.strip_prefix("HealthcareService/"))
        .collect();
    if services.is_empty()
        || services.iter().any(|s| {
            directory
                .licensed
                .get(*s)
                .is_some_and(|states| states.contains(&state))
        })
    {
        return Ok(());
    }
    Err(ApiError::new(
        409,
        IssueType::BusinessRule,
        format!(
            "no clinician of this service is licensed in {state}, where the patient is, for a video visit"
        ),
    ))
}

/// Keeps a written Appointment and its Slots in step (a create, an update or a deletion —
/// `new` is `None` — through the plain REST interactions): the status change must be allowed
/// (409 naming the allowed ones), slots the appointment takes must be free, lapsed or its own
/// (409 otherwise), and slots it gives up — cancelled, entered in error, deleted, or dropped
/// from `slot` by a reschedule — go to the waitlist or become free if it held them. Slots that
/// are not stored here are left alone. The server owns a video visit's join link and the
/// modality of an appointment on a known slot; a waitlist entry is checked. Runs in the
/// request's transaction, before the Appointment is written; writes the change's messages.
pub(crate) fn appointment_written(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    previous: Option<&Value>,
    mut new: Option<&mut Value>,
) -> Result<(), ApiError> {
    let (from, to) = (
        previous.and_then(status_of),
        new.as_deref().and_then(status_of),
    );
    if let (Some(from), Some(to)) = (from, to) {
        transition(from, to).map_err(|f| conflict(f.to_string()).at("Appointment.status"))?;
    }
    if care::access::is_family(&tx.caller().subject) {
        let changed = match (previous, new.as_deref()) {
            (Some(p), Some(n)) => family_fields(p) != family_fields(n),
            _ => false,
        };
        care::booking::family_change(from, to, changed)
            .map_err(|why| ApiError::new(403, IssueType::Forbidden, why))?;
    }
    if to == Some(AppointmentStatus::Waitlist)
        && from != Some(AppointmentStatus::Waitlist)
        && let Some(a) = new.as_deref_mut()
    {
        super::waitlist::check_entry(tx, a)?;
    }
    let now = tx.now();
    let old_slots = previous.map(slot_ids).unwrap_or_default();
    let new_slots = new.as_deref().map(slot_ids).unwrap_or_default();
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
    let mut modality: Option<Value> = None;
    for (slot_id, desired) in wanted {
        let prev_slot = match tx.current_for_write("Slot", &slot_id)? {
            Current::Visible(s) if !s.deleted => s,
            _ => continue,
        };
        let slot = body(&prev_slot);
        if new_slots.contains(&slot_id) && modality.is_none() {
            modality = schedule_modality(tx, &slot)?;
        }
        let state = slot_state(&slot)?;
        let own = state.held_by.as_deref() == Some(id);
        if desired == SlotStatus::Free {
            if own {
                give_up_slot(tx, ctx, &prev_slot, slot, &slot_id)?;
            }
            continue;
        } else if own && state.status == desired {
            continue;
        } else if !(own && state.status != SlotStatus::Free) {
            can_take(&state, Some(id), now)
                .map_err(|why| conflict(format!("Slot/{slot_id}: {why}")).at("Appointment.slot"))?;
        }
        write_slot(
            tx,
            &prev_slot,
            slot,
            desired,
            Some(id),
            now + ctx.booking.hold_minutes * 60_000,
        )?;
    }
    if let Some(appointment) = new {
        if let Some(m) = modality {
            set_modality(appointment, m);
        }
        super::visits::attach_join_link(tx, ctx, id, appointment)?;
        crate::app::notify::appointment_changed(tx, ctx, id, from, appointment, None)?;
        crate::app::referrals::appointment_changed(tx, ctx, from, appointment)?;
    }
    Ok(())
}

/// An appointment without what a family's cancellation may change: the status, the reason,
/// and what the server keeps (the version stamps, the join link and the offer's expiry). The
/// rest — `created`, which orders the waiting list, the labels, the narrative, the modality —
/// must stay as it was.
fn family_fields(appointment: &Value) -> Value {
    let mut a = appointment.clone();
    if let Value::Object(o) = &mut a {
        for k in ["status", "cancelationReason", "id"] {
            o.remove(k);
        }
        if let Some(Value::Object(meta)) = o.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            meta.retain(|_, v| !matches!(v, Value::Array(a) if a.is_empty()));
            if meta.is_empty() {
                o.remove("meta");
            }
        }
        if let Some(Value::Array(exts)) = o.get_mut("extension") {
            exts.retain(|e| {
                let url = e.get("url").and_then(Value::as_str);
                url != Some(care::booking::VIRTUAL_SERVICE)
                    && url != Some(care::profile::WAITLIST_OFFER)
            });
            if exts.is_empty() {
                o.remove("extension");
            }
        }
    }
    a
}

/// The modality (`valueCode`) of the schedule a stored slot belongs to.
fn schedule_modality(tx: &mut CallerTx, slot: &Value) -> Result<Option<Value>, ApiError> {
    let Some(sid) = slot
        .pointer("/schedule/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Schedule/"))
    else {
        return Ok(None);
    };
    Ok(tx
        .on_behalf(store::OnBehalf::Directory)
        .current("Schedule", sid, false)?
        .and_then(|s| modality_code(&body(&s)).map(|m| json!(m))))
}

/// A slot its appointment gave up (read for write at `prev`): offered to the first fitting
/// waitlisted patient as a hold lasting [`BookingConfig::waitlist_offer_minutes`], or freed.
fn give_up_slot(
    tx: &mut CallerTx,
    ctx: &Ctx,
    prev: &store::Stored,
    slot: Value,
    slot_id: &str,
) -> Result<(), ApiError> {
    match super::waitlist::offer(tx, ctx, slot_id, &slot)? {
        Some((appointment_id, until)) => write_slot(
            tx,
            prev,
            slot,
            SlotStatus::BusyTentative,
            Some(&appointment_id),
            until,
        ),
        None => write_slot(tx, prev, slot, SlotStatus::Free, None, 0),
    }
}

/// Slots looked at when ordering by distance (the earliest this many in the window).
const FIND_POOL: usize = 5000;

/// `POST Appointment/$find` (IHE ITI-115 shape): proposed Appointments for free, un-held slots
/// starting in [`start`, `end`), filtered by specialty, appointmentType, practitioner,
/// organization, location and modality; with a patient, video slots need a clinician licensed
/// in the patient's state and the options closest to home come first (video counts as no
/// travel), then the earliest. `_count` (default 10, at most 100) bounds the page; `total`
/// counts every fitting slot.
/// What `Appointment/$find` is asked: a window, how many, a modality, and who and what the
/// slots must be with (the service query as search parameters of HealthcareService).
#[derive(Debug, Clone)]
pub struct FindRequest {
    pub start: i64,
    pub end: i64,
    pub count: usize,
    pub wanted_modality: Option<care::findcare::Modality>,
    pub practitioner: Option<String>,
    pub organization: Option<String>,
    pub location: Option<String>,
    pub patient: Option<String>,
    pub service_params: Vec<(&'static str, String)>,
}

/// Proposed Appointments for the free, un-held slots that fit (IHE ITI-115 shape): closest to
/// the patient's home first, then earliest; video only where a clinician is licensed.
pub fn find(tx: &mut CallerTx, ctx: &Ctx, request: FindRequest) -> Result<Value, ApiError> {
    use care::findcare::Modality;
    use std::collections::{BTreeSet, HashMap};
    let FindRequest {
        start,
        end,
        count,
        wanted_modality,
        practitioner,
        organization: _,
        location,
        patient,
        service_params,
    } = request;
    super::resources::scope_reads(
        tx,
        &[
            "HealthcareService",
            "Schedule",
            "Slot",
            "Location",
            "PractitionerRole",
        ],
    )?;
    // a location is matched by the schedule's site below (a service need not list its sites)
    let services: Vec<store::Stored> = if service_params.is_empty() {
        Vec::new()
    } else {
        crate::app::resources::search(tx, ctx, "HealthcareService", &service_params)?
    };
    let mut service_ids: Option<BTreeSet<String>> =
        (!service_params.is_empty()).then(|| services.iter().map(|s| s.id.clone()).collect());
    if let Some(pr) = &practitioner {
        let roles = crate::app::resources::search(
            tx,
            ctx,
            "PractitionerRole",
            &[("practitioner", format!("Practitioner/{pr}"))],
        )?;
        let theirs: BTreeSet<String> = roles
            .iter()
            .map(body)
            .flat_map(|r| {
                r.get("healthcareService")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|s| {
                s.get("reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("HealthcareService/"))
                    .map(str::to_string)
            })
            .collect();
        service_ids = Some(match service_ids {
            Some(ids) => ids.intersection(&theirs).cloned().collect(),
            None => theirs,
        });
    }
    // the patient's home and state
    let (home, state) = match &patient {
        None => (None, None),
        Some(pid) => {
            let stored = tx
                .current("Patient", pid, false)?
                .filter(|s| !s.deleted)
                .ok_or_else(|| bad("patient", format!("Patient/{pid} is not known")))?;
            let p = body(&stored);
            let address = crate::app::findcare::home_address(&p);
            (
                address.and_then(crate::app::findcare::home_of).map(|h| h.0),
                address.and_then(crate::app::findcare::address_state),
            )
        }
    };
    let directory = crate::app::directory::directory_snapshot(tx, ctx)?;
    // the schedules that fit, with their distance from home (video: no travel)
    let mut distance_of: HashMap<&str, f64> = HashMap::new();
    let mut schedule_ids: Vec<&str> = Vec::new();
    for ((service, site, modality), ids) in &directory.schedule_of {
        if service_ids
            .as_ref()
            .is_some_and(|set| !set.contains(service))
        {
            continue;
        }
        if wanted_modality.is_some_and(|m| m != *modality) {
            continue;
        }
        if let Some(l) = &location
            && site.as_deref() != Some(l.as_str())
        {
            continue;
        }
        if *modality == Modality::Video
            && let Some(st) = &state
            && !directory
                .licensed
                .get(service)
                .is_some_and(|s| s.contains(st))
        {
            continue;
        }
        let miles = match (home, site) {
            (Some(h), Some(site)) => directory
                .locations
                .get(site)
                .and_then(|l| l.get("position"))
                .and_then(|p| {
                    Some(care::geo::Point {
                        lat: p.get("latitude")?.as_f64()?,
                        lng: p.get("longitude")?.as_f64()?,
                    })
                })
                .map(|pos| care::geo::haversine_miles(h, pos))
                .unwrap_or(f64::MAX),
            _ => 0.0,
        };
        for id in ids {
            distance_of.insert(id.as_str(), miles);
            schedule_ids.push(id.as_str());
        }
    }
    let pool = if home.is_some() { FIND_POOL } else { count };
    let from = start.max(tx.now());
    let (mut found, total) =
        tx.on_behalf(store::OnBehalf::Directory)
            .free_slots(&schedule_ids, from, end, pool)?;
    if home.is_some() {
        found.sort_by(|a, b| {
            let (da, db) = (
                distance_of.get(a.1.as_str()).copied().unwrap_or(f64::MAX),
                distance_of.get(b.1.as_str()).copied().unwrap_or(f64::MAX),
            );
            // whole miles, then the earliest
            (da.floor() as i64, a.2).cmp(&(db.floor() as i64, b.2))
        });
    }
    found.truncate(count);
    let mut entries = Vec::new();
    for (slot_id, schedule_id, s, e) in found {
        let schedule = directory
            .schedules
            .get(&schedule_id)
            .unwrap_or(&Value::Null);
        let mut participants: Vec<Value> = Vec::new();
        if let Some(pid) = &patient {
            participants.push(participant(&format!("Patient/{pid}"), "needs-action"));
        }
        participants.extend(schedule_actors(schedule).map(|r| participant(r, "needs-action")));
        let mut appointment = json!({"resourceType": "Appointment", "status": "proposed",
            "slot": [{"reference": format!("Slot/{slot_id}")}],
            "start": fhir::primitive::format_instant(s), "end": fhir::primitive::format_instant(e),
            "participant": participants});
        if let Some(m) = modality_code(schedule) {
            set_modality(&mut appointment, json!(m));
        }
        entries.push(json!({"resource": appointment, "search": {"mode": "match"}}));
    }
    Ok(json!({"resourceType": "Bundle", "type": "searchset", "total": total, "entry": entries}))
}

/// Frees every Slot whose hold has lapsed and cancels the pending Appointment that held it (a
/// lapsed waitlist offer ends that patient's wait); the slot then goes to the next waitlisted
/// patient it fits, or becomes free. Returns how many holds were released. Run every minute by
/// the server; a lapsed hold already counts as free when someone books or searches.
pub(crate) fn release_lapsed(tx: &mut CallerTx, ctx: &Ctx) -> Result<usize, ApiError> {
    let registry = fhir::search::registry();
    let now = tx.now();
    let req = crate::app::resources::search_request(
        registry,
        "Slot",
        &[
            ("status", "busy-tentative".into()),
            ("_count", "1000".into()),
        ],
    )?;
    let held = tx.search(&req)?.matches;
    let mut released = 0;
    for stored in held {
        let slot = body(&stored);
        let state = slot_state(&slot)?;
        if !care::booking::hold_lapsed(&state, now) {
            continue;
        }
        if let Some(aid) = &state.held_by
            && let Current::Visible(prev) = tx.current_for_write("Appointment", aid)?
            && !prev.deleted
        {
            let mut appointment = body(&prev);
            if status_of(&appointment) == Some(AppointmentStatus::Pending) {
                let offer = super::waitlist::is_offer(&appointment);
                appointment["status"] = json!("cancelled");
                appointment["cancelationReason"] = json!({"text": if offer {
                    "the waitlist offer lapsed before it was booked"
                } else {
                    "the hold lapsed before the appointment was booked"
                }});
                crate::app::notify::appointment_changed(
                    tx,
                    ctx,
                    aid,
                    Some(AppointmentStatus::Pending),
                    &appointment,
                    None,
                )?;
                let index = extract(registry, &appointment);
                tx.update(&prev, &mut appointment, &index)?
                    .map_err(|r| ApiError::refused(r, "Appointment", aid))?;
            }
        }
        give_up_slot(tx, ctx, &stored, slot, &stored.id)?;
        released += 1;
    }
    Ok(released)
}
