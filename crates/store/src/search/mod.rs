//! Search: the one SQL builder. one parsed [`SearchRequest`] → one query over `resources` with a
//! sub-select per clause on the typed index tables (chains and `_has` nest further selects),
//! the caller's access filter on every resource row it touches, keyset paging on the sort keys,
//! an optional count under the same conditions, and `_include`/`_revinclude` fetched for the
//! page under the same filter. Written once for both engines (`?` placeholders, byte-wise text
//! comparison). `plan` chooses how the conditions are put together, `predicates` writes each
//! condition, `paging` the page query, its order and cursors, `includes` the included resources.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir::search::{
    Clause, Column, Include, Modifier, ParamType, Prefix, SearchRequest, SearchValue, SortColumn,
    Summary, SystemMatch, TotalMode,
};
use serde_json::{Value, json};

use crate::db::SqlValue;
use crate::error::StoreError;
use crate::filter::AccessFilter;
use crate::index_rows::DATE_SPANS;
use crate::tx::{SearchPage, Stored, Tx};

mod includes;
mod paging;
mod plan;
mod predicates;

use includes::*;
use paging::*;
use plan::*;
use predicates::*;

/// The most resources `_include`/`_revinclude` add to one page.
const MAX_INCLUDED: usize = 1000;

/// The planner counts each condition's index rows up to this many.
const PROBE_CAP: i64 = 2000;

/// A condition matching at most this many rows drives the query without further counting.
const CERTAINLY_SELECTIVE: i64 = 50;

/// The planner's cost units (µs, measured on SQLite): collecting one match of the driver into
/// the `IN` list, and testing one condition for one resource. Collecting 837 matches to return
/// 20 took 890 µs; walking 200 resources and testing each 170 µs.
const COLLECT_COST: f64 = 1.0;
const TEST_COST: f64 = 0.8;

/// SQL text under construction with its parameters.
#[derive(Default)]
struct Sql {
    text: String,
    params: Vec<SqlValue>,
    aliases: usize,
    /// Written for SQLite, whose planner is told which index a per-resource test uses
    /// (its statistics are averages: a location with a thousand appointments looks like one
    /// with two).
    sqlite: bool,
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, v: impl Into<SqlValue>) {
        self.text.push('?');
        self.params.push(v.into());
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("c{}", self.aliases)
    }

    fn access(&mut self, access: Option<&AccessFilter>, alias: &str) {
        if let Some(a) = access {
            self.push(" AND ");
            self.push(&a.on(alias));
            self.params.extend(a.params.iter().cloned());
        }
    }
}

impl Tx<'_> {
    /// A search with the system's rights (no access filter).
    pub fn search(&mut self, req: &SearchRequest) -> Result<SearchPage, StoreError> {
        run_filtered(self, req, None)
    }

    /// The query plan the engine picks for a search's page query (for `bench/`).
    pub fn explain_search(&mut self, req: &SearchRequest) -> Result<Vec<String>, StoreError> {
        explain(self, req)
    }
}

fn explain(tx: &mut Tx, req: &SearchRequest) -> Result<Vec<String>, StoreError> {
    let conds = conditions(req);
    let plan = plan(tx, req, &conds)?;
    let (q, _, _) = page_query(req, &conds, &plan, tx.dialect(), None, None)?;
    let prefix = match tx.dialect() {
        crate::db::Dialect::Sqlite => "EXPLAIN QUERY PLAN ",
        crate::db::Dialect::Postgres => "EXPLAIN ",
    };
    let rows = tx.conn().query(&format!("{prefix}{}", q.text), &q.params)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .filter_map(|v| match v {
                    SqlValue::Text(t) => Some(t),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect())
}

/// Runs a search with an access filter ANDed in, so matches, total, pages and includes agree.
pub(crate) fn run_filtered(
    tx: &mut Tx,
    req: &SearchRequest,
    access: Option<&AccessFilter>,
) -> Result<SearchPage, StoreError> {
    let conds = conditions(req);
    let plan = plan(tx, req, &conds)?;
    // counting can cost more than the page: only when asked for (or for `_count=0`); a
    // first page that is not full tells its total for free below
    let counted = matches!(
        (req.total, req.summary),
        (_, Summary::Count) | (TotalMode::Accurate | TotalMode::Estimate, _)
    ) || (req.total == TotalMode::Auto && req.count == 0);
    let total = if counted {
        Some(count(
            tx,
            &filter_sql(req, &conds, plan.driver, tx.dialect(), access),
        )?)
    } else {
        None
    };
    if req.summary == Summary::Count || req.count == 0 {
        return Ok(SearchPage {
            matches: Vec::new(),
            included: Vec::new(),
            next_cursor: None,
            total,
        });
    }

    let (mut rows, signature) = page_rows(tx, req, &conds, &plan, access)?;
    let more = rows.len() > req.count;
    rows.truncate(req.count);
    let total = total.or_else(|| {
        (req.cursor.is_none() && !more && req.total != TotalMode::None).then_some(rows.len() as i64)
    });
    let mut last_keys: Vec<SqlValue> = Vec::new();
    let matches: Vec<Stored> = rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            let rid = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
            let id = it
                .next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default();
            let version = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
            let last_updated = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
            let body = it.next().and_then(SqlValue::into_string);
            last_keys = it.collect();
            Stored {
                rid,
                resource_type: req.resource_type.clone(),
                id,
                version,
                last_updated,
                deleted: false,
                body,
            }
        })
        .collect();
    let next_cursor = if more {
        Some(encode_cursor(&signature, &last_keys))
    } else {
        None
    };
    let included = includes(tx, req, &matches, access)?;
    Ok(SearchPage {
        matches,
        included,
        next_cursor,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_upper_bound("").as_deref(), None);
    }
}
