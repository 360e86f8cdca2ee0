//! `POST /fhir/Patient/$match` (FHIR R4): scored candidate Patients for a described person
//! (`app::matching`).

use serde_json::Value;
use store::CallerTx;

use super::{Input, Level, Operation};
use crate::app::Ctx;
use crate::app::matching::{MatchRequest, patient_match};
use crate::app::params::bad;
use crate::error::ApiError;
use crate::rest::execute::Outcome;

pub const MATCH: Operation = Operation {
    name: "match",
    code: "match",
    resource_type: Some("Patient"),
    level: Level::Type,
    writes: false,
    definition: "http://hl7.org/fhir/OperationDefinition/Patient-match",
    documentation: "POST Patient/$match with Parameters resource (a Patient with at least a name and a birth date), onlyCertainMatches, count: the Patients the caller may see that may be the same person, ordered by score, with search.score (match probability) and the match-grade extension (certain | probable | possible).",
    usage: "$match takes a Parameters resource with 'resource' (a Patient)",
    run,
    precheck: None,
};

fn run(tx: &mut CallerTx, ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let request = parse(&input.params)?;
    Ok(Outcome::Json(200, patient_match(tx, ctx, request)?))
}

fn parse(params: &Value) -> Result<MatchRequest, ApiError> {
    let list = crate::app::params::parameter_list(
        params,
        "$match",
        &["resource", "onlyCertainMatches", "count"],
        &[],
    )?;
    let get = |name: &str| {
        list.iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .copied()
    };
    let patient = get("resource")
        .and_then(|p| p.get("resource"))
        .ok_or_else(|| bad("resource", "$match needs 'resource', the Patient to match"))?;
    if patient.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        return Err(bad("resource", "'resource' must be a Patient"));
    }
    fhir::validate_resource(patient).map_err(ApiError::invalid)?;
    let only_certain = match get("onlyCertainMatches") {
        None => false,
        Some(p) => p
            .get("valueBoolean")
            .and_then(Value::as_bool)
            .ok_or_else(|| {
                bad(
                    "onlyCertainMatches",
                    "'onlyCertainMatches' is a valueBoolean",
                )
            })?,
    };
    let count = match get("count") {
        None => 10,
        Some(p) => p
            .get("valueInteger")
            .and_then(Value::as_u64)
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| bad("count", "'count' is a valueInteger between 1 and 100"))?
            as usize,
    };
    Ok(MatchRequest {
        patient: patient.clone(),
        only_certain,
        count,
    })
}
