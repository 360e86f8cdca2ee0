//! The small SQL surface both engines implement: statements with `?` placeholders, rows of
//! plain values, and the dialect differences the SQL builder needs to know.

use crate::error::StoreError;

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl SqlValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(i) => Some(*i),
            SqlValue::Real(r) => Some(*r as i64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn into_string(self) -> Option<String> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        v.map(SqlValue::Text).unwrap_or(SqlValue::Null)
    }
}

impl From<Option<&str>> for SqlValue {
    fn from(v: Option<&str>) -> Self {
        v.map(|s| SqlValue::Text(s.to_string()))
            .unwrap_or(SqlValue::Null)
    }
}

pub type Row = Vec<SqlValue>;

/// The first two columns of each row as text, skipping rows where either is not text.
/// The next column of a row as text (empty when absent or not text).
pub(crate) fn next_text(it: &mut impl Iterator<Item = SqlValue>) -> String {
    it.next()
        .and_then(SqlValue::into_string)
        .unwrap_or_default()
}

pub(crate) fn text_pairs(rows: Vec<Row>) -> Vec<(String, String)> {
    rows.into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            Some((it.next()?.into_string()?, it.next()?.into_string()?))
        })
        .collect()
}

/// Which SQL engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One open connection. Statements use `?` placeholders; the PostgreSQL implementation
/// rewrites them to `$n`. Implementations cache prepared statements.
/// A unit of work's time budget: when it ends, and how long it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub deadline: std::time::Instant,
    pub length: std::time::Duration,
}

pub trait Conn {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, StoreError>;
    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StoreError>;
    /// Runs several statements without parameters (migrations, BEGIN/COMMIT).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Rows changed since the connection opened (to tell whether a failed unit of work wrote
    /// anything); 0 where unknown.
    fn total_changes(&self) -> u64 {
        0
    }
    /// Whether the connection is lost and must be replaced.
    fn is_broken(&self) -> bool {
        false
    }
    /// The time budget of the unit of work about to run on this connection (`None`: none —
    /// background jobs, imports): a statement still running at `deadline` is stopped, and the
    /// unit fails with [`StoreError::OverBudget`]. The pool clears it before every unit.
    fn set_budget(&mut self, _budget: Option<crate::db::Budget>) -> Result<(), StoreError> {
        Ok(())
    }
    /// What the search planner remembers on this connection (resources per type).
    fn planner_cache(&mut self) -> Option<&mut PlannerCache> {
        None
    }
}

/// Resources per type, with when they were counted.
pub type PlannerCache = std::collections::HashMap<String, (std::time::Instant, i64)>;
