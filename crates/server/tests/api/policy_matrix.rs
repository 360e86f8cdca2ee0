//! The policy matrix through the API: every row of `care/src/access/policy_matrix.txt` played as
//! real requests by a real caller against real data, on each engine — so the SQL filter, the
//! write checks and the pure policy agree.

use serde_json::{Value, json};
use time::{Date, OffsetDateTime};

use crate::helpers::{Engine, TestApp};

const MATRIX: &str = include_str!("../../../care/src/access/policy_matrix.txt");
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// The birth date that makes a patient the given age today.
fn birth_for(age: &str) -> String {
    let (years, days_short) = match age {
        "11y364d" => (12, 1),
        "12y0d" => (12, 0),
        "17y364d" => (18, 1),
        "18y0d" => (18, 0),
        other => panic!("unknown age band {other}"),
    };
    let t = today();
    let d = t.replace_year(t.year() - years).unwrap_or(t) + time::Duration::days(days_short);
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn labels(label: &str) -> Value {
    match label {
        "-" => json!([]),
        "R" | "V" | "N" => json!([{"system": CONFIDENTIALITY, "code": label}]),
        code => json!([{"system": ACT_CODE, "code": code}]),
    }
}

fn with_labels(mut r: Value, label: &str) -> Value {
    if label != "-" {
        r["meta"] = json!({"security": labels(label)});
    }
    r
}

/// A resource of the row's type, belonging to the row's patient where it can.
fn resource(rt: &str, id: &str, patient: &str, label: &str) -> Value {
    let r = match rt {
        "Condition" => {
            json!({"resourceType": "Condition", "id": id, "subject": {"reference": format!("Patient/{patient}")}, "code": {"text": "matrix"}})
        }
        "ServiceRequest" => {
            json!({"resourceType": "ServiceRequest", "id": id, "status": "active", "intent": "order", "subject": {"reference": format!("Patient/{patient}")}, "requester": {"reference": "Organization/cc"}})
        }
        "Organization" => {
            json!({"resourceType": "Organization", "id": id, "name": "Matrix clinic"})
        }
        "Location" => json!({"resourceType": "Location", "id": id, "name": "Matrix site"}),
        "Patient" => {
            json!({"resourceType": "Patient", "id": id, "managingOrganization": {"reference": "Organization/cc"}})
        }
        other => panic!("no template for {other}"),
    };
    with_labels(r, label)
}

struct Row<'a> {
    line: &'a str,
    who: &'a str,
    age: &'a str,
    consent: &'a str,
    rt: &'a str,
    label: &'a str,
    action: &'a str,
    permit: bool,
}

async fn admin_put(app: &TestApp, body: Value) {
    let path = format!(
        "{}/{}",
        body["resourceType"].as_str().unwrap(),
        body["id"].as_str().unwrap()
    );
    let r = app.put(&path, &body).await;
    assert!(r.status == 200 || r.status == 201, "{path}: {}", r.text);
}

/// Plays one row; returns whether the API permitted the action.
async fn play(app: &TestApp, i: usize, row: &Row<'_>) -> bool {
    let p = format!("p{i}");
    let q = format!("q{i}");
    let birth = birth_for(row.age);
    admin_put(app, json!({"resourceType": "Patient", "id": p, "birthDate": birth, "managingOrganization": {"reference": "Organization/cc"}})).await;
    admin_put(
        app,
        json!({"resourceType": "Patient", "id": q, "birthDate": birth}),
    )
    .await;
    // the caller
    let rp = format!("rp{i}");
    let (scopes, roles, fhir): (&str, Vec<&str>, Vec<String>) = match row.who {
        "parent" | "guardian" | "other-parent" => {
            let of = if row.who == "other-parent" { &q } else { &p };
            let code = if row.who == "guardian" {
                "GUARD"
            } else {
                "MTH"
            };
            admin_put(app, json!({"resourceType": "RelatedPerson", "id": rp, "patient": {"reference": format!("Patient/{of}")},
                "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": code}]}]})).await;
            (
                "user/*.cruds",
                vec!["proxy"],
                vec![format!("RelatedPerson/{rp}")],
            )
        }
        "self" => (
            "user/*.cruds",
            vec!["patient"],
            vec![format!("Patient/{p}")],
        ),
        "other-patient" => (
            "user/*.cruds",
            vec!["patient"],
            vec![format!("Patient/{q}")],
        ),
        "clinician@cc" => (
            "user/*.cruds",
            vec!["clinician@cc"],
            vec![format!("Practitioner/d{i}")],
        ),
        "clinician@cc-readonly-token" => (
            "user/*.rs",
            vec!["clinician@cc"],
            vec![format!("Practitioner/d{i}")],
        ),
        "clinician@hhc" | "clinician@hhc+btg" | "clinician@hhc+expired-btg" => (
            "user/*.cruds",
            vec!["clinician@hhc"],
            vec![format!("Practitioner/d{i}")],
        ),
        "coordinator@cc" => ("user/*.cruds", vec!["coordinator@cc"], vec![]),
        "referrer@cc" => (
            "user/*.cruds",
            vec!["referring-clinician@cc"],
            vec![format!("Practitioner/d{i}")],
        ),
        "admin" => ("user/*.cruds", vec!["alliance-admin"], vec![]),
        "auditor" => ("user/*.cruds", vec!["auditor"], vec![]),
        "backend" => ("system/*.cruds", vec![], vec![]),
        "backend-patients-only" => ("system/Patient.rs", vec![], vec![]),
        other => panic!("unknown caller {other}"),
    };
    let fhir_refs: Vec<&str> = fhir.iter().map(String::as_str).collect();
    let (client_id, token) = app.client_for(scopes, &roles, &fhir_refs).await;
    let caller = app.client_with(&token);
    if row.who == "clinician@hhc+btg" {
        let r = app
            .send(caller.post(app.url(&format!("Patient/{p}/$break-glass"))).header("Content-Type", "application/fhir+json").body(
                json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "matrix emergency access"}]}).to_string(),
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    if row.who == "clinician@hhc+expired-btg" {
        let subject = format!("client:{client_id}");
        let pid = p.clone();
        app.store
            .write(move |tx| tx.insert_break_glass(&subject, &pid, "an old emergency", 1))
            .await
            .unwrap();
    }
    if row.consent != "-" {
        let actor = fhir
            .first()
            .cloned()
            .expect("consent rows name a caller with a FHIR identity");
        let (kind, labels_json, end) = match row.consent {
            "permit" => ("permit", None, None),
            "expired-permit" => ("permit", None, Some("2001-01-01")),
            "deny" => ("deny", None, None),
            "deny-PSY" => ("deny", Some(labels("PSY")), None),
            other => panic!("unknown consent {other}"),
        };
        let mut provision = json!({"type": kind, "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "CAREGIVER"}]}, "reference": {"reference": actor}}]});
        if let Some(l) = labels_json {
            provision["securityLabel"] = l;
        }
        if let Some(e) = end {
            provision["period"] = json!({"end": e});
        }
        admin_put(app, json!({"resourceType": "Consent", "id": format!("consent{i}"), "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{p}")},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": provision})).await;
    }
    // the target resource
    let (rt, id) = match row.rt {
        "Patient" => ("Patient".to_string(), p.clone()),
        "AuditEvent" => {
            // an event about the patient: an administrator reads the record
            app.get(&format!("Patient/{p}")).await;
            let events = app
                .get(&format!("AuditEvent?entity=Patient/{p}&_count=1"))
                .await
                .json();
            (
                "AuditEvent".to_string(),
                events["entry"][0]["resource"]["id"]
                    .as_str()
                    .expect("an audit event")
                    .to_string(),
            )
        }
        other => {
            let id = format!("t{i}");
            admin_put(app, resource(other, &id, &p, row.label)).await;
            (other.to_string(), id)
        }
    };
    let path = format!("{rt}/{id}");
    match row.action {
        "read" => app.get_as(&caller, &path).await.status == 200,
        "search" => {
            let r = app.get_as(&caller, &format!("{rt}?_id={id}")).await;
            r.status == 200 && r.json()["total"] == 1
        }
        "create" => {
            let body = if rt == "AuditEvent" {
                json!({"resourceType": "AuditEvent", "type": {"code": "x"}, "recorded": "2020-01-01T00:00:00Z", "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}})
            } else {
                let mut b = resource(&rt, "ignored", &p, row.label);
                b.as_object_mut().unwrap().remove("id");
                b
            };
            let r = app
                .send(
                    caller
                        .post(app.url(&rt))
                        .header("Content-Type", "application/fhir+json")
                        .body(body.to_string()),
                )
                .await;
            assert!(
                r.status == 201 || r.status == 403,
                "{}: {} {}",
                row.line,
                r.status,
                r.text
            );
            r.status == 201
        }
        "update" => {
            let mut body = app.get(&path).await.json();
            body.as_object_mut().unwrap().remove("meta");
            body = with_labels(body, row.label);
            if rt == "Condition" {
                body["note"] = json!([{"text": "updated"}]);
            }
            let r = app
                .send(
                    caller
                        .put(app.url(&path))
                        .header("Content-Type", "application/fhir+json")
                        .body(body.to_string()),
                )
                .await;
            assert!(
                matches!(r.status, 200 | 403 | 404),
                "{}: {} {}",
                row.line,
                r.status,
                r.text
            );
            r.status == 200
        }
        "delete" => {
            let r = app.send(caller.delete(app.url(&path))).await;
            assert!(
                matches!(r.status, 204 | 403),
                "{}: {} {}",
                row.line,
                r.status,
                r.text
            );
            app.get(&path).await.status == 410
        }
        other => panic!("unknown action {other}"),
    }
}

async fn run(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    admin_put(
        &app,
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
    )
    .await;
    admin_put(
        &app,
        json!({"resourceType": "Organization", "id": "hhc", "name": "Hartford HealthCare"}),
    )
    .await;
    let mut failures = Vec::new();
    let mut rows = 0;
    for (i, line) in MATRIX
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
    {
        let c: Vec<&str> = line.split_whitespace().collect();
        let row = Row {
            line,
            who: c[0],
            age: c[1],
            consent: c[2],
            rt: c[3],
            label: c[4],
            action: c[5],
            permit: c[6] == "permit",
        };
        let got = play(&app, i, &row).await;
        if got != row.permit {
            failures.push(format!(
                "{line}  → the API {}",
                if got { "permitted" } else { "refused" }
            ));
        }
        rows += 1;
    }
    println!(
        "policy matrix through the API ({engine:?}): {} of {rows} rows agree",
        rows - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {rows} rows disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_matrix_through_the_api_sqlite() {
    run(Engine::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_matrix_through_the_api_postgres() {
    run(Engine::Postgres).await
}
