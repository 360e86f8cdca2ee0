//! Paging: the page query with its keyset condition and order, the walk window, the count, the
//! sort keys and the cursors that carry them.

use super::*;

/// Resources of a type walked before a walk gives way to the driver plan.
pub(super) const SCAN_WINDOW: i64 = 2000;

/// The page's rows (one more than `_count`, telling whether a next page exists) and the
/// cursor signature.
pub(super) fn page_rows(
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
pub(super) fn scan_window_end(tx: &mut Tx, req: &SearchRequest) -> Result<Option<i64>, StoreError> {
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

/// The page query: the filter, the keyset condition of the cursor, the order and the limit.
pub(super) fn page_query(
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

pub(super) fn count(tx: &mut Tx, filter: &Sql) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", filter.text);
    let rows = tx.conn().query(&sql, &filter.params)?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .unwrap_or(0))
}

/// One ordering key and how to compute it for row `r`.
pub(super) struct Key {
    pub(super) name: String,
    pub(super) descending: bool,
    pub(super) kind: KeyKind,
}

pub(super) enum KeyKind {
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
pub(super) const TEXT_HIGH: &str = "\u{10FFFF}";
pub(super) const NUM_HIGH: f64 = 1.0e300;

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

pub(super) fn param_key(code: &str, kind: ParamType, descending: bool) -> KeyKind {
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

pub(super) fn sort_keys(req: &SearchRequest) -> Vec<Key> {
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

pub(super) fn encode_value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Int(i) => json!(["i", i]),
        SqlValue::Real(f) => json!(["f", f]),
        SqlValue::Text(s) => json!(["s", s]),
        SqlValue::Null => json!(["n"]),
    }
}

pub(super) fn encode_cursor(signature: &str, keys: &[SqlValue]) -> String {
    let doc = json!({ "s": signature, "k": keys.iter().map(encode_value).collect::<Vec<_>>() });
    URL_SAFE_NO_PAD.encode(doc.to_string())
}

pub(super) fn decode_cursor(
    cursor: &str,
    signature: &str,
    n: usize,
) -> Result<Vec<SqlValue>, StoreError> {
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
