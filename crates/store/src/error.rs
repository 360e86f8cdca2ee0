//! Store errors: what failed in the database, classified so the HTTP edge can answer well.

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken by a concurrent writer (retry may succeed).
    #[error("conflicting concurrent write: {0}")]
    Conflict(String),
    /// The database could not be reached or opened.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database schema is newer than this binary.
    #[error(
        "the database schema is at version {found}, newer than this binary's {known}; upgrade Continuum instead of downgrading the database"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// The database URL is not one Continuum understands.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    /// A paging cursor that this store did not issue or that belongs to another query.
    #[error("invalid paging cursor: {0}")]
    BadCursor(String),
    /// A search this store cannot run as asked (→ 400 not-supported, with the reason).
    #[error("{0}")]
    BadSearch(String),
    /// The access policy refuses the request as a whole (→ 403, with the reason).
    #[error("{0}")]
    Forbidden(String),
    /// The caller's account or API client was disabled after its token was issued (→ 401).
    #[error("the account or API client '{0}' is disabled; its tokens no longer work")]
    CallerDisabled(String),
    /// The unit of work ran out of its time budget and was stopped (→ 503, nothing written).
    #[error("the request ran out of its time budget")]
    OverBudget,
    /// Anything else the engine reported.
    #[error("database error: {0}")]
    Sql(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e
            && f.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return StoreError::Conflict(e.to_string());
        }
        if let rusqlite::Error::SqliteFailure(f, _) = &e
            && f.code == rusqlite::ErrorCode::OperationInterrupted
        {
            return StoreError::OverBudget;
        }
        StoreError::Sql(e.to_string())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            // 23505 unique_violation, 40001 serialization_failure, 40P01 deadlock_detected
            if code == "23505" || code == "40001" || code == "40P01" {
                return StoreError::Conflict(db.message().to_string());
            }
            // 57014 query_canceled: statement_timeout, the request's time budget
            if code == "57014" {
                return StoreError::OverBudget;
            }
            return StoreError::Sql(format!("{} ({code})", db.message()));
        }
        if e.is_closed() {
            return StoreError::Unavailable(e.to_string());
        }
        StoreError::Sql(e.to_string())
    }
}
