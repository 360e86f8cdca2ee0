//! Create, read, vread, update, delete and history: versions, headers and preconditions.

use serde_json::json;

use crate::both_engines;
use crate::helpers::TestApp;

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ana"]}], "birthDate": "2012-04-05", "gender": "female"})
}

async fn create_read_and_headers(app: TestApp) {
    let r = app.post("Patient", &patient("Rivera")).await;
    assert_eq!(r.status, 201);
    let body = r.json();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.header("etag").unwrap(), "W/\"1\"");
    assert!(r.header("last-modified").unwrap().ends_with("GMT"));
    assert_eq!(
        r.header("location").unwrap(),
        format!("{}/Patient/{id}/_history/1", app.base)
    );
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );

    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), body);
    assert_eq!(read.header("etag").unwrap(), "W/\"1\"");

    // a client-supplied id on create is replaced by the server's
    let r = app
        .post("Patient", &json!({"resourceType": "Patient", "id": "mine"}))
        .await;
    assert_eq!(r.status, 201);
    assert_ne!(r.json()["id"], "mine");

    // conditional read
    let r = app
        .send(
            app.client
                .get(app.url(&format!("Patient/{id}")))
                .header("If-None-Match", "W/\"1\""),
        )
        .await;
    assert_eq!(r.status, 304);

    let missing = app.get("Patient/does-not-exist").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.issue_code(), "not-found");
}

async fn update_versions_and_if_match(app: TestApp) {
    let created = app.create(patient("Rivera")).await;
    let id = created["id"].as_str().unwrap();
    let mut changed = created.clone();
    changed["name"][0]["family"] = json!("Rivera-Lopez");
    let r = app.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["meta"]["versionId"], "2");
    assert_eq!(r.header("etag").unwrap(), "W/\"2\"");

    // stale If-Match → 412, nothing written
    let before = app.row_counts().await;
    let r = app
        .send(
            app.client
                .put(app.url(&format!("Patient/{id}")))
                .header("Content-Type", "application/fhir+json")
                .header("If-Match", "W/\"1\"")
                .body(changed.to_string()),
        )
        .await;
    assert_eq!(r.status, 412);
    assert_eq!(app.row_counts().await, before);
    // current If-Match → ok
    let r = app
        .send(
            app.client
                .put(app.url(&format!("Patient/{id}")))
                .header("Content-Type", "application/fhir+json")
                .header("If-Match", "W/\"2\"")
                .body(changed.to_string()),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["meta"]["versionId"], "3");

    // vread of every version
    let v1 = app.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(v1.status, 200);
    assert_eq!(v1.json()["name"][0]["family"], "Rivera");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/2")).await.json()["name"][0]["family"],
        "Rivera-Lopez"
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/9")).await.status,
        404
    );

    // update-as-create with a client id
    let r = app
        .put(
            "Patient/client-chosen-1",
            &json!({"resourceType": "Patient", "id": "client-chosen-1", "active": true}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["meta"]["versionId"], "1");
    assert_eq!(app.get("Patient/client-chosen-1").await.status, 200);
}

async fn delete_is_versioned(app: TestApp) {
    let created = app.create(patient("Gone")).await;
    let id = created["id"].as_str().unwrap();
    let r = app.delete(&format!("Patient/{id}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("etag").unwrap(), "W/\"2\"");
    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 410);
    assert_eq!(read.issue_code(), "deleted");
    // the old version is still readable, the deletion version is gone
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/1")).await.status,
        200
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/2")).await.status,
        410
    );
    // deleting again, or something that never existed, is not an error
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, 204);
    assert_eq!(app.delete("Patient/never-was").await.status, 204);
    // not found by search
    let s = app.get(&format!("Patient?_id={id}")).await.json();
    assert_eq!(s["total"], 0);
    // history keeps the deletion
    let h = app.get(&format!("Patient/{id}/_history")).await.json();
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 2);
    assert_eq!(h["entry"][0]["request"]["method"], "DELETE");
    assert!(h["entry"][0].get("resource").is_none());
    assert_eq!(h["entry"][1]["request"]["method"], "POST");
    // an update brings it back as version 3
    let mut again = created.clone();
    again["active"] = json!(true);
    let r = app.put(&format!("Patient/{id}"), &again).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["meta"]["versionId"], "3");
}

async fn type_and_system_history_page(app: TestApp) {
    for i in 0..5 {
        app.create(patient(&format!("H{i}"))).await;
    }
    app.create(json!({"resourceType": "Organization", "name": "Clinic"}))
        .await;
    let h = app.get("Patient/_history?_count=2").await.json();
    assert_eq!(h["entry"].as_array().unwrap().len(), 2);
    let mut seen = 0;
    let mut next = Some(format!("{}/Patient/_history?_count=2", app.base));
    while let Some(url) = next {
        let page = app.get(&url).await.json();
        seen += page["entry"].as_array().map_or(0, Vec::len);
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, 5);
    // system history holds the six resources created (the audit trail is a store of its own)
    // and the readiness Questionnaire every server carries, stored at start
    let all = app.get("_history?_count=100").await.json();
    let (carried, data): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|e| e["resource"]["resourceType"] == "Questionnaire");
    assert_eq!(carried.len(), 1);
    assert_eq!(data.len(), 6);
    assert_eq!(data[0]["resource"]["resourceType"], "Organization");
    let since = app
        .get("Patient/_history?_since=2999-01-01T00:00:00Z")
        .await
        .json();
    assert!(since.get("entry").is_none());
}

async fn prefer_return(app: TestApp) {
    let minimal = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("Content-Type", "application/fhir+json")
                .header("Prefer", "return=minimal")
                .body(patient("Min").to_string()),
        )
        .await;
    assert_eq!(minimal.status, 201);
    assert!(minimal.text.is_empty());
    assert!(minimal.header("location").is_some());
    let oo = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("Content-Type", "application/fhir+json")
                .header("Prefer", "return=OperationOutcome")
                .body(patient("OO").to_string()),
        )
        .await;
    assert_eq!(oo.status, 201);
    assert_eq!(oo.json()["resourceType"], "OperationOutcome");
    assert_eq!(oo.json()["issue"][0]["severity"], "information");
}

async fn conditional_create_update_delete(app: TestApp) {
    let mut p = patient("Cond");
    p["identifier"] = json!([{"system": "urn:oid:2.16.840.1.113883.3.1", "value": "MRN-1"}]);
    let send = |body: serde_json::Value| {
        app.client
            .post(app.url("Patient"))
            .header("Content-Type", "application/fhir+json")
            .header(
                "If-None-Exist",
                "identifier=urn:oid:2.16.840.1.113883.3.1|MRN-1",
            )
            .body(body.to_string())
    };
    let first = app.send(send(p.clone())).await;
    assert_eq!(first.status, 201);
    let second = app.send(send(p.clone())).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["id"], first.json()["id"]);
    assert_eq!(app.get("Patient?identifier=MRN-1").await.json()["total"], 1);

    // conditional update finds the one match
    let mut upd = p.clone();
    upd["active"] = json!(false);
    let r = app
        .put(
            "Patient?identifier=urn:oid:2.16.840.1.113883.3.1|MRN-1",
            &upd,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["id"], first.json()["id"]);
    assert_eq!(r.json()["meta"]["versionId"], "2");
    // ... or creates when nothing matches
    let mut other = patient("Other");
    other["identifier"] = json!([{"system": "urn:x", "value": "9"}]);
    assert_eq!(
        app.put("Patient?identifier=urn:x|9", &other).await.status,
        201
    );

    // two matches → 412 for conditional create
    app.create(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:dup", "value": "1"}]}),
    )
    .await;
    app.create(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:dup", "value": "1"}]}),
    )
    .await;
    let r = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("Content-Type", "application/fhir+json")
                .header("If-None-Exist", "identifier=urn:dup|1")
                .body(p.to_string()),
        )
        .await;
    assert_eq!(r.status, 412);
    assert_eq!(r.issue_code(), "multiple-matches");
    assert_eq!(app.delete("Patient?identifier=urn:dup|1").await.status, 412);

    // conditional delete of the single match
    assert_eq!(app.delete("Patient?identifier=urn:x|9").await.status, 204);
    assert_eq!(
        app.get("Patient?identifier=urn:x|9").await.json()["total"],
        0
    );
}

async fn concurrent_conditional_creates_make_one(app: TestApp) {
    let body =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "1"}]})
            .to_string();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let req = app
            .client
            .post(app.url("Patient"))
            .header("Content-Type", "application/fhir+json")
            .header("If-None-Exist", "identifier=urn:race|1")
            .body(body.clone());
        handles.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        app.get("Patient?identifier=urn:race|1").await.json()["total"],
        1
    );
}

async fn summary_and_elements_on_read(app: TestApp) {
    let mut p = patient("Sum");
    p["photo"] = json!([{"contentType": "image/png", "data": "aGVsbG8="}]);
    let created = app.create(p).await;
    let id = created["id"].as_str().unwrap();
    let s = app.get(&format!("Patient/{id}?_summary=true")).await.json();
    assert!(s.get("photo").is_none() && s.get("name").is_some());
    let e = app
        .get(&format!("Patient/{id}?_elements=birthDate"))
        .await
        .json();
    assert!(e.get("name").is_none() && e.get("birthDate").is_some());
    assert_eq!(e["meta"]["tag"][0]["code"], "SUBSETTED");
}

both_engines!(
    create_read_and_headers,
    update_versions_and_if_match,
    delete_is_versioned,
    type_and_system_history_page,
    prefer_return,
    conditional_create_update_delete,
    concurrent_conditional_creates_make_one,
    summary_and_elements_on_read,
);
