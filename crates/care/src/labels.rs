//! Security labels that follow from where care happened. Connecticut lets minors consent alone
//! to some care (STI §19a-216, outpatient mental health §19a-14c, substance use §17a-688, HIV
//! §19a-592); the minor then controls that information. An Encounter flagged with the
//! minor-consented-care extension passes its sensitivity code, and confidentiality R, to itself
//! and to every resource recorded in it.

use serde_json::{Value, json};

use crate::access::policy::{ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM, SENSITIVE_CODES};

/// The canonical base of Continuum's own FHIR definitions.
pub const CANONICAL_BASE: &str = "http://continuum-alliance.org/fhir";

/// `Encounter.extension` with `valueCode` = a v3 ActCode sensitivity (PSY, SUD, STD, HIV, SEX, …).
pub const MINOR_CONSENTED_CARE: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/minor-consented-care";

/// The labels an Encounter's minor-consented-care flag calls for: `(system, code)` pairs.
pub fn minor_consented_labels(encounter: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ext in encounter
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if ext.get("url").and_then(Value::as_str) != Some(MINOR_CONSENTED_CARE) {
            continue;
        }
        let code = ext
            .get("valueCode")
            .and_then(Value::as_str)
            .filter(|c| SENSITIVE_CODES.contains(c))
            .unwrap_or("SEX");
        out.push((ACT_CODE_SYSTEM.to_string(), code.to_string()));
        out.push((CONFIDENTIALITY_SYSTEM.to_string(), "R".to_string()));
    }
    out
}

/// Adds labels to `meta.security`, once each.
pub fn add_labels(resource: &mut Value, labels: &[(String, String)]) {
    if labels.is_empty() {
        return;
    }
    let Value::Object(obj) = resource else { return };
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    let Value::Object(meta) = meta else { return };
    let security = meta.entry("security").or_insert_with(|| json!([]));
    let Value::Array(list) = security else { return };
    for (system, code) in labels {
        let present = list.iter().any(|c| {
            c.get("system").and_then(Value::as_str) == Some(system)
                && c.get("code").and_then(Value::as_str) == Some(code)
        });
        if !present {
            list.push(json!({"system": system, "code": code}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_consented_encounters_label_what_they_hold() {
        let enc = json!({"resourceType": "Encounter", "extension": [{"url": MINOR_CONSENTED_CARE, "valueCode": "SUD"}]});
        let labels = minor_consented_labels(&enc);
        assert_eq!(labels.len(), 2);
        let mut obs = json!({"resourceType": "Observation", "meta": {"security": [{"system": CONFIDENTIALITY_SYSTEM, "code": "R"}]}});
        add_labels(&mut obs, &labels);
        add_labels(&mut obs, &labels);
        let sec = obs["meta"]["security"].as_array().unwrap();
        assert_eq!(sec.len(), 2);
        assert!(sec.iter().any(|c| c["code"] == "SUD"));
        assert!(minor_consented_labels(&json!({"resourceType": "Encounter"})).is_empty());
    }
}
