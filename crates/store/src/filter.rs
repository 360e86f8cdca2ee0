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

    /// The condition for a row of another table that names a resource of type `rtype` (an
    /// internal constant, not input) by its `rid` column, aliased `alias`: the filter reads a
    /// resource row's `rid` and `rtype` only.
    pub fn on_rows_of(&self, alias: &str, rtype: &'static str) -> String {
        debug_assert!(rtype.chars().all(|c| c.is_ascii_alphabetic()));
        self.sql
            .replace("{r}.rtype", &format!("'{rtype}'"))
            .replace("{r}", alias)
    }
}
