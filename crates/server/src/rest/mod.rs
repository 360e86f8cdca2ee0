//! The FHIR REST router, free of any HTTP library: a [`FhirRequest`] value in, a
//! [`FhirResponse`] out. The axum adapter in `http.rs` only converts to and from these.
//!
//! A request is first parsed into an [`Interaction`] (pure: routing, content checks, JSON
//! parsing, validation, search parsing), then executed inside one store transaction.

mod bundle;
pub mod capability;
mod execute;
pub mod import;
mod interaction;
mod render;

use std::sync::Arc;

use fhir::search::Registry;
use serde_json::Value;
use store::Store;

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
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// The FHIR base URL to use in links instead of the one the request came in on.
    pub public_base_url: Option<String>,
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

    /// Handles one request end to end.
    pub async fn handle(&self, mut req: FhirRequest) -> FhirResponse {
        if let Some(base) = &self.config.public_base_url {
            req.base_url = base.trim_end_matches('/').to_string();
        }
        let interaction = match interaction::parse(&req, self.registry) {
            Ok(i) => i,
            Err(e) => return FhirResponse::error(&e, "invalid"),
        };
        let name = interaction.name();
        let rt = interaction.resource_type().map(str::to_string);
        let ctx = Ctx {
            base_url: req.base_url.clone(),
            prefer: req.prefer,
            registry: self.registry,
        };
        let result = if let Interaction::Capabilities = interaction {
            Ok(execute::Outcome::Json(
                200,
                capability::capability_statement(self.registry, &ctx.base_url),
            ))
        } else if interaction.writes() {
            self.store
                .write(move |tx| execute::execute(tx, &ctx, interaction))
                .await
        } else {
            self.store
                .read(move |tx| execute::execute(tx, &ctx, interaction))
                .await
        };
        let prefer = req.prefer;
        let mut resp = match result {
            Ok(outcome) => render::response(outcome, prefer, &req.base_url),
            Err(e) => FhirResponse::error(&e, name),
        };
        resp.interaction = name;
        resp.resource_type = rt;
        resp
    }
}
