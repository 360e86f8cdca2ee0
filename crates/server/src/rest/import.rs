//! `continuum import` of a Bundle: a transaction or batch Bundle run exactly as `POST /fhir`
//! would run it, as the system. (The bulk path for NDJSON and collections is
//! `app::import`.)

use serde_json::Value;

use super::execute;
use super::interaction::{Interaction, route};
use super::{Method, Prefer};
use crate::app::{App, Work, system_caller};
use crate::error::ApiError;

pub use crate::app::import::{ImportReport, PreparedChunk, Rejected};

impl App {
    /// Runs a transaction or batch Bundle exactly as `POST /fhir` would; returns the response
    /// Bundle. With `dry_run` everything is checked and run, then rolled back (the audit trail
    /// records the check).
    pub async fn import_bundle(&self, bundle: Value, dry_run: bool) -> Result<Value, ApiError> {
        let base = self
            .config()
            .public_base_url
            .clone()
            .unwrap_or_else(|| "http://localhost/fhir".into());
        let interaction = route(
            Method::Post,
            &[],
            Vec::new(),
            Some(bundle),
            &Default::default(),
            self.registry(),
            fhir::search::ParseOptions {
                lenient: false,
                base_url: &base,
                limits: self.config().search_limits,
            },
        )?;
        let Interaction::Bundle { .. } = &interaction else {
            return Err(ApiError::bad_request(
                fhir::IssueType::Invalid,
                "not a batch or transaction Bundle",
            ));
        };
        let ctx = self.ctx(
            base,
            Prefer {
                return_: super::Return::Minimal,
                lenient: false,
            },
        );
        let caller = std::sync::Arc::new(system_caller("cli:import"));
        let work = Work {
            name: "transaction",
            writes: true,
            alone: true,
            address: None,
            query: None,
            quiet: false,
            budgeted: false,
        };
        // a dry run's answer is kept here while its transaction is rolled back by an error
        let checked = std::sync::Arc::new(std::sync::Mutex::new(None));
        let keep = checked.clone();
        let result = self
            .run(caller, work, ctx, move |tx, ctx| {
                tx.trail.description = Some(if dry_run {
                    "continuum import --dry-run of a Bundle (rolled back)".into()
                } else {
                    "continuum import of a Bundle".into()
                });
                let outcome = execute::execute(tx, ctx, interaction)?;
                if dry_run {
                    *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                    return Err(ApiError::new(
                        200,
                        fhir::IssueType::Informational,
                        "dry run: rolled back",
                    ));
                }
                Ok(outcome)
            })
            .await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => checked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or(e)?,
        };
        match outcome {
            execute::Outcome::Json(_, v) => Ok(v),
            _ => Ok(Value::Null),
        }
    }
}
