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
        "14y0d" => (14, 0),
        "15y364d" => (16, 1),
        "16y0d" => (16, 0),
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

/// A resource of the row's type column, belonging to the row's patient where it can: `Type`,
/// `Type>org` (naming `org` as the one caring), `Type+q` (also concerning patient `q`) or
/// `Patient+new>org` (a new patient registered with `org`).
fn resource(rt: &str, id: &str, patient: &str, label: &str) -> Value {
    let other = patient.replacen('p', "q", 1);
    let r = match rt {
        "Task>hhc" => {
            json!({"resourceType": "Task", "id": id, "status": "requested", "intent": "order",
                "focus": {"reference": format!("ServiceRequest/sr-{patient}")},
                "for": {"reference": format!("Patient/{patient}")}, "requester": {"reference": "Organization/cc"},
                "owner": {"reference": "Organization/hhc"}})
        }
        "ServiceRequest>hhc" => {
            json!({"resourceType": "ServiceRequest", "id": id, "status": "active", "intent": "order",
                "subject": {"reference": format!("Patient/{patient}")}, "requester": {"reference": "Organization/hhc"}})
        }
        "Encounter>hhc" => {
            json!({"resourceType": "Encounter", "id": id, "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{patient}")}, "serviceProvider": {"reference": "Organization/hhc"}})
        }
        "CareTeam>hhc" => {
            json!({"resourceType": "CareTeam", "id": id, "status": "active",
                "subject": {"reference": format!("Patient/{patient}")}, "managingOrganization": [{"reference": "Organization/hhc"}]})
        }
        "Communication+q" => {
            json!({"resourceType": "Communication", "id": id, "status": "completed",
                "subject": {"reference": format!("Patient/{patient}")}, "recipient": [{"reference": format!("Patient/{other}")}],
                "payload": [{"contentString": "matrix message"}]})
        }
        new if new.starts_with("Patient+new>") => {
            let org = &new["Patient+new>".len()..];
            json!({"resourceType": "Patient", "id": id, "managingOrganization": {"reference": format!("Organization/{org}")}})
        }
        "Condition" => {
            json!({"resourceType": "Condition", "id": id, "subject": {"reference": format!("Patient/{patient}")}, "code": {"text": "matrix"}})
        }
        "ServiceRequest" => {
            json!({"resourceType": "ServiceRequest", "id": id, "status": "active", "intent": "order", "subject": {"reference": format!("Patient/{patient}")}, "requester": {"reference": "Organization/cc"}})
        }
        "Appointment" => {
            // a family's request for an earlier slot
            json!({"resourceType": "Appointment", "id": id, "status": "waitlist",
                "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
                                {"actor": {"reference": "HealthcareService/matrix-service"}, "status": "needs-action"}]})
        }
        "QuestionnaireResponse" => {
            // the young person's readiness assessment, every question answered
            let items: Vec<Value> = care::transition::readiness::link_ids()
                .map(|q| json!({"linkId": q, "answer": [{"valueCoding": {"system": care::transition::readiness::ANSWERS, "code": "learning"}}]}))
                .collect();
            json!({"resourceType": "QuestionnaireResponse", "id": id, "status": "completed",
                "questionnaire": care::transition::readiness::URL,
                "subject": {"reference": format!("Patient/{patient}")}, "item": items})
        }
        "Encounter" => {
            json!({"resourceType": "Encounter", "id": id, "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{patient}")}, "serviceProvider": {"reference": "Organization/cc"}})
        }
        "Slot" => {
            json!({"resourceType": "Slot", "id": id, "status": "free", "schedule": {"reference": "Schedule/matrix"},
                "start": "2030-01-07T14:00:00Z", "end": "2030-01-07T14:30:00Z"})
        }
        "Organization" => {
            json!({"resourceType": "Organization", "id": id, "name": "Matrix clinic"})
        }
        "Location" => json!({"resourceType": "Location", "id": id, "name": "Matrix site"}),
        "Subscription" => {
            json!({"resourceType": "Subscription", "id": id, "status": "requested", "reason": "matrix",
                "criteria": "Patient?", "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook"}})
        }
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
    // q is registered with hhc: a second patient for the rows that concern two
    admin_put(
        app,
        json!({"resourceType": "Patient", "id": q, "birthDate": birth, "managingOrganization": {"reference": "Organization/hhc"}}),
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
        "backend-observations-only" => ("system/Observation.rs", vec![], vec![]),
        "coordinator@cc-patients-only-token" => ("user/Patient.rs", vec!["coordinator@cc"], vec![]),
        "parent-patients-only-token" => {
            admin_put(app, json!({"resourceType": "RelatedPerson", "id": rp, "patient": {"reference": format!("Patient/{p}")},
                "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]})).await;
            (
                "user/Patient.rs",
                vec!["proxy"],
                vec![format!("RelatedPerson/{rp}")],
            )
        }
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
            "permit-N" => ("permit", Some(labels("N")), None),
            "permit-PSY" => ("permit", Some(labels("PSY")), None),
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
    if row.rt.starts_with("IdentityReview") {
        return play_identity_review(app, i, row, &caller, &p, &q).await;
    }
    // the target resource
    // a referral's ServiceRequest (no requester or performer: it makes no care relationship)
    if row.rt == "Task>hhc" {
        admin_put(app, json!({"resourceType": "ServiceRequest", "id": format!("sr-{p}"), "status": "active", "intent": "order",
            "subject": {"reference": format!("Patient/{p}")}})).await;
    }
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
        new if new.starts_with("Patient+new>") => (new.to_string(), format!("n{i}")),
        other => {
            let id = format!("t{i}");
            if row.action != "create" {
                admin_put(app, resource(other, &id, &p, row.label)).await;
            }
            (other.to_string(), id)
        }
    };
    // the type column may carry a variant (`Task>hhc`): the path uses the type alone
    let base_type = rt.split(['>', '+']).next().unwrap_or(&rt).to_string();
    let path = format!("{base_type}/{id}");
    match row.action {
        "read" => app.get_as(&caller, &path).await.status == 200,
        "search" => {
            let r = app.get_as(&caller, &format!("{base_type}?_id={id}")).await;
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
                        .post(app.url(&base_type))
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
            if base_type == "Condition" {
                body["note"] = json!([{"text": "updated"}]);
            }
            if base_type == "Appointment" {
                // what a family does to an appointment: cancel it
                body["status"] = json!("cancelled");
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

/// A row of the identity review queue: a pair of `p` with `q` (registered with hhc) or, for
/// `IdentityReview=cc`, with another patient of cc; `read` lists the queue, `update` accepts
/// the pair.
async fn play_identity_review(
    app: &TestApp,
    i: usize,
    row: &Row<'_>,
    caller: &reqwest::Client,
    p: &str,
    q: &str,
) -> bool {
    let other = if row.rt == "IdentityReview=cc" {
        let s = format!("s{i}");
        admin_put(app, json!({"resourceType": "Patient", "id": s, "managingOrganization": {"reference": "Organization/cc"}})).await;
        s
    } else {
        q.to_string()
    };
    let (a, b) = (p.to_string(), other.clone());
    let pair_id = format!("rev{i}");
    let pid = pair_id.clone();
    app.store
        .write(move |tx| {
            tx.identity_pair_add(&pid, &a, &b, 0.9, "probable", "pending")
                .map(|_| ())
        })
        .await
        .expect("a review pair");
    match row.action {
        "read" => {
            let r = app.get_as(caller, "/api/identity/reviews").await;
            r.status == 200
                && r.json()["reviews"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["id"] == pair_id.as_str()))
        }
        "update" => {
            let r = app
                .send(caller.post(app.url(&format!("/api/identity/reviews/{pair_id}/accept"))))
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
        other => panic!("unknown identity review action {other}"),
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
