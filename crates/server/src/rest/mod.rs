//! The FHIR REST router, free of any HTTP library: a [`FhirRequest`] value in, a
//! [`FhirResponse`] out. The axum adapter in `http` only converts to and from these.
//!
//! A request is first parsed into an [`Interaction`] (pure: routing, content checks, JSON
//! parsing, validation, search parsing; operations from the registry in [`ops`]), then run as
//! one unit of work of the application (`App::run`): one transaction bound to the caller, one
//! AuditEvent, and rendered.

mod bundle;
pub mod capability;
pub(crate) mod execute;
pub mod import;
mod interaction;
pub mod ops;
mod render;
pub mod rules;

use fhir::IssueType;
use serde_json::Value;

pub use crate::app::{App as FhirApi, AppConfig as RestConfig, Prefer, Return};
use crate::app::{App, Work};
use crate::auth::Authenticated;
use crate::error::ApiError;
pub use interaction::Interaction;

/// The interactions the router answers besides the operations ([`ops::OPERATIONS`]), by the
/// names the audit trail, the logs and the metrics use.
pub const INTERACTIONS: &[&str] = &[
    "capabilities",
    "read",
    "vread",
    "create",
    "update",
    "delete",
    "search-type",
    "history-instance",
    "history-type",
    "history-system",
    "batch",
    "transaction",
];

/// An HTTP method, as FHIR uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Other,
}

impl Method {
    pub fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// The kind of body a request carries, from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Form,
    Missing,
    Other(String),
}

impl ContentType {
    pub fn parse(header: Option<&str>) -> ContentType {
        let Some(h) = header else {
            return ContentType::Missing;
        };
        let mime = h
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/fhir+json" | "application/json" | "application/json+fhir" => {
                ContentType::Json
            }
            "application/x-www-form-urlencoded" => ContentType::Form,
            "" => ContentType::Missing,
            _ => ContentType::Other(mime),
        }
    }
}

/// A FHIR request, as the router sees it.
#[derive(Debug, Clone)]
pub struct FhirRequest {
    pub method: Method,
    /// Path segments after the FHIR base (`["Patient", "1", "_history"]`), percent-decoded.
    pub path: Vec<String>,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    pub content_type: ContentType,
    pub prefer: Prefer,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_none_exist: Option<String>,
    pub body: Vec<u8>,
    /// The FHIR base URL the client used (`http://host:port/fhir`).
    pub base_url: String,
}

/// A response body.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Value),
    /// JSON text already serialised (a stored resource, a search bundle).
    Text(String),
}

/// A FHIR response, as the router produces it.
#[derive(Debug, Clone)]
pub struct FhirResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// The interaction name, for metrics and logs (`read`, `search-type`, …).
    pub interaction: &'static str,
    /// The resource type involved, for metrics and logs.
    pub resource_type: Option<String>,
}

impl FhirResponse {
    pub fn error(e: &ApiError, interaction: &'static str) -> FhirResponse {
        FhirResponse {
            status: e.status,
            headers: e.headers.clone(),
            body: Body::Json(fhir::operation_outcome(&e.issues)),
            interaction,
            resource_type: None,
        }
    }
}

/// Who sent a request, as far as the router needs to know.
#[derive(Debug, Clone)]
pub struct RequestOrigin {
    pub who: Option<Authenticated>,
    /// The `X-CSRF-Token` header (required for cookie-authenticated writes).
    pub csrf: Option<String>,
    pub address: Option<String>,
}

impl App {
    /// Handles one FHIR request end to end: parse, check the caller (authenticated by the HTTP
    /// layer; a console session's CSRF token for writes), run the interaction as one unit of
    /// work (`App::run`: one transaction bound to the caller, one AuditEvent), render.
    pub async fn handle(&self, mut req: FhirRequest, origin: RequestOrigin) -> FhirResponse {
        if let Some(base) = &self.config().public_base_url {
            req.base_url = base.trim_end_matches('/').to_string();
        }
        let interaction = match interaction::parse(
            &req,
            self.registry(),
            self.config().search_limits,
        ) {
            Ok(i) => i,
            Err(e) => {
                let Some(who) = &origin.who else {
                    // a malformed request from an unauthenticated client is still an auth problem
                    return unauthenticated(
                        "authentication is required: send 'Authorization: Bearer <token>' (see /auth/token)",
                    );
                };
                // refused before any data was touched; still on the record
                let work = Work::request("invalid", false, origin.address.clone());
                if let Err(err) = self.audit_refusal(&who.caller, &work, e.status).await {
                    return FhirResponse::error(&err, "invalid");
                }
                return FhirResponse::error(&e, "invalid");
            }
        };
        let name = interaction.name();
        let rt = interaction.resource_type().map(str::to_string);
        let ctx = self.ctx(req.base_url.clone(), req.prefer);
        if let Interaction::Capabilities = interaction {
            let cs = capability::capability_statement(
                self.registry(),
                &ctx.base_url,
                &ctx.search_limits,
            );
            return render::response(execute::Outcome::Json(200, cs), req.prefer, &req.base_url);
        }
        let Some(who) = origin.who.clone() else {
            return unauthenticated(
                "authentication is required: send 'Authorization: Bearer <token>' (see /auth/token)",
            );
        };
        if interaction.writes() && !who.may_write(origin.csrf.as_deref()) {
            let e = ApiError::new(
                403,
                IssueType::Forbidden,
                "a signed-in console session must send its CSRF token in the X-CSRF-Token header to change data",
            );
            return FhirResponse::error(&e, name);
        }
        let work = Work {
            name,
            writes: interaction.writes(),
            // a Bundle can fail after writing part of itself: it gets a transaction of its own
            alone: matches!(interaction, Interaction::Bundle { .. }),
            address: origin.address.clone(),
            query: match &interaction {
                Interaction::Search(s) => Some(format!(
                    "{}?{}",
                    s.resource_type,
                    s.applied
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("&")
                )),
                _ => None,
            },
            quiet: false,
            budgeted: true,
        };
        let prefer = req.prefer;
        if let Interaction::Operation { op, input } = &interaction
            && let Some(check) = op.precheck
        {
            // the refusals reading can tell, answered without the writer (audited when refused)
            let pre = Work {
                writes: false,
                quiet: true,
                ..work.clone()
            };
            let input = input.clone();
            let checked = self
                .run(
                    who.caller.clone(),
                    pre,
                    self.ctx(req.base_url.clone(), req.prefer),
                    move |tx, ctx| check(tx, ctx, &input),
                )
                .await;
            if let Err(error) = checked {
                let mut resp = FhirResponse::error(&error, name);
                resp.resource_type = rt;
                return resp;
            }
        }
        let result = self
            .run(who.caller.clone(), work, ctx, move |tx, ctx| {
                execute::execute(tx, ctx, interaction)
            })
            .await;
        let mut resp = match result {
            Ok(outcome) => render::response(outcome, prefer, &req.base_url),
            Err(error) => FhirResponse::error(&error, name),
        };
        resp.interaction = name;
        resp.resource_type = rt;
        resp
    }
}

fn unauthenticated(msg: &str) -> FhirResponse {
    let mut r = FhirResponse::error(
        &ApiError::new(401, IssueType::Login, msg),
        "unauthenticated",
    );
    r.headers
        .push(("WWW-Authenticate", "Bearer realm=\"continuum\"".to_string()));
    r
}
