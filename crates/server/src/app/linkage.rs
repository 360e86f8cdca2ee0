//! Identity linkage as Patients are written — candidates from the stored blocking keys, each
//! compared with `care::identity` — a Person resource linking the records for the pairs graded
//! certain, the review queue for probable and possible ones, and the register
//! (`identity_review`) that records each — so that a link can be undone and a rejected pair is
//! never proposed again; and the batch run over every Patient after a bulk load.

use care::identity::link::blocking_keys;
use care::identity::{Grade, LinkConfig, Thresholds, prepare_with, score_pair};
use fhir::search::extract;
use serde_json::{Value, json};
use store::CallerTx;

use super::Ctx;
use super::resources::{Reader, all_of, body, search_request};
use crate::error::ApiError;

pub use care::identity::patient::{PERSON_IDENTIFIER_SYSTEMS, patient_record};

/// Links every Patient against every other, as the system, in one audited transaction (after a
/// bulk load, which does not link as it writes).
pub async fn link_all_patients(api: &super::App) -> Result<LinkReport, ApiError> {
    api.system_job("identity:link-all", |tx, ctx| {
        let report = link_all(tx, ctx)?;
        let described = format!(
            "identity linkage over {} patients: {} linked, {} for review",
            report.patients, report.linked, report.for_review
        );
        Ok((report, Some(described)))
    })
    .await
}

/// The Patients linked with `start`, directly or through others (the register's linked
/// pairs), `start` included, sorted.
fn cluster(tx: &mut CallerTx, start: &str) -> Result<Vec<String>, ApiError> {
    let mut seen = vec![start.to_string()];
    let mut next = vec![start.to_string()];
    while let Some(id) = next.pop() {
        for p in tx
            .on_behalf(store::OnBehalf::Linkage)
            .identity_partners(&id)?
        {
            if !seen.contains(&p) {
                seen.push(p.clone());
                next.push(p);
            }
        }
    }
    seen.sort();
    Ok(seen)
}

/// The Person resources that link `Patient/id`.
fn persons_of(tx: &mut CallerTx, ctx: &Ctx, id: &str) -> Result<Vec<store::Stored>, ApiError> {
    let req = search_request(
        ctx.registry,
        "Person",
        &[("link", format!("Patient/{id}")), ("_count", "50".into())],
    )?;
    Ok(tx.on_behalf(store::OnBehalf::Linkage).search(&req)?.matches)
}

/// Makes the Person resources agree with the register around `id`: one Person links every
/// record of the cluster `id` belongs to (`link.target`, assurance `level3`); a record
/// linked with nobody is in no Person; a Person left with fewer than two records is
/// deleted. Written with the system's rights, in this transaction.
pub(crate) fn sync_person(tx: &mut CallerTx, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
    let members = cluster(tx, id)?;
    let mut persons: Vec<store::Stored> = Vec::new();
    for m in &members {
        for p in persons_of(tx, ctx, m)? {
            if !persons.iter().any(|x| x.id == p.id) {
                persons.push(p);
            }
        }
    }
    let targets = |p: &Value| -> Vec<String> {
        p.get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.pointer("/target/reference").and_then(Value::as_str))
            .filter_map(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
            .collect()
    };
    let mut keep: Option<store::Stored> = None;
    if members.len() >= 2 {
        keep = persons.first().cloned();
        let mut person = keep.as_ref().map(body).unwrap_or_else(|| {
            json!({"resourceType": "Person", "active": true,
                "meta": {"tag": [{"system": care::profile::IDENTITY,
                    "code": "linked-records", "display": "Records of one person, linked by Continuum"}]}})
        });
        let wanted: Vec<Value> = members
            .iter()
            .map(
                |m| json!({"target": {"reference": format!("Patient/{m}")}, "assurance": "level3"}),
            )
            .collect();
        if person.get("link") != Some(&Value::Array(wanted.clone())) {
            person["link"] = Value::Array(wanted);
            let index = extract(fhir::search::registry(), &person);
            let stored = match &keep {
                Some(prev) => {
                    tx.on_behalf(store::OnBehalf::Linkage)
                        .update(prev, &mut person, &index)?
                }
                None => {
                    let pid = tx.new_id();
                    tx.on_behalf(store::OnBehalf::Linkage).create(
                        "Person",
                        &pid,
                        &mut person,
                        &index,
                    )?
                }
            };
            tx.trail.add("Person", &stored.id, &members);
        }
    }
    // every other Person loses this cluster's records
    for p in persons {
        if keep.as_ref().is_some_and(|k| k.id == p.id) {
            continue;
        }
        let mut person = body(&p);
        let left: Vec<String> = targets(&person)
            .into_iter()
            .filter(|t| !members.contains(t))
            .collect();
        if left.len() < 2 {
            tx.on_behalf(store::OnBehalf::Linkage).delete(&p)?;
        } else {
            person["link"] = Value::Array(
                left.iter()
                    .map(|m| json!({"target": {"reference": format!("Patient/{m}")}, "assurance": "level3"}))
                    .collect(),
            );
            let index = extract(fhir::search::registry(), &person);
            tx.on_behalf(store::OnBehalf::Linkage)
                .update(&p, &mut person, &index)?;
        }
        tx.trail.add("Person", &p.id, &members);
    }
    Ok(())
}

/// Grades a pair and records it: certain → linked both ways; probable or possible →
/// waiting for review. Pairs already in the register are left as they are.
fn record(
    tx: &mut CallerTx,
    a: &str,
    b: &str,
    probability: f64,
    grade: Grade,
) -> Result<bool, ApiError> {
    if grade < Grade::Possible
        || tx
            .on_behalf(store::OnBehalf::Linkage)
            .identity_pair(a, b)?
            .is_some()
    {
        return Ok(false);
    }
    let certain = grade == Grade::Certain;
    let id = tx.new_id();
    tx.on_behalf(store::OnBehalf::Linkage).identity_pair_add(
        &id,
        a,
        b,
        probability,
        grade.code(),
        if certain { "linked" } else { "pending" },
    )?;
    if certain {
        tx.on_behalf(store::OnBehalf::Linkage)
            .identity_pair_decide(&id, "linked", "automatic")?;
    }
    Ok(certain)
}

/// Runs linkage for a Patient about to be written (the resource itself is stored as the
/// client sent it; links live in Person resources): records its blocking keys, then compares
/// it with the Patients of each key's block — a block grown past the batch engine's cap
/// (`LinkConfig::max_block`) is skipped for that key, as the batch engine does, so the work of
/// one write is bounded whatever the data.
pub(crate) fn on_write(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    patient: &Value,
) -> Result<(), ApiError> {
    let identity = &ctx.match_model;
    let wanted = prepare_with(&patient_record(id, patient), &identity.rules);
    let keys = blocking_keys(&wanted);
    tx.on_behalf(store::OnBehalf::Linkage)
        .identity_keys_set(id, &keys)?;
    identity.wrote();
    if wanted.birth.is_empty()
        || (wanted.given.is_empty() && wanted.family.is_empty() && !wanted.placeholder)
    {
        return Ok(());
    }
    let candidates = tx.on_behalf(store::OnBehalf::Linkage).identity_candidates(
        id,
        &keys,
        LinkConfig::default().max_block,
    )?;
    let model = super::matching::current_model(ctx);
    let thresholds = Thresholds::default();
    for s in candidates {
        let other = prepare_with(&patient_record(&s.id, &body(&s)), &identity.rules);
        let (_, p, grade) = score_pair(&model, &thresholds, &wanted, &other);
        if record(tx, id, &s.id, p, grade)? {
            sync_person(tx, ctx, id)?;
        }
    }
    Ok(())
}

/// Every current Patient, read with the system's rights (linkage is about the population, not
/// any one caller's view), and its record prepared with the configured name rules.
pub(crate) fn prepared_patients(
    tx: &mut CallerTx,
    ctx: &Ctx,
) -> Result<(Vec<store::Stored>, Vec<care::identity::Prepared>), ApiError> {
    let stored = all_of(
        tx,
        ctx.registry,
        "Patient",
        Reader::System(store::OnBehalf::Linkage),
    )?;
    let prepared = stored
        .iter()
        .map(|s| prepare_with(&patient_record(&s.id, &body(s)), &ctx.match_model.rules))
        .collect();
    Ok((stored, prepared))
}

/// What a whole-population linkage run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub patients: usize,
    pub linked: usize,
    pub for_review: usize,
}

/// Links every Patient against every other (the batch engine, with a model estimated from
/// them), recording and applying the results as [`on_write`] does.
pub(crate) fn link_all(tx: &mut CallerTx, ctx: &Ctx) -> Result<LinkReport, ApiError> {
    let (stored, prepared) = prepared_patients(tx, ctx)?;
    let keys: Vec<(String, Vec<u64>)> = stored
        .iter()
        .zip(&prepared)
        .map(|(s, p)| (s.id.clone(), blocking_keys(p)))
        .collect();
    tx.on_behalf(store::OnBehalf::Linkage)
        .identity_keys_reset(&keys)?;
    let config = LinkConfig {
        report: Grade::Possible,
        ..Default::default()
    };
    let linked = care::identity::link(&prepared, None, &config);
    super::matching::remember_model(ctx, tx.now(), stored.len(), linked.model.clone());
    let mut report = LinkReport {
        patients: stored.len(),
        ..Default::default()
    };
    for l in &linked.links {
        let (a, b) = (&stored[l.left].id, &stored[l.right].id);
        let registered_before = tx
            .on_behalf(store::OnBehalf::Linkage)
            .identity_pair(a, b)?
            .is_some();
        if record(tx, a, b, l.probability, l.grade)? {
            sync_person(tx, ctx, a)?;
            report.linked += 1;
        } else if !registered_before && l.grade >= Grade::Possible {
            report.for_review += 1;
        }
    }
    Ok(report)
}
