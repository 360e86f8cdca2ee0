//! Secrets: argon2id password and client-secret hashes, random tokens, and SHA-256 digests of
//! session tokens (only digests are stored).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 iterations, 1 lane
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An argon2id PHC string for a password or client secret.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt encodes");
    hasher()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 hashing of a bounded input succeeds")
        .to_string()
}

/// Whether `secret` matches a stored PHC string (constant-time comparison inside argon2).
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A fresh random token with `bytes` bytes of entropy, URL-safe.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The hex SHA-256 of a token, as stored.
pub fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Password rules for console users.
pub fn check_password_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < 12 {
        return Err("passwords need at least 12 characters".into());
    }
    if password.chars().all(|c| c.is_ascii_digit())
        || password
            .chars()
            .collect::<std::collections::HashSet<_>>()
            .len()
            < 5
    {
        return Err("this password is too easy to guess; use a passphrase of several words".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let h = hash_secret("correct horse battery staple");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret("correct horse battery staple", &h));
        assert!(!verify_secret("correct horse battery stapler", &h));
        assert_ne!(h, hash_secret("correct horse battery staple"));
        assert!(!verify_secret("x", "not a hash"));
    }

    #[test]
    fn tokens_and_digests() {
        assert_eq!(random_token(32).len(), 43);
        assert_ne!(random_token(16), random_token(16));
        assert_eq!(digest("abc").len(), 64);
        assert!(
            constant_time_eq("abc", "abc")
                && !constant_time_eq("abc", "abd")
                && !constant_time_eq("a", "ab")
        );
        assert!(check_password_strength("short").is_err());
        assert!(check_password_strength("111111111111111").is_err());
        assert!(check_password_strength("maple syrup on snow").is_ok());
    }
}
