//! `POST /fhir/HealthcareService/$find-care`: ranked, explained care options close to home.

use care::findcare::{Urgency, Wanted};
use fhir::IssueType;
use serde_json::Value;
use store::CallerTx;

use super::{Input, Level, Operation};
use crate::app::Ctx;
use crate::app::findcare::{CareRequest, ServiceQuery, find_care};
use crate::app::params::{bad, parameter_list};
use crate::error::ApiError;
use crate::rest::execute::Outcome;

pub const FIND_CARE: Operation = Operation {
    name: "find-care",
    code: "find-care",
    resource_type: Some("HealthcareService"),
    level: Level::Type,
    writes: false,
    definition: "http://continuum-alliance.org/fhir/OperationDefinition/find-care",
    documentation: "POST HealthcareService/$find-care with Parameters: patient (valueReference) or birthDate + postalCode; service (valueCoding, valueCode or valueString); modality (in-person | video | any); urgency (routine | urgent | asap | stat); radius (miles, default 30); patientState; count. Returns ranked option parts (healthcareService, location, organization, modality, distance, driveTimeEstimate, firstAvailable, slot, score, transition, reason) and excluded parts with their reason.",
    usage: "$find-care takes a Parameters resource (see the README)",
    run,
    precheck: None,
};

fn run(tx: &mut CallerTx, ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let request = parse_input(&input.params)?;
    Ok(Outcome::Json(200, find_care(tx, ctx, request)?))
}

pub(crate) fn parse_input(params: &Value) -> Result<CareRequest, ApiError> {
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(
            IssueType::Invalid,
            "$find-care takes a Parameters resource",
        )
        .at("resourceType"));
    }
    let parts = parameter_list(
        params,
        "$find-care",
        &[
            "patient",
            "birthDate",
            "postalCode",
            "service",
            "modality",
            "urgency",
            "radius",
            "patientState",
            "count",
        ],
        &[],
    )?;
    let one = |name: &str| -> Result<Option<&Value>, ApiError> {
        let mut found = parts
            .iter()
            .filter(|p| p.get("name").and_then(Value::as_str) == Some(name));
        let first = found.next().copied();
        if found.next().is_some() {
            return Err(bad(name, format!("'{name}' is given more than once")));
        }
        Ok(first)
    };
    let text = |name: &str, keys: &[&str]| -> Result<Option<String>, ApiError> {
        let Some(p) = one(name)? else {
            return Ok(None);
        };
        for k in keys {
            if let Some(s) = p.get(*k).and_then(Value::as_str) {
                return Ok(Some(s.trim().to_string()));
            }
        }
        Err(bad(
            name,
            format!("'{name}' needs one of {}", keys.join(", ")),
        ))
    };
    let patient = match one("patient")? {
        None => None,
        Some(p) => {
            let reference = p
                .pointer("/valueReference/reference")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("patient", "'patient' is a valueReference to a Patient"))?;
            let id = reference
                .strip_prefix("Patient/")
                .filter(|id| fhir::primitive::is_id(id))
                .ok_or_else(|| {
                    bad(
                        "patient",
                        format!("'{reference}' is not a Patient reference (Patient/id)"),
                    )
                })?;
            Some(id.to_string())
        }
    };
    let birth_date = text("birthDate", &["valueDate"])?;
    let postal_code = text("postalCode", &["valueString", "valueCode"])?;
    match (&patient, &birth_date, &postal_code) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => {}
        (Some(_), _, _) => {
            return Err(bad(
                "patient",
                "give either 'patient' or 'birthDate' with 'postalCode', not both",
            ));
        }
        (None, None, _) => {
            return Err(bad(
                "patient",
                "give 'patient', or 'birthDate' with 'postalCode'",
            ));
        }
        (None, Some(_), None) => {
            return Err(bad("postalCode", "'birthDate' needs a 'postalCode'"));
        }
    }
    if let Some(b) = &birth_date
        && fhir::primitive::parse_date_time(b, fhir::primitive::Precision::Day, false).is_err()
    {
        return Err(bad(
            "birthDate",
            format!("'{b}' is not a date (YYYY-MM-DD)"),
        ));
    }
    let service = match one("service")? {
        None => {
            return Err(bad(
                "service",
                "'service' is required: a valueCoding, valueCode or valueString naming the specialty or programme",
            ));
        }
        Some(p) => {
            if let Some(c) = p.get("valueCoding") {
                let code = c
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("service", "the service Coding has no code"))?;
                ServiceQuery::Code {
                    system: c.get("system").and_then(Value::as_str).map(str::to_string),
                    code: code.to_string(),
                }
            } else if let Some(code) = p.get("valueCode").and_then(Value::as_str) {
                ServiceQuery::Code {
                    system: None,
                    code: code.to_string(),
                }
            } else if let Some(s) = p.get("valueString").and_then(Value::as_str) {
                if s.trim().len() < 3 {
                    return Err(bad("service", "a service name needs at least 3 letters"));
                }
                ServiceQuery::Text(s.trim().to_string())
            } else {
                return Err(bad(
                    "service",
                    "'service' needs valueCoding, valueCode or valueString",
                ));
            }
        }
    };
    let wanted = match text("modality", &["valueCode", "valueString"])? {
        None => Wanted::Any,
        Some(m) => Wanted::parse(&m).ok_or_else(|| {
            bad(
                "modality",
                format!("'{m}' is not a modality (in-person, video, any)"),
            )
        })?,
    };
    let urgency = match text("urgency", &["valueCode", "valueString"])? {
        None => Urgency::Routine,
        Some(u) => Urgency::parse(&u).ok_or_else(|| {
            bad(
                "urgency",
                format!("'{u}' is not an urgency (routine, urgent, asap, stat)"),
            )
        })?,
    };
    let radius = match one("radius")? {
        None => 30.0,
        Some(p) => {
            let r = p
                .get("valueDecimal")
                .or_else(|| p.get("valueInteger"))
                .or_else(|| p.pointer("/valueQuantity/value"))
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("radius", "'radius' is a number of miles (valueDecimal)"))?;
            if !(r > 0.0 && r <= 500.0) {
                return Err(bad("radius", "'radius' is between 0 and 500 miles"));
            }
            r
        }
    };
    let patient_state =
        text("patientState", &["valueCode", "valueString"])?.map(|s| s.to_ascii_uppercase());
    if let Some(s) = &patient_state
        && !care::geo::is_us_state(s)
    {
        return Err(bad(
            "patientState",
            format!("'{s}' is not a US state code (e.g. CT)"),
        ));
    }
    let count = match one("count")? {
        None => 10,
        Some(p) => {
            let n = p
                .get("valueInteger")
                .or_else(|| p.get("valuePositiveInt"))
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("count", "'count' is a positive integer"))?;
            if n == 0 || n > 100 {
                return Err(bad("count", "'count' is between 1 and 100"));
            }
            n as usize
        }
    };
    Ok(CareRequest {
        patient,
        birth_date,
        postal_code,
        service,
        wanted,
        urgency,
        radius,
        patient_state,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(parts: Value) -> Value {
        json!({"resourceType": "Parameters", "parameter": parts})
    }

    #[test]
    fn inputs_are_checked_and_the_parameter_named() {
        let ok = p(json!([
            {"name": "birthDate", "valueDate": "2017-05-01"},
            {"name": "postalCode", "valueString": "06320"},
            {"name": "service", "valueString": "cardiology"},
            {"name": "modality", "valueCode": "video"},
        ]));
        let input = parse_input(&ok).unwrap();
        assert_eq!(input.wanted, Wanted::Video);
        assert_eq!(input.urgency, Urgency::Routine);
        assert_eq!(input.radius, 30.0);
        let cases = [
            (
                json!([{"name": "service", "valueString": "cardiology"}]),
                "patient",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "birthDate", "valueDate": "2017-05-01"}, {"name": "service", "valueString": "x-ray"}]),
                "patient",
            ),
            (
                json!([{"name": "birthDate", "valueDate": "2017-05-01"}, {"name": "service", "valueString": "cardiology"}]),
                "postalCode",
            ),
            (
                json!([{"name": "birthDate", "valueDate": "2017-02-30"}, {"name": "postalCode", "valueString": "06320"}, {"name": "service", "valueString": "cardiology"}]),
                "birthDate",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}]),
                "service",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "modality", "valueCode": "phone"}]),
                "modality",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "urgency", "valueCode": "soon"}]),
                "urgency",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "radius", "valueDecimal": -3}]),
                "radius",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "patientState", "valueCode": "Connecticut"}]),
                "patientState",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Organization/a"}}, {"name": "service", "valueString": "cardiology"}]),
                "patient",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "colour", "valueString": "red"}]),
                "colour",
            ),
        ];
        for (parts, param) in cases {
            let e = parse_input(&p(parts.clone())).unwrap_err();
            assert_eq!(e.status, 400, "{parts}");
            assert_eq!(
                e.issues[0].expression.as_deref(),
                Some(param),
                "{parts}: {}",
                e.issues[0].diagnostics
            );
        }
    }
}
