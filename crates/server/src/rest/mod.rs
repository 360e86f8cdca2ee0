//! The FHIR REST router, free of any HTTP library: a [`FhirRequest`] value in, a
//! [`FhirResponse`] out. The axum adapter in `http.rs` only converts to and from these.
//!
//! A request is first parsed into an [`Interaction`] (pure: routing, content checks, JSON
//! parsing, validation, search parsing), then executed inside one store transaction.

pub mod booking;
mod bundle;
pub mod capability;
mod execute;
pub mod findcare;
pub mod import;
mod interaction;
pub mod matching;
mod render;
pub mod subscriptions;
pub mod visit;
mod waitlist;

use std::sync::Arc;

use fhir::IssueType;
use fhir::search::Registry;
use serde_json::Value;
use store::{AuditTrail, Caller, CallerTx, Store, StoreError};

use crate::auth::{Authenticated, Via};
use crate::error::ApiError;
pub use interaction::Interaction;

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

/// `Prefer` header settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefer {
    pub return_: Return,
    pub lenient: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

impl Prefer {
    /// Parses `return=minimal, handling=lenient` (several headers may be joined with commas).
    pub fn parse(header: Option<&str>) -> Prefer {
        let mut p = Prefer::default();
        for part in header.unwrap_or("").split([',', ';']) {
            match part.trim().replace(' ', "").as_str() {
                "return=minimal" => p.return_ = Return::Minimal,
                "return=representation" => p.return_ = Return::Representation,
                "return=OperationOutcome" => p.return_ = Return::OperationOutcome,
                "handling=lenient" => p.lenient = true,
                "handling=strict" => p.lenient = false,
                _ => {}
            }
        }
        p
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
            headers: Vec::new(),
            body: Body::Json(fhir::operation_outcome(&e.issues)),
            interaction,
            resource_type: None,
        }
    }
}

/// Router settings.
#[derive(Debug, Clone, Default)]
pub struct RestConfig {
    /// The FHIR base URL to use in links instead of the one the request came in on.
    pub public_base_url: Option<String>,
    /// The care finder's settings.
    pub find_care: Arc<care::findcare::FindCareConfig>,
    /// The care finder's directory snapshot, shared by every request.
    pub directory: Arc<findcare::DirectoryCache>,
    /// Holds, video visits, the waitlist and reminders.
    pub booking: Arc<booking::BookingConfig>,
    /// The active subscriptions, shared by every request.
    pub subscriptions: Arc<subscriptions::SubscriptionCache>,
    /// The identity model `$match` scores with.
    pub match_model: Arc<matching::MatchModel>,
}

/// The FHIR REST API over a store.
#[derive(Clone)]
pub struct FhirApi {
    store: Store,
    registry: &'static Registry,
    config: Arc<RestConfig>,
}

/// What execution needs besides the transaction.
pub(crate) struct Ctx {
    pub base_url: String,
    pub prefer: Prefer,
    pub registry: &'static Registry,
    pub find_care: Arc<care::findcare::FindCareConfig>,
    /// The care finder's directory snapshot, shared by every request.
    pub directory: Arc<findcare::DirectoryCache>,
    pub booking: Arc<booking::BookingConfig>,
    pub subscriptions: Arc<subscriptions::SubscriptionCache>,
    pub match_model: Arc<matching::MatchModel>,
}

/// Who sent a request, as far as the router needs to know.
#[derive(Debug, Clone)]
pub struct RequestOrigin {
    pub who: Option<Authenticated>,
    /// The `X-CSRF-Token` header (required for cookie-authenticated writes).
    pub csrf: Option<String>,
    pub address: Option<String>,
}

/// A failed unit of work, with what it touched (for the audit trail).
pub(crate) struct Failure {
    pub error: ApiError,
    pub trail: AuditTrail,
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure {
            error: ApiError::from(e),
            trail: AuditTrail::default(),
        }
    }
}

impl FhirApi {
    pub fn new(store: Store, config: RestConfig) -> FhirApi {
        FhirApi {
            store,
            registry: fhir::search::registry(),
            config: Arc::new(config),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &RestConfig {
        &self.config
    }

    /// What execution needs, for a request to `base_url` (or a background job: the public base
    /// URL when one is configured).
    pub(crate) fn ctx(&self, base_url: String, prefer: Prefer) -> Ctx {
        Ctx {
            base_url,
            prefer,
            registry: self.registry,
            find_care: self.config.find_care.clone(),
            directory: self.config.directory.clone(),
            booking: self.config.booking.clone(),
            subscriptions: self.config.subscriptions.clone(),
            match_model: self.config.match_model.clone(),
        }
    }

    /// Runs a background job's work as the system (`who`) in one write transaction of its
    /// own: subscriptions are told of what it wrote, and when it did something (a description
    /// is returned) an AuditEvent records it with the resources it touched.
    pub(crate) async fn system_job<T, F>(&self, who: &'static str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut CallerTx, &Ctx) -> Result<(T, Option<String>), ApiError> + Send + 'static,
    {
        let caller = import::system_caller(who);
        let ctx = self.job_ctx();
        self.store
            .write_alone(move |tx| {
                let mut bound = CallerTx::bind(tx, &caller)?;
                let (out, description) = f(&mut bound, &ctx)?;
                subscriptions::notify_written(&mut bound, &ctx)?;
                if let Some(description) = description {
                    let trail = std::mem::take(&mut bound.trail);
                    let mut event = crate::audit::audit_event(&crate::audit::AuditFacts {
                        interaction: "update",
                        subject_id: who,
                        fhir_users: &[],
                        address: None,
                        outcome: crate::audit::AuditOutcome::Success,
                        description: Some(description),
                        trail: &trail,
                        query: None,
                        now_ms: bound.now(),
                    });
                    bound.append_audit(&mut event)?;
                }
                Ok::<_, ApiError>(out)
            })
            .await
    }

    /// The context of a background job.
    pub(crate) fn job_ctx(&self) -> Ctx {
        let base = self
            .config
            .public_base_url
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        self.ctx(base, Prefer::default())
    }

    /// Handles one request end to end: parse, authenticate, execute in one transaction bound
    /// to the caller, audit, render.
    pub async fn handle(&self, mut req: FhirRequest, origin: RequestOrigin) -> FhirResponse {
        if let Some(base) = &self.config.public_base_url {
            req.base_url = base.trim_end_matches('/').to_string();
        }
        let interaction = match interaction::parse(&req, self.registry) {
            Ok(i) => i,
            Err(e) => {
                let Some(who) = &origin.who else {
                    // a malformed request from an unauthenticated client is still an auth problem
                    return unauthenticated(
                        "authentication is required: send 'Authorization: Bearer <token>' (see /auth/token)",
                    );
                };
                // refused before any data was touched; still on the record
                let audit = AuditInput {
                    interaction: "invalid",
                    address: origin.address.clone(),
                    query: None,
                };
                let event = audit.event(
                    &who.caller,
                    &AuditTrail::default(),
                    e.status,
                    self.store.clock().now_ms(),
                );
                if let Err(err) = self.store.append_audit(event).await {
                    return FhirResponse::error(&ApiError::from(err), "invalid");
                }
                return FhirResponse::error(&e, "invalid");
            }
        };
        let name = interaction.name();
        let rt = interaction.resource_type().map(str::to_string);
        let ctx = self.ctx(req.base_url.clone(), req.prefer);
        if let Interaction::Capabilities = interaction {
            let cs = capability::capability_statement(self.registry, &ctx.base_url);
            return render::response(execute::Outcome::Json(200, cs), req.prefer, &req.base_url);
        }
        let Some(who) = origin.who.clone() else {
            return unauthenticated(
                "authentication is required: send 'Authorization: Bearer <token>' (see /auth/token)",
            );
        };
        if let Via::Session { csrf } = &who.via
            && interaction.writes()
            && !origin
                .csrf
                .as_deref()
                .is_some_and(|c| crate::auth::secrets::constant_time_eq(c, csrf))
        {
            let e = ApiError::new(
                403,
                IssueType::Forbidden,
                "a signed-in console session must send its CSRF token in the X-CSRF-Token header to change data",
            );
            return FhirResponse::error(&e, name);
        }
        let query = match &interaction {
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
        };
        let caller = who.caller.clone();
        let audit = AuditInput {
            interaction: name,
            address: origin.address.clone(),
            query,
        };
        let result: Result<(execute::Outcome, AuditTrail), Failure> = if interaction.writes() {
            let audit = audit.clone();
            let caller = caller.clone();
            // a Bundle can fail after writing part of itself: it gets a transaction of its own
            let alone = matches!(interaction, Interaction::Bundle { .. });
            let unit = move |tx: &mut store::Tx| {
                let mut bound = CallerTx::bind(tx, &caller)?;
                let done = execute::execute(&mut bound, &ctx, interaction).and_then(|outcome| {
                    subscriptions::notify_written(&mut bound, &ctx)?;
                    Ok(outcome)
                });
                match done {
                    Ok(outcome) => {
                        let trail = std::mem::take(&mut bound.trail);
                        let mut event = audit.event(&caller, &trail, 200, bound.now());
                        bound.append_audit(&mut event)?;
                        Ok((outcome, trail))
                    }
                    Err(error) => Err(Failure {
                        error,
                        trail: std::mem::take(&mut bound.trail),
                    }),
                }
            };
            if alone {
                self.store.write_alone(unit).await
            } else {
                self.store.write(unit).await
            }
        } else {
            let caller = caller.clone();
            self.store
                .read(move |tx| {
                    let mut bound = CallerTx::bind(tx, &caller)?;
                    match execute::execute(&mut bound, &ctx, interaction) {
                        Ok(outcome) => Ok((outcome, std::mem::take(&mut bound.trail))),
                        Err(error) => Err(Failure {
                            error,
                            trail: std::mem::take(&mut bound.trail),
                        }),
                    }
                })
                .await
        };
        let prefer = req.prefer;
        let (mut resp, trail_to_record) = match result {
            Ok((outcome, trail)) => {
                let resp = render::response(outcome, prefer, &req.base_url);
                // writes were audited inside their transaction; reads are recorded now
                (
                    resp,
                    if audit.interaction_writes() {
                        None
                    } else {
                        Some(trail)
                    },
                )
            }
            Err(Failure { error, trail }) => (FhirResponse::error(&error, name), Some(trail)),
        };
        if let Some(trail) = trail_to_record {
            let event = audit.event(&caller, &trail, resp.status, self.store.clock().now_ms());
            if let Err(e) = self.store.append_audit(event).await {
                tracing::error!(error = %e, "could not record the audit event; withholding the response");
                resp = FhirResponse::error(&ApiError::from(e), name);
            }
        }
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

/// What the audit record of a request needs besides its trail.
#[derive(Clone)]
struct AuditInput {
    interaction: &'static str,
    address: Option<String>,
    query: Option<String>,
}

impl AuditInput {
    fn interaction_writes(&self) -> bool {
        matches!(
            self.interaction,
            "create" | "update" | "delete" | "transaction" | "batch" | "break-the-glass"
        )
    }

    fn event(&self, caller: &Caller, trail: &AuditTrail, status: u16, now_ms: i64) -> Value {
        let outcome = if trail.denied && status < 400 {
            200
        } else {
            status
        };
        crate::audit::audit_event(&crate::audit::AuditFacts {
            interaction: self.interaction,
            subject_id: &caller.subject.id,
            fhir_users: &caller.subject.fhir_users,
            address: self.address.as_deref(),
            outcome: crate::audit::AuditOutcome::from_status(outcome),
            description: trail
                .denied
                .then(|| "access to some resources was refused or hidden".to_string()),
            trail,
            query: self.query.as_deref(),
            now_ms,
        })
    }
}
