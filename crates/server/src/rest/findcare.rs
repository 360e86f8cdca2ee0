//! `POST /fhir/HealthcareService/$find-care`: the close-to-home care finder. This file gathers
//! the facts — the patient (age, home, state, pediatric-onset conditions), the services that
//! match the need, their sites, organisations, clinicians' licences and first free slots — all
//! read through the caller's access rules, hands them to `care::findcare::rank`, and writes the
//! answer as `Parameters`.

use std::collections::{BTreeSet, HashMap};

use care::findcare::{
    Ask, Candidate, FindCareConfig, Modality, PatientFacts, Site, Urgency, Wanted,
};
use care::geo::Point;
use fhir::IssueType;
use fhir::search::{ParseOptions, parse_search};
use serde_json::{Value, json};
use store::{CallerTx, Stored};

use super::Ctx;
use super::execute::Outcome;
use crate::error::ApiError;

/// The canonical base of the alliance's extensions and operations.
pub const CANONICAL: &str = care::labels::CANONICAL_BASE;

/// The alliance's extensions (each documented in the README and the CapabilityStatement).
pub mod ext {
    /// HealthcareService: the ages served, a `valueRange` in years (`a`).
    pub const AGE_RANGE: &str = "http://continuum-alliance.org/fhir/StructureDefinition/age-range";
    /// HealthcareService, Schedule, PractitionerRole: how visits happen, `valueCode`
    /// `in-person` | `video` (repeating).
    pub const MODALITY: &str = "http://continuum-alliance.org/fhir/StructureDefinition/modality";
    /// HealthcareService: whether new patients are taken, `valueBoolean` (default true).
    pub const ACCEPTING: &str =
        "http://continuum-alliance.org/fhir/StructureDefinition/accepting-new-patients";
    /// PractitionerRole: a US state (USPS code) where the clinician is licensed, `valueCode`
    /// (repeating).
    pub const LICENSED_STATE: &str =
        "http://continuum-alliance.org/fhir/StructureDefinition/licensed-state";
    /// Schedule: the length of each generated slot in minutes, `valueInteger`.
    pub const SLOT_MINUTES: &str =
        "http://continuum-alliance.org/fhir/StructureDefinition/slot-minutes";
    /// Address: a position (the standard FHIR geolocation extension).
    pub const GEOLOCATION: &str = "http://hl7.org/fhir/StructureDefinition/geolocation";
}

/// The values of an extension on a resource or element.
pub fn extensions<'a>(v: &'a Value, url: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    v.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// What the service parameter asks for.
#[derive(Debug, Clone)]
enum ServiceQuery {
    Code {
        system: Option<String>,
        code: String,
    },
    Text(String),
}

#[derive(Debug)]
struct Input {
    patient: Option<String>,
    birth_date: Option<String>,
    postal_code: Option<String>,
    service: ServiceQuery,
    wanted: Wanted,
    urgency: Urgency,
    radius: f64,
    patient_state: Option<String>,
    count: usize,
}

pub(crate) fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueType::Value, msg).at(param)
}

/// The parts of an operation's `Parameters`, refusing any name not in `names` (listed in the
/// answer) or `aliases` (accepted quietly): 400 naming the unknown parameter.
pub(crate) fn parameter_list<'a>(
    params: &'a Value,
    op: &str,
    names: &[&str],
    aliases: &[&str],
) -> Result<Vec<&'a Value>, ApiError> {
    let parts: Vec<&Value> = params
        .get("parameter")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for p in &parts {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if !names.contains(&name) && !aliases.contains(&name) {
            return Err(bad(
                name,
                format!("{op} has no parameter '{name}' ({})", names.join(", ")),
            ));
        }
    }
    Ok(parts)
}

fn parse_input(params: &Value) -> Result<Input, ApiError> {
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(
            IssueType::Invalid,
            "$find-care takes a Parameters resource",
        )
        .at("resourceType"));
    }
    let parts = parameter_list(
        params,
        "$find-care",
        &[
            "patient",
            "birthDate",
            "postalCode",
            "service",
            "modality",
            "urgency",
            "radius",
            "patientState",
            "count",
        ],
        &[],
    )?;
    let one = |name: &str| -> Result<Option<&Value>, ApiError> {
        let mut found = parts
            .iter()
            .filter(|p| p.get("name").and_then(Value::as_str) == Some(name));
        let first = found.next().copied();
        if found.next().is_some() {
            return Err(bad(name, format!("'{name}' is given more than once")));
        }
        Ok(first)
    };
    let text = |name: &str, keys: &[&str]| -> Result<Option<String>, ApiError> {
        let Some(p) = one(name)? else {
            return Ok(None);
        };
        for k in keys {
            if let Some(s) = p.get(*k).and_then(Value::as_str) {
                return Ok(Some(s.trim().to_string()));
            }
        }
        Err(bad(
            name,
            format!("'{name}' needs one of {}", keys.join(", ")),
        ))
    };
    let patient = match one("patient")? {
        None => None,
        Some(p) => {
            let reference = p
                .pointer("/valueReference/reference")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("patient", "'patient' is a valueReference to a Patient"))?;
            let id = reference
                .strip_prefix("Patient/")
                .filter(|id| fhir::primitive::is_id(id))
                .ok_or_else(|| {
                    bad(
                        "patient",
                        format!("'{reference}' is not a Patient reference (Patient/id)"),
                    )
                })?;
            Some(id.to_string())
        }
    };
    let birth_date = text("birthDate", &["valueDate"])?;
    let postal_code = text("postalCode", &["valueString", "valueCode"])?;
    match (&patient, &birth_date, &postal_code) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => {}
        (Some(_), _, _) => {
            return Err(bad(
                "patient",
                "give either 'patient' or 'birthDate' with 'postalCode', not both",
            ));
        }
        (None, None, _) => {
            return Err(bad(
                "patient",
                "give 'patient', or 'birthDate' with 'postalCode'",
            ));
        }
        (None, Some(_), None) => {
            return Err(bad("postalCode", "'birthDate' needs a 'postalCode'"));
        }
    }
    if let Some(b) = &birth_date
        && fhir::primitive::parse_date_time(b, fhir::primitive::Precision::Day, false).is_err()
    {
        return Err(bad(
            "birthDate",
            format!("'{b}' is not a date (YYYY-MM-DD)"),
        ));
    }
    let service = match one("service")? {
        None => {
            return Err(bad(
                "service",
                "'service' is required: a valueCoding, valueCode or valueString naming the specialty or programme",
            ));
        }
        Some(p) => {
            if let Some(c) = p.get("valueCoding") {
                let code = c
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("service", "the service Coding has no code"))?;
                ServiceQuery::Code {
                    system: c.get("system").and_then(Value::as_str).map(str::to_string),
                    code: code.to_string(),
                }
            } else if let Some(code) = p.get("valueCode").and_then(Value::as_str) {
                ServiceQuery::Code {
                    system: None,
                    code: code.to_string(),
                }
            } else if let Some(s) = p.get("valueString").and_then(Value::as_str) {
                if s.trim().len() < 3 {
                    return Err(bad("service", "a service name needs at least 3 letters"));
                }
                ServiceQuery::Text(s.trim().to_string())
            } else {
                return Err(bad(
                    "service",
                    "'service' needs valueCoding, valueCode or valueString",
                ));
            }
        }
    };
    let wanted = match text("modality", &["valueCode", "valueString"])? {
        None => Wanted::Any,
        Some(m) => Wanted::parse(&m).ok_or_else(|| {
            bad(
                "modality",
                format!("'{m}' is not a modality (in-person, video, any)"),
            )
        })?,
    };
    let urgency = match text("urgency", &["valueCode", "valueString"])? {
        None => Urgency::Routine,
        Some(u) => Urgency::parse(&u).ok_or_else(|| {
            bad(
                "urgency",
                format!("'{u}' is not an urgency (routine, urgent, asap, stat)"),
            )
        })?,
    };
    let radius = match one("radius")? {
        None => 30.0,
        Some(p) => {
            let r = p
                .get("valueDecimal")
                .or_else(|| p.get("valueInteger"))
                .or_else(|| p.pointer("/valueQuantity/value"))
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("radius", "'radius' is a number of miles (valueDecimal)"))?;
            if !(r > 0.0 && r <= 500.0) {
                return Err(bad("radius", "'radius' is between 0 and 500 miles"));
            }
            r
        }
    };
    let patient_state =
        text("patientState", &["valueCode", "valueString"])?.map(|s| s.to_ascii_uppercase());
    if let Some(s) = &patient_state
        && !care::geo::is_us_state(s)
    {
        return Err(bad(
            "patientState",
            format!("'{s}' is not a US state code (e.g. CT)"),
        ));
    }
    let count = match one("count")? {
        None => 10,
        Some(p) => {
            let n = p
                .get("valueInteger")
                .or_else(|| p.get("valuePositiveInt"))
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("count", "'count' is a positive integer"))?;
            if n == 0 || n > 100 {
                return Err(bad("count", "'count' is between 1 and 100"));
            }
            n as usize
        }
    };
    Ok(Input {
        patient,
        birth_date,
        postal_code,
        service,
        wanted,
        urgency,
        radius,
        patient_state,
        count,
    })
}

/// What the care finder keeps of the directory between writes to it: organisation names,
/// sites, the states each service's video clinicians are licensed in, and the schedules of
/// each service by site and modality. Checked against the store's directory version (one
/// read per request, in the request's own transaction) and rebuilt when it has moved.
#[derive(Debug, Default)]
pub struct Directory {
    version: i64,
    pub(crate) organizations: HashMap<String, Value>,
    pub(crate) locations: HashMap<String, Value>,
    pub(crate) licensed: HashMap<String, BTreeSet<String>>,
    pub(crate) schedule_of: HashMap<(String, Option<String>, Modality), Vec<String>>,
    /// Every active Schedule by id.
    pub(crate) schedules: HashMap<String, Value>,
}

/// The shared, lazily built directory snapshot.
#[derive(Debug, Default)]
pub struct DirectoryCache(std::sync::Mutex<Option<std::sync::Arc<Directory>>>);

/// The snapshot for this transaction's view of the directory (built, and kept, if the cached
/// one is of another version). Only callers who may read the directory get it.
pub(crate) fn directory_snapshot(
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

/// A search the server makes for itself (its parameters are the server's own: a problem with
/// them is the server's, 500).
pub(crate) fn search_request(
    registry: &'static fhir::search::Registry,
    rt: &str,
    pairs: &[(&str, String)],
) -> Result<fhir::search::SearchRequest, ApiError> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    parse_search(
        registry,
        rt,
        &pairs,
        &ParseOptions {
            lenient: false,
            base_url: "",
        },
    )
    .map_err(|issues| ApiError::with_issues(500, issues))
}

/// Whose rights a read is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The caller's (hidden resources are left out).
    Caller,
    /// The system's, on the alliance's behalf (for what it computes over everything, such as
    /// a model).
    System(store::OnBehalf),
}

/// Every resource of a type, page by page, read as `reader`.
pub(crate) fn all_of(
    tx: &mut CallerTx,
    registry: &'static fhir::search::Registry,
    rt: &str,
    reader: Reader,
) -> Result<Vec<Stored>, ApiError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = search_request(registry, rt, &[("_count", "1000".into())])?;
        req.cursor = cursor.take();
        req.total = fhir::search::TotalMode::None;
        let page = match reader {
            Reader::Caller => tx.search(&req)?,
            Reader::System(why) => tx.on_behalf(why).search(&req)?,
        };
        out.extend(page.matches);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

pub(crate) fn search(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    params: &[(&str, String)],
) -> Result<Vec<Stored>, ApiError> {
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    all.push(("_count".into(), "1000".into()));
    let req = parse_search(
        ctx.registry,
        rt,
        &all,
        &ParseOptions {
            lenient: false,
            base_url: &ctx.base_url,
        },
    )
    .map_err(|issues| ApiError::with_issues(400, issues))?;
    Ok(tx.search(&req)?.matches)
}

pub(crate) fn body(s: &Stored) -> Value {
    s.body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

/// `Type/id` → id when the reference is to that type.
pub(crate) fn ref_id<'a>(v: &'a Value, rt: &str) -> Option<&'a str> {
    v.get("reference")
        .and_then(Value::as_str)?
        .strip_prefix(rt)?
        .strip_prefix('/')
}

pub(crate) fn scope_reads(tx: &CallerTx, types: &[&str]) -> Result<(), ApiError> {
    for rt in types {
        tx.scope_allows(rt, care::access::Action::Read)
            .map_err(|why| ApiError::new(403, IssueType::Forbidden, why))?;
    }
    Ok(())
}

/// A patient's home address: the one with `use` home, else the first.
pub(crate) fn home_address(patient: &Value) -> Option<&Value> {
    let addresses = patient.get("address").and_then(Value::as_array)?;
    addresses
        .iter()
        .find(|a| a.get("use").and_then(Value::as_str) == Some("home"))
        .or_else(|| addresses.first())
}

/// An address's state (USPS code, upper case).
pub(crate) fn address_state(address: &Value) -> Option<String> {
    address
        .get("state")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
}

/// Where a patient lives: an address's geolocation, else its postal code's centroid.
pub(crate) fn home_of(address: &Value) -> Option<(Point, Option<String>)> {
    let state = address_state(address);
    if let Some(geo) = extensions(address, ext::GEOLOCATION).next() {
        let part = |name: &str| {
            extensions(geo, name)
                .next()
                .and_then(|e| e.get("valueDecimal"))
                .and_then(Value::as_f64)
        };
        if let (Some(lat), Some(lng)) = (part("latitude"), part("longitude")) {
            return Some((Point { lat, lng }, state));
        }
    }
    let zip = address.get("postalCode").and_then(Value::as_str)?;
    let (point, zip_state) = care::geo::zip_centroid(zip)?;
    Some((point, state.or(Some(zip_state))))
}

pub(crate) fn find_care(tx: &mut CallerTx, ctx: &Ctx, params: Value) -> Result<Outcome, ApiError> {
    let input = parse_input(&params)?;
    let config: &FindCareConfig = &ctx.find_care;
    let now = tx.now();
    scope_reads(
        tx,
        &[
            "HealthcareService",
            "Location",
            "Organization",
            "PractitionerRole",
            "Schedule",
            "Slot",
        ],
    )?;
    // the patient
    let facts = match &input.patient {
        Some(pid) => {
            scope_reads(tx, &["Patient", "Condition"])?;
            let stored = tx
                .current("Patient", pid, false)?
                .filter(|s| !s.deleted)
                .ok_or_else(|| bad("patient", format!("Patient/{pid} is not known")))?;
            let patient = body(&stored);
            let birth = patient
                .get("birthDate")
                .and_then(Value::as_str)
                .and_then(care::access::age::BirthDate::parse)
                .ok_or_else(|| {
                    bad(
                        "patient",
                        format!(
                            "Patient/{pid} has no birthDate; send birthDate and postalCode instead"
                        ),
                    )
                })?;
            let home = home_address(&patient).and_then(home_of).ok_or_else(|| {
                bad(
                    "patient",
                    format!(
                        "Patient/{pid} has no home address with a known postal code or position"
                    ),
                )
            })?;
            let conditions = search(tx, ctx, "Condition", &[("patient", pid.clone())])?;
            let onset = conditions.iter().map(body).any(|c| {
                let active = c
                    .pointer("/clinicalStatus/coding")
                    .and_then(Value::as_array)
                    .is_none_or(|codings| {
                        codings.iter().any(|cd| {
                            matches!(
                                cd.get("code").and_then(Value::as_str),
                                Some("active" | "recurrence" | "relapse")
                            )
                        })
                    });
                active
                    && c.pointer("/code/coding")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|cd| {
                            config.is_pediatric_onset(
                                cd.get("system").and_then(Value::as_str).unwrap_or(""),
                                cd.get("code").and_then(Value::as_str).unwrap_or(""),
                            )
                        })
            });
            PatientFacts {
                age: care::access::age::age_on(birth, now),
                home: home.0,
                state: input.patient_state.clone().or(home.1),
                pediatric_onset: onset,
            }
        }
        None => {
            let birth = input
                .birth_date
                .as_deref()
                .and_then(care::access::age::BirthDate::parse)
                .ok_or_else(|| bad("birthDate", "'birthDate' is not a date"))?;
            let zip = input.postal_code.clone().unwrap_or_default();
            let (home, zip_state) = care::geo::zip_centroid(&zip).ok_or_else(|| {
                bad(
                    "postalCode",
                    format!("'{zip}' is not a known US postal code"),
                )
            })?;
            PatientFacts {
                age: care::access::age::age_on(birth, now),
                home,
                state: input.patient_state.clone().or(Some(zip_state)),
                pediatric_onset: false,
            }
        }
    };
    // the services that match the need
    let started = std::time::Instant::now();
    let mut services: Vec<Stored> = Vec::new();
    let mut seen = BTreeSet::new();
    let searches: Vec<(&str, String)> = match &input.service {
        ServiceQuery::Code { system, code } => {
            let token = match system {
                Some(s) => format!("{s}|{code}"),
                None => code.clone(),
            };
            ["specialty", "service-type", "program"]
                .into_iter()
                .map(|p| (p, token.clone()))
                .collect()
        }
        ServiceQuery::Text(t) => vec![
            ("name:contains", t.clone()),
            ("specialty:text", t.clone()),
            ("service-type:text", t.clone()),
            ("program:text", t.clone()),
        ],
    };
    for (param, value) in searches {
        for s in search(tx, ctx, "HealthcareService", &[(param, value)])? {
            if seen.insert(s.id.clone()) {
                services.push(s);
            }
        }
    }
    let t_services = started.elapsed();
    let services: Vec<(Stored, Value)> = services
        .into_iter()
        .map(|s| {
            let b = body(&s);
            (s, b)
        })
        .filter(|(_, b)| b.get("active").and_then(Value::as_bool) != Some(false))
        .collect();
    if services.is_empty() {
        let asked = match &input.service {
            ServiceQuery::Code { system, code } => match system {
                Some(s) => format!("{s}|{code}"),
                None => code.clone(),
            },
            ServiceQuery::Text(t) => t.clone(),
        };
        return Err(bad(
            "service",
            format!(
                "no active HealthcareService matches '{asked}' by specialty, type, programme or name"
            ),
        ));
    }
    // their organisations, sites, clinicians and schedules: from the directory snapshot
    let directory = directory_snapshot(tx, ctx)?;
    let t_directory = started.elapsed();
    let (orgs, locations, licensed, schedule_of) = (
        &directory.organizations,
        &directory.locations,
        &directory.licensed,
        &directory.schedule_of,
    );
    let matched: BTreeSet<&str> = services.iter().map(|(s, _)| s.id.as_str()).collect();
    let all_schedules: Vec<&str> = schedule_of
        .iter()
        .filter(|(key, _)| matched.contains(key.0.as_str()))
        .flat_map(|(_, ids)| ids.iter().map(String::as_str))
        .collect();
    let horizon = now + (config.window_days.iter().copied().max().unwrap_or(30) + 1) * 86_400_000;
    let firsts =
        tx.on_behalf(store::OnBehalf::Directory)
            .first_free_slots(&all_schedules, now, horizon)?;
    let t_slots = started.elapsed();
    let first_of = |key: &(String, Option<String>, Modality)| -> Option<(String, i64)> {
        schedule_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| firsts.get(id).cloned())
            .min_by_key(|(_, start)| *start)
    };
    // one candidate per service and site in person, and per service by video
    let mut candidates: Vec<Candidate> = Vec::new();
    for (s, b) in &services {
        let org_id = b
            .get("providedBy")
            .and_then(|r| ref_id(r, "Organization"))
            .unwrap_or("")
            .to_string();
        let org_name = orgs
            .get(&org_id)
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str)
            .or_else(|| b.pointer("/providedBy/display").and_then(Value::as_str))
            .unwrap_or(&org_id)
            .to_string();
        let range = extensions(b, ext::AGE_RANGE)
            .next()
            .and_then(|e| e.get("valueRange"));
        let bound = |k: &str| {
            range
                .and_then(|r| r.pointer(&format!("/{k}/value")))
                .and_then(Value::as_f64)
                .map(|v| v as i32)
        };
        let accepting = extensions(b, ext::ACCEPTING)
            .next()
            .and_then(|e| e.get("valueBoolean"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let mut modalities: Vec<Modality> = extensions(b, ext::MODALITY)
            .filter_map(|e| e.get("valueCode").and_then(Value::as_str))
            .filter_map(Modality::parse)
            .collect();
        if modalities.is_empty() {
            modalities.push(Modality::InPerson);
        }
        let base = Candidate {
            service_id: s.id.clone(),
            service_name: b
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&s.id)
                .to_string(),
            organization_id: org_id,
            organization_name: org_name,
            age_range: (bound("low"), bound("high")),
            accepting,
            modality: Modality::InPerson,
            location: None,
            licensed_states: licensed
                .get(&s.id)
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default(),
            first_slot: None,
        };
        if modalities.contains(&Modality::InPerson) {
            for l in b
                .get("location")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(lid) = ref_id(l, "Location") else {
                    continue;
                };
                let Some(loc) = locations.get(lid) else {
                    continue;
                };
                let virtual_site = loc
                    .pointer("/physicalType/coding")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.get("code").and_then(Value::as_str) == Some("vi"))
                    });
                if virtual_site {
                    continue;
                }
                let position = loc.get("position").and_then(|p| {
                    Some(Point {
                        lat: p.get("latitude")?.as_f64()?,
                        lng: p.get("longitude")?.as_f64()?,
                    })
                });
                candidates.push(Candidate {
                    modality: Modality::InPerson,
                    location: Some(Site {
                        id: lid.to_string(),
                        name: loc
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or(lid)
                            .to_string(),
                        position,
                    }),
                    first_slot: first_of(&(
                        s.id.clone(),
                        Some(lid.to_string()),
                        Modality::InPerson,
                    )),
                    ..base.clone()
                });
            }
        }
        if modalities.contains(&Modality::Video) {
            candidates.push(Candidate {
                modality: Modality::Video,
                first_slot: first_of(&(s.id.clone(), None, Modality::Video)),
                ..base
            });
        }
    }
    let ask = Ask {
        wanted: input.wanted,
        urgency: input.urgency,
        radius_miles: input.radius,
        now_ms: now,
    };
    let (ranked, excluded) = care::findcare::rank(&facts, &candidates, &ask, config);
    tracing::debug!(
        services = services.len(),
        schedules = all_schedules.len(),
        candidates = candidates.len(),
        services_us = t_services.as_micros() as u64,
        directory_us = t_directory.as_micros() as u64,
        slots_us = t_slots.as_micros() as u64,
        ranked_us = started.elapsed().as_micros() as u64,
        "find-care phases"
    );
    let mut out: Vec<Value> = Vec::new();
    for r in ranked.iter().take(input.count) {
        let c = &candidates[r.candidate];
        let mut part = vec![
            json!({"name": "healthcareService", "valueReference": {"reference": format!("HealthcareService/{}", c.service_id), "display": c.service_name}}),
        ];
        if let Some(site) = &c.location {
            part.push(json!({"name": "location", "valueReference": {"reference": format!("Location/{}", site.id), "display": site.name}}));
        }
        part.push(json!({"name": "organization", "valueReference": {"reference": format!("Organization/{}", c.organization_id), "display": c.organization_name}}));
        part.push(json!({"name": "modality", "valueCode": c.modality.code()}));
        if let Some(d) = r.distance_miles {
            part.push(json!({"name": "distance", "valueQuantity": {"value": (d * 10.0).round() / 10.0, "unit": "mi", "system": "http://unitsofmeasure.org", "code": "[mi_i]"}}));
        }
        if let Some(m) = r.drive_minutes {
            part.push(json!({"name": "driveTimeEstimate", "valueQuantity": {"value": m, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}}));
        }
        if let Some((slot, start)) = &c.first_slot {
            part.push(json!({"name": "firstAvailable", "valueDateTime": fhir::primitive::format_instant(*start)}));
            part.push(
                json!({"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}}),
            );
        }
        part.push(json!({"name": "score", "valueDecimal": r.score}));
        if r.transition {
            part.push(json!({"name": "transition", "valueBoolean": true}));
        }
        for reason in &r.reasons {
            part.push(json!({"name": "reason", "valueString": reason}));
        }
        out.push(json!({"name": "option", "part": part}));
    }
    for e in &excluded {
        let c = &candidates[e.candidate];
        let mut part = vec![
            json!({"name": "healthcareService", "valueReference": {"reference": format!("HealthcareService/{}", c.service_id), "display": c.service_name}}),
        ];
        if let Some(site) = &c.location {
            part.push(json!({"name": "location", "valueReference": {"reference": format!("Location/{}", site.id), "display": site.name}}));
        }
        part.push(json!({"name": "modality", "valueCode": c.modality.code()}));
        part.push(json!({"name": "reason", "valueString": e.reason}));
        out.push(json!({"name": "excluded", "part": part}));
    }
    Ok(Outcome::Json(
        200,
        json!({"resourceType": "Parameters", "parameter": out}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: Value) -> Value {
        json!({"resourceType": "Parameters", "parameter": parts})
    }

    #[test]
    fn inputs_are_checked_and_the_parameter_named() {
        let ok = p(json!([
            {"name": "birthDate", "valueDate": "2017-05-01"},
            {"name": "postalCode", "valueString": "06320"},
            {"name": "service", "valueString": "cardiology"},
            {"name": "modality", "valueCode": "video"},
        ]));
        let input = parse_input(&ok).unwrap();
        assert_eq!(input.wanted, Wanted::Video);
        assert_eq!(input.urgency, Urgency::Routine);
        assert_eq!(input.radius, 30.0);
        let cases = [
            (
                json!([{"name": "service", "valueString": "cardiology"}]),
                "patient",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "birthDate", "valueDate": "2017-05-01"}, {"name": "service", "valueString": "x-ray"}]),
                "patient",
            ),
            (
                json!([{"name": "birthDate", "valueDate": "2017-05-01"}, {"name": "service", "valueString": "cardiology"}]),
                "postalCode",
            ),
            (
                json!([{"name": "birthDate", "valueDate": "2017-02-30"}, {"name": "postalCode", "valueString": "06320"}, {"name": "service", "valueString": "cardiology"}]),
                "birthDate",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}]),
                "service",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "modality", "valueCode": "phone"}]),
                "modality",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "urgency", "valueCode": "soon"}]),
                "urgency",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "radius", "valueDecimal": -3}]),
                "radius",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "patientState", "valueCode": "Connecticut"}]),
                "patientState",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Organization/a"}}, {"name": "service", "valueString": "cardiology"}]),
                "patient",
            ),
            (
                json!([{"name": "patient", "valueReference": {"reference": "Patient/a"}}, {"name": "service", "valueString": "cardiology"}, {"name": "colour", "valueString": "red"}]),
                "colour",
            ),
        ];
        for (parts, param) in cases {
            let e = parse_input(&p(parts.clone())).unwrap_err();
            assert_eq!(e.status, 400, "{parts}");
            assert_eq!(
                e.issues[0].expression.as_deref(),
                Some(param),
                "{parts}: {}",
                e.issues[0].diagnostics
            );
        }
    }
}
