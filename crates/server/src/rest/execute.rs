//! Executing an interaction inside one store transaction. These functions hold the FHIR
//! semantics of each interaction (versions, preconditions, conditional variants); the store
//! below them only keeps versions and index rows consistent.

use fhir::IssueType;
use fhir::search::{SearchRequest, extract};
use serde_json::Value;
use store::{HistoryPage, HistoryScope, SearchPage, Stored, Tx};

use super::Ctx;
use super::bundle;
use super::interaction::{Interaction, View};
use crate::error::ApiError;

/// The result of an interaction, before it is rendered.
#[derive(Debug)]
pub enum Outcome {
    /// A resource version: 200 for reads and updates, 201 for creates.
    Resource {
        status: u16,
        stored: Stored,
        view: Option<View>,
    },
    /// `If-None-Match` matched the current version.
    NotModified(Stored),
    /// A delete: the deletion version, or `None` when there was nothing to delete.
    Deleted(Option<Stored>),
    SearchSet {
        req: SearchRequest,
        page: SearchPage,
    },
    History {
        scope: HistoryScope,
        page: HistoryPage,
        count: usize,
    },
    Json(u16, Value),
}

pub(crate) fn execute(
    tx: &mut Tx,
    ctx: &Ctx,
    interaction: Interaction,
) -> Result<Outcome, ApiError> {
    match interaction {
        Interaction::Capabilities => Ok(Outcome::Json(
            200,
            super::capability::capability_statement(ctx.registry, &ctx.base_url),
        )),
        Interaction::Read {
            rt,
            id,
            if_none_match,
            view,
        } => {
            let stored = live(tx.current(&rt, &id, false)?, &rt, &id)?;
            if if_none_match == Some(stored.version) {
                return Ok(Outcome::NotModified(stored));
            }
            Ok(Outcome::Resource {
                status: 200,
                stored,
                view: Some(view),
            })
        }
        Interaction::VRead {
            rt,
            id,
            version,
            view,
        } => {
            let Some(stored) = tx.version(&rt, &id, version)? else {
                return Err(ApiError::not_found(format!(
                    "{rt}/{id} has no version {version}"
                )));
            };
            if stored.deleted {
                return Err(ApiError::new(
                    410,
                    IssueType::Deleted,
                    format!("version {version} of {rt}/{id} is its deletion"),
                ));
            }
            Ok(Outcome::Resource {
                status: 200,
                stored,
                view: Some(view),
            })
        }
        Interaction::Create {
            rt,
            resource,
            if_none_exist,
        } => create(tx, ctx, &rt, resource, if_none_exist.as_ref()),
        Interaction::Update {
            rt,
            id,
            resource,
            if_match,
        } => update(tx, ctx, &rt, &id, resource, if_match),
        Interaction::ConditionalUpdate {
            rt,
            search,
            resource,
            if_match,
        } => {
            lock_search(tx, &search)?;
            let found = matches(tx, &search)?;
            let body_id = resource
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string);
            match found.as_slice() {
                [] => match body_id {
                    Some(id) => update(tx, ctx, &rt, &id, resource, if_match),
                    None => create(tx, ctx, &rt, resource, None),
                },
                [one] => {
                    if let Some(id) = &body_id
                        && *id != one.id
                    {
                        return Err(ApiError::bad_request(
                            IssueType::Invalid,
                            format!(
                                "the body's id '{id}' differs from the matching resource {rt}/{}",
                                one.id
                            ),
                        )
                        .at(format!("{rt}.id")));
                    }
                    let id = one.id.clone();
                    update(tx, ctx, &rt, &id, resource, if_match)
                }
                _ => Err(multiple_matches(&rt)),
            }
        }
        Interaction::Delete { rt, id } => delete(tx, &rt, &id),
        Interaction::ConditionalDelete { rt, search } => {
            let found = matches(tx, &search)?;
            match found.as_slice() {
                [] => Ok(Outcome::Deleted(None)),
                [one] => {
                    let id = one.id.clone();
                    delete(tx, &rt, &id)
                }
                _ => Err(multiple_matches(&rt)),
            }
        }
        Interaction::Search(req) => {
            let page = tx.search(&req)?;
            Ok(Outcome::SearchSet { req, page })
        }
        Interaction::History {
            scope,
            since,
            count,
            cursor,
        } => {
            if let HistoryScope::Instance { resource_type, id } = &scope
                && tx.current(resource_type, id, false)?.is_none()
            {
                return Err(ApiError::not_found(format!(
                    "{resource_type}/{id} is not known"
                )));
            }
            let page = tx.history(&scope, since, count, cursor.as_deref())?;
            Ok(Outcome::History { scope, page, count })
        }
        Interaction::Bundle {
            transaction,
            bundle,
        } => {
            let response = bundle::execute(tx, ctx, transaction, bundle)?;
            Ok(Outcome::Json(200, response))
        }
    }
}

/// The current version if it exists and is not deleted; otherwise 404 or 410.
fn live(current: Option<Stored>, rt: &str, id: &str) -> Result<Stored, ApiError> {
    match current {
        None => Err(ApiError::not_found(format!("{rt}/{id} is not known"))),
        Some(s) if s.deleted => Err(ApiError::new(
            410,
            IssueType::Deleted,
            format!("{rt}/{id} was deleted (version {})", s.version),
        )),
        Some(s) => Ok(s),
    }
}

fn multiple_matches(rt: &str) -> ApiError {
    ApiError::new(
        412,
        IssueType::MultipleMatches,
        format!("the criteria match more than one {rt}; make them more specific"),
    )
}

/// Serialises conditional writers on the same criteria.
fn lock_search(tx: &mut Tx, search: &SearchRequest) -> Result<(), ApiError> {
    let key = format!("{}?{:?}", search.resource_type, search.applied);
    tx.lock_condition(&key)?;
    Ok(())
}

/// Up to two matches of a conditional interaction's criteria.
pub(crate) fn matches(tx: &mut Tx, search: &SearchRequest) -> Result<Vec<Stored>, ApiError> {
    let mut req = search.clone();
    req.count = 2;
    req.total = fhir::search::TotalMode::None;
    req.cursor = None;
    Ok(tx.search(&req)?.matches)
}

pub(crate) fn create(
    tx: &mut Tx,
    ctx: &Ctx,
    rt: &str,
    resource: Value,
    if_none_exist: Option<&SearchRequest>,
) -> Result<Outcome, ApiError> {
    if let Some(search) = if_none_exist {
        lock_search(tx, search)?;
        let found = matches(tx, search)?;
        match found.len() {
            0 => {}
            1 => {
                let stored = found.into_iter().next().expect("one match");
                return Ok(Outcome::Resource {
                    status: 200,
                    stored,
                    view: None,
                });
            }
            _ => return Err(multiple_matches(rt)),
        }
    }
    let id = tx.new_id();
    create_with_id(tx, ctx, rt, &id, resource)
}

pub(crate) fn create_with_id(
    tx: &mut Tx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    mut resource: Value,
) -> Result<Outcome, ApiError> {
    let index = extract(ctx.registry, &resource);
    let stored = tx.create(rt, id, &mut resource, &index)?;
    Ok(Outcome::Resource {
        status: 201,
        stored,
        view: None,
    })
}

pub(crate) fn update(
    tx: &mut Tx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    mut resource: Value,
    if_match: Option<i64>,
) -> Result<Outcome, ApiError> {
    let current = tx.current(rt, id, true)?;
    match current {
        None => {
            if if_match.is_some() {
                return Err(ApiError::new(
                    412,
                    IssueType::Conflict,
                    format!("If-Match was given but {rt}/{id} does not exist"),
                ));
            }
            if let Value::Object(o) = &mut resource {
                o.insert("id".into(), Value::String(id.to_string()));
            }
            create_with_id(tx, ctx, rt, id, resource)
        }
        Some(prev) => {
            if let Some(expected) = if_match
                && expected != prev.version
            {
                return Err(ApiError::new(
                    412,
                    IssueType::Conflict,
                    format!(
                        "version conflict: If-Match asked for version {expected} but {rt}/{id} is at version {}",
                        prev.version
                    ),
                ));
            }
            let index = extract(ctx.registry, &resource);
            let was_deleted = prev.deleted;
            let stored = tx.update(&prev, &mut resource, &index)?;
            Ok(Outcome::Resource {
                status: if was_deleted { 201 } else { 200 },
                stored,
                view: None,
            })
        }
    }
}

pub(crate) fn delete(tx: &mut Tx, rt: &str, id: &str) -> Result<Outcome, ApiError> {
    match tx.current(rt, id, true)? {
        Some(prev) if !prev.deleted => Ok(Outcome::Deleted(Some(tx.delete(&prev)?))),
        _ => Ok(Outcome::Deleted(None)),
    }
}
