//! Patient identity at the FHIR edge: a Patient resource as the record linkage compares it
//! (`care::identity::Record`).

use care::identity::Record;
use serde_json::Value;

/// Identifier systems that name one person wherever they appear (a shared value links two
/// records deterministically). Medical record numbers are per organisation and are not here.
pub const PERSON_IDENTIFIER_SYSTEMS: &[&str] = &[
    "http://hl7.org/fhir/sid/us-ssn",
    "http://hl7.org/fhir/sid/us-medicare",
    "http://hl7.org/fhir/sid/us-mbi",
];

/// The fields of a Patient that linkage compares: the official (else first) name, the home
/// (else first) address, the first phone, birth date, gender and person-level identifiers.
pub fn patient_record(id: &str, patient: &Value) -> Record {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let pick = |key: &str, preferred: &str| -> Option<&Value> {
        let list = patient.get(key)?.as_array()?;
        list.iter()
            .find(|n| n.get("use").and_then(Value::as_str) == Some(preferred))
            .or_else(|| list.first())
    };
    let name = pick("name", "official");
    let given = name
        .and_then(|n| n.get("given"))
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .next()
                .unwrap_or("")
                .to_string()
        })
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
        .filter_map(|i| {
            let system = i.get("system").and_then(Value::as_str)?;
            let value = i.get("value").and_then(Value::as_str)?;
            PERSON_IDENTIFIER_SYSTEMS
                .contains(&system)
                .then(|| format!("{system}|{value}"))
        })
        .collect();
    Record {
        id: id.to_string(),
        given,
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
