//! Property tests over what every request's input goes through: the validator (any JSON, and
//! valid resources with parts replaced by anything), index extraction of what validates, and
//! the search parser (any parameters and values). None may panic, and the answers keep their
//! promises: a refusal always says where, a parsed search stays within the limits. A bounded
//! number of cases per run (`PROPTEST_CASES` changes it), part of `scripts/test`.

use fhir::search::{ParseOptions, SearchLimits, extract, parse_search, registry};
use fhir::validate_resource;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Element names real resources use, so generated objects reach deep into the model.
const KEYS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "extension",
    "url",
    "valueString",
    "valueCode",
    "valueReference",
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
    "postalCode",
    "telecom",
    "status",
    "code",
    "coding",
    "display",
    "text",
    "subject",
    "reference",
    "effectiveDateTime",
    "valueQuantity",
    "unit",
    "component",
    "entry",
    "resource",
    "request",
    "method",
    "type",
    "contained",
    "_birthDate",
    "period",
    "start",
    "end",
    "participant",
    "actor",
    "intent",
    "for",
    "focus",
    "owner",
    "security",
    "provision",
    "link",
    "other",
    "div",
    "x",
];

const TYPES: &[&str] = &[
    "Patient",
    "Observation",
    "Bundle",
    "Task",
    "Appointment",
    "Encounter",
    "Consent",
    "Parameters",
    "Spaceship",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "2013-02-30",
            "2099-01-01",
            "2020",
            "2020-13",
            "female",
            "f",
            "final",
            "Patient/1",
            "urn:uuid:x",
            "http://loinc.org",
            "T",
            "-0",
            "1e309",
            "\u{0}",
            "ä,|$\\",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A resource-shaped object: a resource type and elements of any value.
fn any_resource() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(TYPES),
        prop::collection::vec((prop::sample::select(KEYS), any_json()), 0..8),
    )
        .prop_map(|(rt, kv)| {
            let mut o: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            o.insert("resourceType".into(), json!(rt));
            Value::Object(o)
        })
}

fn valid_resources() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:x", "value": "1"}],
            "name": [{"family": "Núñez", "given": ["Ana"]}], "gender": "female", "birthDate": "2013-05-02",
            "address": [{"line": ["1 Main St"], "postalCode": "06320"}],
            "telecom": [{"system": "phone", "value": "555"}]}),
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2020-01-01T10:00:00Z",
            "valueQuantity": {"value": 72, "unit": "/min"},
            "component": [{"code": {"text": "x"}, "valueString": "y"}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}}]}),
    ]
}

/// Replaces the value at one path of `v` (chosen by `pick`) with `with`.
fn replace_somewhere(v: &mut Value, pick: usize, with: Value) {
    let mut paths: Vec<Vec<String>> = Vec::new();
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(o) => {
                for (k, c) in o {
                    at.push(k.clone());
                    out.push(at.clone());
                    walk(c, at, out);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    at.push(i.to_string());
                    out.push(at.clone());
                    walk(c, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    walk(v, &mut Vec::new(), &mut paths);
    if paths.is_empty() {
        return;
    }
    let path = &paths[pick % paths.len()];
    let pointer = format!("/{}", path.join("/"));
    if let Some(slot) = v.pointer_mut(&pointer) {
        *slot = with;
    }
}

fn check_validation(resource: &Value) {
    match validate_resource(resource) {
        Ok(_) => {
            // what validates is indexed without a panic
            let _ = extract(registry(), resource);
        }
        Err(issues) => {
            assert!(!issues.is_empty());
            for i in &issues {
                assert!(!i.diagnostics.is_empty(), "a refusal says why: {i:?}");
            }
        }
    }
}

const PARAMS: &[&str] = &[
    "name",
    "family",
    "given",
    "birthdate",
    "identifier",
    "gender",
    "_id",
    "_lastUpdated",
    "general-practitioner",
    "organization",
    "address-postalcode",
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_has:Observation:patient:code",
    "subject:Patient.name",
    "name:exact",
    "name:contains",
    "identifier:not",
    "code:text",
    "value-quantity",
    "code-value-quantity",
    "near",
    "_format",
    "nonsense",
    "name:missing",
    "birthdate:missing",
    "_has",
    "subject:Patient.organization.name",
];

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    let value = prop_oneof![
        "[ -~]{0,16}",
        Just("ge2010-01-01".to_string()),
        Just("a,b,c".to_string()),
        Just("http://x|y".to_string()),
        Just("|".to_string()),
        Just("\\,\\|\\$".to_string()),
        Just("5.4|http://unitsofmeasure.org|mg".to_string()),
        Just("42.1|-71.3|10|mi".to_string()),
        Just("Patient:organization".to_string()),
        Just("-name,birthdate".to_string()),
        Just("ap2010".to_string()),
    ];
    prop::collection::vec(
        (prop::sample::select(PARAMS).prop_map(str::to_string), value),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_validator_takes_any_json(v in any_json()) {
        check_validation(&v);
    }

    #[test]
    fn the_validator_takes_any_resource_shape(v in any_resource()) {
        check_validation(&v);
    }

    #[test]
    fn valid_resources_with_a_part_replaced(which in 0usize..3, pick in any::<usize>(), with in any_json()) {
        let mut r = valid_resources()[which].clone();
        replace_somewhere(&mut r, pick, with);
        check_validation(&r);
    }

    #[test]
    fn the_search_parser_takes_any_query(rt in prop::sample::select(TYPES), q in query(), lenient in any::<bool>()) {
        let limits = SearchLimits::default();
        let opts = ParseOptions { lenient, base_url: "http://x/fhir", limits };
        if let Ok(req) = parse_search(registry(), rt, &q, &opts) {
            prop_assert!(req.clauses.len() <= limits.terms);
            for c in &req.clauses {
                prop_assert!(c.values.len() <= limits.values);
            }
        }
    }
}
