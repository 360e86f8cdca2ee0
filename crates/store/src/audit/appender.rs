//! The one appender of the audit trail: a thread with its own connection to the audit store,
//! committing whatever events are waiting in one transaction (group commit) and computing the
//! chain in order, in memory — the last link is read back only at start and when another
//! process appended meanwhile (a command run beside the server). It never waits on a lock the
//! resource database's requests take.
//!
//! At start-up it first seals what an earlier run left: the events of writes committed but not
//! yet sealed (`audit_pending`), and an audit trail stored by an older version as AuditEvent
//! resources (moved, in order, then removed from the resource tables).

use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::{GENESIS, Prepared, link_hash};
use crate::db::{Conn, Dialect, SqlValue};
use crate::error::StoreError;

/// Told once the events it was given are committed to the chain (or could not be).
pub(crate) type Sealed = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Request {
    events: Vec<Prepared>,
    done: Sealed,
}

/// The most events committed together.
const GROUP: usize = 1024;

/// The handle to the appender thread. Dropping the last handle stops it once its queue is
/// empty.
pub struct AuditLog {
    queue: Sender<Request>,
    /// The `audit_pending` rows this appender has sealed and nobody has removed yet (SQLite:
    /// the writer removes exactly these, many at a time — never a row another process, or a
    /// failed append, left unsealed).
    sealed_pending: Arc<Mutex<Vec<i64>>>,
}

/// The chain's last link.
#[derive(Debug, Clone)]
struct Head {
    seq: i64,
    hash: String,
}

impl AuditLog {
    /// Creates the audit store's tables if needed, seals what an earlier run left (reading it
    /// from `main`, the resource database, outside any transaction) and starts the appender.
    pub(crate) fn start(
        mut conn: Box<dyn Conn + Send>,
        main: &mut dyn Conn,
        pg_url: Option<String>,
        wal: Option<Arc<crate::wal::WalState>>,
        now_ms: i64,
    ) -> Result<AuditLog, StoreError> {
        ensure_schema(conn.as_mut())?;
        let mut head = read_head(conn.as_mut())?;
        move_old_trail(main, conn.as_mut(), &mut head, now_ms)?;
        seal_pending(main, conn.as_mut(), &mut head, now_ms)?;
        let (queue, requests) = unbounded::<Request>();
        let sealed_pending: Arc<Mutex<Vec<i64>>> = Arc::default();
        let shared = sealed_pending.clone();
        std::thread::Builder::new()
            .name("audit-appender".into())
            .spawn(move || run(conn, requests, head, shared, pg_url, wal))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the audit appender: {e}"))
            })?;
        Ok(AuditLog {
            queue,
            sealed_pending,
        })
    }

    /// Hands `events` to the appender; `done` is told once they are committed.
    pub(crate) fn seal(&self, events: Vec<Prepared>, done: Sealed) {
        if let Err(e) = self.queue.send(Request { events, done }) {
            (e.0.done)(Err(StoreError::Unavailable(
                "the audit appender stopped".into(),
            )));
        }
    }

    /// The `audit_pending` rows sealed since the last call, once there are at least `at_least`
    /// (for the writer to remove).
    pub(crate) fn take_sealed_pending(&self, at_least: usize) -> Vec<i64> {
        let mut sealed = self
            .sealed_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if sealed.len() < at_least {
            return Vec::new();
        }
        std::mem::take(&mut *sealed)
    }
}

fn run(
    mut conn: Box<dyn Conn + Send>,
    requests: Receiver<Request>,
    mut head: Head,
    sealed_pending: Arc<Mutex<Vec<i64>>>,
    pg_url: Option<String>,
    wal: Option<Arc<crate::wal::WalState>>,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        let mut n = batch[0].events.len();
        while n < GROUP {
            match requests.try_recv() {
                Ok(r) => {
                    n += r.events.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let events: Vec<&Prepared> = batch.iter().flat_map(|r| r.events.iter()).collect();
        let mut result = append(conn.as_mut(), &mut head, &events);
        // another process appended meanwhile (its head moved ours), or sealed some of these
        // already (its start-up recovery): read the head back and append what is left
        for _ in 0..3 {
            if result.is_ok() {
                break;
            }
            if let Some(url) = &pg_url
                && conn.is_broken()
                && let Ok(fresh) = crate::postgres::PgConn::connect(url)
            {
                let fresh: Box<dyn Conn + Send> = Box::new(fresh);
                conn = fresh;
            }
            match read_head(conn.as_mut()) {
                Ok(h) => head = h,
                Err(e) => {
                    result = Err(e);
                    continue;
                }
            }
            let left = match not_sealed(conn.as_mut(), &events) {
                Ok(left) => left,
                Err(e) => {
                    result = Err(e);
                    continue;
                }
            };
            result = append(conn.as_mut(), &mut head, &left);
        }
        drop(events);
        // still failing: one request at a time, so that one event the store refuses fails
        // only its own request
        let results: Vec<Result<(), StoreError>> = match result {
            Ok(()) => vec![Ok(()); batch.len()],
            Err(e) if batch.len() == 1 => vec![Err(e)],
            Err(_) => batch
                .iter()
                .map(|r| {
                    let events: Vec<&Prepared> = r.events.iter().collect();
                    read_head(conn.as_mut()).map(|h| head = h)?;
                    let left = not_sealed(conn.as_mut(), &events)?;
                    append(conn.as_mut(), &mut head, &left)
                })
                .collect(),
        };
        let mut sealed = Vec::new();
        for (r, result) in batch.iter().zip(&results) {
            match result {
                Ok(()) => sealed.extend(r.events.iter().filter_map(|e| e.pending)),
                Err(e) => {
                    tracing::error!(error = %e, events = r.events.len(), "appending to the audit trail failed; a write's event stays pending until the next start")
                }
            }
        }
        if !sealed.is_empty() && conn.dialect() == Dialect::Sqlite {
            sealed_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(sealed);
        }
        for (r, result) in batch.into_iter().zip(results) {
            (r.done)(result);
        }
        if let Some(w) = &wal {
            w.rewind_if_copied(conn.as_mut(), "PRAGMA audit.wal_checkpoint(RESTART)");
        }
    }
}

/// Appends `events` in one transaction; `head` moves only once it is committed.
fn append(conn: &mut dyn Conn, head: &mut Head, events: &[&Prepared]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    // deferred on SQLite too: the first statement writes, taking the audit file's lock (an
    // IMMEDIATE transaction would also open one on the connection's empty main database)
    conn.batch("BEGIN")?;
    let mut next = head.clone();
    let written = (|| {
        let mut event_rows: Vec<Vec<SqlValue>> = Vec::with_capacity(events.len());
        let mut ref_rows: Vec<Vec<SqlValue>> = Vec::new();
        for e in events {
            next.seq += 1;
            let hash = link_hash(&next.hash, &e.body);
            event_rows.push(vec![
                next.seq.into(),
                e.id.clone().into(),
                e.recorded.into(),
                e.index.action.clone().into(),
                e.index.outcome.clone().into(),
                e.index.type_code.clone().into(),
                e.index.subtype.clone().into(),
                e.body.clone().into(),
                std::mem::replace(&mut next.hash, hash.clone()).into(),
                hash.into(),
            ]);
            for (kind, value) in &e.index.refs {
                ref_rows.push(vec![(*kind).into(), value.clone().into(), next.seq.into()]);
            }
        }
        insert_rows(
            conn,
            "INSERT INTO audit.audit_event (seq, id, recorded, action, outcome, type, subtype, body, prev_hash, hash) VALUES ",
            10,
            &event_rows,
        )?;
        insert_rows(
            conn,
            "INSERT INTO audit.audit_ref (kind, value, seq) VALUES ",
            3,
            &ref_rows,
        )?;
        if conn.dialect() == Dialect::Postgres {
            // the writes' pending rows are in the same database: gone in the same commit
            let pending: Vec<i64> = events.iter().filter_map(|e| e.pending).collect();
            delete_pending(conn, &pending)?;
        }
        conn.batch("COMMIT")
    })();
    match written {
        Ok(()) => {
            *head = next;
            Ok(())
        }
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Inserts rows of `width` values with statements of a few fixed sizes (so each engine keeps
/// a handful of prepared statements, not one per batch size).
fn insert_rows(
    conn: &mut dyn Conn,
    head: &str,
    width: usize,
    rows: &[Vec<SqlValue>],
) -> Result<(), StoreError> {
    let sizes: &[usize] = &[64, 16, 4, 1];
    let one = format!("({})", vec!["?"; width].join(", "));
    let mut rest = rows;
    while !rest.is_empty() {
        let size = *sizes.iter().find(|s| **s <= rest.len()).unwrap_or(&1);
        let (now, later) = rest.split_at(size);
        let sql = format!("{head}{}", vec![one.as_str(); size].join(", "));
        let params: Vec<SqlValue> = now.iter().flatten().cloned().collect();
        conn.execute(&sql, &params)?;
        rest = later;
    }
    Ok(())
}

/// The events of `events` not in the chain yet.
fn not_sealed<'e>(
    conn: &mut dyn Conn,
    events: &[&'e Prepared],
) -> Result<Vec<&'e Prepared>, StoreError> {
    let mut stored = std::collections::HashSet::new();
    for chunk in events.chunks(500) {
        let ids: Vec<SqlValue> = chunk.iter().map(|e| e.id.clone().into()).collect();
        let rows = conn.query(
            &format!(
                "SELECT id FROM audit.audit_event WHERE id IN ({})",
                vec!["?"; ids.len()].join(", ")
            ),
            &ids,
        )?;
        stored.extend(
            rows.into_iter()
                .filter_map(|r| r.into_iter().next().and_then(SqlValue::into_string)),
        );
    }
    Ok(events
        .iter()
        .filter(|e| !stored.contains(&e.id))
        .copied()
        .collect())
}

fn read_head(conn: &mut dyn Conn) -> Result<Head, StoreError> {
    let rows = conn.query(
        "SELECT seq, hash FROM audit.audit_event ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let mut it = rows.into_iter().next().unwrap_or_default().into_iter();
    Ok(Head {
        seq: it.next().and_then(|v| v.as_i64()).unwrap_or(0),
        hash: it
            .next()
            .and_then(SqlValue::into_string)
            .unwrap_or_else(|| GENESIS.to_string()),
    })
}

/// The audit store's tables (`audit.` is an attached database file on SQLite, a schema on
/// PostgreSQL).
fn ensure_schema(conn: &mut dyn Conn) -> Result<(), StoreError> {
    match conn.dialect() {
        Dialect::Sqlite => conn.batch(
            "CREATE TABLE IF NOT EXISTS audit.audit_event (
                seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, recorded INTEGER NOT NULL,
                action TEXT, outcome TEXT, type TEXT, subtype TEXT,
                body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS audit.audit_event_recorded ON audit_event (recorded);
             CREATE TABLE IF NOT EXISTS audit.audit_ref (
                kind TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
                PRIMARY KEY (kind, value, seq)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS audit.audit_ref_seq ON audit_ref (seq);",
        ),
        // (the appender's own session: no notices that the tables already exist)
        Dialect::Postgres => conn.batch(
            "SET client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS audit;
             CREATE TABLE IF NOT EXISTS audit.audit_event (
                seq BIGINT PRIMARY KEY, id TEXT COLLATE \"C\" NOT NULL UNIQUE,
                recorded BIGINT NOT NULL, action TEXT, outcome TEXT, type TEXT, subtype TEXT,
                body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS audit_event_recorded ON audit.audit_event (recorded);
             CREATE TABLE IF NOT EXISTS audit.audit_ref (
                kind TEXT COLLATE \"C\" NOT NULL, value TEXT COLLATE \"C\" NOT NULL,
                seq BIGINT NOT NULL, PRIMARY KEY (kind, value, seq));
             CREATE INDEX IF NOT EXISTS audit_ref_seq ON audit.audit_ref (seq);",
        ),
    }
}

/// Rows of (number, id, JSON) as events to append, and the last number read; `pending`: the
/// numbers are `audit_pending` rows.
fn stored_events(
    rows: Vec<crate::db::Row>,
    now_ms: i64,
    pending: bool,
) -> (Vec<Prepared>, Option<i64>) {
    let mut events = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows {
        let mut it = row.into_iter();
        let (Some(n), Some(id), Some(body)) = (
            it.next().and_then(|v| v.as_i64()),
            it.next().and_then(SqlValue::into_string),
            it.next().and_then(SqlValue::into_string),
        ) else {
            continue;
        };
        last = Some(n);
        let mut p = Prepared::from_stored(id, body, now_ms);
        p.pending = pending.then_some(n);
        events.push(p);
    }
    (events, last)
}

/// Removes these `audit_pending` rows (already in the chain).
pub(crate) fn delete_pending(conn: &mut dyn Conn, pseqs: &[i64]) -> Result<(), StoreError> {
    for chunk in pseqs.chunks(500) {
        let params: Vec<SqlValue> = chunk.iter().map(|p| SqlValue::from(*p)).collect();
        conn.execute(
            &format!(
                "DELETE FROM audit_pending WHERE pseq IN ({})",
                vec!["?"; chunk.len()].join(", ")
            ),
            &params,
        )?;
    }
    Ok(())
}

/// Seals the events of writes that committed before the last stop without being sealed.
fn seal_pending(
    main: &mut dyn Conn,
    audit: &mut dyn Conn,
    head: &mut Head,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut after = 0i64;
    loop {
        let rows = main.query(
            "SELECT pseq, id, body FROM audit_pending WHERE pseq > ? ORDER BY pseq LIMIT 1000",
            &[after.into()],
        )?;
        if rows.is_empty() {
            break;
        }
        let (events, last) = stored_events(rows, now_ms, true);
        after = last.unwrap_or(after);
        let refs: Vec<&Prepared> = events.iter().collect();
        let left = not_sealed(audit, &refs)?;
        append(audit, head, &left)?;
        // exactly the rows read (a lower one committed meanwhile by another process stays)
        let sealed: Vec<i64> = events.iter().filter_map(|e| e.pending).collect();
        delete_pending(main, &sealed)?;
    }
    Ok(())
}

/// Verifies the older trail's own chain before it is moved: a trail altered before the upgrade
/// must not come out of the move as a fresh chain that verifies. Refuses to start, naming the
/// first broken link, when it does not verify.
fn check_old_trail(main: &mut dyn Conn) -> Result<(), StoreError> {
    let mut expected = GENESIS.to_string();
    let mut after = i64::MIN;
    loop {
        let rows = main.query(
            "SELECT a.seq, a.prev_hash, a.hash, r.body FROM audit_chain a LEFT JOIN resources r ON r.rid = a.rid
             WHERE a.seq > ? ORDER BY a.seq LIMIT 1000",
            &[after.into()],
        )?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let mut it = row.into_iter();
            let seq = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
            let prev = crate::db::next_text(&mut it);
            let hash = crate::db::next_text(&mut it);
            let body = it.next().and_then(SqlValue::into_string);
            after = seq;
            let intact =
                prev == expected && body.as_deref().is_some_and(|b| link_hash(&prev, b) == hash);
            if !intact {
                return Err(StoreError::Unavailable(format!(
                    "the audit trail kept with the resources (by the version before this one) is broken at record {seq}, so it was not moved to the audit store; check it with that version's `continuum audit verify` before upgrading"
                )));
            }
            expected = hash;
        }
    }
}

/// Moves an audit trail an older version kept as AuditEvent resources (chained in
/// `audit_chain`) into the audit store, in its order, then removes it from the resource
/// tables. Re-run safely after an interruption (events already moved are skipped).
fn move_old_trail(
    main: &mut dyn Conn,
    audit: &mut dyn Conn,
    head: &mut Head,
    now_ms: i64,
) -> Result<(), StoreError> {
    let old = main
        .query("SELECT COUNT(*) FROM audit_chain", &[])
        .ok()
        .and_then(|r| r.first().and_then(|r| r.first()).and_then(|v| v.as_i64()))
        .unwrap_or(0);
    if old == 0 {
        return Ok(());
    }
    check_old_trail(main)?;
    let mut after = i64::MIN;
    let mut moved = 0usize;
    loop {
        let rows = main.query(
            "SELECT a.seq, r.id, r.body FROM audit_chain a JOIN resources r ON r.rid = a.rid
             WHERE a.seq > ? AND r.body IS NOT NULL ORDER BY a.seq LIMIT 1000",
            &[after.into()],
        )?;
        if rows.is_empty() {
            break;
        }
        let (events, last) = stored_events(rows, now_ms, false);
        after = last.unwrap_or(after);
        let refs: Vec<&Prepared> = events.iter().collect();
        let left = not_sealed(audit, &refs)?;
        moved += left.len();
        append(audit, head, &left)?;
    }
    let begin = match main.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    main.batch(begin)?;
    let removed = (|| {
        let of_audit = "rid IN (SELECT rid FROM resources WHERE rtype = 'AuditEvent')";
        for table in crate::tx::INDEX_TABLES.iter().chain(&["compartments"]) {
            main.execute(&format!("DELETE FROM {table} WHERE {of_audit}"), &[])?;
        }
        main.execute("DELETE FROM history WHERE rtype = 'AuditEvent'", &[])?;
        main.execute("DELETE FROM resources WHERE rtype = 'AuditEvent'", &[])?;
        main.execute("DELETE FROM audit_chain", &[])?;
        main.batch("COMMIT")
    })();
    if let Err(e) = removed {
        let _ = main.batch("ROLLBACK");
        return Err(e);
    }
    tracing::info!(
        moved,
        "the audit trail kept with the resources was moved to the audit store"
    );
    Ok(())
}
