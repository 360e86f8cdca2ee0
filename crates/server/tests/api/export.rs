//! FHIR Bulk Data export (Bulk Data Access IG 2.0.0) end to end, on both engines: kick-off →
//! poll → manifest → download, and the NDJSON re-imported into a fresh server with the same
//! counts; `_since` and `_typeFilter` select exactly what they should; a caller limited by
//! organisation gets exactly what their own searches show; Group and POST kick-offs; cancel;
//! a job resumed after a restart, and taken over when its worker died; each export audited.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use care::Clock as _;
use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{Engine, Resp, TestApp};

async fn audit_events(app: &TestApp) -> i64 {
    app.store.read(store::audit::count).await.unwrap()
}

/// Two organisations' patients, their observations, and a group of two of them.
async fn seed(app: &TestApp) {
    for (id, name) in [
        ("cc", "Connecticut Children's"),
        ("hhc", "Hartford HealthCare"),
    ] {
        app.upsert(json!({"resourceType": "Organization", "id": id, "name": name}))
            .await;
    }
    for (id, org, family) in [
        ("p1", "cc", "Okafor"),
        ("p2", "cc", "Reyes"),
        ("p3", "hhc", "Lindqvist"),
    ] {
        app.upsert(
            json!({"resourceType": "Patient", "id": id, "birthDate": "2015-03-04",
            "name": [{"family": family, "given": ["Sam"]}],
            "managingOrganization": {"reference": format!("Organization/{org}")}}),
        )
        .await;
    }
    for (id, patient, code, status) in [
        ("o1", "p1", "8302-2", "final"),
        ("o2", "p2", "29463-7", "final"),
        ("o3", "p3", "8302-2", "preliminary"),
        ("o5", "p3", "29463-7", "final"),
    ] {
        app.upsert(
            json!({"resourceType": "Observation", "id": id, "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "valueQuantity": {"value": 120, "unit": "cm"}}),
        )
        .await;
    }
    app.upsert(
        json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p3"}},
                   {"entity": {"reference": "Patient/p2"}, "inactive": true}]}),
    )
    .await;
}

/// Starts an export with GET; the status URL.
async fn kick_off(app: &TestApp, client: &reqwest::Client, path: &str) -> String {
    let r = app
        .send(
            client
                .get(app.url(path))
                .header("Prefer", "respond-async")
                .header("Accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(r.status, 202, "{path}: {}", r.text);
    r.header("content-location").expect("Content-Location")
}

/// Polls a status URL until the manifest comes.
async fn manifest(app: &TestApp, client: &reqwest::Client, status_url: &str) -> Value {
    for _ in 0..400 {
        let r = app.send(client.get(status_url)).await;
        match r.status {
            200 => {
                assert!(
                    r.header("expires").is_some(),
                    "a manifest says when it expires"
                );
                return r.json();
            }
            202 => {
                assert!(r.header("x-progress").is_some());
                assert!(r.header("retry-after").is_some());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            s => panic!("status {s}: {}", r.text),
        }
    }
    panic!("the export did not finish")
}

async fn export(app: &TestApp, client: &reqwest::Client, path: &str) -> Value {
    let url = kick_off(app, client, path).await;
    manifest(app, client, &url).await
}

/// A file's resources.
async fn download(app: &TestApp, client: &reqwest::Client, url: &str) -> Vec<Value> {
    let r = app
        .send(client.get(url).header("Accept", "application/fhir+ndjson"))
        .await;
    assert_eq!(r.status, 200, "{url}: {}", r.text);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/fhir+ndjson")
    );
    r.text
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one resource per line ({e}): {l}"))
        })
        .collect()
}

/// The ids per type in a manifest's files (checking each file's count).
async fn ids_of(
    app: &TestApp,
    client: &reqwest::Client,
    m: &Value,
) -> Vec<(String, BTreeSet<String>)> {
    let mut out: Vec<(String, BTreeSet<String>)> = Vec::new();
    for o in m["output"].as_array().unwrap() {
        let rt = o["type"].as_str().unwrap().to_string();
        let resources = download(app, client, o["url"].as_str().unwrap()).await;
        assert_eq!(
            o["count"].as_u64().unwrap() as usize,
            resources.len(),
            "{rt}'s count"
        );
        assert!(resources.iter().all(|r| r["resourceType"] == rt.as_str()));
        let ids: BTreeSet<String> = resources
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), resources.len(), "no resource twice in {rt}");
        match out.iter_mut().find(|(t, _)| *t == rt) {
            Some((_, s)) => s.extend(ids),
            None => out.push((rt, ids)),
        }
    }
    out
}

fn of<'a>(ids: &'a [(String, BTreeSet<String>)], rt: &str) -> Vec<&'a str> {
    ids.iter()
        .find(|(t, _)| t == rt)
        .map(|(_, s)| s.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The ids of a type a caller's own search finds.
async fn searched(app: &TestApp, client: &reqwest::Client, rt: &str) -> BTreeSet<String> {
    let r = app.get_as(client, &format!("{rt}?_count=1000")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn a_system_export_round_trips_into_a_fresh_server(app: TestApp) {
    seed(&app).await;
    let before = audit_events(&app).await;
    let url = kick_off(
        &app,
        &app.client,
        "$export?_type=Patient,Observation,Organization",
    )
    .await;
    assert!(url.contains("/fhir/$export-status/"), "{url}");
    let m = manifest(&app, &app.client, &url).await;
    assert_eq!(m["requiresAccessToken"], true);
    assert!(
        m["request"]
            .as_str()
            .unwrap()
            .ends_with("/fhir/$export?_type=Patient,Observation,Organization")
    );
    let tt = fhir::primitive::instant_ms(m["transactionTime"].as_str().unwrap()).unwrap();
    assert!((tt - time::OffsetDateTime::now_utc().unix_timestamp() * 1000).abs() < 60_000);
    assert_eq!(m["error"], json!([]));
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Patient"), vec!["p1", "p2", "p3"]);
    assert_eq!(of(&ids, "Observation"), vec!["o1", "o2", "o3", "o5"]);
    assert_eq!(of(&ids, "Organization"), vec!["cc", "hhc"]);
    // one AuditEvent for the kick-off, one per type written, one per download; polls none
    let files = m["output"].as_array().unwrap().len() as i64;
    assert_eq!(audit_events(&app).await - before, 1 + 3 + files);
    let polls = audit_events(&app).await;
    assert_eq!(app.send(app.client.get(&url)).await.status, 200);
    assert_eq!(
        audit_events(&app).await,
        polls,
        "a status poll is not audited"
    );

    // the files re-import into a fresh server, and the counts agree
    let fresh = TestApp::spawn(app.engine).await;
    let mut entries = Vec::new();
    for rt in ["Organization", "Patient", "Observation"] {
        let o = m["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == rt)
            .unwrap();
        for r in download(&app, &app.client, o["url"].as_str().unwrap()).await {
            let url = format!("{rt}/{}", r["id"].as_str().unwrap());
            entries.push(json!({"resource": r, "request": {"method": "PUT", "url": url}}));
        }
    }
    let r = fresh
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for rt in ["Organization", "Patient", "Observation"] {
        assert_eq!(
            searched(&fresh, &fresh.client, rt).await,
            searched(&app, &app.client, rt).await,
            "{rt}"
        );
    }

    // another caller does not see the job, its manifest or its files
    let other = app.client_with(&app.token_for("system/*.rs", &[], &[]).await);
    assert_eq!(app.send(other.get(&url)).await.status, 404);
    let file = m["output"][0]["url"].as_str().unwrap();
    assert_eq!(app.send(other.get(file)).await.status, 404);
    assert_eq!(app.send(app.anonymous.get(file)).await.status, 401);
}

async fn since_and_type_filters_select_exactly(app: TestApp) {
    seed(&app).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let since = fhir::primitive::format_instant(since as i64);
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.upsert(
        json!({"resourceType": "Observation", "id": "o1", "status": "amended",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 121, "unit": "cm"}}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "Observation", "id": "o4", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": "Patient/p2"}}),
    )
    .await;
    let q = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // _since: only what changed after it (strictly), nothing of the types that did not change
    let m = export(
        &app,
        &app.client,
        &format!("$export?_type=Patient,Observation&_since={}", q(&since)),
    )
    .await;
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Observation"), vec!["o1", "o4"]);
    assert!(
        of(&ids, "Patient").is_empty(),
        "no Patient changed: {ids:?}"
    );
    // one filter
    let m = export(
        &app,
        &app.client,
        &format!(
            "$export?_type=Observation&_typeFilter={}",
            q("Observation?code=http://loinc.org|8302-2")
        ),
    )
    .await;
    assert_eq!(
        of(&ids_of(&app, &app.client, &m).await, "Observation"),
        vec!["o1", "o3", "o4"]
    );
    // two filters are a union, each resource once (o3 matches both); a comma inside a query stays in it
    let m = export(
        &app,
        &app.client,
        &format!(
            "$export?_type=Observation,Patient&_typeFilter={}",
            q("Observation?code=8302-2&status=preliminary,Observation?status=amended,final")
        ),
    )
    .await;
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Observation"), vec!["o1", "o2", "o3", "o4", "o5"]);
    assert_eq!(
        of(&ids, "Patient"),
        vec!["p1", "p2", "p3"],
        "a type without a filter is exported whole"
    );
    let m = export(
        &app,
        &app.client,
        &format!(
            "$export?_typeFilter={},{}",
            q("Observation?status=preliminary"),
            q("Patient?family=Reyes")
        ),
    )
    .await;
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Observation"), vec!["o3"]);
    assert_eq!(of(&ids, "Patient"), vec!["p2"]);
    assert_eq!(of(&ids, "Organization"), vec!["cc", "hhc"]);

    // what the IG does not allow is refused, in words, before any job exists
    for (path, words) in [
        ("$export?_type=Nonsense", "not a resource type"),
        ("$export?_since=2026-01-01", "not a FHIR instant"),
        ("$export?_outputFormat=text/csv", "_outputFormat"),
        (
            "$export?_type=Patient&_typeFilter=Observation%3Fstatus%3Dfinal",
            "_type does not list",
        ),
        ("$export?_typeFilter=Observation%3Fnonsense%3D1", "nonsense"),
        (
            "Patient/$export?_type=Organization",
            "not in the Patient compartment",
        ),
        ("$export?_elements=id", "not supported"),
    ] {
        let r = app
            .send(
                app.client
                    .get(app.url(path))
                    .header("Prefer", "respond-async"),
            )
            .await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.text.contains(words), "{path}: {}", r.text);
    }
    let r = app.get("$export").await;
    assert_eq!(r.status, 400, "without Prefer: respond-async: {}", r.text);
    assert!(r.text.contains("respond-async"));
    let r = app
        .send(
            app.client
                .get(app.url("Group/nobody/$export"))
                .header("Prefer", "respond-async"),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
}

async fn a_limited_caller_exports_only_what_they_may_see(app: TestApp) {
    seed(&app).await;
    // a clinician of Hartford HealthCare: p3 is theirs
    let clinician = app.client_with(
        &app.token_for("user/*.rs", &["clinician@hhc"], &["Practitioner/h1"])
            .await,
    );
    let m = export(&app, &clinician, "Patient/$export").await;
    let ids = ids_of(&app, &clinician, &m).await;
    assert_eq!(of(&ids, "Patient"), vec!["p3"]);
    assert_eq!(of(&ids, "Observation"), vec!["o3", "o5"]);
    for (rt, got) in &ids {
        assert_eq!(
            got,
            &searched(&app, &clinician, rt).await,
            "{rt}: the export shows what a search shows"
        );
    }
    let m = export(&app, &clinician, "$export?_type=Patient,Observation").await;
    let sys = ids_of(&app, &clinician, &m).await;
    assert_eq!(of(&sys, "Patient"), vec!["p3"]);
    assert_eq!(of(&sys, "Observation"), vec!["o3", "o5"]);
    // a type their scopes do not allow is left out, and the error file says why
    let narrow = app.client_with(&app.token_for("system/Patient.rs", &[], &[]).await);
    let m = export(&app, &narrow, "$export?_type=Patient,Observation").await;
    assert_eq!(
        of(&ids_of(&app, &narrow, &m).await, "Patient"),
        vec!["p1", "p2", "p3"]
    );
    assert_eq!(m["output"].as_array().unwrap().len(), 1);
    let errors = download(&app, &narrow, m["error"][0]["url"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Observation")
    );
    // nothing at all is 403
    let r = app
        .send(
            narrow
                .get(app.url("$export?_type=Observation"))
                .header("Prefer", "respond-async"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

/// A parent exporting their teenager's record gets the record without the confidential care
/// (and nobody else's): the same as their own searches.
async fn a_proxys_export_leaves_out_confidential_care(app: TestApp) {
    seed(&app).await;
    let fifteen = {
        let t = time::OffsetDateTime::now_utc().date();
        let d = t.replace_year(t.year() - 15).unwrap_or(t);
        format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
    };
    app.upsert(
        json!({"resourceType": "Patient", "id": "teen", "birthDate": fifteen,
        "managingOrganization": {"reference": "Organization/cc"}}),
    )
    .await;
    app.upsert(json!({"resourceType": "RelatedPerson", "id": "mom", "patient": {"reference": "Patient/teen"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]}))
        .await;
    for (id, label) in [("plain", None), ("psy", Some("PSY"))] {
        let mut c = json!({"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/teen"},
            "code": {"text": format!("condition {id}")}});
        if let Some(l) = label {
            c["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": l}]});
        }
        app.upsert(c).await;
    }
    let mom = app.client_with(
        &app.token_for("user/*.rs", &["proxy"], &["RelatedPerson/mom"])
            .await,
    );
    let m = export(
        &app,
        &mom,
        "Patient/$export?_type=Patient,Condition,Observation",
    )
    .await;
    let ids = ids_of(&app, &mom, &m).await;
    assert_eq!(of(&ids, "Patient"), vec!["teen"]);
    assert_eq!(
        of(&ids, "Condition"),
        vec!["plain"],
        "the confidential Condition is not in the file"
    );
    assert!(
        of(&ids, "Observation").is_empty(),
        "nobody else's observations"
    );
    for (rt, got) in &ids {
        assert_eq!(got, &searched(&app, &mom, rt).await, "{rt}");
    }
    // and the counts say so too
    let conditions = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "Condition")
        .unwrap();
    assert_eq!(conditions["count"], 1);
}

async fn group_and_post_kick_offs(app: TestApp) {
    seed(&app).await;
    // the active members only
    let m = export(&app, &app.client, "Group/g1/$export").await;
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Patient"), vec!["p1", "p3"]);
    assert_eq!(of(&ids, "Observation"), vec!["o1", "o3", "o5"]);
    assert!(
        of(&ids, "Organization").is_empty(),
        "an Organization is not in a patient's compartment"
    );
    // POST with Parameters: types and one patient of the group
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation"},
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "patient", "valueReference": {"reference": "Patient/p3"}}]});
    let r = app
        .send(
            app.client
                .post(app.url("Group/g1/$export"))
                .header("Prefer", "respond-async")
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let m = manifest(&app, &app.client, &r.header("content-location").unwrap()).await;
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Observation"), vec!["o3", "o5"]);
    assert_eq!(ids.len(), 1);
    // a patient outside the group is refused
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/p2"}}]});
    let r = app
        .send(
            app.client
                .post(app.url("Group/g1/$export"))
                .header("Prefer", "respond-async")
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Patient/$export over everyone: compartment types only
    let m = export(&app, &app.client, "Patient/$export").await;
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Patient"), vec!["p1", "p2", "p3"]);
    assert!(of(&ids, "Organization").is_empty());
    assert_eq!(
        of(&ids, "Group"),
        vec!["g1"],
        "a Group is in its members' compartments"
    );
}

async fn cancel_deletes_the_job_and_its_files(app: TestApp) {
    seed(&app).await;
    let url = kick_off(&app, &app.client, "$export?_type=Patient").await;
    let m = manifest(&app, &app.client, &url).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_string();
    let before = audit_events(&app).await;
    let r: Resp = app.send(app.client.delete(&url)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(
        audit_events(&app).await - before,
        1,
        "a cancellation is audited"
    );
    let r = app.send(app.client.get(&url)).await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("cancelled"), "{}", r.text);
    assert_eq!(app.send(app.client.get(&file)).await.status, 404);
    assert_eq!(app.send(app.client.delete(&url)).await.status, 404);
}

both_engines!(
    a_system_export_round_trips_into_a_fresh_server,
    since_and_type_filters_select_exactly,
    a_limited_caller_exports_only_what_they_may_see,
    a_proxys_export_leaves_out_confidential_care,
    group_and_post_kick_offs,
    cancel_deletes_the_job_and_its_files,
);

/// A job goes on after a restart from the type it was writing; a worker that died holding a
/// job loses it when its lease lapses; a job cancelled before it ran writes nothing.
async fn a_job_survives_a_restart(engine: Engine) {
    let clock = Arc::new(care::FixedClock::at(
        time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
    ));
    let config = || {
        let mut export = server::app::export::ExportConfig::default();
        export.start_at_once = false;
        server::ServerConfig {
            export: Arc::new(export),
            ..Default::default()
        }
    };
    let app = TestApp::spawn_with_clock(engine, config(), clock.clone()).await;
    seed(&app).await;
    clock.advance(1000);
    let url = kick_off(&app, &app.client, "$export?_type=Patient,Observation").await;
    // the first type is written, then the worker dies while writing the second (its lease held)
    let did = server::app::export::step(app.jobs.app()).await.unwrap();
    assert!(did.unwrap().contains("3 Patient"));
    let now = clock.now_ms();
    let held = app
        .store
        .write(move |tx| tx.export_claim(now, now + 180_000))
        .await
        .unwrap();
    assert!(held.is_some());
    let r = app.send(app.client.get(&url)).await;
    assert_eq!(r.status, 202);
    assert!(
        r.header("x-progress").unwrap().contains("1 of 2"),
        "{:?}",
        r.header("x-progress")
    );
    // a new server on the same database: nothing to take while the lease holds
    let restarted = server::start(app.store.clone(), &config()).await.unwrap();
    assert_eq!(restarted.jobs.run_now("bulk-export").await.unwrap(), None);
    assert_eq!(app.send(app.client.get(&url)).await.status, 202);
    // once it lapses, the job is taken over and finished
    clock.advance(181_000);
    let ran = restarted
        .jobs
        .run_now("bulk-export")
        .await
        .unwrap()
        .unwrap();
    assert!(ran.contains("completed"), "{ran}");
    let m = manifest(&app, &app.client, &url).await;
    let ids = ids_of(&app, &app.client, &m).await;
    assert_eq!(of(&ids, "Patient"), vec!["p1", "p2", "p3"]);
    assert_eq!(of(&ids, "Observation"), vec!["o1", "o2", "o3", "o5"]);

    // cancelled before the worker ran: nothing written, the status gone
    let url = kick_off(&app, &app.client, "$export?_type=Patient").await;
    assert_eq!(app.send(app.client.get(&url)).await.status, 202);
    assert_eq!(app.send(app.client.delete(&url)).await.status, 202);
    assert_eq!(restarted.jobs.run_now("bulk-export").await.unwrap(), None);
    assert_eq!(app.send(app.client.get(&url)).await.status, 404);
    // files past their retention are deleted with their job
    clock.advance(25 * 3_600_000);
    let ran = restarted
        .jobs
        .run_now("bulk-export")
        .await
        .unwrap()
        .unwrap();
    assert!(ran.contains("expired"), "{ran}");
    assert_eq!(
        app.send(app.client.get(m["output"][0]["url"].as_str().unwrap()))
            .await
            .status,
        404
    );
}

mod a_job_survives_a_restart {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_job_survives_a_restart(crate::helpers::Engine::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_job_survives_a_restart(crate::helpers::Engine::Postgres).await
    }
}
