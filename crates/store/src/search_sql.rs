//! The SQL builder for search: one parsed [`SearchRequest`] → one query over `resources` with a
//! sub-select per clause on the typed index tables (chains and `_has` nest further selects),
//! the caller's access filter on every resource row it touches, keyset paging on the sort keys,
//! an optional count under the same conditions, and `_include`/`_revinclude` fetched for the
//! page under the same filter. Written once for both engines (`?` placeholders, byte-wise text
//! comparison).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir::search::{
    Clause, Column, Include, Modifier, ParamType, Prefix, SearchRequest, SearchValue, SortColumn,
    Summary, SystemMatch, TotalMode,
};
use serde_json::{Value, json};

use crate::access::AccessFilter;
use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::{SearchPage, Stored, Tx};

/// The most resources `_include`/`_revinclude` add to one page.
const MAX_INCLUDED: usize = 1000;

/// The width classes of date index rows (the `wide` column): a row of class k spans at most
/// `DATE_SPANS[k]` (a day: dates and instants; 367 days: months, years, periods up to a
/// year), so a bound on its end bounds its start as well; the last class is unbounded.
pub(crate) const DATE_SPANS: [i64; 2] = [86_400_000, 367 * 86_400_000];

/// The width class of a date row.
pub(crate) fn date_class(low: i64, high: i64) -> i64 {
    DATE_SPANS
        .iter()
        .position(|span| high.saturating_sub(low) <= *span)
        .unwrap_or(DATE_SPANS.len()) as i64
}

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

pub(crate) fn run(tx: &mut Tx, req: &SearchRequest) -> Result<SearchPage, StoreError> {
    run_filtered(tx, req, None)
}

/// The query plan the engine picks for a search's page query (for `bench/`).
pub(crate) fn explain(tx: &mut Tx, req: &SearchRequest) -> Result<Vec<String>, StoreError> {
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

/// One top-level condition of a search.
enum Cond<'a> {
    Clause(&'a Clause),
    /// Several one-value date conditions on a single-valued parameter (`birthdate=ge…&
    /// birthdate=lt…`): every resource has at most one row for it, so they are tested on the
    /// same row, which turns two half-open ranges into one bounded range.
    Dates {
        param: &'a str,
        values: Vec<(Prefix, i64, i64)>,
    },
}

impl Cond<'_> {
    /// Whether the condition is a positive test on one index table (it can drive the query).
    fn drives(&self) -> bool {
        match self {
            Cond::Dates { .. } => true,
            Cond::Clause(c) => {
                c.column == Column::Index
                    && c.chain.is_none()
                    && c.has.is_none()
                    && !matches!(c.modifier, Modifier::Not | Modifier::Missing(_))
            }
        }
    }
}

fn conditions(req: &SearchRequest) -> Vec<Cond<'_>> {
    let registry = fhir::search::registry();
    let mergeable = |c: &Clause| {
        c.column == Column::Index
            && c.kind == ParamType::Date
            && c.chain.is_none()
            && c.has.is_none()
            && c.modifier == Modifier::None
            && c.values.len() == 1
            && matches!(c.values[0], SearchValue::Date { .. })
            && registry
                .param(&req.resource_type, &c.param)
                .is_some_and(|p| p.single_valued)
    };
    let mut out: Vec<Cond> = Vec::new();
    for clause in &req.clauses {
        let SearchValue::Date { prefix, range } = clause
            .values
            .first()
            .unwrap_or(&SearchValue::Missing(false))
        else {
            out.push(Cond::Clause(clause));
            continue;
        };
        if !mergeable(clause) {
            out.push(Cond::Clause(clause));
            continue;
        }
        let value = (*prefix, range.low, range.high);
        let earlier = out.iter_mut().position(|c| match c {
            Cond::Dates { param, .. } => *param == clause.param,
            Cond::Clause(c) => mergeable(c) && c.param == clause.param,
        });
        match earlier {
            Some(i) => match &mut out[i] {
                Cond::Dates { values, .. } => values.push(value),
                Cond::Clause(first) => {
                    let SearchValue::Date { prefix, range } = &first.values[0] else {
                        unreachable!("mergeable clauses hold one date")
                    };
                    out[i] = Cond::Dates {
                        param: &clause.param,
                        values: vec![(*prefix, range.low, range.high), value],
                    };
                }
            },
            None => out.push(Cond::Clause(clause)),
        }
    }
    out
}

/// How the conditions are put together: which one is collected first (the driver, tested
/// with `IN`; the others are tested per resource with `EXISTS`), or whether the page is found
/// by walking the type's resources in id order.
struct Plan {
    driver: Option<usize>,
    scan: bool,
}

/// Chooses the driver by counting (up to a limit) the index rows each condition matches.
fn plan(tx: &mut Tx, req: &SearchRequest, conds: &[Cond]) -> Result<Plan, StoreError> {
    let candidates: Vec<usize> = (0..conds.len()).filter(|&i| conds[i].drives()).collect();
    // `_id`, chains and `_has` are selective in practice and tested with IN: they drive
    let others_drive = conds.iter().any(|c| match c {
        Cond::Clause(c) => {
            (c.column == Column::Id
                && c.modifier != Modifier::Not
                && !matches!(c.modifier, Modifier::Missing(_)))
                || c.chain.is_some()
                || c.has.is_some()
        }
        Cond::Dates { .. } => false,
    });
    // PostgreSQL keeps per-value statistics and plans the semi-joins itself
    if candidates.is_empty() || others_drive || tx.dialect() == crate::db::Dialect::Postgres {
        return Ok(Plan {
            driver: None,
            scan: false,
        });
    }
    let rid_order = req.sort.is_empty()
        && !conds.iter().any(|c| matches!(c, Cond::Clause(c) if c.values.iter().any(|v| matches!(v, SearchValue::Near { .. }))));
    if candidates.len() == 1 && !rid_order {
        return Ok(Plan {
            driver: Some(candidates[0]),
            scan: false,
        });
    }
    // count each condition's index rows, up to a cap that falls to the smallest count so far
    // (a condition matching more is not the driver); a very selective one ends the counting
    let mut counts: Vec<(usize, i64)> = Vec::new();
    let mut cap = PROBE_CAP;
    for &i in &candidates {
        let mut q = Sql::default();
        q.push("SELECT COUNT(*) FROM (");
        index_select(&mut q, &req.resource_type, &conds[i]);
        q.push(" LIMIT ");
        q.bind(cap + 1);
        q.push(") p");
        let rows = tx.conn().query(&q.text, &q.params)?;
        let n = rows
            .first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64)
            .unwrap_or(0);
        counts.push((i, n));
        if n <= CERTAINLY_SELECTIVE {
            break;
        }
        cap = cap.min(n);
    }
    let (driver, c_min) = counts
        .iter()
        .copied()
        .min_by_key(|(_, n)| *n)
        .expect("at least one candidate");
    if !rid_order {
        return Ok(Plan {
            driver: Some(driver),
            scan: false,
        });
    }
    if c_min > PROBE_CAP {
        // every condition is common: walk the type (a bounded window first, see `page_rows`)
        return Ok(Plan {
            driver: Some(driver),
            scan: true,
        });
    }
    let n = type_count(tx, &req.resource_type)?.max(1) as f64;
    let page = (req.count + 1) as f64;
    let density = |(_, c): &(usize, i64)| (*c as f64).min(n) / n;
    let rest: f64 = counts
        .iter()
        .filter(|(i, _)| *i != driver)
        .map(density)
        .product();
    let all = rest * density(&(driver, c_min));
    let conditions = conds.len() as f64;
    let driver_cost = COLLECT_COST * c_min as f64
        + TEST_COST * conditions * (c_min as f64).min(page / rest.max(f64::MIN_POSITIVE));
    let scan_cost = TEST_COST * (1.0 + conditions) * n.min(page / all.max(f64::MIN_POSITIVE));
    Ok(Plan {
        driver: Some(driver),
        scan: scan_cost < driver_cost,
    })
}

/// How many resources of a type exist (for the planner), counted at most every 30 s per
/// connection.
fn type_count(tx: &mut Tx, rtype: &str) -> Result<i64, StoreError> {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(30);
    if let Some(cache) = tx.conn().planner_cache()
        && let Some((at, n)) = cache.get(rtype)
        && at.elapsed() < FRESH
    {
        return Ok(*n);
    }
    let hint = if tx.dialect() == crate::db::Dialect::Sqlite {
        " INDEXED BY resources_type_rid"
    } else {
        ""
    };
    let rows = tx.conn().query(
        &format!("SELECT COUNT(*) FROM resources{hint} WHERE rtype = ? AND deleted = 0"),
        &[rtype.into()],
    )?;
    let n = rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .unwrap_or(0);
    if let Some(cache) = tx.conn().planner_cache() {
        cache.insert(rtype.to_string(), (std::time::Instant::now(), n));
    }
    Ok(n)
}

/// `SELECT rid FROM {table} WHERE rtype = ? AND param = ? AND (…)` for a positive index
/// condition. A date condition becomes one range per width class (`UNION ALL`), each served
/// by the covering index alone.
fn index_select(out: &mut Sql, rtype: &str, cond: &Cond) {
    let (t, param) = match cond {
        Cond::Dates { param, .. } => ("idx_date", *param),
        Cond::Clause(c) => (table(c.kind), c.param.as_str()),
    };
    let head = |out: &mut Sql| {
        out.push(&format!("SELECT rid FROM {t} WHERE rtype = "));
        out.bind(rtype);
        out.push(" AND param = ");
        out.bind(param);
    };
    let dates: Option<Vec<(Prefix, i64, i64)>> = match cond {
        Cond::Dates { values, .. } => Some(values.clone()),
        Cond::Clause(c)
            if c.kind == ParamType::Date
                && c.modifier == Modifier::None
                && c.chain.is_none()
                && c.has.is_none()
                && c.values.len() == 1 =>
        {
            match &c.values[0] {
                SearchValue::Date { prefix, range } => Some(vec![(*prefix, range.low, range.high)]),
                _ => None,
            }
        }
        _ => None,
    };
    let bounds = dates.as_ref().map(|values| {
        values.iter().fold(DateBounds::default(), |b, (p, sl, sh)| {
            b.and(DateBounds::implied(*p, *sl, *sh))
        })
    });
    match (dates, bounds) {
        (Some(values), Some(bounds)) if !bounds.is_empty() => {
            for (n, (class, terms)) in bounds.class_ranges().into_iter().enumerate() {
                if n > 0 {
                    out.push(" UNION ALL ");
                }
                head(out);
                out.push(&format!(" AND wide = {class}"));
                for (op, v) in terms {
                    out.push(op);
                    out.bind(v);
                }
                for (prefix, sl, sh) in &values {
                    out.push(" AND ");
                    date_predicate(*prefix, *sl, *sh, "low", "high", out);
                }
            }
        }
        _ => {
            head(out);
            index_body(out, cond);
        }
    }
}

/// The value test of an index condition (` AND (…)`), on the index table's bare columns.
fn index_body(out: &mut Sql, cond: &Cond) {
    match cond {
        Cond::Dates { values, .. } => {
            let mut bounds = DateBounds::default();
            for (prefix, sl, sh) in values {
                out.push(" AND ");
                date_predicate(*prefix, *sl, *sh, "low", "high", out);
                bounds = bounds.and(DateBounds::implied(*prefix, *sl, *sh));
            }
            bounds.sql(out);
        }
        Cond::Clause(clause) => {
            if !matches!(clause.modifier, Modifier::Missing(_)) {
                key_prefilter(out, &clause.values);
                out.push(" AND (");
                for (i, v) in clause.values.iter().enumerate() {
                    if i > 0 {
                        out.push(" OR ");
                    }
                    out.push("(");
                    value_predicate(&clause.modifier, v, out);
                    out.push(")");
                }
                out.push(")");
            }
        }
    }
}

/// For several values that each fix the lookup index's key column (a reference's target id, a
/// token's code), ` AND key IN (…)`: implied by the OR of the values, and what lets the engine
/// seek the index once per value instead of reading every row of the parameter.
fn key_prefilter(out: &mut Sql, values: &[SearchValue]) {
    if values.len() < 2 {
        return;
    }
    let keys: Option<(&str, Vec<&str>)> =
        values
            .iter()
            .try_fold(("", Vec::new()), |(col, mut keys), v| {
                let (c, k) = match v {
                    SearchValue::Reference { id, .. } => ("target_id", id.as_str()),
                    SearchValue::Token {
                        code: Some(code), ..
                    } => ("code", code.as_str()),
                    _ => return None,
                };
                if !col.is_empty() && col != c {
                    return None;
                }
                keys.push(k);
                Some((c, keys))
            });
    let Some((col, keys)) = keys else {
        return;
    };
    out.push(&format!(" AND {col} IN ("));
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(", ");
        }
        out.bind(k);
    }
    out.push(")");
}

/// How an index condition is tied to the resource row.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `r.rid IN (SELECT rid …)`: collected once.
    In,
    /// `EXISTS (SELECT 1 … WHERE rid = r.rid …)`: tested per resource.
    Exists,
}

/// A test on one index table for the resource row aliased `a`.
fn index_test(out: &mut Sql, rtype: &str, cond: &Cond, a: &str, negate: bool, mode: Mode) {
    let not = if negate { "NOT " } else { "" };
    match mode {
        Mode::In => {
            out.push(&format!("{a}.rid {not}IN ("));
            index_select(out, rtype, cond);
        }
        Mode::Exists => {
            let x = out.alias();
            let (t, param) = match cond {
                Cond::Dates { param, .. } => ("idx_date", *param),
                Cond::Clause(c) => (table(c.kind), c.param.as_str()),
            };
            // an equality on the whole lookup key reaches the row id at the end of the lookup
            // index in one seek; anything else looks at the resource's few rows by row id
            let keyed = match cond {
                Cond::Clause(c) if c.values.len() == 1 && c.modifier == Modifier::None => {
                    matches!(
                        (&c.values[0], c.kind),
                        (
                            SearchValue::Token {
                                code: Some(_),
                                system: SystemMatch::Is(_)
                            },
                            ParamType::Token
                        ) | (
                            SearchValue::Reference {
                                target_type: Some(_),
                                ..
                            },
                            ParamType::Reference
                        )
                    )
                }
                _ => false,
            };
            let hint = match (out.sqlite, keyed) {
                (false, _) => String::new(),
                (true, true) => format!(" INDEXED BY {t}_lookup"),
                (true, false) => format!(" INDEXED BY {t}_rid"),
            };
            out.push(&format!(
                "{not}EXISTS (SELECT 1 FROM {t} {x}{hint} WHERE {x}.rid = {a}.rid AND {x}.rtype = "
            ));
            out.bind(rtype);
            out.push(&format!(" AND {x}.param = "));
            out.bind(param);
            index_body(out, cond);
        }
    }
    out.push(")");
}

/// Resources of a type walked before a walk gives way to the driver plan.
const SCAN_WINDOW: i64 = 2000;

/// The page's rows (one more than `_count`, telling whether a next page exists) and the
/// cursor signature.
fn page_rows(
    tx: &mut Tx,
    req: &SearchRequest,
    conds: &[Cond],
    plan: &Plan,
    access: Option<&AccessFilter>,
) -> Result<(Vec<crate::db::Row>, String), StoreError> {
    let dialect = tx.dialect();
    if plan.scan
        && let Some(bound) = scan_window_end(tx, req)?
    {
        // walk a bounded window of the type first: when it holds a page, that is the page
        let (q, _, sig) = page_query(req, conds, plan, dialect, access, Some(bound))?;
        let rows = tx.conn().query(&q.text, &q.params)?;
        if rows.len() > req.count {
            return Ok((rows, sig));
        }
        // the conditions together are rarer than each alone: the driver collects them
        let driven = Plan {
            driver: plan.driver,
            scan: false,
        };
        let (q, _, sig) = page_query(req, conds, &driven, dialect, access, None)?;
        return Ok((tx.conn().query(&q.text, &q.params)?, sig));
    }
    let (q, _, sig) = page_query(req, conds, plan, dialect, access, None)?;
    Ok((tx.conn().query(&q.text, &q.params)?, sig))
}

/// The row id that ends a window of `SCAN_WINDOW` resources of the type after the cursor, or
/// `None` when fewer remain (walking all of them is then bounded anyway).
fn scan_window_end(tx: &mut Tx, req: &SearchRequest) -> Result<Option<i64>, StoreError> {
    let after = match &req.cursor {
        Some(c) => decode_cursor(c, "rid", 1)?
            .first()
            .and_then(SqlValue::as_i64)
            .unwrap_or(i64::MIN),
        None => i64::MIN,
    };
    let hint = if tx.dialect() == crate::db::Dialect::Sqlite {
        " INDEXED BY resources_type_rid"
    } else {
        ""
    };
    let rows = tx.conn().query(
        &format!(
            "SELECT rid FROM resources{hint} WHERE rtype = ? AND deleted = 0 AND rid > ? ORDER BY rid LIMIT 1 OFFSET ?"
        ),
        &[
            req.resource_type.as_str().into(),
            after.into(),
            (SCAN_WINDOW - 1).into(),
        ],
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64))
}

/// The conditions every row of the search satisfies (matches, total and pages share them):
/// the driver (if any) with `IN`, the other index conditions with `EXISTS`.
fn filter_sql(
    req: &SearchRequest,
    conds: &[Cond],
    driver: Option<usize>,
    dialect: crate::db::Dialect,
    access: Option<&AccessFilter>,
) -> Sql {
    let mut filter = Sql {
        sqlite: dialect == crate::db::Dialect::Sqlite,
        ..Default::default()
    };
    filter.push("r.rtype = ");
    filter.bind(req.resource_type.as_str());
    filter.push(" AND r.deleted = 0");
    let rtype = req.resource_type.as_str();
    // an index condition: (negated?) — chains, `_has`, `_id` and `_lastUpdated` are not
    let on_index = |cond: &Cond| match cond {
        Cond::Clause(c) if c.column == Column::Index && c.chain.is_none() && c.has.is_none() => {
            Some(negated(c))
        }
        Cond::Clause(_) => None,
        Cond::Dates { .. } => Some(false),
    };
    if let Some(d) = driver {
        // the driver's matches are tested against the other index conditions inside its
        // sub-select, on index rows alone, before any resource row is read
        filter.push(" AND r.rid IN (SELECT dv.rid FROM (");
        index_select(&mut filter, rtype, &conds[d]);
        filter.push(") dv");
        let mut first = true;
        for (i, cond) in conds.iter().enumerate() {
            if i == d {
                continue;
            }
            if let Some(negate) = on_index(cond) {
                filter.push(if first { " WHERE " } else { " AND " });
                first = false;
                index_test(&mut filter, rtype, cond, "dv", negate, Mode::Exists);
            }
        }
        filter.push(")");
    }
    for (i, cond) in conds.iter().enumerate() {
        if Some(i) == driver {
            continue;
        }
        match (on_index(cond), cond) {
            (Some(_), _) if driver.is_some() => {}
            (Some(negate), _) => {
                filter.push(" AND ");
                // SQLite tests them per resource (the driver or the walk finds the
                // resources); PostgreSQL gets semi-joins to plan as it sees fit
                let mode = if filter.sqlite {
                    Mode::Exists
                } else {
                    Mode::In
                };
                index_test(&mut filter, rtype, cond, "r", negate, mode);
            }
            (None, Cond::Clause(clause)) => {
                filter.push(" AND ");
                clause_sql(&mut filter, rtype, clause, "r", access);
            }
            (None, Cond::Dates { .. }) => unreachable!("dates are index conditions"),
        }
    }
    filter.access(access, "r");

    filter
}

/// Whether an index clause selects the resources that have no matching row.
fn negated(clause: &Clause) -> bool {
    match &clause.modifier {
        Modifier::Not => true,
        Modifier::Missing(_) => clause
            .values
            .iter()
            .all(|v| *v == SearchValue::Missing(true)),
        _ => false,
    }
}

/// The page query: the filter, the keyset condition of the cursor, the order and the limit.
fn page_query(
    req: &SearchRequest,
    conds: &[Cond],
    plan: &Plan,
    dialect: crate::db::Dialect,
    access: Option<&AccessFilter>,
    upper_rid: Option<i64>,
) -> Result<(Sql, Vec<Key>, String), StoreError> {
    let keys = sort_keys(req);
    let signature: String = keys
        .iter()
        .map(|k| format!("{}{}", if k.descending { "-" } else { "" }, k.name))
        .collect::<Vec<_>>()
        .join(",");
    let driver = if plan.scan { None } else { plan.driver };
    let filter = filter_sql(req, conds, driver, dialect, access);
    let mut q = Sql {
        aliases: filter.aliases,
        sqlite: filter.sqlite,
        ..Default::default()
    };
    q.push("SELECT r.rid, r.id, r.version, r.last_updated, r.body");
    for k in &keys {
        q.push(", ");
        k.expr(&mut q);
    }
    q.push(" FROM resources r ");
    if plan.scan && dialect == crate::db::Dialect::Sqlite {
        // walk the type's resources in id order and stop after a page
        q.push("INDEXED BY resources_type_rid ");
    }
    q.push("WHERE ");
    q.push(&filter.text);
    q.params.extend(filter.params.iter().cloned());
    if let Some(upper) = upper_rid {
        q.push(" AND r.rid <= ");
        q.bind(upper);
    }
    if let Some(cursor) = &req.cursor {
        let values = decode_cursor(cursor, &signature, keys.len())?;
        q.push(" AND (");
        for i in 0..keys.len() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push("(");
            for (j, key) in keys.iter().enumerate().take(i) {
                key.expr(&mut q);
                q.push(" = ");
                q.bind(values[j].clone());
                q.push(" AND ");
            }
            keys[i].expr(&mut q);
            q.push(if keys[i].descending { " < " } else { " > " });
            q.bind(values[i].clone());
            q.push(")");
        }
        q.push(")");
    }
    q.push(" ORDER BY ");
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        k.expr(&mut q);
        if k.descending {
            q.push(" DESC");
        }
    }
    q.push(" LIMIT ");
    q.bind((req.count + 1) as i64);

    Ok((q, keys, signature))
}

fn count(tx: &mut Tx, filter: &Sql) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", filter.text);
    let rows = tx.conn().query(&sql, &filter.params)?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .unwrap_or(0))
}

/// One ordering key and how to compute it for row `r`.
struct Key {
    name: String,
    descending: bool,
    kind: KeyKind,
}

enum KeyKind {
    Column(&'static str),
    /// A search parameter's value: table, column expression, parameter code, whether textual.
    Param {
        table: &'static str,
        column: &'static str,
        code: String,
        text: bool,
    },
    /// Squared planar distance (in degrees of latitude) from a point, for `near`.
    Distance {
        lat: f64,
        lng: f64,
        scale: f64,
    },
}

/// Missing values sort last, in both directions.
const TEXT_HIGH: &str = "\u{10FFFF}";
const NUM_HIGH: f64 = 1.0e300;

impl Key {
    fn expr(&self, q: &mut Sql) {
        match &self.kind {
            KeyKind::Column(c) => q.push(c),
            KeyKind::Param {
                table,
                column,
                code,
                text,
            } => {
                let agg = if self.descending { "MAX" } else { "MIN" };
                q.push(&format!(
                    "COALESCE((SELECT {agg}({column}) FROM {table} WHERE rid = r.rid AND param = "
                ));
                q.bind(code.as_str());
                q.push("), ");
                match (text, self.descending) {
                    (true, false) => q.bind(TEXT_HIGH),
                    (true, true) => q.bind(""),
                    (false, false) => q.bind(NUM_HIGH),
                    (false, true) => q.bind(-NUM_HIGH),
                }
                q.push(")");
            }
            KeyKind::Distance { lat, lng, scale } => {
                q.push("COALESCE((SELECT MIN((lat - ");
                q.bind(*lat);
                q.push(") * (lat - ");
                q.bind(*lat);
                q.push(") + ((lng - ");
                q.bind(*lng);
                q.push(") * ");
                q.bind(*scale);
                q.push(") * ((lng - ");
                q.bind(*lng);
                q.push(") * ");
                q.bind(*scale);
                q.push(")) FROM idx_geo WHERE rid = r.rid AND param = 'near'), ");
                q.bind(NUM_HIGH);
                q.push(")");
            }
        }
    }
}

fn param_key(code: &str, kind: ParamType, descending: bool) -> KeyKind {
    let (table, column, text) = match (kind, descending) {
        (ParamType::String, _) => ("idx_string", "norm", true),
        (ParamType::Token, _) => ("idx_token", "code", true),
        (ParamType::Reference, _) => ("idx_reference", "COALESCE(target_id, url)", true),
        (ParamType::Uri, _) => ("idx_uri", "value", true),
        (ParamType::Date, false) => ("idx_date", "low", false),
        (ParamType::Date, true) => ("idx_date", "high", false),
        (ParamType::Number, _) => ("idx_number", "value", false),
        _ => ("idx_quantity", "value", false),
    };
    KeyKind::Param {
        table,
        column,
        code: code.to_string(),
        text,
    }
}

fn sort_keys(req: &SearchRequest) -> Vec<Key> {
    let mut keys: Vec<Key> = req
        .sort
        .iter()
        .map(|s| match &s.column {
            SortColumn::Id => Key {
                name: "_id".into(),
                descending: s.descending,
                kind: KeyKind::Column("r.id"),
            },
            SortColumn::LastUpdated => Key {
                name: "_lastUpdated".into(),
                descending: s.descending,
                kind: KeyKind::Column("r.last_updated"),
            },
            SortColumn::Param { code, kind } => Key {
                name: code.clone(),
                descending: s.descending,
                kind: param_key(code, *kind, s.descending),
            },
        })
        .collect();
    if keys.is_empty() {
        // `near` orders by distance unless told otherwise
        let near = req
            .clauses
            .iter()
            .flat_map(|c| c.values.iter())
            .find_map(|v| match v {
                SearchValue::Near { lat, lng, .. } => Some((*lat, *lng)),
                _ => None,
            });
        if let Some((lat, lng)) = near {
            keys.push(Key {
                name: "near".into(),
                descending: false,
                kind: KeyKind::Distance {
                    lat,
                    lng,
                    scale: lat.to_radians().cos(),
                },
            });
        }
    }
    if !keys.iter().any(|k| k.name == "_id") {
        let descending = keys.last().map(|k| k.descending).unwrap_or(false);
        keys.push(Key {
            name: "rid".into(),
            descending,
            kind: KeyKind::Column("r.rid"),
        });
    }
    keys
}

fn encode_value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Int(i) => json!(["i", i]),
        SqlValue::Real(f) => json!(["f", f]),
        SqlValue::Text(s) => json!(["s", s]),
        SqlValue::Null => json!(["n"]),
    }
}

fn encode_cursor(signature: &str, keys: &[SqlValue]) -> String {
    let doc = json!({ "s": signature, "k": keys.iter().map(encode_value).collect::<Vec<_>>() });
    URL_SAFE_NO_PAD.encode(doc.to_string())
}

fn decode_cursor(cursor: &str, signature: &str, n: usize) -> Result<Vec<SqlValue>, StoreError> {
    let bad = |why: &str| StoreError::BadCursor(why.to_string());
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad("not a cursor this server issued"))?;
    let doc: Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor this server issued"))?;
    if doc.get("s").and_then(Value::as_str) != Some(signature) {
        return Err(bad("the cursor belongs to a search with a different _sort"));
    }
    let values = doc
        .get("k")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("malformed cursor"))?;
    if values.len() != n {
        return Err(bad("malformed cursor"));
    }
    values
        .iter()
        .map(|v| match (v.get(0).and_then(Value::as_str), v.get(1)) {
            (Some("i"), Some(n)) => n
                .as_i64()
                .or_else(|| n.to_string().parse().ok())
                .map(SqlValue::Int)
                .ok_or_else(|| bad("malformed cursor")),
            (Some("f"), Some(n)) => n
                .as_f64()
                .or_else(|| n.to_string().parse().ok())
                .map(SqlValue::Real)
                .ok_or_else(|| bad("malformed cursor")),
            (Some("s"), Some(Value::String(s))) => Ok(SqlValue::Text(s.clone())),
            (Some("n"), _) => Ok(SqlValue::Null),
            _ => Err(bad("malformed cursor")),
        })
        .collect()
}

fn table(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "idx_string",
        ParamType::Token => "idx_token",
        ParamType::Reference => "idx_reference",
        ParamType::Date => "idx_date",
        ParamType::Number => "idx_number",
        ParamType::Quantity => "idx_quantity",
        ParamType::Uri => "idx_uri",
        ParamType::Composite => "idx_composite",
        ParamType::Special => "idx_geo",
    }
}

/// A condition on the `resources` row aliased `a`, of type `rtype`.
fn clause_sql(out: &mut Sql, rtype: &str, clause: &Clause, a: &str, access: Option<&AccessFilter>) {
    if let Some(has) = &clause.has {
        let (i, b) = (out.alias(), out.alias());
        out.push(&format!(
            "{a}.id IN (SELECT {i}.target_id FROM idx_reference {i} WHERE {i}.rtype = "
        ));
        out.bind(has.source_type.as_str());
        out.push(&format!(" AND {i}.param = "));
        out.bind(has.reference_param.as_str());
        out.push(&format!(" AND {i}.target_type = "));
        out.bind(rtype);
        out.push(&format!(
            " AND {i}.rid IN (SELECT {b}.rid FROM resources {b} WHERE {b}.rtype = "
        ));
        out.bind(has.source_type.as_str());
        out.push(&format!(" AND {b}.deleted = 0 AND "));
        clause_sql(out, &has.source_type, &has.clause, &b, access);
        out.access(access, &b);
        out.push("))");
        return;
    }
    if let Some(chain) = &clause.chain {
        let i = out.alias();
        out.push(&format!(
            "{a}.rid IN (SELECT {i}.rid FROM idx_reference {i} WHERE {i}.rtype = "
        ));
        out.bind(rtype);
        out.push(&format!(" AND {i}.param = "));
        out.bind(clause.param.as_str());
        out.push(" AND (");
        for (n, (target, inner)) in chain.targets.iter().enumerate() {
            if n > 0 {
                out.push(" OR ");
            }
            let b = out.alias();
            out.push(&format!("({i}.target_type = "));
            out.bind(target.as_str());
            out.push(&format!(
                " AND {i}.target_id IN (SELECT {b}.id FROM resources {b} WHERE {b}.rtype = "
            ));
            out.bind(target.as_str());
            out.push(&format!(" AND {b}.deleted = 0 AND "));
            clause_sql(out, target, inner, &b, access);
            out.access(access, &b);
            out.push("))");
        }
        out.push("))");
        return;
    }
    match clause.column {
        Column::Id => {
            if let Modifier::Missing(_) = clause.modifier {
                // every resource has an id
                let missing = clause.values.contains(&SearchValue::Missing(true));
                out.push(if missing { "1 = 0" } else { "1 = 1" });
                return;
            }
            out.push(&format!(
                "{a}.id {}IN (",
                if clause.modifier == Modifier::Not {
                    "NOT "
                } else {
                    ""
                }
            ));
            for (i, v) in clause.values.iter().enumerate() {
                if i > 0 {
                    out.push(", ");
                }
                match v {
                    SearchValue::Id(id) => out.bind(id.as_str()),
                    SearchValue::Token { code: Some(c), .. } => out.bind(c.as_str()),
                    _ => out.bind(""),
                }
            }
            out.push(")");
        }
        Column::LastUpdated => {
            out.push("(");
            for (i, v) in clause.values.iter().enumerate() {
                if i > 0 {
                    out.push(" OR ");
                }
                let col = format!("{a}.last_updated");
                match v {
                    SearchValue::Date { prefix, range } => {
                        date_predicate(*prefix, range.low, range.high, &col, &col, out)
                    }
                    SearchValue::Missing(m) => out.push(if *m { "1 = 0" } else { "1 = 1" }),
                    _ => out.push("1 = 0"),
                }
            }
            out.push(")");
        }
        Column::Index => {
            index_test(
                out,
                rtype,
                &Cond::Clause(clause),
                a,
                negated(clause),
                Mode::In,
            );
        }
    }
}

/// The smallest string greater than every string starting with `prefix`.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn prefix_predicate(column: &str, prefix: &str, out: &mut Sql) {
    if prefix.is_empty() {
        out.push("1 = 1");
        return;
    }
    out.push(&format!("{column} >= "));
    out.bind(prefix);
    if let Some(upper) = prefix_upper_bound(prefix) {
        out.push(&format!(" AND {column} < "));
        out.bind(upper);
    }
}

fn like_contains(column: &str, needle: &str, out: &mut Sql) {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    out.push(&format!("{column} LIKE "));
    out.bind(format!("%{escaped}%"));
    out.push(" ESCAPE '\\'");
}

fn token_predicate(
    system_col: &str,
    code_col: &str,
    system: &SystemMatch,
    code: Option<&str>,
    out: &mut Sql,
) {
    let mut parts = 0;
    match system {
        SystemMatch::Any => {}
        SystemMatch::NoSystem => {
            out.push(&format!("{system_col} IS NULL"));
            parts += 1;
        }
        SystemMatch::Is(s) => {
            out.push(&format!("{system_col} = "));
            out.bind(s.as_str());
            parts += 1;
        }
    }
    if let Some(c) = code {
        if parts > 0 {
            out.push(" AND ");
        }
        out.push(&format!("{code_col} = "));
        out.bind(c);
        parts += 1;
    }
    if parts == 0 {
        out.push("1 = 1");
    }
}

fn value_predicate(modifier: &Modifier, v: &SearchValue, out: &mut Sql) {
    match v {
        SearchValue::String { norm, exact } => match modifier {
            Modifier::Exact => {
                // the stored `norm` is the normalised exact value: equality uses the index
                out.push("norm = ");
                out.bind(fhir::search::index::truncate(norm));
                out.push(" AND exact = ");
                out.bind(exact.as_str());
            }
            Modifier::Contains => like_contains("norm", norm, out),
            _ => prefix_predicate("norm", norm, out),
        },
        SearchValue::Token { system, code } => {
            token_predicate("system", "code", system, code.as_deref(), out)
        }
        SearchValue::Text(t) => like_contains("text", t, out),
        SearchValue::Reference { target_type, id } => {
            out.push("target_id = ");
            out.bind(id.as_str());
            if let Some(t) = target_type {
                out.push(" AND target_type = ");
                out.bind(t.as_str());
            }
        }
        SearchValue::ReferenceUrl(url) => {
            out.push("url = ");
            out.bind(url.as_str());
        }
        SearchValue::Date { prefix, range } => {
            date_predicate(*prefix, range.low, range.high, "low", "high", out);
            DateBounds::implied(*prefix, range.low, range.high).sql(out);
        }
        SearchValue::Number {
            prefix,
            low,
            high,
            value,
        } => number_predicate("value", *prefix, *low, *high, *value, out),
        SearchValue::Quantity {
            prefix,
            low,
            high,
            value,
            system,
            code,
        } => {
            number_predicate("value", *prefix, *low, *high, *value, out);
            if let Some(s) = system {
                out.push(" AND system = ");
                out.bind(s.as_str());
            }
            if let Some(c) = code {
                out.push(" AND code = ");
                out.bind(c.as_str());
            }
        }
        SearchValue::Uri(u) => match modifier {
            Modifier::Below => prefix_predicate("value", u, out),
            Modifier::Above => {
                out.push("value = substr(CAST(");
                out.bind(u.as_str());
                out.push(" AS TEXT), 1, length(value))");
            }
            _ => {
                out.push("value = ");
                out.bind(u.as_str());
            }
        },
        SearchValue::Id(id) => {
            out.push("code = ");
            out.bind(id.as_str());
        }
        SearchValue::Missing(_) => out.push("1 = 1"),
        SearchValue::Near {
            lat,
            lng,
            distance_km,
        } => {
            let dlat = distance_km / 111.32;
            let scale = lat.to_radians().cos().max(0.01);
            let dlng = dlat / scale;
            out.push("lat BETWEEN ");
            out.bind(lat - dlat);
            out.push(" AND ");
            out.bind(lat + dlat);
            out.push(" AND lng BETWEEN ");
            out.bind(lng - dlng);
            out.push(" AND ");
            out.bind(lng + dlng);
            out.push(" AND (lat - ");
            out.bind(*lat);
            out.push(") * (lat - ");
            out.bind(*lat);
            out.push(") + ((lng - ");
            out.bind(*lng);
            out.push(") * ");
            out.bind(scale);
            out.push(") * ((lng - ");
            out.bind(*lng);
            out.push(") * ");
            out.bind(scale);
            out.push(") <= ");
            out.bind(dlat * dlat);
        }
        SearchValue::Composite {
            system,
            code,
            second,
        } => {
            token_predicate("a_system", "a_code", system, Some(code), out);
            out.push(" AND ");
            match second.as_ref() {
                SearchValue::Token { system, code } => {
                    token_predicate("b_system", "b_code", system, code.as_deref(), out)
                }
                SearchValue::Quantity {
                    prefix,
                    low,
                    high,
                    value,
                    system,
                    code,
                } => {
                    number_predicate("b_num", *prefix, *low, *high, *value, out);
                    if let Some(s) = system {
                        out.push(" AND b_system = ");
                        out.bind(s.as_str());
                    }
                    if let Some(c) = code {
                        out.push(" AND b_code = ");
                        out.bind(c.as_str());
                    }
                }
                SearchValue::Date { prefix, range } => {
                    date_predicate(*prefix, range.low, range.high, "b_low", "b_high", out)
                }
                SearchValue::String { norm, .. } => prefix_predicate("b_text", norm, out),
                _ => out.push("1 = 0"),
            }
        }
    }
}

/// What a date condition implies about a matching row's `low` and `high` (inclusive bounds),
/// used to turn it into index ranges.
#[derive(Clone, Copy, Default)]
struct DateBounds {
    low_min: Option<i64>,
    low_max: Option<i64>,
    high_min: Option<i64>,
    high_max: Option<i64>,
}

impl DateBounds {
    /// Implied by [`date_predicate`]'s test (rows always have `low <= high`).
    fn implied(prefix: Prefix, sl: i64, sh: i64) -> DateBounds {
        let mut b = DateBounds::default();
        match prefix {
            Prefix::Eq => {
                b.low_min = Some(sl);
                b.high_max = Some(sh);
            }
            Prefix::Ne => {}
            Prefix::Gt => b.high_min = Some(sh.saturating_add(1)),
            Prefix::Lt => b.low_max = Some(sl.saturating_sub(1)),
            // high > sh, or contained (low >= sl): either way high >= sl
            Prefix::Ge => b.high_min = Some(sl),
            // low < sl, or contained (high <= sh): either way low <= sh
            Prefix::Le => b.low_max = Some(sh),
            Prefix::Sa => b.low_min = Some(sh.saturating_add(1)),
            Prefix::Eb => b.high_max = Some(sl.saturating_sub(1)),
        }
        b
    }

    fn and(self, o: DateBounds) -> DateBounds {
        let max = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        let min = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        DateBounds {
            low_min: max(self.low_min, o.low_min),
            low_max: min(self.low_max, o.low_max),
            high_min: max(self.high_min, o.high_min),
            high_max: min(self.high_max, o.high_max),
        }
    }

    fn is_empty(&self) -> bool {
        self.low_min.is_none()
            && self.low_max.is_none()
            && self.high_min.is_none()
            && self.high_max.is_none()
    }

    /// Per width class, the index range a matching row of that class lies in: for a class of
    /// bounded width a bound on `high` bounds `low` too; the last class is bounded by both
    /// ends as given.
    fn class_ranges(&self) -> Vec<(usize, Vec<(&'static str, i64)>)> {
        let narrow_max = match (self.low_max, self.high_max) {
            (Some(l), Some(h)) => Some(l.min(h)),
            (l, h) => l.or(h),
        };
        let mut out = Vec::new();
        for (class, span) in DATE_SPANS.iter().enumerate() {
            let narrow_min = match (self.low_min, self.high_min) {
                (Some(l), Some(h)) => Some(l.max(h.saturating_sub(*span))),
                (l, h) => l.or(h.map(|h| h.saturating_sub(*span))),
            };
            let mut terms = Vec::new();
            terms.extend(narrow_min.map(|v| (" AND low >= ", v)));
            terms.extend(narrow_max.map(|v| (" AND low <= ", v)));
            out.push((class, terms));
        }
        let mut terms = Vec::new();
        terms.extend(self.low_min.map(|v| (" AND low >= ", v)));
        terms.extend(self.low_max.map(|v| (" AND low <= ", v)));
        terms.extend(self.high_min.map(|v| (" AND high >= ", v)));
        terms.extend(self.high_max.map(|v| (" AND high <= ", v)));
        out.push((DATE_SPANS.len(), terms));
        out
    }

    /// ` AND ((wide = 0 AND low BETWEEN …) OR (wide = 1 AND low BETWEEN …) OR (wide = 2 AND …))`
    /// (see [`DateBounds::class_ranges`]); nothing when unbounded.
    fn sql(&self, out: &mut Sql) {
        if self.is_empty() {
            return;
        }
        out.push(" AND (");
        for (n, (class, terms)) in self.class_ranges().into_iter().enumerate() {
            if n > 0 {
                out.push(" OR ");
            }
            out.push(&format!("(wide = {class}"));
            for (op, v) in terms {
                out.push(op);
                out.bind(v);
            }
            out.push(")");
        }
        out.push(")");
    }
}

/// Range semantics of the FHIR search page: the target [low, high] against the search [sl, sh].
fn date_predicate(prefix: Prefix, sl: i64, sh: i64, low: &str, high: &str, out: &mut Sql) {
    let contained = |out: &mut Sql| {
        out.push(&format!("({low} >= "));
        out.bind(sl);
        out.push(&format!(" AND {high} <= "));
        out.bind(sh);
        out.push(")");
    };
    match prefix {
        Prefix::Eq => contained(out),
        Prefix::Ne => {
            out.push("NOT ");
            contained(out);
        }
        Prefix::Gt => {
            out.push(&format!("{high} > "));
            out.bind(sh);
        }
        Prefix::Lt => {
            out.push(&format!("{low} < "));
            out.bind(sl);
        }
        Prefix::Ge => {
            out.push(&format!("({high} > "));
            out.bind(sh);
            out.push(" OR ");
            contained(out);
            out.push(")");
        }
        Prefix::Le => {
            out.push(&format!("({low} < "));
            out.bind(sl);
            out.push(" OR ");
            contained(out);
            out.push(")");
        }
        Prefix::Sa => {
            out.push(&format!("{low} > "));
            out.bind(sh);
        }
        Prefix::Eb => {
            out.push(&format!("{high} < "));
            out.bind(sl);
        }
    }
}

fn number_predicate(col: &str, prefix: Prefix, low: f64, high: f64, value: f64, out: &mut Sql) {
    match prefix {
        Prefix::Eq => {
            out.push(&format!("{col} >= "));
            out.bind(low);
            out.push(&format!(" AND {col} < "));
            out.bind(high);
        }
        Prefix::Ne => {
            out.push(&format!("({col} < "));
            out.bind(low);
            out.push(&format!(" OR {col} >= "));
            out.bind(high);
            out.push(")");
        }
        Prefix::Gt | Prefix::Sa => {
            out.push(&format!("{col} > "));
            out.bind(value);
        }
        Prefix::Lt | Prefix::Eb => {
            out.push(&format!("{col} < "));
            out.bind(value);
        }
        Prefix::Ge => {
            out.push(&format!("{col} >= "));
            out.bind(value);
        }
        Prefix::Le => {
            out.push(&format!("{col} <= "));
            out.bind(value);
        }
    }
}

fn stored_rows(rows: Vec<Vec<SqlValue>>) -> Vec<Stored> {
    rows.into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            Stored {
                rid: it.next().and_then(|v| v.as_i64()).unwrap_or_default(),
                resource_type: it
                    .next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default(),
                id: it
                    .next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default(),
                version: it.next().and_then(|v| v.as_i64()).unwrap_or_default(),
                last_updated: it.next().and_then(|v| v.as_i64()).unwrap_or_default(),
                deleted: false,
                body: it.next().and_then(SqlValue::into_string),
            }
        })
        .collect()
}

/// `_include` and `_revinclude` for a page (then once more for `:iterate`), under the same
/// access filter as the matches.
fn includes(
    tx: &mut Tx,
    req: &SearchRequest,
    matches: &[Stored],
    access: Option<&AccessFilter>,
) -> Result<Vec<Stored>, StoreError> {
    if matches.is_empty() || (req.includes.is_empty() && req.revincludes.is_empty()) {
        return Ok(Vec::new());
    }
    let mut seen: std::collections::HashSet<i64> = matches.iter().map(|m| m.rid).collect();
    let mut out: Vec<Stored> = Vec::new();
    let mut round = |tx: &mut Tx,
                     from: &[Stored],
                     iterate: bool,
                     out: &mut Vec<Stored>|
     -> Result<(), StoreError> {
        let mut found = Vec::new();
        for inc in req
            .includes
            .iter()
            .filter(|i| i.iterate == iterate || !iterate)
        {
            found.extend(include_targets(tx, inc, from, access)?);
        }
        for inc in req
            .revincludes
            .iter()
            .filter(|i| i.iterate == iterate || !iterate)
        {
            found.extend(revinclude_sources(tx, inc, from, access)?);
        }
        for s in found {
            if out.len() >= MAX_INCLUDED {
                break;
            }
            if seen.insert(s.rid) {
                out.push(s);
            }
        }
        Ok(())
    };
    round(tx, matches, false, &mut out)?;
    if req
        .includes
        .iter()
        .chain(&req.revincludes)
        .any(|i| i.iterate)
        && !out.is_empty()
    {
        let first: Vec<Stored> = out.clone();
        round(tx, &first, true, &mut out)?;
    }
    Ok(out)
}

fn include_targets(
    tx: &mut Tx,
    inc: &Include,
    from: &[Stored],
    access: Option<&AccessFilter>,
) -> Result<Vec<Stored>, StoreError> {
    let rids: Vec<i64> = from
        .iter()
        .filter(|s| s.resource_type == inc.source_type)
        .map(|s| s.rid)
        .collect();
    if rids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Sql::default();
    q.push("SELECT DISTINCT t.rid, t.rtype, t.id, t.version, t.last_updated, t.body FROM idx_reference i JOIN resources t ON t.rtype = i.target_type AND t.id = i.target_id WHERE i.rid IN (");
    for (n, rid) in rids.iter().enumerate() {
        if n > 0 {
            q.push(", ");
        }
        q.bind(*rid);
    }
    q.push(")");
    if let Some(p) = &inc.param {
        q.push(" AND i.param = ");
        q.bind(p.as_str());
    }
    if let Some(t) = &inc.target_type {
        q.push(" AND i.target_type = ");
        q.bind(t.as_str());
    }
    q.push(" AND t.deleted = 0");
    q.access(access, "t");
    q.push(" ORDER BY t.rid LIMIT ");
    q.bind(MAX_INCLUDED as i64);
    Ok(stored_rows(tx.conn().query(&q.text, &q.params)?))
}

fn revinclude_sources(
    tx: &mut Tx,
    inc: &Include,
    from: &[Stored],
    access: Option<&AccessFilter>,
) -> Result<Vec<Stored>, StoreError> {
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> =
        std::collections::BTreeMap::new();
    for s in from {
        if inc
            .target_type
            .as_deref()
            .is_none_or(|t| t == s.resource_type)
        {
            by_type
                .entry(s.resource_type.as_str())
                .or_default()
                .push(s.id.as_str());
        }
    }
    let mut out = Vec::new();
    for (target_type, ids) in by_type {
        let mut q = Sql::default();
        q.push("SELECT t.rid, t.rtype, t.id, t.version, t.last_updated, t.body FROM resources t WHERE t.rtype = ");
        q.bind(inc.source_type.as_str());
        q.push(" AND t.deleted = 0 AND t.rid IN (SELECT rid FROM idx_reference WHERE rtype = ");
        q.bind(inc.source_type.as_str());
        if let Some(p) = &inc.param {
            q.push(" AND param = ");
            q.bind(p.as_str());
        } else {
            // every reference parameter of the source type, so the lookup index serves `*`
            q.push(" AND param IN (");
            let params = fhir::search::registry()
                .params(&inc.source_type)
                .filter(|p| p.kind == ParamType::Reference);
            for (n, p) in params.enumerate() {
                if n > 0 {
                    q.push(", ");
                }
                q.bind(p.code.as_str());
            }
            q.push(")");
        }
        q.push(" AND target_type = ");
        q.bind(target_type);
        q.push(" AND target_id IN (");
        for (n, id) in ids.iter().enumerate() {
            if n > 0 {
                q.push(", ");
            }
            q.bind(*id);
        }
        q.push("))");
        q.access(access, "t");
        q.push(" ORDER BY t.rid LIMIT ");
        q.bind(MAX_INCLUDED as i64);
        out.extend(stored_rows(tx.conn().query(&q.text, &q.params)?));
    }
    Ok(out)
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
