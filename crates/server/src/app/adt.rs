//! Hospital events: an HL7 v2 ADT message applied as one unit of work, run as the system
//! caller named after the sending facility (`hl7:CC`), through the caller-bound store.
//!
//! In order, in one transaction: a message already registered under the same sender and
//! MSH-10 changes nothing (and is acknowledged AA again); the patient is resolved — PID-3's
//! identifiers with their assigning authorities first (`care::hl7::adt::authority_system`),
//! then `$match` scoring of PID's demographics: one certain match is the patient; a probable or
//! possible one is **held, not guessed** (the hospital's own record of the patient is written,
//! so identity linkage puts the pair in the review queue; the message waits in the register and
//! is applied when a reviewer decides — [`release_held`]); nobody is an AE. Then the Encounter
//! (found by the visit number) is written or updated by `care::hl7::adt::encounter`, with a
//! Provenance naming the message, the message registered with its text, and the alerts written
//! to the outbox — to the owners of the patient's open referrals, the care team, the
//! transition coordinator of a young person in the registry and the established clinicians
//! (`generalPractitioner`), each only if the access policy would show them the Encounter (an
//! admission for minor-consented care never reaches a parent), none when the patient opted out.
//! Any refusal rolls all of it back: an AA means committed.

use std::sync::{Arc, Mutex};

use care::access::{Grant, ResourceFacts, Role, Scopes, Subject};
use care::hl7::{AckCode, Adt, ErrorCode, Event, Hl7Error, Location, Refusal};
use fhir::search::extract;
use serde_json::{Value, json};
use store::{Caller, CallerTx, Hl7Message, NewMessage, OnBehalf, Stored};

use super::resources::{body, search};
use super::{App, Ctx, Work};
use crate::error::ApiError;

/// What became of a message, for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub code: AckCode,
    /// MSA-3: what was done, or why not.
    pub text: String,
    pub error: Option<Hl7Error>,
    /// The message's register id, when it was registered (applied or held).
    pub message_id: Option<String>,
}

/// What applying a message did.
#[derive(Debug, Clone)]
struct Applied {
    text: String,
    message_id: String,
}

fn refusal(ack: AckCode, code: ErrorCode, at: Option<Location>, words: String) -> Refusal {
    Refusal {
        ack,
        error: Hl7Error::new(code, at, words),
    }
}

/// The system caller a hospital's messages run as.
fn hospital_caller(facility: &str) -> Caller {
    let name: String = facility
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(60)
        .collect();
    super::system_caller(&format!(
        "hl7:{}",
        if name.is_empty() { "unknown" } else { &name }
    ))
}

/// The sender of a message as registered: MSH-3 and MSH-4.
fn sender_of(adt: &Adt) -> String {
    format!("{}|{}", adt.sending_application, adt.facility())
}

/// Applies the bytes of one message (one MLLP frame) and says what to acknowledge.
pub async fn receive(app: &App, bytes: &[u8], peer: Option<String>) -> (Received, String) {
    let (header, read) = care::hl7::read(bytes);
    let facility = header
        .as_ref()
        .map(|h| h.sending_facility.clone())
        .unwrap_or_default();
    let caller = Arc::new(hospital_caller(&facility));
    let received = match read {
        Err(r) => {
            let work = Work::request("hl7-message", false, peer);
            let status = if r.ack == AckCode::Rejected { 400 } else { 422 };
            if let Err(e) = app.audit_refusal(&caller, &work, status).await {
                tracing::error!(status = e.status, "could not record the refused message");
            }
            Received {
                code: r.ack,
                text: r.error.message.clone(),
                error: Some(r.error),
                message_id: None,
            }
        }
        Ok(adt) => {
            let raw = match care::hl7::message::decode(bytes) {
                Ok(t) => t,
                Err(_) => String::from_utf8_lossy(bytes).into_owned(),
            };
            let refused: Arc<Mutex<Option<Refusal>>> = Arc::default();
            let slot = refused.clone();
            let work = Work::request("hl7-message", true, peer);
            let result = app
                .run(caller, work, app.job_ctx(), move |tx, ctx| {
                    match apply(tx, ctx, &adt, &raw, None)? {
                        Ok(applied) => Ok(applied),
                        Err(r) => {
                            let words = r.error.to_string();
                            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                            Err(ApiError::new(422, fhir::IssueType::Processing, words))
                        }
                    }
                })
                .await;
            match result {
                Ok(applied) => Received {
                    code: AckCode::Accepted,
                    text: applied.text,
                    error: None,
                    message_id: Some(applied.message_id),
                },
                Err(e) => {
                    let r = refused
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                        .unwrap_or_else(|| {
                            let why = e
                                .issues
                                .first()
                                .map(|i| i.diagnostics.as_str())
                                .unwrap_or("an error");
                            if e.status >= 500 || e.status == 409 {
                                // not the message's fault: AR, which senders resend
                                refusal(
                                    AckCode::Rejected,
                                    ErrorCode::Internal,
                                    None,
                                    format!("the message could not be applied now ({why}); nothing was stored — send it again"),
                                )
                            } else {
                                refusal(
                                    AckCode::Error,
                                    ErrorCode::Internal,
                                    None,
                                    format!("the message could not be applied: {why}; nothing was stored"),
                                )
                            }
                        });
                    Received {
                        code: r.ack,
                        text: r.error.message.clone(),
                        error: Some(r.error),
                        message_id: None,
                    }
                }
            }
        }
    };
    let now = app.store().clock().now_ms();
    let ack_id: String = uuid::Uuid::new_v4().simple().to_string()[..20].to_string();
    let ack = care::hl7::ack(
        header.as_ref(),
        received.code,
        &received.text,
        received.error.as_ref(),
        &ack_id,
        &care::hl7::dtm_of(now),
    );
    (received, ack)
}

/// The AR of a message over the listener's limit (its header read from its first bytes),
/// audited as a refusal like any other message.
pub async fn oversized(
    app: &App,
    head: &[u8],
    size: usize,
    max: usize,
    peer: Option<String>,
) -> String {
    let text = String::from_utf8_lossy(head);
    let header = care::hl7::message::header(&text);
    let caller = hospital_caller(
        header
            .as_ref()
            .map(|h| h.sending_facility.as_str())
            .unwrap_or(""),
    );
    if let Err(e) = app
        .audit_refusal(&caller, &Work::request("hl7-message", false, peer), 413)
        .await
    {
        tracing::error!(status = e.status, "could not record the refused message");
    }
    let error = Hl7Error::new(
        ErrorCode::SegmentSequence,
        None,
        format!("the message is {size} bytes; at most {max} are taken"),
    );
    care::hl7::ack(
        header.as_ref(),
        AckCode::Rejected,
        &error.message,
        Some(&error),
        &uuid::Uuid::new_v4().simple().to_string()[..20],
        &care::hl7::dtm_of(app.store().clock().now_ms()),
    )
}

/// How the patient of a message was resolved.
enum Resolution {
    Found(Stored),
    /// Candidates that may be the patient: (reference, grade).
    Uncertain(Vec<(String, String)>),
    Unknown,
}

/// Applies a message in the caller's transaction: `Ok(Err(_))` is a refusal (AE/AR) the caller
/// rolls back. `held`: the register row of a held message being released.
fn apply(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
    raw: &str,
    held: Option<&Hl7Message>,
) -> Result<Result<Applied, Refusal>, ApiError> {
    let sender = sender_of(adt);
    // one message per sender and control id at a time, and one per visit (on PostgreSQL,
    // servers and connections run side by side)
    tx.lock_condition(&format!("hl7:{sender}|{}", adt.control_id))?;
    if let Some(n) = &adt.visit.number {
        tx.lock_condition(&format!("hl7-visit:{}|{}", adt.visit_system(), n.value))?;
    }
    if held.is_none()
        && let Some(m) = tx
            .on_behalf(OnBehalf::HospitalEvents)
            .hl7_message(&sender, &adt.control_id)?
    {
        return Ok(Ok(Applied {
            text: format!(
                "already received (message {} is {}); nothing changed",
                adt.control_id, m.state
            ),
            message_id: m.id,
        }));
    }
    if let Some((_, why)) = care::plausible::future_date("Patient", &adt.person.patient(), tx.now())
    {
        return Ok(Err(refusal(
            AckCode::Error,
            ErrorCode::DataType,
            Some(Location::field("PID", 7)),
            why,
        )));
    }
    let organization = facility_organization(tx, ctx, adt)?;
    let patient = match resolve(tx, ctx, adt)? {
        Ok(Resolution::Found(p)) => p,
        Ok(Resolution::Unknown) => {
            return Ok(Err(refusal(
                AckCode::Error,
                ErrorCode::UnknownKey,
                Some(Location::field("PID", 3)),
                "no patient of the alliance has PID-3's identifiers, nor this name and birth date; nothing was stored".into(),
            )));
        }
        Ok(Resolution::Uncertain(candidates)) => {
            if held.is_some() {
                return Ok(Err(refusal(
                    AckCode::Error,
                    ErrorCode::UnknownKey,
                    Some(Location::field("PID", 3)),
                    "the patient is still not certain".into(),
                )));
            }
            if adt.person.identifiers.iter().all(|c| c.system().is_none()) {
                // a record without an authority could not be told apart from the next one
                return Ok(Err(refusal(
                    AckCode::Error,
                    ErrorCode::UnknownKey,
                    Some(Location::component("PID", 3, 4)),
                    "the patient is not certain, and PID-3 names no assigning authority to keep the hospital's record by; send PID-3.4".into(),
                )));
            }
            return hold(
                tx,
                ctx,
                adt,
                raw,
                &sender,
                organization.as_ref(),
                &candidates,
            )
            .map(Ok);
        }
        Err(r) => return Ok(Err(r)),
    };
    // a patient with messages waiting for review: this one waits behind them, in order
    if held.is_none() {
        let waiting = tx
            .on_behalf(OnBehalf::HospitalEvents)
            .hl7_held_for(std::slice::from_ref(&patient.id))?;
        if !waiting.is_empty() {
            let id = register(
                tx,
                adt,
                raw,
                &sender,
                "held",
                Some(&patient.id),
                None,
                &format!(
                    "held behind {} earlier message(s) of Patient/{} waiting for identity review",
                    waiting.len(),
                    patient.id
                ),
            )?;
            return Ok(Ok(Applied {
                text: "held: an earlier message of this patient waits for identity review".into(),
                message_id: id,
            }));
        }
    }
    let patient_body = body(&patient);
    let patient_ref = format!("Patient/{}", patient.id);
    let prior = match prior_encounter(tx, ctx, adt, &patient_ref, organization.as_ref())? {
        Ok(p) => p,
        Err(r) => return Ok(Err(r)),
    };
    let now = tx.now();
    let minor = patient_body
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(care::access::age::BirthDate::parse)
        .is_some_and(|b| care::access::age::age_on(b, now) < 18);
    let org_ref = organization
        .as_ref()
        .map(|(id, _)| format!("Organization/{id}"));
    let institution = organization
        .as_ref()
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| adt.facility().to_string());
    let refs = care::hl7::adt::Refs {
        patient: &patient_ref,
        service_provider: org_ref.as_deref(),
        institution: &institution,
        attending: None,
        minor,
    };
    let prior_body = prior.as_ref().map(body);
    let encounter = match care::hl7::adt::encounter(adt, prior_body.as_ref(), &refs) {
        Ok(e) => e,
        Err(r) => return Ok(Err(r)),
    };
    let created = prior.is_none();
    let stored = write(tx, ctx, "Encounter", prior.as_ref(), encounter)?;
    let encounter = body(&stored);
    tx.trail
        .add("Encounter", &stored.id, std::slice::from_ref(&patient.id));
    provenance(
        tx,
        ctx,
        adt,
        &sender,
        &stored,
        &encounter,
        org_ref.as_deref(),
        &institution,
        created,
    )?;
    let status = encounter["status"].as_str().unwrap_or("").to_string();
    let alerts = if adt.event.alerts() {
        alert(
            tx,
            ctx,
            adt,
            &sender,
            &patient,
            &stored.id,
            &encounter,
            &institution,
        )?
    } else {
        0
    };
    let detail = format!(
        "Encounter/{} {} ({status}); {alerts} alert(s)",
        stored.id,
        if created { "created" } else { "updated" },
    );
    let message_id = match held {
        Some(m) => {
            tx.on_behalf(OnBehalf::HospitalEvents).hl7_message_settle(
                &m.id,
                "released",
                Some(&patient.id),
                Some(&stored.id),
                &detail,
            )?;
            m.id.clone()
        }
        None => register(
            tx,
            adt,
            raw,
            &sender,
            "applied",
            Some(&patient.id),
            Some(&stored.id),
            &detail,
        )?,
    };
    Ok(Ok(Applied {
        text: detail,
        message_id,
    }))
}

/// Registers a message (applied or held); returns its id.
#[allow(clippy::too_many_arguments)]
fn register(
    tx: &mut CallerTx,
    adt: &Adt,
    raw: &str,
    sender: &str,
    state: &str,
    patient: Option<&str>,
    encounter: Option<&str>,
    detail: &str,
) -> Result<String, ApiError> {
    let id = tx.new_id();
    let received_ms = tx.now();
    tx.on_behalf(OnBehalf::HospitalEvents)
        .hl7_message_add(&Hl7Message {
            id: id.clone(),
            sender: sender.to_string(),
            control_id: adt.control_id.clone(),
            received_ms,
            event: adt.event.code().to_string(),
            state: state.to_string(),
            patient_id: patient.map(str::to_string),
            encounter_id: encounter.map(str::to_string),
            detail: detail.to_string(),
            raw: raw.to_string(),
        })?;
    Ok(id)
}

/// The sending facilities' Organizations found so far, valid for one directory version (an
/// Organization write bumps it).
#[derive(Debug, Default)]
pub struct FacilityCache(Mutex<(i64, Facilities)>);

/// A facility's key → its Organization (id, name), or none.
type Facilities = std::collections::HashMap<String, Option<(String, String)>>;

/// The Organization registered under the sending facility's name (MSH-4) — an identifier of
/// the system `care::profile::HL7_FACILITY` — or under its universal id; with its name.
fn facility_organization(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
) -> Result<Option<(String, String)>, ApiError> {
    let version = tx.on_behalf(OnBehalf::Directory).directory_version()?;
    let key = format!("{:?}", adt.sending_facility);
    {
        let cache = ctx.facilities.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 == version
            && let Some(found) = cache.1.get(&key)
        {
            return Ok(found.clone());
        }
    }
    let found = facility_lookup(tx, ctx, adt)?;
    let mut cache = ctx.facilities.0.lock().unwrap_or_else(|p| p.into_inner());
    if cache.0 != version {
        *cache = (version, Default::default());
    }
    cache.1.insert(key, found.clone());
    Ok(found)
}

fn facility_lookup(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
) -> Result<Option<(String, String)>, ApiError> {
    let (namespace, universal, kind) = &adt.sending_facility;
    let mut tokens = Vec::new();
    if !namespace.is_empty() {
        tokens.push(format!("{}|{namespace}", care::profile::HL7_FACILITY));
    }
    if let Some(system) = care::hl7::adt::authority_system("", universal, kind) {
        tokens.push(format!("{system}|{universal}"));
    }
    for token in tokens {
        if let Some(o) = search(tx, ctx, "Organization", &[("identifier", token)])?.first() {
            let name = body(o)["name"]
                .as_str()
                .unwrap_or(adt.facility())
                .to_string();
            return Ok(Some((o.id.clone(), name)));
        }
    }
    Ok(None)
}

/// Resolves the patient: PID-3's identifiers, then the demographics' `$match` scoring.
fn resolve(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
) -> Result<Result<Resolution, Refusal>, ApiError> {
    for cx in &adt.person.identifiers {
        let Some(system) = cx.system() else { continue };
        let found = search(
            tx,
            ctx,
            "Patient",
            &[("identifier", format!("{system}|{}", cx.value))],
        )?;
        match found.len() {
            0 => continue,
            1 => {
                return Ok(Ok(Resolution::Found(
                    found.into_iter().next().expect("one"),
                )));
            }
            n => {
                return Ok(Err(refusal(
                    AckCode::Error,
                    ErrorCode::UnknownKey,
                    Some(Location::field("PID", 3)),
                    format!(
                        "identifier {} of {system} names {n} patients of the alliance; it must name one",
                        cx.value
                    ),
                )));
            }
        }
    }
    let wanted = adt.person.patient();
    if adt.person.birth_date.is_none()
        || (adt.person.name.family.is_empty() && adt.person.name.given.is_empty())
    {
        return Ok(Ok(Resolution::Unknown));
    }
    let matched = super::matching::patient_match(
        tx,
        ctx,
        super::matching::MatchRequest {
            patient: wanted,
            only_certain: false,
            count: 5,
        },
    )?;
    let mut certain = Vec::new();
    let mut uncertain = Vec::new();
    for e in matched["entry"].as_array().into_iter().flatten() {
        let id = e
            .pointer("/resource/id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let grade = e
            .pointer("/search/extension/0/valueCode")
            .and_then(Value::as_str)
            .unwrap_or("");
        // certain by the score is not enough to act on without a review: the family name and
        // the birth date must be the message's too (a same-named classmate born the same day is
        // not the patient; a step-parent's name is a question for a reviewer)
        let agrees = e
            .get("resource")
            .is_some_and(|r| same_person_details(&adt.person, r));
        if grade == "certain" && agrees {
            certain.push(id.to_string());
        }
        let grade = if grade == "certain" && !agrees {
            "probable"
        } else {
            grade
        };
        uncertain.push((format!("Patient/{id}"), grade.to_string()));
    }
    if certain.len() == 1
        && uncertain.len() == 1
        && let Some(p) = tx.current("Patient", &certain[0], false)?
    {
        return Ok(Ok(Resolution::Found(p)));
    }
    // only a probable (or a second certain) candidate is worth a reviewer's time: a merely
    // possible one (a shared birth date) is nobody
    if uncertain
        .iter()
        .any(|(_, grade)| matches!(grade.as_str(), "probable" | "certain"))
    {
        Ok(Ok(Resolution::Uncertain(uncertain)))
    } else {
        Ok(Ok(Resolution::Unknown))
    }
}

/// Whether a stored Patient has the message's family name (letters compared, case aside) and
/// birth date.
fn same_person_details(person: &care::hl7::adt::Person, patient: &Value) -> bool {
    let letters = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let family = letters(&person.name.family);
    let same_family = !family.is_empty()
        && patient["name"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.get("family").and_then(Value::as_str))
            .any(|f| letters(f) == family);
    same_family && patient.get("birthDate").and_then(Value::as_str) == person.birth_date.as_deref()
}

/// Holds a message whose patient is not certain: the hospital's own record of the patient is
/// written (identity linkage pairs it with its candidates for review) and the message waits.
fn hold(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
    raw: &str,
    sender: &str,
    organization: Option<&(String, String)>,
    candidates: &[(String, String)],
) -> Result<Applied, ApiError> {
    let mut record = adt.person.patient();
    if let Some((id, name)) = organization {
        record["managingOrganization"] =
            json!({"reference": format!("Organization/{id}"), "display": name});
    }
    let stored = write(tx, ctx, "Patient", None, record)?;
    tx.trail
        .add("Patient", &stored.id, std::slice::from_ref(&stored.id));
    let named: Vec<String> = candidates
        .iter()
        .map(|(r, g)| format!("{r} ({g})"))
        .collect();
    let detail = format!(
        "held for identity review: the patient may be {}; the hospital's record is Patient/{} — the message is applied when a reviewer decides",
        named.join(", "),
        stored.id
    );
    let id = register(
        tx,
        adt,
        raw,
        sender,
        "held",
        Some(&stored.id),
        None,
        &detail,
    )?;
    Ok(Applied {
        text: "held for identity review: the patient is not certain; the message is stored and is applied when a reviewer decides".into(),
        message_id: id,
    })
}

/// The Encounter the message is about: by its visit number, else (for a message that is not
/// an admission or registration) the patient's latest open one.
fn prior_encounter(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
    patient_ref: &str,
    organization: Option<&(String, String)>,
) -> Result<Result<Option<Stored>, Refusal>, ApiError> {
    let found = match &adt.visit.number {
        Some(n) => search(
            tx,
            ctx,
            "Encounter",
            &[("identifier", format!("{}|{}", adt.visit_system(), n.value))],
        )?,
        None if matches!(adt.event, Event::A01 | Event::A04) => Vec::new(),
        None => {
            // without a visit number: the patient's open visit at this facility
            let Some((org, _)) = organization else {
                return Ok(Err(refusal(
                    AckCode::Error,
                    ErrorCode::RequiredField,
                    Some(Location::field("PV1", 19)),
                    "PV1-19 (the visit number) is required to find the visit: the sending facility is not in the directory".into(),
                )));
            };
            let mut open = search(
                tx,
                ctx,
                "Encounter",
                &[
                    ("subject", patient_ref.to_string()),
                    ("service-provider", format!("Organization/{org}")),
                    ("status", "in-progress,arrived".to_string()),
                    ("_sort", "-date".to_string()),
                ],
            )?;
            open.truncate(1);
            open
        }
    };
    let Some(prior) = found.into_iter().next() else {
        return Ok(Ok(None));
    };
    let subject = body(&prior)
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if subject != patient_ref {
        return Ok(Err(refusal(
            AckCode::Error,
            ErrorCode::UnknownKey,
            Some(Location::field("PV1", 19)),
            format!(
                "visit {} is recorded for another patient; a visit number names one patient's visit",
                adt.visit
                    .number
                    .as_ref()
                    .map(|n| n.value.as_str())
                    .unwrap_or("")
            ),
        )));
    }
    Ok(Ok(Some(prior)))
}

/// Writes a resource as the caller — decided by the access policy, with the labels that follow
/// the care and the type's write rule (an Encounter relabels what it holds; a Patient is
/// linked).
fn write(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    prior: Option<&Stored>,
    mut resource: Value,
) -> Result<Stored, ApiError> {
    // a Provenance carries the labels of the Encounter it is about, copied when it is made
    if rt != "Provenance" {
        super::labels::apply_automatic_labels(tx, &mut resource)?;
    }
    // what a message makes is held to the same rules as what a client sends
    fhir::validate_resource(&resource).map_err(|issues| ApiError::with_issues(422, issues))?;
    let index = extract(ctx.registry, &resource);
    let stored = match prior {
        Some(prev) => {
            let permit = tx
                .permit_update(prev, &resource, &index)?
                .map_err(|r| ApiError::refused(r, rt, &prev.id))?;
            tx.update_permitted(permit, prev, &mut resource, &index)?
                .map_err(|r| ApiError::refused(r, rt, &prev.id))?
        }
        None => {
            let id = tx.new_id();
            let permit = tx
                .permit_create(rt, &id, &resource, &index)?
                .map_err(|r| ApiError::refused(r, rt, &id))?;
            // the write rule after the decision, as on every write path
            if rt == "Patient" {
                super::linkage::on_write(tx, ctx, &id, &resource)?;
            }
            tx.create_permitted(permit, rt, &id, &mut resource, &index)?
                .map_err(|r| ApiError::refused(r, rt, &id))?
        }
    };
    if rt == "Encounter" {
        super::labels::relabel_encounter_contents(tx, ctx, &stored.id, &body(&stored))?;
    }
    Ok(stored)
}

/// The Provenance of the Encounter's version: the sending institution as author, the message
/// as source.
#[allow(clippy::too_many_arguments)]
fn provenance(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
    sender: &str,
    stored: &Stored,
    encounter: &Value,
    org_ref: Option<&str>,
    institution: &str,
    created: bool,
) -> Result<(), ApiError> {
    let mut who = json!({"display": institution});
    if let Some(r) = org_ref {
        who["reference"] = json!(r);
    }
    let patient = encounter
        .pointer("/subject/reference")
        .cloned()
        .unwrap_or(Value::Null);
    let mut p = json!({
        "resourceType": "Provenance",
        "target": [{"reference": format!("Encounter/{}/_history/{}", stored.id, stored.version)}, {"reference": patient}],
        "recorded": fhir::primitive::format_instant(tx.now()),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": if created { "CREATE" } else { "UPDATE" }}]},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]}, "who": who}],
        "entity": [{"role": "source", "what": {
            "identifier": {"system": care::profile::HL7_MESSAGE, "value": format!("{sender}|{}", adt.control_id)},
            "display": format!("HL7 v2 ADT^{} message {} from {}", adt.event.code(), adt.control_id, adt.facility())
        }}]
    });
    if let Some(s) = encounter.pointer("/meta/security") {
        p["meta"] = json!({"security": s});
    }
    let stored = write(tx, ctx, "Provenance", None, p)?;
    let patients: Vec<String> = encounter
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(|p| vec![p.to_string()])
        .unwrap_or_default();
    tx.trail.add("Provenance", &stored.id, &patients);
    Ok(())
}

/// Who is told of a patient's hospital event, and why: (reference, why).
fn recipients(
    tx: &mut CallerTx,
    ctx: &Ctx,
    patients: &[String],
    patient: &Value,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |r: &str, why: &str| {
        if r.contains('/') && !out.iter().any(|(o, _)| o == r) {
            out.push((r.to_string(), why.to_string()));
        }
    };
    for pid in patients {
        let pref = format!("Patient/{pid}");
        for t in search(
            tx,
            ctx,
            "Task",
            &[
                ("patient", pref.clone()),
                (
                    "status",
                    "requested,received,accepted,ready,in-progress,on-hold".into(),
                ),
            ],
        )? {
            let task = body(&t);
            if care::referral::is_referral(&task)
                && let Some(owner) = task.pointer("/owner/reference").and_then(Value::as_str)
            {
                add(owner, "you own an open referral for them");
            }
        }
        for team in search(
            tx,
            ctx,
            "CareTeam",
            &[("patient", pref.clone()), ("status", "active".into())],
        )? {
            for member in body(&team)["participant"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.pointer("/member/reference").and_then(Value::as_str))
            {
                add(member, "you are on their care team");
            }
        }
    }
    for gp in patient["generalPractitioner"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("reference").and_then(Value::as_str))
    {
        add(gp, "you are their established clinician");
    }
    // a young person in the transition registry: the coordinator at their organisation
    let config = care::transition::TransitionConfig::default();
    let age = patient
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(care::access::age::BirthDate::parse)
        .map(|b| care::access::age::age_on(b, tx.now()));
    if let (Some(age), Some(org)) = (
        age,
        patient
            .pointer("/managingOrganization/reference")
            .and_then(Value::as_str),
    ) && (config.enters_at..config.leaves_at).contains(&age)
    {
        add(org, "you coordinate their transition to adult care");
    }
    Ok(out)
}

/// The caller a recipient would be, to ask the access policy whether they may see the
/// Encounter (a Practitioner acts for the organisations of their roles).
fn recipient_caller(
    tx: &mut CallerTx,
    ctx: &Ctx,
    recipient: &str,
) -> Result<Option<Caller>, ApiError> {
    let Some((rt, id)) = fhir::json::split_reference(recipient) else {
        return Ok(None);
    };
    let (grants, fhir_users) = match rt {
        "Patient" => (
            vec![Grant {
                role: Role::Patient,
                organization: None,
            }],
            vec![(rt, id)],
        ),
        "RelatedPerson" => (
            vec![Grant {
                role: Role::Proxy,
                organization: None,
            }],
            vec![(rt, id)],
        ),
        "Organization" => (
            vec![Grant {
                role: Role::Clinician,
                organization: Some(id.to_string()),
            }],
            vec![],
        ),
        "Practitioner" => {
            let roles = search(
                tx,
                ctx,
                "PractitionerRole",
                &[("practitioner", recipient.to_string())],
            )?;
            let grants: Vec<Grant> = roles
                .iter()
                .filter_map(|r| {
                    body(r)
                        .pointer("/organization/reference")
                        .and_then(Value::as_str)
                        .and_then(|o| o.strip_prefix("Organization/"))
                        .map(str::to_string)
                })
                .map(|o| Grant {
                    role: Role::Clinician,
                    organization: Some(o),
                })
                .collect();
            (grants, vec![(rt, id)])
        }
        // a service or a role acts for the organisation that provides it
        "HealthcareService" | "PractitionerRole" => {
            let Some(r) = tx.current(rt, id, false)? else {
                return Ok(None);
            };
            let field = if rt == "HealthcareService" {
                "providedBy"
            } else {
                "organization"
            };
            let org =
                fhir::json::reference_id(&body(&r)[field], "Organization").map(str::to_string);
            (
                vec![Grant {
                    role: Role::Clinician,
                    organization: org,
                }],
                vec![],
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(Caller {
        subject: Subject {
            id: format!("alert:{recipient}"),
            grants,
            fhir_users: fhir_users
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            scopes: Scopes::all_user(),
        },
        policy: tx.caller().policy.clone(),
    }))
}

/// Writes the alerts of a hospital event (outbox rows and their Communications); returns how
/// many were written.
#[allow(clippy::too_many_arguments)]
fn alert(
    tx: &mut CallerTx,
    ctx: &Ctx,
    adt: &Adt,
    sender: &str,
    patient: &Stored,
    encounter_id: &str,
    encounter: &Value,
    institution: &str,
) -> Result<usize, ApiError> {
    let patient_body = body(patient);
    // the person: this record and the records linked to it
    let mut patients = vec![patient.id.clone()];
    for p in tx
        .on_behalf(OnBehalf::HospitalEvents)
        .identity_partners(&patient.id)?
    {
        if !patients.contains(&p) {
            patients.push(p);
        }
    }
    // an opt-out recorded on any of the person's records counts
    let mut consents: Vec<Value> = Vec::new();
    for pid in &patients {
        consents.extend(
            search(tx, ctx, "Consent", &[("patient", format!("Patient/{pid}"))])?
                .iter()
                .map(body),
        );
    }
    if care::hl7::adt::opted_out(&consents) {
        tx.trail.description = Some("hospital event alerts: the patient opted out".into());
        return Ok(0);
    }
    let relationships = tx
        .on_behalf(OnBehalf::Notifications)
        .care_relationships_of(std::slice::from_ref(&patient.id))?;
    let facts = ResourceFacts {
        resource_type: "Encounter".into(),
        patients: vec![patient.id.clone()],
        labels: store::access::label_codes(encounter),
        relationships,
        ..Default::default()
    };
    let name = care::hl7::adt::Name {
        family: patient_body
            .pointer("/name/0/family")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        given: patient_body
            .pointer("/name/0/given")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    }
    .text();
    let words = care::hl7::adt::alert_text(adt, &name, institution);
    let security = encounter.pointer("/meta/security").cloned();
    let mut written = 0;
    let mut communications: Vec<(String, Value)> = Vec::new();
    for (recipient, why) in recipients(tx, ctx, &patients, &patient_body)? {
        let Some(caller) = recipient_caller(tx, ctx, &recipient)? else {
            continue;
        };
        if !store::access::would_see(tx.on_behalf(OnBehalf::Notifications), &caller, &facts)? {
            continue; // the policy would not show them this visit (a parent, a sensitive one)
        }
        let (rt, rid) = fhir::json::split_reference(&recipient).unwrap_or(("", ""));
        let email = tx
            .on_behalf(OnBehalf::Notifications)
            .current(rt, rid, false)?
            .map(|s| body(&s))
            .and_then(|r| super::notify::email_of(&r));
        let communication_id = tx.new_id();
        let text = format!("{words} You are told because {why}.");
        let row = NewMessage {
            id: tx.new_id(),
            event_key: format!("hospital-event:{sender}:{}", adt.control_id),
            recipient: recipient.clone(),
            kind: care::profile::HOSPITAL_EVENTS.into(),
            channel: "message".into(),
            target: None,
            communication_id: Some(communication_id.clone()),
            payload: json!({
                "patient": patient.id,
                "email": email,
                "subject": "Hospital event alert",
                "text": text,
                "encounter": encounter_id,
            })
            .to_string(),
            due_ms: tx.now(),
        };
        if !tx.on_behalf(OnBehalf::Notifications).outbox_add(&row)? {
            continue;
        }
        let mut communication = json!({
            "resourceType": "Communication",
            "status": "preparation",
            "category": [{"coding": [{"system": care::profile::NOTIFICATION, "code": care::profile::HOSPITAL_EVENTS}]}],
            "subject": {"reference": format!("Patient/{}", patient.id)},
            "about": [{"reference": format!("Encounter/{encounter_id}")}],
            "recipient": [{"reference": recipient}],
            "reasonCode": [{"text": why}],
            "payload": [{"contentString": text}],
        });
        if let Some(s) = &security {
            communication["meta"] = json!({"security": s});
        }
        communications.push((communication_id, communication));
        written += 1;
    }
    // the Communications of every alert, stored together (one multi-row write)
    let indexes: Vec<Vec<fhir::search::IndexEntry>> = communications
        .iter()
        .map(|(_, c)| extract(ctx.registry, c))
        .collect();
    let mut items: Vec<store::NewResource> = communications
        .iter_mut()
        .zip(&indexes)
        .map(|((id, c), index)| store::NewResource {
            resource_type: "Communication",
            id: id.clone(),
            resource: c,
            index,
        })
        .collect();
    if !items.is_empty() {
        tx.on_behalf(OnBehalf::Notifications)
            .create_many(&mut items)?;
    }
    for (id, _) in &communications {
        tx.trail
            .add("Communication", id, std::slice::from_ref(&patient.id));
    }
    Ok(written)
}

/// Applies the held messages of these patients (after a reviewer decided on a pair of them),
/// oldest first, each as the hospital that sent it, in one unit of work per message. Returns
/// how many were applied.
pub async fn release_held(app: &App, patients: Vec<String>) -> Result<usize, ApiError> {
    let held = app
        .system_read("hl7:held", move |tx, _ctx| {
            Ok((
                tx.on_behalf(OnBehalf::HospitalEvents)
                    .hl7_held_for(&patients)?,
                None,
            ))
        })
        .await?;
    let mut applied = 0;
    for m in held {
        let (_, read) = care::hl7::read(m.raw.as_bytes());
        let adt = read.ok();
        let caller = Arc::new(hospital_caller(
            adt.as_ref().map(|a| a.facility()).unwrap_or("unknown"),
        ));
        let work = Work {
            alone: true,
            ..Work::request("hl7-release", true, None)
        };
        let result = app
            .run(caller, work, app.job_ctx(), move |tx, ctx| {
                // still held? (another decision may have released it meanwhile)
                let Some(m) = tx
                    .on_behalf(OnBehalf::HospitalEvents)
                    .hl7_message_by_id(&m.id)?
                    .filter(|m| m.state == "held")
                else {
                    return Ok(false);
                };
                let Some(adt) = adt else {
                    tx.on_behalf(OnBehalf::HospitalEvents).hl7_message_settle(
                        &m.id,
                        "refused",
                        m.patient_id.as_deref(),
                        None,
                        "released, then refused: the stored message can no longer be read",
                    )?;
                    return Ok(false);
                };
                let raw = m.raw.clone();
                match apply(tx, ctx, &adt, &raw, Some(&m))? {
                    Ok(_) => Ok(true),
                    Err(r) => {
                        // it cannot apply (say, the visit was closed meanwhile): recorded, not retried
                        tx.on_behalf(OnBehalf::HospitalEvents).hl7_message_settle(
                            &m.id,
                            "refused",
                            m.patient_id.as_deref(),
                            None,
                            &format!("released, then refused: {}", r.error),
                        )?;
                        tx.trail.description =
                            Some("a held hospital message could not be applied".into());
                        Ok(false)
                    }
                }
            })
            .await;
        match result {
            Ok(true) => applied += 1,
            Ok(false) => {}
            // one message that cannot be applied now does not keep the others waiting
            Err(e) => tracing::error!(
                status = e.status,
                "a held hospital message could not be released"
            ),
        }
    }
    Ok(applied)
}
