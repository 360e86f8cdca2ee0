//! `POST /fhir/Patient/{id}/$break-glass`: emergency access to one patient's record, with a
//! reason, for a limited time, flagged in the audit trail (`care::access::decide_break_glass`).

use fhir::IssueType;
use serde_json::{Value, json};
use store::CallerTx;

use super::{Input, Level, Operation};
use crate::app::Ctx;
use crate::error::ApiError;
use crate::rest::execute::Outcome;

pub const BREAK_GLASS: Operation = Operation {
    name: "break-the-glass",
    code: "break-glass",
    resource_type: Some("Patient"),
    level: Level::Instance,
    writes: true,
    definition: "http://continuum-alliance.org/fhir/OperationDefinition/break-glass",
    documentation: "POST Patient/{id}/$break-glass with Parameters reason (valueString): emergency access to one patient for a limited time, flagged in the audit trail.",
    usage: "$break-glass takes a Parameters resource with a 'reason' (valueString)",
    run,
    precheck: None,
};

fn run(tx: &mut CallerTx, _ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let patient_id = input.id.unwrap_or_default();
    let reason = input
        .params
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("reason"))
        .and_then(|p| p.get("valueString").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let subject = tx.caller().subject.clone();
    if let care::access::Decision::Deny(why) = care::access::decide_break_glass(&subject) {
        tx.trail.denied = true;
        return Err(ApiError::new(403, IssueType::Forbidden, why));
    }
    if !care::access::break_glass_reason_ok(&reason) {
        return Err(ApiError::bad_request(
            IssueType::Required,
            "break-the-glass needs a reason (at least 10 characters) saying why the record is needed now",
        )
        .at("reason"));
    }
    let exists = tx
        .on_behalf(store::OnBehalf::BreakGlass)
        .current("Patient", &patient_id, false)?
        .is_some_and(|p| !p.deleted);
    if !exists {
        return Err(ApiError::not_known("Patient", &patient_id));
    }
    let minutes = tx.caller().policy.break_glass_minutes;
    let expires = tx.now() + minutes * 60_000;
    tx.on_behalf(store::OnBehalf::BreakGlass)
        .insert_break_glass(&subject.id, &patient_id, &reason, expires)?;
    tx.trail.break_glass = true;
    tx.trail
        .add("Patient", &patient_id, std::slice::from_ref(&patient_id));
    Ok(Outcome::Json(
        200,
        json!({
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueReference": {"reference": format!("Patient/{patient_id}")}},
                {"name": "expires", "valueInstant": fhir::primitive::format_instant(expires)},
                {"name": "reason", "valueString": reason},
            ]
        }),
    ))
}
