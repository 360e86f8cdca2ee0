//! The demo's referrals (illustrative, deterministic from the seed): a few hundred
//! ServiceRequest + Task pairs from the community practices to both members' services and
//! between the two members (adolescents to adult care, children seen at the adult system to
//! pediatric specialists), written over the last six months with realistic timings — most
//! accepted within days, booked, seen and closed with a consult note; some declined or
//! cancelled with their reasons; some still waiting, a few of them overdue — so worklists and
//! measures show something real. The referring practice is on each child's care team.

use rand::{Rng, RngCore};
use serde_json::{Value, json};

use super::data::PRACTICES;
use super::tag;
use care::referral::service_level::{self, Calendar, Priority, ServiceLevels};
use care::referral::{BusinessStatus, Progress, TaskStatus};

const DAY: i64 = 86_400_000;

const DECLINED: &[&str] = &[
    "Outside the ages this service sees; please refer to the adult clinic",
    "Needs a primary-care work-up first (labs and growth chart)",
    "Already followed by another specialist for this problem",
    "Not offered at the sites near the family; referred on",
];
const CANCELLED: &[&str] = &[
    "The family chose care closer to home",
    "Symptoms resolved before the visit",
    "Duplicate of an earlier referral",
];
const REASONS: &[&str] = &[
    "Specialist evaluation requested by the primary-care clinician",
    "Follow-up of an abnormal finding",
    "Second opinion on the treatment plan",
    "Ongoing management of a chronic condition",
];

/// Adds the referrals, their ServiceRequests, the consult notes of those completed and the
/// referring practices' care teams — and the README's child, Mateo Rivera (9), a patient of
/// Shoreline Pediatrics, not yet referred.
pub(super) fn add(out: &mut Vec<Value>, rng: &mut impl RngCore, now_ms: i64) {
    let birth = now_ms - (9 * 36525 / 100 + 120) * DAY;
    let (y, m, d) = care::slots::civil_from_days(birth.div_euclid(DAY));
    out.push(json!({"resourceType": "Patient", "id": "demo-mateo", "meta": tag(),
        "identifier": [{"system": "urn:mrn:shoreline-peds", "value": "S-MATEO"}],
        "name": [{"family": "Rivera", "given": ["Mateo"]}], "gender": "male",
        "birthDate": format!("{y:04}-{m:02}-{d:02}"),
        "address": [{"use": "home", "line": ["14 Main Street"], "city": "Old Saybrook", "state": "CT", "postalCode": "06475", "country": "US"}],
        "managingOrganization": {"reference": "Organization/shoreline-peds"},
        "generalPractitioner": [{"reference": "Organization/shoreline-peds", "display": "Shoreline Pediatrics"}]}));
    let services: Vec<(String, String, String)> = out
        .iter()
        .filter(|r| r["resourceType"] == "HealthcareService")
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_string(),
                s["providedBy"]["reference"]
                    .as_str()?
                    .trim_start_matches("Organization/")
                    .to_string(),
                s["specialty"][0]["text"]
                    .as_str()
                    .unwrap_or("Specialty care")
                    .to_string(),
            ))
        })
        .filter(|(id, _, _)| !id.ends_with("psychiatry"))
        .collect();
    // each service's first site, for the visits
    let sites: std::collections::HashMap<String, String> = out
        .iter()
        .filter(|r| r["resourceType"] == "HealthcareService")
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_string(),
                s["location"][0]["reference"].as_str()?.to_string(),
            ))
        })
        .collect();
    let children: Vec<(String, String, i64)> = out
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .filter(|r| {
            r["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("demo-pat-"))
        })
        .filter_map(|p| {
            let birth = care::access::BirthDate::parse(p["birthDate"].as_str()?)?;
            Some((
                p["id"].as_str()?.to_string(),
                p["managingOrganization"]["reference"]
                    .as_str()?
                    .trim_start_matches("Organization/")
                    .to_string(),
                i64::from(care::access::age_on(birth, now_ms)),
            ))
        })
        .collect();
    if services.is_empty() || children.is_empty() {
        return;
    }
    let levels = ServiceLevels::default();
    let calendar = Calendar::default();
    let pick = |org: &str, rng: &mut dyn RngCore| -> (String, String, String) {
        let of: Vec<&(String, String, String)> = services.iter().filter(|s| s.1 == org).collect();
        of[rng.random_range(0..of.len())].clone()
    };
    let mut teams = std::collections::BTreeSet::new();
    for k in 0..320usize {
        let (patient, registered, age) = children[(k * 37 + 3) % children.len()].clone();
        // who refers to whom: mostly a practice; one in ten between the members
        let (requester, (service, owner_org, specialty)) = if k % 10 == 0 {
            if age >= 17 {
                ("cc".to_string(), pick("hhc", rng))
            } else {
                ("hhc".to_string(), pick("cc", rng))
            }
        } else {
            let practice = PRACTICES[k % PRACTICES.len()].0.to_string();
            let to = if age >= 18 { "hhc" } else { "cc" };
            (practice, pick(to, rng))
        };
        if requester != registered && teams.insert((patient.clone(), requester.clone())) {
            out.push(
                json!({"resourceType": "CareTeam", "id": format!("demo-pc-{k}"), "meta": tag(),
                "status": "active", "name": "Primary and referring care",
                "subject": {"reference": format!("Patient/{patient}")},
                "managingOrganization": [{"reference": format!("Organization/{requester}")}]}),
            );
        }
        let priority = match rng.random_range(0..100) {
            0..70 => Priority::Routine,
            70..90 => Priority::Urgent,
            90..98 => Priority::Asap,
            _ => Priority::Stat,
        };
        // written over the last 180 days, in office hours
        let days_ago = rng.random_range(0..180);
        let authored = care::slots::local_to_utc(
            care::slots::local_day(now_ms) - days_ago,
            8 * 60 + rng.random_range(0..9 * 60),
        )
        .min(now_ms - 60_000);
        let due = service_level::due(authored, priority, &levels, &calendar);
        let l = levels.of(priority);
        // what happened, and when (a step later than now has not happened yet)
        let fate = rng.random_range(0..100);
        let mut progress = Progress::default();
        let mut status = TaskStatus::Requested;
        let mut business = BusinessStatus::Created;
        let mut reason: Option<&str> = None;
        let at = |business_days: i64, rng: &mut dyn RngCore| -> i64 {
            let day = calendar.add_business_days(
                care::slots::local_day(authored),
                business_days.max(0) as u32,
            );
            care::slots::local_to_utc(day, 9 * 60 + rng.random_range(0..8 * 60))
                .max(authored + 60_000)
        };
        let stuck = fate < 6; // never answered: overdue once its time has passed
        // the visit a booked referral leads to: held (or missed), or still ahead
        let mut visit: Option<(i64, &str)> = None;
        if !stuck {
            // answered within the level mostly, sometimes late
            let answer = at(
                i64::from(l.accept) + if rng.random_range(0..10) == 0 { 3 } else { 0 }
                    - i64::from(rng.random_range(0..=l.accept.min(2))),
                rng,
            );
            if answer <= now_ms {
                if fate < 14 {
                    status = TaskStatus::Rejected;
                    business = BusinessStatus::Declined;
                    reason = Some(DECLINED[k % DECLINED.len()]);
                    progress.closed_ms = Some(answer);
                } else if fate < 19 {
                    status = TaskStatus::Cancelled;
                    business = BusinessStatus::FulfillmentCancelled;
                    reason = Some(CANCELLED[k % CANCELLED.len()]);
                    progress.closed_ms = Some(answer);
                } else {
                    status = TaskStatus::Accepted;
                    business = BusinessStatus::Accepted;
                    progress.accepted_ms = Some(answer);
                    let booked = at(
                        i64::from(l.book) - i64::from(rng.random_range(0..=l.book.min(6))),
                        rng,
                    )
                    .max(answer + 3_600_000);
                    if booked <= now_ms {
                        status = TaskStatus::InProgress;
                        business = BusinessStatus::Scheduled;
                        progress.booked_ms = Some(booked);
                        let seen = (booked + i64::from(rng.random_range(3..20)) * DAY)
                            .min(due.seen_ms + if fate > 92 { 5 * DAY } else { 0 })
                            .max(booked + DAY);
                        visit = Some((
                            seen,
                            if seen > now_ms {
                                "booked"
                            } else if fate > 96 {
                                "noshow"
                            } else {
                                "fulfilled"
                            },
                        ));
                        if seen <= now_ms {
                            if fate > 96 {
                                business = BusinessStatus::Unattended;
                            } else {
                                business = BusinessStatus::EventCompleted;
                                progress.seen_ms = Some(seen);
                                let report = seen + i64::from(rng.random_range(1..8)) * DAY;
                                if report <= now_ms && fate % 7 != 0 {
                                    status = TaskStatus::Completed;
                                    business = BusinessStatus::FulfillmentCompleted;
                                    progress.reported_ms = Some(report);
                                    progress.closed_ms = Some(report);
                                }
                            }
                        }
                    }
                }
            }
        }
        let last = [
            Some(authored),
            progress.accepted_ms,
            progress.booked_ms,
            progress.seen_ms,
            progress.closed_ms,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(authored);
        let sr_id = format!("demo-sr-{k}");
        let task_id = format!("demo-ref-{k}");
        let reason_text = REASONS[k % REASONS.len()];
        let sr_status = match status {
            TaskStatus::Completed => "completed",
            TaskStatus::Rejected | TaskStatus::Cancelled => "revoked",
            _ => "active",
        };
        out.push(
            json!({"resourceType": "ServiceRequest", "id": sr_id, "meta": tag(),
            "status": sr_status, "intent": "order", "priority": priority.code(),
            "code": {"text": format!("Referral to {specialty}")},
            "subject": {"reference": format!("Patient/{patient}")},
            "requester": {"reference": format!("Organization/{requester}")},
            "performer": [{"reference": format!("HealthcareService/{service}")}],
            "reasonCode": [{"text": reason_text}],
            "authoredOn": fhir::primitive::format_instant(authored)}),
        );
        let mut task = json!({"resourceType": "Task", "id": task_id, "meta": tag(),
            "status": status.code(), "intent": "order", "priority": priority.code(),
            "code": {"text": format!("Referral to {specialty}")},
            "focus": {"reference": format!("ServiceRequest/{sr_id}")},
            "for": {"reference": format!("Patient/{patient}")},
            "requester": {"reference": format!("Organization/{requester}")},
            "owner": {"reference": format!("HealthcareService/{service}")},
            "reasonCode": {"text": reason_text},
            "businessStatus": business.concept(),
            "authoredOn": fhir::primitive::format_instant(authored),
            "lastModified": fhir::primitive::format_instant(last)});
        if let Some(r) = reason {
            task["statusReason"] = json!({"text": r});
        }
        if status == TaskStatus::Completed {
            let note = format!("demo-consult-{k}");
            out.push(json!({"resourceType": "DocumentReference", "id": note, "meta": tag(),
                "status": "current", "type": {"text": "Consult note"},
                "subject": {"reference": format!("Patient/{patient}")},
                "date": fhir::primitive::format_instant(progress.reported_ms.unwrap_or(last)),
                "author": [{"reference": format!("Organization/{owner_org}")}],
                "content": [{"attachment": {"contentType": "text/plain", "title": "Consult note (illustrative)",
                    "data": "SWxsdXN0cmF0aXZlIGNvbnN1bHQgbm90ZTogbm90IGEgcmVhbCByZWNvcmQu"}}]}));
            task["output"] = json!([{"type": {"text": "Consult note"}, "valueReference": {"reference": format!("DocumentReference/{note}")}}]);
        }
        due.write_into(&mut task);
        progress.write_into(&mut task);
        out.push(task);
        // the visit, at the service's site or (three in ten) by video
        if let Some((start, visit_status)) = visit {
            let video = k % 10 < 3;
            let mut participants = vec![
                json!({"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}),
                json!({"actor": {"reference": format!("HealthcareService/{service}")}, "status": "accepted"}),
            ];
            if let (false, Some(site)) = (video, sites.get(&service)) {
                participants.push(json!({"actor": {"reference": site}, "status": "accepted"}));
            }
            let mut appointment = json!({"resourceType": "Appointment", "id": format!("demo-visit-{k}"), "meta": tag(),
                "status": visit_status,
                "serviceType": [{"text": specialty}],
                "start": fhir::primitive::format_instant(start),
                "end": fhir::primitive::format_instant(start + 30 * 60_000),
                "participant": participants});
            if video {
                appointment["extension"] =
                    json!([{"url": care::profile::MODALITY, "valueCode": "video"}]);
            }
            out.push(appointment);
        }
    }
}
