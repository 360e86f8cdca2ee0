//! Video visits (join links and their window), the waitlist, the notification outbox
//! (webhook, SMTP, retries, idempotency, the access policy on recipients) and FHIR
//! Subscriptions, on both engines.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::booking::params as book_params;
use crate::both_engines;
use crate::helpers::{Engine, TestApp};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn at(ms: i64) -> String {
    fhir::primitive::format_instant(ms)
}

/// A service with a video schedule and an in-person schedule at a site.
async fn world(app: &TestApp) {
    for r in [
        json!({"resourceType": "Organization", "id": "vorg", "name": "Visit org"}),
        json!({"resourceType": "Location", "id": "vsite", "name": "Visit site",
            "managingOrganization": {"reference": "Organization/vorg"}}),
        json!({"resourceType": "HealthcareService", "id": "vsvc", "name": "Pediatric Cardiology",
            "providedBy": {"reference": "Organization/vorg"}}),
        json!({"resourceType": "Schedule", "id": "vsch-video", "active": true,
            "extension": [{"url": "http://continuum-alliance.org/fhir/StructureDefinition/modality", "valueCode": "video"}],
            "actor": [{"reference": "HealthcareService/vsvc"}]}),
        json!({"resourceType": "Schedule", "id": "vsch-site", "active": true,
            "extension": [{"url": "http://continuum-alliance.org/fhir/StructureDefinition/modality", "valueCode": "in-person"}],
            "actor": [{"reference": "HealthcareService/vsvc"}, {"reference": "Location/vsite"}]}),
    ] {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let resp = app.put(&path, &r).await;
        assert!(resp.status < 300, "{path}: {}", resp.text);
    }
}

/// A free slot of a schedule from `start` for 30 minutes.
async fn slot(app: &TestApp, id: &str, schedule: &str, start: i64) -> String {
    let r = app
        .put(
            &format!("Slot/{id}"),
            &json!({"resourceType": "Slot", "id": id, "status": "free",
                "schedule": {"reference": format!("Schedule/{schedule}")},
                "start": at(start), "end": at(start + 30 * MIN)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    id.to_string()
}

/// A child (born `birth`) and a parent (RelatedPerson, with an e-mail address).
async fn family(app: &TestApp, birth: &str) -> (String, String) {
    let child = app
        .create(json!({"resourceType": "Patient", "birthDate": birth,
            "telecom": [{"system": "email", "value": "child@example.org"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let parent = app
        .create(json!({"resourceType": "RelatedPerson", "patient": {"reference": format!("Patient/{child}")},
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
            "telecom": [{"system": "email", "value": "parent@example.org"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    (child, parent)
}

async fn book(app: &TestApp, slot: &str, patient: &str) -> Value {
    let r = app
        .post("Appointment/$book", &book_params(slot, Some(patient), None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"][0]["resource"].clone()
}

fn join_url(appointment: &Value) -> Option<String> {
    appointment["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"] == care::booking::VIRTUAL_SERVICE)?["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"] == "addressUrl")?["valueUrl"]
        .as_str()
        .map(str::to_string)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A booked video visit carries a join link that only the patient's parent (a proxy) sees —
/// not a backend service that can read everything; the link redirects only within its window,
/// and stops when the visit is cancelled. Clients cannot plant a link of their own.
async fn video_visits_have_join_links_for_the_family_only(app: TestApp) {
    world(&app).await;
    let now = now_ms();
    let soon = slot(&app, "vs-soon", "vsch-video", now + 10 * MIN).await;
    let later = slot(&app, "vs-later", "vsch-video", now + 3 * HOUR).await;
    let site = slot(&app, "vs-site", "vsch-site", now + 4 * HOUR).await;
    let (child, parent) = family(&app, "2017-03-14").await;
    let mom = app.client_with(
        &app.token_for(
            "user/*.rs",
            &["proxy"],
            &[&format!("RelatedPerson/{parent}")],
        )
        .await,
    );
    let booked = book(&app, &soon, &child).await;
    let id = booked["id"].as_str().unwrap().to_string();
    // the booking client (a backend service) sees the appointment, video, but no link
    assert_eq!(join_url(&booked), None, "{booked}");
    assert!(booked.to_string().contains("\"video\""), "{booked}");
    let seen = app.get(&format!("Appointment/{id}")).await.json();
    assert_eq!(join_url(&seen), None, "{seen}");
    let history = app.get(&format!("Appointment/{id}/_history")).await.text;
    assert!(!history.contains("/visit/"), "{history}");
    // the parent sees it, on a read and in a search
    let r = app.get_as(&mom, &format!("Appointment/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let url = join_url(&r.json()).expect("the parent sees the join link");
    let root = app.base.trim_end_matches("/fhir");
    let token = url
        .strip_prefix(&format!("{root}/visit/"))
        .unwrap_or_else(|| panic!("{url} is this server's /visit/ link"))
        .to_string();
    assert_eq!(token.len(), 32, "128 bits as hex: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let found = app
        .get_as(&mom, &format!("Appointment?patient=Patient/{child}"))
        .await
        .json();
    assert_eq!(
        join_url(&found["entry"][0]["resource"]).as_deref(),
        Some(url.as_str())
    );
    // within the window (10 minutes ahead, it opens 15 before): to the video room
    let r = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("https://meet.jit.si/continuum-{token}")
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    // three hours ahead: not yet, and says when
    let other = book(&app, &later, &child).await;
    let later_url = join_url(
        &app.get_as(
            &mom,
            &format!("Appointment/{}", other["id"].as_str().unwrap()),
        )
        .await
        .json(),
    )
    .unwrap();
    assert_ne!(later_url, url, "each visit has its own room");
    let r = no_redirects().get(&later_url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("opens at"));
    // unknown and malformed tokens
    for bad in [
        "0123456789abcdef0123456789abcdef",
        "nope",
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    ] {
        let r = no_redirects()
            .get(format!("{root}/visit/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    // an in-person visit has no link
    let in_person = book(&app, &site, &child).await;
    let in_person = app
        .get_as(
            &mom,
            &format!("Appointment/{}", in_person["id"].as_str().unwrap()),
        )
        .await
        .json();
    assert_eq!(join_url(&in_person), None, "{in_person}");
    // cancelled (by the backend service, sending what it sees): the link closes
    let mut cancel = seen.clone();
    cancel["status"] = json!("cancelled");
    let r = app.put(&format!("Appointment/{id}"), &cancel).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("cancelled"));
    // a client cannot plant its own link: the server's replaces it
    let fresh = slot(&app, "vs-planted", "vsch-video", now + 5 * HOUR).await;
    let r = app
        .post(
            "Appointment",
            &json!({"resourceType": "Appointment", "status": "booked",
                "slot": [{"reference": format!("Slot/{fresh}")}],
                "start": at(now + 5 * HOUR), "end": at(now + 5 * HOUR + 30 * MIN),
                "participant": [{"actor": {"reference": format!("Patient/{child}")}, "status": "accepted"}],
                "extension": [{"url": care::booking::VIRTUAL_SERVICE, "extension": [
                    {"url": "addressUrl", "valueUrl": "https://evil.example.org/room"}]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let planted = app
        .get_as(
            &mom,
            &format!("Appointment/{}", r.json()["id"].as_str().unwrap()),
        )
        .await
        .json();
    let link = join_url(&planted).expect("a video slot's appointment gets a link");
    assert!(link.starts_with(&format!("{root}/visit/")), "{link}");
    assert!(!planted.to_string().contains("evil"), "{planted}");
    // every use of a link is on the record
    let audit = app.get("AuditEvent?_count=200").await.text;
    assert!(
        audit.contains("a video visit link was opened"),
        "join audited"
    );
}

async fn waitlist_entry(app: &TestApp, patient: &str, before: i64, replaces: &str) -> String {
    let r = app
        .post(
            "Appointment",
            &json!({"resourceType": "Appointment", "status": "waitlist",
                "participant": [
                    {"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
                    {"actor": {"reference": "HealthcareService/vsvc"}, "status": "needs-action"}],
                "requestedPeriod": [{"end": at(before)}],
                "supportingInformation": [{"reference": format!("Appointment/{replaces}")}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

fn api(app: &TestApp) -> server::rest::FhirApi {
    server::rest::FhirApi::new(app.store.clone(), server::rest::RestConfig::default())
}

async fn communications(app: &TestApp, recipient: &str, kind: &str) -> Vec<Value> {
    let r = app
        .get(&format!(
            "Communication?recipient={recipient}&category={}|{kind}&_count=100",
            server::notify::CATEGORY_SYSTEM
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// A patient asks for an earlier slot; when one frees, the first to ask gets it as a
/// time-limited hold and a message; when that offer lapses the next gets it; booking the offer
/// cancels the appointment it replaces, whose slot goes on down the list.
async fn the_waitlist_offers_freed_slots_in_order(app: TestApp) {
    world(&app).await;
    let now = now_ms();
    let early = slot(&app, "w-early", "vsch-site", now + 24 * HOUR).await;
    let late_b = slot(&app, "w-late-b", "vsch-site", now + 5 * 24 * HOUR).await;
    let late_c = slot(&app, "w-late-c", "vsch-site", now + 6 * 24 * HOUR).await;
    let (a, _) = family(&app, "2015-01-01").await;
    let (b, b_parent) = family(&app, "2016-01-01").await;
    let (c, c_parent) = family(&app, "2017-01-01").await;
    let a_appt = book(&app, &early, &a).await;
    let b_appt = book(&app, &late_b, &b).await;
    let c_appt = book(&app, &late_c, &c).await;
    let b_id = b_appt["id"].as_str().unwrap();
    let c_id = c_appt["id"].as_str().unwrap();
    // a waitlist entry names the patient and the service
    let r = app
        .post(
            "Appointment",
            &json!({"resourceType": "Appointment", "status": "waitlist",
                "participant": [{"actor": {"reference": format!("Patient/{b}")}, "status": "accepted"}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("HealthcareService"), "{}", r.text);
    let wb = waitlist_entry(&app, &b, now + 5 * 24 * HOUR - 1, b_id).await;
    let wc = waitlist_entry(&app, &c, now + 6 * 24 * HOUR - 1, c_id).await;
    // A cancels: the early slot is held for B (asked first)
    let mut cancel = a_appt.clone();
    cancel["status"] = json!("cancelled");
    let r = app
        .put(
            &format!("Appointment/{}", a_appt["id"].as_str().unwrap()),
            &cancel,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let offer = app.get(&format!("Appointment/{wb}")).await.json();
    assert_eq!(offer["status"], "pending", "{offer}");
    assert_eq!(offer["slot"][0]["reference"], format!("Slot/{early}"));
    assert!(offer.to_string().contains("waitlist-offer"), "{offer}");
    let held = app.get(&format!("Slot/{early}")).await.json();
    assert_eq!(held["status"], "busy-tentative");
    assert!(
        held.to_string().contains(&format!("Appointment/{wb}")),
        "{held}"
    );
    assert_eq!(
        app.get(&format!("Appointment/{wc}")).await.json()["status"],
        "waitlist"
    );
    let told = communications(&app, &format!("RelatedPerson/{b_parent}"), "waitlist-offer").await;
    assert_eq!(told.len(), 1, "B's parent is told of the offer");
    assert!(
        told[0]["payload"][0]["contentString"]
            .as_str()
            .unwrap()
            .contains("held for you until"),
        "{}",
        told[0]
    );
    // nobody else may take the held slot
    let (d, _) = family(&app, "2014-01-01").await;
    let r = app
        .post("Appointment/$book", &book_params(&early, Some(&d), None))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // B's offer lapses: the next in line, C, gets it
    let mut expired = held.clone();
    for e in expired["extension"].as_array_mut().unwrap() {
        if e["url"] == care::booking::HOLD_EXPIRES {
            e["valueInstant"] = json!("2020-01-01T00:00:00Z");
        }
    }
    assert_eq!(
        app.put(&format!("Slot/{early}"), &expired).await.status,
        200
    );
    assert_eq!(
        server::slots::release_lapsed_holds(&api(&app))
            .await
            .unwrap(),
        1
    );
    let lapsed = app.get(&format!("Appointment/{wb}")).await.json();
    assert_eq!(lapsed["status"], "cancelled");
    assert!(
        lapsed.to_string().contains("waitlist offer lapsed"),
        "{lapsed}"
    );
    let offer = app.get(&format!("Appointment/{wc}")).await.json();
    assert_eq!(offer["status"], "pending", "{offer}");
    assert_eq!(
        communications(&app, &format!("RelatedPerson/{c_parent}"), "waitlist-offer")
            .await
            .len(),
        1
    );
    // C accepts: booked on the early slot; C's later appointment is cancelled and its slot,
    // with nobody left waiting, is free
    let r = app
        .post("Appointment/$book", &book_params(&early, None, Some(&wc)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"][0]["resource"]["status"], "booked");
    assert_eq!(
        app.get(&format!("Slot/{early}")).await.json()["status"],
        "busy"
    );
    let replaced = app.get(&format!("Appointment/{c_id}")).await.json();
    assert_eq!(replaced["status"], "cancelled", "{replaced}");
    assert_eq!(
        app.get(&format!("Slot/{late_c}")).await.json()["status"],
        "free"
    );
    // B kept the appointment it had
    assert_eq!(
        app.get(&format!("Appointment/{b_id}")).await.json()["status"],
        "booked"
    );
    assert_eq!(
        communications(
            &app,
            &format!("RelatedPerson/{c_parent}"),
            "appointment-booked"
        )
        .await
        .len(),
        2,
        "C's parent was told of both bookings"
    );
}

/// Families act on appointments (product C8): a parent books a child's slot, asks for an
/// earlier one, accepts the offer and cancels — for a child they act for, and nothing else; a
/// young person from 12 does the same for themselves.
async fn families_book_cancel_and_accept_offers(app: TestApp) {
    world(&app).await;
    let now = now_ms();
    let first = slot(&app, "f-first", "vsch-site", now + 2 * 24 * HOUR).await;
    let later = slot(&app, "f-later", "vsch-site", now + 9 * 24 * HOUR).await;
    let other = slot(&app, "f-other", "vsch-site", now + 3 * 24 * HOUR).await;
    let (child, parent) = family(&app, "2017-06-01").await;
    let (stranger, _) = family(&app, "2016-06-01").await;
    let mom = app.client_with(
        &app.token_for(
            "user/*.cruds",
            &["proxy"],
            &[&format!("RelatedPerson/{parent}")],
        )
        .await,
    );
    // the parent books the later slot for the child
    let r = app
        .send(
            mom.post(app.url("Appointment/$book"))
                .header("Content-Type", "application/fhir+json")
                .body(book_params(&later, Some(&child), None).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let booked = r.json()["entry"][0]["resource"].clone();
    let booked_id = booked["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.get(&format!("Slot/{later}")).await.json()["status"],
        "busy"
    );
    // not for another family's child
    let r = app
        .send(
            mom.post(app.url("Appointment/$book"))
                .header("Content-Type", "application/fhir+json")
                .body(book_params(&other, Some(&stranger), None).to_string()),
        )
        .await;
    assert!(matches!(r.status, 403 | 400), "{}", r.text);
    assert_eq!(
        app.get(&format!("Slot/{other}")).await.json()["status"],
        "free"
    );
    // a booked appointment is not written straight in, nor is a visit's outcome set
    let put = |body: Value, path: String| {
        mom.put(app.url(&path))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
    };
    let r = app
        .send(mom.post(app.url("Appointment")).header("Content-Type", "application/fhir+json")
            .body(json!({"resourceType": "Appointment", "status": "booked",
                "slot": [{"reference": format!("Slot/{other}")}],
                "participant": [{"actor": {"reference": format!("Patient/{child}")}, "status": "accepted"}]}).to_string()))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let mut fulfilled = booked.clone();
    fulfilled["status"] = json!("arrived");
    let r = app
        .send(put(fulfilled, format!("Appointment/{booked_id}")))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let mut moved = booked.clone();
    moved["start"] = json!(at(now));
    moved["status"] = json!("cancelled");
    let r = app
        .send(put(moved, format!("Appointment/{booked_id}")))
        .await;
    assert_eq!(
        r.status, 403,
        "a cancellation changes nothing else: {}",
        r.text
    );
    assert!(r.text.contains("only cancel"), "{}", r.text);
    let r = app
        .send(mom.delete(app.url(&format!("Appointment/{booked_id}"))))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // the parent asks for an earlier slot; another family gives up the first one; the offer
    // is the child's, and the parent accepts it: the later appointment is cancelled
    let r = app
        .send(
            mom.post(app.url("Appointment"))
                .header("Content-Type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Appointment", "status": "waitlist",
                "participant": [
                    {"actor": {"reference": format!("Patient/{child}")}, "status": "accepted"},
                    {"actor": {"reference": "HealthcareService/vsvc"}, "status": "needs-action"}],
                "requestedPeriod": [{"end": at(now + 5 * 24 * HOUR)}],
                "supportingInformation": [{"reference": format!("Appointment/{booked_id}")}]})
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let wait = r.json()["id"].as_str().unwrap().to_string();
    // the waiting list's order is not the family's to change
    let mut jump = app
        .get_as(&mom, &format!("Appointment/{wait}"))
        .await
        .json();
    jump["created"] = json!("2000-01-01T00:00:00Z");
    let r = app.send(put(jump, format!("Appointment/{wait}"))).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let theirs = book(&app, &first, &stranger).await;
    let mut cancel = theirs.clone();
    cancel["status"] = json!("cancelled");
    let r = app
        .put(
            &format!("Appointment/{}", theirs["id"].as_str().unwrap()),
            &cancel,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let offer = app
        .get_as(&mom, &format!("Appointment/{wait}"))
        .await
        .json();
    assert_eq!(offer["status"], "pending", "{offer}");
    let r = app
        .send(
            mom.post(app.url("Appointment/$book"))
                .header("Content-Type", "application/fhir+json")
                .body(book_params(&first, None, Some(&wait)).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"][0]["resource"]["status"], "booked");
    assert_eq!(
        app.get(&format!("Appointment/{booked_id}")).await.json()["status"],
        "cancelled",
        "the appointment the offer replaces"
    );
    assert_eq!(
        app.get(&format!("Slot/{later}")).await.json()["status"],
        "free"
    );
    // and cancels the new one: its slot is free again
    let mut cancel = app
        .get_as(&mom, &format!("Appointment/{wait}"))
        .await
        .json();
    cancel["status"] = json!("cancelled");
    cancel["cancelationReason"] = json!({"text": "we are away that week"});
    let r = app.send(put(cancel, format!("Appointment/{wait}"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        app.get(&format!("Slot/{first}")).await.json()["status"],
        "free"
    );
    // the AuditEvents name the parent
    let audit = app.get("AuditEvent?_count=200&action=U").await.text;
    assert!(
        audit.contains(&format!("RelatedPerson/{parent}")),
        "{audit}"
    );
    // a young person of 12 or more books for themselves; a younger one cannot
    for (birth, may) in [("2010-01-01", true), ("2020-01-01", false)] {
        let (kid, _) = family(&app, birth).await;
        let me = app.client_with(
            &app.token_for("user/*.cruds", &["patient"], &[&format!("Patient/{kid}")])
                .await,
        );
        let free = slot(
            &app,
            &format!("f-self-{}", &birth[..4]),
            "vsch-site",
            now + 4 * 24 * HOUR,
        )
        .await;
        let r = app
            .send(
                me.post(app.url("Appointment/$book"))
                    .header("Content-Type", "application/fhir+json")
                    .body(book_params(&free, Some(&kid), None).to_string()),
            )
            .await;
        assert_eq!(r.status == 200, may, "{birth}: {} {}", r.status, r.text);
    }
}

/// A lapsed hold reads as free to `$find` before the sweeper has run.
async fn lapsed_holds_read_as_free(app: TestApp) {
    world(&app).await;
    let now = now_ms();
    let s = slot(&app, "lz1", "vsch-site", now + 48 * HOUR).await;
    let (p, _) = family(&app, "2012-02-02").await;
    let find = json!({"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDateTime": at(now)},
        {"name": "end", "valueDateTime": at(now + 72 * HOUR)},
        {"name": "location", "valueReference": {"reference": "Location/vsite"}}]});
    let total = |v: Value| v["total"].as_i64().unwrap();
    assert_eq!(total(app.post("Appointment/$find", &find).await.json()), 1);
    let r = app
        .post("Appointment/$hold", &book_params(&s, Some(&p), None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(total(app.post("Appointment/$find", &find).await.json()), 0);
    let mut held = app.get(&format!("Slot/{s}")).await.json();
    for e in held["extension"].as_array_mut().unwrap() {
        if e["url"] == care::booking::HOLD_EXPIRES {
            e["valueInstant"] = json!(at(now - MIN));
        }
    }
    assert_eq!(app.put(&format!("Slot/{s}"), &held).await.status, 200);
    assert_eq!(total(app.post("Appointment/$find", &find).await.json()), 1);
    // the Slot status machine holds for direct writes: busy cannot go back to a hold
    let mut busy = app.get(&format!("Slot/{s}")).await.json();
    busy["status"] = json!("busy");
    assert_eq!(app.put(&format!("Slot/{s}"), &busy).await.status, 200);
    busy["status"] = json!("busy-tentative");
    let r = app.put(&format!("Slot/{s}"), &busy).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.text.contains("allowed: free, entered-in-error"),
        "{}",
        r.text
    );
    // and a slot an appointment holds is freed by cancelling the appointment, not by a PUT
    busy["status"] = json!("free");
    let r = app.put(&format!("Slot/{s}"), &busy).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("cancel or reschedule"), "{}", r.text);
}

/// What a test receiver saw: (headers, body).
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// An HTTP receiver that records every POST and answers 500 to the first `fail_first`.
async fn receiver(fail_first: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let failures = Arc::new(Mutex::new(fail_first));
    let (s, f) = (seen.clone(), failures.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                let hs = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                s.lock().unwrap().push((hs, body));
                let mut left = f.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn outbox(app: &TestApp) -> Vec<store::Message> {
    app.store
        .read(|tx| tx.outbox_list(None, None, 1000))
        .await
        .unwrap()
}

/// Booking writes a confirmation and two reminders for the parent (not for the 9-year-old);
/// the webhook transport signs each delivery; a failed delivery is retried after its backoff;
/// a message claimed by a worker that died is delivered again after its lease with the same
/// idempotency key; a reminder of a cancelled visit is skipped, not sent.
async fn the_outbox_delivers_signed_retries_and_skips_stale(engine: Engine) {
    let clock = Arc::new(care::FixedClock::at(now_ms()));
    let app = TestApp::spawn_with_clock(engine, Default::default(), clock.clone()).await;
    world(&app).await;
    let now = care::Clock::now_ms(clock.as_ref());
    let s = slot(&app, "ob1", "vsch-site", now + 4 * 24 * HOUR).await;
    let (child, parent) = family(&app, "2017-06-01").await;
    let booked = book(&app, &s, &child).await;
    let messages = outbox(&app).await;
    let mut kinds: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m.kind.as_str(), m.recipient.as_str()))
        .collect();
    kinds.sort();
    let rp = format!("RelatedPerson/{parent}");
    assert_eq!(
        kinds,
        vec![
            ("appointment-booked", rp.as_str()),
            ("appointment-reminder-24h", rp.as_str()),
            ("appointment-reminder-72h", rp.as_str()),
        ],
        "only the parent of a 9-year-old is told"
    );
    let comms = communications(&app, &rp, "appointment-booked").await;
    assert_eq!(comms.len(), 1);
    assert_eq!(comms[0]["status"], "preparation");
    assert!(
        comms[0]["payload"][0]["contentString"]
            .as_str()
            .unwrap()
            .contains("Pediatric Cardiology"),
        "{}",
        comms[0]
    );
    // editing the appointment without a status change sends nothing new
    let mut edited = booked.clone();
    edited["comment"] = json!("bring the growth chart");
    assert_eq!(
        app.put(
            &format!("Appointment/{}", booked["id"].as_str().unwrap()),
            &edited
        )
        .await
        .status,
        200
    );
    assert_eq!(outbox(&app).await.len(), 3);
    // deliver: the receiver fails the first try
    let (url, seen) = receiver(1).await;
    let secret = "a-webhook-secret-of-some-length";
    let notifier = server::notify::Notifier::new(server::notify::Transport::Webhook {
        url,
        secret: secret.into(),
    });
    let api = api(&app);
    let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
    assert_eq!((r.sent, r.retrying), (0, 1), "{r:?}");
    // not due again until the backoff has passed
    let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
    assert_eq!(r, Default::default());
    clock.advance(31_000);
    let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
    assert_eq!(r.sent, 1, "{r:?}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let (headers, body) = &seen[1];
        assert_eq!(
            header(headers, "x-continuum-signature"),
            Some(
                format!(
                    "sha256={}",
                    server::notify::signature(secret, body.as_bytes())
                )
                .as_str()
            )
        );
        assert_eq!(
            header(headers, "x-continuum-event"),
            Some("appointment-booked")
        );
        assert_eq!(
            header(headers, "idempotency-key"),
            header(&seen[0].0, "idempotency-key")
        );
        let c: Value = serde_json::from_str(body).unwrap();
        assert_eq!(c["resourceType"], "Communication");
        assert_eq!(c["recipient"][0]["reference"], rp.as_str());
    }
    let fresh = app.client_with(&app.token_for("system/*.cruds", &[], &[]).await);
    let done = app
        .get_as(
            &fresh,
            &format!("Communication/{}", comms[0]["id"].as_str().unwrap()),
        )
        .await
        .json();
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["sent"].is_string());
    // the 72-hour reminder comes due; a worker claims it and dies before recording anything
    clock.advance(24 * HOUR);
    let claimed = app
        .store
        .write(|tx| tx.outbox_claim(10, server::notify::LEASE_MS))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].kind, "appointment-reminder-72h");
    let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
    assert_eq!(r, Default::default(), "leased: not sent twice at once");
    clock.advance(server::notify::LEASE_MS + 1);
    let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
    assert_eq!(r.sent, 1, "{r:?}");
    assert_eq!(
        header(&seen.lock().unwrap()[2].0, "idempotency-key"),
        Some(claimed[0].id.as_str()),
        "the retry after a crash carries the same key"
    );
    // the visit is cancelled: its 24-hour reminder is skipped when due, a cancellation is sent
    let current = app
        .get_as(
            &fresh,
            &format!("Appointment/{}", booked["id"].as_str().unwrap()),
        )
        .await
        .json();
    let mut cancel = current.clone();
    cancel["status"] = json!("cancelled");
    let r = app
        .send(
            fresh
                .put(app.url(&format!("Appointment/{}", booked["id"].as_str().unwrap())))
                .header("Content-Type", "application/fhir+json")
                .body(cancel.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    clock.advance(2 * 24 * HOUR);
    let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
    assert_eq!((r.sent, r.skipped), (1, 1), "{r:?}");
    let states: Vec<(String, String)> = outbox(&app)
        .await
        .into_iter()
        .map(|m| (m.kind, m.state))
        .collect();
    assert!(
        states.contains(&("appointment-reminder-24h".into(), "skipped".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("appointment-cancelled".into(), "sent".into())),
        "{states:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 4, "nothing was sent twice");
}

/// A 14-year-old's sensitive visit tells the teen and not the parent; a visit of an
/// 18-year-old without a recorded guardianship tells only the young adult.
async fn messages_to_proxies_obey_the_access_policy(app: TestApp) {
    world(&app).await;
    let now = now_ms();
    let year = |age: i64| {
        let (y, m, d) = care::slots::civil_from_days(
            (now - age * 365 * 24 * HOUR - 30 * 24 * HOUR) / (24 * HOUR),
        );
        format!("{y:04}-{m:02}-{d:02}")
    };
    let (teen, teen_parent) = family(&app, &year(14)).await;
    let (adult, adult_parent) = family(&app, &year(19)).await;
    let s1 = slot(&app, "pp1", "vsch-site", now + 2 * 24 * HOUR).await;
    let s2 = slot(&app, "pp2", "vsch-site", now + 2 * 24 * HOUR + HOUR).await;
    let s3 = slot(&app, "pp3", "vsch-site", now + 2 * 24 * HOUR + 2 * HOUR).await;
    // a sensitive (behavioural health) visit, booked through REST with its label
    let r = app
        .post(
            "Appointment",
            &json!({"resourceType": "Appointment", "status": "booked",
                "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "BH"}]},
                "slot": [{"reference": format!("Slot/{s1}")}],
                "start": at(now + 2 * 24 * HOUR), "end": at(now + 2 * 24 * HOUR + 30 * MIN),
                "participant": [{"actor": {"reference": format!("Patient/{teen}")}, "status": "accepted"},
                    {"actor": {"reference": "HealthcareService/vsvc"}, "status": "accepted"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    book(&app, &s2, &teen).await;
    book(&app, &s3, &adult).await;
    let to = |who: String| {
        let app = &app;
        async move {
            outbox(app)
                .await
                .into_iter()
                .filter(|m| m.recipient == who && m.kind == "appointment-booked")
                .count()
        }
    };
    assert_eq!(
        to(format!("Patient/{teen}")).await,
        2,
        "the teen hears of both"
    );
    assert_eq!(
        to(format!("RelatedPerson/{teen_parent}")).await,
        1,
        "the parent hears only of the visit that is not sensitive"
    );
    assert_eq!(to(format!("Patient/{adult}")).await, 1);
    assert_eq!(to(format!("RelatedPerson/{adult_parent}")).await, 0);
    // and the message the parent did get names no clinical detail
    let c = communications(
        &app,
        &format!("RelatedPerson/{teen_parent}"),
        "appointment-booked",
    )
    .await;
    assert_eq!(c.len(), 1);
}

/// A minimal SMTP server that accepts one message and hands over its DATA.
async fn smtp_server() -> (String, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 test ESMTP\r\n").await.unwrap();
        let mut data = String::new();
        let mut in_data = false;
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if in_data {
                if line == "." {
                    in_data = false;
                    write.write_all(b"250 queued\r\n").await.unwrap();
                    if let Some(t) = tx.take() {
                        let _ = t.send(std::mem::take(&mut data));
                    }
                } else {
                    data.push_str(&line);
                    data.push('\n');
                }
                continue;
            }
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                b"250 test\r\n"
            } else if upper.starts_with("DATA") {
                in_data = true;
                b"354 go ahead\r\n"
            } else if upper.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await.unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            write.write_all(reply).await.unwrap();
        }
    });
    (format!("smtp://{addr}"), rx)
}

/// The SMTP transport mails the message to the recipient's address, with the outbox id as its
/// Message-ID.
async fn smtp_transport_mails_the_recipient(app: TestApp) {
    world(&app).await;
    let now = now_ms();
    let s = slot(&app, "sm1", "vsch-video", now + 5 * HOUR).await;
    let (child, _) = family(&app, "2018-08-08").await;
    book(&app, &s, &child).await;
    let (url, mail) = smtp_server().await;
    let notifier = server::notify::Notifier::new(
        server::notify::Transport::smtp(&url, "Continuum <noreply@continuum.example>").unwrap(),
    );
    let r = server::notify::deliver_due(&api(&app), &notifier)
        .await
        .unwrap();
    assert_eq!(r.sent, 1, "{r:?}");
    let data = tokio::time::timeout(std::time::Duration::from_secs(10), mail)
        .await
        .unwrap()
        .unwrap()
        // quoted-printable soft line breaks
        .replace("=\n", "");
    assert!(data.contains("To: parent@example.org"), "{data}");
    assert!(
        data.contains("Subject: Your appointment is booked"),
        "{data}"
    );
    assert!(data.contains("The video link opens 15 minutes"), "{data}");
    let id = &outbox(&app)
        .await
        .into_iter()
        .find(|m| m.state == "sent")
        .unwrap()
        .id;
    assert!(data.contains(&format!("<{id}@continuum>")), "{data}");
}

/// A rest-hook Subscription gets an id-only notification for each matching write, with its
/// headers; only callers who see everything may subscribe; bad subscriptions are refused.
async fn subscriptions_notify_rest_hooks_with_ids_only(app: TestApp) {
    world(&app).await;
    let (url, seen) = receiver(0).await;
    let sub = json!({"resourceType": "Subscription", "status": "requested",
        "reason": "booked visits", "criteria": "Appointment?status=booked",
        "channel": {"type": "rest-hook", "endpoint": url, "payload": "application/fhir+json",
            "header": ["Authorization: Bearer hook-secret"]}});
    let r = app.post("Subscription", &sub).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub_id = r.json()["id"].as_str().unwrap().to_string();
    for (bad, why) in [
        (json!({"criteria": "Appointment?nonsense=1"}), "nonsense"),
        (json!({"criteria": "Nothing?x=1"}), "not a resource type"),
        (
            json!({"channel": {"type": "email", "endpoint": "mailto:x@example.org"}}),
            "rest-hook",
        ),
    ] {
        let mut s = sub.clone();
        for (k, v) in bad.as_object().unwrap() {
            s[k] = v.clone();
        }
        let r = app.post("Subscription", &s).await;
        assert_eq!(r.status, 422, "{why}: {}", r.text);
    }
    let clinician = app.client_with(
        &app.token_for("user/*.cruds", &["clinician@vorg"], &[])
            .await,
    );
    let r = app
        .send(
            clinician
                .post(app.url("Subscription"))
                .header("Content-Type", "application/fhir+json")
                .body(sub.to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let now = now_ms();
    let s1 = slot(&app, "sub1", "vsch-site", now + 30 * HOUR).await;
    let s2 = slot(&app, "sub2", "vsch-site", now + 31 * HOUR).await;
    let (child, _) = family(&app, "2015-05-05").await;
    let booked = book(&app, &s1, &child).await;
    // a hold is not booked: no notification
    let r = app
        .post("Appointment/$hold", &book_params(&s2, Some(&child), None))
        .await;
    assert_eq!(r.status, 200);
    let hooks: Vec<store::Message> = outbox(&app)
        .await
        .into_iter()
        .filter(|m| m.channel == "rest-hook")
        .collect();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let notifier = server::notify::Notifier::new(server::notify::Transport::Log);
    let r = server::notify::deliver_due(&api(&app), &notifier)
        .await
        .unwrap();
    assert!(r.sent >= 1, "{r:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(header(headers, "authorization"), Some("Bearer hook-secret"));
    let bundle: Value = serde_json::from_str(body).unwrap();
    assert_eq!(bundle["type"], "history");
    let status = &bundle["entry"][0]["resource"];
    assert_eq!(status["resourceType"], "Parameters");
    let text = status.to_string();
    assert!(text.contains(&format!("Subscription/{sub_id}")), "{text}");
    assert!(
        text.contains(&format!("Appointment/{}", booked["id"].as_str().unwrap())),
        "{text}"
    );
    assert!(!body.contains("participant"), "id-only: no content");
}

both_engines!(
    video_visits_have_join_links_for_the_family_only,
    the_waitlist_offers_freed_slots_in_order,
    families_book_cancel_and_accept_offers,
    lapsed_holds_read_as_free,
    messages_to_proxies_obey_the_access_policy,
    smtp_transport_mails_the_recipient,
    subscriptions_notify_rest_hooks_with_ids_only,
);

/// A rest-hook Subscription whose endpoint is down is retried with backoff for a day, then
/// put in `error` with the reason — its deliveries visible, a failed one resent once the
/// endpoint answers; never dropped silently.
async fn subscriptions_retry_for_a_day_then_error_and_resend(engine: Engine) {
    let clock = Arc::new(care::FixedClock::at(now_ms()));
    let app = TestApp::spawn_with_clock(engine, Default::default(), clock.clone()).await;
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (u, g) = (up.clone(), got.clone());
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (u, g) = (u.clone(), g.clone());
            async move {
                if u.load(std::sync::atomic::Ordering::SeqCst) {
                    g.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    axum::http::StatusCode::NO_CONTENT
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    let r = app
        .post(
            "Subscription",
            &json!({"resourceType": "Subscription", "status": "active", "reason": "new girls",
                "criteria": "Patient?gender=female",
                "channel": {"type": "rest-hook", "endpoint": url, "payload": "application/fhir+json"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = r.json()["id"].as_str().unwrap().to_string();
    app.create(json!({"resourceType": "Patient", "gender": "female", "birthDate": "2015-01-01"}))
        .await;
    let notifier = server::notify::Notifier::new(server::notify::Transport::Log);
    let api = api(&app);
    let started = care::Clock::now_ms(clock.as_ref());
    let mut tries = 0;
    let mut failed = 0;
    for _ in 0..200 {
        let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
        tries += r.retrying + r.failed;
        failed += r.failed;
        if failed > 0 {
            break;
        }
        clock.advance(3_600_000 + 1_000);
    }
    let elapsed = care::Clock::now_ms(clock.as_ref()) - started;
    assert_eq!(failed, 1, "given up once");
    assert!(
        tries > 12,
        "retried beyond a message's 12 attempts: {tries}"
    );
    assert!(
        (23 * 3_600_000..=25 * 3_600_000).contains(&elapsed),
        "retried for a day: {elapsed} ms"
    );
    let s = app.get(&format!("Subscription/{sub}")).await.json();
    assert_eq!(s["status"], "error");
    let why = s["error"].as_str().unwrap();
    assert!(why.contains(&url) && why.contains("503"), "{why}");
    let d = app
        .get(&format!("/api/subscriptions/{sub}/deliveries"))
        .await
        .json();
    assert_eq!(
        (d["failed"].as_i64(), d["sent"].as_i64()),
        (Some(1), Some(0)),
        "{d}"
    );
    let delivery = d["deliveries"][0].clone();
    assert_eq!(delivery["state"], "failed");
    assert_eq!(delivery["attempts"].as_u64(), Some(tries as u64));
    assert!(delivery["lastError"].as_str().unwrap().contains("503"));
    assert!(delivery["focus"].as_str().unwrap().contains("Patient/"));
    // in error, it is not matched
    app.create(json!({"resourceType": "Patient", "gender": "female", "birthDate": "2016-01-01"}))
        .await;
    let d = app
        .get(&format!("/api/subscriptions/{sub}/deliveries"))
        .await
        .json();
    assert_eq!(d["deliveries"].as_array().unwrap().len(), 1);
    // who may not change Subscriptions may not see or resend deliveries
    let clinician = app.client_with(
        &app.token_for("user/*.cruds", &["clinician@vorg"], &[])
            .await,
    );
    let id = delivery["id"].as_str().unwrap();
    let path = format!("/api/subscriptions/{sub}/deliveries/{id}/resend");
    assert_eq!(app.send(clinician.post(app.url(&path))).await.status, 404);
    assert_eq!(
        app.send(app.client.post(app.url(&format!(
            "/api/subscriptions/{sub}/deliveries/nothing/resend"
        ))))
        .await
        .status,
        404
    );
    // the endpoint is back: resent, delivered
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = app.send(app.client.post(app.url(&path))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["deliveries"][0]["state"], "pending");
    let again = app.send(app.client.post(app.url(&path))).await;
    assert_eq!(again.status, 409, "{}", again.text);
    let r = server::notify::deliver_due(&api, &notifier).await.unwrap();
    assert_eq!(r.sent, 1, "{r:?}");
    assert_eq!(got.load(std::sync::atomic::Ordering::SeqCst), 1);
}

mod subscriptions_with_a_moving_clock {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::subscriptions_retry_for_a_day_then_error_and_resend(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::subscriptions_retry_for_a_day_then_error_and_resend(super::Engine::Postgres).await
    }
}

mod outbox_with_a_moving_clock {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::the_outbox_delivers_signed_retries_and_skips_stale(super::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::the_outbox_delivers_signed_retries_and_skips_stale(super::Engine::Postgres).await
    }
}
