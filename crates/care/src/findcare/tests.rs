//! The finder's rules, one table row per behaviour, each with the words it must say.

use super::*;
use crate::access::age::{BirthDate, age_on, day_ms};

/// Noon UTC on 2 March 2026.
const NOW: i64 = 1_772_452_800_000;
const DAY: i64 = 86_400_000;

const NEW_LONDON: Point = Point {
    lat: 41.3557,
    lng: -72.0995,
};
const WATERFORD: Point = Point {
    lat: 41.3412,
    lng: -72.1437,
};
const NORWICH: Point = Point {
    lat: 41.5243,
    lng: -72.0759,
};
const EAST_LYME: Point = Point {
    lat: 41.3570,
    lng: -72.2300,
};
const HARTFORD: Point = Point {
    lat: 41.7658,
    lng: -72.6734,
};

fn patient(age: i32) -> PatientFacts {
    PatientFacts {
        age,
        home: NEW_LONDON,
        state: Some("CT".into()),
        pediatric_onset: false,
    }
}

fn site(id: &str, at: Point) -> Option<Site> {
    Some(Site {
        id: id.into(),
        name: id.into(),
        position: Some(at),
    })
}

/// A cardiology service of `org` at `at`, first slot `days` from now.
fn cardio(id: &str, org: &str, at: Point, days: i64) -> Candidate {
    Candidate {
        service_id: id.into(),
        service_name: format!("{id} cardiology"),
        organization_id: org.into(),
        organization_name: if org == "cc" {
            "Connecticut Children's".into()
        } else {
            "Hartford HealthCare".into()
        },
        age_range: if org == "cc" {
            (Some(0), Some(17))
        } else {
            (Some(18), None)
        },
        accepting: true,
        modality: Modality::InPerson,
        location: site(&format!("{id}-site"), at),
        licensed_states: vec!["CT".into()],
        first_slot: Some((format!("{id}-slot"), NOW + days * DAY + 3_600_000)),
    }
}

fn video(mut c: Candidate, states: &[&str]) -> Candidate {
    c.modality = Modality::Video;
    c.location = None;
    c.licensed_states = states.iter().map(|s| s.to_string()).collect();
    c
}

fn ask(wanted: Wanted, urgency: Urgency) -> Ask {
    Ask {
        wanted,
        urgency,
        radius_miles: 30.0,
        now_ms: NOW,
    }
}

fn ids(candidates: &[Candidate], ranked: &[Ranked]) -> Vec<String> {
    ranked
        .iter()
        .map(|r| candidates[r.candidate].service_id.clone())
        .collect()
}

fn reasons_of(candidates: &[Candidate], ranked: &[Ranked], id: &str) -> String {
    ranked
        .iter()
        .find(|r| candidates[r.candidate].service_id == id)
        .map(|r| r.reasons.join(" | "))
        .unwrap_or_default()
}

fn excluded_reason(candidates: &[Candidate], excluded: &[Excluded], id: &str) -> String {
    excluded
        .iter()
        .find(|e| candidates[e.candidate].service_id == id)
        .map(|e| e.reason.clone())
        .unwrap_or_default()
}

#[test]
fn distance_orders_options_that_are_otherwise_equal() {
    let c = vec![
        cardio("hartford", "cc", HARTFORD, 5),
        cardio("norwich", "cc", NORWICH, 5),
        cardio("waterford", "cc", WATERFORD, 5),
    ];
    let (ranked, excluded) = rank(
        &patient(9),
        &c,
        &ask(Wanted::InPerson, Urgency::Routine),
        &FindCareConfig::default(),
    );
    assert_eq!(ids(&c, &ranked), ["waterford", "norwich"]);
    assert_eq!(
        excluded_reason(&c, &excluded, "hartford"),
        "41.0 mi away, beyond the 30 mi radius"
    );
    assert_eq!(
        reasons_of(&c, &ranked, "waterford"),
        "serves ages 0–17 | in person at waterford-site, 2.5 mi from home (about 11 min by car, estimated) | first free slot in 5 days | Connecticut Children's is the pediatric partner of choice: preferred for a child among comparable options"
    );
    assert!(ranked[0].score > ranked[1].score);
}

#[test]
fn urgency_sets_the_window_and_the_weight_of_waiting() {
    let c = vec![
        cardio("near-late", "cc", WATERFORD, 6),
        cardio("far-soon", "cc", NORWICH, 1),
    ];
    let cfg = FindCareConfig::default();
    // routine: 30 days, distance weighs more
    let (ranked, _) = rank(
        &patient(9),
        &c,
        &ask(Wanted::InPerson, Urgency::Routine),
        &cfg,
    );
    assert_eq!(ids(&c, &ranked), ["near-late", "far-soon"]);
    // urgent: 7 days, waiting weighs more
    let (ranked, _) = rank(
        &patient(9),
        &c,
        &ask(Wanted::InPerson, Urgency::Urgent),
        &cfg,
    );
    assert_eq!(ids(&c, &ranked), ["far-soon", "near-late"]);
    // asap: 3 days, the later one is out
    let (ranked, excluded) = rank(&patient(9), &c, &ask(Wanted::InPerson, Urgency::Asap), &cfg);
    assert_eq!(ids(&c, &ranked), ["far-soon"]);
    assert_eq!(
        excluded_reason(&c, &excluded, "near-late"),
        "no free slot within 3 days (asap)"
    );
    // stat: today only
    let (ranked, excluded) = rank(&patient(9), &c, &ask(Wanted::InPerson, Urgency::Stat), &cfg);
    assert!(ranked.is_empty());
    assert_eq!(
        excluded_reason(&c, &excluded, "far-soon"),
        "no free slot today (stat)"
    );
    let mut today = c.clone();
    today[1].first_slot = Some(("s".into(), NOW + 3_600_000));
    let (ranked, _) = rank(
        &patient(9),
        &today,
        &ask(Wanted::InPerson, Urgency::Stat),
        &cfg,
    );
    assert_eq!(ids(&today, &ranked), ["far-soon"]);
    assert!(reasons_of(&today, &ranked, "far-soon").contains("first free slot within a day"));
    // "today" is the alliance's Eastern day: NOW is 07:00 EST, so 21:00 EST (02:00 UTC the
    // next day) is still today, and 01:00 EST the next day is not
    today[1].first_slot = Some(("s".into(), NOW + 14 * 3_600_000));
    let stat = ask(Wanted::InPerson, Urgency::Stat);
    assert_eq!(
        ids(&today, &rank(&patient(9), &today, &stat, &cfg).0),
        ["far-soon"]
    );
    today[1].first_slot = Some(("s".into(), NOW + 18 * 3_600_000));
    assert!(rank(&patient(9), &today, &stat, &cfg).0.is_empty());
}

#[test]
fn the_age_band_edge_is_the_eighteenth_birthday() {
    let birth = BirthDate::parse("2008-03-02").unwrap();
    let day_before = age_on(birth, day_ms(2026, 3, 1));
    let birthday = age_on(birth, day_ms(2026, 3, 2));
    assert_eq!((day_before, birthday), (17, 18));
    let c = vec![
        cardio("peds", "cc", WATERFORD, 3),
        cardio("adult", "hhc", WATERFORD, 3),
    ];
    let cfg = FindCareConfig::default();
    let a = ask(Wanted::InPerson, Urgency::Routine);
    let (ranked, excluded) = rank(&patient(day_before), &c, &a, &cfg);
    assert_eq!(ids(&c, &ranked), ["peds"]);
    assert_eq!(
        excluded_reason(&c, &excluded, "adult"),
        "outside the age range: serves ages 18 and over, the patient is 17 years old"
    );
    let (ranked, excluded) = rank(&patient(birthday), &c, &a, &cfg);
    assert_eq!(ids(&c, &ranked), ["adult"]);
    assert_eq!(
        excluded_reason(&c, &excluded, "peds"),
        "outside the age range: serves ages 0–17, the patient is 18 years old"
    );
}

#[test]
fn video_needs_a_clinician_licensed_where_the_patient_will_be() {
    let c = vec![
        video(cardio("ct-only", "cc", WATERFORD, 2), &["CT"]),
        video(cardio("ct-ma", "cc", WATERFORD, 2), &["CT", "MA"]),
    ];
    let mut p = patient(9);
    p.state = Some("MA".into());
    let (ranked, excluded) = rank(
        &p,
        &c,
        &ask(Wanted::Video, Urgency::Routine),
        &FindCareConfig::default(),
    );
    assert_eq!(ids(&c, &ranked), ["ct-ma"]);
    assert_eq!(
        excluded_reason(&c, &excluded, "ct-only"),
        "no clinician of this service is licensed in MA, where the patient will be for the video visit"
    );
    assert!(
        reasons_of(&c, &ranked, "ct-ma")
            .contains("video visit: no travel; clinicians licensed in MA")
    );
    assert_eq!(ranked[0].distance_miles, None);
    // in-person options are not offered when only video is wanted, and not listed as excluded
    let both = vec![cardio("site", "cc", WATERFORD, 2), c[1].clone()];
    let (ranked, excluded) = rank(
        &p,
        &both,
        &ask(Wanted::Video, Urgency::Routine),
        &FindCareConfig::default(),
    );
    assert_eq!(ids(&both, &ranked), ["ct-ma"]);
    assert!(excluded.is_empty());
}

#[test]
fn the_pediatric_partner_wins_ties_within_the_margin_for_children_only() {
    // the adult system's site is a little closer; both serve all ages here
    let mut peds = cardio("peds", "cc", EAST_LYME, 4);
    let mut adult = cardio("adult", "hhc", WATERFORD, 4);
    peds.age_range = (None, None);
    adult.age_range = (None, None);
    let c = vec![adult, peds];
    let cfg = FindCareConfig::default();
    let a = ask(Wanted::InPerson, Urgency::Routine);
    let (ranked, _) = rank(&patient(9), &c, &a, &cfg);
    assert_eq!(
        ids(&c, &ranked),
        ["peds", "adult"],
        "within the margin: the partner of choice"
    );
    assert!(reasons_of(&c, &ranked, "peds").contains("pediatric partner of choice"));
    let (ranked, _) = rank(&patient(30), &c, &a, &cfg);
    assert_eq!(
        ids(&c, &ranked),
        ["adult", "peds"],
        "adults: distance alone"
    );
    assert!(!reasons_of(&c, &ranked, "peds").contains("partner of choice"));
    // beyond the margin the closer option wins even for a child
    let mut far = c.clone();
    far[1].location = site("hartford", HARTFORD);
    let wide = Ask {
        radius_miles: 60.0,
        ..a
    };
    let (ranked, _) = rank(&patient(9), &far, &wide, &cfg);
    assert_eq!(ids(&far, &ranked), ["adult", "peds"]);
}

#[test]
fn young_adults_with_a_pediatric_onset_condition_see_both_with_adult_care_flagged() {
    let c = vec![
        cardio("peds", "cc", WATERFORD, 3),
        cardio("adult", "hhc", NORWICH, 3),
    ];
    let cfg = FindCareConfig::default();
    let a = ask(Wanted::InPerson, Urgency::Routine);
    let mut p = patient(22);
    let (ranked, _) = rank(&p, &c, &a, &cfg);
    assert_eq!(
        ids(&c, &ranked),
        ["adult"],
        "without the condition: adult care only"
    );
    assert!(!ranked[0].transition);
    p.pediatric_onset = true;
    let (ranked, _) = rank(&p, &c, &a, &cfg);
    assert_eq!(ids(&c, &ranked), ["peds", "adult"]);
    let adult = ranked
        .iter()
        .find(|r| c[r.candidate].service_id == "adult")
        .unwrap();
    assert!(adult.transition);
    assert!(
        reasons_of(&c, &ranked, "adult")
            .contains("adult care for a young adult with a pediatric-onset condition (transition)")
    );
    assert!(reasons_of(&c, &ranked, "peds").contains(
        "pediatric care continues past the usual ages 0–17 for a pediatric-onset condition"
    ));
    // past the transition ages the pediatric service is out again
    p.age = 26;
    let (ranked, _) = rank(&p, &c, &a, &cfg);
    assert_eq!(ids(&c, &ranked), ["adult"]);
    assert!(!ranked[0].transition);
}

#[test]
fn services_not_accepting_are_excluded_with_the_reason() {
    let mut c = vec![cardio("closed", "cc", WATERFORD, 1)];
    c[0].accepting = false;
    let (ranked, excluded) = rank(
        &patient(9),
        &c,
        &ask(Wanted::Any, Urgency::Routine),
        &FindCareConfig::default(),
    );
    assert!(ranked.is_empty());
    assert_eq!(
        excluded,
        vec![Excluded {
            candidate: 0,
            reason: "not accepting new patients".into()
        }]
    );
}

#[test]
fn pediatric_onset_codes_match_exactly_or_by_prefix() {
    let cfg = FindCareConfig::default();
    assert!(cfg.is_pediatric_onset(SNOMED, "190905008"));
    assert!(!cfg.is_pediatric_onset(SNOMED, "1909050"));
    assert!(cfg.is_pediatric_onset(ICD10, "Q21.0"));
    assert!(cfg.is_pediatric_onset(ICD10, "E10.9"));
    assert!(!cfg.is_pediatric_onset(ICD10, "E11.9"));
    assert!(!cfg.is_pediatric_onset(SNOMED, "Q21.0"));
}

#[test]
fn score_is_a_readable_transform_of_cost() {
    assert_eq!(score(0.0), 100.0);
    assert_eq!(score(-3.0), 100.0);
    assert_eq!(score(25.0), 50.0);
    assert_eq!(score(75.0), 25.0);
}

#[test]
fn pediatric_onset_conditions_count_while_active() {
    let config = FindCareConfig::default();
    let (system, code) = config.pediatric_onset[0].clone();
    let code = code.trim_end_matches('*').to_string();
    let condition = |status: Option<&str>| {
        let mut c = serde_json::json!({"resourceType": "Condition",
            "code": {"coding": [{"system": system, "code": code}]}});
        if let Some(s) = status {
            c["clinicalStatus"] = serde_json::json!({"coding": [{"code": s}]});
        }
        c
    };
    assert!(config.counts_as_pediatric_onset(&condition(None)));
    assert!(config.counts_as_pediatric_onset(&condition(Some("active"))));
    assert!(config.counts_as_pediatric_onset(&condition(Some("relapse"))));
    assert!(!config.counts_as_pediatric_onset(&condition(Some("resolved"))));
    assert!(!config.counts_as_pediatric_onset(
        &serde_json::json!({"code": {"coding": [{"system": "x", "code": "y"}]}})
    ));
}
