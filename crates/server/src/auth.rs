//! API keys: the admin key, kept only as a SHA-256 hash, checked on every `/v1` request.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use store::{Store, StoreError};

use crate::AppState;
use crate::error::ApiError;

/// The settings key under which a generated admin key's hash is stored.
const ADMIN_KEY_SETTING: &str = "admin_key_sha256";

/// An API key as the operator holds it. Never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: String) -> Secret {
        Secret(key)
    }

    /// The key itself, for showing it once to the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The SHA-256 of an API key. Keys are long and random, so a plain hash is
/// enough to make a leaked database useless for authenticating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Hashes a key.
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(text: &str) -> Option<KeyHash> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(KeyHash(out))
    }

    /// Compares in constant time, so the comparison leaks nothing about the key.
    fn matches(&self, other: &KeyHash) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The admin key in force, and the key itself when it was generated just now
/// (to be shown to the operator once).
pub struct AdminKey {
    /// The hash requests are checked against.
    pub hash: KeyHash,
    /// Set only on the start that generated the key.
    pub generated: Option<Secret>,
}

/// Decides the admin key: the configured one if there is one; otherwise the
/// one generated on an earlier start; otherwise a new random key, stored hashed.
pub async fn admin_key(
    store: &dyn Store,
    configured: Option<&Secret>,
) -> Result<AdminKey, StoreError> {
    if let Some(key) = configured {
        return Ok(AdminKey {
            hash: KeyHash::of(key.expose()),
            generated: None,
        });
    }
    if let Some(stored) = store.setting(ADMIN_KEY_SETTING).await? {
        let hash = KeyHash::from_hex(&stored)
            .ok_or_else(|| StoreError::Corrupt("bad admin key hash".to_owned()))?;
        return Ok(AdminKey {
            hash,
            generated: None,
        });
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Internal(e.to_string()))?;
    let key: String = std::iter::once("cd_admin_".to_owned())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    let hash = KeyHash::of(&key);
    // Another node may have generated one at the same moment; the first stored wins.
    let stored = store.init_setting(ADMIN_KEY_SETTING, hash.to_hex()).await?;
    if stored != hash.to_hex() {
        let hash = KeyHash::from_hex(&stored)
            .ok_or_else(|| StoreError::Corrupt("bad admin key hash".to_owned()))?;
        return Ok(AdminKey {
            hash,
            generated: None,
        });
    }
    Ok(AdminKey {
        hash,
        generated: Some(Secret::new(key)),
    })
}

/// Lets a request through only with `Authorization: Bearer <admin key>`.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    match presented {
        Some(key) if KeyHash::of(key).matches(&state.admin_key) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_round_trips_through_hex_and_matches_only_its_key() {
        let hash = KeyHash::of("secret");
        assert!(KeyHash::from_hex(&hash.to_hex()).unwrap().matches(&hash));
        assert!(!KeyHash::of("Secret").matches(&hash));
        assert!(KeyHash::from_hex("zz").is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("k".into())), "Secret(***)");
    }
}
