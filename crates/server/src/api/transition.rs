//! The transition registry (`GET /api/transition/registry`): the young people aged 12–26 the
//! caller may see and where each of the Six Core Elements stands — most overdue first — one
//! read-only unit of work (`app::transition`).
//!
//! - `GET /api/transition/registry?state=due|overdue|all&element=CODE&as_of=YYYY-MM-DD&_count=N`
//!   (`state` default `all`: everyone in the registry; `due`: something due or overdue;
//!   `overdue`: something overdue; `element`: that element due or overdue; `age=12-14`: an age
//!   band; `organization=ID`: managed by that organisation; `_count` default 200, at most 1,000).
//!   Each young person's row: the elements' states, what is due and overdue, the transfer (sent,
//!   first adult visit, who is responsible) and, from 17, who may act for them at 18.
//!
//! An element is recorded by writing a Task for the young person, `status: completed`, `code`
//! in `http://continuum-alliance.org/fhir/CodeSystem/transition-element` (`policy`, `readiness`,
//! `education`, `plan-of-care`, `medical-summary`, `consent-talk`, `decision-making`,
//! `transfer-package`, `first-adult-visit`, `completion`, `feedback`), done on its
//! `executionPeriod.end`.

use std::sync::Arc;

use care::transition::Element;
use fhir::IssueType;
use serde_json::Value;
use store::Caller;

use crate::app::transition::RegistryRequest;
use crate::app::{App, Prefer, Work};
use crate::error::ApiError;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueType::Value, msg)
}

/// `GET /api/metrics/transition?as_of=YYYY-MM-DD&organization=ID&format=json|csv`: per
/// organisation and age band, the share of young people with each element done (of those it
/// applies to), the overdue counts; per organisation and adult recipient, the transfers sent,
/// completed, within six months, and the median age at transfer. JSON, or CSV (`format=csv`:
/// one line per group and element, then one per transfer group).
pub async fn metrics(
    app: &App,
    caller: Arc<Caller>,
    query: Vec<(String, String)>,
    address: Option<String>,
) -> Result<(&'static str, String), ApiError> {
    let known = ["as_of", "organization", "format"];
    if let Some((k, _)) = query.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(bad(format!(
            "'{k}' is not a parameter here ({})",
            known.join(", ")
        )));
    }
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let as_of_ms = match get("as_of") {
        None => app.store().clock().now_ms(),
        Some(d) => crate::app::transition::day_noon_ms(d)
            .ok_or_else(|| bad(format!("as_of '{d}' is not a date (YYYY-MM-DD)")))?,
    };
    let csv = match get("format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        f => return Err(bad(format!("format '{f}' is not json or csv"))),
    };
    let organization = get("organization").map(|o| {
        if o.starts_with("Organization/") {
            o.to_string()
        } else {
            format!("Organization/{o}")
        }
    });
    let ctx = app.ctx(String::new(), Prefer::default());
    let (groups, transfers) = app
        .run(
            caller,
            Work::request("transition-metrics", false, address),
            ctx,
            move |tx, ctx| crate::app::transition::metrics(tx, ctx, as_of_ms, organization),
        )
        .await?;
    let rate = |v: Option<f64>| v.map(|x| (x * 10_000.0).round() / 10_000.0);
    if csv {
        let num = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
        let mut out = String::from(
            "organization,age_band,element,young_people,applies,done,overdue,share_done\n",
        );
        for g in &groups {
            for (e, c) in &g.elements {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{}\n",
                    g.organization,
                    g.band,
                    e.code(),
                    g.young_people,
                    c.applies,
                    c.done,
                    c.overdue,
                    num(c.share_done())
                ));
            }
        }
        out.push_str("\norganization,recipient,sent,completed,judged,completed_within_6_months,within_6_months_rate,median_age_at_transfer\n");
        for t in &transfers {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                t.organization,
                t.recipient,
                t.sent,
                t.completed,
                t.judged,
                t.completed_within_6_months,
                num(t.within_6_months_rate()),
                t.median_age_at_transfer
                    .map(|a| format!("{a:.1}"))
                    .unwrap_or_default()
            ));
        }
        return Ok(("text/csv; charset=utf-8", out));
    }
    let body = serde_json::json!({
        "asOf": fhir::primitive::format_instant(as_of_ms)[..10].to_string(),
        "groups": groups.iter().map(|g| serde_json::json!({
            "organization": g.organization,
            "ageBand": g.band,
            "youngPeople": g.young_people,
            "withOverdue": g.with_overdue,
            "elements": g.elements.iter().map(|(e, c)| serde_json::json!({
                "element": e.code(),
                "applies": c.applies,
                "done": c.done,
                "overdue": c.overdue,
                "shareDone": rate(c.share_done()),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "transfers": transfers.iter().map(|t| serde_json::json!({
            "organization": t.organization,
            "recipient": t.recipient,
            "sent": t.sent,
            "completed": t.completed,
            "judged": t.judged,
            "completedWithin6Months": t.completed_within_6_months,
            "within6MonthsRate": rate(t.within_6_months_rate()),
            "medianAgeAtTransfer": t.median_age_at_transfer.map(|a| (a * 10.0).round() / 10.0),
        })).collect::<Vec<_>>(),
    });
    Ok(("application/json", body.to_string()))
}

/// `GET /api/transition/registry?…`.
pub async fn registry(
    app: &App,
    caller: Arc<Caller>,
    query: Vec<(String, String)>,
    address: Option<String>,
) -> Result<Value, ApiError> {
    let known = ["state", "element", "as_of", "age", "organization", "_count"];
    if let Some((k, _)) = query.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(bad(format!(
            "'{k}' is not a parameter here ({})",
            known.join(", ")
        )));
    }
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let overdue = match get("state").unwrap_or("all") {
        "all" => None,
        "due" => Some(false),
        "overdue" => Some(true),
        s => return Err(bad(format!("state '{s}' is not all, due or overdue"))),
    };
    let element = match get("element") {
        None => None,
        Some(e) => Some(Element::parse(e).ok_or_else(|| {
            bad(format!(
                "'{e}' is not a transition element ({})",
                Element::ALL
                    .iter()
                    .map(|e| e.code())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
    };
    let now = app.store().clock().now_ms();
    let as_of_ms = match get("as_of") {
        None => now,
        Some(d) => crate::app::transition::day_noon_ms(d)
            .ok_or_else(|| bad(format!("as_of '{d}' is not a date (YYYY-MM-DD)")))?,
    };
    let count = match get("_count") {
        None => 200,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad(format!("_count '{c}' is not a number from 1 to 1000")))?,
    };
    let ages = match get("age") {
        None => None,
        Some(a) => {
            let parsed = a.split_once('-').and_then(|(lo, hi)| {
                Some((
                    lo.trim().parse::<i32>().ok()?,
                    hi.trim().parse::<i32>().ok()?,
                ))
            });
            match parsed {
                Some((lo, hi)) if lo <= hi => Some((lo, hi)),
                _ => {
                    return Err(bad(format!(
                        "age '{a}' is not an age band such as 12-14 (from-to, in years)"
                    )));
                }
            }
        }
    };
    let organization = get("organization").map(|o| {
        if o.starts_with("Organization/") {
            o.to_string()
        } else {
            format!("Organization/{o}")
        }
    });
    let request = RegistryRequest {
        as_of_ms,
        overdue,
        element,
        ages,
        organization,
        patient: None,
        count,
    };
    let ctx = app.ctx(String::new(), Prefer::default());
    app.run(
        caller,
        Work::request("transition-registry", false, address),
        ctx,
        move |tx, ctx| crate::app::transition::registry(tx, ctx, request),
    )
    .await
}
