//! The audit trail, a store of its own beside the resources: on SQLite a separate database file
//! (`<name>-audit.db` next to the database), on PostgreSQL the `audit` schema. Its tables are
//! `audit.audit_event` (one row per AuditEvent: sequence number, id, time, the JSON, and the
//! chain link — the SHA-256 of the previous link's hash and the event's JSON) and
//! `audit.audit_ref`, the compact index the accounting needs: the codes (action, outcome, type,
//! subtype) as columns of the event's row, the references (entity, agent, altId) as rows —
//! a Patient's accounting is its references as entity or agent. No FHIR index rows, history or
//! compartments.
//!
//! One appender ([`appender`]) writes it, many events per commit, computing the chain in order
//! in memory. A read's event is handed to it directly and the answer waits until it is
//! committed. A write's event is first stored in the write's own transaction, in the resource
//! database's `audit_pending` table ([`Tx::append_audit`]), and sealed into the chain after
//! that transaction commits; at start-up anything pending is sealed before the server serves.
//! Reads of AuditEvents ([`search`]) go to the audit store with the caller's view.

pub(crate) mod appender;
pub mod search;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::Tx;

pub use crate::record::{AuditIndex, Prepared, index_of};
pub use appender::AuditLog;

/// The hash before the first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn link_hash(prev_hash: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Tx<'_> {
    /// Stores a write's AuditEvent in this transaction (in `audit_pending`, so it commits or
    /// rolls back with the write); once the transaction has committed, the store seals it into
    /// the chain. Returns the event's id.
    pub fn append_audit(&mut self, event: &mut Value) -> Result<String, StoreError> {
        if !self.is_write() {
            return Err(StoreError::Sql(
                "a write's AuditEvent is appended in a write transaction".into(),
            ));
        }
        let mut prepared = Prepared::new(std::mem::take(event), self.new_id(), self.now());
        let rows = self.conn().query(
            "INSERT INTO audit_pending (id, body) VALUES (?, ?) RETURNING pseq",
            &[prepared.id.clone().into(), prepared.body.clone().into()],
        )?;
        prepared.pending = rows
            .first()
            .and_then(|r| r.first())
            .and_then(|v| v.as_i64());
        let id = prepared.id.clone();
        self.push_audit(prepared);
        Ok(id)
    }
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Links checked.
    pub checked: u64,
    /// The first broken link: its sequence number and what is wrong.
    pub first_broken: Option<(i64, String)>,
    /// Writes' events committed with their writes but not yet sealed into the chain (the
    /// server seals them at start-up; none once it has started).
    pub pending: u64,
}

/// Recomputes the chain from the start and names the first broken link: a changed event (its
/// hash), a removed, inserted or reordered one (the previous-hash of the next link, and the
/// sequence numbers, which have no gaps), and a changed index (the rows derived from the
/// event).
pub fn verify(tx: &mut Tx) -> Result<Verification, StoreError> {
    tx.audit_readable()?;
    let mut checked = 0u64;
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq: Option<i64> = None;
    let mut after: i64 = i64::MIN;
    loop {
        let rows = tx.conn().query(
            "SELECT seq, id, prev_hash, hash, body, recorded, action, outcome, type, subtype FROM audit.audit_event WHERE seq > ? ORDER BY seq LIMIT 1000",
            &[after.into()],
        )?;
        if rows.is_empty() {
            break;
        }
        let first = rows[0][0].as_i64().unwrap_or(after);
        let last = rows[rows.len() - 1][0].as_i64().unwrap_or(after);
        let mut refs: std::collections::HashMap<i64, Vec<(String, String)>> = Default::default();
        for r in tx.conn().query(
            "SELECT seq, kind, value FROM audit.audit_ref WHERE seq >= ? AND seq <= ?",
            &[first.into(), last.into()],
        )? {
            let mut it = r.into_iter();
            if let (Some(seq), Some(kind), Some(value)) = (
                it.next().and_then(|v| v.as_i64()),
                it.next().and_then(SqlValue::into_string),
                it.next().and_then(SqlValue::into_string),
            ) {
                refs.entry(seq).or_default().push((kind, value));
            }
        }
        for row in rows {
            let mut it = row.into_iter();
            let seq = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
            let id = crate::db::next_text(&mut it);
            let prev = crate::db::next_text(&mut it);
            let hash = crate::db::next_text(&mut it);
            let body = crate::db::next_text(&mut it);
            let recorded = it.next().and_then(|v| v.as_i64());
            let columns: Vec<Option<String>> = it.map(SqlValue::into_string).collect();
            after = seq;
            let broken = |why: &str| {
                Ok(Verification {
                    checked,
                    first_broken: Some((seq, why.to_string())),
                    pending: 0,
                })
            };
            if expected_seq.is_some_and(|e| e != seq) {
                return broken(
                    "the link before it is missing (a record was removed: the sequence has a gap)",
                );
            }
            if prev != expected_prev {
                return broken(
                    "its previous-hash does not match the link before it (a record was removed, inserted or reordered)",
                );
            }
            if link_hash(&prev, &body) != hash {
                return broken(
                    "the AuditEvent's content does not match its hash (the record was altered)",
                );
            }
            let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            // the columns searches and reads use say what the record says
            let stamped = crate::record::instant_at(&event, &["/meta/lastUpdated"]);
            if event.get("id").and_then(Value::as_str) != Some(id.as_str()) || recorded != stamped {
                return broken(
                    "its id or time columns differ from the AuditEvent (the record was altered)",
                );
            }
            let index = index_of(&event);
            let mut want: Vec<(String, String)> = index
                .refs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let mut have = refs.remove(&seq).unwrap_or_default();
            want.sort();
            have.sort();
            let want_columns = vec![index.action, index.outcome, index.type_code, index.subtype];
            if want != have || columns != want_columns {
                return broken(
                    "its index rows differ from the AuditEvent (the accounting index was altered)",
                );
            }
            expected_prev = hash;
            expected_seq = Some(seq + 1);
            checked += 1;
        }
    }
    Ok(Verification {
        checked,
        first_broken: None,
        pending: pending_count(tx)?,
    })
}

fn pending_count(tx: &mut Tx) -> Result<u64, StoreError> {
    let rows = tx.conn().query(
        "SELECT COUNT(*) FROM audit_pending p WHERE NOT EXISTS (SELECT 1 FROM audit.audit_event e WHERE e.id = p.id)",
        &[],
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_i64())
        .unwrap_or(0) as u64)
}

/// The number of AuditEvents in the trail.
pub fn count(tx: &mut Tx) -> Result<i64, StoreError> {
    tx.audit_readable()?;
    let rows = tx
        .conn()
        .query("SELECT COUNT(*) FROM audit.audit_event", &[])?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_i64())
        .unwrap_or(0))
}

impl Tx<'_> {
    /// Fails when this transaction cannot read the audit store: on SQLite it is attached to
    /// the reader connections only (the writer's `BEGIN IMMEDIATE` would lock it against the
    /// appender), so AuditEvents are read by read-only units — on both engines alike.
    pub(crate) fn audit_readable(&self) -> Result<(), StoreError> {
        if self.is_write() {
            return Err(StoreError::Forbidden(
                "AuditEvents are read on their own (GET /fhir/AuditEvent…), not inside a write or a Bundle".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_depends_on_both_parts() {
        let a = link_hash(GENESIS, "{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, link_hash(GENESIS, "{ }"));
        assert_ne!(a, link_hash(&a, "{}"));
    }

    #[test]
    fn the_index_holds_what_the_accounting_asks_by() {
        let e = json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
            "action": "R", "outcome": "0", "recorded": "2026-01-02T03:04:05.006Z",
            "agent": [{"who": {"reference": "Patient/teen"}, "altId": "user:teen", "requestor": true},
                      {"who": {"reference": "Practitioner/p1"}}],
            "entity": [{"what": {"reference": "Patient/kid"}}, {"what": {"reference": "Condition/c1"}},
                       {"what": {"reference": "Patient/kid"}}]
        });
        let index = index_of(&e);
        let mut refs: Vec<(&str, &str)> =
            index.refs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        refs.sort();
        assert_eq!(
            refs,
            vec![
                ("agent", "Patient/teen"),
                ("agent", "Practitioner/p1"),
                ("altid", "user:teen"),
                ("entity", "Condition/c1"),
                ("entity", "Patient/kid"),
            ]
        );
        assert_eq!(index.patients(), vec!["teen", "kid"]);
        assert_eq!(
            (
                index.action.as_deref(),
                index.outcome.as_deref(),
                index.type_code.as_deref(),
                index.subtype.as_deref()
            ),
            (Some("R"), Some("0"), Some("110110"), Some("read"))
        );
        let p = Prepared::new(e, "abc".into(), 0);
        assert_eq!(p.recorded, 1_767_323_045_006);
        let body: Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(body["id"], "abc");
        assert_eq!(body["meta"]["versionId"], "1");
    }
}
