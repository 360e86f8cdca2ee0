//! Reading FHIR JSON: references, extensions and instants, one way everywhere. Resources are
//! handled as `serde_json::Value`; these accessors say what a reference names, what an
//! extension holds and when an instant is, so no module parses them its own way.

use serde_json::Value;

use crate::definitions::definitions;

/// Splits a reference string into (type, id) when it is local (`Patient/1`,
/// `Patient/1/_history/2`) or absolute with a resource type and id at its end
/// (`https://x/fhir/Patient/1`). Contained (`#x`), `urn:uuid:` and conditional references
/// name no stored resource: `None`.
pub fn split_reference(r: &str) -> Option<(&str, &str)> {
    let path = r.split("/_history/").next().unwrap_or(r);
    let mut segs = path.rsplitn(3, '/');
    let id = segs.next()?;
    let rt = segs.next()?;
    if definitions().is_resource_type(rt) && crate::primitive::is_id(id) {
        Some((rt, id))
    } else {
        None
    }
}

/// `(type, id)` of a Reference element (`{"reference": "Patient/1"}`).
pub fn reference_of(element: &Value) -> Option<(&str, &str)> {
    split_reference(element.get("reference")?.as_str()?)
}

/// The id a Reference element names when it points at `resource_type`.
pub fn reference_id<'a>(element: &'a Value, resource_type: &str) -> Option<&'a str> {
    match reference_of(element)? {
        (rt, id) if rt == resource_type => Some(id),
        _ => None,
    }
}

/// The ids of every resource of `resource_type` a resource references, at any depth
/// (contained resources included), once each, in document order.
pub fn referenced_ids(resource: &Value, resource_type: &str) -> Vec<String> {
    fn walk(v: &Value, wanted: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("reference")
                    && let Some((rt, id)) = split_reference(r)
                    && rt == wanted
                    && !out.iter().any(|x| x == id)
                {
                    out.push(id.to_string());
                }
                for (_, child) in o {
                    walk(child, wanted, out);
                }
            }
            Value::Array(a) => {
                for child in a {
                    walk(child, wanted, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(resource, resource_type, &mut out);
    out
}

/// The extensions with this URL on a resource or element.
pub fn extensions<'a>(v: &'a Value, url: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    v.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// The `value[x]` of the first extension with this URL (`valueCode`, `valueInstant`, …).
pub fn extension_value<'a>(v: &'a Value, url: &str, value_key: &str) -> Option<&'a Value> {
    v.get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .get(value_key)
}

/// The codes of `meta.security`.
pub fn security_codes(resource: &Value) -> Vec<String> {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The start (epoch ms) of a FHIR date, dateTime or instant (a partial date starts at its
/// first moment).
pub use crate::primitive::instant_ms;

/// The end (epoch ms, inclusive) of a FHIR date, dateTime or instant (a partial date ends at
/// its last moment: `2026-12` ends on 31 December).
pub fn instant_end_ms(s: &str) -> Option<i64> {
    crate::primitive::parse_date_time(s, crate::primitive::Precision::Fraction, false)
        .ok()
        .map(|v| v.range().high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_read_one_way() {
        assert_eq!(split_reference("Patient/p1"), Some(("Patient", "p1")));
        assert_eq!(
            split_reference("https://x.org/fhir/Patient/p1/_history/3"),
            Some(("Patient", "p1"))
        );
        assert_eq!(split_reference("urn:uuid:0b8e1a52"), None);
        assert_eq!(split_reference("#contained"), None);
        assert_eq!(split_reference("Patient?identifier=x"), None);
        assert_eq!(split_reference("Nope/p1"), None);
        let r = json!({"reference": "Encounter/e1"});
        assert_eq!(reference_id(&r, "Encounter"), Some("e1"));
        assert_eq!(reference_id(&r, "Patient"), None);
        let res = json!({"context": {"reference": "Encounter/e2"}, "partOf": [{"reference": "Encounter/e3"}, {"reference": "Encounter/e2"}]});
        assert_eq!(referenced_ids(&res, "Encounter"), vec!["e2", "e3"]);
    }

    #[test]
    fn extensions_and_instants() {
        let v =
            json!({"extension": [{"url": "u", "valueCode": "a"}, {"url": "u", "valueCode": "b"}]});
        assert_eq!(extensions(&v, "u").count(), 2);
        assert_eq!(extension_value(&v, "u", "valueCode"), Some(&json!("a")));
        assert_eq!(instant_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(instant_end_ms("1970-01-01"), Some(86_399_999));
        assert_eq!(
            security_codes(&json!({"meta": {"security": [{"code": "R"}]}})),
            vec!["R"]
        );
    }
}
