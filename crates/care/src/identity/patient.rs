//! A Patient resource as record linkage compares it: which name, address, phone and
//! identifiers count, a newborn's multiple birth and mother's identifier.

use serde_json::Value;

use super::Record;

/// Identifier systems that name one person wherever they appear (a shared value links two
/// records deterministically). Medical record numbers name one patient within their own
/// system, so an identifier typed `MR` (v2-0203) — the birth hospital's MRN on a newborn's
/// records among them — links too, by system and value.
pub const PERSON_IDENTIFIER_SYSTEMS: &[&str] = &[
    "http://hl7.org/fhir/sid/us-ssn",
    "http://hl7.org/fhir/sid/us-medicare",
    "http://hl7.org/fhir/sid/us-mbi",
];

/// `system|value` of an Identifier, when it has both.
fn identifier_key(i: &Value) -> Option<String> {
    let system = i.get("system").and_then(Value::as_str)?;
    let value = i.get("value").and_then(Value::as_str)?;
    Some(format!("{system}|{value}"))
}

/// Whether an Identifier is typed a medical record number.
fn is_mrn(i: &Value) -> bool {
    i.pointer("/type/coding")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.get("code").and_then(Value::as_str) == Some("MR")
                    && c.get("system").and_then(Value::as_str)
                        == Some("http://terminology.hl7.org/CodeSystem/v2-0203")
            })
        })
}

/// The fields of a Patient that linkage compares: the official (else first) name, the home
/// (else first) address, the first phone, birth date, gender, multiple birth, person-level
/// identifiers and MRNs, and a newborn's mother's identifier.
pub fn patient_record(id: &str, patient: &Value) -> Record {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let pick = |key: &str, preferred: &str| -> Option<&Value> {
        let list = patient.get(key)?.as_array()?;
        list.iter()
            .find(|n| n.get("use").and_then(Value::as_str) == Some(preferred))
            .or_else(|| list.first())
    };
    let name = pick("name", "official");
    let given_names: Vec<&str> = name
        .and_then(|n| n.get("given"))
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let family = str_of(name.and_then(|n| n.get("family")));
    let address = pick("address", "home");
    let lines: Vec<&str> = address
        .and_then(|a| a.get("line"))
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // "12 Main Street" → street number 12, line "Main Street"
    let first = lines.first().copied().unwrap_or("");
    let (number, street) = match first.split_once(' ') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
            (n.to_string(), rest.to_string())
        }
        _ => (String::new(), first.to_string()),
    };
    let phone = patient
        .get("telecom")
        .and_then(Value::as_array)
        .and_then(|t| {
            t.iter()
                .find(|c| c.get("system").and_then(Value::as_str) == Some("phone"))
        })
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let identifiers = patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| {
            is_mrn(i)
                || i.get("system")
                    .and_then(Value::as_str)
                    .is_some_and(|s| PERSON_IDENTIFIER_SYSTEMS.contains(&s))
        })
        .filter_map(identifier_key)
        .collect();
    let mother_identifiers = fhir::json::extensions(patient, crate::profile::MOTHER_IDENTIFIER)
        .filter_map(|e| e.get("valueIdentifier"))
        .filter_map(identifier_key)
        .collect();
    let birth_order = patient
        .get("multipleBirthInteger")
        .and_then(Value::as_u64)
        .and_then(|n| u8::try_from(n).ok());
    let multiple_birth = birth_order.is_some_and(|n| n >= 1)
        || patient.get("multipleBirthBoolean").and_then(Value::as_bool) == Some(true);
    Record {
        id: id.to_string(),
        given: given_names.first().copied().unwrap_or("").to_string(),
        middle: given_names.get(1..).unwrap_or_default().join(" "),
        family,
        birth_date: str_of(patient.get("birthDate")),
        street_number: number,
        address_1: street,
        address_2: lines.get(1).copied().unwrap_or("").to_string(),
        locality: str_of(address.and_then(|a| a.get("city"))),
        postcode: str_of(address.and_then(|a| a.get("postalCode"))),
        state: str_of(address.and_then(|a| a.get("state"))),
        phone,
        sex: str_of(patient.get("gender")),
        identifiers,
        birth_order,
        multiple_birth,
        mother_identifiers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_becomes_a_record() {
        let p = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:mrn:cc", "value": "D1"},
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}],
            "name": [{"use": "nickname", "given": ["Annie"]},
                {"use": "official", "family": "Núñez", "given": ["Ana", "María"]}],
            "telecom": [{"system": "email", "value": "a@example.org"}, {"system": "phone", "value": "860-555-0100"}],
            "gender": "female", "birthDate": "2013-05-02",
            "address": [{"use": "work", "city": "Hartford"},
                {"use": "home", "line": ["12 Ocean Avenue", "Apt 3"], "city": "New London", "state": "CT", "postalCode": "06320"}]});
        let r = patient_record("p1", &p);
        assert_eq!((r.given.as_str(), r.family.as_str()), ("Ana", "Núñez"));
        assert_eq!(r.birth_date, "2013-05-02");
        assert_eq!(
            (r.street_number.as_str(), r.address_1.as_str()),
            ("12", "Ocean Avenue")
        );
        assert_eq!(r.address_2, "Apt 3");
        assert_eq!(
            (r.locality.as_str(), r.postcode.as_str(), r.state.as_str()),
            ("New London", "06320", "CT")
        );
        assert_eq!(r.phone, "860-555-0100");
        assert_eq!(
            r.identifiers,
            vec!["http://hl7.org/fhir/sid/us-ssn|123-45-6789"]
        );
        let empty = patient_record("p2", &json!({"resourceType": "Patient"}));
        assert_eq!(empty.id, "p2");
        assert!(empty.given.is_empty() && empty.identifiers.is_empty());
    }
}
