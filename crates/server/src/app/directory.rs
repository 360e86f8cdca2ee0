//! The care finder's directory snapshot: organisations, sites, the states each service's video
//! clinicians are licensed in, and the schedules of each service by site and modality, kept in
//! memory between writes to the directory and checked, in each request's own transaction,
//! against the store's directory version (so it is right on any number of servers).

use std::collections::{BTreeSet, HashMap};

use care::findcare::Modality;
use serde_json::Value;
use store::CallerTx;

use super::Ctx;
use super::resources::{Reader, all_of, body, ref_id};
use crate::error::ApiError;
use care::profile as ext;
use fhir::json::extensions;
use store::Stored;

/// What the care finder keeps of the directory between writes to it: organisation names,
/// sites, the states each service's video clinicians are licensed in, and the schedules of
/// each service by site and modality. Checked against the store's directory version (one
/// read per request, in the request's own transaction) and rebuilt when it has moved.
#[derive(Debug, Default)]
pub struct Directory {
    version: i64,
    pub organizations: HashMap<String, Value>,
    pub locations: HashMap<String, Value>,
    pub licensed: HashMap<String, BTreeSet<String>>,
    pub schedule_of: HashMap<(String, Option<String>, Modality), Vec<String>>,
    /// Every active Schedule by id.
    pub schedules: HashMap<String, Value>,
}

/// The shared, lazily built directory snapshot.
#[derive(Debug, Default)]
pub struct DirectoryCache(std::sync::Mutex<Option<std::sync::Arc<Directory>>>);

/// The snapshot for this transaction's view of the directory (built, and kept, if the cached
/// one is of another version). Only callers who may read the directory get it.
pub fn directory_snapshot(
    tx: &mut CallerTx,
    ctx: &Ctx,
) -> Result<std::sync::Arc<Directory>, ApiError> {
    if !tx.view().directory {
        return Err(ApiError::new(
            403,
            fhir::IssueType::Forbidden,
            "the directory is for alliance users",
        ));
    }
    let version = tx
        .on_behalf(store::OnBehalf::Directory)
        .directory_version()?;
    let cached = ctx
        .directory
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if let Some(d) = cached
        && d.version == version
    {
        return Ok(d);
    }
    let built = std::sync::Arc::new(build_directory(tx, ctx, version)?);
    let mut slot = ctx
        .directory
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // keep the newest of what concurrent builders saw
    if slot.as_ref().is_none_or(|d| d.version <= version) {
        *slot = Some(built.clone());
    }
    Ok(built)
}

/// Reads every Organization, Location, PractitionerRole and Schedule into a snapshot.
fn build_directory(tx: &mut CallerTx, ctx: &Ctx, version: i64) -> Result<Directory, ApiError> {
    let by_id = |rows: Vec<Stored>| -> HashMap<String, Value> {
        rows.iter().map(|s| (s.id.clone(), body(s))).collect()
    };
    let organizations = by_id(all_of(tx, ctx.registry, "Organization", Reader::Caller)?);
    let locations = by_id(all_of(tx, ctx.registry, "Location", Reader::Caller)?);
    let mut licensed: HashMap<String, BTreeSet<String>> = HashMap::new();
    for r in all_of(tx, ctx.registry, "PractitionerRole", Reader::Caller)?
        .iter()
        .map(body)
    {
        if r.get("active").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        // a role that names its modalities and not video does not take video visits
        let mut modalities = extensions(&r, ext::MODALITY)
            .filter_map(|e| e.get("valueCode").and_then(Value::as_str))
            .peekable();
        if modalities.peek().is_some() && !modalities.any(|m| m == "video") {
            continue;
        }
        let states: Vec<String> = extensions(&r, ext::LICENSED_STATE)
            .filter_map(|e| e.get("valueCode").and_then(Value::as_str))
            .map(str::to_ascii_uppercase)
            .collect();
        for s in r
            .get("healthcareService")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = ref_id(s, "HealthcareService") {
                licensed
                    .entry(id.to_string())
                    .or_default()
                    .extend(states.iter().cloned());
            }
        }
    }
    let mut schedule_of: HashMap<(String, Option<String>, Modality), Vec<String>> = HashMap::new();
    let mut schedules: HashMap<String, Value> = HashMap::new();
    for s in &all_of(tx, ctx.registry, "Schedule", Reader::Caller)? {
        let b = body(s);
        if b.get("active").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let actors: Vec<&Value> = b
            .get("actor")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let location = actors
            .iter()
            .find_map(|a| ref_id(a, "Location"))
            .map(str::to_string);
        let modality = extensions(&b, ext::MODALITY)
            .filter_map(|e| e.get("valueCode").and_then(Value::as_str))
            .find_map(Modality::parse)
            .unwrap_or(Modality::InPerson);
        for a in &actors {
            if let Some(service) = ref_id(a, "HealthcareService") {
                let site = if modality == Modality::Video {
                    None
                } else {
                    location.clone()
                };
                schedule_of
                    .entry((service.to_string(), site, modality))
                    .or_default()
                    .push(s.id.clone());
            }
        }
        schedules.insert(s.id.clone(), b);
    }
    Ok(Directory {
        version,
        organizations,
        locations,
        licensed,
        schedule_of,
        schedules,
    })
}
