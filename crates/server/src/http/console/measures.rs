//! The dashboards: `GET /measures` — the alliance's measures (`app::measures`) month by month
//! for a period, an organisation, a service and an age band; a chart drawn on the server (SVG,
//! no script) for each measure, the table of its figures under it with its definition from the
//! catalogue, and the CSV of what is shown (`/api/measures?…&format=csv`, the same session).
//! One read unit of work for the page.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use care::measures::catalog::{self, Unit};
use care::measures::{Dimensions, Row};
use minijinja::context;
use serde::Serialize;
use serde_json::Value;

use super::view::Names;
use super::{AppState, error_page, query_of, read, render, session, tpl};
use crate::app::measures::MeasuresRequest;
use crate::error::ApiError;

#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
    current: bool,
}

#[derive(Serialize)]
struct Point {
    label: String,
    value: String,
    counts: String,
}

#[derive(Serialize)]
struct Chart {
    id: String,
    title: String,
    unit: String,
    svg: String,
    points: Vec<Point>,
    numerator: String,
    denominator: String,
    exclusions: String,
    empty: bool,
}

/// A value as a person reads it.
fn words(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Rate => format!("{:.0}%", v * 100.0),
        Unit::Count => format!("{v:.0}"),
        Unit::BusinessDays => format!("{v:.1} business days"),
        Unit::Days => format!("{v:.0} days"),
        Unit::Miles => format!("{v:.1} miles"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round number at or above `v` for the top of an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * p)
}

/// A line chart of one measure over months: the line breaks where a month has no figure
/// (none, or suppressed). Presentation attributes only (the content security policy allows no
/// inline style).
fn line_chart(
    title: &str,
    unit: Unit,
    months: &[String],
    values: &[Option<f64>],
    partial: Option<usize>,
) -> String {
    const W: f64 = 520.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 52.0;
    const RIGHT: f64 = 34.0;
    const TOP: f64 = 14.0;
    const BOTTOM: f64 = 30.0;
    let top = match unit {
        Unit::Rate => 1.0,
        _ => nice_max(values.iter().flatten().copied().fold(0.0, f64::max)),
    };
    let n = months.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + (W - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / top);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{} by month\" preserveAspectRatio=\"xMidYMid meet\">",
        escape(title)
    );
    for k in 0..=2 {
        let v = top * k as f64 / 2.0;
        let yy = y(v);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"axis\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            escape(&match unit {
                Unit::Rate => format!("{:.0}%", v * 100.0),
                Unit::Count => format!("{v:.0}"),
                _ => format!("{v:.1}"),
            })
        );
    }
    // at most six month labels, the first among them
    let step = n.div_ceil(6);
    for (i, m) in months.iter().enumerate() {
        if i % step == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" class=\"axis\">{}</text>",
                x(i),
                H - 10.0,
                escape(m)
            );
        }
    }
    // the line, in runs of consecutive months with a figure
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, svg: &mut String| {
        if run.len() > 1 {
            let _ = write!(
                svg,
                "<polyline class=\"line\" points=\"{}\"/>",
                run.join(" ")
            );
        }
        run.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(*v))),
            None => flush(&mut run, &mut svg),
        }
    }
    flush(&mut run, &mut svg);
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            // the month under way is drawn hollow: its figure is not final
            let (class, note) = if partial == Some(i) {
                ("dot partial", " (so far)")
            } else {
                ("dot", "")
            };
            let _ = write!(
                svg,
                "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\"><title>{}{note}: {}</title></circle>",
                x(i),
                y(*v),
                escape(&months[i]),
                escape(&words(unit, *v))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A bar chart of one figure per label (the third next available per service).
fn bar_chart(title: &str, unit: Unit, bars: &[(String, f64)]) -> String {
    const W: f64 = 520.0;
    const ROW: f64 = 28.0;
    const LEFT: f64 = 200.0;
    let h = ROW * bars.len().max(1) as f64 + 8.0;
    let top = nice_max(bars.iter().map(|(_, v)| *v).fold(0.0, f64::max));
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMidYMid meet\">",
        escape(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let yy = 4.0 + ROW * i as f64;
        let w = (W - LEFT - 80.0) * v / top;
        let short: String = label.chars().take(26).collect();
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"axis\">{}</text><rect class=\"bar\" x=\"{LEFT}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{}\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\">{}</text>",
            LEFT - 8.0,
            yy + 16.0,
            escape(&short),
            yy + 3.0,
            ROW - 8.0,
            escape(label),
            escape(&words(unit, *v)),
            LEFT + w + 6.0,
            yy + 16.0,
            escape(&words(unit, *v))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The months of a period, `YYYY-MM`.
fn months_between(from_ms: i64, to_ms: i64) -> Vec<String> {
    let (mut y, mut m, _) = care::slots::civil_from_days(care::slots::local_day(from_ms));
    let last = care::measures::month_of(to_ms - 1);
    let mut out = Vec::new();
    loop {
        let s = format!("{y:04}-{m:02}");
        let done = s == last;
        out.push(s);
        if done || out.len() > 61 {
            return out;
        }
        if m == 12 {
            y += 1;
            m = 1;
        } else {
            m += 1;
        }
    }
}

fn counts(r: &Row, unit: Unit) -> String {
    if r.suppressed {
        return "fewer than 11: not shown".into();
    }
    if unit == Unit::Count {
        return String::new();
    }
    match (r.numerator, r.denominator) {
        (Some(n), Some(d)) => format!("{n} of {d}"),
        (None, Some(d)) => format!("over {d}"),
        _ => format!("n = {}", r.n),
    }
}

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/measures").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let orgs = s.organizations();
    if s.is_family() || (orgs.is_empty() && !s.is_admin()) {
        return error_page(
            Some(&s),
            &ApiError::new(
                403,
                fhir::IssueType::Forbidden,
                "the measures are for the alliance's care teams, coordinators and administrators",
            ),
        );
    }
    // the period: months (YYYY-MM) from and to, both included; by default the last twelve
    let now = state.api.store().clock().now_ms();
    let mut query: Vec<(String, String)> = Vec::new();
    let month_start = |v: &str| -> Option<String> {
        let (y, m) = v.split_once('-')?;
        let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
        ((1..=12).contains(&m) && (2000..=2100).contains(&y)).then(|| format!("{y:04}-{m:02}-01"))
    };
    let after = |v: &str| -> Option<String> {
        let (y, m) = v.split_once('-')?;
        let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
        let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        month_start(&format!("{y}-{m}"))
    };
    if let Some(f) = q.get("from").filter(|v| !v.is_empty()) {
        match month_start(f) {
            Some(d) => query.push(("from".into(), d)),
            None => {
                return error_page(
                    Some(&s),
                    &ApiError::bad_request(
                        fhir::IssueType::Value,
                        format!("'{f}' is not a month (YYYY-MM)"),
                    ),
                );
            }
        }
    }
    if let Some(t) = q.get("to").filter(|v| !v.is_empty()) {
        match after(t) {
            Some(d) => query.push(("to".into(), d)),
            None => {
                return error_page(
                    Some(&s),
                    &ApiError::bad_request(
                        fhir::IssueType::Value,
                        format!("'{t}' is not a month (YYYY-MM)"),
                    ),
                );
            }
        }
    }
    // a coordinator's own organisation by default; an administrator's: the alliance
    let org = q
        .get("org")
        .filter(|o| !o.is_empty())
        .cloned()
        .or_else(|| (!s.is_admin()).then(|| orgs.first().cloned()).flatten());
    if let Some(o) = &org {
        query.push(("organization".into(), o.clone()));
    }
    let service = q.get("service").filter(|v| !v.is_empty()).cloned();
    let band = q.get("age").filter(|v| !v.is_empty()).cloned();
    let mut by = vec!["month"];
    if service.is_some() {
        by.push("service");
    }
    if band.is_some() {
        by.push("age_band");
    }
    query.push(("by".into(), by.join(",")));
    let (request, _) = match crate::api::measures::request(&query, now) {
        Ok(r) => r,
        Err(e) => return error_page(Some(&s), &e),
    };
    let csv_query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().filter(|(k, _)| k != "by"))
        .append_pair("by", "month,service,age_band")
        .append_pair("format", "csv")
        .finish();
    let r = MeasuresRequest {
        dims: Dimensions {
            month: true,
            service: service.is_some(),
            age_band: band.is_some(),
            organization: false,
        },
        ..request.clone()
    };
    let org_for = org.clone();
    let is_admin = s.is_admin();
    let result = read(&state, &s, "console-measures", move |tx, ctx| {
        let measured = crate::app::measures::measures(tx, ctx, &r)?;
        // the services of the organisation (or the alliance), by name, for the filter
        let mut names = Names::default();
        let mut services: Vec<(String, String)> = Vec::new();
        for (id, body) in tx.measure_directory("HealthcareService", org_for.as_deref())? {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let provider = v
                .get("providedBy")
                .and_then(|p| fhir::json::reference_id(p, "Organization"))
                .unwrap_or("");
            if org_for.as_deref().is_none_or(|o| o == provider) {
                let name = v
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(&id)
                    .to_string();
                services.push((id, name));
            }
        }
        services.sort_by(|a, b| a.1.cmp(&b.1));
        let mut organizations = Vec::new();
        let mut ids = tx.caller().subject.care_organizations();
        if is_admin {
            for (id, _) in tx.measure_directory("Organization", None)? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        for id in ids {
            let name = names.of(tx, &format!("Organization/{id}"))?;
            organizations.push((id, name));
        }
        organizations.sort_by(|a, b| a.1.cmp(&b.1));
        Ok((measured, services, organizations))
    })
    .await;
    let (measured, services, organizations) = match result {
        Ok(x) => x,
        Err(e) => return error_page(Some(&s), &e),
    };
    let service_name = |id: &str| {
        services
            .iter()
            .find(|(s, _)| s == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let rows: Vec<&Row> = measured
        .rows
        .iter()
        .filter(|r| {
            service.as_deref().is_none_or(|want| {
                r.service.as_deref() == Some(want) || r.service.as_deref() == Some("all")
            })
        })
        .filter(|r| {
            band.as_deref().is_none_or(|want| {
                r.age_band.as_deref() == Some(want) || r.age_band.as_deref() == Some("all")
            })
        })
        .filter(|r| r.detail.is_none())
        .collect();
    let months = months_between(request.from_ms, request.to_ms);
    let this_month = care::measures::month_of(now);
    let mut charts = Vec::new();
    for d in catalog::MEASURES {
        let of: Vec<&&Row> = rows.iter().filter(|r| r.measure == d.id).collect();
        let (svg, points) = match d.source {
            catalog::Source::Availability => {
                // per service, today
                let all = measured.rows.iter().filter(|r| r.measure == d.id);
                let mut bars = Vec::new();
                let mut points = Vec::new();
                let mut by_service: std::collections::BTreeMap<String, (Option<f64>, &Row)> =
                    Default::default();
                for r in all {
                    let _ = by_service.insert(r.service.clone().unwrap_or_default(), (r.value, r));
                }
                for (sid, (v, r)) in &by_service {
                    if service.as_deref().is_some_and(|want| want != sid) && !sid.is_empty() {
                        continue;
                    }
                    let name = service_name(sid);
                    if let Some(v) = v {
                        bars.push((name.clone(), *v));
                    }
                    points.push(Point {
                        label: name,
                        value: v
                            .map(|v| words(d.unit, v))
                            .unwrap_or_else(|| "fewer than three free slots ahead".into()),
                        counts: format!("{} free slots ahead", r.n),
                    });
                }
                (
                    if bars.is_empty() {
                        String::new()
                    } else {
                        bar_chart(d.title, d.unit, &bars)
                    },
                    points,
                )
            }
            _ => {
                let values: Vec<Option<f64>> = months
                    .iter()
                    .map(|m| {
                        of.iter()
                            .filter(|r| r.month.as_deref() == Some(m.as_str()))
                            .find_map(|r| r.value)
                    })
                    .collect();
                let points = months
                    .iter()
                    .filter_map(|m| {
                        let r = of.iter().find(|r| r.month.as_deref() == Some(m.as_str()))?;
                        Some(Point {
                            label: if *m == this_month {
                                format!("{m} (so far)")
                            } else {
                                m.clone()
                            },
                            value: r
                                .value
                                .map(|v| words(d.unit, v))
                                .unwrap_or_else(|| "—".into()),
                            counts: counts(r, d.unit),
                        })
                    })
                    .collect::<Vec<_>>();
                let partial = months.iter().position(|m| *m == this_month);
                let svg = if values.iter().any(Option::is_some) {
                    line_chart(d.title, d.unit, &months, &values, partial)
                } else {
                    String::new()
                };
                (svg, points)
            }
        };
        charts.push(Chart {
            id: d.id.to_string(),
            title: d.title.to_string(),
            unit: d.unit.code().to_string(),
            empty: svg.is_empty(),
            svg,
            points,
            numerator: d.numerator.to_string(),
            denominator: d.denominator.to_string(),
            exclusions: d.exclusions.to_string(),
        });
    }
    let choice = |list: &[(String, String)], current: Option<&str>| -> Vec<Choice> {
        list.iter()
            .map(|(v, l)| Choice {
                value: v.clone(),
                label: l.clone(),
                current: current == Some(v.as_str()),
            })
            .collect()
    };
    let bands: Vec<(String, String)> = care::measures::AGE_BANDS
        .iter()
        .map(|(_, _, b)| (b.to_string(), b.to_string()))
        .collect();
    let first = months.first().cloned().unwrap_or_default();
    let last = months.last().cloned().unwrap_or_default();
    render(
        &s,
        "/measures",
        "console/measures.html",
        "Measures",
        context! {
            charts => tpl(&charts),
            from => first.clone(), to => last.clone(),
            orgs => tpl(&choice(&organizations, org.as_deref())),
            alliance => s.is_admin(),
            services => tpl(&choice(&services, service.as_deref())),
            bands => tpl(&choice(&bands, band.as_deref())),
            suppressed => measured.suppressed,
            csv => format!("/api/measures?{csv_query}"),
            period => format!("{first} to {last}"),
        },
    )
}
