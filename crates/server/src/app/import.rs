//! Bulk loading for `continuum import`: many resources per store transaction, each validated
//! and indexed exactly as the REST API does. Resources with an id keep it (update-as-create);
//! resources without one get a server id.

use std::collections::{HashMap, HashSet};

use fhir::search::extract;
use fhir::validate_resource;
use serde_json::Value;

use super::{App, system_caller};
use crate::error::ApiError;

/// One resource that could not be imported, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Where it came from (`file.ndjson:12`, `bundle.json entry 3`).
    pub origin: String,
    pub reason: String,
}

/// What a chunk import did.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub stored: usize,
    pub rejected: Vec<Rejected>,
}

/// A chunk validated and indexed, ready to be stored.
pub struct PreparedChunk {
    valid: Vec<(String, String, Value, Vec<fhir::search::IndexEntry>)>,
    rejected: Vec<Rejected>,
}

impl App {
    /// Imports resources in one transaction; invalid ones are reported, valid ones stored.
    pub async fn import_chunk(
        &self,
        items: Vec<(String, Value)>,
    ) -> Result<ImportReport, ApiError> {
        let prepared = self.prepare_chunk(items);
        self.store_chunk(prepared).await
    }

    /// Validates and indexes a chunk (CPU work that can overlap the storing of the previous
    /// chunk).
    pub fn prepare_chunk(&self, items: Vec<(String, Value)>) -> PreparedChunk {
        let registry = self.registry();
        let mut report = ImportReport::default();
        let mut valid = Vec::with_capacity(items.len());
        let now = self.store().clock().now_ms();
        for (origin, resource) in items {
            let rt = match validate_resource(&resource) {
                Ok(rt) => rt.to_string(),
                Err(issues) => {
                    let reason = issues
                        .iter()
                        .take(3)
                        .map(|i| {
                            format!(
                                "{} ({})",
                                i.diagnostics,
                                i.expression.clone().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    report.rejected.push(Rejected { origin, reason });
                    continue;
                }
            };
            if let Some((at, why)) = care::plausible::future_date(&rt, &resource, now) {
                report.rejected.push(Rejected {
                    origin,
                    reason: format!("{why} ({at})"),
                });
                continue;
            }
            if !registry.supports(&rt) {
                report.rejected.push(Rejected {
                    origin,
                    reason: format!("the resource type {rt} is not supported"),
                });
                continue;
            }
            let index = extract(registry, &resource);
            if let Some(issue) = fhir::search::over_index_limit(&rt, &index) {
                report.rejected.push(Rejected {
                    origin,
                    reason: issue.diagnostics,
                });
                continue;
            }
            valid.push((origin, rt, resource, index));
        }
        PreparedChunk {
            valid,
            rejected: report.rejected,
        }
    }
}

impl PreparedChunk {
    /// How many resources passed, and the refusals (a dry run stops here).
    pub fn counts(self) -> (usize, Vec<Rejected>) {
        (self.valid.len(), self.rejected)
    }

    /// How many of the valid resources are Patients (linked after a bulk import).
    pub fn patients(&self) -> usize {
        self.valid
            .iter()
            .filter(|(_, rt, _, _)| rt == "Patient")
            .count()
    }
}

impl App {
    /// Stores a prepared chunk in one transaction, with one AuditEvent.
    pub async fn store_chunk(&self, prepared: PreparedChunk) -> Result<ImportReport, ApiError> {
        let PreparedChunk { valid, rejected } = prepared;
        let mut report = ImportReport {
            stored: 0,
            rejected,
        };
        let caller = std::sync::Arc::new(system_caller("cli:import"));
        let work = super::Work {
            name: "import",
            ..super::Work::job()
        };
        let stored = self
            .run(caller, work, self.job_ctx(), move |bound, _ctx| {
                let mut n = 0;
                let refused = |origin: &str, refusal: store::Refusal| {
                    let why = match refusal {
                        store::Refusal::Forbidden(why) => why,
                        store::Refusal::Hidden => "not permitted".into(),
                    };
                    ApiError::new(403, fhir::IssueType::Forbidden, format!("{origin}: {why}"))
                };
                // ids given by the file that are already stored (or repeated within the
                // chunk) are written one by one as updates, in file order; the rest — the
                // usual case — go through the bulk path together
                let mut existing: HashSet<(String, String)> = HashSet::new();
                let mut by_type: HashMap<&str, Vec<&str>> = HashMap::new();
                for (_, rt, resource, _) in &valid {
                    if let Some(id) = resource.get("id").and_then(Value::as_str) {
                        by_type.entry(rt.as_str()).or_default().push(id);
                    }
                }
                for (rt, ids) in by_type {
                    for id in bound.existing(rt, &ids)?.into_keys() {
                        existing.insert((rt.to_string(), id));
                    }
                }
                let mut seen: HashSet<(String, String)> = HashSet::new();
                let mut fresh: Vec<(String, String, String, Value, Vec<fhir::search::IndexEntry>)> =
                    Vec::new();
                let mut later = Vec::new();
                for (origin, rt, resource, index) in valid {
                    let id = resource
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| bound.new_id());
                    let key = (rt.clone(), id.clone());
                    if existing.contains(&key) || !seen.insert(key) {
                        later.push((origin, rt, id, resource, index));
                    } else {
                        fresh.push((origin, rt, id, resource, index));
                    }
                }
                let mut items: Vec<store::NewResource> = fresh
                    .iter_mut()
                    .map(|(_, rt, id, resource, index)| store::NewResource {
                        resource_type: rt.as_str(),
                        id: id.clone(),
                        resource,
                        index,
                    })
                    .collect();
                match bound.create_many(&mut items)? {
                    Ok(stored) => n += stored.len(),
                    Err((i, refusal)) => return Err(refused(&fresh[i].0, refusal)),
                }
                for (origin, rt, id, mut resource, index) in later {
                    let written = match bound.current_for_write(&rt, &id)? {
                        store::access::Current::Visible(prev) => {
                            bound.update(&prev, &mut resource, &index)?
                        }
                        _ => bound.create(&rt, &id, &mut resource, &index)?,
                    };
                    if let Err(refusal) = written {
                        return Err(refused(&origin, refusal));
                    }
                    n += 1;
                }
                bound.trail.description = Some(format!("continuum import stored {n} resources"));
                Ok::<usize, ApiError>(n)
            })
            .await?;
        report.stored = stored;
        Ok(report)
    }
}
