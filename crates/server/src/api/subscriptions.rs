//! A Subscription's deliveries, so that none is lost from sight:
//! `GET /api/subscriptions/{id}/deliveries` — the Subscription's status (and, in `error`, why)
//! and its notifications, newest first, each with its state (`pending`, `sent`, `failed`), the
//! attempts so far, the next try, the last error — and
//! `POST /api/subscriptions/{id}/deliveries/{delivery}/resend` — a notification delivered again
//! now, with fresh attempts and a fresh retry window. Each one unit of work (audited); whoever
//! may read the Subscription may see its deliveries, whoever may change it may resend (the
//! access policy: those who see everything). A notification carries no resource content: the
//! focus reference only.

use std::sync::Arc;

use fhir::IssueType;
use serde_json::{Value, json};
use store::{Caller, CallerTx};

use crate::app::resources::body;
use crate::app::{App, Prefer, Work};
use crate::error::ApiError;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("there is no Subscription/{id}"))
}

fn delivery(m: &store::Message) -> Value {
    let at = fhir::primitive::format_instant;
    let focus = serde_json::from_str::<Value>(&m.payload)
        .ok()
        .and_then(|p| {
            p.pointer("/body/entry/0/resource/parameter")
                .and_then(Value::as_array)
                .and_then(|ps| {
                    ps.iter()
                        .find(|p| p["name"] == "notification-event")
                        .and_then(|p| p["part"].as_array())
                        .and_then(|parts| parts.iter().find(|p| p["name"] == "focus"))
                        .and_then(|p| p.pointer("/valueReference/reference"))
                        .cloned()
                })
        })
        .unwrap_or(Value::Null);
    json!({
        "id": m.id,
        "event": m.event_key,
        "focus": focus,
        "endpoint": m.target,
        "state": m.state,
        "attempts": m.attempts,
        "created": at(m.created_ms),
        "nextAttempt": (m.state == "pending").then(|| at(m.due_ms)),
        "sent": m.sent_ms.map(at),
        "lastError": m.last_error,
    })
}

/// The Subscription as the caller may read it (hidden = absent).
fn subscription(tx: &mut CallerTx, id: &str) -> Result<Value, ApiError> {
    if !fhir::primitive::is_id(id) {
        return Err(not_found(id));
    }
    match tx.current("Subscription", id, false)? {
        Some(s) if !s.deleted => Ok(body(&s)),
        _ => Err(not_found(id)),
    }
}

fn deliveries_of(tx: &mut CallerTx, id: &str, sub: &Value) -> Result<Value, ApiError> {
    let recipient = format!("Subscription/{id}");
    let list =
        tx.on_behalf(store::OnBehalf::Subscriptions)
            .outbox_list(Some(&recipient), None, 200)?;
    let count = |state: &str| list.iter().filter(|m| m.state == state).count();
    Ok(json!({
        "subscription": recipient,
        "status": sub["status"],
        "error": sub.get("error").cloned().unwrap_or(Value::Null),
        "endpoint": sub.pointer("/channel/endpoint").cloned().unwrap_or(Value::Null),
        "pending": count("pending"),
        "sent": count("sent"),
        "failed": count("failed"),
        "deliveries": list.iter().map(delivery).collect::<Vec<_>>(),
    }))
}

/// `GET /api/subscriptions/{id}/deliveries`.
pub async fn deliveries(
    app: &App,
    caller: Arc<Caller>,
    id: &str,
    address: Option<String>,
) -> Result<Value, ApiError> {
    let id = id.to_string();
    app.run(
        caller,
        Work::request("subscription-deliveries", false, address),
        app.ctx(String::new(), Prefer::default()),
        move |tx, _ctx| {
            let sub = subscription(tx, &id)?;
            tx.trail.add("Subscription", &id, &[]);
            deliveries_of(tx, &id, &sub)
        },
    )
    .await
}

/// `POST /api/subscriptions/{id}/deliveries/{delivery}/resend`.
pub async fn resend(
    app: &App,
    caller: Arc<Caller>,
    id: &str,
    delivery_id: &str,
    address: Option<String>,
) -> Result<Value, ApiError> {
    let (id, delivery_id) = (id.to_string(), delivery_id.to_string());
    app.run(
        caller,
        Work::request("subscription-resend", true, address),
        app.ctx(String::new(), Prefer::default()),
        move |tx, ctx| resend_in(tx, ctx, &id, &delivery_id),
    )
    .await
}

/// Resends one of a Subscription's notifications, in the caller's unit of work (the JSON API
/// and the console's admin page): who may change the Subscription may resend.
pub(crate) fn resend_in(
    tx: &mut CallerTx,
    ctx: &crate::app::Ctx,
    id: &str,
    delivery_id: &str,
) -> Result<Value, ApiError> {
    let sub = subscription(tx, id)?;
    // the policy's decision on the Subscription as it stands
    let stored = tx
        .current("Subscription", id, false)?
        .ok_or_else(|| not_found(id))?;
    let index = fhir::search::extract(ctx.registry, &sub);
    tx.permit_update(&stored, &sub, &index)?
        .map_err(|r| ApiError::refused(r, "Subscription", id))?;
    let Some(m) = tx
        .on_behalf(store::OnBehalf::Subscriptions)
        .outbox_message(delivery_id)?
        .filter(|m| m.recipient == format!("Subscription/{id}"))
    else {
        return Err(ApiError::not_found(format!(
            "Subscription/{id} has no delivery {delivery_id}"
        )));
    };
    if m.state == "pending" {
        return Err(ApiError::new(
            409,
            IssueType::Conflict,
            "this notification is still being delivered (pending); it needs no resend",
        ));
    }
    tx.on_behalf(store::OnBehalf::Subscriptions)
        .outbox_resend(&m.id)?;
    tx.trail.add("Subscription", id, &[]);
    tx.trail.description = Some(format!("notification {} resent", m.id));
    deliveries_of(tx, id, &sub)
}

/// What the console's admin page shows of the Subscriptions the caller may read: each one's
/// status and error, its counts, and its notifications that failed (the newest 10).
pub(crate) fn overview(tx: &mut CallerTx, ctx: &crate::app::Ctx) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for s in crate::app::resources::search(tx, ctx, "Subscription", &[])? {
        let sub = body(&s);
        let mut d = deliveries_of(tx, &s.id, &sub)?;
        let failed: Vec<Value> = d["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["state"] == "failed")
            .take(10)
            .cloned()
            .collect();
        d["deliveries"] = json!(failed);
        d["id"] = json!(s.id);
        d["criteria"] = sub.get("criteria").cloned().unwrap_or(Value::Null);
        out.push(d);
    }
    Ok(out)
}
