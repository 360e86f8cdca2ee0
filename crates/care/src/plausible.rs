//! Content rules the element model cannot state because they need the clock: dates that must
//! not lie in the future. Ages drive the access rules (a proxy's view ends at the 18th
//! birthday), so a birth date after today is refused rather than stored.

use fhir::primitive::{Precision, parse_date_time};
use serde_json::Value;

/// The dates that must not be in the future: (resource type, element).
pub const NOT_IN_FUTURE: &[(&str, &str)] = &[
    ("Patient", "birthDate"),
    ("RelatedPerson", "birthDate"),
    ("Practitioner", "birthDate"),
    ("Person", "birthDate"),
];

/// The latest time zone is 14 hours ahead of UTC: a date has begun somewhere on Earth from
/// 14 hours before its UTC midnight.
const EARLIEST_OFFSET_MS: i64 = 14 * 3_600_000;

/// A date of `resource` that is after today everywhere on Earth at `now_ms`: its location
/// (`Patient.birthDate`) and the words saying so.
pub fn future_date(resource_type: &str, resource: &Value, now_ms: i64) -> Option<(String, String)> {
    NOT_IN_FUTURE
        .iter()
        .filter(|(rt, _)| *rt == resource_type)
        .find_map(|(rt, element)| {
            let text = resource.get(*element)?.as_str()?;
            let value = parse_date_time(text, Precision::Day, false).ok()?;
            (value.range().low - EARLIEST_OFFSET_MS > now_ms).then(|| {
                (
                    format!("{rt}.{element}"),
                    format!(
                        "the {} {text} is in the future (today is {}); a {} cannot be after today",
                        words(element),
                        fhir::primitive::format_instant(now_ms)
                            .get(..10)
                            .unwrap_or_default(),
                        words(element)
                    ),
                )
            })
        })
}

fn words(element: &str) -> &'static str {
    match element {
        "birthDate" => "birth date",
        _ => "date",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-12-01T15:00:00Z
    const NOW: i64 = 1_796_137_200_000;

    #[test]
    fn a_birth_date_after_today_is_refused() {
        let p = json!({"resourceType": "Patient", "birthDate": "2099-01-01"});
        let (at, why) = future_date("Patient", &p, NOW).unwrap();
        assert_eq!(at, "Patient.birthDate");
        assert!(why.contains("2099-01-01 is in the future"), "{why}");
        assert!(why.contains("today is 2026-12-01"), "{why}");
        // a year or month still to come
        for d in ["2027", "2027-01"] {
            let p = json!({"resourceType": "RelatedPerson", "birthDate": d});
            assert!(future_date("RelatedPerson", &p, NOW).is_some(), "{d}");
        }
    }

    #[test]
    fn today_anywhere_on_earth_and_the_past_are_accepted() {
        for d in ["2026-12-01", "2026-12", "2026", "2013-05-02"] {
            let p = json!({"resourceType": "Patient", "birthDate": d});
            assert_eq!(future_date("Patient", &p, NOW), None, "{d}");
        }
        // at 15:00 UTC it is already 2 December in Kiribati (UTC+14)
        let p = json!({"resourceType": "Patient", "birthDate": "2026-12-02"});
        assert_eq!(future_date("Patient", &p, NOW), None);
        let p = json!({"resourceType": "Patient", "birthDate": "2026-12-03"});
        assert!(future_date("Patient", &p, NOW).is_some());
        // other types and a missing or malformed date are not this rule's business
        let o = json!({"resourceType": "Observation", "birthDate": "2099-01-01"});
        assert_eq!(future_date("Observation", &o, NOW), None);
        let p = json!({"resourceType": "Patient", "birthDate": "soon"});
        assert_eq!(future_date("Patient", &p, NOW), None);
    }
}
