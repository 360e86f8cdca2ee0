//! The official R4 examples round-trip: every example of a supported type is accepted by
//! create and by update-with-id and reads back equal to what was sent, apart from
//! `meta.versionId`/`meta.lastUpdated` (and, for create, the server-assigned id). The examples
//! come from the npm package `hl7.fhir.r4.examples` that scripts/test puts in a cache folder.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::helpers::{Engine, TestApp};

fn known_rejections() -> BTreeMap<String, String> {
    include_str!("../data/examples-rejected.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(f, why)| (f.to_string(), why.to_string()))
        })
        .collect()
}

/// Removes what the server assigns.
fn comparable(mut v: Value, drop_id: bool) -> Value {
    if let Value::Object(o) = &mut v {
        if drop_id {
            o.remove("id");
        }
        if let Some(Value::Object(meta)) = o.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                o.remove("meta");
            }
        }
    }
    v
}

async fn run(engine: Engine) {
    let dir = std::env::var("CONTINUUM_EXAMPLES_DIR").unwrap_or_else(|_| {
        panic!("CONTINUUM_EXAMPLES_DIR is not set: run the tests with scripts/test, which fetches hl7.fhir.r4.examples")
    });
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let known = known_rejections();
    // Bundle-resources.json (all R4 resource definitions) is 27 MB: above the default body
    // limit of 16 MiB, which is configurable, so this server is given more room
    let app = TestApp::spawn_with(
        engine,
        server::ServerConfig {
            max_body_bytes: 64 * 1024 * 1024,
            ..Default::default()
        },
    )
    .await;
    let (mut accepted, mut rejected_as_listed, mut considered, mut audit_examples) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || name.starts_with('.') || name == "package.json" {
            continue;
        }
        let Ok(example) = serde_json::from_str::<Value>(&std::fs::read_to_string(&path).unwrap())
        else {
            continue;
        };
        let Some(rt) = example["resourceType"].as_str() else {
            continue;
        };
        if !fhir::SUPPORTED_RESOURCE_TYPES.contains(&rt) {
            continue;
        }
        if rt == "AuditEvent" {
            // the audit trail is written by the server only (the CapabilityStatement says so)
            let r = app.post(rt, &example).await;
            assert_eq!(r.status, 403, "{name}: {}", r.text);
            fhir::validate_resource(&example)
                .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}"));
            audit_examples += 1;
            continue;
        }
        considered += 1;
        let created = app.post(rt, &example).await;
        if let Some(why) = known.get(&name) {
            let by_rule = name.starts_with("Task-") && matches!(created.status, 409 | 422);
            if created.status == 400 || by_rule {
                rejected_as_listed += 1;
            } else {
                problems.push(format!(
                    "{name}: listed as rejected ({why}) but create answered {}",
                    created.status
                ));
            }
            continue;
        }
        if created.status != 201 {
            problems.push(format!(
                "{name}: create answered {}: {}",
                created.status,
                &created.text[..created.text.len().min(400)]
            ));
            continue;
        }
        let id = created.json()["id"].as_str().unwrap().to_string();
        let read = app.get(&format!("{rt}/{id}")).await.json();
        if comparable(read, true) != comparable(example.clone(), true) {
            problems.push(format!("{name}: created resource reads back different"));
            continue;
        }
        let Some(example_id) = example["id"].as_str() else {
            accepted += 1;
            continue;
        };
        let updated = app.put(&format!("{rt}/{example_id}"), &example).await;
        if updated.status != 201 && updated.status != 200 {
            problems.push(format!(
                "{name}: update-with-id answered {}: {}",
                updated.status,
                &updated.text[..updated.text.len().min(400)]
            ));
            continue;
        }
        let read = app.get(&format!("{rt}/{example_id}")).await.json();
        if comparable(read, false) != comparable(example, false) {
            problems.push(format!("{name}: updated resource reads back different"));
            continue;
        }
        accepted += 1;
    }
    println!(
        "official examples ({engine:?}): {accepted} of {considered} of writable supported types accepted by create and update and read back equal; {rejected_as_listed} rejected as listed in tests/data/examples-rejected.txt; {audit_examples} AuditEvent examples valid but refused (server-written only)"
    );
    assert!(
        considered > 400,
        "expected the full examples package, found {considered} examples of supported types"
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(accepted + rejected_as_listed, considered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_examples_round_trip_sqlite() {
    run(Engine::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_examples_round_trip_postgres() {
    run(Engine::Postgres).await
}
