//! Transition to adult care: Got Transition's Six Core Elements (3.0), as the alliance runs them
//! for every young person from the 12th birthday to the end of the 26th year (domain-rules.md,
//! "Transition to adult care"). Pure: what is due, overdue or done for one young person, from
//! the birth date, what has been recorded and the time passed in.
//!
//! The elements, with the ages they fall due at (all configurable, [`TransitionConfig`]):
//!
//! | element | due | overdue |
//! |---|---|---|
//! | transition policy shared | 12th birthday | 14th birthday |
//! | readiness assessment | 14th birthday, then a year after the last one, until the transfer | 90 days after due |
//! | self-care education given | 14th birthday | 16th birthday |
//! | plan of care shared | 16th birthday | 17th birthday |
//! | medical summary and emergency plan | 16th birthday | 17th birthday |
//! | age-18 consent talk (privacy, release of information) | 17th birthday | 18th birthday (it must come before) |
//! | decision-making discussed | 17th birthday | 18th birthday |
//! | transfer package sent (with the referral) | 18th birthday | 22nd birthday |
//! | first adult visit | when the package is sent | 6 months after it |
//! | transfer completion confirmed | 3 months after the first adult visit | 6 months after it |
//! | feedback | 3 months after the first adult visit | 6 months after it |
//!
//! An element done is done (the readiness assessment is due again a year later, until the
//! package is sent). Nothing is due before it falls due; after the transfer completes, nothing
//! but the feedback is due; from the 27th birthday the young person leaves the registry.

use crate::access::age::{BirthDate, age_on, day_ms};

pub mod metrics;
pub mod readiness;

const DAY: i64 = 86_400_000;

/// One of the tracked items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Element {
    Policy,
    Readiness,
    Education,
    PlanOfCare,
    MedicalSummary,
    ConsentTalk,
    DecisionMaking,
    TransferPackage,
    FirstAdultVisit,
    Completion,
    Feedback,
}

impl Element {
    pub const ALL: [Element; 11] = [
        Element::Policy,
        Element::Readiness,
        Element::Education,
        Element::PlanOfCare,
        Element::MedicalSummary,
        Element::ConsentTalk,
        Element::DecisionMaking,
        Element::TransferPackage,
        Element::FirstAdultVisit,
        Element::Completion,
        Element::Feedback,
    ];

    /// The element's code (in the alliance's code system, and in URLs).
    pub fn code(self) -> &'static str {
        match self {
            Element::Policy => "policy",
            Element::Readiness => "readiness",
            Element::Education => "education",
            Element::PlanOfCare => "plan-of-care",
            Element::MedicalSummary => "medical-summary",
            Element::ConsentTalk => "consent-talk",
            Element::DecisionMaking => "decision-making",
            Element::TransferPackage => "transfer-package",
            Element::FirstAdultVisit => "first-adult-visit",
            Element::Completion => "completion",
            Element::Feedback => "feedback",
        }
    }

    pub fn parse(code: &str) -> Option<Element> {
        Element::ALL.into_iter().find(|e| e.code() == code)
    }

    /// A short name, for tables.
    pub fn short(self) -> &'static str {
        match self {
            Element::Policy => "policy",
            Element::Readiness => "assessment",
            Element::Education => "education",
            Element::PlanOfCare => "plan of care",
            Element::MedicalSummary => "summary",
            Element::ConsentTalk => "changes at 18",
            Element::DecisionMaking => "decision-making",
            Element::TransferPackage => "transfer package",
            Element::FirstAdultVisit => "first adult visit",
            Element::Completion => "completion",
            Element::Feedback => "feedback",
        }
    }

    /// What it is, for a person.
    pub fn words(self) -> &'static str {
        match self {
            Element::Policy => "transition policy shared with the young person and family",
            Element::Readiness => "readiness and self-care assessment",
            Element::Education => "self-care education given",
            Element::PlanOfCare => "plan of care with goals shared",
            Element::MedicalSummary => "medical summary and emergency care plan shared",
            Element::ConsentTalk => "the changes at 18: privacy, consent, release of information",
            Element::DecisionMaking => "supported decision-making discussed",
            Element::TransferPackage => "transfer package sent with the referral to adult care",
            Element::FirstAdultVisit => "first visit with the adult clinician",
            Element::Completion => {
                "transfer completion confirmed with the young adult and the adult practice"
            }
            Element::Feedback => "feedback on the transition",
        }
    }
}

/// The ages and intervals an alliance may change.
#[derive(Debug, Clone)]
pub struct TransitionConfig {
    /// The registry's first birthday (12) and the one it ends on (27: tracked through 26).
    pub enters_at: i32,
    pub leaves_at: i32,
    pub policy_due: i32,
    pub policy_late: i32,
    pub readiness_from: i32,
    pub readiness_every_days: i64,
    pub readiness_grace_days: i64,
    pub education_late: i32,
    pub planning_due: i32,
    pub planning_late: i32,
    pub legal_due: i32,
    pub legal_late: i32,
    pub transfer_from: i32,
    pub transfer_by: i32,
    pub first_visit_within_days: i64,
    pub completion_after_days: i64,
    pub completion_within_days: i64,
}

impl Default for TransitionConfig {
    fn default() -> Self {
        TransitionConfig {
            enters_at: 12,
            leaves_at: 27,
            policy_due: 12,
            policy_late: 14,
            readiness_from: 14,
            readiness_every_days: 365,
            readiness_grace_days: 90,
            education_late: 16,
            planning_due: 16,
            planning_late: 17,
            legal_due: 17,
            legal_late: 18,
            transfer_from: 18,
            transfer_by: 22,
            first_visit_within_days: 183,
            completion_after_days: 91,
            completion_within_days: 183,
        }
    }
}

/// What has been recorded for a young person: when each element was done (the readiness
/// assessments, every one).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub done: Vec<(Element, i64)>,
}

impl History {
    /// The latest time an element was done.
    pub fn last(&self, e: Element) -> Option<i64> {
        self.done
            .iter()
            .filter(|(x, _)| *x == e)
            .map(|(_, t)| *t)
            .max()
    }

    /// The first time an element was done.
    pub fn first(&self, e: Element) -> Option<i64> {
        self.done
            .iter()
            .filter(|(x, _)| *x == e)
            .map(|(_, t)| *t)
            .min()
    }
}

/// Where one element stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementState {
    /// Not due yet (`due_ms`: when it will be, when that is known).
    NotYet {
        due_ms: Option<i64>,
    },
    /// Due since `due_ms`, overdue from `late_ms`.
    Due {
        due_ms: i64,
        late_ms: i64,
    },
    Overdue {
        due_ms: i64,
        late_ms: i64,
    },
    Done {
        on_ms: i64,
    },
    /// Past the point where it matters (a readiness assessment after the transfer).
    NotNeeded,
}

impl ElementState {
    pub fn code(&self) -> &'static str {
        match self {
            ElementState::NotYet { .. } => "not-yet",
            ElementState::Due { .. } => "due",
            ElementState::Overdue { .. } => "overdue",
            ElementState::Done { .. } => "done",
            ElementState::NotNeeded => "not-needed",
        }
    }

    /// When the element falls (or fell) due, when known.
    pub fn due_ms(&self) -> Option<i64> {
        match self {
            ElementState::NotYet { due_ms } => *due_ms,
            ElementState::Due { due_ms, .. } | ElementState::Overdue { due_ms, .. } => {
                Some(*due_ms)
            }
            _ => None,
        }
    }
}

/// Midnight UTC of the day a person born on `birth` turns `years` — the day [`age_on`] first
/// counts that age (29 February births turn a year older on 1 March in common years; partial
/// birth dates count from their earliest day).
pub fn birthday_ms(birth: BirthDate, years: i32) -> i64 {
    let (y, m, d) = (
        birth.year + years,
        birth.month.unwrap_or(1),
        birth.day.unwrap_or(1),
    );
    let leap = |y: i32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m, d) == (2, 29) && !leap(y) {
        day_ms(y, 3, 1)
    } else {
        day_ms(y, m, d)
    }
}

/// Whether the young person is in the registry on `now_ms` (from the 12th birthday to the
/// 27th).
pub fn in_registry(birth: BirthDate, now_ms: i64, c: &TransitionConfig) -> bool {
    let age = age_on(birth, now_ms);
    age >= c.enters_at && age < c.leaves_at
}

/// Where every element stands for a young person born on `birth`, on `now_ms`.
pub fn status(
    birth: BirthDate,
    history: &History,
    now_ms: i64,
    c: &TransitionConfig,
) -> Vec<(Element, ElementState)> {
    let at = |years: i32| birthday_ms(birth, years);
    let window = |due: i64, late: i64| {
        if now_ms < due {
            ElementState::NotYet { due_ms: Some(due) }
        } else if now_ms < late {
            ElementState::Due {
                due_ms: due,
                late_ms: late,
            }
        } else {
            ElementState::Overdue {
                due_ms: due,
                late_ms: late,
            }
        }
    };
    let by_age = |e: Element, due: i32, late: i32| match history.last(e) {
        Some(t) => ElementState::Done { on_ms: t },
        None => window(at(due), at(late)),
    };
    let package = history.first(Element::TransferPackage);
    let first_visit = history.first(Element::FirstAdultVisit);
    let completed = history.first(Element::Completion);
    let after = |e: Element, from: Option<i64>, due_after: i64, late_after: i64| match (
        history.last(e),
        from,
    ) {
        (Some(t), _) => ElementState::Done { on_ms: t },
        (None, Some(f)) => window(f + due_after * DAY, f + late_after * DAY),
        (None, None) => ElementState::NotYet { due_ms: None },
    };
    let readiness = if package.is_some() || completed.is_some() {
        match history.last(Element::Readiness) {
            Some(t) => ElementState::Done { on_ms: t },
            None => ElementState::NotNeeded,
        }
    } else {
        let due = match history.last(Element::Readiness) {
            Some(last) => last + c.readiness_every_days * DAY,
            None => at(c.readiness_from),
        };
        match history.last(Element::Readiness) {
            Some(last) if now_ms < due => ElementState::Done { on_ms: last },
            _ => window(due, due + c.readiness_grace_days * DAY),
        }
    };
    let mut out = vec![
        (
            Element::Policy,
            by_age(Element::Policy, c.policy_due, c.policy_late),
        ),
        (Element::Readiness, readiness),
        (
            Element::Education,
            by_age(Element::Education, c.readiness_from, c.education_late),
        ),
        (
            Element::PlanOfCare,
            by_age(Element::PlanOfCare, c.planning_due, c.planning_late),
        ),
        (
            Element::MedicalSummary,
            by_age(Element::MedicalSummary, c.planning_due, c.planning_late),
        ),
        (
            Element::ConsentTalk,
            by_age(Element::ConsentTalk, c.legal_due, c.legal_late),
        ),
        (
            Element::DecisionMaking,
            by_age(Element::DecisionMaking, c.legal_due, c.legal_late),
        ),
        (
            Element::TransferPackage,
            by_age(Element::TransferPackage, c.transfer_from, c.transfer_by),
        ),
        (
            Element::FirstAdultVisit,
            after(
                Element::FirstAdultVisit,
                package,
                0,
                c.first_visit_within_days,
            ),
        ),
        (
            Element::Completion,
            after(
                Element::Completion,
                first_visit,
                c.completion_after_days,
                c.completion_within_days,
            ),
        ),
        (
            Element::Feedback,
            after(
                Element::Feedback,
                first_visit,
                c.completion_after_days,
                c.completion_within_days,
            ),
        ),
    ];
    // after the transfer is complete, what was left undone before it is no longer due
    if completed.is_some() {
        for (e, s) in out.iter_mut() {
            if *e != Element::Feedback
                && matches!(
                    s,
                    ElementState::Due { .. }
                        | ElementState::Overdue { .. }
                        | ElementState::NotYet { .. }
                )
            {
                *s = ElementState::NotNeeded;
            }
        }
    }
    out
}

/// What a transfer package needs that is not yet recorded (domain-rules.md: the final
/// assessment, the plan of care and the medical summary with the emergency plan), in this
/// order; empty when it may be sent.
pub fn missing_for_transfer(history: &History) -> Vec<Element> {
    [
        Element::Readiness,
        Element::PlanOfCare,
        Element::MedicalSummary,
    ]
    .into_iter()
    .filter(|e| history.last(*e).is_none())
    .collect()
}

/// The element a young person should have next, and whether anything is overdue: the first
/// overdue element, else the first due one.
pub fn next_due(states: &[(Element, ElementState)]) -> Option<(Element, ElementState)> {
    states
        .iter()
        .find(|(_, s)| matches!(s, ElementState::Overdue { .. }))
        .or_else(|| {
            states
                .iter()
                .find(|(_, s)| matches!(s, ElementState::Due { .. }))
        })
        .copied()
}

#[cfg(test)]
mod tests;

/// How an element Task the scheduler keeps is marked (its business status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Due,
    Overdue,
}

impl Mark {
    pub fn code(self) -> &'static str {
        match self {
            Mark::Due => "due",
            Mark::Overdue => "overdue",
        }
    }

    pub fn parse(code: &str) -> Option<Mark> {
        match code {
            "due" => Some(Mark::Due),
            "overdue" => Some(Mark::Overdue),
            _ => None,
        }
    }
}

/// An open element Task (one the scheduler wrote, not yet completed or cancelled), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTask {
    pub id: String,
    pub element: Element,
    pub mark: Option<Mark>,
    pub due_ms: Option<i64>,
    pub late_ms: Option<i64>,
}

/// Why an open element Task is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The element was recorded on another Task.
    Recorded,
    /// It no longer matters (the transfer is complete, or the assessment after the package).
    NotNeeded,
    /// It is not due (a corrected birth date).
    NotDue,
    /// Another open Task of the same element was kept.
    Duplicate,
    /// The young person left the registry (the 27th birthday).
    LeftRegistry,
}

impl Close {
    pub fn words(self) -> &'static str {
        match self {
            Close::Recorded => "recorded on another task",
            Close::NotNeeded => "no longer needed",
            Close::NotDue => "not due (the birth date or the history changed)",
            Close::Duplicate => "another open task of this element is kept",
            Close::LeftRegistry => "the young person left the transition registry (27)",
        }
    }
}

/// What the scheduler does to one young person's element Tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    Create {
        element: Element,
        mark: Mark,
        due_ms: i64,
        late_ms: i64,
    },
    /// The open Task is marked anew (due → overdue, or new dates).
    Mark {
        id: String,
        element: Element,
        mark: Mark,
        due_ms: i64,
        late_ms: i64,
    },
    Close {
        id: String,
        element: Element,
        why: Close,
    },
}

/// The changes that bring a young person's open element Tasks in line with where each element
/// stands: one open Task per element due or overdue, marked so, with its dates; every other
/// open Task closed. Nothing when they already are (the scheduler's idempotence).
pub fn reconcile(states: &[(Element, ElementState)], open: &[OpenTask]) -> Vec<TaskChange> {
    let mut out = Vec::new();
    for (e, s) in states {
        let mut mine = open.iter().filter(|t| t.element == *e);
        let first = mine.next();
        for other in mine {
            out.push(TaskChange::Close {
                id: other.id.clone(),
                element: *e,
                why: Close::Duplicate,
            });
        }
        let (mark, due_ms, late_ms) = match s {
            ElementState::Due { due_ms, late_ms } => (Mark::Due, *due_ms, *late_ms),
            ElementState::Overdue { due_ms, late_ms } => (Mark::Overdue, *due_ms, *late_ms),
            other => {
                if let Some(t) = first {
                    out.push(TaskChange::Close {
                        id: t.id.clone(),
                        element: *e,
                        why: match other {
                            ElementState::Done { .. } => Close::Recorded,
                            ElementState::NotNeeded => Close::NotNeeded,
                            _ => Close::NotDue,
                        },
                    });
                }
                continue;
            }
        };
        match first {
            None => out.push(TaskChange::Create {
                element: *e,
                mark,
                due_ms,
                late_ms,
            }),
            Some(t) => {
                if t.mark != Some(mark) || t.due_ms != Some(due_ms) || t.late_ms != Some(late_ms) {
                    out.push(TaskChange::Mark {
                        id: t.id.clone(),
                        element: *e,
                        mark,
                        due_ms,
                        late_ms,
                    });
                }
            }
        }
    }
    out
}

/// Who may see and act for a young person from the 18th birthday, in words, for the registry
/// and the transfer package: the proxy rules of the access policy end on that birthday unless
/// the young adult grants access by Consent (`granted_to`) or a guardianship is on file.
pub fn consent_words(age: i32, granted_to: &[String], guardianship: bool) -> String {
    let granted = (!granted_to.is_empty()).then(|| {
        format!(
            "access granted by the young person's Consent to {}",
            granted_to.join(", ")
        )
    });
    match (age >= 18, guardianship, granted) {
        (_, true, g) => format!(
            "a legal guardianship or power of attorney is on file: the guardian keeps acting for the young adult{}",
            g.map(|g| format!("; {g}")).unwrap_or_default()
        ),
        (true, false, Some(g)) => format!("from 18 the young adult decides: {g}"),
        (true, false, None) => {
            "from 18 only the young adult sees and decides about their record: no one has been granted access".into()
        }
        (false, false, Some(g)) => format!(
            "a parent's access ends on the 18th birthday; {g} already in place for after it"
        ),
        (false, false, None) => {
            "a parent's access ends on the 18th birthday unless the young person grants it by Consent or a guardianship is recorded".into()
        }
    }
}
