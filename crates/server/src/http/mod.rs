//! The axum adapter: turns HTTP requests into [`FhirRequest`]s and [`FhirResponse`]s back into
//! HTTP, with content negotiation, the body size limit, request ids, logs and metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body as AxumBody, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use fhir::{Issue, IssueType, operation_outcome};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::Auth;
mod console;
mod export;
mod login;
pub mod pages;

use crate::metrics::Metrics;
use crate::rest::{
    Body, ContentType, FhirApi, FhirRequest, FhirResponse, Method, Prefer, RequestOrigin,
};
use login::{self as auth_routes, cookie_value};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// What the HTTP layer is configured with.
#[derive(Clone)]
pub struct AppState {
    pub api: FhirApi,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// The random value naming the database (`/healthz` reports it, so the command line can
    /// tell whether it opened the same database as this server).
    pub database: String,
}

/// Which interaction a response came from, for the access log and metrics.
#[derive(Clone)]
struct RouteInfo {
    interaction: &'static str,
    resource_type: Option<String>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(console::home))
        .route("/static/{name}", get(pages::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/auth/token",
            post(auth_routes::token).fallback(auth_routes::token_method),
        )
        .route("/auth/session", get(auth_routes::session))
        .route(
            "/login",
            get(auth_routes::login_page).post(auth_routes::login),
        )
        .route("/logout", post(auth_routes::logout))
        .route(
            "/setup",
            get(auth_routes::setup_page).post(auth_routes::setup),
        )
        .route(
            "/.well-known/smart-configuration",
            get(auth_routes::smart_configuration),
        )
        .route(
            "/fhir/.well-known/smart-configuration",
            get(auth_routes::smart_configuration),
        )
        .route("/.well-known/jwks.json", get(auth_routes::jwks))
        .route("/visit/{token}", get(join_visit))
        .route("/api/identity/reviews", get(identity_reviews))
        .route("/api/worklists/referrals", get(referral_worklist))
        .route("/api/metrics/referrals", get(referral_metrics))
        .route("/api/transition/registry", get(transition_registry))
        .route("/api/metrics/transition", get(transition_metrics))
        .route("/api/measures", get(measures))
        .route(
            "/api/identity/reviews/{id}/{decision}",
            post(identity_decision),
        )
        .route(
            "/api/subscriptions/{id}/deliveries",
            get(subscription_deliveries),
        )
        .route(
            "/api/subscriptions/{id}/deliveries/{delivery}/resend",
            post(subscription_resend),
        )
        .route("/fhir/$export", get(export::system).post(export::system))
        .route(
            "/fhir/Patient/$export",
            get(export::patient).post(export::patient),
        )
        .route(
            "/fhir/Group/{id}/$export",
            get(export::group).post(export::group),
        )
        .route(
            "/fhir/$export-status/{id}",
            get(export::status).delete(export::status),
        )
        .route("/fhir/$export-file/{id}/{name}", get(export::file))
        .route("/fhir", any(fhir_handler))
        .route("/fhir/", any(fhir_handler))
        .route("/fhir/{*rest}", any(fhir_handler))
        .merge(console::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(CatchPanicLayer::custom(|_| {
            outcome_response(
                500,
                IssueType::Exception,
                "internal error; the request was not applied",
            )
        }))
        .with_state(state)
}

fn outcome_response(status: u16, code: IssueType, msg: &str) -> Response {
    let body = operation_outcome(&[Issue::error(code, msg)]).to_string();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body,
    )
        .into_response()
}

/// The index of the API, as JSON (what `/` answers a client that does not ask for HTML).
pub(crate) fn api_index() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "name": "Continuum",
            "fhir": "/fhir",
            "token": "/auth/token",
            "signIn": "/login",
            "console": "/ (in a browser)",
            "smartConfiguration": "/.well-known/smart-configuration",
            "capabilities": "/fhir/metadata",
            "health": "/healthz",
            "readiness": "/readyz",
            "metrics": "/metrics",
        })
        .to_string(),
    )
        .into_response()
}

/// `GET /visit/{token}`: a video visit's join link. Within the join window it redirects to the
/// video room; otherwise it says, in words, when the visit opens or why it is closed. The token
/// is the credential (as with any video-visit link); every use is audited.
async fn join_visit(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let private = [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    match crate::app::visits::join(&state.api, &token).await {
        Ok(crate::app::visits::Join::Redirect(url)) => {
            (StatusCode::FOUND, private, [(header::LOCATION, url)]).into_response()
        }
        Ok(crate::app::visits::Join::Refused(status, why)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            private,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{why}\n"),
        )
            .into_response(),
        Err(e) => outcome_response(
            e.status,
            IssueType::Exception,
            "the visit link could not be checked",
        ),
    }
}

async fn not_found() -> Response {
    outcome_response(
        404,
        IssueType::NotFound,
        "no such endpoint; the FHIR API is at /fhir",
    )
}

async fn healthz(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"status": "ok", "database": state.database}).to_string(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.api.store().ping().await {
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"status\":\"ready\",\"database\":\"ok\"}",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"status\":\"unavailable\",\"database\":\"unreachable\"}",
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let (writer, reader) = state.api.store().queue_depths();
    state
        .metrics
        .db_queue
        .with_label_values(&["writer"])
        .set(writer as i64);
    state
        .metrics
        .db_queue
        .with_label_values(&["reader"])
        .set(reader as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Whether the client accepts JSON (`Accept` and `_format`).
fn accepts_json(headers: &HeaderMap, query: &[(String, String)]) -> Result<(), String> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format") {
        let f = f.to_ascii_lowercase();
        if !matches!(
            f.as_str(),
            "json"
                | "application/json"
                | "application/fhir+json"
                | "application/json+fhir"
                | "fhir+json"
        ) {
            return Err(format!(
                "_format={f} is not available; this server speaks FHIR JSON only"
            ));
        }
        return Ok(());
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|part| {
        let mime = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            mime.as_str(),
            "" | "*/*"
                | "application/*"
                | "application/json"
                | "application/fhir+json"
                | "application/json+fhir"
        )
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Accept: {accept} is not available; this server speaks FHIR JSON (application/fhir+json) only"
        ))
    }
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn fhir_handler(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if let Err(msg) = accepts_json(&parts.headers, &query) {
        return outcome_response(406, IssueType::NotSupported, &msg);
    }
    let bytes = match to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return outcome_response(
                413,
                IssueType::TooLong,
                &format!(
                    "the request body is larger than the limit of {} bytes",
                    state.max_body_bytes
                ),
            );
        }
    };
    let path = parts.uri.path();
    let rest = path.strip_prefix("/fhir").unwrap_or(path).to_string();
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let pretty = query.iter().any(|(k, v)| k == "_pretty" && v == "true");
    let fhir_req = FhirRequest {
        method: Method::parse(parts.method.as_str()),
        path: segments,
        query,
        content_type: ContentType::parse(
            parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        ),
        prefer: Prefer::parse(
            parts
                .headers
                .get_all("prefer")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
                .as_str()
                .into(),
        ),
        if_match: header_str(&parts.headers, header::IF_MATCH),
        if_none_match: header_str(&parts.headers, header::IF_NONE_MATCH),
        if_none_exist: header_str(&parts.headers, HeaderName::from_static("if-none-exist")),
        body: bytes.to_vec(),
        base_url: export::fhir_base(&state, &parts),
    };
    let authorization = header_str(&parts.headers, header::AUTHORIZATION);
    let session = cookie_value(&parts.headers, crate::auth::SESSION_COOKIE);
    let who = match state
        .auth
        .authenticate(authorization.as_deref(), session.as_deref())
        .await
    {
        Ok(who) => who,
        Err(e) => {
            let mut r = outcome_response(401, IssueType::Login, &e.to_string());
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"continuum\", error=\"invalid_token\""),
            );
            return r;
        }
    };
    let origin = RequestOrigin {
        who,
        csrf: header_str(&parts.headers, HeaderName::from_static("x-csrf-token")),
        address: client_address(&parts),
    };
    let resp = state.api.handle(fhir_req, origin).await;
    into_http(resp, pretty)
}

/// The caller of a request to `/api/…`: authenticated like `/fhir` (bearer token or console
/// session), or the 401 to answer.
async fn api_caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::auth::Authenticated, Response> {
    let authorization = header_str(headers, header::AUTHORIZATION);
    let session = cookie_value(headers, crate::auth::SESSION_COOKIE);
    match state
        .auth
        .authenticate(authorization.as_deref(), session.as_deref())
        .await
    {
        Ok(Some(who)) => Ok(who),
        Ok(None) => Err(outcome_response(
            401,
            IssueType::Login,
            "authentication is required: send 'Authorization: Bearer <token>' (see /auth/token)",
        )),
        Err(e) => Err(outcome_response(401, IssueType::Login, &e.to_string())),
    }
}

/// A JSON answer of the `/api` routes, or the OperationOutcome of its error.
fn api_answer(result: Result<serde_json::Value, crate::error::ApiError>) -> Response {
    match result {
        Ok(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                [(header::CONTENT_TYPE, FHIR_JSON)],
                operation_outcome(&e.issues).to_string(),
            )
                .into_response()
        }
    }
}

fn client_address(parts: &axum::http::request::Parts) -> Option<String> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

fn query_pairs(parts: &axum::http::request::Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /api/worklists/referrals?…`.
async fn referral_worklist(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    api_answer(
        crate::api::referrals::worklist(
            &state.api,
            who.caller.clone(),
            query_pairs(&parts),
            client_address(&parts),
        )
        .await,
    )
}

/// `GET /api/transition/registry?…`.
async fn transition_registry(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    api_answer(
        crate::api::transition::registry(
            &state.api,
            who.caller.clone(),
            query_pairs(&parts),
            client_address(&parts),
        )
        .await,
    )
}

/// A JSON API answer of its own content type (JSON or CSV), or its error as an
/// OperationOutcome.
fn typed_answer(r: Result<(&'static str, String), crate::error::ApiError>) -> Response {
    match r {
        Ok((content_type, body)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(e) => api_answer(Err(e)),
    }
}

/// `GET /api/measures?…` (JSON, or CSV with `format=csv`).
async fn measures(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    typed_answer(
        crate::api::measures::measures(
            &state.api,
            who.caller.clone(),
            query_pairs(&parts),
            client_address(&parts),
        )
        .await,
    )
}

/// `GET /api/metrics/transition?…` (JSON, or CSV with `format=csv`).
async fn transition_metrics(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    typed_answer(
        crate::api::transition::metrics(
            &state.api,
            who.caller.clone(),
            query_pairs(&parts),
            client_address(&parts),
        )
        .await,
    )
}

/// `GET /api/metrics/referrals?…` (JSON, or CSV with `format=csv`).
async fn referral_metrics(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    typed_answer(
        crate::api::referrals::metrics(
            &state.api,
            who.caller.clone(),
            query_pairs(&parts),
            client_address(&parts),
        )
        .await,
    )
}

/// `GET /api/identity/reviews[?state=…]`.
async fn identity_reviews(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let wanted: Option<String> = parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
    });
    api_answer(
        crate::api::identity_reviews::list(
            &state.api,
            who.caller.clone(),
            wanted.as_deref(),
            client_address(&parts),
        )
        .await,
    )
}

/// `GET /api/subscriptions/{id}/deliveries`.
async fn subscription_deliveries(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    api_answer(
        crate::api::subscriptions::deliveries(
            &state.api,
            who.caller.clone(),
            &id,
            client_address(&parts),
        )
        .await,
    )
}

/// `POST /api/subscriptions/{id}/deliveries/{delivery}/resend`.
async fn subscription_resend(
    State(state): State<AppState>,
    axum::extract::Path((id, delivery)): axum::extract::Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !who
        .may_write(header_str(&parts.headers, HeaderName::from_static("x-csrf-token")).as_deref())
    {
        return outcome_response(
            403,
            IssueType::Forbidden,
            "a signed-in console session must send its CSRF token in the X-CSRF-Token header to change data",
        );
    }
    api_answer(
        crate::api::subscriptions::resend(
            &state.api,
            who.caller.clone(),
            &id,
            &delivery,
            client_address(&parts),
        )
        .await,
    )
}

/// `POST /api/identity/reviews/{id}/accept|reject|unlink|reopen`.
async fn identity_decision(
    State(state): State<AppState>,
    axum::extract::Path((id, decision)): axum::extract::Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let who = match api_caller(&state, &parts.headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(decision) = crate::api::identity_reviews::Decision::parse(&decision) else {
        return outcome_response(
            404,
            IssueType::NotFound,
            &format!(
                "'{decision}' is not a decision: POST …/accept, …/reject, …/unlink or …/reopen"
            ),
        );
    };
    if !who
        .may_write(header_str(&parts.headers, HeaderName::from_static("x-csrf-token")).as_deref())
    {
        return outcome_response(
            403,
            IssueType::Forbidden,
            "a signed-in console session must send its CSRF token in the X-CSRF-Token header to change data",
        );
    }
    api_answer(
        crate::api::identity_reviews::decision(
            &state.api,
            who.caller.clone(),
            &id,
            decision,
            client_address(&parts),
        )
        .await,
    )
}

fn into_http(resp: FhirResponse, pretty: bool) -> Response {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match resp.body {
        Body::Empty => None,
        Body::Json(v) => Some(if pretty {
            serde_json::to_string_pretty(&v).unwrap_or_default()
        } else {
            v.to_string()
        }),
        Body::Text(t) => Some(if pretty {
            serde_json::from_str::<serde_json::Value>(&t)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(t)
        } else {
            t
        }),
    };
    let mut response = match body {
        Some(b) => Response::new(AxumBody::from(b)),
        None => Response::new(AxumBody::empty()),
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    }
    for (name, value) in resp.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(header_name(name)), v);
        }
    }
    response.extensions_mut().insert(RouteInfo {
        interaction: resp.interaction,
        resource_type: resp.resource_type,
    });
    response
}

fn header_name(name: &'static str) -> &'static str {
    match name {
        "ETag" => "etag",
        "Last-Modified" => "last-modified",
        "Location" => "location",
        "Content-Location" => "content-location",
        "WWW-Authenticate" => "www-authenticate",
        "Allow" => "allow",
        "Retry-After" => "retry-after",
        _ => "x-continuum",
    }
}

/// Request ids, the access log (no bodies, no query strings: they can hold patient data) and
/// request metrics.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert("x-request-id", v);
    }
    let method = req.method().clone();
    let route = route_label(req.uri().path());
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let mut response = {
        use tracing::Instrument;
        next.run(req).instrument(span.clone()).await
    };
    let elapsed = start.elapsed();
    let info = response.extensions().get::<RouteInfo>().cloned();
    let interaction = info.as_ref().map(|i| i.interaction).unwrap_or(route);
    let rtype = info
        .as_ref()
        .and_then(|i| i.resource_type.clone())
        .unwrap_or_default();
    let status = response.status().as_u16();
    state.metrics.observe(interaction, &rtype, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            status,
            interaction,
            resource_type = %rtype,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// A low-cardinality, PHI-free label for a path.
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "home",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        p if p == "/fhir" || p.starts_with("/fhir/") => "fhir",
        _ => "other",
    }
}
