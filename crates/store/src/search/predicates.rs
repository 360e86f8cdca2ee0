//! The SQL of each condition: index sub-selects and per-resource tests on the typed index
//! tables, chains and `_has`, and the predicates of every parameter type and prefix.

use super::*;

/// `SELECT rid FROM {table} WHERE rtype = ? AND param = ? AND (…)` for a positive index
/// condition. A date condition becomes one range per width class (`UNION ALL`), each served
/// by the covering index alone.
pub(super) fn index_select(out: &mut Sql, rtype: &str, cond: &Cond) {
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
pub(super) fn index_body(out: &mut Sql, cond: &Cond) {
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
pub(super) fn key_prefilter(out: &mut Sql, values: &[SearchValue]) {
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
pub(super) enum Mode {
    /// `r.rid IN (SELECT rid …)`: collected once.
    In,
    /// `EXISTS (SELECT 1 … WHERE rid = r.rid …)`: tested per resource.
    Exists,
}

/// A test on one index table for the resource row aliased `a`.
pub(super) fn index_test(
    out: &mut Sql,
    rtype: &str,
    cond: &Cond,
    a: &str,
    negate: bool,
    mode: Mode,
) {
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

/// The conditions every row of the search satisfies (matches, total and pages share them):
/// the driver (if any) with `IN`, the other index conditions with `EXISTS`.
pub(super) fn filter_sql(
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
pub(super) fn negated(clause: &Clause) -> bool {
    match &clause.modifier {
        Modifier::Not => true,
        Modifier::Missing(_) => clause
            .values
            .iter()
            .all(|v| *v == SearchValue::Missing(true)),
        _ => false,
    }
}

pub(super) fn table(kind: ParamType) -> &'static str {
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
pub(super) fn clause_sql(
    out: &mut Sql,
    rtype: &str,
    clause: &Clause,
    a: &str,
    access: Option<&AccessFilter>,
) {
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
pub(super) fn prefix_upper_bound(prefix: &str) -> Option<String> {
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

pub(super) fn prefix_predicate(column: &str, prefix: &str, out: &mut Sql) {
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

pub(super) fn like_contains(column: &str, needle: &str, out: &mut Sql) {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    out.push(&format!("{column} LIKE "));
    out.bind(format!("%{escaped}%"));
    out.push(" ESCAPE '\\'");
}

pub(super) fn token_predicate(
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

pub(super) fn value_predicate(modifier: &Modifier, v: &SearchValue, out: &mut Sql) {
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
pub(super) struct DateBounds {
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
pub(super) fn date_predicate(
    prefix: Prefix,
    sl: i64,
    sh: i64,
    low: &str,
    high: &str,
    out: &mut Sql,
) {
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

pub(super) fn number_predicate(
    col: &str,
    prefix: Prefix,
    low: f64,
    high: f64,
    value: f64,
    out: &mut Sql,
) {
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
