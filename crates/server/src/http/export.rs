//! The HTTP side of FHIR Bulk Data export (`app::export`): the kick-off at `/fhir/$export`,
//! `/fhir/Patient/$export` and `/fhir/Group/{id}/$export` (GET, or POST with a Parameters body;
//! `Prefer: respond-async`), answered 202 with `Content-Location`; the status URL
//! (`/fhir/$export-status/{id}`: 202 with `X-Progress` and `Retry-After` while it runs, 200 with
//! the manifest, `DELETE` to cancel); the files (`/fhir/$export-file/{id}/{name}`), streamed
//! from disk as NDJSON.

use axum::body::{Body as AxumBody, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::{Issue, IssueType, operation_outcome};

use super::{AppState, FHIR_JSON, api_caller, client_address, header_str, outcome_response};
use crate::app::Prefer;
use crate::app::export::{self, Level, Status};
use crate::error::ApiError;

fn error(e: ApiError) -> Response {
    let mut r = (
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, FHIR_JSON)],
        operation_outcome(&e.issues).to_string(),
    )
        .into_response();
    for (name, value) in e.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

/// The FHIR base URL of a request (the configured public one first): the FHIR router's and
/// the export routes' alike.
pub(super) fn fhir_base(state: &AppState, parts: &axum::http::request::Parts) -> String {
    if let Some(base) = &state.api.config().public_base_url {
        return base.trim_end_matches('/').to_string();
    }
    let host = header_str(&parts.headers, header::HOST).unwrap_or_else(|| "localhost".into());
    let scheme = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}/fhir")
}

/// `GET|POST /fhir/$export`.
pub(super) async fn system(State(state): State<AppState>, req: Request) -> Response {
    kick_off(state, Level::System, req).await
}

/// `GET|POST /fhir/Patient/$export`.
pub(super) async fn patient(State(state): State<AppState>, req: Request) -> Response {
    kick_off(state, Level::Patient, req).await
}

/// `GET|POST /fhir/Group/{id}/$export`.
pub(super) async fn group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    if !fhir::primitive::is_id(&id) {
        return outcome_response(400, IssueType::Value, &format!("'{id}' is not a Group id"));
    }
    kick_off(state, Level::Group(id), req).await
}

async fn kick_off(state: AppState, level: Level, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let address = client_address(&parts);
    // a kick-off refused before its unit of work ran is on the record too
    let params = match read_kick_off(&state, &who, level, &parts, body).await {
        Ok(p) => p,
        Err(e) => {
            let work = crate::app::Work::request("export", true, address);
            if let Err(err) = state.api.audit_refusal(&who.caller, &work, e.status).await {
                return error(err);
            }
            return error(e);
        }
    };
    let base = fhir_base(&state, &parts);
    let request_url = format!(
        "{base}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().strip_prefix("/fhir").unwrap_or(p.as_str()))
            .unwrap_or("")
    );
    match export::kick_off(&state.api, who.caller.clone(), params, request_url, address).await {
        Ok(id) => {
            let location = format!("{base}/$export-status/{id}");
            let mut r = (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, FHIR_JSON)],
                operation_outcome(&[Issue::information(format!(
                    "export {id} accepted; poll {location} for its progress and manifest"
                ))])
                .to_string(),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::CONTENT_LOCATION, v);
            }
            r
        }
        Err(e) => error(e),
    }
}

/// The kick-off's headers and parameters, checked: what to export, or why not.
async fn read_kick_off(
    state: &AppState,
    who: &crate::auth::Authenticated,
    level: Level,
    parts: &axum::http::request::Parts,
    body: AxumBody,
) -> Result<export::ExportParams, ApiError> {
    let csrf = header_str(
        &parts.headers,
        header::HeaderName::from_static("x-csrf-token"),
    );
    if !who.may_write(csrf.as_deref()) {
        return Err(ApiError::new(
            403,
            IssueType::Forbidden,
            "a signed-in console session must send its CSRF token in the X-CSRF-Token header to start an export",
        ));
    }
    let prefer =
        header_str(&parts.headers, header::HeaderName::from_static("prefer")).unwrap_or_default();
    if !prefer.split(',').any(|p| p.trim() == "respond-async") {
        return Err(ApiError::new(
            400,
            IssueType::Invalid,
            "an export runs asynchronously: send 'Prefer: respond-async' (Bulk Data Access IG)",
        ));
    }
    if let Some(accept) = header_str(&parts.headers, header::ACCEPT)
        && !accept.split(',').any(|a| {
            let m = a.split(';').next().unwrap_or("").trim();
            matches!(m, "*/*" | "application/fhir+json" | "application/json" | "")
        })
    {
        return Err(ApiError::new(
            406,
            IssueType::NotSupported,
            format!(
                "Accept: {accept} is not available; the kick-off answers application/fhir+json"
            ),
        ));
    }
    let prefer = Prefer::parse(Some(&prefer));
    let mut pairs = super::query_pairs(parts);
    let mut patients = Vec::new();
    if parts.method == axum::http::Method::POST {
        let bytes = to_bytes(body, state.max_body_bytes).await.map_err(|_| {
            ApiError::new(413, IssueType::TooLong, "the kick-off body is too large")
        })?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    400,
                    IssueType::Structure,
                    format!("the body is not JSON: {e}"),
                )
            })?;
            let (p, ps) = export::parameters_of_body(&body)?;
            pairs.extend(p);
            patients = ps;
        }
    } else if parts.method != axum::http::Method::GET {
        return Err(ApiError::method_not_allowed(
            "GET, POST",
            "an export is started with GET or POST",
        ));
    }
    export::parse_request(state.api.registry(), level, &pairs, patients, &prefer)
}

/// An HTTP date (`Expires`).
fn http_date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}

/// `GET|DELETE /fhir/$export-status/{id}`.
pub(super) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if parts.method == axum::http::Method::DELETE {
        if !who.may_write(
            header_str(
                &parts.headers,
                header::HeaderName::from_static("x-csrf-token"),
            )
            .as_deref(),
        ) {
            return outcome_response(
                403,
                IssueType::Forbidden,
                "a console session must send its CSRF token to cancel an export",
            );
        }
        return match export::cancel(
            &state.api,
            who.caller.clone(),
            id.clone(),
            client_address(&parts),
        )
        .await
        {
            Ok(()) => (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, FHIR_JSON)],
                operation_outcome(&[Issue::information(format!(
                    "export {id} cancelled; its files are deleted"
                ))])
                .to_string(),
            )
                .into_response(),
            Err(e) => error(e),
        };
    }
    if parts.method != axum::http::Method::GET {
        return error(ApiError::method_not_allowed(
            "GET, DELETE",
            "an export's status is read with GET and cancelled with DELETE",
        ));
    }
    let base = fhir_base(&state, &parts);
    match export::status(&state.api, who.caller.clone(), id, base).await {
        Ok(Status::InProgress(words)) => {
            let mut r = StatusCode::ACCEPTED.into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&words) {
                h.insert("x-progress", v);
            }
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(Status::Completed {
            manifest,
            expires_ms,
        }) => {
            let mut r = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                manifest.to_string(),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&http_date(expires_ms)) {
                r.headers_mut().insert(header::EXPIRES, v);
            }
            r
        }
        Ok(Status::Failed(words)) => outcome_response(500, IssueType::Exception, &words),
        Err(e) => error(e),
    }
}

/// `GET /fhir/$export-file/{id}/{name}`: one file of a completed export, streamed.
pub(super) async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !fhir::primitive::is_id(&id) || name.contains(['/', '\\']) || name.starts_with('.') {
        return outcome_response(404, IssueType::NotFound, "there is no such export file");
    }
    let path = match export::file(
        &state.api,
        who.caller.clone(),
        id,
        name,
        client_address(&parts),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/fhir+ndjson"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            AxumBody::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "an export file listed in its manifest is missing");
            outcome_response(
                410,
                IssueType::Deleted,
                "the file is no longer on the server; start the export again",
            )
        }
    }
}
