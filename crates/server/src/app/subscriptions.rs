//! FHIR R4 Subscriptions, rest-hook channel, id-only payloads. Before a write transaction
//! commits, every resource it created or updated is matched against the active (or
//! requested) Subscriptions' `criteria` (a search, `Type?params`, run with `_id` of the
//! resource); each match writes an outbox row in that same transaction — so a notification
//! exists exactly when the change does — and the delivery worker POSTs it to
//! `channel.endpoint` with `channel.header`s. The body is a notification Bundle in the shape of
//! the R4 Subscriptions Backport (`type` history, a `SubscriptionStatus`-style Parameters entry
//! with the event number and the focus reference): the resource's id, not its content.
//!
//! Subscriptions see every resource, so only callers who may read everything (alliance
//! administrators, backend services) may create or change them.

use std::sync::{Arc, Mutex};

use fhir::IssueType;
use serde_json::{Value, json};
use store::{CallerTx, NewMessage};

use super::Ctx;
use crate::app::resources::body;
use crate::error::ApiError;

/// An active rest-hook subscription.
#[derive(Debug, Clone)]
pub struct Sub {
    pub id: String,
    pub resource_type: String,
    pub criteria: Vec<(String, String)>,
    pub endpoint: String,
    pub headers: Vec<String>,
}

/// The active subscriptions, checked against the directory version (bumped by every
/// Subscription write).
#[derive(Debug, Default)]
pub struct SubscriptionCache(Mutex<Option<(i64, Arc<Vec<Sub>>)>>);

/// Splits `Type?a=b&c=d`.
fn parse_criteria(criteria: &str) -> Option<(String, Vec<(String, String)>)> {
    let (rt, query) = criteria.split_once('?').unwrap_or((criteria, ""));
    let rt = rt.trim_start_matches('/');
    if rt.is_empty() {
        return None;
    }
    let pairs = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Some((rt.to_string(), pairs))
}

fn search_request(
    ctx: &Ctx,
    rt: &str,
    pairs: &[(String, String)],
) -> Result<fhir::search::SearchRequest, Vec<fhir::Issue>> {
    fhir::search::parse_search(
        ctx.registry,
        rt,
        pairs,
        &fhir::search::ParseOptions {
            lenient: false,
            base_url: "",
            limits: Default::default(),
        },
    )
}

/// Checks a Subscription being written (who may write one is the access policy's rule): the
/// channel is a rest-hook to an http(s) endpoint, the criteria are a valid search.
/// (`requested` and `active` subscriptions are both served; the resource is stored as written.)
pub(crate) fn check(ctx: &Ctx, subscription: &Value) -> Result<(), ApiError> {
    let bad = |msg: String, at: &str| ApiError::new(422, IssueType::Invalid, msg).at(at);
    let channel = subscription.get("channel").unwrap_or(&Value::Null);
    let kind = channel.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "rest-hook" {
        return Err(bad(
            format!("channel.type '{kind}' is not supported; use rest-hook"),
            "Subscription.channel.type",
        ));
    }
    let endpoint = channel
        .get("endpoint")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(bad(
            "a rest-hook channel needs an http(s) endpoint".into(),
            "Subscription.channel.endpoint",
        ));
    }
    let criteria = subscription
        .get("criteria")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (rt, pairs) = parse_criteria(criteria).ok_or_else(|| {
        bad(
            format!("criteria '{criteria}' is not a search (Type?param=value)"),
            "Subscription.criteria",
        )
    })?;
    if !fhir::definitions::definitions().is_resource_type(&rt) {
        return Err(bad(
            format!("criteria '{criteria}': '{rt}' is not a resource type"),
            "Subscription.criteria",
        ));
    }
    search_request(ctx, &rt, &pairs).map_err(|issues| ApiError::with_issues(422, issues))?;
    Ok(())
}

/// The active subscriptions as of this transaction.
fn active(tx: &mut CallerTx, ctx: &Ctx) -> Result<Arc<Vec<Sub>>, ApiError> {
    let version = tx
        .on_behalf(store::OnBehalf::Subscriptions)
        .directory_version()?;
    if let Some((v, subs)) = ctx
        .subscriptions
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        && *v == version
    {
        return Ok(subs.clone());
    }
    let req = search_request(
        ctx,
        "Subscription",
        &[
            ("status".into(), "active,requested".into()),
            ("type".into(), "rest-hook".into()),
            ("_count".into(), "1000".into()),
        ],
    )
    .map_err(|issues| ApiError::with_issues(500, issues))?;
    let mut subs = Vec::new();
    for stored in tx
        .on_behalf(store::OnBehalf::Subscriptions)
        .search(&req)?
        .matches
    {
        let s = body(&stored);
        let Some((rt, criteria)) = s
            .get("criteria")
            .and_then(Value::as_str)
            .and_then(parse_criteria)
        else {
            continue;
        };
        let Some(endpoint) = s.pointer("/channel/endpoint").and_then(Value::as_str) else {
            continue;
        };
        subs.push(Sub {
            id: stored.id.clone(),
            resource_type: rt,
            criteria,
            endpoint: endpoint.to_string(),
            headers: s
                .pointer("/channel/header")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        });
    }
    let subs = Arc::new(subs);
    *ctx.subscriptions
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some((version, subs.clone()));
    Ok(subs)
}

/// Matches what this transaction wrote against the active subscriptions and writes a
/// notification for each match (once per subscription and resource version).
pub(crate) fn notify_written(tx: &mut CallerTx, ctx: &Ctx) -> Result<(), ApiError> {
    let mut written = tx.on_behalf(store::OnBehalf::Subscriptions).take_written();
    if written.is_empty() {
        return Ok(());
    }
    let subs = active(tx, ctx)?;
    if subs.is_empty() {
        return Ok(());
    }
    written.sort();
    written.dedup();
    for (rt, id) in written {
        for sub in subs.iter().filter(|s| s.resource_type == rt) {
            let mut pairs = sub.criteria.clone();
            pairs.push(("_id".into(), id.clone()));
            let Ok(req) = search_request(ctx, &rt, &pairs) else {
                continue;
            };
            let Some(found) = tx
                .on_behalf(store::OnBehalf::Subscriptions)
                .search(&req)?
                .matches
                .into_iter()
                .next()
            else {
                continue;
            };
            let recipient = format!("Subscription/{}", sub.id);
            let number = tx
                .on_behalf(store::OnBehalf::Subscriptions)
                .outbox_count(&recipient)?
                + 1;
            let focus = if ctx.base_url.is_empty() {
                format!("{rt}/{id}")
            } else {
                format!("{}/{rt}/{id}", ctx.base_url)
            };
            let bundle = json!({
                "resourceType": "Bundle",
                "type": "history",
                "timestamp": fhir::primitive::format_instant(tx.now()),
                "entry": [{
                    "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                    "resource": {"resourceType": "Parameters", "parameter": [
                        {"name": "subscription", "valueReference": {"reference": recipient}},
                        {"name": "status", "valueCode": "active"},
                        {"name": "type", "valueCode": "event-notification"},
                        {"name": "events-since-subscription-start", "valueString": number.to_string()},
                        {"name": "notification-event", "part": [
                            {"name": "event-number", "valueString": number.to_string()},
                            {"name": "focus", "valueReference": {"reference": focus}}
                        ]}
                    ]},
                    "request": {"method": "GET", "url": format!("Subscription/{}/$status", sub.id)},
                    "response": {"status": "200"}
                }]
            });
            let (message_id, now) = (tx.new_id(), tx.now());
            tx.on_behalf(store::OnBehalf::Subscriptions)
                .outbox_add(&NewMessage {
                    id: message_id,
                    event_key: format!("{rt}/{id}/_history/{}", found.version),
                    recipient,
                    kind: "subscription-notification".into(),
                    channel: "rest-hook".into(),
                    target: Some(sub.endpoint.clone()),
                    communication_id: None,
                    payload: json!({"body": bundle, "headers": sub.headers}).to_string(),
                    due_ms: now,
                })?;
        }
    }
    Ok(())
}

/// Puts a Subscription in `error` with the reason (its notifications could not be delivered
/// within the retry window): it is no longer matched until someone sets it active again.
pub(crate) fn put_in_error(tx: &mut CallerTx, id: &str, why: &str) -> Result<(), ApiError> {
    let Some(prev) =
        tx.on_behalf(store::OnBehalf::Subscriptions)
            .current("Subscription", id, false)?
    else {
        return Ok(());
    };
    if prev.deleted {
        return Ok(());
    }
    let mut sub = body(&prev);
    if sub["status"] == json!("off") {
        return Ok(());
    }
    sub["status"] = json!("error");
    sub["error"] = json!(why);
    let index = fhir::search::extract(fhir::search::registry(), &sub);
    tx.on_behalf(store::OnBehalf::Subscriptions)
        .update(&prev, &mut sub, &index)?;
    tx.trail.add("Subscription", id, &[]);
    Ok(())
}
