//! The measures over HTTP on both engines (`GET /api/measures`): visits written through the
//! API give the hand-computed video share, no-show rate, distance and third next available; an
//! organisation's coordinator sees theirs and is refused another's and the alliance's; a caller
//! outside the alliance gets small cells suppressed; CSV; bad parameters are 400; one
//! AuditEvent per request.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

const DAY: i64 = 86_400_000;

fn instant(ms: i64) -> String {
    fhir::primitive::format_instant(ms)
}

async fn seed(app: &TestApp, now: i64) {
    for (id, name) in [
        ("cc", "Connecticut Children's"),
        ("hhc", "Hartford HealthCare"),
    ] {
        app.upsert(json!({"resourceType": "Organization", "id": id, "name": name}))
            .await;
    }
    app.upsert(
        json!({"resourceType": "Location", "id": "site", "name": "Hartford campus",
        "managingOrganization": {"reference": "Organization/cc"},
        "position": {"latitude": 41.7658, "longitude": -72.6734}}),
    )
    .await;
    app.upsert(json!({"resourceType": "HealthcareService", "id": "cardio", "name": "Pediatric cardiology",
        "providedBy": {"reference": "Organization/cc"}, "location": [{"reference": "Location/site"}]}))
        .await;
    app.upsert(
        json!({"resourceType": "Schedule", "id": "sch", "active": true,
        "actor": [{"reference": "HealthcareService/cardio"}, {"reference": "Location/site"}]}),
    )
    .await;
    // free slots 1, 2 and 4 days ahead (and one past): the third next available is 4 days
    // (calendar days in Hartford; at most one off when now is late in the evening)
    for (i, days) in [(0, -1), (1, 1), (2, 2), (3, 4)] {
        let s = now + days * DAY;
        app.upsert(json!({"resourceType": "Slot", "id": format!("s{i}"), "schedule": {"reference": "Schedule/sch"},
            "status": "free", "start": instant(s), "end": instant(s + 1_800_000)}))
            .await;
    }
    // twelve children in Hartford and one in New London
    for i in 0..13 {
        let zip = if i == 12 { "06320" } else { "06106" };
        app.upsert(
            json!({"resourceType": "Patient", "id": format!("k{i}"), "birthDate": "2016-04-01",
            "name": [{"family": "Okafor", "given": [format!("Kid{i}")]}],
            "address": [{"use": "home", "postalCode": zip, "state": "CT"}],
            "managingOrganization": {"reference": "Organization/cc"}}),
        )
        .await;
    }
    // thirteen past visits: k0–k9 attended in person, k10 and k11 by video, k12 (New London) missed
    for i in 0..13 {
        let start = now - (2 + i) * 3_600_000;
        let status = if i == 12 { "noshow" } else { "fulfilled" };
        let mut a = json!({"resourceType": "Appointment", "id": format!("a{i}"), "status": status,
            "start": instant(start), "end": instant(start + 1_800_000),
            "participant": [
                {"actor": {"reference": format!("Patient/k{i}")}, "status": "accepted"},
                {"actor": {"reference": "HealthcareService/cardio"}, "status": "accepted"},
                {"actor": {"reference": "Location/site"}, "status": "accepted"}]});
        if i == 10 || i == 11 {
            a["extension"] = json!([{"url": care::profile::MODALITY, "valueCode": "video"}]);
        }
        app.upsert(a).await;
    }
}

fn row<'a>(m: &'a Value, measure: &str) -> &'a Value {
    m["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["measure"] == measure && r.get("detail").is_none())
        .unwrap_or_else(|| panic!("no {measure}: {m}"))
}

async fn measures_over_http(app: TestApp) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    seed(&app, now).await;
    let admin = app.client_with(&app.token_for("user/*.rs", &["alliance-admin"], &[]).await);
    let r = app.get_as(&admin, "/api/measures?by=none").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = r.json();
    assert_eq!(m["audience"], "alliance");
    assert!(
        m["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "loop-closure" && d["numerator"].is_string())
    );
    let video = row(&m, "video-share");
    assert_eq!(
        (video["numerator"].as_u64(), video["denominator"].as_u64()),
        (Some(2), Some(13))
    );
    let ns = row(&m, "no-show-rate");
    assert_eq!(
        (ns["numerator"].as_u64(), ns["denominator"].as_u64()),
        (Some(1), Some(13))
    );
    // in person: k0–k9 in Hartford (about 1 mile) and k12 in New London: the median is Hartford's
    let d = row(&m, "distance-miles");
    assert_eq!(d["denominator"].as_u64(), Some(11));
    assert!(d["value"].as_f64().unwrap() < 5.0, "{d}");
    let w = row(&m, "within-30-minutes");
    assert_eq!(
        (w["numerator"].as_u64(), w["denominator"].as_u64()),
        (Some(10), Some(11))
    );
    let tna = row(&m, "third-next-available")["value"].as_f64().unwrap();
    assert!((3.0..=5.0).contains(&tna), "{tna}");

    // by organisation and service: the visits are cc's cardiology
    let m = app
        .get_as(
            &admin,
            "/api/measures?by=organization,service&measure=video-share",
        )
        .await
        .json();
    let rows = m["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{m}");
    assert_eq!(
        (
            rows[0]["organization"].as_str(),
            rows[0]["service"].as_str()
        ),
        (Some("cc"), Some("cardio"))
    );

    // a coordinator sees their organisation's, not another's nor the alliance's
    let coordinator = app.client_with(&app.token_for("user/*.rs", &["coordinator@cc"], &[]).await);
    let r = app
        .get_as(&coordinator, "/api/measures?organization=cc&by=none")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(row(&r.json(), "video-share")["numerator"].as_u64(), Some(2));
    let r = app
        .get_as(&coordinator, "/api/measures?organization=hhc")
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(app.get_as(&coordinator, "/api/measures").await.status, 403);
    let other = app.client_with(&app.token_for("user/*.rs", &["coordinator@hhc"], &[]).await);
    let m = app
        .get_as(&other, "/api/measures?organization=hhc&by=none")
        .await
        .json();
    assert!(
        m["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["measure"] != "video-share"),
        "hhc had no visits: {m}"
    );

    // outside the alliance (a backend service) or asked for publication: cells under 11 hidden
    let r = app.get("/api/measures?by=none").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = r.json();
    assert_eq!(m["audience"], "public");
    assert_eq!(m["suppressedBelow"], 11);
    let video = row(&m, "video-share");
    assert_eq!(video["suppressed"], true);
    assert!(video["value"].is_null() && video["numerator"].is_null());
    let m = app
        .get_as(&admin, "/api/measures?by=none&audience=public")
        .await
        .json();
    assert_eq!(row(&m, "video-share")["suppressed"], true);
    assert_eq!(
        row(&m, "within-30-minutes")["suppressed"],
        true,
        "10 of 11 is a small cell's complement"
    );

    // CSV, with a header
    let r = app
        .get_as(
            &admin,
            "/api/measures?by=none&format=csv&measure=no-show-rate",
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let mut lines = r.text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "month,organization,service,age_band,measure,detail,value,numerator,denominator,n,suppressed"
        )
    );
    assert!(
        lines
            .next()
            .unwrap()
            .contains(",no-show-rate,,0.0769,1,13,13,false"),
        "{}",
        r.text
    );

    // bad parameters, in words
    for (q, words) in [
        ("by=week", "not month"),
        ("measure=nonsense", "not one of"),
        ("from=2026-13-01", "not a date"),
        ("from=2026-06-01&to=2026-01-01", "before"),
        ("audience=press", "alliance or public"),
        ("colour=blue", "not a parameter"),
    ] {
        let r = app.get_as(&admin, &format!("/api/measures?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(r.text.contains(words), "{q}: {}", r.text);
    }
    // one AuditEvent per request
    let before = app.store.read(store::audit::count).await.unwrap();
    assert_eq!(app.get_as(&admin, "/api/measures").await.status, 200);
    assert_eq!(
        app.store.read(store::audit::count).await.unwrap() - before,
        1
    );
}

both_engines!(measures_over_http);
