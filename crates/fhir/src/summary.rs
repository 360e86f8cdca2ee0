//! `_summary` and `_elements`: the trimmed views of a resource a client may ask for. A trimmed
//! resource carries the `SUBSETTED` tag, as the spec requires.

use serde_json::{Map, Value, json};

use crate::definitions::definitions;
use crate::search::Summary;

/// Applies `_summary` (true/text/data) and `_elements` to a resource; `None` leaves it whole.
pub fn trim(resource: &Value, summary: Summary, elements: Option<&[String]>) -> Option<Value> {
    let Value::Object(obj) = resource else {
        return None;
    };
    let rt = obj.get("resourceType")?.as_str()?;
    let node = definitions().node(rt)?;
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let base = key.strip_prefix('_').unwrap_or(key);
        let child = node.children.get(base);
        if let Some(list) = elements {
            let element = child
                .map(|c| c.element.trim_end_matches("[x]"))
                .unwrap_or(base);
            return list.iter().any(|e| e == base || e == element)
                || child.is_some_and(|c| c.min > 0);
        }
        match summary {
            Summary::True => child.is_some_and(|c| c.summary),
            Summary::Text => key == "text" || child.is_some_and(|c| c.min > 0),
            Summary::Data => key != "text",
            Summary::False | Summary::Count => true,
        }
    };
    if elements.is_none() && matches!(summary, Summary::False | Summary::Count) {
        return None;
    }
    let mut out: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let meta = out.entry("meta").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Value::Array(tags) = tags {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "Resource encoded in summary mode"
            }));
        }
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_elements() {
        let p = json!({"resourceType": "Patient", "id": "1", "text": {"status": "generated", "div": "<div/>"},
            "name": [{"family": "A"}], "photo": [{"url": "x"}], "birthDate": "2000"});
        let s = trim(&p, Summary::True, None).unwrap();
        assert!(s.get("name").is_some() && s.get("photo").is_none() && s.get("text").is_none());
        assert_eq!(s["meta"]["tag"][0]["code"], "SUBSETTED");
        let e = trim(&p, Summary::False, Some(&["birthDate".to_string()])).unwrap();
        assert!(e.get("birthDate").is_some() && e.get("name").is_none());
        let d = trim(&p, Summary::Data, None).unwrap();
        assert!(d.get("text").is_none() && d.get("photo").is_some());
        assert!(trim(&p, Summary::False, None).is_none());
    }
}
