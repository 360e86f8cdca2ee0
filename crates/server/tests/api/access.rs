//! Access control end to end: proxies and teenagers' confidential care, the age-18 cut-off and
//! Consent, care relationships, break-the-glass, patients' own records and their accounting,
//! tokens, console sessions, and an AuditEvent for every interaction.

use serde_json::{Value, json};
use time::{Date, OffsetDateTime};

use crate::both_engines;
use crate::helpers::TestApp;

const PSY: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// The birth date of someone who is `years` old today, `days_short` days before that birthday.
fn born(years: i32, days_short: i64) -> String {
    let t = today();
    let birthday = t.replace_year(t.year() - years).unwrap_or(t);
    let d = birthday + time::Duration::days(days_short);
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn condition(id: &str, patient: &str, label: Option<&str>) -> Value {
    let mut c = json!({"resourceType": "Condition", "id": id, "subject": {"reference": format!("Patient/{patient}")}, "code": {"text": format!("condition {id}")}});
    if let Some(l) = label {
        c["meta"] = json!({"security": [{"system": PSY, "code": l}]});
    }
    c
}

/// Two organisations; a 15-year-old registered at `cc` with a mother on record; a plain and a
/// PSY-labelled Condition.
async fn seed(app: &TestApp) {
    app.upsert(
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
    )
    .await;
    app.upsert(json!({"resourceType": "Organization", "id": "hhc", "name": "Hartford HealthCare"}))
        .await;
    app.upsert(json!({"resourceType": "Patient", "id": "teen", "birthDate": born(15, 0), "managingOrganization": {"reference": "Organization/cc"}})).await;
    app.upsert(json!({"resourceType": "RelatedPerson", "id": "mom", "patient": {"reference": "Patient/teen"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]})).await;
    app.upsert(condition("plain", "teen", None)).await;
    app.upsert(condition("psy", "teen", Some("PSY"))).await;
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut v: Vec<String> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["search"]["mode"] != "outcome")
                .map(|x| x["resource"]["id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn parent_of_a_teen_cannot_learn_of_sensitive_care(app: TestApp) {
    seed(&app).await;
    let mom = app.client_with(
        &app.token_for("user/*.rs", &["proxy"], &["RelatedPerson/mom"])
            .await,
    );
    // read: the hidden Condition answers exactly like one that does not exist
    let hidden = app.get_as(&mom, "Condition/psy").await;
    let absent = app.get_as(&mom, "Condition/nosuch").await;
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.status, absent.status);
    assert_eq!(
        hidden.text.replace("psy", "X"),
        absent.text.replace("nosuch", "X")
    );
    assert_eq!(app.get_as(&mom, "Condition/plain").await.status, 200);
    assert_eq!(app.get_as(&mom, "Patient/teen").await.status, 200);
    // search, total, _id and counting
    let s = app.get_as(&mom, "Condition?patient=teen").await.json();
    assert_eq!(s["total"], 1);
    assert_eq!(ids(&s), vec!["plain".to_string()]);
    assert_eq!(
        app.get_as(&mom, "Condition?_summary=count").await.json()["total"],
        1
    );
    assert_eq!(
        app.get_as(&mom, "Condition?_id=psy").await.json()["total"],
        0
    );
    assert_eq!(
        app.get_as(&mom, "Condition?code:text=condition")
            .await
            .json()["total"],
        1
    );
    // history and vread
    assert_eq!(app.get_as(&mom, "Condition/psy/_history").await.status, 404);
    assert_eq!(
        app.get_as(&mom, "Condition/psy/_history/1").await.status,
        404
    );
    let th = app.get_as(&mom, "Condition/_history").await.json();
    assert!(
        th["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["id"] != "psy")
    );
    let sys = app.get_as(&mom, "_history?_count=1000").await.text;
    assert!(!sys.contains("Condition/psy"));
    // paging one at a time never reaches it
    let mut next = Some(format!("{}/Condition?_count=1", app.base));
    let mut seen = Vec::new();
    while let Some(url) = next {
        let page = app.get_as(&mom, &url).await.json();
        seen.extend(ids(&page));
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, vec!["plain".to_string()]);
    // an old sensitive version stays hidden after the label is removed
    let mut relabelled = condition("psy", "teen", None);
    relabelled["note"] = json!([{"text": "reviewed"}]);
    app.upsert(relabelled).await;
    assert_eq!(app.get_as(&mom, "Condition/psy").await.status, 200);
    assert_eq!(
        app.get_as(&mom, "Condition/psy/_history/1").await.status,
        404
    );
    let h = app.get_as(&mom, "Condition/psy/_history").await.json();
    assert_eq!(h["entry"].as_array().unwrap().len(), 1);
    // and the other way: labelled later, hidden entirely
    app.upsert(condition("plain", "teen", Some("SUD"))).await;
    assert_eq!(app.get_as(&mom, "Condition/plain").await.status, 404);
    assert_eq!(
        app.get_as(&mom, "Condition/plain/_history/1").await.status,
        404
    );
    // a proxy reads but never writes
    let w = app.send(mom.post(app.url("Observation")).header("Content-Type", "application/fhir+json").body(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/teen"}}).to_string())).await;
    assert_eq!(w.status, 403);
}

async fn proxy_ends_at_eighteen_unless_consented(app: TestApp) {
    seed(&app).await;
    app.upsert(json!({"resourceType": "Patient", "id": "adult", "birthDate": born(18, 0)}))
        .await;
    app.upsert(json!({"resourceType": "Patient", "id": "almost", "birthDate": born(18, 1)}))
        .await;
    app.upsert(json!({"resourceType": "RelatedPerson", "id": "dad-a", "patient": {"reference": "Patient/adult"}})).await;
    app.upsert(json!({"resourceType": "RelatedPerson", "id": "dad-b", "patient": {"reference": "Patient/almost"}})).await;
    app.upsert(condition("a1", "adult", None)).await;
    app.upsert(condition("b1", "almost", None)).await;
    app.upsert(condition("b2", "almost", Some("PSY"))).await;
    let dad = app.client_with(
        &app.token_for(
            "user/*.rs",
            &["proxy"],
            &["RelatedPerson/dad-a", "RelatedPerson/dad-b"],
        )
        .await,
    );
    // 18y0d: nothing; 17y364d: the record but not the sensitive part
    assert_eq!(app.get_as(&dad, "Patient/adult").await.status, 404);
    assert_eq!(app.get_as(&dad, "Condition/a1").await.status, 404);
    assert_eq!(app.get_as(&dad, "Patient/almost").await.status, 200);
    assert_eq!(
        ids(&app.get_as(&dad, "Condition").await.json()),
        vec!["b1".to_string()]
    );
    // the young adult permits it by Consent: access resumes
    app.upsert(json!({"resourceType": "Consent", "id": "c1", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/adult"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}]}, "reference": {"reference": "RelatedPerson/dad-a"}}]}})).await;
    assert_eq!(app.get_as(&dad, "Patient/adult").await.status, 200);
    assert_eq!(
        ids(&app.get_as(&dad, "Condition").await.json()),
        vec!["a1".to_string(), "b1".to_string()]
    );
    // and stops again when the Consent is withdrawn
    assert_eq!(app.delete("Consent/c1").await.status, 204);
    assert_eq!(app.get_as(&dad, "Patient/adult").await.status, 404);
}

async fn clinicians_see_the_patients_they_care_for(app: TestApp) {
    seed(&app).await;
    let cc = app.client_with(
        &app.token_for("user/*.cruds", &["clinician@cc"], &["Practitioner/d1"])
            .await,
    );
    let hhc = app.client_with(
        &app.token_for("user/*.cruds", &["clinician@hhc"], &["Practitioner/d2"])
            .await,
    );
    // registration at cc: cc sees everything, sensitive included; hhc nothing
    assert_eq!(app.get_as(&cc, "Condition/psy").await.status, 200);
    assert_eq!(
        app.get_as(&cc, "Condition?patient=teen").await.json()["total"],
        2
    );
    assert_eq!(app.get_as(&hhc, "Patient/teen").await.status, 404);
    assert_eq!(
        app.get_as(&hhc, "Condition?patient=teen").await.json()["total"],
        0
    );
    // the directory is shared
    assert_eq!(app.get_as(&hhc, "Organization/cc").await.status, 200);
    // an unrelated clinician cannot write into the record
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "bp"}, "subject": {"reference": "Patient/teen"}});
    let w = app
        .send(
            hhc.post(app.url("Observation"))
                .header("Content-Type", "application/fhir+json")
                .body(obs.to_string()),
        )
        .await;
    assert_eq!(w.status, 403);
    assert_eq!(w.issue_code(), "forbidden");
    // a referral from cc to hhc opens the record to hhc
    let request = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/teen"},
        "requester": {"reference": "Organization/cc"}});
    let r = app
        .send(
            cc.post(app.url("ServiceRequest"))
                .header("Content-Type", "application/fhir+json")
                .body(request.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sr = r.json()["id"].as_str().unwrap().to_string();
    let task = json!({"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": "Patient/teen"},
        "focus": {"reference": format!("ServiceRequest/{sr}")},
        "requester": {"reference": "Organization/cc"}, "owner": {"reference": "Organization/hhc"}});
    let r = app
        .send(
            cc.post(app.url("Task"))
                .header("Content-Type", "application/fhir+json")
                .body(task.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let task_id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(app.get_as(&hhc, "Patient/teen").await.status, 200);
    assert_eq!(
        app.get_as(&hhc, "Condition?patient=teen").await.json()["total"],
        2
    );
    let w = app
        .send(
            hhc.post(app.url("Observation"))
                .header("Content-Type", "application/fhir+json")
                .body(obs.to_string()),
        )
        .await;
    assert_eq!(w.status, 201);
    // closing the referral closes the relationship
    let mut done = r.json();
    done["status"] = json!("cancelled");
    done["statusReason"] = json!({"text": "seen elsewhere"});
    let u = app
        .send(
            hhc.put(app.url(&format!("Task/{task_id}")))
                .header("Content-Type", "application/fhir+json")
                .body(done.to_string()),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(app.get_as(&hhc, "Patient/teen").await.status, 404);
    // clinicians cannot relabel; coordinators can
    let mut unlabel = condition("psy", "teen", None);
    unlabel["note"] = json!([{"text": "x"}]);
    let u = app
        .send(
            cc.put(app.url("Condition/psy"))
                .header("Content-Type", "application/fhir+json")
                .body(unlabel.to_string()),
        )
        .await;
    assert_eq!(u.status, 403);
    let coord = app.client_with(
        &app.token_for("user/*.cruds", &["coordinator@cc"], &[])
            .await,
    );
    let u = app
        .send(
            coord
                .put(app.url("Condition/psy"))
                .header("Content-Type", "application/fhir+json")
                .body(unlabel.to_string()),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
}

async fn break_the_glass_is_time_limited_and_flagged(app: TestApp) {
    seed(&app).await;
    let hhc = app.client_with(
        &app.token_for("user/*.cruds", &["clinician@hhc"], &["Practitioner/d2"])
            .await,
    );
    let mom = app.client_with(
        &app.token_for("user/*.rs", &["proxy"], &["RelatedPerson/mom"])
            .await,
    );
    assert_eq!(app.get_as(&hhc, "Patient/teen").await.status, 404);
    let params = |reason: &str| {
        json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]}).to_string()
    };
    let no_reason = app
        .send(
            hhc.post(app.url("Patient/teen/$break-glass"))
                .header("Content-Type", "application/fhir+json")
                .body(params("now")),
        )
        .await;
    assert_eq!(no_reason.status, 400);
    let not_allowed = app
        .send(
            mom.post(app.url("Patient/teen/$break-glass"))
                .header("Content-Type", "application/fhir+json")
                .body(params("unconscious in the ED, need history")),
        )
        .await;
    assert_eq!(not_allowed.status, 403);
    let ok = app
        .send(
            hhc.post(app.url("Patient/teen/$break-glass"))
                .header("Content-Type", "application/fhir+json")
                .body(params("unconscious in the ED, need history")),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.json()["parameter"][1]["valueInstant"].as_str().is_some());
    assert_eq!(app.get_as(&hhc, "Condition/psy").await.status, 200);
    // the accesses are flagged BTG in the audit trail
    let audit = app
        .get("AuditEvent?entity=Patient/teen&_count=100")
        .await
        .json();
    let flagged = audit["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "BTG")
        .count();
    assert!(
        flagged >= 2,
        "the break-the-glass request and the read are flagged: {flagged}"
    );
}

async fn patients_see_their_record_and_who_looked_at_it(app: TestApp) {
    seed(&app).await;
    app.upsert(json!({"resourceType": "Patient", "id": "kid", "birthDate": born(11, 1)}))
        .await;
    let mom = app.client_with(
        &app.token_for("user/*.rs", &["proxy"], &["RelatedPerson/mom"])
            .await,
    );
    app.get_as(&mom, "Condition/plain").await;
    let teen = app.client_with(
        &app.token_for("patient/*.rs", &["patient"], &["Patient/teen"])
            .await,
    );
    assert_eq!(app.get_as(&teen, "Patient/teen").await.status, 200);
    assert_eq!(
        app.get_as(&teen, "Condition/psy").await.status,
        200,
        "the minor controls their confidential care"
    );
    assert_eq!(app.get_as(&teen, "Patient/kid").await.status, 404);
    let accounting = app
        .get_as(&teen, "AuditEvent?entity=Patient/teen&_count=200")
        .await
        .json();
    let who: Vec<String> = accounting["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["agent"][0]["name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(who.iter().any(|w| w.starts_with("client:")), "{who:?}");
    assert!(
        accounting["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["agent"][0]["who"]["reference"] == "RelatedPerson/mom")
    );
    // of another patient's accounting, the teen sees only their own attempts
    app.get_as(&mom, "Patient/kid").await;
    let other = app
        .get_as(&teen, "AuditEvent?entity=Patient/kid")
        .await
        .json();
    for e in other["entry"].as_array().into_iter().flatten() {
        assert_eq!(
            e["resource"]["agent"][0]["who"]["reference"], "Patient/teen",
            "{e}"
        );
    }
    // under 12, the child's own account does not open the record (the parent's does)
    let kid = app.client_with(
        &app.token_for("patient/*.rs", &["patient"], &["Patient/kid"])
            .await,
    );
    assert_eq!(app.get_as(&kid, "Patient/kid").await.status, 404);
    // auditors read the trail, not the record
    let auditor = app.client_with(&app.token_for("user/*.rs", &["auditor"], &[]).await);
    assert!(
        app.get_as(&auditor, "AuditEvent?_summary=count")
            .await
            .json()["total"]
            .as_i64()
            .unwrap()
            > 5
    );
    assert_eq!(app.get_as(&auditor, "Condition/plain").await.status, 404);
    // and nobody writes the trail through the API
    let e = app.post("AuditEvent", &json!({"resourceType": "AuditEvent", "type": {"code": "x"}, "recorded": "2020-01-01T00:00:00Z", "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}})).await;
    assert_eq!(e.status, 403);
}

async fn tokens_are_checked(app: TestApp) {
    seed(&app).await;
    let anon = &app.anonymous;
    let r = app.send(anon.get(app.url("Patient"))).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.issue_code(), "login");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    for path in [
        "Patient/teen",
        "_history",
        "Patient/teen/_history",
        "Condition?patient=teen",
    ] {
        assert_eq!(
            app.send(anon.get(app.url(path))).await.status,
            401,
            "{path}"
        );
    }
    assert_eq!(
        app.send(
            anon.post(app.url(""))
                .header("Content-Type", "application/fhir+json")
                .body("{}")
        )
        .await
        .status,
        401
    );
    assert_eq!(app.send(anon.get(app.url("metadata"))).await.status, 200);
    assert_eq!(
        app.send(anon.get(app.url("/.well-known/smart-configuration")))
            .await
            .status,
        200
    );
    assert_eq!(
        app.send(anon.get(app.url(".well-known/smart-configuration")))
            .await
            .status,
        200
    );
    let jwks = app
        .send(anon.get(app.url("/.well-known/jwks.json")))
        .await
        .json();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");

    let (limited_id, token) = app.client_for("system/Patient.rs", &[], &[]).await;
    let limited = app.client_with(&token);
    assert_eq!(app.get_as(&limited, "Patient/teen").await.status, 200);
    let r = app.get_as(&limited, "Condition/plain").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.issue_code(), "forbidden");
    let w = app
        .send(
            limited
                .post(app.url("Patient"))
                .header("Content-Type", "application/fhir+json")
                .body("{\"resourceType\":\"Patient\"}"),
        )
        .await;
    assert_eq!(w.status, 403);

    // a tampered signature
    let mut bad = token.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let r = app.get_as(&app.client_with(&bad), "Patient/teen").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.issue_code(), "login");
    // expired, or for another audience: signed with the server's own key to isolate the check
    let keys = app.store.read(|tx| tx.keys()).await.unwrap();
    let key = &keys[0];
    let sign = |exp: i64, aud: &str| {
        // the key is sealed at rest; the test server seals with the process's default key
        let der = server::auth::seal::KeySeal::process_default()
            .open(&key.kid, &key.private_key)
            .unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let now = OffsetDateTime::now_utc().unix_timestamp();
        // the subject must be a client the server knows (and has not disabled)
        let claims = json!({"iss": "continuum", "sub": limited_id, "aud": aud, "exp": exp, "iat": now - 1000, "jti": "j", "scope": "system/*.cruds"});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&der),
        )
        .unwrap()
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let expired = app
        .get_as(
            &app.client_with(&sign(now - 600, "continuum")),
            "Patient/teen",
        )
        .await;
    assert_eq!(expired.status, 401);
    assert!(expired.text.contains("expired"));
    let wrong_aud = app
        .get_as(
            &app.client_with(&sign(now + 600, "someone-else")),
            "Patient/teen",
        )
        .await;
    assert_eq!(wrong_aud.status, 401);
    assert!(wrong_aud.text.contains("audience"));
    assert_eq!(
        app.get_as(
            &app.client_with(&sign(now + 600, "continuum")),
            "Patient/teen"
        )
        .await
        .status,
        200
    );
    let malformed = app
        .send(
            anon.get(app.url("Patient"))
                .header("Authorization", "Token abc"),
        )
        .await;
    assert_eq!(malformed.status, 401);

    // the token endpoint
    let t = app
        .send(
            anon.post(app.url("/auth/token"))
                .basic_auth("nobody", Some("nothing"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        )
        .await;
    assert_eq!(t.status, 401);
    assert_eq!(t.json()["error"], "invalid_client");
    let t = app
        .send(
            anon.post(app.url("/auth/token"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("grant_type=password"),
        )
        .await;
    assert_eq!(t.json()["error"], "unsupported_grant_type");
    assert!(
        t.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("'password' is not supported")
    );
    // what a newcomer trips over, each answered in words that say what to do
    let garbage = app
        .send(
            anon.get(app.url("Patient"))
                .header("Authorization", "Bearer garbage"),
        )
        .await;
    assert_eq!(garbage.status, 401);
    let said = garbage.json()["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        said.contains("not a signed token this server issued"),
        "{said}"
    );
    assert!(!said.contains("InvalidToken"), "{said}");
    let tampered = app.get_as(&app.client_with(&bad), "Patient/teen").await;
    assert!(
        tampered.text.contains("it was altered, or not issued here"),
        "{}",
        tampered.text
    );
    let json_body = app
        .send(
            anon.post(app.url("/auth/token"))
                .basic_auth("nobody", Some("nothing"))
                .header("Content-Type", "application/json")
                .body("{\"grant_type\":\"client_credentials\"}"),
        )
        .await;
    assert_eq!(json_body.status, 400);
    assert!(
        json_body.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("must be a form (Content-Type: application/x-www-form-urlencoded"),
        "{}",
        json_body.text
    );
    let get = app.send(anon.get(app.url("/auth/token"))).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow").as_deref(), Some("POST"));
    assert!(
        get.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("with POST")
    );
    // a Bearer header where the client credentials belong (a shell alias adding one)
    let bearer = app
        .send(
            anon.post(app.url("/auth/token"))
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        )
        .await;
    assert_eq!(bearer.status, 401);
    assert!(
        bearer.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("carries a Bearer token")
    );
}

async fn every_fhir_interaction_writes_an_audit_event(app: TestApp) {
    seed(&app).await;
    let chain = || async { app.store.read(store::audit::verify).await.unwrap() };
    let tx_bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}}]});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "Patient/teen"}}]});
    let routes: Vec<(&str, &str, &str, Option<Value>)> = vec![
        (
            "create",
            "POST",
            "Patient",
            Some(json!({"resourceType": "Patient"})),
        ),
        ("read", "GET", "Patient/teen", None),
        ("read of a missing resource", "GET", "Patient/none", None),
        ("vread", "GET", "Patient/teen/_history/1", None),
        (
            "update",
            "PUT",
            "Condition/plain",
            Some(condition("plain", "teen", None)),
        ),
        (
            "conditional update",
            "PUT",
            "Organization?name=Hartford",
            Some(json!({"resourceType": "Organization", "name": "Hartford HealthCare"})),
        ),
        ("delete", "DELETE", "Condition/plain", None),
        (
            "conditional delete",
            "DELETE",
            "Condition?_id=nothing",
            None,
        ),
        ("search", "GET", "Condition?patient=teen", None),
        ("search by POST", "POST", "Condition/_search", None),
        (
            "history of an instance",
            "GET",
            "Patient/teen/_history",
            None,
        ),
        ("history of a type", "GET", "Patient/_history", None),
        ("history of the system", "GET", "_history", None),
        ("transaction", "POST", "", Some(tx_bundle)),
        ("batch", "POST", "", Some(batch)),
        ("a refused request", "GET", "Nonsense", None),
        (
            "break the glass",
            "POST",
            "Patient/teen/$break-glass",
            Some(
                json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "a long enough emergency reason"}]}),
            ),
        ),
    ];
    let clinician = app.client_with(&app.token_for("user/*.cruds", &["clinician@hhc"], &[]).await);
    for (name, method, path, body) in routes {
        let before = chain().await.checked;
        let client = if name == "break the glass" {
            &clinician
        } else {
            &app.client
        };
        let mut req = client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(path),
        );
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/fhir+json")
                .body(b.to_string());
        } else if method == "POST" {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("patient=teen");
        }
        let r = app.send(req).await;
        assert!(r.status < 500, "{name}: {}", r.text);
        let after = chain().await;
        assert!(after.first_broken.is_none());
        assert_eq!(
            after.checked,
            before + 1,
            "{name} ({method} /fhir/{path}) wrote {} AuditEvents",
            after.checked - before
        );
    }
    // the reads name the patient, so they show in the patient's accounting
    let teen_events = app
        .get("AuditEvent?entity=Patient/teen&_summary=count")
        .await
        .json();
    assert!(teen_events["total"].as_i64().unwrap() >= 8);
}

both_engines!(
    parent_of_a_teen_cannot_learn_of_sensitive_care,
    proxy_ends_at_eighteen_unless_consented,
    clinicians_see_the_patients_they_care_for,
    break_the_glass_is_time_limited_and_flagged,
    patients_see_their_record_and_who_looked_at_it,
    tokens_are_checked,
    every_fhir_interaction_writes_an_audit_event,
);

/// The cookies a response sets, as `name=value` pairs, and their attributes.
fn set_cookies(r: &crate::helpers::Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_pair(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
        .unwrap_or_default()
}

fn hidden_csrf(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[i..].split('"').next().unwrap().to_string()
}

async fn console_sessions_need_csrf_and_lock_out_guessing(app: TestApp) {
    seed(&app).await;
    let user = store::accounts::UserRecord {
        id: "u-carol".into(),
        username: "carol".into(),
        password_hash: server::auth::secrets::hash_secret("a coordinator passphrase"),
        display_name: Some("Carol".into()),
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
    let login_page = app.send(browser.get(app.url("/login"))).await;
    assert_eq!(login_page.status, 200);
    assert!(login_page.text.contains("<label for=\"username\">"));
    let csrf_cookie = cookie_pair(&set_cookies(&login_page), "continuum_csrf");
    let csrf = hidden_csrf(&login_page.text);
    let post = |form: String, cookie: String| {
        browser
            .post(app.url("/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Cookie", cookie)
            .body(form)
    };
    // no CSRF token: refused
    let r = app
        .send(post(
            "username=carol&password=a+coordinator+passphrase".into(),
            String::new(),
        ))
        .await;
    assert_eq!(r.status, 403);
    // wrong password: a generic message
    let r = app
        .send(post(
            format!("username=carol&password=wrong&csrf={csrf}"),
            csrf_cookie.clone(),
        ))
        .await;
    assert_eq!(r.status, 401);
    assert!(r.text.contains("Wrong user name or password"));
    // right password: a session cookie with the right attributes
    let r = app
        .send(post(
            format!("username=carol&password=a+coordinator+passphrase&csrf={csrf}"),
            csrf_cookie.clone(),
        ))
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let cookies = set_cookies(&r);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("continuum_session="))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    let session_cookie = cookie_pair(&cookies, "continuum_session");
    // the session reads the API as a coordinator at cc
    let r = app
        .send(
            browser
                .get(app.url("Condition/psy"))
                .header("Cookie", &session_cookie),
        )
        .await;
    assert_eq!(r.status, 200);
    let me = app
        .send(
            browser
                .get(app.url("/auth/session"))
                .header("Cookie", &session_cookie),
        )
        .await
        .json();
    assert_eq!(me["user"], "carol");
    let session_csrf = me["csrf"].as_str().unwrap().to_string();
    // a write with the cookie alone is refused; with the session's CSRF token it goes through
    let body = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/teen"}}).to_string();
    let r = app
        .send(
            browser
                .post(app.url("Observation"))
                .header("Cookie", &session_cookie)
                .header("Content-Type", "application/fhir+json")
                .body(body.clone()),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .send(
            browser
                .post(app.url("Observation"))
                .header("Cookie", &session_cookie)
                .header("X-CSRF-Token", &session_csrf)
                .header("Content-Type", "application/fhir+json")
                .body(body),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // sign out ends the session
    let r = app
        .send(
            browser
                .post(app.url("/logout"))
                .header("Cookie", &session_cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("csrf={session_csrf}")),
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        app.send(
            browser
                .get(app.url("Patient/teen"))
                .header("Cookie", &session_cookie)
        )
        .await
        .status,
        401
    );
    // five wrong passwords lock the account, even against the right one
    for _ in 0..5 {
        app.send(post(
            format!("username=carol&password=nope&csrf={csrf}"),
            csrf_cookie.clone(),
        ))
        .await;
    }
    let r = app
        .send(post(
            format!("username=carol&password=a+coordinator+passphrase&csrf={csrf}"),
            csrf_cookie.clone(),
        ))
        .await;
    assert_eq!(r.status, 401);
    assert!(r.text.contains("locked"));
    // failed logins are in the audit trail
    let logins = app.get("AuditEvent?type=110114&_count=50").await.json();
    assert!(
        logins["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resource"]["outcome"] == "4")
            .count()
            >= 6
    );
}

both_engines!(console_sessions_need_csrf_and_lock_out_guessing);

/// Signs claims with a generated Ed25519 key record (as an external identity provider would).
fn idp_token(key: &store::accounts::KeyRecord, claims: &Value) -> String {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(&key.private_key)
        .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&der),
    )
    .unwrap()
}

async fn external_oidc_issuer_tokens(engine: crate::helpers::Engine, jwks_over_http: bool) {
    let key = server::auth::tokens::generate_key(0);
    let jwks = json!({"keys": [key.public_jwk]}).to_string();
    let dir = tempfile::tempdir().unwrap();
    let jwks_url = if jwks_over_http {
        let body = jwks.clone();
        let app =
            axum::Router::new().route("/jwks", axum::routing::get(move || async move { body }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/jwks")
    } else {
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, &jwks).unwrap();
        format!("file://{}", path.display())
    };
    let mut config = server::ServerConfig::default();
    config.auth.oidc = Some(server::auth::oidc::OidcConfig {
        issuer: "https://idp.example.org".into(),
        jwks_url,
        audience: "continuum".into(),
        roles_claim: "continuum_roles".into(),
    });
    let app = TestApp::spawn_with(engine, config).await;
    seed(&app).await;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = |iss: &str, aud: &str, exp: i64, roles: Value| json!({"iss": iss, "sub": "dr-nine", "aud": aud, "exp": exp, "iat": now, "continuum_roles": roles, "fhirUser": "Practitioner/d9"});
    let good = idp_token(
        &key,
        &claims(
            "https://idp.example.org",
            "continuum",
            now + 300,
            json!(["clinician@cc"]),
        ),
    );
    let as_idp = app.client_with(&good);
    assert_eq!(app.get_as(&as_idp, "Condition/psy").await.status, 200);
    let other_org = idp_token(
        &key,
        &claims(
            "https://idp.example.org",
            "continuum",
            now + 300,
            json!([{"role": "clinician", "organization": "hhc"}]),
        ),
    );
    assert_eq!(
        app.get_as(&app.client_with(&other_org), "Condition/psy")
            .await
            .status,
        404
    );
    let expired = idp_token(
        &key,
        &claims(
            "https://idp.example.org",
            "continuum",
            now - 300,
            json!(["clinician@cc"]),
        ),
    );
    assert_eq!(
        app.get_as(&app.client_with(&expired), "Condition/psy")
            .await
            .status,
        401
    );
    let wrong_aud = idp_token(
        &key,
        &claims(
            "https://idp.example.org",
            "elsewhere",
            now + 300,
            json!(["clinician@cc"]),
        ),
    );
    assert_eq!(
        app.get_as(&app.client_with(&wrong_aud), "Condition/psy")
            .await
            .status,
        401
    );
    let stranger = server::auth::tokens::generate_key(0);
    let forged = idp_token(
        &stranger,
        &claims(
            "https://idp.example.org",
            "continuum",
            now + 300,
            json!(["alliance-admin"]),
        ),
    );
    assert_eq!(
        app.get_as(&app.client_with(&forged), "Condition/psy")
            .await
            .status,
        401
    );
    // the audit trail names the external subject
    let audit = app
        .get("AuditEvent?entity=Patient/teen&_count=100")
        .await
        .json();
    assert!(
        audit["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["agent"][0]["who"]["reference"] == "Practitioner/d9")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_oidc_issuer_sqlite_jwks_file() {
    external_oidc_issuer_tokens(crate::helpers::Engine::Sqlite, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_oidc_issuer_postgres_jwks_http() {
    external_oidc_issuer_tokens(crate::helpers::Engine::Postgres, true).await
}

async fn minor_consented_care_is_labelled_automatically(app: TestApp) {
    seed(&app).await;
    app.upsert(json!({"resourceType": "Encounter", "id": "conf", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/teen"}, "serviceProvider": {"reference": "Organization/cc"},
        "extension": [{"url": "http://continuum-alliance.org/fhir/StructureDefinition/minor-consented-care", "valueCode": "SUD"}]})).await;
    let obs = app
        .post(
            "Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "screening"},
        "subject": {"reference": "Patient/teen"}, "encounter": {"reference": "Encounter/conf"}}),
        )
        .await;
    assert_eq!(obs.status, 201);
    let labels: Vec<String> = obs.json()["meta"]["security"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect();
    assert!(
        labels.contains(&"SUD".to_string()) && labels.contains(&"R".to_string()),
        "{labels:?}"
    );
    let enc = app.get("Encounter/conf").await.json();
    assert_eq!(enc["meta"]["security"].as_array().unwrap().len(), 2);
    let mom = app.client_with(
        &app.token_for("user/*.rs", &["proxy"], &["RelatedPerson/mom"])
            .await,
    );
    let id = obs.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.get_as(&mom, &format!("Observation/{id}")).await.status,
        404
    );
    assert_eq!(app.get_as(&mom, "Encounter/conf").await.status, 404);
    let teen = app.client_with(
        &app.token_for("patient/*.rs", &["patient"], &["Patient/teen"])
            .await,
    );
    assert_eq!(
        app.get_as(&teen, &format!("Observation/{id}")).await.status,
        200
    );
}

both_engines!(minor_consented_care_is_labelled_automatically);
