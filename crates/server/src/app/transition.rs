//! The transition registry (issue 20, first slice): every young person aged 12–26 the caller
//! may see, where each of the Six Core Elements stands (`care::transition`) from the birth date
//! and the elements recorded — a Task coded with the element (`care::profile::TRANSITION_ELEMENT`)
//! for the young person, `completed` — and what is due or overdue. Read-only, as of a day.

use care::transition::{Element, ElementState, History, Mark, TaskChange, TransitionConfig};
use serde_json::{Value, json};
use store::CallerTx;

use super::Ctx;
use super::resources::{Reader, all_matching, body};
use crate::error::ApiError;

/// What the registry is asked.
#[derive(Debug, Clone)]
pub struct RegistryRequest {
    pub as_of_ms: i64,
    /// Only those with something due (`Some(false)`) or overdue (`Some(true)`).
    pub overdue: Option<bool>,
    /// Only those for whom this element is due or overdue.
    pub element: Option<Element>,
    /// Only those of these ages (inclusive).
    pub ages: Option<(i32, i32)>,
    /// Only those managed by this organisation (`Organization/id`).
    pub organization: Option<String>,
    /// Only this young person (a Patient id).
    pub patient: Option<String>,
    pub count: usize,
}

/// When a recorded element was done.
fn done_on(task: &Value) -> Option<i64> {
    ["/executionPeriod/end", "/lastModified", "/authoredOn"]
        .iter()
        .find_map(|p| task.pointer(p).and_then(Value::as_str))
        .and_then(fhir::json::instant_ms)
}

fn state_json(e: Element, s: &ElementState) -> Value {
    let at = |ms: i64| fhir::primitive::format_instant(ms);
    let mut v = json!({"element": e.code(), "words": e.words(), "state": s.code()});
    match s {
        ElementState::NotYet { due_ms: Some(d) } => v["due"] = json!(at(*d)),
        ElementState::Due { due_ms, late_ms } | ElementState::Overdue { due_ms, late_ms } => {
            v["due"] = json!(at(*due_ms));
            v["overdueFrom"] = json!(at(*late_ms));
        }
        ElementState::Done { on_ms } => v["done"] = json!(at(*on_ms)),
        _ => {}
    }
    v
}

/// The statuses of a Task still to be done.
const OPEN: &[&str] = &[
    "draft",
    "requested",
    "received",
    "accepted",
    "ready",
    "in-progress",
    "on-hold",
];

/// The search terms of Patients born so that, on `as_of_ms`, they are at least `young` and
/// younger than `old` years (a day's margin each side: exact ages are counted by the caller).
fn born_between(as_of_ms: i64, old: i32, young: i32) -> Vec<(&'static str, String)> {
    let day = |ms: i64| fhir::primitive::format_instant(ms)[..10].to_string();
    let years = |n: i32| n as i64 * 36525 / 100 * 86_400_000;
    vec![
        (
            "birthdate",
            format!("gt{}", day(as_of_ms - years(old) - 86_400_000)),
        ),
        (
            "birthdate",
            format!("le{}", day(as_of_ms - years(young) + 86_400_000)),
        ),
    ]
}

/// The search term that narrows a search to one young person's resources, when asked for one.
fn of_patient(only: Option<&str>) -> Option<(&'static str, String)> {
    only.map(|pid| ("patient", format!("Patient/{pid}")))
}

/// A young person in the registry's window, with what was recorded.
struct Loaded {
    id: String,
    body: Value,
    birth: care::access::BirthDate,
    history: History,
    /// The adult recipient the transfer package went to and who sent it (its element Task's
    /// `output`).
    transfer_to: Option<String>,
    transfer_from: Option<String>,
}

/// The young people the caller may see, born in the registry's window as of `as_of_ms` (a
/// day's margin each side: the exact ages are counted by the caller), with their histories.
fn load_young(
    tx: &mut CallerTx,
    ctx: &Ctx,
    as_of_ms: i64,
    config: &TransitionConfig,
    only: Option<&str>,
) -> Result<Vec<Loaded>, ApiError> {
    let mut who = born_between(as_of_ms, config.leaves_at, config.enters_at);
    who.extend(only.map(|pid| ("_id", pid.to_string())));
    let patients = all_matching(tx, ctx.registry, "Patient", &who, Reader::Caller)?;
    // the elements recorded, for everyone at once
    let mut recorded = vec![
        ("code", format!("{}|", care::profile::TRANSITION_ELEMENT)),
        ("status", "completed".into()),
    ];
    recorded.extend(of_patient(only));
    let tasks = all_matching(tx, ctx.registry, "Task", &recorded, Reader::Caller)?;
    type Transfer = (Option<String>, Option<String>);
    let mut histories: std::collections::HashMap<String, (History, Transfer)> = Default::default();
    for t in &tasks {
        let t = body(t);
        let Some(pid) = patient_of(&t) else { continue };
        if let (Some(e), Some(on)) = (element_of(&t), done_on(&t)) {
            if on > as_of_ms {
                continue; // after the day asked about
            }
            let entry = histories.entry(pid.to_string()).or_default();
            entry.0.done.push((e, on));
            if e == Element::TransferPackage {
                let part = |name: &str| {
                    t["output"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|o| o.pointer("/type/text").and_then(Value::as_str) == Some(name))
                        .and_then(|o| o.pointer("/valueReference/reference"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                entry.1 = (part("recipient"), part("sender"));
            }
        }
    }
    Ok(patients
        .iter()
        .filter_map(|p| {
            let b = body(p);
            let birth = b["birthDate"]
                .as_str()
                .and_then(care::access::BirthDate::parse)?;
            let (history, (transfer_to, transfer_from)) =
                histories.remove(&p.id).unwrap_or_default();
            Some(Loaded {
                id: p.id.clone(),
                body: b,
                birth,
                history,
                transfer_to,
                transfer_from,
            })
        })
        .collect())
}

/// `GET /api/transition/registry`: the young people, most overdue first.
pub fn registry(tx: &mut CallerTx, ctx: &Ctx, r: RegistryRequest) -> Result<Value, ApiError> {
    let config = TransitionConfig::default();
    let day = |ms: i64| fhir::primitive::format_instant(ms)[..10].to_string();
    let only = r.patient.as_deref();
    let young = load_young(tx, ctx, r.as_of_ms, &config, only)?;
    // who may act for those about to turn 18 and beyond: permits by Consent, guardianships
    let mut granted: std::collections::HashMap<String, Vec<String>> = Default::default();
    for c in all_matching(
        tx,
        ctx.registry,
        "Consent",
        &[Some(("status", "active".into())), of_patient(only)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        Reader::Caller,
    )? {
        let c = body(&c);
        if c.pointer("/provision/type").and_then(Value::as_str) == Some("deny") {
            continue;
        }
        let Some(pid) = c
            .pointer("/patient/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
        else {
            continue;
        };
        let actors = c
            .pointer("/provision/actor")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.pointer("/reference/reference").and_then(Value::as_str))
            .map(str::to_string);
        granted.entry(pid.to_string()).or_default().extend(actors);
    }
    let guardians: std::collections::HashSet<String> = all_matching(
        tx,
        ctx.registry,
        "RelatedPerson",
        &[Some((
            "relationship",
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode|GUARD,http://terminology.hl7.org/CodeSystem/v3-RoleCode|POWATT,http://terminology.hl7.org/CodeSystem/v3-RoleCode|HPOWATT,http://terminology.hl7.org/CodeSystem/v3-RoleCode|DPOWATT".into(),
        )), of_patient(only)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>(),
        Reader::Caller,
    )?
    .iter()
    .filter_map(|rp| {
        body(rp)
            .pointer("/patient/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
    })
    .collect();
    let mut rows: Vec<(u8, i64, Value)> = Vec::new();
    for p in &young {
        let (b, birth) = (&p.body, p.birth);
        if !care::transition::in_registry(birth, r.as_of_ms, &config) {
            continue;
        }
        let age = care::access::age_on(birth, r.as_of_ms);
        let org = b
            .pointer("/managingOrganization/reference")
            .and_then(Value::as_str);
        if r.patient.as_deref().is_some_and(|pid| pid != p.id)
            || r.ages.is_some_and(|(lo, hi)| age < lo || age > hi)
            || r.organization.as_deref().is_some_and(|o| Some(o) != org)
        {
            continue;
        }
        let history = &p.history;
        let states = care::transition::status(birth, history, r.as_of_ms, &config);
        let overdue: Vec<&(Element, ElementState)> = states
            .iter()
            .filter(|(_, s)| matches!(s, ElementState::Overdue { .. }))
            .collect();
        let due: Vec<&(Element, ElementState)> = states
            .iter()
            .filter(|(_, s)| matches!(s, ElementState::Due { .. }))
            .collect();
        let keep = match r.overdue {
            Some(true) => !overdue.is_empty(),
            Some(false) => !due.is_empty() || !overdue.is_empty(),
            None => true,
        } && r.element.is_none_or(|e| {
            states.iter().any(|(x, s)| {
                *x == e && matches!(s, ElementState::Due { .. } | ElementState::Overdue { .. })
            })
        });
        if !keep {
            continue;
        }
        let next = care::transition::next_due(&states);
        let rank = if !overdue.is_empty() {
            0
        } else if !due.is_empty() {
            1
        } else {
            2
        };
        let order = next.and_then(|(_, s)| s.due_ms()).unwrap_or(i64::MAX);
        let at = |ms: i64| fhir::primitive::format_instant(ms)[..10].to_string();
        let transfer = history.first(Element::TransferPackage).map(|sent| {
            let visit = history.first(Element::FirstAdultVisit);
            json!({
                "packageSent": at(sent),
                "firstAdultVisit": visit.map(at),
                "responsible": if visit.is_some() { "adult" } else { "pediatric" },
            })
        });
        let at18 = (age >= config.legal_due).then(|| {
            let to = granted.get(&p.id).cloned().unwrap_or_default();
            let guardian = guardians.contains(&p.id);
            json!({
                "proxyEnds": at(care::transition::birthday_ms(birth, 18)),
                "grantedTo": to,
                "guardianship": guardian,
                "words": care::transition::consent_words(age, &to, guardian),
            })
        });
        rows.push((rank, order, json!({
            "patient": format!("Patient/{}", p.id),
            "name": b.get("name").map(|_| person_name(b)),
            "birthDate": b["birthDate"],
            "age": age,
            "transfer": transfer,
            "at18": at18,
            "managingOrganization": b.pointer("/managingOrganization/reference"),
            "next": next.map(|(e, s)| state_json(e, &s)),
            "overdue": overdue.iter().map(|(e, _)| e.code()).collect::<Vec<_>>(),
            "due": due.iter().map(|(e, _)| e.code()).collect::<Vec<_>>(),
            "elements": states.iter().map(|(e, s)| state_json(*e, s)).collect::<Vec<_>>(),
            "transferNeeds": care::transition::missing_for_transfer(history).iter().map(|e| e.code()).collect::<Vec<_>>(),
        })));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    let total = rows.len();
    let items: Vec<Value> = rows.into_iter().take(r.count).map(|(_, _, v)| v).collect();
    let done = items.len();
    Ok(json!({
        "asOf": day(r.as_of_ms),
        "total": total,
        "count": done,
        "items": items,
    }))
}

/// What a scheduler run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleReport {
    /// Young people looked at (born in the registry's window).
    pub young_people: usize,
    pub created: usize,
    /// Open Tasks marked anew (due → overdue, new dates).
    pub marked: usize,
    pub closed: usize,
    /// Organisations told (one message a day at most).
    pub told: usize,
}

impl ScheduleReport {
    pub fn wrote(&self) -> bool {
        self.created + self.marked + self.closed + self.told > 0
    }

    pub fn words(&self) -> String {
        format!(
            "transition: {} young people, {} element tasks created, {} marked, {} closed, {} organisations told",
            self.young_people, self.created, self.marked, self.closed, self.told
        )
    }
}

/// The write rule of a Task coded with a transition element (on every write path): the code
/// is one of the elements, the Task is for a Patient, and a completed one is dated — its
/// `executionPeriod.end`, set to now when the writer gave none.
pub(crate) fn element_task_written(tx: &mut CallerTx, task: &mut Value) -> Result<(), ApiError> {
    let codes: Vec<&str> = task
        .pointer("/code/coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["system"] == care::profile::TRANSITION_ELEMENT)
        .filter_map(|c| c["code"].as_str())
        .collect();
    if codes.is_empty() {
        return Ok(());
    }
    let unprocessable = |at: &str, why: String| {
        ApiError::with_issues(
            422,
            vec![fhir::Issue::error(fhir::IssueType::Value, why).at(at)],
        )
    };
    if let Some(bad) = codes.iter().find(|c| Element::parse(c).is_none()) {
        return Err(unprocessable(
            "Task.code",
            format!(
                "'{bad}' is not a transition element ({})",
                Element::ALL
                    .iter()
                    .map(|e| e.code())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if patient_of(task).is_none() {
        return Err(unprocessable(
            "Task.for",
            "a transition element is recorded for the young person: Task.for names a Patient"
                .into(),
        ));
    }
    let by_itself = codes
        .iter()
        .filter_map(|c| Element::parse(c))
        .find(|e| matches!(e, Element::TransferPackage | Element::FirstAdultVisit));
    if let Some(e) = by_itself
        && task["status"] == "completed"
        && !tx.view().everything
    {
        return Err(unprocessable(
            "Task.code",
            format!(
                "'{}' is recorded by what it is: the transfer package by $transfer-package, the first adult visit by its Appointment fulfilled",
                e.code()
            ),
        ));
    }
    if task["status"] == "completed" && task.pointer("/executionPeriod/end").is_none() {
        let now = fhir::primitive::format_instant(tx.now());
        if !task["executionPeriod"].is_object() {
            task["executionPeriod"] = json!({});
        }
        task["executionPeriod"]["end"] = json!(now);
    }
    Ok(())
}

/// Noon UTC of a day given as `YYYY-MM-DD` (the as-of time of the registry and the scheduler).
pub fn day_noon_ms(d: &str) -> Option<i64> {
    fhir::primitive::parse_date_time(d, fhir::primitive::Precision::Day, false)
        .ok()
        .filter(|_| d.len() == 10)
        .map(|v| v.range().low + 12 * 3_600_000)
}

/// Young people per unit of work.
const BATCH: usize = 500;

/// The statuses of a Task still to be done.
fn is_open(task: &Value) -> bool {
    task["status"].as_str().is_some_and(|s| OPEN.contains(&s))
}

/// The element a Task is coded with.
pub(crate) fn element_of(task: &Value) -> Option<Element> {
    task.pointer("/code/coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["system"] == care::profile::TRANSITION_ELEMENT)
        .find_map(|c| c["code"].as_str().and_then(Element::parse))
}

fn patient_of(task: &Value) -> Option<&str> {
    task.pointer("/for/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
}

fn open_task(id: &str, task: &Value) -> Option<care::transition::OpenTask> {
    let at = |p: &str| {
        task.pointer(p)
            .and_then(Value::as_str)
            .and_then(fhir::json::instant_ms)
    };
    Some(care::transition::OpenTask {
        id: id.to_string(),
        element: element_of(task)?,
        mark: task
            .pointer("/businessStatus/coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c["system"] == care::profile::TRANSITION_STATE)
            .find_map(|c| c["code"].as_str().and_then(Mark::parse)),
        due_ms: at("/restriction/period/start"),
        late_ms: at("/restriction/period/end"),
    })
}

fn business_status(mark: Mark) -> Value {
    json!({"coding": [{"system": care::profile::TRANSITION_STATE, "code": mark.code()}], "text": mark.code()})
}

/// An element Task as the scheduler writes it: for the young person, owned by their managing
/// organisation, due in `restriction.period` (from `start`, overdue from `end`).
fn element_task(
    patient: &str,
    owner: Option<&str>,
    e: Element,
    mark: Mark,
    due_ms: i64,
    late_ms: i64,
    now: i64,
) -> Value {
    let at = fhir::primitive::format_instant;
    let mut task = json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "plan",
        "code": {"coding": [{"system": care::profile::TRANSITION_ELEMENT, "code": e.code(), "display": e.words()}], "text": e.words()},
        "description": format!("Transition to adult care: {}", e.words()),
        "for": {"reference": format!("Patient/{patient}")},
        "authoredOn": at(now),
        "restriction": {"period": {"start": at(due_ms), "end": at(late_ms)}},
        "businessStatus": business_status(mark),
    });
    if let Some(o) = owner {
        task["owner"] = json!({"reference": o});
    }
    task
}

/// One young person's planned change, with whom to tell.
#[derive(Debug, Clone)]
struct Planned {
    patient: String,
    owner: Option<String>,
    change: TaskChange,
}

/// Runs the transition scheduler as of a time: for every young person in the registry, one
/// open Task per element due or overdue (created, or marked anew), and every other open element
/// Task closed — `BATCH` young people per unit of work, reading first and writing only what
/// changes, so a second run writes nothing. Each managing organisation with something newly due
/// or overdue is told once a day through the outbox (counts only, no names).
pub async fn schedule(app: &super::App, as_of_ms: i64) -> Result<ScheduleReport, ApiError> {
    let config = TransitionConfig::default();
    let mut report = ScheduleReport::default();
    let mut cursor: Option<String> = None;
    // organisation → (newly due, newly overdue)
    let mut newly: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    loop {
        let after = cursor.take();
        let cfg = config.clone();
        let (planned, seen, next) = app
            .system_read("transition:schedule", move |tx, ctx| {
                let out = plan_batch(tx, ctx, after, as_of_ms, &cfg)?;
                Ok((out, None))
            })
            .await?;
        report.young_people += seen;
        for p in &planned {
            let Some(o) = &p.owner else { continue };
            match &p.change {
                TaskChange::Create {
                    mark: Mark::Due, ..
                } => newly.entry(o.clone()).or_default().0 += 1,
                TaskChange::Create {
                    mark: Mark::Overdue,
                    ..
                }
                | TaskChange::Mark {
                    mark: Mark::Overdue,
                    ..
                } => newly.entry(o.clone()).or_default().1 += 1,
                _ => {}
            }
        }
        if !planned.is_empty() {
            let (created, marked, closed) = app
                .system_job("transition:schedule", move |tx, ctx| {
                    let done = apply(tx, ctx, planned)?;
                    let words = format!(
                        "transition scheduler: {} element tasks created, {} marked, {} closed",
                        done.0, done.1, done.2
                    );
                    Ok((done, Some(words)))
                })
                .await?;
            report.created += created;
            report.marked += marked;
            report.closed += closed;
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    // those who left the registry in the last year: their open element Tasks are closed
    let cfg = config.clone();
    let leavers = app
        .system_read("transition:schedule", move |tx, ctx| {
            Ok((plan_leavers(tx, ctx, as_of_ms, &cfg)?, None))
        })
        .await?;
    if !leavers.is_empty() {
        let (_, _, closed) = app
            .system_job("transition:schedule", move |tx, ctx| {
                let done = apply(tx, ctx, leavers)?;
                let words = format!(
                    "transition scheduler: {} element tasks of young people who left the registry closed",
                    done.2
                );
                Ok((done, Some(words)))
            })
            .await?;
        report.closed += closed;
    }
    if !newly.is_empty() {
        let day = fhir::primitive::format_instant(as_of_ms)[..10].to_string();
        report.told = app
            .system_job("transition:schedule", move |tx, ctx| {
                let mut told = 0;
                for (org, (due, overdue)) in &newly {
                    if tell(tx, ctx, org, *due, *overdue, &day)? {
                        told += 1;
                    }
                }
                let words =
                    (told > 0).then(|| format!("transition scheduler: {told} organisations told"));
                Ok((told, words))
            })
            .await?;
    }
    Ok(report)
}

/// Reads one batch of young people and their element Tasks, and plans the changes.
fn plan_batch(
    tx: &mut CallerTx,
    ctx: &Ctx,
    after: Option<String>,
    as_of_ms: i64,
    config: &TransitionConfig,
) -> Result<(Vec<Planned>, usize, Option<String>), ApiError> {
    let mut params = born_between(as_of_ms, config.leaves_at, config.enters_at);
    params.push(("_count", BATCH.to_string()));
    let mut req = super::resources::search_request(ctx.registry, "Patient", &params)?;
    req.cursor = after;
    req.total = fhir::search::TotalMode::None;
    let page = tx.search(&req)?;
    let mut young: Vec<(String, care::access::BirthDate, Option<String>)> = Vec::new();
    for p in &page.matches {
        let b = body(p);
        let Some(birth) = b["birthDate"]
            .as_str()
            .and_then(care::access::BirthDate::parse)
        else {
            continue;
        };
        if care::transition::in_registry(birth, as_of_ms, config) {
            let owner = b
                .pointer("/managingOrganization/reference")
                .and_then(Value::as_str)
                .filter(|r| r.starts_with("Organization/"))
                .map(str::to_string);
            young.push((p.id.clone(), birth, owner));
        }
    }
    let mut histories: std::collections::HashMap<
        String,
        (History, Vec<care::transition::OpenTask>),
    > = Default::default();
    if !young.is_empty() {
        let ids: Vec<String> = young
            .iter()
            .map(|(id, _, _)| format!("Patient/{id}"))
            .collect();
        // a hundred patients a query: a search of many values is many SQL conditions
        let mut tasks = Vec::new();
        for chunk in ids.chunks(100) {
            tasks.extend(all_matching(
                tx,
                ctx.registry,
                "Task",
                &[
                    ("patient", chunk.join(",")),
                    ("code", format!("{}|", care::profile::TRANSITION_ELEMENT)),
                ],
                Reader::Caller,
            )?);
        }
        for t in &tasks {
            let b = body(t);
            let Some(pid) = patient_of(&b) else { continue };
            let entry = histories.entry(pid.to_string()).or_default();
            if b["status"] == "completed" {
                if let (Some(e), Some(on)) = (element_of(&b), done_on(&b)) {
                    entry.0.done.push((e, on));
                }
            } else if is_open(&b)
                && let Some(o) = open_task(&t.id, &b)
            {
                entry.1.push(o);
            }
        }
    }
    let mut planned = Vec::new();
    for (pid, birth, owner) in &young {
        let (history, open) = histories.remove(pid).unwrap_or_default();
        let states = care::transition::status(*birth, &history, as_of_ms, config);
        for change in care::transition::reconcile(&states, &open) {
            planned.push(Planned {
                patient: pid.clone(),
                owner: owner.clone(),
                change,
            });
        }
    }
    Ok((planned, young.len(), page.next_cursor))
}

/// The open element Tasks of young people who turned 27 in the year before `as_of_ms`, to be
/// closed (the registry no longer follows them).
fn plan_leavers(
    tx: &mut CallerTx,
    ctx: &Ctx,
    as_of_ms: i64,
    config: &TransitionConfig,
) -> Result<Vec<Planned>, ApiError> {
    let patients = all_matching(
        tx,
        ctx.registry,
        "Patient",
        &born_between(as_of_ms, config.leaves_at + 1, config.leaves_at),
        Reader::Caller,
    )?;
    let gone: Vec<String> = patients
        .iter()
        .filter(|p| {
            body(p)["birthDate"]
                .as_str()
                .and_then(care::access::BirthDate::parse)
                .is_some_and(|b| care::access::age_on(b, as_of_ms) >= config.leaves_at)
        })
        .map(|p| format!("Patient/{}", p.id))
        .collect();
    let mut planned = Vec::new();
    for chunk in gone.chunks(100) {
        for t in all_matching(
            tx,
            ctx.registry,
            "Task",
            &[
                ("patient", chunk.join(",")),
                ("code", format!("{}|", care::profile::TRANSITION_ELEMENT)),
                ("status", OPEN.join(",")),
            ],
            Reader::Caller,
        )? {
            let b = body(&t);
            if let (Some(pid), Some(element)) = (patient_of(&b), element_of(&b)) {
                planned.push(Planned {
                    patient: pid.to_string(),
                    owner: None,
                    change: TaskChange::Close {
                        id: t.id.clone(),
                        element,
                        why: care::transition::Close::LeftRegistry,
                    },
                });
            }
        }
    }
    Ok(planned)
}

/// Writes one batch's changes: new element Tasks together, the open ones marked or closed —
/// each only if it is still open (a person may have completed it since it was read).
fn apply(
    tx: &mut CallerTx,
    ctx: &Ctx,
    planned: Vec<Planned>,
) -> Result<(usize, usize, usize), ApiError> {
    let now = tx.now();
    let mut new: Vec<(String, Value)> = Vec::new();
    let (mut marked, mut closed) = (0, 0);
    for p in planned {
        match &p.change {
            &TaskChange::Create {
                element,
                mark,
                due_ms,
                late_ms,
            } => new.push((
                tx.new_id(),
                element_task(
                    &p.patient,
                    p.owner.as_deref(),
                    element,
                    mark,
                    due_ms,
                    late_ms,
                    now,
                ),
            )),
            TaskChange::Mark { id, element, .. } | TaskChange::Close { id, element, .. } => {
                let element = *element;
                let Some(prev) = tx.current("Task", id, true)? else {
                    continue;
                };
                let mut task = body(&prev);
                if !is_open(&task) || element_of(&task) != Some(element) {
                    continue;
                }
                match &p.change {
                    TaskChange::Mark {
                        mark,
                        due_ms,
                        late_ms,
                        ..
                    } => {
                        let at = fhir::primitive::format_instant;
                        task["businessStatus"] = business_status(*mark);
                        task["restriction"] =
                            json!({"period": {"start": at(*due_ms), "end": at(*late_ms)}});
                        marked += 1;
                    }
                    TaskChange::Close { why, .. } => {
                        task["status"] = json!("cancelled");
                        task["statusReason"] = json!({"text": why.words()});
                        task["lastModified"] = json!(fhir::primitive::format_instant(now));
                        closed += 1;
                    }
                    TaskChange::Create { .. } => unreachable!(),
                }
                let index = fhir::search::extract(ctx.registry, &task);
                if let Err(r) = tx.update(&prev, &mut task, &index)? {
                    return Err(refused(r));
                }
            }
        }
    }
    let created = new.len();
    if !new.is_empty() {
        let indexes: Vec<Vec<fhir::search::IndexEntry>> = new
            .iter()
            .map(|(_, t)| fhir::search::extract(ctx.registry, t))
            .collect();
        let mut items: Vec<store::NewResource> = new
            .iter_mut()
            .zip(&indexes)
            .map(|((id, t), index)| store::NewResource {
                resource_type: "Task",
                id: id.clone(),
                resource: t,
                index,
            })
            .collect();
        if let Err((_, r)) = tx.create_many(&mut items)? {
            return Err(refused(r));
        }
    }
    Ok((created, marked, closed))
}

fn refused(r: store::Refusal) -> ApiError {
    ApiError::new(
        500,
        fhir::IssueType::Exception,
        format!("the transition scheduler was refused a write: {r:?}"),
    )
}

/// Tells an organisation's transition coordinator what is newly due and overdue (counts only),
/// once a day: a message in the outbox and the Communication recording it.
fn tell(
    tx: &mut CallerTx,
    ctx: &Ctx,
    org: &str,
    due: usize,
    overdue: usize,
    day: &str,
) -> Result<bool, ApiError> {
    let Some((_, org_id)) = fhir::json::split_reference(org) else {
        return Ok(false);
    };
    let found =
        tx.on_behalf(store::OnBehalf::Notifications)
            .current("Organization", org_id, false)?;
    let Some(found) = found else {
        return Ok(false);
    };
    let organisation = body(&found);
    let name = organisation["name"].as_str().unwrap_or("your organisation");
    let words = format!(
        "Transition to adult care, {day}: {due} element(s) newly due and {overdue} newly overdue for young people of {name}. The transition registry lists them (/api/transition/registry?state=due)."
    );
    let communication_id = tx.new_id();
    let row = store::NewMessage {
        id: tx.new_id(),
        event_key: format!("transition-due:{org_id}:{day}"),
        recipient: org.to_string(),
        kind: "transition-due".into(),
        channel: "message".into(),
        target: None,
        communication_id: Some(communication_id.clone()),
        payload: json!({"email": crate::app::notify::email_of(&organisation), "subject": "Transition to adult care: elements due", "text": words}).to_string(),
        due_ms: tx.now(),
    };
    if !tx
        .on_behalf(store::OnBehalf::Notifications)
        .outbox_add(&row)?
    {
        return Ok(false);
    }
    let mut communication = json!({
        "resourceType": "Communication",
        "status": "preparation",
        "category": [{"coding": [{"system": care::profile::NOTIFICATION, "code": "transition-due"}]}],
        "recipient": [{"reference": org}],
        "payload": [{"contentString": words}],
    });
    let index = fhir::search::extract(ctx.registry, &communication);
    let mut items = [store::NewResource {
        resource_type: "Communication",
        id: communication_id,
        resource: &mut communication,
        index: &index,
    }];
    tx.on_behalf(store::OnBehalf::Notifications)
        .create_many(&mut items)?;
    Ok(true)
}

/// The readiness Questionnaire as a FHIR resource (from `care::transition::readiness`).
pub fn readiness_questionnaire() -> Value {
    use care::transition::readiness as r;
    let options: Vec<Value> = r::SCALE
        .iter()
        .map(|(code, words, _)| json!({"valueCoding": {"system": r::ANSWERS, "code": code, "display": words}}))
        .collect();
    let groups: Vec<Value> = r::DOMAINS
        .iter()
        .map(|d| {
            json!({
                "linkId": d.code,
                "text": d.title,
                "type": "group",
                "item": d.questions.iter().map(|(id, words)| json!({
                    "linkId": id, "text": words, "type": "choice", "required": true,
                    "answerOption": options,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "resourceType": "Questionnaire",
        "id": r::ID,
        "url": r::URL,
        "version": r::VERSION,
        "name": "TransitionReadiness",
        "title": "Getting ready for adult care",
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": "Continuum care alliance",
        "description": "A young person's own view of how ready they are to manage their health and move to adult care, from 14 and yearly until the transfer: their health, medicines, appointments, insurance, speaking up for themselves and privacy at 18. Each answer from 'not yet' to 'yes, on my own'; the server scores each part from 0 to 100.",
        "code": [{"system": care::profile::TRANSITION_ELEMENT, "code": "readiness"}],
        "item": groups,
    })
}

/// Keeps the readiness Questionnaire stored as this version of the server defines it (at
/// start, once: written only when absent or different).
pub async fn ensure_questionnaire(app: &super::App) -> Result<bool, ApiError> {
    app.system_job("transition:questionnaire", |tx, ctx| {
        let want = readiness_questionnaire();
        let id = care::transition::readiness::ID;
        let current = tx.current("Questionnaire", id, true)?;
        if let Some(c) = &current {
            let mut stored = body(c);
            if let Some(o) = stored.as_object_mut() {
                o.remove("meta");
            }
            if stored == want {
                return Ok((false, None));
            }
        }
        let mut q = want;
        let index = fhir::search::extract(ctx.registry, &q);
        let written = match &current {
            Some(c) => tx.update(c, &mut q, &index)?,
            None => tx.create("Questionnaire", id, &mut q, &index)?,
        };
        written.map_err(refused)?;
        Ok((
            true,
            Some("the transition readiness questionnaire stored".to_string()),
        ))
    })
    .await
}

fn is_readiness(response: &Value) -> bool {
    response["questionnaire"]
        .as_str()
        .map(|q| q.split('|').next() == Some(care::transition::readiness::URL))
        .unwrap_or(false)
}

/// Every (linkId, answer code) of a response, at any depth.
fn answers_of(items: &Value, out: &mut Vec<(String, String)>) {
    for item in items.as_array().into_iter().flatten() {
        if let Some(id) = item["linkId"].as_str() {
            for a in item["answer"].as_array().into_iter().flatten() {
                let code = a
                    .pointer("/valueCoding/code")
                    .or_else(|| a.get("valueString"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                out.push((id.to_string(), code.to_string()));
                answers_of(&a["item"], out);
            }
        }
        answers_of(&item["item"], out);
    }
}

/// Who a family member writes as, for a young person: the young person themselves, or the
/// caller's RelatedPerson of that young person (read on the alliance's behalf: it is the
/// caller's own identity); `None` when neither.
fn family_writer(
    tx: &mut CallerTx,
    subject: &care::access::Subject,
    patient: &str,
) -> Result<Option<String>, ApiError> {
    if subject
        .fhir_users
        .iter()
        .any(|(rt, id)| rt == "Patient" && id == patient)
    {
        return Ok(Some(format!("Patient/{patient}")));
    }
    for (rt, id) in &subject.fhir_users {
        if rt != "RelatedPerson" {
            continue;
        }
        let of = tx
            .on_behalf(store::OnBehalf::Transition)
            .current("RelatedPerson", id, false)?
            .filter(|r| !r.deleted)
            .map(|r| body(&r));
        if of
            .as_ref()
            .and_then(|r| r.pointer("/patient/reference"))
            .and_then(Value::as_str)
            == Some(format!("Patient/{patient}").as_str())
        {
            return Ok(Some(format!("RelatedPerson/{id}")));
        }
    }
    Ok(None)
}

/// The write rule of a QuestionnaireResponse to the readiness assessment (on every write
/// path): for a Patient, answers from the scale (every question once when completed), scored by
/// the server (`care::profile::READINESS_SCORE`), the writer stamped as its author when a
/// family member wrote it, `authored` set when missing.
pub(crate) fn response_written(
    tx: &mut CallerTx,
    previous: Option<&Value>,
    response: &mut Value,
) -> Result<(), ApiError> {
    let subject = tx.caller().subject.clone();
    let family = care::access::is_family(&subject);
    if family {
        // what a family may answer (whom for is decided before: `answers_for`)
        let patient = response
            .pointer("/subject/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .unwrap_or("")
            .to_string();
        let writer = family_writer(tx, &subject, &patient)?;
        let previous_author = previous
            .and_then(|p| p.pointer("/author/reference"))
            .and_then(Value::as_str);
        if let care::access::Decision::Deny(why) = care::access::decide_family_answer(
            is_readiness(response) && previous.is_none_or(is_readiness),
            writer.as_deref(),
            previous_author,
            &patient,
        ) {
            tx.trail.denied = true;
            return Err(ApiError::new(403, fhir::IssueType::Forbidden, why));
        }
        if let Some(w) = writer {
            response["author"] = json!({"reference": w});
        }
        // a family's answers are dated by the server
        response["authored"] = json!(fhir::primitive::format_instant(tx.now()));
    }
    if !is_readiness(response) {
        return Ok(());
    }
    if let Some(a) = response["authored"]
        .as_str()
        .and_then(fhir::json::instant_ms)
        && a > tx.now() + 5 * 60_000
    {
        return Err(ApiError::with_issues(
            422,
            vec![
                fhir::Issue::error(
                    fhir::IssueType::Value,
                    "the assessment cannot be answered in the future (authored)",
                )
                .at("QuestionnaireResponse.authored"),
            ],
        ));
    }
    let unprocessable = |issues: Vec<(&str, String)>| {
        ApiError::with_issues(
            422,
            issues
                .into_iter()
                .map(|(at, why)| fhir::Issue::error(fhir::IssueType::Value, why).at(at))
                .collect(),
        )
    };
    if !response
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .is_some_and(|r| r.starts_with("Patient/"))
    {
        return Err(unprocessable(vec![(
            "QuestionnaireResponse.subject",
            "the readiness assessment is about a young person: subject names the Patient".into(),
        )]));
    }
    let complete = matches!(response["status"].as_str(), Some("completed" | "amended"));
    let mut answers = Vec::new();
    answers_of(&response["item"], &mut answers);
    let scored = care::transition::readiness::score(&answers, complete).map_err(|problems| {
        unprocessable(
            problems
                .into_iter()
                .map(|p| ("QuestionnaireResponse.item", p))
                .collect(),
        )
    })?;
    if response.get("authored").is_none() {
        response["authored"] = json!(fhir::primitive::format_instant(tx.now()));
    }
    let mut kept: Vec<Value> = response["extension"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["url"] != care::profile::READINESS_SCORE)
        .collect();
    if complete {
        let mut parts = vec![json!({"url": "total", "valueInteger": scored.total})];
        parts.extend(
            scored
                .domains
                .iter()
                .map(|(d, v)| json!({"url": d, "valueInteger": v})),
        );
        kept.push(json!({"url": care::profile::READINESS_SCORE, "extension": parts}));
    }
    if kept.is_empty() {
        if let Some(o) = response.as_object_mut() {
            o.remove("extension");
        }
    } else {
        response["extension"] = Value::Array(kept);
    }
    Ok(())
}

/// After a completed readiness assessment is stored: the readiness element is recorded — the
/// young person's open readiness Task completed with it (else a completed Task of its own),
/// once per response, on the alliance's behalf (a young person writes their answers, not
/// Tasks).
pub(crate) fn response_stored(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    response: &Value,
) -> Result<(), ApiError> {
    if !is_readiness(response)
        || !matches!(response["status"].as_str(), Some("completed" | "amended"))
    {
        return Ok(());
    }
    let Some(pid) = response
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
    else {
        return Ok(());
    };
    let on = response["authored"]
        .as_str()
        .and_then(fhir::json::instant_ms)
        .unwrap_or_else(|| tx.now())
        .min(tx.now());
    let score = response["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == care::profile::READINESS_SCORE)
        .and_then(|e| e["extension"].as_array())
        .into_iter()
        .flatten()
        .find(|p| p["url"] == "total")
        .and_then(|p| p["valueInteger"].as_i64());
    let output =
        score.map(|s| json!([{"type": {"text": "readiness score (0–100)"}, "valueInteger": s}]));
    record_element(
        tx,
        ctx,
        &pid,
        Element::Readiness,
        &format!("QuestionnaireResponse/{id}"),
        on,
        output,
    )
}

/// Records that an element was done for a young person, by what (`focus`), on the alliance's
/// behalf: their open Task of that element completed, else a completed Task of its own — once
/// per `focus` (writing the same thing again records nothing).
pub(crate) fn record_element(
    tx: &mut CallerTx,
    ctx: &Ctx,
    pid: &str,
    element: Element,
    focus: &str,
    on_ms: i64,
    output: Option<Value>,
) -> Result<(), ApiError> {
    let tasks = all_matching(
        tx,
        ctx.registry,
        "Task",
        &[
            ("patient", format!("Patient/{pid}")),
            (
                "code",
                format!("{}|{}", care::profile::TRANSITION_ELEMENT, element.code()),
            ),
        ],
        Reader::System(store::OnBehalf::Transition),
    )?;
    if tasks
        .iter()
        .any(|t| body(t).pointer("/focus/reference").and_then(Value::as_str) == Some(focus))
    {
        return Ok(()); // already recorded
    }
    let now = fhir::primitive::format_instant(tx.now());
    let complete = |task: &mut Value| {
        task["status"] = json!("completed");
        task["focus"] = json!({"reference": focus});
        task["executionPeriod"] = json!({"end": fhir::primitive::format_instant(on_ms)});
        task["lastModified"] = json!(now);
        if let Some(o) = &output {
            task["output"] = o.clone();
        }
    };
    let patients = [pid.to_string()];
    match tasks.iter().find(|t| is_open(&body(t))) {
        Some(prev) => {
            let mut task = body(prev);
            complete(&mut task);
            let index = fhir::search::extract(ctx.registry, &task);
            tx.on_behalf(store::OnBehalf::Transition)
                .update(prev, &mut task, &index)?;
            tx.trail.add("Task", &prev.id, &patients);
        }
        None => {
            let tid = tx.new_id();
            let mut task = json!({
                "resourceType": "Task",
                "intent": "plan",
                "code": {"coding": [{"system": care::profile::TRANSITION_ELEMENT, "code": element.code(), "display": element.words()}], "text": element.words()},
                "for": {"reference": format!("Patient/{pid}")},
                "authoredOn": now,
            });
            complete(&mut task);
            let index = fhir::search::extract(ctx.registry, &task);
            tx.on_behalf(store::OnBehalf::Transition)
                .create("Task", &tid, &mut task, &index)?;
            tx.trail.add("Task", &tid, &patients);
        }
    }
    Ok(())
}

/// Whether a resource is coded with one of these (system, code) in the array at `pointer`
/// (CodeableConcepts) or the CodeableConcept at it.
fn coded(resource: &Value, pointer: &str, codes: &[(&str, &str)]) -> bool {
    let concepts: Vec<&Value> = match resource.pointer(pointer) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    };
    concepts.iter().any(|cc| {
        cc["coding"].as_array().into_iter().flatten().any(|c| {
            codes
                .iter()
                .any(|(s, k)| c["system"] == *s && c["code"] == *k)
        })
    })
}

const SUMMARY_TYPES: &[(&str, &str)] = &[
    (care::profile::TRANSITION_DOCUMENT, "medical-summary"),
    ("http://loinc.org", "60591-5"),
];
const EMERGENCY_TYPES: &[(&str, &str)] = &[(care::profile::TRANSITION_DOCUMENT, "emergency-plan")];

/// After a CarePlan or DocumentReference is stored: a plan of care coded as the transition's
/// (`category` plan-of-care in the element code system), or a current medical summary,
/// records its element for the young person.
pub(crate) fn artefact_stored(
    tx: &mut CallerTx,
    ctx: &Ctx,
    rt: &str,
    id: &str,
    resource: &Value,
) -> Result<(), ApiError> {
    let element = match rt {
        "CarePlan"
            if matches!(resource["status"].as_str(), Some("active" | "completed"))
                && coded(
                    resource,
                    "/category",
                    &[(care::profile::TRANSITION_ELEMENT, "plan-of-care")],
                ) =>
        {
            Element::PlanOfCare
        }
        "DocumentReference"
            if resource["status"] == "current" && coded(resource, "/type", SUMMARY_TYPES) =>
        {
            Element::MedicalSummary
        }
        _ => return Ok(()),
    };
    let Some(pid) = resource
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
    else {
        return Ok(());
    };
    let now = tx.now();
    record_element(tx, ctx, &pid, element, &format!("{rt}/{id}"), now, None)
}

/// What a young person's transfer package holds, found under the caller's view.
pub struct TransferParts {
    pub patient: Value,
    pub age: i32,
    pub readiness: Value,
    pub care_plan: Value,
    pub summary: Value,
    pub emergency: Value,
    pub consents: Vec<Value>,
    pub guardians: Vec<Value>,
    pub consent_words: String,
}

fn newest<'a>(found: &'a [Value], date: &[&str]) -> Option<&'a Value> {
    found.iter().max_by_key(|r| {
        date.iter()
            .find_map(|p| r.pointer(p).and_then(Value::as_str))
            .and_then(fhir::json::instant_ms)
            .unwrap_or(i64::MIN)
    })
}

/// Who has been granted access to the young person's record by an active permit Consent, and
/// the guardianships on file (RelatedPersons coded GUARD or a power of attorney).
struct ConsentFacts {
    consents: Vec<Value>,
    granted_to: Vec<String>,
    guardians: Vec<Value>,
}

fn consent_facts(tx: &mut CallerTx, ctx: &Ctx, pid: &str) -> Result<ConsentFacts, ApiError> {
    let consents: Vec<Value> = all_matching(
        tx,
        ctx.registry,
        "Consent",
        &[
            ("patient", format!("Patient/{pid}")),
            ("status", "active".into()),
        ],
        Reader::Caller,
    )?
    .iter()
    .map(body)
    .collect();
    let granted: Vec<String> = consents
        .iter()
        .filter(|c| c.pointer("/provision/type").and_then(Value::as_str) != Some("deny"))
        .flat_map(|c| {
            c.pointer("/provision/actor")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| {
            a.pointer("/reference/reference")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let guardians: Vec<Value> = all_matching(
        tx,
        ctx.registry,
        "RelatedPerson",
        &[("patient", format!("Patient/{pid}"))],
        Reader::Caller,
    )?
    .iter()
    .map(body)
    .filter(|r| {
        coded(
            r,
            "/relationship",
            &[
                ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GUARD"),
                (
                    "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                    "POWATT",
                ),
                (
                    "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                    "HPOWATT",
                ),
                (
                    "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                    "DPOWATT",
                ),
            ],
        )
    })
    .collect();
    Ok(ConsentFacts {
        consents,
        granted_to: granted,
        guardians,
    })
}

fn unprocessable(issues: Vec<(&str, String)>) -> ApiError {
    ApiError::with_issues(
        422,
        issues
            .into_iter()
            .map(|(at, why)| fhir::Issue::error(fhir::IssueType::Required, why).at(at))
            .collect(),
    )
}

/// The parts of a transfer package for `pid`, each found or named as missing (422, one issue
/// per part); refused before the 18th birthday (422) and when a package was already sent
/// with a referral still open or done (409).
pub fn transfer_parts(tx: &mut CallerTx, ctx: &Ctx, pid: &str) -> Result<TransferParts, ApiError> {
    let config = TransitionConfig::default();
    let Some(patient) = tx.current("Patient", pid, false)?.filter(|p| !p.deleted) else {
        return Err(ApiError::not_known("Patient", pid));
    };
    let patient = body(&patient);
    let now = tx.now();
    let Some(birth) = patient["birthDate"]
        .as_str()
        .and_then(care::access::BirthDate::parse)
    else {
        return Err(unprocessable(vec![(
            "Patient.birthDate",
            format!(
                "Patient/{pid} has no birth date: the transfer to adult care is from the 18th birthday"
            ),
        )]));
    };
    let age = care::access::age_on(birth, now);
    if age < config.transfer_from {
        let on = fhir::primitive::format_instant(care::transition::birthday_ms(
            birth,
            config.transfer_from,
        ));
        return Err(unprocessable(vec![(
            "Patient.birthDate",
            format!(
                "Patient/{pid} is {age}: the transfer to adult care is from the {}th birthday ({})",
                config.transfer_from,
                &on[..10]
            ),
        )]));
    }
    // a package already sent, with a referral that is not over
    let sent = all_matching(
        tx,
        ctx.registry,
        "Task",
        &[
            ("patient", format!("Patient/{pid}")),
            (
                "code",
                format!("{}|transfer-package", care::profile::TRANSITION_ELEMENT),
            ),
            ("status", "completed".into()),
        ],
        Reader::Caller,
    )?;
    for s in &sent {
        let s = body(s);
        let Some(referral) = s
            .pointer("/focus/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Task/"))
        else {
            continue;
        };
        let live = tx
            .current("Task", referral, false)?
            .filter(|t| !t.deleted)
            .map(|t| body(&t))
            .is_some_and(|t| {
                !matches!(
                    t["status"].as_str(),
                    Some("cancelled" | "rejected" | "failed" | "entered-in-error")
                )
            });
        if live {
            let on = s
                .pointer("/executionPeriod/end")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(ApiError::new(
                409,
                fhir::IssueType::Conflict,
                format!(
                    "a transfer package was already sent on {} with the referral Task/{referral}: cancel that referral to send another",
                    on.get(..10).unwrap_or(on)
                ),
            ));
        }
    }
    let mut missing: Vec<(&str, String)> = Vec::new();
    let of = |tx: &mut CallerTx, rt: &str, status: &str| -> Result<Vec<Value>, ApiError> {
        Ok(all_matching(
            tx,
            ctx.registry,
            rt,
            &[
                ("patient", format!("Patient/{pid}")),
                ("status", status.to_string()),
            ],
            Reader::Caller,
        )?
        .iter()
        .map(body)
        .collect())
    };
    let responses: Vec<Value> = of(tx, "QuestionnaireResponse", "completed,amended")?
        .into_iter()
        .filter(is_readiness)
        .collect();
    let readiness = newest(&responses, &["/authored", "/meta/lastUpdated"]).cloned();
    match &readiness {
        None => missing.push((
            "readiness",
            "the final readiness assessment: none is recorded (a completed QuestionnaireResponse to Questionnaire/transition-readiness)".into(),
        )),
        Some(r) => {
            let on = r["authored"]
                .as_str()
                .and_then(fhir::json::instant_ms)
                .unwrap_or(i64::MIN);
            if on < now - config.readiness_every_days * 86_400_000 {
                missing.push((
                    "readiness",
                    format!(
                        "the final readiness assessment: the latest, of {}, is more than a year old — the young person answers it again",
                        r["authored"].as_str().and_then(|a| a.get(..10)).unwrap_or("?")
                    ),
                ));
            }
        }
    }
    let plans: Vec<Value> = of(tx, "CarePlan", "active,completed")?
        .into_iter()
        .filter(|p| {
            coded(
                p,
                "/category",
                &[(care::profile::TRANSITION_ELEMENT, "plan-of-care")],
            )
        })
        .collect();
    let care_plan = newest(&plans, &["/period/start", "/created", "/meta/lastUpdated"]).cloned();
    if care_plan.is_none() {
        missing.push((
            "plan-of-care",
            "the plan of care: no active CarePlan for the young person with the category plan-of-care".into(),
        ));
    }
    let documents = of(tx, "DocumentReference", "current")?;
    let typed = |types: &[(&str, &str)]| -> Vec<Value> {
        documents
            .iter()
            .filter(|d| coded(d, "/type", types))
            .cloned()
            .collect()
    };
    let summary = newest(&typed(SUMMARY_TYPES), &["/date", "/meta/lastUpdated"]).cloned();
    if summary.is_none() {
        missing.push((
            "medical-summary",
            "the medical summary: no current DocumentReference of type medical-summary (or LOINC 60591-5)".into(),
        ));
    }
    let emergency = newest(&typed(EMERGENCY_TYPES), &["/date", "/meta/lastUpdated"]).cloned();
    if emergency.is_none() {
        missing.push((
            "emergency-plan",
            "the emergency care plan: no current DocumentReference of type emergency-plan".into(),
        ));
    }
    if !missing.is_empty() {
        return Err(unprocessable(missing));
    }
    let ConsentFacts {
        consents,
        granted_to,
        guardians,
    } = consent_facts(tx, ctx, pid)?;
    let consent_words = care::transition::consent_words(age, &granted_to, !guardians.is_empty());
    Ok(TransferParts {
        patient,
        age,
        readiness: readiness.unwrap_or_default(),
        care_plan: care_plan.unwrap_or_default(),
        summary: summary.unwrap_or_default(),
        emergency: emergency.unwrap_or_default(),
        consents,
        guardians,
        consent_words,
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn narrative(text: &str) -> Value {
    json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{}</p></div>", escape(text))})
}

fn person_name(patient: &Value) -> String {
    let n = &patient["name"][0];
    let given: Vec<&str> = n["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let full = format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or(""));
    let full = full.trim();
    if full.is_empty() {
        "the young person".into()
    } else {
        full.to_string()
    }
}

/// The transfer letter, when the clinician wrote none: who, to whom, what is enclosed, who is
/// responsible until the first visit.
pub fn default_letter(parts: &TransferParts, recipient: &str) -> String {
    let name = person_name(&parts.patient);
    let score = parts.readiness["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == care::profile::READINESS_SCORE)
        .and_then(|e| e["extension"][0]["valueInteger"].as_i64());
    format!(
        "Transfer of care to adult services\n\n{name} (born {}) is moving from pediatric to adult care, to {recipient}.\n\nEnclosed: the latest readiness and self-care assessment{}, the plan of care, the medical summary and the emergency care plan, and where consent stands: {}.\n\nThe pediatric team stays responsible for {name}'s care until the first visit with you; please confirm that visit.",
        parts.patient["birthDate"].as_str().unwrap_or("?"),
        score
            .map(|s| format!(" (score {s} of 100)"))
            .unwrap_or_default(),
        parts.consent_words,
    )
}

/// Writes the transfer letter and the package (a document Bundle: a Composition with a section
/// per part, then the parts), the package kept as a DocumentReference for the young person so
/// it is read under the same rules as the record. Returns (letter, package) references and the
/// Bundle.
pub fn write_package(
    tx: &mut CallerTx,
    ctx: &Ctx,
    parts: &TransferParts,
    recipient: &str,
    requester: &str,
    letter: &str,
) -> Result<(String, String, Value), ApiError> {
    use base64::Engine as _;
    let pid = parts.patient["id"].as_str().unwrap_or_default().to_string();
    let now = fhir::primitive::format_instant(tx.now());
    let doc = |code: &str, words: &str, content_type: &str, data: &[u8], related: Vec<Value>| {
        let mut d = json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "docStatus": "final",
            "type": {"coding": [{"system": care::profile::TRANSITION_DOCUMENT, "code": code, "display": words}], "text": words},
            "subject": {"reference": format!("Patient/{pid}")},
            "date": now,
            "author": [{"reference": requester}],
            "description": words,
            "content": [{"attachment": {"contentType": content_type, "title": words,
                "data": base64::engine::general_purpose::STANDARD.encode(data)}}],
        });
        if !related.is_empty() {
            d["context"] = json!({"related": related});
        }
        d
    };
    let create = |tx: &mut CallerTx, mut r: Value| -> Result<(String, Value), ApiError> {
        let id = tx.new_id();
        fhir::validate_resource(&r).map_err(ApiError::invalid)?;
        let index = fhir::search::extract(ctx.registry, &r);
        let stored = tx
            .create("DocumentReference", &id, &mut r, &index)?
            .map_err(|refusal| {
                ApiError::new(403, fhir::IssueType::Forbidden, format!("{refusal:?}"))
            })?;
        Ok((format!("DocumentReference/{}", stored.id), body(&stored)))
    };
    // the package carries every label its parts carry: it is read as the most protected of them
    let mut labels: Vec<Value> = Vec::new();
    for part in [
        &parts.patient,
        &parts.readiness,
        &parts.care_plan,
        &parts.summary,
        &parts.emergency,
    ]
    .into_iter()
    .chain(parts.consents.iter())
    .chain(parts.guardians.iter())
    {
        for l in part
            .pointer("/meta/security")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = |v: &Value| (v["system"].clone(), v["code"].clone());
            if !labels.iter().any(|x| key(x) == key(l)) {
                labels.push(json!({"system": l["system"], "code": l["code"]}));
            }
        }
    }
    let mut letter_doc = doc(
        "transfer-letter",
        "Transfer letter",
        "text/plain; charset=utf-8",
        letter.as_bytes(),
        vec![json!({"reference": recipient})],
    );
    if !labels.is_empty() {
        letter_doc["meta"] = json!({"security": labels});
    }
    let (letter_ref, letter_doc) = create(tx, letter_doc)?;
    let full = |r: &Value| {
        format!(
            "{}/{}/{}",
            ctx.base_url,
            r["resourceType"].as_str().unwrap_or(""),
            r["id"].as_str().unwrap_or("")
        )
    };
    let reference = |r: &Value| json!({"reference": format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""))});
    let mut consent_entries: Vec<Value> = parts.consents.iter().map(reference).collect();
    consent_entries.extend(parts.guardians.iter().map(reference));
    let mut consent_section =
        json!({"title": "Consent at 18", "text": narrative(&parts.consent_words)});
    if !consent_entries.is_empty() {
        consent_section["entry"] = Value::Array(consent_entries);
    }
    let section = |title: &str, r: &Value| json!({"title": title, "text": narrative(title), "entry": [reference(r)]});
    let composition = json!({
        "resourceType": "Composition",
        "id": tx.new_id(),
        "status": "final",
        "type": {"coding": [{"system": care::profile::TRANSITION_DOCUMENT, "code": "transfer-package", "display": "Transfer package"}], "text": "Transfer package"},
        "subject": {"reference": format!("Patient/{pid}")},
        "date": now,
        "author": [{"reference": requester}],
        "title": "Transfer to adult care",
        "section": [
            section("Transfer letter", &letter_doc),
            section("Readiness and self-care assessment", &parts.readiness),
            section("Plan of care", &parts.care_plan),
            section("Medical summary", &parts.summary),
            section("Emergency care plan", &parts.emergency),
            consent_section,
        ],
    });
    let mut entries = vec![composition, parts.patient.clone(), letter_doc];
    entries.extend([
        parts.readiness.clone(),
        parts.care_plan.clone(),
        parts.summary.clone(),
        parts.emergency.clone(),
    ]);
    entries.extend(parts.consents.iter().cloned());
    entries.extend(parts.guardians.iter().cloned());
    let bundle = json!({
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuid::Uuid::new_v4())},
        "type": "document",
        "timestamp": now,
        "entry": entries.iter().map(|r| json!({"fullUrl": full(r), "resource": r})).collect::<Vec<_>>(),
    });
    let mut package = doc(
        "transfer-package",
        "Transfer package",
        "application/fhir+json",
        bundle.to_string().as_bytes(),
        vec![
            json!({"reference": recipient}),
            json!({"reference": letter_ref}),
        ],
    );
    if !labels.is_empty() {
        package["meta"] = json!({"security": labels});
    }
    let (package_ref, _) = create(tx, package)?;
    Ok((letter_ref, package_ref, bundle))
}

/// The coding of a transfer to adult care (the ServiceRequest's `code`).
pub fn transfer_code() -> Value {
    json!({"system": care::profile::TRANSITION_ELEMENT, "code": "transfer-package", "display": "Transfer to adult care"})
}

/// An Appointment carrying out a transfer's ServiceRequest (`basedOn`) was fulfilled: the first
/// adult visit is recorded for the young person, and with it the transfer is complete — the
/// adult side is responsible from then on; completion and feedback fall due 3–6 months later.
pub(crate) fn visit_fulfilled(
    tx: &mut CallerTx,
    ctx: &Ctx,
    request: &str,
    appointment: &Value,
) -> Result<(), ApiError> {
    let sid = request.trim_start_matches("ServiceRequest/");
    let Some(sr) = tx
        .current("ServiceRequest", sid, false)?
        .filter(|s| !s.deleted)
    else {
        return Ok(());
    };
    let sr = body(&sr);
    if !coded(
        &sr,
        "/code",
        &[(care::profile::TRANSITION_ELEMENT, "transfer-package")],
    ) {
        return Ok(());
    }
    let Some(pid) = sr
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
    else {
        return Ok(());
    };
    let on = ["/end", "/start"]
        .iter()
        .find_map(|p| appointment.pointer(p).and_then(Value::as_str))
        .and_then(fhir::json::instant_ms)
        .unwrap_or_else(|| tx.now())
        .min(tx.now());
    let aid = appointment["id"].as_str().unwrap_or_default();
    record_element(
        tx,
        ctx,
        &pid,
        Element::FirstAdultVisit,
        &format!("Appointment/{aid}"),
        on,
        None,
    )
}

/// `GET /api/metrics/transition`: the measures over the young people the caller may see, as of
/// a day (`care::transition::metrics`), optionally for one managing organisation.
pub fn metrics(
    tx: &mut CallerTx,
    ctx: &Ctx,
    as_of_ms: i64,
    organization: Option<String>,
) -> Result<
    (
        Vec<care::transition::metrics::Group>,
        Vec<care::transition::metrics::Transfers>,
    ),
    ApiError,
> {
    let config = TransitionConfig::default();
    let young = load_young(tx, ctx, as_of_ms, &config, None)?;
    let mut people = Vec::new();
    for y in young {
        if !care::transition::in_registry(y.birth, as_of_ms, &config) {
            continue;
        }
        let org = y
            .body
            .pointer("/managingOrganization/reference")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_string();
        if organization.as_deref().is_some_and(|o| o != org) {
            continue;
        }
        let package_ms = y.history.first(Element::TransferPackage);
        let recipient = y.transfer_to.clone();
        people.push(care::transition::metrics::Young {
            organization: org,
            age: care::access::age_on(y.birth, as_of_ms),
            states: care::transition::status(y.birth, &y.history, as_of_ms, &config),
            package_ms,
            age_at_package: package_ms.map(|t| {
                (t - care::transition::birthday_ms(y.birth, 0)) as f64 / (365.25 * 86_400_000.0)
            }),
            recipient,
            sender: y.transfer_from.clone(),
            first_visit_ms: y.history.first(Element::FirstAdultVisit),
        });
    }
    Ok(care::transition::metrics::measure(
        &people, as_of_ms, &config,
    ))
}
