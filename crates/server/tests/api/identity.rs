//! `Patient/$match`: grades and ordering, the 400 cases, and the access policy on candidates,
//! on both engines.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

fn params(resource: Value, extra: &[Value]) -> Value {
    let mut p = vec![json!({"name": "resource", "resource": resource})];
    p.extend(extra.iter().cloned());
    json!({"resourceType": "Parameters", "parameter": p})
}

fn patient(given: &str, family: &str, birth: &str, line: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
        "birthDate": birth, "gender": "female",
        "address": [{"use": "home", "line": [line], "city": "New London", "state": "CT", "postalCode": "06320"}]})
}

fn grade(entry: &Value) -> &str {
    entry["search"]["extension"][0]["valueCode"]
        .as_str()
        .unwrap_or("")
}

/// The same child registered three ways is found first and graded; her twin sister (same
/// family, birth date and address) and strangers come after or not at all.
async fn match_grades_and_orders_candidates(app: TestApp) {
    let ana = app
        .create(patient("Ana", "Núñez", "2013-05-02", "12 Ocean Avenue"))
        .await;
    let anna = app
        .create(patient("Anna", "Nunez", "2013-05-02", "12 Ocean Ave"))
        .await;
    let twin = app
        .create(patient("Sofia", "Núñez", "2013-05-02", "12 Ocean Avenue"))
        .await;
    let stranger = app
        .create(patient("Liam", "Okafor", "2011-01-09", "3 Elm Street"))
        .await;
    let r = app
        .post(
            "Patient/$match",
            &params(
                patient("Ana", "Nunez", "2013-05-02", "12 Ocean Avenue"),
                &[],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "searchset");
    let entries = b["entry"].as_array().unwrap();
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], ana["id"].as_str().unwrap(), "{ids:?}");
    assert_eq!(grade(&entries[0]), "certain");
    assert!(ids.contains(&anna["id"].as_str().unwrap()), "{ids:?}");
    assert!(!ids.contains(&stranger["id"].as_str().unwrap()), "{ids:?}");
    // scores descend, within 0–1, every entry graded
    let scores: Vec<f64> = entries
        .iter()
        .map(|e| e["search"]["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    for e in entries {
        assert_eq!(
            e["search"]["extension"][0]["url"],
            "http://hl7.org/fhir/StructureDefinition/match-grade"
        );
        assert!(
            ["certain", "probable", "possible"].contains(&grade(e)),
            "{e}"
        );
    }
    // the twin is not taken for Ana
    if let Some(t) = entries.iter().find(|e| e["resource"]["id"] == twin["id"]) {
        assert_ne!(
            grade(t),
            "certain",
            "the twin sister is not a certain match"
        );
    }
    // onlyCertainMatches: at most one, certain
    let r = app
        .post(
            "Patient/$match",
            &params(
                patient("Ana", "Nunez", "2013-05-02", "12 Ocean Avenue"),
                &[json!({"name": "onlyCertainMatches", "valueBoolean": true})],
            ),
        )
        .await;
    let only = r.json();
    let list = only["entry"].as_array().cloned().unwrap_or_default();
    assert!(list.len() <= 1, "{only}");
    assert!(list.iter().all(|e| grade(e) == "certain"));
    // count
    let r = app
        .post(
            "Patient/$match",
            &params(
                patient("Ana", "Nunez", "2013-05-02", "12 Ocean Avenue"),
                &[json!({"name": "count", "valueInteger": 1})],
            ),
        )
        .await;
    assert_eq!(r.json()["entry"].as_array().unwrap().len(), 1);
}

async fn match_refuses_too_little_input(app: TestApp) {
    let cases: Vec<(Value, &str)> = vec![
        (
            params(
                json!({"resourceType": "Patient", "birthDate": "2013-05-02"}),
                &[],
            ),
            "name",
        ),
        (
            params(
                json!({"resourceType": "Patient", "name": [{"family": "Nunez"}]}),
                &[],
            ),
            "birth date",
        ),
        (
            params(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
                &[],
            ),
            "Patient",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": []}),
            "resource",
        ),
        (
            params(
                patient("A", "B", "2013-05-02", "x"),
                &[json!({"name": "count", "valueInteger": 0})],
            ),
            "count",
        ),
        (
            params(
                patient("A", "B", "2013-05-02", "x"),
                &[json!({"name": "bogus", "valueString": "x"})],
            ),
            "bogus",
        ),
        (
            params(
                json!({"resourceType": "Patient", "birthDate": "2013-02-30", "name": [{"family": "B"}]}),
                &[],
            ),
            "birthDate",
        ),
    ];
    for (body, needle) in cases {
        let r = app.post("Patient/$match", &body).await;
        assert_eq!(r.status, 400, "{needle}: {}", r.text);
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
        assert!(r.text.contains(needle), "{needle}: {}", r.text);
    }
}

/// Candidates are searched as the caller: a parent sees only their own child among them.
async fn match_shows_only_what_the_caller_may_see(app: TestApp) {
    let ana = app
        .create(patient("Ana", "Núñez", "2013-05-02", "12 Ocean Avenue"))
        .await;
    let anna = app
        .create(patient("Anna", "Nunez", "2013-05-02", "12 Ocean Ave"))
        .await;
    let mom = app
        .create(json!({"resourceType": "RelatedPerson", "patient": {"reference": format!("Patient/{}", anna["id"].as_str().unwrap())}}))
        .await;
    let proxy = app.client_with(
        &app.token_for(
            "user/*.rs",
            &["proxy"],
            &[&format!("RelatedPerson/{}", mom["id"].as_str().unwrap())],
        )
        .await,
    );
    let r = app
        .send(
            proxy
                .post(app.url("Patient/$match"))
                .header("Content-Type", "application/fhir+json")
                .body(
                    params(
                        patient("Ana", "Nunez", "2013-05-02", "12 Ocean Avenue"),
                        &[],
                    )
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<String> = r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![anna["id"].as_str().unwrap().to_string()]);
    assert!(!ids.contains(&ana["id"].as_str().unwrap().to_string()));
}

both_engines!(
    match_grades_and_orders_candidates,
    match_refuses_too_little_input,
    match_shows_only_what_the_caller_may_see,
);
