//! Care relationships: which organisations care for which patients, as the records show it.
//! A relationship comes from a registration (`Patient.managingOrganization`), an open referral
//! (Task, ServiceRequest), an appointment that is not cancelled, an active care team, or an
//! encounter. Organisations are named directly or through a PractitionerRole, Location or
//! HealthcareService, which the store resolves.

use serde_json::Value;

/// An organisation, directly or through a resource that names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgRef {
    Organization(String),
    /// `PractitionerRole`, `Location` or `HealthcareService` with this id.
    Via(String, String),
}

/// One patient–organisation link a resource establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareLink {
    pub patient_id: String,
    pub organization: OrgRef,
}

fn local_ref(v: &Value) -> Option<(String, String)> {
    fhir::json::reference_of(v).map(|(rt, id)| (rt.to_string(), id.to_string()))
}

fn org_of(v: &Value) -> Option<OrgRef> {
    let (rt, id) = local_ref(v)?;
    match rt.as_str() {
        "Organization" => Some(OrgRef::Organization(id)),
        "PractitionerRole" | "Location" | "HealthcareService" => Some(OrgRef::Via(rt, id)),
        _ => None,
    }
}

fn patient_of(v: &Value) -> Option<String> {
    match local_ref(v)? {
        (rt, id) if rt == "Patient" => Some(id),
        _ => None,
    }
}

fn status(r: &Value) -> &str {
    r.get("status").and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(r: &'a Value, key: &str) -> Vec<&'a Value> {
    match r.get(key) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    }
}

/// The organisation a Patient is registered with (`managingOrganization`, an Organization).
pub fn registered_with(patient: &Value) -> Option<String> {
    match patient.get("managingOrganization").and_then(org_of)? {
        OrgRef::Organization(id) => Some(id),
        OrgRef::Via(..) => None,
    }
}

/// The care links a resource establishes while it is open/active.
pub fn care_links(resource: &Value) -> Vec<CareLink> {
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut patients: Vec<String> = Vec::new();
    let mut orgs: Vec<OrgRef> = Vec::new();
    match rt {
        "Patient" => {
            if let Some(id) = resource.get("id").and_then(Value::as_str) {
                patients.push(id.to_string());
            }
            orgs.extend(resource.get("managingOrganization").and_then(org_of));
        }
        "Task" => {
            if matches!(
                status(resource),
                "completed" | "cancelled" | "rejected" | "failed" | "entered-in-error"
            ) {
                return vec![];
            }
            patients.extend(resource.get("for").and_then(patient_of));
            orgs.extend(resource.get("owner").and_then(org_of));
            orgs.extend(resource.get("requester").and_then(org_of));
        }
        "ServiceRequest" => {
            if matches!(
                status(resource),
                "completed" | "revoked" | "entered-in-error"
            ) {
                return vec![];
            }
            patients.extend(resource.get("subject").and_then(patient_of));
            orgs.extend(resource.get("requester").and_then(org_of));
            orgs.extend(items(resource, "performer").into_iter().filter_map(org_of));
        }
        "Appointment" => {
            if matches!(
                status(resource),
                "cancelled" | "noshow" | "entered-in-error"
            ) {
                return vec![];
            }
            for p in items(resource, "participant") {
                if let Some(actor) = p.get("actor") {
                    patients.extend(patient_of(actor));
                    orgs.extend(org_of(actor));
                }
            }
        }
        "CareTeam" => {
            if !matches!(status(resource), "active" | "proposed" | "suspended" | "") {
                return vec![];
            }
            patients.extend(resource.get("subject").and_then(patient_of));
            orgs.extend(
                items(resource, "managingOrganization")
                    .into_iter()
                    .filter_map(org_of),
            );
            for p in items(resource, "participant") {
                orgs.extend(p.get("member").and_then(org_of));
                orgs.extend(p.get("onBehalfOf").and_then(org_of));
            }
        }
        "Encounter" => {
            if matches!(status(resource), "cancelled" | "entered-in-error") {
                return vec![];
            }
            patients.extend(resource.get("subject").and_then(patient_of));
            orgs.extend(resource.get("serviceProvider").and_then(org_of));
        }
        _ => {}
    }
    let mut out = Vec::new();
    for p in &patients {
        for o in &orgs {
            let link = CareLink {
                patient_id: p.clone(),
                organization: o.clone(),
            };
            if !out.contains(&link) {
                out.push(link);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn link(p: &str, o: OrgRef) -> CareLink {
        CareLink {
            patient_id: p.into(),
            organization: o,
        }
    }

    #[test]
    fn open_referrals_appointments_and_registrations() {
        let task = json!({"resourceType": "Task", "status": "requested", "for": {"reference": "Patient/p"},
            "owner": {"reference": "Organization/cc"}, "requester": {"reference": "PractitionerRole/r1"}});
        assert_eq!(
            care_links(&task),
            vec![
                link("p", OrgRef::Organization("cc".into())),
                link("p", OrgRef::Via("PractitionerRole".into(), "r1".into()))
            ]
        );
        let done = json!({"resourceType": "Task", "status": "completed", "for": {"reference": "Patient/p"}, "owner": {"reference": "Organization/cc"}});
        assert!(care_links(&done).is_empty());
        let appt = json!({"resourceType": "Appointment", "status": "booked", "participant": [
            {"actor": {"reference": "Patient/p"}}, {"actor": {"reference": "Location/loc"}}, {"actor": {"reference": "Practitioner/d"}}]});
        assert_eq!(
            care_links(&appt),
            vec![link("p", OrgRef::Via("Location".into(), "loc".into()))]
        );
        let cancelled = json!({"resourceType": "Appointment", "status": "cancelled", "participant": [{"actor": {"reference": "Patient/p"}}, {"actor": {"reference": "Location/loc"}}]});
        assert!(care_links(&cancelled).is_empty());
        let patient = json!({"resourceType": "Patient", "id": "p", "managingOrganization": {"reference": "Organization/hhc"}});
        assert_eq!(
            care_links(&patient),
            vec![link("p", OrgRef::Organization("hhc".into()))]
        );
        let team = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/p"},
            "participant": [{"member": {"reference": "Practitioner/x"}, "onBehalfOf": {"reference": "Organization/cc"}}]});
        assert_eq!(
            care_links(&team),
            vec![link("p", OrgRef::Organization("cc".into()))]
        );
    }
}
