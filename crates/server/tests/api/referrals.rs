//! Closed-loop referrals over HTTP (issue 18): the Task machine's whole table played as PUTs
//! and as transaction entries by each side; a referral from a community pediatrician to
//! pediatric cardiology walked to a closed loop; the refusals of bad input, nothing written;
//! worklists and the service-level job under a moving clock; the measures on a synthetic
//! history against answers computed here.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{Engine, TestApp};

const DAY: i64 = 86_400_000;

/// Monday 7 December 2026, 10:00 US Eastern.
fn monday_ten() -> i64 {
    care::slots::local_to_utc(care::slots::days_from_civil(2026, 12, 7), 600)
}

struct World {
    app: TestApp,
    clock: Arc<care::FixedClock>,
    shore: reqwest::Client,
    cc: reqwest::Client,
    hhc: reqwest::Client,
}

async fn world(engine: Engine) -> World {
    let clock = Arc::new(care::FixedClock::at(monday_ten()));
    let app = TestApp::spawn_with_clock(engine, Default::default(), clock.clone()).await;
    for (id, name, email) in [
        (
            "shore",
            "Shoreline Pediatrics",
            "referrals@shoreline.example",
        ),
        ("cc", "Connecticut Children's", "intake@cc.example"),
        ("hhc", "Hartford HealthCare", "intake@hhc.example"),
    ] {
        app.upsert(
            json!({"resourceType": "Organization", "id": id, "name": name,
            "telecom": [{"system": "email", "value": email}]}),
        )
        .await;
    }
    app.upsert(json!({"resourceType": "Practitioner", "id": "sp1", "name": [{"family": "Shore", "given": ["Sam"]}]}))
        .await;
    app.upsert(json!({"resourceType": "PractitionerRole", "id": "sp1-role", "practitioner": {"reference": "Practitioner/sp1"},
        "organization": {"reference": "Organization/shore"}, "telecom": [{"system": "email", "value": "sam@shoreline.example"}]}))
        .await;
    app.upsert(json!({"resourceType": "HealthcareService", "id": "cardio", "name": "Pediatric Cardiology",
        "providedBy": {"reference": "Organization/cc"}, "telecom": [{"system": "email", "value": "cardiology@cc.example"}]}))
        .await;
    app.upsert(json!({"resourceType": "HealthcareService", "id": "neuro", "name": "Pediatric Neurology",
        "providedBy": {"reference": "Organization/cc"}, "telecom": [{"system": "email", "value": "neurology@cc.example"}]}))
        .await;
    app.upsert(json!({"resourceType": "Location", "id": "site", "name": "Hartford campus", "managingOrganization": {"reference": "Organization/cc"}}))
        .await;
    app.upsert(
        json!({"resourceType": "Schedule", "id": "sch", "active": true,
        "actor": [{"reference": "HealthcareService/cardio"}, {"reference": "Location/site"}]}),
    )
    .await;
    // a 9-year-old registered with the community practice; cc is on the care team as well
    app.upsert(json!({"resourceType": "Patient", "id": "kid", "name": [{"family": "Rivera", "given": ["Mateo"]}],
        "birthDate": "2017-03-14", "managingOrganization": {"reference": "Organization/shore"},
        "address": [{"use": "home", "city": "New London", "state": "CT", "postalCode": "06320"}]}))
        .await;
    app.upsert(json!({"resourceType": "CareTeam", "id": "kid-team", "status": "active", "subject": {"reference": "Patient/kid"},
        "managingOrganization": [{"reference": "Organization/cc"}]}))
        .await;
    app.upsert(json!({"resourceType": "DocumentReference", "id": "note1", "status": "current", "subject": {"reference": "Patient/kid"},
        "type": {"text": "Consult note"}, "content": [{"attachment": {"contentType": "text/plain", "data": "Q29uc3VsdCBub3Rl"}}]}))
        .await;
    let shore = app.client_with(
        &app.token_for(
            "user/*.cruds",
            &["referring-clinician@shore"],
            &["Practitioner/sp1"],
        )
        .await,
    );
    let cc = app.client_with(
        &app.token_for("user/*.cruds", &["coordinator@cc"], &[])
            .await,
    );
    let hhc = app.client_with(
        &app.token_for("user/*.cruds", &["coordinator@hhc"], &[])
            .await,
    );
    World {
        app,
        clock,
        shore,
        cc,
        hhc,
    }
}

async fn send_json(
    app: &TestApp,
    req: reqwest::RequestBuilder,
    body: &Value,
) -> crate::helpers::Resp {
    app.send(
        req.header("Content-Type", "application/fhir+json")
            .body(body.to_string()),
    )
    .await
}

/// A ServiceRequest for the kid (no requester or performer: it makes no care relationship).
async fn service_request(app: &TestApp) -> String {
    let sr = app
        .create(
            json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/kid"}}),
        )
        .await;
    sr["id"].as_str().unwrap().to_string()
}

fn referral(sr: &str, status: &str) -> Value {
    json!({"resourceType": "Task", "status": status, "intent": "order", "priority": "routine",
        "focus": {"reference": format!("ServiceRequest/{sr}")}, "for": {"reference": "Patient/kid"},
        "requester": {"reference": "PractitionerRole/sp1-role"}, "owner": {"reference": "HealthcareService/cardio"}})
}

/// `task` moved to `to`, with what the move needs (a reason, the consult note).
fn moved(mut task: Value, to: &str) -> Value {
    task.as_object_mut().unwrap().remove("meta");
    task["status"] = json!(to);
    if matches!(to, "rejected" | "cancelled" | "failed") {
        task["statusReason"] = json!({"text": "no longer needed"});
    }
    if to == "completed" {
        task["output"] = json!([{"type": {"text": "consult note"}, "valueReference": {"reference": "DocumentReference/note1"}}]);
    }
    task
}

/// How a status is reached from creation, by the system (both sides).
fn path_to(status: &str) -> (&'static str, Vec<&'static str>) {
    match status {
        "draft" => ("draft", vec![]),
        "entered-in-error" => ("draft", vec!["entered-in-error"]),
        "requested" => ("requested", vec![]),
        "received" => ("requested", vec!["received"]),
        "accepted" => ("requested", vec!["accepted"]),
        "rejected" => ("requested", vec!["rejected"]),
        "cancelled" => ("requested", vec!["cancelled"]),
        "in-progress" => ("requested", vec!["accepted", "in-progress"]),
        "on-hold" => ("requested", vec!["accepted", "in-progress", "on-hold"]),
        "completed" => ("requested", vec!["accepted", "in-progress", "completed"]),
        "failed" => ("requested", vec!["accepted", "in-progress", "failed"]),
        other => panic!("no path to {other}"),
    }
}

/// A referral in `status`, reached by allowed moves.
async fn referral_at(app: &TestApp, status: &str) -> String {
    let sr = service_request(app).await;
    let (start, moves) = path_to(status);
    let created = app.create(referral(&sr, start)).await;
    let id = created["id"].as_str().unwrap().to_string();
    for to in moves {
        let current = app.get(&format!("Task/{id}")).await.json();
        let r = app.put(&format!("Task/{id}"), &moved(current, to)).await;
        assert_eq!(r.status, 200, "reaching {status} ({to}): {}", r.text);
    }
    id
}

/// domain-rules.md, "Referrals" — written here independently of the server.
fn legal(from: &str, to: &str) -> bool {
    let moves: &[(&str, &[&str])] = &[
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
    moves.iter().any(|(f, t)| *f == from && t.contains(&to))
}

fn side_may(to: &str, owner: bool) -> bool {
    let owner_sets = [
        "received",
        "accepted",
        "rejected",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "ready",
    ];
    to == "cancelled" || (owner == owner_sets.contains(&to))
}

const STATUSES: [&str; 12] = [
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "ready",
    "cancelled",
    "in-progress",
    "on-hold",
    "failed",
    "completed",
    "entered-in-error",
];

async fn put_status(
    w: &World,
    client: &reqwest::Client,
    id: &str,
    to: &str,
    in_transaction: bool,
) -> crate::helpers::Resp {
    let current = w.app.get(&format!("Task/{id}")).await.json();
    let body = moved(current, to);
    if in_transaction {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": format!("{}/Task/{id}", w.app.base), "resource": body, "request": {"method": "PUT", "url": format!("Task/{id}")}}]});
        send_json(&w.app, client.post(w.app.url("")), &bundle).await
    } else {
        send_json(&w.app, client.put(w.app.url(&format!("Task/{id}"))), &body).await
    }
}

/// Every from × to × side, as a PUT and as a transaction entry: allowed moves answer 200,
/// moves the machine lacks 409 naming the allowed ones, the other side's moves 403; and a
/// referral is created as draft or requested by the referring side only.
async fn every_move_by_each_side_over_http(engine: Engine) {
    let w = world(engine).await;
    let sides = [("requester", false), ("owner", true)];
    // creation
    for (side, owner) in sides {
        let client = if owner { &w.cc } else { &w.shore };
        for to in STATUSES {
            let sr = service_request(&w.app).await;
            let r = send_json(
                &w.app,
                client.post(w.app.url("Task")),
                &moved(referral(&sr, "requested"), to),
            )
            .await;
            let want = if !matches!(to, "draft" | "requested") {
                409
            } else if owner {
                403
            } else {
                201
            };
            assert_eq!(r.status, want, "create as {to} by the {side}: {}", r.text);
        }
    }
    for from in STATUSES.iter().filter(|s| **s != "ready") {
        let standing = referral_at(&w.app, from).await;
        for to in STATUSES {
            for (side, owner) in sides {
                let client = if owner { &w.cc } else { &w.shore };
                let want = if *from == to {
                    200
                } else if !legal(from, to) {
                    409
                } else if !side_may(to, owner) {
                    403
                } else {
                    200
                };
                for in_transaction in [false, true] {
                    let id = if want == 200 && *from != to {
                        referral_at(&w.app, from).await
                    } else {
                        standing.clone()
                    };
                    let before = w.app.get(&format!("Task/{id}")).await.json();
                    let r = put_status(&w, client, &id, to, in_transaction).await;
                    let how = if in_transaction {
                        "a transaction entry"
                    } else {
                        "a PUT"
                    };
                    assert_eq!(
                        r.status, want,
                        "{from} → {to} by the {side} as {how}: {}",
                        r.text
                    );
                    let after = w.app.get(&format!("Task/{id}")).await.json();
                    if want == 409 {
                        assert_eq!(r.issue_code(), "conflict", "{}", r.text);
                        // the refusal names the moves this side may make
                        for t in STATUSES
                            .iter()
                            .filter(|t| legal(from, t) && side_may(t, owner))
                        {
                            assert!(
                                r.text.contains(t),
                                "{from} → {to}: {} should name {t}",
                                r.text
                            );
                        }
                    }
                    if want == 200 {
                        assert_eq!(after["status"], to);
                    } else {
                        assert_eq!(
                            after["meta"]["versionId"], before["meta"]["versionId"],
                            "nothing written"
                        );
                    }
                }
            }
        }
    }
}

async fn outbox(app: &TestApp) -> Vec<store::Message> {
    app.store
        .read(|tx| tx.outbox_list(None, None, 1000))
        .await
        .unwrap()
}

fn kinds_to(messages: &[store::Message], recipient: &str) -> Vec<String> {
    let mut k: Vec<String> = messages
        .iter()
        .filter(|m| m.recipient == recipient && m.kind.starts_with("referral-"))
        .map(|m| m.kind.clone())
        .collect();
    k.sort();
    k
}

/// A community pediatrician refers a 9-year-old to pediatric cardiology; the receiver accepts,
/// an appointment based on the request is booked and fulfilled, the consult note is attached
/// and the referral completed: the referrer is told each step, the Provenance trail has every
/// step, and the measure counts the loop as closed.
async fn a_referral_closes_the_loop(engine: Engine) {
    let w = world(engine).await;
    let app = &w.app;
    let refer = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/kid"}},
        {"name": "service", "valueReference": {"reference": "HealthcareService/cardio"}},
        {"name": "reason", "valueString": "heart murmur on exam"},
        {"name": "priority", "valueCode": "routine"},
        {"name": "requester", "valueReference": {"reference": "PractitionerRole/sp1-role"}}]});
    let r = send_json(app, w.shore.post(app.url("ServiceRequest/$refer")), &refer).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bundle = r.json();
    let sr = bundle["entry"][0]["resource"].clone();
    let task = bundle["entry"][1]["resource"].clone();
    assert_eq!(sr["resourceType"], "ServiceRequest");
    assert_eq!(task["status"], "requested");
    assert_eq!(task["owner"]["reference"], "HealthcareService/cardio");
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "2.0");
    let id = task["id"].as_str().unwrap().to_string();
    let sr_id = sr["id"].as_str().unwrap().to_string();
    // due dates from the routine service level: accept by Thursday's end
    let dues = task["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["url"] == care::profile::REFERRAL_DUE)
        .count();
    assert_eq!(dues, 3, "{task}");
    // the receiver takes it
    for to in ["received", "accepted"] {
        w.clock.advance(3_600_000);
        let current = app.get(&format!("Task/{id}")).await.json();
        let r = send_json(
            app,
            w.cc.put(app.url(&format!("Task/{id}"))),
            &moved(current, to),
        )
        .await;
        assert_eq!(r.status, 200, "{to}: {}", r.text);
    }
    // an appointment based on the request is booked, then fulfilled
    let start = monday_ten() + 3 * DAY;
    app.upsert(json!({"resourceType": "Slot", "id": "s1", "schedule": {"reference": "Schedule/sch"}, "status": "free",
        "start": fhir::primitive::format_instant(start), "end": fhir::primitive::format_instant(start + 1_800_000)}))
        .await;
    let appointment = json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": "Slot/s1"}],
        "basedOn": [{"reference": format!("ServiceRequest/{sr_id}")}],
        "start": fhir::primitive::format_instant(start), "end": fhir::primitive::format_instant(start + 1_800_000),
        "participant": [{"actor": {"reference": "Patient/kid"}, "status": "accepted"},
                        {"actor": {"reference": "HealthcareService/cardio"}, "status": "accepted"},
                        {"actor": {"reference": "Location/site"}, "status": "accepted"}]});
    let r = send_json(app, w.cc.post(app.url("Appointment")), &appointment).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let appt = r.json();
    let after_booking = app.get(&format!("Task/{id}")).await.json();
    assert_eq!(
        after_booking["status"], "in-progress",
        "an accepted referral is in progress once booked"
    );
    assert_eq!(
        after_booking["businessStatus"]["coding"][0]["code"],
        "5.1.1"
    );
    w.clock.advance(3 * DAY);
    for status in ["arrived", "fulfilled"] {
        let mut a = app
            .get(&format!("Appointment/{}", appt["id"].as_str().unwrap()))
            .await
            .json();
        a.as_object_mut().unwrap().remove("meta");
        a["status"] = json!(status);
        let r = send_json(
            app,
            w.cc.put(app.url(&format!("Appointment/{}", appt["id"].as_str().unwrap()))),
            &a,
        )
        .await;
        assert_eq!(r.status, 200, "{status}: {}", r.text);
    }
    let seen = app.get(&format!("Task/{id}")).await.json();
    assert_eq!(seen["businessStatus"]["coding"][0]["code"], "5.1.4", "seen");
    // the requester may not close the loop; the receiver does, with the consult note
    let r = send_json(
        app,
        w.shore.put(app.url(&format!("Task/{id}"))),
        &moved(seen.clone(), "completed"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    w.clock.advance(DAY);
    let r = send_json(
        app,
        w.cc.put(app.url(&format!("Task/{id}"))),
        &moved(seen, "completed"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let done = r.json();
    assert_eq!(done["businessStatus"]["coding"][0]["code"], "7.0");
    // the referrer heard of each step; the receiver of the new referral
    let messages = outbox(app).await;
    assert_eq!(
        kinds_to(&messages, "PractitionerRole/sp1-role"),
        vec!["referral-accepted", "referral-closed", "referral-scheduled"]
    );
    assert_eq!(
        kinds_to(&messages, "HealthcareService/cardio"),
        vec!["referral-new"]
    );
    // nothing clinical in a message
    assert!(
        messages.iter().all(|m| !m.payload.contains("murmur")),
        "no reason in a message"
    );
    let to_referrer = messages
        .iter()
        .find(|m| m.kind == "referral-closed")
        .unwrap();
    assert!(
        to_referrer.payload.contains("sam@shoreline.example"),
        "{}",
        to_referrer.payload
    );
    // the Provenance trail: every step, who and when
    let trail = app.get("Provenance?patient=kid&_count=100").await.json();
    let mut steps: Vec<String> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["activity"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    steps.sort();
    let mut want = vec![
        "created-requested",
        "received",
        "accepted",
        "in-progress",
        "business-5.1.1",
        "business-5.1.4",
        "reported",
        "completed",
    ];
    want.sort();
    assert_eq!(steps, want);
    // the measure counts the loop as closed; the worklists show it
    let from = "2026-12-01";
    let r = app
        .get_as(
            &w.cc,
            &format!("/api/metrics/referrals?organization=cc&from={from}&to=2027-01-01"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = &r.json()["groups"][0];
    assert_eq!(m["volume"], 1);
    assert_eq!(m["completed"], 1);
    assert_eq!(m["loopClosure"]["numerator"], 1);
    assert_eq!(m["loopClosure"]["denominator"], 1);
    assert_eq!(m["medianBusinessDaysToAccept"], 0.0);
    let closed = app
        .get_as(
            &w.cc,
            "/api/worklists/referrals?organization=cc&state=closed",
        )
        .await
        .json();
    assert_eq!(closed["items"][0]["task"], format!("Task/{id}"), "{closed}");
    let sent = app
        .get_as(
            &w.shore,
            "/api/worklists/referrals?organization=shore&role=sent&state=closed",
        )
        .await
        .json();
    assert_eq!(sent["count"], 1, "{sent}");
    // another organisation sees neither
    assert_eq!(
        app.get_as(&w.hhc, "/api/worklists/referrals?organization=cc")
            .await
            .status,
        403
    );
    assert_eq!(
        app.get_as(&w.hhc, "/api/metrics/referrals?organization=cc")
            .await
            .status,
        403
    );
}

/// Bad input is refused with a clear 4xx and nothing written.
async fn bad_referrals_write_nothing(engine: Engine) {
    let w = world(engine).await;
    let app = &w.app;
    let sr = service_request(app).await;
    let other = app
        .create(json!({"resourceType": "Patient", "name": [{"family": "Other"}], "managingOrganization": {"reference": "Organization/shore"}}))
        .await;
    let other_sr = app
        .create(
            json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": {"reference": format!("Patient/{}", other["id"].as_str().unwrap())}}),
        )
        .await;
    let in_progress = referral_at(app, "in-progress").await;
    let requested = referral_at(app, "requested").await;
    let mut no_focus = referral(&sr, "requested");
    no_focus.as_object_mut().unwrap().remove("focus");
    let mut focus_patient = referral(&sr, "requested");
    focus_patient["focus"] = json!({"reference": "Patient/kid"});
    let mut absent_owner = referral(&sr, "requested");
    absent_owner["owner"] = json!({"reference": "Organization/nowhere"});
    let absent_focus = referral("nothere", "requested");
    let wrong_patient = referral(other_sr["id"].as_str().unwrap(), "requested");
    let current = |id: &str| {
        let id = id.to_string();
        async move {
            let mut t = app.get(&format!("Task/{id}")).await.json();
            t.as_object_mut().unwrap().remove("meta");
            t
        }
    };
    let mut complete_bare = current(&in_progress).await;
    complete_bare["status"] = json!("completed");
    let mut reject_bare = current(&requested).await;
    reject_bare["status"] = json!("rejected");
    let cases: Vec<(&str, &str, String, Value, u16, &str)> = vec![
        (
            "a Task with no focus",
            "POST",
            "Task".into(),
            no_focus,
            422,
            "Task.focus",
        ),
        (
            "a focus that is not a ServiceRequest",
            "POST",
            "Task".into(),
            focus_patient,
            422,
            "Task.focus",
        ),
        (
            "a ServiceRequest that does not exist",
            "POST",
            "Task".into(),
            absent_focus,
            422,
            "Task.focus",
        ),
        (
            "an owner that does not exist",
            "POST",
            "Task".into(),
            absent_owner,
            422,
            "Task.owner",
        ),
        (
            "another patient's ServiceRequest",
            "POST",
            "Task".into(),
            wrong_patient,
            422,
            "Task.for",
        ),
        (
            "completion without output",
            "PUT",
            format!("Task/{in_progress}"),
            complete_bare,
            422,
            "Task.output",
        ),
        (
            "a reject without a reason",
            "PUT",
            format!("Task/{requested}"),
            reject_bare,
            422,
            "Task.statusReason",
        ),
        (
            "$refer with nothing",
            "POST",
            "ServiceRequest/$refer".into(),
            json!({"resourceType": "Parameters", "parameter": [{"name": "priority", "valueCode": "urgent"}]}),
            422,
            "patient",
        ),
    ];
    for (what, method, path, body, status, at) in cases {
        let before = app.row_counts().await;
        let client = if method == "PUT" { &w.cc } else { &w.shore };
        let req = if method == "PUT" {
            client.put(app.url(&path))
        } else {
            client.post(app.url(&path))
        };
        let r = send_json(app, req, &body).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert!(
            r.text.contains(at),
            "{what}: the answer names {at}: {}",
            r.text
        );
        assert_eq!(app.row_counts().await, before, "{what}: nothing written");
    }
}

/// The task ids on an organisation's worklist of `state`, sorted.
async fn listed(app: &TestApp, client: &reqwest::Client, state: &str) -> Vec<String> {
    let r = app
        .get_as(
            client,
            &format!("/api/worklists/referrals?organization=cc&state={state}"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut found: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["task"]
                .as_str()
                .unwrap()
                .trim_start_matches("Task/")
                .to_string()
        })
        .collect();
    found.sort();
    found
}

/// Worklists by service level under a moving clock; the job marks and tells the receiver once;
/// pages; the same referrals through FHIR search.
async fn worklists_follow_the_service_levels(engine: Engine) {
    let w = world(engine).await;
    let app = &w.app;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let sr = service_request(app).await;
        let r = send_json(
            app,
            w.shore.post(app.url("Task")),
            &referral(&sr, "requested"),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let mut all = ids.clone();
    all.sort();
    // Monday: open and on track (accept due by Thursday's end)
    assert_eq!(listed(app, &w.cc, "open").await, all);
    assert!(listed(app, &w.cc, "at-risk").await.is_empty());
    // Wednesday: due by the end of the next business day
    w.clock.advance(2 * DAY);
    assert_eq!(listed(app, &w.cc, "at-risk").await, all);
    // Friday: overdue
    w.clock.advance(2 * DAY);
    assert_eq!(listed(app, &w.cc, "overdue").await, all);
    // accepting one takes it off the overdue list (booking is due in 14 business days)
    let current = app.get(&format!("Task/{}", ids[0])).await.json();
    let r = send_json(
        app,
        w.cc.put(app.url(&format!("Task/{}", ids[0]))),
        &moved(current, "accepted"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut rest = ids[1..].to_vec();
    rest.sort();
    assert_eq!(listed(app, &w.cc, "overdue").await, rest);
    // the job marks them and tells the receiver once
    for _ in 0..2 {
        w.app
            .jobs
            .run_now("referrals:service-levels")
            .await
            .unwrap();
    }
    let overdue: Vec<store::Message> = outbox(app)
        .await
        .into_iter()
        .filter(|m| m.kind == "referral-overdue")
        .collect();
    assert_eq!(overdue.len(), 2, "once per overdue referral: {overdue:?}");
    assert!(
        overdue
            .iter()
            .all(|m| m.recipient == "HealthcareService/cardio")
    );
    // pages
    let first = app
        .get_as(
            &w.cc,
            "/api/worklists/referrals?organization=cc&state=open&_count=2",
        )
        .await
        .json();
    assert_eq!(first["count"], 2);
    let next = first["next"].as_str().expect("a next page").to_string();
    let second = app.get_as(&w.cc, &next).await.json();
    assert_eq!(second["count"], 1, "{second}");
    // the same referrals through FHIR search, with what they are about
    let r = app
        .get_as(&w.cc, "Task?owner=HealthcareService/cardio&status=requested&_include=Task:focus&_include=Task:patient")
        .await
        .json();
    assert_eq!(r["total"], 2, "{r}");
    let included = r["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .count();
    assert_eq!(included, 3, "two ServiceRequests and the patient");
    // bad worklist requests
    assert_eq!(
        app.get_as(&w.cc, "/api/worklists/referrals?organization=cc&state=late")
            .await
            .status,
        400
    );
    assert_eq!(
        app.get_as(&w.cc, "/api/worklists/referrals").await.status,
        400
    );
}

/// Business days between two instants' US Eastern days (weekends only), counted here.
fn business_days(from: i64, to: i64) -> i64 {
    let (a, b) = (care::slots::local_day(from), care::slots::local_day(to));
    (a + 1..=b).filter(|d| (d + 3).rem_euclid(7) < 5).count() as i64
}

/// The measures of a synthetic history, against answers computed here from the same plan.
async fn measures_match_a_synthetic_history(engine: Engine) {
    let w = world(engine).await;
    let app = &w.app;
    // (days after the start written, then after writing: accepted, reported — or rejected)
    struct Plan {
        written: i64,
        accept_after: Option<i64>,
        report_after: Option<i64>,
        reject: bool,
    }
    let plans: Vec<Plan> = (0..10)
        .map(|i| Plan {
            written: i,
            accept_after: (i % 3 != 2).then_some(i % 4 + 1),
            report_after: (i % 3 == 0).then_some(10),
            reject: i % 3 == 2,
        })
        .collect();
    struct Done {
        authored: i64,
        accepted: Option<i64>,
        reported: Option<i64>,
        rejected: bool,
    }
    let mut done: Vec<Done> = Vec::new();
    let t0 = monday_ten();
    // each referral is played in time order: the clock only moves forward, so the steps are
    // scheduled and replayed sorted by when they happen
    let mut events: Vec<(i64, usize, &str)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        events.push((t0 + p.written * DAY, i, "write"));
        if p.reject {
            events.push((t0 + (p.written + 1) * DAY + 1, i, "rejected"));
        }
        if let Some(a) = p.accept_after {
            events.push((t0 + (p.written + a) * DAY + 1, i, "accepted"));
        }
        if let Some(r) = p.report_after {
            events.push((t0 + (p.written + r) * DAY + 2, i, "in-progress"));
            events.push((t0 + (p.written + r) * DAY + 3, i, "completed"));
        }
    }
    events.sort();
    let mut ids: Vec<Option<String>> = vec![None; plans.len()];
    for p in &plans {
        done.push(Done {
            authored: 0,
            accepted: None,
            reported: None,
            rejected: p.reject,
        });
    }
    for (at, i, what) in events {
        let now = care::Clock::now_ms(w.clock.as_ref());
        w.clock.advance(at - now);
        if what == "write" {
            let sr = service_request(app).await;
            let r = send_json(
                app,
                w.shore.post(app.url("Task")),
                &referral(&sr, "requested"),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text);
            ids[i] = Some(r.json()["id"].as_str().unwrap().to_string());
            done[i].authored = at;
            continue;
        }
        let id = ids[i].clone().unwrap();
        let current = app.get(&format!("Task/{id}")).await.json();
        let r = send_json(
            app,
            w.cc.put(app.url(&format!("Task/{id}"))),
            &moved(current, what),
        )
        .await;
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        match what {
            "accepted" => done[i].accepted = Some(at),
            "completed" => done[i].reported = Some(at),
            _ => {}
        }
    }
    // the answers, computed here
    let volume = done.len();
    let accepted = done.iter().filter(|d| d.accepted.is_some()).count();
    let rejected = done.iter().filter(|d| d.rejected).count();
    let mut to_accept: Vec<i64> = done
        .iter()
        .filter_map(|d| d.accepted.map(|a| business_days(d.authored, a)))
        .collect();
    to_accept.sort();
    let median = if to_accept.len() % 2 == 1 {
        to_accept[to_accept.len() / 2] as f64
    } else {
        (to_accept[to_accept.len() / 2 - 1] + to_accept[to_accept.len() / 2]) as f64 / 2.0
    };
    let closed_loops = done.iter().filter(|d| d.reported.is_some()).count();
    let r = app
        .get_as(
            &w.cc,
            "/api/metrics/referrals?organization=cc&from=2026-12-01&to=2027-02-01",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = &r.json()["groups"][0];
    assert_eq!(m["volume"], volume);
    assert_eq!(m["accepted"], accepted);
    assert_eq!(m["rejected"], rejected);
    assert_eq!(m["medianBusinessDaysToAccept"], median, "{m}");
    // one patient: CMS50 counts the first referral only — closed when its report came
    assert_eq!(m["loopClosure"]["denominator"], 1);
    assert_eq!(
        m["loopClosure"]["numerator"],
        i64::from(done[0].reported.is_some())
    );
    assert_eq!(m["completed"], closed_loops);
    let rate = accepted as f64 / (accepted + rejected) as f64;
    assert!((m["acceptanceRate"].as_f64().unwrap() - rate).abs() < 1e-9);
    // by month, as CSV
    let csv = app
        .get_as(&w.cc, "/api/metrics/referrals?organization=cc&from=2026-12-01&to=2027-02-01&group_by=month&format=csv")
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("group,volume,"));
    assert!(
        lines[1].starts_with(&format!("2026-12,{volume},")),
        "{}",
        csv.text
    );
}

/// A coordinator of the receiving organisation reassigns an open referral, saying why; nobody
/// else may, and the new receiver is told.
async fn reassignment_needs_a_coordinator_of_the_receiver_and_a_reason(engine: Engine) {
    let w = world(engine).await;
    let app = &w.app;
    let id = referral_at(app, "received").await;
    let clinician = app.client_with(&app.token_for("user/*.cruds", &["clinician@cc"], &[]).await);
    let to_neuro = |mut t: Value, note: Option<&str>| {
        t.as_object_mut().unwrap().remove("meta");
        t["owner"] = json!({"reference": "HealthcareService/neuro"});
        if let Some(n) = note {
            t["note"] = json!([{"text": n}]);
        }
        t
    };
    let current = app.get(&format!("Task/{id}")).await.json();
    for (who, client, note, want) in [
        ("the referrer", &w.shore, Some("wrong clinic"), 403),
        (
            "a clinician of the receiver",
            &clinician,
            Some("wrong clinic"),
            403,
        ),
        ("a coordinator without a reason", &w.cc, None, 422),
    ] {
        let r = send_json(
            app,
            client.put(app.url(&format!("Task/{id}"))),
            &to_neuro(current.clone(), note),
        )
        .await;
        assert_eq!(r.status, want, "{who}: {}", r.text);
    }
    let r = send_json(
        app,
        w.cc.put(app.url(&format!("Task/{id}"))),
        &to_neuro(
            current,
            Some("seizure history: neurology should see him first"),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["owner"]["reference"], "HealthcareService/neuro");
    let messages = outbox(app).await;
    assert_eq!(
        kinds_to(&messages, "HealthcareService/neuro"),
        vec!["referral-reassigned"]
    );
    let trail = app.get("Provenance?patient=kid&_count=100").await.json();
    let reassigned: Vec<&Value> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|p| p["activity"]["coding"][0]["code"] == "reassigned")
        .collect();
    assert_eq!(reassigned.len(), 1);
    assert_eq!(
        reassigned[0]["reason"][0]["text"],
        "seizure history: neurology should see him first"
    );
    // an ended referral is not reassigned
    let done = referral_at(app, "rejected").await;
    let t = app.get(&format!("Task/{done}")).await.json();
    let r = send_json(
        app,
        w.cc.put(app.url(&format!("Task/{done}"))),
        &to_neuro(t, Some("x")),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
}

/// On the demo: `$refer` with no receiver asks the care finder (the Task says why), and the
/// demo's worklists and measures have real content.
async fn the_demo_refers_and_measures(app: TestApp) {
    let api = server::rest::FhirApi::new(app.store.clone(), server::rest::RestConfig::default());
    server::demo::load(&api, 2).await.expect("demo loads");
    let shore = app.client_with(
        &app.token_for("user/*.cruds", &["referring-clinician@shoreline-peds"], &[])
            .await,
    );
    let refer = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/demo-mateo"}},
        {"name": "service", "valueString": "pediatric cardiology"},
        {"name": "reason", "valueString": "murmur"}]});
    let r = send_json(&app, shore.post(app.url("ServiceRequest/$refer")), &refer).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let task = &r.json()["entry"][1]["resource"];
    assert_eq!(
        task["owner"]["reference"], "HealthcareService/cc-peds-cardiology",
        "{task}"
    );
    assert!(
        task["note"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Receiver proposed by the care finder"),
        "{task}"
    );
    assert_eq!(
        task["requester"]["reference"],
        "Organization/shoreline-peds"
    );
    // a practice refers only the patients it cares for
    let r = send_json(
        &app,
        shore.post(app.url("ServiceRequest/$refer")),
        &json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/demo-ana"}},
        {"name": "service", "valueString": "pediatric cardiology"},
        {"name": "reason", "valueString": "murmur"}]}),
    )
    .await;
    assert!(matches!(r.status, 400 | 403 | 404), "{}", r.text);
    let cc = app.client_with(
        &app.token_for("user/*.cruds", &["coordinator@cc"], &[])
            .await,
    );
    for state in ["open", "overdue", "closed"] {
        let page = app
            .get_as(
                &cc,
                &format!("/api/worklists/referrals?organization=cc&state={state}&_count=5"),
            )
            .await
            .json();
        assert_eq!(page["count"], 5, "{state}: {page}");
    }
    let all = app
        .get("/api/metrics/referrals?group_by=month")
        .await
        .json();
    let volume: i64 = all["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["volume"].as_i64().unwrap())
        .sum();
    assert!(volume >= 320, "{all}");
    let completed: i64 = all["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["completed"].as_i64().unwrap())
        .sum();
    assert!(completed > 100 && completed < volume, "{all}");
}

both_engines!(the_demo_refers_and_measures);

mod reassignment {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::reassignment_needs_a_coordinator_of_the_receiver_and_a_reason(super::Engine::Sqlite)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::reassignment_needs_a_coordinator_of_the_receiver_and_a_reason(
            super::Engine::Postgres,
        )
        .await
    }
}

mod every_move {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::every_move_by_each_side_over_http(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::every_move_by_each_side_over_http(super::Engine::Postgres).await
    }
}

mod closed_loop {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_referral_closes_the_loop(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_referral_closes_the_loop(super::Engine::Postgres).await
    }
}

mod bad_input {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::bad_referrals_write_nothing(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::bad_referrals_write_nothing(super::Engine::Postgres).await
    }
}

mod worklists {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::worklists_follow_the_service_levels(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::worklists_follow_the_service_levels(super::Engine::Postgres).await
    }
}

mod measures {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::measures_match_a_synthetic_history(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::measures_match_a_synthetic_history(super::Engine::Postgres).await
    }
}

/// What a review found open, closed: a Task coded as another kind stays off the register; an
/// Appointment moves only the referrals of a request its writer may read, for its own patient,
/// and only once it was booked; a referral is not deleted (but by an administrator); the
/// receiver does not change the priority; reassignment is before acceptance; a draft's service
/// level starts when it is sent; a failed referral tells the referrer.
async fn what_the_review_found_stays_closed(engine: Engine) {
    let w = world(engine).await;
    let app = &w.app;
    let open = |client: &reqwest::Client| {
        let client = client.clone();
        async move {
            app.get_as(
                &client,
                "/api/worklists/referrals?organization=cc&state=open&_count=200",
            )
            .await
            .json()["count"]
                .as_i64()
                .unwrap()
        }
    };
    // coded as another kind: stored as sent, not a referral
    let sr = service_request(app).await;
    let mut fulfil = referral(&sr, "completed");
    fulfil["code"] = json!({"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]});
    let r = send_json(app, w.shore.post(app.url("Task")), &fulfil).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(open(&w.cc).await, 0, "not on the worklist");
    // $refer with the need as a Coding: the Task is still a referral
    let refer = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/kid"}},
        {"name": "service", "valueCoding": {"system": "http://snomed.info/sct", "code": "394579002", "display": "Cardiology"}},
        {"name": "receiver", "valueReference": {"reference": "HealthcareService/cardio"}},
        {"name": "reason", "valueString": "murmur"},
        {"name": "requester", "valueReference": {"reference": "PractitionerRole/sp1-role"}}]});
    let r = send_json(app, w.shore.post(app.url("ServiceRequest/$refer")), &refer).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let made = r.json();
    assert_eq!(
        made["entry"][0]["resource"]["code"]["coding"][0]["code"],
        "394579002"
    );
    let task_id = made["entry"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sr_id = made["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(open(&w.cc).await, 1);
    // an Appointment for another patient's request, or one straight into fulfilled, moves nothing
    app.upsert(json!({"resourceType": "Patient", "id": "other", "name": [{"family": "Other"}], "managingOrganization": {"reference": "Organization/cc"}}))
        .await;
    let appointment = |patient: &str, status: &str| {
        json!({"resourceType": "Appointment", "status": status,
            "basedOn": [{"reference": format!("ServiceRequest/{sr_id}")}],
            "start": "2027-01-05T15:00:00Z", "end": "2027-01-05T15:30:00Z",
            "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
                            {"actor": {"reference": "HealthcareService/cardio"}, "status": "accepted"}]})
    };
    let r = send_json(
        app,
        w.cc.post(app.url("Appointment")),
        &appointment("other", "booked"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = send_json(
        app,
        w.cc.post(app.url("Appointment")),
        &appointment("kid", "fulfilled"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let task = app.get(&format!("Task/{task_id}")).await.json();
    assert_eq!(
        task["businessStatus"]["coding"][0]["code"], "2.0",
        "still created: {task}"
    );
    // not deleted, but by an administrator
    let r = app
        .send(w.cc.delete(app.url(&format!("Task/{task_id}"))))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // the receiver does not change the priority
    let mut urgent = task.clone();
    urgent.as_object_mut().unwrap().remove("meta");
    urgent["priority"] = json!("urgent");
    let r = send_json(app, w.cc.put(app.url(&format!("Task/{task_id}"))), &urgent).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = send_json(
        app,
        w.shore.put(app.url(&format!("Task/{task_id}"))),
        &urgent,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // reassignment is before acceptance
    let accepted = referral_at(app, "accepted").await;
    let mut t = app.get(&format!("Task/{accepted}")).await.json();
    t.as_object_mut().unwrap().remove("meta");
    t["owner"] = json!({"reference": "HealthcareService/neuro"});
    t["note"] = json!([{"text": "neurology first"}]);
    let r = send_json(app, w.cc.put(app.url(&format!("Task/{accepted}"))), &t).await;
    assert_eq!(r.status, 409, "{}", r.text);
    // a draft is not on the worklist, and its service level starts when it is sent
    let sr = service_request(app).await;
    let r = send_json(app, w.shore.post(app.url("Task")), &referral(&sr, "draft")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let draft = r.json();
    let before = open(&w.cc).await;
    w.clock.advance(7 * DAY);
    let sent = moved(draft.clone(), "requested");
    let r = send_json(
        app,
        w.shore
            .put(app.url(&format!("Task/{}", draft["id"].as_str().unwrap()))),
        &sent,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = r.json();
    assert_ne!(
        sent["authoredOn"], draft["authoredOn"],
        "restarted when sent"
    );
    assert_eq!(open(&w.cc).await, before + 1);
    // a failed referral tells the referrer
    let failing = referral_at(app, "in-progress").await;
    let t = app.get(&format!("Task/{failing}")).await.json();
    let r = send_json(
        app,
        w.cc.put(app.url(&format!("Task/{failing}"))),
        &moved(t, "failed"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        outbox(app)
            .await
            .iter()
            .any(|m| m.kind == "referral-failed" && m.recipient == "PractitionerRole/sp1-role")
    );
    // and a requester that is a patient's relative is refused
    let sr = service_request(app).await;
    let mut odd = referral(&sr, "requested");
    odd["requester"] = json!({"reference": "RelatedPerson/someone"});
    let r = app.post("Task", &odd).await;
    assert_eq!(r.status, 422, "{}", r.text);
}

mod review {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::what_the_review_found_stays_closed(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::what_the_review_found_stays_closed(super::Engine::Postgres).await
    }
}
