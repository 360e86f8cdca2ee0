//! The identity register: every pair of Patients the linkage engine graded at least possible,
//! with its state — `linked` (automatically when certain, or by a reviewer), `pending` (waiting
//! for a person), `rejected` (a person said no; never proposed again) or `unlinked` (a link
//! undone). The Patients' `link` elements follow it; this table is what makes each decision
//! reversible and the queue listable.

use crate::Stored;
use crate::db::{Conn, SqlValue};
use crate::error::StoreError;
use crate::tx::Tx;

/// A pair in the register (`left_id` < `right_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityPair {
    pub id: String,
    pub left_id: String,
    pub right_id: String,
    pub score: f64,
    pub grade: String,
    pub state: String,
    pub created_ms: i64,
    pub decided_ms: Option<i64>,
    pub decided_by: Option<String>,
}

const COLUMNS: &str =
    "id, left_id, right_id, score, grade, state, created_ms, decided_ms, decided_by";

fn pair(row: Vec<SqlValue>) -> Option<IdentityPair> {
    let mut it = row.into_iter();
    Some(IdentityPair {
        id: it.next()?.into_string()?,
        left_id: it.next()?.into_string()?,
        right_id: it.next()?.into_string()?,
        score: match it.next()? {
            SqlValue::Real(f) => f,
            SqlValue::Int(i) => i as f64,
            _ => 0.0,
        },
        grade: it.next()?.into_string()?,
        state: it.next()?.into_string()?,
        created_ms: it.next()?.as_i64()?,
        decided_ms: it.next().and_then(|v| v.as_i64()),
        decided_by: it.next().and_then(SqlValue::into_string),
    })
}

fn ordered<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b { (a, b) } else { (b, a) }
}

/// (key, Patient) rows per INSERT statement.
const KEY_ROWS_PER_INSERT: usize = 200;

/// Inserts blocking-key rows with multi-row statements.
fn insert_keys(conn: &mut dyn Conn, rows: &[(&str, u64)]) -> Result<(), StoreError> {
    for chunk in rows.chunks(KEY_ROWS_PER_INSERT) {
        let marks = vec!["(?, ?)"; chunk.len()].join(", ");
        let mut params: Vec<SqlValue> = Vec::with_capacity(chunk.len() * 2);
        for (patient, key) in chunk {
            params.push((*key as i64).into());
            params.push((*patient).into());
        }
        conn.execute(
            &format!(
                "INSERT INTO identity_key (key, patient_id) VALUES {marks} ON CONFLICT DO NOTHING"
            ),
            &params,
        )?;
    }
    Ok(())
}

/// The (Patient, key) rows of some Patients' keys.
fn key_rows(all: &[(String, Vec<u64>)]) -> Vec<(&str, u64)> {
    all.iter()
        .flat_map(|(id, keys)| keys.iter().map(move |k| (id.as_str(), *k)))
        .collect()
}

/// The blocking keys of a stored Patient body, with the default name rules (the server
/// writes them again with its configured rules at its next whole-population linkage run).
pub fn patient_keys(id: &str, body: &serde_json::Value) -> Vec<u64> {
    let record = care::identity::patient::patient_record(id, body);
    care::identity::link::blocking_keys(&care::identity::prepare(&record))
}

/// Fills `identity_key` (just created) from the Patients already stored.
pub(crate) fn backfill_identity_keys(conn: &mut dyn Conn) -> Result<(), StoreError> {
    let rows = conn.query(
        "SELECT id, body FROM resources WHERE rtype = 'Patient' AND deleted = 0",
        &[],
    )?;
    let all: Vec<(String, Vec<u64>)> = rows
        .into_iter()
        .filter_map(|row| {
            let mut it = row.into_iter();
            let id = it.next().and_then(SqlValue::into_string)?;
            let body = it.next().and_then(SqlValue::into_string)?;
            let patient = serde_json::from_str::<serde_json::Value>(&body).ok()?;
            let keys = patient_keys(&id, &patient);
            Some((id, keys))
        })
        .collect();
    insert_keys(conn, &key_rows(&all))
}

impl Tx<'_> {
    /// Records a Patient's blocking keys (in place of the ones it had).
    pub fn identity_keys_set(&mut self, patient: &str, keys: &[u64]) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM identity_key WHERE patient_id = ?",
            &[patient.into()],
        )?;
        let rows: Vec<(&str, u64)> = keys.iter().map(|k| (patient, *k)).collect();
        insert_keys(self.conn(), &rows)
    }

    /// Replaces every Patient's blocking keys with `all` (a whole-population linkage run, which
    /// has every current Patient's keys; deleted Patients' keys go).
    pub fn identity_keys_reset(&mut self, all: &[(String, Vec<u64>)]) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM identity_key", &[])?;
        insert_keys(self.conn(), &key_rows(all))
    }

    /// The current Patients other than `patient` that share a block with it for one of `keys`,
    /// ordered by id. A key whose block holds more than `max_block` Patients is skipped (each
    /// block is read at most `max_block + 1` deep, so the cost is bounded however large it
    /// grew); deleted Patients are left out.
    pub fn identity_candidates(
        &mut self,
        patient: &str,
        keys: &[u64],
        max_block: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        let mut ids: Vec<String> = Vec::new();
        for key in keys {
            let block: Vec<String> = self
                .conn()
                .query(
                    "SELECT patient_id FROM identity_key WHERE key = ? LIMIT ?",
                    &[(*key as i64).into(), (max_block as i64 + 1).into()],
                )?
                .into_iter()
                .filter_map(|r| r.into_iter().next().and_then(SqlValue::into_string))
                .collect();
            if block.len() <= max_block {
                ids.extend(block.into_iter().filter(|p| p != patient));
            }
        }
        ids.sort();
        ids.dedup();
        // one point read each (a cached statement on the unique (rtype, id) index): an IN list
        // with bound values let SQLite's stable planner scan every Patient instead
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = self.current("Patient", &id, false)?
                && !s.deleted
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// The register's entry for a pair of Patients.
    pub fn identity_pair(&mut self, a: &str, b: &str) -> Result<Option<IdentityPair>, StoreError> {
        let (l, r) = ordered(a, b);
        Ok(self
            .conn()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM identity_review WHERE left_id = ? AND right_id = ?"
                ),
                &[l.into(), r.into()],
            )?
            .into_iter()
            .find_map(pair))
    }

    /// An entry by id.
    pub fn identity_pair_by_id(&mut self, id: &str) -> Result<Option<IdentityPair>, StoreError> {
        Ok(self
            .conn()
            .query(
                &format!("SELECT {COLUMNS} FROM identity_review WHERE id = ?"),
                &[id.into()],
            )?
            .into_iter()
            .find_map(pair))
    }

    /// Records a graded pair (a new entry), unless the pair is already in the register.
    pub fn identity_pair_add(
        &mut self,
        id: &str,
        a: &str,
        b: &str,
        score: f64,
        grade: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        let (l, r) = ordered(a, b);
        let now = self.now();
        let n = self.conn().execute(
            "INSERT INTO identity_review (id, left_id, right_id, score, grade, state, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (left_id, right_id) DO NOTHING",
            &[
                id.into(),
                l.into(),
                r.into(),
                score.into(),
                grade.into(),
                state.into(),
                now.into(),
            ],
        )?;
        Ok(n == 1)
    }

    /// Records a decision on an entry.
    pub fn identity_pair_decide(
        &mut self,
        id: &str,
        state: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.conn().execute(
            "UPDATE identity_review SET state = ?, decided_ms = ?, decided_by = ? WHERE id = ?",
            &[state.into(), now.into(), by.into(), id.into()],
        )?;
        Ok(())
    }

    /// Entries in a state, oldest first.
    pub fn identity_pairs(
        &mut self,
        state: &str,
        limit: usize,
    ) -> Result<Vec<IdentityPair>, StoreError> {
        self.identity_pairs_among(state, None, limit)
    }

    /// The pairs in a state whose two Patients both have a care relationship with one of
    /// `organizations` (all pairs when `None`), oldest first.
    pub fn identity_pairs_among(
        &mut self,
        state: &str,
        organizations: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<IdentityPair>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM identity_review WHERE state = ?");
        let mut params: Vec<SqlValue> = vec![state.into()];
        if let Some(orgs) = organizations {
            if orgs.is_empty() {
                return Ok(Vec::new());
            }
            let marks = vec!["?"; orgs.len()].join(", ");
            for side in ["left_id", "right_id"] {
                sql.push_str(&format!(
                    " AND {side} IN (SELECT patient_id FROM care_relationships WHERE organization_id IN ({marks}))"
                ));
                params.extend(orgs.iter().map(|o| SqlValue::Text(o.clone())));
            }
        }
        sql.push_str(" ORDER BY created_ms, id LIMIT ?");
        params.push((limit as i64).into());
        Ok(self
            .conn()
            .query(&sql, &params)?
            .into_iter()
            .filter_map(pair)
            .collect())
    }

    /// The Patients linked with one.
    pub fn identity_partners(&mut self, id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .conn()
            .query(
                // looked up by each side's own index; the state is checked here, not in SQL,
                // where `state = ?` made the planner walk every linked pair by the state index
                "SELECT left_id, right_id, state FROM identity_review WHERE left_id = ? \
                 UNION ALL \
                 SELECT left_id, right_id, state FROM identity_review WHERE right_id = ?",
                &[id.into(), id.into()],
            )?
            .into_iter()
            .filter_map(|row| {
                let mut it = row.into_iter();
                let (l, r) = (it.next()?.into_string()?, it.next()?.into_string()?);
                let linked = it.next()?.into_string()? == "linked";
                linked.then(|| if l == id { r } else { l })
            })
            .collect())
    }
}
