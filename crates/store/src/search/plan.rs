//! Planning a search: its top-level conditions, which one drives the query (rows counted up to a
//! cap, the rarest first) and per-type counts for the walk-or-collect choice.

use super::*;

/// One top-level condition of a search.
pub(super) enum Cond<'a> {
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

pub(super) fn conditions(req: &SearchRequest) -> Vec<Cond<'_>> {
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
pub(super) struct Plan {
    pub(super) driver: Option<usize>,
    pub(super) scan: bool,
}

/// Chooses the driver by counting (up to a limit) the index rows each condition matches.
pub(super) fn plan(tx: &mut Tx, req: &SearchRequest, conds: &[Cond]) -> Result<Plan, StoreError> {
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
pub(super) fn type_count(tx: &mut Tx, rtype: &str) -> Result<i64, StoreError> {
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
