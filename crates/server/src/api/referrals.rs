//! Referral worklists and measures (`/api/worklists/referrals`, `/api/metrics/referrals`):
//! what an organisation received or sent, by where each referral stands against its service
//! level, and the alliance's referral measures as JSON or CSV — each one read-only unit of
//! work under the caller's view (`app::referrals`).
//!
//! - `GET /api/worklists/referrals?organization=ID&state=open|at-risk|overdue|closed&role=received|sent&_count=N&cursor=…`
//!   (most urgent first; closed: most recently ended first; `_count` default 50, at most 200).
//! - `GET /api/metrics/referrals?from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=organization|service|month&role=received|sent&organization=ID&format=json|csv`
//!   (`to` exclusive; default the last 365 days; without `organization`, administrators only).

use std::sync::Arc;

use care::referral::metrics::{GroupBy, Measures};
use fhir::IssueType;
use serde_json::{Value, json};
use store::Caller;
use store::referrals::WorklistState;

use crate::app::referrals::{MetricsRequest, WorklistRequest};
use crate::app::{App, Prefer, Work};
use crate::error::ApiError;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueType::Value, msg)
}

fn only(query: &[(String, String)], known: &[&str]) -> Result<(), ApiError> {
    for (k, _) in query {
        if !known.contains(&k.as_str()) {
            return Err(bad(format!(
                "'{k}' is not a parameter here ({})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn get<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn organization(query: &[(String, String)], required: bool) -> Result<Option<String>, ApiError> {
    match get(query, "organization") {
        Some(o) => {
            let id = o.strip_prefix("Organization/").unwrap_or(o);
            if !fhir::primitive::is_id(id) {
                return Err(bad(format!("'{o}' is not an Organization id")));
            }
            Ok(Some(id.to_string()))
        }
        None if required => Err(bad(
            "'organization' is required: the Organization whose worklist this is",
        )),
        None => Ok(None),
    }
}

fn received(query: &[(String, String)]) -> Result<bool, ApiError> {
    match get(query, "role").unwrap_or("received") {
        "received" => Ok(true),
        "sent" => Ok(false),
        r => Err(bad(format!("role '{r}' is not received or sent"))),
    }
}

/// `GET /api/worklists/referrals?…`.
pub async fn worklist(
    app: &App,
    caller: Arc<Caller>,
    query: Vec<(String, String)>,
    address: Option<String>,
) -> Result<Value, ApiError> {
    only(
        &query,
        &["organization", "state", "role", "_count", "cursor"],
    )?;
    let state = match get(&query, "state").unwrap_or("open") {
        "open" => WorklistState::Open,
        "at-risk" => WorklistState::AtRisk,
        "overdue" => WorklistState::Overdue,
        "closed" => WorklistState::Closed,
        s => {
            return Err(bad(format!(
                "state '{s}' is not open, at-risk, overdue or closed"
            )));
        }
    };
    let count = match get(&query, "_count") {
        None => 50,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| bad(format!("_count '{c}' is not a number from 1 to 200")))?,
    };
    let request = WorklistRequest {
        organization: organization(&query, true)?.unwrap_or_default(),
        received: received(&query)?,
        state,
        count,
        after: get(&query, "cursor").map(str::to_string),
    };
    let ctx = app.ctx(String::new(), Prefer::default());
    let mut page = app
        .run(
            caller,
            Work::request("referral-worklist", false, address),
            ctx,
            move |tx, ctx| crate::app::referrals::worklist(tx, ctx, request),
        )
        .await?;
    // the next page's link, with the same parameters
    if let Some(cursor) = page.get("next").and_then(Value::as_str).map(str::to_string) {
        let mut params: Vec<(String, String)> =
            query.into_iter().filter(|(k, _)| k != "cursor").collect();
        params.push(("cursor".into(), cursor));
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        page["next"] = json!(format!("/api/worklists/referrals?{q}"));
    }
    Ok(page)
}

fn day(query: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    match get(query, key) {
        None => Ok(None),
        Some(d) => fhir::primitive::parse_date_time(d, fhir::primitive::Precision::Day, false)
            .ok()
            .map(|v| {
                Some(care::slots::local_to_utc(
                    care::slots::local_day(v.range().low + 12 * 3_600_000),
                    0,
                ))
            })
            .ok_or_else(|| bad(format!("{key} '{d}' is not a date (YYYY-MM-DD)"))),
    }
}

/// The measures, as JSON or CSV: (content type, body).
pub async fn metrics(
    app: &App,
    caller: Arc<Caller>,
    query: Vec<(String, String)>,
    address: Option<String>,
) -> Result<(&'static str, String), ApiError> {
    only(
        &query,
        &["from", "to", "group_by", "role", "organization", "format"],
    )?;
    let now = app.store().clock().now_ms();
    let to_ms = day(&query, "to")?
        .unwrap_or_else(|| care::slots::local_to_utc(care::slots::local_day(now) + 1, 0));
    let from_ms = day(&query, "from")?.unwrap_or(to_ms - 365 * 86_400_000);
    if from_ms >= to_ms {
        return Err(bad("'from' must be before 'to'"));
    }
    if to_ms - from_ms > 5 * 366 * 86_400_000 {
        return Err(bad("a period of at most five years is measured at once"));
    }
    let sent = !received(&query)?;
    let group_by = match get(&query, "group_by") {
        None => GroupBy::Nothing,
        Some("organization") => GroupBy::Organization { sent },
        Some("service") => GroupBy::Service,
        Some("month") => GroupBy::Month,
        Some(g) => {
            return Err(bad(format!(
                "group_by '{g}' is not organization, service or month"
            )));
        }
    };
    let csv = match get(&query, "format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        f => return Err(bad(format!("format '{f}' is not json or csv"))),
    };
    let request = MetricsRequest {
        from_ms,
        to_ms,
        group_by,
        organization: organization(&query, false)?,
    };
    let ctx = app.ctx(String::new(), Prefer::default());
    let r = request.clone();
    let groups = app
        .run(
            caller,
            Work::request("referral-metrics", false, address),
            ctx,
            move |tx, ctx| crate::app::referrals::metrics(tx, ctx, &r),
        )
        .await?;
    if csv {
        Ok(("text/csv; charset=utf-8", as_csv(&groups)))
    } else {
        Ok((
            "application/json",
            json!({
                "from": fhir::primitive::format_instant(request.from_ms),
                "to": fhir::primitive::format_instant(request.to_ms),
                "groupBy": get(&query, "group_by").unwrap_or("none"),
                "groups": groups.iter().map(as_json).collect::<Vec<_>>(),
            })
            .to_string(),
        ))
    }
}

fn as_json(m: &Measures) -> Value {
    json!({
        "group": m.group,
        "volume": m.volume,
        "open": m.open,
        "accepted": m.accepted,
        "rejected": m.rejected,
        "cancelled": m.cancelled,
        "failed": m.failed,
        "expired": m.expired,
        "completed": m.completed,
        "acceptanceRate": m.acceptance_rate(),
        "rejectionRate": m.rejection_rate(),
        "medianBusinessDaysToAccept": m.median_days_to_accept,
        "medianBusinessDaysToBook": m.median_days_to_book,
        "medianBusinessDaysToSeen": m.median_days_to_seen,
        "medianBusinessDaysToReport": m.median_days_to_report,
        "withinServiceLevel": m.within_service_level,
        "withinServiceLevelRate": m.within_service_level_rate(),
        "leakage": m.leakage(),
        "leakageRate": m.leakage_rate(),
        "loopClosure": {
            "denominator": m.loop_closure.denominator,
            "numerator": m.loop_closure.numerator,
            "rate": m.loop_closure.rate(),
        },
    })
}

const CSV_HEADER: &str = "group,volume,open,accepted,rejected,cancelled,failed,expired,completed,acceptance_rate,rejection_rate,median_days_to_accept,median_days_to_book,median_days_to_seen,median_days_to_report,within_service_level,within_service_level_rate,leakage,leakage_rate,loop_closure_denominator,loop_closure_numerator,loop_closure_rate";

fn as_csv(groups: &[Measures]) -> String {
    let num = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for m in groups {
        let group = if m.group.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", m.group.replace('"', "\"\""))
        } else {
            m.group.clone()
        };
        out.push_str(&format!(
            "{group},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            m.volume,
            m.open,
            m.accepted,
            m.rejected,
            m.cancelled,
            m.failed,
            m.expired,
            m.completed,
            num(m.acceptance_rate()),
            num(m.rejection_rate()),
            num(m.median_days_to_accept),
            num(m.median_days_to_book),
            num(m.median_days_to_seen),
            num(m.median_days_to_report),
            m.within_service_level,
            num(m.within_service_level_rate()),
            m.leakage(),
            num(m.leakage_rate()),
            m.loop_closure.denominator,
            m.loop_closure.numerator,
            num(m.loop_closure.rate()),
        ));
    }
    out
}
