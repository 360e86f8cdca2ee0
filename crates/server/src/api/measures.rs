//! The alliance's access and quality measures (`GET /api/measures`), as JSON or CSV — one
//! read-only unit of work under the caller (`app::measures`).
//!
//! `GET /api/measures?from=YYYY-MM-DD&to=YYYY-MM-DD&by=month,organization,service,age_band&organization=ID&measure=ID,…&audience=alliance|public&format=json|csv`
//! (`to` exclusive; default the last twelve months to the end of this one; `by` default
//! `month`; without `organization`, those who see everything only).

use std::sync::Arc;

use care::measures::{Dimensions, Row, catalog};
use fhir::IssueType;
use serde_json::{Value, json};
use store::Caller;

use crate::app::measures::MeasuresRequest;
use crate::app::{App, Prefer, Work};
use crate::error::ApiError;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueType::Value, msg)
}

fn get<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn day(query: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    match get(query, key) {
        None => Ok(None),
        Some(d) => fhir::primitive::parse_date_time(d, fhir::primitive::Precision::Day, false)
            .ok()
            .filter(|_| d.len() == 10)
            .map(|v| {
                Some(care::slots::local_to_utc(
                    care::slots::local_day(v.range().low + 12 * 3_600_000),
                    0,
                ))
            })
            .ok_or_else(|| bad(format!("{key} '{d}' is not a date (YYYY-MM-DD)"))),
    }
}

/// Reads the query into a request (400 in words for what it cannot be).
pub fn request(
    query: &[(String, String)],
    now_ms: i64,
) -> Result<(MeasuresRequest, bool), ApiError> {
    const KNOWN: &[&str] = &[
        "from",
        "to",
        "by",
        "organization",
        "measure",
        "audience",
        "format",
    ];
    if let Some((k, _)) = query.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!(
            "'{k}' is not a parameter here ({})",
            KNOWN.join(", ")
        )));
    }
    // by default: the twelve months up to the end of this one (US Eastern)
    let today = care::slots::local_day(now_ms);
    let (y, m, _) = care::slots::civil_from_days(today);
    let month_start = |y: i32, m: i32| {
        // m counted from 1, may run past 12 or below 1
        let (y, m) = (y + (m - 1).div_euclid(12), (m - 1).rem_euclid(12) + 1);
        care::slots::local_to_utc(care::slots::days_from_civil(y, m as u32, 1), 0)
    };
    let to_ms = day(query, "to")?.unwrap_or_else(|| month_start(y, m as i32 + 1));
    let from_ms = day(query, "from")?.unwrap_or_else(|| month_start(y, m as i32 - 11));
    if from_ms >= to_ms {
        return Err(bad("'from' must be before 'to'"));
    }
    if to_ms - from_ms > 5 * 366 * 86_400_000 {
        return Err(bad("a period of at most five years is measured at once"));
    }
    let mut dims = Dimensions::default();
    for d in get(query, "by")
        .unwrap_or("month")
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        match d {
            "month" => dims.month = true,
            "organization" => dims.organization = true,
            "service" => dims.service = true,
            "age_band" | "age-band" => dims.age_band = true,
            "none" => {}
            other => {
                return Err(bad(format!(
                    "by '{other}' is not month, organization, service, age_band or none"
                )));
            }
        }
    }
    let organization = match get(query, "organization") {
        None => None,
        Some(o) => {
            let id = o.strip_prefix("Organization/").unwrap_or(o);
            if !fhir::primitive::is_id(id) {
                return Err(bad(format!("'{o}' is not an Organization id")));
            }
            Some(id.to_string())
        }
    };
    let measures: Vec<String> = get(query, "measure")
        .map(|m| {
            m.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(m) = measures.iter().find(|m| catalog::definition(m).is_none()) {
        return Err(bad(format!(
            "measure '{m}' is not one of {}",
            catalog::MEASURES
                .iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let public = match get(query, "audience").unwrap_or("alliance") {
        "alliance" => false,
        "public" => true,
        a => return Err(bad(format!("audience '{a}' is not alliance or public"))),
    };
    let csv = match get(query, "format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        f => return Err(bad(format!("format '{f}' is not json or csv"))),
    };
    Ok((
        MeasuresRequest {
            from_ms,
            to_ms,
            dims,
            organization,
            measures,
            public,
            operator: false,
        },
        csv,
    ))
}

/// Runs the measures as `caller`: (content type, body).
pub async fn measures(
    app: &App,
    caller: Arc<Caller>,
    query: Vec<(String, String)>,
    address: Option<String>,
) -> Result<(&'static str, String), ApiError> {
    let (request, csv) = request(&query, app.store().clock().now_ms())?;
    let ctx = app.ctx(String::new(), Prefer::default());
    let r = request.clone();
    let measured = app
        .run(
            caller,
            Work::request("measures", false, address),
            ctx,
            move |tx, ctx| crate::app::measures::measures(tx, ctx, &r),
        )
        .await?;
    Ok(render(&request, &measured, csv))
}

/// The measures as CSV or JSON: (content type, body).
pub fn render(
    request: &MeasuresRequest,
    measured: &crate::app::measures::Measured,
    csv: bool,
) -> (&'static str, String) {
    if csv {
        return ("text/csv; charset=utf-8", as_csv(&measured.rows));
    }
    (
        "application/json",
        json!({
            "from": fhir::primitive::format_instant(request.from_ms),
            "to": fhir::primitive::format_instant(request.to_ms),
            "by": by_words(request.dims),
            "organization": request.organization,
            "audience": if measured.suppressed { "public" } else { "alliance" },
            "suppressedBelow": measured.suppressed.then_some(care::measures::SMALL_CELL),
            "definitions": definitions(),
            "rows": measured.rows.iter().map(as_json).collect::<Vec<_>>(),
        })
        .to_string(),
    )
}

fn by_words(d: Dimensions) -> Vec<&'static str> {
    [
        (d.month, "month"),
        (d.organization, "organization"),
        (d.service, "service"),
        (d.age_band, "age_band"),
    ]
    .into_iter()
    .filter_map(|(on, w)| on.then_some(w))
    .collect()
}

/// The catalogue, as the API and the console show it.
pub fn definitions() -> Vec<Value> {
    catalog::MEASURES
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "title": d.title, "unit": d.unit.code(),
                "higherIsBetter": d.higher_is_better,
                "numerator": d.numerator, "denominator": d.denominator, "exclusions": d.exclusions,
            })
        })
        .collect()
}

fn as_json(r: &Row) -> Value {
    let mut v = json!({
        "measure": r.measure,
        "value": r.value,
        "numerator": r.numerator,
        "denominator": r.denominator,
        "n": if r.suppressed { None } else { Some(r.n) },
        "suppressed": r.suppressed,
    });
    for (k, val) in [
        ("month", &r.month),
        ("organization", &r.organization),
        ("service", &r.service),
        ("ageBand", &r.age_band),
        ("detail", &r.detail),
    ] {
        if let Some(x) = val {
            v[k] = json!(x);
        }
    }
    v
}

const CSV_HEADER: &str =
    "month,organization,service,age_band,measure,detail,value,numerator,denominator,n,suppressed";

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows as CSV (a suppressed cell's figures are empty).
pub fn as_csv(rows: &[Row]) -> String {
    let opt = |v: &Option<String>| v.as_deref().map(field).unwrap_or_default();
    let num = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            opt(&r.month),
            opt(&r.organization),
            opt(&r.service),
            opt(&r.age_band),
            r.measure,
            opt(&r.detail),
            r.value.map(|v| format!("{v:.4}")).unwrap_or_default(),
            num(r.numerator),
            num(r.denominator),
            if r.suppressed {
                String::new()
            } else {
                r.n.to_string()
            },
            r.suppressed,
        ));
    }
    out
}
