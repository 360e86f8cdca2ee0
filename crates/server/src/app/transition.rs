//! The transition registry (issue 20, first slice): every young person aged 12–26 the caller
//! may see, where each of the Six Core Elements stands (`care::transition`) from the birth date
//! and the elements recorded — a Task coded with the element (`care::profile::TRANSITION_ELEMENT`)
//! for the young person, `completed` — and what is due or overdue. Read-only, as of a day.

use care::transition::{Element, ElementState, History, TransitionConfig};
use serde_json::{Value, json};
use store::CallerTx;

use super::Ctx;
use super::resources::{Reader, all_matching, body};
use crate::error::ApiError;

/// What the registry is asked.
#[derive(Debug, Clone)]
pub struct RegistryRequest {
    pub as_of_ms: i64,
    /// Only those with something due (`Some(false)`) or overdue (`Some(true)`).
    pub overdue: Option<bool>,
    /// Only those for whom this element is due or overdue.
    pub element: Option<Element>,
    pub count: usize,
}

/// When a recorded element was done.
fn done_on(task: &Value) -> Option<i64> {
    ["/executionPeriod/end", "/lastModified", "/authoredOn"]
        .iter()
        .find_map(|p| task.pointer(p).and_then(Value::as_str))
        .and_then(fhir::json::instant_ms)
}

fn state_json(e: Element, s: &ElementState) -> Value {
    let at = |ms: i64| fhir::primitive::format_instant(ms);
    let mut v = json!({"element": e.code(), "words": e.words(), "state": s.code()});
    match s {
        ElementState::NotYet { due_ms: Some(d) } => v["due"] = json!(at(*d)),
        ElementState::Due { due_ms, late_ms } | ElementState::Overdue { due_ms, late_ms } => {
            v["due"] = json!(at(*due_ms));
            v["overdueFrom"] = json!(at(*late_ms));
        }
        ElementState::Done { on_ms } => v["done"] = json!(at(*on_ms)),
        _ => {}
    }
    v
}

/// `GET /api/transition/registry`: the young people, most overdue first.
pub fn registry(tx: &mut CallerTx, ctx: &Ctx, r: RegistryRequest) -> Result<Value, ApiError> {
    let config = TransitionConfig::default();
    let day = |ms: i64| fhir::primitive::format_instant(ms)[..10].to_string();
    // born after the day 27 years ago and on or before the day 12 years ago (a day's margin:
    // the exact ages are counted below)
    let years = |n: i64| n * 36525 / 100 * 86_400_000;
    let patients = all_matching(
        tx,
        ctx.registry,
        "Patient",
        &[
            (
                "birthdate",
                format!(
                    "gt{}",
                    day(r.as_of_ms - years(config.leaves_at as i64) - 86_400_000)
                ),
            ),
            (
                "birthdate",
                format!(
                    "le{}",
                    day(r.as_of_ms - years(config.enters_at as i64) + 86_400_000)
                ),
            ),
        ],
        Reader::Caller,
    )?;
    // the elements recorded, for everyone at once
    let tasks = all_matching(
        tx,
        ctx.registry,
        "Task",
        &[
            ("code", format!("{}|", care::profile::TRANSITION_ELEMENT)),
            ("status", "completed".into()),
        ],
        Reader::Caller,
    )?;
    let mut histories: std::collections::HashMap<String, History> = Default::default();
    for t in &tasks {
        let t = body(t);
        let Some(pid) = t
            .pointer("/for/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
        else {
            continue;
        };
        let element = t["code"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["system"] == care::profile::TRANSITION_ELEMENT)
            .find_map(|c| c["code"].as_str().and_then(Element::parse));
        if let (Some(e), Some(on)) = (element, done_on(&t)) {
            histories
                .entry(pid.to_string())
                .or_default()
                .done
                .push((e, on));
        }
    }
    let mut rows: Vec<(u8, i64, Value)> = Vec::new();
    for p in &patients {
        let b = body(p);
        let Some(birth) = b["birthDate"]
            .as_str()
            .and_then(care::access::BirthDate::parse)
        else {
            continue;
        };
        if !care::transition::in_registry(birth, r.as_of_ms, &config) {
            continue;
        }
        let history = histories.remove(&p.id).unwrap_or_default();
        let states = care::transition::status(birth, &history, r.as_of_ms, &config);
        let overdue: Vec<&(Element, ElementState)> = states
            .iter()
            .filter(|(_, s)| matches!(s, ElementState::Overdue { .. }))
            .collect();
        let due: Vec<&(Element, ElementState)> = states
            .iter()
            .filter(|(_, s)| matches!(s, ElementState::Due { .. }))
            .collect();
        let keep = match r.overdue {
            Some(true) => !overdue.is_empty(),
            Some(false) => !due.is_empty() || !overdue.is_empty(),
            None => true,
        } && r.element.is_none_or(|e| {
            states.iter().any(|(x, s)| {
                *x == e && matches!(s, ElementState::Due { .. } | ElementState::Overdue { .. })
            })
        });
        if !keep {
            continue;
        }
        let next = care::transition::next_due(&states);
        let rank = if !overdue.is_empty() {
            0
        } else if !due.is_empty() {
            1
        } else {
            2
        };
        let order = next.and_then(|(_, s)| s.due_ms()).unwrap_or(i64::MAX);
        rows.push((rank, order, json!({
            "patient": format!("Patient/{}", p.id),
            "birthDate": b["birthDate"],
            "age": care::access::age_on(birth, r.as_of_ms),
            "managingOrganization": b.pointer("/managingOrganization/reference"),
            "next": next.map(|(e, s)| state_json(e, &s)),
            "overdue": overdue.iter().map(|(e, _)| e.code()).collect::<Vec<_>>(),
            "due": due.iter().map(|(e, _)| e.code()).collect::<Vec<_>>(),
            "elements": states.iter().map(|(e, s)| state_json(*e, s)).collect::<Vec<_>>(),
            "transferNeeds": care::transition::missing_for_transfer(&history).iter().map(|e| e.code()).collect::<Vec<_>>(),
        })));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    let total = rows.len();
    let items: Vec<Value> = rows.into_iter().take(r.count).map(|(_, _, v)| v).collect();
    let done = items.len();
    Ok(json!({
        "asOf": day(r.as_of_ms),
        "total": total,
        "count": done,
        "items": items,
    }))
}
