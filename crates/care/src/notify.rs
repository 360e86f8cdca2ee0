//! Notifications (product C2): which messages an appointment change sends, when reminders are
//! due, the key that makes each message unique per recipient, how failed deliveries are
//! retried, and the words of each message — pure; the server writes them to its outbox in the
//! transaction of the change and a worker delivers them.

use crate::booking::AppointmentStatus;

/// What a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The appointment is booked.
    Booked,
    /// A reminder, this many hours before the start.
    Reminder { hours: i64 },
    /// A booked appointment was cancelled.
    Cancelled,
    /// A freed slot is held for a waitlisted patient until the offer lapses.
    WaitlistOffer,
}

impl Kind {
    /// The code (Communication.category, outbox `kind`).
    pub fn code(self) -> String {
        match self {
            Kind::Booked => "appointment-booked".into(),
            Kind::Reminder { hours } => format!("appointment-reminder-{hours}h"),
            Kind::Cancelled => "appointment-cancelled".into(),
            Kind::WaitlistOffer => "waitlist-offer".into(),
        }
    }

    /// The event a message is for: the same event is sent at most once to each recipient.
    /// Booking and reminders name the start, so a rescheduled visit is a new event.
    pub fn event_key(self, appointment_id: &str, start_ms: i64, slot_id: &str) -> String {
        match self {
            Kind::WaitlistOffer => format!("{}:{appointment_id}:{slot_id}", self.code()),
            _ => format!("{}:{appointment_id}:{start_ms}", self.code()),
        }
    }
}

/// How long before the start reminders go (configurable; default 72 h and 24 h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderConfig {
    pub hours_before: Vec<i64>,
}

impl Default for ReminderConfig {
    fn default() -> Self {
        ReminderConfig {
            hours_before: vec![72, 24],
        }
    }
}

/// The messages a status change sends, each with when it is due: a booking sends a
/// confirmation now and the reminders whose time has not passed; cancelling a booked
/// appointment sends a cancellation; a waitlist offer (`waitlist` → `pending`) sends the offer.
pub fn messages_for(
    from: Option<AppointmentStatus>,
    to: AppointmentStatus,
    start_ms: i64,
    reminders: &ReminderConfig,
    now_ms: i64,
) -> Vec<(Kind, i64)> {
    use AppointmentStatus::*;
    let mut out = Vec::new();
    match (from, to) {
        (f, Booked) if f != Some(Booked) => {
            out.push((Kind::Booked, now_ms));
            for &hours in &reminders.hours_before {
                let due = start_ms - hours * 3_600_000;
                if due > now_ms {
                    out.push((Kind::Reminder { hours }, due));
                }
            }
        }
        (Some(Booked | CheckedIn), Cancelled) => out.push((Kind::Cancelled, now_ms)),
        (Some(Waitlist), Pending) => out.push((Kind::WaitlistOffer, now_ms)),
        _ => {}
    }
    out
}

/// When to try a failed delivery again: 30 s after the first failure, doubling up to an hour;
/// `None` after [`MAX_ATTEMPTS`] (the message is then marked failed, not dropped silently).
pub fn retry_after_ms(attempts: u32) -> Option<i64> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let exp = attempts.saturating_sub(1).min(20);
    Some((30_000i64 << exp).min(3_600_000))
}

/// Deliveries tried before a message is marked failed.
pub const MAX_ATTEMPTS: u32 = 12;

/// How long a Subscription's notification is retried by default before the Subscription is
/// put in `error`: a day (a receiver down overnight still gets everything).
pub const REST_HOOK_WINDOW_MS: i64 = 24 * 3_600_000;

/// When to try a failed rest-hook notification again: 30 s after the first failure, doubling
/// up to an hour, for as long as the next try falls within `window_ms` of the notification's
/// creation (`created_ms`); `None` once it would not — the notification is then failed and its
/// Subscription put in `error`, never dropped silently.
pub fn rest_hook_retry_after_ms(
    attempts: u32,
    created_ms: i64,
    now_ms: i64,
    window_ms: i64,
) -> Option<i64> {
    let exp = attempts.saturating_sub(1).min(20);
    let wait = (30_000i64 << exp).min(3_600_000);
    (now_ms + wait <= created_ms + window_ms).then_some(wait)
}

/// What a message says about a visit.
#[derive(Debug, Clone)]
pub struct Visit<'a> {
    /// The service's name ("Pediatric Cardiology").
    pub service: &'a str,
    /// Where: a site's name, or `None` for a video visit.
    pub site: Option<&'a str>,
    pub start_ms: i64,
    /// For a waitlist offer: until when it is held.
    pub offer_until_ms: Option<i64>,
    /// For a video visit: how many minutes before the start its link opens.
    pub join_opens_minutes: i64,
}

/// The words of a message. They name the service, the time (US Eastern) and the place, and
/// nothing clinical: no reason, no diagnosis — they may go to a parent.
pub fn text(kind: Kind, visit: &Visit) -> String {
    let when = eastern(visit.start_ms);
    let place = match visit.site {
        Some(site) => format!("at {site}"),
        None => "by video".to_string(),
    };
    let link = if visit.site.is_none() {
        format!(
            " The video link opens {} minutes before the start.",
            visit.join_opens_minutes
        )
    } else {
        String::new()
    };
    match kind {
        Kind::Booked => format!(
            "Appointment booked: {} on {when}, {place}.{link}",
            visit.service
        ),
        Kind::Reminder { hours } => format!(
            "Reminder: {} on {when} (in about {}), {place}.{link}",
            visit.service,
            if hours % 24 == 0 {
                format!("{} day{}", hours / 24, if hours == 24 { "" } else { "s" })
            } else {
                format!("{hours} hours")
            }
        ),
        Kind::Cancelled => format!(
            "Appointment cancelled: {} on {when}, {place}.",
            visit.service
        ),
        Kind::WaitlistOffer => format!(
            "An earlier appointment is available: {} on {when}, {place}. It is held for you until {}; book it to accept.",
            visit.service,
            visit
                .offer_until_ms
                .map(eastern)
                .unwrap_or_else(|| "shortly".into())
        ),
    }
}

/// "Mon 30 Nov 2026, 1:00 PM ET".
pub fn eastern(utc_ms: i64) -> String {
    let local = utc_ms + crate::slots::eastern_offset_ms(utc_ms);
    let day = local.div_euclid(86_400_000);
    let (y, m, d) = crate::slots::civil_from_days(day);
    let minute = local.rem_euclid(86_400_000) / 60_000;
    let (h, min) = (minute / 60, minute % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][day.rem_euclid(7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    let (h12, ampm) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!("{weekday} {d} {month} {y}, {h12}:{min:02} {ampm} ET")
}

#[cfg(test)]
mod tests {
    use super::AppointmentStatus::*;
    use super::*;

    const NOW: i64 = 1_795_000_000_000;
    const H: i64 = 3_600_000;

    #[test]
    fn a_booking_confirms_now_and_reminds_at_72_and_24_hours_when_still_ahead() {
        let r = ReminderConfig::default();
        assert_eq!(
            messages_for(Some(Pending), Booked, NOW + 100 * H, &r, NOW),
            vec![
                (Kind::Booked, NOW),
                (Kind::Reminder { hours: 72 }, NOW + 28 * H),
                (Kind::Reminder { hours: 24 }, NOW + 76 * H),
            ]
        );
        // booked two days ahead: the 72-hour reminder's time has passed
        assert_eq!(
            messages_for(None, Booked, NOW + 48 * H, &r, NOW),
            vec![
                (Kind::Booked, NOW),
                (Kind::Reminder { hours: 24 }, NOW + 24 * H)
            ]
        );
        // staying booked (an edit) sends nothing
        assert!(messages_for(Some(Booked), Booked, NOW + 100 * H, &r, NOW).is_empty());
        assert_eq!(
            messages_for(Some(Booked), Cancelled, NOW + 100 * H, &r, NOW),
            vec![(Kind::Cancelled, NOW)]
        );
        // a hold that lapses or a proposal that is dropped was never promised
        assert!(messages_for(Some(Pending), Cancelled, NOW + H, &r, NOW).is_empty());
        assert_eq!(
            messages_for(Some(Waitlist), Pending, NOW + H, &r, NOW),
            vec![(Kind::WaitlistOffer, NOW)]
        );
        assert!(messages_for(Some(Booked), Arrived, NOW, &r, NOW).is_empty());
    }

    #[test]
    fn event_keys_make_a_rescheduled_visit_a_new_event() {
        assert_eq!(
            Kind::Booked.event_key("a1", 5, "s1"),
            "appointment-booked:a1:5"
        );
        assert_ne!(
            Kind::Reminder { hours: 24 }.event_key("a1", 5, "s1"),
            Kind::Reminder { hours: 24 }.event_key("a1", 6, "s1")
        );
        assert_eq!(
            Kind::WaitlistOffer.event_key("a1", 5, "s9"),
            "waitlist-offer:a1:s9"
        );
    }

    #[test]
    fn rest_hooks_are_retried_for_the_whole_window_then_given_up() {
        let day = REST_HOOK_WINDOW_MS;
        // a receiver that never answers: tried until the day is over, then given up
        let (mut now, mut attempts, mut waits) = (0i64, 1u32, Vec::new());
        while let Some(wait) = rest_hook_retry_after_ms(attempts, 0, now, day) {
            waits.push(wait);
            now += wait;
            attempts += 1;
        }
        assert_eq!(&waits[..4], &[30_000, 60_000, 120_000, 240_000]);
        assert!(waits.iter().all(|w| *w <= 3_600_000));
        assert!(
            now <= day && now > day - 3_600_000,
            "retried to the end of the day: {now}"
        );
        assert!(
            attempts > MAX_ATTEMPTS,
            "more tries than a message gets: {attempts}"
        );
        // a shorter window (configured) gives up sooner
        assert_eq!(rest_hook_retry_after_ms(1, 0, 0, 10_000), None);
        assert_eq!(rest_hook_retry_after_ms(1, 0, 0, 30_000), Some(30_000));
    }

    #[test]
    fn retries_back_off_to_an_hour_then_stop() {
        let waits: Vec<Option<i64>> = (1..=13).map(retry_after_ms).collect();
        assert_eq!(waits[0], Some(30_000));
        assert_eq!(waits[1], Some(60_000));
        assert_eq!(waits[2], Some(120_000));
        assert_eq!(waits[7], Some(3_600_000));
        assert_eq!(waits[10], Some(3_600_000));
        assert_eq!(waits[11], None);
        assert_eq!(waits[12], None);
    }

    #[test]
    fn messages_name_service_time_and_place_in_eastern_time() {
        // 2026-11-30T18:00:00Z is 1:00 PM EST
        let start = crate::slots::days_from_civil(2026, 11, 30) * 86_400_000 + 18 * H;
        let visit = Visit {
            service: "Pediatric Cardiology",
            site: Some("Connecticut Children's Waterford"),
            start_ms: start,
            offer_until_ms: None,
            join_opens_minutes: 15,
        };
        assert_eq!(
            text(Kind::Booked, &visit),
            "Appointment booked: Pediatric Cardiology on Mon 30 Nov 2026, 1:00 PM ET, at Connecticut Children's Waterford."
        );
        assert_eq!(
            text(Kind::Reminder { hours: 72 }, &visit),
            "Reminder: Pediatric Cardiology on Mon 30 Nov 2026, 1:00 PM ET (in about 3 days), at Connecticut Children's Waterford."
        );
        assert!(text(Kind::Reminder { hours: 24 }, &visit).contains("(in about 1 day)"));
        // summer time: 2026-07-01T14:30:00Z is 10:30 AM EDT
        let summer = crate::slots::days_from_civil(2026, 7, 1) * 86_400_000 + 14 * H + 30 * 60_000;
        assert_eq!(eastern(summer), "Wed 1 Jul 2026, 10:30 AM ET");
        let video = Visit {
            site: None,
            offer_until_ms: Some(start - H),
            ..visit
        };
        let offer = text(Kind::WaitlistOffer, &video);
        assert!(offer.contains("by video"), "{offer}");
        assert!(
            offer.contains("until Mon 30 Nov 2026, 12:00 PM ET"),
            "{offer}"
        );
    }
}
