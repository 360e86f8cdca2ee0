//! `POST /fhir/Patient/{id}/$transfer-package`: the transfer to adult care — the package (a
//! document Bundle: the transfer letter, the latest readiness assessment, the plan of care, the
//! medical summary and emergency care plan, the consent status at 18), kept as a
//! DocumentReference for the young person, and the referral to the adult clinician or service
//! through `$refer`'s path (the referral machine, its Provenance and messages); the transfer
//! package element recorded. Refused with each missing part named (422), before the 18th
//! birthday (422), or when a package was already sent (409). One transaction.

use fhir::{Issue, IssueType};
use serde_json::{Value, json};
use store::CallerTx;

use super::{Input, Level, Operation};
use crate::app::Ctx;
use crate::app::params::{bad, parameter_list};
use crate::error::ApiError;
use crate::rest::execute::Outcome;

pub const TRANSFER_PACKAGE: Operation = Operation {
    name: "transfer-package",
    code: "transfer-package",
    resource_type: Some("Patient"),
    level: Level::Instance,
    writes: true,
    definition: "http://continuum-alliance.org/fhir/OperationDefinition/transfer-package",
    documentation: "POST Patient/{id}/$transfer-package with Parameters: recipient (valueReference: the adult Organization, HealthcareService or PractitionerRole), letter (optional valueString: the transfer letter; by default one is written from the package), requester (optional valueReference; default the caller's Practitioner or organisation), priority (optional). Assembles the transfer package — a document Bundle of the letter, the latest readiness assessment (within a year), the plan of care, the medical summary, the emergency care plan and the consent status at 18 — kept as a DocumentReference, and refers the young person to the recipient; answers 201 with the package, the ServiceRequest and the referral Task. 422 names each missing part; 409 when a package was already sent.",
    usage: "$transfer-package takes a Parameters resource with the recipient (valueReference)",
    run,
    precheck: None,
};

fn run(tx: &mut CallerTx, ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let pid = input.id.clone().unwrap_or_default();
    let parts = parameter_list(
        &input.params,
        "$transfer-package",
        &["recipient", "letter", "requester", "priority"],
        &[],
    )?;
    let one = |name: &str| -> Result<Option<&Value>, ApiError> {
        let found: Vec<&Value> = parts
            .iter()
            .copied()
            .filter(|p| p["name"] == name)
            .collect();
        if found.len() > 1 {
            return Err(bad(name, format!("'{name}' is given more than once")));
        }
        Ok(found.first().copied())
    };
    let recipient = match one("recipient")? {
        None => {
            return Err(ApiError::with_issues(
                422,
                vec![Issue::error(
                    IssueType::Required,
                    "a transfer needs its recipient: the adult Organization, HealthcareService or PractitionerRole (valueReference)",
                )
                .at("recipient")],
            ));
        }
        Some(p) => {
            let r = p
                .pointer("/valueReference/reference")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !["Organization/", "HealthcareService/", "PractitionerRole/"]
                .iter()
                .any(|t| r.starts_with(t))
                || fhir::json::split_reference(r).is_none()
            {
                return Err(bad(
                    "recipient",
                    "'recipient' is a valueReference to an Organization, HealthcareService or PractitionerRole",
                ));
            }
            r.to_string()
        }
    };
    let letter = match one("letter")? {
        None => None,
        Some(p) => match p["valueString"].as_str().map(str::trim) {
            Some(s) if s.len() >= 20 => Some(s.to_string()),
            _ => {
                return Err(bad(
                    "letter",
                    "'letter' is the transfer letter (valueString, at least 20 characters)",
                ));
            }
        },
    };
    let requester_param = one("requester")?.cloned();
    let priority = one("priority")?.cloned();
    // every part, or each missing one named
    let found = crate::app::transition::transfer_parts(tx, ctx, &pid)?;
    let requester = requester_param
        .as_ref()
        .and_then(|p| p.pointer("/valueReference/reference"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| super::refer::default_requester(&tx.caller().subject))
        .or_else(|| {
            found
                .patient
                .pointer("/managingOrganization/reference")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| {
            ApiError::with_issues(
                422,
                vec![Issue::error(
                    IssueType::Required,
                    "a transfer needs its requester: name the pediatric Organization, PractitionerRole or Practitioner",
                )
                .at("requester")],
            )
        })?;
    let letter =
        letter.unwrap_or_else(|| crate::app::transition::default_letter(&found, &recipient));
    let (letter_ref, package_ref, bundle) =
        crate::app::transition::write_package(tx, ctx, &found, &recipient, &requester, &letter)?;
    // the referral, through $refer's path
    let mut params = vec![
        json!({"name": "patient", "valueReference": {"reference": format!("Patient/{pid}")}}),
        json!({"name": "service", "valueCoding": crate::app::transition::transfer_code()}),
        json!({"name": "reason", "valueString": "Transfer of care from pediatric to adult services (transition to adult care)"}),
        json!({"name": "receiver", "valueReference": {"reference": recipient}}),
        json!({"name": "requester", "valueReference": {"reference": requester}}),
        json!({"name": "attachment", "valueReference": {"reference": package_ref}}),
        json!({"name": "attachment", "valueReference": {"reference": letter_ref}}),
    ];
    if let Some(p) = priority {
        params.push(p);
    }
    let referred = super::refer::run(
        tx,
        ctx,
        Input {
            id: None,
            params: json!({"resourceType": "Parameters", "parameter": params}),
        },
    )?;
    let Outcome::Json(_, referral) = referred else {
        return Err(ApiError::new(
            500,
            IssueType::Exception,
            "the referral was not written",
        ));
    };
    let entries: Vec<Value> = referral["entry"].as_array().cloned().unwrap_or_default();
    let task_id = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Task")
        .and_then(|e| e["resource"]["id"].as_str())
        .unwrap_or_default()
        .to_string();
    let now = tx.now();
    crate::app::transition::record_element(
        tx,
        ctx,
        &pid,
        care::transition::Element::TransferPackage,
        &format!("Task/{task_id}"),
        now,
        Some(json!([
            {"type": {"text": "transfer package"}, "valueReference": {"reference": package_ref}},
            {"type": {"text": "recipient"}, "valueReference": {"reference": recipient}},
            {"type": {"text": "sender"}, "valueReference": {"reference": requester}},
        ])),
    )?;
    // the package itself (kept as `package_ref`), then the referral
    let full = bundle["identifier"]["value"].clone();
    let mut answer = vec![json!({"fullUrl": full, "resource": bundle})];
    answer.extend(entries);
    Ok(Outcome::Json(
        201,
        json!({"resourceType": "Bundle", "type": "collection", "entry": answer}),
    ))
}
