//! The transition registry (issue 20, first slice) on both engines: who is in it (12–26, as of
//! a day), where each element stands from the birth date and the elements recorded as Tasks,
//! the filters, the caller's view, bad input.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

const SYSTEM: &str = "http://continuum-alliance.org/fhir/CodeSystem/transition-element";

fn item<'a>(registry: &'a Value, patient: &str) -> Option<&'a Value> {
    registry["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["patient"] == format!("Patient/{patient}"))
}

fn state_of(item: &Value, element: &str) -> String {
    item["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["element"] == element)
        .unwrap()["state"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn the_registry_tracks_young_people(app: TestApp) {
    app.upsert(
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
    )
    .await;
    app.upsert(json!({"resourceType": "Organization", "id": "hhc", "name": "Hartford HealthCare"}))
        .await;
    // as of 1 June 2026
    for (id, birth) in [
        ("t11", "2014-06-02"), // 11 until tomorrow: not yet in the registry
        ("t12", "2014-06-01"), // 12 today: the policy is due
        ("t15", "2011-01-10"), // 15: the readiness assessment is overdue again, education due
        ("t19", "2007-03-01"), // 19: the transfer package is due, the legal talks overdue
        ("t27", "1999-06-01"), // 27 today: out of the registry
    ] {
        app.upsert(
            json!({"resourceType": "Patient", "id": id, "birthDate": birth,
            "managingOrganization": {"reference": "Organization/cc"}}),
        )
        .await;
    }
    let record = |patient: &str, element: &str, on: &str| {
        json!({"resourceType": "Task", "status": "completed", "intent": "plan",
            "code": {"coding": [{"system": SYSTEM, "code": element}]},
            "for": {"reference": format!("Patient/{patient}")},
            "executionPeriod": {"end": on}})
    };
    for (p, e, on) in [
        ("t15", "policy", "2023-02-01T10:00:00Z"),
        ("t15", "readiness", "2025-01-15T10:00:00Z"),
        ("t19", "readiness", "2025-09-01T10:00:00Z"),
    ] {
        let r = app.post("Task", &record(p, e, on)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = app
        .get_raw("/api/transition/registry?as_of=2026-06-01")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let reg = r.json();
    let ids: Vec<&str> = reg["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["patient"].as_str().unwrap())
        .collect();
    assert_eq!(reg["total"], 3, "{ids:?}");
    assert!(item(&reg, "t11").is_none() && item(&reg, "t27").is_none());
    let t12 = item(&reg, "t12").unwrap();
    assert_eq!(state_of(t12, "policy"), "due");
    assert_eq!(state_of(t12, "readiness"), "not-yet");
    assert_eq!(t12["next"]["element"], "policy");
    let t15 = item(&reg, "t15").unwrap();
    assert_eq!(state_of(t15, "policy"), "done");
    // a year and 90 days after the last assessment: overdue again
    assert_eq!(state_of(t15, "readiness"), "overdue");
    assert_eq!(state_of(t15, "education"), "due", "late only at 16");
    let t19 = item(&reg, "t19").unwrap();
    assert_eq!(state_of(t19, "transfer-package"), "due");
    assert_eq!(state_of(t19, "consent-talk"), "overdue");
    assert_eq!(state_of(t19, "readiness"), "done");
    assert_eq!(
        t19["transferNeeds"],
        json!(["plan-of-care", "medical-summary"])
    );
    // the most overdue first: those with something overdue before those with only something due
    assert_eq!(reg["items"][2]["patient"], "Patient/t12", "{ids:?}");
    // filters
    let overdue = app
        .get_raw("/api/transition/registry?as_of=2026-06-01&state=overdue")
        .await
        .json();
    assert_eq!(overdue["total"], 2);
    let pkg = app
        .get_raw("/api/transition/registry?as_of=2026-06-01&element=transfer-package")
        .await
        .json();
    assert_eq!(pkg["total"], 1);
    assert_eq!(pkg["items"][0]["patient"], "Patient/t19");
    // recording the policy for the 12-year-old takes her off the due list
    let r = app
        .post("Task", &record("t12", "policy", "2026-06-01T09:00:00Z"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let due = app
        .get_raw("/api/transition/registry?as_of=2026-06-01&state=due")
        .await
        .json();
    assert!(item(&due, "t12").is_none(), "{due}");
    // another organisation's coordinator sees none of these young people
    let hhc = app.client_with(&app.token_for("user/*.rs", &["coordinator@hhc"], &[]).await);
    let r = app
        .send(hhc.get(app.url("/api/transition/registry?as_of=2026-06-01")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["total"], 0);
    // bad input, in words
    for (q, words) in [
        ("state=late", "not all, due or overdue"),
        ("element=graduation", "not a transition element"),
        ("as_of=June", "not a date"),
        ("_count=0", "from 1 to 1000"),
        ("colour=blue", "not a parameter here"),
    ] {
        let r = app.get_raw(&format!("/api/transition/registry?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(r.text.contains(words), "{q}: {}", r.text);
    }
}

both_engines!(the_registry_tracks_young_people);
