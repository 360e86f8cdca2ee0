//! The connection pool: database connections owned by dedicated threads, fed whole units of
//! work (one transaction each) through a channel. SQLite gets one writer thread and several
//! reader threads (WAL lets them run side by side); PostgreSQL a pool of equal workers.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use care::Clock;
use crossbeam_channel::{Receiver, Sender, unbounded};
use tokio::sync::oneshot;

use crate::audit::AuditLog;
use crate::db::{Conn, Dialect};
use crate::error::StoreError;
use crate::migrations;
use crate::postgres::PgConn;
use crate::sqlite::SqliteConn;
use crate::tx::Tx;
use crate::wal::WalState;

/// A unit of work for a worker thread.
enum Job {
    /// Runs on its own (a read in its own transaction, or maintenance).
    Alone(AloneUnit),
    /// A write: run inside a transaction the worker opens — possibly shared with other writes
    /// (group commit). Returns whether it succeeded, and what to do once the transaction's
    /// fate is known.
    Write(WriteUnit),
    /// A write that may fail after writing part of its work (a transaction Bundle): it gets a
    /// transaction of its own.
    WriteAlone(WriteUnit),
}

/// Delivers a write's result once its transaction committed (or failed to).
type Deferred = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A read or maintenance task run on a worker's connection.
type AloneUnit = Box<dyn FnOnce(&mut dyn Conn) + Send>;

/// A write run inside the writer's open transaction: whether it succeeded, and its delivery.
type WriteUnit = Box<dyn FnOnce(&mut dyn Conn) -> (bool, Deferred) + Send>;

/// The most writes the SQLite writer commits together.
const GROUP_COMMIT: usize = 64;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// `sqlite://PATH` (relative or absolute), `sqlite:PATH`, a bare path, or `postgres://…` /
    /// `postgresql://…`.
    pub fn parse(url: &str) -> Result<DatabaseUrl, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::BadUrl(url.to_string()));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.contains("://") || url.is_empty() {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(url)))
    }

    /// A description safe to log (no password).
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}***{}", &u[..s + 3], &u[at..]),
                _ => u.clone(),
            },
        }
    }
}

/// Pool sizing.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite reader threads, or PostgreSQL connections.
    pub connections: usize,
    /// Run pending migrations when opening (otherwise refuse to open an out-of-date schema).
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            connections: 4,
            migrate: true,
        }
    }
}

/// The resource store: a handle to the worker threads. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dialect: Dialect,
    writer: Sender<Job>,
    readers: Sender<Job>,
    clock: Arc<dyn Clock>,
    description: String,
    /// The audit trail's appender.
    audit: Arc<AuditLog>,
    /// Dropping them stops the background checkpoint threads (SQLite: the database's and the
    /// audit store's).
    _checkpointers: Vec<Sender<()>>,
    /// Bumped whenever the writer refreshes the planner's statistics (SQLite): each reader
    /// then reloads them before its next unit — another connection's ANALYZE is not a schema
    /// change, so without this the readers would plan with the statistics they opened with
    /// (an empty table's, after a first load) until the server restarts.
    planner_stats: Arc<AtomicU64>,
}

/// The audit store of a SQLite database: `<stem>-audit.db` beside it (`continuum.db` →
/// `continuum-audit.db`).
pub fn audit_path(db: &std::path::Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "continuum".into());
    let ext = db
        .extension()
        .map(|e| e.to_string_lossy().to_string())
        .unwrap_or_else(|| "db".into());
    db.with_file_name(format!("{stem}-audit.{ext}"))
}

impl Store {
    /// Connects, migrates and starts the worker threads.
    pub fn open(
        url: &DatabaseUrl,
        opts: &StoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let connections = opts.connections.max(1);
        match url {
            DatabaseUrl::Sqlite(path) => {
                let mut writer = SqliteConn::open(path, 65536)?;
                prepare_schema(&mut writer, opts.migrate)?;
                // planner statistics: without them SQLite scans a whole type instead of
                // looking resources up by the index rows a search selects
                writer.batch("PRAGMA optimize=0x10002")?;
                // checkpoints copy the WAL back into the database file; done by the writer at
                // commit time they cost it a fifth of its time, so a separate thread does them
                writer.batch("PRAGMA wal_autocheckpoint = 0")?;
                let audit_file = audit_path(path);
                let audit_wal = Arc::new(WalState::default());
                let audit_checkpointer = spawn_checkpointer(
                    SqliteConn::open_audit(&audit_file)?,
                    "PRAGMA audit.wal_checkpoint(PASSIVE)",
                    audit_wal.clone(),
                );
                let mut appender = SqliteConn::open_audit(&audit_file)?;
                // as the writer: the checkpoint thread copies the log, the appender rewinds it
                appender.batch("PRAGMA wal_autocheckpoint = 0")?;
                let audit = Arc::new(AuditLog::start(
                    Box::new(appender),
                    &mut writer,
                    None,
                    Some(audit_wal),
                    clock.now_ms(),
                )?);
                let wal = Arc::new(WalState::default());
                let checkpointer = spawn_checkpointer(
                    SqliteConn::open(path, 1024)?,
                    "PRAGMA wal_checkpoint(PASSIVE)",
                    wal.clone(),
                );
                let (wtx, wrx) = unbounded::<Job>();
                let planner_stats = Arc::new(AtomicU64::new(0));
                spawn_worker(
                    "sqlite-writer".into(),
                    Box::new(writer),
                    wrx,
                    None,
                    Some(WriterDuties {
                        wal,
                        audit: audit.clone(),
                        planner_stats: planner_stats.clone(),
                    }),
                );
                let (rtx, rrx) = unbounded::<Job>();
                for i in 0..connections {
                    let mut conn = SqliteConn::open(path, 2048)?;
                    conn.attach_audit(&audit_file)?;
                    spawn_reader(
                        format!("sqlite-reader-{i}"),
                        Box::new(conn),
                        rrx.clone(),
                        planner_stats.clone(),
                    );
                }
                Ok(Store {
                    inner: Arc::new(Inner {
                        dialect: Dialect::Sqlite,
                        writer: wtx,
                        readers: rtx,
                        clock,
                        description: url.redacted(),
                        audit,
                        _checkpointers: vec![checkpointer, audit_checkpointer],
                        planner_stats,
                    }),
                })
            }
            DatabaseUrl::Postgres(u) => {
                // the synchronous client runs its own small runtime, which must not start
                // inside the caller's async runtime: connect from a plain thread
                let now = clock.now_ms();
                let (conns, audit) = std::thread::scope(|s| {
                    s.spawn(|| -> Result<(Vec<PgConn>, AuditLog), StoreError> {
                        let mut first = PgConn::connect(u)?;
                        prepare_schema(&mut first, opts.migrate)?;
                        let audit = AuditLog::start(
                            Box::new(PgConn::connect(u)?),
                            &mut first,
                            Some(u.clone()),
                            None,
                            now,
                        )?;
                        let mut conns = vec![first];
                        for _ in 1..connections {
                            conns.push(PgConn::connect(u)?);
                        }
                        Ok((conns, audit))
                    })
                    .join()
                    .unwrap_or_else(|_| {
                        Err(StoreError::Unavailable(
                            "connecting to PostgreSQL panicked".into(),
                        ))
                    })
                })?;
                let (tx, rx) = unbounded::<Job>();
                for (i, conn) in conns.into_iter().enumerate() {
                    spawn_worker(
                        format!("pg-{i}"),
                        Box::new(conn),
                        rx.clone(),
                        Some(u.clone()),
                        None,
                    );
                }
                Ok(Store {
                    inner: Arc::new(Inner {
                        dialect: Dialect::Postgres,
                        writer: tx.clone(),
                        readers: tx,
                        clock,
                        description: url.redacted(),
                        audit: Arc::new(audit),
                        _checkpointers: Vec::new(),
                        planner_stats: Arc::new(AtomicU64::new(0)),
                    }),
                })
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The database, described without secrets.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Runs `f` in a read-only transaction (a consistent snapshot).
    pub async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx) -> Result<R, E> + Send + 'static,
    {
        let rx = self.submit(false, f);
        rx.await.unwrap_or_else(|_| Err(worker_gone()))
    }

    /// Runs `f` in a read-write transaction: committed if it returns `Ok`, rolled back
    /// otherwise.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx) -> Result<R, E> + Send + 'static,
    {
        let rx = self.submit(true, f);
        rx.await.unwrap_or_else(|_| Err(worker_gone()))
    }

    /// `write` for callers outside an async runtime (the CLI).
    pub fn write_blocking<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx) -> Result<R, E> + Send + 'static,
    {
        let rx = self.submit(true, f);
        rx.blocking_recv().unwrap_or_else(|_| Err(worker_gone()))
    }

    /// `read` for callers outside an async runtime.
    pub fn read_blocking<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx) -> Result<R, E> + Send + 'static,
    {
        let rx = self.submit(false, f);
        rx.blocking_recv().unwrap_or_else(|_| Err(worker_gone()))
    }

    /// Units of work waiting for the writer and for readers.
    pub fn queue_depths(&self) -> (usize, usize) {
        (self.inner.writer.len(), self.inner.readers.len())
    }

    /// Appends a read's (or a refusal's) AuditEvent to the audit trail, committed with
    /// whatever other events are waiting (group commit); resolves once it is durable.
    pub async fn append_audit(&self, event: serde_json::Value) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        let prepared = crate::audit::Prepared::new(
            event,
            uuid::Uuid::now_v7().to_string(),
            self.inner.clock.now_ms(),
        );
        self.inner.audit.seal(
            vec![prepared],
            Box::new(move |sealed| {
                let _ = reply.send(sealed);
            }),
        );
        rx.await.unwrap_or_else(|_| Err(worker_gone()))
    }

    /// Refreshes the query planner's statistics (after a bulk load).
    pub async fn analyze(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Alone(Box::new(move |conn: &mut dyn Conn| {
            let _ = reply.send(conn.batch("ANALYZE"));
        }));
        let _ = self.inner.writer.send(job);
        let done = rx.await.unwrap_or_else(|_| Err(worker_gone()));
        self.inner.planner_stats.fetch_add(1, Ordering::Release);
        done
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| tx.ping()).await
    }

    fn submit<R, E, F>(&self, write: bool, f: F) -> oneshot::Receiver<Result<R, E>>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx) -> Result<R, E> + Send + 'static,
    {
        self.submit_as(write, false, f)
    }

    /// `write` for work that can fail half-way (many resources at once): it runs in a
    /// transaction of its own rather than alongside other writes.
    pub async fn write_alone<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx) -> Result<R, E> + Send + 'static,
    {
        let rx = self.submit_as(true, true, f);
        rx.await.unwrap_or_else(|_| Err(worker_gone()))
    }

    fn submit_as<R, E, F>(&self, write: bool, alone: bool, f: F) -> oneshot::Receiver<Result<R, E>>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx) -> Result<R, E> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let clock = self.inner.clock.clone();
        let job = if write {
            let audit = self.inner.audit.clone();
            let unit: WriteUnit = Box::new(move |conn: &mut dyn Conn| {
                let (result, events) = run_unit(conn, true, clock.as_ref(), f);
                let ok = result.is_ok();
                let deferred: Deferred = Box::new(move |committed: Result<(), StoreError>| {
                    match committed {
                        // the write's AuditEvents are committed with it (pending): sealed into
                        // the chain in commit order, and the answer leaves once they are
                        Ok(()) if ok && !events.is_empty() => audit.seal(
                            events,
                            Box::new(move |sealed| {
                                if let Err(e) = sealed {
                                    tracing::error!(error = %e, "a write's AuditEvent stays pending until the next start");
                                }
                                let _ = reply.send(result);
                            }),
                        ),
                        Ok(()) => {
                            let _ = reply.send(result);
                        }
                        Err(e) => {
                            let _ = reply.send(result.and(Err(E::from(e))));
                        }
                    }
                });
                (ok, deferred)
            });
            if alone {
                Job::WriteAlone(unit)
            } else {
                Job::Write(unit)
            }
        } else {
            Job::Alone(Box::new(move |conn: &mut dyn Conn| {
                let result = run_transaction(conn, false, clock.as_ref(), f);
                let _ = reply.send(result);
            }))
        };
        let channel = if write {
            &self.inner.writer
        } else {
            &self.inner.readers
        };
        // the workers live as long as the store; a failed send drops the reply, which the
        // caller sees as `worker_gone`
        let _ = channel.send(job);
        rx
    }
}

fn worker_gone<E: From<StoreError>>() -> E {
    E::from(StoreError::Unavailable(
        "the database worker stopped while running this request".into(),
    ))
}

fn prepare_schema(conn: &mut dyn Conn, migrate: bool) -> Result<(), StoreError> {
    if migrate {
        migrations::migrate(conn)?;
        return Ok(());
    }
    let rows = conn
        .query("SELECT MAX(version) FROM schema_migrations", &[])
        .unwrap_or_default();
    let current = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    if current != migrations::latest_version() {
        return Err(StoreError::Unavailable(format!(
            "the database schema is at version {current} but this binary needs {}; run `continuum migrate`",
            migrations::latest_version()
        )));
    }
    Ok(())
}

/// Runs a unit of work inside a transaction someone else opened and will end; returns its
/// result and the AuditEvents to seal once the transaction has committed.
fn run_unit<R, E, F>(
    conn: &mut dyn Conn,
    write: bool,
    clock: &dyn Clock,
    f: F,
) -> (Result<R, E>, Vec<crate::audit::Prepared>)
where
    E: From<StoreError>,
    F: FnOnce(&mut Tx) -> Result<R, E>,
{
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut tx = Tx::new(conn, clock, write);
        let result = f(&mut tx);
        (result, tx.take_audit())
    }));
    // a unit's time budget ends with it: never the commit's, nor the next unit's
    let _ = conn.set_budget(None);
    match outcome {
        Ok((result, events)) => (result, events),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "a database unit of work panicked; rolled back");
            (
                Err(E::from(StoreError::Sql(format!("internal error: {what}")))),
                Vec::new(),
            )
        }
    }
}

/// Runs a batch of writes in one transaction, then tells each the transaction's outcome.
fn run_writes(conn: &mut dyn Conn, batch: Vec<WriteUnit>) {
    let begin = match conn.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    if let Err(e) = conn.batch(begin) {
        // report to every write: nothing ran
        let _ = conn.batch("ROLLBACK");
        for job in batch {
            let (_, deferred) = job(&mut FailingConn(e.clone()));
            deferred(Err(e.clone()));
        }
        return;
    }
    // No savepoint per unit (they cost a fifth of the writer's time): a unit that fails
    // without having written anything leaves the transaction as it was; one that fails after
    // writing (rare: storage errors) spoils the batch, which is then rolled back whole and
    // every unit in it told to retry.
    let mut deferred = Vec::with_capacity(batch.len());
    let mut spoiled = false;
    let mut any_ok = false;
    for job in batch {
        let before = conn.total_changes();
        let (ok, d) = job(conn);
        if !ok && conn.total_changes() != before {
            spoiled = true;
        }
        any_ok |= ok;
        deferred.push(d);
    }
    let outcome = if spoiled {
        let _ = conn.batch("ROLLBACK");
        Err(StoreError::Conflict(
            "a write failed half-way and took its group with it; retry".into(),
        ))
    } else if !any_ok {
        conn.batch("ROLLBACK")
    } else {
        match conn.batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                Err(e)
            }
        }
    };
    for d in deferred {
        d(outcome.clone());
    }
}

/// A connection that refuses everything (for reporting a failure to a write that never ran).
struct FailingConn(StoreError);

impl Conn for FailingConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn execute(&mut self, _: &str, _: &[crate::db::SqlValue]) -> Result<u64, StoreError> {
        Err(self.0.clone())
    }
    fn query(
        &mut self,
        _: &str,
        _: &[crate::db::SqlValue],
    ) -> Result<Vec<crate::db::Row>, StoreError> {
        Err(self.0.clone())
    }
    fn batch(&mut self, _: &str) -> Result<(), StoreError> {
        Err(self.0.clone())
    }
}

fn run_transaction<R, E, F>(
    conn: &mut dyn Conn,
    write: bool,
    clock: &dyn Clock,
    f: F,
) -> Result<R, E>
where
    E: From<StoreError>,
    F: FnOnce(&mut Tx) -> Result<R, E>,
{
    let begin = match (conn.dialect(), write) {
        (Dialect::Sqlite, true) => "BEGIN IMMEDIATE",
        (Dialect::Sqlite, false) => "BEGIN",
        (Dialect::Postgres, true) => "BEGIN",
        (Dialect::Postgres, false) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    conn.batch(begin).map_err(E::from)?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut tx = Tx::new(conn, clock, write);
        f(&mut tx)
    }));
    // a unit's time budget ends with it: never the commit's, nor the next unit's
    let _ = conn.set_budget(None);
    match outcome {
        Ok(Ok(value)) => {
            if let Err(e) = conn.batch("COMMIT") {
                let _ = conn.batch("ROLLBACK");
                return Err(E::from(e));
            }
            Ok(value)
        }
        Ok(Err(e)) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
        Err(panic) => {
            let _ = conn.batch("ROLLBACK");
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "a database unit of work panicked; rolled back");
            Err(E::from(StoreError::Sql(format!("internal error: {what}"))))
        }
    }
}

/// Copies the write-ahead log back into the database file in the background (PASSIVE: never
/// waits for readers or the writer). Only the writer can rewind the log (a checkpointer waiting
/// for it would starve under constant writes), so it reads `WalState` after each batch and
/// rewinds when the log is large and already copied. Stops when the store is dropped.
fn spawn_checkpointer(
    mut conn: SqliteConn,
    checkpoint: &'static str,
    state: Arc<WalState>,
) -> Sender<()> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            loop {
                match stopped.recv_timeout(std::time::Duration::from_millis(200)) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                // (busy, log pages, checkpointed pages)
                let Ok(rows) = conn.query(checkpoint, &[]) else {
                    continue;
                };
                let (log, copied) = rows
                    .first()
                    .map(|r| {
                        (
                            r.get(1).and_then(|v| v.as_i64()).unwrap_or(0),
                            r.get(2).and_then(|v| v.as_i64()).unwrap_or(0),
                        )
                    })
                    .unwrap_or((0, 0));
                state.log.store(log, std::sync::atomic::Ordering::Relaxed);
                state
                    .copied
                    .store(copied, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .expect("spawn the checkpoint thread");
    stop
}

/// What the SQLite writer does between batches besides writing: rewinding the write-ahead log,
/// and removing the `audit_pending` rows already sealed into the chain.
struct WriterDuties {
    wal: Arc<WalState>,
    audit: Arc<AuditLog>,
    /// Bumped after each `PRAGMA optimize` (the readers reload the statistics).
    planner_stats: Arc<AtomicU64>,
}

/// `audit_pending` rows sealed before the writer removes them (one statement for many).
const PENDING_CLEANUP: usize = 512;

/// A SQLite reader: before each unit it reloads the planner's statistics when the writer has
/// refreshed them since (`ANALYZE sqlite_schema` reads `sqlite_stat1` again; one atomic load
/// otherwise).
fn spawn_reader(
    name: String,
    mut conn: Box<dyn Conn + Send>,
    jobs: Receiver<Job>,
    planner_stats: Arc<AtomicU64>,
) {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut seen = planner_stats.load(Ordering::Acquire);
            while let Ok(job) = jobs.recv() {
                let now = planner_stats.load(Ordering::Acquire);
                if now != seen {
                    seen = now;
                    if let Err(e) = conn.batch("ANALYZE sqlite_schema") {
                        tracing::warn!(error = %e, "reloading the planner statistics failed");
                    }
                }
                match job {
                    Job::Alone(f) => f(conn.as_mut()),
                    Job::WriteAlone(w) | Job::Write(w) => run_writes(conn.as_mut(), vec![w]),
                }
            }
        })
        .expect("spawn a database reader thread");
}

fn spawn_worker(
    name: String,
    mut conn: Box<dyn Conn + Send>,
    jobs: Receiver<Job>,
    pg_url: Option<String>,
    duties: Option<WriterDuties>,
) {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut done: u64 = 0;
            let group = if name == "sqlite-writer" {
                GROUP_COMMIT
            } else {
                1
            };
            while let Ok(job) = jobs.recv() {
                match job {
                    Job::Alone(f) => f(conn.as_mut()),
                    Job::WriteAlone(w) => run_writes(conn.as_mut(), vec![w]),
                    Job::Write(first) => {
                        let mut batch = vec![first];
                        let mut later = None;
                        while batch.len() < group {
                            match jobs.try_recv() {
                                Ok(Job::Write(w)) => batch.push(w),
                                Ok(other) => {
                                    later = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        done += batch.len() as u64;
                        run_writes(conn.as_mut(), batch);
                        match later {
                            Some(Job::Alone(f)) => f(conn.as_mut()),
                            Some(Job::Write(w) | Job::WriteAlone(w)) => {
                                run_writes(conn.as_mut(), vec![w])
                            }
                            None => {}
                        }
                    }
                }
                // rewind a large write-ahead log once the checkpoint thread has copied it: a
                // RESTART checkpoint then has little left to copy and only waits for readers
                if let Some(d) = &duties {
                    let sealed = d.audit.take_sealed_pending(PENDING_CLEANUP);
                    if let Err(e) = crate::audit::appender::delete_pending(conn.as_mut(), &sealed) {
                        tracing::warn!(error = %e, "removing sealed audit_pending rows failed; they are removed at the next start");
                    }
                }
                if let Some(d) = &duties {
                    d.wal
                        .rewind_if_copied(conn.as_mut(), "PRAGMA wal_checkpoint(RESTART)");
                }
                // keep the planner's statistics fresh as the data grows (SQLite analyses only
                // the tables that changed enough; PostgreSQL has autovacuum for this)
                if done >= 5000 && name == "sqlite-writer" {
                    done = 0;
                    let _ = conn.batch("PRAGMA optimize");
                    if let Some(d) = &duties {
                        d.planner_stats.fetch_add(1, Ordering::Release);
                    }
                }
                if let Some(url) = &pg_url
                    && conn.is_broken()
                {
                    // the server went away: reconnect before the next unit of work
                    match PgConn::connect(url) {
                        Ok(fresh) => conn = Box::new(fresh),
                        Err(e) => tracing::warn!(worker = %name, error = %e, "reconnect failed"),
                    }
                }
            }
        })
        .expect("spawn a database worker thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://./d/c.db").unwrap(),
            DatabaseUrl::Sqlite("./d/c.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/c.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/c.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u:pw@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        assert_eq!(
            DatabaseUrl::parse("postgres://u:pw@h/db")
                .unwrap()
                .redacted(),
            "postgres://***@h/db"
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
    }

    /// A statement still running at the end of its unit's budget is stopped, the unit fails
    /// with OverBudget, and the connection serves the next unit without a budget.
    #[test]
    fn a_statement_past_its_budget_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("b.db"));
        let store = Store::open(
            &url,
            &StoreOptions {
                connections: 1,
                migrate: true,
            },
            Arc::new(care::SystemClock),
        )
        .unwrap();
        let long = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) SELECT COUNT(*) FROM n";
        let started = std::time::Instant::now();
        let stopped = store.read_blocking(move |tx| {
            tx.set_budget(std::time::Duration::from_millis(50), true)?;
            tx.conn().query(long, &[])
        });
        assert!(
            matches!(stopped, Err(StoreError::OverBudget)),
            "{stopped:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let counted = store.read_blocking(|tx| {
            tx.conn().query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT COUNT(*) FROM n",
                &[],
            )
        });
        assert!(counted.is_ok(), "the next unit has no budget: {counted:?}");
    }

    fn try_open_at(path: &std::path::Path) -> Result<Store, StoreError> {
        Store::open(
            &DatabaseUrl::Sqlite(path.to_path_buf()),
            &StoreOptions {
                connections: 1,
                migrate: true,
            },
            Arc::new(care::SystemClock),
        )
    }

    fn open_at(path: &std::path::Path) -> Store {
        try_open_at(path).unwrap()
    }

    /// A write's AuditEvent committed with it but not sealed (the process died in between) is
    /// sealed at the next start, before anything else is appended; the chain verifies.
    #[test]
    fn a_pending_write_event_is_sealed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let store = open_at(&path);
        store
            .write_blocking(|tx| {
                let event = crate::audit::Prepared::new(
                    serde_json::json!({"resourceType": "AuditEvent", "recorded": "2026-01-01T00:00:00Z", "action": "C"}),
                    "left-pending".into(),
                    0,
                );
                // what Tx::append_audit stores, without the sealing that follows the commit
                tx.conn().execute(
                    "INSERT INTO audit_pending (id, body) VALUES (?, ?)",
                    &[event.id.clone().into(), event.body.clone().into()],
                )
            })
            .unwrap();
        drop(store);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let store = open_at(&path);
        let v = store.read_blocking(crate::audit::verify).unwrap();
        assert_eq!((v.checked, v.first_broken, v.pending), (1, None, 0));
        let found = store
            .read_blocking(|tx| {
                crate::audit::search::event(tx, "left-pending", &care::access::AuditAccess::All)
            })
            .unwrap();
        assert!(found.is_some_and(|r| r.stored.body.unwrap().contains("\"action\":\"C\"")));
    }

    /// A trail an older version kept as AuditEvent resources chained in `audit_chain` is moved
    /// into the audit store in its order, and removed from the resource tables.
    #[test]
    fn an_old_trail_is_moved_to_the_audit_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let store = open_at(&path);
        store
            .write_blocking(|tx| {
                let mut prev = crate::audit::GENESIS.to_string();
                for i in ["a", "b"] {
                    let mut event = serde_json::json!({"resourceType": "AuditEvent", "recorded": "2026-01-01T00:00:00Z", "agent": [{"who": {"reference": "Patient/p1"}}]});
                    let stored = tx.create("AuditEvent", &format!("old-{i}"), &mut event, &[])?;
                    let hash = crate::audit::link_hash(&prev, stored.body.as_deref().unwrap());
                    tx.conn().execute(
                        "INSERT INTO audit_chain (rid, prev_hash, hash) VALUES (?, ?, ?)",
                        &[stored.rid.into(), prev.clone().into(), hash.clone().into()],
                    )?;
                    prev = hash;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        drop(store);
        std::thread::sleep(std::time::Duration::from_millis(100));
        // an old trail altered before the upgrade is not laundered into a fresh chain
        let broken = dir.path().join("broken.db");
        // the database with its write-ahead log (the old store's threads may not have
        // checkpointed it yet)
        std::fs::copy(&path, &broken).unwrap();
        let wal = |p: &std::path::Path| std::path::PathBuf::from(format!("{}-wal", p.display()));
        if wal(&path).exists() {
            std::fs::copy(wal(&path), wal(&broken)).unwrap();
        }
        {
            let c = rusqlite::Connection::open(&broken).unwrap();
            c.execute_batch(
                "UPDATE resources SET body = REPLACE(body, 'p1', 'p2') WHERE id = 'old-a'",
            )
            .unwrap();
        }
        let refused = try_open_at(&broken);
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(why)) if why.contains("broken at record 1")),
            "{:?}",
            refused.err()
        );
        let store = open_at(&path);
        let v = store.read_blocking(crate::audit::verify).unwrap();
        assert_eq!((v.checked, v.first_broken), (2, None));
        let left = store
            .read_blocking(|tx| {
                tx.conn().query(
                    "SELECT COUNT(*) FROM resources WHERE rtype = 'AuditEvent'",
                    &[],
                )
            })
            .unwrap();
        assert_eq!(left[0][0].as_i64(), Some(0));
        let page = store
            .read_blocking(|tx| {
                let req = fhir::search::parse_search(
                    fhir::search::registry(),
                    "AuditEvent",
                    &[("patient".into(), "p1".into())],
                    &fhir::search::ParseOptions {
                        lenient: false,
                        base_url: "",
                        limits: Default::default(),
                    },
                )
                .unwrap();
                crate::audit::search::search(tx, &req, &care::access::AuditAccess::All)
            })
            .unwrap();
        let ids: Vec<String> = page.records.iter().map(|r| r.stored.id.clone()).collect();
        assert_eq!(ids, vec!["old-a", "old-b"]);
    }
}
