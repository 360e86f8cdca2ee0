//! The referral machine played as a table: every from × to × side, against the rules as
//! domain-rules.md writes them (spelled here independently of `TaskStatus::next`).

use serde_json::json;

use super::metrics::{GroupBy, ReferralRecord, measure};
use super::service_level::{self, Calendar, Priority, ServiceLevels, SlaState};
use super::*;

/// domain-rules.md, "Referrals": the allowed moves.
const MOVES: &[(&str, &[&str])] = &[
    ("draft", &["requested", "cancelled", "entered-in-error"]),
    (
        "requested",
        &["received", "accepted", "rejected", "cancelled"],
    ),
    ("received", &["accepted", "rejected", "cancelled"]),
    ("accepted", &["in-progress", "cancelled"]),
    (
        "in-progress",
        &["on-hold", "completed", "failed", "cancelled"],
    ),
    ("on-hold", &["in-progress", "cancelled"]),
];
/// Who sets what.
const OWNER_SETS: &[&str] = &[
    "received",
    "accepted",
    "rejected",
    "in-progress",
    "on-hold",
    "failed",
    "completed",
];
const REQUESTER_SETS: &[&str] = &["draft", "requested", "entered-in-error"];

fn allowed(from: &str, to: &str) -> bool {
    MOVES.iter().any(|(f, tos)| *f == from && tos.contains(&to))
}

fn side_may(to: &str, p: Parties) -> bool {
    (to == "cancelled" && (p.owner || p.requester))
        || (OWNER_SETS.contains(&to) && p.owner)
        || (REQUESTER_SETS.contains(&to) && p.requester)
}

#[test]
fn every_move_by_every_side() {
    let sides = [
        (
            "requester",
            Parties {
                requester: true,
                owner: false,
            },
        ),
        (
            "owner",
            Parties {
                requester: false,
                owner: true,
            },
        ),
        ("neither", Parties::default()),
        ("both", Parties::BOTH),
    ];
    let mut checked = 0;
    for (name, parties) in sides {
        // creation
        for to in TaskStatus::ALL {
            let got = check_move(None, to, parties);
            let start = matches!(to.code(), "draft" | "requested");
            let want_ok = start && side_may(to.code(), parties);
            assert_eq!(got.is_ok(), want_ok, "create as {to} by {name}: {got:?}");
            if !start {
                assert_eq!(got.unwrap_err().http_status(), 409);
            }
            checked += 1;
        }
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                let got = check_move(Some(from), to, parties);
                checked += 1;
                if from == to {
                    assert!(got.is_ok(), "staying {from} by {name}");
                    continue;
                }
                let legal = allowed(from.code(), to.code());
                let want_ok = legal && side_may(to.code(), parties);
                assert_eq!(got.is_ok(), want_ok, "{from} → {to} by {name}: {got:?}");
                match got {
                    Err(r @ Refusal::NoSuchMove { .. }) => {
                        assert!(!legal);
                        assert_eq!(r.http_status(), 409);
                        let text = r.to_string();
                        if let Refusal::NoSuchMove { allowed: ref a, .. } = r {
                            // the allowed moves named are exactly those this side may make
                            let mut want: Vec<&str> = TaskStatus::ALL
                                .iter()
                                .map(|s| s.code())
                                .filter(|t| allowed(from.code(), t) && side_may(t, parties))
                                .collect();
                            let mut have: Vec<&str> = a.iter().map(|s| s.code()).collect();
                            want.sort_unstable();
                            have.sort_unstable();
                            assert_eq!(have, want, "{from} → {to} by {name}");
                            for t in want {
                                assert!(text.contains(t), "{text}");
                            }
                        }
                    }
                    Err(r @ Refusal::OtherSide { .. }) => {
                        assert!(legal);
                        assert_eq!(r.http_status(), 403);
                    }
                    Err(other) => panic!("{other:?}"),
                    Ok(()) => {}
                }
            }
        }
    }
    assert_eq!(checked, 4 * (12 + 12 * 12));
}

#[test]
fn the_words_name_the_way_forward() {
    let owner = Parties {
        requester: false,
        owner: true,
    };
    let r = check_move(Some(TaskStatus::Completed), TaskStatus::Requested, owner).unwrap_err();
    assert_eq!(
        r.to_string(),
        "a referral that is completed cannot become requested: completed is final"
    );
    let r = check_move(Some(TaskStatus::Requested), TaskStatus::Completed, owner).unwrap_err();
    assert_eq!(
        r.to_string(),
        "a referral that is requested cannot become completed; allowed from requested: received, accepted, rejected, cancelled"
    );
    let requester = Parties {
        requester: true,
        owner: false,
    };
    let r = check_move(Some(TaskStatus::Requested), TaskStatus::Accepted, requester).unwrap_err();
    assert_eq!(
        r.to_string(),
        "only the receiving organisation may set a referral to accepted"
    );
}

#[test]
fn what_a_referral_must_carry() {
    let ok = json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "focus": {"reference": "ServiceRequest/sr"}, "for": {"reference": "Patient/p"},
        "requester": {"reference": "Organization/a"}, "owner": {"reference": "Organization/b"}});
    assert!(missing_parts(&ok).is_empty());
    let where_ = |t: serde_json::Value| -> Vec<&'static str> {
        missing_parts(&t).into_iter().map(|(at, _)| at).collect()
    };
    assert_eq!(
        where_(json!({"resourceType": "Task", "status": "requested", "intent": "order"})),
        vec!["Task.focus", "Task.for", "Task.requester", "Task.owner"]
    );
    let mut t = ok.clone();
    t["focus"] = json!({"reference": "Patient/p"});
    assert_eq!(where_(t), vec!["Task.focus"]);
    let mut t = ok.clone();
    t["status"] = json!("rejected");
    assert_eq!(where_(t.clone()), vec!["Task.statusReason"]);
    t["statusReason"] = json!({"text": "  "});
    assert_eq!(where_(t.clone()), vec!["Task.statusReason"]);
    t["statusReason"] = json!({"text": "no capacity this quarter"});
    assert!(where_(t).is_empty());
    let mut t = ok.clone();
    t["status"] = json!("completed");
    t["output"] =
        json!([{"type": {"text": "note"}, "valueReference": {"reference": "Observation/o"}}]);
    assert_eq!(where_(t.clone()), vec!["Task.output"]);
    t["output"] = json!([{"type": {"text": "consult note"}, "valueReference": {"reference": "DocumentReference/d"}}]);
    assert!(where_(t.clone()).is_empty());
    assert_eq!(consult_note(&t).as_deref(), Some("DocumentReference/d"));
    // a draft may not know its receiver yet
    let mut t = ok;
    t["status"] = json!("draft");
    t.as_object_mut().unwrap().remove("owner");
    assert!(where_(t).is_empty());
}

fn day(y: i32, m: u32, d: u32) -> i64 {
    crate::slots::days_from_civil(y, m, d)
}

/// 10:00 US Eastern on a day.
fn at10(y: i32, m: u32, d: u32) -> i64 {
    crate::slots::local_to_utc(day(y, m, d), 600)
}

#[test]
fn service_levels_count_business_days() {
    // Christmas 2026 is a Friday
    let cal = Calendar::with_holidays(["2026-12-25"]).unwrap();
    assert!(Calendar::with_holidays(["2026-13-01"]).is_err());
    let levels = ServiceLevels::default();
    // written Monday 21 December 2026, routine: accept by the 3rd business day (Thursday 24th)
    let d = service_level::due(at10(2026, 12, 21), Priority::Routine, &levels, &cal);
    assert_eq!(crate::slots::local_day(d.accept_ms), day(2026, 12, 24));
    assert_eq!(
        d.accept_ms,
        crate::slots::local_to_utc(day(2026, 12, 25), 0) - 1,
        "the end of the day"
    );
    // 14 business days: 22,23,24,28,29,30,31 Dec, 1 Jan (a business day here), 4..8, 11 Jan
    assert_eq!(crate::slots::local_day(d.book_ms), day(2027, 1, 11));
    // urgent, written on Thursday 24th: accept by Monday 28th (the 25th is a holiday)
    let d = service_level::due(at10(2026, 12, 24), Priority::Urgent, &levels, &cal);
    assert_eq!(crate::slots::local_day(d.accept_ms), day(2026, 12, 28));
    // stat on a Saturday: the same business day = Monday
    let d = service_level::due(at10(2026, 12, 26), Priority::Stat, &levels, &cal);
    assert_eq!(crate::slots::local_day(d.seen_ms), day(2026, 12, 28));
    // urgent on a Saturday: the first business day after it = Monday, not Tuesday
    let d = service_level::due(at10(2026, 12, 26), Priority::Urgent, &levels, &cal);
    assert_eq!(crate::slots::local_day(d.accept_ms), day(2026, 12, 28));
    assert_eq!(
        cal.business_days_between(at10(2026, 12, 26), d.accept_ms),
        1
    );
    assert_eq!(
        cal.business_days_between(at10(2026, 12, 24), at10(2026, 12, 28)),
        1
    );
    assert_eq!(
        cal.business_days_between(at10(2026, 12, 21), at10(2026, 12, 21)),
        0
    );
}

#[test]
fn where_a_referral_stands() {
    let cal = Calendar::default();
    let levels = ServiceLevels::default();
    // Monday 7 December 2026, routine: accept due Thursday 10th
    let d = service_level::due(at10(2026, 12, 7), Priority::Routine, &levels, &cal);
    let p = Progress::default();
    let next = service_level::next_due(&p, &d);
    assert_eq!(next, Some(d.accept_ms));
    assert_eq!(
        service_level::sla_state(next, at10(2026, 12, 7), &cal),
        SlaState::OnTrack
    );
    assert_eq!(
        service_level::sla_state(next, at10(2026, 12, 9), &cal),
        SlaState::AtRisk
    );
    assert_eq!(
        service_level::sla_state(next, at10(2026, 12, 10), &cal),
        SlaState::AtRisk
    );
    assert_eq!(
        service_level::sla_state(next, at10(2026, 12, 11), &cal),
        SlaState::Overdue
    );
    let p = Progress {
        accepted_ms: Some(at10(2026, 12, 8)),
        ..Default::default()
    };
    assert_eq!(service_level::next_due(&p, &d), Some(d.book_ms));
    let p = Progress {
        closed_ms: Some(at10(2026, 12, 8)),
        ..Default::default()
    };
    assert_eq!(
        service_level::sla_state(service_level::next_due(&p, &d), at10(2027, 3, 1), &cal),
        SlaState::Closed
    );
}

#[test]
fn milestones_are_kept_and_added() {
    let now = at10(2026, 12, 7);
    let mut t = json!({"resourceType": "Task", "status": "accepted", "focus": {"reference": "ServiceRequest/s"}});
    let p = Progress::after(Progress::default(), &t, now);
    assert_eq!(p.accepted_ms, Some(now));
    p.write_into(&mut t);
    assert_eq!(Progress::of(&t), p);
    // later writes keep the first time
    t["status"] = json!("in-progress");
    t["businessStatus"] = BusinessStatus::Scheduled.concept();
    let q = Progress::after(Progress::of(&t), &t, now + 1000);
    assert_eq!(q.accepted_ms, Some(now));
    assert_eq!(q.booked_ms, Some(now + 1000));
    t["output"] = json!([{"valueReference": {"reference": "DocumentReference/d"}}]);
    t["status"] = json!("completed");
    let r = Progress::after(q, &t, now + 2000);
    assert_eq!(
        (r.reported_ms, r.closed_ms),
        (Some(now + 2000), Some(now + 2000))
    );
    let due = Due {
        accept_ms: 1,
        book_ms: 2,
        seen_ms: 3,
    };
    due.write_into(&mut t);
    r.write_into(&mut t);
    assert_eq!(Due::of(&t), Some(due));
    assert_eq!(Progress::of(&t), r);
    assert_eq!(business_status_of(&t), Some(BusinessStatus::Scheduled));
}

fn record(
    id: &str,
    patient: &str,
    owner: &str,
    status: TaskStatus,
    authored: i64,
    p: Progress,
) -> ReferralRecord {
    let due = service_level::due(
        authored,
        Priority::Routine,
        &ServiceLevels::default(),
        &Calendar::default(),
    );
    ReferralRecord {
        task_id: id.into(),
        patient_id: patient.into(),
        requester_org: "community".into(),
        owner_org: owner.into(),
        service: "cardiology".into(),
        priority: Priority::Routine,
        status,
        authored_ms: authored,
        progress: p,
        due,
    }
}

#[test]
fn measures_count_what_happened() {
    let cal = Calendar::default();
    let t0 = at10(2026, 11, 2); // a Monday
    let dayms = 86_400_000;
    let closed = |accept: i64, book: i64, seen: i64, report: i64| Progress {
        accepted_ms: Some(t0 + accept * dayms),
        booked_ms: Some(t0 + book * dayms),
        seen_ms: Some(t0 + seen * dayms),
        reported_ms: Some(t0 + report * dayms),
        closed_ms: Some(t0 + report * dayms),
    };
    let rs = vec![
        // p1: two referrals, the first closed the loop
        record(
            "a",
            "p1",
            "cc",
            TaskStatus::Completed,
            t0,
            closed(1, 3, 10, 11),
        ),
        record(
            "b",
            "p1",
            "cc",
            TaskStatus::Requested,
            t0 + dayms,
            Progress::default(),
        ),
        // p2: rejected on day 2
        record(
            "c",
            "p2",
            "cc",
            TaskStatus::Rejected,
            t0,
            Progress {
                closed_ms: Some(t0 + 2 * dayms),
                ..Default::default()
            },
        ),
        // p3: accepted late (day 7 = 5 business days), seen, no report yet
        record(
            "d",
            "p3",
            "hhc",
            TaskStatus::InProgress,
            t0,
            Progress {
                accepted_ms: Some(t0 + 7 * dayms),
                booked_ms: Some(t0 + 8 * dayms),
                seen_ms: Some(t0 + 9 * dayms),
                ..Default::default()
            },
        ),
        // outside the period
        record(
            "e",
            "p4",
            "cc",
            TaskStatus::Requested,
            t0 - 40 * dayms,
            Progress::default(),
        ),
    ];
    let now = t0 + 20 * dayms;
    let all = measure(&rs, t0, t0 + 30 * dayms, now, GroupBy::Nothing, &cal);
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(
        (m.volume, m.accepted, m.rejected, m.completed, m.open),
        (4, 2, 1, 1, 2)
    );
    assert_eq!(m.acceptance_rate(), Some(2.0 / 3.0));
    // days to accept: a = 1 business day, d = 5 → median 3
    assert_eq!(m.median_days_to_accept, Some(3.0));
    // within service level: a (accepted day 1, booked day 3, seen day 10 ≤ 30) and c (rejected
    // in time); b is overdue for acceptance by now; d accepted late
    assert_eq!(m.within_service_level, 2);
    // CMS50: first referrals of p1, p2, p3 → only p1's has its report
    assert_eq!(
        (m.loop_closure.denominator, m.loop_closure.numerator),
        (3, 1)
    );
    assert_eq!(m.leakage(), 1);
    let by_org = measure(
        &rs,
        t0,
        t0 + 30 * dayms,
        now,
        GroupBy::Organization { sent: false },
        &cal,
    );
    let groups: Vec<(&str, u64)> = by_org
        .iter()
        .map(|m| (m.group.as_str(), m.volume))
        .collect();
    assert_eq!(groups, vec![("cc", 3), ("hhc", 1)]);
    let by_month = measure(
        &rs,
        t0 - 50 * dayms,
        t0 + 30 * dayms,
        now,
        GroupBy::Month,
        &cal,
    );
    let months: Vec<&str> = by_month.iter().map(|m| m.group.as_str()).collect();
    assert_eq!(months, vec!["2026-09", "2026-11"]);
    // the old one has expired (open past its time to be seen)
    assert_eq!(by_month[0].expired, 1);
}

#[test]
fn business_days_are_counted_exactly() {
    let cal = Calendar::with_holidays(["2026-12-25", "2027-01-01", "2026-12-26"]).unwrap();
    let start = crate::slots::local_to_utc(day(2026, 11, 20), 600);
    for a in 0..40 {
        for b in 0..70 {
            let (from, to) = (start + a * 86_400_000, start + b * 86_400_000);
            let (da, db) = (crate::slots::local_day(from), crate::slots::local_day(to));
            let counted = if db <= da {
                0
            } else {
                (da + 1..=db).filter(|d| cal.is_business_day(*d)).count() as i64
            };
            assert_eq!(cal.business_days_between(from, to), counted, "{a} {b}");
        }
    }
}
