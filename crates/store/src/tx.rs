//! One database transaction and the versioned-resource operations inside it: read, write a new
//! version (resource row, history row and search index rows together), delete, history and
//! search.

use fhir::search::{CompositeValue, IndexEntry, IndexValue};
use serde_json::Value;

use crate::db::{Conn, Dialect, Row, SqlValue};
use crate::directory;
pub use crate::directory::{DIRECTORY_SNAPSHOT_TYPES, FreeSlotRow};
use crate::error::StoreError;
use crate::record::stamp;
use care::Clock;

/// A stored version of a resource.
#[derive(Debug, Clone)]
pub struct Stored {
    pub rid: i64,
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// Epoch milliseconds.
    pub last_updated: i64,
    pub deleted: bool,
    /// The resource JSON (with `meta.versionId`/`lastUpdated`); `None` for a deletion.
    pub body: Option<String>,
}

/// How a history entry came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Create,
    Update,
    Delete,
}

impl Method {
    pub fn http(self) -> &'static str {
        match self {
            Method::Create => "POST",
            Method::Update => "PUT",
            Method::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Method {
        match s {
            "POST" => Method::Create,
            "DELETE" => Method::Delete,
            _ => Method::Update,
        }
    }
}

/// A history entry.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub method: Method,
    pub version: Stored,
}

/// Which history to list.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    Instance { resource_type: String, id: String },
    Type(String),
    System,
}

/// A page of history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    pub next_cursor: Option<String>,
    pub total: Option<i64>,
}

/// A page of search matches.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub matches: Vec<Stored>,
    /// What `_include`/`_revinclude` added.
    pub included: Vec<Stored>,
    pub next_cursor: Option<String>,
    pub total: Option<i64>,
}

/// A transaction in progress. Everything done through it commits or rolls back together.
pub struct Tx<'c> {
    conn: &'c mut dyn Conn,
    clock: &'c dyn Clock,
    write: bool,
    savepoints: u32,
    /// (type, id) of every resource created or updated in this transaction, in order (for
    /// subscriptions, matched before commit).
    written: Vec<(String, String)>,
    /// `written`'s length at each open savepoint.
    written_marks: Vec<usize>,
    /// When this unit of work must be done by (a request's time budget).
    deadline: Option<std::time::Instant>,
    /// The AuditEvents of this write, stored pending in it and sealed into the chain once it
    /// has committed.
    audit_out: Vec<crate::record::Prepared>,
}

impl<'c> Tx<'c> {
    pub(crate) fn new(conn: &'c mut dyn Conn, clock: &'c dyn Clock, write: bool) -> Tx<'c> {
        Tx {
            conn,
            clock,
            write,
            savepoints: 0,
            written: Vec::new(),
            written_marks: Vec::new(),
            deadline: None,
            audit_out: Vec::new(),
        }
    }

    /// Whether this is a read-write transaction.
    pub(crate) fn is_write(&self) -> bool {
        self.write
    }

    pub(crate) fn push_audit(&mut self, event: crate::record::Prepared) {
        self.audit_out.push(event);
    }

    /// The AuditEvents to seal once this transaction has committed.
    pub(crate) fn take_audit(&mut self) -> Vec<crate::record::Prepared> {
        std::mem::take(&mut self.audit_out)
    }

    /// Gives this unit of work a time budget of `length` from now: [`Tx::check_budget`] fails
    /// from then on, and with `interrupt` a statement still running when it ends is stopped —
    /// either way the unit fails with [`StoreError::OverBudget`] and is rolled back. Only a
    /// unit with a transaction of its own may be interrupted: an engine rolls back the whole
    /// transaction of a stopped write, which would take the units committed with it too.
    pub fn set_budget(
        &mut self,
        length: std::time::Duration,
        interrupt: bool,
    ) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + length;
        self.deadline = Some(deadline);
        if interrupt {
            self.conn
                .set_budget(Some(crate::db::Budget { deadline, length }))?;
        }
        Ok(())
    }

    /// Fails once the unit's time budget has run out (checked between the steps of long work:
    /// Bundle entries).
    pub fn check_budget(&self) -> Result<(), StoreError> {
        match self.deadline {
            Some(d) if std::time::Instant::now() >= d => Err(StoreError::OverBudget),
            _ => Ok(()),
        }
    }

    /// The resources created or updated so far (and forgets them): (type, id), in order.
    pub fn take_written(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.written)
    }

    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// The current time, from the injected clock.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn conn(&mut self) -> &mut dyn Conn {
        self.conn
    }

    pub(crate) fn ping(&mut self) -> Result<(), StoreError> {
        self.conn.query("SELECT 1", &[])?;
        Ok(())
    }

    /// Runs `f` inside a savepoint: its writes are undone if it fails, the rest of the
    /// transaction goes on (used by `batch` bundles).
    pub fn savepoint<R, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&mut Tx) -> Result<R, E>,
    ) -> Result<R, E> {
        let name = self.begin_savepoint().map_err(E::from)?;
        let result = f(self);
        self.end_savepoint(&name, result.is_ok()).map_err(E::from)?;
        result
    }

    pub(crate) fn begin_savepoint(&mut self) -> Result<String, StoreError> {
        self.savepoints += 1;
        self.written_marks.push(self.written.len());
        let name = format!("sp{}", self.savepoints);
        self.conn.batch(&format!("SAVEPOINT {name}"))?;
        Ok(name)
    }

    /// Keeps (`keep`) or undoes what was written since the savepoint.
    pub(crate) fn end_savepoint(&mut self, name: &str, keep: bool) -> Result<(), StoreError> {
        let mark = self.written_marks.pop().unwrap_or(self.written.len());
        if !keep {
            self.conn.batch(&format!("ROLLBACK TO SAVEPOINT {name}"))?;
            // what was undone was not written
            self.written.truncate(mark);
        }
        self.conn.batch(&format!("RELEASE SAVEPOINT {name}"))
    }

    /// Serialises writers that test the same condition (conditional create/update), so two
    /// of them cannot both find nothing and both create. SQLite has one writer already.
    pub fn lock_condition(&mut self, key: &str) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres {
            let hash = care::fnv1a(key.as_bytes()) as i64;
            self.conn
                .execute("SELECT pg_advisory_xact_lock(?)", &[hash.into()])?;
        }
        Ok(())
    }

    /// The current version of a resource, deleted or not; `lock` holds it for update.
    pub fn current(
        &mut self,
        resource_type: &str,
        id: &str,
        lock: bool,
    ) -> Result<Option<Stored>, StoreError> {
        let sql = if lock && self.write && self.dialect() == Dialect::Postgres {
            "SELECT rid, version, last_updated, deleted, body FROM resources WHERE rtype = ? AND id = ? FOR UPDATE"
        } else {
            "SELECT rid, version, last_updated, deleted, body FROM resources WHERE rtype = ? AND id = ?"
        };
        let rows = self.conn.query(sql, &[resource_type.into(), id.into()])?;
        Ok(rows
            .into_iter()
            .next()
            .map(|r| stored_from(resource_type, id, r)))
    }

    /// The current resources whose indexed references point at `target_type/target_id`, as
    /// `(type, id)` pairs.
    pub fn referencing(
        &mut self,
        target_type: &str,
        target_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.conn().query(
            "SELECT DISTINCT r.rtype, r.id FROM idx_reference i JOIN resources r ON r.rid = i.rid WHERE i.target_type = ? AND i.target_id = ? AND r.deleted = 0",
            &[target_type.into(), target_id.into()],
        )?;
        Ok(crate::db::text_pairs(rows))
    }

    /// Which of `ids` (of one type) exist, deleted or not: id → rid.
    pub fn existing(
        &mut self,
        resource_type: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let mut found = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let mut params: Vec<SqlValue> = vec![resource_type.into()];
            params.extend(chunk.iter().map(|id| SqlValue::from(*id)));
            let sql = format!(
                "SELECT id, rid FROM resources WHERE rtype = ? AND id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            for row in self.conn.query(&sql, &params)? {
                let mut it = row.into_iter();
                if let (Some(id), Some(rid)) = (
                    it.next().and_then(SqlValue::into_string),
                    it.next().and_then(|v| v.as_i64()),
                ) {
                    found.insert(id, rid);
                }
            }
        }
        Ok(found)
    }

    /// Stores many new resources (ids not in use) with a few multi-row statements per table
    /// instead of several statements each: the bulk path of `continuum import`.
    pub fn create_many(
        &mut self,
        items: &mut [NewResource<'_>],
    ) -> Result<Vec<Stored>, StoreError> {
        let now = self.now();
        let bodies: Vec<String> = items
            .iter_mut()
            .map(|it| stamp(it.resource, &it.id, 1, now))
            .collect();
        let mut rids: std::collections::HashMap<(String, String), i64> =
            std::collections::HashMap::with_capacity(items.len());
        for (chunk_items, chunk_bodies) in items.chunks(BULK_ROWS).zip(bodies.chunks(BULK_ROWS)) {
            let mut params: Vec<SqlValue> = Vec::with_capacity(chunk_items.len() * 4);
            for (it, body) in chunk_items.iter().zip(chunk_bodies) {
                params.push(it.resource_type.into());
                params.push(it.id.as_str().into());
                params.push(now.into());
                params.push(body.as_str().into());
            }
            let sql = format!(
                "INSERT INTO resources (rtype, id, version, last_updated, deleted, body) VALUES {} RETURNING rid, rtype, id",
                vec!["(?, ?, 1, ?, 0, ?)"; chunk_items.len()].join(", ")
            );
            for row in self.conn.query(&sql, &params)? {
                let mut it = row.into_iter();
                if let (Some(rid), Some(rtype), Some(id)) = (
                    it.next().and_then(|v| v.as_i64()),
                    it.next().and_then(SqlValue::into_string),
                    it.next().and_then(SqlValue::into_string),
                ) {
                    rids.insert((rtype, id), rid);
                }
            }
        }
        let mut stored = Vec::with_capacity(items.len());
        for (it, body) in items.iter().zip(bodies) {
            let rid = *rids
                .get(&(it.resource_type.to_string(), it.id.clone()))
                .ok_or_else(|| StoreError::Sql("a bulk insert returned no row id".into()))?;
            stored.push(Stored {
                rid,
                resource_type: it.resource_type.to_string(),
                id: it.id.clone(),
                version: 1,
                last_updated: now,
                deleted: false,
                body: Some(body),
            });
        }
        for chunk in stored.chunks(BULK_ROWS) {
            let mut params: Vec<SqlValue> = Vec::with_capacity(chunk.len() * 5);
            for s in chunk {
                params.push(s.rid.into());
                params.push(s.resource_type.as_str().into());
                params.push(s.id.as_str().into());
                params.push(s.last_updated.into());
                params.push(s.body.clone().into());
            }
            let sql = format!(
                "INSERT INTO history (rid, rtype, id, version, last_updated, method, body) VALUES {}",
                vec!["(?, ?, ?, 1, ?, 'POST', ?)"; chunk.len()].join(", ")
            );
            self.conn.execute(&sql, &params)?;
        }
        let rows: Vec<(i64, &str, &[IndexEntry])> = stored
            .iter()
            .zip(items.iter())
            .map(|(s, it)| (s.rid, it.resource_type, it.index))
            .collect();
        self.insert_index_rows(&rows, BULK_ROWS)?;
        let mut compartments: Vec<SqlValue> = Vec::new();
        for (s, it) in stored.iter().zip(items.iter()) {
            for patient in fhir::compartment::patients_of(it.resource_type, &it.id, it.index) {
                compartments.push(s.rid.into());
                compartments.push(patient.as_str().into());
            }
        }
        for chunk in compartments.chunks(2 * BULK_ROWS) {
            let sql = format!(
                "INSERT INTO compartments (rid, patient_id) VALUES {}",
                vec!["(?, ?)"; chunk.len() / 2].join(", ")
            );
            self.conn.execute(&sql, chunk)?;
        }
        let mut types: Vec<&str> = items.iter().map(|it| it.resource_type).collect();
        types.sort_unstable();
        types.dedup();
        for rtype in types {
            directory::written(self.conn, rtype)?;
        }
        let now = self.now();
        for (s, it) in stored.iter().zip(items.iter()) {
            self.insert_care_links(s.rid, it.resource)?;
            if s.resource_type == "Slot" {
                directory::slot_written(self.conn, s.rid, &s.id, it.resource, true)?;
            }
            if s.resource_type == "Task" {
                crate::referrals::written(self.conn, s.rid, &s.id, it.resource, now, true)?;
            }
            self.written.push((s.resource_type.clone(), s.id.clone()));
        }
        Ok(stored)
    }

    /// One version of a resource, from history.
    pub fn version(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Stored>, StoreError> {
        let rows = self.conn.query(
            "SELECT rid, version, last_updated, CASE WHEN method = 'DELETE' THEN 1 ELSE 0 END, body
             FROM history WHERE rtype = ? AND id = ? AND version = ?",
            &[resource_type.into(), id.into(), version.into()],
        )?;
        Ok(rows
            .into_iter()
            .next()
            .map(|r| stored_from(resource_type, id, r)))
    }

    /// A fresh server-assigned id.
    pub fn new_id(&self) -> String {
        // time-ordered (UUID v7): new rows land at the end of the id indexes instead of at
        // random places, which keeps writes sequential; the random part keeps ids unguessable
        uuid::Uuid::now_v7().to_string()
    }

    /// Stores version 1 of a new resource with the given id.
    pub fn create(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: &mut Value,
        index: &[IndexEntry],
    ) -> Result<Stored, StoreError> {
        let now = self.now();
        let body = stamp(resource, id, 1, now);
        let rows = self.conn.query(
            "INSERT INTO resources (rtype, id, version, last_updated, deleted, body) VALUES (?, ?, 1, ?, 0, ?) RETURNING rid",
            &[resource_type.into(), id.into(), now.into(), body.clone().into()],
        )?;
        let rid = rows
            .first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64)
            .ok_or_else(|| StoreError::Sql("insert returned no row id".into()))?;
        let stored = Stored {
            rid,
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version: 1,
            last_updated: now,
            deleted: false,
            body: Some(body),
        };
        self.insert_history(&stored, Method::Create)?;
        self.insert_index(rid, resource_type, index)?;
        self.index_access(rid, resource_type, id, resource, index, true)?;
        self.written
            .push((resource_type.to_string(), id.to_string()));
        Ok(stored)
    }

    /// Stores the next version of an existing (possibly deleted) resource.
    pub fn update(
        &mut self,
        previous: &Stored,
        resource: &mut Value,
        index: &[IndexEntry],
    ) -> Result<Stored, StoreError> {
        let now = self.now().max(previous.last_updated);
        let body = stamp(resource, &previous.id, previous.version + 1, now);
        let stored = self.next_version(previous, now, Some(body), Method::Update)?;
        self.delete_index(previous.rid)?;
        self.insert_index(previous.rid, &previous.resource_type, index)?;
        self.index_access(
            previous.rid,
            &previous.resource_type,
            &previous.id,
            resource,
            index,
            false,
        )?;
        self.written
            .push((previous.resource_type.clone(), previous.id.clone()));
        Ok(stored)
    }

    /// Records a deletion as a new version; the resource then reads as gone. Its index rows
    /// and compartments stay (searches skip deleted resources), so that who may learn of the
    /// deletion is decided exactly as for the resource; the care links it made end.
    pub fn delete(&mut self, previous: &Stored) -> Result<Stored, StoreError> {
        let now = self.now().max(previous.last_updated);
        let stored = self.next_version(previous, now, None, Method::Delete)?;
        self.conn.execute(
            "DELETE FROM care_relationships WHERE source_rid = ?",
            &[previous.rid.into()],
        )?;
        directory::written(self.conn, &previous.resource_type)?;
        if previous.resource_type == "Slot" {
            directory::slot_deleted(self.conn, previous.rid)?;
        }
        if previous.resource_type == "Task" {
            crate::referrals::deleted(self.conn, previous.rid)?;
        }
        Ok(stored)
    }

    /// Open referrals due in `[from_ms, until_ms]` not yet marked `flag` for that due time:
    /// (task id, receiving organisation, due time).
    pub fn referrals_to_mark(
        &mut self,
        from_ms: i64,
        until_ms: i64,
        flag: &str,
        limit: usize,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        crate::referrals::unflagged_due(self.conn, from_ms, until_ms, flag, limit)
    }

    /// Marks a referral `flag` for the due time `due_ms`.
    pub fn mark_referral(
        &mut self,
        task_id: &str,
        flag: &str,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        crate::referrals::mark(self.conn, task_id, flag, due_ms)
    }

    /// The directory version this transaction sees (see [`crate::directory`]).
    pub fn directory_version(&mut self) -> Result<i64, StoreError> {
        directory::version(self.conn)
    }

    /// The first free slot of each schedule starting in `[from_ms, until_ms)`: schedule id →
    /// (slot id, start). Slots are not patient data; callers check the caller may read them.
    pub fn first_free_slots(
        &mut self,
        schedule_ids: &[&str],
        from_ms: i64,
        until_ms: i64,
    ) -> Result<std::collections::HashMap<String, (String, i64)>, StoreError> {
        let now = self.now();
        directory::first_free_slots(self.conn, now, schedule_ids, from_ms, until_ms)
    }

    /// Free slots of these schedules starting in `[from_ms, until_ms)`, earliest first, at most
    /// `limit`, and how many there are in all.
    pub fn free_slots(
        &mut self,
        schedule_ids: &[&str],
        from_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<(Vec<FreeSlotRow>, i64), StoreError> {
        let now = self.now();
        directory::free_slots(self.conn, now, schedule_ids, from_ms, until_ms, limit)
    }

    /// Writes version `previous.version + 1` (a body, or `None` for a deletion) if nobody else
    /// did first, with its history row.
    fn next_version(
        &mut self,
        previous: &Stored,
        now: i64,
        body: Option<String>,
        method: Method,
    ) -> Result<Stored, StoreError> {
        let version = previous.version + 1;
        let deleted = body.is_none();
        let changed = self.conn.execute(
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, body = ? WHERE rid = ? AND version = ?",
            &[
                version.into(),
                now.into(),
                (deleted as i64).into(),
                body.clone().into(),
                previous.rid.into(),
                previous.version.into(),
            ],
        )?;
        if changed != 1 {
            return Err(StoreError::Conflict(format!(
                "{}/{} changed while this {} ran",
                previous.resource_type,
                previous.id,
                method.http()
            )));
        }
        let stored = Stored {
            rid: previous.rid,
            resource_type: previous.resource_type.clone(),
            id: previous.id.clone(),
            version,
            last_updated: now,
            deleted,
            body,
        };
        self.insert_history(&stored, method)?;
        Ok(stored)
    }

    /// Keeps the rows access control reads in step with a resource version: the patients
    /// whose compartment holds it, and the care relationships it establishes. A `fresh`
    /// resource (just created) has no earlier rows to replace.
    fn index_access(
        &mut self,
        rid: i64,
        rtype: &str,
        id: &str,
        resource: &Value,
        index: &[IndexEntry],
        fresh: bool,
    ) -> Result<(), StoreError> {
        if !fresh {
            self.conn
                .execute("DELETE FROM compartments WHERE rid = ?", &[rid.into()])?;
            self.conn.execute(
                "DELETE FROM care_relationships WHERE source_rid = ?",
                &[rid.into()],
            )?;
        }
        let patients = fhir::compartment::patients_of(rtype, id, index);
        for chunk in patients.chunks(MAX_ROWS_PER_INSERT) {
            let mut params: Vec<SqlValue> = Vec::with_capacity(chunk.len() * 2);
            for patient in chunk {
                params.push(rid.into());
                params.push(patient.as_str().into());
            }
            let sql = format!(
                "INSERT INTO compartments (rid, patient_id) VALUES {}",
                vec!["(?, ?)"; chunk.len()].join(", ")
            );
            self.conn.execute(&sql, &params)?;
        }
        directory::written(self.conn, rtype)?;
        if rtype == "Slot" {
            directory::slot_written(self.conn, rid, id, resource, fresh)?;
        }
        if rtype == "Task" {
            let now = self.now();
            crate::referrals::written(self.conn, rid, id, resource, now, fresh)?;
        }
        self.insert_care_links(rid, resource)
    }

    /// The care relationships a resource establishes (patient ↔ organisation).
    fn insert_care_links(&mut self, rid: i64, resource: &Value) -> Result<(), StoreError> {
        for link in care::relationships::care_links(resource) {
            let orgs = match &link.organization {
                care::relationships::OrgRef::Organization(o) => vec![o.clone()],
                care::relationships::OrgRef::Via(t, via_id) => self.organizations_of(t, via_id)?,
            };
            for org in orgs {
                self.conn.execute(
                    "INSERT INTO care_relationships (patient_id, organization_id, source_rid) VALUES (?, ?, ?)",
                    &[link.patient_id.as_str().into(), org.into(), rid.into()],
                )?;
            }
        }
        Ok(())
    }

    /// The Organization ids a PractitionerRole, Location or HealthcareService names.
    fn organizations_of(&mut self, rtype: &str, id: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT i.target_id FROM idx_reference i JOIN resources r ON r.rid = i.rid
             WHERE r.rtype = ? AND r.id = ? AND r.deleted = 0 AND i.param = 'organization' AND i.target_type = 'Organization'",
            &[rtype.into(), id.into()],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().and_then(SqlValue::into_string))
            .collect())
    }

    fn insert_history(&mut self, s: &Stored, method: Method) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO history (rid, rtype, id, version, last_updated, method, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                s.rid.into(),
                s.resource_type.as_str().into(),
                s.id.as_str().into(),
                s.version.into(),
                s.last_updated.into(),
                method.http().into(),
                s.body.clone().into(),
            ],
        )?;
        Ok(())
    }

    fn delete_index(&mut self, rid: i64) -> Result<(), StoreError> {
        for table in INDEX_TABLES {
            self.conn
                .execute(&format!("DELETE FROM {table} WHERE rid = ?"), &[rid.into()])?;
        }
        Ok(())
    }

    fn insert_index(
        &mut self,
        rid: i64,
        rtype: &str,
        entries: &[IndexEntry],
    ) -> Result<(), StoreError> {
        self.insert_index_rows(&[(rid, rtype, entries)], MAX_ROWS_PER_INSERT)
    }

    /// The search index rows of many resources: grouped by table and written as multi-row
    /// INSERTs (far fewer statements).
    fn insert_index_rows(
        &mut self,
        resources: &[(i64, &str, &[IndexEntry])],
        per_statement: usize,
    ) -> Result<(), StoreError> {
        let mut groups: Vec<(&'static str, usize, Vec<SqlValue>)> = Vec::new();
        for (rid, rtype, e) in resources
            .iter()
            .flat_map(|(rid, rtype, entries)| entries.iter().map(move |e| (*rid, *rtype, e)))
        {
            let head = [SqlValue::Int(rid), rtype.into(), e.param.as_str().into()];
            let (sql, tail): (&'static str, Vec<SqlValue>) = match &e.value {
                IndexValue::String { norm, exact } => (
                    "INSERT INTO idx_string (rid, rtype, param, norm, exact) VALUES (?, ?, ?, ?, ?)",
                    vec![norm.as_str().into(), exact.as_str().into()],
                ),
                IndexValue::Token { system, code, text } => (
                    "INSERT INTO idx_token (rid, rtype, param, system, code, text) VALUES (?, ?, ?, ?, ?, ?)",
                    vec![
                        system.as_deref().into(),
                        code.as_deref().into(),
                        text.as_deref().into(),
                    ],
                ),
                IndexValue::Reference {
                    target_type,
                    target_id,
                    url,
                } => (
                    "INSERT INTO idx_reference (rid, rtype, param, target_type, target_id, url) VALUES (?, ?, ?, ?, ?, ?)",
                    vec![
                        target_type.as_deref().into(),
                        target_id.as_deref().into(),
                        url.as_deref().into(),
                    ],
                ),
                IndexValue::Date { low, high } => (
                    "INSERT INTO idx_date (rid, rtype, param, low, high, wide) VALUES (?, ?, ?, ?, ?, ?)",
                    vec![
                        (*low).into(),
                        (*high).into(),
                        crate::index_rows::date_class(*low, *high).into(),
                    ],
                ),
                IndexValue::Number { value } => (
                    "INSERT INTO idx_number (rid, rtype, param, value) VALUES (?, ?, ?, ?)",
                    vec![(*value).into()],
                ),
                IndexValue::Quantity {
                    value,
                    system,
                    code,
                } => (
                    "INSERT INTO idx_quantity (rid, rtype, param, value, system, code) VALUES (?, ?, ?, ?, ?, ?)",
                    vec![
                        (*value).into(),
                        system.as_deref().into(),
                        code.as_deref().into(),
                    ],
                ),
                IndexValue::Uri { value } => (
                    "INSERT INTO idx_uri (rid, rtype, param, value) VALUES (?, ?, ?, ?)",
                    vec![value.as_str().into()],
                ),
                IndexValue::Composite {
                    a_system,
                    a_code,
                    b,
                } => {
                    let (bs, bc, bn, bl, bh, bt) = match b {
                        CompositeValue::Token { system, code } => {
                            (system.as_deref(), code.as_deref(), None, None, None, None)
                        }
                        CompositeValue::Quantity {
                            value,
                            system,
                            code,
                        } => (
                            system.as_deref(),
                            code.as_deref(),
                            Some(*value),
                            None,
                            None,
                            None,
                        ),
                        CompositeValue::Date { low, high } => {
                            (None, None, None, Some(*low), Some(*high), None)
                        }
                        CompositeValue::String { norm } => {
                            (None, None, None, None, None, Some(norm.as_str()))
                        }
                    };
                    (
                        "INSERT INTO idx_composite (rid, rtype, param, a_system, a_code, b_system, b_code, b_num, b_low, b_high, b_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        vec![
                            a_system.as_deref().into(),
                            a_code.as_deref().into(),
                            bs.into(),
                            bc.into(),
                            bn.map(SqlValue::Real).unwrap_or(SqlValue::Null),
                            bl.map(SqlValue::Int).unwrap_or(SqlValue::Null),
                            bh.map(SqlValue::Int).unwrap_or(SqlValue::Null),
                            bt.into(),
                        ],
                    )
                }
                IndexValue::Geo { lat, lng } => (
                    "INSERT INTO idx_geo (rid, rtype, param, lat, lng) VALUES (?, ?, ?, ?, ?)",
                    vec![(*lat).into(), (*lng).into()],
                ),
            };
            let width = head.len() + tail.len();
            let prefix = sql.split(" VALUES ").next().unwrap_or(sql);
            let i = match groups.iter().position(|(p, _, _)| *p == prefix) {
                Some(i) => i,
                None => {
                    groups.push((prefix, width, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[i].2.extend(head);
            groups[i].2.extend(tail);
        }
        for (prefix, width, values) in groups {
            for chunk in values.chunks(width * per_statement) {
                let rows = chunk.len() / width;
                let one = format!("({})", vec!["?"; width].join(", "));
                let sql = format!("{prefix} VALUES {}", vec![one; rows].join(", "));
                self.conn.execute(&sql, chunk)?;
            }
        }
        Ok(())
    }

    /// A page of history, newest first.
    pub fn history(
        &mut self,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
    ) -> Result<HistoryPage, StoreError> {
        self.history_filtered(scope, since, count, cursor, None)
    }

    /// A page of history of the resources an access filter admits, newest first.
    pub(crate) fn history_filtered(
        &mut self,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
        filter: Option<&crate::filter::AccessFilter>,
    ) -> Result<HistoryPage, StoreError> {
        let mut sql = String::from(
            "SELECT hid, rid, rtype, id, version, last_updated, method, body FROM history h WHERE 1 = 1",
        );
        let mut params: Vec<SqlValue> = Vec::new();
        if let Some(f) = filter {
            sql.push_str(&format!(
                " AND h.rid IN (SELECT r.rid FROM resources r WHERE {})",
                f.on("r")
            ));
            params.extend(f.params.iter().cloned());
        }
        match scope {
            HistoryScope::Instance { resource_type, id } => {
                sql.push_str(" AND rtype = ? AND id = ?");
                params.push(resource_type.as_str().into());
                params.push(id.as_str().into());
            }
            HistoryScope::Type(rt) => {
                sql.push_str(" AND rtype = ?");
                params.push(rt.as_str().into());
            }
            HistoryScope::System => {}
        }
        if let Some(since) = since {
            sql.push_str(" AND last_updated >= ?");
            params.push(since.into());
        }
        let filter_params = params.clone();
        let filter_sql = sql.clone();
        if let Some(c) = cursor {
            let hid = decode_history_cursor(c)?;
            sql.push_str(" AND hid < ?");
            params.push(hid.into());
        }
        sql.push_str(" ORDER BY hid DESC LIMIT ?");
        params.push(((count + 1) as i64).into());
        let mut rows = self.conn.query(&sql, &params)?;
        let more = rows.len() > count;
        rows.truncate(count);
        let next_cursor = if more {
            rows.last()
                .and_then(|r| r[0].as_i64())
                .map(encode_history_cursor)
        } else {
            None
        };
        let entries = rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter();
                let _hid = it.next();
                let rid = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
                let rtype = it
                    .next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default();
                let id = it
                    .next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default();
                let version = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
                let last_updated = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
                let method = Method::parse(
                    it.next()
                        .and_then(|v| v.into_string())
                        .as_deref()
                        .unwrap_or(""),
                );
                let body = it.next().and_then(SqlValue::into_string);
                HistoryEntry {
                    method,
                    version: Stored {
                        rid,
                        resource_type: rtype,
                        id,
                        version,
                        last_updated,
                        deleted: method == Method::Delete,
                        body,
                    },
                }
            })
            .collect();
        let total = if matches!(scope, HistoryScope::Instance { .. }) {
            let count_sql = filter_sql.replacen(
                "SELECT hid, rid, rtype, id, version, last_updated, method, body",
                "SELECT COUNT(*)",
                1,
            );
            let rows = self.conn.query(&count_sql, &filter_params)?;
            rows.first().and_then(|r| r[0].as_i64())
        } else {
            None
        };
        Ok(HistoryPage {
            entries,
            next_cursor,
            total,
        })
    }

    /// The ids and bodies of up to `limit` current resources of a type, by id (for the
    /// command line's hints: "the organisations are …").
    pub fn list_current(
        &mut self,
        resource_type: &str,
        limit: i64,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, body FROM resources WHERE rtype = ? AND deleted = 0 ORDER BY id LIMIT ?",
            &[resource_type.into(), limit.into()],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let mut it = r.into_iter();
                let id = it.next()?.into_string()?;
                let body = serde_json::from_str(&it.next()?.into_string()?).ok()?;
                Some((id, body))
            })
            .collect())
    }

    /// The random value naming this database (so two databases are told apart).
    pub fn database_identity(&mut self) -> Result<String, StoreError> {
        // written once by migration 11
        let rows = self
            .conn
            .query("SELECT value FROM database_identity WHERE id = 1", &[])?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .and_then(SqlValue::into_string)
            .unwrap_or_default())
    }

    /// The care relationships `(patient, organisation)` recorded for these patients (to decide
    /// what someone other than the caller would see, e.g. who an alert may go to).
    pub fn care_relationships_of(
        &mut self,
        patients: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; patients.len()].join(", ");
        let params: Vec<SqlValue> = patients.iter().map(|p| p.as_str().into()).collect();
        let rows = self.conn.query(
            &format!(
                "SELECT DISTINCT patient_id, organization_id FROM care_relationships WHERE patient_id IN ({marks})"
            ),
            &params,
        )?;
        Ok(crate::db::text_pairs(rows))
    }

    /// Row counts of every data table (diagnostics, and tests that prove nothing was written).
    /// The audit trail (a store of its own, and `audit_pending`) is left out: a refused request
    /// is recorded there, and that is not data.
    pub fn row_counts(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for table in ["resources", "history"].iter().chain(INDEX_TABLES).chain(
            [
                "compartments",
                "care_relationships",
                "slot_free",
                "outbox",
                "identity_review",
                "identity_key",
                "video_visit",
                "break_glass",
                "referrals",
                "hl7_message",
            ]
            .iter(),
        ) {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let rows = self.conn.query(&sql, &[])?;
            out.push((
                table.to_string(),
                rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0),
            ));
        }
        Ok(out)
    }
}

/// Index rows per INSERT statement.
const MAX_ROWS_PER_INSERT: usize = 16;

/// Rows per statement on the bulk path (well under both engines' parameter limits).
const BULK_ROWS: usize = 100;

/// A resource for [`Tx::create_many`].
pub struct NewResource<'a> {
    pub resource_type: &'a str,
    pub id: String,
    pub resource: &'a mut Value,
    pub index: &'a [IndexEntry],
}

/// The search index tables, one per parameter type.
pub const INDEX_TABLES: &[&str] = &[
    "idx_string",
    "idx_token",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_composite",
    "idx_geo",
];

pub(crate) fn stored_from(resource_type: &str, id: &str, r: Row) -> Stored {
    let mut it = r.into_iter();
    let rid = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
    let version = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
    let last_updated = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
    let deleted = it.next().and_then(|v| v.as_i64()).unwrap_or_default() != 0;
    let body = it.next().and_then(SqlValue::into_string);
    Stored {
        rid,
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version,
        last_updated,
        deleted,
        body,
    }
}

fn encode_history_cursor(hid: i64) -> String {
    format!("h{hid}")
}

fn decode_history_cursor(c: &str) -> Result<i64, StoreError> {
    c.strip_prefix('h')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::BadCursor(format!("'{c}' is not a history cursor")))
}
