//! Reading resources inside a unit of work: searches built from parameters, every resource of
//! a type page by page (as the caller, or on the alliance's behalf), a stored version's JSON,
//! and the type-level scope check operations make before they read.

use fhir::IssueType;
use fhir::search::{ParseOptions, parse_search};
use serde_json::Value;
use store::{CallerTx, Stored};

use super::Ctx;
use crate::error::ApiError;

/// A search the server makes for itself (its parameters are the server's own: a problem with
/// them is the server's, 500).
pub fn search_request(
    registry: &'static fhir::search::Registry,
    rt: &str,
    pairs: &[(&str, String)],
) -> Result<fhir::search::SearchRequest, ApiError> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    parse_search(
        registry,
        rt,
        &pairs,
        &ParseOptions {
            lenient: false,
            base_url: "",
            limits: Default::default(),
        },
    )
    .map_err(|issues| ApiError::with_issues(500, issues))
}

/// Whose rights a read is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The caller's (hidden resources are left out).
    Caller,
    /// The system's, on the alliance's behalf (for what it computes over everything, such as
    /// a model).
    System(store::OnBehalf),
}

/// Every resource of a type, page by page, read as `reader`.
pub fn all_of(
    tx: &mut CallerTx,
    registry: &'static fhir::search::Registry,
    rt: &str,
    reader: Reader,
) -> Result<Vec<Stored>, ApiError> {
    all_matching(tx, registry, rt, &[], reader)
}

/// Every resource of a type that matches the server's own search `params`, page by page, read
/// as `reader`.
pub fn all_matching(
    tx: &mut CallerTx,
    registry: &'static fhir::search::Registry,
    rt: &str,
    params: &[(&str, String)],
    reader: Reader,
) -> Result<Vec<Stored>, ApiError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pairs: Vec<(&str, String)> = params.to_vec();
    pairs.push(("_count", "1000".into()));
    loop {
        let mut req = search_request(registry, rt, &pairs)?;
        req.cursor = cursor.take();
        req.total = fhir::search::TotalMode::None;
        let page = match reader {
            Reader::Caller => tx.search(&req)?,
            Reader::System(why) => tx.on_behalf(why).search(&req)?,
        };
        out.extend(page.matches);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

pub fn search(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    params: &[(&str, String)],
) -> Result<Vec<Stored>, ApiError> {
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    all.push(("_count".into(), "1000".into()));
    let req = parse_search(
        ctx.registry,
        rt,
        &all,
        &ParseOptions {
            lenient: false,
            base_url: &ctx.base_url,
            limits: ctx.search_limits,
        },
    )
    .map_err(|issues| ApiError::with_issues(400, issues))?;
    Ok(tx.search(&req)?.matches)
}

pub fn body(s: &Stored) -> Value {
    s.body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

/// `Type/id` → id when the reference is to that type.
pub fn ref_id<'a>(v: &'a Value, rt: &str) -> Option<&'a str> {
    fhir::json::reference_id(v, rt)
}

pub fn scope_reads(tx: &CallerTx, types: &[&str]) -> Result<(), ApiError> {
    for rt in types {
        tx.scope_allows(rt, care::access::Action::Read)
            .map_err(|why| ApiError::new(403, IssueType::Forbidden, why))?;
    }
    Ok(())
}
