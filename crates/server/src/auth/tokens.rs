//! Access tokens: EdDSA-signed JWTs with a `kid`, keys kept in the database (rotated by
//! `continuum keys rotate`, old keys still verifying until their tokens have expired), the
//! public keys published as a JWKS.

use std::sync::RwLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::accounts::KeyRecord;
use store::{Store, StoreError};

use super::seal::{KeySeal, SealError};

/// Why the signing keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// How long an access token lives.
pub const TOKEN_SECONDS: i64 = 15 * 60;

/// The claims Continuum puts in (and expects from) its tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub scope: String,
    /// Roles the client acts in: `[{"role": "clinician", "organization": "cc"}]`.
    #[serde(default)]
    pub continuum_roles: Value,
    /// Space-separated FHIR references of the identity (`Practitioner/x`).
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired; request a new one")]
    Expired,
    #[error("the access token is not valid: {0}")]
    Invalid(String),
    #[error("the access token was issued for another audience")]
    WrongAudience,
    #[error("the access token was signed with an unknown key")]
    UnknownKey,
}

/// Makes a new Ed25519 signing key record.
pub fn generate_key(now_ms: i64) -> KeyRecord {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let der = key
        .to_pkcs8_der()
        .expect("an Ed25519 key encodes as PKCS#8");
    let public = key.verifying_key().to_bytes();
    let kid = format!("k{}", &crate::auth::secrets::random_token(9));
    KeyRecord {
        kid: kid.clone(),
        algorithm: "EdDSA".into(),
        private_key: STANDARD.encode(der.as_bytes()),
        public_jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public), "kid": kid, "alg": "EdDSA", "use": "sig"}),
        created_at: now_ms,
        retired_at: None,
    }
}

/// Seals a key record's private key (as `generate_key` makes it) before it is stored.
pub fn seal_key(record: &mut KeyRecord, seal: &KeySeal) {
    if KeySeal::is_sealed(&record.private_key) {
        return;
    }
    if let Ok(der) = STANDARD.decode(&record.private_key) {
        record.private_key = seal.seal(&record.kid, &der);
    }
}

/// The signing keys, loaded from the store and cached.
pub struct KeyRing {
    store: Store,
    seal: KeySeal,
    keys: RwLock<Vec<KeyRecord>>,
    audience: String,
    /// Tokens already verified, with their claims: a signature is checked once per token, not
    /// once per request (expiry is still checked on every use).
    verified: std::sync::Mutex<std::collections::HashMap<String, Claims>>,
}

/// How many verified tokens are remembered before the memory is cleared.
const VERIFIED_CACHE: usize = 10_000;

impl KeyRing {
    /// Loads the keys, creating the first one if there is none; keys an older version stored
    /// in the clear are sealed now. Refuses to start when the keys were sealed with another
    /// sealing key (the tokens could not be signed).
    pub async fn load(
        store: Store,
        audience: String,
        seal: KeySeal,
    ) -> Result<KeyRing, KeyRingError> {
        let sealing = seal.clone();
        let keys = store
            .write(move |tx| {
                let mut keys = tx.keys()?;
                for k in keys.iter().filter(|k| !KeySeal::is_sealed(&k.private_key)) {
                    let mut sealed = k.clone();
                    seal_key(&mut sealed, &sealing);
                    tx.set_key_private(&k.kid, &sealed.private_key)?;
                }
                if keys.iter().all(|k| k.retired_at.is_some()) {
                    let mut k = generate_key(tx.now());
                    seal_key(&mut k, &sealing);
                    tx.insert_key(&k)?;
                }
                keys = tx.keys()?;
                Ok::<_, StoreError>(keys)
            })
            .await?;
        for k in keys.iter().filter(|k| k.retired_at.is_none()) {
            seal.open(&k.kid, &k.private_key)?;
        }
        Ok(KeyRing {
            store,
            seal,
            keys: RwLock::new(keys),
            audience,
            verified: Default::default(),
        })
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// A new signing key, in the caller's transaction: the others retire (a retired key still
    /// verifies for a day, far longer than any token lives; older ones are removed). Call
    /// [`KeyRing::reload`] after the commit. Returns the new key's id.
    pub fn rotate_in(&self, tx: &mut store::Tx) -> Result<String, StoreError> {
        let now = tx.now();
        let mut key = generate_key(now);
        seal_key(&mut key, &self.seal);
        let kid = key.kid.clone();
        tx.insert_key(&key)?;
        tx.retire_keys_except(&kid)?;
        tx.purge_keys_retired_before(now - 24 * 3_600_000)?;
        Ok(kid)
    }

    pub async fn reload(&self) -> Result<(), StoreError> {
        let keys = self.store.read(|tx| tx.keys()).await?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Signs claims with the newest active key.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .ok_or(TokenError::UnknownKey)?;
        let der = if KeySeal::is_sealed(&key.private_key) {
            self.seal
                .open(&key.kid, &key.private_key)
                .map_err(|e| TokenError::Invalid(e.to_string()))?
        } else {
            STANDARD
                .decode(&key.private_key)
                .map_err(|e| TokenError::Invalid(e.to_string()))?
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Verifies a token's signature, expiry and audience.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        // the expiry is judged by the store's clock, the one the token was issued by
        let now = self.store.clock().now_ms().div_euclid(1000);
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        if let Some(claims) = cached {
            return if claims.exp + 30 < now {
                Err(TokenError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.verify_signature(token).await?;
        if claims.exp + 30 < now {
            return Err(TokenError::Expired);
        }
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            TokenError::Invalid(
                "it is not a signed token this server issued (ask /auth/token for one and send it as 'Authorization: Bearer <token>')".into(),
            )
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(
                "only EdDSA-signed tokens are accepted".into(),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("the token has no kid".into()))?;
        let mut x = self.public_x(&kid);
        if x.is_none() {
            // a key rotated by another process: look again once
            let _ = self.reload().await;
            x = self.public_x(&kid);
        }
        let x = x.ok_or(TokenError::UnknownKey)?;
        let key =
            DecodingKey::from_ed_components(&x).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[&self.audience]);
        validation.leeway = 30;
        // the expiry is checked against the store's clock by `verify`
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "aud", "sub", "iat"]);
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => TokenError::WrongAudience,
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::Base64(_)
                | jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::Utf8(_) => TokenError::Invalid(
                    "its signature does not match or it does not decode: it was altered, or not issued here".into(),
                ),
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::Invalid(format!("it has no '{claim}' claim"))
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    TokenError::Invalid("it is not valid yet (check the clocks)".into())
                }
                _ => TokenError::Invalid(
                    "it could not be read as a token this server issued; ask /auth/token for a new one"
                        .into(),
                ),
            })
    }

    fn public_x(&self, kid: &str) -> Option<String> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter().find(|k| k.kid == kid).and_then(|k| {
            k.public_jwk
                .get("x")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// The public keys, as a JWKS document.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        json!({"keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify() {
        let k = generate_key(0);
        assert_eq!(k.public_jwk["kty"], "OKP");
        let der = STANDARD.decode(&k.private_key).unwrap();
        let claims = json!({"sub": "x", "aud": "a", "exp": 4_000_000_000i64, "iat": 0});
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(k.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der)).unwrap();
        let key = DecodingKey::from_ed_components(k.public_jwk["x"].as_str().unwrap()).unwrap();
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["a"]);
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &v).is_ok());
        let other = generate_key(0);
        let wrong =
            DecodingKey::from_ed_components(other.public_jwk["x"].as_str().unwrap()).unwrap();
        assert!(jsonwebtoken::decode::<Value>(&token, &wrong, &v).is_err());
    }
}
