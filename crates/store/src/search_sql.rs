//! The SQL builder for search: one parsed [`SearchRequest`] → one query over `resources` with a
//! sub-select per clause on the typed index tables, keyset paging, and an optional count.
//! Written once for both engines (`?` placeholders, byte-wise text comparison).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir::search::{
    Clause, Column, Modifier, ParamType, Prefix, SearchRequest, SearchValue, SortColumn, Summary,
    SystemMatch, TotalMode,
};
use serde_json::{Value, json};

use crate::access::AccessFilter;
use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::{SearchPage, Stored, Tx};

/// A WHERE clause under construction.
#[derive(Default)]
struct Sql {
    text: String,
    params: Vec<SqlValue>,
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, v: impl Into<SqlValue>) {
        self.text.push('?');
        self.params.push(v.into());
    }
}

pub(crate) fn run(tx: &mut Tx, req: &SearchRequest) -> Result<SearchPage, StoreError> {
    run_filtered(tx, req, None)
}

/// Runs a search with an access filter ANDed in, so matches, total and pages agree.
pub(crate) fn run_filtered(
    tx: &mut Tx,
    req: &SearchRequest,
    access: Option<&AccessFilter>,
) -> Result<SearchPage, StoreError> {
    let mut filter = Sql::default();
    filter.push("r.rtype = ");
    filter.bind(req.resource_type.as_str());
    filter.push(" AND r.deleted = 0");
    if let Some(a) = access {
        filter.push(" AND ");
        filter.push(&a.sql);
        filter.params.extend(a.params.iter().cloned());
    }
    for clause in &req.clauses {
        filter.push(" AND ");
        clause_sql(&req.resource_type, clause, &mut filter);
    }

    let want_total = match req.total {
        TotalMode::None => req.summary == Summary::Count,
        _ => true,
    };
    let total = if want_total {
        let sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", filter.text);
        let rows = tx.conn().query(&sql, &filter.params)?;
        rows.first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64)
    } else {
        None
    };
    if req.summary == Summary::Count || req.count == 0 {
        return Ok(SearchPage {
            matches: Vec::new(),
            next_cursor: None,
            total,
        });
    }

    let keys = sort_keys(req);
    let signature: String = keys
        .iter()
        .map(|k| format!("{}{}", if k.descending { "-" } else { "" }, k.name))
        .collect::<Vec<_>>()
        .join(",");
    let mut query = Sql {
        text: format!(
            "SELECT r.rid, r.id, r.version, r.last_updated, r.body FROM resources r WHERE {}",
            filter.text
        ),
        params: filter.params.clone(),
    };
    if let Some(cursor) = &req.cursor {
        let values = decode_cursor(cursor, &signature, keys.len())?;
        query.push(" AND (");
        for i in 0..keys.len() {
            if i > 0 {
                query.push(" OR ");
            }
            query.push("(");
            for (j, key) in keys.iter().enumerate().take(i) {
                query.push(&format!("{} = ", key.column));
                query.bind(values[j].clone());
                query.push(" AND ");
            }
            let op = if keys[i].descending { "<" } else { ">" };
            query.push(&format!("{} {op} ", keys[i].column));
            query.bind(values[i].clone());
            query.push(")");
        }
        query.push(")");
    }
    let order: Vec<String> = keys
        .iter()
        .map(|k| format!("{}{}", k.column, if k.descending { " DESC" } else { "" }))
        .collect();
    query.push(&format!(" ORDER BY {} LIMIT ", order.join(", ")));
    query.bind((req.count + 1) as i64);

    let mut rows = tx.conn().query(&query.text, &query.params)?;
    let more = rows.len() > req.count;
    rows.truncate(req.count);
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
        matches
            .last()
            .map(|last| encode_cursor(&signature, &keys, last))
    } else {
        None
    };
    Ok(SearchPage {
        matches,
        next_cursor,
        total,
    })
}

struct Key {
    name: &'static str,
    column: &'static str,
    descending: bool,
}

fn sort_keys(req: &SearchRequest) -> Vec<Key> {
    let mut keys: Vec<Key> = req
        .sort
        .iter()
        .map(|s| match s.column {
            SortColumn::Id => Key {
                name: "id",
                column: "r.id",
                descending: s.descending,
            },
            SortColumn::LastUpdated => Key {
                name: "lu",
                column: "r.last_updated",
                descending: s.descending,
            },
        })
        .collect();
    if !keys.iter().any(|k| k.name == "id") {
        let descending = keys.last().map(|k| k.descending).unwrap_or(false);
        keys.push(Key {
            name: "rid",
            column: "r.rid",
            descending,
        });
    }
    keys
}

fn encode_cursor(signature: &str, keys: &[Key], last: &Stored) -> String {
    let values: Vec<Value> = keys
        .iter()
        .map(|k| match k.name {
            "id" => json!(last.id),
            "lu" => json!(last.last_updated),
            _ => json!(last.rid),
        })
        .collect();
    let doc = json!({ "s": signature, "k": values });
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
        .map(|v| match v {
            Value::String(s) => Ok(SqlValue::Text(s.clone())),
            Value::Number(n) => n
                .to_string()
                .parse::<i64>()
                .map(SqlValue::Int)
                .map_err(|_| bad("malformed cursor")),
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
        ParamType::Composite | ParamType::Special => "idx_token",
    }
}

fn clause_sql(rtype: &str, clause: &Clause, out: &mut Sql) {
    match clause.column {
        Column::Id => {
            if let Modifier::Missing(_) = clause.modifier {
                // every resource has an id
                let missing = clause.values.contains(&SearchValue::Missing(true));
                out.push(if missing { "1 = 0" } else { "1 = 1" });
                return;
            }
            out.push(if clause.modifier == Modifier::Not {
                "r.id NOT IN ("
            } else {
                "r.id IN ("
            });
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
                match v {
                    SearchValue::Date { prefix, range } => date_predicate(
                        *prefix,
                        range.low,
                        range.high,
                        "r.last_updated",
                        "r.last_updated",
                        out,
                    ),
                    SearchValue::Missing(m) => out.push(if *m { "1 = 0" } else { "1 = 1" }),
                    _ => out.push("1 = 0"),
                }
            }
            out.push(")");
        }
        Column::Index => {
            let t = table(clause.kind);
            let negate = match &clause.modifier {
                Modifier::Not => true,
                Modifier::Missing(_) => clause
                    .values
                    .iter()
                    .all(|v| *v == SearchValue::Missing(true)),
                _ => false,
            };
            out.push(if negate {
                "r.rid NOT IN ("
            } else {
                "r.rid IN ("
            });
            out.push(&format!("SELECT rid FROM {t} WHERE rtype = "));
            out.bind(rtype);
            out.push(" AND param = ");
            out.bind(clause.param.as_str());
            if !matches!(clause.modifier, Modifier::Missing(_)) {
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
            out.push(")");
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

fn value_predicate(modifier: &Modifier, v: &SearchValue, out: &mut Sql) {
    match v {
        SearchValue::String { norm, exact } => match modifier {
            Modifier::Exact => {
                out.push("exact = ");
                out.bind(exact.as_str());
            }
            Modifier::Contains => like_contains("norm", norm, out),
            _ => prefix_predicate("norm", norm, out),
        },
        SearchValue::Token { system, code } => {
            let mut parts = 0;
            match system {
                SystemMatch::Any => {}
                SystemMatch::NoSystem => {
                    out.push("system IS NULL");
                    parts += 1;
                }
                SystemMatch::Is(s) => {
                    out.push("system = ");
                    out.bind(s.as_str());
                    parts += 1;
                }
            }
            if let Some(c) = code {
                if parts > 0 {
                    out.push(" AND ");
                }
                out.push("code = ");
                out.bind(c.as_str());
                parts += 1;
            }
            if parts == 0 {
                out.push("1 = 1");
            }
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
            date_predicate(*prefix, range.low, range.high, "low", "high", out)
        }
        SearchValue::Number {
            prefix,
            low,
            high,
            value,
        } => number_predicate(*prefix, *low, *high, *value, out),
        SearchValue::Quantity {
            prefix,
            low,
            high,
            value,
            system,
            code,
        } => {
            number_predicate(*prefix, *low, *high, *value, out);
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

fn number_predicate(prefix: Prefix, low: f64, high: f64, value: f64, out: &mut Sql) {
    match prefix {
        Prefix::Eq => {
            out.push("value >= ");
            out.bind(low);
            out.push(" AND value < ");
            out.bind(high);
        }
        Prefix::Ne => {
            out.push("(value < ");
            out.bind(low);
            out.push(" OR value >= ");
            out.bind(high);
            out.push(")");
        }
        Prefix::Gt | Prefix::Sa => {
            out.push("value > ");
            out.bind(value);
        }
        Prefix::Lt | Prefix::Eb => {
            out.push("value < ");
            out.bind(value);
        }
        Prefix::Ge => {
            out.push("value >= ");
            out.bind(value);
        }
        Prefix::Le => {
            out.push("value <= ");
            out.bind(value);
        }
    }
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
