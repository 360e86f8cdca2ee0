//! The house's own guarantees (issue 13), on both engines: every interaction and every
//! operation of the registry leaves exactly one AuditEvent (walked from the route table and the
//! operation registry, so a new one without a case fails here); a refused write leaves no side
//! effect; conditional writes inside a transaction answer exactly like the plain ones; the
//! background jobs the server runs are the ones a test runs.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{Resp, TestApp};

/// AuditEvents in the audit trail (counted directly, which leaves none).
async fn audit_events(app: &TestApp) -> i64 {
    app.store.read(store::audit::count).await.unwrap()
}

fn params(parts: Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": parts})
}

/// A small directory with one schedule and free slots tomorrow, a child at cc and a clinician.
async fn seed(app: &TestApp) {
    app.upsert(
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "Location", "id": "site", "name": "Hartford campus",
        "managingOrganization": {"reference": "Organization/cc"},
        "address": {"postalCode": "06106", "state": "CT"},
        "position": {"latitude": 41.75, "longitude": -72.69}}),
    )
    .await;
    app.upsert(json!({"resourceType": "HealthcareService", "id": "cardio", "name": "Pediatric cardiology",
        "providedBy": {"reference": "Organization/cc"}, "location": [{"reference": "Location/site"}],
        "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "408459003"}]}]})).await;
    app.upsert(
        json!({"resourceType": "Schedule", "id": "sch", "active": true,
        "actor": [{"reference": "HealthcareService/cardio"}, {"reference": "Location/site"}]}),
    )
    .await;
    let start = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 2 * 86_400_000;
    for i in 0..4 {
        let s = start + i * 3_600_000;
        app.upsert(json!({"resourceType": "Slot", "id": format!("slot{i}"), "schedule": {"reference": "Schedule/sch"},
            "status": "free", "start": fhir::primitive::format_instant(s),
            "end": fhir::primitive::format_instant(s + 1_800_000)})).await;
    }
    app.upsert(
        json!({"resourceType": "Patient", "id": "kid", "birthDate": "2016-04-01",
        "name": [{"family": "Okafor", "given": ["Ben"]}],
        "address": [{"use": "home", "postalCode": "06106", "state": "CT"}],
        "managingOrganization": {"reference": "Organization/cc"}}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "Patient", "id": "kid2", "birthDate": "2016-04-01",
        "name": [{"family": "Okafor", "given": ["Benjamin"]}],
        "managingOrganization": {"reference": "Organization/cc"}}),
    )
    .await;
}

/// One request and what it is of: an interaction name or an operation code.
struct Case {
    of: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    /// Sent with this caller instead of the default backend service.
    caller: Option<Arc<reqwest::Client>>,
}

fn case(of: &'static str, method: &'static str, path: &str, body: Option<Value>) -> Case {
    Case {
        of,
        method,
        path: path.to_string(),
        body,
        headers: vec![],
        caller: None,
    }
}

async fn send(app: &TestApp, c: &Case) -> Resp {
    let client = c.caller.as_deref().unwrap_or(&app.client);
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = client.request(method, app.url(&c.path));
    if let Some(b) = &c.body {
        req = req
            .header("Content-Type", "application/fhir+json")
            .body(b.to_string());
    }
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    app.send(req).await
}

async fn every_interaction_and_operation_is_audited_exactly_once(app: TestApp) {
    seed(&app).await;
    let clinician = Arc::new(
        app.client_with(
            &app.token_for("user/*.cruds", &["clinician@cc"], &["Practitioner/c1"])
                .await,
        ),
    );
    let (a, b) = ("kid".to_string(), "kid2".to_string());
    app.store
        .write(move |tx| {
            tx.identity_pair_add("house-pair", &a, &b, 0.9, "probable", "pending")
                .map(|_| ())
        })
        .await
        .unwrap();
    let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/kid"}, "code": {"text": "murmur"}});
    let cases = vec![
        case("read", "GET", "Patient/kid", None),
        case("vread", "GET", "Patient/kid/_history/1", None),
        case("search-type", "GET", "Patient?family=Okafor", None),
        case("search-type", "POST", "Patient/_search?family=Okafor", None),
        case("history-instance", "GET", "Patient/kid/_history", None),
        case("history-type", "GET", "Patient/_history", None),
        case("history-system", "GET", "_history?_count=5", None),
        case("create", "POST", "Condition", Some(condition.clone())),
        case(
            "update",
            "PUT",
            "Condition/c-put",
            Some(
                json!({"resourceType": "Condition", "id": "c-put", "subject": {"reference": "Patient/kid"}, "code": {"text": "x"}}),
            ),
        ),
        case(
            "update",
            "PUT",
            "Condition?code:text=zzz-none",
            Some(condition.clone()),
        ),
        case("delete", "DELETE", "Condition/c-put", None),
        case("delete", "DELETE", "Condition?code:text=zzz-none", None),
        case(
            "batch",
            "POST",
            "",
            Some(json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient/kid"}},
            {"resource": condition, "request": {"method": "POST", "url": "Condition"}}]})),
        ),
        case(
            "transaction",
            "POST",
            "",
            Some(
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:5b1c0d36-2f0b-4a43-bb7d-3c4f0e1d2a01", "resource": {"resourceType": "Condition", "subject": {"reference": "Patient/kid"}, "code": {"text": "y"}}, "request": {"method": "POST", "url": "Condition"}},
            {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/kid"}, "code": {"text": "z"}}, "request": {"method": "PUT", "url": "Condition?code:text=zzz-other"}}]}),
            ),
        ),
        case(
            "find-care",
            "POST",
            "HealthcareService/$find-care",
            Some(params(json!([
            {"name": "patient", "valueReference": {"reference": "Patient/kid"}},
            {"name": "service", "valueString": "cardiology"}]))),
        ),
        case(
            "find",
            "POST",
            "Appointment/$find",
            Some(params(json!([
            {"name": "start", "valueDateTime": "2020-01-01T00:00:00Z"},
            {"name": "end", "valueDateTime": "2099-01-01T00:00:00Z"},
            {"name": "patient", "valueReference": {"reference": "Patient/kid"}}]))),
        ),
        case(
            "hold",
            "POST",
            "Appointment/$hold",
            Some(params(json!([
            {"name": "slot", "valueReference": {"reference": "Slot/slot0"}},
            {"name": "patient", "valueReference": {"reference": "Patient/kid"}}]))),
        ),
        case(
            "book",
            "POST",
            "Appointment/$book",
            Some(params(json!([
            {"name": "slot", "valueReference": {"reference": "Slot/slot1"}},
            {"name": "patient", "valueReference": {"reference": "Patient/kid"}}]))),
        ),
        case(
            "refer",
            "POST",
            "ServiceRequest/$refer",
            Some(params(json!([
            {"name": "patient", "valueReference": {"reference": "Patient/kid"}},
            {"name": "service", "valueReference": {"reference": "HealthcareService/cardio"}},
            {"name": "reason", "valueString": "murmur"},
            {"name": "requester", "valueReference": {"reference": "Organization/cc"}}]))),
        ),
        case(
            "match",
            "POST",
            "Patient/$match",
            Some(params(json!([
            {"name": "resource", "resource": {"resourceType": "Patient", "birthDate": "2016-04-01", "name": [{"family": "Okafor", "given": ["Ben"]}]}}]))),
        ),
        Case {
            caller: Some(clinician.clone()),
            ..case(
                "break-glass",
                "POST",
                "Patient/kid2/$break-glass",
                Some(params(json!([
                {"name": "reason", "valueString": "seen in the emergency department now"}]))),
            )
        },
        // refusals and failures are audited once too (a transfer for a child is refused)
        case(
            "transfer-package",
            "POST",
            "Patient/kid/$transfer-package",
            Some(params(json!([
            {"name": "recipient", "valueReference": {"reference": "Organization/cc"}}]))),
        ),
        Case {
            caller: Some(clinician.clone()),
            ..case("read", "GET", "Condition/nonexistent", None)
        },
        case(
            "create",
            "POST",
            "Patient",
            Some(json!({"resourceType": "Patient", "birthDate": "2020-02-30"})),
        ),
        case(
            "hold",
            "POST",
            "Appointment/$hold",
            Some(params(json!([
            {"name": "slot", "valueReference": {"reference": "Slot/slot1"}},
            {"name": "patient", "valueReference": {"reference": "Patient/kid"}}]))),
        ),
        // a Bulk Data kick-off refused (no Prefer: respond-async) is on the record too
        case("export", "GET", "$export", None),
        // the JSON API beside FHIR
        case("identity-reviews", "GET", "/api/identity/reviews", None),
        case("measures", "GET", "/api/measures?by=month", None),
        case(
            "referral-worklist",
            "GET",
            "/api/worklists/referrals?organization=cc",
            None,
        ),
        case(
            "referral-metrics",
            "GET",
            "/api/metrics/referrals?group_by=month",
            None,
        ),
        case(
            "transition-registry",
            "GET",
            "/api/transition/registry?state=due",
            None,
        ),
        case(
            "transition-metrics",
            "GET",
            "/api/metrics/transition?format=csv",
            None,
        ),
        case(
            "identity-decision",
            "POST",
            "/api/identity/reviews/house-pair/accept",
            None,
        ),
        case(
            "subscription-deliveries",
            "GET",
            "/api/subscriptions/house-sub/deliveries",
            None,
        ),
        case(
            "subscription-resend",
            "POST",
            "/api/subscriptions/house-sub/deliveries/nothing/resend",
            None,
        ),
    ];
    let mut covered: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.of).collect();
    // metadata is the one interaction that is not audited: it discloses nothing
    let before = audit_events(&app).await;
    assert_eq!(
        send(&app, &case("capabilities", "GET", "metadata", None))
            .await
            .status,
        200
    );
    assert_eq!(audit_events(&app).await, before, "metadata is not audited");
    covered.insert("capabilities");
    for c in &cases {
        let before = audit_events(&app).await;
        let r = send(&app, c).await;
        let after = audit_events(&app).await;
        assert_eq!(
            after - before,
            1,
            "{} {} {} answered {} and left {} AuditEvents: {}",
            c.of,
            c.method,
            c.path,
            r.status,
            after - before,
            r.text
        );
    }
    for name in server::rest::INTERACTIONS {
        assert!(covered.contains(name), "no case for the interaction {name}");
    }
    for op in server::rest::ops::OPERATIONS {
        assert!(
            covered.contains(op.code),
            "no case for the operation ${}",
            op.code
        );
    }
}

/// A refused write runs no write rule: no slot taken, no message, no link, no Person.
async fn a_refused_write_leaves_no_side_effects(app: TestApp) {
    seed(&app).await;
    app.upsert(json!({"resourceType": "Organization", "id": "hhc", "name": "Hartford HealthCare"}))
        .await;
    let outsider = app.client_with(
        &app.token_for("user/*.cruds", &["clinician@hhc"], &["Practitioner/h1"])
            .await,
    );
    let before = app.row_counts().await;
    let writes = [
        (
            "PUT",
            "Appointment/a1",
            json!({"resourceType": "Appointment", "id": "a1", "status": "booked",
            "slot": [{"reference": "Slot/slot2"}],
            "participant": [{"actor": {"reference": "Patient/kid"}, "status": "accepted"},
                {"actor": {"reference": "Location/site"}, "status": "accepted"}]}),
        ),
        (
            "POST",
            "Appointment",
            json!({"resourceType": "Appointment", "status": "booked",
            "slot": [{"reference": "Slot/slot3"}],
            "participant": [{"actor": {"reference": "Patient/kid"}, "status": "accepted"}]}),
        ),
        (
            "POST",
            "Patient",
            json!({"resourceType": "Patient", "birthDate": "2016-04-01",
            "name": [{"family": "Okafor", "given": ["Ben"]}],
            "managingOrganization": {"reference": "Organization/cc"}}),
        ),
        (
            "POST",
            "Subscription",
            json!({"resourceType": "Subscription", "status": "requested", "reason": "x",
            "criteria": "Patient?", "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook"}}),
        ),
        (
            "POST",
            "Encounter",
            json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/kid"},
            "extension": [{"url": "http://continuum-alliance.org/fhir/StructureDefinition/minor-consented-care", "valueCode": "PSY"}]}),
        ),
    ];
    // as batch entries (each in a savepoint of its own) the same writes leave nothing either
    let entries: Vec<Value> = writes
        .iter()
        .map(|(method, path, body)| json!({"resource": body, "request": {"method": method, "url": path}}))
        .collect();
    let r = app
        .send(
            outsider
                .post(app.url(""))
                .header("Content-Type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
                        .to_string(),
                ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for e in r.json()["entry"].as_array().unwrap() {
        assert!(
            e["response"]["status"].as_str().unwrap().starts_with("403"),
            "{e}"
        );
    }
    assert_eq!(
        app.row_counts().await,
        before,
        "a batch of refused writes left rows behind"
    );
    for (method, path, body) in writes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .send(
                outsider
                    .request(m, app.url(path))
                    .header("Content-Type", "application/fhir+json")
                    .body(body.to_string()),
            )
            .await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert_eq!(
            app.row_counts().await,
            before,
            "{method} {path} left rows behind"
        );
    }
    for slot in ["slot2", "slot3"] {
        assert_eq!(
            app.get(&format!("Slot/{slot}")).await.json()["status"],
            "free"
        );
    }
}

/// The status of a plain request, and of the same conditional write as a transaction entry
/// (the entry's status, or the whole transaction's when it fails).
async fn statuses(
    app: &TestApp,
    method: &str,
    url: &str,
    body: &Value,
    if_none_exist: Option<&str>,
) -> (u16, u16) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app
        .client
        .request(m, app.url(url))
        .header("Content-Type", "application/fhir+json")
        .body(body.to_string());
    if let Some(q) = if_none_exist {
        req = req.header("If-None-Exist", q);
    }
    let plain = app.send(req).await.status;
    let mut request = json!({"method": method, "url": url});
    if let Some(q) = if_none_exist {
        request["ifNoneExist"] = json!(q);
    }
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": body, "request": request}]});
    let r = app.post("", &tx).await;
    let entry = if r.status == 200 {
        r.json()["entry"][0]["response"]["status"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .next()
            .unwrap_or("")
            .parse()
            .unwrap_or(0)
    } else {
        r.status
    };
    (plain, entry)
}

async fn conditional_writes_in_a_transaction_behave_like_plain_ones(app: TestApp) {
    for (id, mrn) in [("one", "M-1"), ("twin-a", "M-2"), ("twin-b", "M-2")] {
        app.upsert(json!({"resourceType": "Patient", "id": id, "identifier": [{"system": "urn:mrn", "value": mrn}]})).await;
    }
    let patient = |mrn: &str| json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]});
    // conditional create: one match (200, nothing made), several (412); no match creates (201)
    assert_eq!(
        statuses(
            &app,
            "POST",
            "Patient",
            &patient("M-1"),
            Some("identifier=urn:mrn|M-1")
        )
        .await,
        (200, 200)
    );
    assert_eq!(
        statuses(
            &app,
            "POST",
            "Patient",
            &patient("M-2"),
            Some("identifier=urn:mrn|M-2")
        )
        .await,
        (412, 412)
    );
    let (plain, entry) = statuses(
        &app,
        "POST",
        "Patient",
        &patient("M-9"),
        Some("identifier=urn:mrn|M-9"),
    )
    .await;
    assert_eq!(plain, 201);
    // the plain request made M-9, so the transaction's entry now finds it
    assert_eq!(entry, 200);
    // conditional update: one match (200), an id that differs from the match (400), several (412)
    let mut body = patient("M-1");
    assert_eq!(
        statuses(&app, "PUT", "Patient?identifier=urn:mrn|M-1", &body, None).await,
        (200, 200)
    );
    body["id"] = json!("someone-else");
    assert_eq!(
        statuses(&app, "PUT", "Patient?identifier=urn:mrn|M-1", &body, None).await,
        (400, 400)
    );
    assert_eq!(
        statuses(
            &app,
            "PUT",
            "Patient?identifier=urn:mrn|M-2",
            &patient("M-2"),
            None
        )
        .await,
        (412, 412)
    );
    // no match: created (201), under the body's id when it has one
    let mut fresh = patient("M-7");
    fresh["id"] = json!("seven");
    let (plain, entry) =
        statuses(&app, "PUT", "Patient?identifier=urn:mrn|M-7", &fresh, None).await;
    assert_eq!(
        (plain, entry),
        (201, 200),
        "the plain PUT created it; the entry then updates it"
    );
    assert_eq!(app.get("Patient/seven").await.status, 200);
}

/// The jobs the server runs are the library's, and a test runs them: a hold lapses (by the
/// injected clock) and the scheduler's job releases it, recorded in the audit trail.
async fn the_jobs_users_run_are_the_ones_tests_run(app: TestApp) {
    seed(&app).await;
    assert!(app.jobs.names().contains(&"holds:release"));
    assert!(app.jobs.names().contains(&"slots:generate"));
    let r = app
        .post(
            "Appointment/$hold",
            &params(json!([
                {"name": "slot", "valueReference": {"reference": "Slot/slot0"}},
                {"name": "patient", "valueReference": {"reference": "Patient/kid"}}])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        app.jobs.run_now("holds:release").await.unwrap(),
        None,
        "the hold is live"
    );
    // the hold's expiry moves into the past
    let mut slot = app.get("Slot/slot0").await.json();
    for e in slot["extension"].as_array_mut().unwrap() {
        if e["url"].as_str().unwrap().ends_with("hold-expires") {
            e["valueInstant"] = json!("2020-01-01T00:00:00Z");
        }
    }
    assert_eq!(app.put("Slot/slot0", &slot).await.status, 200);
    let before = audit_events(&app).await;
    let ran = app.jobs.run_now("holds:release").await.unwrap();
    assert_eq!(ran.as_deref(), Some("1 lapsed slot holds released"));
    assert_eq!(
        audit_events(&app).await,
        before + 1,
        "the job's run is audited"
    );
    assert_eq!(app.get("Slot/slot0").await.json()["status"], "free");
    assert!(app.jobs.run_now("no-such-job").await.is_err());
}

/// The audit trail is a store of its own: reads and searches add their AuditEvents there and
/// leave the resource database as it was; a write's event is sealed into the chain before its
/// answer leaves (none left pending), and the chain verifies.
async fn reads_leave_the_resource_database_untouched(app: TestApp) {
    seed(&app).await;
    let rows = || async { app.store.read(|tx| tx.row_counts()).await.unwrap() };
    let before_rows = rows().await;
    let before = audit_events(&app).await;
    for _ in 0..5 {
        assert_eq!(app.get("Patient/kid").await.status, 200);
        assert_eq!(app.get("Patient?family=Rivera").await.status, 200);
    }
    assert_eq!(
        rows().await,
        before_rows,
        "reads wrote to the resource database"
    );
    assert_eq!(audit_events(&app).await, before + 10);
    let created = app
        .post("Patient", &json!({"resourceType": "Patient"}))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        audit_events(&app).await,
        before + 11,
        "sealed before the answer"
    );
    let v = app.store.read(store::audit::verify).await.unwrap();
    assert_eq!(v.first_broken, None);
    assert_eq!(v.pending, 0);
    // AuditEvents are read on their own, not inside a Bundle of writes
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "GET", "url": "AuditEvent?_count=1"}}]}),
        )
        .await;
    assert!(matches!(r.status, 400 | 403), "{}", r.text);
    // nor reached into from other searches
    let r = app.get("Patient?_has:AuditEvent:entity:action=R").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("searched on its own"), "{}", r.text);
    // an untyped entity is exact: the id under any type, never a different case
    let by_id = app.get("AuditEvent?entity=kid&_summary=count").await.json();
    let typed = app
        .get("AuditEvent?entity=Patient/kid&_summary=count")
        .await
        .json();
    assert!(by_id["total"].as_i64().unwrap() >= 5, "{by_id}");
    assert_eq!(by_id["total"], typed["total"]);
    let other_case = app.get("AuditEvent?entity=KID&_summary=count").await.json();
    assert_eq!(other_case["total"], 0, "{other_case}");
    // a refusal whose event carries what a caller typed (a 5,000-character client id) is
    // still on the record, and the chain still verifies
    let before = audit_events(&app).await;
    let t = app
        .send(
            reqwest::Client::new()
                .post(app.url("/auth/token"))
                .basic_auth("x".repeat(5000), Some("nothing"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        )
        .await;
    assert_eq!(t.status, 401);
    assert_eq!(audit_events(&app).await, before + 1);
    let v = app.store.read(store::audit::verify).await.unwrap();
    assert_eq!(v.first_broken, None);
}

both_engines!(
    reads_leave_the_resource_database_untouched,
    every_interaction_and_operation_is_audited_exactly_once,
    a_refused_write_leaves_no_side_effects,
    conditional_writes_in_a_transaction_behave_like_plain_ones,
    the_jobs_users_run_are_the_ones_tests_run,
);
