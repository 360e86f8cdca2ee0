//! The PostgreSQL engine: synchronous `postgres` clients, each owned by one worker thread, with a
//! per-connection statement cache. `?` placeholders are rewritten to `$n` once per statement.

use std::collections::HashMap;
use std::error::Error as StdError;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use crate::db::{Conn, Dialect, Row, SqlValue};
use crate::error::StoreError;

pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    planner: crate::db::PlannerCache,
}

impl PgConn {
    pub fn connect(url: &str) -> Result<PgConn, StoreError> {
        let client = Client::connect(url, NoTls)
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            planner: Default::default(),
        })
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(&rewrite_placeholders(sql))?;
        if self.statements.len() > 1024 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }
}

/// `a = ? AND b = ?` → `a = $1 AND b = $2` (placeholders never appear in Continuum's literals).
pub fn rewrite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

impl ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(i) => match *ty {
                Type::INT2 => (*i as i16).to_sql(ty, out),
                Type::INT4 => (*i as i32).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            SqlValue::Real(r) => match *ty {
                Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                _ => r.to_sql(ty, out),
            },
            SqlValue::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn row_values(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(SqlValue::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| SqlValue::Int(v as i64)),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| SqlValue::Int(v as i64)),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(SqlValue::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map(|v| SqlValue::Real(v as f64)),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|b| SqlValue::Int(b as i64)),
            _ => row.try_get::<_, Option<String>>(i)?.map(SqlValue::Text),
        };
        out.push(v.unwrap_or(SqlValue::Null));
    }
    Ok(out)
}

impl Conn for PgConn {
    fn planner_cache(&mut self) -> Option<&mut crate::db::PlannerCache> {
        Some(&mut self.planner)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, StoreError> {
        let stmt = self.prepare(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.client.execute(&stmt, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.prepare(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(&stmt, &refs)?;
        rows.iter().map(row_values).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql)?;
        Ok(())
    }

    fn is_broken(&self) -> bool {
        self.client.is_closed()
    }

    fn set_budget(&mut self, budget: Option<crate::db::Budget>) -> Result<(), StoreError> {
        // for the rest of this transaction (LOCAL: it ends with the commit), a statement may
        // take what is left of the budget; the unit's own checks stop it between statements
        if let Some(b) = budget {
            let left = b
                .deadline
                .saturating_duration_since(std::time::Instant::now())
                .as_millis()
                .max(1);
            self.client
                .batch_execute(&format!("SET LOCAL statement_timeout = {left}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_placeholders;

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            rewrite_placeholders("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
    }
}
