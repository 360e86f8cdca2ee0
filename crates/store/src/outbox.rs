//! The booking side tables: video visit rooms (a room token finds its appointment) and the
//! notification outbox. A message is written in the transaction of the change it announces —
//! so it exists exactly when the change does — once per (event, recipient); the delivery
//! worker claims due messages under a lease (a crash mid-delivery leaves them to be claimed
//! again, never lost) and records each outcome.

use crate::db::{Dialect, SqlValue};
use crate::error::StoreError;
use crate::tx::Tx;

/// A message to write.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    /// The event it announces; with `recipient`, unique.
    pub event_key: String,
    /// `Patient/…`, `RelatedPerson/…`, or `Subscription/…` for a rest-hook notification.
    pub recipient: String,
    /// What it is about (`appointment-booked`, `subscription-notification`, …).
    pub kind: String,
    /// `message` (the configured transport) or `rest-hook` (POSTed to `target`).
    pub channel: String,
    pub target: Option<String>,
    /// The Communication resource recording it, when there is one.
    pub communication_id: Option<String>,
    /// What is sent (JSON).
    pub payload: String,
    /// When it is due (epoch ms).
    pub due_ms: i64,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub event_key: String,
    pub recipient: String,
    pub kind: String,
    pub channel: String,
    pub target: Option<String>,
    pub communication_id: Option<String>,
    pub payload: String,
    pub due_ms: i64,
    /// Deliveries tried so far (counting the one in progress once claimed).
    pub attempts: i64,
    /// `pending`, `sent`, `failed` (given up), `skipped` (no longer true, e.g. a reminder of a
    /// cancelled visit).
    pub state: String,
    pub last_error: Option<String>,
    pub sent_ms: Option<i64>,
    /// When it was written (or last resent).
    pub created_ms: i64,
}

const COLUMNS: &str = "id, event_key, recipient, kind, channel, target, communication_id, payload, due_ms, attempts, state, last_error, sent_ms, created_ms";

fn message(row: Vec<SqlValue>) -> Option<Message> {
    let mut it = row.into_iter();
    let mut text = || it.next().and_then(SqlValue::into_string);
    let (id, event_key, recipient, kind, channel, target, communication_id, payload) = (
        text()?,
        text()?,
        text()?,
        text()?,
        text()?,
        text(),
        text(),
        text()?,
    );
    let due_ms = it.next().and_then(|v| v.as_i64())?;
    let attempts = it.next().and_then(|v| v.as_i64())?;
    let state = it.next().and_then(SqlValue::into_string)?;
    let last_error = it.next().and_then(SqlValue::into_string);
    let sent_ms = it.next().and_then(|v| v.as_i64());
    let created_ms = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
    Some(Message {
        id,
        event_key,
        recipient,
        kind,
        channel,
        target,
        communication_id,
        payload,
        due_ms,
        attempts,
        state,
        last_error,
        sent_ms,
        created_ms,
    })
}

impl Tx<'_> {
    /// The room token of an appointment's video visit.
    pub fn video_room_of(&mut self, appointment_id: &str) -> Result<Option<String>, StoreError> {
        let rows = self.conn().query(
            "SELECT token FROM video_visit WHERE appointment_id = ?",
            &[appointment_id.into()],
        )?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .and_then(SqlValue::into_string))
    }

    /// Records an appointment's room token.
    pub fn video_room_add(&mut self, token: &str, appointment_id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO video_visit (token, appointment_id) VALUES (?, ?)",
            &[token.into(), appointment_id.into()],
        )?;
        Ok(())
    }

    /// The appointment a room token belongs to.
    pub fn video_room_appointment(&mut self, token: &str) -> Result<Option<String>, StoreError> {
        let rows = self.conn().query(
            "SELECT appointment_id FROM video_visit WHERE token = ?",
            &[token.into()],
        )?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .and_then(SqlValue::into_string))
    }

    /// Writes a message unless one for the same event and recipient exists; true when written.
    pub fn outbox_add(&mut self, m: &NewMessage) -> Result<bool, StoreError> {
        let now = self.now();
        let n = self.conn().execute(
            "INSERT INTO outbox (id, event_key, recipient, kind, channel, target, communication_id, payload, due_ms, attempts, state, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'pending', ?) ON CONFLICT (event_key, recipient) DO NOTHING",
            &[
                m.id.as_str().into(),
                m.event_key.as_str().into(),
                m.recipient.as_str().into(),
                m.kind.as_str().into(),
                m.channel.as_str().into(),
                m.target.as_deref().into(),
                m.communication_id.as_deref().into(),
                m.payload.as_str().into(),
                m.due_ms.into(),
                now.into(),
            ],
        )?;
        Ok(n == 1)
    }

    /// Claims up to `limit` due messages for delivery: each gets one more attempt and is
    /// leased for `lease_ms` (not due again until then, so a crash mid-delivery hands it to a
    /// later run). On PostgreSQL, rows another server is claiming are skipped.
    pub fn outbox_claim(
        &mut self,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let now = self.now();
        let lock = match self.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let rows = self.conn().query(
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND due_ms <= ? ORDER BY due_ms, id LIMIT ?{lock}"
            ),
            &[now.into(), (limit as i64).into()],
        )?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(mut m) = message(row) else { continue };
            m.attempts += 1;
            m.due_ms = now + lease_ms;
            self.conn().execute(
                "UPDATE outbox SET attempts = ?, due_ms = ? WHERE id = ?",
                &[m.attempts.into(), m.due_ms.into(), m.id.as_str().into()],
            )?;
            claimed.push(m);
        }
        Ok(claimed)
    }

    /// Records a delivery's outcome: `sent`, `skipped`, `failed`, or `pending` again at
    /// `retry_at_ms` after a failed attempt.
    pub fn outbox_settle(
        &mut self,
        id: &str,
        state: &str,
        retry_at_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let sent: SqlValue = if state == "sent" {
            now.into()
        } else {
            SqlValue::Null
        };
        match retry_at_ms {
            Some(at) => self.conn().execute(
                "UPDATE outbox SET state = ?, due_ms = ?, last_error = ?, sent_ms = ? WHERE id = ?",
                &[state.into(), at.into(), error.into(), sent, id.into()],
            )?,
            None => self.conn().execute(
                "UPDATE outbox SET state = ?, last_error = ?, sent_ms = ? WHERE id = ?",
                &[state.into(), error.into(), sent, id.into()],
            )?,
        };
        Ok(())
    }

    /// Messages, newest first: all, or those to one recipient / in one state.
    pub fn outbox_list(
        &mut self,
        recipient: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM outbox WHERE 1 = 1");
        let mut params: Vec<SqlValue> = Vec::new();
        if let Some(r) = recipient {
            sql.push_str(" AND recipient = ?");
            params.push(r.into());
        }
        if let Some(s) = state {
            sql.push_str(" AND state = ?");
            params.push(s.into());
        }
        sql.push_str(" ORDER BY created_ms DESC, id DESC LIMIT ?");
        params.push((limit as i64).into());
        Ok(self
            .conn()
            .query(&sql, &params)?
            .into_iter()
            .filter_map(message)
            .collect())
    }

    /// A message by its id.
    pub fn outbox_message(&mut self, id: &str) -> Result<Option<Message>, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?"),
            &[id.into()],
        )?;
        Ok(rows.into_iter().next().and_then(message))
    }

    /// Puts a message back to be delivered now, with fresh attempts and a fresh retry window
    /// (a resend asked for by an administrator).
    pub fn outbox_resend(&mut self, id: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let n = self.conn().execute(
            "UPDATE outbox SET state = 'pending', due_ms = ?, attempts = 0, created_ms = ?, sent_ms = NULL WHERE id = ?",
            &[now.into(), now.into(), id.into()],
        )?;
        Ok(n == 1)
    }

    /// How many messages went to a recipient (a Subscription's event count).
    pub fn outbox_count(&mut self, recipient: &str) -> Result<i64, StoreError> {
        let rows = self.conn().query(
            "SELECT COUNT(*) FROM outbox WHERE recipient = ?",
            &[recipient.into()],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64)
            .unwrap_or(0))
    }
}
