//! The referral register: one row per referral Task (a Task whose focus is a ServiceRequest),
//! derived from the Task's JSON in the transaction of each version — who referred, who
//! receives, the service, the priority, the status, the milestones reached and their due
//! dates (`care::referral`) — so worklists and measures read a narrow table instead of every
//! Task body. Reads go through the caller's access filter, applied to the Task by its `rid`
//! (a deleted Task has no row).

use care::referral::metrics::ReferralRecord;
use care::referral::service_level::{self, Calendar, Priority, ServiceLevels};
use care::referral::{BusinessStatus, Due, Progress, TaskStatus};
use serde_json::Value;

use crate::db::{Conn, SqlValue};
use crate::error::StoreError;
use crate::filter::AccessFilter;

/// Keeps a Task's row in step with its version (a Task that is no referral has none).
pub(crate) fn written(
    conn: &mut dyn Conn,
    rid: i64,
    id: &str,
    task: &Value,
    last_updated_ms: i64,
    fresh: bool,
) -> Result<(), StoreError> {
    if !fresh {
        conn.execute("DELETE FROM referrals WHERE rid = ?", &[rid.into()])?;
    }
    // the write rule's test (every Task that is not coded as another kind) and a focus on a
    // ServiceRequest
    let focus_is_request = task
        .pointer("/focus/reference")
        .and_then(Value::as_str)
        .is_some_and(|r| r.starts_with("ServiceRequest/"));
    if !care::referral::is_referral(task) || !focus_is_request {
        return Ok(());
    }
    let reference = |key: &str| {
        task.pointer(&format!("/{key}/reference"))
            .and_then(Value::as_str)
            .and_then(fhir::json::split_reference)
            .map(|(rt, id)| (rt.to_string(), id.to_string()))
    };
    let Some(("Patient", patient)) = reference("for")
        .as_ref()
        .map(|(rt, id)| (rt.as_str(), id.clone()))
    else {
        return Ok(());
    };
    let requester_org = match reference("requester") {
        Some(r) => organization_of(conn, &r)?,
        None => String::new(),
    };
    let owner = reference("owner");
    let owner_org = match &owner {
        Some(r) => organization_of(conn, r)?,
        None => String::new(),
    };
    let service = match &owner {
        Some((rt, sid)) if rt == "HealthcareService" => sid.clone(),
        _ => task
            .pointer("/code/coding/0/code")
            .or_else(|| task.pointer("/code/text"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let priority = task
        .get("priority")
        .and_then(Value::as_str)
        .and_then(Priority::parse)
        .unwrap_or(Priority::Routine);
    let status = care::referral::status_of(task)
        .map(TaskStatus::code)
        .unwrap_or("");
    let business = care::referral::business_status_of(task).map(BusinessStatus::code);
    let authored = task
        .get("authoredOn")
        .and_then(Value::as_str)
        .and_then(fhir::json::instant_ms)
        .unwrap_or(last_updated_ms);
    let due = Due::of(task).unwrap_or_else(|| {
        service_level::due(
            authored,
            priority,
            &ServiceLevels::default(),
            &Calendar::default(),
        )
    });
    let progress = Progress::of(task);
    // set exactly while open: a worklist of open referrals is one range of an index
    // not on a worklist until sent (a draft) or once ended
    let next_due = match (progress.closed_ms, care::referral::status_of(task)) {
        (Some(_), _) | (None, Some(TaskStatus::Draft)) => None,
        (None, _) => Some(service_level::next_due(&progress, &due).unwrap_or(NOTHING_DUE)),
    };
    let opt = |v: Option<i64>| v.map(SqlValue::Int).unwrap_or(SqlValue::Null);
    conn.execute(
        "INSERT INTO referrals (rid, task_id, patient_id, requester_org, owner_org, service, priority, status, business_status, authored_ms, \
         accepted_ms, booked_ms, seen_ms, reported_ms, closed_ms, accept_due_ms, book_due_ms, seen_due_ms, next_due_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            rid.into(),
            id.into(),
            patient.into(),
            requester_org.into(),
            owner_org.into(),
            service.into(),
            priority.code().into(),
            status.into(),
            business.into(),
            authored.into(),
            opt(progress.accepted_ms),
            opt(progress.booked_ms),
            opt(progress.seen_ms),
            opt(progress.reported_ms),
            opt(progress.closed_ms),
            due.accept_ms.into(),
            due.book_ms.into(),
            due.seen_ms.into(),
            opt(next_due),
        ],
    )?;
    Ok(())
}

/// Derives the rows of the Tasks already stored (the migration that adds the register).
pub(crate) fn backfill(conn: &mut dyn Conn) -> Result<(), StoreError> {
    let rows = conn.query(
        "SELECT rid, id, body, last_updated FROM resources WHERE rtype = 'Task' AND deleted = 0",
        &[],
    )?;
    for row in rows {
        let mut it = row.into_iter();
        let (Some(rid), Some(id), Some(body)) = (
            it.next().and_then(|v| v.as_i64()),
            it.next().and_then(SqlValue::into_string),
            it.next().and_then(SqlValue::into_string),
        ) else {
            continue;
        };
        let last_updated = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
        if let Ok(task) = serde_json::from_str::<Value>(&body) {
            written(conn, rid, &id, &task, last_updated, true)?;
        }
    }
    Ok(())
}

/// Removes a deleted Task's row.
pub(crate) fn deleted(conn: &mut dyn Conn, rid: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM referrals WHERE rid = ?", &[rid.into()])?;
    Ok(())
}

/// The Organization a reference names: itself, or the organisation of a PractitionerRole,
/// HealthcareService or Location; empty when it names none.
fn organization_of(conn: &mut dyn Conn, (rt, id): &(String, String)) -> Result<String, StoreError> {
    if rt == "Organization" {
        return Ok(id.clone());
    }
    if !matches!(
        rt.as_str(),
        "PractitionerRole" | "HealthcareService" | "Location"
    ) {
        return Ok(String::new());
    }
    let rows = conn.query(
        "SELECT i.target_id FROM idx_reference i JOIN resources r ON r.rid = i.rid
         WHERE r.rtype = ? AND r.id = ? AND r.deleted = 0 AND i.param = 'organization' AND i.target_type = 'Organization'
         ORDER BY i.target_id LIMIT 1",
        &[rt.as_str().into(), id.as_str().into()],
    )?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .and_then(SqlValue::into_string)
        .unwrap_or_default())
}

/// Which referrals a worklist shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorklistState {
    /// Not ended.
    Open,
    /// Open, and the next milestone is due by `at_risk_until` but not yet past.
    AtRisk,
    /// Open, and the next milestone's time has passed.
    Overdue,
    /// Ended.
    Closed,
}

/// A worklist request.
#[derive(Debug, Clone)]
pub struct WorklistQuery {
    pub organization: String,
    /// The referrals the organisation received (owner), else those it sent (requester).
    pub received: bool,
    pub state: WorklistState,
    pub now_ms: i64,
    pub at_risk_until_ms: i64,
    pub count: usize,
    /// The cursor of the page before.
    pub after: Option<String>,
}

/// One referral on a worklist.
#[derive(Debug, Clone, PartialEq)]
pub struct WorklistItem {
    pub task_id: String,
    pub patient_id: String,
    pub requester_org: String,
    pub owner_org: String,
    pub service: String,
    pub priority: String,
    pub status: String,
    pub business_status: Option<String>,
    pub authored_ms: i64,
    pub next_due_ms: Option<i64>,
    pub closed_ms: Option<i64>,
}

/// A page of a worklist, and the cursor of the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct WorklistPage {
    pub items: Vec<WorklistItem>,
    pub next: Option<String>,
}

const ITEM_COLUMNS: &str = "f.task_id, f.patient_id, f.requester_org, f.owner_org, f.service, f.priority, f.status, f.business_status, f.authored_ms, f.next_due_ms, f.closed_ms";

/// The next due time of an open referral with nothing more due (seen, awaiting the report):
/// past every real time, so it sorts last.
pub const NOTHING_DUE: i64 = i64::MAX / 4;

pub(crate) fn worklist(
    conn: &mut dyn Conn,
    q: &WorklistQuery,
    filter: Option<&AccessFilter>,
) -> Result<WorklistPage, StoreError> {
    let side = if q.received {
        "f.owner_org"
    } else {
        "f.requester_org"
    };
    let mut params: Vec<SqlValue> = vec![q.organization.as_str().into()];
    // open lists: most urgent first (one ascending range of (org, next_due_ms, task_id));
    // the closed list: most recently ended first (descending on (org, closed_ms, task_id))
    let (state, key, descending) = match q.state {
        WorklistState::Open => ("f.next_due_ms IS NOT NULL", "f.next_due_ms", false),
        WorklistState::Overdue => {
            params.push(q.now_ms.into());
            ("f.next_due_ms < ?", "f.next_due_ms", false)
        }
        WorklistState::AtRisk => {
            params.push(q.now_ms.into());
            params.push(q.at_risk_until_ms.into());
            (
                "f.next_due_ms >= ? AND f.next_due_ms <= ?",
                "f.next_due_ms",
                false,
            )
        }
        WorklistState::Closed => ("f.closed_ms IS NOT NULL", "f.closed_ms", true),
    };
    let mut sql = format!(
        "SELECT {ITEM_COLUMNS}, {key} FROM referrals f \
         WHERE {side} = ? AND {state}"
    );
    if let Some(cursor) = &q.after {
        let (k, id) = decode_cursor(cursor)?;
        let cmp = if descending { "<" } else { ">" };
        sql.push_str(&format!(
            " AND ({key} {cmp} ? OR ({key} = ? AND f.task_id {cmp} ?))"
        ));
        params.push(k.into());
        params.push(k.into());
        params.push(id.into());
    }
    if let Some(f) = filter {
        sql.push_str(&format!(" AND ({})", f.on_rows_of("f", "Task")));
        params.extend(f.params.iter().cloned());
    }
    let direction = if descending { "DESC" } else { "ASC" };
    sql.push_str(&format!(
        " ORDER BY {key} {direction}, f.task_id {direction} LIMIT {}",
        q.count + 1
    ));
    let rows = conn.query(&sql, &params)?;
    let mut items = Vec::new();
    let mut keys = Vec::new();
    for row in rows {
        let mut it = row.into_iter();
        let mut text = || {
            it.next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default()
        };
        let (task_id, patient_id, requester_org, owner_org, service, priority, status) =
            (text(), text(), text(), text(), text(), text(), text());
        let business_status = it.next().and_then(SqlValue::into_string);
        let authored_ms = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
        let next_due_ms = it
            .next()
            .and_then(|v| v.as_i64())
            .filter(|d| *d != NOTHING_DUE);
        let closed_ms = it.next().and_then(|v| v.as_i64());
        keys.push(it.next().and_then(|v| v.as_i64()).unwrap_or(0));
        items.push(WorklistItem {
            task_id,
            patient_id,
            requester_org,
            owner_org,
            service,
            priority,
            status,
            business_status,
            authored_ms,
            next_due_ms,
            closed_ms,
        });
    }
    let next = if q.count > 0 && items.len() > q.count {
        items.truncate(q.count);
        let last = &items[q.count - 1];
        Some(format!("r{}:{}", keys[q.count - 1], last.task_id))
    } else {
        None
    };
    Ok(WorklistPage { items, next })
}

fn decode_cursor(c: &str) -> Result<(i64, String), StoreError> {
    let bad = || {
        StoreError::BadSearch(format!(
            "'{c}' is not a worklist cursor: use the `next` link of the page before"
        ))
    };
    let rest = c.strip_prefix('r').ok_or_else(bad)?;
    let (k, id) = rest.split_once(':').ok_or_else(bad)?;
    Ok((k.parse().map_err(|_| bad())?, id.to_string()))
}

/// The referrals written in `[from_ms, to_ms)` (optionally of one organisation, on either
/// side), as the measures read them (one range of a covering index).
pub(crate) fn records(
    conn: &mut dyn Conn,
    from_ms: i64,
    to_ms: i64,
    organization: Option<&str>,
) -> Result<Vec<ReferralRecord>, StoreError> {
    let mut sql = "SELECT f.task_id, f.patient_id, f.requester_org, f.owner_org, f.service, f.priority, f.status, f.authored_ms, \
         f.accepted_ms, f.booked_ms, f.seen_ms, f.reported_ms, f.closed_ms, f.accept_due_ms, f.book_due_ms, f.seen_due_ms \
         FROM referrals f WHERE f.authored_ms >= ? AND f.authored_ms < ? AND f.status NOT IN ('draft', 'entered-in-error')"
        .to_string();
    let mut params: Vec<SqlValue> = vec![from_ms.into(), to_ms.into()];
    if let Some(org) = organization {
        sql.push_str(" AND (f.owner_org = ? OR f.requester_org = ?)");
        params.push(org.into());
        params.push(org.into());
    }
    let rows = conn.query(&sql, &params)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut it = row.into_iter();
        let mut text = || {
            it.next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default()
        };
        let (task_id, patient_id, requester_org, owner_org, service, priority, status) =
            (text(), text(), text(), text(), text(), text(), text());
        let mut int = || it.next().and_then(|v| v.as_i64());
        let authored_ms = int().unwrap_or(0);
        let progress = Progress {
            accepted_ms: int(),
            booked_ms: int(),
            seen_ms: int(),
            reported_ms: int(),
            closed_ms: int(),
        };
        let due = Due {
            accept_ms: int().unwrap_or(0),
            book_ms: int().unwrap_or(0),
            seen_ms: int().unwrap_or(0),
        };
        let Some(status) = TaskStatus::parse(&status) else {
            continue;
        };
        out.push(ReferralRecord {
            task_id,
            patient_id,
            requester_org,
            owner_org,
            service,
            priority: Priority::parse(&priority).unwrap_or(Priority::Routine),
            status,
            authored_ms,
            progress,
            due,
        });
    }
    Ok(out)
}

/// Open referrals whose next milestone is due in `[from_ms, until_ms]` and not yet flagged `flag` for
/// that due time:
/// (task id, owner organisation, the due time). For the job that marks them.
pub(crate) fn unflagged_due(
    conn: &mut dyn Conn,
    from_ms: i64,
    until_ms: i64,
    flag: &str,
    limit: usize,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let rows = conn.query(
        &format!(
            "SELECT task_id, owner_org, next_due_ms FROM referrals WHERE closed_ms IS NULL AND next_due_ms >= ? AND next_due_ms <= ? \
             AND (flag IS NULL OR flag <> ? OR flagged_due_ms <> next_due_ms) ORDER BY next_due_ms LIMIT {limit}"
        ),
        &[from_ms.into(), until_ms.into(), flag.into()],
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            Some((
                it.next().and_then(SqlValue::into_string)?,
                it.next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default(),
                it.next().and_then(|v| v.as_i64())?,
            ))
        })
        .collect())
}

/// Marks a referral's row (`at-risk`, `overdue`) for the due time it was marked for.
pub(crate) fn mark(
    conn: &mut dyn Conn,
    task_id: &str,
    flag: &str,
    due_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE referrals SET flag = ?, flagged_due_ms = ? WHERE task_id = ?",
        &[flag.into(), due_ms.into(), task_id.into()],
    )?;
    Ok(())
}
