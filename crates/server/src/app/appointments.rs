//! Reading and shaping Appointments and Schedules as booking, the waitlist, notifications and
//! visits need them: the schedule's actors, the participants, the modality, the status, the
//! slots an appointment holds.

use care::booking::AppointmentStatus;
use serde_json::{Value, json};

/// The modality (`in-person`, `video`) a Schedule or an Appointment carries in its extension.
pub fn modality_code(resource: &Value) -> Option<&str> {
    fhir::json::extensions(resource, care::profile::MODALITY)
        .next()
        .and_then(|e| e.get("valueCode"))
        .and_then(Value::as_str)
}

/// Whether an Appointment JSON is a video visit.
pub fn is_video(appointment: &Value) -> bool {
    modality_code(appointment) == Some("video")
}

/// The references of a Schedule's actors (its service, site, clinician).
pub fn schedule_actors(schedule: &Value) -> impl Iterator<Item = &str> {
    schedule
        .get("actor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("reference").and_then(Value::as_str))
}

/// The references of an Appointment's participants.
pub fn participant_refs(appointment: &Value) -> impl Iterator<Item = &str> {
    appointment
        .get("participant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
}

/// A required participant of an Appointment.
pub fn participant(reference: &str, status: &str) -> Value {
    json!({"actor": {"reference": reference}, "required": "required", "status": status})
}

/// The status of an Appointment JSON.
pub fn status_of(appointment: &Value) -> Option<AppointmentStatus> {
    appointment
        .get("status")
        .and_then(Value::as_str)
        .and_then(AppointmentStatus::parse)
}

/// Sets an appointment's modality extension (replacing any other).
pub fn set_modality(appointment: &mut Value, modality: Value) {
    let url = care::profile::MODALITY;
    let mut exts: Vec<Value> = appointment
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) != Some(url))
        .cloned()
        .collect();
    exts.push(json!({"url": url, "valueCode": modality}));
    appointment["extension"] = Value::Array(exts);
}

/// The local Slot ids an Appointment references.
pub fn slot_ids(appointment: &Value) -> Vec<String> {
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
