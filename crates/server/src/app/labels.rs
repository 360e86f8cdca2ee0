//! Labels that follow the care, applied on the alliance's behalf whoever writes
//! (`care::labels` says which): what references an Encounter of minor-consented care (or part
//! of one) carries its sensitivity and R — relabelled when the Encounter is flagged after it
//! was written — and an Appointment in a service marked sensitive carries that service's label.

use fhir::search::extract;
use serde_json::Value;
use store::CallerTx;

use super::Ctx;
use crate::error::ApiError;

/// Labels that follow the care (`care::labels`), added whoever writes: what references an
/// Encounter of minor-consented care (or part of one) carries its sensitivity and R; an
/// Appointment in a service marked sensitive carries that service's label. Read with the
/// system's rights — the labels must not depend on what the writer may see.
pub fn apply_automatic_labels(tx: &mut CallerTx, resource: &mut Value) -> Result<(), ApiError> {
    let mut labels: Vec<(String, String)> = Vec::new();
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if rt == "Encounter" {
        labels.extend(care::labels::minor_consented_labels(resource));
    }
    let own_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    for id in care::labels::referenced_ids(resource, "Encounter") {
        if rt == "Encounter" && own_id.as_deref() == Some(id.as_str()) {
            continue;
        }
        if let Some(enc) =
            tx.on_behalf(store::OnBehalf::Labelling)
                .current("Encounter", &id, false)?
            && let Some(body) = enc
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
        {
            labels.extend(care::labels::encounter_labels(&body));
        }
    }
    if rt == "Appointment" {
        for id in care::labels::referenced_ids(resource, "HealthcareService") {
            if let Some(hs) =
                tx.on_behalf(store::OnBehalf::Labelling)
                    .current("HealthcareService", &id, false)?
                && let Some(body) = hs
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<Value>(b).ok())
            {
                labels.extend(care::labels::service_labels(&body));
            }
        }
    }
    care::labels::add_labels(resource, &labels);
    Ok(())
}

/// After an Encounter is written: what already references it (written before it was flagged,
/// or earlier in the same transaction) gets the labels it now passes on, and so on down to the
/// Encounters that are part of it. The alliance does this on its own behalf (system rights);
/// every relabelled resource is on the request's audit trail.
pub fn relabel_encounter_contents(
    tx: &mut CallerTx,
    ctx: &Ctx,
    encounter_id: &str,
    encounter: &Value,
) -> Result<(), ApiError> {
    let labels = care::labels::encounter_labels(encounter);
    if labels.is_empty() {
        return Ok(());
    }
    let mut queue: Vec<(String, Vec<(String, String)>)> = vec![(encounter_id.to_string(), labels)];
    let mut seen: Vec<String> = vec![encounter_id.to_string()];
    while let Some((eid, labels)) = queue.pop() {
        for (rtype, id) in tx
            .on_behalf(store::OnBehalf::Labelling)
            .referencing("Encounter", &eid)?
        {
            let Some(stored) = tx
                .on_behalf(store::OnBehalf::Labelling)
                .current(&rtype, &id, true)?
            else {
                continue;
            };
            if stored.deleted {
                continue;
            }
            let Some(mut body) = stored
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
            else {
                continue;
            };
            let missing = care::labels::missing_labels(&body, &labels);
            if !missing.is_empty() {
                care::labels::add_labels(&mut body, &missing);
                let index = extract(ctx.registry, &body);
                let patients = fhir::compartment::patients_of(&rtype, &id, &index);
                tx.on_behalf(store::OnBehalf::Labelling)
                    .update(&stored, &mut body, &index)?;
                tx.trail.add(&rtype, &id, &patients);
            }
            if rtype == "Encounter" && !seen.contains(&id) {
                seen.push(id.clone());
                queue.push((id, care::labels::encounter_labels(&body)));
            }
        }
    }
    Ok(())
}
