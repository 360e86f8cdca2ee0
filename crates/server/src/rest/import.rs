//! Bulk loading for `continuum import`: many resources per store transaction, each validated
//! and indexed exactly as the REST API does. Resources with an id keep it (update-as-create);
//! resources without one get a server id.

use fhir::search::extract;
use fhir::validate_resource;
use serde_json::Value;

use super::FhirApi;
use super::execute;
use super::interaction::{Interaction, route};
use super::{Ctx, Method, Prefer};
use crate::error::ApiError;

/// The caller the command line acts as: a backend service with full access (the operator who
/// runs it already holds the database).
pub fn system_caller(name: &str) -> store::Caller {
    store::Caller {
        subject: care::access::Subject {
            id: name.to_string(),
            grants: vec![],
            fhir_users: vec![],
            scopes: care::access::Scopes::parse("system/*.cruds").expect("a valid scope"),
        },
        policy: care::access::PolicyConfig::default(),
    }
}

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

impl FhirApi {
    /// Imports resources in one transaction; invalid ones are reported, valid ones stored.
    pub async fn import_chunk(
        &self,
        items: Vec<(String, Value)>,
    ) -> Result<ImportReport, ApiError> {
        let registry = self.registry;
        let mut report = ImportReport::default();
        let mut valid = Vec::with_capacity(items.len());
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
            if !registry.supports(&rt) {
                report.rejected.push(Rejected {
                    origin,
                    reason: format!("the resource type {rt} is not supported"),
                });
                continue;
            }
            let index = extract(registry, &resource);
            valid.push((origin, rt, resource, index));
        }
        let caller = system_caller("cli:import");
        let stored = self
            .store()
            .write_alone(move |tx| {
                let mut n = 0;
                let mut bound = store::CallerTx::bind(tx, &caller)?;
                for (origin, rt, mut resource, index) in valid {
                    let given = resource
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let id = given.clone().unwrap_or_else(|| bound.new_id());
                    let written = match bound.current_for_write(&rt, &id)? {
                        store::access::Current::Visible(prev) => {
                            bound.update(&prev, &mut resource, &index)?
                        }
                        _ => bound.create(&rt, &id, &mut resource, &index)?,
                    };
                    if let Err(refusal) = written {
                        let why = match refusal {
                            store::Refusal::Forbidden(why) => why,
                            store::Refusal::Hidden => "not permitted".into(),
                        };
                        return Err(ApiError::new(
                            403,
                            fhir::IssueType::Forbidden,
                            format!("{origin}: {why}"),
                        ));
                    }
                    n += 1;
                }
                let trail = std::mem::take(&mut bound.trail);
                let tx = bound.raw();
                let mut event = crate::audit::audit_event(&crate::audit::AuditFacts {
                    interaction: "import",
                    subject_id: "cli:import",
                    fhir_users: &[],
                    address: None,
                    outcome: crate::audit::AuditOutcome::Success,
                    description: Some(format!("continuum import stored {n} resources")),
                    trail: &trail,
                    query: None,
                    now_ms: tx.now(),
                });
                tx.append_audit(&mut event)?;
                Ok::<usize, ApiError>(n)
            })
            .await?;
        report.stored = stored;
        Ok(report)
    }

    /// Runs a transaction or batch Bundle exactly as `POST /fhir` would; returns the response
    /// Bundle.
    pub async fn import_bundle(&self, bundle: Value) -> Result<Value, ApiError> {
        let base = self
            .config
            .public_base_url
            .clone()
            .unwrap_or_else(|| "http://localhost/fhir".into());
        let interaction = route(
            Method::Post,
            &[],
            Vec::new(),
            Some(bundle),
            &Default::default(),
            self.registry,
            &base,
        )?;
        let Interaction::Bundle { .. } = &interaction else {
            return Err(ApiError::bad_request(
                fhir::IssueType::Invalid,
                "not a batch or transaction Bundle",
            ));
        };
        let ctx = Ctx {
            base_url: base,
            prefer: Prefer {
                return_: super::Return::Minimal,
                lenient: false,
            },
            registry: self.registry,
        };
        let caller = system_caller("cli:import");
        let outcome = self
            .store()
            .write_alone(move |tx| {
                let mut bound = store::CallerTx::bind(tx, &caller)?;
                let outcome = execute::execute(&mut bound, &ctx, interaction)?;
                let trail = std::mem::take(&mut bound.trail);
                let mut event = crate::audit::audit_event(&crate::audit::AuditFacts {
                    interaction: "transaction",
                    subject_id: "cli:import",
                    fhir_users: &[],
                    address: None,
                    outcome: crate::audit::AuditOutcome::Success,
                    description: Some("continuum import of a Bundle".into()),
                    trail: &trail,
                    query: None,
                    now_ms: bound.now(),
                });
                bound.raw().append_audit(&mut event)?;
                Ok::<_, ApiError>(outcome)
            })
            .await?;
        match outcome {
            execute::Outcome::Json(_, v) => Ok(v),
            _ => Ok(Value::Null),
        }
    }
}
