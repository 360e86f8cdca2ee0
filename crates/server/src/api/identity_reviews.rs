//! The identity review queue (`/api/identity/reviews`): the pairs of Patient records the
//! linkage engine could not decide alone, for coordinators and alliance administrators —
//! `GET /api/identity/reviews?state=pending|linked|rejected|unlinked` and
//! `POST /api/identity/reviews/{id}/accept|reject|unlink|reopen` — each one unit of work
//! (`App::run`), decided by `care::access::decide_identity_review`.
//!
//! What each decision means: **accept** links the two records (from pending or unlinked);
//! **reject** records that they are not the same person (from pending, linked — the link is
//! undone — or unlinked): the pair is never proposed again; **unlink** undoes a link (the pair
//! stays decided, and may be accepted again); **reopen** — alliance administrators only (403 for
//! anyone else) — puts a rejected pair back in the queue. A move the state does not allow
//! answers 409 saying what is allowed.

use std::sync::Arc;

use fhir::IssueType;
use serde_json::{Value, json};
use store::{Caller, CallerTx};

use crate::app::resources::body;
use crate::app::{App, Ctx, Prefer, Work};
use crate::error::ApiError;

pub use care::identity::review::Decision;

/// The states a pair may be listed in.
pub const STATES: &[&str] = &["pending", "linked", "rejected", "unlinked"];

/// `GET /api/identity/reviews?state=…` (oldest first, at most 200).
pub async fn list(
    app: &App,
    caller: Arc<Caller>,
    state: Option<&str>,
    address: Option<String>,
) -> Result<Value, ApiError> {
    let state = state.unwrap_or("pending").to_string();
    if !STATES.contains(&state.as_str()) {
        return Err(ApiError::bad_request(
            IssueType::Value,
            format!("state '{state}' is not pending, linked, rejected or unlinked"),
        ));
    }
    let ctx = app.ctx(String::new(), Prefer::default());
    app.run(
        caller,
        Work::request("identity-reviews", false, address),
        ctx,
        move |tx, _ctx| reviews(tx, &state),
    )
    .await
}

/// `POST /api/identity/reviews/{id}/accept|reject|unlink|reopen`.
pub async fn decision(
    app: &App,
    caller: Arc<Caller>,
    review: &str,
    decision: Decision,
    address: Option<String>,
) -> Result<Value, ApiError> {
    if !fhir::primitive::is_id(review) {
        return Err(ApiError::bad_request(
            IssueType::Value,
            format!("'{review}' is not a valid review id"),
        ));
    }
    let review = review.to_string();
    let ctx = app.ctx(String::new(), Prefer::default());
    let decided = app
        .run(
            caller,
            Work::request("update", true, address),
            ctx,
            move |tx, ctx| decide(tx, ctx, &review, decision),
        )
        .await?;
    release_held(app, decision, &decided).await;
    Ok(decided)
}

/// After a pair is linked or rejected, the hospital messages held for either record are
/// applied (`app::adt::release_held`), each as the hospital that sent it.
pub async fn release_held(app: &App, decision: Decision, decided: &Value) {
    if !matches!(decision, Decision::Accept | Decision::Reject) {
        return;
    }
    let patients: Vec<String> = ["left", "right"]
        .iter()
        .filter_map(|side| decided.pointer(&format!("/{side}/reference")))
        .filter_map(Value::as_str)
        .filter_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .collect();
    if let Err(e) = crate::app::adt::release_held(app, patients).await {
        tracing::error!(
            status = e.status,
            "held hospital messages could not be released"
        );
    }
}

/// The queue is for coordinators and administrators whose scopes allow reading Patients (and,
/// for a decision, writing the Person that links them) — `care::access::decide_identity_review`.
fn may_review(tx: &mut CallerTx, decision: bool) -> Result<(), ApiError> {
    match tx.identity_review_decision(&[], decision)? {
        care::access::Decision::Permit => Ok(()),
        care::access::Decision::Deny(why) => {
            tx.trail.denied = true;
            Err(ApiError::new(403, IssueType::Forbidden, why))
        }
    }
}

/// Whether the caller may see this pair: both records must be visible to them.
fn pair_visible(
    tx: &mut CallerTx,
    pair: &store::IdentityPair,
    decision: bool,
) -> Result<bool, ApiError> {
    Ok(tx
        .identity_review_decision(&[&pair.left_id, &pair.right_id], decision)?
        .is_permit())
}

/// One side of a pair, as a reviewer sees it.
fn summary(tx: &mut CallerTx, id: &str) -> Result<Value, ApiError> {
    // the caller may see both records of a pair it is shown (`pair_visible`)
    let Some(p) = tx.current("Patient", id, false)? else {
        return Ok(json!({"reference": format!("Patient/{id}"), "missing": true}));
    };
    let r = crate::app::linkage::patient_record(id, &body(&p));
    let address = [
        &r.street_number,
        &r.address_1,
        &r.locality,
        &r.state,
        &r.postcode,
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .map(|s| s.as_str())
    .collect::<Vec<_>>()
    .join(" ");
    Ok(json!({
        "reference": format!("Patient/{id}"),
        "name": format!("{} {}", r.given, r.family).trim().to_string(),
        "birthDate": r.birth_date,
        "gender": r.sex,
        "address": address,
        "identifier": body(&p).get("identifier").cloned().unwrap_or(Value::Null),
        "deleted": p.deleted,
    }))
}

fn entry(tx: &mut CallerTx, pair: &store::IdentityPair) -> Result<Value, ApiError> {
    Ok(json!({
        "id": pair.id,
        "state": pair.state,
        "grade": pair.grade,
        "score": (pair.score * 10_000.0).round() / 10_000.0,
        "created": fhir::primitive::format_instant(pair.created_ms),
        "decided": pair.decided_ms.map(fhir::primitive::format_instant),
        "decidedBy": pair.decided_by,
        "left": summary(tx, &pair.left_id)?,
        "right": summary(tx, &pair.right_id)?,
    }))
}

/// `GET /api/identity/reviews?state=pending|linked|rejected|unlinked` (oldest first, 200).
pub(crate) fn reviews(tx: &mut CallerTx, state: &str) -> Result<Value, ApiError> {
    may_review(tx, false)?;
    // a coordinator sees the pairs of patients both of whom their organisation cares for
    let orgs = (!tx.view().everything).then(|| tx.caller().subject.care_organizations());
    let pairs = tx
        .on_behalf(store::OnBehalf::Linkage)
        .identity_pairs_among(state, orgs.as_deref(), 200)?;
    let mut out = Vec::with_capacity(pairs.len());
    for p in &pairs {
        if pair_visible(tx, p, false)? {
            out.push(entry(tx, p)?);
        }
    }
    Ok(json!({"state": state, "count": out.len(), "reviews": out}))
}

/// `POST /api/identity/reviews/{id}/accept|reject|unlink|reopen` (see the module's words).
/// Audited with both records.
pub(crate) fn decide(
    tx: &mut CallerTx,
    ctx: &Ctx,
    review: &str,
    decision: Decision,
) -> Result<Value, ApiError> {
    may_review(tx, true)?;
    let Some(pair) = tx
        .on_behalf(store::OnBehalf::Linkage)
        .identity_pair_by_id(review)?
    else {
        return Err(ApiError::not_found(format!(
            "there is no identity review {review}"
        )));
    };
    if !pair_visible(tx, &pair, true)? {
        // a pair the caller may not see answers as if it did not exist
        tx.trail.denied = true;
        return Err(ApiError::not_found(format!(
            "there is no identity review {review}"
        )));
    }
    let by = tx.caller().subject.id.clone();
    let administrator = tx.caller().subject.has(care::access::Role::AllianceAdmin);
    let state =
        decision
            .next_state(&pair.state, administrator)
            .map_err(|refused| match refused {
                care::identity::review::Refused::NotAllowed(why) => {
                    tx.trail.denied = true;
                    ApiError::new(403, IssueType::Forbidden, why)
                }
                care::identity::review::Refused::State(why) => {
                    ApiError::new(409, IssueType::Conflict, why)
                }
            })?;
    tx.on_behalf(store::OnBehalf::Linkage)
        .identity_pair_decide(review, state, &by)?;
    crate::app::linkage::sync_person(tx, ctx, &pair.left_id)?;
    crate::app::linkage::sync_person(tx, ctx, &pair.right_id)?;
    let updated = tx
        .on_behalf(store::OnBehalf::Linkage)
        .identity_pair_by_id(review)?
        .ok_or_else(|| ApiError::new(500, IssueType::Exception, "the review vanished"))?;
    entry(tx, &updated)
}
