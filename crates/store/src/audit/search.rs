//! Reading the audit store as FHIR: an AuditEvent by id, and `AuditEvent?…` searches over the
//! compact index — by `_id`, `date` (and `_lastUpdated`: the time recorded), `patient`,
//! `entity`, `agent`, `altid`, `action`, `outcome`, `type` and `subtype`, paged in the chain's
//! order (`_sort=-date` newest first). Who may see which events is the caller's view
//! (`care::access::audit_view`), given here by the store's access layer.

use care::access::AuditAccess as AuditScope;
use fhir::search::{Clause, Modifier, Prefix, SearchRequest, SearchValue, SortColumn, Summary};

use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::{Stored, Tx};

/// An event as read, with the Patients it names (the reader's own AuditEvent records them).
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub stored: Stored,
    pub patients: Vec<String>,
}

/// A page of events.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
    pub total: Option<i64>,
}

/// The parameters an audit search takes.
pub const PARAMETERS: &[&str] = &[
    "_id",
    "_lastUpdated",
    "date",
    "patient",
    "entity",
    "agent",
    "altid",
    "action",
    "outcome",
    "type",
    "subtype",
];

/// The event `id`, if `scope` lets the caller see it.
pub fn event(tx: &mut Tx, id: &str, scope: &AuditScope) -> Result<Option<AuditRecord>, StoreError> {
    tx.audit_readable()?;
    let mut sql = String::from(
        "SELECT e.seq, e.id, e.recorded, e.body FROM audit.audit_event e WHERE e.id = ?",
    );
    let mut params: Vec<SqlValue> = vec![id.into()];
    if !scoped(scope, &mut sql, &mut params) {
        return Ok(None);
    }
    let rows = tx.conn().query(&sql, &params)?;
    let mut records = records(tx, rows)?;
    Ok(records.pop())
}

/// One page of the events matching `req` that `scope` lets the caller see.
pub fn search(
    tx: &mut Tx,
    req: &SearchRequest,
    scope: &AuditScope,
) -> Result<AuditPage, StoreError> {
    tx.audit_readable()?;
    if !req.includes.is_empty() || !req.revincludes.is_empty() {
        return Err(refuse(
            "_include and _revinclude are not supported on AuditEvent searches",
        ));
    }
    let descending = match req.sort.as_slice() {
        [] => false,
        [key]
            if matches!(&key.column, SortColumn::LastUpdated)
                || matches!(&key.column, SortColumn::Param { code, .. } if code == "date") =>
        {
            key.descending
        }
        _ => {
            return Err(refuse(
                "AuditEvents are sorted by date only (_sort=date or _sort=-date)",
            ));
        }
    };
    let mut conds = String::new();
    let mut params: Vec<SqlValue> = Vec::new();
    // a patient's untyped reference (`entity=ID`) is to their own Patient, as their
    // accounting allows it to be
    let untyped = match scope {
        AuditScope::Patients(_) => Untyped::Patient,
        _ => Untyped::AnyType,
    };
    for clause in &req.clauses {
        conds.push_str(" AND ");
        condition(clause, untyped, &mut conds, &mut params)?;
    }
    let mut filter = String::new();
    let mut filter_params = Vec::new();
    if !scoped(scope, &mut filter, &mut filter_params) {
        return Ok(AuditPage {
            total: Some(0),
            ..Default::default()
        });
    }
    let wants_total = matches!(req.summary, Summary::Count)
        || matches!(
            req.total,
            fhir::search::TotalMode::Accurate | fhir::search::TotalMode::Estimate
        );
    let count_total = |tx: &mut Tx| -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM audit.audit_event e WHERE 1 = 1{filter}{conds}");
        let all: Vec<SqlValue> = filter_params.iter().chain(&params).cloned().collect();
        Ok(tx.conn().query(&sql, &all)?[0][0].as_i64().unwrap_or(0))
    };
    if matches!(req.summary, Summary::Count) {
        return Ok(AuditPage {
            total: Some(count_total(tx)?),
            ..Default::default()
        });
    }
    let mut page_sql = format!(
        "SELECT e.seq, e.id, e.recorded, e.body FROM audit.audit_event e WHERE 1 = 1{filter}{conds}"
    );
    let mut page_params: Vec<SqlValue> = filter_params.iter().chain(&params).cloned().collect();
    if let Some(cursor) = &req.cursor {
        let after: i64 = cursor
            .strip_prefix('a')
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::BadCursor("not a cursor this server issued".into()))?;
        page_sql.push_str(if descending {
            " AND e.seq < ?"
        } else {
            " AND e.seq > ?"
        });
        page_params.push(after.into());
    }
    page_sql.push_str(if descending {
        " ORDER BY e.seq DESC LIMIT ?"
    } else {
        " ORDER BY e.seq LIMIT ?"
    });
    page_params.push(((req.count + 1) as i64).into());
    let mut rows = tx.conn().query(&page_sql, &page_params)?;
    let more = rows.len() > req.count;
    rows.truncate(req.count);
    let next_cursor = more
        .then(|| rows.last().and_then(|r| r[0].as_i64()))
        .flatten()
        .map(|seq| format!("a{seq}"));
    let first_page_whole = req.cursor.is_none() && !more;
    let records = records(tx, rows)?;
    let total = if wants_total {
        Some(count_total(tx)?)
    } else if first_page_whole && !matches!(req.total, fhir::search::TotalMode::None) {
        Some(records.len() as i64)
    } else {
        None
    };
    Ok(AuditPage {
        records,
        next_cursor,
        total,
    })
}

/// Appends the caller's scope to a WHERE clause; `false` when it admits nothing.
fn scoped(scope: &AuditScope, sql: &mut String, params: &mut Vec<SqlValue>) -> bool {
    match scope {
        AuditScope::All => true,
        AuditScope::None => false,
        AuditScope::Patients(ids) if ids.is_empty() => false,
        AuditScope::Patients(ids) => {
            sql.push_str(&format!(
                " AND e.seq IN (SELECT seq FROM audit.audit_ref WHERE kind IN ('entity', 'agent') AND value IN ({}))",
                marks(ids.len())
            ));
            params.extend(ids.iter().map(|i| SqlValue::from(format!("Patient/{i}"))));
            true
        }
    }
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn refuse(why: &str) -> StoreError {
    StoreError::BadSearch(why.to_string())
}

/// What a reference without a type (`entity=ID`) means.
#[derive(Debug, Clone, Copy)]
enum Untyped {
    Patient,
    AnyType,
}

/// One clause as SQL over the event `e`: its values ORed.
fn condition(
    clause: &Clause,
    untyped: Untyped,
    out: &mut String,
    params: &mut Vec<SqlValue>,
) -> Result<(), StoreError> {
    if clause.chain.is_some() || clause.has.is_some() {
        return Err(refuse(
            "chained parameters and _has are not supported on AuditEvent searches",
        ));
    }
    let param = clause.param.as_str();
    if !PARAMETERS.contains(&param) {
        return Err(refuse(&format!(
            "AuditEvents are searched by {}; '{param}' is not supported",
            PARAMETERS.join(", ")
        )));
    }
    let type_modifier = match &clause.modifier {
        Modifier::None => None,
        Modifier::Type(t) => Some(t.clone()),
        other => {
            return Err(refuse(&format!(
                "the modifier {other:?} is not supported on AuditEvent searches"
            )));
        }
    };
    let mut ors: Vec<String> = Vec::new();
    for value in &clause.values {
        match (param, value) {
            ("_id", SearchValue::Id(id)) => {
                ors.push("e.id = ?".into());
                params.push(id.as_str().into());
            }
            ("date" | "_lastUpdated", SearchValue::Date { prefix, range }) => {
                ors.push(date_condition(*prefix, range.low, range.high, params));
            }
            ("patient", SearchValue::Reference { target_type, id }) => {
                let t = target_type.clone().or(type_modifier.clone());
                if t.as_deref().is_some_and(|t| t != "Patient") {
                    ors.push("1 = 0".into());
                    continue;
                }
                ors.push(
                    "e.seq IN (SELECT seq FROM audit.audit_ref WHERE kind IN ('entity', 'agent') AND value = ?)"
                        .into(),
                );
                params.push(format!("Patient/{id}").into());
            }
            ("entity" | "agent", SearchValue::Reference { target_type, id }) => {
                let kind = if param == "entity" { "entity" } else { "agent" };
                match target_type.clone().or(type_modifier.clone()) {
                    Some(t) => {
                        ors.push(ref_in(kind, "value = ?"));
                        params.push(format!("{t}/{id}").into());
                    }
                    None => {
                        // the id under each type it may be (exact, on the index)
                        let types: Vec<&str> = match untyped {
                            Untyped::Patient => vec!["Patient"],
                            Untyped::AnyType => fhir::SUPPORTED_RESOURCE_TYPES.to_vec(),
                        };
                        ors.push(ref_in(kind, &format!("value IN ({})", marks(types.len()))));
                        params.extend(types.iter().map(|t| SqlValue::from(format!("{t}/{id}"))));
                    }
                }
            }
            ("entity" | "agent", SearchValue::ReferenceUrl(url)) => {
                let tail: Vec<&str> = url.rsplitn(3, '/').take(2).collect();
                let kind = if param == "entity" { "entity" } else { "agent" };
                if let [id, t] = tail.as_slice() {
                    ors.push(ref_in(kind, "value = ?"));
                    params.push(format!("{t}/{id}").into());
                } else {
                    ors.push("1 = 0".into());
                }
            }
            (
                "action" | "outcome" | "type" | "subtype" | "altid",
                SearchValue::Token { code, .. },
            ) => {
                // the codes of the server's own events each come from one code system: the
                // code decides (a system given is not compared)
                let Some(code) = code else {
                    return Err(refuse(&format!(
                        "'{param}' needs a code (code or system|code)"
                    )));
                };
                match param {
                    "altid" => ors.push(ref_in("altid", "value = ?")),
                    "subtype" => ors.push("(' ' || e.subtype || ' ') LIKE ?".into()),
                    // a column of the event's row (one of the constants above)
                    column => ors.push(format!("e.{column} = ?")),
                }
                params.push(if param == "subtype" {
                    format!("% {code} %").into()
                } else {
                    code.clone().into()
                });
            }
            _ => {
                return Err(refuse(&format!(
                    "this value of '{param}' is not supported on AuditEvent searches"
                )));
            }
        }
    }
    if ors.is_empty() {
        out.push_str("1 = 1");
    } else {
        out.push('(');
        out.push_str(&ors.join(" OR "));
        out.push(')');
    }
    Ok(())
}

fn ref_in(kind: &str, test: &str) -> String {
    // `kind` is one of PARAMETERS (a constant), never caller text
    format!("e.seq IN (SELECT seq FROM audit.audit_ref WHERE kind = '{kind}' AND {test})")
}

/// A date condition on the instant an event was recorded (a point in time), with the
/// prefixes' R4 meaning for a search range `[low, high]`.
fn date_condition(prefix: Prefix, low: i64, high: i64, params: &mut Vec<SqlValue>) -> String {
    let (sql, binds): (&str, Vec<i64>) = match prefix {
        Prefix::Eq => ("(e.recorded >= ? AND e.recorded <= ?)", vec![low, high]),
        Prefix::Ne => ("NOT (e.recorded >= ? AND e.recorded <= ?)", vec![low, high]),
        Prefix::Gt | Prefix::Sa => ("e.recorded > ?", vec![high]),
        Prefix::Lt | Prefix::Eb => ("e.recorded < ?", vec![low]),
        Prefix::Ge => ("e.recorded >= ?", vec![low]),
        Prefix::Le => ("e.recorded <= ?", vec![high]),
    };
    params.extend(binds.into_iter().map(SqlValue::from));
    sql.to_string()
}

/// Rows of (seq, id, recorded, body) as records, with the Patients each names.
fn records(tx: &mut Tx, rows: Vec<crate::db::Row>) -> Result<Vec<AuditRecord>, StoreError> {
    let mut out: Vec<AuditRecord> = Vec::with_capacity(rows.len());
    for row in rows {
        let mut it = row.into_iter();
        let (Some(seq), Some(id), Some(recorded), Some(body)) = (
            it.next().and_then(|v| v.as_i64()),
            it.next().and_then(SqlValue::into_string),
            it.next().and_then(|v| v.as_i64()),
            it.next().and_then(SqlValue::into_string),
        ) else {
            continue;
        };
        out.push(AuditRecord {
            stored: Stored {
                rid: seq,
                resource_type: "AuditEvent".into(),
                id,
                version: 1,
                last_updated: recorded,
                deleted: false,
                body: Some(body),
            },
            patients: Vec::new(),
        });
    }
    if out.is_empty() {
        return Ok(out);
    }
    let seqs: Vec<SqlValue> = out.iter().map(|r| r.stored.rid.into()).collect();
    let rows = tx.conn().query(
        &format!(
            "SELECT seq, value FROM audit.audit_ref WHERE kind IN ('entity', 'agent') AND value LIKE 'Patient/%' AND seq IN ({})",
            marks(seqs.len())
        ),
        &seqs,
    )?;
    for row in rows {
        let mut it = row.into_iter();
        if let (Some(seq), Some(p)) = (
            it.next().and_then(|v| v.as_i64()),
            it.next().and_then(SqlValue::into_string),
        ) && let Some(r) = out.iter_mut().find(|r| r.stored.rid == seq)
            && let Some(id) = p.strip_prefix("Patient/")
            && !r.patients.iter().any(|x| x == id)
        {
            r.patients.push(id.to_string());
        }
    }
    Ok(out)
}
