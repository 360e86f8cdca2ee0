//! The register of HL7 v2 messages received (`hl7_message`): one row per message applied or
//! held, unique on (sender, MSH-10) — so a resent message is known and changes nothing — with
//! the message's text kept for replay, what it resolved to and what became of it. A refused
//! message (AE/AR) writes nothing here: resending it once the cause is fixed applies it.

use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::Tx;

/// A received message as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Message {
    pub id: String,
    /// MSH-3 and MSH-4 (`EPIC|CC`).
    pub sender: String,
    /// MSH-10.
    pub control_id: String,
    pub received_ms: i64,
    /// `A01` …
    pub event: String,
    /// `applied`, or `held` (waiting for the identity review of its patient), `released`
    /// (held, then applied).
    pub state: String,
    pub patient_id: Option<String>,
    pub encounter_id: Option<String>,
    /// What it did or why it waits, in words.
    pub detail: String,
    /// The message as received.
    pub raw: String,
}

const COLUMNS: &str =
    "id, sender, control_id, received_ms, event, state, patient_id, encounter_id, detail, raw";

fn row(r: Vec<SqlValue>) -> Option<Hl7Message> {
    let mut it = r.into_iter();
    let id = it.next()?.into_string()?;
    let sender = it.next()?.into_string()?;
    let control_id = it.next()?.into_string()?;
    let received_ms = it.next()?.as_i64()?;
    let event = it.next()?.into_string()?;
    let state = it.next()?.into_string()?;
    let patient_id = it.next().and_then(SqlValue::into_string);
    let encounter_id = it.next().and_then(SqlValue::into_string);
    let detail = it
        .next()
        .and_then(SqlValue::into_string)
        .unwrap_or_default();
    let raw = it
        .next()
        .and_then(SqlValue::into_string)
        .unwrap_or_default();
    Some(Hl7Message {
        id,
        sender,
        control_id,
        received_ms,
        event,
        state,
        patient_id,
        encounter_id,
        detail,
        raw,
    })
}

impl Tx<'_> {
    /// The message a sender sent under this control id, if it was registered.
    pub fn hl7_message(
        &mut self,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<Hl7Message>, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT {COLUMNS} FROM hl7_message WHERE sender = ? AND control_id = ?"),
            &[sender.into(), control_id.into()],
        )?;
        Ok(rows.into_iter().next().and_then(row))
    }

    /// A registered message by its id.
    pub fn hl7_message_by_id(&mut self, id: &str) -> Result<Option<Hl7Message>, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT {COLUMNS} FROM hl7_message WHERE id = ?"),
            &[id.into()],
        )?;
        Ok(rows.into_iter().next().and_then(row))
    }

    /// Registers a message.
    pub fn hl7_message_add(&mut self, m: &Hl7Message) -> Result<(), StoreError> {
        self.conn().execute(
            &format!("INSERT INTO hl7_message ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            &[
                m.id.as_str().into(),
                m.sender.as_str().into(),
                m.control_id.as_str().into(),
                m.received_ms.into(),
                m.event.as_str().into(),
                m.state.as_str().into(),
                m.patient_id.as_deref().into(),
                m.encounter_id.as_deref().into(),
                m.detail.as_str().into(),
                m.raw.as_str().into(),
            ],
        )?;
        Ok(())
    }

    /// Records what became of a registered message.
    pub fn hl7_message_settle(
        &mut self,
        id: &str,
        state: &str,
        patient_id: Option<&str>,
        encounter_id: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE hl7_message SET state = ?, patient_id = ?, encounter_id = ?, detail = ? WHERE id = ?",
            &[
                state.into(),
                patient_id.into(),
                encounter_id.into(),
                detail.into(),
                id.into(),
            ],
        )?;
        Ok(())
    }

    /// Registered messages, newest first: all, those in one state, or one patient's.
    pub fn hl7_messages(
        &mut self,
        state: Option<&str>,
        patient_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Hl7Message>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM hl7_message WHERE 1 = 1");
        let mut params: Vec<SqlValue> = Vec::new();
        if let Some(s) = state {
            sql.push_str(" AND state = ?");
            params.push(s.into());
        }
        if let Some(p) = patient_id {
            sql.push_str(" AND patient_id = ?");
            params.push(p.into());
        }
        sql.push_str(" ORDER BY received_ms DESC, id DESC LIMIT ?");
        params.push((limit as i64).into());
        Ok(self
            .conn()
            .query(&sql, &params)?
            .into_iter()
            .filter_map(row)
            .collect())
    }

    /// The held messages of these patients, oldest first (as they were sent).
    pub fn hl7_held_for(&mut self, patients: &[String]) -> Result<Vec<Hl7Message>, StoreError> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; patients.len()].join(", ");
        let params: Vec<SqlValue> = patients.iter().map(|p| p.as_str().into()).collect();
        Ok(self
            .conn()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM hl7_message WHERE state = 'held' AND patient_id IN ({marks}) ORDER BY received_ms, id"
                ),
                &params,
            )?
            .into_iter()
            .filter_map(row)
            .collect())
    }
}
