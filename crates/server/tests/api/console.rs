//! The console (issue 19) over HTTP, on both engines: every page that reads records is one unit
//! of work — exactly one AuditEvent each, walked over every page — under the API's access
//! policy (a record the user may not see answers like one that does not exist); a form without
//! the session's CSRF token changes nothing; a page without a session leads to sign-in (and
//! back); a family's forms do what the policy lets a family do, for their own child only.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

const DAY: i64 = 86_400_000;

async fn audit_events(app: &TestApp) -> i64 {
    app.store.read(store::audit::count).await.unwrap()
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() * 1000
}

fn at(ms: i64) -> String {
    fhir::primitive::format_instant(ms)
}

fn birth(years: i64) -> String {
    at(now_ms() - years * 365 * DAY - 30 * DAY)[..10].to_string()
}

/// A signed-in browser: its session cookie on every request, no redirects followed.
struct Browser {
    client: reqwest::Client,
    csrf: String,
}

fn hidden_csrf(html: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let i = html.find(key).expect("a form with a CSRF token") + key.len();
    html[i..].split('"').next().unwrap().to_string()
}

async fn sign_in(app: &TestApp, name: &str, roles: &[&str], fhir_users: &[&str]) -> Browser {
    let user = store::accounts::UserRecord {
        id: format!("u-{name}"),
        username: name.into(),
        password_hash: server::auth::secrets::hash_secret("a console test passphrase"),
        display_name: None,
        grants: roles
            .iter()
            .map(|r| server::auth::parse_grant(r).unwrap())
            .collect(),
        fhir_users: fhir_users.iter().map(|f| f.to_string()).collect(),
        disabled: false,
        failed_logins: 0,
        locked_until: None,
    };
    app.store
        .write(move |tx| tx.insert_user(&user))
        .await
        .unwrap();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = app.send(plain.get(app.url("/login"))).await;
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
    let token = hidden_csrf(&form.text);
    let r = app
        .send(
            plain
                .post(app.url("/login"))
                .header("Cookie", &csrf_cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!(
                    "username={name}&password=a+console+test+passphrase&csrf={token}&next=%2Fworklist"
                )),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        r.header("location").as_deref(),
        Some("/worklist"),
        "back where the sign-in was asked"
    );
    let session = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("continuum_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", session.parse().unwrap());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap();
    let page = app.send(client.get(app.url("/login"))).await;
    Browser {
        csrf: hidden_csrf(&page.text),
        client,
    }
}

impl Browser {
    async fn get(&self, app: &TestApp, path: &str) -> crate::helpers::Resp {
        app.send(self.client.get(app.url(path)).header("Accept", "text/html"))
            .await
    }

    async fn post(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
        csrf: bool,
    ) -> crate::helpers::Resp {
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        if csrf {
            pairs.push(("csrf", &self.csrf));
        }
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        app.send(
            self.client
                .post(app.url(path))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }
}

/// A small alliance: two organisations, a cardiology service with free slots, a 9-year-old of
/// cc referred by hhc, a 15-year-old with a confidential visit, her mother, and another family.
async fn world(app: &TestApp) -> String {
    for r in [
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
        json!({"resourceType": "Organization", "id": "hhc", "name": "Hartford HealthCare"}),
        json!({"resourceType": "Location", "id": "site", "name": "Hartford campus",
            "managingOrganization": {"reference": "Organization/cc"},
            "address": {"postalCode": "06106", "state": "CT", "city": "Hartford"},
            "position": {"latitude": 41.75, "longitude": -72.69}}),
        json!({"resourceType": "HealthcareService", "id": "cardio", "name": "Pediatric cardiology", "active": true,
            "providedBy": {"reference": "Organization/cc"}, "location": [{"reference": "Location/site"}],
            "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "394579002"}], "text": "Pediatric cardiology"}]}),
        json!({"resourceType": "Schedule", "id": "sch", "active": true,
            "actor": [{"reference": "HealthcareService/cardio"}, {"reference": "Location/site"}]}),
        json!({"resourceType": "Patient", "id": "kid", "birthDate": birth(9),
            "name": [{"family": "Okafor", "given": ["Ben"]}],
            "address": [{"use": "home", "postalCode": "06106", "state": "CT", "city": "Hartford"}],
            "managingOrganization": {"reference": "Organization/cc"}}),
        json!({"resourceType": "Patient", "id": "teen", "birthDate": birth(15),
            "name": [{"family": "Reyes", "given": ["Nora"]}],
            "managingOrganization": {"reference": "Organization/cc"}}),
        json!({"resourceType": "RelatedPerson", "id": "mom", "patient": {"reference": "Patient/teen"},
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]}),
        json!({"resourceType": "Patient", "id": "other", "birthDate": birth(8),
            "name": [{"family": "Stone", "given": ["Ada"]}],
            "managingOrganization": {"reference": "Organization/cc"}}),
        json!({"resourceType": "Encounter", "id": "teen-visit", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"text": "Cardiology check"}], "subject": {"reference": "Patient/teen"},
            "serviceProvider": {"reference": "Organization/cc"}, "period": {"start": at(now_ms() - 40 * DAY)}}),
        json!({"resourceType": "Encounter", "id": "teen-confidential", "status": "finished",
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SEX"}]},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"text": "Confidential adolescent visit"}], "subject": {"reference": "Patient/teen"},
            "serviceProvider": {"reference": "Organization/cc"}, "period": {"start": at(now_ms() - 20 * DAY)}}),
    ] {
        app.upsert(r).await;
    }
    let start = now_ms() + 2 * DAY;
    for i in 0..6 {
        let s = start + i * 3_600_000;
        app.upsert(json!({"resourceType": "Slot", "id": format!("slot{i}"), "schedule": {"reference": "Schedule/sch"},
            "status": "free", "start": at(s), "end": at(s + 1_800_000)}))
            .await;
    }
    // the teen's and the other child's appointments
    for (slot, patient) in [("slot0", "teen"), ("slot1", "other")] {
        let r = app
            .post(
                "Appointment/$book",
                &crate::booking::params(slot, Some(patient), None),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // hhc refers the 9-year-old to cc's cardiology
    let r = app
        .post(
            "ServiceRequest/$refer",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "patient", "valueReference": {"reference": "Patient/kid"}},
                {"name": "service", "valueReference": {"reference": "HealthcareService/cardio"}},
                {"name": "reason", "valueString": "New murmur"},
                {"name": "requester", "valueReference": {"reference": "Organization/hhc"}}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Task")
        .unwrap()["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn appointment_of(app: &TestApp, patient: &str) -> Value {
    app.get(&format!("Appointment?patient=Patient/{patient}"))
        .await
        .json()["entry"][0]["resource"]
        .clone()
}

async fn console_pages_are_units_of_work(app: TestApp) {
    let task = world(&app).await;
    let coord = sign_in(&app, "carol", &["coordinator@cc"], &[]).await;
    let pages = [
        "/worklist".to_string(),
        "/worklist?role=sent&state=closed".into(),
        format!("/referrals/{task}"),
        "/patients?q=Okafor".into(),
        "/patients/kid".into(),
        "/find-care".into(),
        "/find-care?patient=kid&service=cardiology&modality=in-person".into(),
        format!("/find-care?referral={task}"),
        "/find-care/slots?service=cardio&location=site&modality=in-person&patient=kid".into(),
        "/identity".into(),
        "/admin".into(),
        "/transition".into(),
        "/transition?state=all&age=12-13&element=policy&org=cc".into(),
        "/transition/kid".into(),
        "/measures".into(),
        "/measures?from=2026-01&to=2026-12&service=cardio&age=5-11&org=cc".into(),
    ];
    for page in &pages {
        let before = audit_events(&app).await;
        let r = coord.get(&app, page).await;
        assert_eq!(r.status, 200, "{page}: {}", r.text);
        assert!(r.text.contains("<main id=\"main\">"), "{page}");
        assert!(!r.text.contains("could not be shown"), "{page}");
        assert_eq!(
            audit_events(&app).await - before,
            1,
            "{page}: one AuditEvent"
        );
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{page}"
        );
        assert!(
            r.header("content-security-policy")
                .unwrap()
                .contains("script-src 'self'")
        );
    }
    // the dashboards: a chart for what has figures, a table under it, the definitions, the
    // CSV of the same; another organisation's are refused
    let r = coord.get(&app, "/measures").await;
    assert!(r.text.contains("<svg class=\"chart\""), "{}", r.text);
    assert!(r.text.contains("How it is counted") && r.text.contains("CMS50"));
    assert!(
        r.text.contains("measures?") && r.text.contains("format=csv"),
        "the CSV link"
    );
    assert_eq!(coord.get(&app, "/measures?org=hhc").await.status, 403);
    assert_eq!(coord.get(&app, "/measures?from=nonsense").await.status, 400);
    // the pages show what the records say
    let r = coord.get(&app, &format!("/referrals/{task}")).await;
    assert!(
        r.text.contains("Ben Okafor") && r.text.contains("Hartford HealthCare"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(">Accept<"),
        "the receiver may accept: {}",
        r.text
    );
    let r = coord
        .get(
            &app,
            "/find-care?patient=kid&service=cardiology&modality=in-person",
        )
        .await;
    assert!(
        r.text.contains("Hartford campus") && r.text.contains("/book"),
        "{}",
        r.text
    );
    // a record the user may not see is said so on the form
    let hhc = sign_in(&app, "hal", &["coordinator@hhc"], &[]).await;
    let r = hhc
        .get(&app, "/find-care?patient=other&service=cardiology")
        .await;
    assert!(
        r.text.contains("no patient with that record id"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("Ada Stone"));
    // the empty search form reads nothing and records nothing
    let before = audit_events(&app).await;
    assert_eq!(coord.get(&app, "/patients").await.status, 200);
    assert_eq!(audit_events(&app).await, before);
    // the family's page is one unit too
    let mom = sign_in(&app, "elena", &["proxy"], &["RelatedPerson/mom"]).await;
    let before = audit_events(&app).await;
    let r = mom.get(&app, "/family").await;
    assert_eq!(r.status, 200);
    assert_eq!(audit_events(&app).await - before, 1);
    // without a session: to sign-in and back; a client that does not ask for HTML: the index
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = app.send(plain.get(app.url("/worklist"))).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location").as_deref(),
        Some("/login?next=%2Fworklist")
    );
    let r = app.send(app.anonymous.get(app.url("/"))).await;
    assert_eq!(r.json()["fhir"], "/fhir");
    let r = app
        .send(plain.get(app.url("/login?next=https://evil.example.org/")))
        .await;
    assert!(
        r.text.contains("name=\"next\" value=\"\""),
        "only this server's paths"
    );
}

async fn console_forms_are_decided_like_the_api(app: TestApp) {
    let task = world(&app).await;
    let coord = sign_in(&app, "carol", &["coordinator@cc"], &[]).await;
    // without the session's CSRF token nothing changes
    let r = coord
        .post(&app, &format!("/referrals/{task}/accepted"), &[], false)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("expired"), "{}", r.text);
    assert_eq!(
        app.get(&format!("Task/{task}")).await.json()["status"],
        "requested"
    );
    // transition: the plan of care written in the console records its element; a bare
    // transfer is refused in words
    let r = coord
        .post(
            &app,
            "/transition/teen/document",
            &[
                ("kind", "plan-of-care"),
                ("text", "Learn her medicines; adult care by 19"),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let plans = app.get("CarePlan?patient=Patient/teen").await.json();
    assert_eq!(plans["entry"].as_array().unwrap().len(), 1);
    let recorded = app
        .get("Task?patient=Patient/teen&code=http://continuum-alliance.org/fhir/CodeSystem/transition-element|plan-of-care&status=completed")
        .await
        .json();
    assert_eq!(recorded["entry"].as_array().unwrap().len(), 1);
    let r = coord
        .post(
            &app,
            "/transition/teen/record",
            &[("element", "policy")],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let r = coord
        .post(
            &app,
            "/transition/teen/transfer",
            &[("recipient", "Organization/hhc")],
            true,
        )
        .await;
    assert!(
        r.text
            .contains("the transfer to adult care is from the 18th birthday"),
        "{}",
        r.text
    );
    // with it, the receiver accepts; a reason is asked for a decline
    let r = coord
        .post(&app, &format!("/referrals/{task}/accepted"), &[], true)
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("/referrals/{task}?done=accepted").as_str())
    );
    assert_eq!(
        app.get(&format!("Task/{task}")).await.json()["status"],
        "accepted"
    );
    let r = coord
        .post(&app, &format!("/referrals/{task}/rejected"), &[], true)
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    // a move the machine lacks is refused in words (accepted cannot be declined)
    let r = coord
        .post(
            &app,
            &format!("/referrals/{task}/rejected"),
            &[("reason", "too late")],
            true,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // book it from the console: the referral is scheduled
    let sr = app.get(&format!("Task/{task}")).await.json()["focus"]["reference"]
        .as_str()
        .unwrap()
        .trim_start_matches("ServiceRequest/")
        .to_string();
    let r = coord
        .post(
            &app,
            "/book",
            &[
                ("slot", "slot3"),
                ("patient", "kid"),
                ("based_on", &sr),
                ("referral", &task),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let t = app.get(&format!("Task/{task}")).await.json();
    assert_eq!(t["status"], "in-progress", "{t}");
    assert_eq!(
        t["businessStatus"]["coding"][0]["code"], "5.1.1",
        "scheduled: {t}"
    );
    // a record the user may not see answers like one that does not exist
    let hhc = sign_in(&app, "hal", &["coordinator@hhc"], &[]).await;
    let hidden = hhc.get(&app, "/patients/other").await;
    let absent = hhc.get(&app, "/patients/nobody-here").await;
    assert_eq!(hidden.status, 404);
    assert_eq!(absent.status, 404);
    assert!(hidden.text.contains("Not found") && absent.text.contains("Not found"));
    // accounts are for administrators
    let r = coord
        .post(&app, "/admin/users/hal/disable", &[], true)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let admin = sign_in(&app, "root", &["alliance-admin"], &[]).await;
    let r = admin
        .post(&app, "/admin/users/hal/disable", &[], true)
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        hhc.get(&app, "/worklist").await.status,
        303,
        "a disabled account is signed out"
    );
    // accounts made in the console: the password is shown once and signs in; a role's
    // identity is checked; the signing key rotates and tokens keep working
    let r = admin
        .post(
            &app,
            "/admin/users",
            &[
                ("username", "dora"),
                ("role", "clinician"),
                ("organization", "cc"),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = "id=\"created-secret\">";
    let i = r
        .text
        .find(key)
        .unwrap_or_else(|| panic!("the password is shown: {}", r.text))
        + key.len();
    let password = r.text[i..].split('<').next().unwrap().to_string();
    let dora = app
        .store
        .read(|tx| tx.user_by_name("dora"))
        .await
        .unwrap()
        .unwrap();
    assert!(server::auth::secrets::verify_secret(
        &password,
        &dora.password_hash
    ));
    assert_eq!(dora.grants[0].organization.as_deref(), Some("cc"));
    let r = admin
        .post(
            &app,
            "/admin/users",
            &[
                ("username", "dora"),
                ("role", "clinician"),
                ("organization", "cc"),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = admin
        .post(
            &app,
            "/admin/users",
            &[("username", "pat"), ("role", "proxy")],
            true,
        )
        .await;
    assert_eq!(r.status, 422, "a proxy names the RelatedPerson: {}", r.text);
    let r = admin
        .post(
            &app,
            "/admin/users",
            &[
                ("username", "pat"),
                ("role", "proxy"),
                ("fhir_user", "RelatedPerson/nobody"),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = admin
        .post(
            &app,
            "/admin/clients",
            &[("name", "warehouse"), ("scope", "system/Patient.rs")],
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = coord
        .post(
            &app,
            "/admin/users",
            &[("username", "eve"), ("role", "alliance-admin")],
            true,
        )
        .await;
    assert_eq!(
        r.status, 403,
        "only administrators make accounts: {}",
        r.text
    );
    let kids_before = app.store.read(|tx| tx.keys()).await.unwrap().len();
    let r = admin.post(&app, "/admin/keys/rotate", &[], true).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let keys = app.store.read(|tx| tx.keys()).await.unwrap();
    assert_eq!(keys.len(), kids_before + 1);
    assert_eq!(keys.iter().filter(|k| k.retired_at.is_none()).count(), 1);
    assert_eq!(
        app.get("Patient/kid").await.status,
        200,
        "a token signed before still works"
    );
    let fresh = app.client_with(&app.token_for("system/*.rs", &[], &[]).await);
    assert_eq!(
        app.get_as(&fresh, "Patient/kid").await.status,
        200,
        "and one signed after"
    );
    // a site is added through the directory rules, at its ZIP code
    let r = admin
        .post(
            &app,
            "/admin/sites",
            &[
                ("name", "Mystic clinic"),
                ("organization", "cc"),
                ("line", "5 Holmes St"),
                ("postalCode", "06355"),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let sites = app.get("Location?name=Mystic").await.json();
    assert_eq!(sites["total"], 1, "{sites}");
    assert_eq!(sites["entry"][0]["resource"]["address"]["state"], "CT");
    let r = admin
        .post(
            &app,
            "/admin/sites",
            &[
                ("name", "Nowhere"),
                ("organization", "cc"),
                ("line", "1 Road"),
                ("postalCode", "00000"),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
}

async fn the_family_page_follows_the_policy(app: TestApp) {
    world(&app).await;
    let mom = sign_in(&app, "elena", &["proxy"], &["RelatedPerson/mom"]).await;
    let r = mom.get(&app, "/family").await;
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains("Nora Reyes") && r.text.contains("Cardiology check"),
        "{}",
        r.text
    );
    assert!(
        !r.text.contains("Confidential adolescent visit"),
        "a 15-year-old's confidential care is hers"
    );
    assert!(!r.text.contains("Ada Stone"), "not another family's child");
    // another family's appointment: as if it did not exist
    let theirs = appointment_of(&app, "other").await;
    let r = mom
        .post(
            &app,
            &format!(
                "/family/appointments/{}/cancel",
                theirs["id"].as_str().unwrap()
            ),
            &[],
            true,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(appointment_of(&app, "other").await["status"], "booked");
    // her own child's: an earlier time asked for, then the visit cancelled
    let own = appointment_of(&app, "teen").await;
    let id = own["id"].as_str().unwrap();
    let r = mom
        .post(
            &app,
            &format!("/family/appointments/{id}/earlier"),
            &[],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let waiting = app
        .get("Appointment?patient=Patient/teen&status=waitlist")
        .await
        .json();
    assert_eq!(waiting["total"], 1, "{waiting}");
    let r = mom
        .post(
            &app,
            &format!("/family/appointments/{id}/cancel"),
            &[("reason", "away")],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let cancelled = app.get(&format!("Appointment/{id}")).await.json();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancelationReason"]["text"], "away");
    assert_eq!(app.get("Slot/slot0").await.json()["status"], "free");
    // the teen herself sees her confidential visit
    let nora = sign_in(&app, "nora", &["patient"], &["Patient/teen"]).await;
    let r = nora.get(&app, "/family").await;
    assert!(
        r.text.contains("Confidential adolescent visit"),
        "{}",
        r.text
    );
    // a family member has no staff pages' data
    let r = mom.get(&app, "/patients/teen").await;
    assert_eq!(r.status, 200, "her own child's record page");
    assert!(!r.text.contains("Confidential adolescent visit"));
    let r = mom.get(&app, "/worklist").await;
    assert_eq!(r.status, 403, "{}", r.text);
}

/// The admin page shows the Subscriptions with their failed notifications and resends one;
/// a coordinator sees none and may resend none; the hospital messages are listed.
async fn the_admin_page_shows_deliveries_and_resends(app: TestApp) {
    world(&app).await;
    let r = app
        .post(
            "Subscription",
            &json!({"resourceType": "Subscription", "status": "active", "reason": "patients",
                "criteria": "Patient?gender=female",
                "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = r.json()["id"].as_str().unwrap().to_string();
    app.create(json!({"resourceType": "Patient", "gender": "female", "birthDate": "2014-01-01"}))
        .await;
    let recipient = format!("Subscription/{sub}");
    let m = app
        .store
        .write(move |tx| {
            let m = tx.outbox_list(Some(&recipient), None, 10)?.remove(0);
            tx.outbox_settle(&m.id, "failed", None, Some("the receiver answered 503"))?;
            Ok::<_, store::StoreError>(m)
        })
        .await
        .unwrap();
    let admin = sign_in(&app, "ada", &["alliance-admin"], &[]).await;
    let page = admin.get(&app, "/admin").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("Patient?gender=female"),
        "the Subscription is listed"
    );
    assert!(page.text.contains("the receiver answered 503"));
    let action = format!("/admin/subscriptions/{sub}/deliveries/{}/resend", m.id);
    assert!(page.text.contains(&action), "a Resend button");
    let coordinator = sign_in(&app, "cora", &["coordinator@cc"], &[]).await;
    let theirs = coordinator.get(&app, "/admin").await;
    assert!(!theirs.text.contains("Patient?gender=female"));
    let refused = coordinator.post(&app, &action, &[], true).await;
    assert!(refused.status >= 400, "{}", refused.status);
    let done = admin.post(&app, &action, &[], true).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(
        done.header("location").as_deref(),
        Some("/admin?done=resent")
    );
    let id = m.id.clone();
    let again = app
        .store
        .read(move |tx| tx.outbox_message(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.state.as_str(), again.attempts), ("pending", 0));
}

both_engines!(
    console_pages_are_units_of_work,
    console_forms_are_decided_like_the_api,
    the_family_page_follows_the_policy,
    the_admin_page_shows_deliveries_and_resends,
);
