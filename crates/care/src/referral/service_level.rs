//! Service levels (domain rules "Referrals"): by priority, in business days from the day a
//! referral was written — routine accepted within 3, booked within 14, seen within 30; urgent
//! 1 / 3 / 7; asap 1 / 2 / 3; stat the same day — configurable, with a holiday list. Days are
//! the alliance's (US Eastern) calendar days; a milestone due "within n business days" is due
//! by the end of the n-th business day after the day of writing (n = 0: the end of that day,
//! or of the next business day when it was written on a weekend or a holiday).

use std::collections::BTreeSet;

use crate::slots::{local_day, local_to_utc};

/// R4 `RequestPriority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    Routine,
    Urgent,
    Asap,
    Stat,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Routine,
        Priority::Urgent,
        Priority::Asap,
        Priority::Stat,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Asap => "asap",
            Priority::Stat => "stat",
        }
    }

    pub fn parse(code: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// Business days allowed to accept, book and see a referral of one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub accept: u32,
    pub book: u32,
    pub seen: u32,
}

/// The service levels of every priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLevels {
    pub routine: Levels,
    pub urgent: Levels,
    pub asap: Levels,
    pub stat: Levels,
}

impl Default for ServiceLevels {
    fn default() -> Self {
        ServiceLevels {
            routine: Levels {
                accept: 3,
                book: 14,
                seen: 30,
            },
            urgent: Levels {
                accept: 1,
                book: 3,
                seen: 7,
            },
            asap: Levels {
                accept: 1,
                book: 2,
                seen: 3,
            },
            stat: Levels {
                accept: 0,
                book: 0,
                seen: 0,
            },
        }
    }
}

impl ServiceLevels {
    pub fn of(&self, p: Priority) -> Levels {
        match p {
            Priority::Routine => self.routine,
            Priority::Urgent => self.urgent,
            Priority::Asap => self.asap,
            Priority::Stat => self.stat,
        }
    }
}

/// The business calendar: Monday to Friday, less the holidays (days since 1970-01-01).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    pub holidays: BTreeSet<i64>,
}

impl Calendar {
    /// A calendar with these holidays (`YYYY-MM-DD`); the error names a bad one.
    pub fn with_holidays<'a>(days: impl IntoIterator<Item = &'a str>) -> Result<Calendar, String> {
        let mut holidays = BTreeSet::new();
        for d in days {
            let day = parse_day(d)
                .ok_or_else(|| format!("'{d}' is not a date (YYYY-MM-DD) in the holiday list"))?;
            holidays.insert(day);
        }
        Ok(Calendar { holidays })
    }

    pub fn is_business_day(&self, day: i64) -> bool {
        let weekday = (day + 3).rem_euclid(7) + 1; // ISO, Monday = 1
        weekday <= 5 && !self.holidays.contains(&day)
    }

    /// The first business day on or after `day`.
    pub fn on_or_after(&self, mut day: i64) -> i64 {
        while !self.is_business_day(day) {
            day += 1;
        }
        day
    }

    /// The `n`-th business day after `day` (n = 0: the first business day on or after it).
    pub fn add_business_days(&self, day: i64, n: u32) -> i64 {
        if n == 0 {
            return self.on_or_after(day);
        }
        let mut d = day;
        for _ in 0..n {
            d = self.on_or_after(d + 1);
        }
        d
    }

    /// Business days from the day of `from_ms` to the day of `to_ms`: the business days after
    /// the first day, up to and including the last (the same day: 0).
    pub fn business_days_between(&self, from_ms: i64, to_ms: i64) -> i64 {
        let (a, b) = (local_day(from_ms), local_day(to_ms));
        if b <= a {
            return 0;
        }
        // weekdays in (a, b], less the holidays among them
        let weekdays_through = |d: i64| {
            // weekdays from Monday 29 December 1969 (day -3) through day d
            let (weeks, rest) = ((d + 3).div_euclid(7), (d + 3).rem_euclid(7));
            weeks * 5 + (rest + 1).min(5)
        };
        let holidays = self
            .holidays
            .range(a + 1..=b)
            .filter(|d| (*d + 3).rem_euclid(7) < 5)
            .count() as i64;
        weekdays_through(b) - weekdays_through(a) - holidays
    }

    /// The last instant (epoch ms) of local day `day`.
    pub fn end_of_day(day: i64) -> i64 {
        local_to_utc(day + 1, 0) - 1
    }
}

fn parse_day(s: &str) -> Option<i64> {
    let mut parts = s.trim().splitn(3, '-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = crate::slots::days_from_civil(y, m, d);
    (crate::slots::civil_from_days(day) == (y, m, d)).then_some(day)
}

/// When a referral's milestones are due (epoch ms, the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    pub accept_ms: i64,
    pub book_ms: i64,
    pub seen_ms: i64,
}

/// The due dates of a referral written at `authored_ms` with this priority.
pub fn due(
    authored_ms: i64,
    priority: Priority,
    levels: &ServiceLevels,
    calendar: &Calendar,
) -> Due {
    let l = levels.of(priority);
    let day = local_day(authored_ms);
    let by = |n: u32| Calendar::end_of_day(calendar.add_business_days(day, n));
    Due {
        accept_ms: by(l.accept),
        book_ms: by(l.book),
        seen_ms: by(l.seen),
    }
}

/// Where an open referral stands against its service level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlaState {
    /// The next milestone is not due before the end of the next business day.
    OnTrack,
    /// The next milestone is due by the end of the next business day (today included).
    AtRisk,
    /// The next milestone's due time has passed.
    Overdue,
    /// Nothing more is due (seen, or the referral ended).
    Closed,
}

impl SlaState {
    pub fn code(self) -> &'static str {
        match self {
            SlaState::OnTrack => "on-track",
            SlaState::AtRisk => "at-risk",
            SlaState::Overdue => "overdue",
            SlaState::Closed => "closed",
        }
    }
}

/// The due time of the next milestone an open referral has not reached (accept, then book,
/// then seen); `None` once seen or ended.
pub fn next_due(progress: &super::Progress, due: &Due) -> Option<i64> {
    if progress.closed_ms.is_some() {
        None
    } else if progress.accepted_ms.is_none() {
        Some(due.accept_ms)
    } else if progress.booked_ms.is_none() {
        Some(due.book_ms)
    } else if progress.seen_ms.is_none() {
        Some(due.seen_ms)
    } else {
        None
    }
}

/// The instant up to which a due time counts as at risk at `now_ms`: the end of the next
/// business day after today.
pub fn at_risk_until(now_ms: i64, calendar: &Calendar) -> i64 {
    let today = local_day(now_ms);
    Calendar::end_of_day(calendar.on_or_after(today + 1))
}

/// Where a referral stands at `now_ms`, from the due time of its next milestone.
pub fn sla_state(next_due_ms: Option<i64>, now_ms: i64, calendar: &Calendar) -> SlaState {
    match next_due_ms {
        None => SlaState::Closed,
        Some(d) if d < now_ms => SlaState::Overdue,
        Some(d) if d <= at_risk_until(now_ms, calendar) => SlaState::AtRisk,
        Some(_) => SlaState::OnTrack,
    }
}

/// Whether a milestone due at `due_ms` was missed as of `now_ms`: reached late, or not reached
/// while the time has passed (and the referral did not end before it was due).
pub fn breached(reached_ms: Option<i64>, due_ms: i64, closed_ms: Option<i64>, now_ms: i64) -> bool {
    match reached_ms {
        Some(at) => at > due_ms,
        None => now_ms > due_ms && closed_ms.is_none_or(|c| c > due_ms),
    }
}
