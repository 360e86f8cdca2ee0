//! `$find-care` on the demo alliance and on small directories built in the test, and slot
//! generation (regenerating never duplicates or overwrites a booked slot).

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

const FIND: &str = "HealthcareService/$find-care";

fn api(app: &TestApp) -> server::rest::FhirApi {
    server::rest::FhirApi::new(app.store.clone(), server::rest::RestConfig::default())
}

async fn load_demo(app: &TestApp) {
    let loaded = server::demo::load(&api(app), 2).await.expect("demo loads");
    assert!(loaded.is_some(), "a fresh database gets the demo");
}

/// Today's UTC calendar date as (year, month, day).
fn today() -> (i32, u32, u32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    care::slots::civil_from_days(now.div_euclid(86_400_000))
}

/// The birth date of someone `years` old today, `days_short` days before that birthday.
fn born(years: i32, days_short: i64) -> String {
    let (y, m, d) = today();
    let birthday = care::slots::days_from_civil(y - years, m, d);
    let (y, m, d) = care::slots::civil_from_days(birthday + days_short);
    format!("{y:04}-{m:02}-{d:02}")
}

fn params(pairs: &[(&str, Value)]) -> Value {
    let parameter: Vec<Value> = pairs
        .iter()
        .map(|(name, v)| {
            let mut p = v.clone();
            p["name"] = json!(name);
            p
        })
        .collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// One option or exclusion, flattened: part name → values (as text).
#[derive(Debug)]
struct Row {
    kind: String,
    parts: Vec<(String, Value)>,
}

impl Row {
    fn get(&self, name: &str) -> Option<&Value> {
        self.parts.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    fn reference(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|v| v["valueReference"]["reference"].as_str())
            .map(str::to_string)
    }
    fn code(&self, name: &str) -> String {
        self.get(name)
            .and_then(|v| v["valueCode"].as_str())
            .unwrap_or_default()
            .to_string()
    }
    fn reasons(&self) -> String {
        self.parts
            .iter()
            .filter(|(n, _)| n == "reason")
            .filter_map(|(_, v)| v["valueString"].as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

async fn find(app: &TestApp, pairs: &[(&str, Value)]) -> Vec<Row> {
    let r = app.post(FIND, &params(pairs)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["resourceType"], "Parameters");
    body["parameter"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|p| Row {
            kind: p["name"].as_str().unwrap().to_string(),
            parts: p["part"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| (q["name"].as_str().unwrap().to_string(), q.clone()))
                .collect(),
        })
        .collect()
}

async fn slot_count(app: &TestApp) -> i64 {
    app.get("Slot?_summary=count").await.json()["total"]
        .as_i64()
        .unwrap()
}

fn options(rows: &[Row]) -> Vec<&Row> {
    rows.iter().filter(|r| r.kind == "option").collect()
}

fn excluded(rows: &[Row]) -> Vec<&Row> {
    rows.iter().filter(|r| r.kind == "excluded").collect()
}

/// The README's example: a 9-year-old in New London needing pediatric cardiology.
async fn a_child_in_new_london_gets_ranked_explained_options(app: TestApp) {
    load_demo(&app).await;
    let rows = find(
        &app,
        &[
            ("birthDate", json!({"valueDate": born(9, 0)})),
            ("postalCode", json!({"valueString": "06320"})),
            ("service", json!({"valueString": "pediatric cardiology"})),
            ("modality", json!({"valueCode": "any"})),
        ],
    )
    .await;
    let opts = options(&rows);
    assert!(opts.len() >= 2, "{rows:#?}");
    // options come first, then exclusions
    let first_excluded = rows
        .iter()
        .position(|r| r.kind == "excluded")
        .unwrap_or(rows.len());
    assert!(rows[..first_excluded].iter().all(|r| r.kind == "option"));
    assert!(rows[first_excluded..].iter().all(|r| r.kind == "excluded"));
    // the nearest site is first: Waterford, a couple of miles away, in person
    let top = opts[0];
    assert_eq!(
        top.reference("healthcareService").unwrap(),
        "HealthcareService/cc-peds-cardiology"
    );
    assert_eq!(top.reference("location").unwrap(), "Location/cc-waterford");
    assert_eq!(top.reference("organization").unwrap(), "Organization/cc");
    assert_eq!(top.code("modality"), "in-person");
    let miles = top.get("distance").unwrap()["valueQuantity"]["value"]
        .as_f64()
        .unwrap();
    assert!((0.5..6.0).contains(&miles), "{miles}");
    assert_eq!(top.get("distance").unwrap()["valueQuantity"]["unit"], "mi");
    let reasons = top.reasons();
    assert!(reasons.contains("serves ages 0–17"), "{reasons}");
    assert!(
        reasons.contains("in person at Connecticut Children's Waterford"),
        "{reasons}"
    );
    assert!(reasons.contains("estimated"), "{reasons}");
    assert!(reasons.contains("pediatric partner of choice"), "{reasons}");
    // scores fall in rank order
    let scores: Vec<f64> = opts
        .iter()
        .map(|o| o.get("score").unwrap()["valueDecimal"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // the first free slot is real, free, starts in the future and matches firstAvailable
    let slot_ref = top.reference("slot").expect("a free slot");
    let slot = app.get(&slot_ref).await.json();
    assert_eq!(slot["status"], "free");
    assert_eq!(
        slot["start"],
        top.get("firstAvailable").unwrap()["valueDateTime"]
    );
    // a video option has no location and no distance
    let video = opts
        .iter()
        .find(|o| o.code("modality") == "video")
        .expect("a video option");
    assert!(video.reference("location").is_none());
    assert!(video.get("distance").is_none());
    assert!(
        video.reasons().contains("video visit"),
        "{}",
        video.reasons()
    );
    // Hartford (about 41 miles) is beyond the default 30-mile radius, and says so
    let hartford = excluded(&rows)
        .into_iter()
        .find(|e| e.reference("location").as_deref() == Some("Location/cc-hartford"))
        .expect("Hartford is excluded");
    assert!(
        hartford.reasons().contains("beyond the 30 mi radius"),
        "{}",
        hartford.reasons()
    );
    // a wider radius brings Hartford in, farther down than Waterford
    let wide = find(
        &app,
        &[
            ("birthDate", json!({"valueDate": born(9, 0)})),
            ("postalCode", json!({"valueString": "06320"})),
            ("service", json!({"valueString": "pediatric cardiology"})),
            ("modality", json!({"valueCode": "in-person"})),
            ("radius", json!({"valueDecimal": 60})),
        ],
    )
    .await;
    let sites: Vec<String> = options(&wide)
        .iter()
        .filter_map(|o| o.reference("location"))
        .collect();
    let w = sites
        .iter()
        .position(|s| s == "Location/cc-waterford")
        .unwrap();
    let h = sites
        .iter()
        .position(|s| s == "Location/cc-hartford")
        .unwrap();
    assert!(w < h, "{sites:?}");
    assert!(
        options(&wide)
            .iter()
            .all(|o| o.code("modality") == "in-person")
    );
    // count limits the options, not the exclusions
    let one = find(
        &app,
        &[
            ("birthDate", json!({"valueDate": born(9, 0)})),
            ("postalCode", json!({"valueString": "06320"})),
            ("service", json!({"valueString": "pediatric cardiology"})),
            ("count", json!({"valueInteger": 1})),
        ],
    )
    .await;
    assert_eq!(options(&one).len(), 1);
    assert_eq!(excluded(&one).len(), excluded(&rows).len());
}

/// A video visit needs a clinician licensed where the patient will be: checked against the
/// demo's own PractitionerRoles, whatever the seed chose.
async fn video_needs_a_licence_in_the_patients_state(app: TestApp) {
    load_demo(&app).await;
    for state in ["CT", "NY", "MA", "RI", "VT"] {
        let rows = find(
            &app,
            &[
                ("birthDate", json!({"valueDate": born(40, 0)})),
                ("postalCode", json!({"valueString": "06106"})),
                ("service", json!({"valueString": "cardiology"})),
                ("modality", json!({"valueCode": "video"})),
                ("patientState", json!({"valueString": state})),
            ],
        )
        .await;
        let mut seen = 0;
        for row in &rows {
            assert_eq!(row.code("modality"), "video", "{row:?}");
            let service = row.reference("healthcareService").unwrap();
            let roles = app
                .get(&format!("PractitionerRole?service={service}&_count=100"))
                .await
                .json();
            let licensed = roles["entry"].as_array().unwrap().iter().any(|e| {
                e["resource"]["extension"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["url"] == care::profile::LICENSED_STATE && x["valueCode"] == state)
            });
            let reasons = row.reasons();
            if row.kind == "option" {
                seen += 1;
                assert!(licensed, "{state}: {service} offered without a licence");
                assert!(
                    reasons.contains(&format!("licensed in {state}")),
                    "{reasons}"
                );
            } else if !licensed
                && !reasons.starts_with("outside the age range")
                && !reasons.contains("not accepting")
            {
                assert!(
                    reasons.contains(state) && reasons.contains("licensed"),
                    "{reasons}"
                );
            }
        }
        if state == "CT" {
            assert!(seen > 0, "every demo clinician is licensed in CT");
        }
        if state == "VT" {
            assert_eq!(seen, 0, "no demo clinician is licensed in Vermont");
        }
    }
}

/// Age bands: the day before the eighteenth birthday a young person is still a child; on it,
/// an adult. Pediatric services say why they are left out.
async fn the_age_band_edge_is_the_eighteenth_birthday(app: TestApp) {
    load_demo(&app).await;
    let ask = |birth: String| {
        vec![
            ("birthDate", json!({"valueDate": birth})),
            ("postalCode", json!({"valueString": "06106"})),
            ("service", json!({"valueString": "cardiology"})),
            ("modality", json!({"valueCode": "in-person"})),
        ]
    };
    let orgs = |rows: &[Row]| -> Vec<String> {
        options(rows)
            .iter()
            .filter_map(|o| o.reference("organization"))
            .collect()
    };
    let child = find(&app, &ask(born(18, 1))).await;
    assert!(
        orgs(&child).contains(&"Organization/cc".to_string()),
        "{child:#?}"
    );
    assert!(!orgs(&child).contains(&"Organization/hhc".to_string()));
    assert!(
        excluded(&child)
            .iter()
            .filter(|e| e
                .reference("healthcareService")
                .unwrap()
                .starts_with("HealthcareService/hhc-"))
            .all(|e| e.reasons().contains("serves ages 18")),
        "{child:#?}"
    );
    // among comparable sites in Hartford the pediatric member is first for a child
    assert_eq!(
        options(&child)[0].reference("organization").unwrap(),
        "Organization/cc"
    );
    let adult = find(&app, &ask(born(18, 0))).await;
    assert!(
        orgs(&adult).contains(&"Organization/hhc".to_string()),
        "{adult:#?}"
    );
    assert!(!orgs(&adult).contains(&"Organization/cc".to_string()));
    let peds = excluded(&adult)
        .into_iter()
        .find(|e| {
            e.reference("healthcareService").as_deref()
                == Some("HealthcareService/cc-peds-cardiology")
        })
        .expect("pediatric cardiology excluded for an 18-year-old");
    assert!(peds.reasons().contains("ages 0–17"), "{}", peds.reasons());
    // no adult is told a child's service is their partner of choice
    assert!(
        options(&adult)
            .iter()
            .all(|o| !o.reasons().contains("partner of choice"))
    );
}

/// A 20-year-old with cystic fibrosis (a pediatric-onset condition) sees both pediatric and
/// adult cardiology, the adult ones flagged `transition`; without the condition, adult only.
async fn young_adults_with_a_pediatric_onset_condition_see_both(app: TestApp) {
    load_demo(&app).await;
    let patient = app
        .create(json!({"resourceType": "Patient", "birthDate": born(20, 0),
            "address": [{"use": "home", "city": "Hartford", "state": "CT", "postalCode": "06105"}]}))
        .await;
    let pid = patient["id"].as_str().unwrap().to_string();
    let ask = |pid: &str| {
        vec![
            (
                "patient",
                json!({"valueReference": {"reference": format!("Patient/{pid}")}}),
            ),
            ("service", json!({"valueString": "cardiology"})),
        ]
    };
    let before = find(&app, &ask(&pid)).await;
    assert!(
        options(&before)
            .iter()
            .all(|o| o.reference("organization").unwrap() == "Organization/hhc"),
        "{before:#?}"
    );
    assert!(
        options(&before)
            .iter()
            .all(|o| o.get("transition").is_none())
    );
    app.create(json!({"resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "190905008", "display": "Cystic fibrosis"}]},
        "subject": {"reference": format!("Patient/{pid}")}}))
        .await;
    let after = find(&app, &ask(&pid)).await;
    let opts = options(&after);
    let peds: Vec<&&Row> = opts
        .iter()
        .filter(|o| o.reference("organization").unwrap() == "Organization/cc")
        .collect();
    let adult: Vec<&&Row> = opts
        .iter()
        .filter(|o| o.reference("organization").unwrap() == "Organization/hhc")
        .collect();
    assert!(!peds.is_empty() && !adult.is_empty(), "{after:#?}");
    for a in adult {
        assert_eq!(a.get("transition").unwrap()["valueBoolean"], true);
        assert!(a.reasons().contains("transition"), "{}", a.reasons());
    }
    for p in peds {
        assert!(p.get("transition").is_none());
    }
    // a resolved condition does not count
    let cond = app.get(&format!("Condition?patient={pid}")).await.json();
    let mut c = cond["entry"][0]["resource"].clone();
    c["clinicalStatus"]["coding"][0]["code"] = json!("resolved");
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(app.put(&format!("Condition/{id}"), &c).await.status, 200);
    let resolved = find(&app, &ask(&pid)).await;
    assert!(
        options(&resolved)
            .iter()
            .all(|o| o.reference("organization").unwrap() == "Organization/hhc")
    );
}

/// Bad input is a 400 OperationOutcome naming the parameter; nothing needs the demo.
async fn bad_input_names_the_parameter(app: TestApp) {
    load_demo(&app).await;
    let ok_birth = ("birthDate", json!({"valueDate": born(9, 0)}));
    let ok_zip = ("postalCode", json!({"valueString": "06320"}));
    let ok_service = ("service", json!({"valueString": "cardiology"}));
    let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
        (
            vec![
                ok_birth.clone(),
                ("postalCode", json!({"valueString": "00000"})),
                ok_service.clone(),
            ],
            "postalCode",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ("service", json!({"valueString": "xyzzy-ology"})),
            ],
            "service",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                (
                    "service",
                    json!({"valueCoding": {"system": "http://snomed.info/sct", "code": "1"}}),
                ),
            ],
            "service",
        ),
        (vec![ok_birth.clone(), ok_zip.clone()], "service"),
        (vec![ok_zip.clone(), ok_service.clone()], "birthDate"),
        (vec![ok_service.clone()], "patient"),
        (
            vec![
                (
                    "patient",
                    json!({"valueReference": {"reference": "Patient/nope"}}),
                ),
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
            ],
            "patient",
        ),
        (
            vec![
                (
                    "patient",
                    json!({"valueReference": {"reference": "Patient/nope"}}),
                ),
                ok_service.clone(),
            ],
            "patient",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
                ("modality", json!({"valueCode": "telepathy"})),
            ],
            "modality",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
                ("urgency", json!({"valueCode": "whenever"})),
            ],
            "urgency",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
                ("radius", json!({"valueDecimal": -3})),
            ],
            "radius",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
                ("count", json!({"valueInteger": 0})),
            ],
            "count",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
                ("patientState", json!({"valueString": "Atlantis"})),
            ],
            "patientState",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
                ("patientState", json!({"valueString": "ZZ"})),
            ],
            "patientState",
        ),
        (
            vec![
                ("birthDate", json!({"valueDate": "2017-02-30"})),
                ok_zip.clone(),
                ok_service.clone(),
            ],
            "birthDate",
        ),
        (
            vec![
                ok_birth.clone(),
                ok_zip.clone(),
                ok_service.clone(),
                ("colour", json!({"valueString": "blue"})),
            ],
            "colour",
        ),
    ];
    for (pairs, parameter) in cases {
        let r = app.post(FIND, &params(&pairs)).await;
        assert_eq!(r.status, 400, "{parameter}: {}", r.text);
        let oo = r.json();
        assert_eq!(oo["resourceType"], "OperationOutcome");
        let text = oo.to_string();
        assert!(text.contains(parameter), "{parameter}: {text}");
    }
    // not a Parameters resource at all
    let r = app.post(FIND, &json!({"resourceType": "Patient"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // a caller without directory read scopes is refused
    let token = app.token_for("system/Patient.rs", &[], &[]).await;
    let client = app.client_with(&token);
    let r = app
        .send(
            client
                .post(app.url(FIND))
                .header("Content-Type", "application/fhir+json")
                .body(params(&[ok_birth, ok_zip, ok_service]).to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

/// A directory built by hand: the licence rule, not-accepting services, urgency windows and
/// slot regeneration that never duplicates or overwrites a booked slot.
async fn slots_regenerate_without_duplicates_and_urgency_needs_a_slot(app: TestApp) {
    let m = |code: &str| json!({"url": care::profile::MODALITY, "valueCode": code});
    app.put(
        "Organization/o1",
        &json!({"resourceType": "Organization", "id": "o1", "name": "Shoreline Pediatrics"}),
    )
    .await;
    app.put("Location/l1", &json!({"resourceType": "Location", "id": "l1", "name": "Shoreline office",
        "address": {"postalCode": "06320", "state": "CT"}, "position": {"latitude": 41.35, "longitude": -72.1}})).await;
    let service = json!({"resourceType": "HealthcareService", "id": "s1", "name": "Shoreline allergy",
        "providedBy": {"reference": "Organization/o1"}, "location": [{"reference": "Location/l1"}],
        "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "408439002", "display": "Allergy - specialty"}]}],
        "extension": [m("in-person"), m("video")],
        "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "allDay": true}]});
    assert_eq!(app.put("HealthcareService/s1", &service).await.status, 201);
    app.put(
        "PractitionerRole/r1",
        &json!({"resourceType": "PractitionerRole", "id": "r1",
        "healthcareService": [{"reference": "HealthcareService/s1"}],
        "extension": [m("video"), {"url": care::profile::LICENSED_STATE, "valueCode": "CT"}]}),
    )
    .await;
    for (id, modality, actor) in [
        ("sch-s1-l1", "in-person", Some("Location/l1")),
        ("sch-s1-video", "video", None),
    ] {
        let mut actors = vec![json!({"reference": "HealthcareService/s1"})];
        if let Some(a) = actor {
            actors.push(json!({"reference": a}));
        }
        let r = app
            .put(
                &format!("Schedule/{id}"),
                &json!({"resourceType": "Schedule", "id": id, "active": true,
            "extension": [m(modality), {"url": care::profile::SLOT_MINUTES, "valueInteger": 60}],
            "actor": actors}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let api = api(&app);
    let first = server::slots::generate(&api, 1).await.unwrap();
    assert_eq!(first.schedules, 2);
    // all day, every day, hour slots: about 24 × 7 per schedule, less the hour under way
    assert!(first.created >= 2 * 24 * 6, "{first:?}");
    let total = slot_count(&app).await;
    assert_eq!(total as usize, first.created);
    // book the first in-person slot, then regenerate: nothing new, nothing overwritten
    let bundle = app
        .get("Slot?schedule=Schedule/sch-s1-l1&_sort=start&_count=1")
        .await
        .json();
    let mut booked = bundle["entry"][0]["resource"].clone();
    booked["status"] = json!("busy");
    let booked_id = booked["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.put(&format!("Slot/{booked_id}"), &booked).await.status,
        200
    );
    let again = server::slots::generate(&api, 1).await.unwrap();
    assert_eq!(again.created, 0, "{again:?}");
    assert_eq!(again.existing, first.created);
    assert_eq!(slot_count(&app).await, total);
    let still = app.get(&format!("Slot/{booked_id}")).await;
    assert_eq!(still.json()["status"], "busy");
    assert_eq!(still.json()["meta"]["versionId"], "2");
    // a longer horizon adds only the new days
    let longer = server::slots::generate(&api, 2).await.unwrap();
    assert!(
        longer.created >= 2 * 24 * 6 && longer.existing == first.created,
        "{longer:?}"
    );
    // the booked slot is never offered: the next free one is
    let ask = |extra: Vec<(&'static str, Value)>| {
        let mut v = vec![
            ("birthDate", json!({"valueDate": born(9, 0)})),
            ("postalCode", json!({"valueString": "06320"})),
            (
                "service",
                json!({"valueCoding": {"system": "http://snomed.info/sct", "code": "408439002"}}),
            ),
        ];
        v.extend(extra);
        v
    };
    let rows = find(
        &app,
        &ask(vec![("modality", json!({"valueCode": "in-person"}))]),
    )
    .await;
    let top = options(&rows)[0];
    assert_ne!(top.reference("slot").unwrap(), format!("Slot/{booked_id}"));
    // video from New York: the only clinician is licensed in CT
    let rows = find(
        &app,
        &ask(vec![
            ("modality", json!({"valueCode": "video"})),
            ("patientState", json!({"valueString": "NY"})),
        ]),
    )
    .await;
    assert!(options(&rows).is_empty(), "{rows:#?}");
    assert!(excluded(&rows)[0].reasons().contains("NY"), "{rows:#?}");
    // licensed in New York from now on: the next search sees it (the directory snapshot
    // follows every write to the directory)
    app.put(
        "PractitionerRole/r1",
        &json!({"resourceType": "PractitionerRole", "id": "r1",
        "healthcareService": [{"reference": "HealthcareService/s1"}],
        "extension": [m("video"), {"url": care::profile::LICENSED_STATE, "valueCode": "CT"},
            {"url": care::profile::LICENSED_STATE, "valueCode": "NY"}]}),
    )
    .await;
    let rows = find(
        &app,
        &ask(vec![
            ("modality", json!({"valueCode": "video"})),
            ("patientState", json!({"valueString": "NY"})),
        ]),
    )
    .await;
    assert_eq!(options(&rows).len(), 1, "{rows:#?}");
    // a new site with its schedule appears as a candidate at once
    app.put("Location/l2", &json!({"resourceType": "Location", "id": "l2", "name": "Mystic office",
        "address": {"postalCode": "06355", "state": "CT"}, "position": {"latitude": 41.36, "longitude": -71.96}})).await;
    let mut two_sites = service.clone();
    two_sites["location"] = json!([{"reference": "Location/l1"}, {"reference": "Location/l2"}]);
    assert_eq!(
        app.put("HealthcareService/s1", &two_sites).await.status,
        200
    );
    app.put("Schedule/sch-s1-l2", &json!({"resourceType": "Schedule", "id": "sch-s1-l2", "active": true,
        "extension": [m("in-person")], "actor": [{"reference": "HealthcareService/s1"}, {"reference": "Location/l2"}]})).await;
    let rows = find(
        &app,
        &ask(vec![("modality", json!({"valueCode": "in-person"}))]),
    )
    .await;
    let mystic = rows
        .iter()
        .find(|o| o.reference("location").as_deref() == Some("Location/l2"))
        .expect("the new site is a candidate");
    assert_eq!(mystic.kind, "excluded", "no slots there yet");
    assert!(
        mystic.reasons().contains("no free slot"),
        "{}",
        mystic.reasons()
    );
    server::slots::generate(&api, 1).await.unwrap();
    let rows = find(
        &app,
        &ask(vec![("modality", json!({"valueCode": "in-person"}))]),
    )
    .await;
    assert!(
        options(&rows)
            .iter()
            .any(|o| o.reference("location").as_deref() == Some("Location/l2")),
        "{rows:#?}"
    );
    // stat needs a slot today: with every slot taken it is excluded with the window in the reason
    // (every slot starting before the end of the next UTC day covers the Eastern "today")
    let (y, mo, d) = care::slots::civil_from_days(
        care::slots::days_from_civil(today().0, today().1, today().2) + 1,
    );
    loop {
        let page = app
            .get(&format!(
                "Slot?status=free&start=le{y:04}-{mo:02}-{d:02}T23:59:59Z&_count=200"
            ))
            .await
            .json();
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            break;
        }
        for e in entries {
            let mut s = e["resource"].clone();
            s["status"] = json!("busy");
            app.put(&format!("Slot/{}", s["id"].as_str().unwrap()), &s)
                .await;
        }
    }
    let rows = find(&app, &ask(vec![("urgency", json!({"valueCode": "stat"}))])).await;
    assert!(options(&rows).is_empty(), "{rows:#?}");
    assert!(
        excluded(&rows)
            .iter()
            .all(|e| e.reasons().contains("no free slot")),
        "{rows:#?}"
    );
    // not accepting new patients: excluded with that reason
    let mut closed = service.clone();
    closed["extension"] =
        json!([m("in-person"), {"url": care::profile::ACCEPTING, "valueBoolean": false}]);
    assert_eq!(app.put("HealthcareService/s1", &closed).await.status, 200);
    let rows = find(&app, &ask(vec![])).await;
    assert!(options(&rows).is_empty());
    assert!(
        excluded(&rows)
            .iter()
            .all(|e| e.reasons().contains("not accepting new patients")),
        "{rows:#?}"
    );
}

both_engines!(
    a_child_in_new_london_gets_ranked_explained_options,
    video_needs_a_licence_in_the_patients_state,
    the_age_band_edge_is_the_eighteenth_birthday,
    young_adults_with_a_pediatric_onset_condition_see_both,
    bad_input_names_the_parameter,
    slots_regenerate_without_duplicates_and_urgency_needs_a_slot,
);
