//! `continuum import FILE…`: NDJSON (one resource per line), transaction/batch Bundles (run as
//! `POST /fhir` would: a transaction is all or nothing), and collection/searchset Bundles or
//! single resources (each entry stored), with a progress bar, a final count and the refusals in
//! file order. `--dry-run` checks everything and writes nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use server::FhirApi;
use server::error::ApiError;
use server::rest::import::{ImportReport, Rejected};

/// Resources per store transaction.
const CHUNK: usize = 2000;

#[derive(Default)]
pub struct Totals {
    pub stored: usize,
    pub rejected: Vec<Rejected>,
    /// Patients sent down the bulk path (NDJSON, collections), which does not link identities
    /// as it writes (transaction and batch Bundles run as `POST /fhir` and do).
    pub bulk_patients: usize,
}

pub async fn import_files(
    api: &FhirApi,
    files: &[std::path::PathBuf],
    dry_run: bool,
) -> Result<Totals> {
    let mut totals = Totals::default();
    for file in files {
        import_file(api, file, dry_run, &mut totals).await?;
    }
    // chunks are validated ahead of the one being stored, and unreadable lines are found while
    // reading: put the refusals back in file order
    let order: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    totals
        .rejected
        .sort_by_cached_key(|r| position(&order, &r.origin));
    Ok(totals)
}

/// Where a refusal's origin (`FILE:LINE`, `FILE entry N`, `FILE`) is: file, then line or entry.
fn position(files: &[String], origin: &str) -> (usize, usize) {
    let (file, at) = match origin.rsplit_once(" entry ") {
        Some((f, n)) => (f, n.parse().ok()),
        None => match origin.rsplit_once(':') {
            Some((f, n)) if n.parse::<usize>().is_ok() => (f, n.parse().ok()),
            _ => (origin, None),
        },
    };
    (
        files.iter().position(|f| f == file).unwrap_or(usize::MAX),
        at.unwrap_or(0),
    )
}

fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template =
        format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})");
    pb.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// The chunk being stored while the next one is read and validated.
type InFlight = Option<tokio::task::JoinHandle<Result<ImportReport, ApiError>>>;

/// Validates `chunk`, waits for the chunk before it to be stored, then starts storing this one
/// (chunks are stored in file order; reading and validating overlap the storing).
async fn flush(
    api: &FhirApi,
    chunk: &mut Vec<(String, Value)>,
    in_flight: &mut InFlight,
    dry_run: bool,
    totals: &mut Totals,
) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let prepared = api.prepare_chunk(std::mem::take(chunk));
    if dry_run {
        let (valid, rejected) = prepared.counts();
        totals.stored += valid;
        totals.rejected.extend(rejected);
        return Ok(());
    }
    totals.bulk_patients += prepared.patients();
    settle(in_flight, totals).await?;
    let api = api.clone();
    *in_flight = Some(tokio::spawn(async move { api.store_chunk(prepared).await }));
    Ok(())
}

/// Waits for the chunk in flight, if any.
async fn settle(in_flight: &mut InFlight, totals: &mut Totals) -> Result<()> {
    let Some(handle) = in_flight.take() else {
        return Ok(());
    };
    let report = handle
        .await
        .context("the import task failed")?
        .map_err(|e| anyhow::anyhow!("import failed: {e}"))?;
    totals.stored += report.stored;
    totals.rejected.extend(report.rejected);
    Ok(())
}

async fn import_file(api: &FhirApi, path: &Path, dry_run: bool, totals: &mut Totals) -> Result<()> {
    let mut in_flight: InFlight = None;
    let name = path.display().to_string();
    let is_ndjson = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"));
    if is_ndjson {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let pb = bar(size, &name, "bytes");
        let mut chunk = Vec::with_capacity(CHUNK);
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {name}"))?;
            pb.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            let origin = format!("{name}:{}", n + 1);
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => chunk.push((origin, v)),
                Err(e) => totals.rejected.push(Rejected {
                    origin,
                    reason: format!("not JSON: {e}"),
                }),
            }
            if chunk.len() >= CHUNK {
                flush(api, &mut chunk, &mut in_flight, dry_run, totals).await?;
            }
        }
        flush(api, &mut chunk, &mut in_flight, dry_run, totals).await?;
        settle(&mut in_flight, totals).await?;
        pb.finish_and_clear();
        return Ok(());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{name} is not JSON (NDJSON files must end in .ndjson)"))?;
    match (
        value.get("resourceType").and_then(Value::as_str),
        value.get("type").and_then(Value::as_str),
    ) {
        (Some("Bundle"), Some("transaction" | "batch")) => {
            let entries = value
                .get("entry")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let transaction = value.get("type").and_then(Value::as_str) == Some("transaction");
            let pb = bar(entries as u64, &name, "entries");
            let response = match api.import_bundle(value, dry_run).await {
                Ok(response) => response,
                Err(e) if transaction => {
                    // all or nothing: the whole Bundle is refused, for the reasons given
                    pb.finish_and_clear();
                    totals.rejected.push(Rejected {
                        origin: name.clone(),
                        reason: format!(
                            "the transaction was refused and none of its {entries} entries imported: {}",
                            describe(&e)
                        ),
                    });
                    return Ok(());
                }
                Err(e) => bail!("{name}: {}", describe(&e)),
            };
            for (i, entry) in response
                .get("entry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let status = entry
                    .pointer("/response/status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if status.starts_with('2') {
                    totals.stored += 1;
                } else {
                    totals.rejected.push(Rejected {
                        origin: format!("{name} entry {i}"),
                        reason: entry
                            .pointer("/response/outcome/issue/0/diagnostics")
                            .and_then(Value::as_str)
                            .unwrap_or(status)
                            .to_string(),
                    });
                }
            }
            pb.finish_and_clear();
        }
        (Some("Bundle"), _) => {
            let entries: Vec<Value> = value
                .get("entry")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let pb = bar(entries.len() as u64, &name, "entries");
            let mut chunk = Vec::with_capacity(CHUNK);
            for (i, e) in entries.into_iter().enumerate() {
                pb.inc(1);
                if let Some(r) = e.get("resource") {
                    chunk.push((format!("{name} entry {i}"), r.clone()));
                }
                if chunk.len() >= CHUNK {
                    flush(api, &mut chunk, &mut in_flight, dry_run, totals).await?;
                }
            }
            flush(api, &mut chunk, &mut in_flight, dry_run, totals).await?;
            settle(&mut in_flight, totals).await?;
            pb.finish_and_clear();
        }
        (Some(_), _) => {
            let mut chunk = vec![(name.clone(), value)];
            flush(api, &mut chunk, &mut in_flight, dry_run, totals).await?;
            settle(&mut in_flight, totals).await?;
        }
        (None, _) => bail!(
            "{name} has no resourceType: expected a FHIR resource, a Bundle, or NDJSON with a .ndjson extension"
        ),
    }
    Ok(())
}

/// An error's issues in one line, each with its location.
fn describe(e: &ApiError) -> String {
    e.issues
        .iter()
        .map(|i| match &i.expression {
            Some(at) => format!("{} ({at})", i.diagnostics),
            None => i.diagnostics.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
