//! What the care finder and booking read fast besides the resources: the directory version
//! (bumped in the same transaction as every write to the types the care finder keeps in
//! memory, so a snapshot built at one version is known stale after any such write, on any
//! number of servers) and `slot_free`, one row per free or held Slot (so the first free slot
//! of a schedule is one index seek). Functions over the connection, called by `Tx` as it
//! writes and through its `directory_version`, `first_free_slots` and `free_slots`.

use serde_json::Value;

use crate::db::{Conn, SqlValue};
use crate::error::StoreError;

/// The directory types whose every write bumps the directory version (what the care finder
/// keeps in memory between writes; Slots change with each booking and are read live).
pub const DIRECTORY_SNAPSHOT_TYPES: &[&str] = &[
    "HealthcareService",
    "Location",
    "Organization",
    "PractitionerRole",
    "Schedule",
    // not the directory, but cached the same way: the active subscriptions every write checks
    "Subscription",
];

/// Bumps the directory version when `rtype` is one of [`DIRECTORY_SNAPSHOT_TYPES`] (in this
/// transaction: a rolled-back write leaves it as it was).
pub(crate) fn written(conn: &mut dyn Conn, rtype: &str) -> Result<(), StoreError> {
    if DIRECTORY_SNAPSHOT_TYPES.contains(&rtype) {
        conn.execute(
            "UPDATE directory_version SET version = version + 1 WHERE id = 1",
            &[],
        )?;
    }
    Ok(())
}

/// The directory version this transaction sees: it changes with every write to
/// [`DIRECTORY_SNAPSHOT_TYPES`].
pub(crate) fn version(conn: &mut dyn Conn) -> Result<i64, StoreError> {
    let rows = conn.query("SELECT version FROM directory_version WHERE id = 1", &[])?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .and_then(|v| v.as_i64())
        .unwrap_or(0))
}

/// Keeps a Slot's `slot_free` row in step with a version of it (`fresh`: just created).
pub(crate) fn slot_written(
    conn: &mut dyn Conn,
    rid: i64,
    id: &str,
    slot: &Value,
    fresh: bool,
) -> Result<(), StoreError> {
    if !fresh {
        slot_deleted(conn, rid)?;
    }
    if let Some(free) = FreeSlot::of(id, slot) {
        free.insert(conn, rid)?;
    }
    Ok(())
}

/// A deleted (or no longer free) Slot leaves `slot_free`.
pub(crate) fn slot_deleted(conn: &mut dyn Conn, rid: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM slot_free WHERE rid = ?", &[rid.into()])?;
    Ok(())
}

/// The first free slot of each schedule starting in `[from_ms, until_ms)` (a hold lapsed by
/// `now` counts as free): schedule id → (slot id, start).
pub(crate) fn first_free_slots(
    conn: &mut dyn Conn,
    now: i64,
    schedule_ids: &[&str],
    from_ms: i64,
    until_ms: i64,
) -> Result<std::collections::HashMap<String, (String, i64)>, StoreError> {
    let mut out = std::collections::HashMap::new();
    for id in schedule_ids {
        let rows = conn.query(
            "SELECT slot_id, start_ms FROM slot_free WHERE schedule_id = ? AND start_ms >= ? AND start_ms < ? AND (hold_until IS NULL OR hold_until <= ?) ORDER BY start_ms LIMIT 1",
            &[(*id).into(), from_ms.into(), until_ms.into(), now.into()],
        )?;
        if let Some(row) = rows.into_iter().next() {
            let mut it = row.into_iter();
            if let (Some(slot), Some(start)) = (
                it.next().and_then(SqlValue::into_string),
                it.next().and_then(|v| v.as_i64()),
            ) {
                out.insert(id.to_string(), (slot, start));
            }
        }
    }
    Ok(out)
}

/// Free slots of these schedules starting in `[from_ms, until_ms)`, earliest first, at most
/// `limit`, and how many there are in all.
pub(crate) fn free_slots(
    conn: &mut dyn Conn,
    now: i64,
    schedule_ids: &[&str],
    from_ms: i64,
    until_ms: i64,
    limit: usize,
) -> Result<(Vec<FreeSlotRow>, i64), StoreError> {
    let mut out = Vec::new();
    let mut total = 0;
    for chunk in schedule_ids.chunks(500) {
        let list = vec!["?"; chunk.len()].join(", ");
        let mut params: Vec<SqlValue> = chunk.iter().map(|id| (*id).into()).collect();
        params.push(from_ms.into());
        params.push(until_ms.into());
        params.push(now.into());
        let rows = conn.query(
            &format!("SELECT COUNT(*) FROM slot_free WHERE schedule_id IN ({list}) AND start_ms >= ? AND start_ms < ? AND (hold_until IS NULL OR hold_until <= ?)"),
            &params,
        )?;
        total += rows
            .first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64)
            .unwrap_or(0);
        params.push((limit as i64).into());
        for row in conn.query(
            &format!("SELECT slot_id, schedule_id, start_ms, end_ms FROM slot_free WHERE schedule_id IN ({list}) AND start_ms >= ? AND start_ms < ? AND (hold_until IS NULL OR hold_until <= ?) ORDER BY start_ms, slot_id LIMIT ?"),
            &params,
        )? {
            let mut it = row.into_iter();
            if let (Some(slot), Some(schedule), Some(start), Some(end)) = (
                it.next().and_then(SqlValue::into_string),
                it.next().and_then(SqlValue::into_string),
                it.next().and_then(|v| v.as_i64()),
                it.next().and_then(|v| v.as_i64()),
            ) {
                out.push((slot, schedule, start, end));
            }
        }
    }
    out.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    out.truncate(limit);
    Ok((out, total))
}

/// A free slot as `Tx::free_slots` lists it: (slot id, schedule id, start, end).
pub type FreeSlotRow = (String, String, i64, i64);

/// A Slot that is free or held, as `slot_free` keeps it: a held slot (`busy-tentative` with a
/// `hold-expires` instant) is listed with `hold_until`, so it reads as free once the hold has
/// lapsed, before the sweeper frees it.
pub(crate) struct FreeSlot {
    schedule_id: String,
    slot_id: String,
    start_ms: i64,
    end_ms: i64,
    hold_until: Option<i64>,
}

impl FreeSlot {
    /// The row of a Slot, if it is free or held with an expiry and names a local Schedule and
    /// valid times.
    pub(crate) fn of(id: &str, slot: &Value) -> Option<FreeSlot> {
        let instant = |v: Option<&Value>| v?.as_str().and_then(fhir::primitive::instant_ms);
        let hold_until = match slot.get("status").and_then(Value::as_str) {
            Some("free") => None,
            Some("busy-tentative") => Some(instant(
                slot.get("extension")
                    .and_then(Value::as_array)?
                    .iter()
                    .find(|e| {
                        e.get("url").and_then(Value::as_str) == Some(care::booking::HOLD_EXPIRES)
                    })?
                    .get("valueInstant"),
            )?),
            _ => return None,
        };
        let schedule = slot
            .pointer("/schedule/reference")
            .and_then(Value::as_str)?
            .strip_prefix("Schedule/")?;
        Some(FreeSlot {
            schedule_id: schedule.to_string(),
            slot_id: id.to_string(),
            start_ms: instant(slot.get("start"))?,
            end_ms: instant(slot.get("end"))?,
            hold_until,
        })
    }

    pub(crate) fn insert(&self, conn: &mut dyn Conn, rid: i64) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO slot_free (rid, schedule_id, start_ms, end_ms, slot_id, hold_until) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                rid.into(),
                self.schedule_id.as_str().into(),
                self.start_ms.into(),
                self.end_ms.into(),
                self.slot_id.as_str().into(),
                self.hold_until.map_or(SqlValue::Null, SqlValue::Int),
            ],
        )?;
        Ok(())
    }
}
