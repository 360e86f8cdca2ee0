//! The close-to-home care finder's rules: which options a patient is eligible for, how they
//! rank, and the words that explain both. Pure: the caller gathers the facts (the patient, the
//! candidate services with their sites, clinicians' licences and first free slots) and the
//! clock's `now`.
//!
//! The rank is a cost (lower is better), documented so a coordinator can check it by hand:
//!
//! `cost = per_mile[urgency] × miles + per_day[urgency] × days to the first free slot`
//!
//! where a video visit counts as `video_miles` miles (no travel, but an in-person visit close to
//! home is still preferred), and for a patient under 18 an option of the pediatric member
//! ("partner of choice") has `partner_margin` taken off, so it wins whenever it is within that
//! margin of the best other option. `score = 100 × 25 / (25 + max(cost, 0))`, one decimal:
//! 100 is a free slot today next door.

use std::cmp::Ordering;

use crate::geo::{Point, drive_minutes_estimate, haversine_miles};

const DAY_MS: i64 = 86_400_000;

/// How a visit happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    InPerson,
    Video,
}

impl Modality {
    pub fn code(self) -> &'static str {
        match self {
            Modality::InPerson => "in-person",
            Modality::Video => "video",
        }
    }

    pub fn parse(code: &str) -> Option<Modality> {
        match code {
            "in-person" => Some(Modality::InPerson),
            "video" => Some(Modality::Video),
            _ => None,
        }
    }
}

/// What the patient will take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    InPerson,
    Video,
    Any,
}

impl Wanted {
    pub fn parse(code: &str) -> Option<Wanted> {
        match code {
            "in-person" => Some(Wanted::InPerson),
            "video" => Some(Wanted::Video),
            "any" => Some(Wanted::Any),
            _ => None,
        }
    }

    fn admits(self, m: Modality) -> bool {
        matches!(
            (self, m),
            (Wanted::Any, _)
                | (Wanted::InPerson, Modality::InPerson)
                | (Wanted::Video, Modality::Video)
        )
    }
}

/// How soon care is needed (FHIR `request-priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Routine,
    Urgent,
    Asap,
    Stat,
}

impl Urgency {
    pub fn parse(code: &str) -> Option<Urgency> {
        match code {
            "routine" => Some(Urgency::Routine),
            "urgent" => Some(Urgency::Urgent),
            "asap" => Some(Urgency::Asap),
            "stat" => Some(Urgency::Stat),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Urgency::Routine => "routine",
            Urgency::Urgent => "urgent",
            Urgency::Asap => "asap",
            Urgency::Stat => "stat",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The alliance's settings for the finder (*configurable*; these are the defaults).
#[derive(Debug, Clone)]
pub struct FindCareConfig {
    /// Days within which a first free slot must fall, by urgency (routine, urgent, asap, stat;
    /// stat means the same day).
    pub window_days: [i64; 4],
    /// Cost per straight-line mile, by urgency.
    pub per_mile: [f64; 4],
    /// Cost per day of waiting for the first free slot, by urgency.
    pub per_day: [f64; 4],
    /// The miles a video visit counts as.
    pub video_miles: f64,
    /// For patients under 18, the pediatric member's options win within this much cost.
    pub partner_margin: f64,
    /// Organisation ids of the pediatric member ("partner of choice").
    pub pediatric_organizations: Vec<String>,
    /// Ages (inclusive) at which a pediatric-onset condition opens both pediatric and adult care.
    pub transition_ages: (i32, i32),
    /// Codes of pediatric-onset conditions: (code system, code or code prefix ending in `*`).
    pub pediatric_onset: Vec<(String, String)>,
}

pub const SNOMED: &str = "http://snomed.info/sct";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";

impl Default for FindCareConfig {
    fn default() -> Self {
        let onset = [
            (SNOMED, "13213009"),  // congenital heart disease
            (SNOMED, "190905008"), // cystic fibrosis
            (SNOMED, "46635009"),  // diabetes mellitus type 1
            (SNOMED, "417357006"), // sickling disorder due to hemoglobin S (sickle cell disease)
            (SNOMED, "127040003"), // sickle cell-hemoglobin SS disease
            (SNOMED, "67531005"),  // spina bifida
            (SNOMED, "128188000"), // cerebral palsy
            (SNOMED, "41040004"),  // Down syndrome (trisomy 21)
            (ICD10, "Q2*"),        // congenital malformations of the circulatory system
            (ICD10, "E84*"),       // cystic fibrosis
            (ICD10, "E10*"),       // type 1 diabetes mellitus
            (ICD10, "D57*"),       // sickle-cell disorders
            (ICD10, "Q05*"),       // spina bifida
            (ICD10, "G80*"),       // cerebral palsy
            (ICD10, "Q90*"),       // Down syndrome
        ];
        FindCareConfig {
            window_days: [30, 7, 3, 0],
            per_mile: [1.0, 0.5, 0.25, 0.1],
            per_day: [0.5, 4.0, 8.0, 20.0],
            video_miles: 10.0,
            partner_margin: 5.0,
            pediatric_organizations: vec!["cc".to_string()],
            transition_ages: (18, 25),
            pediatric_onset: onset
                .iter()
                .map(|(s, c)| (s.to_string(), c.to_string()))
                .collect(),
        }
    }
}

impl FindCareConfig {
    /// Whether a coded condition is one of the pediatric-onset ones.
    pub fn is_pediatric_onset(&self, system: &str, code: &str) -> bool {
        self.pediatric_onset.iter().any(|(s, c)| {
            s == system
                && match c.strip_suffix('*') {
                    Some(prefix) => code.starts_with(prefix),
                    None => code == c,
                }
        })
    }

    /// Whether a Condition (FHIR JSON) counts as an active pediatric-onset condition: its
    /// clinical status is active, a recurrence or a relapse (or not given), and one of its codes
    /// is on the pediatric-onset list.
    pub fn counts_as_pediatric_onset(&self, condition: &serde_json::Value) -> bool {
        use serde_json::Value;
        let active = condition
            .pointer("/clinicalStatus/coding")
            .and_then(Value::as_array)
            .is_none_or(|codings| {
                codings.iter().any(|cd| {
                    matches!(
                        cd.get("code").and_then(Value::as_str),
                        Some("active" | "recurrence" | "relapse")
                    )
                })
            });
        active
            && condition
                .pointer("/code/coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|cd| {
                    self.is_pediatric_onset(
                        cd.get("system").and_then(Value::as_str).unwrap_or(""),
                        cd.get("code").and_then(Value::as_str).unwrap_or(""),
                    )
                })
    }
}

/// What the finder knows about the patient.
#[derive(Debug, Clone)]
pub struct PatientFacts {
    /// Whole years of age today.
    pub age: i32,
    pub home: Point,
    /// Where the patient will be for a video visit (a US state code, e.g. `CT`).
    pub state: Option<String>,
    /// An active pediatric-onset condition is on the record.
    pub pediatric_onset: bool,
}

/// One way of getting the service: a service at a site in person, or by video.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub service_id: String,
    pub service_name: String,
    pub organization_id: String,
    pub organization_name: String,
    /// Ages served in whole years (inclusive); `None` = all ages.
    pub age_range: (Option<i32>, Option<i32>),
    pub accepting: bool,
    pub modality: Modality,
    /// The site (for in person).
    pub location: Option<Site>,
    /// US states where at least one clinician delivering the service is licensed.
    pub licensed_states: Vec<String>,
    /// The first free slot from now: (slot id, start in epoch ms).
    pub first_slot: Option<(String, i64)>,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub position: Option<Point>,
}

/// What was asked.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub wanted: Wanted,
    pub urgency: Urgency,
    pub radius_miles: f64,
    pub now_ms: i64,
}

/// A ranked option.
#[derive(Debug, Clone)]
pub struct Ranked {
    /// Index into the candidates.
    pub candidate: usize,
    pub distance_miles: Option<f64>,
    pub drive_minutes: Option<u32>,
    pub cost: f64,
    pub score: f64,
    /// An adult option for a young adult with a pediatric-onset condition.
    pub transition: bool,
    pub reasons: Vec<String>,
}

/// A candidate left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Excluded {
    pub candidate: usize,
    pub reason: String,
}

/// Ranks the candidates for a patient: eligible options in rank order, and every candidate of
/// an admitted modality that was left out with its reason.
pub fn rank(
    patient: &PatientFacts,
    candidates: &[Candidate],
    ask: &Ask,
    config: &FindCareConfig,
) -> (Vec<Ranked>, Vec<Excluded>) {
    let u = ask.urgency.index();
    let (t_low, t_high) = config.transition_ages;
    let in_transition = patient.pediatric_onset && (t_low..=t_high).contains(&patient.age);
    let child = patient.age < 18;
    let window_end = if ask.urgency == Urgency::Stat {
        // the rest of the alliance's (US Eastern) day
        crate::slots::local_to_utc(crate::slots::local_day(ask.now_ms) + 1, 0)
    } else {
        ask.now_ms + config.window_days[u] * DAY_MS
    };
    let mut ranked = Vec::new();
    let mut excluded = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        if !ask.wanted.admits(c.modality) {
            continue;
        }
        let exclude = |reason: String| Excluded {
            candidate: i,
            reason,
        };
        let pediatric = config.pediatric_organizations.contains(&c.organization_id);
        let mut reasons = Vec::new();
        // age band
        let (low, high) = c.age_range;
        let too_young = low.is_some_and(|l| patient.age < l);
        let too_old = high.is_some_and(|h| patient.age > h);
        let band = age_band(c.age_range);
        if too_young || (too_old && !(in_transition && pediatric)) {
            excluded.push(exclude(format!(
                "outside the age range: serves {band}, the patient is {}",
                years(patient.age)
            )));
            continue;
        }
        if too_old {
            reasons.push(format!(
                "pediatric care continues past the usual {band} for a pediatric-onset condition until transfer to adult care"
            ));
        } else if low.is_some() || high.is_some() {
            reasons.push(format!("serves {band}"));
        }
        if !c.accepting {
            excluded.push(exclude("not accepting new patients".into()));
            continue;
        }
        let (distance, drive) = match c.modality {
            Modality::Video => {
                let Some(state) = &patient.state else {
                    excluded.push(exclude(
                        "video needs to know where the patient will be (patientState)".into(),
                    ));
                    continue;
                };
                if !c
                    .licensed_states
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state))
                {
                    excluded.push(exclude(format!(
                        "no clinician of this service is licensed in {state}, where the patient will be for the video visit"
                    )));
                    continue;
                }
                reasons.push(format!(
                    "video visit: no travel; clinicians licensed in {state}"
                ));
                (None, None)
            }
            Modality::InPerson => {
                let Some(site) = &c.location else {
                    excluded.push(exclude("the site is not known".into()));
                    continue;
                };
                let Some(position) = site.position else {
                    excluded.push(exclude(format!(
                        "the position of {} is not recorded, so its distance is unknown",
                        site.name
                    )));
                    continue;
                };
                let miles = haversine_miles(patient.home, position);
                if miles > ask.radius_miles {
                    excluded.push(exclude(format!(
                        "{miles:.1} mi away, beyond the {} mi radius",
                        trim(ask.radius_miles)
                    )));
                    continue;
                }
                let minutes = drive_minutes_estimate(miles);
                reasons.push(format!(
                    "in person at {}, {miles:.1} mi from home (about {minutes} min by car, estimated)",
                    site.name
                ));
                (Some(miles), Some(minutes))
            }
        };
        let Some((_, start)) = c.first_slot.as_ref().filter(|(_, s)| *s < window_end) else {
            excluded.push(exclude(match ask.urgency {
                Urgency::Stat => "no free slot today (stat)".to_string(),
                u => format!(
                    "no free slot within {} days ({})",
                    config.window_days[u.index()],
                    u.code()
                ),
            }));
            continue;
        };
        let days = ((*start - ask.now_ms).max(0) as f64) / DAY_MS as f64;
        reasons.push(match days {
            d if d < 1.0 => "first free slot within a day".to_string(),
            d => format!("first free slot in {} days", d.floor() as i64),
        });
        let miles_cost = distance.unwrap_or(config.video_miles);
        let mut cost = config.per_mile[u] * miles_cost + config.per_day[u] * days;
        if child && pediatric {
            cost -= config.partner_margin;
            reasons.push(format!(
                "{} is the pediatric partner of choice: preferred for a child among comparable options",
                c.organization_name
            ));
        }
        let transition = in_transition && !pediatric;
        if transition {
            reasons.push(
                "adult care for a young adult with a pediatric-onset condition (transition)".into(),
            );
        }
        ranked.push(Ranked {
            candidate: i,
            distance_miles: distance,
            drive_minutes: drive,
            cost,
            score: score(cost),
            transition,
            reasons,
        });
    }
    ranked.sort_by(|a, b| {
        a.cost
            .partial_cmp(&b.cost)
            .unwrap_or(Ordering::Equal)
            .then_with(|| {
                a.distance_miles
                    .unwrap_or(f64::MAX)
                    .partial_cmp(&b.distance_miles.unwrap_or(f64::MAX))
                    .unwrap_or(Ordering::Equal)
            })
            .then_with(|| {
                candidates[a.candidate]
                    .service_id
                    .cmp(&candidates[b.candidate].service_id)
            })
            .then_with(|| {
                let site = |r: &Ranked| {
                    candidates[r.candidate]
                        .location
                        .as_ref()
                        .map(|s| s.id.clone())
                };
                site(a).cmp(&site(b))
            })
    });
    (ranked, excluded)
}

/// 100 × 25 / (25 + max(cost, 0)), one decimal.
fn score(cost: f64) -> f64 {
    (1000.0 * 25.0 / (25.0 + cost.max(0.0))).round() / 10.0
}

fn years(age: i32) -> String {
    if age == 1 {
        "1 year old".into()
    } else {
        format!("{age} years old")
    }
}

fn age_band((low, high): (Option<i32>, Option<i32>)) -> String {
    match (low, high) {
        (Some(l), Some(h)) => format!("ages {l}–{h}"),
        (Some(l), None) => format!("ages {l} and over"),
        (None, Some(h)) => format!("ages up to {h}"),
        (None, None) => "all ages".into(),
    }
}

fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests;
