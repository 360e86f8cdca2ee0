//! Operations endpoints, request ids and the CapabilityStatement.

use serde_json::json;

use crate::both_engines;
use crate::helpers::TestApp;

async fn health_readiness_and_metrics(app: TestApp) {
    let h = app.get("/healthz").await;
    assert_eq!(h.status, 200);
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["database"], "ok");
    app.create(json!({"resourceType": "Patient"})).await;
    app.get("Patient?_count=1").await;
    app.get("Patient/nope").await;
    let m = app.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.text.contains("continuum_http_requests_total{interaction=\"create\",resource_type=\"Patient\",status=\"201\"} 1"), "{}", m.text);
    assert!(m.text.contains("continuum_http_requests_total{interaction=\"read\",resource_type=\"Patient\",status=\"404\"} 1"));
    assert!(
        m.text
            .contains("continuum_http_request_duration_seconds_bucket{interaction=\"search-type\"")
    );
    assert!(m.text.contains("continuum_db_queue_depth{pool=\"writer\"}"));
}

async fn request_ids_are_echoed(app: TestApp) {
    let r = app
        .send(
            app.client
                .get(app.url("metadata"))
                .header("X-Request-Id", "abc-123"),
        )
        .await;
    assert_eq!(r.header("x-request-id").unwrap(), "abc-123");
    let r = app.get("metadata").await;
    assert_eq!(r.header("x-request-id").unwrap().len(), 36);
}

async fn capability_statement_is_honest(app: TestApp) {
    let cs = app.get("metadata").await.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    for r in resources {
        let rt = r["type"].as_str().unwrap();
        // every listed type answers a search, and every listed parameter is accepted
        let params: Vec<&str> = r["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let probe = app.get(&format!("{rt}?_count=1")).await;
        assert_eq!(probe.status, 200, "{rt}: {}", probe.text);
        for p in params {
            let kind = r["searchParam"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == p)
                .unwrap()["type"]
                .as_str()
                .unwrap();
            let candidates: Vec<&str> = match kind {
                "date" => vec!["2020"],
                "number" | "quantity" => vec!["1"],
                "reference" if p == "patient" || p == "subject" => vec!["Patient/1"],
                "reference" => vec!["1"],
                "uri" => vec!["http://example.org"],
                "special" => vec!["41.76|-72.68|10|km"],
                // the second part's type varies: one of these fits each composite
                "composite" => vec!["x$x", "x$1", "x$2020", "Patient/1$x"],
                _ => vec!["x"],
            };
            let mut statuses = Vec::new();
            for value in &candidates {
                statuses.push(app.get(&format!("{rt}?{p}={value}")).await.status);
            }
            assert!(
                statuses.contains(&200),
                "{rt}?{p} accepts none of {candidates:?}: {statuses:?}"
            );
        }
    }
    // an unsupported type is not listed and answers 404
    assert!(!resources.iter().any(|r| r["type"] == "Claim"));
    assert_eq!(app.get("Claim").await.status, 404);
}

both_engines!(
    health_readiness_and_metrics,
    request_ids_are_echoed,
    capability_statement_is_honest
);
