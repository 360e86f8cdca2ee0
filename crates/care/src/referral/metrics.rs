//! Referral measures (product C3): volume, acceptance and rejection, median business days to
//! each milestone, the share within service level, leakage, and the loop-closure rate after
//! CMS50 (*Closing the Referral Loop: Receipt of Specialist Report*) — pure, over the
//! referrals the server reads for a period.
//!
//! - The period's referrals are those written (`authoredOn`) in `[from, to)`.
//! - Acceptance and rejection rates are shares of the referrals answered (accepted or
//!   rejected); open ones not yet answered count in neither.
//! - Median days are business days from writing to the milestone, over those that reached it.
//! - Within service level: no milestone (accept, book, seen) reached late or missed by now.
//! - Leakage: rejected, cancelled, failed, and expired — still open though the time to be seen
//!   has passed without a visit.
//! - Loop closure (CMS50): the denominator is the first referral of each patient in the period
//!   (in the group); the numerator those of them for which the consult report was received
//!   after the referral was written.

use std::collections::{BTreeMap, HashMap};

use super::service_level::{Calendar, Due, Priority, breached};
use super::{Progress, TaskStatus};

/// One referral as the measures read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRecord {
    pub task_id: String,
    pub patient_id: String,
    /// The referring organisation (may be empty when unknown).
    pub requester_org: String,
    /// The receiving organisation.
    pub owner_org: String,
    /// The service referred to (a HealthcareService id, or the referral's code).
    pub service: String,
    pub priority: Priority,
    pub status: TaskStatus,
    pub authored_ms: i64,
    pub progress: Progress,
    pub due: Due,
}

/// How measures are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By organisation: the receiving one, or the referring one when `sent`.
    Organization {
        sent: bool,
    },
    Service,
    /// By the (US Eastern) month the referral was written, `YYYY-MM`.
    Month,
    /// One group, `all`.
    Nothing,
}

/// The loop-closure measure (CMS50).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoopClosure {
    pub denominator: u64,
    pub numerator: u64,
}

impl LoopClosure {
    pub fn rate(&self) -> Option<f64> {
        ratio(self.numerator, self.denominator)
    }
}

/// The measures of one group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measures {
    pub group: String,
    pub volume: u64,
    pub open: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub expired: u64,
    pub completed: u64,
    pub within_service_level: u64,
    pub median_days_to_accept: Option<f64>,
    pub median_days_to_book: Option<f64>,
    pub median_days_to_seen: Option<f64>,
    pub median_days_to_report: Option<f64>,
    pub loop_closure: LoopClosure,
}

impl Measures {
    pub fn acceptance_rate(&self) -> Option<f64> {
        ratio(self.accepted, self.accepted + self.rejected)
    }

    pub fn rejection_rate(&self) -> Option<f64> {
        ratio(self.rejected, self.accepted + self.rejected)
    }

    pub fn leakage(&self) -> u64 {
        self.rejected + self.cancelled + self.failed + self.expired
    }

    pub fn leakage_rate(&self) -> Option<f64> {
        ratio(self.leakage(), self.volume)
    }

    pub fn within_service_level_rate(&self) -> Option<f64> {
        ratio(self.within_service_level, self.volume)
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(values: &mut [i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2] as f64
    } else {
        (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0
    })
}

/// Whether a referral is still open but its time to be seen has passed without a visit.
pub fn expired(r: &ReferralRecord, now_ms: i64) -> bool {
    !r.status.is_final() && r.progress.seen_ms.is_none() && now_ms > r.due.seen_ms
}

/// Whether a referral met every milestone due by now in time.
pub fn within_service_level(r: &ReferralRecord, now_ms: i64) -> bool {
    let p = &r.progress;
    let closed = p.closed_ms;
    // an answer (acceptance or rejection) meets the acceptance milestone
    let answered = p.accepted_ms.or(match r.status {
        TaskStatus::Rejected => closed,
        _ => None,
    });
    !(breached(answered, r.due.accept_ms, closed, now_ms)
        || breached(p.booked_ms, r.due.book_ms, closed, now_ms)
        || breached(p.seen_ms, r.due.seen_ms, closed, now_ms))
}

/// The measures of the referrals written in `[from_ms, to_ms)`, grouped, as of `now_ms`;
/// groups in key order.
pub fn measure(
    records: &[ReferralRecord],
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    group_by: GroupBy,
    calendar: &Calendar,
) -> Vec<Measures> {
    let key = |r: &ReferralRecord| -> String {
        match group_by {
            GroupBy::Organization { sent: false } => r.owner_org.clone(),
            GroupBy::Organization { sent: true } => r.requester_org.clone(),
            GroupBy::Service => r.service.clone(),
            GroupBy::Month => {
                let (y, m, _) =
                    crate::slots::civil_from_days(crate::slots::local_day(r.authored_ms));
                format!("{y:04}-{m:02}")
            }
            GroupBy::Nothing => "all".to_string(),
        }
    };
    let mut groups: BTreeMap<String, Vec<&ReferralRecord>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.authored_ms >= from_ms && r.authored_ms < to_ms)
    {
        groups.entry(key(r)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(group, rs)| measure_group(group, &rs, now_ms, calendar))
        .collect()
}

fn measure_group(
    group: String,
    rs: &[&ReferralRecord],
    now_ms: i64,
    calendar: &Calendar,
) -> Measures {
    let mut m = Measures {
        group,
        volume: rs.len() as u64,
        ..Default::default()
    };
    let mut to_accept = Vec::new();
    let mut to_book = Vec::new();
    let mut to_seen = Vec::new();
    let mut to_report = Vec::new();
    for r in rs {
        let p = &r.progress;
        match r.status {
            TaskStatus::Rejected => m.rejected += 1,
            TaskStatus::Cancelled => m.cancelled += 1,
            TaskStatus::Failed => m.failed += 1,
            TaskStatus::Completed => m.completed += 1,
            TaskStatus::EnteredInError => {}
            _ => {
                m.open += 1;
                if expired(r, now_ms) {
                    m.expired += 1;
                }
            }
        }
        if p.accepted_ms.is_some() {
            m.accepted += 1;
        }
        if within_service_level(r, now_ms) {
            m.within_service_level += 1;
        }
        let days = |at: Option<i64>, into: &mut Vec<i64>| {
            if let Some(at) = at {
                into.push(calendar.business_days_between(r.authored_ms, at));
            }
        };
        days(p.accepted_ms, &mut to_accept);
        days(p.booked_ms, &mut to_book);
        days(p.seen_ms, &mut to_seen);
        days(p.reported_ms, &mut to_report);
    }
    m.median_days_to_accept = median(&mut to_accept);
    m.median_days_to_book = median(&mut to_book);
    m.median_days_to_seen = median(&mut to_seen);
    m.median_days_to_report = median(&mut to_report);
    // CMS50: each patient's first referral in the period
    let mut first: HashMap<&str, &ReferralRecord> = HashMap::new();
    for r in rs {
        if r.status == TaskStatus::EnteredInError {
            continue;
        }
        first
            .entry(r.patient_id.as_str())
            .and_modify(|f| {
                if (r.authored_ms, &r.task_id) < (f.authored_ms, &f.task_id) {
                    *f = r;
                }
            })
            .or_insert(r);
    }
    m.loop_closure.denominator = first.len() as u64;
    m.loop_closure.numerator = first
        .values()
        .filter(|r| r.progress.reported_ms.is_some_and(|at| at >= r.authored_ms))
        .count() as u64;
    m
}
