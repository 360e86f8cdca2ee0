//! The notification outbox. An appointment change writes its messages — booking
//! confirmations, reminders (due 72 h and 24 h before), cancellations, waitlist offers — as
//! Communication resources plus outbox rows **in the transaction of the change**, once per
//! (event, recipient); FHIR Subscriptions add rest-hook rows the same way
//! ([`super::subscriptions`]). A worker ([`deliver_due`]) claims due rows under a lease,
//! delivers them through the configured transport (webhook with an HMAC-SHA256 signature, SMTP,
//! or the log), and records the outcome; failures are retried with backoff
//! (`care::notify::retry_after_ms`) and then marked failed, never dropped. A crash between
//! sending and recording leaves the row leased, so it is sent again after the lease: delivery is
//! at least once, and each message carries its outbox id (`Idempotency-Key` header, e-mail
//! `Message-ID`) so a receiver can drop a repeat.
//!
//! Who gets a message is the access policy's decision: the patient (from the age they read
//! their own record) and each RelatedPerson the policy would show the appointment to — so a
//! 12–17-year-old's sensitive visit sends nothing to a parent. Messages name the service, the
//! time and the place, nothing clinical.

use std::time::Duration;

use care::access::{Grant, PolicyConfig, ResourceFacts, Role, Scopes, Subject};
use care::booking::AppointmentStatus;
use care::notify::{Kind, Visit, messages_for, text};
use fhir::search::extract;
use serde_json::{Value, json};
use store::{Caller, CallerTx, NewMessage};

use crate::app::resources::body;
use crate::app::{App, Ctx};
use crate::error::ApiError;

/// Communication.category system of the alliance's notifications.
pub use care::profile::NOTIFICATION as CATEGORY_SYSTEM;

/// How long a claimed message is leased before another run may claim it again.
pub const LEASE_MS: i64 = 5 * 60_000;
/// Messages claimed per run.
const BATCH: usize = 50;

/// Writes the messages an appointment's status change sends (`from` → its current status),
/// in the caller's transaction, with the system's rights (the caller need not be able to
/// write Communications). `offer_until_ms`: a waitlist offer's expiry.
pub(crate) fn appointment_changed(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    from: Option<AppointmentStatus>,
    appointment: &Value,
    offer_until_ms: Option<i64>,
) -> Result<(), ApiError> {
    let Some(to) = crate::app::appointments::status_of(appointment) else {
        return Ok(());
    };
    let now = tx.now();
    let Some(start_ms) = appointment
        .get("start")
        .and_then(Value::as_str)
        .and_then(fhir::primitive::instant_ms)
    else {
        return Ok(());
    };
    let messages = messages_for(from, to, start_ms, &ctx.booking.reminders, now);
    if messages.is_empty() {
        return Ok(());
    }
    let actors: Vec<&str> = crate::app::appointments::participant_refs(appointment).collect();
    let Some(patient_id) = actors.iter().find_map(|r| r.strip_prefix("Patient/")) else {
        return Ok(());
    };
    let service_name = match actors
        .iter()
        .find_map(|r| r.strip_prefix("HealthcareService/"))
    {
        Some(sid) => tx
            .on_behalf(store::OnBehalf::Notifications)
            .current("HealthcareService", sid, false)?
            .map(|s| body(&s))
            .and_then(|s| s.get("name").and_then(Value::as_str).map(str::to_string)),
        None => None,
    }
    .unwrap_or_else(|| "Your appointment".to_string());
    let site_name = match actors.iter().find_map(|r| r.strip_prefix("Location/")) {
        Some(lid) => tx
            .on_behalf(store::OnBehalf::Notifications)
            .current("Location", lid, false)?
            .map(|s| body(&s))
            .and_then(|l| l.get("name").and_then(Value::as_str).map(str::to_string)),
        None => None,
    };
    let video = crate::app::appointments::is_video(appointment);
    let visit = Visit {
        service: &service_name,
        site: if video { None } else { site_name.as_deref() },
        start_ms,
        offer_until_ms,
        join_opens_minutes: ctx.booking.join_opens_minutes,
    };
    let slot_id = appointment
        .pointer("/slot/0/reference")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let security = appointment
        .pointer("/meta/security")
        .cloned()
        .unwrap_or(Value::Null);
    let facts = ResourceFacts {
        resource_type: "Appointment".into(),
        patients: vec![patient_id.to_string()],
        labels: store::access::label_codes(appointment),
        ..Default::default()
    };
    let policy = tx.caller().policy.clone();
    let to_whom = recipients(tx, patient_id, &facts, &policy)?;
    // the Communications of every message written, stored together (one multi-row write)
    let mut communications: Vec<(String, Value)> = Vec::new();
    for (kind, due) in messages {
        let words = text(kind, &visit);
        for (recipient, email) in &to_whom {
            let communication_id = tx.new_id();
            let message = NewMessage {
                id: tx.new_id(),
                event_key: kind.event_key(id, start_ms, &slot_id),
                recipient: recipient.clone(),
                kind: kind.code(),
                channel: "message".into(),
                target: None,
                communication_id: Some(communication_id.clone()),
                payload: json!({
                    "patient": patient_id,
                    "email": email,
                    "subject": subject_line(kind),
                    "text": words,
                    "appointment": id,
                    "start_ms": start_ms,
                })
                .to_string(),
                due_ms: due,
            };
            if !tx
                .on_behalf(store::OnBehalf::Notifications)
                .outbox_add(&message)?
            {
                continue; // this recipient already has this event's message
            }
            let mut communication = json!({
                "resourceType": "Communication",
                "status": "preparation",
                "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": kind.code()}]}],
                "subject": {"reference": format!("Patient/{patient_id}")},
                "about": [{"reference": format!("Appointment/{id}")}],
                "recipient": [{"reference": recipient}],
                "payload": [{"contentString": words}],
            });
            if !security.is_null() {
                communication["meta"] = json!({"security": security});
            }
            communications.push((communication_id, communication));
        }
    }
    if communications.is_empty() {
        return Ok(());
    }
    let indexes: Vec<Vec<fhir::search::IndexEntry>> = communications
        .iter()
        .map(|(_, c)| extract(ctx.registry, c))
        .collect();
    let mut items: Vec<store::NewResource> = communications
        .iter_mut()
        .zip(&indexes)
        .map(|((cid, c), index)| store::NewResource {
            resource_type: "Communication",
            id: cid.clone(),
            resource: c,
            index,
        })
        .collect();
    tx.on_behalf(store::OnBehalf::Notifications)
        .create_many(&mut items)?;
    for (cid, _) in &communications {
        tx.trail
            .add("Communication", cid, &[patient_id.to_string()]);
    }
    Ok(())
}

fn subject_line(kind: Kind) -> &'static str {
    match kind {
        Kind::Booked => "Your appointment is booked",
        Kind::Reminder { .. } => "Appointment reminder",
        Kind::Cancelled => "Your appointment was cancelled",
        Kind::WaitlistOffer => "An earlier appointment is available",
    }
}

/// Who is told about a patient's appointment: the patient and their RelatedPersons, each
/// only if the access policy would show them a resource with these facts. (reference, e-mail).
fn recipients(
    tx: &mut CallerTx,
    patient_id: &str,
    facts: &ResourceFacts,
    policy: &PolicyConfig,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let as_caller = |role: Role, rt: &str, id: &str| Caller {
        subject: Subject {
            id: format!("notify:{rt}/{id}"),
            grants: vec![Grant {
                role,
                organization: None,
            }],
            fhir_users: vec![(rt.to_string(), id.to_string())],
            scopes: Scopes::all_user(),
        },
        policy: policy.clone(),
    };
    let mut out = Vec::new();
    if let Some(p) = tx
        .on_behalf(store::OnBehalf::Notifications)
        .current("Patient", patient_id, false)?
        && !p.deleted
        && store::access::would_see(
            tx.on_behalf(store::OnBehalf::Notifications),
            &as_caller(Role::Patient, "Patient", patient_id),
            facts,
        )?
    {
        out.push((format!("Patient/{patient_id}"), email_of(&body(&p))));
    }
    let req = crate::app::resources::search_request(
        fhir::search::registry(),
        "RelatedPerson",
        &[
            ("patient", format!("Patient/{patient_id}")),
            ("_count", "50".into()),
        ],
    )?;
    for rp in tx
        .on_behalf(store::OnBehalf::Notifications)
        .search(&req)?
        .matches
    {
        let caller = as_caller(Role::Proxy, "RelatedPerson", &rp.id);
        if store::access::would_see(tx.on_behalf(store::OnBehalf::Notifications), &caller, facts)? {
            out.push((format!("RelatedPerson/{}", rp.id), email_of(&body(&rp))));
        }
    }
    Ok(out)
}

/// A resource's e-mail address (its `telecom` with system email).
pub(crate) fn email_of(resource: &Value) -> Option<String> {
    resource
        .get("telecom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|t| t.get("system").and_then(Value::as_str) == Some("email"))
        .and_then(|t| t.get("value").and_then(Value::as_str))
        .map(str::to_string)
}

/// How messages (not rest-hooks) leave the server.
#[derive(Clone)]
pub enum Transport {
    /// Written to the log (ids and kinds only: no names, no text).
    Log,
    /// POSTed as the Communication JSON, signed: `X-Continuum-Signature: sha256=<hex HMAC of
    /// the body with the secret>`.
    Webhook { url: String, secret: String },
    /// E-mailed to the recipient's `telecom` e-mail address.
    Smtp {
        mailer: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
        from: lettre::message::Mailbox,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Log => f.write_str("log"),
            Transport::Webhook { url, .. } => write!(f, "webhook {url}"),
            Transport::Smtp { from, .. } => write!(f, "smtp from {from}"),
        }
    }
}

impl Transport {
    /// An SMTP transport from a URL (`smtp://host:port`, `smtps://user:pass@host`, or
    /// `smtp://host?tls=required`) and a From address.
    pub fn smtp(url: &str, from: &str) -> Result<Transport, String> {
        let mailer = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| format!("SMTP URL: {e}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("SMTP from address '{from}': {e}"))?;
        Ok(Transport::Smtp { mailer, from })
    }
}

/// The hex HMAC-SHA256 of `body` with `secret` (the webhook signature).
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The delivery worker's transports.
#[derive(Debug, Clone)]
pub struct Notifier {
    pub transport: Transport,
    pub http: reqwest::Client,
    /// How long a Subscription's notification is retried before the Subscription is put in
    /// `error` (`subscription_retry_hours`, default 24 h).
    pub rest_hook_window_ms: i64,
}

impl Notifier {
    pub fn new(transport: Transport) -> Notifier {
        Notifier {
            transport,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("an HTTP client"),
            rest_hook_window_ms: care::notify::REST_HOOK_WINDOW_MS,
        }
    }
}

/// When a failed message is tried again (`None`: given up).
fn retry_after(m: &store::Message, now_ms: i64, rest_hook_window_ms: i64) -> Option<i64> {
    if m.channel == "rest-hook" {
        care::notify::rest_hook_retry_after_ms(
            m.attempts as u32,
            m.created_ms,
            now_ms,
            rest_hook_window_ms,
        )
    } else {
        care::notify::retry_after_ms(m.attempts as u32)
    }
}

/// What a delivery run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// What became of one message.
enum Settled {
    Sent,
    Skipped(String),
    Failed(String),
}

/// Delivers the due messages once: claims a batch (in one transaction), sends each, and
/// records each outcome (in a second), updating its Communication.
pub async fn deliver_due(api: &App, notifier: &Notifier) -> Result<DeliveryReport, ApiError> {
    // claim, and drop reminders that are no longer true
    let claimed = api
        .system_job("notify:claim", |tx, _ctx| {
            let claimed = tx
                .on_behalf(store::OnBehalf::Notifications)
                .outbox_claim(BATCH, LEASE_MS)?;
            let mut live = Vec::with_capacity(claimed.len());
            let mut stale = Vec::new();
            for m in claimed {
                if m.kind.starts_with("appointment-reminder") && !reminder_still_true(tx, &m)? {
                    stale.push(m);
                } else {
                    live.push(m);
                }
            }
            for m in &stale {
                settle(
                    tx,
                    m,
                    Settled::Skipped("the appointment changed".into()),
                    care::notify::REST_HOOK_WINDOW_MS,
                )?;
            }
            let described = (!stale.is_empty())
                .then(|| format!("skipped {} reminders of changed appointments", stale.len()));
            Ok(((live, stale.len()), described))
        })
        .await?;
    let (live, skipped) = claimed;
    let mut report = DeliveryReport {
        skipped,
        ..Default::default()
    };
    if live.is_empty() {
        return Ok(report);
    }
    let mut outcomes = Vec::with_capacity(live.len());
    for m in live {
        let result = send(notifier, &m).await;
        outcomes.push((m, result));
    }
    let window = notifier.rest_hook_window_ms;
    let counts = api
        .system_job("notify:deliver", move |tx, _ctx| {
            let mut r = DeliveryReport::default();
            for (m, result) in outcomes {
                match result {
                    Ok(()) => {
                        settle(tx, &m, Settled::Sent, window)?;
                        r.sent += 1;
                    }
                    Err(e) => {
                        if retry_after(&m, tx.now(), window).is_some() {
                            r.retrying += 1;
                        } else {
                            r.failed += 1;
                        }
                        settle(tx, &m, Settled::Failed(e), window)?;
                    }
                }
            }
            let described = format!(
                "notifications: {} sent, {} to retry, {} failed",
                r.sent, r.retrying, r.failed
            );
            Ok((r, Some(described)))
        })
        .await?;
    report.sent = counts.sent;
    report.retrying = counts.retrying;
    report.failed = counts.failed;
    Ok(report)
}

/// A reminder is still true when its appointment is booked at the start it was written for.
fn reminder_still_true(tx: &mut CallerTx, m: &store::Message) -> Result<bool, ApiError> {
    let payload: Value = serde_json::from_str(&m.payload).unwrap_or(Value::Null);
    let (Some(id), Some(start)) = (
        payload.get("appointment").and_then(Value::as_str),
        payload.get("start_ms").and_then(Value::as_i64),
    ) else {
        return Ok(true);
    };
    let Some(stored) =
        tx.on_behalf(store::OnBehalf::Notifications)
            .current("Appointment", id, false)?
    else {
        return Ok(false);
    };
    if stored.deleted {
        return Ok(false);
    }
    let a = body(&stored);
    let starts = a
        .get("start")
        .and_then(Value::as_str)
        .and_then(fhir::primitive::instant_ms);
    Ok(
        crate::app::appointments::status_of(&a) == Some(AppointmentStatus::Booked)
            && starts == Some(start),
    )
}

/// Records a message's outcome and its Communication's status (`completed` with `sent`,
/// `not-done` when skipped, `stopped` when given up; still `preparation` while retrying).
fn settle(
    tx: &mut CallerTx,
    m: &store::Message,
    how: Settled,
    rest_hook_window_ms: i64,
) -> Result<(), ApiError> {
    let now = tx.now();
    let (state, retry_at, error, status, reason) = match &how {
        Settled::Sent => ("sent", None, None, Some("completed"), None),
        Settled::Skipped(why) => ("skipped", None, None, Some("not-done"), Some(why.clone())),
        Settled::Failed(e) => match retry_after(m, now, rest_hook_window_ms) {
            Some(wait) => ("pending", Some(now + wait), Some(e.clone()), None, None),
            None => (
                "failed",
                None,
                Some(e.clone()),
                Some("stopped"),
                Some(format!("delivery failed {} times: {e}", m.attempts)),
            ),
        },
    };
    tx.on_behalf(store::OnBehalf::Notifications).outbox_settle(
        &m.id,
        state,
        retry_at,
        error.as_deref(),
    )?;
    if state == "failed"
        && m.channel == "rest-hook"
        && let Some(sub) = m.recipient.strip_prefix("Subscription/")
    {
        let why = format!(
            "notifications to {} failed for {} hours ({} attempts; the last: {}); set the status back to active once the endpoint answers, and resend what failed (POST /api/subscriptions/{sub}/deliveries/{{id}}/resend)",
            m.target.as_deref().unwrap_or("the endpoint"),
            (now - m.created_ms).max(0) / 3_600_000,
            m.attempts,
            error.as_deref().unwrap_or("unknown")
        );
        super::subscriptions::put_in_error(tx, sub, &why)?;
    }
    if let (Some(status), Some(cid)) = (status, &m.communication_id)
        && let Some(prev) =
            tx.on_behalf(store::OnBehalf::Notifications)
                .current("Communication", cid, true)?
        && !prev.deleted
    {
        let mut c = body(&prev);
        c["status"] = json!(status);
        if status == "completed" {
            c["sent"] = json!(fhir::primitive::format_instant(now));
        }
        if let Some(r) = reason {
            c["statusReason"] = json!({"text": r});
        }
        let index = extract(fhir::search::registry(), &c);
        tx.on_behalf(store::OnBehalf::Notifications)
            .update(&prev, &mut c, &index)?;
        let patients: Vec<String> = c
            .pointer("/subject/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(|p| vec![p.to_string()])
            .unwrap_or_default();
        tx.trail.add("Communication", cid, &patients);
    }
    Ok(())
}

/// Sends one message; the error says why it failed.
async fn send(notifier: &Notifier, m: &store::Message) -> Result<(), String> {
    let payload: Value = serde_json::from_str(&m.payload).map_err(|e| e.to_string())?;
    if m.channel == "rest-hook" {
        let target = m.target.as_deref().ok_or("no endpoint")?;
        let body = payload
            .get("body")
            .cloned()
            .unwrap_or(Value::Null)
            .to_string();
        let mut req = notifier
            .http
            .post(target)
            .header("Content-Type", "application/fhir+json")
            .header("Idempotency-Key", &m.id)
            .body(body);
        for h in payload
            .get("headers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some((k, v)) = h.split_once(':') {
                req = req.header(k.trim(), v.trim());
            }
        }
        return check_http(req.send().await);
    }
    match &notifier.transport {
        Transport::Log => {
            tracing::info!(outbox_id = %m.id, kind = %m.kind, attempt = m.attempts, "notification (log transport)");
            Ok(())
        }
        Transport::Webhook { url, secret } => {
            let communication = communication_json(m, &payload);
            let body = communication.to_string();
            let sig = signature(secret, body.as_bytes());
            let req = notifier
                .http
                .post(url)
                .header("Content-Type", "application/fhir+json")
                .header("X-Continuum-Signature", format!("sha256={sig}"))
                .header("X-Continuum-Event", &m.kind)
                .header("Idempotency-Key", &m.id)
                .body(body);
            check_http(req.send().await)
        }
        Transport::Smtp { mailer, from } => {
            use lettre::AsyncTransport;
            let to = payload
                .get("email")
                .and_then(Value::as_str)
                .ok_or("the recipient has no e-mail address")?;
            let email = lettre::Message::builder()
                .from(from.clone())
                .to(to.parse().map_err(|e| format!("e-mail address: {e}"))?)
                .subject(
                    payload
                        .get("subject")
                        .and_then(Value::as_str)
                        .unwrap_or("Continuum"),
                )
                .message_id(Some(format!("<{}@continuum>", m.id)))
                .body(
                    payload
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
                .map_err(|e| e.to_string())?;
            mailer
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| format!("SMTP: {e}"))
        }
    }
}

/// The Communication a webhook receives (as written, with its id and recipient).
fn communication_json(m: &store::Message, payload: &Value) -> Value {
    json!({
        "resourceType": "Communication",
        "id": m.communication_id,
        "status": "in-progress",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": m.kind}]}],
        "subject": {"reference": format!("Patient/{}", payload.get("patient").and_then(Value::as_str).unwrap_or(""))},
        "about": [{"reference": match payload.get("encounter").and_then(Value::as_str) {
            Some(e) => format!("Encounter/{e}"),
            None => format!("Appointment/{}", payload.get("appointment").and_then(Value::as_str).unwrap_or("")),
        }}],
        "recipient": [{"reference": m.recipient}],
        "payload": [{"contentString": payload.get("text").cloned().unwrap_or(Value::Null)}],
    })
}

fn check_http(r: Result<reqwest::Response, reqwest::Error>) -> Result<(), String> {
    match r {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("the receiver answered {}", resp.status().as_u16())),
        Err(e) => Err(format!("could not reach the receiver: {e}")),
    }
}
