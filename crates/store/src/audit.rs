//! The audit trail: AuditEvent resources stored like any other (so `AuditEvent?entity=…`
//! searches work) and chained by hash — each link holds the SHA-256 of the previous link's hash
//! and the event's JSON — so that changing, removing or reordering a record is detectable by
//! [`verify`].

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::{Dialect, SqlValue};
use crate::error::StoreError;
use crate::tx::{Stored, Tx};

/// The hash before the first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A fixed advisory-lock key that serialises appends on PostgreSQL (SQLite has one writer).
const AUDIT_LOCK: i64 = 0x4155_4449_5443_4841; // "AUDITCHA"

pub fn link_hash(prev_hash: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tx<'_> {
    /// Stores an AuditEvent and links it into the chain, in the current transaction.
    pub fn append_audit(&mut self, event: &mut Value) -> Result<Stored, StoreError> {
        if self.dialect() == Dialect::Postgres {
            self.conn()
                .execute("SELECT pg_advisory_xact_lock(?)", &[AUDIT_LOCK.into()])?;
        }
        let id = self.new_id();
        let index = fhir::search::extract(fhir::search::registry(), event);
        let stored = self.create("AuditEvent", &id, event, &index)?;
        let rows = self.conn().query(
            "SELECT hash FROM audit_chain ORDER BY seq DESC LIMIT 1",
            &[],
        )?;
        let prev = rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .and_then(SqlValue::into_string)
            .unwrap_or_else(|| GENESIS.to_string());
        let hash = link_hash(&prev, stored.body.as_deref().unwrap_or(""));
        self.conn().execute(
            "INSERT INTO audit_chain (rid, prev_hash, hash) VALUES (?, ?, ?)",
            &[stored.rid.into(), prev.into(), hash.into()],
        )?;
        Ok(stored)
    }
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Links checked.
    pub checked: u64,
    /// The first broken link: its sequence number and what is wrong.
    pub first_broken: Option<(i64, String)>,
}

/// Recomputes the chain from the start and names the first broken link.
pub fn verify(tx: &mut Tx) -> Result<Verification, StoreError> {
    let mut checked = 0u64;
    let mut expected_prev = GENESIS.to_string();
    let mut after: i64 = i64::MIN;
    loop {
        let rows = tx.conn().query(
            "SELECT a.seq, a.prev_hash, a.hash, r.body, r.rtype, r.version, h.body
             FROM audit_chain a
             LEFT JOIN resources r ON r.rid = a.rid
             LEFT JOIN history h ON h.rid = a.rid AND h.version = 1
             WHERE a.seq > ? ORDER BY a.seq LIMIT 1000",
            &[after.into()],
        )?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let mut it = row.into_iter();
            let seq = it.next().and_then(|v| v.as_i64()).unwrap_or_default();
            let prev = it
                .next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default();
            let hash = it
                .next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default();
            let body = it.next().and_then(SqlValue::into_string);
            let rtype = it.next().and_then(SqlValue::into_string);
            let version = it.next().and_then(|v| v.as_i64());
            let history_body = it.next().and_then(SqlValue::into_string);
            after = seq;
            let broken = |why: String| {
                Ok(Verification {
                    checked,
                    first_broken: Some((seq, why)),
                })
            };
            if prev != expected_prev {
                return broken("its previous-hash does not match the link before it (a record was removed, inserted or reordered)".into());
            }
            let Some(body) = body else {
                return broken("the AuditEvent it points to is missing".into());
            };
            if rtype.as_deref() != Some("AuditEvent") || version != Some(1) {
                return broken("the AuditEvent it points to was changed through the API".into());
            }
            if link_hash(&prev, &body) != hash {
                return broken(
                    "the AuditEvent's content does not match its hash (the record was altered)"
                        .into(),
                );
            }
            if history_body.as_deref() != Some(body.as_str()) {
                return broken("the AuditEvent's history copy differs from the record".into());
            }
            expected_prev = hash;
            checked += 1;
        }
    }
    Ok(Verification {
        checked,
        first_broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::link_hash;

    #[test]
    fn hash_depends_on_both_parts() {
        let a = link_hash(super::GENESIS, "{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, link_hash(super::GENESIS, "{ }"));
        assert_ne!(a, link_hash(&a, "{}"));
    }
}
