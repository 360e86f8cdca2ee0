//! Executing an interaction inside one store transaction bound to the caller. These functions
//! hold the FHIR semantics of each interaction (versions, preconditions, conditional variants);
//! the caller-bound store below them decides what the caller may see and change.

use care::access::Action;
use fhir::IssueType;
use fhir::search::{SearchRequest, extract};
use serde_json::{Value, json};
use store::{CallerTx, HistoryPage, HistoryScope, Refusal, SearchPage, Stored};

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

/// The answer for a resource that is absent — or hidden from the caller, which must look the same.
pub(crate) fn not_known(rt: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("{rt}/{id} is not known"))
}

pub(crate) fn refused(r: Refusal, rt: &str, id: &str) -> ApiError {
    match r {
        Refusal::Hidden => not_known(rt, id),
        Refusal::Forbidden(why) => ApiError::new(403, IssueType::Forbidden, why),
    }
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
            super::capability::capability_statement(ctx.registry, &ctx.base_url),
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
                    return Err(not_known(resource_type, id));
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
        Interaction::BreakGlass { patient_id, reason } => {
            break_glass(tx, ctx, &patient_id, &reason)
        }
        Interaction::FindCare { params } => super::findcare::find_care(tx, ctx, params),
        Interaction::Match { params } => super::matching::patient_match(tx, ctx, params),
        Interaction::IdentityReviews { state } => super::matching::reviews(tx, ctx, &state),
        Interaction::IdentityDecision { review, accept } => {
            super::matching::decide(tx, ctx, &review, accept)
        }
        Interaction::Book { hold, params } => super::booking::hold_or_book(tx, ctx, hold, params),
        Interaction::FindAppointments { params } => super::booking::find(tx, ctx, params),
    }
}

/// The current version if it exists and is not deleted; otherwise 404 or 410.
fn live(current: Option<Stored>, rt: &str, id: &str) -> Result<Stored, ApiError> {
    match current {
        None => Err(not_known(rt, id)),
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

pub(crate) fn create(
    tx: &mut CallerTx,
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
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    mut resource: Value,
) -> Result<Outcome, ApiError> {
    apply_automatic_labels(tx, &mut resource)?;
    // decided before any write rule runs: a refused write has no side effects
    let index = extract(ctx.registry, &resource);
    let permit = tx
        .permit_create(rt, id, &resource, &index)?
        .map_err(|r| refused(r, rt, id))?;
    written_rules(tx, ctx, rt, id, None, &mut resource)?;
    let index = extract(ctx.registry, &resource);
    let stored = tx
        .create_permitted(permit, rt, id, &mut resource, &index)?
        .map_err(|r| refused(r, rt, id))?;
    if rt == "Encounter" {
        relabel_encounter_contents(tx, ctx, id, &resource)?;
    }
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
    apply_automatic_labels(tx, &mut resource)?;
    let index = extract(ctx.registry, &resource);
    tx.permit_create(rt, id, &resource, &index)?
        .map_err(|r| refused(r, rt, id))?;
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
            apply_automatic_labels(tx, &mut resource)?;
            let before = (!prev.deleted)
                .then(|| {
                    prev.body
                        .as_deref()
                        .and_then(|b| serde_json::from_str::<Value>(b).ok())
                })
                .flatten();
            let index = extract(ctx.registry, &resource);
            let permit = tx
                .permit_update(&prev, &resource, &index)?
                .map_err(|r| refused(r, rt, id))?;
            written_rules(tx, ctx, rt, id, before.as_ref(), &mut resource)?;
            let index = extract(ctx.registry, &resource);
            let was_deleted = prev.deleted;
            let stored = tx
                .update_permitted(permit, &prev, &mut resource, &index)?
                .map_err(|r| refused(r, rt, id))?;
            if rt == "Encounter" {
                relabel_encounter_contents(tx, ctx, id, &resource)?;
            }
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
            let permit = tx.permit_delete(&prev)?.map_err(|r| refused(r, rt, id))?;
            if rt == "Appointment" {
                let before = prev
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<Value>(b).ok());
                // a deleted appointment gives its slots back (no status rule applies)
                let mut released = before.clone();
                if let Some(Value::Object(o)) = released.as_mut() {
                    o.remove("status");
                }
                super::booking::appointment_written(tx, ctx, id, released.as_ref(), None)?;
            }
            let stored = tx.delete_permitted(permit, &prev)?;
            Ok(Outcome::Deleted(Some(stored)))
        }
        _ => Ok(Outcome::Deleted(None)),
    }
}

/// The rules a resource type brings to a create or update (`previous` is the version it
/// replaces): an Appointment keeps its slots, join link and messages in step; a Slot's status
/// follows its machine; a Subscription must be valid and written by someone who sees all.
fn written_rules(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    previous: Option<&Value>,
    resource: &mut Value,
) -> Result<(), ApiError> {
    match rt {
        "Appointment" => super::booking::appointment_written(tx, ctx, id, previous, Some(resource)),
        "Slot" => {
            let status = |v: Option<&Value>| {
                v.and_then(|s| s.get("status"))
                    .and_then(Value::as_str)
                    .and_then(care::booking::SlotStatus::parse)
            };
            if let (Some(from), Some(to)) = (status(previous), status(Some(resource))) {
                care::booking::slot_transition(from, to).map_err(|why| {
                    ApiError::new(409, IssueType::Conflict, why).at("Slot.status")
                })?;
                if let Some(holder) = previous.and_then(super::booking::live_holder(tx.now()))
                    && to == care::booking::SlotStatus::Free
                {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        format!("the slot is taken by Appointment/{holder}: cancel or reschedule that appointment to free it"),
                    )
                    .at("Slot.status"));
                }
            }
            Ok(())
        }
        "Subscription" => super::subscriptions::check(tx, ctx, resource),
        "Patient" => crate::identity::linkage::on_write(tx, ctx, id, &*resource),
        _ => Ok(()),
    }
}

/// Labels that follow the care (`care::labels`), added whoever writes: what references an
/// Encounter of minor-consented care (or part of one) carries its sensitivity and R; an
/// Appointment in a service marked sensitive carries that service's label. Read with the
/// system's rights — the labels must not depend on what the writer may see.
pub(crate) fn apply_automatic_labels(
    tx: &mut CallerTx,
    resource: &mut Value,
) -> Result<(), ApiError> {
    let mut labels: Vec<(String, String)> = Vec::new();
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if rt == "Encounter" {
        labels.extend(care::labels::minor_consented_labels(resource));
    }
    let own_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    for id in care::labels::referenced_ids(resource, "Encounter") {
        if rt == "Encounter" && own_id.as_deref() == Some(id.as_str()) {
            continue;
        }
        if let Some(enc) =
            tx.on_behalf(store::OnBehalf::Labelling)
                .current("Encounter", &id, false)?
            && let Some(body) = enc
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
        {
            labels.extend(care::labels::encounter_labels(&body));
        }
    }
    if rt == "Appointment" {
        for id in care::labels::referenced_ids(resource, "HealthcareService") {
            if let Some(hs) =
                tx.on_behalf(store::OnBehalf::Labelling)
                    .current("HealthcareService", &id, false)?
                && let Some(body) = hs
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<Value>(b).ok())
            {
                labels.extend(care::labels::service_labels(&body));
            }
        }
    }
    care::labels::add_labels(resource, &labels);
    Ok(())
}

/// After an Encounter is written: what already references it (written before it was flagged,
/// or earlier in the same transaction) gets the labels it now passes on, and so on down to the
/// Encounters that are part of it. The alliance does this on its own behalf (system rights);
/// every relabelled resource is on the request's audit trail.
fn relabel_encounter_contents(
    tx: &mut CallerTx,
    ctx: &Ctx,
    encounter_id: &str,
    encounter: &Value,
) -> Result<(), ApiError> {
    let labels = care::labels::encounter_labels(encounter);
    if labels.is_empty() {
        return Ok(());
    }
    let mut queue: Vec<(String, Vec<(String, String)>)> = vec![(encounter_id.to_string(), labels)];
    let mut seen: Vec<String> = vec![encounter_id.to_string()];
    while let Some((eid, labels)) = queue.pop() {
        for (rtype, id) in tx
            .on_behalf(store::OnBehalf::Labelling)
            .referencing("Encounter", &eid)?
        {
            let Some(stored) = tx
                .on_behalf(store::OnBehalf::Labelling)
                .current(&rtype, &id, true)?
            else {
                continue;
            };
            if stored.deleted {
                continue;
            }
            let Some(mut body) = stored
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
            else {
                continue;
            };
            let missing = care::labels::missing_labels(&body, &labels);
            if !missing.is_empty() {
                care::labels::add_labels(&mut body, &missing);
                let index = extract(ctx.registry, &body);
                let patients = fhir::compartment::patients_of(&rtype, &id, &index);
                tx.on_behalf(store::OnBehalf::Labelling)
                    .update(&stored, &mut body, &index)?;
                tx.trail.add(&rtype, &id, &patients);
            }
            if rtype == "Encounter" && !seen.contains(&id) {
                seen.push(id.clone());
                queue.push((id, care::labels::encounter_labels(&body)));
            }
        }
    }
    Ok(())
}

fn break_glass(
    tx: &mut CallerTx,
    ctx: &Ctx,
    patient_id: &str,
    reason: &str,
) -> Result<Outcome, ApiError> {
    let subject = tx.caller().subject.clone();
    if !subject.grants.iter().any(|g| g.role.needs_organization()) {
        return Err(ApiError::new(
            403,
            IssueType::Forbidden,
            "only clinicians and coordinators may break the glass",
        ));
    }
    scope(tx, "Patient", Action::Read)?;
    if reason.trim().len() < 10 {
        return Err(ApiError::bad_request(IssueType::Required, "break-the-glass needs a reason (at least 10 characters) saying why the record is needed now").at("reason"));
    }
    let exists = tx
        .on_behalf(store::OnBehalf::BreakGlass)
        .current("Patient", patient_id, false)?
        .is_some_and(|p| !p.deleted);
    if !exists {
        return Err(not_known("Patient", patient_id));
    }
    let minutes = tx.caller().policy.break_glass_minutes;
    let expires = tx.now() + minutes * 60_000;
    tx.on_behalf(store::OnBehalf::BreakGlass)
        .insert_break_glass(&subject.id, patient_id, reason, expires)?;
    tx.trail.break_glass = true;
    tx.trail
        .add("Patient", patient_id, &[patient_id.to_string()]);
    let _ = ctx;
    Ok(Outcome::Json(
        200,
        json!({
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueReference": {"reference": format!("Patient/{patient_id}")}},
                {"name": "expires", "valueInstant": fhir::primitive::format_instant(expires)},
                {"name": "reason", "valueString": reason},
            ]
        }),
    ))
}
