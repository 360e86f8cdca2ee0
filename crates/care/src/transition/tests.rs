//! The due-date rules as tables over ages and histories, with birthday edges and a 29 February
//! birth date.

use super::*;

const MIN: i64 = 60_000;

fn birth(s: &str) -> BirthDate {
    BirthDate::parse(s).unwrap()
}

fn state(b: &str, history: &History, now: i64, e: Element) -> ElementState {
    status(birth(b), history, now, &TransitionConfig::default())
        .into_iter()
        .find(|(x, _)| *x == e)
        .unwrap()
        .1
}

#[test]
fn birthdays_are_the_days_age_counts_them() {
    let b = birth("2010-06-15");
    assert_eq!(birthday_ms(b, 12), day_ms(2022, 6, 15));
    assert_eq!(age_on(b, birthday_ms(b, 12) - 1), 11);
    assert_eq!(age_on(b, birthday_ms(b, 12)), 12);
    // 29 February: the birthday of a common year is 1 March, as age_on counts it
    let leap = birth("2008-02-29");
    assert_eq!(birthday_ms(leap, 18), day_ms(2026, 3, 1));
    assert_eq!(birthday_ms(leap, 16), day_ms(2024, 2, 29));
    for years in 12..=27 {
        let d = birthday_ms(leap, years);
        assert_eq!(age_on(leap, d), years, "{years}");
        assert_eq!(age_on(leap, d - 1), years - 1, "{years}");
    }
    // partial dates count from their earliest day
    assert_eq!(birthday_ms(birth("2010-06"), 12), day_ms(2022, 6, 1));
    assert_eq!(birthday_ms(birth("2010"), 12), day_ms(2022, 1, 1));
}

#[test]
fn the_registry_runs_from_12_to_26() {
    let c = TransitionConfig::default();
    let b = birth("2000-03-10");
    assert!(!in_registry(b, birthday_ms(b, 12) - 1, &c));
    assert!(in_registry(b, birthday_ms(b, 12), &c));
    assert!(in_registry(b, birthday_ms(b, 27) - 1, &c));
    assert!(!in_registry(b, birthday_ms(b, 27), &c));
}

/// (element, age in days past a birthday as "YYyDDDd" relative to the birth date, expected)
#[test]
fn elements_fall_due_by_age_with_nothing_recorded() {
    let b = "2008-02-29";
    let bd = birth(b);
    let at = |years: i32, days: i64| birthday_ms(bd, years) + days * DAY;
    let none = History::default();
    use Element::*;
    let cases: &[(Element, i64, &str)] = &[
        (Policy, at(12, 0) - 1, "not-yet"),
        (Policy, at(12, 0), "due"),
        (Policy, at(14, 0) - 1, "due"),
        (Policy, at(14, 0), "overdue"),
        (Readiness, at(14, 0) - 1, "not-yet"),
        (Readiness, at(14, 0), "due"),
        (Readiness, at(14, 90) - 1, "due"),
        (Readiness, at(14, 90), "overdue"),
        (Education, at(14, 0), "due"),
        (Education, at(16, 0), "overdue"),
        (PlanOfCare, at(16, 0) - 1, "not-yet"),
        (PlanOfCare, at(16, 0), "due"),
        (PlanOfCare, at(17, 0), "overdue"),
        (MedicalSummary, at(16, 0), "due"),
        (ConsentTalk, at(17, 0) - 1, "not-yet"),
        (ConsentTalk, at(17, 0), "due"),
        (ConsentTalk, at(18, 0) - 1, "due"),
        (ConsentTalk, at(18, 0), "overdue"),
        (DecisionMaking, at(17, 0), "due"),
        (TransferPackage, at(18, 0) - 1, "not-yet"),
        (TransferPackage, at(18, 0), "due"),
        (TransferPackage, at(22, 0) - 1, "due"),
        (TransferPackage, at(22, 0), "overdue"),
        (FirstAdultVisit, at(20, 0), "not-yet"),
        (Completion, at(20, 0), "not-yet"),
        (Feedback, at(25, 0), "not-yet"),
    ];
    for (e, now, want) in cases {
        let got = state(b, &none, *now, *e);
        assert_eq!(got.code(), *want, "{e:?} at {} ({got:?})", fhir_like(*now));
    }
    // the 18th birthday of a 29 February child is 1 March in a common year
    assert_eq!(at(18, 0), day_ms(2026, 3, 1));
    assert_eq!(
        state(b, &none, day_ms(2026, 2, 28) + 23 * 60 * MIN, ConsentTalk).code(),
        "due"
    );
    assert_eq!(
        state(b, &none, day_ms(2026, 3, 1), ConsentTalk).code(),
        "overdue"
    );
}

fn fhir_like(ms: i64) -> String {
    let (y, m, d) = crate::slots::civil_from_days(ms.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn the_readiness_assessment_is_yearly_until_the_transfer() {
    let b = "2010-06-15";
    let bd = birth(b);
    let at = |years: i32, days: i64| birthday_ms(bd, years) + days * DAY;
    let mut h = History::default();
    h.done.push((Element::Readiness, at(14, 10)));
    assert_eq!(state(b, &h, at(14, 11), Element::Readiness).code(), "done");
    assert_eq!(
        state(b, &h, at(14, 10) + 365 * DAY - 1, Element::Readiness).code(),
        "done"
    );
    let next = state(b, &h, at(14, 10) + 365 * DAY, Element::Readiness);
    assert_eq!(next.code(), "due");
    assert_eq!(next.due_ms(), Some(at(14, 10) + 365 * DAY));
    assert_eq!(
        state(b, &h, at(14, 10) + 455 * DAY, Element::Readiness).code(),
        "overdue"
    );
    // a second one restarts the year
    h.done.push((Element::Readiness, at(15, 40)));
    assert_eq!(state(b, &h, at(15, 41), Element::Readiness).code(), "done");
    // after the package is sent, no more are due
    h.done.push((Element::TransferPackage, at(19, 0)));
    assert_eq!(state(b, &h, at(21, 0), Element::Readiness).code(), "done");
    let fresh = History {
        done: vec![(Element::TransferPackage, at(19, 0))],
    };
    assert_eq!(
        state(b, &fresh, at(21, 0), Element::Readiness).code(),
        "not-needed"
    );
}

#[test]
fn the_transfer_runs_from_the_package_to_the_feedback() {
    let b = "2004-09-01";
    let bd = birth(b);
    let at = |years: i32, days: i64| birthday_ms(bd, years) + days * DAY;
    let sent = at(19, 20);
    let mut h = History {
        done: vec![(Element::TransferPackage, sent)],
    };
    // the first adult visit is due from the package, overdue six months later
    assert_eq!(state(b, &h, sent, Element::FirstAdultVisit).code(), "due");
    assert_eq!(
        state(b, &h, sent + 183 * DAY, Element::FirstAdultVisit).code(),
        "overdue"
    );
    assert_eq!(
        state(b, &h, sent + 200 * DAY, Element::Completion).code(),
        "not-yet"
    );
    let visit = sent + 60 * DAY;
    h.done.push((Element::FirstAdultVisit, visit));
    // completion and feedback: 3 to 6 months after the first adult visit
    for e in [Element::Completion, Element::Feedback] {
        assert_eq!(state(b, &h, visit + 90 * DAY, e).code(), "not-yet");
        assert_eq!(state(b, &h, visit + 91 * DAY, e).code(), "due");
        assert_eq!(state(b, &h, visit + 183 * DAY, e).code(), "overdue");
    }
    // once complete, only the feedback can still be due
    h.done.push((Element::Completion, visit + 100 * DAY));
    let all = status(bd, &h, visit + 120 * DAY, &TransitionConfig::default());
    for (e, s) in &all {
        match e {
            Element::Feedback => assert_eq!(s.code(), "due"),
            Element::TransferPackage | Element::FirstAdultVisit | Element::Completion => {
                assert_eq!(s.code(), "done", "{e:?}")
            }
            _ => assert_eq!(s.code(), "not-needed", "{e:?}"),
        }
    }
}

#[test]
fn done_is_done_and_overdue_comes_first() {
    let b = "2009-01-20";
    let bd = birth(b);
    let at = |years: i32, days: i64| birthday_ms(bd, years) + days * DAY;
    let h = History {
        done: vec![(Element::Policy, at(12, 30))],
    };
    // done before it was late, and long after
    assert_eq!(state(b, &h, at(25, 0), Element::Policy).code(), "done");
    // at 16 and a half: the education is overdue (late at 16), the plan is due
    let now = at(16, 180);
    let all = status(bd, &h, now, &TransitionConfig::default());
    let (e, s) = next_due(&all).unwrap();
    assert_eq!((e, s.code()), (Element::Readiness, "overdue"));
    let h2 = History {
        done: vec![
            (Element::Policy, at(12, 30)),
            (Element::Readiness, at(16, 100)),
            (Element::Education, at(15, 0)),
        ],
    };
    let all = status(bd, &h2, now, &TransitionConfig::default());
    assert_eq!(
        next_due(&all).map(|(e, s)| (e, s.code())),
        Some((Element::PlanOfCare, "due"))
    );
}

#[test]
fn a_transfer_needs_the_assessment_the_plan_and_the_summary() {
    let mut h = History::default();
    assert_eq!(
        missing_for_transfer(&h),
        vec![
            Element::Readiness,
            Element::PlanOfCare,
            Element::MedicalSummary
        ]
    );
    h.done.push((Element::PlanOfCare, 1));
    assert_eq!(
        missing_for_transfer(&h),
        vec![Element::Readiness, Element::MedicalSummary]
    );
    h.done.push((Element::Readiness, 2));
    h.done.push((Element::MedicalSummary, 3));
    assert!(missing_for_transfer(&h).is_empty());
    for e in Element::ALL {
        assert_eq!(Element::parse(e.code()), Some(e));
    }
}

fn open(id: &str, e: Element, s: &ElementState) -> OpenTask {
    let (mark, due, late) = match s {
        ElementState::Due { due_ms, late_ms } => (Some(Mark::Due), Some(*due_ms), Some(*late_ms)),
        ElementState::Overdue { due_ms, late_ms } => {
            (Some(Mark::Overdue), Some(*due_ms), Some(*late_ms))
        }
        _ => (None, None, None),
    };
    OpenTask {
        id: id.into(),
        element: e,
        mark,
        due_ms: due,
        late_ms: late,
    }
}

#[test]
fn the_scheduler_keeps_one_open_task_per_element_due_and_changes_nothing_twice() {
    let c = TransitionConfig::default();
    let b = birth("2011-01-10"); // 15 on 1 June 2026
    let now = day_ms(2026, 6, 1);
    let states = status(b, &History::default(), now, &c);
    let first = reconcile(&states, &[]);
    // nothing recorded at 15: the policy and the first assessment overdue, education due
    let created: Vec<(Element, Mark)> = first
        .iter()
        .map(|ch| match ch {
            TaskChange::Create { element, mark, .. } => (*element, *mark),
            other => panic!("only creations on a first run: {other:?}"),
        })
        .collect();
    assert_eq!(
        created,
        vec![
            (Element::Policy, Mark::Overdue),
            (Element::Readiness, Mark::Overdue),
            (Element::Education, Mark::Due),
        ]
    );
    // the Tasks as the first run wrote them: a second run changes nothing
    let tasks: Vec<OpenTask> = states
        .iter()
        .filter(|(_, s)| matches!(s, ElementState::Due { .. } | ElementState::Overdue { .. }))
        .enumerate()
        .map(|(i, (e, s))| open(&format!("t{i}"), *e, s))
        .collect();
    assert_eq!(reconcile(&states, &tasks), vec![]);
    // at 16 education is overdue: the open task is marked anew, not a second one created
    let later = status(b, &History::default(), day_ms(2027, 1, 10), &c);
    let changes = reconcile(&later, &tasks);
    assert!(changes.contains(&TaskChange::Mark {
        id: "t2".into(),
        element: Element::Education,
        mark: Mark::Overdue,
        due_ms: birthday_ms(b, 14),
        late_ms: birthday_ms(b, 16),
    }));
    assert!(changes.iter().all(
        |ch| !matches!(ch, TaskChange::Create { element, .. } if *element == Element::Education)
    ));
    // the policy recorded on another task: its open task is closed as recorded
    let history = History {
        done: vec![(Element::Policy, now)],
    };
    let states = status(b, &history, now, &c);
    assert_eq!(
        reconcile(&states, &tasks),
        vec![TaskChange::Close {
            id: "t0".into(),
            element: Element::Policy,
            why: Close::Recorded,
        }]
    );
    // two open tasks of one element: one is kept
    let mut twice = tasks.clone();
    twice.push(OpenTask {
        id: "t9".into(),
        ..tasks[1].clone()
    });
    let states = status(b, &History::default(), now, &c);
    assert_eq!(
        reconcile(&states, &twice),
        vec![TaskChange::Close {
            id: "t9".into(),
            element: Element::Readiness,
            why: Close::Duplicate,
        }]
    );
    // after the transfer completes, what was open is no longer needed (the feedback stays due)
    let done = History {
        done: vec![
            (Element::TransferPackage, day_ms(2025, 1, 1)),
            (Element::FirstAdultVisit, day_ms(2025, 3, 1)),
            (Element::Completion, day_ms(2025, 7, 1)),
        ],
    };
    let states = status(b, &done, now, &c);
    let changes = reconcile(&states, &tasks);
    assert!(changes.contains(&TaskChange::Close {
        id: "t0".into(),
        element: Element::Policy,
        why: Close::NotNeeded,
    }));
    assert!(changes.iter().any(|ch| matches!(
        ch,
        TaskChange::Create {
            element: Element::Feedback,
            mark: Mark::Overdue,
            ..
        }
    )));
}

fn answers(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn the_readiness_assessment_scores_each_domain_and_names_what_to_work_on() {
    use readiness::*;
    let all: Vec<&str> = link_ids().collect();
    assert_eq!(all.len(), 12);
    // every answer on my own: 100
    let full: Vec<(String, String)> = all
        .iter()
        .map(|q| (q.to_string(), "on-my-own".to_string()))
        .collect();
    let s = score(&full, true).unwrap();
    assert_eq!(s.total, 100);
    assert!(s.to_work_on.is_empty());
    // medicines not yet, insurance learning, the rest with help
    let mixed: Vec<(String, String)> = all
        .iter()
        .map(|q| {
            let a = if q.starts_with("meds-") {
                "not-yet"
            } else if q.starts_with("ins-") {
                "learning"
            } else {
                "with-help"
            };
            (q.to_string(), a.to_string())
        })
        .collect();
    let s = score(&mixed, true).unwrap();
    // (0·2 + 1·2 + 2·8) / 36 = 18/36
    assert_eq!(s.total, 50);
    assert!(s.domains.contains(&("medications", 0)));
    assert!(s.domains.contains(&("insurance", 33)));
    assert!(s.domains.contains(&("condition", 67)));
    assert_eq!(
        s.to_work_on,
        vec!["meds-names", "meds-refill", "ins-card", "ins-change"]
    );
    // a completed response answers everything, once, from the scale
    let problems = score(&answers(&[("meds-names", "yes")]), true).unwrap_err();
    assert!(problems.contains(&"'condition-explain' is not answered".to_string()));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("'yes' is not an answer to 'meds-names'"))
    );
    let twice = score(
        &answers(&[("meds-names", "learning"), ("meds-names", "not-yet")]),
        false,
    )
    .unwrap_err();
    assert_eq!(
        twice,
        vec!["'meds-names' is answered more than once".to_string()]
    );
    assert_eq!(
        score(&answers(&[("favourite-colour", "learning")]), false).unwrap_err(),
        vec!["'favourite-colour' is not a question of the readiness assessment".to_string()]
    );
    // one in progress is scored on what it answers
    let part = score(&answers(&[("priv-18", "on-my-own")]), false).unwrap();
    assert_eq!(
        (part.total, part.domains.clone()),
        (100, vec![("privacy", 100)])
    );
}

#[test]
fn the_consent_status_says_who_acts_from_18() {
    let to = vec!["RelatedPerson/mother".to_string()];
    assert!(consent_words(17, &[], false).contains("ends on the 18th birthday unless"));
    assert!(consent_words(17, &to, false).contains("RelatedPerson/mother already in place"));
    assert!(consent_words(18, &[], false).contains("no one has been granted access"));
    assert!(consent_words(19, &to, false).starts_with("from 18 the young adult decides"));
    assert!(consent_words(18, &[], true).contains("guardian keeps acting"));
}

#[test]
fn the_measures_count_by_organisation_band_and_recipient() {
    use metrics::*;
    let c = TransitionConfig::default();
    let now = day_ms(2026, 6, 1);
    let young = |org: &str, b: &str, history: History| {
        let birth = BirthDate::parse(b).unwrap();
        Young {
            organization: org.into(),
            age: age_on(birth, now),
            states: status(birth, &history, now, &c),
            package_ms: history.first(Element::TransferPackage),
            age_at_package: history
                .first(Element::TransferPackage)
                .map(|t| (t - birthday_ms(birth, 0)) as f64 / (365.25 * DAY as f64)),
            recipient: history
                .first(Element::TransferPackage)
                .map(|_| "HealthcareService/adult".to_string()),
            sender: None,
            first_visit_ms: history.first(Element::FirstAdultVisit),
        }
    };
    let people = vec![
        // 12 and 13 at cc: one with the policy shared, one without
        young(
            "cc",
            "2014-01-01",
            History {
                done: vec![(Element::Policy, day_ms(2026, 2, 1))],
            },
        ),
        young("cc", "2013-01-01", History::default()),
        // 15 at cc: the policy overdue
        young("cc", "2011-01-01", History::default()),
        // transferred at 19: one seen in 2 months, one sent 8 months ago and not seen
        young(
            "cc",
            "2006-06-01",
            History {
                done: vec![
                    (Element::TransferPackage, day_ms(2025, 6, 1)),
                    (Element::FirstAdultVisit, day_ms(2025, 8, 1)),
                ],
            },
        ),
        young(
            "cc",
            "2006-10-01",
            History {
                done: vec![(Element::TransferPackage, day_ms(2025, 10, 1))],
            },
        ),
        // hhc: sent a month ago (not yet judged)
        young(
            "hhc",
            "2007-05-01",
            History {
                done: vec![(Element::TransferPackage, day_ms(2026, 5, 1))],
            },
        ),
    ];
    let (groups, transfers) = measure(&people, now, &c);
    let g = |org: &str, band: &str| {
        groups
            .iter()
            .find(|g| g.organization == org && g.band == band)
            .unwrap()
    };
    let counts =
        |g: &Group, e: Element| g.elements.iter().find(|(x, _)| *x == e).unwrap().1.clone();
    let young_cc = g("cc", "12-13");
    assert_eq!(young_cc.young_people, 2);
    assert_eq!(
        counts(young_cc, Element::Policy),
        ElementCounts {
            applies: 2,
            done: 1,
            overdue: 0
        }
    );
    assert_eq!(counts(young_cc, Element::Policy).share_done(), Some(0.5));
    assert_eq!(g("cc", "14-15").with_overdue, 1);
    assert_eq!(g("cc", "all").young_people, 5);
    assert_eq!(g("all", "all").young_people, 6);
    assert!(groups.iter().all(|g| g.band != "16-17"), "no empty bands");
    let t = |org: &str| transfers.iter().find(|t| t.organization == org).unwrap();
    let cc = t("cc");
    assert_eq!(
        (
            cc.sent,
            cc.completed,
            cc.judged,
            cc.completed_within_6_months
        ),
        (2, 1, 2, 1)
    );
    assert_eq!(cc.within_6_months_rate(), Some(0.5));
    let median = cc.median_age_at_transfer.unwrap();
    assert!((median - 19.0).abs() < 0.01, "{median}");
    let all = t("all");
    assert_eq!(
        (all.sent, all.judged),
        (3, 2),
        "the month-old transfer is not judged yet"
    );
}

#[test]
fn a_family_answers_only_the_readiness_assessment_as_itself() {
    use crate::access::{Decision, decide_family_answer};
    let permit = |d: Decision| matches!(d, Decision::Permit);
    assert!(permit(decide_family_answer(
        true,
        Some("Patient/p"),
        None,
        "p"
    )));
    assert!(permit(decide_family_answer(
        true,
        Some("RelatedPerson/m"),
        Some("Patient/p"),
        "p"
    )));
    assert!(!permit(decide_family_answer(
        false,
        Some("Patient/p"),
        None,
        "p"
    )));
    assert!(!permit(decide_family_answer(true, None, None, "p")));
    assert!(!permit(decide_family_answer(
        true,
        Some("Patient/p"),
        Some("Practitioner/dr"),
        "p"
    )));
    assert!(!permit(decide_family_answer(
        true,
        Some("RelatedPerson/m"),
        Some("RelatedPerson/other"),
        "p"
    )));
}
