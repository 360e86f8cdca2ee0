//! Bad input never writes and never answers 500: a table of requests, each with the status and
//! OperationOutcome issue code it must get, checked against the row counts of every table.

use serde_json::json;

use crate::both_engines;
use crate::helpers::{Engine, TestApp};

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
    status: u16,
    code: &'static str,
    /// The expected location, when the problem is inside the resource.
    expression: Option<&'static str>,
    /// Words the diagnostics must contain (they say what was wrong and what to do).
    says: Option<&'static str>,
    /// The `Allow` header a 405 must carry.
    allow: Option<&'static str>,
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/fhir+json")];

fn case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: impl Into<String>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        headers: JSON,
        body: body.into(),
        status,
        code,
        expression: None,
        says: None,
        allow: None,
    }
}

fn saying(mut c: Case, words: &'static str) -> Case {
    c.says = Some(words);
    c
}

fn allowing(mut c: Case, allow: &'static str) -> Case {
    c.allow = Some(allow);
    c
}

fn at(mut c: Case, expression: &'static str) -> Case {
    c.expression = Some(expression);
    c
}

fn with_headers(mut c: Case, headers: &'static [(&'static str, &'static str)]) -> Case {
    c.headers = headers;
    c
}

fn cases() -> Vec<Case> {
    let patient = |extra: serde_json::Value| {
        let mut p = json!({"resourceType": "Patient", "name": [{"family": "Bad"}]});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p.to_string()
    };
    let big = format!(
        "{{\"resourceType\":\"Patient\",\"text\":{{\"status\":\"generated\",\"div\":\"<div>{}</div>\"}}}}",
        "x".repeat(70_000)
    );
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let terms = |n: usize| vec!["name=a"; n].join("&");
    let values = |n: usize| {
        (0..n)
            .map(|i| format!("v{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let big_search = leak(format!("Patient?{}", terms(492)));
    let long_or = leak(format!("Patient?identifier={}", values(993)));
    let conditional_put = leak(format!("Patient?identifier={}", values(501)));
    let if_none_exist = leak(format!("identifier={}", values(501)));
    let ine_headers: &'static [(&'static str, &'static str)] = Box::leak(
        vec![
            ("Content-Type", "application/fhir+json"),
            ("If-None-Exist", if_none_exist),
        ]
        .into_boxed_slice(),
    );
    let form_search = terms(101);
    let in_transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": format!("Patient?{}", terms(150))}}]})
    .to_string();
    let conditional_reference = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": format!("Patient?identifier={}", values(600))}}}]}).to_string();
    let includes = leak(format!(
        "Patient?{}",
        vec!["_revinclude=Observation:subject"; 21].join("&")
    ));
    vec![
        saying(case("492 search terms (SQLite's expression depth)", "GET", big_search, "", 400, "too-costly"), "at most 100 are accepted in one query"),
        saying(at(case("993 values of one parameter", "GET", long_or, "", 400, "too-costly"), "identifier"), "'identifier' has 993 values; at most 500"),
        saying(with_headers(case("101 terms by POST _search", "POST", "Patient/_search", form_search, 400, "too-costly"), &[("Content-Type", "application/x-www-form-urlencoded")]), "101 parameters"),
        saying(case("a conditional update with 501 values", "PUT", conditional_put, patient(json!({})), 400, "too-costly"), "501 values"),
        saying(with_headers(case("If-None-Exist with 501 values", "POST", "Patient", patient(json!({})), 400, "too-costly"), ine_headers), "501 values"),
        saying(case("150 terms in a transaction's GET", "POST", "", in_transaction, 400, "too-costly"), "150 parameters"),
        saying(case("a conditional reference with 600 values", "POST", "", conditional_reference, 400, "too-costly"), "600 values"),
        saying(case("21 _revinclude", "GET", includes, "", 400, "too-costly"), "at most 20 are accepted"),
        case("malformed JSON", "POST", "Patient", "{\"resourceType\": \"Patient\",", 400, "structure"),
        case("empty body", "POST", "Patient", "", 400, "structure"),
        case("a JSON array", "POST", "Patient", "[{\"resourceType\": \"Patient\"}]", 400, "structure"),
        at(case("missing resourceType", "POST", "Patient", "{\"name\": [{\"family\": \"x\"}]}", 400, "required"), "resourceType"),
        at(case("resourceType not matching the URL", "POST", "Patient", "{\"resourceType\": \"Observation\"}", 400, "invalid"), "resourceType"),
        case("resourceType not a string", "POST", "Patient", "{\"resourceType\": 7}", 400, "structure"),
        case("unknown resource type", "POST", "Spaceship", "{\"resourceType\": \"Spaceship\"}", 404, "not-found"),
        case("a real type this server does not serve", "GET", "Claim", "", 404, "not-found"),
        at(case("body id differs from the URL id", "PUT", "Patient/x", patient(json!({"id": "y"})), 400, "invalid"), "Patient.id"),
        at(case("update without an id in the body", "PUT", "Patient/x", patient(json!({})), 400, "required"), "Patient.id"),
        case("illegal characters in the URL id", "GET", "Patient/bad%20id!", "", 400, "value"),
        at(case("illegal characters in the body id", "POST", "Patient", patient(json!({"id": "a b"})), 400, "value"), "Patient.id"),
        at(case("a month that does not exist", "POST", "Patient", patient(json!({"birthDate": "2012-13-01"})), 400, "value"), "Patient.birthDate"),
        at(case("February 30th", "POST", "Patient", patient(json!({"birthDate": "2012-02-30"})), 400, "value"), "Patient.birthDate"),
        at(case("a US-style date", "POST", "Patient", patient(json!({"birthDate": "04/05/2012"})), 400, "value"), "Patient.birthDate"),
        at(case("a boolean given as a string", "POST", "Patient", patient(json!({"active": "true"})), 400, "value"), "Patient.active"),
        at(case("an integer given as a string", "POST", "Patient", patient(json!({"multipleBirthInteger": "2"})), 400, "value"), "Patient.multipleBirthInteger"),
        at(case("an unknown element", "POST", "Patient", patient(json!({"favouriteColour": "blue"})), 400, "structure"), "Patient.favouriteColour"),
        at(case("an array for a single element", "POST", "Patient", patient(json!({"birthDate": ["2012-01-01"]})), 400, "structure"), "Patient.birthDate"),
        at(case("an object for a repeating element", "POST", "Patient", patient(json!({"name": {"family": "x"}})), 400, "structure"), "Patient.name"),
        at(case("a required element missing", "POST", "Observation", json!({"resourceType": "Observation", "code": {"text": "x"}}).to_string(), 400, "required"), "Observation.status"),
        at(case("a dateTime with a time but no zone", "POST", "Observation", json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectiveDateTime": "2020-01-01T10:00:00"}).to_string(), 400, "value"), "Observation.effectiveDateTime"),
        at(case("an empty string", "POST", "Patient", patient(json!({"gender": ""})), 400, "value"), "Patient.gender"),
        at(case("two choices of one element", "POST", "Patient", patient(json!({"deceasedBoolean": true, "deceasedDateTime": "2020"})), 400, "structure"), "Patient.deceasedDateTime"),
        at(case("a bad date inside a contained resource", "POST", "Patient", patient(json!({"contained": [{"resourceType": "RelatedPerson", "id": "m", "patient": {"reference": "#"}, "birthDate": "1990-02-30"}]})), 400, "value"), "Patient.contained[0].birthDate"),
        at(case("an extension without url", "POST", "Patient", patient(json!({"extension": [{"valueString": "x"}]})), 400, "required"), "Patient.extension[0].url"),
        with_headers(case("XML content", "POST", "Patient", "<Patient xmlns=\"http://hl7.org/fhir\"/>", 415, "not-supported"), &[("Content-Type", "application/fhir+xml")]),
        with_headers(case("no content type", "POST", "Patient", patient(json!({})), 415, "not-supported"), &[]),
        with_headers(case("a form body on create", "POST", "Patient", "name=x", 415, "not-supported"), &[("Content-Type", "application/x-www-form-urlencoded")]),
        with_headers(case("asking for XML", "GET", "Patient", "", 406, "not-supported"), &[("Accept", "application/fhir+xml")]),
        case("_format=xml", "GET", "Patient?_format=xml", "", 406, "not-supported"),
        case("a body over the limit", "POST", "Patient", big, 413, "too-long"),
        at(case("an unknown search parameter", "GET", "Patient?nickname=x", "", 400, "not-found"), "nickname"),
        at(case("an impossible date in a search", "GET", "Patient?birthdate=2020-13", "", 400, "value"), "birthdate"),
        at(case("_count over the maximum", "GET", "Patient?_count=5000", "", 400, "too-costly"), "_count"),
        at(case("a token that is only a bar", "GET", "Patient?identifier=|", "", 400, "value"), "identifier"),
        at(case("a unsupported modifier", "GET", "Patient?name:fuzzy=x", "", 400, "not-supported"), "name:fuzzy"),
        at(case("a reference to a type the parameter cannot hold", "GET", "Patient?general-practitioner=Observation/1", "", 400, "value"), "general-practitioner"),
        at(case("the approximately prefix", "GET", "Patient?birthdate=ap2010", "", 400, "value"), "birthdate"),
        allowing(case("PATCH", "PATCH", "Patient/x", "[]", 405, "not-supported"), "GET, HEAD, PUT, DELETE"),
        saying(at(case("a code outside a required binding", "POST", "Patient", patient(json!({"gender": "f"})), 400, "code-invalid"), "Patient.gender"), "one of female, male, other, unknown"),
        saying(at(case("a status outside its value set", "POST", "Task", json!({"resourceType": "Task", "status": "open", "intent": "order"}).to_string(), 400, "code-invalid"), "Task.status"), "'open' is not a code of TaskStatus"),
        saying(at(case("a birth date in the future", "POST", "Patient", patient(json!({"birthDate": "2099-01-01"})), 400, "value"), "Patient.birthDate"), "in the future"),
        saying(at(case("a parent born in the future, in a transaction", "POST", "", json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "RelatedPerson"}, "resource": {"resourceType": "RelatedPerson", "patient": {"reference": "Patient/x"}, "birthDate": "2100"}}]}).to_string(), 400, "value"), "Bundle.entry[0].resource.birthDate"), "in the future"),
        saying(allowing(case("an operation by GET", "GET", "HealthcareService/$find-care", "", 405, "not-supported"), "POST"), "invoked with POST"),
        saying(case("an operation that does not exist at the system level", "GET", "$frobnicate", "", 404, "not-found"), "no operation $frobnicate on the system level"),
        saying(case("an operation that does not exist on a type", "POST", "Patient/$everything", json!({"resourceType": "Parameters"}).to_string(), 404, "not-found"), "the operations there are POST Patient/$match"),
        saying(case("an operation on the wrong level", "POST", "Patient/$break-glass", json!({"resourceType": "Parameters"}).to_string(), 404, "not-found"), "invoked as POST Patient/{id}/$break-glass"),
        allowing(case("DELETE on the base", "DELETE", "", "", 405, "not-supported"), "POST"),
        with_headers(case("a malformed If-Match", "PUT", "Patient/x", patient(json!({"id": "x"})), 400, "value"), &[("Content-Type", "application/fhir+json"), ("If-Match", "version-two")]),
        with_headers(case("bad If-None-Exist criteria", "POST", "Patient", patient(json!({})), 400, "not-found"), &[("Content-Type", "application/fhir+json"), ("If-None-Exist", "nickname=x")]),
        at(case("a collection Bundle posted to the base", "POST", "", json!({"resourceType": "Bundle", "type": "collection"}).to_string(), 400, "invalid"), "Bundle.type"),
        case("an invalid entry in a transaction", "POST", "", json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient", "active": "yes"}}]}).to_string(), 400, "value"),
        case("a transaction entry without a request", "POST", "", json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]}).to_string(), 400, "required"),
        case("a transaction referring to a missing entry", "POST", "", json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": "urn:uuid:0a9b5a52-1f0a-4c55-9f55-5f0b0f0b0f0b", "request": {"method": "POST", "url": "Observation"}, "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}}}]}).to_string(), 400, "not-found"),
        at(case("a history with a bad _since", "GET", "Patient/_history?_since=yesterday", "", 400, "value"), "_since"),
        at(case("a version that is not a number", "GET", "Patient/x/_history/two", "", 400, "value"), "Patient/x/_history/two"),
    ]
}

async fn run(engine: Engine) {
    let app = TestApp::spawn_with(
        engine,
        server::ServerConfig {
            max_body_bytes: 64 * 1024,
            ..Default::default()
        },
    )
    .await;
    app.put("Patient/x", &json!({"resourceType": "Patient", "id": "x"}))
        .await;
    let table = cases();
    assert!(table.len() >= 25);
    let mut failures = Vec::new();
    for c in &table {
        let before = app.row_counts().await;
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
        let mut req = app
            .client
            .request(method, app.url(c.path))
            .body(c.body.clone());
        for (k, v) in c.headers {
            req = req.header(*k, *v);
        }
        let r = app.send(req).await;
        let after = app.row_counts().await;
        let json: serde_json::Value = serde_json::from_str(&r.text).unwrap_or_default();
        let code = json["issue"][0]["code"].as_str().unwrap_or("");
        let expr = json["issue"][0]["expression"][0].as_str();
        let expression_ok = match c.expression {
            Some(e) if e.contains('/') => true,
            Some(e) => expr == Some(e),
            None => true,
        };
        let text = json["issue"][0]["diagnostics"].as_str().unwrap_or("");
        let says_ok = c.says.is_none_or(|w| text.contains(w));
        let allow = r.headers.get("allow").and_then(|v| v.to_str().ok());
        let allow_ok = c.allow.is_none_or(|a| allow == Some(a));
        if r.status != c.status
            || !says_ok
            || !allow_ok
            || code != c.code
            || before != after
            || json["resourceType"] != "OperationOutcome"
            || !expression_ok
        {
            failures.push(format!(
                "{}: got {} {code} at {expr:?} Allow {allow:?} (want {} {} at {:?} saying {:?} Allow {:?}); wrote: {}; body: {}",
                c.name,
                r.status,
                c.status,
                c.code,
                c.expression,
                c.says,
                c.allow,
                before != after,
                &r.text[..r.text.len().min(300)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    println!(
        "bad input: {} cases rejected with the right status and code, nothing written ({engine:?})",
        table.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_table_sqlite() {
    run(Engine::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_table_postgres() {
    run(Engine::Postgres).await
}

/// A batch entry whose search is too large answers 400 inside the batch-response (it was a 500),
/// and the entries beside it still run.
async fn oversized_searches_in_a_batch_are_refused_in_words(app: TestApp) {
    let many = vec!["name=a"; 492].join("&");
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient?{many}")}},
        {"request": {"method": "DELETE", "url": format!("Patient?identifier={}", (0..700).map(|i| i.to_string()).collect::<Vec<_>>().join(","))}},
        {"request": {"method": "GET", "url": "Patient?name=a"}}]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    for i in 0..2 {
        assert!(
            b["entry"][i]["response"]["status"]
                .as_str()
                .unwrap()
                .starts_with("400"),
            "entry {i}: {}",
            b["entry"][i]
        );
        assert_eq!(
            b["entry"][i]["response"]["outcome"]["issue"][0]["code"],
            "too-costly"
        );
    }
    assert!(
        b["entry"][2]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200")
    );
    // the limits are said in the CapabilityStatement
    let cs = app.get("metadata").await.json();
    assert!(
        cs["rest"][0]["documentation"]
            .as_str()
            .unwrap()
            .contains("100 parameters per query, 500 values per parameter")
    );
}

both_engines!(oversized_searches_in_a_batch_are_refused_in_words);

/// Huge resources are refused quickly with words, nothing written, and a large accepted write
/// does not hold a small one for long (indexing was quadratic in the values of one resource).
async fn huge_resources_are_refused_and_large_ones_are_quick(app: TestApp) {
    let before = app.row_counts().await;
    let identifiers = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| json!({"system": "urn:bulk", "value": format!("id-{i}")}))
            .collect()
    };
    let started = std::time::Instant::now();
    let r = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "identifier": identifiers(100_000)}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(r.issue_code(), "too-costly");
    assert!(
        r.text
            .contains("'identifier' has 100000 items; at most 10000"),
        "{}",
        &r.text[..300.min(r.text.len())]
    );
    let addresses: Vec<serde_json::Value> = (0..200_000).map(|_| json!({"city": "x"})).collect();
    let r = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "address": addresses}),
        )
        .await;
    assert_eq!(r.status, 422);
    let entries: Vec<serde_json::Value> = (0..10_001)
        .map(|_| json!({"request": {"method": "GET", "url": "Patient?name=a"}}))
        .collect();
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "batch", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.text.contains("at most 10000 are accepted in one request"),
        "{}",
        r.text
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "refused in bounded time: {:?}",
        started.elapsed()
    );
    assert_eq!(app.row_counts().await, before, "nothing written");
    // the largest accepted array, and a small write sent meanwhile
    let big = json!({"resourceType": "Patient", "identifier": identifiers(10_000)});
    let small = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let (large, quick) = tokio::join!(app.post("Patient", &big), async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let t = std::time::Instant::now();
        let r = app.post("Observation", &small).await;
        (r, t.elapsed())
    });
    assert_eq!(
        large.status,
        201,
        "{}",
        &large.text[..large.text.len().min(300)]
    );
    assert_eq!(quick.0.status, 201);
    assert!(
        quick.1 < std::time::Duration::from_secs(1),
        "the small write waited {:?}",
        quick.1
    );
}

both_engines!(huge_resources_are_refused_and_large_ones_are_quick);

/// A request that runs out of its time budget answers 503 with Retry-After and writes nothing;
/// the requests after it are served as usual.
async fn budget(engine: Engine) {
    let app = TestApp::spawn_with(
        engine,
        server::ServerConfig {
            request_budget: std::time::Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let before = app.row_counts().await;
    let entries: Vec<serde_json::Value> = (0..3_000)
        .map(|i| {
            json!({"request": {"method": "POST", "url": "Observation"},
                   "resource": {"resourceType": "Observation", "status": "final", "code": {"text": format!("o{i}")}}})
        })
        .collect();
    for kind in ["transaction", "batch"] {
        let started = std::time::Instant::now();
        let r = app
            .post(
                "",
                &json!({"resourceType": "Bundle", "type": kind, "entry": entries}),
            )
            .await;
        assert_eq!(
            r.status,
            503,
            "{kind}: {}",
            &r.text[..r.text.len().min(300)]
        );
        assert_eq!(r.issue_code(), "timeout");
        assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        assert!(r.text.contains("nothing was written"), "{}", r.text);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{kind} stopped near its budget: {:?}",
            started.elapsed()
        );
        assert_eq!(app.row_counts().await, before, "{kind}: nothing written");
    }
    let r = app
        .post(
            "Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "after"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(app.get("Observation?code:text=after").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_budget_writes_nothing_sqlite() {
    budget(Engine::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_budget_writes_nothing_postgres() {
    budget(Engine::Postgres).await
}
