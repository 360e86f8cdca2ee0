//! `POST Patient/$match` (FHIR R4): the Patients that may be the person described, scored by
//! the identity engine (`care::identity`). The input `resource` is a Patient (partial, but
//! valid); without a name or a birth date the answer is 400. Candidates are found by several
//! searches (family or given name with the birth date first, then birth date, family name,
//! given name, person-level identifiers) made as the caller
//! — so the access policy filters them like any search — and scored with a Fellegi–Sunter model
//! estimated from the server's own Patients by a background job (`identity:model`, after
//! [`REFRESH_AFTER`] Patient writes or a tenth of the population, whichever is more, and at
//! most every [`MIN_REFRESH_MS`]; never inside a request), a documented prior model while
//! there are fewer than [`MIN_TRAINING`] Patients. The answer is a searchset ordered by
//! score with `search.score` (the match probability) and the `match-grade` extension;
//! `onlyCertainMatches` returns at most the one certain match; `count` bounds the page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use care::identity::{Grade, LinkConfig, Model, NameRules, Thresholds, prepare_with, score_pair};
use fhir::IssueType;
use serde_json::{Value, json};
use store::CallerTx;

use super::Ctx;
use super::resources::body;
use crate::error::ApiError;

/// `entry.search` extension with the grade.
pub const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";
/// Patients needed before the model is estimated from the data.
pub const MIN_TRAINING: usize = 200;
/// Patient writes after which the background job estimates the model again (or a tenth of the
/// Patients it was estimated from, when that is more: the model is about the population).
pub const REFRESH_AFTER: u64 = 500;
/// The least time between two estimates once there is one (an estimate reads every Patient
/// and runs the batch engine on every core; a busy day of writes must not repeat it each
/// minute).
pub const MIN_REFRESH_MS: i64 = 15 * 60 * 1000;

/// A model and what it was estimated from.
#[derive(Debug)]
struct Estimate {
    at_ms: i64,
    patients: usize,
    model: Arc<Model>,
}
/// Candidates read per search.
const PER_SEARCH: usize = 200;

/// The identity engine's shared state: the model `$match` and linkage score with (estimated by
/// the `identity:model` job), how many Patients were written since, and the name rules (the
/// newborn placeholder words).
#[derive(Debug, Default)]
pub struct MatchModel {
    model: Mutex<Option<Estimate>>,
    writes: AtomicU64,
    /// How a newborn's placeholder given name is read.
    pub rules: NameRules,
}

impl MatchModel {
    /// With the default placeholder words and `extra` ones.
    pub fn with_placeholders(extra: &[String]) -> MatchModel {
        MatchModel {
            rules: NameRules::with_extra(extra),
            ..Default::default()
        }
    }

    /// Counts a Patient write.
    pub fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the model should be estimated again at `now_ms`: never estimated, or enough
    /// Patient writes since ([`REFRESH_AFTER`], or a tenth of the population) and at least
    /// [`MIN_REFRESH_MS`] after the last estimate.
    pub fn stale(&self, now_ms: i64) -> bool {
        let last = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = last.as_ref() else {
            return true;
        };
        let enough = REFRESH_AFTER.max(e.patients as u64 / 10);
        self.writes.load(Ordering::Relaxed) >= enough && now_ms - e.at_ms >= MIN_REFRESH_MS
    }
}

/// The model used while the server holds too few Patients to estimate one: agreement
/// probabilities typical of registration data (m) and of a mid-sized population (u).
pub fn prior_model() -> Model {
    use care::identity::Field;
    let level = |f: Field, m: &[f64], u: &[f64]| -> (Vec<f64>, Vec<f64>) {
        assert_eq!(m.len(), f.levels());
        (m.to_vec(), u.to_vec())
    };
    let table: Vec<(Vec<f64>, Vec<f64>)> = care::identity::Field::ALL
        .iter()
        .map(|&f| match f {
            Field::Given => level(f, &[0.03, 0.04, 0.08, 0.85], &[0.90, 0.07, 0.02, 0.01]),
            Field::Family => level(f, &[0.03, 0.03, 0.06, 0.88], &[0.92, 0.06, 0.015, 0.005]),
            Field::Birth => level(f, &[0.02, 0.02, 0.06, 0.90], &[0.95, 0.045, 0.0049, 0.0001]),
            Field::StreetNumber => level(f, &[0.15, 0.85], &[0.99, 0.01]),
            // another street altogether is counted here once: a fifth of children's true
            // pairs moved between registrations
            Field::Address1 => level(f, &[0.22, 0.08, 0.70], &[0.97, 0.02, 0.01]),
            Field::Address2 => level(f, &[0.20, 0.10, 0.70], &[0.97, 0.02, 0.01]),
            Field::Place => level(f, &[0.08, 0.05, 0.12, 0.75], &[0.90, 0.05, 0.03, 0.02]),
            Field::Phone => level(f, &[0.30, 0.10, 0.60], &[0.999, 0.0005, 0.0005]),
            Field::Sex => level(f, &[0.02, 0.98], &[0.5, 0.5]),
        })
        .collect();
    Model {
        m: std::array::from_fn(|i| table[i].0.clone()),
        u: std::array::from_fn(|i| table[i].1.clone()),
        lambda: 0.05,
        iterations: 0,
    }
}

/// The model estimated last, or the prior — never estimated here (requests do not read every
/// Patient).
pub(crate) fn current_model(ctx: &Ctx) -> Arc<Model> {
    ctx.match_model
        .model
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|e| e.model.clone())
        .unwrap_or_else(|| Arc::new(prior_model()))
}

/// Keeps a model just estimated from `patients` Patients (by a whole-population linkage run or
/// the model job).
pub(crate) fn remember_model(ctx: &Ctx, now: i64, patients: usize, model: Model) {
    *ctx.match_model
        .model
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(Estimate {
        at_ms: now,
        patients,
        model: Arc::new(model),
    });
    ctx.match_model.writes.store(0, Ordering::Relaxed);
}

/// Estimates the model from every Patient (the prior while there are fewer than
/// [`MIN_TRAINING`]) and keeps it: the `identity:model` job, in its own transaction, off the
/// request path. Returns the Patients it was estimated from.
pub(crate) fn refresh_model(tx: &mut CallerTx, ctx: &Ctx) -> Result<usize, ApiError> {
    let (_, patients) = crate::app::linkage::prepared_patients(tx, ctx)?;
    let model = if patients.len() < MIN_TRAINING {
        prior_model()
    } else {
        care::identity::link::estimate(&patients, None, &LinkConfig::default())
    };
    remember_model(ctx, tx.now(), patients.len(), model);
    Ok(patients.len())
}

/// What `Patient/$match` is asked: the Patient described, whether only a certain match is
/// wanted, how many candidates.
#[derive(Debug, Clone)]
pub struct MatchRequest {
    pub patient: Value,
    pub only_certain: bool,
    pub count: usize,
}

/// The Patients the caller may see that may be the person described, scored and graded, as a
/// searchset ordered by score.
pub fn patient_match(
    tx: &mut CallerTx,
    ctx: &Ctx,
    request: MatchRequest,
) -> Result<Value, ApiError> {
    let MatchRequest {
        patient,
        only_certain,
        count,
    } = request;
    let patient = &patient;
    let record = crate::app::linkage::patient_record(
        patient.get("id").and_then(Value::as_str).unwrap_or(""),
        patient,
    );
    if record.given.is_empty() && record.family.is_empty() {
        return Err(too_little("a name"));
    }
    let birth = care::identity::normalize::date(&record.birth_date);
    if birth.year.is_none() {
        return Err(too_little("a birth date"));
    }
    super::resources::scope_reads(tx, &["Patient"])?;
    let wanted = prepare_with(&record, &ctx.match_model.rules);
    // candidates: each search made as the caller (hidden patients never appear); the narrow
    // ones first, so that a crowd sharing one birth date does not crowd out the person
    let mut searches: Vec<Vec<(String, String)>> = Vec::new();
    for (param, value) in [("family", &record.family), ("given", &record.given)] {
        if !value.is_empty() && !record.birth_date.is_empty() {
            searches.push(vec![
                (param.into(), value.clone()),
                ("birthdate".into(), record.birth_date.clone()),
            ]);
        }
    }
    if !record.birth_date.is_empty() {
        searches.push(vec![("birthdate".into(), record.birth_date.clone())]);
    }
    if !record.family.is_empty() {
        searches.push(vec![("family".into(), record.family.clone())]);
    }
    if !record.given.is_empty() {
        searches.push(vec![("given".into(), record.given.clone())]);
    }
    for i in &record.identifiers {
        searches.push(vec![("identifier".into(), i.clone())]);
    }
    let mut found: Vec<store::Stored> = Vec::new();
    for mut pairs in searches {
        pairs.push(("_count".into(), PER_SEARCH.to_string()));
        let Ok(req) = fhir::search::parse_search(
            ctx.registry,
            "Patient",
            &pairs,
            &fhir::search::ParseOptions {
                lenient: true,
                base_url: "",
                limits: Default::default(),
            },
        ) else {
            continue;
        };
        for s in tx.search(&req)?.matches {
            if !found.iter().any(|f| f.id == s.id)
                && Some(s.id.as_str()) != patient.get("id").and_then(Value::as_str)
            {
                found.push(s);
            }
        }
    }
    let model = current_model(ctx);
    let thresholds = Thresholds::default();
    let mut scored: Vec<(f64, Grade, store::Stored)> = found
        .into_iter()
        .map(|s| {
            let candidate = prepare_with(
                &crate::app::linkage::patient_record(&s.id, &body(&s)),
                &ctx.match_model.rules,
            );
            let (_, probability, grade) = score_pair(&model, &thresholds, &wanted, &candidate);
            (probability, grade, s)
        })
        .filter(|(_, grade, _)| *grade >= Grade::Possible)
        .collect();
    scored.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.0.total_cmp(&a.0))
            .then(a.2.id.cmp(&b.2.id))
    });
    if only_certain {
        scored.retain(|(_, g, _)| *g == Grade::Certain);
        scored.truncate(1);
    }
    scored.truncate(count);
    let entries: Vec<Value> = scored
        .iter()
        .map(|(p, grade, s)| {
            json!({
                "fullUrl": format!("{}/Patient/{}", ctx.base_url, s.id),
                "resource": body(s),
                "search": {"mode": "match", "score": (p * 10_000.0).round() / 10_000.0,
                    "extension": [{"url": MATCH_GRADE, "valueCode": grade.code()}]}
            })
        })
        .collect();
    Ok(
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    )
}

fn too_little(what: &str) -> ApiError {
    ApiError::new(
        400,
        IssueType::Required,
        format!("$match needs at least a name and a birth date in 'resource'; {what} is missing"),
    )
    .at("resource")
}

/// The `identity:model` job: when the model is stale ([`MatchModel::stale`]), estimates it
/// again from every Patient in a read-only transaction of its own (audited, as the system);
/// returns the number of Patients it was estimated from, or `None` when it was fresh.
pub async fn refresh_when_stale(app: &super::App) -> Result<Option<usize>, ApiError> {
    let ctx = app.job_ctx();
    if !ctx.match_model.stale(app.store().clock().now_ms()) {
        return Ok(None);
    }
    app.system_read("identity:model", |tx, ctx| {
        let n = refresh_model(tx, ctx)?;
        Ok((Some(n), Some(model_estimated(n))))
    })
    .await
}

/// What an estimate did, in words (the job's log line and its AuditEvent).
pub fn model_estimated(patients: usize) -> String {
    format!("identity model estimated from {patients} patients")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_stale_after_enough_writes_and_time() {
        let m = MatchModel::default();
        assert!(m.stale(0), "never estimated");
        *m.model.lock().unwrap() = Some(Estimate {
            at_ms: 0,
            patients: 20_000,
            model: Arc::new(prior_model()),
        });
        for _ in 0..1_999 {
            m.wrote();
        }
        let later = MIN_REFRESH_MS;
        assert!(!m.stale(later), "fewer writes than a tenth of 20,000");
        m.wrote();
        assert!(m.stale(later));
        assert!(!m.stale(later - 1), "too soon after the last estimate");
    }
}
