//! `POST /fhir/Appointment/$find` (IHE ITI-115 shape): proposed Appointments for free,
//! un-held slots in a window (`app::booking::find`).

use care::findcare::Modality;
use serde_json::Value;
use store::CallerTx;

use super::{Input, Level, Operation};
use crate::app::Ctx;
use crate::app::booking::{FindRequest, find};
use crate::app::params::{bad, reference};
use crate::error::ApiError;
use crate::rest::execute::Outcome;

pub const FIND: Operation = Operation {
    name: "find-appointments",
    code: "find",
    resource_type: Some("Appointment"),
    level: Level::Type,
    writes: false,
    definition: "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition/appointment-find",
    documentation: "POST Appointment/$find with Parameters start, end (required), specialty, appointmentType, practitioner, organization, location, patient, modality, _count: proposed Appointments for free, un-held slots (closest to the patient's home first, then earliest; video only where a clinician is licensed in the patient's state), with total.",
    usage: "$find takes a Parameters resource with 'start' and 'end'",
    run,
    precheck: None,
};

fn run(tx: &mut CallerTx, ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let request = parse(&input.params)?;
    Ok(Outcome::Json(200, find(tx, ctx, request)?))
}

fn parse(params: &Value) -> Result<FindRequest, ApiError> {
    let list = crate::app::params::parameter_list(
        params,
        "$find",
        &[
            "start",
            "end",
            "specialty",
            "appointmentType",
            "practitioner",
            "organization",
            "location",
            "patient",
            "modality",
            "_count",
        ],
        &["appointment-type"],
    )?;
    let get = |name: &str| {
        list.iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .copied()
    };
    let instant = |name: &str| -> Result<i64, ApiError> {
        let p = get(name).ok_or_else(|| bad(name, format!("$find needs '{name}'")))?;
        let text = ["valueDateTime", "valueInstant", "valueDate"]
            .iter()
            .find_map(|k| p.get(*k).and_then(Value::as_str))
            .ok_or_else(|| bad(name, format!("'{name}' is a valueDateTime")))?;
        let dt =
            fhir::primitive::parse_date_time(text, fhir::primitive::Precision::Fraction, false)
                .map_err(|e| bad(name, format!("'{name}': {e}")))?;
        Ok(dt.range().low)
    };
    let (start, end) = (instant("start")?, instant("end")?);
    if end <= start {
        return Err(bad("end", "'end' must be after 'start'"));
    }
    let count = match get("_count") {
        None => 10,
        Some(p) => {
            p.get("valueInteger")
                .and_then(Value::as_u64)
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| bad("_count", "'_count' is between 1 and 100"))? as usize
        }
    };
    let wanted_modality = match get("modality") {
        None => None,
        Some(p) => {
            let code = p.get("valueCode").and_then(Value::as_str).unwrap_or("");
            Some(Modality::parse(code).ok_or_else(|| {
                bad(
                    "modality",
                    format!("'{code}' is not a modality (in-person, video)"),
                )
            })?)
        }
    };
    let refers =
        |name: &str, rt: &str| -> Result<Option<String>, ApiError> { reference(params, name, rt) };
    let practitioner = refers("practitioner", "Practitioner")?;
    let organization = refers("organization", "Organization")?;
    let location = refers("location", "Location")?;
    let patient = refers("patient", "Patient")?;
    let token = |name: &str| -> Option<String> {
        let p = get(name)?;
        if let Some(c) = p.get("valueCoding") {
            let code = c.get("code").and_then(Value::as_str)?;
            return Some(match c.get("system").and_then(Value::as_str) {
                Some(s) => format!("{s}|{code}"),
                None => code.to_string(),
            });
        }
        p.get("valueCode")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // the services that fit
    let mut service_params: Vec<(&'static str, String)> = Vec::new();
    if let Some(p) = get("specialty") {
        match (
            token("specialty"),
            p.get("valueString").and_then(Value::as_str),
        ) {
            (Some(t), _) => service_params.push(("specialty", t)),
            (None, Some(text)) => service_params.push(("specialty:text", text.to_string())),
            _ => {
                return Err(bad(
                    "specialty",
                    "'specialty' is a valueCoding, valueCode or valueString",
                ));
            }
        }
    }
    if let Some(t) = token("appointmentType").or_else(|| token("appointment-type")) {
        service_params.push(("service-type", t));
    }
    if let Some(o) = &organization {
        service_params.push(("organization", format!("Organization/{o}")));
    }
    Ok(FindRequest {
        start,
        end,
        count,
        wanted_modality,
        practitioner,
        organization,
        location,
        patient,
        service_params,
    })
}
