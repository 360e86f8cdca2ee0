//! Sealing the token signing keys at rest: each private key is stored encrypted with
//! ChaCha20-Poly1305 (a random 96-bit nonce per key, the key id as associated data) under a
//! key that never enters the database — from configuration (`signing_key_secret`) or a file of
//! 32 random bytes kept beside the database (`signing_key_file`, created on first start with
//! owner-only permissions). Rotation is unchanged; keys stored in the clear by an older
//! version are sealed when the server next starts.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of a sealed value as stored.
const SEALED: &str = "sealed-v1:";

/// The key that seals the signing keys.
#[derive(Clone)]
pub struct KeySeal {
    key: [u8; 32],
}

impl fmt::Debug for KeySeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySeal(***)")
    }
}

/// Why a sealed key could not be opened, or the sealing key not read.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "a token signing key in the database was sealed with another key: give this command the signing_key_secret or signing_key_file the server uses"
    )]
    WrongKey,
    #[error("a sealed signing key is damaged: {0}")]
    Damaged(String),
    #[error("cannot read or create the signing-key sealing file {0}: {1}")]
    File(String, String),
    #[error(
        "the signing-key sealing file {0} must hold 32 bytes in base64 (as Continuum writes it)"
    )]
    BadFile(String),
}

impl KeySeal {
    /// A sealing key derived from a configured secret (at least 32 characters).
    pub fn from_secret(secret: &str) -> KeySeal {
        let mut h = Sha256::new();
        h.update(b"continuum signing-key seal v1\0");
        h.update(secret.as_bytes());
        KeySeal {
            key: h.finalize().into(),
        }
    }

    /// The sealing key kept in `path`, created (32 random bytes, base64, mode 0600) when absent.
    pub fn from_file(path: &Path) -> Result<KeySeal, SealError> {
        let shown = path.display().to_string();
        let io = |e: std::io::Error| SealError::File(shown.clone(), e.to_string());
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = STANDARD
                    .decode(text.trim())
                    .map_err(|_| SealError::BadFile(shown.clone()))?;
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| SealError::BadFile(shown.clone()))?;
                Ok(KeySeal { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let seal = KeySeal::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                use std::io::Write;
                let mut f = options.open(path).map_err(io)?;
                writeln!(f, "{}", STANDARD.encode(seal.key)).map_err(io)?;
                Ok(seal)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A fresh random sealing key.
    pub fn random() -> KeySeal {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        KeySeal { key }
    }

    /// One sealing key per process, for servers built without configuration (tests).
    pub fn process_default() -> KeySeal {
        static SEAL: std::sync::OnceLock<KeySeal> = std::sync::OnceLock::new();
        SEAL.get_or_init(KeySeal::random).clone()
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.key))
    }

    /// Seals `plaintext`, bound to `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: kid.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 encrypts any message this size");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("{SEALED}{}", STANDARD.encode(out))
    }

    /// Whether a stored value is sealed (older versions stored keys in the clear).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED)
    }

    /// Opens a sealed value bound to `kid`.
    pub fn open(&self, kid: &str, stored: &str) -> Result<Vec<u8>, SealError> {
        let b64 = stored
            .strip_prefix(SEALED)
            .ok_or_else(|| SealError::Damaged("not a sealed value".into()))?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| SealError::Damaged(e.to_string()))?;
        if bytes.len() < 12 + 16 {
            return Err(SealError::Damaged("too short".into()));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| SealError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key_and_kid() {
        let seal = KeySeal::from_secret("a configured secret of enough length, 32+");
        let stored = seal.seal("k1", b"private key bytes");
        assert!(KeySeal::is_sealed(&stored));
        assert!(!stored.contains("private"));
        assert_eq!(seal.open("k1", &stored).unwrap(), b"private key bytes");
        assert!(matches!(seal.open("k2", &stored), Err(SealError::WrongKey)));
        let other = KeySeal::from_secret("another secret of enough length, 32 chars");
        assert!(matches!(
            other.open("k1", &stored),
            Err(SealError::WrongKey)
        ));
        assert_ne!(
            seal.seal("k1", b"x"),
            seal.seal("k1", b"x"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn a_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("signing-key.secret");
        let a = KeySeal::from_file(&path).unwrap();
        let b = KeySeal::from_file(&path).unwrap();
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not base64 of 32 bytes").unwrap();
        assert!(matches!(
            KeySeal::from_file(&path),
            Err(SealError::BadFile(_))
        ));
    }
}
