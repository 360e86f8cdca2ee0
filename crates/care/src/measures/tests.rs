//! The measures on a small synthetic history whose answers are worked out by hand here: month
//! boundaries in US Eastern time, business days over a holiday, CMS50's first-referral rule,
//! distances by an independent haversine, no-shows among visits that happened, the third next
//! available slot, birthdays at a band's edge, and small-cell suppression.

use std::collections::HashMap;

use super::*;
use crate::referral::service_level::{self, Calendar, Priority, ServiceLevels};
use crate::referral::{Progress, TaskStatus};

fn day(y: i32, m: u32, d: u32) -> i64 {
    crate::slots::days_from_civil(y, m, d)
}

/// An Eastern wall-clock time.
fn et(y: i32, m: u32, d: u32, h: i64, min: i64) -> i64 {
    crate::slots::local_to_utc(day(y, m, d), h * 60 + min)
}

fn birth(y: i32, m: u32, d: u32) -> i64 {
    day(y, m, d) * 86_400_000
}

fn referral(
    id: &str,
    patient: &str,
    authored: i64,
    status: TaskStatus,
    p: Progress,
    cal: &Calendar,
) -> ReferralRecord {
    ReferralRecord {
        task_id: id.into(),
        patient_id: patient.into(),
        requester_org: "shore".into(),
        owner_org: "cc".into(),
        service: "cardio".into(),
        priority: Priority::Routine,
        status,
        authored_ms: authored,
        progress: p,
        due: service_level::due(authored, Priority::Routine, &ServiceLevels::default(), cal),
    }
}

/// An independent great-circle distance (spherical law of cosines, Earth 3958.8 miles).
fn miles(a: Point, b: Point) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.lat.to_radians(),
        a.lng.to_radians(),
        b.lat.to_radians(),
        b.lng.to_radians(),
    );
    let c = la1.sin() * la2.sin() + la1.cos() * la2.cos() * (lo2 - lo1).cos();
    3958.8 * c.clamp(-1.0, 1.0).acos()
}

fn find<'a>(rows: &'a [Row], month: &str, measure: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.month.as_deref() == Some(month) && r.measure == measure && r.detail.is_none())
        .unwrap_or_else(|| panic!("no {measure} for {month}: {rows:#?}"))
}

struct History {
    calendar: Calendar,
    referrals: Vec<ReferralRecord>,
    visits: Vec<Visit>,
    patients: HashMap<String, PatientFacts>,
    openings: Vec<Openings>,
    site: Point,
}

fn history() -> History {
    // Thanksgiving is a holiday
    let calendar = Calendar::with_holidays(["2026-11-26"]).unwrap();
    let closed = |accepted: i64, booked: i64, seen: i64, reported: i64| Progress {
        accepted_ms: Some(accepted),
        booked_ms: Some(booked),
        seen_ms: Some(seen),
        reported_ms: Some(reported),
        closed_ms: Some(reported),
    };
    let accepted = |at: i64| Progress {
        accepted_ms: Some(at),
        ..Default::default()
    };
    let referrals = vec![
        // A: written Monday 2 November, accepted Wednesday (2 business days), booked the next
        // Monday (5), seen the Monday after (10), reported Wednesday (12): the loop closes
        referral(
            "r1",
            "A",
            et(2026, 11, 2, 10, 0),
            TaskStatus::Completed,
            closed(
                et(2026, 11, 4, 9, 0),
                et(2026, 11, 9, 9, 0),
                et(2026, 11, 16, 9, 0),
                et(2026, 11, 18, 9, 0),
            ),
            &calendar,
        ),
        // A again in the month: not A's first referral, its (missing) report does not count
        referral(
            "r2",
            "A",
            et(2026, 11, 10, 10, 0),
            TaskStatus::Accepted,
            accepted(et(2026, 11, 11, 10, 0)),
            &calendar,
        ),
        // B: written the Wednesday before Thanksgiving, accepted Friday: 1 business day
        referral(
            "r3",
            "B",
            et(2026, 11, 25, 10, 0),
            TaskStatus::Accepted,
            accepted(et(2026, 11, 27, 10, 0)),
            &calendar,
        ),
        // C: Saturday 31 October 23:30 in Hartford is 1 November in UTC — an October referral
        referral(
            "r4",
            "C",
            et(2026, 10, 31, 23, 30),
            TaskStatus::Completed,
            closed(
                et(2026, 11, 2, 9, 0),
                et(2026, 11, 3, 9, 0),
                et(2026, 11, 4, 9, 0),
                et(2026, 11, 5, 9, 0),
            ),
            &calendar,
        ),
        // D: the first referral is not reported, a later one is: CMS50 judges the first
        referral(
            "r5",
            "D",
            et(2026, 11, 3, 10, 0),
            TaskStatus::Requested,
            Progress::default(),
            &calendar,
        ),
        referral(
            "r6",
            "D",
            et(2026, 11, 5, 10, 0),
            TaskStatus::Completed,
            closed(
                et(2026, 11, 6, 9, 0),
                et(2026, 11, 9, 9, 0),
                et(2026, 11, 10, 9, 0),
                et(2026, 11, 12, 9, 0),
            ),
            &calendar,
        ),
        // entered in error: in no measure
        referral(
            "r7",
            "E",
            et(2026, 11, 5, 10, 0),
            TaskStatus::EnteredInError,
            Progress::default(),
            &calendar,
        ),
    ];
    let hartford = crate::geo::zip_centroid("06106").unwrap().0;
    let new_london = crate::geo::zip_centroid("06320").unwrap().0;
    let site = Point {
        lat: 41.7658,
        lng: -72.6734,
    };
    let mut patients = HashMap::new();
    patients.insert(
        "A".to_string(),
        PatientFacts {
            birth_ms: Some(birth(2020, 5, 1)),
            home: Some(hartford),
        },
    );
    patients.insert(
        "B".to_string(),
        PatientFacts {
            birth_ms: Some(birth(2009, 11, 20)),
            home: Some(new_london),
        },
    );
    patients.insert(
        "C".to_string(),
        PatientFacts {
            birth_ms: Some(birth(2008, 11, 10)),
            home: None,
        },
    );
    patients.insert(
        "D".to_string(),
        PatientFacts {
            birth_ms: None,
            home: Some(hartford),
        },
    );
    let visit =
        |id: &str, patient: &str, start: i64, status: AppointmentStatus, video: bool| Visit {
            id: id.into(),
            patient_id: patient.into(),
            start_ms: start,
            status,
            video,
            organization: "cc".into(),
            service: "cardio".into(),
            site: (!video).then_some(site),
        };
    let visits = vec![
        visit(
            "v1",
            "A",
            et(2026, 11, 9, 9, 0),
            AppointmentStatus::Fulfilled,
            false,
        ),
        visit(
            "v2",
            "B",
            et(2026, 11, 12, 9, 0),
            AppointmentStatus::Noshow,
            false,
        ),
        visit(
            "v3",
            "C",
            et(2026, 11, 13, 9, 0),
            AppointmentStatus::Fulfilled,
            true,
        ),
        // in the future: in the video share and distance, not in the no-show rate
        visit(
            "v4",
            "D",
            et(2026, 11, 25, 9, 0),
            AppointmentStatus::Booked,
            false,
        ),
        // cancelled: in none
        visit(
            "v5",
            "A",
            et(2026, 11, 16, 9, 0),
            AppointmentStatus::Cancelled,
            false,
        ),
        // C's visit the day before and on her eighteenth birthday (10 November 2026)
        visit(
            "v6",
            "C",
            et(2026, 11, 9, 15, 0),
            AppointmentStatus::Fulfilled,
            true,
        ),
        visit(
            "v7",
            "C",
            et(2026, 11, 10, 15, 0),
            AppointmentStatus::Fulfilled,
            true,
        ),
        // November's last evening in Hartford is December in UTC: a November visit
        visit(
            "v8",
            "A",
            et(2026, 11, 30, 21, 30),
            AppointmentStatus::Booked,
            true,
        ),
    ];
    let openings = vec![
        Openings {
            organization: "cc".into(),
            service: "cardio".into(),
            starts_ms: vec![
                et(2026, 11, 22, 9, 0),
                et(2026, 11, 20, 14, 0),
                et(2026, 11, 25, 9, 0),
            ],
        },
        // a second schedule of the same service
        Openings {
            organization: "cc".into(),
            service: "cardio".into(),
            starts_ms: vec![et(2026, 11, 23, 9, 0), et(2026, 11, 19, 9, 0)],
        },
        Openings {
            organization: "cc".into(),
            service: "neuro".into(),
            starts_ms: vec![et(2026, 11, 21, 9, 0), et(2026, 11, 24, 9, 0)],
        },
    ];
    History {
        calendar,
        referrals,
        visits,
        patients,
        openings,
        site,
    }
}

fn now() -> i64 {
    et(2026, 11, 20, 10, 0)
}

fn compute_with(h: &History, dims: Dimensions, transition: &[TransitionCell]) -> Vec<Row> {
    compute(
        &Inputs {
            from_ms: et(2026, 10, 1, 0, 0),
            to_ms: et(2026, 12, 1, 0, 0),
            now_ms: now(),
            calendar: &h.calendar,
            referrals: &h.referrals,
            visits: &h.visits,
            patients: &h.patients,
            openings: &h.openings,
            transition,
        },
        dims,
    )
}

#[test]
fn referral_measures_by_month_match_the_hand_computed_answers() {
    let h = history();
    let rows = compute_with(
        &h,
        Dimensions {
            month: true,
            ..Default::default()
        },
        &[],
    );
    // October: C's referral only (Hartford's evening of 31 October)
    assert_eq!(find(&rows, "2026-10", "referral-volume").value, Some(1.0));
    let lc = find(&rows, "2026-10", "loop-closure");
    assert_eq!((lc.numerator, lc.denominator), (Some(1), Some(1)));
    // November: r1, r2, r3, r5, r6 (r7 entered in error)
    assert_eq!(find(&rows, "2026-11", "referral-volume").value, Some(5.0));
    // CMS50: patients A (first r1: reported), B (r3: not), D (first r5: not) → 1 of 3
    let lc = find(&rows, "2026-11", "loop-closure");
    assert_eq!((lc.numerator, lc.denominator), (Some(1), Some(3)));
    assert!((lc.value.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    // to accept: r1 2, r2 1, r3 1 (Thanksgiving skipped), r6 1 → median 1
    let accept = find(&rows, "2026-11", "days-to-accept");
    assert_eq!((accept.value, accept.denominator), (Some(1.0), Some(4)));
    // to book: r1 5 (2 → 9 November), r6 2 (5 → 9 November) → 3.5
    assert_eq!(find(&rows, "2026-11", "days-to-book").value, Some(3.5));
    // to seen: r1 10, r6 3 → 6.5; to report: r1 12, r6 5 → 8.5
    assert_eq!(find(&rows, "2026-11", "days-to-seen").value, Some(6.5));
    assert_eq!(find(&rows, "2026-11", "days-to-report").value, Some(8.5));
}

#[test]
fn visit_measures_match_the_hand_computed_answers() {
    let h = history();
    let rows = compute_with(
        &h,
        Dimensions {
            month: true,
            ..Default::default()
        },
        &[],
    );
    // counted: v1 v2 v3 v4 v6 v7 v8 (v5 cancelled); video: v3 v6 v7 v8
    let video = find(&rows, "2026-11", "video-share");
    assert_eq!((video.numerator, video.denominator), (Some(4), Some(7)));
    // in person with a known home: v1 (A, Hartford), v2 (B, New London), v4 (D, Hartford)
    let hartford = h.patients["A"].home.unwrap();
    let new_london = h.patients["B"].home.unwrap();
    let near = miles(hartford, h.site);
    let far = miles(new_london, h.site);
    assert!(near < 5.0 && far > 35.0, "{near} {far}");
    let d = find(&rows, "2026-11", "distance-miles");
    assert_eq!(d.denominator, Some(3));
    assert!(
        (d.value.unwrap() - near).abs() < 0.05,
        "median {:?} vs {near}",
        d.value
    );
    let w = find(&rows, "2026-11", "within-30-minutes");
    assert_eq!((w.numerator, w.denominator), (Some(2), Some(3)));
    // happened by 20 November: v1 fulfilled, v2 missed, v3 v6 v7 fulfilled → 1 of 5
    let ns = find(&rows, "2026-11", "no-show-rate");
    assert_eq!((ns.numerator, ns.denominator), (Some(1), Some(5)));
}

#[test]
fn the_third_next_available_is_counted_in_eastern_days() {
    let h = history();
    let rows = compute_with(
        &h,
        Dimensions {
            service: true,
            ..Default::default()
        },
        &[],
    );
    let tna = |service: &str| {
        rows.iter()
            .find(|r| r.service.as_deref() == Some(service) && r.measure == "third-next-available")
            .unwrap()
            .value
    };
    // from Friday 20 November 10:00: the 19th is past; 20th 14:00, 22nd, 23rd → the 23rd: 3 days
    assert_eq!(tna("cardio"), Some(3.0));
    // two slots ahead: no third
    assert_eq!(tna("neuro"), None);
    assert_eq!(third_next_available(&[], now()), None);
}

#[test]
fn ages_and_bands_follow_birthdays() {
    // C turns 18 on 10 November 2026
    assert_eq!(age_years(birth(2008, 11, 10), et(2026, 11, 9, 23, 59)), 17);
    assert_eq!(age_years(birth(2008, 11, 10), et(2026, 11, 10, 0, 1)), 18);
    // a 29 February birthday in a common year is reached on 1 March
    assert_eq!(age_years(birth(2008, 2, 29), et(2026, 2, 28, 12, 0)), 17);
    assert_eq!(age_years(birth(2008, 2, 29), et(2026, 3, 1, 12, 0)), 18);
    assert_eq!(age_band(Some(0)), "0");
    assert_eq!(age_band(Some(4)), "1-4");
    assert_eq!(age_band(Some(17)), "12-17");
    assert_eq!(age_band(Some(18)), "18-21");
    assert_eq!(age_band(None), "unknown");
    let h = history();
    let rows = compute_with(
        &h,
        Dimensions {
            age_band: true,
            ..Default::default()
        },
        &[],
    );
    let video = |band: &str| {
        rows.iter()
            .find(|r| r.age_band.as_deref() == Some(band) && r.measure == "video-share")
            .map(|r| (r.numerator, r.denominator))
    };
    // C's visits: the 9th (17) and 13th (18 by then) … v6 on the 9th at 17, v3 and v7 at 18
    assert_eq!(
        video("12-17"),
        Some((Some(1), Some(2))),
        "v6 (C at 17) and v2 (B at 16)"
    );
    assert_eq!(video("18-21"), Some((Some(2), Some(2))));
    // D has no birth date
    assert!(
        rows.iter()
            .any(|r| r.age_band.as_deref() == Some("unknown"))
    );
}

#[test]
fn cells_cut_by_every_dimension_and_transition_rows_sum_elements() {
    let h = history();
    let transition = vec![
        TransitionCell {
            organization: "cc".into(),
            age_band: "12-13".into(),
            elements: vec![("policy", 10, 7), ("readiness", 4, 1)],
        },
        TransitionCell {
            organization: "cc".into(),
            age_band: "14-15".into(),
            elements: vec![("policy", 5, 5)],
        },
    ];
    let all = Dimensions {
        month: true,
        organization: true,
        service: true,
        age_band: true,
    };
    let rows = compute_with(&h, all, &transition);
    assert!(rows.iter().all(|r| r.month.is_some()
        && r.organization.is_some()
        && r.service.is_some()
        && r.age_band.is_some()));
    // the transition registry has no service or month of its own: today's month, service `all`
    let t = rows
        .iter()
        .find(|r| {
            r.measure == "transition-elements-done"
                && r.detail.is_none()
                && r.age_band.as_deref() == Some("12-13")
        })
        .unwrap();
    assert_eq!((t.numerator, t.denominator), (Some(8), Some(14)));
    assert_eq!(t.service.as_deref(), Some("all"));
    let by_org = compute_with(
        &h,
        Dimensions {
            organization: true,
            ..Default::default()
        },
        &transition,
    );
    let policy = by_org
        .iter()
        .find(|r| r.measure == "transition-elements-done" && r.detail.as_deref() == Some("policy"))
        .unwrap();
    assert_eq!((policy.numerator, policy.denominator), (Some(12), Some(15)));
    // every id computed is in the catalogue
    for r in &rows {
        assert!(catalog::definition(r.measure).is_some(), "{}", r.measure);
    }
}

#[test]
fn small_cells_are_suppressed_and_zero_is_not() {
    let h = history();
    let mut rows = compute_with(
        &h,
        Dimensions {
            month: true,
            ..Default::default()
        },
        &[],
    );
    suppress(&mut rows, SMALL_CELL);
    let v = find(&rows, "2026-11", "referral-volume");
    assert!(v.suppressed && v.value.is_none() && v.numerator.is_none());
    let mut big = vec![Row {
        month: None,
        organization: None,
        service: None,
        age_band: None,
        measure: "no-show-rate",
        detail: None,
        value: Some(0.0),
        numerator: Some(0),
        denominator: Some(40),
        n: 40,
        suppressed: false,
    }];
    suppress(&mut big, SMALL_CELL);
    assert!(
        !big[0].suppressed && big[0].value == Some(0.0),
        "a zero numerator is shown"
    );
    big[0].numerator = Some(3);
    suppress(&mut big, SMALL_CELL);
    assert!(big[0].suppressed, "3 of 40 could identify a child");
}
