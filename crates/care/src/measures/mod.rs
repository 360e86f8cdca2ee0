//! The alliance's access and quality measures (`catalog::MEASURES`), computed purely from
//! extracts — referrals, visits, free slots, the transition registry's groups — and cut by any
//! of month (US Eastern), organisation, service and age band. The answer is long: one [`Row`]
//! per cell and measure, with its numerator, denominator and count, so that a table, a chart
//! and a CSV read the same rows. Small cells can be suppressed ([`suppress`]) for reporting
//! outside the alliance, as public reporting does.

pub mod catalog;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use crate::booking::AppointmentStatus;
use crate::geo::Point;
use crate::referral::metrics::{GroupBy, ReferralRecord};
use crate::referral::service_level::Calendar;

const DAY: i64 = 86_400_000;

/// The age bands measures are cut by (years at the referral or the visit).
pub const AGE_BANDS: &[(i32, i32, &str)] = &[
    (0, 0, "0"),
    (1, 4, "1-4"),
    (5, 11, "5-11"),
    (12, 17, "12-17"),
    (18, 21, "18-21"),
    (22, 26, "22-26"),
    (27, 200, "27+"),
];

/// The band of an age; `unknown` without a birth date.
pub fn age_band(age: Option<i32>) -> &'static str {
    match age {
        None => "unknown",
        Some(a) => AGE_BANDS
            .iter()
            .find(|(lo, hi, _)| a >= *lo && a <= *hi)
            .map(|(_, _, name)| *name)
            .unwrap_or("unknown"),
    }
}

/// Whole years from a birth date (its first instant, epoch ms) to a moment, as birthdays count
/// them (in US Eastern days; a 29 February birthday is 1 March in a common year).
pub fn age_years(birth_ms: i64, at_ms: i64) -> i32 {
    let (by, bm, bd) = crate::slots::civil_from_days(birth_ms.div_euclid(DAY));
    let (y, m, d) = crate::slots::civil_from_days(crate::slots::local_day(at_ms));
    let mut age = y - by;
    if (m, d) < (bm, bd) {
        age -= 1;
    }
    age
}

/// The month (`YYYY-MM`, US Eastern) of a moment.
pub fn month_of(ms: i64) -> String {
    let (y, m, _) = crate::slots::civil_from_days(crate::slots::local_day(ms));
    format!("{y:04}-{m:02}")
}

/// What the measures know of a patient.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientFacts {
    /// The birth date's first instant (epoch ms).
    pub birth_ms: Option<i64>,
    /// The centroid of the home ZIP code.
    pub home: Option<Point>,
}

/// One appointment as the visit measures see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub id: String,
    pub patient_id: String,
    pub start_ms: i64,
    pub status: AppointmentStatus,
    pub video: bool,
    /// The organisation providing the service (empty when unknown).
    pub organization: String,
    /// The HealthcareService (or the service's text; empty when unknown).
    pub service: String,
    /// The site's position, for an in-person visit.
    pub site: Option<Point>,
}

/// A service's next free slots (from now), for the third-next-available measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Openings {
    pub organization: String,
    pub service: String,
    /// Slot starts from now (any order).
    pub starts_ms: Vec<i64>,
}

/// One organisation × age band of the transition registry: per element, those it applies to
/// and those done (as `transition::metrics::Group` counts them).
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionCell {
    pub organization: String,
    pub age_band: String,
    pub elements: Vec<(&'static str, usize, usize)>,
}

/// Which dimensions cut the measures (none: one cell, the whole period).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dimensions {
    pub month: bool,
    pub organization: bool,
    pub service: bool,
    pub age_band: bool,
}

/// One cell's value of one measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub month: Option<String>,
    pub organization: Option<String>,
    pub service: Option<String>,
    pub age_band: Option<String>,
    pub measure: &'static str,
    /// A detail of the measure (the transition element), when it has one.
    pub detail: Option<String>,
    pub value: Option<f64>,
    pub numerator: Option<u64>,
    pub denominator: Option<u64>,
    /// How many records the value stands on (what suppression looks at).
    pub n: u64,
    pub suppressed: bool,
}

/// What the measures are computed from.
pub struct Inputs<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    pub now_ms: i64,
    pub calendar: &'a Calendar,
    pub referrals: &'a [ReferralRecord],
    pub visits: &'a [Visit],
    pub patients: &'a HashMap<String, PatientFacts>,
    pub openings: &'a [Openings],
    pub transition: &'a [TransitionCell],
}

type Key = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn key(dims: Dimensions, month: &str, org: &str, service: &str, band: &str) -> Key {
    let some = |on: bool, v: &str| {
        on.then(|| {
            if v.is_empty() {
                "unknown".to_string()
            } else {
                v.to_string()
            }
        })
    };
    (
        some(dims.month, month),
        some(dims.organization, org),
        some(dims.service, service),
        some(dims.age_band, band),
    )
}

fn row(
    k: &Key,
    measure: &'static str,
    value: Option<f64>,
    num: Option<u64>,
    den: Option<u64>,
    n: u64,
) -> Row {
    Row {
        month: k.0.clone(),
        organization: k.1.clone(),
        service: k.2.clone(),
        age_band: k.3.clone(),
        measure,
        detail: None,
        value,
        numerator: num,
        denominator: den,
        n,
        suppressed: false,
    }
}

fn rate(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn band_at(patients: &HashMap<String, PatientFacts>, patient: &str, at_ms: i64) -> &'static str {
    age_band(
        patients
            .get(patient)
            .and_then(|p| p.birth_ms)
            .map(|b| age_years(b, at_ms)),
    )
}

/// The visits a visit measure counts: booked or held (arrived, checked in, fulfilled, missed).
fn counted(s: AppointmentStatus) -> bool {
    matches!(
        s,
        AppointmentStatus::Booked
            | AppointmentStatus::Arrived
            | AppointmentStatus::CheckedIn
            | AppointmentStatus::Fulfilled
            | AppointmentStatus::Noshow
    )
}

/// Every measure for every cell that has data, cells in key order, measures in catalogue order.
pub fn compute(inputs: &Inputs, dims: Dimensions) -> Vec<Row> {
    let mut cells: BTreeMap<Key, Vec<Row>> = BTreeMap::new();
    referral_rows(inputs, dims, &mut cells);
    visit_rows(inputs, dims, &mut cells);
    availability_rows(inputs, dims, &mut cells);
    transition_rows(inputs, dims, &mut cells);
    let order = |m: &str| {
        catalog::MEASURES
            .iter()
            .position(|d| d.id == m)
            .unwrap_or(usize::MAX)
    };
    cells
        .into_values()
        .flat_map(|mut rows| {
            rows.sort_by(|a, b| (order(a.measure), &a.detail).cmp(&(order(b.measure), &b.detail)));
            rows
        })
        .collect()
}

fn referral_rows(inputs: &Inputs, dims: Dimensions, cells: &mut BTreeMap<Key, Vec<Row>>) {
    let mut groups: BTreeMap<Key, Vec<ReferralRecord>> = BTreeMap::new();
    for r in inputs
        .referrals
        .iter()
        .filter(|r| r.authored_ms >= inputs.from_ms && r.authored_ms < inputs.to_ms)
        .filter(|r| r.status != crate::referral::TaskStatus::EnteredInError)
    {
        let band = band_at(inputs.patients, &r.patient_id, r.authored_ms);
        let k = key(
            dims,
            &month_of(r.authored_ms),
            &r.owner_org,
            &r.service,
            band,
        );
        groups.entry(k).or_default().push(r.clone());
    }
    for (k, records) in groups {
        let Some(m) = crate::referral::metrics::measure(
            &records,
            inputs.from_ms,
            inputs.to_ms,
            inputs.now_ms,
            GroupBy::Nothing,
            inputs.calendar,
        )
        .into_iter()
        .next() else {
            continue;
        };
        let n = m.volume;
        let count = |pick: &dyn Fn(&ReferralRecord) -> bool| {
            records.iter().filter(|r| pick(r)).count() as u64
        };
        let rows = cells.entry(k.clone()).or_default();
        rows.push(row(&k, "referral-volume", Some(n as f64), Some(n), None, n));
        let lc = m.loop_closure;
        rows.push(row(
            &k,
            "loop-closure",
            lc.rate(),
            Some(lc.numerator),
            Some(lc.denominator),
            lc.denominator,
        ));
        let medians = [
            (
                "days-to-accept",
                m.median_days_to_accept,
                count(&|r| r.progress.accepted_ms.is_some()),
            ),
            (
                "days-to-book",
                m.median_days_to_book,
                count(&|r| r.progress.booked_ms.is_some()),
            ),
            (
                "days-to-seen",
                m.median_days_to_seen,
                count(&|r| r.progress.seen_ms.is_some()),
            ),
            (
                "days-to-report",
                m.median_days_to_report,
                count(&|r| r.progress.reported_ms.is_some()),
            ),
        ];
        for (id, value, with) in medians {
            rows.push(row(&k, id, value, None, Some(with), with));
        }
        rows.push(row(
            &k,
            "within-service-level",
            m.within_service_level_rate(),
            Some(m.within_service_level),
            Some(n),
            n,
        ));
    }
}

#[derive(Default)]
struct VisitCell {
    counted: u64,
    video: u64,
    miles: Vec<f64>,
    within_30: u64,
    attended_or_missed: u64,
    missed: u64,
}

fn visit_rows(inputs: &Inputs, dims: Dimensions, cells: &mut BTreeMap<Key, Vec<Row>>) {
    let mut groups: BTreeMap<Key, VisitCell> = BTreeMap::new();
    for v in inputs
        .visits
        .iter()
        .filter(|v| v.start_ms >= inputs.from_ms && v.start_ms < inputs.to_ms && counted(v.status))
    {
        let band = band_at(inputs.patients, &v.patient_id, v.start_ms);
        let k = key(
            dims,
            &month_of(v.start_ms),
            &v.organization,
            &v.service,
            band,
        );
        let c = groups.entry(k).or_default();
        c.counted += 1;
        if v.video {
            c.video += 1;
        } else if let (Some(site), Some(home)) = (
            v.site,
            inputs.patients.get(&v.patient_id).and_then(|p| p.home),
        ) {
            let miles = crate::geo::haversine_miles(home, site);
            c.miles.push(miles);
            if crate::geo::drive_minutes_estimate(miles) <= 30 {
                c.within_30 += 1;
            }
        }
        if v.start_ms < inputs.now_ms && v.status != AppointmentStatus::Booked {
            c.attended_or_missed += 1;
            if v.status == AppointmentStatus::Noshow {
                c.missed += 1;
            }
        }
    }
    for (k, c) in groups {
        let rows = cells.entry(k.clone()).or_default();
        let with_distance = c.miles.len() as u64;
        rows.push(row(
            &k,
            "distance-miles",
            crate::transition::metrics::median(c.miles),
            None,
            Some(with_distance),
            with_distance,
        ));
        rows.push(row(
            &k,
            "within-30-minutes",
            rate(c.within_30, with_distance),
            Some(c.within_30),
            Some(with_distance),
            with_distance,
        ));
        rows.push(row(
            &k,
            "video-share",
            rate(c.video, c.counted),
            Some(c.video),
            Some(c.counted),
            c.counted,
        ));
        rows.push(row(
            &k,
            "no-show-rate",
            rate(c.missed, c.attended_or_missed),
            Some(c.missed),
            Some(c.attended_or_missed),
            c.attended_or_missed,
        ));
    }
}

/// The third next available appointment: calendar days (US Eastern) from today to the day of
/// the third free slot from now; `None` with fewer than three.
pub fn third_next_available(starts_ms: &[i64], now_ms: i64) -> Option<i64> {
    let mut ahead: Vec<i64> = starts_ms.iter().copied().filter(|s| *s >= now_ms).collect();
    if ahead.len() < 3 {
        return None;
    }
    ahead.select_nth_unstable(2);
    Some(crate::slots::local_day(ahead[2]) - crate::slots::local_day(now_ms))
}

fn availability_rows(inputs: &Inputs, dims: Dimensions, cells: &mut BTreeMap<Key, Vec<Row>>) {
    // a figure of today: the current month, every age band
    let month = month_of(inputs.now_ms);
    let mut groups: BTreeMap<Key, Vec<i64>> = BTreeMap::new();
    for o in inputs.openings {
        let k = key(dims, &month, &o.organization, &o.service, "all");
        groups.entry(k).or_default().extend(&o.starts_ms);
    }
    for (k, starts) in groups {
        let tna = third_next_available(&starts, inputs.now_ms);
        let ahead = starts.iter().filter(|s| **s >= inputs.now_ms).count() as u64;
        cells.entry(k.clone()).or_default().push(row(
            &k,
            "third-next-available",
            tna.map(|d| d as f64),
            None,
            None,
            ahead,
        ));
    }
}

fn transition_rows(inputs: &Inputs, dims: Dimensions, cells: &mut BTreeMap<Key, Vec<Row>>) {
    let month = month_of(inputs.now_ms);
    let mut groups: BTreeMap<Key, BTreeMap<&'static str, (u64, u64)>> = BTreeMap::new();
    for t in inputs.transition {
        let k = key(dims, &month, &t.organization, "", &t.age_band);
        // the transition registry has no service: that dimension reads `all`
        let k = (k.0, k.1, dims.service.then(|| "all".to_string()), k.3);
        let g = groups.entry(k).or_default();
        for (element, applies, done) in &t.elements {
            let e = g.entry(element).or_default();
            e.0 += *applies as u64;
            e.1 += *done as u64;
        }
    }
    for (k, elements) in groups {
        let rows = cells.entry(k.clone()).or_default();
        let (applies, done) = elements
            .values()
            .fold((0, 0), |(a, d), (x, y)| (a + x, d + y));
        rows.push(row(
            &k,
            "transition-elements-done",
            rate(done, applies),
            Some(done),
            Some(applies),
            applies,
        ));
        for (element, (applies, done)) in elements {
            let mut r = row(
                &k,
                "transition-elements-done",
                rate(done, applies),
                Some(done),
                Some(applies),
                applies,
            );
            r.detail = Some(element.to_string());
            rows.push(r);
        }
    }
}

/// Hides every cell value that stands on 1 to `below - 1` records (a count, numerator or
/// denominator that small could identify a child), as public reporting does; zero stays.
pub fn suppress(rows: &mut [Row], below: u64) {
    for r in rows.iter_mut() {
        let small = |v: Option<u64>| v.is_some_and(|x| x > 0 && x < below);
        if (r.n > 0 && r.n < below) || small(r.numerator) || small(r.denominator) {
            r.value = None;
            r.numerator = None;
            r.denominator = None;
            r.suppressed = true;
        }
    }
}

/// The cells under which public reporting suppresses a value.
pub const SMALL_CELL: u64 = 11;
