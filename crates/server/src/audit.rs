//! Building AuditEvents (FHIR R4 shape, after IHE BALP) for what requests did: who, what,
//! which patients, the outcome, and whether break-the-glass was used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use store::AuditTrail;

/// The code system of the `subtype` codings that name what the alliance did on its own
/// behalf inside a request (`store::OnBehalf`).
pub use care::profile::ON_BEHALF as ON_BEHALF_SYSTEM;

/// `AuditEvent.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Success,
    /// Refused or not found.
    MinorFailure,
    /// The server failed.
    SeriousFailure,
}

impl AuditOutcome {
    pub fn from_status(status: u16) -> AuditOutcome {
        match status {
            0..=399 => AuditOutcome::Success,
            400..=499 => AuditOutcome::MinorFailure,
            _ => AuditOutcome::SeriousFailure,
        }
    }

    fn code(self) -> &'static str {
        match self {
            AuditOutcome::Success => "0",
            AuditOutcome::MinorFailure => "4",
            AuditOutcome::SeriousFailure => "8",
        }
    }
}

/// What to record.
pub struct AuditFacts<'a> {
    /// `read`, `search-type`, `create`, `transaction`, `login`, `break-the-glass` …
    pub interaction: &'a str,
    /// `user:alice` or `client:abc`.
    pub subject_id: &'a str,
    pub fhir_users: &'a [(String, String)],
    pub address: Option<&'a str>,
    pub outcome: AuditOutcome,
    pub description: Option<String>,
    pub trail: &'a AuditTrail,
    /// The search, for searches (recorded base64, as BALP does).
    pub query: Option<&'a str>,
    pub now_ms: i64,
}

fn action_code(interaction: &str) -> &'static str {
    match interaction {
        "create" => "C",
        "update" => "U",
        "delete" => "D",
        "read" | "vread" | "history-instance" | "history-type" | "history-system" => "R",
        _ => "E",
    }
}

/// The AuditEvent resource for a request.
pub fn audit_event(f: &AuditFacts) -> Value {
    let is_login = f.interaction == "login";
    let (type_system, type_code, type_display) = if is_login {
        (
            "http://dicom.nema.org/resources/ontology/DCM",
            "110114",
            "User Authentication",
        )
    } else {
        (
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
            "RESTful Operation",
        )
    };
    let mut event = json!({
        "resourceType": "AuditEvent",
        "type": {"system": type_system, "code": type_code, "display": type_display},
        "action": if is_login { "E" } else { action_code(f.interaction) },
        "recorded": fhir::primitive::format_instant(f.now_ms),
        "outcome": f.outcome.code(),
        "source": {
            "observer": {"display": "Continuum"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
        },
    });
    if !is_login {
        let system = if f.interaction == "break-the-glass" {
            care::profile::AUDIT_SUBTYPE
        } else {
            "http://hl7.org/fhir/restful-interaction"
        };
        event["subtype"] = json!([{"system": system, "code": f.interaction}]);
    }
    // what the alliance did on its own behalf inside the request, one coding per reason
    if !f.trail.on_behalf.is_empty() {
        let codings: Vec<Value> = f
            .trail
            .on_behalf
            .iter()
            .map(|w| json!({"system": ON_BEHALF_SYSTEM, "code": w.code()}))
            .collect();
        match event.get_mut("subtype").and_then(Value::as_array_mut) {
            Some(list) => list.extend(codings),
            None => event["subtype"] = Value::Array(codings),
        }
    }
    if let Some(d) = &f.description {
        event["outcomeDesc"] = json!(d);
    }
    if f.trail.break_glass {
        event["purposeOfEvent"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]}]);
    }
    let mut agent = json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": if f.subject_id.starts_with("client:") { "datacollector" } else { "humanuser" }}]},
        "altId": f.subject_id,
        "name": f.subject_id,
        "requestor": true,
    });
    if let Some((t, id)) = f.fhir_users.first() {
        agent["who"] = json!({"reference": format!("{t}/{id}")});
    } else {
        agent["who"] =
            json!({"identifier": {"system": "urn:continuum:subject", "value": f.subject_id}});
    }
    if let Some(addr) = f.address {
        agent["network"] = json!({"address": addr, "type": "2"});
    }
    event["agent"] = json!([agent]);
    let mut entities: Vec<Value> = Vec::new();
    for p in &f.trail.patients {
        entities.push(json!({
            "what": {"reference": format!("Patient/{p}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    // a query names the patients whose data it disclosed and the query itself (the IHE BALP
    // Query pattern), not every resource of every page; a bulk import likewise names the
    // patients (each resource's own history records its version)
    let per_resource = !matches!(
        f.interaction,
        "search-type"
            | "history-type"
            | "history-system"
            | "import"
            | "export"
            | "find-care"
            | "find-appointments"
    );
    for r in f.trail.resources.iter().filter(|_| per_resource) {
        if r.starts_with("Patient/")
            && f.trail
                .patients
                .iter()
                .any(|p| *r == format!("Patient/{p}"))
        {
            continue;
        }
        entities.push(json!({
            "what": {"reference": r},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        }));
    }
    if let Some(q) = f.query {
        entities.push(json!({
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
            "query": STANDARD.encode(q),
        }));
    }
    if !entities.is_empty() {
        event["entity"] = json!(entities);
    }
    event
}

/// Records a sign-in or token request (success or failure) in its own transaction.
pub async fn record_login(
    store: &store::Store,
    subject_id: &str,
    success: bool,
    address: Option<String>,
    description: &str,
) {
    let mut trail = AuditTrail::default();
    trail.denied = !success;
    let event = audit_event(&AuditFacts {
        interaction: "login",
        subject_id,
        fhir_users: &[],
        address: address.as_deref(),
        outcome: if success {
            AuditOutcome::Success
        } else {
            AuditOutcome::MinorFailure
        },
        description: Some(description.to_string()),
        trail: &trail,
        query: None,
        now_ms: store.clock().now_ms(),
    });
    if let Err(e) = store.append_audit(event).await {
        tracing::error!(error = %e, "could not record a login audit event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_validate_as_r4() {
        let mut trail = AuditTrail::default();
        trail.add("Observation", "o1", &["p1".into()]);
        trail.add("Patient", "p1", &["p1".into()]);
        trail.break_glass = true;
        let e = audit_event(&AuditFacts {
            interaction: "read",
            subject_id: "user:alice",
            fhir_users: &[("Practitioner".into(), "d1".into())],
            address: Some("127.0.0.1"),
            outcome: AuditOutcome::Success,
            description: None,
            trail: &trail,
            query: Some("Observation?patient=p1"),
            now_ms: 0,
        });
        fhir::validate_resource(&e).unwrap();
        assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
        assert_eq!(e["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(e["entity"].as_array().unwrap().len(), 3);
        let login = audit_event(&AuditFacts {
            interaction: "login",
            subject_id: "user:x",
            fhir_users: &[],
            address: None,
            outcome: AuditOutcome::MinorFailure,
            description: Some("wrong password".into()),
            trail: &AuditTrail::default(),
            query: None,
            now_ms: 0,
        });
        fhir::validate_resource(&login).unwrap();
    }
}
