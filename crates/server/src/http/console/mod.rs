//! The console: server-rendered pages for coordinators, clinicians, administrators and
//! families, served by the same binary at `/`. Every page reads through one unit of work as the
//! signed-in user (`App::run`: the access policy of the API, one AuditEvent); every form that
//! changes something carries the session's CSRF token and runs as one write unit through the
//! same interactions and write rules as the FHIR API (`rest::execute`, the operations). Pages
//! work without JavaScript; `console.js` only adds the map and small conveniences.
//!
//! One module per area: `worklist` (referrals received and sent, identity pairs), `referral`
//! (a referral's timeline and the moves this user may make), `patient` (a record, its linked
//! records, appointments, referrals, consents, who looked at it; referring), `findcare` (the
//! care finder, its map and the slot picker), `family` (a parent's or young person's own
//! page), `identity` (the review queue), `admin` (the directory and the accounts).

mod admin;
mod family;
mod findcare;
mod identity;
mod measures;
mod patient;
mod referral;
mod transition;
mod view;
mod worklist;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use care::access::Role;
use minijinja::{Value as Tpl, context};
use serde::Serialize;
use store::{Caller, CallerTx};

use super::AppState;
use super::login::cookie_value;
use super::pages::page;
use crate::app::{Ctx, Prefer, Work};
use crate::auth::{Authenticated, SESSION_COOKIE, Via};
use crate::error::ApiError;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/worklist", get(worklist::page))
        .route("/referrals/{id}", get(referral::page))
        .route("/referrals/{id}/{action}", post(referral::act))
        .route("/patients", get(patient::search))
        .route("/patients/{id}", get(patient::page))
        .route("/patients/{id}/refer", post(patient::refer))
        .route("/find-care", get(findcare::page))
        .route("/find-care/slots", get(findcare::slots))
        .route("/book", post(findcare::book))
        .route("/family", get(family::page))
        .route("/family/appointments/{id}/{action}", post(family::act))
        .route("/measures", get(measures::page))
        .route("/transition", get(transition::registry))
        .route("/transition/{id}", get(transition::person))
        .route("/transition/{id}/record", post(transition::record))
        .route("/transition/{id}/transfer", post(transition::transfer))
        .route("/transition/{id}/document", post(transition::document))
        .route("/readiness", get(transition::readiness))
        .route("/readiness/{id}", post(transition::answer))
        .route("/identity", get(identity::page))
        .route("/identity/{id}/{decision}", post(identity::decide))
        .route("/admin", get(admin::page))
        .route("/admin/sites", post(admin::add_site))
        .route("/admin/users", post(admin::add_user))
        .route("/admin/clients", post(admin::add_client))
        .route("/admin/keys/rotate", post(admin::rotate_keys))
        .route("/admin/users/{name}/{action}", post(admin::user_action))
        .route(
            "/admin/subscriptions/{id}/deliveries/{delivery}/resend",
            post(admin::resend_delivery),
        )
}

/// The signed-in user of a console request.
#[derive(Clone)]
pub struct Session {
    pub who: Authenticated,
    pub csrf: String,
    /// The user name.
    pub user: String,
    pub address: Option<String>,
    /// `http://host` as the browser reached the server.
    pub origin: String,
}

impl Session {
    pub fn caller(&self) -> Arc<Caller> {
        self.who.caller.clone()
    }

    pub fn has(&self, role: Role) -> bool {
        self.who.caller.subject.has(role)
    }

    /// The organisations the user works for (coordinators, clinicians, referrers).
    pub fn organizations(&self) -> Vec<String> {
        self.who.caller.subject.care_organizations()
    }

    pub fn is_admin(&self) -> bool {
        self.has(Role::AllianceAdmin)
    }

    pub fn is_family(&self) -> bool {
        care::access::is_family(&self.who.caller.subject)
    }

    /// Where this user starts.
    pub fn home(&self) -> &'static str {
        if self.is_family() {
            "/family"
        } else if !self.organizations().is_empty() {
            "/worklist"
        } else if self.is_admin() {
            "/admin"
        } else {
            "/patients"
        }
    }

    /// The navigation this user sees: (path, label).
    fn nav(&self) -> Vec<(&'static str, &'static str)> {
        let mut nav = Vec::new();
        if self.is_family() {
            nav.push(("/family", "My family"));
            nav.push(("/readiness", "Getting ready for adult care"));
            return nav;
        }
        if !self.organizations().is_empty() || self.is_admin() {
            nav.push(("/worklist", "Worklist"));
        }
        nav.push(("/patients", "Patients"));
        nav.push(("/find-care", "Find care"));
        if !self.organizations().is_empty() || self.is_admin() {
            nav.push(("/transition", "Transition"));
            nav.push(("/measures", "Measures"));
        }
        if self.has(Role::Coordinator) || self.is_admin() {
            nav.push(("/identity", "Identity review"));
        }
        if self.is_admin() || self.has(Role::Coordinator) {
            nav.push(("/admin", "Directory"));
        }
        nav
    }

    /// What every page's frame needs.
    fn frame(&self, current: &str) -> Tpl {
        let roles: Vec<String> = self
            .who
            .caller
            .subject
            .grants
            .iter()
            .map(|g| match &g.organization {
                Some(o) => format!("{} · {}", role_words(g.role), org_short(o)),
                None => role_words(g.role).to_string(),
            })
            .collect();
        let nav: Vec<Tpl> = self
            .nav()
            .into_iter()
            .map(|(href, label)| {
                context! { href => href, label => label, current => current.starts_with(href) }
            })
            .collect();
        context! { user => self.user, roles => roles.join(", "), nav => nav, csrf => self.csrf }
    }

    /// The base URL of the FHIR API as this browser reaches it (links in what is written).
    fn fhir_base(&self) -> String {
        format!("{}/fhir", self.origin)
    }
}

pub fn role_words(r: Role) -> &'static str {
    match r {
        Role::AllianceAdmin => "Alliance administrator",
        Role::Coordinator => "Coordinator",
        Role::Clinician => "Clinician",
        Role::ReferringClinician => "Referring clinician",
        Role::Patient => "Patient",
        Role::Proxy => "Parent or guardian",
        Role::Auditor => "Auditor",
    }
}

/// The alliance's two organisations by their short names; others by id.
pub fn org_short(id: &str) -> String {
    match id {
        "cc" => "Connecticut Children's".into(),
        "hhc" => "Hartford HealthCare".into(),
        other => other.to_string(),
    }
}

/// The signed-in user, or the sign-in page to go to (with where to come back).
pub async fn session(
    state: &AppState,
    headers: &HeaderMap,
    addr: SocketAddr,
    back: &str,
) -> Result<Session, Response> {
    let token = cookie_value(headers, SESSION_COOKIE);
    let to_login = || {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", back)
            .finish();
        Redirect::to(&format!("/login?{q}")).into_response()
    };
    let Some(token) = token else {
        return Err(to_login());
    };
    match state.auth.authenticate(None, Some(&token)).await {
        Ok(Some(a)) => {
            let Via::Session { csrf } = &a.via else {
                return Err(to_login());
            };
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost")
                .to_string();
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("http");
            Ok(Session {
                csrf: csrf.clone(),
                user: a.caller.subject.id.trim_start_matches("user:").to_string(),
                who: a,
                address: Some(addr.ip().to_string()),
                origin: format!("{scheme}://{host}"),
            })
        }
        _ => Err(to_login()),
    }
}

/// A console page: the frame and the page's own values.
pub fn render(s: &Session, current: &str, name: &str, title: &str, data: Tpl) -> Response {
    page(
        StatusCode::OK,
        name,
        context! { title => title, me => s.frame(current), page => data, flash => Tpl::UNDEFINED },
        &[],
    )
}

/// [`render`] with a line saying what was just done.
pub fn render_flash(
    s: &Session,
    current: &str,
    name: &str,
    title: &str,
    data: Tpl,
    flash: Option<String>,
) -> Response {
    page(
        StatusCode::OK,
        name,
        context! { title => title, me => s.frame(current), page => data, flash => flash },
        &[],
    )
}

/// The words of an error, for a person.
pub fn error_words(e: &ApiError) -> String {
    let words: Vec<&str> = e.issues.iter().map(|i| i.diagnostics.as_str()).collect();
    if words.is_empty() {
        "Something went wrong.".into()
    } else {
        words.join(" ")
    }
}

/// The error page: what went wrong, in words, with the status it answers.
pub fn error_page(s: Option<&Session>, e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let heading = match e.status {
        403 => "Not allowed",
        404 => "Not found",
        409 => "That cannot be done now",
        400 | 422 => "Please check what you entered",
        _ => "Something went wrong",
    };
    page(
        status,
        "console/error.html",
        context! {
            title => heading,
            me => s.map(|s| s.frame("")),
            page => context! { heading => heading, words => error_words(e), status => e.status },
        },
        &[],
    )
}

/// The FHIR base URL put in what is written (a video visit's join link): the configured public
/// one when there is one, as the API does, else as this browser reached the server.
fn base_url(state: &AppState, s: &Session) -> String {
    match &state.api.config().public_base_url {
        Some(base) => base.trim_end_matches('/').to_string(),
        None => s.fhir_base(),
    }
}

/// Runs `f` as one read-only unit of work of the signed-in user (one AuditEvent, named
/// `name`, the access policy of every read).
pub async fn read<T, F>(
    state: &AppState,
    s: &Session,
    name: &'static str,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut CallerTx, &Ctx) -> Result<T, ApiError> + Send + 'static,
{
    let ctx = state.api.ctx(base_url(state, s), Prefer::default());
    state
        .api
        .run(
            s.caller(),
            Work::request(name, false, s.address.clone()),
            ctx,
            f,
        )
        .await
}

/// Runs `f` as one write unit of the signed-in user, after checking the form's CSRF token.
pub async fn write<T, F>(
    state: &AppState,
    s: &Session,
    form: &Form,
    name: &'static str,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut CallerTx, &Ctx) -> Result<T, ApiError> + Send + 'static,
{
    if !s.who.may_write(Some(form.get("csrf"))) {
        return Err(ApiError::new(
            403,
            fhir::IssueType::Forbidden,
            "this form has expired (its security token does not match the session); reload the page and try again",
        ));
    }
    let ctx = state.api.ctx(base_url(state, s), Prefer::default());
    state
        .api
        .run(
            s.caller(),
            Work::request(name, true, s.address.clone()),
            ctx,
            f,
        )
        .await
}

/// A posted form's fields.
#[derive(Debug, Default, Clone)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// A field, trimmed, `None` when empty.
    pub fn opt(&self, name: &str) -> Option<String> {
        let v = self.get(name).trim();
        (!v.is_empty()).then(|| v.to_string())
    }
}

/// Reads a posted form (at most 64 KiB), for the console and the sign-in pages alike. A field
/// holding U+0000 can be no one's name or secret (and PostgreSQL's text cannot hold it): such
/// fields are left out, so a request fails as with a wrong value.
pub async fn read_form(req: Request) -> (HeaderMap, Form) {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 64 * 1024).await.unwrap_or_default();
    (
        parts.headers,
        Form(
            form_urlencoded::parse(&bytes)
                .into_owned()
                .filter(|(k, v)| !k.contains('\0') && !v.contains('\0'))
                .collect(),
        ),
    )
}

/// A posted form and the signed-in user who posted it (or the sign-in page to go to).
pub async fn posted(
    state: &AppState,
    req: Request,
    addr: SocketAddr,
    back: &str,
) -> Result<(Session, Form), Response> {
    let (headers, form) = read_form(req).await;
    let s = session(state, &headers, addr, back).await?;
    Ok((s, form))
}

/// A query string's pairs.
pub fn query_of(req_uri: &axum::http::Uri) -> HashMap<String, String> {
    req_uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// After a change: back to a page (303), with what was done in `done`.
pub fn see_other(path: &str, done: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("done", done)
        .finish();
    let mut r = Redirect::to(&format!("{path}{sep}{q}")).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}

/// The sentence for a `done` code (only these: a page never echoes what a link says).
pub fn done_words(code: Option<&String>) -> Option<String> {
    let words = match code?.as_str() {
        "accepted" => "The referral was accepted.",
        "received" => "The referral was marked received.",
        "rejected" => "The referral was declined; the referring practice is told why.",
        "cancelled" => "The referral was cancelled.",
        "completed" => {
            "The consult note was attached and the referral completed: the loop is closed."
        }
        "in-progress" => "The referral is in progress.",
        "on-hold" => "The referral is on hold.",
        "failed" => "The referral was marked failed; the referring practice is told.",
        "referred" => "The referral was sent.",
        "booked" => "The appointment was booked.",
        "appointment-cancelled" => "The appointment was cancelled.",
        "offer-accepted" => "The earlier time is yours: the appointment was booked.",
        "waitlist" => {
            "You are on the waiting list: we will offer you an earlier time when one frees."
        }
        "linked" => "The two records were linked as one person.",
        "not-linked" => "The pair was marked as two different people.",
        "unlinked" => "The link was undone.",
        "site-added" => "The site was added to the directory.",
        "element-recorded" => "The element was recorded.",
        "document-written" => "It was written to the record, and its element recorded.",
        "transfer-sent" => {
            "The transfer package was sent with the referral; the pediatric team stays responsible until the first adult visit."
        }
        "assessment-saved" => "Your answers were saved. Thank you.",
        "user-disabled" => "The account was disabled.",
        "resent" => "The notification will be delivered again now.",
        "user-enabled" => "The account was enabled.",
        "keys-rotated" => {
            "A new signing key signs tokens from now on; tokens signed by the old one stay valid until they expire."
        }
        _ => return None,
    };
    Some(words.to_string())
}

/// `GET /`: a browser goes to its console page (or signs in); other clients get the index of
/// the API as JSON.
pub async fn home(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return super::api_index();
    }
    match session(&state, &headers, addr, "/").await {
        Ok(s) => Redirect::to(s.home()).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// Values the templates show, serialised.
pub fn tpl<T: Serialize>(v: &T) -> Tpl {
    Tpl::from_serialize(v)
}
