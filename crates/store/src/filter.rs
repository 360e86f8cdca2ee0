//! The access filter as SQL: the condition every resource row a caller's read touches must
//! meet. Built by `access` from the caller's view, applied by `search` and by history.

use crate::db::SqlValue;

/// A SQL condition on a `resources` row; `{r}` in the text stands for the row's alias.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

impl AccessFilter {
    /// The condition for the `resources` row aliased `alias`.
    pub fn on(&self, alias: &str) -> String {
        self.sql.replace("{r}", alias)
    }
}
