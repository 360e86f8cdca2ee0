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
    Ok(cluster_within(tx, start, usize::MAX)?.unwrap_or_default())
}

/// [`cluster`], or `None` as soon as it holds more than `limit` records.
fn cluster_within(
    tx: &mut CallerTx,
    start: &str,
    limit: usize,
) -> Result<Option<Vec<String>>, ApiError> {
    let mut seen: std::collections::BTreeSet<String> = [start.to_string()].into();
    let mut next = vec![start.to_string()];
    while let Some(id) = next.pop() {
        for p in tx
            .on_behalf(store::OnBehalf::Linkage)
            .identity_partners(&id)?
        {
            if seen.insert(p.clone()) {
                if seen.len() > limit {
                    return Ok(None);
                }
                next.push(p);
            }
        }
    }
    Ok(Some(seen.into_iter().collect()))
}

/// The most records automatic links may gather as one person: a child has a record at each
/// organisation and perhaps a duplicate or two, so a chain of certain pairs growing past this
/// is records of different people who look alike (a shared address, names a letter apart) —
/// the pair that would grow it goes to a reviewer instead.
pub const MAX_AUTOMATIC_CLUSTER: usize = 10;

/// Whether linking `a` and `b` keeps their person within [`MAX_AUTOMATIC_CLUSTER`] records.
fn within_cluster_cap(tx: &mut CallerTx, a: &str, b: &str) -> Result<bool, ApiError> {
    let (Some(x), Some(y)) = (
        cluster_within(tx, a, MAX_AUTOMATIC_CLUSTER)?,
        cluster_within(tx, b, MAX_AUTOMATIC_CLUSTER)?,
    ) else {
        return Ok(false);
    };
    let together: std::collections::BTreeSet<&String> = x.iter().chain(&y).collect();
    Ok(together.len() <= MAX_AUTOMATIC_CLUSTER)
}

/// The Person resources that link any of `ids` (one search per hundred records: the
/// reference values are ORed).
fn persons_of(
    tx: &mut CallerTx,
    ctx: &Ctx,
    ids: &[String],
) -> Result<Vec<store::Stored>, ApiError> {
    let mut out: Vec<store::Stored> = Vec::new();
    for chunk in ids.chunks(100) {
        let refs: Vec<String> = chunk.iter().map(|id| format!("Patient/{id}")).collect();
        let req = search_request(
            ctx.registry,
            "Person",
            &[("link", refs.join(",")), ("_count", "1000".into())],
        )?;
        for p in tx.on_behalf(store::OnBehalf::Linkage).search(&req)?.matches {
            if !out.iter().any(|x| x.id == p.id) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Makes the Person resources agree with the register around `id`: one Person links every
/// record of the cluster `id` belongs to (`link.target`, assurance `level3`); a record
/// linked with nobody is in no Person; a Person left with fewer than two records is
/// deleted. Written with the system's rights, in this transaction.
pub(crate) fn sync_person(tx: &mut CallerTx, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
    let members = cluster(tx, id)?;
    let persons = persons_of(tx, ctx, &members)?;
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

/// Grades a pair and records it: certain → linked both ways (unless that would gather more
/// than [`MAX_AUTOMATIC_CLUSTER`] records as one person: then waiting for review, as
/// probable); probable or possible → waiting for review. Pairs already in the register are
/// left as they are.
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
    let (grade, probability) = if grade == Grade::Certain && !within_cluster_cap(tx, a, b)? {
        // held back: shown as the probable pair it is left as
        (
            Grade::Probable,
            probability.min(Thresholds::default().upper - 1e-4),
        )
    } else {
        (grade, probability)
    };
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
    // too few Patients to estimate a model from: the documented prior, as on a write
    let prior = (stored.len() < super::matching::MIN_TRAINING).then(super::matching::prior_model);
    let config = LinkConfig {
        report: Grade::Possible,
        model: prior,
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
