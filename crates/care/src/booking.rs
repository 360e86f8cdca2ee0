//! Booking rules (product C2, domain rules "Scheduling"): the Appointment status machine, what
//! each Appointment status does to its Slot, and whether a slot can be held or booked now —
//! pure, with the time passed in. The store enforces the outcome atomically; this module
//! decides it.
//!
//! - Slot: `free` → `busy-tentative` (a hold, with an expiry) → `busy`; cancelling frees it; an
//!   expired hold counts as free.
//! - Appointment: `proposed`/`pending` → `booked` → `arrived` → `fulfilled`; `booked` →
//!   `cancelled` | `noshow`; `checked-in` sits between `booked` and `arrived`; `waitlist` may
//!   become an offer; anything still open may be `entered-in-error`.

use std::fmt;

pub use crate::profile::{HELD_BY, HOLD_EXPIRES};

/// R4 `SlotStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotStatus {
    Free,
    BusyTentative,
    Busy,
    BusyUnavailable,
    EnteredInError,
}

impl SlotStatus {
    pub const ALL: [SlotStatus; 5] = [
        SlotStatus::Free,
        SlotStatus::BusyTentative,
        SlotStatus::Busy,
        SlotStatus::BusyUnavailable,
        SlotStatus::EnteredInError,
    ];

    pub fn code(self) -> &'static str {
        match self {
            SlotStatus::Free => "free",
            SlotStatus::BusyTentative => "busy-tentative",
            SlotStatus::Busy => "busy",
            SlotStatus::BusyUnavailable => "busy-unavailable",
            SlotStatus::EnteredInError => "entered-in-error",
        }
    }

    /// The statuses a Slot may move to: a hold becomes a booking or lapses back to free; a
    /// booking is freed by a cancellation; a blocked slot may be reopened; `entered-in-error`
    /// is final.
    pub fn next(self) -> &'static [SlotStatus] {
        use SlotStatus::*;
        match self {
            Free => &[BusyTentative, Busy, BusyUnavailable, EnteredInError],
            BusyTentative => &[Free, Busy, EnteredInError],
            Busy => &[Free, EnteredInError],
            BusyUnavailable => &[Free, EnteredInError],
            EnteredInError => &[],
        }
    }

    pub fn parse(code: &str) -> Option<SlotStatus> {
        SlotStatus::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// R4 `AppointmentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppointmentStatus {
    Proposed,
    Pending,
    Booked,
    Arrived,
    Fulfilled,
    Cancelled,
    Noshow,
    EnteredInError,
    CheckedIn,
    Waitlist,
}

impl AppointmentStatus {
    pub const ALL: [AppointmentStatus; 10] = [
        AppointmentStatus::Proposed,
        AppointmentStatus::Pending,
        AppointmentStatus::Booked,
        AppointmentStatus::Arrived,
        AppointmentStatus::Fulfilled,
        AppointmentStatus::Cancelled,
        AppointmentStatus::Noshow,
        AppointmentStatus::EnteredInError,
        AppointmentStatus::CheckedIn,
        AppointmentStatus::Waitlist,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AppointmentStatus::Proposed => "proposed",
            AppointmentStatus::Pending => "pending",
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Arrived => "arrived",
            AppointmentStatus::Fulfilled => "fulfilled",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::Noshow => "noshow",
            AppointmentStatus::EnteredInError => "entered-in-error",
            AppointmentStatus::CheckedIn => "checked-in",
            AppointmentStatus::Waitlist => "waitlist",
        }
    }

    pub fn parse(code: &str) -> Option<AppointmentStatus> {
        AppointmentStatus::ALL
            .into_iter()
            .find(|s| s.code() == code)
    }

    /// No transition leaves these.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AppointmentStatus::Fulfilled
                | AppointmentStatus::Cancelled
                | AppointmentStatus::Noshow
                | AppointmentStatus::EnteredInError
        )
    }

    /// The statuses this one may move to.
    pub fn next(self) -> &'static [AppointmentStatus] {
        use AppointmentStatus::*;
        match self {
            Proposed => &[Pending, Booked, Cancelled, EnteredInError],
            Pending => &[Booked, Cancelled, EnteredInError],
            Waitlist => &[Proposed, Pending, Booked, Cancelled, EnteredInError],
            Booked => &[CheckedIn, Arrived, Cancelled, Noshow, EnteredInError],
            CheckedIn => &[Arrived, Cancelled, Noshow, EnteredInError],
            Arrived => &[Fulfilled, EnteredInError],
            Fulfilled | Cancelled | Noshow | EnteredInError => &[],
        }
    }

    /// What an appointment in this status makes of its slots.
    pub fn slot_status(self) -> SlotStatus {
        use AppointmentStatus::*;
        match self {
            Pending => SlotStatus::BusyTentative,
            Booked | CheckedIn | Arrived | Fulfilled | Noshow => SlotStatus::Busy,
            // a proposal or a waitlist entry holds nothing; a cancelled or erroneous one
            // gives its slot back
            Proposed | Waitlist | Cancelled | EnteredInError => SlotStatus::Free,
        }
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused status change, naming what is allowed (answered as 409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub from: AppointmentStatus,
    pub to: AppointmentStatus,
    pub allowed: Vec<AppointmentStatus>,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed.is_empty() {
            write!(
                f,
                "an appointment that is {} cannot become {}: {} is final",
                self.from, self.to, self.from
            )
        } else {
            let allowed: Vec<&str> = self.allowed.iter().map(|s| s.code()).collect();
            write!(
                f,
                "an appointment that is {} cannot become {}; allowed: {}",
                self.from,
                self.to,
                allowed.join(", ")
            )
        }
    }
}

/// Checks a status change (staying in the same status is not a change).
pub fn transition(from: AppointmentStatus, to: AppointmentStatus) -> Result<(), Forbidden> {
    if from == to || from.next().contains(&to) {
        Ok(())
    } else {
        Err(Forbidden {
            from,
            to,
            allowed: from.next().to_vec(),
        })
    }
}

/// What a family member (a patient, a proxy) may do to an appointment by writing it (the
/// access policy has already said they act for its patient): ask for an earlier slot (create a
/// `waitlist` request) and cancel one that is proposed, pending, booked or waiting
/// (`content_changed`: whether anything but the status and the reason changes — nothing may).
/// Booking a slot and accepting an offer go through `$hold`/`$book`; a deletion, a visit's
/// outcome and every other change are the care team's.
pub fn family_change(
    from: Option<AppointmentStatus>,
    to: Option<AppointmentStatus>,
    content_changed: bool,
) -> Result<(), String> {
    use AppointmentStatus::*;
    match (from, to) {
        (None, Some(Waitlist)) => Ok(()),
        (None, _) => Err(
            "a patient or family member asks for an appointment with a waitlist request, or books a free slot with $book"
                .into(),
        ),
        (Some(_), None) => Err("an appointment is cancelled, not deleted".into()),
        (Some(f), Some(_)) if content_changed => Err(format!(
            "a patient or family member may only cancel this {} appointment, not change it",
            f.code()
        )),
        (Some(f), Some(t)) if f == t => Ok(()),
        (Some(Proposed | Pending | Booked | Waitlist), Some(Cancelled)) => Ok(()),
        (Some(f), Some(t)) => Err(format!(
            "a patient or family member may cancel an appointment, not set a {} one to {} (that is the care team's)",
            f.code(),
            t.code()
        )),
    }
}

/// Checks a Slot status change (staying is not a change); the error names the allowed ones.
pub fn slot_transition(from: SlotStatus, to: SlotStatus) -> Result<(), String> {
    if from == to || from.next().contains(&to) {
        return Ok(());
    }
    let allowed: Vec<&str> = from.next().iter().map(|s| s.code()).collect();
    Err(if allowed.is_empty() {
        format!(
            "a slot that is {} cannot become {}: {} is final",
            from.code(),
            to.code(),
            from.code()
        )
    } else {
        format!(
            "a slot that is {} cannot become {}; allowed: {}",
            from.code(),
            to.code(),
            allowed.join(", ")
        )
    })
}

/// A slot as the booking rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub status: SlotStatus,
    /// For `busy-tentative`: when the hold lapses (epoch ms).
    pub hold_expires_ms: Option<i64>,
    /// For a held or booked slot: the appointment that holds it.
    pub held_by: Option<String>,
    /// The slot's start (epoch ms).
    pub start_ms: i64,
}

/// Why a slot cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Held by another appointment until then.
    Held { until_ms: i64 },
    /// Booked, blocked or withdrawn.
    Taken(SlotStatus),
    /// It has already begun.
    Past,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Held { .. } => f.write_str("the slot is held for another booking"),
            Unavailable::Taken(s) => write!(f, "the slot is {}", s.code()),
            Unavailable::Past => f.write_str("the slot has already begun"),
        }
    }
}

/// Whether `appointment` may hold or book `slot` at `now_ms`: a free slot, a hold that has
/// lapsed, or the appointment's own hold.
pub fn can_take(
    slot: &SlotState,
    appointment: Option<&str>,
    now_ms: i64,
) -> Result<(), Unavailable> {
    if slot.start_ms <= now_ms {
        return Err(Unavailable::Past);
    }
    match slot.status {
        SlotStatus::Free => Ok(()),
        SlotStatus::BusyTentative => {
            let own = appointment.is_some() && slot.held_by.as_deref() == appointment;
            match slot.hold_expires_ms {
                _ if own => Ok(()),
                Some(until) if until <= now_ms => Ok(()),
                // a hold without an expiry never lapses on its own
                Some(until) => Err(Unavailable::Held { until_ms: until }),
                None => Err(Unavailable::Taken(SlotStatus::BusyTentative)),
            }
        }
        other => Err(Unavailable::Taken(other)),
    }
}

/// Whether a hold has lapsed and its slot should be freed (by the sweeper, or on read).
pub fn hold_lapsed(slot: &SlotState, now_ms: i64) -> bool {
    slot.status == SlotStatus::BusyTentative && slot.hold_expires_ms.is_some_and(|t| t <= now_ms)
}

/// The R5 cross-version extension that carries a video visit's join details on an R4
/// Appointment (`channelType`, `addressUrl`).
pub const VIRTUAL_SERVICE: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService";

/// Whether a video visit's join link opens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinTime {
    Open,
    /// Not yet: it opens at this instant (epoch ms).
    TooEarly {
        opens_ms: i64,
    },
    /// The visit's time is over.
    Over,
}

/// The join window of a visit from `start_ms` to `end_ms`: from `opens_before_ms` before the
/// start until the end.
pub fn join_time(start_ms: i64, end_ms: i64, opens_before_ms: i64, now_ms: i64) -> JoinTime {
    let opens_ms = start_ms - opens_before_ms;
    if now_ms < opens_ms {
        JoinTime::TooEarly { opens_ms }
    } else if now_ms > end_ms {
        JoinTime::Over
    } else {
        JoinTime::Open
    }
}

/// Who may see a video visit's join link: a participant (the caller is one of the
/// appointment's actors — the clinician, the patient, a related person named on it), the
/// patient, or someone the access policy gives that patient's record to in their own right
/// (`own_patients`: the caller's own record and the children they are a proxy for — not a
/// break-the-glass grant, not an organisation's care relationship). Everyone else who can read
/// the appointment sees it without the link.
pub fn may_see_join_link(
    caller: &[String],
    own_patients: &[&str],
    participants: &[String],
) -> bool {
    participants.iter().any(|p| {
        caller.contains(p)
            || p.strip_prefix("Patient/")
                .is_some_and(|id| own_patients.contains(&id))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_ask_and_cancel_and_nothing_else() {
        use AppointmentStatus::*;
        assert!(family_change(None, Some(Waitlist), false).is_ok());
        for to in AppointmentStatus::ALL
            .into_iter()
            .filter(|s| *s != Waitlist)
        {
            assert!(
                family_change(None, Some(to), false).is_err(),
                "create {to:?}"
            );
        }
        for from in AppointmentStatus::ALL {
            for to in AppointmentStatus::ALL {
                let allowed = from == to
                    || to == Cancelled && matches!(from, Proposed | Pending | Booked | Waitlist);
                assert_eq!(
                    family_change(Some(from), Some(to), false).is_ok(),
                    allowed,
                    "{from:?} -> {to:?}"
                );
                assert!(family_change(Some(from), Some(to), true).is_err());
            }
            assert!(family_change(Some(from), None, false).is_err());
        }
    }

    use super::AppointmentStatus::*;
    use super::*;

    /// Every (from, to) pair: allowed exactly as the domain rules say, the rest forbidden with
    /// the allowed ones named.
    #[test]
    fn appointment_transitions_are_the_rules_and_nothing_else() {
        let allowed: &[(AppointmentStatus, &[AppointmentStatus])] = &[
            (Proposed, &[Pending, Booked, Cancelled, EnteredInError]),
            (Pending, &[Booked, Cancelled, EnteredInError]),
            (
                Waitlist,
                &[Proposed, Pending, Booked, Cancelled, EnteredInError],
            ),
            (
                Booked,
                &[CheckedIn, Arrived, Cancelled, Noshow, EnteredInError],
            ),
            (CheckedIn, &[Arrived, Cancelled, Noshow, EnteredInError]),
            (Arrived, &[Fulfilled, EnteredInError]),
            (Fulfilled, &[]),
            (Cancelled, &[]),
            (Noshow, &[]),
            (EnteredInError, &[]),
        ];
        let mut checked = 0;
        for (from, ok) in allowed {
            for to in AppointmentStatus::ALL {
                let result = transition(*from, to);
                if to == *from || ok.contains(&to) {
                    assert_eq!(result, Ok(()), "{from} → {to}");
                } else {
                    let e = result.expect_err(&format!("{from} → {to} must be forbidden"));
                    assert_eq!(e.allowed, ok.to_vec());
                    let text = e.to_string();
                    assert!(
                        text.contains(from.code()) && text.contains(to.code()),
                        "{text}"
                    );
                    if ok.is_empty() {
                        assert!(text.contains("is final"), "{text}");
                    } else {
                        assert!(text.contains("allowed: "), "{text}");
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 100);
        // the forbidden moves the rules name explicitly
        assert!(
            transition(Cancelled, Booked).is_err(),
            "a cancelled visit is not revived"
        );
        assert!(
            transition(Booked, Fulfilled).is_err(),
            "fulfilled only after arrival"
        );
        assert!(transition(Noshow, Arrived).is_err());
        assert!(transition(Pending, Arrived).is_err());
        assert_eq!(
            transition(Booked, Proposed).unwrap_err().to_string(),
            "an appointment that is booked cannot become proposed; allowed: checked-in, arrived, cancelled, noshow, entered-in-error"
        );
    }

    #[test]
    fn each_status_says_what_it_makes_of_its_slot() {
        assert_eq!(Pending.slot_status(), SlotStatus::BusyTentative);
        for s in [Booked, CheckedIn, Arrived, Fulfilled, Noshow] {
            assert_eq!(s.slot_status(), SlotStatus::Busy, "{s}");
        }
        for s in [Proposed, Waitlist, Cancelled, EnteredInError] {
            assert_eq!(s.slot_status(), SlotStatus::Free, "{s}");
        }
        // codes round-trip
        for s in AppointmentStatus::ALL {
            assert_eq!(AppointmentStatus::parse(s.code()), Some(s));
        }
        for s in SlotStatus::ALL {
            assert_eq!(SlotStatus::parse(s.code()), Some(s));
        }
        assert_eq!(AppointmentStatus::parse("Booked"), None);
    }

    const NOW: i64 = 1_800_000_000_000;
    const MIN: i64 = 60_000;

    fn slot(status: SlotStatus, expires: Option<i64>, by: Option<&str>) -> SlotState {
        SlotState {
            status,
            hold_expires_ms: expires,
            held_by: by.map(str::to_string),
            start_ms: NOW + 60 * MIN,
        }
    }

    #[test]
    fn a_slot_can_be_taken_when_free_lapsed_or_held_by_the_same_appointment() {
        use SlotStatus::*;
        let cases: Vec<(SlotState, Option<&str>, Result<(), Unavailable>)> = vec![
            (slot(Free, None, None), Some("a1"), Ok(())),
            (slot(Free, None, None), None, Ok(())),
            // a live hold of another appointment
            (
                slot(BusyTentative, Some(NOW + 5 * MIN), Some("a2")),
                Some("a1"),
                Err(Unavailable::Held {
                    until_ms: NOW + 5 * MIN,
                }),
            ),
            // the same appointment books what it holds
            (
                slot(BusyTentative, Some(NOW + 5 * MIN), Some("a1")),
                Some("a1"),
                Ok(()),
            ),
            // a lapsed hold (at the expiry instant and after) is free
            (
                slot(BusyTentative, Some(NOW), Some("a2")),
                Some("a1"),
                Ok(()),
            ),
            (
                slot(BusyTentative, Some(NOW - MIN), Some("a2")),
                None,
                Ok(()),
            ),
            // a hold without expiry is never taken over
            (
                slot(BusyTentative, None, Some("a2")),
                Some("a1"),
                Err(Unavailable::Taken(BusyTentative)),
            ),
            (
                slot(Busy, None, Some("a2")),
                Some("a1"),
                Err(Unavailable::Taken(Busy)),
            ),
            (
                slot(Busy, None, Some("a1")),
                Some("a1"),
                Err(Unavailable::Taken(Busy)),
            ),
            (
                slot(BusyUnavailable, None, None),
                Some("a1"),
                Err(Unavailable::Taken(BusyUnavailable)),
            ),
            (
                slot(EnteredInError, None, None),
                Some("a1"),
                Err(Unavailable::Taken(EnteredInError)),
            ),
        ];
        for (i, (s, who, expected)) in cases.into_iter().enumerate() {
            assert_eq!(can_take(&s, who, NOW), expected, "case {i}: {s:?}");
        }
        // a slot that has begun cannot be taken, free or not
        let mut begun = slot(Free, None, None);
        begun.start_ms = NOW;
        assert_eq!(can_take(&begun, Some("a1"), NOW), Err(Unavailable::Past));
    }

    #[test]
    fn holds_lapse_at_their_expiry_with_the_injected_time() {
        let held = slot(SlotStatus::BusyTentative, Some(NOW + 10 * MIN), Some("a1"));
        assert!(!hold_lapsed(&held, NOW));
        assert!(!hold_lapsed(&held, NOW + 10 * MIN - 1));
        assert!(hold_lapsed(&held, NOW + 10 * MIN));
        assert!(!hold_lapsed(
            &slot(SlotStatus::Busy, Some(NOW), None),
            NOW + MIN
        ));
        assert!(!hold_lapsed(
            &slot(SlotStatus::BusyTentative, None, Some("a1")),
            NOW + 1000 * MIN
        ));
        assert_eq!(
            Unavailable::Held { until_ms: 0 }.to_string(),
            "the slot is held for another booking"
        );
    }

    /// Every (from, to) pair of Slot statuses.
    #[test]
    fn slot_transitions_are_the_rules_and_nothing_else() {
        use SlotStatus::*;
        let allowed: &[(SlotStatus, &[SlotStatus])] = &[
            (
                Free,
                &[BusyTentative, Busy, BusyUnavailable, EnteredInError],
            ),
            (BusyTentative, &[Free, Busy, EnteredInError]),
            (Busy, &[Free, EnteredInError]),
            (BusyUnavailable, &[Free, EnteredInError]),
            (EnteredInError, &[]),
        ];
        let mut checked = 0;
        for (from, to_ok) in allowed {
            for to in SlotStatus::ALL {
                let result = slot_transition(*from, to);
                if *from == to || to_ok.contains(&to) {
                    assert_eq!(result, Ok(()), "{from:?} -> {to:?}");
                } else {
                    let why = result.expect_err("forbidden");
                    if to_ok.is_empty() {
                        assert!(why.ends_with("is final"), "{why}");
                    } else {
                        for a in *to_ok {
                            assert!(why.contains(a.code()), "{why} names {a:?}");
                        }
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 25);
        assert_eq!(
            slot_transition(Busy, BusyTentative).unwrap_err(),
            "a slot that is busy cannot become busy-tentative; allowed: free, entered-in-error"
        );
    }

    /// The join window with an injected time: closed until 15 minutes before, open to the end.
    #[test]
    fn the_join_link_opens_before_the_start_and_closes_at_the_end() {
        let (start, end, before) = (NOW, NOW + 30 * MIN, 15 * MIN);
        let cases = [
            (
                NOW - 60 * MIN,
                JoinTime::TooEarly {
                    opens_ms: NOW - 15 * MIN,
                },
            ),
            (
                NOW - 15 * MIN - 1,
                JoinTime::TooEarly {
                    opens_ms: NOW - 15 * MIN,
                },
            ),
            (NOW - 15 * MIN, JoinTime::Open),
            (NOW, JoinTime::Open),
            (NOW + 30 * MIN, JoinTime::Open),
            (NOW + 30 * MIN + 1, JoinTime::Over),
        ];
        for (now, expected) in cases {
            assert_eq!(join_time(start, end, before, now), expected, "at {now}");
        }
        assert_eq!(
            join_time(start, end, 0, NOW - 1),
            JoinTime::TooEarly { opens_ms: NOW }
        );
    }

    #[test]
    fn only_participants_the_patient_and_their_proxies_see_the_join_link() {
        let participants: Vec<String> = [
            "Patient/p1",
            "Practitioner/dr",
            "HealthcareService/cardio",
            "RelatedPerson/mom",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let me = |refs: &[&str]| refs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // the clinician, a related person named on it
        assert!(may_see_join_link(
            &me(&["Practitioner/dr"]),
            &[],
            &participants
        ));
        assert!(may_see_join_link(
            &me(&["RelatedPerson/mom"]),
            &[],
            &participants
        ));
        // the patient, and a proxy the policy gives the patient's record to
        assert!(may_see_join_link(
            &me(&["Patient/p1"]),
            &["p1"],
            &participants
        ));
        assert!(may_see_join_link(
            &me(&["RelatedPerson/dad"]),
            &["p1"],
            &participants
        ));
        // a coordinator, another clinician, another child's parent, a backend service
        assert!(!may_see_join_link(
            &me(&["Practitioner/other"]),
            &[],
            &participants
        ));
        assert!(!may_see_join_link(
            &me(&["RelatedPerson/dad"]),
            &["p2"],
            &participants
        ));
        assert!(!may_see_join_link(&[], &[], &participants));
    }
}
