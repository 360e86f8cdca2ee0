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

/// Candidates are searched as the caller: a parent sees their own child among them, not the
/// other children who match.
async fn match_shows_only_what_the_caller_may_see(app: TestApp) {
    let ana = app
        .create(patient("Ana", "Núñez", "2013-05-02", "12 Ocean Avenue"))
        .await;
    let sofia = app
        .create(patient("Sofia", "Núñez", "2013-05-02", "12 Ocean Avenue"))
        .await;
    let mom = app
        .create(json!({"resourceType": "RelatedPerson", "patient": {"reference": format!("Patient/{}", sofia["id"].as_str().unwrap())}}))
        .await;
    let proxy = app.client_with(
        &app.token_for(
            "user/*.rs",
            &["proxy"],
            &[&format!("RelatedPerson/{}", mom["id"].as_str().unwrap())],
        )
        .await,
    );
    let ask = params(
        patient("Ana", "Nunez", "2013-05-02", "12 Ocean Avenue"),
        &[],
    );
    let ids = |r: &crate::helpers::Resp| -> Vec<String> {
        r.json()["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    // the backend service sees both sisters among the candidates
    let all = ids(&app.post("Patient/$match", &ask).await);
    assert!(
        all.contains(&ana["id"].as_str().unwrap().to_string()),
        "{all:?}"
    );
    // Sofia's mother sees only Sofia (graded below certain: she is not Ana)
    let r = app
        .send(
            proxy
                .post(app.url("Patient/$match"))
                .header("Content-Type", "application/fhir+json")
                .body(ask.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = ids(&r);
    assert!(
        !seen.contains(&ana["id"].as_str().unwrap().to_string()),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|id| id == sofia["id"].as_str().unwrap()),
        "{seen:?}"
    );
}

fn patient_with(given: &str, family: &str, line: &str, mrn: &str) -> Value {
    let mut p = patient(given, family, "2013-05-02", line);
    p["identifier"] = json!([{"system": "urn:mrn:test", "value": mrn}]);
    p
}

/// The other records linked with `Patient/id` (through the Person that links them).
async fn linked_with(app: &TestApp, id: &str) -> Vec<String> {
    let r = app.get(&format!("Person?link=Patient/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    let persons = b["entry"].as_array().cloned().unwrap_or_default();
    assert!(persons.len() <= 1, "one Person per person: {b}");
    let mut out: Vec<String> = persons
        .iter()
        .flat_map(|e| {
            e["resource"]["link"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|l| l["target"]["reference"].as_str().map(str::to_string))
        .filter(|r| *r != format!("Patient/{id}"))
        .collect();
    out.sort();
    out
}

/// A Patient written that is certainly someone already registered is linked (a Person links
/// both records; the Patients are stored as sent); a twin goes to the review queue; a reviewer
/// links and unlinks (audited, reversible); a decided pair is not proposed again.
async fn linkage_links_certain_pairs_and_queues_the_rest(app: TestApp) {
    let a = app
        .create(patient_with("Ana", "Núñez", "12 Ocean Avenue", "A1"))
        .await;
    let b = app
        .create(patient_with("Ana", "Nunez", "12 Ocean Ave", "B7"))
        .await;
    let (aid, bid) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    assert!(
        b.get("link").is_none(),
        "the Patient is stored as sent: {b}"
    );
    assert_eq!(linked_with(&app, aid).await, vec![format!("Patient/{bid}")]);
    assert_eq!(linked_with(&app, bid).await, vec![format!("Patient/{aid}")]);
    // the twin sister: pairs for review, not links
    let twin = app
        .create(patient_with("Sofia", "Núñez", "12 Ocean Avenue", "S3"))
        .await;
    let tid = twin["id"].as_str().unwrap();
    assert!(linked_with(&app, tid).await.is_empty());
    let r = app.get_raw("/api/identity/reviews").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let queue = r.json();
    let reviews = queue["reviews"].as_array().unwrap().clone();
    let review = reviews
        .iter()
        .find(|x| {
            x["left"]["reference"] == format!("Patient/{tid}")
                || x["right"]["reference"] == format!("Patient/{tid}")
        })
        .unwrap_or_else(|| panic!("the twin is in the queue: {queue}"))
        .clone();
    assert_eq!(review["state"], "pending");
    assert!(["probable", "possible"].contains(&review["grade"].as_str().unwrap()));
    assert!(
        review["left"]["name"].as_str().unwrap().contains('N'),
        "{review}"
    );
    let linked = app
        .get_raw("/api/identity/reviews?state=linked")
        .await
        .json();
    assert_eq!(linked["reviews"][0]["decidedBy"], "automatic", "{linked}");
    // a reviewer links the pair (the twin joins the Person), then undoes it
    let rid = review["id"].as_str().unwrap();
    let r = app
        .post_raw(&format!("/api/identity/reviews/{rid}/accept"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "linked");
    assert_eq!(
        linked_with(&app, tid).await.len(),
        2,
        "the twin joined Ana's records"
    );
    let r = app
        .post_raw(&format!("/api/identity/reviews/{rid}/unlink"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "unlinked");
    assert!(linked_with(&app, tid).await.is_empty());
    assert_eq!(linked_with(&app, aid).await, vec![format!("Patient/{bid}")]);
    // rejected: not the same person — closed until an administrator reopens it
    let r = app
        .post_raw(&format!("/api/identity/reviews/{rid}/reject"))
        .await;
    assert_eq!(r.json()["state"], "rejected", "{}", r.text);
    let r = app
        .post_raw(&format!("/api/identity/reviews/{rid}/accept"))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("administrator can reopen"), "{}", r.text);
    assert!(linked_with(&app, tid).await.is_empty());
    let r = app
        .post_raw(&format!("/api/identity/reviews/{rid}/unlink"))
        .await;
    assert_eq!(
        r.status, 409,
        "only a linked pair can be unlinked: {}",
        r.text
    );
    // decided pairs are not proposed again when the twin's record changes
    let mut t = app.get(&format!("Patient/{tid}")).await.json();
    t["gender"] = json!("female");
    assert_eq!(app.put(&format!("Patient/{tid}"), &t).await.status, 200);
    let again = app
        .get_raw("/api/identity/reviews?state=pending")
        .await
        .json();
    assert!(
        !again["reviews"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == review["id"]),
        "{again}"
    );
    // the decisions are on the record
    let audit = app.get("AuditEvent?_count=500").await.text;
    assert!(audit.contains(&format!("Patient/{tid}")));
    // unknown review, bad state, and callers who are not reviewers
    assert_eq!(
        app.post_raw("/api/identity/reviews/nope/accept")
            .await
            .status,
        404
    );
    assert_eq!(
        app.get_raw("/api/identity/reviews?state=maybe")
            .await
            .status,
        400
    );
    let parent = app.client_with(&app.token_for("user/*.rs", &["proxy"], &[]).await);
    let r = app
        .send(parent.get(format!("http://{}/api/identity/reviews", app.addr)))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

fn newborn(given: &[&str], family: &str, birth: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": given}],
        "birthDate": birth,
        "address": [{"use": "home", "line": ["40 Bank Street"], "city": "New London", "state": "CT", "postalCode": "06320"}]})
}

/// A made-up family name for newborn `n`, unlike the others (letters drawn from a hash of n).
fn family_of(n: u64) -> String {
    let mut h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::new();
    for i in 0..7 {
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let c = if i % 2 == 0 {
            b"bcdfghklmnprstvz"[(h % 16) as usize]
        } else {
            b"aeiou"[(h % 5) as usize]
        };
        s.push(if i == 0 { c.to_ascii_uppercase() } else { c } as char);
    }
    s
}

async fn reviews_of(app: &TestApp, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for state in ["pending", "linked", "rejected"] {
        let q = app
            .get_raw(&format!("/api/identity/reviews?state={state}"))
            .await
            .json();
        out.extend(
            q["reviews"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| {
                    x["left"]["reference"] == format!("Patient/{id}")
                        || x["right"]["reference"] == format!("Patient/{id}")
                })
                .cloned(),
        );
    }
    out
}

/// A newborn day: many newborns sharing one birth date, town and "Baby Girl"/"Baby Boy" are
/// not compared into the queue (the placeholder is no evidence; the shared birth-date block
/// grows past its cap and is skipped), yet a true second registration is still found through
/// its own keys; twins by their markers are never proposed; a mother's identifier links.
async fn newborn_day_twins_and_the_mother(app: TestApp) {
    let mut first = None;
    for n in 0..70 {
        let sex = if n % 2 == 0 { "Girl" } else { "Boy" };
        let mut p = newborn(&["Baby", sex], &family_of(n), "2026-11-30");
        p["address"][0]["line"] = json!([format!("{} Bank Street", n + 1)]);
        let p = app.create(p).await;
        first.get_or_insert(p["id"].as_str().unwrap().to_string());
    }
    let first = first.unwrap();
    let pending = app
        .get_raw("/api/identity/reviews?state=pending")
        .await
        .json();
    assert_eq!(pending["count"], 0, "strangers are not proposed: {pending}");
    // the birth-date block holds 70 > 60 Patients: skipped; the family key still meets
    let named = app
        .create(newborn(&["Amara"], &family_of(0), "2026-11-30"))
        .await;
    let nid = named["id"].as_str().unwrap();
    let found = reviews_of(&app, nid).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0]["state"], "pending",
        "a named child is not linked to 'Baby Girl' alone"
    );
    assert!(found[0]["score"].as_f64().unwrap() < 0.99, "{}", found[0]);
    assert!(
        [
            found[0]["left"]["reference"].clone(),
            found[0]["right"]["reference"].clone()
        ]
        .contains(&json!(format!("Patient/{first}")))
    );
    // twins by their markers: certainly not one person — never proposed
    let a = app
        .create(newborn(&["Baby", "A"], "Okafor", "2026-11-29"))
        .await;
    let b = app
        .create(newborn(&["Baby", "B"], "Okafor", "2026-11-29"))
        .await;
    assert!(reviews_of(&app, a["id"].as_str().unwrap()).await.is_empty());
    assert!(
        linked_with(&app, b["id"].as_str().unwrap())
            .await
            .is_empty()
    );
    // the mother's identifier with the birth date links a single birth's two registrations
    let mother = json!([{"url": "http://continuum-alliance.org/fhir/StructureDefinition/mother-identifier",
        "valueIdentifier": {"system": "urn:mrn:hhc", "value": "M-4411"}}]);
    let mut m1 = newborn(&["Baby", "Girl"], "Lindqvist", "2026-11-28");
    m1["extension"] = mother.clone();
    let mut m2 = newborn(&["Baby", "Girl"], "Lindqvist", "2026-11-28");
    m2["extension"] = mother;
    m2["address"][0]["line"] = json!(["7 Other Road"]);
    let m1 = app.create(m1).await;
    let m2 = app.create(m2).await;
    assert_eq!(
        linked_with(&app, m1["id"].as_str().unwrap()).await,
        vec![format!("Patient/{}", m2["id"].as_str().unwrap())]
    );
}

/// `$match` with a partial address: what the caller did not send does not count against the
/// match, and each field that agrees only adds — the README's example.
async fn match_takes_a_partial_address(app: TestApp) {
    let ana = app
        .create(patient("Ana", "Núñez", "2013-05-02", "12 Ocean Avenue"))
        .await;
    app.create(patient("Liam", "Okafor", "2011-01-09", "3 Elm Street"))
        .await;
    let score = |b: &Value| -> (f64, String) {
        let e = &b["entry"][0];
        assert_eq!(e["resource"]["id"], ana["id"], "{b}");
        (e["search"]["score"].as_f64().unwrap(), grade(e).to_string())
    };
    let ask = |address: Value| {
        params(
            json!({"resourceType": "Patient", "name": [{"family": "Nunez", "given": ["Ana"]}],
                "birthDate": "2013-05-02", "address": address}),
            &[json!({"name": "count", "valueInteger": 5})],
        )
    };
    let mut bare = ask(json!([]));
    bare["parameter"][0]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("address");
    let bare = app.post("Patient/$match", &bare).await.json();
    let postcode = app
        .post("Patient/$match", &ask(json!([{"postalCode": "06320"}])))
        .await
        .json();
    let city = app
        .post("Patient/$match", &ask(json!([{"city": "New London"}])))
        .await
        .json();
    let both = app
        .post(
            "Patient/$match",
            &ask(json!([{"postalCode": "06320", "city": "New London"}])),
        )
        .await
        .json();
    let (s0, _) = score(&bare);
    let (s1, g1) = score(&postcode);
    let (s2, _) = score(&city);
    let (s3, g3) = score(&both);
    assert!(s1 >= s0 && s2 >= s0 && s3 >= s1, "{s0} {s1} {s2} {s3}");
    assert!(["probable", "certain"].contains(&g1.as_str()), "{postcode}");
    assert!(["probable", "certain"].contains(&g3.as_str()), "{both}");
}

/// Automatic links gather at most ten records as one person: the eleventh look-alike goes to a
/// reviewer (as probable), however certain each pair looks.
async fn automatic_links_stop_at_ten_records(app: TestApp) {
    let mut ids = Vec::new();
    for n in 0..11 {
        let p = app
            .create(patient_with(
                "Ana",
                "Núñez",
                "12 Ocean Avenue",
                &format!("M{n}"),
            ))
            .await;
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        linked_with(&app, &ids[0]).await.len(),
        9,
        "ten records, one person"
    );
    let last = reviews_of(&app, &ids[10]).await;
    assert!(!last.is_empty(), "the eleventh waits for a person");
    assert!(
        last.iter()
            .all(|r| r["state"] == "pending" && r["grade"] == "probable"),
        "{last:?}"
    );
    assert!(linked_with(&app, &ids[10]).await.is_empty());
}

both_engines!(
    automatic_links_stop_at_ten_records,
    newborn_day_twins_and_the_mother,
    match_takes_a_partial_address,
    linkage_links_certain_pairs_and_queues_the_rest,
    match_grades_and_orders_candidates,
    match_refuses_too_little_input,
    match_shows_only_what_the_caller_may_see,
);
