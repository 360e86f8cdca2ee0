//! An external OpenID Connect issuer: bearer tokens it signed are accepted when their `iss`
//! is the configured issuer, verified against its JWKS (fetched from `http(s)://` or read from
//! `file://`, cached, fetched again when a token names an unknown key). Roles come from a claim
//! (`continuum_roles` by default: `["clinician@cc"]` or `[{"role": …, "organization": …}]`),
//! the FHIR identity from `fhirUser`, scopes from `scope`/`scp` (all user scopes when absent:
//! the role decides).

use std::time::{Duration, Instant};

use care::access::{Scopes, Subject};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

use super::tokens::TokenError;

/// Where the issuer is and what its tokens must say.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    /// `https://…/jwks`, `http://…`, or `file:///path/jwks.json`.
    pub jwks_url: String,
    pub audience: String,
    pub roles_claim: String,
}

pub struct Oidc {
    config: OidcConfig,
    keys: RwLock<Option<(JwkSet, Instant)>>,
    http: reqwest::Client,
}

/// JWKS are fetched at most this often when a token names an unknown key.
const REFETCH: Duration = Duration::from_secs(30);

impl Oidc {
    pub fn new(config: OidcConfig) -> Oidc {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Oidc {
            config,
            keys: RwLock::new(None),
            http,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        let url = &self.config.jwks_url;
        let text = if let Some(path) = url.strip_prefix("file://") {
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| TokenError::Invalid(format!("cannot read the issuer's JWKS: {e}")))?
        } else {
            let resp =
                self.http.get(url).send().await.map_err(|e| {
                    TokenError::Invalid(format!("cannot fetch the issuer's JWKS: {e}"))
                })?;
            resp.text()
                .await
                .map_err(|e| TokenError::Invalid(format!("cannot read the issuer's JWKS: {e}")))?
        };
        serde_json::from_str(&text)
            .map_err(|e| TokenError::Invalid(format!("the issuer's JWKS is not valid: {e}")))
    }

    async fn key(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let find = |set: &JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None => (set.keys.len() == 1).then(|| set.keys[0].clone()),
        };
        if let Some((set, _)) = &*self.keys.read().await
            && let Some(k) = find(set)
        {
            return Ok(k);
        }
        let mut guard = self.keys.write().await;
        let stale = guard.as_ref().is_none_or(|(_, at)| at.elapsed() > REFETCH);
        if stale {
            let set = self.fetch().await?;
            *guard = Some((set, Instant::now()));
        }
        guard
            .as_ref()
            .and_then(|(set, _)| find(set))
            .ok_or(TokenError::UnknownKey)
    }

    /// Verifies a token of this issuer and turns it into a subject.
    pub async fn verify(&self, token: &str) -> Result<Subject, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(TokenError::Invalid(format!(
                "the issuer's tokens must be signed with a public-key algorithm, not {:?}",
                header.alg
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => TokenError::WrongAudience,
                other => TokenError::Invalid(format!("{other:?}")),
            })?
            .claims;
        Ok(self.subject(&claims))
    }

    fn subject(&self, claims: &Value) -> Subject {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        let scope_text = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let scopes = match Scopes::parse(&scope_text) {
            Ok(s) if !s.scopes.is_empty() => s,
            _ => Scopes::all_user(),
        };
        let grants = claims
            .get(&self.config.roles_claim)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| match g {
                Value::String(s) => super::parse_grant(s).ok(),
                Value::Object(o) => {
                    let role = o.get("role").and_then(Value::as_str)?;
                    let text = match o.get("organization").and_then(Value::as_str) {
                        Some(org) => format!("{role}@{org}"),
                        None => role.to_string(),
                    };
                    super::parse_grant(&text).ok()
                }
                _ => None,
            })
            .collect();
        let fhir_users = match claims.get("fhirUser") {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect::<Vec<_>>(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Subject {
            id: format!("oidc:{sub}"),
            grants,
            fhir_users: fhir_users
                .iter()
                .filter_map(|r| r.rsplit_once('/'))
                .map(|(t, i)| (t.rsplit('/').next().unwrap_or(t).to_string(), i.to_string()))
                .collect(),
            scopes,
        }
    }
}

/// The issuer a token claims, read without verifying (to choose the verifier).
pub fn claimed_issuer(token: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string))
}
