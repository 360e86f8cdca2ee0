//! The unit of work every entry point runs through: the caller comes in authenticated (by the
//! HTTP layer, a listener or as the system for a job), its work runs in **one** transaction
//! bound to it (`store::CallerTx`), subscriptions are told of what a write wrote before it
//! commits, and the work is audited **exactly once** — a write's event in its own transaction
//! (sealed into the audit store's chain after the commit), a read's (or a refusal's) handed to
//! the audit appender right after; either way before the answer leaves. The FHIR router, the JSON API,
//! background jobs and imports call [`App::run`]; nothing else opens a transaction for a caller.

use std::sync::Arc;

use serde_json::Value;
use store::{AuditTrail, Caller, CallerTx, StoreError};

use super::{App, Ctx};
use crate::error::ApiError;

/// What a unit of work is, for its transaction and its AuditEvent.
#[derive(Debug, Clone)]
pub struct Work {
    /// The interaction recorded (`read`, `search-type`, `create`, `book`, `identity-reviews` …).
    pub name: &'static str,
    /// A read-write transaction (otherwise a read-only snapshot).
    pub writes: bool,
    /// A transaction of its own rather than one group-committed with others (Bundles, which
    /// can fail after writing part of themselves; jobs; imports).
    pub alone: bool,
    /// The caller's network address.
    pub address: Option<String>,
    /// The search, for searches (recorded base64, as IHE BALP does).
    pub query: Option<String>,
    /// Record an AuditEvent only when the work described what it did (`AuditTrail::description`):
    /// a background job that found nothing to do leaves no event.
    pub quiet: bool,
    /// Held to the request time budget (`AppConfig::request_budget`): a request's work is,
    /// the alliance's own (jobs, imports, the demo) is not.
    pub budgeted: bool,
}

impl Work {
    /// A request's work.
    pub fn request(name: &'static str, writes: bool, address: Option<String>) -> Work {
        Work {
            name,
            writes,
            alone: false,
            address,
            query: None,
            quiet: false,
            budgeted: true,
        }
    }

    /// A background job's work: as the system, a transaction of its own, audited when it did
    /// something.
    pub fn job() -> Work {
        Work {
            name: "update",
            writes: true,
            alone: true,
            address: None,
            query: None,
            quiet: true,
            budgeted: false,
        }
    }

    /// The AuditEvent of this work, done by `caller`, with `status` as its outcome.
    pub fn event(&self, caller: &Caller, trail: &AuditTrail, status: u16, now_ms: i64) -> Value {
        let description = trail.description.clone().or_else(|| {
            trail
                .denied
                .then(|| "access to some resources was refused or hidden".to_string())
        });
        crate::audit::audit_event(&crate::audit::AuditFacts {
            interaction: self.name,
            subject_id: &caller.subject.id,
            fhir_users: &caller.subject.fhir_users,
            address: self.address.as_deref(),
            outcome: crate::audit::AuditOutcome::from_status(status),
            description,
            trail,
            query: self.query.as_deref(),
            now_ms,
        })
    }

    fn audited(&self, trail: &AuditTrail) -> bool {
        !self.quiet || trail.description.is_some()
    }
}

/// A failed unit of work, with what it touched (for the audit trail).
struct Failure {
    error: ApiError,
    trail: Box<AuditTrail>,
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure {
            error: ApiError::from(e),
            trail: Box::default(),
        }
    }
}

/// The caller of work the alliance does as itself (jobs, imports, the demo loader): a backend
/// service with every scope, named `who` in the audit trail.
pub fn system_caller(who: &str) -> Caller {
    Caller {
        subject: care::access::Subject {
            id: who.to_string(),
            grants: vec![],
            fhir_users: vec![],
            scopes: care::access::Scopes::parse("system/*.cruds").expect("a valid scope"),
        },
        policy: care::access::PolicyConfig::default(),
    }
}

impl App {
    /// Runs `f` as one unit of work for `caller`: one transaction bound to the caller,
    /// subscriptions told of what a write wrote, one AuditEvent. A failure rolls everything
    /// back and is audited on its own (with the status it answers). When the AuditEvent of a
    /// read cannot be recorded, the answer is withheld (the error instead).
    pub async fn run<T, F>(
        &self,
        caller: Arc<Caller>,
        work: Work,
        ctx: Ctx,
        f: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut CallerTx, &Ctx) -> Result<T, ApiError> + Send + 'static,
    {
        let budget = self.config.request_budget.filter(|_| work.budgeted);
        let result: Result<(T, AuditTrail), Failure> = if work.writes {
            let alone = work.alone;
            let (caller, work) = (caller.clone(), work.clone());
            let unit = move |tx: &mut store::Tx| {
                if let Some(budget) = budget {
                    tx.set_budget(budget, alone)?;
                }
                let mut bound = CallerTx::bind(tx, &caller)?;
                let done = f(&mut bound, &ctx).and_then(|value| {
                    super::subscriptions::notify_written(&mut bound, &ctx)?;
                    Ok(value)
                });
                match done {
                    Ok(value) => {
                        let trail = std::mem::take(&mut bound.trail);
                        if work.audited(&trail) {
                            let mut event = work.event(&caller, &trail, 200, bound.now());
                            bound.append_audit(&mut event)?;
                        }
                        Ok((value, trail))
                    }
                    Err(error) => Err(Failure {
                        error,
                        trail: Box::new(std::mem::take(&mut bound.trail)),
                    }),
                }
            };
            if alone {
                self.store.write_alone(unit).await
            } else {
                self.store.write(unit).await
            }
        } else {
            let caller = caller.clone();
            self.store
                .read(move |tx| {
                    if let Some(budget) = budget {
                        tx.set_budget(budget, true)?;
                    }
                    let mut bound = CallerTx::bind(tx, &caller)?;
                    match f(&mut bound, &ctx) {
                        Ok(value) => Ok((value, std::mem::take(&mut bound.trail))),
                        Err(error) => Err(Failure {
                            error,
                            trail: Box::new(std::mem::take(&mut bound.trail)),
                        }),
                    }
                })
                .await
        };
        let (answer, to_record, status) = match result {
            // a write was audited inside its transaction
            Ok((value, trail)) => {
                let record = (!work.writes && work.audited(&trail)).then_some(trail);
                (Ok(value), record, 200)
            }
            Err(Failure { error, trail }) => {
                let status = error.status;
                (Err(error), Some(*trail), status)
            }
        };
        if let Some(trail) = to_record {
            let event = work.event(&caller, &trail, status, self.store.clock().now_ms());
            if let Err(e) = self.store.append_audit(event).await {
                tracing::error!(error = %e, "could not record the audit event; withholding the response");
                return Err(ApiError::from(e));
            }
        }
        answer
    }

    /// Records a request refused before any data was touched (it could not be parsed).
    pub async fn audit_refusal(
        &self,
        caller: &Caller,
        work: &Work,
        status: u16,
    ) -> Result<(), ApiError> {
        let event = work.event(
            caller,
            &AuditTrail::default(),
            status,
            self.store.clock().now_ms(),
        );
        self.store
            .append_audit(event)
            .await
            .map_err(ApiError::from)?;
        Ok(())
    }

    /// Runs a background job's work as the system (`who`) in one write transaction of its
    /// own: subscriptions are told of what it wrote, and when it did something (a description
    /// is returned) an AuditEvent records it with the resources it touched.
    pub async fn system_job<T, F>(&self, who: &'static str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut CallerTx, &Ctx) -> Result<(T, Option<String>), ApiError> + Send + 'static,
    {
        self.system_work(who, Work::job(), f).await
    }

    /// [`App::system_job`] for a job that only reads: a read-only transaction of its own, audited
    /// when it describes what it did.
    pub async fn system_read<T, F>(&self, who: &'static str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut CallerTx, &Ctx) -> Result<(T, Option<String>), ApiError> + Send + 'static,
    {
        let work = Work {
            writes: false,
            ..Work::job()
        };
        self.system_work(who, work, f).await
    }

    async fn system_work<T, F>(&self, who: &'static str, work: Work, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut CallerTx, &Ctx) -> Result<(T, Option<String>), ApiError> + Send + 'static,
    {
        let caller = Arc::new(system_caller(who));
        self.run(caller, work, self.job_ctx(), move |tx, ctx| {
            let (out, description) = f(tx, ctx)?;
            tx.trail.description = description;
            Ok(out)
        })
        .await
    }
}
