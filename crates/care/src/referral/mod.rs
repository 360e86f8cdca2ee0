//! Closed-loop referrals (product C3, domain rules "Referrals"): a ServiceRequest plus a Task
//! (`focus` = the ServiceRequest, `for` = the patient, `requester`, `owner` = the receiving
//! organisation or service). This module is the Task's status machine, who may make each move,
//! what a move needs (a reason, the consult note), the business status modelled on HL7 BSeR,
//! and the milestones a referral records as it moves — pure, with the time passed in. Service
//! levels and due dates are in [`service_level`], the measures in [`metrics`].
//!
//! - created as `draft` or `requested` only;
//! - draft → requested | cancelled | entered-in-error; requested → received | accepted |
//!   rejected | cancelled; received → accepted | rejected | cancelled; accepted → in-progress |
//!   cancelled; in-progress → on-hold | completed | failed | cancelled; on-hold → in-progress |
//!   cancelled; the rest is final;
//! - the **owner** (receiving) organisation sets received, accepted, rejected, in-progress,
//!   on-hold, failed and completed; the **requester** organisation sets draft, requested and
//!   entered-in-error; either may cancel;
//! - rejected, cancelled and failed need a `statusReason`; completed needs an `output` that
//!   references the consult note (a DocumentReference) — that closes the loop.

pub mod metrics;
pub mod service_level;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::{Value, json};

pub use crate::profile::{BSER_BUSINESS_STATUS, REFERRAL_DUE, REFERRAL_MILESTONE};
pub use service_level::{Calendar, Due, Priority, ServiceLevels, SlaState};

/// R4 `TaskStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskStatus {
    Draft,
    Requested,
    Received,
    Accepted,
    Rejected,
    Ready,
    Cancelled,
    InProgress,
    OnHold,
    Failed,
    Completed,
    EnteredInError,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 12] = [
        TaskStatus::Draft,
        TaskStatus::Requested,
        TaskStatus::Received,
        TaskStatus::Accepted,
        TaskStatus::Rejected,
        TaskStatus::Ready,
        TaskStatus::Cancelled,
        TaskStatus::InProgress,
        TaskStatus::OnHold,
        TaskStatus::Failed,
        TaskStatus::Completed,
        TaskStatus::EnteredInError,
    ];

    pub fn code(self) -> &'static str {
        match self {
            TaskStatus::Draft => "draft",
            TaskStatus::Requested => "requested",
            TaskStatus::Received => "received",
            TaskStatus::Accepted => "accepted",
            TaskStatus::Rejected => "rejected",
            TaskStatus::Ready => "ready",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::InProgress => "in-progress",
            TaskStatus::OnHold => "on-hold",
            TaskStatus::Failed => "failed",
            TaskStatus::Completed => "completed",
            TaskStatus::EnteredInError => "entered-in-error",
        }
    }

    pub fn parse(code: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The statuses a referral may move to from this one.
    pub fn next(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Draft => &[Requested, Cancelled, EnteredInError],
            Requested => &[Received, Accepted, Rejected, Cancelled],
            Received => &[Accepted, Rejected, Cancelled],
            Accepted => &[InProgress, Cancelled],
            InProgress => &[OnHold, Completed, Failed, Cancelled],
            OnHold => &[InProgress, Cancelled],
            Rejected | Ready | Cancelled | Failed | Completed | EnteredInError => &[],
        }
    }

    /// Whether the referral is over (no move leaves it).
    pub fn is_final(self) -> bool {
        self.next().is_empty()
    }

    /// Who may set this status.
    pub fn set_by(self) -> Side {
        use TaskStatus::*;
        match self {
            Draft | Requested | EnteredInError => Side::Requester,
            Cancelled => Side::Either,
            Received | Accepted | Rejected | Ready | InProgress | OnHold | Failed | Completed => {
                Side::Owner
            }
        }
    }

    /// Whether this status needs a `statusReason`.
    pub fn needs_reason(self) -> bool {
        matches!(
            self,
            TaskStatus::Rejected | TaskStatus::Cancelled | TaskStatus::Failed
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Which side of a referral may set a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The referring organisation (`Task.requester`).
    Requester,
    /// The receiving organisation (`Task.owner`).
    Owner,
    Either,
}

impl Side {
    fn words(self) -> &'static str {
        match self {
            Side::Requester => "the referring organisation",
            Side::Owner => "the receiving organisation",
            Side::Either => "either side",
        }
    }
}

/// Which sides of a referral the writer acts for (an alliance administrator or a backend
/// service acts for both; a clinician of the receiving organisation for the owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parties {
    pub requester: bool,
    pub owner: bool,
}

impl Parties {
    pub const BOTH: Parties = Parties {
        requester: true,
        owner: true,
    };

    /// Whether these parties may set a status that `side` sets.
    pub fn may_set(self, side: Side) -> bool {
        match side {
            Side::Requester => self.requester,
            Side::Owner => self.owner,
            Side::Either => self.requester || self.owner,
        }
    }
}

/// Why a referral's status may not be written as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A referral is created as draft or requested only (409).
    NotAStart { to: TaskStatus },
    /// The machine has no such move (409); `allowed` are the moves from `from` these parties
    /// may make.
    NoSuchMove {
        from: TaskStatus,
        to: TaskStatus,
        allowed: Vec<TaskStatus>,
    },
    /// The move exists but the other side makes it (403).
    OtherSide { to: TaskStatus, side: Side },
}

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::OtherSide { .. } => 403,
            _ => 409,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAStart { to } => write!(
                f,
                "a referral is created as draft or requested, not {to}; create it as requested and move it from there"
            ),
            Refusal::NoSuchMove { from, to, .. } if from.is_final() => write!(
                f,
                "a referral that is {from} cannot become {to}: {from} is final"
            ),
            Refusal::NoSuchMove { from, to, allowed } => {
                let codes: Vec<&str> = allowed.iter().map(|s| s.code()).collect();
                if codes.is_empty() {
                    write!(
                        f,
                        "a referral that is {from} cannot become {to}, and no move from {from} is yours to make"
                    )
                } else {
                    write!(
                        f,
                        "a referral that is {from} cannot become {to}; allowed from {from}: {}",
                        codes.join(", ")
                    )
                }
            }
            Refusal::OtherSide { to, side } => {
                write!(f, "only {} may set a referral to {to}", side.words())
            }
        }
    }
}

/// Checks a status change of a referral (`from` = `None`: its creation) made for `parties`.
/// Staying in the same status is not a change.
pub fn check_move(
    from: Option<TaskStatus>,
    to: TaskStatus,
    parties: Parties,
) -> Result<(), Refusal> {
    let side_ok = |to: TaskStatus| parties.may_set(to.set_by());
    match from {
        None => {
            if !matches!(to, TaskStatus::Draft | TaskStatus::Requested) {
                return Err(Refusal::NotAStart { to });
            }
            if !side_ok(to) {
                return Err(Refusal::OtherSide {
                    to,
                    side: to.set_by(),
                });
            }
            Ok(())
        }
        Some(from) if from == to => Ok(()),
        Some(from) => {
            if !from.next().contains(&to) {
                return Err(Refusal::NoSuchMove {
                    from,
                    to,
                    allowed: from
                        .next()
                        .iter()
                        .copied()
                        .filter(|s| side_ok(*s))
                        .collect(),
                });
            }
            if !side_ok(to) {
                return Err(Refusal::OtherSide {
                    to,
                    side: to.set_by(),
                });
            }
            Ok(())
        }
    }
}

/// What a referral's content is missing, as (FHIRPath location, words) — answered 422, each
/// named.
pub fn missing_parts(task: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let reference = |key: &str| {
        task.get(key)
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
    };
    match reference("focus").and_then(|r| fhir::json::split_reference(r)) {
        Some(("ServiceRequest", _)) => {}
        Some((rt, _)) => out.push((
            "Task.focus",
            format!("a referral's focus is the ServiceRequest it carries out, not a {rt}"),
        )),
        None => out.push((
            "Task.focus",
            "a referral needs a focus: the ServiceRequest (ServiceRequest/{id})".to_string(),
        )),
    }
    match reference("for").and_then(|r| fhir::json::split_reference(r)) {
        Some(("Patient", _)) => {}
        _ => out.push((
            "Task.for",
            "a referral needs the patient it is for (Patient/{id})".to_string(),
        )),
    }
    if reference("requester").is_none() {
        out.push((
            "Task.requester",
            "a referral needs its requester: the referring Organization, PractitionerRole or Practitioner".to_string(),
        ));
    }
    match reference("requester").and_then(fhir::json::split_reference) {
        None | Some(("Organization" | "PractitionerRole" | "Practitioner", _)) => {}
        Some((rt, _)) => out.push((
            "Task.requester",
            format!("a referral's requester is the referring Organization, PractitionerRole or Practitioner, not a {rt}"),
        )),
    }
    let status = task
        .get("status")
        .and_then(Value::as_str)
        .and_then(TaskStatus::parse);
    if status != Some(TaskStatus::Draft) && reference("owner").is_none() {
        out.push((
            "Task.owner",
            "a referral that is sent needs its receiver (owner): an Organization or HealthcareService — or use ServiceRequest/$refer to have the care finder propose one".to_string(),
        ));
    }
    if let Some(s) = status {
        if s.needs_reason() && !has_reason(task) {
            out.push((
                "Task.statusReason",
                format!("a referral that is {s} needs a statusReason saying why"),
            ));
        }
        if s == TaskStatus::Completed && consult_note(task).is_none() {
            out.push((
                "Task.output",
                "a referral is completed with the consult note: an output whose valueReference is a DocumentReference".to_string(),
            ));
        }
    }
    out
}

fn has_reason(task: &Value) -> bool {
    task.get("statusReason").is_some_and(|r| {
        r.get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.trim().is_empty())
            || r.get("coding")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty())
    })
}

/// The words of a Task's `statusReason`, when it has one.
pub fn reason_text(task: &Value) -> Option<String> {
    let r = task.get("statusReason")?;
    r.get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            r.pointer("/coding/0/display")
                .or_else(|| r.pointer("/coding/0/code"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
}

/// The consult note a referral's output references (`DocumentReference/{id}`), if any.
pub fn consult_note(task: &Value) -> Option<String> {
    task.get("output")?
        .as_array()?
        .iter()
        .filter_map(|o| {
            o.pointer("/valueReference/reference")
                .and_then(Value::as_str)
        })
        .find(|r| r.starts_with("DocumentReference/"))
        .map(str::to_string)
}

/// A Task's status.
pub fn status_of(task: &Value) -> Option<TaskStatus> {
    task.get("status")
        .and_then(Value::as_str)
        .and_then(TaskStatus::parse)
}

/// Codings that name a referral.
pub const REFERRAL_CODES: &[(&str, &str)] = &[
    (crate::profile::TASK_KIND, "referral"),
    ("http://snomed.info/sct", "3457005"),
    ("http://snomed.info/sct", "306206005"),
    ("http://loinc.org", "57133-1"),
];

/// Whether a Task is a referral — the one test the write rule and the referral register
/// share: every Task is, unless its `code` has codings and none of them names a referral (a
/// financial task, another kind of the alliance's tasks).
pub fn is_referral(task: &Value) -> bool {
    let codings: Vec<&Value> = task
        .pointer("/code/coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("system").is_some() && c.get("code").is_some())
        .collect();
    codings.is_empty()
        || codings.iter().any(|c| {
            REFERRAL_CODES.iter().any(|(system, code)| {
                c.get("system").and_then(Value::as_str) == Some(*system)
                    && c.get("code").and_then(Value::as_str) == Some(*code)
            })
        })
}

/// The coding that marks a Task as a referral (`Task.code`).
pub fn referral_code() -> Value {
    json!({"coding": [{"system": crate::profile::TASK_KIND, "code": "referral", "display": "Referral"}], "text": "Referral"})
}

/// The business status, after HL7 BSeR's `TaskBusinessStatusCS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusinessStatus {
    Created,
    Accepted,
    Declined,
    Scheduled,
    Unattended,
    EventCancelled,
    EventCompleted,
    FulfillmentCancelled,
    FulfillmentCompleted,
}

impl BusinessStatus {
    pub const ALL: [BusinessStatus; 9] = [
        BusinessStatus::Created,
        BusinessStatus::Accepted,
        BusinessStatus::Declined,
        BusinessStatus::Scheduled,
        BusinessStatus::Unattended,
        BusinessStatus::EventCancelled,
        BusinessStatus::EventCompleted,
        BusinessStatus::FulfillmentCancelled,
        BusinessStatus::FulfillmentCompleted,
    ];

    /// The BSeR code.
    pub fn code(self) -> &'static str {
        match self {
            BusinessStatus::Created => "2.0",
            BusinessStatus::Accepted => "3.0",
            BusinessStatus::Declined => "4.0",
            BusinessStatus::Scheduled => "5.1.1",
            BusinessStatus::Unattended => "5.1.2",
            BusinessStatus::EventCancelled => "5.1.3",
            BusinessStatus::EventCompleted => "5.1.4",
            BusinessStatus::FulfillmentCancelled => "6.0",
            BusinessStatus::FulfillmentCompleted => "7.0",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            BusinessStatus::Created => "Service Request Created",
            BusinessStatus::Accepted => "Service Request Accepted",
            BusinessStatus::Declined => "Service Request Declined",
            BusinessStatus::Scheduled => "Service Request Event Scheduled",
            BusinessStatus::Unattended => "Scheduled Service Request Event Unattended",
            BusinessStatus::EventCancelled => "Scheduled Service Request Event Cancelled",
            BusinessStatus::EventCompleted => "Service Request Event Completed",
            BusinessStatus::FulfillmentCancelled => "Service Request Fulfillment Cancelled",
            BusinessStatus::FulfillmentCompleted => "Service Request Fulfillment Completed",
        }
    }

    /// A short name for worklists ("scheduled", "seen", "report sent").
    pub fn label(self) -> &'static str {
        match self {
            BusinessStatus::Created => "created",
            BusinessStatus::Accepted => "accepted",
            BusinessStatus::Declined => "declined",
            BusinessStatus::Scheduled => "scheduled",
            BusinessStatus::Unattended => "no-show",
            BusinessStatus::EventCancelled => "appointment cancelled",
            BusinessStatus::EventCompleted => "seen",
            BusinessStatus::FulfillmentCancelled => "cancelled",
            BusinessStatus::FulfillmentCompleted => "report sent",
        }
    }

    pub fn parse(code: &str) -> Option<BusinessStatus> {
        BusinessStatus::ALL.into_iter().find(|b| b.code() == code)
    }

    /// As `Task.businessStatus`.
    pub fn concept(self) -> Value {
        json!({"coding": [{"system": BSER_BUSINESS_STATUS, "code": self.code(), "display": self.display()}],
               "text": self.label()})
    }

    /// The business status a status move sets, when it sets one.
    pub fn for_status(to: TaskStatus) -> Option<BusinessStatus> {
        match to {
            TaskStatus::Requested => Some(BusinessStatus::Created),
            TaskStatus::Accepted => Some(BusinessStatus::Accepted),
            TaskStatus::Rejected => Some(BusinessStatus::Declined),
            TaskStatus::Cancelled => Some(BusinessStatus::FulfillmentCancelled),
            TaskStatus::Completed => Some(BusinessStatus::FulfillmentCompleted),
            _ => None,
        }
    }

    /// The business status an Appointment `basedOn` the referral's ServiceRequest sets.
    pub fn for_appointment(status: crate::booking::AppointmentStatus) -> Option<BusinessStatus> {
        use crate::booking::AppointmentStatus::*;
        match status {
            Booked => Some(BusinessStatus::Scheduled),
            Noshow => Some(BusinessStatus::Unattended),
            Cancelled => Some(BusinessStatus::EventCancelled),
            Fulfilled => Some(BusinessStatus::EventCompleted),
            _ => None,
        }
    }
}

/// A Task's business status (a BSeR code), when it has one.
pub fn business_status_of(task: &Value) -> Option<BusinessStatus> {
    task.pointer("/businessStatus/coding")?
        .as_array()?
        .iter()
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(BSER_BUSINESS_STATUS))
        .find_map(|c| {
            c.get("code")
                .and_then(Value::as_str)
                .and_then(BusinessStatus::parse)
        })
}

/// What a referral has reached, recorded with when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Milestone {
    /// The receiver accepted it.
    Accepted,
    /// An appointment for it was booked.
    Booked,
    /// The patient was seen (the appointment fulfilled).
    Seen,
    /// The consult note was attached.
    Reported,
    /// It ended (completed, rejected, cancelled, failed, entered in error).
    Closed,
}

impl Milestone {
    pub const ALL: [Milestone; 5] = [
        Milestone::Accepted,
        Milestone::Booked,
        Milestone::Seen,
        Milestone::Reported,
        Milestone::Closed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Milestone::Accepted => "accepted",
            Milestone::Booked => "booked",
            Milestone::Seen => "seen",
            Milestone::Reported => "reported",
            Milestone::Closed => "closed",
        }
    }

    pub fn parse(code: &str) -> Option<Milestone> {
        Milestone::ALL.into_iter().find(|m| m.code() == code)
    }
}

/// When each milestone was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub accepted_ms: Option<i64>,
    pub booked_ms: Option<i64>,
    pub seen_ms: Option<i64>,
    pub reported_ms: Option<i64>,
    pub closed_ms: Option<i64>,
}

impl Progress {
    pub fn get(&self, m: Milestone) -> Option<i64> {
        match m {
            Milestone::Accepted => self.accepted_ms,
            Milestone::Booked => self.booked_ms,
            Milestone::Seen => self.seen_ms,
            Milestone::Reported => self.reported_ms,
            Milestone::Closed => self.closed_ms,
        }
    }

    fn set(&mut self, m: Milestone, at: i64) {
        let slot = match m {
            Milestone::Accepted => &mut self.accepted_ms,
            Milestone::Booked => &mut self.booked_ms,
            Milestone::Seen => &mut self.seen_ms,
            Milestone::Reported => &mut self.reported_ms,
            Milestone::Closed => &mut self.closed_ms,
        };
        if slot.is_none() {
            *slot = Some(at);
        }
    }

    /// The milestones a Task records (`referral-milestone` extensions).
    pub fn of(task: &Value) -> Progress {
        let mut p = Progress::default();
        for (m, at) in sub_extensions(task, REFERRAL_MILESTONE, "milestone", "at") {
            if let Some(m) = Milestone::parse(&m) {
                p.set(m, at);
            }
        }
        p
    }

    /// The progress after a write: what the previous version had, plus what this version
    /// reaches now (a status at or past acceptance, a booked or fulfilled appointment, the
    /// consult note, a final status).
    pub fn after(previous: Progress, task: &Value, now_ms: i64) -> Progress {
        let mut p = previous;
        let status = status_of(task);
        if matches!(
            status,
            Some(
                TaskStatus::Accepted
                    | TaskStatus::InProgress
                    | TaskStatus::OnHold
                    | TaskStatus::Completed
            )
        ) {
            p.set(Milestone::Accepted, now_ms);
        }
        match business_status_of(task) {
            Some(BusinessStatus::Scheduled) => p.set(Milestone::Booked, now_ms),
            Some(BusinessStatus::EventCompleted) => {
                p.set(Milestone::Booked, now_ms);
                p.set(Milestone::Seen, now_ms);
            }
            _ => {}
        }
        if consult_note(task).is_some() {
            p.set(Milestone::Reported, now_ms);
        }
        if status.is_some_and(TaskStatus::is_final) {
            p.set(Milestone::Closed, now_ms);
        }
        p
    }

    /// Writes the milestones into a Task (replacing what it carried).
    pub fn write_into(&self, task: &mut Value) {
        let entries: Vec<(&str, i64)> = Milestone::ALL
            .iter()
            .filter_map(|m| self.get(*m).map(|at| (m.code(), at)))
            .collect();
        set_sub_extensions(task, REFERRAL_MILESTONE, "milestone", "at", &entries);
    }
}

impl Due {
    /// The due dates a Task records (`referral-due` extensions).
    pub fn of(task: &Value) -> Option<Due> {
        let mut due = Due::default();
        let mut any = false;
        for (m, by) in sub_extensions(task, REFERRAL_DUE, "milestone", "by") {
            any = true;
            match Milestone::parse(&m) {
                Some(Milestone::Accepted) => due.accept_ms = by,
                Some(Milestone::Booked) => due.book_ms = by,
                Some(Milestone::Seen) => due.seen_ms = by,
                _ => {}
            }
        }
        any.then_some(due)
    }

    /// Writes the due dates into a Task (replacing what it carried).
    pub fn write_into(&self, task: &mut Value) {
        set_sub_extensions(
            task,
            REFERRAL_DUE,
            "milestone",
            "by",
            &[
                (Milestone::Accepted.code(), self.accept_ms),
                (Milestone::Booked.code(), self.book_ms),
                (Milestone::Seen.code(), self.seen_ms),
            ],
        );
    }
}

/// The (code, instant) pairs of a complex extension `url` with sub-extensions `key` (a code)
/// and `when` (an instant).
fn sub_extensions(task: &Value, url: &str, key: &str, when: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for e in task
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if e.get("url").and_then(Value::as_str) != Some(url) {
            continue;
        }
        let part = |name: &str| {
            e.get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|s| s.get("url").and_then(Value::as_str) == Some(name))
        };
        let code = part(key)
            .and_then(|s| s.get("valueCode"))
            .and_then(Value::as_str);
        let at = part(when)
            .and_then(|s| s.get("valueInstant").or_else(|| s.get("valueDateTime")))
            .and_then(Value::as_str)
            .and_then(fhir::json::instant_ms);
        if let (Some(code), Some(at)) = (code, at) {
            out.push((code.to_string(), at));
        }
    }
    out
}

fn set_sub_extensions(task: &mut Value, url: &str, key: &str, when: &str, entries: &[(&str, i64)]) {
    let Value::Object(o) = task else { return };
    let mut list: Vec<Value> = o
        .get("extension")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|e| e.get("url").and_then(Value::as_str) != Some(url))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for (code, at) in entries {
        list.push(json!({"url": url, "extension": [
            {"url": key, "valueCode": code},
            {"url": when, "valueInstant": fhir::primitive::format_instant(*at)},
        ]}));
    }
    if list.is_empty() {
        o.remove("extension");
    } else {
        o.insert("extension".into(), Value::Array(list));
    }
}
