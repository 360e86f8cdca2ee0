//! The waitlist (product C2): a patient asks for an earlier slot of a kind — a service, in
//! person or by video, within a window — as an Appointment in status `waitlist`. When a slot
//! of that kind frees, it is offered to the first waitlisted patient it fits, oldest request
//! first, as a time-limited hold; if the offer lapses, the next one gets it. Pure: the server
//! reads the entries and the slot, this module picks.

use crate::findcare::Modality;

/// A waitlist request, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The waitlisted Appointment's id.
    pub id: String,
    /// When the patient asked (epoch ms); the earliest asks first.
    pub asked_ms: i64,
    /// The services it is for (HealthcareService ids); any of them fits.
    pub services: Vec<String>,
    /// In person or video only; `None` takes either.
    pub modality: Option<Modality>,
    /// The window the visit must start in (`requestedPeriod`), open where `None`.
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
    /// The US state the patient lives in (for the licence a video visit needs).
    pub patient_state: Option<String>,
}

/// A slot that has just freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreedSlot {
    /// The services of its schedule.
    pub services: Vec<String>,
    pub modality: Modality,
    pub start_ms: i64,
    /// For a video slot: the states its clinicians are licensed in.
    pub licensed_states: Vec<String>,
}

/// Why an entry does not fit a slot (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    OtherService,
    OtherModality,
    OutsideWindow,
    Begun,
    NotLicensed,
}

/// Whether the slot fits the request at `now_ms`.
pub fn fits(entry: &Entry, slot: &FreedSlot, now_ms: i64) -> Result<(), Misfit> {
    if !entry.services.iter().any(|s| slot.services.contains(s)) {
        return Err(Misfit::OtherService);
    }
    if entry.modality.is_some_and(|m| m != slot.modality) {
        return Err(Misfit::OtherModality);
    }
    if slot.start_ms <= now_ms {
        return Err(Misfit::Begun);
    }
    if entry.not_before_ms.is_some_and(|t| slot.start_ms < t)
        || entry.not_after_ms.is_some_and(|t| slot.start_ms > t)
    {
        return Err(Misfit::OutsideWindow);
    }
    if slot.modality == Modality::Video
        && let Some(state) = &entry.patient_state
        && !slot.licensed_states.contains(state)
    {
        return Err(Misfit::NotLicensed);
    }
    Ok(())
}

/// The entry a freed slot is offered to: the earliest request it fits (ties by id).
pub fn first_fitting<'a>(entries: &'a [Entry], slot: &FreedSlot, now_ms: i64) -> Option<&'a Entry> {
    entries
        .iter()
        .filter(|e| fits(e, slot, now_ms).is_ok())
        .min_by(|a, b| (a.asked_ms, &a.id).cmp(&(b.asked_ms, &b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn entry(id: &str, asked: i64) -> Entry {
        Entry {
            id: id.into(),
            asked_ms: asked,
            services: vec!["cardio".into()],
            modality: None,
            not_before_ms: None,
            not_after_ms: None,
            patient_state: Some("CT".into()),
        }
    }

    fn slot(modality: Modality, start: i64) -> FreedSlot {
        FreedSlot {
            services: vec!["cardio".into()],
            modality,
            start_ms: start,
            licensed_states: vec!["CT".into(), "NY".into()],
        }
    }

    #[test]
    fn a_slot_fits_the_same_kind_within_the_window() {
        let s = slot(Modality::Video, NOW + 24 * HOUR);
        let cases: Vec<(Entry, Result<(), Misfit>)> = vec![
            (entry("a", 0), Ok(())),
            (
                Entry {
                    services: vec!["neuro".into()],
                    ..entry("b", 0)
                },
                Err(Misfit::OtherService),
            ),
            (
                Entry {
                    modality: Some(Modality::InPerson),
                    ..entry("c", 0)
                },
                Err(Misfit::OtherModality),
            ),
            (
                Entry {
                    not_after_ms: Some(NOW + 23 * HOUR),
                    ..entry("d", 0)
                },
                Err(Misfit::OutsideWindow),
            ),
            (
                Entry {
                    not_before_ms: Some(NOW + 25 * HOUR),
                    ..entry("e", 0)
                },
                Err(Misfit::OutsideWindow),
            ),
            (
                Entry {
                    not_before_ms: Some(NOW),
                    not_after_ms: Some(NOW + 24 * HOUR),
                    ..entry("f", 0)
                },
                Ok(()),
            ),
            (
                Entry {
                    patient_state: Some("MA".into()),
                    ..entry("g", 0)
                },
                Err(Misfit::NotLicensed),
            ),
        ];
        for (e, expected) in cases {
            assert_eq!(fits(&e, &s, NOW), expected, "{}", e.id);
        }
        // an in-person slot needs no licence where the patient lives
        let ma = Entry {
            patient_state: Some("MA".into()),
            ..entry("h", 0)
        };
        assert_eq!(
            fits(&ma, &slot(Modality::InPerson, NOW + HOUR), NOW),
            Ok(())
        );
        // a slot that has begun is offered to nobody
        assert_eq!(
            fits(&entry("i", 0), &slot(Modality::Video, NOW), NOW),
            Err(Misfit::Begun)
        );
    }

    #[test]
    fn the_earliest_fitting_request_is_offered_first() {
        let s = slot(Modality::InPerson, NOW + 48 * HOUR);
        let entries = vec![
            entry("late", NOW - HOUR),
            Entry {
                modality: Some(Modality::Video),
                ..entry("first-but-video-only", NOW - 10 * HOUR)
            },
            entry("early", NOW - 5 * HOUR),
            entry("early-tie-b", NOW - 5 * HOUR),
        ];
        assert_eq!(
            first_fitting(&entries, &s, NOW).map(|e| e.id.as_str()),
            Some("early")
        );
        // once it has been offered (and leaves the list), the next in line
        let rest: Vec<Entry> = entries.into_iter().filter(|e| e.id != "early").collect();
        assert_eq!(
            first_fitting(&rest, &s, NOW).map(|e| e.id.as_str()),
            Some("early-tie-b")
        );
        assert_eq!(first_fitting(&[], &s, NOW), None);
    }
}
