//! Search index extraction: from a resource, the typed values each of its search parameters
//! matches on. The store writes these rows in the same transaction as the resource.

use serde_json::Value;

use super::normalize::normalize_string;
use super::registry::{Column, ParamType, Registry};
use crate::fhirpath::{self, Item};
use crate::outcome::{Issue, IssueType};
use crate::primitive::{MAX_MS, MIN_MS, Precision, parse_date_time};

/// One value of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub param: String,
    pub value: IndexValue,
}

/// The typed value, one variant per index table.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `norm` is lower-cased and accent-free (for default and `:contains` matching); `exact`
    /// is the value as written (for `:exact`).
    String {
        norm: String,
        exact: String,
    },
    /// `text` (normalised) is the Coding display or CodeableConcept text, for `:text`.
    Token {
        system: Option<String>,
        code: Option<String>,
        text: Option<String>,
    },
    /// A local reference (`Patient/1`) fills type and id; an absolute or canonical one the url.
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: Option<String>,
    },
    /// An interval in epoch milliseconds, inclusive.
    Date {
        low: i64,
        high: i64,
    },
    Number {
        value: f64,
    },
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Uri {
        value: String,
    },
    /// A pair of a composite parameter, matched together (`code-value-quantity`).
    Composite {
        a_system: Option<String>,
        a_code: Option<String>,
        b: CompositeValue,
    },
    /// A position, for `near`.
    Geo {
        lat: f64,
        lng: f64,
    },
}

/// The second part of a composite pair.
#[derive(Debug, Clone, PartialEq)]
pub enum CompositeValue {
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Date {
        low: i64,
        high: i64,
    },
    String {
        norm: String,
    },
}

/// The longest string kept in an index row; longer values are truncated (prefix search still
/// works, exact matching then only on the first characters).
const MAX_INDEXED: usize = 512;

/// When `index` is beyond the search index entries one resource may need
/// ([`crate::validate::ResourceLimits::index_entries`]; its rows would hold the single writer
/// for long): what to say, naming the search parameter with the most entries.
pub fn over_index_limit(resource_type: &str, index: &[IndexEntry]) -> Option<Issue> {
    let max = crate::validate::resource_limits().index_entries;
    if index.len() <= max {
        return None;
    }
    let mut by_param: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in index {
        *by_param.entry(e.param.as_str()).or_default() += 1;
    }
    let (param, most) = by_param
        .into_iter()
        .max_by_key(|(p, n)| (*n, std::cmp::Reverse(*p)))
        .unwrap_or_default();
    Some(Issue::error(
        IssueType::TooCostly,
        format!(
            "this {resource_type} would need {} search index entries ({most} for '{param}'); at most {max} are kept for one resource — split it, or leave out repeated values",
            index.len()
        ),
    ))
}

/// Extracts the index entries of a resource (which must have passed validation).
pub fn extract(registry: &Registry, resource: &Value) -> Vec<IndexEntry> {
    let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for param in registry.params(rt) {
        if param.column != Column::Index {
            continue;
        }
        let start = out.len();
        if param.kind == ParamType::Composite {
            composite_values(param, resource, &mut out);
            dedup_tail(&mut out, start);
            continue;
        }
        if param.kind == ParamType::Special {
            for item in fhirpath::evaluate(&param.expression, resource) {
                if let Item::Node { value, .. } = item
                    && let (Some(lat), Some(lng)) = (
                        value.get("latitude").and_then(number),
                        value.get("longitude").and_then(number),
                    )
                {
                    out.push(IndexEntry {
                        param: param.code.clone(),
                        value: IndexValue::Geo { lat, lng },
                    });
                }
            }
            continue;
        }
        for item in fhirpath::evaluate(&param.expression, resource) {
            index_item(param.kind, &item, &mut |value| {
                out.push(IndexEntry {
                    param: param.code.clone(),
                    value,
                })
            });
        }
        dedup_tail(&mut out, start);
    }
    out
}

/// Every (first part, second part) pair found under each item of the composite's expression.
fn composite_values(
    param: &super::registry::SearchParam,
    resource: &Value,
    out: &mut Vec<IndexEntry>,
) {
    let [first, second] = param.components.as_slice() else {
        return;
    };
    for item in fhirpath::evaluate(&param.expression, resource) {
        let mut a_values = Vec::new();
        for a in fhirpath::evaluate_relative(&first.expression, &item, resource) {
            index_item(first.kind, &a, &mut |v| a_values.push(v));
        }
        let mut b_values = Vec::new();
        for b in fhirpath::evaluate_relative(&second.expression, &item, resource) {
            index_item(second.kind, &b, &mut |v| b_values.push(v));
        }
        for a in &a_values {
            let (a_system, a_code) = match a {
                IndexValue::Token { system, code, .. } => (system.clone(), code.clone()),
                IndexValue::Reference {
                    target_type,
                    target_id,
                    url,
                } => (
                    None,
                    match (target_type, target_id) {
                        (Some(t), Some(i)) => Some(format!("{t}/{i}")),
                        _ => url.clone(),
                    },
                ),
                _ => continue,
            };
            for b in &b_values {
                let b = match b {
                    IndexValue::Token { system, code, .. } => CompositeValue::Token {
                        system: system.clone(),
                        code: code.clone(),
                    },
                    IndexValue::Quantity {
                        value,
                        system,
                        code,
                    } => CompositeValue::Quantity {
                        value: *value,
                        system: system.clone(),
                        code: code.clone(),
                    },
                    IndexValue::Date { low, high } => CompositeValue::Date {
                        low: *low,
                        high: *high,
                    },
                    IndexValue::String { norm, .. } => {
                        CompositeValue::String { norm: norm.clone() }
                    }
                    _ => continue,
                };
                out.push(IndexEntry {
                    param: param.code.clone(),
                    value: IndexValue::Composite {
                        a_system: a_system.clone(),
                        a_code: a_code.clone(),
                        b,
                    },
                });
            }
        }
    }
}

/// Drops the repeated entries among `out[start..]`, keeping the first of each, in linear time
/// (a resource may hold a hundred thousand identifiers: comparing each with all before it was
/// quadratic).
fn dedup_tail(out: &mut Vec<IndexEntry>, start: usize) {
    if out.len() - start < 2 {
        return;
    }
    let tail = out.split_off(start);
    // by hash, the positions in `out` of the entries kept; equal entries hash alike
    let mut kept: std::collections::HashMap<u64, Vec<usize>> =
        std::collections::HashMap::with_capacity(tail.len());
    for entry in tail {
        let positions = kept.entry(entry_hash(&entry.value)).or_default();
        if positions.iter().any(|&i| out[i].value == entry.value) {
            continue;
        }
        positions.push(out.len());
        out.push(entry);
    }
}

/// A hash of an index value consistent with its `==` (floats by their bits, ±0 alike).
fn entry_hash(value: &IndexValue) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let float = |f: f64, h: &mut std::collections::hash_map::DefaultHasher| {
        (if f == 0.0 { 0 } else { f.to_bits() }).hash(h)
    };
    let quantity = |value: f64,
                    unit: (&Option<String>, &Option<String>),
                    h: &mut std::collections::hash_map::DefaultHasher| {
        float(value, h);
        unit.hash(h)
    };
    std::mem::discriminant(value).hash(&mut h);
    match value {
        IndexValue::String { norm, exact } => (norm, exact).hash(&mut h),
        IndexValue::Token { system, code, text } => (system, code, text).hash(&mut h),
        IndexValue::Reference {
            target_type,
            target_id,
            url,
        } => (target_type, target_id, url).hash(&mut h),
        IndexValue::Date { low, high } => (low, high).hash(&mut h),
        IndexValue::Number { value } => float(*value, &mut h),
        IndexValue::Quantity {
            value,
            system,
            code,
        } => quantity(*value, (system, code), &mut h),
        IndexValue::Uri { value } => value.hash(&mut h),
        IndexValue::Composite {
            a_system,
            a_code,
            b,
        } => {
            (a_system, a_code).hash(&mut h);
            std::mem::discriminant(b).hash(&mut h);
            match b {
                CompositeValue::Token { system, code } => (system, code).hash(&mut h),
                CompositeValue::Quantity {
                    value,
                    system,
                    code,
                } => quantity(*value, (system, code), &mut h),
                CompositeValue::Date { low, high } => (low, high).hash(&mut h),
                CompositeValue::String { norm } => norm.hash(&mut h),
            }
        }
        IndexValue::Geo { lat, lng } => {
            float(*lat, &mut h);
            float(*lng, &mut h)
        }
    }
    h.finish()
}

fn index_item(kind: ParamType, item: &Item, emit: &mut dyn FnMut(IndexValue)) {
    match item {
        Item::Bool(b) if kind == ParamType::Token => emit(IndexValue::Token {
            system: None,
            code: Some(b.to_string()),
            text: None,
        }),
        Item::Node { value, ty } => match kind {
            ParamType::String => string_values(ty.name, value, emit),
            ParamType::Token => token_values(ty.name, value, emit),
            ParamType::Reference => reference_values(ty.name, value, emit),
            ParamType::Date => date_values(ty.name, value, emit),
            ParamType::Number => {
                if let Some(n) = number(value) {
                    emit(IndexValue::Number { value: n })
                }
            }
            ParamType::Quantity => quantity_values(ty.name, value, emit),
            ParamType::Uri => {
                if let Some(s) = value.as_str() {
                    emit(IndexValue::Uri {
                        value: truncate(s).to_string(),
                    })
                }
            }
            ParamType::Composite | ParamType::Special => {}
        },
        _ => {}
    }
}

/// Cuts a string to the length the index keeps (at a character boundary).
pub fn truncate(s: &str) -> &str {
    if s.len() <= MAX_INDEXED {
        return s;
    }
    let mut end = MAX_INDEXED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn emit_string(s: &str, emit: &mut dyn FnMut(IndexValue)) {
    let exact = truncate(s.trim());
    if exact.is_empty() {
        return;
    }
    emit(IndexValue::String {
        norm: truncate(&normalize_string(exact)).to_string(),
        exact: exact.to_string(),
    });
}

fn string_values(ty: &str, v: &Value, emit: &mut dyn FnMut(IndexValue)) {
    let fields: &[&str] = match ty {
        "HumanName" => &["family", "given", "prefix", "suffix", "text"],
        "Address" => &[
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
            "text",
        ],
        _ => {
            if let Some(s) = v.as_str() {
                emit_string(s, emit);
            }
            return;
        }
    };
    for f in fields {
        match v.get(*f) {
            Some(Value::String(s)) => emit_string(s, emit),
            Some(Value::Array(items)) => {
                for s in items.iter().filter_map(Value::as_str) {
                    emit_string(s, emit);
                }
            }
            _ => {}
        }
    }
}

fn str_field(v: &Value, f: &str) -> Option<String> {
    v.get(f)
        .and_then(Value::as_str)
        .map(|s| truncate(s).to_string())
}

fn token_values(ty: &str, v: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match ty {
        "CodeableConcept" => {
            let text = v.get("text").and_then(Value::as_str).map(normalize_string);
            let mut any = false;
            for coding in v
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                any = true;
                let display = coding
                    .get("display")
                    .and_then(Value::as_str)
                    .map(normalize_string);
                emit(IndexValue::Token {
                    system: str_field(coding, "system"),
                    code: str_field(coding, "code"),
                    text: text.clone().or(display),
                });
            }
            if !any && text.is_some() {
                emit(IndexValue::Token {
                    system: None,
                    code: None,
                    text,
                });
            }
        }
        "Coding" => emit(IndexValue::Token {
            system: str_field(v, "system"),
            code: str_field(v, "code"),
            text: v
                .get("display")
                .and_then(Value::as_str)
                .map(normalize_string),
        }),
        "Identifier" => {
            if v.get("value").is_some() || v.get("system").is_some() {
                emit(IndexValue::Token {
                    system: str_field(v, "system"),
                    code: str_field(v, "value"),
                    text: v
                        .get("type")
                        .and_then(|t| t.get("text"))
                        .and_then(Value::as_str)
                        .map(normalize_string),
                })
            }
        }
        "ContactPoint" => {
            if let Some(value) = str_field(v, "value") {
                emit(IndexValue::Token {
                    system: str_field(v, "system"),
                    code: Some(value),
                    text: None,
                })
            }
        }
        _ => match v {
            Value::String(s) => emit(IndexValue::Token {
                system: None,
                code: Some(truncate(s).to_string()),
                text: None,
            }),
            Value::Bool(b) => emit(IndexValue::Token {
                system: None,
                code: Some(b.to_string()),
                text: None,
            }),
            _ => {}
        },
    }
}

pub use crate::json::split_reference;

fn reference_values(ty: &str, v: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match ty {
        "Reference" => {
            let Some(r) = v.get("reference").and_then(Value::as_str) else {
                return;
            };
            if r.starts_with('#') {
                return;
            }
            let absolute = r.contains("://") || r.starts_with("urn:");
            match split_reference(r) {
                Some((rt, id)) => emit(IndexValue::Reference {
                    target_type: Some(rt.to_string()),
                    target_id: Some(id.to_string()),
                    url: absolute.then(|| truncate(r).to_string()),
                }),
                None => emit(IndexValue::Reference {
                    target_type: v.get("type").and_then(Value::as_str).map(str::to_string),
                    target_id: None,
                    url: Some(truncate(r).to_string()),
                }),
            }
        }
        _ => {
            if let Some(s) = v.as_str() {
                let url = s.split('|').next().unwrap_or(s);
                emit(IndexValue::Reference {
                    target_type: None,
                    target_id: None,
                    url: Some(truncate(url).to_string()),
                })
            }
        }
    }
}

fn date_range(s: &str) -> Option<(i64, i64)> {
    parse_date_time(s, Precision::Fraction, false)
        .ok()
        .map(|v| {
            let r = v.range();
            (r.low, r.high)
        })
}

fn date_values(ty: &str, v: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match ty {
        "Period" => {
            let low = v
                .get("start")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map(|r| r.0);
            let high = v
                .get("end")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map(|r| r.1);
            if low.is_some() || high.is_some() {
                emit(IndexValue::Date {
                    low: low.unwrap_or(MIN_MS),
                    high: high.unwrap_or(MAX_MS),
                });
            }
        }
        "Timing" => {
            for e in v
                .get("event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some((low, high)) = e.as_str().and_then(date_range) {
                    emit(IndexValue::Date { low, high });
                }
            }
            if let Some(bounds) = v.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                date_values("Period", bounds, emit);
            }
        }
        _ => {
            if let Some((low, high)) = v.as_str().and_then(date_range) {
                emit(IndexValue::Date { low, high });
            }
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().or_else(|| n.to_string().parse().ok()),
        _ => None,
    }
}

fn quantity_values(ty: &str, v: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match ty {
        "Quantity" | "Age" | "Duration" | "Count" | "Distance" | "Money" | "SimpleQuantity"
        | "MoneyQuantity" => {
            if let Some(value) = v.get("value").and_then(number) {
                let (system, code) = if ty == "Money" {
                    (
                        Some("urn:iso:std:iso:4217".to_string()),
                        str_field(v, "currency"),
                    )
                } else {
                    (
                        str_field(v, "system"),
                        str_field(v, "code").or_else(|| str_field(v, "unit")),
                    )
                };
                emit(IndexValue::Quantity {
                    value,
                    system,
                    code,
                })
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::registry::registry;
    use serde_json::json;

    fn entries(r: Value, param: &str) -> Vec<IndexValue> {
        extract(registry(), &r)
            .into_iter()
            .filter(|e| e.param == param)
            .map(|e| e.value)
            .collect()
    }

    #[test]
    fn patient_index() {
        let p = json!({"resourceType": "Patient", "name": [{"family": "Núñez", "given": ["Ana"]}],
            "birthDate": "2012-04-05", "gender": "female",
            "identifier": [{"system": "urn:mrn", "value": "123"}],
            "telecom": [{"system": "email", "value": "a@b.org"}],
            "generalPractitioner": [{"reference": "Practitioner/9"}],
            "address": [{"city": "Hartford", "postalCode": "06106"}]});
        assert_eq!(
            entries(p.clone(), "family"),
            vec![IndexValue::String {
                norm: "nunez".into(),
                exact: "Núñez".into()
            }]
        );
        assert_eq!(entries(p.clone(), "name").len(), 2);
        assert_eq!(
            entries(p.clone(), "identifier"),
            vec![IndexValue::Token {
                system: Some("urn:mrn".into()),
                code: Some("123".into()),
                text: None
            }]
        );
        assert_eq!(entries(p.clone(), "email").len(), 1);
        assert_eq!(entries(p.clone(), "phone").len(), 0);
        assert_eq!(
            entries(p.clone(), "general-practitioner"),
            vec![IndexValue::Reference {
                target_type: Some("Practitioner".into()),
                target_id: Some("9".into()),
                url: None
            }]
        );
        let IndexValue::Date { low, high } = entries(p.clone(), "birthdate")[0] else {
            panic!()
        };
        assert_eq!(high - low, 86_400_000 - 1);
        assert_eq!(entries(p.clone(), "address-postalcode").len(), 1);
        assert_eq!(
            entries(p, "deceased"),
            vec![IndexValue::Token {
                system: None,
                code: Some("false".into()),
                text: None
            }]
        );
    }

    #[test]
    fn observation_value_quantity_and_period() {
        let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "Weight", "coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "valueQuantity": {"value": 185, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
            "effectivePeriod": {"start": "2020-01-01"}, "subject": {"reference": "http://other.org/fhir/Patient/7"}});
        assert_eq!(
            entries(o.clone(), "value-quantity"),
            vec![IndexValue::Quantity {
                value: 185.0,
                system: Some("http://unitsofmeasure.org".into()),
                code: Some("[lb_av]".into())
            }]
        );
        let IndexValue::Date { high, .. } = entries(o.clone(), "date")[0] else {
            panic!()
        };
        assert_eq!(high, MAX_MS);
        assert_eq!(
            entries(o.clone(), "code")[0],
            IndexValue::Token {
                system: Some("http://loinc.org".into()),
                code: Some("29463-7".into()),
                text: Some("weight".into())
            }
        );
        assert_eq!(
            entries(o, "subject"),
            vec![IndexValue::Reference {
                target_type: Some("Patient".into()),
                target_id: Some("7".into()),
                url: Some("http://other.org/fhir/Patient/7".into())
            }]
        );
    }

    #[test]
    fn repeated_values_are_indexed_once_in_linear_time() {
        let identifiers: Vec<Value> = (0..20_000)
            .map(|i| json!({"system": "urn:x", "value": format!("v{}", i % 10_000)}))
            .collect();
        let p = json!({"resourceType": "Patient", "identifier": identifiers});
        let started = std::time::Instant::now();
        let index = extract(registry(), &p);
        let ids = index.iter().filter(|e| e.param == "identifier").count();
        assert_eq!(ids, 10_000, "each distinct identifier once");
        // quadratic deduplication took seconds here; linear takes milliseconds (a generous
        // bound, not a benchmark: bench/ measures it)
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_resource_beyond_the_index_limit_is_named() {
        let entry = |param: &str, i: usize| IndexEntry {
            param: param.to_string(),
            value: IndexValue::Uri {
                value: i.to_string(),
            },
        };
        let max = crate::validate::resource_limits().index_entries;
        let mut index: Vec<IndexEntry> = (0..max).map(|i| entry("identifier", i)).collect();
        assert!(over_index_limit("Patient", &index).is_none());
        index.push(entry("name", 0));
        let issue = over_index_limit("Patient", &index).unwrap();
        assert_eq!(issue.code, IssueType::TooCostly);
        assert!(
            issue
                .diagnostics
                .contains("50001 search index entries (50000 for 'identifier')"),
            "{}",
            issue.diagnostics
        );
    }
}
