//! `transaction` and `batch` Bundles at `POST /fhir`.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

fn entry(full_url: &str, method: &str, url: &str, resource: Option<Value>) -> Value {
    let mut e = json!({"fullUrl": full_url, "request": {"method": method, "url": url}});
    if let Some(r) = resource {
        e["resource"] = r;
    }
    e
}

async fn transaction_resolves_urn_uuids(app: TestApp) {
    for org in ["shore", "cc"] {
        let r = app
            .put(
                &format!("Organization/{org}"),
                &json!({"resourceType": "Organization", "id": org, "name": org}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        // the referrer comes first, the patient it points at second: order must not matter
        entry("urn:uuid:9b1c7f2e-0000-4000-8000-000000000002", "POST", "ServiceRequest", Some(json!({
            "resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": {"reference": "urn:uuid:9b1c7f2e-0000-4000-8000-000000000001"}}))),
        entry("urn:uuid:9b1c7f2e-0000-4000-8000-000000000001", "POST", "Patient", Some(json!({
            "resourceType": "Patient", "name": [{"family": "Tx"}], "link": [{"other": {"reference": "urn:uuid:9b1c7f2e-0000-4000-8000-000000000001"}, "type": "seealso"}]}))),
        entry("urn:uuid:9b1c7f2e-0000-4000-8000-000000000003", "POST", "Task", Some(json!({
            "resourceType": "Task", "status": "requested", "intent": "order",
            "focus": {"reference": "urn:uuid:9b1c7f2e-0000-4000-8000-000000000002"},
            "for": {"reference": "urn:uuid:9b1c7f2e-0000-4000-8000-000000000001"},
            "requester": {"reference": "Organization/shore"}, "owner": {"reference": "Organization/cc"}}))),
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    assert_eq!(resp["type"], "transaction-response");
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        assert_eq!(e["response"]["status"], "201 Created");
    }
    let sr = &entries[0]["resource"];
    let patient = &entries[1]["resource"];
    let task = &entries[2]["resource"];
    let pid = patient["id"].as_str().unwrap();
    assert_eq!(sr["subject"]["reference"], format!("Patient/{pid}"));
    assert_eq!(
        patient["link"][0]["other"]["reference"],
        format!("Patient/{pid}")
    );
    assert_eq!(
        task["focus"]["reference"],
        format!("ServiceRequest/{}", sr["id"].as_str().unwrap())
    );
    // the stored versions carry the resolved references, and they are searchable
    let found = app.get(&format!("Task?patient={pid}")).await.json();
    assert_eq!(found["total"], 1);
}

async fn transaction_is_all_or_nothing(app: TestApp) {
    let before = app.row_counts().await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("urn:uuid:1d6a1f4a-0000-4000-8000-000000000001", "POST", "Patient", Some(json!({"resourceType": "Patient", "name": [{"family": "Kept?"}]}))),
        entry("urn:uuid:1d6a1f4a-0000-4000-8000-000000000002", "PUT", "Patient/p-ok", Some(json!({"resourceType": "Patient", "id": "p-ok"}))),
        // fails at execution time: a stale If-Match
        json!({"request": {"method": "PUT", "url": "Patient/p-ok", "ifMatch": "W/\"7\""}, "resource": {"resourceType": "Patient", "id": "p-ok"}}),
    ]});
    let r = app.post("", &bundle).await;
    assert!(r.status >= 400, "{}", r.text);
    assert_eq!(
        app.row_counts().await,
        before,
        "nothing of a failed transaction is kept"
    );

    // a failure detected after earlier entries were written also rolls them back
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("urn:uuid:1d6a1f4a-0000-4000-8000-000000000003", "POST", "Patient", Some(json!({"resourceType": "Patient", "name": [{"family": "Rolled"}]}))),
        json!({"request": {"method": "PUT", "url": "Patient/p-two", "ifMatch": "W/\"1\""}, "resource": {"resourceType": "Patient", "id": "p-two"}}),
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert!(
        r.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[1]")
    );
    assert_eq!(app.row_counts().await, before);

    // an invalid resource anywhere rejects the whole bundle before anything runs
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("urn:uuid:1d6a1f4a-0000-4000-8000-000000000004", "POST", "Patient", Some(json!({"resourceType": "Patient"}))),
        entry("urn:uuid:1d6a1f4a-0000-4000-8000-000000000005", "POST", "Patient", Some(json!({"resourceType": "Patient", "birthDate": "2020-02-31"}))),
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["issue"][0]["expression"][0],
        "Bundle.entry[1].resource.birthDate"
    );
    assert_eq!(app.row_counts().await, before);
}

async fn transaction_conditional_create_and_references(app: TestApp) {
    app.create(json!({"resourceType": "Patient", "id": "x", "identifier": [{"system": "urn:mrn", "value": "7"}]})).await;
    let existing =
        app.get("Patient?identifier=urn:mrn|7").await.json()["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        json!({"fullUrl": "urn:uuid:5f0f3b1a-0000-4000-8000-000000000001",
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|7"},
               "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]}}),
        entry("urn:uuid:5f0f3b1a-0000-4000-8000-000000000002", "POST", "Observation", Some(json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "urn:uuid:5f0f3b1a-0000-4000-8000-000000000001"},
            "performer": [{"reference": "Patient?identifier=urn:mrn|7"}]}))),
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    assert_eq!(
        resp["entry"][0]["response"]["status"], "200 OK",
        "the existing patient is used"
    );
    assert_eq!(resp["entry"][0]["resource"]["id"], existing);
    assert_eq!(
        resp["entry"][1]["resource"]["subject"]["reference"],
        format!("Patient/{existing}")
    );
    assert_eq!(
        resp["entry"][1]["resource"]["performer"][0]["reference"],
        format!("Patient/{existing}")
    );
    assert_eq!(
        app.get("Patient?identifier=urn:mrn|7").await.json()["total"],
        1
    );
}

async fn transaction_deletes_updates_and_reads(app: TestApp) {
    app.put(
        "Patient/del-me",
        &json!({"resourceType": "Patient", "id": "del-me"}),
    )
    .await;
    app.put(
        "Patient/upd-me",
        &json!({"resourceType": "Patient", "id": "upd-me"}),
    )
    .await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        json!({"request": {"method": "GET", "url": "Patient?_id=del-me,upd-me"}}),
        json!({"request": {"method": "PUT", "url": "Patient/upd-me"}, "resource": {"resourceType": "Patient", "id": "upd-me", "active": true}}),
        json!({"request": {"method": "DELETE", "url": "Patient/del-me"}}),
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    // GETs run last: the search sees the delete and the update
    assert_eq!(resp["entry"][0]["resource"]["total"], 1);
    assert_eq!(resp["entry"][1]["response"]["status"], "200 OK");
    assert_eq!(resp["entry"][2]["response"]["status"], "204 No Content");
    assert_eq!(app.get("Patient/del-me").await.status, 410);
    // two entries changing one resource is refused
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        json!({"request": {"method": "PUT", "url": "Patient/upd-me"}, "resource": {"resourceType": "Patient", "id": "upd-me"}}),
        json!({"request": {"method": "DELETE", "url": "Patient/upd-me"}}),
    ]});
    assert_eq!(app.post("", &bundle).await.status, 400);
}

async fn large_transaction(app: TestApp) {
    let entries: Vec<Value> = (0..300)
        .map(|i| {
            entry(
                &format!("urn:uuid:00000000-0000-4000-8000-{i:012}"),
                "POST",
                "Patient",
                Some(json!({"resourceType": "Patient", "name": [{"family": format!("Bulk{i}")}]})),
            )
        })
        .collect();
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.get("Patient?name=bulk&_summary=count").await.json()["total"],
        300
    );
}

async fn batch_entries_are_independent(app: TestApp) {
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        json!({"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient", "name": [{"family": "B1"}]}}),
        json!({"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient", "birthDate": "not-a-date"}}),
        json!({"request": {"method": "GET", "url": "Patient/nope"}}),
        json!({"request": {"method": "PUT", "url": "Patient/b3", "ifMatch": "W/\"4\""}, "resource": {"resourceType": "Patient", "id": "b3"}}),
        json!({"request": {"method": "PUT", "url": "Patient/b4"}, "resource": {"resourceType": "Patient", "id": "b4"}}),
        json!({"request": {"method": "GET", "url": "Patient?name=b1"}}),
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = r.json()["entry"].as_array().unwrap().clone();
    assert_eq!(r.json()["type"], "batch-response");
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[1]["response"]["status"], "400 Bad Request");
    assert_eq!(e[1]["response"]["outcome"]["issue"][0]["code"], "value");
    assert_eq!(e[2]["response"]["status"], "404 Not Found");
    assert_eq!(e[3]["response"]["status"], "412 Precondition Failed");
    assert_eq!(e[4]["response"]["status"], "201 Created");
    assert_eq!(e[5]["resource"]["total"], 1);
    assert_eq!(
        app.get("Patient/b3").await.status,
        404,
        "the failed entry wrote nothing"
    );
    assert_eq!(app.get("Patient/b4").await.status, 200);
}

async fn bundle_type_must_fit(app: TestApp) {
    let r = app
        .post("", &json!({"resourceType": "Bundle", "type": "collection"}))
        .await;
    assert_eq!(r.status, 400);
    let r = app.post("", &json!({"resourceType": "Patient"})).await;
    assert_eq!(r.status, 400);
    // a collection Bundle is an ordinary resource at /Bundle
    let r = app.post("Bundle", &json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]})).await;
    assert_eq!(r.status, 201);
}

both_engines!(
    transaction_resolves_urn_uuids,
    transaction_is_all_or_nothing,
    transaction_conditional_create_and_references,
    transaction_deletes_updates_and_reads,
    large_transaction,
    batch_entries_are_independent,
    bundle_type_must_fit,
);
