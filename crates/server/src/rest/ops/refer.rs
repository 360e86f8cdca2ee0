//! `POST /fhir/ServiceRequest/$refer`: a referral in one step — the ServiceRequest and its
//! Task written together, through the same write rules as any Task (`app::referrals`); with no
//! receiver named, the care finder proposes one and the Task says why.

use fhir::{Issue, IssueType};
use serde_json::{Value, json};
use store::CallerTx;

use super::{Input, Level, Operation};
use crate::app::Ctx;
use crate::app::findcare::{CareRequest, ServiceQuery, find_care};
use crate::app::params::{bad, parameter_list};
use crate::error::ApiError;
use crate::rest::execute::{Outcome, create};

pub const REFER: Operation = Operation {
    name: "refer",
    code: "refer",
    resource_type: Some("ServiceRequest"),
    level: Level::Type,
    writes: true,
    definition: "http://continuum-alliance.org/fhir/OperationDefinition/refer",
    documentation: "POST ServiceRequest/$refer with Parameters: patient (valueReference), service (valueReference to a HealthcareService, or valueCoding / valueCode / valueString naming the need), reason (valueString or valueCodeableConcept), priority (routine | urgent | asap | stat; default routine), requester (valueReference; default the caller's Practitioner or organisation), receiver (optional valueReference: Organization, HealthcareService or PractitionerRole; without it the care finder proposes the closest fitting service and the Task says why), attachment (valueReference, repeating: supporting documents), status (draft | requested; default requested). Writes the ServiceRequest and its Task in one transaction and answers 201 with both in a collection Bundle; what is missing is answered 422, each part named.",
    usage: "$refer takes a Parameters resource with patient, service, reason and requester (see the README)",
    run,
    precheck: None,
};

/// Who refers when the caller names no one: the caller's Practitioner(Role), else its
/// organisation.
pub(super) fn default_requester(subject: &care::access::Subject) -> Option<String> {
    subject
        .fhir_users
        .iter()
        .find(|(rt, _)| rt == "PractitionerRole" || rt == "Practitioner")
        .map(|(rt, id)| format!("{rt}/{id}"))
        .or_else(|| {
            subject
                .grants
                .iter()
                .find_map(|g| g.organization.as_ref())
                .map(|o| format!("Organization/{o}"))
        })
}

pub(super) fn run(tx: &mut CallerTx, ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let params = &input.params;
    let parts = parameter_list(
        params,
        "$refer",
        &[
            "patient",
            "service",
            "reason",
            "priority",
            "requester",
            "receiver",
            "attachment",
            "status",
        ],
        &[],
    )?;
    let named = |name: &str| -> Vec<&Value> {
        parts
            .iter()
            .copied()
            .filter(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .collect()
    };
    let one = |name: &str| -> Result<Option<&Value>, ApiError> {
        let found = named(name);
        if found.len() > 1 {
            return Err(bad(name, format!("'{name}' is given more than once")));
        }
        Ok(found.first().copied())
    };
    let reference_of = |p: &Value, name: &str| -> Result<String, ApiError> {
        p.pointer("/valueReference/reference")
            .and_then(Value::as_str)
            .filter(|r| fhir::json::split_reference(r).is_some())
            .map(str::to_string)
            .ok_or_else(|| bad(name, format!("'{name}' is a valueReference (Type/id)")))
    };
    let mut missing: Vec<Issue> = Vec::new();
    let mut need = |name: &str, why: &str| {
        missing.push(Issue::error(IssueType::Required, why).at(name));
    };
    let patient = match one("patient")? {
        Some(p) => {
            let r = reference_of(p, "patient")?;
            if !r.starts_with("Patient/") {
                return Err(bad("patient", format!("'{r}' is not a Patient reference")));
            }
            Some(r)
        }
        None => {
            need(
                "patient",
                "a referral needs the patient (valueReference Patient/id)",
            );
            None
        }
    };
    // what is asked for: a HealthcareService, or the need as a code or words
    let mut code: Option<Value> = None;
    let mut service_ref: Option<String> = None;
    let mut query: Option<ServiceQuery> = None;
    match one("service")? {
        None => need(
            "service",
            "a referral needs the service: a HealthcareService (valueReference) or the need (valueCoding, valueCode, valueString)",
        ),
        Some(p) => {
            if p.get("valueReference").is_some() {
                let r = reference_of(p, "service")?;
                if !r.starts_with("HealthcareService/") {
                    return Err(bad(
                        "service",
                        format!("'{r}' is not a HealthcareService reference"),
                    ));
                }
                service_ref = Some(r);
            } else if let Some(c) = p.get("valueCoding") {
                let c_code = c
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("service", "the service Coding has no code"))?;
                query = Some(ServiceQuery::Code {
                    system: c.get("system").and_then(Value::as_str).map(str::to_string),
                    code: c_code.to_string(),
                });
                code = Some(json!({"coding": [c]}));
            } else if let Some(c) = p.get("valueCode").and_then(Value::as_str) {
                query = Some(ServiceQuery::Code {
                    system: None,
                    code: c.to_string(),
                });
                code = Some(json!({"coding": [{"code": c}], "text": c}));
            } else if let Some(s) = p.get("valueString").and_then(Value::as_str).map(str::trim) {
                if s.len() < 3 {
                    return Err(bad("service", "a service name needs at least 3 letters"));
                }
                query = Some(ServiceQuery::Text(s.to_string()));
                code = Some(json!({"text": s}));
            } else {
                return Err(bad(
                    "service",
                    "'service' needs valueReference, valueCoding, valueCode or valueString",
                ));
            }
        }
    }
    let reason = match one("reason")? {
        None => {
            need(
                "reason",
                "a referral needs its reason (valueString or valueCodeableConcept)",
            );
            None
        }
        Some(p) => match (
            p.get("valueString").and_then(Value::as_str),
            p.get("valueCodeableConcept"),
        ) {
            (Some(s), _) if !s.trim().is_empty() => Some(json!({"text": s.trim()})),
            (_, Some(c)) => Some(c.clone()),
            _ => {
                return Err(bad(
                    "reason",
                    "'reason' needs valueString or valueCodeableConcept",
                ));
            }
        },
    };
    // a code parameter, as valueCode or valueString
    let code_of = |name: &str| -> Result<Option<&str>, ApiError> {
        Ok(one(name)?.map(|p| {
            p.get("valueCode")
                .or_else(|| p.get("valueString"))
                .and_then(Value::as_str)
                .unwrap_or("")
        }))
    };
    let priority = match code_of("priority")? {
        None => "routine".to_string(),
        Some(v) => care::referral::Priority::parse(v)
            .ok_or_else(|| {
                bad(
                    "priority",
                    format!("'{v}' is not a priority (routine, urgent, asap, stat)"),
                )
            })?
            .code()
            .to_string(),
    };
    let status = match code_of("status")? {
        None => "requested".to_string(),
        Some(v) => {
            if !matches!(v, "draft" | "requested") {
                return Err(bad(
                    "status",
                    format!("a referral is written as draft or requested, not '{v}'"),
                ));
            }
            v.to_string()
        }
    };
    let requester = match one("requester")? {
        Some(p) => Some(reference_of(p, "requester")?),
        None => default_requester(&tx.caller().subject),
    };
    if requester.is_none() {
        need(
            "requester",
            "a referral needs its requester: name the referring Organization, PractitionerRole or Practitioner",
        );
    }
    let mut receiver = match one("receiver")? {
        Some(p) => Some(reference_of(p, "receiver")?),
        None => service_ref.clone(),
    };
    if !missing.is_empty() {
        return Err(ApiError::with_issues(422, missing));
    }
    let (patient, requester) = (patient.unwrap_or_default(), requester.unwrap_or_default());
    // no receiver: the care finder proposes the closest fitting service
    let mut why: Option<String> = None;
    if receiver.is_none() && status == "requested" {
        let urgency =
            care::findcare::Urgency::parse(&priority).unwrap_or(care::findcare::Urgency::Routine);
        let answer = find_care(
            tx,
            ctx,
            CareRequest {
                patient: patient.strip_prefix("Patient/").map(str::to_string),
                birth_date: None,
                postal_code: None,
                service: query.clone().unwrap_or(ServiceQuery::Text(String::new())),
                wanted: care::findcare::Wanted::Any,
                urgency,
                radius: 100.0,
                patient_state: None,
                count: 1,
            },
        )?;
        let option = answer
            .get("parameter")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some("option"));
        let Some(option) = option else {
            return Err(ApiError::with_issues(
                422,
                vec![Issue::error(
                    IssueType::BusinessRule,
                    "the care finder found no service that fits this patient and need within 100 miles: name a receiver",
                )
                .at("receiver")],
            ));
        };
        fn part<'v>(option: &'v Value, name: &'static str) -> impl Iterator<Item = &'v Value> {
            option
                .get("part")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(move |p| p.get("name").and_then(Value::as_str) == Some(name))
        }
        receiver = part(option, "healthcareService")
            .next()
            .and_then(|p| p.pointer("/valueReference/reference"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let reasons: Vec<&str> = part(option, "reason")
            .filter_map(|p| p.get("valueString").and_then(Value::as_str))
            .collect();
        let name = part(option, "healthcareService")
            .next()
            .and_then(|p| p.pointer("/valueReference/display"))
            .and_then(Value::as_str)
            .unwrap_or("the service");
        why = Some(format!(
            "Receiver proposed by the care finder: {name} — {}",
            if reasons.is_empty() {
                "the best-ranked option".to_string()
            } else {
                reasons.join("; ")
            }
        ));
    }
    if code.is_none()
        && let Some(r) = &service_ref
    {
        code = Some(json!({"text": r}));
    }
    let attachments: Vec<Value> = named("attachment")
        .into_iter()
        .map(|p| reference_of(p, "attachment").map(|r| json!({"reference": r})))
        .collect::<Result<_, _>>()?;
    let mut request = json!({
        "resourceType": "ServiceRequest",
        "status": if status == "draft" { "draft" } else { "active" },
        "intent": "order",
        "priority": priority,
        "subject": {"reference": patient},
        "requester": {"reference": requester},
        "authoredOn": fhir::primitive::format_instant(tx.now()),
    });
    if let Some(c) = &code {
        request["code"] = c.clone();
    }
    if let Some(r) = &reason {
        request["reasonCode"] = json!([r]);
    }
    if let Some(r) = &receiver {
        request["performer"] = json!([{"reference": r}]);
    }
    if !attachments.is_empty() {
        request["supportingInfo"] = Value::Array(attachments);
    }
    fhir::validate_resource(&request).map_err(ApiError::invalid)?;
    let stored_request = match create(tx, ctx, "ServiceRequest", request, None)? {
        Outcome::Resource { stored, .. } => stored,
        _ => {
            return Err(ApiError::new(
                500,
                IssueType::Exception,
                "the ServiceRequest was not stored",
            ));
        }
    };
    let mut task = json!({
        "resourceType": "Task",
        "status": status,
        "intent": "order",
        "priority": priority,
        "focus": {"reference": format!("ServiceRequest/{}", stored_request.id)},
        "for": {"reference": patient},
        "requester": {"reference": requester},
    });
    // coded a referral, so the referral rules hold whatever the need is coded as (that is on
    // the ServiceRequest)
    task["code"] = care::referral::referral_code();
    if let Some(r) = &reason {
        task["reasonCode"] = r.clone();
    }
    if let Some(r) = &receiver {
        task["owner"] = json!({"reference": r});
    }
    if let Some(w) = &why {
        task["note"] = json!([{"text": w}]);
    }
    fhir::validate_resource(&task).map_err(ApiError::invalid)?;
    let stored_task = match create(tx, ctx, "Task", task, None)? {
        Outcome::Resource { stored, .. } => stored,
        _ => {
            return Err(ApiError::new(
                500,
                IssueType::Exception,
                "the Task was not stored",
            ));
        }
    };
    let entry = |s: &store::Stored| {
        let resource = crate::app::resources::body(s);
        json!({"fullUrl": format!("{}/{}/{}", ctx.base_url, s.resource_type, s.id), "resource": resource})
    };
    Ok(Outcome::Json(
        201,
        json!({"resourceType": "Bundle", "type": "collection", "entry": [entry(&stored_request), entry(&stored_task)]}),
    ))
}
