//! Rendering outcomes: status, headers (ETag, Last-Modified, Location) and bodies, including
//! searchset and history Bundles with their paging links.

use fhir::primitive::{format_http_date, format_instant};
use fhir::search::{SearchRequest, Summary};
use fhir::{Issue, operation_outcome};
use serde_json::{Value, json};
use store::{HistoryPage, HistoryScope, Stored};

use super::execute::Outcome;
use super::interaction::View;
use super::{Body, FhirResponse, Prefer, Return};

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "200 OK",
        201 => "201 Created",
        204 => "204 No Content",
        304 => "304 Not Modified",
        _ => "200 OK",
    }
}

pub fn status_line(status: u16) -> String {
    match status {
        200 | 201 | 204 | 304 => status_text(status).to_string(),
        400 => "400 Bad Request".into(),
        401 => "401 Unauthorized".into(),
        403 => "403 Forbidden".into(),
        404 => "404 Not Found".into(),
        405 => "405 Method Not Allowed".into(),
        409 => "409 Conflict".into(),
        410 => "410 Gone".into(),
        412 => "412 Precondition Failed".into(),
        415 => "415 Unsupported Media Type".into(),
        422 => "422 Unprocessable Entity".into(),
        500 => "500 Internal Server Error".into(),
        503 => "503 Service Unavailable".into(),
        s => s.to_string(),
    }
}

/// The body of a stored version under a `_summary`/`_elements` view.
pub fn resource_body(stored: &Stored, view: Option<&View>) -> Body {
    let Some(text) = &stored.body else {
        return Body::Empty;
    };
    if let Some(v) = view
        && (v.summary != Summary::False || v.elements.is_some())
        && let Ok(value) = serde_json::from_str::<Value>(text)
        && let Some(trimmed) = fhir::summary::trim(&value, v.summary, v.elements.as_deref())
    {
        return Body::Json(trimmed);
    }
    Body::Text(text.clone())
}

/// The resource as a JSON value (for Bundle entries).
pub fn resource_value(stored: &Stored) -> Option<Value> {
    stored
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
}

pub fn location(base: &str, s: &Stored) -> String {
    format!("{base}/{}/{}/_history/{}", s.resource_type, s.id, s.version)
}

pub fn response(outcome: Outcome, prefer: Prefer, base: &str) -> FhirResponse {
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    let (status, body) = match outcome {
        Outcome::Resource {
            status,
            stored,
            view,
        } => {
            headers.push(("ETag", etag(stored.version)));
            headers.push(("Last-Modified", format_http_date(stored.last_updated)));
            if status == 201 {
                headers.push(("Location", location(base, &stored)));
            }
            let is_write = view.is_none();
            let body = match (is_write, prefer.return_) {
                (true, Return::Minimal) => Body::Empty,
                (true, Return::OperationOutcome) => {
                    Body::Json(operation_outcome(&[Issue::information(format!(
                        "{} {}/{} version {}",
                        if status == 201 { "created" } else { "stored" },
                        stored.resource_type,
                        stored.id,
                        stored.version
                    ))]))
                }
                _ => resource_body(&stored, view.as_ref()),
            };
            (status, body)
        }
        Outcome::NotModified(stored) => {
            headers.push(("ETag", etag(stored.version)));
            (304, Body::Empty)
        }
        Outcome::Deleted(stored) => {
            if let Some(s) = &stored {
                headers.push(("ETag", etag(s.version)));
            }
            if prefer.return_ == Return::OperationOutcome {
                let msg = match &stored {
                    Some(s) => format!(
                        "deleted {}/{} (version {})",
                        s.resource_type, s.id, s.version
                    ),
                    None => "nothing to delete".to_string(),
                };
                (
                    200,
                    Body::Json(operation_outcome(&[Issue::information(msg)])),
                )
            } else {
                (204, Body::Empty)
            }
        }
        Outcome::SearchSet { req, page } => (200, Body::Text(searchset(base, &req, &page))),
        Outcome::History { scope, page, count } => {
            (200, Body::Json(history_bundle(base, &scope, &page, count)))
        }
        Outcome::Json(status, v) => (status, Body::Json(v)),
    };
    FhirResponse {
        status,
        headers,
        body,
        interaction: "",
        resource_type: None,
    }
}

fn now_instant() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    format_instant(ms)
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn link(base_path: &str, pairs: &[(String, String)]) -> String {
    let q = encode(pairs);
    if q.is_empty() {
        base_path.to_string()
    } else {
        format!("{base_path}?{q}")
    }
}

/// A searchset Bundle, written as text around the stored resource JSON (no re-parsing).
pub fn searchset(base: &str, req: &SearchRequest, page: &store::SearchPage) -> String {
    let type_url = format!("{base}/{}", req.resource_type);
    let self_link = link(&type_url, &req.applied);
    let mut out = String::with_capacity(
        256 + page
            .matches
            .iter()
            .map(|m| m.body.as_ref().map_or(0, String::len) + 96)
            .sum::<usize>(),
    );
    out.push_str("{\"resourceType\":\"Bundle\",\"id\":");
    out.push_str(&json_str(&uuid::Uuid::new_v4().to_string()));
    out.push_str(",\"meta\":{\"lastUpdated\":");
    out.push_str(&json_str(&now_instant()));
    out.push_str("},\"type\":\"searchset\"");
    if let Some(total) = page.total {
        out.push_str(&format!(",\"total\":{total}"));
    }
    out.push_str(",\"link\":[{\"relation\":\"self\",\"url\":");
    out.push_str(&json_str(&self_link));
    out.push('}');
    if let Some(cursor) = &page.next_cursor {
        let mut pairs = req.applied.clone();
        if !pairs.iter().any(|(k, _)| k == "_count") {
            pairs.push(("_count".into(), req.count.to_string()));
        }
        pairs.push(("_cursor".into(), cursor.clone()));
        out.push_str(",{\"relation\":\"next\",\"url\":");
        out.push_str(&json_str(&link(&type_url, &pairs)));
        out.push('}');
    }
    out.push(']');
    let trim = req.summary != Summary::False || req.elements.is_some();
    let mut entries: Vec<String> = Vec::with_capacity(page.matches.len() + 1);
    for m in &page.matches {
        let body = m.body.as_deref().unwrap_or("{}");
        let trimmed = if trim {
            serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| fhir::summary::trim(&v, req.summary, req.elements.as_deref()))
                .map(|v| v.to_string())
        } else {
            None
        };
        entries.push(format!(
            "{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"match\"}}}}",
            json_str(&format!("{type_url}/{}", m.id)),
            trimmed.as_deref().unwrap_or(body)
        ));
    }
    for m in &page.included {
        let body = m.body.as_deref().unwrap_or("{}");
        entries.push(format!(
            "{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"include\"}}}}",
            json_str(&format!("{base}/{}/{}", m.resource_type, m.id)),
            body
        ));
    }
    if !req.ignored.is_empty() {
        // the self link leaves out what was not used; an outcome entry says so in words
        let oo = operation_outcome(&[Issue::warning(
            fhir::IssueType::NotSupported,
            format!(
                "ignored (Prefer: handling=lenient): {}",
                req.ignored.join(", ")
            ),
        )]);
        entries.push(format!(
            "{{\"resource\":{oo},\"search\":{{\"mode\":\"outcome\"}}}}"
        ));
    }
    if !entries.is_empty() {
        out.push_str(",\"entry\":[");
        out.push_str(&entries.join(","));
        out.push(']');
    }
    out.push('}');
    out
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn history_bundle(base: &str, scope: &HistoryScope, page: &HistoryPage, count: usize) -> Value {
    let path = match scope {
        HistoryScope::Instance { resource_type, id } => {
            format!("{base}/{resource_type}/{id}/_history")
        }
        HistoryScope::Type(rt) => format!("{base}/{rt}/_history"),
        HistoryScope::System => format!("{base}/_history"),
    };
    let mut links = vec![
        json!({"relation": "self", "url": link(&path, &[("_count".into(), count.to_string())])}),
    ];
    if let Some(c) = &page.next_cursor {
        links.push(json!({"relation": "next", "url": link(&path, &[("_count".into(), count.to_string()), ("_cursor".into(), c.clone())])}));
    }
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|e| {
            let v = &e.version;
            let (url, status) = match e.method {
                store::Method::Create => (v.resource_type.clone(), "201 Created"),
                store::Method::Update => (format!("{}/{}", v.resource_type, v.id), "200 OK"),
                store::Method::Delete => (format!("{}/{}", v.resource_type, v.id), "204 No Content"),
            };
            let mut entry = json!({
                "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
                "request": {"method": e.method.http(), "url": url},
                "response": {"status": status, "etag": etag(v.version), "lastModified": format_instant(v.last_updated)},
            });
            if let Some(r) = resource_value(v) {
                entry["resource"] = r;
            }
            entry
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": now_instant()},
        "type": "history",
    });
    if let Some(t) = page.total {
        bundle["total"] = json!(t);
    }
    bundle["link"] = json!(links);
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    bundle
}
