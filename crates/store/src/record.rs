//! A resource's JSON as stored — its id and meta stamped in, members in the order people read
//! them — and an AuditEvent prepared for the audit trail's chain with its compact index. A leaf:
//! the versioned-resource operations and the audit store both build on it.

use fhir::primitive::format_instant;
use serde_json::{Value, json};

/// Sets `id` and `meta.versionId`/`meta.lastUpdated` and returns the JSON text to store.
pub(crate) fn stamp(resource: &mut Value, id: &str, version: i64, now: i64) -> String {
    if let Value::Object(obj) = resource {
        obj.insert("id".into(), Value::String(id.to_string()));
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Value::Object(m) = meta {
            m.insert("versionId".into(), Value::String(version.to_string()));
            m.insert("lastUpdated".into(), Value::String(format_instant(now)));
        }
        // keep resourceType, id and meta first, as people expect to read them
        let mut ordered = serde_json::Map::with_capacity(obj.len());
        for key in ["resourceType", "id", "meta"] {
            if let Some(v) = obj.remove(key) {
                ordered.insert(key.to_string(), v);
            }
        }
        ordered.append(obj);
        *obj = ordered;
    }
    serde_json::to_string(resource).unwrap_or_default()
}

/// An AuditEvent ready for the chain: its id, its JSON as stored and served (with `id` and
/// `meta`), when it was recorded, its compact index rows, and — for a write's event — its row
/// in `audit_pending`.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub(crate) id: String,
    pub(crate) body: String,
    pub(crate) recorded: i64,
    pub(crate) index: AuditIndex,
    pub(crate) pending: Option<i64>,
}

impl Prepared {
    /// Stamps `event` with `id` and its meta (version 1, last updated when it was recorded)
    /// and derives its index rows.
    pub fn new(mut event: Value, id: String, now_ms: i64) -> Prepared {
        let recorded = instant_at(&event, &["/recorded"]).unwrap_or(now_ms);
        let index = index_of(&event);
        let body = stamp(&mut event, &id, 1, recorded);
        Prepared {
            id,
            body,
            recorded,
            index,
            pending: None,
        }
    }

    /// A prepared event from its stored JSON (start-up recovery, the move of an old trail).
    pub(crate) fn from_stored(id: String, body: String, now_ms: i64) -> Prepared {
        let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        // the time it was stamped with (what `verify` checks the column against)
        let recorded = instant_at(&event, &["/meta/lastUpdated", "/recorded"]).unwrap_or(now_ms);
        Prepared {
            id,
            index: index_of(&event),
            body,
            recorded,
            pending: None,
        }
    }
}

/// The first of these JSON pointers that holds an instant, in epoch milliseconds.
pub(crate) fn instant_at(event: &Value, pointers: &[&str]) -> Option<i64> {
    pointers
        .iter()
        .find_map(|p| event.pointer(p).and_then(Value::as_str))
        .and_then(fhir::primitive::instant_ms)
}

/// The elements of the array `key` of `event` (none when absent).
fn members<'v>(event: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    event
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The compact index of an event: what the accounting of disclosures and the audit searches
/// ask by. The codes are columns of the event's row (`subtype` its codes separated by spaces);
/// `refs` are (`entity` | `agent`, `Type/id`) and (`altid`, the agent's alternative id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditIndex {
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub type_code: Option<String>,
    pub subtype: Option<String>,
    pub refs: Vec<(&'static str, String)>,
}

impl AuditIndex {
    /// The Patients the event names (as entity or agent).
    pub fn patients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, v) in self.refs.iter().filter(|(k, _)| *k != "altid") {
            if let Some(id) = v.strip_prefix("Patient/")
                && !out.iter().any(|p| p == id)
            {
                out.push(id.to_string());
            }
        }
        out
    }
}

/// The longest value the audit index holds, in bytes (longer ones are cut at a character
/// boundary; searches match the cut value).
pub const MAX_INDEX_VALUE: usize = 256;

pub fn index_of(event: &Value) -> AuditIndex {
    let mut refs: Vec<(&'static str, String)> = Vec::new();
    let mut push = |kind: &'static str, mut value: String| {
        // an index value is bounded (an altId can carry what a caller typed as a user name;
        // PostgreSQL refuses index keys past a few kilobytes)
        if value.len() > MAX_INDEX_VALUE {
            let mut end = MAX_INDEX_VALUE;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
        }
        if !refs.iter().any(|(k, v)| *k == kind && *v == value) {
            refs.push((kind, value));
        }
    };
    let reference = |v: &Value| {
        v.get("reference")
            .and_then(Value::as_str)
            .and_then(fhir::json::split_reference)
            .map(|(t, id)| format!("{t}/{id}"))
    };
    for agent in members(event, "agent") {
        if let Some(r) = agent.get("who").and_then(reference) {
            push("agent", r);
        }
        if let Some(alt) = agent.get("altId").and_then(Value::as_str) {
            push("altid", alt.to_string());
        }
    }
    for entity in members(event, "entity") {
        if let Some(r) = entity.get("what").and_then(reference) {
            push("entity", r);
        }
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let subtypes: Vec<&str> = members(event, "subtype")
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .collect();
    AuditIndex {
        action: text(event.get("action")),
        outcome: text(event.get("outcome")),
        type_code: text(event.pointer("/type/code")),
        subtype: (!subtypes.is_empty()).then(|| subtypes.join(" ")),
        refs,
    }
}
