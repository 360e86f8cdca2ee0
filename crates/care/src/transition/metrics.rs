//! The transition measures: per organisation and age band, the share of young people with each
//! element done (of those it applies to: done, due or overdue), the overdue counts; per
//! organisation and adult recipient, the transfers — sent, completed (first adult visit), within
//! six months, and the median age at transfer. Pure, from where each young person stands.

use super::{Element, ElementState, TransitionConfig};

const DAY: i64 = 86_400_000;

/// The age bands the measures are cut by.
pub const BANDS: &[(i32, i32)] = &[(12, 13), (14, 15), (16, 17), (18, 21), (22, 26)];

pub fn band(age: i32) -> String {
    BANDS
        .iter()
        .find(|(lo, hi)| age >= *lo && age <= *hi)
        .map(|(lo, hi)| format!("{lo}-{hi}"))
        .unwrap_or_else(|| "other".into())
}

/// One young person as the measures see them.
#[derive(Debug, Clone)]
pub struct Young {
    pub organization: String,
    pub age: i32,
    pub states: Vec<(Element, ElementState)>,
    /// The transfer: when the package was sent, the age then (years, fractional), to whom,
    /// and when the first adult visit was.
    pub package_ms: Option<i64>,
    pub age_at_package: Option<f64>,
    pub recipient: Option<String>,
    /// Who sent the package (the referring organisation or clinician; by default the managing
    /// organisation).
    pub sender: Option<String>,
    pub first_visit_ms: Option<i64>,
}

impl Young {
    fn sent_by(&self) -> &str {
        self.sender.as_deref().unwrap_or(&self.organization)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ElementCounts {
    /// Done, due or overdue: those it applies to now.
    pub applies: usize,
    pub done: usize,
    pub overdue: usize,
}

impl ElementCounts {
    pub fn share_done(&self) -> Option<f64> {
        (self.applies > 0).then(|| self.done as f64 / self.applies as f64)
    }
}

/// One organisation × age band (`all` for every band; organisation `all` for the alliance).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub organization: String,
    pub band: String,
    pub young_people: usize,
    /// Young people with at least one element overdue.
    pub with_overdue: usize,
    pub elements: Vec<(Element, ElementCounts)>,
}

/// One sender (organisation or clinician) × adult recipient's transfers.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfers {
    pub organization: String,
    pub recipient: String,
    pub sent: usize,
    /// The first adult visit took place.
    pub completed: usize,
    /// Sent at least six months ago, or completed: those the six months can be judged for.
    pub judged: usize,
    pub completed_within_6_months: usize,
    pub median_age_at_transfer: Option<f64>,
}

impl Transfers {
    pub fn within_6_months_rate(&self) -> Option<f64> {
        (self.judged > 0).then(|| self.completed_within_6_months as f64 / self.judged as f64)
    }
}

/// The median of some values (the mean of the middle two for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn group(organization: &str, band: &str, people: &[&Young]) -> Group {
    let elements = Element::ALL
        .iter()
        .map(|e| {
            let mut c = ElementCounts::default();
            for y in people {
                match y.states.iter().find(|(x, _)| x == e).map(|(_, s)| s) {
                    Some(ElementState::Done { .. }) => {
                        c.applies += 1;
                        c.done += 1;
                    }
                    Some(ElementState::Due { .. }) => c.applies += 1,
                    Some(ElementState::Overdue { .. }) => {
                        c.applies += 1;
                        c.overdue += 1;
                    }
                    _ => {}
                }
            }
            (*e, c)
        })
        .collect();
    Group {
        organization: organization.to_string(),
        band: band.to_string(),
        young_people: people.len(),
        with_overdue: people
            .iter()
            .filter(|y| {
                y.states
                    .iter()
                    .any(|(_, s)| matches!(s, ElementState::Overdue { .. }))
            })
            .count(),
        elements,
    }
}

/// The measures as of `now_ms`: the groups (each organisation by band and overall, then the
/// alliance), and the transfers by organisation and recipient (then the alliance's).
pub fn measure(
    people: &[Young],
    now_ms: i64,
    c: &TransitionConfig,
) -> (Vec<Group>, Vec<Transfers>) {
    let mut orgs: Vec<&str> = people.iter().map(|y| y.organization.as_str()).collect();
    orgs.sort();
    orgs.dedup();
    let mut groups = Vec::new();
    for org in orgs.iter().copied().chain(std::iter::once("all")) {
        let mine: Vec<&Young> = people
            .iter()
            .filter(|y| org == "all" || y.organization == org)
            .collect();
        for (lo, hi) in BANDS {
            let b: Vec<&Young> = mine
                .iter()
                .copied()
                .filter(|y| y.age >= *lo && y.age <= *hi)
                .collect();
            if !b.is_empty() {
                groups.push(group(org, &format!("{lo}-{hi}"), &b));
            }
        }
        if !mine.is_empty() {
            groups.push(group(org, "all", &mine));
        }
    }
    let mut keys: Vec<(String, String)> = people
        .iter()
        .filter(|y| y.package_ms.is_some())
        .map(|y| {
            (
                y.sent_by().to_string(),
                y.recipient.clone().unwrap_or_else(|| "unknown".into()),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys.push(("all".into(), "all".into()));
    let within = c.first_visit_within_days * DAY;
    let transfers = keys
        .into_iter()
        .filter_map(|(org, to)| {
            let sent: Vec<&Young> = people
                .iter()
                .filter(|y| y.package_ms.is_some())
                .filter(|y| {
                    org == "all"
                        || (y.sent_by() == org && y.recipient.as_deref().unwrap_or("unknown") == to)
                })
                .collect();
            if sent.is_empty() {
                return None;
            }
            let mut t = Transfers {
                organization: org,
                recipient: to,
                sent: sent.len(),
                completed: 0,
                judged: 0,
                completed_within_6_months: 0,
                median_age_at_transfer: median(
                    sent.iter().filter_map(|y| y.age_at_package).collect(),
                ),
            };
            for y in sent {
                let package = y.package_ms.unwrap_or(now_ms);
                match y.first_visit_ms {
                    Some(v) => {
                        t.completed += 1;
                        t.judged += 1;
                        if v - package <= within {
                            t.completed_within_6_months += 1;
                        }
                    }
                    None if now_ms - package > within => t.judged += 1,
                    None => {}
                }
            }
            Some(t)
        })
        .collect();
    (groups, transfers)
}
