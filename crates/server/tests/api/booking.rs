//! `Appointment/$hold` and `$book`: holds, bookings, conflicts and the race of many bookings
//! of one slot, on both engines.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

/// A Schedule and `n` future hour slots; returns the slot ids.
async fn slots(app: &TestApp, n: usize) -> Vec<String> {
    app.put(
        "Location/bl1",
        &json!({"resourceType": "Location", "id": "bl1", "name": "Booking site"}),
    )
    .await;
    app.put(
        "Schedule/bs1",
        &json!({"resourceType": "Schedule", "id": "bs1", "active": true,
        "actor": [{"reference": "Location/bl1"}]}),
    )
    .await;
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 86_400_000;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("bslot{i}");
        let start = base + i as i64 * 3_600_000;
        let r = app
            .put(
                &format!("Slot/{id}"),
                &json!({"resourceType": "Slot", "id": id,
                "schedule": {"reference": "Schedule/bs1"}, "status": "free",
                "start": fhir::primitive::format_instant(start),
                "end": fhir::primitive::format_instant(start + 3_600_000)}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(id);
    }
    ids
}

async fn patient(app: &TestApp) -> String {
    app.create(json!({"resourceType": "Patient", "birthDate": "2016-04-01"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `$hold`/`$book` Parameters.
pub(crate) fn params(slot: &str, patient: Option<&str>, appointment: Option<&str>) -> Value {
    let mut p =
        vec![json!({"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}})];
    if let Some(pid) = patient {
        p.push(
            json!({"name": "patient", "valueReference": {"reference": format!("Patient/{pid}")}}),
        );
    }
    if let Some(a) = appointment {
        p.push(json!({"name": "appointment", "valueReference": {"reference": format!("Appointment/{a}")}}));
    }
    json!({"resourceType": "Parameters", "parameter": p})
}

async fn book_and_hold(app: TestApp) {
    let ids = slots(&app, 3).await;
    let (p1, p2) = (patient(&app).await, patient(&app).await);
    // book a free slot: a Bundle with the one booked Appointment; the slot is busy
    let r = app
        .post("Appointment/$book", &params(&ids[0], Some(&p1), None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let bundle = r.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 1);
    let appt = &bundle["entry"][0]["resource"];
    assert_eq!(appt["status"], "booked");
    assert_eq!(appt["slot"][0]["reference"], format!("Slot/{}", ids[0]));
    let actors: Vec<&str> = appt["participant"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .collect();
    assert!(
        actors.contains(&format!("Patient/{p1}").as_str()) && actors.contains(&"Location/bl1"),
        "{actors:?}"
    );
    let slot = app.get(&format!("Slot/{}", ids[0])).await.json();
    assert_eq!(slot["status"], "busy");
    // the same slot again: 409, nothing written
    let r = app
        .post("Appointment/$book", &params(&ids[0], Some(&p2), None))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.issue_code(), "conflict");
    assert!(r.text.contains("busy"), "{}", r.text);
    assert_eq!(
        app.get("Appointment?_summary=count").await.json()["total"],
        1,
        "the refused booking left no appointment"
    );
    // hold: a pending appointment and a busy-tentative slot with an expiry
    let r = app
        .post("Appointment/$hold", &params(&ids[1], Some(&p1), None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let held = r.json()["entry"][0]["resource"].clone();
    assert_eq!(held["status"], "pending");
    let hid = held["id"].as_str().unwrap().to_string();
    let slot = app.get(&format!("Slot/{}", ids[1])).await.json();
    assert_eq!(slot["status"], "busy-tentative");
    assert!(slot.to_string().contains("hold-expires"), "{slot}");
    // someone else cannot hold or book it while the hold lives
    for op in ["$hold", "$book"] {
        let r = app
            .post(
                &format!("Appointment/{op}"),
                &params(&ids[1], Some(&p2), None),
            )
            .await;
        assert_eq!(r.status, 409, "{op}: {}", r.text);
        assert!(r.text.contains("held"), "{}", r.text);
    }
    // the holder books it
    let r = app
        .post("Appointment/$book", &params(&ids[1], None, Some(&hid)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"][0]["resource"]["status"], "booked");
    assert_eq!(r.json()["entry"][0]["resource"]["id"], hid.as_str());
    let slot = app.get(&format!("Slot/{}", ids[1])).await.json();
    assert_eq!(slot["status"], "busy");
    assert!(!slot.to_string().contains("hold-expires"), "{slot}");
    // booking it again through the same appointment is a forbidden move (booked → booked is
    // no change, but the slot is no longer held)
    let r = app
        .post("Appointment/$book", &params(&ids[1], None, Some(&hid)))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // an appointment for another slot cannot book this one
    let r = app
        .post("Appointment/$book", &params(&ids[2], None, Some(&hid)))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // a hold booked by naming only the held appointment: its slot is the one taken
    let r = app
        .post("Appointment/$hold", &params(&ids[2], Some(&p2), None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.json()["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let only_appointment = json!({"resourceType": "Parameters", "parameter": [
        {"name": "appointment", "valueReference": {"reference": format!("Appointment/{second}")}}]});
    let r = app.post("Appointment/$book", &only_appointment).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"][0]["resource"]["status"], "booked");
    assert_eq!(
        app.get(&format!("Slot/{}", ids[2])).await.json()["status"],
        "busy"
    );
    // $hold still needs the slot
    let r = app
        .post(
            "Appointment/$hold",
            &json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": format!("Patient/{p1}")}}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("$hold needs 'slot'"), "{}", r.text);
}

async fn bad_booking_requests(app: TestApp) {
    let ids = slots(&app, 1).await;
    let p = patient(&app).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}]}),
            400,
            "slot",
        ),
        (params(&ids[0], None, None), 400, "patient"),
        (params("nope", Some(&p), None), 404, "Slot/nope"),
        (params(&ids[0], Some("nope"), None), 400, "Patient/nope"),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "slot", "valueReference": {"reference": "Location/bl1"}}]}),
            400,
            "slot",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "colour", "valueString": "blue"}]}),
            400,
            "colour",
        ),
        (json!({"resourceType": "Patient"}), 400, "Parameters"),
    ];
    for (body, status, needle) in cases {
        let r = app.post("Appointment/$book", &body).await;
        assert_eq!(r.status, status, "{needle}: {}", r.text);
        assert!(r.text.contains(needle), "{needle}: {}", r.text);
    }
    // a slot that has begun
    app.put(
        "Slot/past",
        &json!({"resourceType": "Slot", "id": "past", "schedule": {"reference": "Schedule/bs1"},
        "status": "free", "start": "2020-01-01T10:00:00Z", "end": "2020-01-01T11:00:00Z"}),
    )
    .await;
    let r = app
        .post("Appointment/$book", &params("past", Some(&p), None))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("begun"), "{}", r.text);
    // a caller without write access to appointments is refused
    let token = app
        .token_for("system/Slot.rs system/Patient.rs", &[], &[])
        .await;
    let client = app.client_with(&token);
    let r = app
        .send(
            client
                .post(app.url("Appointment/$book"))
                .header("Content-Type", "application/fhir+json")
                .body(params(&ids[0], Some(&p), None).to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        app.get(&format!("Slot/{}", ids[0])).await.json()["status"],
        "free"
    );
}

/// Many clients book the same few slots at once: each slot is booked exactly once.
async fn concurrent_bookings_of_one_slot_have_one_winner(app: TestApp) {
    let ids = slots(&app, 4).await;
    let mut patients = Vec::new();
    for _ in 0..6 {
        patients.push(patient(&app).await);
    }
    let mut tasks = Vec::new();
    for slot in &ids {
        for (k, p) in patients.iter().enumerate() {
            let client = app.client.clone();
            let url = app.url(if k % 2 == 0 {
                "Appointment/$book"
            } else {
                "Appointment/$hold"
            });
            let body = params(slot, Some(p), None).to_string();
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .header("Content-Type", "application/fhir+json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let wins = statuses.iter().filter(|s| **s == 200).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!(wins, ids.len(), "one winner per slot: {statuses:?}");
    assert_eq!(wins + conflicts, statuses.len(), "{statuses:?}");
    for slot in &ids {
        let appts = app
            .get(&format!("Appointment?slot=Slot/{slot}&_count=100"))
            .await
            .json();
        assert_eq!(
            appts["entry"].as_array().map(Vec::len).unwrap_or(0),
            1,
            "{slot}: {appts}"
        );
        let s = app.get(&format!("Slot/{slot}")).await.json();
        assert!(
            s["status"] == "busy" || s["status"] == "busy-tentative",
            "{s}"
        );
    }
}

/// A booking of a slot already taken is refused by a read (the writer is not needed to tell),
/// with the same answer as before and one AuditEvent recording the refusal; the taken slot's
/// appointment is left alone.
async fn a_taken_slot_is_refused_without_writing(app: TestApp) {
    let ids = slots(&app, 1).await;
    let (a, b) = (patient(&app).await, patient(&app).await);
    let won = app
        .post("Appointment/$book", &params(&ids[0], Some(&a), None))
        .await;
    assert_eq!(won.status, 200, "{}", won.text);
    let count = || async { app.store.read(store::audit::count).await.unwrap() };
    let before_rows = app.store.read(|tx| tx.row_counts()).await.unwrap();
    let before = count().await;
    for op in ["Appointment/$book", "Appointment/$hold"] {
        let lost = app.post(op, &params(&ids[0], Some(&b), None)).await;
        assert_eq!(lost.status, 409, "{}", lost.text);
        assert!(
            lost.text.contains(&format!("Slot/{}", ids[0])),
            "{}",
            lost.text
        );
    }
    assert_eq!(count().await, before + 2, "one AuditEvent per refusal");
    assert_eq!(
        app.store.read(|tx| tx.row_counts()).await.unwrap(),
        before_rows
    );
    let unknown = app
        .post("Appointment/$book", &params("no-such-slot", Some(&b), None))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
}

/// The plain REST interactions follow the same rules: a POSTed booked Appointment takes its
/// slot, cancelling frees it, a reschedule moves atomically, forbidden moves are 409.
async fn appointments_written_directly_keep_their_slots_in_step(app: TestApp) {
    let ids = slots(&app, 4).await;
    let p = patient(&app).await;
    let appointment = |status: &str, slot: &str| {
        json!({"resourceType": "Appointment", "status": status,
            "slot": [{"reference": format!("Slot/{slot}")}],
            "participant": [{"actor": {"reference": format!("Patient/{p}")}, "status": "accepted"}]})
    };
    let status_of = |v: Value| v["status"].as_str().unwrap_or_default().to_string();
    // POST booked: the slot becomes busy, held by it
    let a = app.create(appointment("booked", &ids[0])).await;
    let aid = a["id"].as_str().unwrap().to_string();
    let slot = app.get(&format!("Slot/{}", ids[0])).await.json();
    assert_eq!(status_of(slot.clone()), "busy");
    assert!(
        slot.to_string().contains(&format!("Appointment/{aid}")),
        "{slot}"
    );
    // a second booking of the same slot: 409, nothing created
    let r = app
        .post("Appointment", &appointment("booked", &ids[0]))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        app.get("Appointment?_summary=count").await.json()["total"],
        1
    );
    // a proposal takes nothing
    let r = app
        .post("Appointment", &appointment("proposed", &ids[0]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // forbidden move: booked → fulfilled (arrival first), with the allowed ones named
    let mut moved = a.clone();
    moved["status"] = json!("fulfilled");
    let r = app.put(&format!("Appointment/{aid}"), &moved).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.text
            .contains("allowed: checked-in, arrived, cancelled, noshow, entered-in-error"),
        "{}",
        r.text
    );
    // reschedule to a free slot: one atomic move
    let mut resched = a.clone();
    resched["slot"] = json!([{"reference": format!("Slot/{}", ids[1])}]);
    let r = app.put(&format!("Appointment/{aid}"), &resched).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        status_of(app.get(&format!("Slot/{}", ids[0])).await.json()),
        "free"
    );
    assert_eq!(
        status_of(app.get(&format!("Slot/{}", ids[1])).await.json()),
        "busy"
    );
    // rescheduling onto a slot someone else booked changes nothing
    let other = app.create(appointment("booked", &ids[2])).await;
    let mut clash = r.json();
    clash["slot"] = json!([{"reference": format!("Slot/{}", ids[2])}]);
    let r = app.put(&format!("Appointment/{aid}"), &clash).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        status_of(app.get(&format!("Slot/{}", ids[1])).await.json()),
        "busy"
    );
    let current = app.get(&format!("Appointment/{aid}")).await.json();
    assert_eq!(current["slot"][0]["reference"], format!("Slot/{}", ids[1]));
    // cancelling frees the slot; a cancelled appointment is final
    let mut cancelled = current.clone();
    cancelled["status"] = json!("cancelled");
    assert_eq!(
        app.put(&format!("Appointment/{aid}"), &cancelled)
            .await
            .status,
        200
    );
    let freed = app.get(&format!("Slot/{}", ids[1])).await.json();
    assert_eq!(status_of(freed.clone()), "free");
    assert!(!freed.to_string().contains("held-by"), "{freed}");
    let mut revived = app.get(&format!("Appointment/{aid}")).await.json();
    revived["status"] = json!("booked");
    let r = app.put(&format!("Appointment/{aid}"), &revived).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("is final"), "{}", r.text);
    // arrival and fulfilment keep the slot busy; deleting an appointment gives its slot back
    let oid = other["id"].as_str().unwrap().to_string();
    for next in ["arrived", "fulfilled"] {
        let mut o = app.get(&format!("Appointment/{oid}")).await.json();
        o["status"] = json!(next);
        assert_eq!(
            app.put(&format!("Appointment/{oid}"), &o).await.status,
            200,
            "{next}"
        );
        assert_eq!(
            status_of(app.get(&format!("Slot/{}", ids[2])).await.json()),
            "busy"
        );
    }
    let held = app.create(appointment("pending", &ids[3])).await;
    assert_eq!(
        status_of(app.get(&format!("Slot/{}", ids[3])).await.json()),
        "busy-tentative"
    );
    assert_eq!(
        app.delete(&format!("Appointment/{}", held["id"].as_str().unwrap()))
            .await
            .status,
        204
    );
    assert_eq!(
        status_of(app.get(&format!("Slot/{}", ids[3])).await.json()),
        "free"
    );
}

/// `$find` on the demo alliance: fitting free slots as proposed Appointments, close to home
/// first, never a held slot, video only where a clinician is licensed.
async fn find_proposes_free_slots_close_to_home(app: TestApp) {
    let api = server::rest::FhirApi::new(app.store.clone(), server::rest::RestConfig::default());
    server::demo::load(&api, 2).await.expect("demo");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (start, end) = (
        fhir::primitive::format_instant(now),
        fhir::primitive::format_instant(now + 7 * 86_400_000),
    );
    let child = app
        .create(json!({"resourceType": "Patient", "birthDate": "2017-03-14",
            "address": [{"use": "home", "postalCode": "06320", "state": "CT"}]}))
        .await;
    let pid = child["id"].as_str().unwrap().to_string();
    let ask = |extra: Vec<Value>| {
        let mut p = vec![
            json!({"name": "start", "valueDateTime": start}),
            json!({"name": "end", "valueDateTime": end}),
            json!({"name": "specialty", "valueCoding": {"system": "http://snomed.info/sct", "code": "408459003"}}),
        ];
        p.extend(extra);
        json!({"resourceType": "Parameters", "parameter": p})
    };
    let r = app
        .post("Appointment/$find", &ask(vec![
            json!({"name": "patient", "valueReference": {"reference": format!("Patient/{pid}")}}),
            json!({"name": "modality", "valueCode": "in-person"}),
            json!({"name": "_count", "valueInteger": 5}),
        ]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert!(b["total"].as_i64().unwrap() > 5, "{}", b["total"]);
    for e in entries {
        let a = &e["resource"];
        assert_eq!(a["status"], "proposed");
        assert!(a.to_string().contains(&format!("Patient/{pid}")));
        // Waterford is the nearest site with pediatric cardiology
        assert!(a.to_string().contains("Location/cc-waterford"), "{a}");
    }
    let first_slot = entries[0]["resource"]["slot"][0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get(&first_slot).await.json()["status"], "free");
    // without a patient: earliest first
    let r = app.post("Appointment/$find", &ask(vec![])).await;
    let starts: Vec<String> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["start"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !starts.is_empty() && starts.windows(2).all(|w| w[0] <= w[1]),
        "{starts:?}"
    );
    // a held slot is not offered
    let slot_id = first_slot.trim_start_matches("Slot/").to_string();
    let r = app
        .post("Appointment/$hold", &params(&slot_id, Some(&pid), None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .post("Appointment/$find", &ask(vec![
            json!({"name": "patient", "valueReference": {"reference": format!("Patient/{pid}")}}),
            json!({"name": "modality", "valueCode": "in-person"}),
            json!({"name": "_count", "valueInteger": 100}),
        ]))
        .await;
    assert!(
        !r.text.contains(&first_slot),
        "the held slot is still offered"
    );
    // video for a patient in Vermont: no demo clinician is licensed there
    let vt = app
        .create(json!({"resourceType": "Patient", "birthDate": "2017-03-14",
            "address": [{"use": "home", "postalCode": "05401", "state": "VT"}]}))
        .await;
    let r = app
        .post("Appointment/$find", &ask(vec![
            json!({"name": "patient", "valueReference": {"reference": format!("Patient/{}", vt["id"].as_str().unwrap())}}),
            json!({"name": "modality", "valueCode": "video"}),
        ]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["total"], 0, "{}", r.text);
    // and booking a video slot for them is refused by the licence rule; for a child in CT it
    // is booked
    let video = app
        .get("Slot?schedule=Schedule/sch-cc-peds-cardiology-video&status=free&_count=2")
        .await
        .json();
    let video_slots: Vec<String> = video["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    let r = app
        .post(
            "Appointment/$book",
            &params(&video_slots[0], Some(vt["id"].as_str().unwrap()), None),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.issue_code(), "business-rule");
    assert!(r.text.contains("VT"), "{}", r.text);
    let r = app
        .post(
            "Appointment/$book",
            &params(&video_slots[0], Some(&pid), None),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // bad input names the parameter
    for (body, needle) in [
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "end", "valueDateTime": end}]}),
            "start",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "start", "valueDateTime": end}, {"name": "end", "valueDateTime": start}]}),
            "end",
        ),
        (
            ask(vec![json!({"name": "modality", "valueCode": "telepathy"})]),
            "modality",
        ),
        (
            ask(vec![json!({"name": "_count", "valueInteger": 0})]),
            "_count",
        ),
        (
            ask(vec![json!({"name": "colour", "valueString": "blue"})]),
            "colour",
        ),
    ] {
        let r = app.post("Appointment/$find", &body).await;
        assert_eq!(r.status, 400, "{needle}: {}", r.text);
        assert!(r.text.contains(needle), "{needle}: {}", r.text);
    }
}

/// A hold that lapses frees its slot (the sweeper) and cancels the pending appointment; a live
/// hold is left alone.
async fn lapsed_holds_are_released(app: TestApp) {
    let ids = slots(&app, 2).await;
    let p = patient(&app).await;
    let mut held = Vec::new();
    for slot in &ids {
        let r = app
            .post("Appointment/$hold", &params(slot, Some(&p), None))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        held.push(
            r.json()["entry"][0]["resource"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // the first hold's expiry moves into the past
    let mut slot = app.get(&format!("Slot/{}", ids[0])).await.json();
    for e in slot["extension"].as_array_mut().unwrap() {
        if e["url"].as_str().unwrap().ends_with("hold-expires") {
            e["valueInstant"] = json!("2020-01-01T00:00:00Z");
        }
    }
    assert_eq!(
        app.put(&format!("Slot/{}", ids[0]), &slot).await.status,
        200
    );
    let api = server::rest::FhirApi::new(app.store.clone(), server::rest::RestConfig::default());
    assert_eq!(server::slots::release_lapsed_holds(&api).await.unwrap(), 1);
    let freed = app.get(&format!("Slot/{}", ids[0])).await.json();
    assert_eq!(freed["status"], "free");
    assert!(!freed.to_string().contains("held-by"), "{freed}");
    assert_eq!(
        app.get(&format!("Appointment/{}", held[0])).await.json()["status"],
        "cancelled"
    );
    // the live hold stays
    assert_eq!(
        app.get(&format!("Slot/{}", ids[1])).await.json()["status"],
        "busy-tentative"
    );
    assert_eq!(
        app.get(&format!("Appointment/{}", held[1])).await.json()["status"],
        "pending"
    );
    assert_eq!(server::slots::release_lapsed_holds(&api).await.unwrap(), 0);
    // the freed slot can be booked by someone else
    let q = patient(&app).await;
    let r = app
        .post("Appointment/$book", &params(&ids[0], Some(&q), None))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

both_engines!(
    a_taken_slot_is_refused_without_writing,
    book_and_hold,
    bad_booking_requests,
    concurrent_bookings_of_one_slot_have_one_winner,
    appointments_written_directly_keep_their_slots_in_step,
    find_proposes_free_slots_close_to_home,
    lapsed_holds_are_released,
);
