//! Closed-loop referrals (product C3): the write rule of every referral Task — its status
//! machine, who may make each move and what a move needs (`care::referral`), the parts it must
//! name, the service-level due dates, milestones and business status it keeps — and what each
//! step brings with it in the same transaction: a Provenance (who, when, why) and the messages
//! to the other side through the outbox. Appointments `basedOn` a referral's ServiceRequest move
//! its business status (scheduled, no-show, appointment cancelled, seen); the worklists and the
//! measures read the referral register (`store::referrals`) under the caller's view; a job marks
//! referrals at risk and overdue and tells the receiver once when one becomes overdue.
//!
//! Every Task is a referral unless its `code` says it is another kind of task: codings, none
//! of which names a referral (the alliance's `task-kind` `referral`, SNOMED CT 3457005
//! *Patient referral* or 306206005 *Referral to service*, LOINC 57133-1 *Referral note*) — a
//! financial task coded from `financialtaskcode`, or one of the alliance's other kinds.

use care::access::Role;
use care::booking::AppointmentStatus;
use care::referral::metrics::GroupBy;
use care::referral::service_level::{self, Calendar, ServiceLevels};
use care::referral::{
    BusinessStatus, Due, Parties, Progress, TaskStatus, business_status_of, check_move,
    consult_note, missing_parts, reason_text, status_of,
};
use fhir::search::extract;
use fhir::{Issue, IssueType};
use serde_json::{Value, json};
use store::referrals::{WorklistQuery, WorklistState};
use store::{CallerTx, NewMessage, OnBehalf, Stored};

use crate::app::resources::body;
use crate::app::{App, Ctx};
use crate::error::ApiError;

/// The service levels and the business calendar referrals are measured by.
#[derive(Debug, Clone, Default)]
pub struct ReferralConfig {
    pub levels: ServiceLevels,
    pub calendar: Calendar,
}

/// Whether the write rule treats a Task as a referral (`care::referral::is_referral`, the
/// test the referral register shares).
pub fn applies(task: &Value) -> bool {
    care::referral::is_referral(task)
}

/// What a write did to a referral, for its Provenance and its messages.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Created(TaskStatus),
    Moved(TaskStatus, TaskStatus),
    Reassigned,
    Reported,
    Business(BusinessStatus),
}

impl Step {
    fn code(&self) -> String {
        match self {
            Step::Created(s) => format!("created-{s}"),
            Step::Moved(_, to) => to.code().to_string(),
            Step::Reassigned => "reassigned".into(),
            Step::Reported => "reported".into(),
            Step::Business(b) => format!("business-{}", b.code()),
        }
    }

    fn words(&self) -> String {
        match self {
            Step::Created(s) => format!("referral created as {s}"),
            Step::Moved(from, to) => format!("{from} → {to}"),
            Step::Reassigned => "reassigned to another receiver".into(),
            Step::Reported => "consult note attached".into(),
            Step::Business(b) => b.label().to_string(),
        }
    }
}

fn reference<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(|r| r.get("reference"))
        .and_then(Value::as_str)
}

fn unprocessable(at: &str, why: impl Into<String>) -> ApiError {
    ApiError::with_issues(422, vec![Issue::error(IssueType::BusinessRule, why).at(at)])
}

fn forbidden(at: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(403, IssueType::Forbidden, why).at(at)
}

fn conflict(at: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(409, IssueType::Conflict, why).at(at)
}

/// The write rule of a Task (every write path: PUT, POST, batch and transaction entries,
/// `$refer`). Runs after the access decision, before the version is stored; may change it
/// (authoredOn, due dates, milestones, business status).
pub(crate) fn task_written(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    previous: Option<&Value>,
    task: &mut Value,
) -> Result<(), ApiError> {
    let previous = previous.filter(|p| applies(p));
    if !applies(task) {
        return match previous {
            Some(_) => Err(conflict(
                "Task.code",
                "a referral stays a referral: its code cannot name another kind of task",
            )),
            None => Ok(()),
        };
    }
    let missing = missing_parts(task);
    if !missing.is_empty() {
        return Err(ApiError::with_issues(
            422,
            missing
                .into_iter()
                .map(|(at, why)| Issue::error(IssueType::Required, why).at(at))
                .collect(),
        ));
    }
    if let Some(prev) = previous {
        for key in ["focus", "for", "requester"] {
            if reference(prev, key) != reference(task, key) {
                return Err(conflict(
                    &format!("Task.{key}"),
                    format!(
                        "a referral's {key} does not change once written; cancel it and refer again"
                    ),
                ));
            }
        }
    }
    check_references(tx, previous, task)?;
    // the sides are those of the referral as stored (a writer cannot make itself the owner)
    let parties = parties_of(tx, previous.unwrap_or(task))?;
    let from = previous.and_then(status_of);
    let to = status_of(task).unwrap_or(TaskStatus::Draft);
    check_move(from, to, parties).map_err(|r| {
        ApiError::new(
            r.http_status(),
            if r.http_status() == 403 {
                IssueType::Forbidden
            } else {
                IssueType::Conflict
            },
            r.to_string(),
        )
        .at("Task.status")
    })?;
    let mut steps: Vec<Step> = Vec::new();
    match from {
        None => steps.push(Step::Created(to)),
        Some(f) if f != to => steps.push(Step::Moved(f, to)),
        _ => {}
    }
    if let Some(prev) = previous
        && reference(prev, "owner") != reference(task, "owner")
        && from != Some(TaskStatus::Draft)
    {
        check_reassignment(tx, prev, task, parties, from)?;
        steps.push(Step::Reassigned);
    }
    if let Some(prev) = previous {
        let priority = |t: &Value| t.get("priority").cloned();
        if priority(prev) != priority(task)
            && (!parties.requester || from.is_some_and(TaskStatus::is_final))
        {
            return Err(forbidden(
                "Task.priority",
                "only the referring organisation changes a referral's priority, while it is open",
            ));
        }
        if consult_note(prev).is_some()
            && consult_note(task) != consult_note(prev)
            && !parties.owner
        {
            return Err(forbidden(
                "Task.output",
                "only the receiving organisation changes the consult note",
            ));
        }
    }
    let note = consult_note(task);
    if note.is_some() && note != previous.and_then(consult_note) {
        if !parties.owner {
            return Err(forbidden(
                "Task.output",
                "only the receiving organisation attaches the consult note",
            ));
        }
        steps.push(Step::Reported);
    }
    let client_business = business_status_of(task);
    if client_business != previous.and_then(business_status_of) && !parties.owner {
        return Err(forbidden(
            "Task.businessStatus",
            "only the receiving organisation sets a referral's business status",
        ));
    }
    // the move's business status, else "report sent" when the consult note came
    let business = BusinessStatus::for_status(to)
        .filter(|_| from != Some(to))
        .or_else(|| {
            steps
                .contains(&Step::Reported)
                .then_some(BusinessStatus::FulfillmentCompleted)
        });
    if let Some(b) = business {
        task["businessStatus"] = b.concept();
    } else if let Some(b) = client_business
        && client_business != previous.and_then(business_status_of)
    {
        steps.push(Step::Business(b));
    }
    keep_derived(ctx, previous, task, tx.now());
    if steps.is_empty() {
        return Ok(());
    }
    let version = previous
        .and_then(|p| p.pointer("/meta/versionId"))
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(1, |v| v + 1);
    record_steps(tx, ctx, id, version, task, &steps, parties)
}

/// A referral is not deleted — it is cancelled, or marked entered-in-error, so its trail and
/// its measures stay — except by those who see everything (an administrator correcting data).
pub(crate) fn task_deleted(tx: &mut CallerTx, previous: &Value) -> Result<(), ApiError> {
    if applies(previous) && !tx.view().everything {
        return Err(conflict(
            "Task",
            "a referral is not deleted: cancel it (with a reason), or mark it entered-in-error",
        ));
    }
    Ok(())
}

/// The referral's references name what exists: the ServiceRequest (of the same patient), the
/// requester, the receiver, and a consult note.
fn check_references(
    tx: &mut CallerTx,
    previous: Option<&Value>,
    task: &Value,
) -> Result<(), ApiError> {
    if previous.is_none() {
        let focus = reference(task, "focus").unwrap_or("");
        let sid = focus.strip_prefix("ServiceRequest/").unwrap_or("");
        let request = tx
            .current("ServiceRequest", sid, false)?
            .filter(|s| !s.deleted)
            .map(|s| body(&s))
            .ok_or_else(|| unprocessable("Task.focus", format!("{focus} does not exist: create the ServiceRequest first (or use ServiceRequest/$refer, which writes both)")))?;
        if reference(&request, "subject") != reference(task, "for") {
            return Err(unprocessable(
                "Task.for",
                format!(
                    "the referral is for {} but {focus} is for {}",
                    reference(task, "for").unwrap_or("nobody"),
                    reference(&request, "subject").unwrap_or("nobody")
                ),
            ));
        }
    }
    if previous.is_none()
        && let Some(requester) = reference(task, "requester")
        && let Some((rt, rid)) = fhir::json::split_reference(requester)
        && tx
            .on_behalf(OnBehalf::Directory)
            .current(rt, rid, false)?
            .is_none_or(|s| s.deleted)
    {
        return Err(unprocessable(
            "Task.requester",
            format!("the requester {requester} does not exist"),
        ));
    }
    if let Some(owner) = reference(task, "owner")
        && previous.and_then(|p| reference(p, "owner")) != Some(owner)
    {
        let found = match fhir::json::split_reference(owner) {
            Some((rt @ ("Organization" | "HealthcareService" | "PractitionerRole"), oid)) => tx
                .on_behalf(OnBehalf::Directory)
                .current(rt, oid, false)?
                .is_some_and(|s| !s.deleted),
            _ => {
                return Err(unprocessable(
                    "Task.owner",
                    format!(
                        "a referral's receiver is an Organization, HealthcareService or PractitionerRole, not '{owner}'"
                    ),
                ));
            }
        };
        if !found {
            return Err(unprocessable(
                "Task.owner",
                format!("the receiver {owner} does not exist"),
            ));
        }
    }
    if let Some(note) = consult_note(task)
        && previous.and_then(consult_note).as_deref() != Some(note.as_str())
    {
        let did = note.strip_prefix("DocumentReference/").unwrap_or("");
        if tx
            .current("DocumentReference", did, false)?
            .is_none_or(|s| s.deleted)
        {
            return Err(unprocessable(
                "Task.output",
                format!(
                    "the consult note {note} does not exist: store the DocumentReference first"
                ),
            ));
        }
    }
    Ok(())
}

/// A reassignment: by a coordinator of the receiving organisation, while the referral is
/// open, with its reason in a new note.
fn check_reassignment(
    tx: &mut CallerTx,
    previous: &Value,
    task: &Value,
    parties: Parties,
    from: Option<TaskStatus>,
) -> Result<(), ApiError> {
    if !matches!(from, Some(TaskStatus::Requested | TaskStatus::Received)) {
        return Err(conflict(
            "Task.owner",
            "a referral is reassigned before it is accepted (while requested or received); once accepted, cancel it and refer again",
        ));
    }
    let everything = tx.view().everything;
    let coordinator_of_owner = parties.owner
        && (everything || {
            let owners = organizations_named(tx, reference(previous, "owner"))?;
            tx.caller().subject.grants.iter().any(|g| {
                g.role == Role::Coordinator
                    && g.organization.as_ref().is_some_and(|o| owners.contains(o))
            })
        });
    if !coordinator_of_owner {
        return Err(forbidden(
            "Task.owner",
            "only a coordinator of the receiving organisation reassigns a referral",
        ));
    }
    let notes = |t: &Value| t.get("note").and_then(Value::as_array).map_or(0, Vec::len);
    let reason = task
        .get("note")
        .and_then(Value::as_array)
        .and_then(|n| n.last())
        .and_then(|n| n.get("text"))
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty());
    if notes(task) <= notes(previous) || !reason {
        return Err(unprocessable(
            "Task.note",
            "a reassignment says why: add a note with the reason",
        ));
    }
    Ok(())
}

/// The organisations a reference names: an Organization itself, or the organisation of a
/// PractitionerRole or HealthcareService.
fn organizations_named(tx: &mut CallerTx, r: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some((rt, id)) = r.and_then(fhir::json::split_reference) else {
        return Ok(vec![]);
    };
    let key = match rt {
        "Organization" => return Ok(vec![id.to_string()]),
        "PractitionerRole" => "organization",
        "HealthcareService" => "providedBy",
        _ => return Ok(vec![]),
    };
    Ok(tx
        .on_behalf(OnBehalf::Directory)
        .current(rt, id, false)?
        .filter(|s| !s.deleted)
        .and_then(|s| {
            reference(&body(&s), key)
                .and_then(|o| o.strip_prefix("Organization/"))
                .map(str::to_string)
        })
        .into_iter()
        .collect())
}

/// Which sides of a referral the caller acts for: those who see everything act for both; a
/// caller holding a role for the requester's (owner's) organisation, or who is the requesting
/// (owning) Practitioner or PractitionerRole, for that side.
pub(crate) fn parties_of(tx: &mut CallerTx, referral: &Value) -> Result<Parties, ApiError> {
    if tx.view().everything {
        return Ok(Parties::BOTH);
    }
    let subject = tx.caller().subject.clone();
    let mine: Vec<&str> = subject
        .grants
        .iter()
        .filter(|g| g.role.needs_organization())
        .filter_map(|g| g.organization.as_deref())
        .collect();
    let is_me = |r: Option<&str>| {
        r.and_then(fhir::json::split_reference)
            .is_some_and(|(rt, id)| subject.fhir_users.iter().any(|(t, i)| t == rt && i == id))
    };
    let mut side = |key: &str| -> Result<bool, ApiError> {
        let r = reference(referral, key);
        Ok(is_me(r)
            || organizations_named(tx, r)?
                .iter()
                .any(|o| mine.contains(&o.as_str())))
    };
    Ok(Parties {
        requester: side("requester")?,
        owner: side("owner")?,
    })
}

/// What the server keeps in a referral: when it was written, when each milestone is due and
/// when it was reached (what a client sends for these is replaced).
fn keep_derived(ctx: &Ctx, previous: Option<&Value>, task: &mut Value, now: i64) {
    // a draft is not yet sent: its service level runs from when it is requested
    let sent_now = previous.and_then(status_of) == Some(TaskStatus::Draft)
        && status_of(task) == Some(TaskStatus::Requested);
    let authored = match previous {
        _ if sent_now => now,
        Some(p) => p
            .get("authoredOn")
            .and_then(Value::as_str)
            .and_then(fhir::json::instant_ms)
            .unwrap_or(now),
        None => task
            .get("authoredOn")
            .and_then(Value::as_str)
            .and_then(fhir::json::instant_ms)
            .filter(|t| *t <= now)
            .unwrap_or(now),
    };
    task["authoredOn"] = json!(fhir::primitive::format_instant(authored));
    task["lastModified"] = json!(fhir::primitive::format_instant(now));
    let priority = |t: &Value| {
        t.get("priority")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let due = match previous {
        Some(p) if priority(p) == priority(task) && !sent_now => Due::of(p),
        _ => None,
    }
    .unwrap_or_else(|| {
        let p = priority(task)
            .as_deref()
            .and_then(service_level::Priority::parse)
            .unwrap_or(service_level::Priority::Routine);
        service_level::due(authored, p, &ctx.referrals.levels, &ctx.referrals.calendar)
    });
    due.write_into(task);
    let before = previous.map(Progress::of).unwrap_or_default();
    Progress::after(before, task, now).write_into(task);
}

/// Writes the Provenance of a referral's steps and the messages they send, in the write's
/// transaction, on the alliance's behalf (the writer need not be able to write either).
#[allow(clippy::too_many_arguments)]
fn record_steps(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    version: i64,
    task: &Value,
    steps: &[Step],
    parties: Parties,
) -> Result<(), ApiError> {
    let now = tx.now();
    let patient = reference(task, "for")
        .and_then(|r| r.strip_prefix("Patient/"))
        .unwrap_or("")
        .to_string();
    let subject = tx.caller().subject.clone();
    let who = subject
        .fhir_users
        .iter()
        .find(|(rt, _)| rt == "Practitioner" || rt == "PractitionerRole")
        .map(|(rt, i)| json!({"reference": format!("{rt}/{i}")}))
        .unwrap_or_else(|| json!({"display": subject.id}));
    let on_behalf_of = subject
        .grants
        .iter()
        .find_map(|g| g.organization.clone())
        .map(|o| json!({"reference": format!("Organization/{o}")}));
    let reason = if steps.contains(&Step::Reassigned) {
        task.pointer("/note")
            .and_then(Value::as_array)
            .and_then(|n| n.last())
            .and_then(|n| n.get("text"))
            .and_then(Value::as_str)
            .map(str::to_string)
    } else {
        reason_text(task)
    };
    let security = task.pointer("/meta/security").cloned();
    let mut resources: Vec<(String, &'static str, Value)> = Vec::new();
    for step in steps {
        let mut agent = json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": who,
        });
        if let Some(o) = &on_behalf_of {
            agent["onBehalfOf"] = o.clone();
        }
        let mut provenance = json!({
            "resourceType": "Provenance",
            "target": [{"reference": format!("Task/{id}/_history/{version}")},
                       {"reference": format!("Patient/{patient}")}],
            "recorded": fhir::primitive::format_instant(now),
            "activity": {"coding": [{"system": care::profile::REFERRAL_STEP, "code": step.code()}], "text": step.words()},
            "agent": [agent],
        });
        if let Some(r) = reason.as_ref().filter(|r| !r.trim().is_empty())
            && matches!(step, Step::Moved(..) | Step::Reassigned)
        {
            provenance["reason"] = json!([{"text": r}]);
        }
        if let Some(s) = &security {
            provenance["meta"] = json!({"security": s});
        }
        resources.push((tx.new_id(), "Provenance", provenance));
    }
    // the messages each step sends: to the referrer and to the receiver, nothing clinical
    let requester = reference(task, "requester").map(str::to_string);
    let owner = reference(task, "owner").map(str::to_string);
    let service = service_name(tx, task)?;
    let mut messages: Vec<(String, String, String, String)> = Vec::new(); // (recipient, kind, event, words)
    let mut tell = |to: &Option<String>, kind: &str, event: String, words: String| {
        if let Some(r) = to {
            messages.push((r.clone(), kind.to_string(), event, words));
        }
    };
    for step in steps {
        match step {
            Step::Created(TaskStatus::Requested)
            | Step::Moved(TaskStatus::Draft, TaskStatus::Requested) => tell(
                &owner,
                "referral-new",
                format!("referral-new:{id}:{}", owner.as_deref().unwrap_or("")),
                format!("New referral for {service}: Task/{id}. Please accept or decline it."),
            ),
            Step::Moved(_, TaskStatus::Accepted) => tell(
                &requester,
                "referral-accepted",
                format!("referral-accepted:{id}"),
                format!("Your referral for {service} was accepted: Task/{id}."),
            ),
            Step::Moved(_, TaskStatus::Rejected) => tell(
                &requester,
                "referral-declined",
                format!("referral-declined:{id}"),
                format!("Your referral for {service} was declined; the reason is in Task/{id}."),
            ),
            Step::Moved(_, TaskStatus::Cancelled) => {
                let words = format!("The referral for {service} was cancelled: Task/{id}.");
                if parties.requester || !parties.owner {
                    tell(
                        &owner,
                        "referral-cancelled",
                        format!("referral-cancelled:{id}"),
                        words.clone(),
                    );
                }
                if parties.owner || !parties.requester {
                    tell(
                        &requester,
                        "referral-cancelled",
                        format!("referral-cancelled:{id}"),
                        words,
                    );
                }
            }
            Step::Moved(_, TaskStatus::Failed) => tell(
                &requester,
                "referral-failed",
                format!("referral-failed:{id}"),
                format!(
                    "The receiving service could not complete your referral for {service}; the reason is in Task/{id}."
                ),
            ),
            Step::Moved(_, TaskStatus::Completed) => tell(
                &requester,
                "referral-closed",
                format!("referral-closed:{id}"),
                format!(
                    "The consult report for your referral for {service} is available: Task/{id}. The loop is closed."
                ),
            ),
            Step::Reassigned => tell(
                &owner,
                "referral-reassigned",
                format!(
                    "referral-reassigned:{id}:{}",
                    owner.as_deref().unwrap_or("")
                ),
                format!(
                    "A referral for {service} was reassigned to you: Task/{id}. Please accept or decline it."
                ),
            ),
            Step::Business(BusinessStatus::Scheduled) => tell(
                &requester,
                "referral-scheduled",
                format!("referral-scheduled:{id}:{version}"),
                format!("An appointment was booked for your referral for {service}: Task/{id}."),
            ),
            Step::Business(BusinessStatus::Unattended) => tell(
                &requester,
                "referral-no-show",
                format!("referral-no-show:{id}:{version}"),
                format!(
                    "The patient did not attend the appointment for your referral for {service}: Task/{id}."
                ),
            ),
            _ => {}
        }
    }
    for (recipient, kind, event, words) in messages {
        resources.extend(message(tx, id, task, &recipient, &kind, event, words, now)?);
    }
    store_written(tx, ctx, resources, &patient)
}

/// One message about referral `task_id` to `recipient` (nothing clinical: `words` name the
/// service and the referral): its outbox row, once per event and recipient, and — when the row
/// is new — the Communication recording it, to be stored by [`store_written`].
#[allow(clippy::too_many_arguments)]
fn message(
    tx: &mut CallerTx,
    task_id: &str,
    task: &Value,
    recipient: &str,
    kind: &str,
    event_key: String,
    words: String,
    now: i64,
) -> Result<Option<(String, &'static str, Value)>, ApiError> {
    let communication_id = tx.new_id();
    let email = email_of(tx, recipient)?;
    let row = NewMessage {
        id: tx.new_id(),
        event_key,
        recipient: recipient.to_string(),
        kind: kind.to_string(),
        channel: "message".into(),
        target: None,
        communication_id: Some(communication_id.clone()),
        payload:
            json!({"email": email, "subject": subject_line(kind), "text": words, "task": task_id})
                .to_string(),
        due_ms: now,
    };
    if !tx.on_behalf(OnBehalf::Notifications).outbox_add(&row)? {
        return Ok(None); // this recipient already has this event's message
    }
    let mut communication = json!({
        "resourceType": "Communication",
        "status": "preparation",
        "category": [{"coding": [{"system": care::profile::NOTIFICATION, "code": kind}]}],
        "subject": task.get("for").cloned().unwrap_or(Value::Null),
        "about": [{"reference": format!("Task/{task_id}")}],
        "recipient": [{"reference": recipient}],
        "payload": [{"contentString": words}],
    });
    if let Some(s) = task.pointer("/meta/security") {
        communication["meta"] = json!({"security": s});
    }
    Ok(Some((communication_id, "Communication", communication)))
}

/// Stores what a referral step wrote on the alliance's behalf (Provenance, Communications),
/// together, and records each in the request's trail.
fn store_written(
    tx: &mut CallerTx,
    ctx: &Ctx,
    mut resources: Vec<(String, &'static str, Value)>,
    patient: &str,
) -> Result<(), ApiError> {
    if resources.is_empty() {
        return Ok(());
    }
    let indexes: Vec<Vec<fhir::search::IndexEntry>> = resources
        .iter()
        .map(|(_, _, r)| extract(ctx.registry, r))
        .collect();
    let mut items: Vec<store::NewResource> = resources
        .iter_mut()
        .zip(&indexes)
        .map(|((rid, rt, r), index)| store::NewResource {
            resource_type: rt,
            id: rid.clone(),
            resource: r,
            index,
        })
        .collect();
    tx.on_behalf(OnBehalf::Referrals).create_many(&mut items)?;
    let patients = [patient.to_string()];
    for (rid, rt, _) in &resources {
        tx.trail.add(rt, rid, &patients);
    }
    Ok(())
}

fn subject_line(kind: &str) -> &'static str {
    match kind {
        "referral-new" => "New referral",
        "referral-accepted" => "Referral accepted",
        "referral-declined" => "Referral declined",
        "referral-cancelled" => "Referral cancelled",
        "referral-closed" => "Consult report available",
        "referral-reassigned" => "Referral reassigned to you",
        "referral-scheduled" => "Referral appointment booked",
        "referral-no-show" => "Referral appointment missed",
        "referral-overdue" => "Referral overdue",
        "referral-failed" => "Referral could not be completed",
        _ => "Referral update",
    }
}

/// The name of what a referral asks for, for its messages: the receiving HealthcareService's
/// name from the directory, else "a service" (never the referral's own words, which may be
/// clinical).
fn service_name(tx: &mut CallerTx, task: &Value) -> Result<String, ApiError> {
    if let Some(sid) = reference(task, "owner").and_then(|r| r.strip_prefix("HealthcareService/"))
        && let Some(s) =
            tx.on_behalf(OnBehalf::Directory)
                .current("HealthcareService", sid, false)?
        && let Some(name) = body(&s).get("name").and_then(Value::as_str)
    {
        return Ok(name.to_string());
    }
    // nothing from the referral itself: its code or text may say what the child has
    Ok("a service".to_string())
}

/// A directory resource's e-mail address (`telecom` with system email).
fn email_of(tx: &mut CallerTx, reference: &str) -> Result<Option<String>, ApiError> {
    let Some((rt, id)) = fhir::json::split_reference(reference) else {
        return Ok(None);
    };
    let found = tx
        .on_behalf(OnBehalf::Notifications)
        .current(rt, id, false)?;
    Ok(found.and_then(|s| crate::app::notify::email_of(&body(&s))))
}

/// An Appointment `basedOn` a referral's ServiceRequest changed status: the open referrals of
/// that request take the business status it means (booked: scheduled — an accepted referral
/// is then in progress; no-show: unattended; cancelled; fulfilled: seen), each a step with its
/// Provenance and messages, written on the alliance's behalf.
pub(crate) fn appointment_changed(
    tx: &mut CallerTx,
    ctx: &Ctx,
    from: Option<AppointmentStatus>,
    appointment: &Value,
) -> Result<(), ApiError> {
    let requests: Vec<String> = appointment
        .get("basedOn")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("reference").and_then(Value::as_str))
        .filter(|r| r.starts_with("ServiceRequest/"))
        .map(str::to_string)
        .collect();
    if requests.is_empty() {
        return Ok(());
    }
    // the requests it carries out that move referrals: ones the writer may read, for the
    // appointment's patient (another reference is kept as written and moves nothing — FHIR
    // does not make a reference name a resource that exists, and a hidden one answers like an
    // absent one)
    let patient = crate::app::appointments::participant_refs(appointment)
        .find(|r| r.starts_with("Patient/"))
        .map(str::to_string);
    let mut requests_of_patient = Vec::new();
    for request in requests {
        let sid = request.trim_start_matches("ServiceRequest/");
        let subject = tx
            .current("ServiceRequest", sid, false)?
            .filter(|s| !s.deleted)
            .and_then(|s| {
                body(&s)
                    .pointer("/subject/reference")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if subject.is_some() && subject == patient {
            requests_of_patient.push(request);
        }
    }
    let requests = requests_of_patient;
    let to = crate::app::appointments::status_of(appointment);
    let Some(to) = to.filter(|t| Some(*t) != from) else {
        return Ok(());
    };
    let Some(business) = BusinessStatus::for_appointment(to) else {
        return Ok(());
    };
    // a visit attended, missed or cancelled is one that was booked before: an appointment
    // written straight into those states does not move a referral
    if from.is_none() && business != BusinessStatus::Scheduled {
        return Ok(());
    }
    for request in requests {
        if business == BusinessStatus::EventCompleted {
            // the first visit with the adult clinician a transfer to adult care asked for
            crate::app::transition::visit_fulfilled(tx, ctx, &request, appointment)?;
        }
        let req = crate::app::resources::search_request(
            ctx.registry,
            "Task",
            &[("focus", request.clone()), ("_count", "20".into())],
        )?;
        let tasks: Vec<Stored> = tx.on_behalf(OnBehalf::Referrals).search(&req)?.matches;
        for stored in tasks {
            let previous = body(&stored);
            if !applies(&previous)
                || status_of(&previous).is_none_or(TaskStatus::is_final)
                || reference(&previous, "for") != patient.as_deref()
            {
                continue;
            }
            let mut task = previous.clone();
            task["businessStatus"] = business.concept();
            let mut steps = vec![Step::Business(business)];
            if business == BusinessStatus::Scheduled
                && status_of(&previous) == Some(TaskStatus::Accepted)
            {
                task["status"] = json!(TaskStatus::InProgress.code());
                steps.insert(0, Step::Moved(TaskStatus::Accepted, TaskStatus::InProgress));
            }
            keep_derived(ctx, Some(&previous), &mut task, tx.now());
            record_steps(
                tx,
                ctx,
                &stored.id,
                stored.version + 1,
                &task,
                &steps,
                Parties::BOTH,
            )?;
            let index = extract(ctx.registry, &task);
            tx.on_behalf(OnBehalf::Referrals)
                .update(&stored, &mut task, &index)?;
            let patients: Vec<String> = reference(&task, "for")
                .and_then(|r| r.strip_prefix("Patient/"))
                .map(str::to_string)
                .into_iter()
                .collect();
            tx.trail.add("Task", &stored.id, &patients);
        }
    }
    Ok(())
}

/// Whether the caller may read an organisation's (or, `None`, the alliance's) worklists and
/// measures: `care::access::decide_organization_reports`.
pub(crate) fn may_see_reports(tx: &CallerTx, organization: Option<&str>) -> Result<(), ApiError> {
    match care::access::decide_organization_reports(
        &tx.caller().subject,
        tx.view().everything,
        organization,
    ) {
        care::access::Decision::Permit => Ok(()),
        care::access::Decision::Deny(why) => Err(ApiError::new(403, IssueType::Forbidden, why)),
    }
}

/// A worklist as asked by `GET /api/worklists/referrals`.
#[derive(Debug, Clone)]
pub struct WorklistRequest {
    pub organization: String,
    pub received: bool,
    pub state: WorklistState,
    pub count: usize,
    pub after: Option<String>,
}

/// An organisation's referral worklist page, as JSON (each item a referral the caller may
/// read; the next page's cursor).
pub fn worklist(tx: &mut CallerTx, ctx: &Ctx, r: WorklistRequest) -> Result<Value, ApiError> {
    may_see_reports(tx, Some(&r.organization))?;
    let now = tx.now();
    let at_risk_until = service_level::at_risk_until(now, &ctx.referrals.calendar);
    let page = tx.referral_worklist(&WorklistQuery {
        organization: r.organization.clone(),
        received: r.received,
        state: r.state,
        now_ms: now,
        at_risk_until_ms: at_risk_until,
        count: r.count,
        after: r.after,
    })?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|i| {
            // open with nothing more due (seen, the report awaited): on track
            let next = match i.closed_ms {
                Some(_) => None,
                None => Some(i.next_due_ms.unwrap_or(store::referrals::NOTHING_DUE)),
            };
            let state = service_level::sla_state(next, now, &ctx.referrals.calendar);
            let business = i.business_status.as_deref().and_then(BusinessStatus::parse);
            json!({
                "task": format!("Task/{}", i.task_id),
                "patient": format!("Patient/{}", i.patient_id),
                "requester": (!i.requester_org.is_empty()).then(|| format!("Organization/{}", i.requester_org)),
                "owner": (!i.owner_org.is_empty()).then(|| format!("Organization/{}", i.owner_org)),
                "service": i.service,
                "priority": i.priority,
                "status": i.status,
                "businessStatus": business.map(BusinessStatus::label),
                "authoredOn": fhir::primitive::format_instant(i.authored_ms),
                "nextDue": i.next_due_ms.filter(|_| i.closed_ms.is_none()).map(fhir::primitive::format_instant),
                "closed": i.closed_ms.map(fhir::primitive::format_instant),
                "serviceLevel": state.code(),
            })
        })
        .collect();
    Ok(json!({
        "organization": format!("Organization/{}", r.organization),
        "role": if r.received { "received" } else { "sent" },
        "state": state_code(r.state),
        "count": items.len(),
        "items": items,
        "next": page.next,
    }))
}

pub fn state_code(s: WorklistState) -> &'static str {
    match s {
        WorklistState::Open => "open",
        WorklistState::AtRisk => "at-risk",
        WorklistState::Overdue => "overdue",
        WorklistState::Closed => "closed",
    }
}

/// The referral measures asked by `GET /api/metrics/referrals`.
#[derive(Debug, Clone)]
pub struct MetricsRequest {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: GroupBy,
    /// Only the referrals this organisation sent or received.
    pub organization: Option<String>,
}

/// The measures, one row per group (see `care::referral::metrics` for each definition).
pub fn metrics(
    tx: &mut CallerTx,
    ctx: &Ctx,
    r: &MetricsRequest,
) -> Result<Vec<care::referral::metrics::Measures>, ApiError> {
    may_see_reports(tx, r.organization.as_deref())?;
    let records = tx.referral_records(r.from_ms, r.to_ms, r.organization.as_deref())?;
    tx.trail.description = Some(format!(
        "referral measures over {} referrals",
        records.len()
    ));
    Ok(care::referral::metrics::measure(
        &records,
        r.from_ms,
        r.to_ms,
        tx.now(),
        r.group_by,
        &ctx.referrals.calendar,
    ))
}

/// Marks open referrals at risk and overdue (store::referrals' `flag`), and tells the
/// receiver once when one becomes overdue. What it did, in words, when it did something.
pub async fn mark_service_levels(app: &App) -> Result<Option<String>, ApiError> {
    app.system_job("referrals:service-levels", |tx, ctx| {
        let now = tx.now();
        let until = service_level::at_risk_until(now, &ctx.referrals.calendar);
        let at_risk = tx
            .on_behalf(OnBehalf::Referrals)
            .referrals_to_mark(now, until, "at-risk", 1000)?;
        for (task_id, _, due) in &at_risk {
            tx.on_behalf(OnBehalf::Referrals)
                .mark_referral(task_id, "at-risk", *due)?;
        }
        let overdue = tx.on_behalf(OnBehalf::Referrals).referrals_to_mark(
            i64::MIN / 4,
            now - 1,
            "overdue",
            1000,
        )?;
        for (task_id, _, due) in &overdue {
            tx.on_behalf(OnBehalf::Referrals)
                .mark_referral(task_id, "overdue", *due)?;
            let Some(stored) = tx
                .on_behalf(OnBehalf::Referrals)
                .current("Task", task_id, false)?
            else {
                continue;
            };
            let task = body(&stored);
            let Some(owner) = reference(&task, "owner").map(str::to_string) else {
                continue;
            };
            let service = service_name(tx, &task)?;
            let words = format!(
                "A referral for {service} is overdue (its next step was due {}): Task/{task_id}.",
                fhir::primitive::format_instant(*due)
            );
            let patient = reference(&task, "for")
                .and_then(|r| r.strip_prefix("Patient/"))
                .unwrap_or("")
                .to_string();
            let event = format!("referral-overdue:{task_id}:{due}");
            let written = message(
                tx,
                task_id,
                &task,
                &owner,
                "referral-overdue",
                event,
                words,
                now,
            )?;
            store_written(tx, ctx, written.into_iter().collect(), &patient)?;
        }
        let described = (!at_risk.is_empty() || !overdue.is_empty()).then(|| {
            format!(
                "{} referrals marked at risk, {} overdue",
                at_risk.len(),
                overdue.len()
            )
        });
        Ok((described.clone(), described))
    })
    .await
}
