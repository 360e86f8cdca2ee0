//! Accounts and their secrets as stored: console users, sessions, API clients, token signing
//! keys (sealed by the server), one-time setup tokens and break-the-glass grants. Only hashes
//! of passwords, client secrets and session tokens are kept. Hashing and checking live in the
//! server's auth module. (Patient identity — record linkage — is `identity_links`.)

use care::access::{Grant, Role};
use serde_json::{Value, json};

use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::Tx;

/// A console user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub display_name: Option<String>,
    pub grants: Vec<Grant>,
    /// `Practitioner/x`, `Patient/y`, `RelatedPerson/z` …
    pub fhir_users: Vec<String>,
    pub disabled: bool,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
}

/// An API client (OAuth2 client credentials).
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    pub secret_hash: String,
    pub scopes: String,
    pub grants: Vec<Grant>,
    pub fhir_users: Vec<String>,
    pub disabled: bool,
}

/// A token signing key.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub kid: String,
    pub algorithm: String,
    /// Base64 of the private key (PKCS#8 DER).
    pub private_key: String,
    pub public_jwk: Value,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A console session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user_id: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

pub fn grants_to_json(grants: &[Grant]) -> String {
    Value::Array(
        grants
            .iter()
            .map(|g| json!({"role": g.role.as_str(), "organization": g.organization}))
            .collect(),
    )
    .to_string()
}

pub fn grants_from_json(s: &str) -> Vec<Grant> {
    serde_json::from_str::<Vec<Value>>(s)
        .unwrap_or_default()
        .iter()
        .filter_map(|g| {
            Some(Grant {
                role: Role::parse(g.get("role")?.as_str()?)?,
                organization: g
                    .get("organization")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

fn text(v: Option<SqlValue>) -> String {
    v.and_then(SqlValue::into_string).unwrap_or_default()
}

fn user_from(row: Vec<SqlValue>) -> UserRecord {
    let mut it = row.into_iter();
    UserRecord {
        id: text(it.next()),
        username: text(it.next()),
        password_hash: text(it.next()),
        display_name: it.next().and_then(SqlValue::into_string),
        grants: grants_from_json(&text(it.next())),
        fhir_users: text(it.next())
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        disabled: it.next().and_then(|v| v.as_i64()).unwrap_or(0) != 0,
        failed_logins: it.next().and_then(|v| v.as_i64()).unwrap_or(0),
        locked_until: it.next().and_then(|v| v.as_i64()),
    }
}

const USER_COLUMNS: &str = "id, username, password_hash, display_name, roles, fhir_user, disabled, failed_logins, locked_until";

impl Tx<'_> {
    pub fn insert_user(&mut self, u: &UserRecord) -> Result<(), StoreError> {
        let now = self.now();
        self.conn().execute(
            "INSERT INTO users (id, username, password_hash, display_name, roles, fhir_user, disabled, failed_logins, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?)",
            &[
                u.id.as_str().into(),
                u.username.as_str().into(),
                u.password_hash.as_str().into(),
                u.display_name.clone().into(),
                grants_to_json(&u.grants).into(),
                u.fhir_users.join(" ").into(),
                now.into(),
            ],
        )?;
        Ok(())
    }

    pub fn user_by_name(&mut self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"),
            &[username.into()],
        )?;
        Ok(rows.into_iter().next().map(user_from))
    }

    pub fn user_by_id(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"),
            &[id.into()],
        )?;
        Ok(rows.into_iter().next().map(user_from))
    }

    pub fn list_users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"),
            &[],
        )?;
        Ok(rows.into_iter().map(user_from).collect())
    }

    /// Returns whether a user of that name existed.
    pub fn set_user_disabled(
        &mut self,
        username: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE users SET disabled = ? WHERE username = ?",
            &[(disabled as i64).into(), username.into()],
        )?;
        if disabled {
            self.conn().execute(
                "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = ?)",
                &[username.into()],
            )?;
        }
        Ok(n > 0)
    }

    pub fn set_user_password(
        &mut self,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE username = ?",
            &[password_hash.into(), username.into()],
        )?;
        Ok(n > 0)
    }

    /// Counts a failed login; locks the account for `lock_ms` after `max_failures`.
    pub fn record_login_failure(
        &mut self,
        user_id: &str,
        max_failures: i64,
        lock_ms: i64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.conn().execute(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?",
            &[user_id.into()],
        )?;
        self.conn().execute(
            "UPDATE users SET locked_until = ?, failed_logins = 0 WHERE id = ? AND failed_logins >= ?",
            &[(now + lock_ms).into(), user_id.into(), max_failures.into()],
        )?;
        Ok(())
    }

    pub fn record_login_success(&mut self, user_id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?",
            &[user_id.into()],
        )?;
        Ok(())
    }

    pub fn count_admins(&mut self) -> Result<i64, StoreError> {
        let rows = self
            .conn()
            .query("SELECT roles FROM users WHERE disabled = 0", &[])?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                grants_from_json(r.first().and_then(SqlValue::as_str).unwrap_or(""))
                    .iter()
                    .any(|g| g.role == Role::AllianceAdmin)
            })
            .count() as i64)
    }

    pub fn insert_session(
        &mut self,
        token_hash: &str,
        user_id: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.conn().execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            &[token_hash.into(), user_id.into(), csrf.into(), now.into(), expires_at.into()],
        )?;
        Ok(())
    }

    pub fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let now = self.now();
        let rows = self.conn().query(
            "SELECT user_id, csrf_token, expires_at FROM sessions WHERE token_hash = ? AND expires_at > ?",
            &[token_hash.into(), now.into()],
        )?;
        Ok(rows.into_iter().next().map(|r| {
            let mut it = r.into_iter();
            SessionRecord {
                user_id: text(it.next()),
                csrf_token: text(it.next()),
                expires_at: it.next().and_then(|v| v.as_i64()).unwrap_or(0),
            }
        }))
    }

    pub fn delete_session(&mut self, token_hash: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM sessions WHERE token_hash = ?",
            &[token_hash.into()],
        )?;
        Ok(())
    }

    pub fn insert_client(&mut self, c: &ClientRecord) -> Result<(), StoreError> {
        let now = self.now();
        self.conn().execute(
            "INSERT INTO api_clients (client_id, name, secret_hash, scopes, roles, fhir_user, disabled, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            &[
                c.client_id.as_str().into(),
                c.name.as_str().into(),
                c.secret_hash.as_str().into(),
                c.scopes.as_str().into(),
                grants_to_json(&c.grants).into(),
                c.fhir_users.join(" ").into(),
                now.into(),
            ],
        )?;
        Ok(())
    }

    pub fn client(&mut self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let rows = self.conn().query(
            "SELECT client_id, name, secret_hash, scopes, roles, fhir_user, disabled FROM api_clients WHERE client_id = ?",
            &[client_id.into()],
        )?;
        Ok(rows.into_iter().next().map(|r| {
            let mut it = r.into_iter();
            ClientRecord {
                client_id: text(it.next()),
                name: text(it.next()),
                secret_hash: text(it.next()),
                scopes: text(it.next()),
                grants: grants_from_json(&text(it.next())),
                fhir_users: text(it.next())
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                disabled: it.next().and_then(|v| v.as_i64()).unwrap_or(0) != 0,
            }
        }))
    }

    pub fn list_clients(&mut self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = self
            .conn()
            .query("SELECT client_id FROM api_clients ORDER BY name", &[])?;
        let ids: Vec<String> = rows
            .into_iter()
            .map(|r| text(r.into_iter().next()))
            .collect();
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.client(&id)?);
        }
        Ok(out)
    }

    pub fn set_client_disabled(
        &mut self,
        client_id: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE api_clients SET disabled = ? WHERE client_id = ?",
            &[(disabled as i64).into(), client_id.into()],
        )?;
        Ok(n > 0)
    }

    pub fn insert_key(&mut self, k: &KeyRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at) VALUES (?, ?, ?, ?, ?)",
            &[k.kid.as_str().into(), k.algorithm.as_str().into(), k.private_key.as_str().into(), k.public_jwk.to_string().into(), k.created_at.into()],
        )?;
        Ok(())
    }

    /// Replaces a key's stored private key (sealing a key stored in the clear).
    pub fn set_key_private(&mut self, kid: &str, private_key: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE signing_keys SET private_key = ? WHERE kid = ?",
            &[private_key.into(), kid.into()],
        )?;
        Ok(())
    }

    /// Every key, newest first (retired ones too: they still verify tokens they signed).
    pub fn keys(&mut self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = self.conn().query("SELECT kid, algorithm, private_key, public_jwk, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid", &[])?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter();
                KeyRecord {
                    kid: text(it.next()),
                    algorithm: text(it.next()),
                    private_key: text(it.next()),
                    public_jwk: serde_json::from_str(&text(it.next())).unwrap_or(Value::Null),
                    created_at: it.next().and_then(|v| v.as_i64()).unwrap_or(0),
                    retired_at: it.next().and_then(|v| v.as_i64()),
                }
            })
            .collect())
    }

    /// Retires every key but `keep`.
    pub fn retire_keys_except(&mut self, keep: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.conn().execute(
            "UPDATE signing_keys SET retired_at = ? WHERE kid <> ? AND retired_at IS NULL",
            &[now.into(), keep.into()],
        )?;
        Ok(())
    }

    /// Drops keys retired before `before` (no token they signed can still be valid).
    pub fn purge_keys_retired_before(&mut self, before: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?",
            &[before.into()],
        )?;
        Ok(())
    }

    pub fn insert_setup_token(
        &mut self,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO setup_tokens (token_hash, expires_at) VALUES (?, ?)",
            &[token_hash.into(), expires_at.into()],
        )?;
        Ok(())
    }

    /// Uses up a setup token; returns whether it was valid.
    pub fn consume_setup_token(&mut self, token_hash: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let n = self.conn().execute(
            "DELETE FROM setup_tokens WHERE token_hash = ? AND expires_at > ?",
            &[token_hash.into(), now.into()],
        )?;
        Ok(n > 0)
    }

    pub fn insert_break_glass(
        &mut self,
        subject: &str,
        patient_id: &str,
        reason: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.conn().execute(
            "INSERT INTO break_glass (subject, patient_id, reason, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            &[subject.into(), patient_id.into(), reason.into(), now.into(), expires_at.into()],
        )?;
        Ok(())
    }
}
