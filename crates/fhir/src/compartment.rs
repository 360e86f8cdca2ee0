//! The Patient compartment (R4 CompartmentDefinition/patient): which patients a resource
//! belongs to, read from the reference index entries of the parameters the definition names.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::search::{IndexEntry, IndexValue};

const COMPARTMENT_JSON: &str = include_str!("../../../data/fhir-r4/compartment-patient.json");

#[derive(Deserialize)]
struct CompartmentFile {
    resources: HashMap<String, Vec<String>>,
}

fn params() -> &'static HashMap<String, Vec<String>> {
    static P: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    P.get_or_init(|| {
        let f: CompartmentFile = serde_json::from_str(COMPARTMENT_JSON)
            .expect("data/fhir-r4/compartment-patient.json is valid");
        f.resources
    })
}

/// Whether resources of this type can belong to a patient's compartment.
pub fn in_patient_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || params().contains_key(resource_type)
}

/// The ids of the patients whose compartment holds this resource (a Patient is in its own).
pub fn patients_of(resource_type: &str, id: &str, index: &[IndexEntry]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if resource_type == "Patient" {
        out.push(id.to_string());
    }
    if let Some(codes) = params().get(resource_type) {
        for e in index {
            if !codes.contains(&e.param) {
                continue;
            }
            if let IndexValue::Reference {
                target_type: Some(t),
                target_id: Some(pid),
                ..
            } = &e.value
                && t == "Patient"
                && !out.contains(pid)
            {
                out.push(pid.clone());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{extract, registry};
    use serde_json::json;

    #[test]
    fn compartments_follow_r4() {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/d"}, {"reference": "Patient/p2"}]});
        let idx = extract(registry(), &obs);
        assert_eq!(
            patients_of("Observation", "o", &idx),
            vec!["p1".to_string(), "p2".to_string()]
        );
        let task = json!({"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": "Patient/p3"}});
        assert_eq!(
            patients_of("Task", "t", &extract(registry(), &task)),
            vec!["p3".to_string()]
        );
        assert_eq!(patients_of("Patient", "p9", &[]), vec!["p9".to_string()]);
        assert!(!in_patient_compartment("Organization"));
        assert!(in_patient_compartment("Consent"));
    }
}
