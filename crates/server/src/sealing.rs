//! Secrets kept encrypted at rest: sealed with XChaCha20-Poly1305 under the operator's master
//! key (`CREDITD_MASTER_KEY`), with what they belong to bound in as associated data.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// The length of a master key, in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// One master key and its version. Never printed.
#[derive(Clone)]
pub struct MasterKey {
    /// Its version, stored beside every secret sealed with it.
    pub version: u32,
    key: [u8; MASTER_KEY_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(v{}, ***)", self.version)
    }
}

impl MasterKey {
    /// Reads `VERSION:HEX` or `HEX` (version 1): 64 hex digits.
    pub fn parse(text: &str) -> Result<MasterKey, String> {
        let (version, hex) = match text.trim().split_once(':') {
            Some((version, hex)) => (
                version
                    .trim_start_matches('v')
                    .parse::<u32>()
                    .map_err(|_| "a master key's version is a whole number".to_owned())?,
                hex,
            ),
            None => (1, text.trim()),
        };
        let bytes = from_hex(hex).ok_or("a master key is 64 hex digits (32 random bytes)")?;
        let key: [u8; MASTER_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| "a master key is 64 hex digits (32 random bytes)".to_owned())?;
        Ok(MasterKey { version, key })
    }

    /// A master key of `version` made of `key`'s bytes (tests).
    pub fn from_bytes(version: u32, key: [u8; MASTER_KEY_LEN]) -> MasterKey {
        MasterKey { version, key }
    }
}

/// The master keys: the current one, which seals, and retired ones, which
/// only open what they sealed until it is sealed again under the current one.
#[derive(Clone, Debug)]
pub struct Keyring {
    /// Seals new secrets.
    pub current: MasterKey,
    /// Open secrets sealed before a rotation.
    pub retired: Vec<MasterKey>,
}

/// Why a sealed secret cannot be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Sealed under a master key version this node does not have.
    UnknownVersion(u32),
    /// The ciphertext, nonce or associated data do not match: tampered
    /// with, or moved to another record.
    Forged,
}

/// A secret as stored: its master key's version, its nonce and its
/// ciphertext (with the tag), as hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The master key version that sealed it.
    pub key_version: u32,
    /// The 24-byte nonce, as hex.
    pub nonce: String,
    /// The sealed secret and its tag, as hex.
    pub ciphertext: String,
}

impl Keyring {
    /// Seals `secret` under the current master key, bound to `bound_to`.
    pub fn seal(&self, bound_to: &[u8], secret: &[u8]) -> Sealed {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("random bytes for a nonce");
        let cipher = XChaCha20Poly1305::new((&self.current.key).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: bound_to,
                },
            )
            .expect("sealing never fails for secrets this short");
        Sealed {
            key_version: self.current.version,
            nonce: to_hex(&nonce),
            ciphertext: to_hex(&sealed),
        }
    }

    /// Opens a sealed secret, checking it is bound to `bound_to`.
    pub fn open(&self, bound_to: &[u8], sealed: &Sealed) -> Result<Vec<u8>, OpenError> {
        let master = std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|k| k.version == sealed.key_version)
            .ok_or(OpenError::UnknownVersion(sealed.key_version))?;
        let nonce = from_hex(&sealed.nonce)
            .filter(|n| n.len() == 24)
            .ok_or(OpenError::Forged)?;
        let ciphertext = from_hex(&sealed.ciphertext).ok_or(OpenError::Forged)?;
        let cipher = XChaCha20Poly1305::new((&master.key).into());
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: bound_to,
                },
            )
            .map_err(|_| OpenError::Forged)
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex text, or none if it is not one.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(version: u32, byte: u8) -> Keyring {
        Keyring {
            current: MasterKey::from_bytes(version, [byte; 32]),
            retired: Vec::new(),
        }
    }

    #[test]
    fn a_sealed_secret_opens_bound_to_what_it_was_sealed_for_only() {
        let ring = keyring(1, 7);
        let sealed = ring.seal(b"endpoint a", b"whsec_1234");
        assert!(!sealed.ciphertext.contains(&to_hex(b"whsec")));
        assert_eq!(ring.open(b"endpoint a", &sealed).unwrap(), b"whsec_1234");
        assert_eq!(ring.open(b"endpoint b", &sealed), Err(OpenError::Forged));
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(0..2, "00");
        if tampered.ciphertext != sealed.ciphertext {
            assert_eq!(ring.open(b"endpoint a", &tampered), Err(OpenError::Forged));
        }
        assert_ne!(ring.seal(b"endpoint a", b"whsec_1234").nonce, sealed.nonce);
    }

    #[test]
    fn a_rotated_keyring_opens_old_secrets_through_the_retired_master() {
        let old = keyring(1, 7);
        let sealed = old.seal(b"x", b"old");
        let mut new = keyring(2, 9);
        assert_eq!(new.open(b"x", &sealed), Err(OpenError::UnknownVersion(1)));
        new.retired.push(old.current.clone());
        assert_eq!(new.open(b"x", &sealed).unwrap(), b"old");
        assert_eq!(new.seal(b"x", b"old").key_version, 2);
    }

    #[test]
    fn master_keys_are_read_with_their_version_and_never_printed() {
        let hex = "ab".repeat(32);
        let key = MasterKey::parse(&format!("v3:{hex}")).unwrap();
        assert_eq!(key.version, 3);
        assert_eq!(MasterKey::parse(&hex).unwrap().version, 1);
        assert!(!format!("{key:?}").contains("ab"));
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
    }
}
