//! The facts about the caller the policy needs, loaded at the start of each request: whether
//! its client or account is still enabled, its own Patient, the patients it is a proxy for,
//! the Consents naming it and its break-the-glass grants.

use care::access::{
    BirthDate, BreakGlass, ConsentRule, Context, ProxyLink, ResourceFacts, Role, Subject, view,
};
use serde_json::Value;

use super::Caller;
use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::Tx;

fn reference_id(v: &Value, expected_type: &str) -> Option<String> {
    fhir::json::reference_id(v, expected_type).map(str::to_string)
}

use fhir::json::instant_ms;

/// Whether `caller` would be allowed to read a resource with these facts — the same rules as
/// every read (used to decide who a notification may go to).
pub fn would_see(tx: &mut Tx, caller: &Caller, facts: &ResourceFacts) -> Result<bool, StoreError> {
    let ctx = load_context(tx, &caller.subject)?;
    let v = view(&caller.subject, &ctx, &caller.policy);
    Ok(care::access::permits(&v, facts).is_permit())
}

/// Refuses a caller whose API client or account was disabled after its token was issued: the
/// token is valid until it expires, the right to use it is not.
fn check_enabled(tx: &mut Tx, subject: &Subject) -> Result<(), StoreError> {
    let query = if let Some(id) = subject.id.strip_prefix("client:") {
        Some(("SELECT disabled FROM api_clients WHERE client_id = ?", id))
    } else {
        subject
            .id
            .strip_prefix("user:")
            .map(|name| ("SELECT disabled FROM users WHERE username = ?", name))
    };
    let Some((sql, id)) = query else {
        return Ok(());
    };
    let rows = tx.conn().query(sql, &[id.into()])?;
    let enabled = rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .and_then(|v| v.as_i64())
        .is_some_and(|d| d == 0);
    if enabled {
        Ok(())
    } else {
        Err(StoreError::CallerDisabled(subject.id.clone()))
    }
}

/// Loads what the policy needs to know about the caller.
pub(super) fn load_context(tx: &mut Tx, subject: &Subject) -> Result<Context, StoreError> {
    check_enabled(tx, subject)?;
    let now = tx.now();
    let mut ctx = Context {
        now_ms: now,
        ..Default::default()
    };
    if subject.has(Role::Patient)
        && let Some(pid) = subject.fhir_ids("Patient").into_iter().next()
        && let Some(p) = tx.current("Patient", &pid, false)?
        && let Some(body) = p
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
    {
        let birth = body
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(BirthDate::parse);
        ctx.own_patient = Some((pid, birth));
    }
    if subject.has(Role::Proxy) {
        for rp_id in subject.fhir_ids("RelatedPerson") {
            let Some(rp) = tx.current("RelatedPerson", &rp_id, false)? else {
                continue;
            };
            let Some(rp) = rp
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
            else {
                continue;
            };
            if rp.get("active").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(end) = rp
                .pointer("/period/end")
                .and_then(Value::as_str)
                .and_then(instant_ms)
                && end < now
            {
                continue;
            }
            let Some(patient_id) = rp.get("patient").and_then(|p| reference_id(p, "Patient"))
            else {
                continue;
            };
            let guardianship = rp
                .get("relationship")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|cc| {
                    cc.get("coding")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .any(|c| {
                    matches!(
                        c.get("code").and_then(Value::as_str),
                        Some("GUARD" | "POWATT" | "DPOWATT" | "HPOWATT")
                    )
                });
            let birth = tx
                .current("Patient", &patient_id, false)?
                .and_then(|p| p.body)
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .and_then(|b| {
                    b.get("birthDate")
                        .and_then(Value::as_str)
                        .and_then(BirthDate::parse)
                });
            ctx.proxy_for.push(ProxyLink {
                patient_id,
                birth_date: birth,
                guardianship,
            });
        }
    }
    ctx.consents = load_consents(tx, subject)?;
    // only clinicians and coordinators can break the glass
    if subject.grants.iter().any(|g| g.role.needs_organization()) {
        let rows = tx.conn().query(
            "SELECT patient_id, expires_at FROM break_glass WHERE subject = ? AND expires_at > ?",
            &[subject.id.as_str().into(), now.into()],
        )?;
        for r in rows {
            let mut it = r.into_iter();
            if let (Some(SqlValue::Text(p)), Some(exp)) =
                (it.next(), it.next().and_then(|v| v.as_i64()))
            {
                ctx.break_glass.push(BreakGlass {
                    patient_id: p,
                    expires_ms: exp,
                });
            }
        }
    }
    Ok(ctx)
}

/// Active Consents whose provisions name the caller (one of its FHIR identities or
/// organisations) as actor, flattened into rules.
fn load_consents(tx: &mut Tx, subject: &Subject) -> Result<Vec<ConsentRule>, StoreError> {
    let mut actors: Vec<(String, String)> = subject.fhir_users.clone();
    for o in subject.care_organizations() {
        actors.push(("Organization".into(), o));
    }
    if actors.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::from(
        "SELECT r.body FROM resources r WHERE r.rtype = 'Consent' AND r.deleted = 0 AND r.rid IN (SELECT rid FROM idx_reference WHERE rtype = 'Consent' AND param = 'actor' AND (",
    );
    let mut params = Vec::new();
    for (i, (t, id)) in actors.iter().enumerate() {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str("(target_type = ? AND target_id = ?)");
        params.push(SqlValue::Text(t.clone()));
        params.push(SqlValue::Text(id.clone()));
    }
    sql.push_str("))");
    let rows = tx.conn().query(&sql, &params)?;
    let mut out = Vec::new();
    for r in rows {
        let Some(body) = r.into_iter().next().and_then(SqlValue::into_string) else {
            continue;
        };
        let Ok(consent) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        if consent.get("status").and_then(Value::as_str) != Some("active") {
            continue;
        }
        let Some(patient_id) = consent
            .get("patient")
            .and_then(|p| reference_id(p, "Patient"))
        else {
            continue;
        };
        let mut stack: Vec<(&Value, bool)> = consent
            .get("provision")
            .map(|p| vec![(p, true)])
            .unwrap_or_default();
        while let Some((prov, inherited_permit)) = stack.pop() {
            let permit = match prov.get("type").and_then(Value::as_str) {
                Some("permit") => true,
                Some("deny") => false,
                _ => inherited_permit,
            };
            let names_actor = prov
                .get("actor")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("reference"))
                .filter_map(|r| r.get("reference").and_then(Value::as_str))
                .filter_map(fhir::json::split_reference)
                .any(|(t, id)| actors.iter().any(|(at, aid)| at == t && aid == id));
            if names_actor {
                let labels = prov
                    .get("securityLabel")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
                    .collect();
                out.push(ConsentRule {
                    patient_id: patient_id.clone(),
                    permit,
                    labels,
                    start_ms: prov
                        .pointer("/period/start")
                        .and_then(Value::as_str)
                        .and_then(instant_ms),
                    end_ms: prov
                        .pointer("/period/end")
                        .and_then(Value::as_str)
                        .and_then(fhir::json::instant_end_ms),
                });
            }
            for nested in prov
                .get("provision")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                stack.push((nested, permit));
            }
        }
    }
    Ok(out)
}
