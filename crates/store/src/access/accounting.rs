//! The accounting of disclosures as a patient sees it: "who looked at my record" shows who, when,
//! what of mine and why — never other patients, other resources, the query or the outcome
//! text — and may not be searched by another patient (that would tell whether they were
//! returned by the same search).

use fhir::search::SearchRequest;
use serde_json::Value;

/// An AuditEvent as a patient reading the accounting of their own record (`own`) sees it:
/// only the entities naming their own Patient remain, and the outcome text goes.
pub(super) fn patient_view(event: &mut Value, own: &[String]) {
    let Value::Object(o) = event else {
        return;
    };
    let mine: Vec<Value> = o
        .get("entity")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| {
            e.pointer("/what/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("Patient/"))
                .is_some_and(|id| own.iter().any(|p| p == id))
        })
        .cloned()
        .collect();
    o.remove("outcomeDesc");
    if mine.is_empty() {
        o.remove("entity");
    } else {
        o.insert("entity".into(), Value::Array(mine));
    }
}

/// What a patient may ask of the accounting of their own record: AuditEvents by time, action,
/// type, outcome, agent and their own record — never by another patient or resource (which
/// would tell whether that patient was returned by the same search as theirs), in a search of
/// AuditEvents or through `_has`, and sorted by time or id only.
pub(super) fn search_allowed(req: &SearchRequest, own: &[String]) -> Result<(), String> {
    use fhir::search::{Clause, SearchValue, SortColumn};
    const ALLOWED: &[&str] = &[
        "_id",
        "_lastUpdated",
        "date",
        "action",
        "type",
        "subtype",
        "outcome",
        "agent",
        "agent-name",
        "agent-role",
        "altid",
        "source",
        "site",
    ];
    let refusal = || {
        "the accounting of your record can be searched by date, action, type, outcome, agent and your own record (entity or patient = your Patient)".to_string()
    };
    fn check(
        clause: &Clause,
        on_audit: bool,
        own: &[String],
        refusal: &dyn Fn() -> String,
    ) -> Result<(), String> {
        if let Some(has) = &clause.has {
            check(&has.clause, has.source_type == "AuditEvent", own, refusal)?;
            if has.source_type == "AuditEvent"
                && !matches!(has.reference_param.as_str(), "entity" | "patient" | "agent")
            {
                return Err(refusal());
            }
        }
        if let Some(chain) = &clause.chain {
            for (target, inner) in &chain.targets {
                check(inner, target == "AuditEvent", own, refusal)?;
            }
        }
        if !on_audit || clause.has.is_some() {
            return Ok(());
        }
        match clause.param.as_str() {
            "entity" | "patient" => {
                if clause.chain.is_some() {
                    return Ok(()); // the chained resources are filtered like any other
                }
                let all_own = !clause.values.is_empty()
                    && clause.values.iter().all(|v| match v {
                        SearchValue::Reference { target_type, id } => {
                            target_type.as_deref().is_none_or(|t| t == "Patient")
                                && own.iter().any(|p| p == id)
                        }
                        _ => false,
                    });
                if all_own { Ok(()) } else { Err(refusal()) }
            }
            p if ALLOWED.contains(&p) => Ok(()),
            _ => Err(refusal()),
        }
    }
    let top = req.resource_type == "AuditEvent";
    for clause in &req.clauses {
        check(clause, top, own, &refusal)?;
    }
    if top
        && req
            .sort
            .iter()
            .any(|k| matches!(&k.column, SortColumn::Param { code, .. } if code != "date"))
    {
        return Err(refusal());
    }
    Ok(())
}

/// Whether a search of another type reaches into the audit trail (`_has:AuditEvent`, a chain
/// through AuditEvent, `_include`/`_revinclude` of AuditEvents), which the audit store does
/// not serve.
pub(super) fn mentions_audit(req: &SearchRequest) -> bool {
    use fhir::search::Clause;
    fn reaches(clause: &Clause) -> bool {
        clause
            .has
            .as_ref()
            .is_some_and(|h| h.source_type == "AuditEvent" || reaches(&h.clause))
            || clause.chain.as_ref().is_some_and(|c| {
                c.targets
                    .iter()
                    .any(|(t, inner)| t == "AuditEvent" || reaches(inner))
            })
    }
    req.clauses.iter().any(reaches)
        || req.includes.iter().chain(&req.revincludes).any(|i| {
            i.source_type == "AuditEvent" || i.target_type.as_deref() == Some("AuditEvent")
        })
}
