//! The SQLite engine (embedded default): rusqlite connections in WAL mode.

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use crate::db::{Conn, Dialect, Row, SqlValue};
use crate::error::StoreError;

pub struct SqliteConn {
    conn: Connection,
    planner: crate::db::PlannerCache,
    /// The running unit's deadline, read by SQLite's progress handler.
    deadline: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl SqliteConn {
    /// Opens (creating if needed) the database file. `cache_kib` is the page cache: a reader's
    /// cache is thrown away whenever another connection commits, so readers keep it small and
    /// lean on the OS page cache instead. No memory map: SQLite unmaps it at the start of every
    /// read after a commit, and with an audit event committed per request that cost more
    /// (munmap and page faults, ~15% of the CPU under the search mix) than it saved.
    pub fn open(path: &Path, cache_kib: i64) -> Result<SqliteConn, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA mmap_size = 0;",
        )?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{cache_kib};"))?;
        conn.set_prepared_statement_cache_capacity(512);
        // the same plan for every binding of a cached statement: with STAT4 (built into the
        // bundled SQLite) a statement whose bound values might change the plan is otherwise
        // re-prepared on each execution, and our own planner already picks the driving
        // condition from counted probes
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        // every few thousand virtual-machine steps, SQLite asks whether to stop: past the unit's
        // deadline the statement is interrupted (SQLITE_INTERRUPT → StoreError::OverBudget)
        let deadline: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>> =
            Default::default();
        let seen = deadline.clone();
        conn.progress_handler(
            20_000,
            Some(move || {
                seen.lock()
                    .map(|d| d.is_some_and(|d| std::time::Instant::now() >= d))
                    .unwrap_or(false)
            }),
        )?;
        Ok(SqliteConn {
            conn,
            planner: Default::default(),
            deadline,
        })
    }
}

impl SqliteConn {
    /// Attaches the audit store (its own database file, in WAL mode) as `audit`, for reading
    /// AuditEvents beside the resources. Its page cache is its own: a commit to the audit file
    /// leaves this connection's cache of the resource database warm.
    pub fn attach_audit(&mut self, audit: &Path) -> Result<(), StoreError> {
        let name = audit.to_string_lossy().to_string();
        self.conn
            .execute("ATTACH DATABASE ?1 AS audit", [name])
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open {}: {e}", audit.display()))
            })?;
        self.conn.execute_batch(
            "PRAGMA audit.journal_mode = WAL;
             PRAGMA audit.synchronous = NORMAL;
             PRAGMA audit.cache_size = -4096;",
        )?;
        Ok(())
    }

    /// The appender's connection: the audit store attached as `audit` to an empty main
    /// database, so its SQL names the same tables as the readers' and PostgreSQL's.
    pub fn open_audit(audit: &Path) -> Result<SqliteConn, StoreError> {
        let mut conn = SqliteConn::open(Path::new(":memory:"), 1024)?;
        conn.attach_audit(audit)?;
        // the appender's inserts into the index land anywhere in it: a larger cache keeps more
        // of it in memory (not larger still: SQLite walks the whole cache at every commit)
        conn.conn
            .execute_batch("PRAGMA audit.cache_size = -16384;")?;
        Ok(conn)
    }
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            SqlValue::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            SqlValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn value(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Int(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            SqlValue::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

impl Conn for SqliteConn {
    fn planner_cache(&mut self) -> Option<&mut crate::db::PlannerCache> {
        Some(&mut self.planner)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, StoreError> {
        let _timed = profile::Timed::start(sql);
        let mut stmt = self.conn.prepare_cached(sql)?;
        let n = stmt.execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StoreError> {
        let _timed = profile::Timed::start(sql);
        let mut stmt = self.conn.prepare_cached(sql)?;
        let cols = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut r = Vec::with_capacity(cols);
            for i in 0..cols {
                r.push(value(row.get_ref(i)?));
            }
            out.push(r);
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let _timed = profile::Timed::start(sql);
        self.conn.execute_batch(sql)?;
        Ok(())
    }

    fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }

    fn set_budget(&mut self, budget: Option<crate::db::Budget>) -> Result<(), StoreError> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = budget.map(|b| b.deadline);
        Ok(())
    }
}

/// A statement profile for finding what a load spends its database time on: with
/// `CONTINUUM_SQL_PROFILE=1` (or `=full`, to print whole statements), every statement's time is summed by its text (per thread) and the
/// top ones printed to stderr every ten seconds. Off (one relaxed load) otherwise.
mod profile {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    fn enabled() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var_os("CONTINUUM_SQL_PROFILE").is_some())
    }

    /// How much of a statement's text names it: 120 characters, or all of it with
    /// `CONTINUUM_SQL_PROFILE=full`.
    fn shown() -> usize {
        static LEN: OnceLock<usize> = OnceLock::new();
        *LEN.get_or_init(|| {
            if std::env::var("CONTINUUM_SQL_PROFILE").as_deref() == Ok("full") {
                usize::MAX
            } else {
                120
            }
        })
    }

    type Sums = (HashMap<String, (u64, Duration)>, Instant);

    thread_local! {
        static SUMS: RefCell<Option<Sums>> = const { RefCell::new(None) };
    }

    pub(super) struct Timed<'a> {
        sql: &'a str,
        started: Option<Instant>,
    }

    impl<'a> Timed<'a> {
        pub(super) fn start(sql: &'a str) -> Timed<'a> {
            Timed {
                sql,
                started: enabled().then(Instant::now),
            }
        }
    }

    impl Drop for Timed<'_> {
        fn drop(&mut self) {
            let Some(started) = self.started else { return };
            let took = started.elapsed();
            SUMS.with(|s| {
                let mut s = s.borrow_mut();
                let (sums, since) = s.get_or_insert_with(|| (HashMap::new(), Instant::now()));
                let e = sums
                    .entry(self.sql.chars().take(shown()).collect())
                    .or_default();
                e.0 += 1;
                e.1 += took;
                if since.elapsed() > Duration::from_secs(10) {
                    let mut top: Vec<_> = sums.drain().collect();
                    top.sort_by_key(|e| std::cmp::Reverse(e.1.1));
                    let name = std::thread::current().name().unwrap_or("?").to_string();
                    for (sql, (n, t)) in top.into_iter().take(12) {
                        eprintln!(
                            "sql-profile {name}: {:>8.1} ms {:>7} × {sql}",
                            t.as_secs_f64() * 1000.0,
                            n
                        );
                    }
                    *since = Instant::now();
                }
            });
        }
    }
}
