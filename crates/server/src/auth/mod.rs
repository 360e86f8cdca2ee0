//! Authentication: who is calling. API clients present a bearer JWT obtained with OAuth2
//! client credentials at `/auth/token`; console users hold a server-side session behind an
//! `HttpOnly; Secure; SameSite=Strict` cookie. Either way the result is a
//! [`store::Caller`] — the subject the access policy decides for.

pub mod oidc;

pub mod seal;
pub mod secrets;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use care::access::{Grant, PolicyConfig, Scopes, Subject};
use serde_json::{Value, json};
use store::accounts::{ClientRecord, UserRecord, grants_from_json, grants_to_json};
use store::{Caller, Store, StoreError};

use secrets::{digest, verify_secret};
use tokens::{Claims, KeyRing, TOKEN_SECONDS, TokenError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "continuum_session";
/// The pre-login CSRF cookie's name (double-submit).
pub const CSRF_COOKIE: &str = "continuum_csrf";
/// Failed logins before an account is locked, and for how long.
pub const MAX_FAILED_LOGINS: i64 = 5;
pub const LOCK_MS: i64 = 15 * 60 * 1000;

/// Settings of the authentication layer.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The `aud` (and `iss`) of tokens: the public FHIR base URL, or "continuum".
    pub audience: String,
    pub session_hours: i64,
    /// How long an access token lasts (default 15 minutes), by the store's clock.
    pub token_seconds: i64,
    /// Mark cookies `Secure` (on by default; browsers treat http://localhost as secure).
    pub secure_cookies: bool,
    pub policy: PolicyConfig,
    /// An external OpenID Connect issuer whose tokens are accepted too.
    pub oidc: Option<oidc::OidcConfig>,
    /// Seals the token signing keys at rest.
    pub key_seal: seal::KeySeal,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            audience: "continuum".into(),
            session_hours: 8,
            token_seconds: TOKEN_SECONDS,
            secure_cookies: true,
            policy: PolicyConfig::default(),
            oidc: None,
            key_seal: seal::KeySeal::process_default(),
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    Bearer,
    /// A console session, with the CSRF token state-changing requests must echo.
    Session {
        csrf: String,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Arc<Caller>,
    pub via: Via,
}

impl Authenticated {
    /// Whether a state-changing request may go ahead: a bearer token always, a console session
    /// only with its CSRF token (`csrf`, from the `X-CSRF-Token` header or the form).
    pub fn may_write(&self, csrf: Option<&str>) -> bool {
        match &self.via {
            Via::Bearer => true,
            Via::Session { csrf: expected } => {
                csrf.is_some_and(|c| secrets::constant_time_eq(c, expected))
            }
        }
    }
}

/// Why authentication failed (→ 401).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the session has expired or was ended; sign in again")]
    Session,
    #[error("the Authorization header must be 'Bearer <token>'")]
    Malformed,
    #[error("the account is disabled")]
    Disabled,
    #[error("authentication is temporarily unavailable")]
    Unavailable,
}

/// A simple sliding-window limiter for login and token attempts, per key (address or name).
#[derive(Default)]
pub struct RateLimiter {
    hits: Mutex<HashMap<String, Vec<i64>>>,
}

impl RateLimiter {
    /// Records an attempt; false when `max` attempts were already made within `window_ms`.
    pub fn allow(&self, key: &str, now_ms: i64, max: usize, window_ms: i64) -> bool {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if hits.len() > 10_000 {
            hits.retain(|_, v| v.last().is_some_and(|t| now_ms - t < window_ms));
        }
        let v = hits.entry(key.to_string()).or_default();
        v.retain(|t| now_ms - t < window_ms);
        if v.len() >= max {
            return false;
        }
        v.push(now_ms);
        true
    }
}

/// The authentication service.
pub struct Auth {
    pub store: Store,
    pub keys: KeyRing,
    pub config: AuthConfig,
    pub limiter: RateLimiter,
    pub oidc: Option<oidc::Oidc>,
}

fn parse_refs(s: &str) -> Vec<(String, String)> {
    s.split_whitespace()
        .filter_map(|r| {
            r.split_once('/')
                .map(|(t, i)| (t.to_string(), i.to_string()))
        })
        .collect()
}

impl Auth {
    pub async fn new(store: Store, config: AuthConfig) -> Result<Auth, tokens::KeyRingError> {
        let keys = KeyRing::load(
            store.clone(),
            config.audience.clone(),
            config.key_seal.clone(),
        )
        .await?;
        let oidc = config.oidc.clone().map(oidc::Oidc::new);
        Ok(Auth {
            store,
            keys,
            config,
            limiter: RateLimiter::default(),
            oidc,
        })
    }

    fn now(&self) -> i64 {
        self.store.clock().now_ms()
    }

    fn caller(&self, subject: Subject) -> Arc<Caller> {
        Arc::new(Caller {
            subject,
            policy: self.config.policy.clone(),
        })
    }

    /// The subject of a console user.
    pub fn user_subject(user: &UserRecord) -> Subject {
        Subject {
            id: format!("user:{}", user.username),
            grants: user.grants.clone(),
            fhir_users: parse_refs(&user.fhir_users.join(" ")),
            scopes: Scopes::all_user(),
        }
    }

    /// Resolves a bearer token or a session cookie; `Ok(None)` when neither was sent.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        session_cookie: Option<&str>,
    ) -> Result<Option<Authenticated>, AuthError> {
        if let Some(h) = authorization {
            let token = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .ok_or(AuthError::Malformed)?;
            let token = token.trim();
            if let Some(oidc) = &self.oidc
                && oidc::claimed_issuer(token).as_deref() == Some(oidc.issuer())
            {
                let subject = oidc.verify(token).await?;
                return Ok(Some(Authenticated {
                    caller: self.caller(subject),
                    via: Via::Bearer,
                }));
            }
            let claims = self.keys.verify(token).await?;
            let scopes = Scopes::parse(&claims.scope)
                .map_err(|e| AuthError::Token(TokenError::Invalid(e.to_string())))?;
            let grants = grants_from_json(&claims.continuum_roles.to_string());
            let subject = Subject {
                id: format!("client:{}", claims.sub),
                grants,
                fhir_users: parse_refs(claims.fhir_user.as_deref().unwrap_or("")),
                scopes,
            };
            return Ok(Some(Authenticated {
                caller: self.caller(subject),
                via: Via::Bearer,
            }));
        }
        let Some(token) = session_cookie else {
            return Ok(None);
        };
        let hash = digest(token);
        let found = self
            .store
            .read(move |tx| {
                let Some(s) = tx.session(&hash)? else {
                    return Ok::<_, StoreError>(None);
                };
                Ok(tx.user_by_id(&s.user_id)?.map(|u| (s, u)))
            })
            .await
            .map_err(|_| AuthError::Unavailable)?;
        let (session, user) = found.ok_or(AuthError::Session)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        Ok(Some(Authenticated {
            caller: self.caller(Self::user_subject(&user)),
            via: Via::Session {
                csrf: session.csrf_token,
            },
        }))
    }

    /// OAuth2 client credentials: checks the client and issues a token for the requested
    /// scopes (all granted ones when none are asked for).
    pub async fn issue_token(
        &self,
        client_id: &str,
        secret: &str,
        requested: Option<&str>,
    ) -> Result<Value, (u16, &'static str, String)> {
        let id = client_id.to_string();
        let client: Option<ClientRecord> = self
            .store
            .read(move |tx| tx.client(&id))
            .await
            .map_err(|_| {
                (
                    503,
                    "temporarily_unavailable",
                    "try again later".to_string(),
                )
            })?;
        let invalid = || {
            (
                401u16,
                "invalid_client",
                "unknown client or wrong secret".to_string(),
            )
        };
        let Some(client) = client else {
            // spend the same time as a real check
            let _ = verify_secret(
                secret,
                "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0000000000000000000000000000000000000000000",
            );
            return Err(invalid());
        };
        if client.disabled || !verify_secret(secret, &client.secret_hash) {
            return Err(invalid());
        }
        let granted =
            Scopes::parse(&client.scopes).map_err(|e| (400, "invalid_scope", e.to_string()))?;
        let scopes = match requested.filter(|s| !s.trim().is_empty()) {
            Some(r) => {
                let asked = Scopes::parse(r).map_err(|e| (400, "invalid_scope", e.to_string()))?;
                if !asked.within(&granted) {
                    return Err((
                        400,
                        "invalid_scope",
                        format!(
                            "'{r}' asks for more than this client was granted ({})",
                            client.scopes
                        ),
                    ));
                }
                asked
            }
            None => granted,
        };
        let now = self.now() / 1000;
        let claims = Claims {
            iss: self.config.audience.clone(),
            sub: client.client_id.clone(),
            aud: self.config.audience.clone(),
            exp: now + self.config.token_seconds,
            iat: now,
            jti: secrets::random_token(12),
            scope: scopes.to_scope_string(),
            continuum_roles: serde_json::from_str(&grants_to_json(&client.grants))
                .unwrap_or(Value::Null),
            fhir_user: (!client.fhir_users.is_empty()).then(|| client.fhir_users.join(" ")),
        };
        // a key rotated by `continuum keys rotate` signs from the next token on
        let _ = self.keys.reload().await;
        let token = self
            .keys
            .sign(&claims)
            .map_err(|e| (500, "server_error", e.to_string()))?;
        Ok(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.config.token_seconds,
            "scope": claims.scope,
        }))
    }
}

/// Parses `role` or `role@organization` (as the CLI takes it).
pub fn parse_grant(s: &str) -> Result<Grant, String> {
    let (role, org) = match s.split_once('@') {
        Some((r, o)) => (r, Some(o.to_string())),
        None => (s, None),
    };
    let role = care::access::Role::parse(role).ok_or_else(|| {
        format!(
            "unknown role '{role}'; roles are {}",
            care::access::Role::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if role.needs_organization() && org.is_none() {
        return Err(format!(
            "the role {} is held for an organisation: write {}@ORGANIZATION_ID",
            role.as_str(),
            role.as_str()
        ));
    }
    Ok(Grant {
        role,
        organization: org,
    })
}
