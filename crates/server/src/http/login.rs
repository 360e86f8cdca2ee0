//! The authentication endpoints: OAuth2 token, SMART discovery, JWKS, console sign-in and
//! sign-out, and first-run administrator setup.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use minijinja::context;
use serde_json::json;
use store::StoreError;
use store::accounts::UserRecord;

use super::AppState;
use crate::auth::secrets::{
    check_password_strength, constant_time_eq, digest, hash_secret, random_token, verify_secret,
};
use crate::auth::{Auth, CSRF_COOKIE, LOCK_MS, MAX_FAILED_LOGINS, SESSION_COOKIE};

use super::pages::page;

fn cookie(auth: &Auth, name: &str, value: &str, max_age_s: i64) -> String {
    let secure = if auth.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly{secure}; SameSite=Strict; Max-Age={max_age_s}")
}

/// A cookie's value from the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

async fn form(req: Request) -> (HeaderMap, Vec<(String, String)>) {
    let (headers, form) = super::console::read_form(req).await;
    (headers, form.0)
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response();
    if status == 401 {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"continuum\""),
        );
    }
    resp
}

/// `GET /auth/token` (and any method but POST): 405 saying how a token is asked for.
pub async fn token_method() -> Response {
    let mut resp = oauth_error(
        405,
        "invalid_request",
        "a token is asked for with POST: curl -u CLIENT_ID:SECRET -d grant_type=client_credentials …/auth/token",
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

/// `POST /auth/token`: OAuth2 client credentials (HTTP Basic or form credentials).
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let auth = &state.auth;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !content_type.is_empty() && !content_type.starts_with("application/x-www-form-urlencoded") {
        return oauth_error(
            400,
            "invalid_request",
            &format!(
                "the token request must be a form (Content-Type: application/x-www-form-urlencoded, e.g. curl -d grant_type=client_credentials), not {content_type}"
            ),
        );
    }
    let (headers, f) = form(req).await;
    match field(&f, "grant_type") {
        "client_credentials" => {}
        "" => {
            return oauth_error(
                400,
                "invalid_request",
                "the form has no grant_type; send grant_type=client_credentials",
            );
        }
        other => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                &format!(
                    "grant_type '{other}' is not supported; this server issues tokens for grant_type=client_credentials"
                ),
            );
        }
    }
    let authorizations: Vec<&str> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let basic = authorizations
        .iter()
        .find_map(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        // no client's id holds U+0000 (nor can PostgreSQL's text): as unknown
        .map(|(id, secret)| (id.replace('\0', "\u{fffd}"), secret));
    let (client_id, secret) = match basic {
        Some(pair) => pair,
        None => (
            field(&f, "client_id").to_string(),
            field(&f, "client_secret").to_string(),
        ),
    };
    if client_id.is_empty() {
        let bearer = authorizations
            .iter()
            .any(|v| v.to_ascii_lowercase().starts_with("bearer "));
        return oauth_error(
            401,
            "invalid_client",
            if bearer {
                "this request carries a Bearer token, but a token is asked for with the client's id and secret: send them with HTTP Basic (curl -u CLIENT_ID:SECRET) and no Bearer header (is a shell alias or a default header adding one?)"
            } else {
                "send the client's id and secret with HTTP Basic authentication (curl -u CLIENT_ID:SECRET)"
            },
        );
    }
    let now = state.api.store().clock().now_ms();
    if !auth
        .limiter
        .allow(&format!("token:{}", addr.ip()), now, 300, 60_000)
        || !auth
            .limiter
            .allow(&format!("client:{client_id}"), now, 120, 60_000)
    {
        return oauth_error(429, "slow_down", "too many token requests; wait a minute");
    }
    let scope = f.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.clone());
    match auth
        .issue_token(&client_id, &secret, scope.as_deref())
        .await
    {
        Ok(body) => {
            crate::audit::record_login(
                state.api.store(),
                &format!("client:{client_id}"),
                true,
                Some(addr.ip().to_string()),
                "token issued",
            )
            .await;
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body.to_string(),
            )
                .into_response()
        }
        Err((status, error, description)) => {
            if status == 401 {
                crate::audit::record_login(
                    state.api.store(),
                    &format!("client:{client_id}"),
                    false,
                    Some(addr.ip().to_string()),
                    "client authentication failed",
                )
                .await;
            }
            oauth_error(status, error, &description)
        }
    }
}

/// `GET /.well-known/smart-configuration` (also under `/fhir`).
pub async fn smart_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("http://{host}");
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "issuer": state.auth.config.audience,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/auth/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs", "patient/*.rs", "fhirUser"],
            "response_types_supported": ["token"],
            "capabilities": ["client-confidential-symmetric", "permission-v1", "permission-v2", "context-standalone-patient"],
            "code_challenge_methods_supported": [],
        })
        .to_string(),
    )
        .into_response()
}

/// `GET /.well-known/jwks.json`.
pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.auth.keys.jwks().to_string(),
    )
        .into_response()
}

/// Where to go after signing in: a path of this server only (never another site's address).
fn next_path(next: &str) -> Option<String> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control());
    ok.then(|| next.to_string())
}

/// `GET /login`: the sign-in form (or who is signed in, with the way to the console).
pub async fn login_page(State(state): State<AppState>, req: Request) -> Response {
    let next = req
        .uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "next")
                .map(|(_, v)| v.into_owned())
        })
        .and_then(|n| next_path(&n))
        .unwrap_or_default();
    let headers = req.headers();
    let session = cookie_value(headers, SESSION_COOKIE);
    if let Ok(Some(a)) = state.auth.authenticate(None, session.as_deref()).await
        && let crate::auth::Via::Session { csrf } = &a.via
    {
        return page(
            StatusCode::OK,
            "login.html",
            context! { title => "Signed in", user => a.caller.subject.id.trim_start_matches("user:"), csrf => csrf },
            &[],
        );
    }
    let csrf = random_token(24);
    page(
        StatusCode::OK,
        "login.html",
        context! { title => "Sign in", csrf => csrf, username => "", next => next },
        &[cookie(&state.auth, CSRF_COOKIE, &csrf, 3600)],
    )
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let auth = state.auth.clone();
    let (headers, f) = form(req).await;
    let username = field(&f, "username").trim().to_string();
    let password = field(&f, "password").to_string();
    let next = next_path(field(&f, "next")).unwrap_or_else(|| "/".to_string());
    let retry = |status: StatusCode, error: &str| {
        let csrf = random_token(24);
        page(
            status,
            "login.html",
            context! { title => "Sign in", csrf => csrf, username => username.clone(), error => error, next => next.clone() },
            &[cookie(&auth, CSRF_COOKIE, &csrf, 3600)],
        )
    };
    let expected = cookie_value(&headers, CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&expected, field(&f, "csrf")) {
        return retry(
            StatusCode::FORBIDDEN,
            "The form expired. Please sign in again.",
        );
    }
    let now = state.api.store().clock().now_ms();
    if !auth
        .limiter
        .allow(&format!("login-ip:{}", addr.ip()), now, 20, 5 * 60_000)
        || !auth
            .limiter
            .allow(&format!("login-user:{username}"), now, 10, 5 * 60_000)
    {
        return retry(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts. Wait a few minutes and try again.",
        );
    }
    let name = username.clone();
    let user: Option<UserRecord> = state
        .api
        .store()
        .read(move |tx| tx.user_by_name(&name))
        .await
        .unwrap_or(None);
    let ip = Some(addr.ip().to_string());
    // one answer for an unknown name, a wrong password, a locked and a disabled account, in
    // the same time (each checks a password hash): the form tells no one which names exist
    let generic =
        "Wrong user name or password. After 5 failed attempts an account is locked for 15 minutes.";
    let Some(user) = user else {
        let _ = verify_secret(
            &password,
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0000000000000000000000000000000000000000000",
        );
        crate::audit::record_login(
            state.api.store(),
            &format!("user:{username}"),
            false,
            ip,
            "unknown user name",
        )
        .await;
        return retry(StatusCode::UNAUTHORIZED, generic);
    };
    if user.locked_until.is_some_and(|t| t > now) {
        let _ = verify_secret(&password, &user.password_hash);
        crate::audit::record_login(
            state.api.store(),
            &format!("user:{username}"),
            false,
            ip,
            "account locked",
        )
        .await;
        return retry(StatusCode::UNAUTHORIZED, generic);
    }
    if user.disabled || !verify_secret(&password, &user.password_hash) {
        let id = user.id.clone();
        let _ = state
            .api
            .store()
            .write(move |tx| tx.record_login_failure(&id, MAX_FAILED_LOGINS, LOCK_MS))
            .await;
        crate::audit::record_login(
            state.api.store(),
            &format!("user:{username}"),
            false,
            ip,
            if user.disabled {
                "account disabled"
            } else {
                "wrong password"
            },
        )
        .await;
        return retry(StatusCode::UNAUTHORIZED, generic);
    }
    let token = random_token(32);
    let csrf = random_token(24);
    let (hash, uid, c) = (digest(&token), user.id.clone(), csrf.clone());
    let expires = now + auth.config.session_hours * 3_600_000;
    let saved = state
        .api
        .store()
        .write(move |tx| {
            tx.record_login_success(&uid)?;
            tx.insert_session(&hash, &uid, &c, expires)
        })
        .await;
    if saved.is_err() {
        return retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is temporarily unavailable.",
        );
    }
    crate::audit::record_login(
        state.api.store(),
        &format!("user:{username}"),
        true,
        ip,
        "signed in",
    )
    .await;
    let mut resp = Redirect::to(&next).into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    for c in [
        cookie(
            &auth,
            SESSION_COOKIE,
            &token,
            auth.config.session_hours * 3600,
        ),
        cookie(&auth, CSRF_COOKIE, "", 0),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `POST /logout` (with the session's CSRF token).
pub async fn logout(State(state): State<AppState>, req: Request) -> Response {
    let (headers, f) = form(req).await;
    let Some(token) = cookie_value(&headers, SESSION_COOKIE) else {
        return Redirect::to("/login").into_response();
    };
    if let Ok(Some(a)) = state.auth.authenticate(None, Some(&token)).await
        && let crate::auth::Via::Session { csrf } = &a.via
    {
        if !constant_time_eq(csrf, field(&f, "csrf")) {
            return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
        }
        let hash = digest(&token);
        let _ = state
            .api
            .store()
            .write(move |tx| tx.delete_session(&hash))
            .await;
    }
    let mut resp = Redirect::to("/login").into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&cookie(&state.auth, SESSION_COOKIE, "", 0)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /auth/session`: who the session belongs to, and its CSRF token (for the console).
pub async fn session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = cookie_value(&headers, SESSION_COOKIE);
    match state.auth.authenticate(None, token.as_deref()).await {
        Ok(Some(a)) => {
            let csrf = match &a.via {
                crate::auth::Via::Session { csrf } => csrf.clone(),
                crate::auth::Via::Bearer => String::new(),
            };
            let s = &a.caller.subject;
            (
                [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")],
                json!({
                    "user": s.id.trim_start_matches("user:"),
                    "roles": s.grants.iter().map(|g| json!({"role": g.role.as_str(), "organization": g.organization})).collect::<Vec<_>>(),
                    "fhirUser": s.fhir_users.iter().map(|(t, i)| format!("{t}/{i}")).collect::<Vec<_>>(),
                    "csrf": csrf,
                })
                .to_string(),
            )
                .into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"error\":\"not signed in\"}",
        )
            .into_response(),
    }
}

/// `GET /setup`: the first-administrator form, while there is none.
pub async fn setup_page(State(state): State<AppState>, req: Request) -> Response {
    let token = req
        .uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let admins = state
        .api
        .store()
        .read(|tx| tx.count_admins())
        .await
        .unwrap_or(1);
    if admins > 0 {
        return Redirect::to("/login").into_response();
    }
    let csrf = random_token(24);
    page(
        StatusCode::OK,
        "setup.html",
        context! { title => "Set up", csrf => csrf, token => token, username => "admin" },
        &[cookie(&state.auth, CSRF_COOKIE, &csrf, 3600)],
    )
}

/// `POST /setup`: creates the first administrator with a one-time setup token.
pub async fn setup(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let auth = state.auth.clone();
    let (headers, f) = form(req).await;
    let username = field(&f, "username").trim().to_string();
    let again = |status: StatusCode, error: &str| {
        let csrf = random_token(24);
        page(
            status,
            "setup.html",
            context! { title => "Set up", csrf => csrf, token => "", username => username.clone(), error => error },
            &[cookie(&auth, CSRF_COOKIE, &csrf, 3600)],
        )
    };
    let expected = cookie_value(&headers, CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&expected, field(&f, "csrf")) {
        return again(StatusCode::FORBIDDEN, "The form expired. Please try again.");
    }
    let now = state.api.store().clock().now_ms();
    if !auth
        .limiter
        .allow(&format!("setup:{}", addr.ip()), now, 10, 5 * 60_000)
    {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts. Wait a few minutes.",
        );
    }
    let password = field(&f, "password").to_string();
    if let Err(why) = check_password_strength(&password) {
        return again(StatusCode::BAD_REQUEST, &why);
    }
    if username.is_empty() {
        return again(StatusCode::BAD_REQUEST, "Choose a user name.");
    }
    let token_hash = digest(field(&f, "token").trim());
    let record = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.clone(),
        password_hash: hash_secret(&password),
        display_name: Some("Administrator".into()),
        grants: vec![care::access::Grant {
            role: care::access::Role::AllianceAdmin,
            organization: None,
        }],
        fhir_users: vec![],
        disabled: false,
        failed_logins: 0,
        locked_until: None,
    };
    let created = state
        .api
        .store()
        .write(move |tx| {
            if tx.count_admins()? > 0 || !tx.consume_setup_token(&token_hash)? {
                return Ok::<bool, StoreError>(false);
            }
            tx.insert_user(&record)?;
            Ok(true)
        })
        .await;
    match created {
        Ok(true) => page(
            StatusCode::OK,
            "setup.html",
            context! { title => "Set up", done => true, username => username },
            &[],
        ),
        Ok(false) => again(
            StatusCode::FORBIDDEN,
            "That setup token is not valid (it is used once and expires after a day).",
        ),
        Err(_) => again(
            StatusCode::SERVICE_UNAVAILABLE,
            "Setup is temporarily unavailable.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::pages::templates;

    #[test]
    fn pages_render_and_escape() {
        let html = templates()
            .get_template("login.html")
            .unwrap()
            .render(context! { title => "Sign in", csrf => "t", username => "<script>x</script>", error => "bad & wrong" })
            .unwrap();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>x"));
        assert!(html.contains("bad &amp; wrong"));
        let setup = templates()
            .get_template("setup.html")
            .unwrap()
            .render(context! { title => "Set up", csrf => "t", token => "", username => "admin" })
            .unwrap();
        assert!(setup.contains("Create administrator"));
    }
}
