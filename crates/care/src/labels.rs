//! Security labels that follow from where care happened. Connecticut lets minors consent alone
//! to some care (STI §19a-216, outpatient mental health §19a-14c, substance use §17a-688, HIV
//! §19a-592); the minor then controls that information. An Encounter flagged with the
//! minor-consented-care extension passes its sensitivity code, and confidentiality R, to itself
//! and to every resource recorded in it or part of it — whatever references the Encounter
//! (`encounter`, `context`, `partOf`, …), in whichever order the two are written. A
//! HealthcareService marked with the service-sensitivity extension (psychiatry, confidential
//! adolescent visits, sexual health, substance use) labels the Appointments booked in it, and so
//! the messages about them.

use serde_json::{Value, json};

use crate::access::policy::{ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM, SENSITIVE_CODES};

pub use crate::profile::{CANONICAL_BASE, MINOR_CONSENTED_CARE, SERVICE_SENSITIVITY};

fn sensitivity_pair(code: &str) -> Vec<(String, String)> {
    vec![
        (ACT_CODE_SYSTEM.to_string(), code.to_string()),
        (CONFIDENTIALITY_SYSTEM.to_string(), "R".to_string()),
    ]
}

/// The labels a service's sensitivity marking calls for on what is booked in it.
pub fn service_labels(service: &Value) -> Vec<(String, String)> {
    fhir::json::extensions(service, SERVICE_SENSITIVITY)
        .filter_map(|e| e.get("valueCode").and_then(Value::as_str))
        .filter(|c| SENSITIVE_CODES.contains(c))
        .flat_map(sensitivity_pair)
        .collect()
}

/// The labels an Encounter passes to what is recorded in it: those its own flag calls for, and
/// the sensitivity and restricted-confidentiality labels it carries (inherited from an
/// Encounter it is part of, or set by hand).
pub fn encounter_labels(encounter: &Value) -> Vec<(String, String)> {
    let mut out = minor_consented_labels(encounter);
    for c in encounter
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(system), Some(code)) = (
            c.get("system").and_then(Value::as_str),
            c.get("code").and_then(Value::as_str),
        ) else {
            continue;
        };
        let passes = (system == ACT_CODE_SYSTEM && SENSITIVE_CODES.contains(&code))
            || (system == CONFIDENTIALITY_SYSTEM && matches!(code, "R" | "V"));
        let pair = (system.to_string(), code.to_string());
        if passes && !out.contains(&pair) {
            out.push(pair);
        }
    }
    out
}

/// The ids of every resource of `resource_type` this resource references (at any depth).
pub use fhir::json::referenced_ids;

/// The labels of `labels` the resource does not carry yet.
pub fn missing_labels(resource: &Value, labels: &[(String, String)]) -> Vec<(String, String)> {
    let present: Vec<(String, String)> = resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("system")?.as_str()?.to_string(),
                c.get("code")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for l in labels {
        if !present.contains(l) && !out.contains(l) {
            out.push(l.clone());
        }
    }
    out
}

/// The labels an Encounter's minor-consented-care flag calls for: `(system, code)` pairs.
pub fn minor_consented_labels(encounter: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ext in fhir::json::extensions(encounter, MINOR_CONSENTED_CARE) {
        let code = ext
            .get("valueCode")
            .and_then(Value::as_str)
            .filter(|c| SENSITIVE_CODES.contains(c))
            .unwrap_or("SEX");
        out.extend(sensitivity_pair(code));
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

    #[test]
    fn encounters_pass_their_labels_to_what_is_part_of_them() {
        let child = json!({"resourceType": "Encounter", "partOf": {"reference": "Encounter/e1"},
            "meta": {"security": [{"system": ACT_CODE_SYSTEM, "code": "PSY"}, {"system": CONFIDENTIALITY_SYSTEM, "code": "R"},
                {"system": CONFIDENTIALITY_SYSTEM, "code": "N"}, {"system": "http://example.org", "code": "PSY"}]}});
        let l = encounter_labels(&child);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(referenced_ids(&child, "Encounter"), vec!["e1".to_string()]);
        let med = json!({"resourceType": "MedicationStatement", "context": {"reference": "Encounter/e2"},
            "partOf": [{"reference": "http://x/fhir/Encounter/e3/_history/2"}], "subject": {"reference": "Patient/p"}});
        assert_eq!(
            referenced_ids(&med, "Encounter"),
            vec!["e2".to_string(), "e3".to_string()]
        );
        assert_eq!(missing_labels(&child, &l), vec![]);
        assert_eq!(missing_labels(&med, &l).len(), 2);
    }

    #[test]
    fn sensitive_services_label_what_is_booked_in_them() {
        let psych = json!({"resourceType": "HealthcareService", "extension": [{"url": SERVICE_SENSITIVITY, "valueCode": "PSY"}]});
        assert_eq!(service_labels(&psych).len(), 2);
        let bogus = json!({"resourceType": "HealthcareService", "extension": [{"url": SERVICE_SENSITIVITY, "valueCode": "XYZ"}]});
        assert!(service_labels(&bogus).is_empty());
        assert!(service_labels(&json!({"resourceType": "HealthcareService"})).is_empty());
    }
}
