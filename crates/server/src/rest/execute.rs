//! Executing an interaction inside one store transaction bound to the caller. These functions
//! hold the FHIR semantics of each interaction (versions, preconditions, conditional variants);
//! the caller-bound store below them decides what the caller may see and change.

use care::access::Action;
use fhir::IssueType;
use fhir::search::{IndexEntry, SearchRequest, extract};
use serde_json::Value;
use store::{CallerTx, HistoryPage, HistoryScope, SearchPage, Stored};

use super::bundle;
use super::interaction::{Interaction, View};
use crate::app::Ctx;
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

fn scope(tx: &CallerTx, rt: &str, action: Action) -> Result<(), ApiError> {
    tx.scope_allows(rt, action)
        .map_err(|why| ApiError::new(403, IssueType::Forbidden, why))
}

pub(crate) fn execute(
    tx: &mut CallerTx,
    ctx: &Ctx,
    interaction: Interaction,
) -> Result<Outcome, ApiError> {
    match interaction {
        Interaction::Capabilities => Ok(Outcome::Json(
            200,
            super::capability::capability_statement(
                ctx.registry,
                &ctx.base_url,
                &ctx.search_limits,
            ),
        )),
        Interaction::Read {
            rt,
            id,
            if_none_match,
            view,
        } => {
            scope(tx, &rt, Action::Read)?;
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
            scope(tx, &rt, Action::Read)?;
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
        } => {
            scope(tx, &rt, Action::Create)?;
            create(tx, ctx, &rt, resource, if_none_exist.as_ref())
        }
        Interaction::Update {
            rt,
            id,
            resource,
            if_match,
        } => {
            scope(tx, &rt, Action::Update)?;
            update(tx, ctx, &rt, &id, resource, if_match)
        }
        Interaction::ConditionalUpdate {
            rt,
            search,
            resource,
            if_match,
        } => {
            scope(tx, &rt, Action::Update)?;
            let body_id = resource
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string);
            match conditional_update_target(tx, &rt, &search, body_id.as_deref())? {
                Some(id) => update(tx, ctx, &rt, &id, resource, if_match),
                None => create(tx, ctx, &rt, resource, None),
            }
        }
        Interaction::Delete { rt, id } => {
            scope(tx, &rt, Action::Delete)?;
            delete(tx, ctx, &rt, &id)
        }
        Interaction::ConditionalDelete { rt, search } => {
            scope(tx, &rt, Action::Delete)?;
            let found = matches(tx, &search)?;
            match found.as_slice() {
                [] => Ok(Outcome::Deleted(None)),
                [one] => {
                    let id = one.id.clone();
                    delete(tx, ctx, &rt, &id)
                }
                _ => Err(multiple_matches(&rt)),
            }
        }
        Interaction::Search(req) => {
            scope(tx, &req.resource_type, Action::Search)?;
            let page = tx.search(&req)?;
            Ok(Outcome::SearchSet { req, page })
        }
        Interaction::History {
            scope: hscope,
            since,
            count,
            cursor,
        } => {
            if let HistoryScope::Instance { resource_type, id } = &hscope {
                scope(tx, resource_type, Action::Read)?;
                if tx.current(resource_type, id, false)?.is_none() {
                    return Err(ApiError::not_known(resource_type, id));
                }
            }
            if let HistoryScope::Type(rt) = &hscope {
                scope(tx, rt, Action::Read)?;
            }
            let page = tx.history(&hscope, since, count, cursor.as_deref())?;
            Ok(Outcome::History {
                scope: hscope,
                page,
                count,
            })
        }
        Interaction::Bundle {
            transaction,
            bundle,
        } => {
            let response = bundle::execute(tx, ctx, transaction, bundle)?;
            Ok(Outcome::Json(200, response))
        }
        Interaction::Operation { op, input } => (op.run)(tx, ctx, input),
    }
}

/// The current version if it exists and is not deleted; otherwise 404 or 410.
fn live(current: Option<Stored>, rt: &str, id: &str) -> Result<Stored, ApiError> {
    match current {
        None => Err(ApiError::not_known(rt, id)),
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
fn lock_search(tx: &mut CallerTx, search: &SearchRequest) -> Result<(), ApiError> {
    let key = format!("{}?{:?}", search.resource_type, search.applied);
    tx.lock_condition(&key)?;
    Ok(())
}

/// Up to two matches (among what the caller can see) of a conditional interaction's criteria.
pub(crate) fn matches(tx: &mut CallerTx, search: &SearchRequest) -> Result<Vec<Stored>, ApiError> {
    let mut req = search.clone();
    req.count = 2;
    req.total = fhir::search::TotalMode::None;
    req.cursor = None;
    Ok(tx.search(&req)?.matches)
}

/// A conditional create's criteria (`If-None-Exist`), serialised with other writers on the
/// same criteria: the one resource they match (nothing is created then), none, or 412 when
/// several match. Plain requests and Bundle entries both decide here.
pub(crate) fn if_none_exist_match(
    tx: &mut CallerTx,
    rt: &str,
    search: &SearchRequest,
) -> Result<Option<Stored>, ApiError> {
    lock_search(tx, search)?;
    let found = matches(tx, search)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(multiple_matches(rt)),
    }
}

/// A conditional update's target (`PUT Type?criteria`), serialised with other writers on the
/// same criteria: the id of the one match (400 if the body names another id), the body's id
/// when nothing matches (update-as-create), `None` to create under a new id, or 412 when
/// several match. Plain requests and Bundle entries both decide here.
pub(crate) fn conditional_update_target(
    tx: &mut CallerTx,
    rt: &str,
    search: &SearchRequest,
    body_id: Option<&str>,
) -> Result<Option<String>, ApiError> {
    lock_search(tx, search)?;
    let found = matches(tx, search)?;
    match found.as_slice() {
        [] => Ok(body_id.map(str::to_string)),
        [one] => {
            if let Some(id) = body_id
                && id != one.id
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
            Ok(Some(one.id.clone()))
        }
        _ => Err(multiple_matches(rt)),
    }
}

pub(crate) fn create(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    resource: Value,
    if_none_exist: Option<&SearchRequest>,
) -> Result<Outcome, ApiError> {
    if let Some(search) = if_none_exist
        && let Some(stored) = if_none_exist_match(tx, rt, search)?
    {
        return Ok(Outcome::Resource {
            status: 200,
            stored,
            view: None,
        });
    }
    let id = tx.new_id();
    create_with_id(tx, ctx, rt, &id, resource)
}

/// The search index of a resource a client sent, refused (422) beyond the entries one resource
/// may need.
fn index_of(ctx: &Ctx, rt: &str, resource: &Value) -> Result<Vec<IndexEntry>, ApiError> {
    let index = extract(ctx.registry, resource);
    match fhir::search::over_index_limit(rt, &index) {
        Some(issue) => Err(ApiError::with_issues(422, vec![issue])),
        None => Ok(index),
    }
}

pub(crate) fn create_with_id(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    mut resource: Value,
) -> Result<Outcome, ApiError> {
    crate::app::labels::apply_automatic_labels(tx, &mut resource)?;
    // decided before any write rule runs: a refused write has no side effects
    let mut index = index_of(ctx, rt, &resource)?;
    let permit = tx
        .permit_create(rt, id, &resource, &index)?
        .map_err(|r| ApiError::refused(r, rt, id))?;
    if super::rules::before_write(tx, ctx, rt, id, None, &mut resource)? {
        index = extract(ctx.registry, &resource);
    }
    let stored = tx
        .create_permitted(permit, rt, id, &mut resource, &index)?
        .map_err(|r| ApiError::refused(r, rt, id))?;
    super::rules::after_write(tx, ctx, rt, id, &resource)?;
    Ok(Outcome::Resource {
        status: 201,
        stored,
        view: None,
    })
}

/// A create under an id a hidden resource holds: answered exactly as the creation would be
/// where the decision refuses it (so hidden and absent look alike), else a conflict — the id
/// cannot be reused, which is all it tells.
fn create_over_hidden(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    mut resource: Value,
) -> Result<Outcome, ApiError> {
    if let Value::Object(o) = &mut resource {
        o.insert("id".into(), Value::String(id.to_string()));
    }
    crate::app::labels::apply_automatic_labels(tx, &mut resource)?;
    let index = index_of(ctx, rt, &resource)?;
    tx.permit_create(rt, id, &resource, &index)?
        .map_err(|r| ApiError::refused(r, rt, id))?;
    Err(ApiError::new(
        409,
        IssueType::Conflict,
        format!(
            "{rt}/{id} cannot be created under this id; create it with POST to let the server choose one"
        ),
    ))
}

pub(crate) fn update(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    mut resource: Value,
    if_match: Option<i64>,
) -> Result<Outcome, ApiError> {
    let current = tx.current_for_write(rt, id)?;
    if if_match.is_some()
        && matches!(
            current,
            store::access::Current::Absent | store::access::Current::Hidden
        )
    {
        return Err(ApiError::new(
            412,
            IssueType::Conflict,
            format!("If-Match was given but {rt}/{id} does not exist"),
        ));
    }
    match current {
        store::access::Current::Hidden => create_over_hidden(tx, ctx, rt, id, resource),
        store::access::Current::Absent => {
            if let Value::Object(o) = &mut resource {
                o.insert("id".into(), Value::String(id.to_string()));
            }
            create_with_id(tx, ctx, rt, id, resource)
        }
        store::access::Current::Visible(prev) => {
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
            crate::app::labels::apply_automatic_labels(tx, &mut resource)?;
            let before = (!prev.deleted)
                .then(|| {
                    prev.body
                        .as_deref()
                        .and_then(|b| serde_json::from_str::<Value>(b).ok())
                })
                .flatten();
            let mut index = index_of(ctx, rt, &resource)?;
            let permit = tx
                .permit_update(&prev, &resource, &index)?
                .map_err(|r| ApiError::refused(r, rt, id))?;
            if super::rules::before_write(tx, ctx, rt, id, before.as_ref(), &mut resource)? {
                index = extract(ctx.registry, &resource);
            }
            let was_deleted = prev.deleted;
            let stored = tx
                .update_permitted(permit, &prev, &mut resource, &index)?
                .map_err(|r| ApiError::refused(r, rt, id))?;
            super::rules::after_write(tx, ctx, rt, id, &resource)?;
            Ok(Outcome::Resource {
                status: if was_deleted { 201 } else { 200 },
                stored,
                view: None,
            })
        }
    }
}

pub(crate) fn delete(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
) -> Result<Outcome, ApiError> {
    match tx.current_for_write(rt, id)? {
        store::access::Current::Visible(prev) if !prev.deleted => {
            let permit = tx
                .permit_delete(&prev)?
                .map_err(|r| ApiError::refused(r, rt, id))?;
            if let Some(before) = prev
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
            {
                super::rules::before_delete(tx, ctx, rt, id, &before)?;
            }
            let stored = tx.delete_permitted(permit, &prev)?;
            Ok(Outcome::Deleted(Some(stored)))
        }
        _ => Ok(Outcome::Deleted(None)),
    }
}
