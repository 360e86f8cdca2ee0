//! Write rules per resource type: what writing a resource of a type brings with it, in one
//! table ([`RULES`]). They run inside the write's transaction **after** the access decision (a
//! refused write runs none of them), for plain interactions, batch entries and transaction
//! entries alike (all go through `execute`). Labels that follow the care are applied to every
//! type before the decision (they are part of what is decided); the store itself keeps the
//! index rows, compartments, care relationships, the directory version (HealthcareService,
//! Location, Organization, PractitionerRole, Schedule, Subscription) and `slot_free` with each
//! version.

use fhir::IssueType;
use serde_json::Value;
use store::CallerTx;

use crate::app::Ctx;
use crate::error::ApiError;

/// Before a version is stored: may check it (an error refuses the write) and change it.
/// `previous` is the version it replaces, if any.
pub type BeforeWrite =
    fn(&mut CallerTx, &Ctx, &str, Option<&Value>, &mut Value) -> Result<(), ApiError>;
/// After a version is stored.
pub type AfterWrite = fn(&mut CallerTx, &Ctx, &str, &Value) -> Result<(), ApiError>;
/// Before a resource is deleted (`previous` is its last version).
pub type BeforeDelete = fn(&mut CallerTx, &Ctx, &str, &Value) -> Result<(), ApiError>;

/// The rules of one resource type.
pub struct WriteRule {
    pub resource_type: &'static str,
    /// What the rule does, in words.
    pub what: &'static str,
    pub before: Option<BeforeWrite>,
    /// Whether `before` may change the resource (its index is then extracted again).
    pub before_changes: bool,
    pub after: Option<AfterWrite>,
    pub deleting: Option<BeforeDelete>,
}

/// Every write rule. A new one is one entry here (and the function it names, in the module
/// of the application layer it belongs to).
pub const RULES: &[WriteRule] = &[
    WriteRule {
        resource_type: "Appointment",
        what: "status moves by the Appointment machine; the Slots it names are taken, freed or moved; a freed slot goes to the waitlist; the join link and the messages follow",
        before: Some(appointment_before),
        before_changes: true,
        after: None,
        deleting: Some(appointment_deleting),
    },
    WriteRule {
        resource_type: "Slot",
        what: "status moves by the Slot machine; a slot an appointment holds is not freed by a PUT",
        before: Some(slot_before),
        before_changes: false,
        after: None,
        deleting: None,
    },
    WriteRule {
        resource_type: "Subscription",
        what: "a valid rest-hook Subscription, written by someone who may read everything",
        before: Some(subscription_before),
        before_changes: false,
        after: None,
        deleting: None,
    },
    WriteRule {
        resource_type: "Patient",
        what: "identity linkage: compared with its candidates; certain pairs linked by a Person, others queued for review",
        before: Some(patient_before),
        before_changes: false,
        after: None,
        deleting: None,
    },
    WriteRule {
        resource_type: "Task",
        what: "a referral: its status machine (who may make each move, what it needs), the parts it names, its due dates, milestones and business status; each step's Provenance and messages; a transition element Task names a known element for a Patient, and is dated when completed",
        before: Some(task_before),
        before_changes: true,
        after: None,
        deleting: Some(task_deleting),
    },
    WriteRule {
        resource_type: "QuestionnaireResponse",
        what: "the transition readiness assessment: answers from its scale, every question answered when completed, scored by the server, the writer stamped as author for a family; a completed one records the readiness element on its Task",
        before: Some(response_before),
        before_changes: true,
        after: Some(response_after),
        deleting: None,
    },
    WriteRule {
        resource_type: "CarePlan",
        what: "a plan of care coded as the transition's (category plan-of-care) records that element for the young person",
        before: None,
        before_changes: false,
        after: Some(artefact_after),
        deleting: None,
    },
    WriteRule {
        resource_type: "DocumentReference",
        what: "a current medical summary (type medical-summary, or LOINC 60591-5) records that transition element for the young person",
        before: None,
        before_changes: false,
        after: Some(artefact_after),
        deleting: None,
    },
    WriteRule {
        resource_type: "Encounter",
        what: "what references it gets the labels of minor-consented care it now carries",
        before: None,
        before_changes: false,
        after: Some(encounter_after),
        deleting: None,
    },
];

fn rules_of(rt: &str) -> impl Iterator<Item = &'static WriteRule> + '_ {
    RULES.iter().filter(move |r| r.resource_type == rt)
}

/// Runs the rules of `rt` before a version is stored, after the rules every type has (no birth
/// date in the future: `care::plausible`); whether one of them may have changed the resource
/// (its index must then be extracted again).
pub(crate) fn before_write(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    previous: Option<&Value>,
    resource: &mut Value,
) -> Result<bool, ApiError> {
    if let Some((at, why)) = care::plausible::future_date(rt, resource, tx.now()) {
        return Err(ApiError::bad_request(IssueType::Value, why).at(at));
    }
    let mut changed = false;
    for rule in rules_of(rt) {
        if let Some(f) = rule.before {
            f(tx, ctx, id, previous, resource)?;
            changed |= rule.before_changes;
        }
    }
    Ok(changed)
}

/// Runs the rules of `rt` after a version is stored.
pub(crate) fn after_write(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    resource: &Value,
) -> Result<(), ApiError> {
    for rule in rules_of(rt) {
        if let Some(f) = rule.after {
            f(tx, ctx, id, resource)?;
        }
    }
    Ok(())
}

/// Runs the rules of `rt` before a resource is deleted.
pub(crate) fn before_delete(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    previous: &Value,
) -> Result<(), ApiError> {
    for rule in rules_of(rt) {
        if let Some(f) = rule.deleting {
            f(tx, ctx, id, previous)?;
        }
    }
    Ok(())
}

fn appointment_before(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    previous: Option<&Value>,
    resource: &mut Value,
) -> Result<(), ApiError> {
    crate::app::booking::appointment_written(tx, ctx, id, previous, Some(resource))
}

/// A deleted appointment gives its slots back (no status rule applies).
fn appointment_deleting(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    previous: &Value,
) -> Result<(), ApiError> {
    let mut released = previous.clone();
    if let Value::Object(o) = &mut released {
        o.remove("status");
    }
    crate::app::booking::appointment_written(tx, ctx, id, Some(&released), None)
}

fn slot_before(
    tx: &mut CallerTx,
    _ctx: &Ctx,
    _id: &str,
    previous: Option<&Value>,
    resource: &mut Value,
) -> Result<(), ApiError> {
    let status = |v: Option<&Value>| {
        v.and_then(|s| s.get("status"))
            .and_then(Value::as_str)
            .and_then(care::booking::SlotStatus::parse)
    };
    if let (Some(from), Some(to)) = (status(previous), status(Some(resource))) {
        care::booking::slot_transition(from, to)
            .map_err(|why| ApiError::new(409, IssueType::Conflict, why).at("Slot.status"))?;
        if let Some(holder) = previous.and_then(crate::app::booking::live_holder(tx.now()))
            && to == care::booking::SlotStatus::Free
        {
            return Err(ApiError::new(
                409,
                IssueType::Conflict,
                format!("the slot is taken by Appointment/{holder}: cancel or reschedule that appointment to free it"),
            )
            .at("Slot.status"));
        }
    }
    Ok(())
}

fn subscription_before(
    _tx: &mut CallerTx,
    ctx: &Ctx,
    _id: &str,
    _previous: Option<&Value>,
    resource: &mut Value,
) -> Result<(), ApiError> {
    crate::app::subscriptions::check(ctx, resource)
}

fn patient_before(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    _previous: Option<&Value>,
    resource: &mut Value,
) -> Result<(), ApiError> {
    crate::app::linkage::on_write(tx, ctx, id, &*resource)
}

fn task_before(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    previous: Option<&Value>,
    resource: &mut Value,
) -> Result<(), ApiError> {
    crate::app::referrals::task_written(tx, ctx, id, previous, resource)?;
    crate::app::transition::element_task_written(tx, resource)
}

fn task_deleting(
    tx: &mut CallerTx,
    _ctx: &Ctx,
    _id: &str,
    previous: &Value,
) -> Result<(), ApiError> {
    crate::app::referrals::task_deleted(tx, previous)
}

fn response_before(
    tx: &mut CallerTx,
    _ctx: &Ctx,
    _id: &str,
    previous: Option<&Value>,
    resource: &mut Value,
) -> Result<(), ApiError> {
    crate::app::transition::response_written(tx, previous, resource)
}

fn response_after(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    resource: &Value,
) -> Result<(), ApiError> {
    crate::app::transition::response_stored(tx, ctx, id, resource)
}

fn artefact_after(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    resource: &Value,
) -> Result<(), ApiError> {
    let rt = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    crate::app::transition::artefact_stored(tx, ctx, &rt, id, resource)
}

fn encounter_after(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    resource: &Value,
) -> Result<(), ApiError> {
    crate::app::labels::relabel_encounter_contents(tx, ctx, id, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_per_type() {
        let mut types: Vec<&str> = RULES.iter().map(|r| r.resource_type).collect();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n, "a type's rules are one entry");
    }
}
