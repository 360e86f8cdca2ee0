//! Regression tests for the access leaks an adversarial probe of the demo alliance found (issue
//! 12), each named after the leak or weakness it closes, on both engines: self-granted care
//! relationships, scopes on every path, the identity review queue, the accounting of
//! disclosures, writes into an unrelated child's record, labels that follow the care, sensitive
//! services, write oracles, Consent labels, disabled clients, lockout messages and sealed keys.

use serde_json::{Value, json};
use time::{Date, OffsetDateTime};

use crate::both_engines;
use crate::helpers::TestApp;

const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const CONF: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const MINOR: &str = "http://continuum-alliance.org/fhir/StructureDefinition/minor-consented-care";

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// The birth date of someone `years` old today.
fn born(years: i32) -> String {
    let t = today();
    let d = t.replace_year(t.year() - years).unwrap_or(t);
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// Three organisations; a 15-year-old at cc with a mother on record, a plain and a PSY+R
/// Condition; a second child at cc; an adult at hhc.
async fn seed(app: &TestApp) {
    for (id, name) in [
        ("cc", "Connecticut Children's"),
        ("hhc", "Hartford HealthCare"),
        ("shoreline-peds", "Shoreline Pediatrics"),
    ] {
        app.upsert(json!({"resourceType": "Organization", "id": id, "name": name}))
            .await;
    }
    app.upsert(
        json!({"resourceType": "Patient", "id": "teen", "birthDate": born(15),
        "name": [{"family": "Rivera", "given": ["Ana"]}],
        "managingOrganization": {"reference": "Organization/cc"}}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "Patient", "id": "sib", "birthDate": born(9),
        "name": [{"family": "Okafor", "given": ["Ben"]}],
        "managingOrganization": {"reference": "Organization/cc"}}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "Patient", "id": "adult", "birthDate": born(40),
        "managingOrganization": {"reference": "Organization/hhc"}}),
    )
    .await;
    app.upsert(json!({"resourceType": "RelatedPerson", "id": "mom", "patient": {"reference": "Patient/teen"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]})).await;
    app.upsert(json!({"resourceType": "Condition", "id": "plain", "subject": {"reference": "Patient/teen"}, "code": {"text": "asthma"}})).await;
    app.upsert(json!({"resourceType": "Condition", "id": "psy", "subject": {"reference": "Patient/teen"}, "code": {"text": "anxiety"},
        "meta": {"security": [{"system": ACT, "code": "PSY"}, {"system": CONF, "code": "R"}]}})).await;
    app.upsert(json!({"resourceType": "Condition", "id": "sib-psy", "subject": {"reference": "Patient/sib"}, "code": {"text": "adhd"},
        "meta": {"security": [{"system": ACT, "code": "PSY"}]}})).await;
}

async fn caller(app: &TestApp, scopes: &str, roles: &[&str], fhir: &[&str]) -> reqwest::Client {
    app.client_with(&app.token_for(scopes, roles, fhir).await)
}

async fn post_as(
    app: &TestApp,
    c: &reqwest::Client,
    path: &str,
    body: &Value,
) -> crate::helpers::Resp {
    app.send(
        c.post(app.url(path))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string()),
    )
    .await
}

async fn put_as(
    app: &TestApp,
    c: &reqwest::Client,
    path: &str,
    body: &Value,
    if_match: Option<&str>,
) -> crate::helpers::Resp {
    let mut req = c
        .put(app.url(path))
        .header("Content-Type", "application/fhir+json")
        .body(body.to_string());
    if let Some(m) = if_match {
        req = req.header("If-Match", m);
    }
    app.send(req).await
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut v: Vec<String> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["search"]["mode"] != "outcome")
                .map(|x| {
                    format!(
                        "{}/{}",
                        x["resource"]["resourceType"].as_str().unwrap_or(""),
                        x["resource"]["id"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Leak 1: a write that names one's own organisation as owner, requester, service provider or
/// managing organisation used to count the relationship it would create.
async fn self_granted_care_relationship(app: TestApp) {
    seed(&app).await;
    for (roles, fhir) in [
        (["referring-clinician@shoreline-peds"], ["Practitioner/sp1"]),
        (["clinician@hhc"], ["Practitioner/h1"]),
    ] {
        let org = roles[0].split('@').nth(1).unwrap();
        let c = caller(&app, "user/*.cruds", &roles, &fhir).await;
        assert_eq!(app.get_as(&c, "Patient/teen").await.status, 404);
        let cond = json!({"resourceType": "Condition", "subject": {"reference": "Patient/teen"}, "code": {"text": "x"}});
        assert_eq!(post_as(&app, &c, "Condition", &cond).await.status, 403);
        let claims = [
            json!({"resourceType": "Task", "status": "requested", "intent": "order",
                "for": {"reference": "Patient/teen"}, "owner": {"reference": format!("Organization/{org}")}}),
            json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/teen"}, "requester": {"reference": format!("Organization/{org}")}}),
            json!({"resourceType": "Encounter", "status": "in-progress",
                "class": {"system": ACT, "code": "AMB"},
                "subject": {"reference": "Patient/teen"}, "serviceProvider": {"reference": format!("Organization/{org}")}}),
            json!({"resourceType": "CareTeam", "status": "active",
                "subject": {"reference": "Patient/teen"}, "managingOrganization": [{"reference": format!("Organization/{org}")}]}),
        ];
        for claim in &claims {
            let rt = claim["resourceType"].as_str().unwrap();
            let r = post_as(&app, &c, rt, claim).await;
            assert_eq!(r.status, 403, "{org} {rt}: {}", r.text);
            assert_eq!(r.issue_code(), "forbidden");
            // and as a PUT with an id of its choosing, and inside a transaction
            let mut with_id = claim.clone();
            with_id["id"] = json!(format!("claim-{org}-{rt}").to_lowercase());
            let path = format!("{rt}/{}", with_id["id"].as_str().unwrap());
            assert_eq!(
                put_as(&app, &c, &path, &with_id, None).await.status,
                403,
                "{path}"
            );
            let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:7f3a1c2e-0000-4000-8000-000000000001", "resource": claim, "request": {"method": "POST", "url": rt}}]});
            let r = post_as(&app, &c, "", &tx).await;
            assert_ne!(r.status, 200, "{org} {rt} in a transaction: {}", r.text);
        }
        // still nothing: no read of the record, the PSY Condition or a search
        assert_eq!(app.get_as(&c, "Patient/teen").await.status, 404);
        assert_eq!(app.get_as(&c, "Condition/psy").await.status, 404);
        let found = app
            .get_as(&c, "Condition?patient=teen&_total=accurate")
            .await
            .json();
        assert_eq!(found["total"], 0, "{found}");
    }
    // no break-the-glass flag anywhere in the trail
    let btg = app.get("AuditEvent?_count=500").await.json();
    assert!(!btg.to_string().contains("\"BTG\""));
    // the act of the patient's own organisation opens the record to the receiver
    let cc = caller(&app, "user/*.cruds", &["coordinator@cc"], &[]).await;
    let request = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/teen"}, "requester": {"reference": "Organization/cc"}});
    let r = post_as(&app, &cc, "ServiceRequest", &request).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sr = r.json()["id"].as_str().unwrap().to_string();
    let referral = json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "for": {"reference": "Patient/teen"}, "requester": {"reference": "Organization/cc"},
        "focus": {"reference": format!("ServiceRequest/{sr}")},
        "owner": {"reference": "Organization/hhc"}});
    assert_eq!(post_as(&app, &cc, "Task", &referral).await.status, 201);
    let hhc = caller(
        &app,
        "user/*.cruds",
        &["clinician@hhc"],
        &["Practitioner/h1"],
    )
    .await;
    assert_eq!(app.get_as(&hhc, "Patient/teen").await.status, 200);
}

/// Leak 2: SMART scopes ignored on includes, revincludes, `_has`, system history and batch
/// entries; granular scopes silently widened.
async fn scopes_apply_to_every_resource_a_response_carries(app: TestApp) {
    seed(&app).await;
    let patients_only = caller(&app, "system/Patient.rs", &[], &[]).await;
    assert_eq!(
        app.get_as(&patients_only, "Condition?patient=teen")
            .await
            .status,
        403
    );
    let r = app
        .get_as(
            &patients_only,
            "Patient?_id=teen&_revinclude=Condition:patient",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.json()), vec!["Patient/teen".to_string()]);
    let r = app
        .get_as(
            &patients_only,
            "Patient?_has:Condition:patient:_security=PSY",
        )
        .await
        .json();
    assert!(ids(&r).is_empty(), "{r}");
    let r = app
        .get_as(
            &patients_only,
            "Patient?_id=teen&_include=Patient:organization",
        )
        .await
        .json();
    assert_eq!(ids(&r), vec!["Patient/teen".to_string()]);
    let history = app
        .get_as(&patients_only, "_history?_count=500")
        .await
        .json();
    let types: std::collections::BTreeSet<String> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        vec!["Patient".to_string()]
    );
    assert_eq!(
        app.get_as(&patients_only, "Condition/_history")
            .await
            .status,
        403
    );
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Condition/psy"}},
        {"request": {"method": "GET", "url": "Patient/teen"}}]});
    let r = post_as(&app, &patients_only, "", &batch).await.json();
    assert!(
        r["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("403"),
        "{r}"
    );
    assert!(
        r["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200"),
        "{r}"
    );
    // a proxy limited to Patient reads the same way
    let mom = caller(&app, "user/Patient.rs", &["proxy"], &["RelatedPerson/mom"]).await;
    let r = app
        .get_as(&mom, "Patient?_id=teen&_revinclude=Condition:patient")
        .await
        .json();
    assert_eq!(ids(&r), vec!["Patient/teen".to_string()]);
    // a granular scope is refused when the token is asked for, never widened
    let record = store::accounts::ClientRecord {
        client_id: "granular".into(),
        name: "granular".into(),
        secret_hash: server::auth::secrets::hash_secret("a granular client secret"),
        scopes: "system/Observation.rs".into(),
        grants: vec![],
        fhir_users: vec![],
        disabled: false,
    };
    app.store
        .write(move |tx| tx.insert_client(&record))
        .await
        .unwrap();
    let r = app
        .send(
            app.anonymous
                .post(app.url("/auth/token"))
                .basic_auth("granular", Some("a granular client secret"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials&scope=system%2FObservation.rs%3Fcategory%3Dvital-signs"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"], "invalid_scope");
    assert!(r.text.contains("granular"), "{}", r.text);
}

async fn add_pair(app: &TestApp, id: &str, a: &str, b: &str) {
    let (id, a, b) = (id.to_string(), a.to_string(), b.to_string());
    app.store
        .write(move |tx| {
            tx.identity_pair_add(&id, &a, &b, 0.9, "probable", "pending")
                .map(|_| ())
        })
        .await
        .unwrap();
}

fn review_ids(r: &Value) -> Vec<String> {
    r["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

/// Leak 3: the review queue read by any scope and decided by a read-only client; any
/// coordinator saw the demographics of both members of every pair.
async fn identity_review_queue_honours_scopes_roles_and_relationships(app: TestApp) {
    seed(&app).await;
    add_pair(&app, "pair-cc", "teen", "sib").await;
    add_pair(&app, "pair-mixed", "teen", "adult").await;
    let observations = caller(&app, "system/Observation.rs", &[], &[]).await;
    let r = app.get_as(&observations, "/api/identity/reviews").await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(!r.text.contains("Rivera"));
    let read_only = caller(&app, "system/Patient.rs", &[], &[]).await;
    assert_eq!(
        review_ids(&app.get_as(&read_only, "/api/identity/reviews").await.json()).len(),
        2
    );
    let r = app
        .send(read_only.post(app.url("/api/identity/reviews/pair-cc/accept")))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // coordinators: pairs of patients both of whom their organisation cares for
    let shoreline = caller(&app, "user/*.cruds", &["coordinator@shoreline-peds"], &[]).await;
    let r = app.get_as(&shoreline, "/api/identity/reviews").await;
    assert_eq!(r.status, 200);
    assert!(review_ids(&r.json()).is_empty());
    assert!(!r.text.contains("Rivera"));
    assert_eq!(
        app.send(shoreline.post(app.url("/api/identity/reviews/pair-cc/accept")))
            .await
            .status,
        404
    );
    let cc = caller(&app, "user/*.cruds", &["coordinator@cc"], &[]).await;
    assert_eq!(
        review_ids(&app.get_as(&cc, "/api/identity/reviews").await.json()),
        vec!["pair-cc".to_string()]
    );
    assert_eq!(
        app.send(cc.post(app.url("/api/identity/reviews/pair-mixed/accept")))
            .await
            .status,
        404
    );
    let r = app
        .send(cc.post(app.url("/api/identity/reviews/pair-cc/accept")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // clinicians do not review
    let clinician = caller(
        &app,
        "user/*.cruds",
        &["clinician@cc"],
        &["Practitioner/c1"],
    )
    .await;
    assert_eq!(
        app.get_as(&clinician, "/api/identity/reviews").await.status,
        403
    );
    // administrators see all
    let admin = caller(&app, "user/*.cruds", &["alliance-admin"], &[]).await;
    let all = app
        .get_as(&admin, "/api/identity/reviews?state=pending")
        .await
        .json();
    assert_eq!(review_ids(&all), vec!["pair-mixed".to_string()]);
}

/// Leak 4: a search's AuditEvent listed every patient it returned and the query, and each of
/// them could read it.
async fn access_log_names_only_its_own_patient(app: TestApp) {
    seed(&app).await;
    let cc = caller(&app, "user/*.cruds", &["coordinator@cc"], &[]).await;
    let r = app.get_as(&cc, "Condition?_security=PSY").await.json();
    assert_eq!(ids(&r).len(), 2, "{r}");
    let teen = caller(&app, "user/*.rs", &["patient"], &["Patient/teen"]).await;
    let log = app
        .get_as(&teen, "AuditEvent?entity=Patient/teen&_count=100")
        .await;
    assert_eq!(log.status, 200, "{}", log.text);
    let log = log.json();
    let events = log["entry"].as_array().unwrap();
    assert!(!events.is_empty());
    let searched = events.iter().any(|e| {
        e["resource"]["subtype"][0]["code"] == "search-type"
            && e["resource"]["agent"][0]["altId"]
                .as_str()
                .is_some_and(|a| a.starts_with("client:"))
    });
    assert!(
        searched,
        "the coordinator's search is in the teen's log: {log}"
    );
    let text = log.to_string();
    assert!(
        !text.contains("Patient/sib"),
        "another patient shows: {text}"
    );
    assert!(!text.contains("\"query\""), "the query shows: {text}");
    assert!(!text.contains("Condition/"), "other resources show: {text}");
    assert!(text.contains("Patient/teen"));
    // nor can she ask whether another patient was returned with her
    let r = app.get_as(&teen, "AuditEvent?entity=Patient/sib").await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = app
        .get_as(
            &teen,
            "Patient?_id=teen&_has:AuditEvent:entity:entity=Patient/sib",
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // by time, action and agent she may search
    assert_eq!(
        app.get_as(&teen, "AuditEvent?date=ge2000-01-01&action=E")
            .await
            .status,
        200
    );
    // auditors see the whole event
    let auditor = caller(&app, "user/*.rs", &["auditor"], &[]).await;
    let full = app
        .get_as(&auditor, "AuditEvent?entity=Patient/sib&_count=100")
        .await
        .json()
        .to_string();
    assert!(full.contains("Patient/teen") && full.contains("\"query\""));
}

/// Leak 5: the write check took the union of the organisations of every patient a resource
/// touches, so a message about an unrelated child addressed to one's own decoy patient passed.
async fn writing_into_an_unrelated_childs_record(app: TestApp) {
    seed(&app).await;
    let sp = caller(
        &app,
        "user/*.cruds",
        &["referring-clinician@shoreline-peds"],
        &["Practitioner/sp1"],
    )
    .await;
    // registering a patient of its own works by POST (it was refused) and by PUT
    let decoy = json!({"resourceType": "Patient", "name": [{"family": "Decoy"}], "managingOrganization": {"reference": "Organization/shoreline-peds"}});
    let r = post_as(&app, &sp, "Patient", &decoy).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let decoy_id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.get_as(&sp, &format!("Patient/{decoy_id}")).await.status,
        200
    );
    // but not for another organisation, nor under an id a record already uses
    let elsewhere = json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/cc"}});
    assert_eq!(post_as(&app, &sp, "Patient", &elsewhere).await.status, 403);
    let message = json!({"resourceType": "Communication", "status": "completed",
        "subject": {"reference": "Patient/teen"}, "recipient": [{"reference": format!("Patient/{decoy_id}")}],
        "payload": [{"contentString": "We know about the visit."}]});
    let r = post_as(&app, &sp, "Communication", &message).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let mom = caller(&app, "user/*.rs", &["proxy"], &["RelatedPerson/mom"]).await;
    let seen = app.get_as(&mom, "Communication?subject=teen").await.json();
    assert!(ids(&seen).is_empty(), "{seen}");
    // nor can a resource that concerns an unrelated child be changed to leave it out
    app.upsert(json!({"resourceType": "Communication", "id": "both", "status": "completed",
        "subject": {"reference": "Patient/teen"}, "recipient": [{"reference": format!("Patient/{decoy_id}")}]})).await;
    let narrowed = json!({"resourceType": "Communication", "id": "both", "status": "completed",
        "subject": {"reference": format!("Patient/{decoy_id}")}});
    assert_eq!(
        put_as(&app, &sp, "Communication/both", &narrowed, None)
            .await
            .status,
        403
    );
}

fn has_label(r: &Value, code: &str) -> bool {
    r["meta"]["security"]
        .as_array()
        .is_some_and(|l| l.iter().any(|c| c["code"] == code))
}

/// Weakness: automatic labels missed resources recorded in minor-consented care by `context`
/// or `partOf`, written before the Encounter was flagged, or listed before their `urn:uuid`
/// Encounter in one transaction.
async fn labels_follow_the_care_whatever_the_order_of_writes(app: TestApp) {
    seed(&app).await;
    let flag = json!([{"url": MINOR, "valueCode": "SUD"}]);
    let encounter = |id: &str, flagged: bool| {
        let mut e = json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": ACT, "code": "AMB"}, "subject": {"reference": "Patient/teen"},
            "serviceProvider": {"reference": "Organization/cc"}});
        if flagged {
            e["extension"] = flag.clone();
        }
        e
    };
    app.upsert(encounter("e-flagged", true)).await;
    // MedicationStatement.context and Encounter.partOf
    app.upsert(json!({"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
        "medicationCodeableConcept": {"text": "buprenorphine"}, "subject": {"reference": "Patient/teen"},
        "context": {"reference": "Encounter/e-flagged"}})).await;
    let mut child = encounter("e-child", false);
    child["partOf"] = json!({"reference": "Encounter/e-flagged"});
    app.upsert(child).await;
    app.upsert(json!({"resourceType": "Observation", "id": "o-child", "status": "final", "code": {"text": "urine screen"},
        "subject": {"reference": "Patient/teen"}, "encounter": {"reference": "Encounter/e-child"}})).await;
    // written before the Encounter is flagged
    app.upsert(encounter("e-later", false)).await;
    app.upsert(json!({"resourceType": "Observation", "id": "o-before", "status": "final", "code": {"text": "counselling note"},
        "subject": {"reference": "Patient/teen"}, "encounter": {"reference": "Encounter/e-later"}})).await;
    app.upsert(encounter("e-later", true)).await;
    // an entry listed before its urn:uuid Encounter in one transaction
    let enc_url = "urn:uuid:0b8e1a52-54a4-4c39-9d0e-4f7a4b3c2d10";
    let mut e_tx = encounter("ignored", true);
    e_tx.as_object_mut().unwrap().remove("id");
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5a1c0d36-2f0b-4a43-bb7d-3c4f0e1d2a99",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "test result"},
            "subject": {"reference": "Patient/teen"}, "encounter": {"reference": enc_url}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": enc_url, "resource": e_tx, "request": {"method": "POST", "url": "Encounter"}}]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let obs_loc = r.json()["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_string();
    let obs_path = obs_loc.split("/_history").next().unwrap().to_string();
    for path in [
        "MedicationStatement/ms1",
        "Encounter/e-child",
        "Observation/o-child",
        "Observation/o-before",
        obs_path.as_str(),
    ] {
        let r = app.get(path).await.json();
        assert!(has_label(&r, "SUD") && has_label(&r, "R"), "{path}: {r}");
    }
    let mom = caller(&app, "user/*.rs", &["proxy"], &["RelatedPerson/mom"]).await;
    for path in [
        "MedicationStatement/ms1",
        "Observation/o-child",
        "Observation/o-before",
        obs_path.as_str(),
    ] {
        assert_eq!(app.get_as(&mom, path).await.status, 404, "{path}");
    }
    let found = app.get_as(&mom, "Observation?patient=teen").await.json();
    assert!(ids(&found).is_empty(), "{found}");
}

/// Weakness: a psychiatry visit booked with `$book` got no label, so the parent of a
/// 15-year-old read it and the messages about it.
async fn sensitive_service_bookings_are_labelled(app: TestApp) {
    seed(&app).await;
    app.upsert(
        json!({"resourceType": "Location", "id": "psy-site", "name": "Behavioral health clinic",
        "managingOrganization": {"reference": "Organization/cc"}}),
    )
    .await;
    app.upsert(json!({"resourceType": "HealthcareService", "id": "peds-psychiatry", "name": "Child and adolescent psychiatry",
        "providedBy": {"reference": "Organization/cc"},
        "extension": [{"url": "http://continuum-alliance.org/fhir/StructureDefinition/service-sensitivity", "valueCode": "PSY"}]})).await;
    app.upsert(json!({"resourceType": "Schedule", "id": "psy-schedule", "active": true,
        "actor": [{"reference": "HealthcareService/peds-psychiatry"}, {"reference": "Location/psy-site"}]})).await;
    let start = OffsetDateTime::now_utc().unix_timestamp() * 1000 + 5 * 86_400_000;
    app.upsert(json!({"resourceType": "Slot", "id": "psy-slot", "schedule": {"reference": "Schedule/psy-schedule"},
        "status": "free", "start": fhir::primitive::format_instant(start),
        "end": fhir::primitive::format_instant(start + 1_800_000)})).await;
    let cc = caller(&app, "user/*.cruds", &["coordinator@cc"], &[]).await;
    let r = post_as(
        &app,
        &cc,
        "Appointment/$book",
        &crate::booking::params("psy-slot", Some("teen"), None),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let appt = r.json()["entry"][0]["resource"].clone();
    assert!(has_label(&appt, "PSY") && has_label(&appt, "R"), "{appt}");
    let id = appt["id"].as_str().unwrap();
    let mom = caller(&app, "user/*.rs", &["proxy"], &["RelatedPerson/mom"]).await;
    assert_eq!(
        app.get_as(&mom, &format!("Appointment/{id}")).await.status,
        404
    );
    let messages = app
        .get("Communication?recipient=RelatedPerson/mom&_count=50")
        .await
        .json();
    assert!(ids(&messages).is_empty(), "the parent was told: {messages}");
    let to_teen = app
        .get("Communication?recipient=Patient/teen&_count=50")
        .await
        .json();
    assert!(
        !ids(&to_teen).is_empty(),
        "the young person is told: {to_teen}"
    );
    for e in to_teen["entry"].as_array().unwrap() {
        assert!(has_label(&e["resource"], "PSY"), "{e}");
    }
}

/// Weakness: writes told a hidden resource from an absent one (404 vs 412 with If-Match, 404
/// vs 403 without).
async fn hidden_resources_answer_like_absent_ones_on_writes(app: TestApp) {
    seed(&app).await;
    let hhc = caller(
        &app,
        "user/*.cruds",
        &["clinician@hhc"],
        &["Practitioner/h1"],
    )
    .await;
    let body = |id: &str| json!({"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/teen"}, "code": {"text": "guess"}});
    let strip = |r: &crate::helpers::Resp| {
        let mut v = r.json();
        let text = v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .replace("absent-id", "X")
            .replace("psy", "X");
        v["issue"][0]["diagnostics"] = json!(text);
        (r.status, v.to_string())
    };
    let hidden = put_as(&app, &hhc, "Condition/psy", &body("psy"), Some("W/\"1\"")).await;
    let absent = put_as(
        &app,
        &hhc,
        "Condition/absent-id",
        &body("absent-id"),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(hidden.status, 412, "{}", hidden.text);
    assert_eq!(strip(&hidden), strip(&absent));
    let hidden = put_as(&app, &hhc, "Condition/psy", &body("psy"), None).await;
    let absent = put_as(&app, &hhc, "Condition/absent-id", &body("absent-id"), None).await;
    assert_eq!(hidden.status, 403, "{}", hidden.text);
    assert_eq!(strip(&hidden), strip(&absent));
    let hidden = app.send(hhc.delete(app.url("Condition/psy"))).await;
    let absent = app.send(hhc.delete(app.url("Condition/absent-id"))).await;
    assert_eq!(
        (hidden.status, hidden.text.clone()),
        (absent.status, absent.text.clone())
    );
    // the PSY Condition is untouched
    assert_eq!(
        app.get("Condition/psy").await.json()["meta"]["versionId"],
        "1"
    );
}

/// Weakness: a `permit` Consent limited to the label N still opened PSY records.
async fn consent_permit_limited_to_labels(app: TestApp) {
    seed(&app).await;
    app.upsert(
        json!({"resourceType": "Patient", "id": "grown", "birthDate": born(19),
        "managingOrganization": {"reference": "Organization/cc"}}),
    )
    .await;
    app.upsert(json!({"resourceType": "RelatedPerson", "id": "dad", "patient": {"reference": "Patient/grown"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}]}]})).await;
    app.upsert(json!({"resourceType": "Condition", "id": "g-plain", "subject": {"reference": "Patient/grown"}, "code": {"text": "eczema"}})).await;
    app.upsert(json!({"resourceType": "Condition", "id": "g-psy", "subject": {"reference": "Patient/grown"}, "code": {"text": "depression"},
        "meta": {"security": [{"system": ACT, "code": "PSY"}]}})).await;
    app.upsert(json!({"resourceType": "Consent", "id": "grown-permits-dad", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/grown"},
        "policyRule": {"coding": [{"system": ACT, "code": "OPTIN"}]},
        "provision": {"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "CAREGIVER"}]},
            "reference": {"reference": "RelatedPerson/dad"}}],
            "securityLabel": [{"system": CONF, "code": "N"}]}})).await;
    let dad = caller(&app, "user/*.rs", &["proxy"], &["RelatedPerson/dad"]).await;
    assert_eq!(app.get_as(&dad, "Condition/g-plain").await.status, 200);
    assert_eq!(app.get_as(&dad, "Condition/g-psy").await.status, 404);
    let found = app
        .get_as(&dad, "Condition?patient=grown&_total=accurate")
        .await
        .json();
    assert_eq!(found["total"], 1, "{found}");
}

/// Weakness: a disabled client's tokens kept working until they expired.
async fn disabled_clients_tokens_are_refused_at_once(app: TestApp) {
    seed(&app).await;
    let (client_id, token) = app.client_for("system/*.rs", &[], &[]).await;
    let c = app.client_with(&token);
    assert_eq!(app.get_as(&c, "Patient/teen").await.status, 200);
    let id = client_id.clone();
    app.store
        .write(move |tx| tx.set_client_disabled(&id, true))
        .await
        .unwrap();
    let r = app.get_as(&c, "Patient/teen").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("disabled"));
    let id = client_id.clone();
    app.store
        .write(move |tx| tx.set_client_disabled(&id, false))
        .await
        .unwrap();
    assert_eq!(app.get_as(&c, "Patient/teen").await.status, 200);
}

/// Weakness: a locked account said so while an unknown name never did.
async fn lockout_message_is_the_same_for_unknown_and_locked_accounts(app: TestApp) {
    let hash = server::auth::secrets::hash_secret("the right passphrase here");
    let user = store::accounts::UserRecord {
        id: "u-lock".into(),
        username: "lena".into(),
        password_hash: hash,
        display_name: Some("Lena".into()),
        grants: vec![server::auth::parse_grant("coordinator@cc").unwrap()],
        fhir_users: vec![],
        disabled: false,
        failed_logins: 0,
        locked_until: None,
    };
    app.store
        .write(move |tx| tx.insert_user(&user))
        .await
        .unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = app.send(browser.get(app.url("/login"))).await;
    let csrf_cookie = form
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("continuum_csrf="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = csrf_cookie
        .trim_start_matches("continuum_csrf=")
        .to_string();
    let attempt = |name: &str, password: &str| {
        browser
            .post(app.url("/login"))
            .header("Cookie", &csrf_cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("username={name}&password={password}&csrf={csrf}"))
    };
    for _ in 0..5 {
        app.send(attempt("lena", "wrong")).await;
    }
    let locked = app.send(attempt("lena", "the+right+passphrase+here")).await;
    let unknown = app
        .send(attempt("nobody-by-this-name", "the+right+passphrase+here"))
        .await;
    assert_eq!(locked.status, 401);
    assert_eq!(locked.status, unknown.status);
    let message = |t: &str| {
        t.lines()
            .filter(|l| l.contains("Wrong") || l.to_lowercase().contains("locked"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(!message(&locked.text).is_empty());
    assert_eq!(message(&locked.text), message(&unknown.text));
}

/// Weakness: the private signing key was stored in the clear.
async fn signing_keys_are_sealed_at_rest(app: TestApp) {
    let keys = app.store.read(|tx| tx.keys()).await.unwrap();
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            server::auth::seal::KeySeal::is_sealed(&k.private_key),
            "{}",
            k.kid
        );
        use base64::Engine as _;
        assert!(
            base64::engine::general_purpose::STANDARD
                .decode(&k.private_key)
                .is_err()
        );
    }
    // a server given another sealing key refuses to start rather than sign with nothing
    let mut config = server::ServerConfig::default();
    config.auth.key_seal = server::auth::seal::KeySeal::random();
    let refused = server::app(app.store.clone(), &config).await;
    assert!(refused.is_err());
    // a key stored in the clear (by an older version) is sealed on the next start
    let mut plain = server::auth::tokens::generate_key(app.store.clock().now_ms() + 1);
    plain.kid = "kplain".into();
    app.store
        .write(move |tx| tx.insert_key(&plain))
        .await
        .unwrap();
    let _restarted = server::app(app.store.clone(), &server::ServerConfig::default())
        .await
        .expect("restart");
    let keys = app.store.read(|tx| tx.keys()).await.unwrap();
    let k = keys.iter().find(|k| k.kid == "kplain").unwrap();
    assert!(server::auth::seal::KeySeal::is_sealed(&k.private_key));
}

both_engines!(
    self_granted_care_relationship,
    scopes_apply_to_every_resource_a_response_carries,
    identity_review_queue_honours_scopes_roles_and_relationships,
    access_log_names_only_its_own_patient,
    writing_into_an_unrelated_childs_record,
    labels_follow_the_care_whatever_the_order_of_writes,
    sensitive_service_bookings_are_labelled,
    hidden_resources_answer_like_absent_ones_on_writes,
    consent_permit_limited_to_labels,
    disabled_clients_tokens_are_refused_at_once,
    lockout_message_is_the_same_for_unknown_and_locked_accounts,
    signing_keys_are_sealed_at_rest,
);
