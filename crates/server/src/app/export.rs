//! FHIR Bulk Data export (Bulk Data Access IG 2.0.0): the kick-off (`/$export`,
//! `/Patient/$export`, `/Group/{id}/$export`, GET or POST), the job register (`store::exports`)
//! that survives a restart, the worker that writes each resource type's NDJSON file under the
//! caller's view (page by page, never a whole file in memory), the status and manifest, the
//! download, cancellation, and the expiry of old files.
//!
//! Every resource in a file passed `care::access` for the caller who asked: the worker reads as
//! that caller (their subject and policy are kept with the job), through the caller-bound store,
//! so a hidden resource is neither in a file nor in a count. Each type's extraction is one unit
//! of work with one AuditEvent naming the patients whose data it disclosed (the IHE BALP Query
//! pattern); the kick-off, each download and a cancellation are audited too. A status poll reads
//! only the register and is not.

use std::collections::{BTreeSet, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use care::access::{Action, Grant, PolicyConfig, Role, Scopes, Subject};
use fhir::search::{ParseOptions, parse_search};
use fhir::{Issue, IssueType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{Caller, CallerTx, ExportJob, OnBehalf};

use super::resources::search_request;
use super::{App, Prefer, Work};
use crate::error::ApiError;

/// Resources per page the worker reads (one query each).
const PAGE: usize = 1000;

/// How long a worker's claim on a job (one type's extraction) lasts before another worker may
/// take it (its worker died): renewed every [`RENEW_EVERY`] while the worker writes, released
/// when the type is recorded.
const LEASE_MS: i64 = 3 * 60_000;
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// Jobs one caller may have waiting or running at once (more is 429).
const MAX_RUNNING_PER_CALLER: i64 = 3;

/// The output formats accepted (all the same NDJSON).
const FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Where export files go and how long they are kept.
#[derive(Debug)]
pub struct ExportConfig {
    /// The folder of export files (one sub-folder per job).
    pub dir: PathBuf,
    /// How long a finished job's files are kept.
    pub retention: Duration,
    /// Start the worker as soon as a job is accepted (otherwise the scheduler's next run does).
    pub start_at_once: bool,
    /// One worker per process at a time.
    running: tokio::sync::Mutex<()>,
    /// Jobs cancelled while their worker runs (it stops at its next page).
    cancelled: Mutex<HashSet<String>>,
}

impl ExportConfig {
    pub fn new(dir: PathBuf) -> ExportConfig {
        ExportConfig {
            dir,
            retention: Duration::from_secs(24 * 3600),
            start_at_once: true,
            running: tokio::sync::Mutex::new(()),
            cancelled: Mutex::new(HashSet::new()),
        }
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn is_cancelled(&self, id: &str) -> bool {
        self.cancelled.lock().is_ok_and(|c| c.contains(id))
    }
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig::new(std::env::temp_dir().join("continuum-exports"))
    }
}

/// Where an export was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "group", rename_all = "lowercase")]
pub enum Level {
    /// `/$export`: every resource the caller may read.
    System,
    /// `/Patient/$export`: every patient's compartment the caller may read.
    Patient,
    /// `/Group/{id}/$export`: the compartments of the group's members.
    Group(String),
}

/// What a kick-off asked for, as the job keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportParams {
    pub level: Level,
    /// The types exported, in order.
    pub types: Vec<String>,
    /// `_since` (epoch ms): resources changed after it.
    pub since_ms: Option<i64>,
    /// `_typeFilter`: per type, its search queries (a resource matching any of them).
    pub filters: Vec<(String, String)>,
    /// The patients a Group or `patient` names (`None`: every patient).
    pub patients: Option<Vec<String>>,
    /// Types asked for that the caller's scopes do not allow, with why (the manifest's error
    /// file says so).
    pub omitted: Vec<(String, String)>,
}

/// One finished type of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The file's name in the job's folder (none when nothing matched).
    pub file: Option<String>,
    pub count: u64,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueType::Invalid, msg)
}

/// A kick-off's parameters as `(name, value)` pairs, and the patients a POST names.
pub type KickOffParameters = (Vec<(String, String)>, Vec<String>);

/// The kick-off's parameters, from the query (GET) or a Parameters body (POST), as
/// `(name, value)` pairs; a POST's `patient` references come separately.
pub fn parameters_of_body(body: &Value) -> Result<KickOffParameters, ApiError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad(
            "a POST kick-off sends a Parameters resource (or nothing); see the Bulk Data Access IG",
        ));
    }
    let mut pairs = Vec::new();
    let mut patients = Vec::new();
    for p in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if name == "patient" {
            let r = p
                .pointer("/valueReference/reference")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("'patient' takes a valueReference to a Patient"))?;
            let reference = &p["valueReference"];
            let id = fhir::json::reference_id(reference, "Patient")
                .ok_or_else(|| bad(format!("'{r}' is not a reference to a Patient")))?;
            patients.push(id.to_string());
            continue;
        }
        let value = [
            "valueString",
            "valueInstant",
            "valueDateTime",
            "valueCode",
            "valueUri",
        ]
        .iter()
        .find_map(|k| p.get(*k).and_then(Value::as_str))
        .ok_or_else(|| {
            bad(format!(
                "the parameter '{name}' has no string or instant value"
            ))
        })?;
        pairs.push((name.to_string(), value.to_string()));
    }
    Ok((pairs, patients))
}

/// `_typeFilter` values: `Type?query`, several joined by commas (a comma starts a new filter
/// only where a type name and `?` follow, so `code=a,b` stays one query).
fn split_filters(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in value.match_indices(',') {
        let rest = &value[i + 1..];
        let starts_filter = rest
            .split_once('?')
            .is_some_and(|(t, _)| !t.is_empty() && fhir::SUPPORTED_RESOURCE_TYPES.contains(&t));
        if starts_filter {
            out.push(&value[start..i]);
            start = i + 1;
        }
    }
    out.push(&value[start..]);
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// The types an export may hold at a level (AuditEvents are read in the audit trail).
fn types_at(level: &Level) -> Vec<&'static str> {
    fhir::SUPPORTED_RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| *t != "AuditEvent")
        .filter(|t| *level == Level::System || fhir::compartment::in_patient_compartment(t))
        .collect()
}

/// Reads a kick-off's parameters: 400 (in words) for what the IG does not allow or this server
/// does not do. Returns the request before the caller's scopes are applied.
pub fn parse_request(
    registry: &'static fhir::search::Registry,
    level: Level,
    pairs: &[(String, String)],
    patients: Vec<String>,
    prefer: &Prefer,
) -> Result<ExportParams, ApiError> {
    let mut types: Option<Vec<String>> = None;
    let mut since_ms = None;
    let mut filters: Vec<(String, String)> = Vec::new();
    let allowed = types_at(&level);
    for (k, v) in pairs {
        match k.as_str() {
            "_outputFormat" => {
                if !FORMATS.contains(&v.as_str()) {
                    return Err(bad(format!(
                        "_outputFormat '{v}' is not available; this server writes NDJSON ({})",
                        FORMATS.join(", ")
                    )));
                }
            }
            "_since" => {
                let ok = v.contains('T')
                    && (v.ends_with('Z') || v[v.len().saturating_sub(6)..].starts_with(['+', '-']));
                since_ms = fhir::primitive::instant_ms(v).filter(|_| ok);
                if since_ms.is_none() {
                    return Err(bad(format!(
                        "_since '{v}' is not a FHIR instant (e.g. 2026-01-31T09:00:00Z, with its time zone)"
                    )));
                }
            }
            "_type" => {
                let list = types.get_or_insert_with(Vec::new);
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !fhir::SUPPORTED_RESOURCE_TYPES.contains(&t) {
                        return Err(bad(format!(
                            "_type: '{t}' is not a resource type this server holds"
                        )));
                    }
                    if !allowed.contains(&t) {
                        return Err(bad(match level {
                            Level::System => format!(
                                "_type: {t} is not exported (the audit trail is read with AuditEvent?…)"
                            ),
                            _ => format!(
                                "_type: {t} is not in the Patient compartment; a patient-level export holds patients' data (export {t} with /$export)"
                            ),
                        }));
                    }
                    if !list.iter().any(|x| x == t) {
                        list.push(t.to_string());
                    }
                }
            }
            "_typeFilter" => {
                for f in split_filters(v) {
                    let (t, q) = f.split_once('?').ok_or_else(|| {
                        bad(format!(
                            "_typeFilter '{f}' is not a search: Type?param=value"
                        ))
                    })?;
                    if !allowed.contains(&t) {
                        return Err(bad(format!(
                            "_typeFilter '{f}': {t} is not exported at this level"
                        )));
                    }
                    let query: Vec<(String, String)> =
                        form_urlencoded::parse(q.as_bytes()).into_owned().collect();
                    for (name, _) in &query {
                        if name.starts_with('_')
                            && !matches!(
                                name.as_str(),
                                "_id" | "_lastUpdated" | "_tag" | "_profile" | "_security" | "_has"
                            )
                        {
                            return Err(bad(format!(
                                "_typeFilter '{f}': {name} is not a filter (only search criteria are)"
                            )));
                        }
                    }
                    parse_search(
                        registry,
                        t,
                        &query,
                        &ParseOptions {
                            lenient: false,
                            base_url: "",
                            limits: Default::default(),
                        },
                    )
                    .map_err(|issues| {
                        let mut e = ApiError::with_issues(400, issues);
                        e = e.context(&format!("_typeFilter '{f}'"));
                        e
                    })?;
                    filters.push((t.to_string(), q.to_string()));
                }
            }
            "patient" => {
                return Err(bad(
                    "'patient' is sent in a POST kick-off's Parameters (valueReference), not in the URL",
                ));
            }
            "_elements"
            | "includeAssociatedData"
            | "_until"
            | "organizeOutputBy"
            | "allowPartialManifests"
                if prefer.lenient => {}
            "_elements"
            | "includeAssociatedData"
            | "_until"
            | "organizeOutputBy"
            | "allowPartialManifests" => {
                return Err(ApiError::new(
                    400,
                    IssueType::NotSupported,
                    format!(
                        "{k} is not supported by this server (send Prefer: handling=lenient to have it ignored)"
                    ),
                ));
            }
            _ if prefer.lenient => {}
            _ => {
                return Err(bad(format!(
                    "'{k}' is not a parameter of $export (_outputFormat, _since, _type, _typeFilter{})",
                    if level == Level::System {
                        ""
                    } else {
                        ", and patient in a POST"
                    }
                )));
            }
        }
    }
    if let Some(t) = &types {
        for (ft, _) in &filters {
            if !t.contains(ft) {
                return Err(bad(format!(
                    "_typeFilter names {ft}, which _type does not list; add it to _type"
                )));
            }
        }
    }
    if level == Level::System && !patients.is_empty() {
        return Err(bad(
            "'patient' is a parameter of Patient/$export and Group/[id]/$export",
        ));
    }
    Ok(ExportParams {
        types: types.unwrap_or_else(|| allowed.iter().map(|t| t.to_string()).collect()),
        level,
        since_ms,
        filters,
        patients: (!patients.is_empty()).then_some(patients),
        omitted: Vec::new(),
    })
}

/// The caller as the job keeps it.
fn caller_json(c: &Caller) -> String {
    let s = &c.subject;
    json!({
        "id": s.id,
        "grants": s.grants.iter().map(|g| json!({"role": g.role.as_str(), "organization": g.organization})).collect::<Vec<_>>(),
        "fhirUsers": s.fhir_users,
        "scopes": s.scopes.scopes.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "),
        "policy": {
            "proxyFullUntil": c.policy.proxy_full_until,
            "proxyEndsAt": c.policy.proxy_ends_at,
            "patientSelfFrom": c.policy.patient_self_from,
            "proxyAnswersUntil": c.policy.proxy_answers_until,
            "breakGlassMinutes": c.policy.break_glass_minutes,
        },
    })
    .to_string()
}

fn caller_from(text: &str) -> Option<Caller> {
    let v: Value = serde_json::from_str(text).ok()?;
    let grants = v
        .get("grants")?
        .as_array()?
        .iter()
        .map(|g| {
            Some(Grant {
                role: Role::parse(g.get("role")?.as_str()?)?,
                organization: g
                    .get("organization")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let fhir_users: Vec<(String, String)> =
        serde_json::from_value(v.get("fhirUsers")?.clone()).ok()?;
    let p = v.get("policy")?;
    let int = |k: &str| p.get(k).and_then(Value::as_i64);
    Some(Caller {
        subject: Subject {
            id: v.get("id")?.as_str()?.to_string(),
            grants,
            fhir_users,
            scopes: Scopes::parse(v.get("scopes")?.as_str()?).ok()?,
        },
        policy: PolicyConfig {
            proxy_full_until: int("proxyFullUntil")? as i32,
            proxy_ends_at: int("proxyEndsAt")? as i32,
            patient_self_from: int("patientSelfFrom")? as i32,
            proxy_answers_until: int("proxyAnswersUntil")? as i32,
            break_glass_minutes: int("breakGlassMinutes")?,
        },
    })
}

/// Accepts a kick-off: applies the caller's scopes to the types, reads the Group's members
/// under the caller's view, registers the job (one unit of work, audited), and starts the
/// worker. The job's id.
pub async fn kick_off(
    app: &App,
    caller: Arc<Caller>,
    mut params: ExportParams,
    request_url: String,
    address: Option<String>,
) -> Result<String, ApiError> {
    let ctx = app.ctx(String::new(), Prefer::default());
    let id = uuid::Uuid::new_v4().simple().to_string();
    let job_id = id.clone();
    let work = Work::request("export", true, address);
    app.run(caller, work, ctx, move |tx, _ctx| {
        let owner = tx.caller().subject.id.clone();
        if tx.on_behalf(OnBehalf::BulkExport).export_running(&owner)? >= MAX_RUNNING_PER_CALLER {
            let mut e = ApiError::new(
                429,
                IssueType::Transient,
                format!("{MAX_RUNNING_PER_CALLER} of your exports are already waiting or running; wait for one to finish (or cancel one) first"),
            );
            e.headers.push(("Retry-After", "30".into()));
            return Err(e);
        }
        let explicit = params.types.len() < types_at(&params.level).len();
        let mut kept = Vec::new();
        for t in std::mem::take(&mut params.types) {
            match tx.scope_allows(&t, Action::Read) {
                Ok(()) => kept.push(t),
                Err(why) if explicit => params.omitted.push((t, why)),
                Err(_) => {}
            }
        }
        if kept.is_empty() {
            return Err(ApiError::new(
                403,
                IssueType::Forbidden,
                "your access token's scopes allow reading none of the types asked for",
            ));
        }
        params.types = kept;
        if let Level::Group(gid) = &params.level {
            let group = tx
                .current("Group", gid, false)?
                .ok_or_else(|| ApiError::not_found(format!("Group/{gid} is not known")))?;
            let body = super::resources::body(&group);
            let members: Vec<String> = body
                .get("member")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|m| m.get("inactive").and_then(Value::as_bool) != Some(true))
                .filter_map(|m| m.get("entity").and_then(|e| fhir::json::reference_id(e, "Patient")))
                .map(str::to_string)
                .collect();
            params.patients = Some(match params.patients.take() {
                Some(asked) => {
                    if let Some(p) = asked.iter().find(|p| !members.contains(p)) {
                        return Err(bad(format!("Patient/{p} is not a member of Group/{gid}")));
                    }
                    asked
                }
                None => members,
            });
        } else if let Some(asked) = &params.patients {
            for p in asked {
                if tx.current("Patient", p, false)?.is_none() {
                    return Err(ApiError::not_found(format!("Patient/{p} is not known")));
                }
            }
        }
        let now = tx.now();
        let job = ExportJob {
            id: id.clone(),
            owner: owner.clone(),
            caller: caller_json(tx.caller()),
            request_url,
            params: serde_json::to_string(&params).map_err(|e| ApiError::new(500, IssueType::Exception, e.to_string()))?,
            status: "accepted".into(),
            transaction_ms: now,
            created_ms: now,
            updated_ms: now,
            lease_ms: 0,
            output: "[]".into(),
            message: None,
        };
        tx.on_behalf(OnBehalf::BulkExport).export_add(&job)?;
        tx.trail.description = Some(format!(
            "bulk export {id} accepted: {}",
            params.types.join(", ")
        ));
        Ok(())
    })
    .await?;
    if app.config().export.start_at_once {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = run_pending(&app).await {
                tracing::warn!(status = e.status, "the export worker stopped on an error");
            }
        });
    }
    Ok(job_id)
}

/// Where a job stands, for its status URL.
#[derive(Debug)]
pub enum Status {
    /// Waiting or running: words for `X-Progress`.
    InProgress(String),
    /// Done: the manifest.
    Completed { manifest: Value, expires_ms: i64 },
    /// Failed, in words.
    Failed(String),
}

/// A job the caller owns, read in a unit of work.
fn owned(tx: &mut CallerTx, id: &str) -> Result<ExportJob, ApiError> {
    let owner = tx.caller().subject.id.clone();
    let job = tx.on_behalf(OnBehalf::BulkExport).export_job(id)?;
    match job {
        Some(j) if j.owner == owner && j.status != "cancelled" => Ok(j),
        Some(j) if j.owner == owner => Err(ApiError::not_found(format!(
            "export {id} was cancelled and its files deleted"
        ))),
        _ => Err(ApiError::not_found(format!(
            "there is no export {id} of yours"
        ))),
    }
}

fn outputs(job: &ExportJob) -> Vec<Output> {
    serde_json::from_str(&job.output).unwrap_or_default()
}

fn job_params(job: &ExportJob) -> Result<ExportParams, ApiError> {
    serde_json::from_str(&job.params).map_err(|e| {
        ApiError::new(
            500,
            IssueType::Exception,
            format!("export {} is unreadable: {e}", job.id),
        )
    })
}

/// The status of the caller's job (`base` is the FHIR base the files are named under). Reads
/// only the register: not audited.
pub async fn status(
    app: &App,
    caller: Arc<Caller>,
    id: String,
    base: String,
) -> Result<Status, ApiError> {
    let ctx = app.ctx(base.clone(), Prefer::default());
    let retention = app.config().export.retention.as_millis() as i64;
    let work = Work {
        quiet: true,
        ..Work::request("export-status", false, None)
    };
    app.run(caller, work, ctx, move |tx, _| {
        let job = owned(tx, &id)?;
        let done = outputs(&job);
        let params = job_params(&job)?;
        Ok(match job.status.as_str() {
            "completed" => {
                let url = |file: &str| format!("{base}/$export-file/{}/{file}", job.id);
                let output: Vec<Value> = done
                    .iter()
                    .filter_map(|o| {
                        o.file.as_ref().map(|f| json!({"type": o.resource_type, "url": url(f), "count": o.count}))
                    })
                    .collect();
                let error: Vec<Value> = if params.omitted.is_empty() {
                    vec![]
                } else {
                    vec![json!({"type": "OperationOutcome", "url": url(ERRORS_FILE), "count": params.omitted.len()})]
                };
                Status::Completed {
                    manifest: json!({
                        "transactionTime": fhir::primitive::format_instant(job.transaction_ms),
                        "request": job.request_url,
                        "requiresAccessToken": true,
                        "output": output,
                        "error": error,
                    }),
                    expires_ms: job.updated_ms + retention,
                }
            }
            "failed" => Status::Failed(job.message.unwrap_or_else(|| "the export failed".into())),
            _ => {
                let written: u64 = done.iter().map(|o| o.count).sum();
                Status::InProgress(if job.status == "accepted" {
                    "waiting to start".to_string()
                } else {
                    format!(
                        "{} of {} types done, {written} resources written",
                        done.len(),
                        params.types.len()
                    )
                })
            }
        })
    })
    .await
}

/// The file of OperationOutcomes a manifest's `error` names.
const ERRORS_FILE: &str = "OperationOutcome.ndjson";

/// A file of the caller's completed job, for download: its path (one audited unit of work).
pub async fn file(
    app: &App,
    caller: Arc<Caller>,
    id: String,
    name: String,
    address: Option<String>,
) -> Result<PathBuf, ApiError> {
    let ctx = app.ctx(String::new(), Prefer::default());
    let dir = app.config().export.job_dir(&id);
    let work = Work::request("export-download", false, address);
    app.run(caller, work, ctx, move |tx, _| {
        let job = owned(tx, &id)?;
        if job.status != "completed" {
            return Err(ApiError::new(
                409,
                IssueType::Conflict,
                format!("export {id} is not complete yet; poll its status URL"),
            ));
        }
        let described = if name == ERRORS_FILE && !job_params(&job)?.omitted.is_empty() {
            Some("the error file".to_string())
        } else {
            outputs(&job)
                .into_iter()
                .find(|o| o.file.as_deref() == Some(name.as_str()))
                .map(|o| format!("{} {} resources", o.count, o.resource_type))
        };
        let Some(what) = described else {
            return Err(ApiError::not_found(format!(
                "export {id} has no file {name}"
            )));
        };
        tx.trail.description = Some(format!("bulk export {id}: {name} downloaded ({what})"));
        Ok(dir.join(&name))
    })
    .await
}

/// Cancels (or, once complete, deletes) the caller's job and its files.
pub async fn cancel(
    app: &App,
    caller: Arc<Caller>,
    id: String,
    address: Option<String>,
) -> Result<(), ApiError> {
    let ctx = app.ctx(String::new(), Prefer::default());
    let work = Work::request("export-cancel", true, address);
    let job_id = id.clone();
    app.run(caller, work, ctx, move |tx, _| {
        let job = owned(tx, &id)?;
        let now = tx.now();
        let register = tx.on_behalf(OnBehalf::BulkExport);
        if !register.export_finish(
            &job.id,
            "cancelled",
            Some("cancelled by its requester"),
            now,
        )? {
            register.export_cancel(&job.id, now)?;
        }
        tx.trail.description = Some(format!("bulk export {id} cancelled"));
        Ok(())
    })
    .await?;
    let config = &app.config().export;
    if let Ok(mut c) = config.cancelled.lock() {
        c.insert(job_id.clone());
    }
    let _ = std::fs::remove_dir_all(config.job_dir(&job_id));
    Ok(())
}

/// Runs waiting jobs until none is left (one worker per process): what it did, in words.
pub async fn run_pending(app: &App) -> Result<Option<String>, ApiError> {
    let _one = app.config().export.running.lock().await;
    let mut done = Vec::new();
    while let Some(words) = step(app).await? {
        done.push(words);
    }
    Ok((!done.is_empty()).then(|| done.join("; ")))
}

/// One step of the worker: takes the next waiting job and writes its next type (or completes
/// it). What it did, or `None` when no job was waiting.
pub async fn step(app: &App) -> Result<Option<String>, ApiError> {
    let claimed = app
        .system_job("bulk-export", |tx, _| {
            let now = tx.now();
            Ok((
                tx.on_behalf(OnBehalf::BulkExport)
                    .export_claim(now, now + LEASE_MS)?,
                None,
            ))
        })
        .await?;
    let Some(job) = claimed else {
        return Ok(None);
    };
    let finish = |status: &'static str, message: Option<String>| {
        let id = job.id.clone();
        async move {
            app.system_job("bulk-export", move |tx, _| {
                let now = tx.now();
                tx.on_behalf(OnBehalf::BulkExport).export_finish(
                    &id,
                    status,
                    message.as_deref(),
                    now,
                )?;
                Ok(((), None))
            })
            .await
        }
    };
    let (params, caller) = match (job_params(&job), caller_from(&job.caller)) {
        (Ok(p), Some(c)) => (p, c),
        _ => {
            finish(
                "failed",
                Some("the job's request could not be read back".into()),
            )
            .await?;
            return Ok(Some(format!("export {} failed", job.id)));
        }
    };
    let mut done = outputs(&job);
    let dir = app.config().export.job_dir(&job.id);
    let Some(next) = params
        .types
        .iter()
        .find(|t| !done.iter().any(|o| &o.resource_type == *t))
        .cloned()
    else {
        if !params.omitted.is_empty() {
            write_errors(&dir, &params.omitted).map_err(|e| {
                ApiError::new(
                    500,
                    IssueType::Exception,
                    format!("the export's error file could not be written: {e}"),
                )
            })?;
        }
        finish("completed", None).await?;
        return Ok(Some(format!("export {} completed", job.id)));
    };
    let file = format!("{next}.ndjson");
    let extract = Extract {
        job: job.id.clone(),
        resource_type: next.clone(),
        path: dir.join(&file),
        since_ms: params.since_ms,
        until_ms: job.transaction_ms,
        filters: params
            .filters
            .iter()
            .filter(|(t, _)| *t == next)
            .map(|(_, q)| q.clone())
            .collect(),
        patients: match (&params.level, &params.patients) {
            (Level::System, _) => Patients::Any,
            (_, None) => Patients::InSomeCompartment,
            (_, Some(p)) => Patients::Of(p.iter().cloned().collect()),
        },
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        ApiError::new(
            500,
            IssueType::Exception,
            format!("the export folder {} could not be made: {e}", dir.display()),
        )
    })?;
    let config = app.config().export.clone();
    let ctx = app.job_ctx();
    let work = Work {
        budgeted: false,
        ..Work::request("export", false, None)
    };
    // the lease is renewed while the worker writes, so a long type is not taken over
    let renew = {
        let (app, id) = (app.clone(), job.id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let id = id.clone();
                let _ = app
                    .system_job("bulk-export", move |tx, _| {
                        let until = tx.now() + LEASE_MS;
                        tx.on_behalf(OnBehalf::BulkExport)
                            .export_renew(&id, until)?;
                        Ok(((), None))
                    })
                    .await;
            }
        })
    };
    let written = app
        .run(Arc::new(caller), work, ctx, move |tx, ctx| {
            extract.run(tx, ctx, &config)
        })
        .await;
    renew.abort();
    match written {
        Ok(count) => {
            if count == 0 {
                let _ = std::fs::remove_file(dir.join(&file));
            }
            done.push(Output {
                resource_type: next.clone(),
                file: (count > 0).then_some(file),
                count,
            });
            let output = serde_json::to_string(&done).unwrap_or_else(|_| "[]".into());
            let id = job.id.clone();
            app.system_job("bulk-export", move |tx, _| {
                let now = tx.now();
                tx.on_behalf(OnBehalf::BulkExport)
                    .export_progress(&id, &output, now)?;
                Ok(((), None))
            })
            .await?;
            Ok(Some(format!("export {}: {count} {next}", job.id)))
        }
        Err(e) if app.config().export.is_cancelled(&job.id) => {
            let _ = std::fs::remove_dir_all(&dir);
            tracing::info!(status = e.status, "an export stopped: it was cancelled");
            Ok(Some(format!("export {} cancelled", job.id)))
        }
        Err(e) => {
            let words = e
                .issues
                .first()
                .map(|i| i.diagnostics.clone())
                .unwrap_or_else(|| format!("status {}", e.status));
            finish("failed", Some(format!("exporting {next} failed: {words}"))).await?;
            let _ = std::fs::remove_dir_all(&dir);
            Ok(Some(format!("export {} failed", job.id)))
        }
    }
}

fn write_errors(dir: &Path, omitted: &[(String, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(ERRORS_FILE))?);
    for (t, why) in omitted {
        let outcome = fhir::operation_outcome(&[Issue::error(
            IssueType::Forbidden,
            format!("{t} was not exported: {why}"),
        )]);
        writeln!(f, "{outcome}")?;
    }
    f.flush()
}

/// Whose resources a patient-level type holds.
enum Patients {
    /// System level: every resource of the type.
    Any,
    /// Patient level: resources in some patient's compartment.
    InSomeCompartment,
    /// Group members or `patient`: resources in one of these patients' compartments.
    Of(BTreeSet<String>),
}

/// One type of one job: read page by page as the caller, written line by line.
struct Extract {
    job: String,
    resource_type: String,
    path: PathBuf,
    since_ms: Option<i64>,
    until_ms: i64,
    filters: Vec<String>,
    patients: Patients,
}

impl Extract {
    fn run(
        &self,
        tx: &mut CallerTx,
        ctx: &super::Ctx,
        config: &ExportConfig,
    ) -> Result<u64, ApiError> {
        let io = |e: std::io::Error| {
            ApiError::new(
                500,
                IssueType::Exception,
                format!("the export file could not be written: {e}"),
            )
        };
        let mut out = std::io::BufWriter::with_capacity(
            256 * 1024,
            std::fs::File::create(&self.path).map_err(io)?,
        );
        let mut base: Vec<(String, String)> = vec![(
            "_lastUpdated".into(),
            format!("le{}", fhir::primitive::format_instant(self.until_ms)),
        )];
        if let Some(s) = self.since_ms {
            base.push((
                "_lastUpdated".into(),
                format!("gt{}", fhir::primitive::format_instant(s)),
            ));
        }
        // each filter is one pass (none: the whole type); a Patient export of named patients
        // asks for them by id, a hundred at a time
        let mut passes: Vec<Vec<(String, String)>> = if self.filters.is_empty() {
            vec![vec![]]
        } else {
            self.filters
                .iter()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .collect()
        };
        if let (Patients::Of(ids), "Patient") = (&self.patients, self.resource_type.as_str()) {
            let ids: Vec<&String> = ids.iter().collect();
            passes = passes
                .iter()
                .flat_map(|p| {
                    ids.chunks(100).map(move |chunk| {
                        let mut p = p.clone();
                        p.push((
                            "_id".into(),
                            chunk
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ));
                        p
                    })
                })
                .collect();
        }
        let dedupe = self.filters.len() > 1;
        let mut seen: HashSet<String> = HashSet::new();
        let mut count = 0u64;
        for pass in passes {
            let mut pairs: Vec<(&str, String)> = base
                .iter()
                .chain(&pass)
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            pairs.push(("_count", PAGE.to_string()));
            let mut cursor: Option<String> = None;
            loop {
                if config.is_cancelled(&self.job) {
                    return Err(ApiError::new(
                        410,
                        IssueType::Processing,
                        "the export was cancelled",
                    ));
                }
                let mut req = search_request(ctx.registry, &self.resource_type, &pairs)
                    .map_err(|e| e.context("_typeFilter"))?;
                req.cursor = cursor.take();
                req.total = fhir::search::TotalMode::None;
                let page = tx.search(&req)?;
                let keep: Option<std::collections::HashMap<i64, Vec<String>>> = match &self.patients
                {
                    Patients::Any => None,
                    _ => Some(tx.patients_of_rids(
                        &page.matches.iter().map(|m| m.rid).collect::<Vec<_>>(),
                    )?),
                };
                for m in &page.matches {
                    if let Some(of) = &keep {
                        let ps = of.get(&m.rid).map(Vec::as_slice).unwrap_or(&[]);
                        let inside = match &self.patients {
                            Patients::Of(set) => ps.iter().any(|p| set.contains(p)),
                            _ => !ps.is_empty(),
                        };
                        if !inside {
                            continue;
                        }
                    }
                    if dedupe && !seen.insert(m.id.clone()) {
                        continue;
                    }
                    let Some(body) = m.body.as_deref() else {
                        continue;
                    };
                    out.write_all(body.as_bytes()).map_err(io)?;
                    out.write_all(b"\n").map_err(io)?;
                    count += 1;
                }
                // the AuditEvent names the patients, not every resource: keep memory bounded
                tx.trail.keep_patients_only();
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        out.flush().map_err(io)?;
        tx.trail.description = Some(format!(
            "bulk export {}: {count} {} resources written",
            self.job, self.resource_type
        ));
        Ok(count)
    }
}

/// Deletes the files (and the register rows) of jobs that ended longer ago than the retention.
pub async fn expire(app: &App) -> Result<Option<String>, ApiError> {
    let retention = app.config().export.retention.as_millis() as i64;
    let gone = app
        .system_job("bulk-export", move |tx, _| {
            let now = tx.now();
            let register = tx.on_behalf(OnBehalf::BulkExport);
            let old = register.export_expired(now - retention)?;
            for j in &old {
                register.export_remove(&j.id)?;
            }
            Ok((old.into_iter().map(|j| j.id).collect::<Vec<_>>(), None))
        })
        .await?;
    let config = &app.config().export;
    for id in &gone {
        let _ = std::fs::remove_dir_all(config.job_dir(id));
    }
    if let Ok(mut c) = config.cancelled.lock() {
        for id in &gone {
            c.remove(id);
        }
    }
    Ok((!gone.is_empty()).then(|| format!("{} expired exports deleted", gone.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(level: Level, q: &[(&str, &str)]) -> Result<ExportParams, ApiError> {
        parse_request(
            fhir::search::registry(),
            level,
            &pairs(q),
            vec![],
            &Prefer::default(),
        )
    }

    #[test]
    fn type_filters_split_only_where_a_new_search_starts() {
        assert_eq!(
            split_filters("Observation?code=a,b&status=final,Condition?clinical-status=active"),
            vec![
                "Observation?code=a,b&status=final",
                "Condition?clinical-status=active"
            ]
        );
        assert_eq!(
            split_filters("Patient?gender=female"),
            vec!["Patient?gender=female"]
        );
    }

    #[test]
    fn the_kick_off_is_read_as_the_ig_says() {
        let p = parse(
            Level::System,
            &[
                ("_type", "Patient,Observation"),
                ("_since", "2026-01-01T00:00:00Z"),
            ],
        )
        .unwrap();
        assert_eq!(p.types, vec!["Patient", "Observation"]);
        assert_eq!(
            p.since_ms,
            fhir::primitive::instant_ms("2026-01-01T00:00:00Z")
        );
        // every format the IG names
        for f in FORMATS {
            assert!(parse(Level::System, &[("_outputFormat", f)]).is_ok());
        }
        assert!(parse(Level::System, &[("_outputFormat", "text/csv")]).is_err());
        // an instant needs its time zone
        assert!(parse(Level::System, &[("_since", "2026-01-01")]).is_err());
        assert!(parse(Level::System, &[("_since", "2026-01-01T00:00:00")]).is_err());
        assert!(parse(Level::System, &[("_since", "2026-01-01T00:00:00+05:00")]).is_ok());
        assert!(parse(Level::System, &[("_type", "Nonsense")]).is_err());
        assert!(parse(Level::System, &[("_type", "AuditEvent")]).is_err());
        // a patient-level export holds compartment types only
        assert!(parse(Level::Patient, &[("_type", "Organization")]).is_err());
        assert!(
            parse(Level::Patient, &[])
                .unwrap()
                .types
                .iter()
                .all(|t| fhir::compartment::in_patient_compartment(t))
        );
        assert!(
            parse(Level::System, &[])
                .unwrap()
                .types
                .contains(&"Organization".to_string())
        );
        // a filter must be a search on a listed type
        assert!(
            parse(
                Level::System,
                &[("_type", "Patient"), ("_typeFilter", "Observation?code=x")]
            )
            .is_err()
        );
        assert!(parse(Level::System, &[("_typeFilter", "Observation?nonsense=x")]).is_err());
        assert!(parse(Level::System, &[("_typeFilter", "Observation?_count=5")]).is_err());
        let p = parse(
            Level::System,
            &[("_typeFilter", "Observation?status=final")],
        )
        .unwrap();
        assert_eq!(
            p.filters,
            vec![("Observation".to_string(), "status=final".to_string())]
        );
        // unknown parameters are refused unless the client asks for leniency
        assert!(parse(Level::System, &[("_elements", "id")]).is_err());
        assert!(parse(Level::System, &[("foo", "bar")]).is_err());
        let lenient = Prefer {
            lenient: true,
            ..Prefer::default()
        };
        assert!(
            parse_request(
                fhir::search::registry(),
                Level::System,
                &pairs(&[("foo", "bar")]),
                vec![],
                &lenient
            )
            .is_ok()
        );
    }

    #[test]
    fn a_caller_is_kept_and_read_back_unchanged() {
        let c = Caller {
            subject: Subject {
                id: "client:x".into(),
                grants: vec![Grant {
                    role: Role::Coordinator,
                    organization: Some("cc".into()),
                }],
                fhir_users: vec![("Practitioner".into(), "p1".into())],
                scopes: Scopes::parse("user/*.rs system/Patient.rs").unwrap(),
            },
            policy: PolicyConfig::default(),
        };
        let back = caller_from(&caller_json(&c)).unwrap();
        assert_eq!(back.subject.id, c.subject.id);
        assert_eq!(back.subject.grants, c.subject.grants);
        assert_eq!(back.subject.fhir_users, c.subject.fhir_users);
        assert_eq!(back.subject.scopes, c.subject.scopes);
        assert_eq!(back.policy.proxy_ends_at, c.policy.proxy_ends_at);
    }
}
