//! No request shape breaks the server: the corpus of past failures
//! (`tests/data/fuzz-corpus.ndjson`, one request per line, each once a 500) replayed, then a
//! bounded, seeded stream of mutated requests — resources with parts replaced by anything,
//! searches of any parameters and values, Bundles of both kinds, odd headers — on both engines.
//! Every answer must be below 500 (batch entries included) and come within a few seconds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::both_engines;
use crate::helpers::{Resp, TestApp};

/// Requests generated per engine and run (seeded: the same stream every run).
const REQUESTS: usize = 400;
/// The longest any one answer may take.
const SLOWEST: std::time::Duration = std::time::Duration::from_secs(10);

const KEYS: &[&str] = &[
    "id",
    "meta",
    "extension",
    "url",
    "valueString",
    "identifier",
    "system",
    "value",
    "name",
    "family",
    "given",
    "birthDate",
    "gender",
    "address",
    "line",
    "status",
    "code",
    "coding",
    "text",
    "subject",
    "reference",
    "effectiveDateTime",
    "valueQuantity",
    "entry",
    "resource",
    "request",
    "method",
    "type",
    "contained",
    "_birthDate",
    "period",
    "start",
    "participant",
    "actor",
    "intent",
    "for",
    "focus",
    "owner",
    "security",
    "slot",
    "managingOrganization",
];

const STRINGS: &[&str] = &[
    "",
    "x",
    "2013-02-30",
    "2099-01-01",
    "2020",
    "female",
    "f",
    "final",
    "Patient/fz-1",
    "Patient/../../etc",
    "urn:uuid:00000000-0000-4000-8000-000000000000",
    "Patient?name=a",
    "http://loinc.org",
    "\u{0}",
    "ä,|$\\",
    "'; DROP TABLE resources; --",
    "%00",
    "booked",
    "requested",
    "9999-12-31T23:59:59Z",
];

fn any_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-1_000_000i64..1_000_000)),
        3 => json!(rng.random::<f64>() * 1e6),
        4 => json!(STRINGS[rng.random_range(0..STRINGS.len())]),
        5 | 6 => {
            let n = rng.random_range(0..5);
            let mut o = Map::new();
            for _ in 0..n {
                o.insert(
                    KEYS[rng.random_range(0..KEYS.len())].to_string(),
                    any_json(rng, depth - 1),
                );
            }
            Value::Object(o)
        }
        _ => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| any_json(rng, depth - 1))
                .collect(),
        ),
    }
}

fn templates() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Patient",
            json!({"resourceType": "Patient", "identifier": [{"system": "urn:fz", "value": "1"}],
            "name": [{"family": "Fuzz", "given": ["Ana"]}], "gender": "female", "birthDate": "2013-05-02",
            "address": [{"line": ["1 Main St"], "postalCode": "06320"}]}),
        ),
        (
            "Observation",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/fz-1"}, "valueQuantity": {"value": 1, "unit": "mg"}}),
        ),
        (
            "Task",
            json!({"resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": "Patient/fz-1"}}),
        ),
        (
            "Appointment",
            json!({"resourceType": "Appointment", "status": "booked",
            "participant": [{"actor": {"reference": "Patient/fz-1"}, "status": "accepted"}]}),
        ),
    ]
}

/// Replaces one value somewhere in `v` with anything.
fn mutate(rng: &mut StdRng, v: &mut Value) {
    let mut pointers = Vec::new();
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => o.iter().for_each(|(k, c)| {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                walk(c, p, out)
            }),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                walk(c, p, out)
            }),
            _ => {}
        }
    }
    walk(v, String::new(), &mut pointers);
    let p = &pointers[rng.random_range(0..pointers.len())];
    let with = any_json(rng, 3);
    if let Some(slot) = v.pointer_mut(p) {
        *slot = with;
    }
}

const PARAMS: &[&str] = &[
    "name",
    "family",
    "birthdate",
    "identifier",
    "gender",
    "_id",
    "_lastUpdated",
    "organization",
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_has:Observation:patient:code",
    "general-practitioner:Practitioner.name",
    "name:exact",
    "identifier:not",
    "address-postalcode",
    "_format",
    "nonsense",
    "name:missing",
    "status",
    "subject",
    "patient",
    "code",
    "date",
    "value-quantity",
    "_since",
];

const VALUES: &[&str] = &[
    "a",
    "ge2010-01-01",
    "a,b,c",
    "http://x|y",
    "|",
    "\\,\\|",
    "5.4|http://unitsofmeasure.org|mg",
    "Patient:organization",
    "-name,birthdate",
    "ap2010",
    "true",
    "1001",
    "-1",
    "count",
    "Patient/fz-1",
    "Observation:subject",
    "*",
    "",
    "2020-13",
    "xml",
    "a\u{0}b",
    "\u{1}",
    "'; DROP TABLE resources; --",
    "%",
    "_",
    "\\",
];

fn query(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..8);
    (0..n)
        .map(|_| {
            let v = if rng.random_bool(0.2) {
                any_json(rng, 0).to_string()
            } else {
                VALUES[rng.random_range(0..VALUES.len())].to_string()
            };
            format!(
                "{}={}",
                PARAMS[rng.random_range(0..PARAMS.len())],
                url_encode(&v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One generated request: (method, path, headers, body).
fn request(
    rng: &mut StdRng,
) -> (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    Option<String>,
) {
    let (rt, mut resource) = templates()[rng.random_range(0..4)].clone();
    if rng.random_bool(0.8) {
        for _ in 0..rng.random_range(1..4) {
            mutate(rng, &mut resource);
        }
    }
    let json = vec![("Content-Type", "application/fhir+json".to_string())];
    match rng.random_range(0..9) {
        0 | 1 => ("POST", rt.to_string(), json, Some(resource.to_string())),
        2 => {
            resource["id"] = json!("fz-1");
            (
                "PUT",
                format!("{rt}/fz-1"),
                json,
                Some(resource.to_string()),
            )
        }
        3 | 4 => ("GET", format!("{rt}?{}", query(rng)), vec![], None),
        5 => (
            "POST",
            format!("{rt}/_search"),
            vec![(
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            Some(query(rng)),
        ),
        6 => {
            let mut headers = json;
            headers.push(("If-None-Exist", query(rng)));
            if rng.random_bool(0.5) {
                headers.push(("Prefer", "handling=lenient".to_string()));
            }
            ("POST", rt.to_string(), headers, Some(resource.to_string()))
        }
        _ => {
            let entries: Vec<Value> = (0..rng.random_range(1..5))
                .map(|i| {
                    let (t, mut r) = templates()[rng.random_range(0..4)].clone();
                    if rng.random_bool(0.7) {
                        mutate(rng, &mut r);
                    }
                    match rng.random_range(0..4) {
                        0 => json!({"request": {"method": "GET", "url": format!("{t}?{}", query(rng))}}),
                        1 => json!({"request": {"method": "DELETE", "url": format!("{t}?{}", query(rng))}}),
                        _ => json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-00000000000{i}"),
                            "request": {"method": "POST", "url": t}, "resource": r}),
                    }
                })
                .collect();
            let kind = if rng.random_bool(0.5) {
                "batch"
            } else {
                "transaction"
            };
            let mut bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
            if rng.random_bool(0.3) {
                mutate(rng, &mut bundle);
            }
            ("POST", String::new(), json, Some(bundle.to_string()))
        }
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.client.request(m, app.url(path));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    app.send(req).await
}

/// Whether an answer is a server fault: a 5xx, or a 5xx inside a batch-response.
fn fault(r: &Resp) -> Option<String> {
    if r.status >= 500 {
        return Some(format!("{} {}", r.status, &r.text[..r.text.len().min(300)]));
    }
    let v: Value = serde_json::from_str(&r.text).unwrap_or_default();
    v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/response/status").and_then(Value::as_str))
        .find(|s| s.starts_with('5'))
        .map(|s| {
            format!(
                "an entry answered {s}: {}",
                &r.text[..r.text.len().min(300)]
            )
        })
}

async fn no_request_shape_breaks_the_server(app: TestApp) {
    app.put(
        "Patient/fz-1",
        &json!({"resourceType": "Patient", "id": "fz-1"}),
    )
    .await;
    let mut faults = Vec::new();
    // the corpus: every request that was once a 500
    let corpus = include_str!("../data/fuzz-corpus.ndjson");
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let c: Value = serde_json::from_str(line).unwrap();
        let headers: Vec<(&str, String)> = c["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_string()))
            .collect();
        let body = match &c["body"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let t = std::time::Instant::now();
        let r = send(
            &app,
            c["method"].as_str().unwrap(),
            c["path"].as_str().unwrap(),
            &headers,
            body,
        )
        .await;
        if let Some(f) = fault(&r) {
            faults.push(format!("corpus '{}': {f}", c["note"]));
        }
        if t.elapsed() > SLOWEST {
            faults.push(format!("corpus '{}': took {:?}", c["note"], t.elapsed()));
        }
    }
    // the generated stream
    let mut rng = StdRng::seed_from_u64(16);
    let started = std::time::Instant::now();
    for n in 0..REQUESTS {
        let (method, path, headers, body) = request(&mut rng);
        let t = std::time::Instant::now();
        let r = send(&app, method, &path, &headers, body.clone()).await;
        if let Some(f) = fault(&r) {
            faults.push(format!(
                "#{n} {method} /{path} {}: {f}",
                body.unwrap_or_default()
            ));
        }
        if t.elapsed() > SLOWEST {
            faults.push(format!("#{n} {method} /{path}: took {:?}", t.elapsed()));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(
        faults.is_empty(),
        "{} faults:\n{}",
        faults.len(),
        faults.join("\n")
    );
    println!(
        "fuzz: {} corpus requests and {REQUESTS} generated, none answered 5xx ({:.0} generated requests/s)",
        corpus.lines().count(),
        REQUESTS as f64 / secs
    );
}

both_engines!(no_request_shape_breaks_the_server);
