//! The extracts the alliance's measures are computed from (`care::measures`), read in one pass
//! each over the tables that already hold them: the appointments starting in a period (their
//! JSON), every Patient's birth date and home ZIP code (from the search index, not the JSON),
//! the next free slots of every schedule, and the directory's services, sites and schedules.
//! Read after the reporting decision (`care::access::decide_organization_reports`), through
//! [`crate::CallerTx`]'s `measure_*` functions.

use std::collections::HashMap;

use crate::db::{Conn, SqlValue};
use crate::error::StoreError;

/// The JSON of the Appointments whose `date` (start) falls in `[from_ms, to_ms)`.
pub(crate) fn appointments(
    conn: &mut dyn Conn,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = conn.query(
        "SELECT r.body FROM idx_date d JOIN resources r ON r.rid = d.rid \
         WHERE d.rtype = 'Appointment' AND d.param = 'date' AND d.low >= ? AND d.low < ? AND r.deleted = 0",
        &[from_ms.into(), to_ms.into()],
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().and_then(SqlValue::into_string))
        .collect())
}

/// Each Patient's birth date (its first instant, epoch ms) and home postal code, by id.
pub type PatientFacts = HashMap<String, (Option<i64>, Option<String>)>;

/// Every Patient's birth date and home postal code.
pub(crate) fn patients(conn: &mut dyn Conn) -> Result<PatientFacts, StoreError> {
    let mut out = PatientFacts::new();
    for row in conn.query(
        "SELECT r.id, d.low FROM idx_date d JOIN resources r ON r.rid = d.rid \
         WHERE d.rtype = 'Patient' AND d.param = 'birthdate' AND r.deleted = 0",
        &[],
    )? {
        let mut it = row.into_iter();
        if let (Some(id), Some(low)) = (
            it.next().and_then(SqlValue::into_string),
            it.next().and_then(|v| v.as_i64()),
        ) {
            out.entry(id).or_default().0 = Some(low);
        }
    }
    for row in conn.query(
        "SELECT r.id, s.exact FROM idx_string s JOIN resources r ON r.rid = s.rid \
         WHERE s.rtype = 'Patient' AND s.param = 'address-postalcode' AND r.deleted = 0",
        &[],
    )? {
        let mut it = row.into_iter();
        if let (Some(id), Some(zip)) = (
            it.next().and_then(SqlValue::into_string),
            it.next().and_then(SqlValue::into_string),
        ) {
            // the first address's code (a home address is listed first by the alliance's writers)
            out.entry(id).or_default().1.get_or_insert(zip);
        }
    }
    Ok(out)
}

/// The first `per_schedule` free slot starts from `from_ms` of every schedule.
pub(crate) fn next_free_slots(
    conn: &mut dyn Conn,
    from_ms: i64,
    per_schedule: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = conn.query(
        "SELECT schedule_id, start_ms FROM (SELECT schedule_id, start_ms, \
         ROW_NUMBER() OVER (PARTITION BY schedule_id ORDER BY start_ms) AS n \
         FROM slot_free WHERE start_ms >= ?) t WHERE n <= ?",
        &[from_ms.into(), per_schedule.into()],
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            Some((it.next()?.into_string()?, it.next()?.as_i64()?))
        })
        .collect())
}

/// Every current resource of a (directory) type: (id, JSON).
pub(crate) fn all_of_type(
    conn: &mut dyn Conn,
    rtype: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = conn.query(
        "SELECT id, body FROM resources WHERE rtype = ? AND deleted = 0",
        &[rtype.into()],
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            Some((it.next()?.into_string()?, it.next()?.into_string()?))
        })
        .collect())
}
