//! Hospital events (issue 21) over the real MLLP listener, on both engines: an admission,
//! update and discharge make one Encounter with its Provenances and the carers' alerts; a
//! resent message changes nothing; a sensitive admission never reaches a parent; an opt-out is
//! honoured; an uncertain patient is held for identity review and applied after the decision;
//! bad messages are refused with AR/AE and write nothing; an oversized or unfinished frame
//! cannot hold the listener.

use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, mllp_exchange};

macro_rules! both_engines_mllp {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::helpers::TestApp::spawn_with_mllp(crate::helpers::Engine::Sqlite).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(crate::helpers::TestApp::spawn_with_mllp(crate::helpers::Engine::Postgres).await).await
                }
            }
        )*
    };
}

const FACILITY: &str = "http://continuum-alliance.org/fhir/NamingSystem/hl7-facility";
const NOTIFICATION: &str = "http://continuum-alliance.org/fhir/CodeSystem/notification";

/// Connecticut Children's (sending as CC), a community practice, a cardiology service, and
/// Nora (15, record CC|N-1) with her mother, a care team and an open referral.
async fn world(app: &TestApp) {
    app.upsert(
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's",
        "identifier": [{"system": FACILITY, "value": "CC"}]}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "Organization", "id": "shore", "name": "Shoreline Pediatrics"}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "HealthcareService", "id": "cardio", "name": "Pediatric cardiology",
        "providedBy": {"reference": "Organization/cc"}}),
    )
    .await;
    app.upsert(json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Okafor", "given": ["Chidi"]}]}))
        .await;
    app.upsert(json!({"resourceType": "PractitionerRole", "id": "dr1-role", "practitioner": {"reference": "Practitioner/dr1"},
        "organization": {"reference": "Organization/shore"}}))
        .await;
    app.upsert(json!({"resourceType": "Patient", "id": "nora", "name": [{"family": "Reyes", "given": ["Nora"]}],
        "gender": "female", "birthDate": "2011-03-14",
        "identifier": [{"system": "urn:mrn:cc", "value": "N-1"}],
        "managingOrganization": {"reference": "Organization/shore"}}))
        .await;
    app.upsert(json!({"resourceType": "RelatedPerson", "id": "mom", "active": true, "patient": {"reference": "Patient/nora"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
        "name": [{"family": "Reyes", "given": ["Elena"]}]}))
        .await;
    app.upsert(json!({"resourceType": "CareTeam", "id": "nora-team", "status": "active", "subject": {"reference": "Patient/nora"},
        "participant": [{"member": {"reference": "RelatedPerson/mom"}}, {"member": {"reference": "Practitioner/dr1"}}],
        "managingOrganization": [{"reference": "Organization/shore"}]}))
        .await;
    let sr = app
        .create(
            json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/nora"}}),
        )
        .await;
    let task = app
        .create(json!({"resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
            "focus": {"reference": format!("ServiceRequest/{}", sr["id"].as_str().unwrap())},
            "for": {"reference": "Patient/nora"},
            "requester": {"reference": "PractitionerRole/dr1-role"}, "owner": {"reference": "HealthcareService/cardio"}}))
        .await;
    assert_eq!(task["status"], "requested");
}

/// An ADT message for Nora (CR-separated), with its event, control id, visit number and
/// hospital service.
fn adt(event: &str, control: &str, visit: &str, service: &str) -> String {
    let discharge = if event == "A03" {
        "|||||||||||||||||01||||||||20261202080000|20261204093000"
    } else {
        "|||||||||||||||||||||||||20261202080000"
    };
    format!(
        "MSH|^~\\&|EPIC|CC|CONTINUUM|ALLIANCE|20261202101500||ADT^{event}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{event}|20261202101500\r\
         PID|1||N-1^^^CC^MR||Reyes^Nora||20110314|F\r\
         PV1|1|I|4N^412^B^CC||||1234^Ruiz^Ana^^^Dr|||{service}||||7|||||{visit}^^^CC^VN{discharge}\r"
    )
}

/// The MSA fields of an acknowledgement: (code, control id, text), and the ERR segment.
fn msa(ack: &str) -> (String, String, String, Option<String>) {
    let seg = |id: &str| {
        ack.split('\r')
            .find(|s| s.starts_with(id))
            .map(str::to_string)
    };
    let m = seg("MSA|").unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    let f: Vec<&str> = m.split('|').collect();
    (
        f.get(1).unwrap_or(&"").to_string(),
        f.get(2).unwrap_or(&"").to_string(),
        f.get(3).unwrap_or(&"").to_string(),
        seg("ERR|"),
    )
}

async fn alerts(app: &TestApp) -> Vec<(String, String)> {
    let b = app
        .get(&format!(
            "Communication?category={NOTIFICATION}|hospital-events&_count=100"
        ))
        .await
        .json();
    let mut out: Vec<(String, String)> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["resource"]["recipient"][0]["reference"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                e["resource"]["payload"][0]["contentString"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn encounters(app: &TestApp, visit: &str) -> Vec<Value> {
    app.get(&format!("Encounter?identifier=urn:visit:cc|{visit}"))
        .await
        .json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

async fn admission_update_discharge_make_one_encounter_and_tell_the_carers(app: TestApp) {
    world(&app).await;
    let a01 = adt("A01", "M-1", "V100", "CARD");
    let (code, control, text, _) = msa(&app.send_hl7(&a01).await);
    assert_eq!((code.as_str(), control.as_str()), ("AA", "M-1"), "{text}");
    let found = encounters(&app, "V100").await;
    assert_eq!(found.len(), 1);
    let e = &found[0];
    assert_eq!(e["status"], "in-progress");
    assert_eq!(e["class"]["code"], "IMP");
    assert_eq!(e["subject"]["reference"], "Patient/nora");
    assert_eq!(e["serviceProvider"]["reference"], "Organization/cc");
    assert_eq!(e["period"]["start"], "2026-12-02T13:00:00Z");
    let told = alerts(&app).await;
    let to: Vec<&str> = told.iter().map(|(r, _)| r.as_str()).collect();
    // the referral's owner, the care team (the mother of a 15-year-old may see an ordinary
    // admission; the practitioner acts for the practice that cares for her), the coordinator
    // of a young person's transition (her managing organisation)
    assert_eq!(
        to,
        vec![
            "HealthcareService/cardio",
            "Organization/shore",
            "Practitioner/dr1",
            "RelatedPerson/mom"
        ],
        "{told:?}"
    );
    let words = &told[0].1;
    assert!(
        words.starts_with("Nora Reyes was admitted at Connecticut Children's on Wed 2 Dec 2026"),
        "{words}"
    );
    assert!(
        words.contains("Treating practitioner: Dr Ana Ruiz"),
        "{words}"
    );
    // the same message again: AA, nothing written (the audit trail aside)
    let before = app.row_counts().await;
    let (code, _, text, _) = msa(&app.send_hl7(&a01).await);
    assert_eq!(code, "AA");
    assert!(text.contains("already received"), "{text}");
    assert_eq!(app.row_counts().await, before);
    // an update changes the Encounter and tells nobody; the discharge finishes it and tells
    let (code, _, _, _) = msa(&app.send_hl7(&adt("A08", "M-2", "V100", "CARD2")).await);
    assert_eq!(code, "AA");
    assert_eq!(alerts(&app).await.len(), 4);
    let (code, _, text, _) = msa(&app.send_hl7(&adt("A03", "M-3", "V100", "CARD")).await);
    assert_eq!(code, "AA", "{text}");
    let found = encounters(&app, "V100").await;
    assert_eq!(found.len(), 1, "one Encounter for the visit");
    let e = &found[0];
    assert_eq!(e["status"], "finished");
    assert_eq!(e["period"]["end"], "2026-12-04T14:30:00Z");
    assert_eq!(
        e["hospitalization"]["dischargeDisposition"]["coding"][0]["code"],
        "01"
    );
    assert_eq!(e["meta"]["versionId"], "3");
    assert_eq!(alerts(&app).await.len(), 8);
    // a Provenance per version, naming the message
    let id = e["id"].as_str().unwrap();
    let prov = app
        .get(&format!("Provenance?target=Encounter/{id}"))
        .await
        .json();
    let entries = prov["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let mut controls: Vec<String> = entries
        .iter()
        .map(|p| {
            p["resource"]["entity"][0]["what"]["identifier"]["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    controls.sort();
    assert_eq!(controls, vec!["EPIC|CC|M-1", "EPIC|CC|M-2", "EPIC|CC|M-3"]);
    // a discharged visit is not admitted again: AE, nothing written
    let before = app.row_counts().await;
    let (code, _, text, err) = msa(&app.send_hl7(&adt("A01", "M-4", "V100", "CARD")).await);
    assert_eq!(code, "AE", "{text}");
    assert!(text.contains("new visit number"), "{text}");
    assert!(err.is_some());
    assert_eq!(app.row_counts().await, before);
}

async fn a_sensitive_admission_never_reaches_a_parent(app: TestApp) {
    world(&app).await;
    let (code, _, text, _) = msa(&app.send_hl7(&adt("A01", "S-1", "V200", "PSY")).await);
    assert_eq!(code, "AA", "{text}");
    let e = &encounters(&app, "V200").await[0];
    assert_eq!(
        e["extension"][0]["url"],
        "http://continuum-alliance.org/fhir/StructureDefinition/minor-consented-care"
    );
    let labels: Vec<&str> = e["meta"]["security"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["code"].as_str())
        .collect();
    assert!(
        labels.contains(&"PSY") && labels.contains(&"R"),
        "{labels:?}"
    );
    let told = alerts(&app).await;
    assert!(
        told.iter().all(|(r, _)| !r.starts_with("RelatedPerson/")),
        "{told:?}"
    );
    assert!(
        told.iter().any(|(r, _)| r == "HealthcareService/cardio"),
        "{told:?}"
    );
    // the mother cannot read the Encounter either
    let mom = app.client_with(
        &app.token_for("user/*.rs", &["proxy"], &["RelatedPerson/mom"])
            .await,
    );
    let seen = app
        .get_as(&mom, &format!("Encounter/{}", e["id"].as_str().unwrap()))
        .await;
    assert_eq!(seen.status, 404);
}

async fn a_patient_who_opted_out_is_not_announced(app: TestApp) {
    world(&app).await;
    app.create(json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": NOTIFICATION, "code": "hospital-events"}]}],
        "patient": {"reference": "Patient/nora"},
        "provision": {"type": "deny"}}))
        .await;
    let (code, _, _, _) = msa(&app.send_hl7(&adt("A01", "O-1", "V300", "CARD")).await);
    assert_eq!(code, "AA");
    assert_eq!(encounters(&app, "V300").await.len(), 1);
    assert!(alerts(&app).await.is_empty());
}

async fn an_uncertain_patient_is_held_then_applied_after_review(app: TestApp) {
    world(&app).await;
    // the hospital's record number is unknown here, and the family name is another (a
    // step-parent's): her birth date, sex and given name agree — probable, not certain
    let msg = adt("A01", "H-1", "V400", "CARD")
        .replace("N-1^^^CC^MR", "HX-9^^^CCH^MR")
        .replace("Reyes^Nora", "Ruiz^Nora");
    let before_encounters = app.get("Encounter").await.json()["entry"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    let (code, _, text, _) = msa(&app.send_hl7(&msg).await);
    assert_eq!(code, "AA", "{text}");
    assert!(text.starts_with("held for identity review"), "{text}");
    assert!(encounters(&app, "V400").await.is_empty(), "not guessed");
    // the hospital's record is in the review queue with Nora
    let admin = app.client_with(
        &app.token_for("user/*.cruds", &["alliance-admin"], &[])
            .await,
    );
    let reviews = app
        .get_as(&admin, "/api/identity/reviews?state=pending")
        .await
        .json();
    let pair = reviews["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            [&p["left"]["reference"], &p["right"]["reference"]]
                .iter()
                .any(|r| *r == "Patient/nora")
        })
        .unwrap_or_else(|| panic!("a pending pair with Nora: {reviews}"))
        .clone();
    // the same message again is known (held), and changes nothing
    let before = app.row_counts().await;
    let (code, _, text, _) = msa(&app.send_hl7(&msg).await);
    assert_eq!(code, "AA");
    assert!(text.contains("held"), "{text}");
    assert_eq!(app.row_counts().await, before);
    assert_eq!(
        app.get("Encounter").await.json()["entry"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0),
        before_encounters
    );
    // the reviewer links the records: the held message is applied to the hospital's record
    let accepted = app
        .send(admin.post(app.url(&format!(
            "/api/identity/reviews/{}/accept",
            pair["id"].as_str().unwrap()
        ))))
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let found = encounters(&app, "V400").await;
    assert_eq!(found.len(), 1, "applied once reviewed");
    let subject = found[0]["subject"]["reference"].as_str().unwrap();
    assert_ne!(subject, "Patient/nora");
    assert!(
        [&pair["left"]["reference"], &pair["right"]["reference"]]
            .iter()
            .any(|r| *r == subject),
        "the hospital's own record"
    );
    // the alerts reach Nora's carers through the linked records
    let told = alerts(&app).await;
    assert!(
        told.iter().any(|(r, _)| r == "HealthcareService/cardio"),
        "{told:?}"
    );
}

async fn bad_messages_are_refused_and_write_nothing(app: TestApp) {
    world(&app).await;
    let good = adt("A01", "B-0", "V500", "CARD");
    let before = app.row_counts().await;
    let cases: Vec<(String, &str, &str)> = vec![
        ("PID|1||N-1^^^CC^MR\r".into(), "AR", "100"),
        (good.replacen("MSH|^~\\&|", "MSH|^~|", 1), "AR", "100"),
        (good.replacen("|2.5.1", "|3.0", 1), "AR", "203"),
        (good.replacen("ADT^A01^ADT_A01", "ADT^A99", 1), "AR", "201"),
        (good.replacen("ADT^A01^ADT_A01", "ORU^R01", 1), "AR", "200"),
        (good.split("PV1|").next().unwrap().to_string(), "AE", "100"),
        (
            good.replacen("N-1^^^CC^MR||Reyes^Nora", "Z-404^^^CC^MR||Nobody^Known", 1),
            "AE",
            "204",
        ),
        (good.replacen("|20110314|", "|20111399|", 1), "AE", "102"),
        (good.replacen("|20110314|", "|20990101|", 1), "AE", "102"),
    ];
    let mut conn = app.mllp_connect().await;
    let audited = || async { app.store.read(store::audit::count).await.unwrap() };
    for (text, ack, err) in &cases {
        let before_audit = audited().await;
        let answer = mllp_exchange(&mut conn, text.as_bytes()).await;
        assert_eq!(
            audited().await - before_audit,
            1,
            "one AuditEvent per message: {text:?}"
        );
        let (code, control, words, e) = msa(&answer);
        assert_eq!(&code, ack, "{text:?} → {answer:?}");
        let e = e.unwrap_or_else(|| panic!("an ERR segment: {answer:?}"));
        assert!(
            e.contains(&format!("|{err}^")),
            "{text:?} → {e:?} ({words})"
        );
        if text.starts_with("MSH|^~\\&|") {
            assert_eq!(control, "B-0");
        }
    }
    // 10 MB in one frame: AR, and the connection still answers the next message
    let huge = format!("{good}NTE|1||{}\r", "x".repeat(10 * 1024 * 1024));
    let before_audit = audited().await;
    let answer = mllp_exchange(&mut conn, huge.as_bytes()).await;
    assert_eq!(
        audited().await - before_audit,
        1,
        "the oversized one is audited too"
    );
    let (code, control, words, _) = msa(&answer);
    assert_eq!((code.as_str(), control.as_str()), ("AR", "B-0"), "{words}");
    assert!(words.contains("at most"), "{words}");
    assert_eq!(app.row_counts().await, before, "nothing written");
    let before_audit = audited().await;
    let (code, _, _, _) = msa(&mllp_exchange(&mut conn, good.as_bytes()).await);
    assert_eq!(code, "AA");
    assert_eq!(
        audited().await - before_audit,
        1,
        "one AuditEvent for an applied message"
    );
    let (code, _, _, _) = msa(&mllp_exchange(&mut conn, good.as_bytes()).await);
    assert_eq!(code, "AA");
    assert_eq!(
        audited().await - before_audit,
        2,
        "and one for a message known again"
    );
    // bytes that are not HL7 at all, framed: AR, no crash
    let answer = mllp_exchange(&mut conn, &[0xff, 0x00, 0x1c, 0x41]).await;
    assert_eq!(msa(&answer).0, "AR");
}

/// Without a visit number, a discharge finds the patient's open visit at the sending facility
/// only: another organisation's open visit is left alone.
async fn a_discharge_without_a_visit_number_stays_at_its_facility(app: TestApp) {
    world(&app).await;
    let other = app
        .create(json!({"resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/nora"}, "serviceProvider": {"reference": "Organization/shore"}}))
        .await;
    let (code, _, text, _) = msa(&app.send_hl7(&adt("A01", "N-1", "V800", "CARD")).await);
    assert_eq!(code, "AA", "{text}");
    let a03 = adt("A03", "N-2", "V800", "CARD").replace("V800^^^CC^VN", "");
    let (code, _, text, _) = msa(&app.send_hl7(&a03).await);
    assert_eq!(code, "AA", "{text}");
    assert_eq!(encounters(&app, "V800").await[0]["status"], "finished");
    let still = app
        .get(&format!("Encounter/{}", other["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(
        still["status"], "in-progress",
        "another organisation's visit is untouched"
    );
}

both_engines_mllp!(
    a_discharge_without_a_visit_number_stays_at_its_facility,
    admission_update_discharge_make_one_encounter_and_tell_the_carers,
    a_sensitive_admission_never_reaches_a_parent,
    a_patient_who_opted_out_is_not_announced,
    an_uncertain_patient_is_held_then_applied_after_review,
    bad_messages_are_refused_and_write_nothing,
);

/// A frame begun and never finished does not hold the connection open forever, and other
/// connections are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_frame_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut mllp = server::mllp::MllpConfig::new("127.0.0.1:0".parse().unwrap());
    mllp.frame_timeout = std::time::Duration::from_millis(500);
    let app = TestApp::spawn_with(
        Engine::Sqlite,
        server::ServerConfig {
            mllp: Some(mllp),
            ..Default::default()
        },
    )
    .await;
    world(&app).await;
    let mut slow = app.mllp_connect().await;
    slow.write_all(b"\x0bMSH|^~\\&|EPIC|CC|").await.unwrap();
    // another sender is answered meanwhile
    let (code, _, _, _) = msa(&app.send_hl7(&adt("A01", "T-1", "V600", "CARD")).await);
    assert_eq!(code, "AA");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the half-sent frame's connection is closed");
}

/// MLLP over TLS: a client that trusts the server's certificate is answered; a plain-TCP
/// sender on the TLS port gets no acknowledgement (the handshake fails, the connection closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).unwrap();
    let mut mllp = server::mllp::MllpConfig::new("127.0.0.1:0".parse().unwrap());
    mllp.tls = Some(server::mllp::tls_config(&cert_path, &key_path).expect("the PEM files load"));
    let app = TestApp::spawn_with(
        Engine::Sqlite,
        server::ServerConfig {
            mllp: Some(mllp),
            ..Default::default()
        },
    )
    .await;
    world(&app).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = app.mllp_connect().await;
    let mut tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("the TLS handshake");
    let mut frame = vec![0x0b];
    frame.extend_from_slice(adt("A01", "TLS-1", "V700", "CARD").as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    tls.write_all(&frame).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.ends_with(&[0x1c, 0x0d]) {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed without an acknowledgement");
        got.extend_from_slice(&buf[..n]);
    }
    let ack = String::from_utf8_lossy(&got[1..got.len() - 2]).to_string();
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(encounters(&app, "V700").await.len(), 1);
    // plain bytes on the TLS port: no acknowledgement, the connection is closed
    let mut plain = app.mllp_connect().await;
    plain.write_all(&frame).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(40), plain.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert!(
        n == 0 || !String::from_utf8_lossy(&buf[..n]).contains("MSA|"),
        "no acknowledgement over plain TCP"
    );
}
