//! Secret tokens (a dashboard link, a session cookie, an embed token, a
//! form's CSRF token): made of 32 random bytes by the caller, shown once,
//! and kept only as their SHA-256, so that a copy of the database opens
//! nothing.

use sha2::{Digest, Sha256};

/// The bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;

/// A token's text from its random bytes: a prefix naming what it is for,
/// then the bytes as lowercase hex.
pub fn text(prefix: &str, random: &[u8; TOKEN_BYTES]) -> String {
    let mut text = String::with_capacity(prefix.len() + 2 * TOKEN_BYTES);
    text.push_str(prefix);
    for byte in random {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The id a token is kept under: the hex SHA-256 of its text.
pub fn hashed(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `token` has the shape of a token of `prefix`: read before
/// anything is looked up, so that junk costs no read.
pub fn is_shaped(prefix: &str, token: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 2 * TOKEN_BYTES && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_its_prefix_and_64_hex_digits() {
        let token = text("cdl_", &[0xab; TOKEN_BYTES]);
        assert_eq!(token.len(), 4 + 64);
        assert!(is_shaped("cdl_", &token));
        assert!(!is_shaped("cds_", &token));
        assert!(!is_shaped("cdl_", &token[..40]));
        assert!(!is_shaped("cdl_", &format!("cdl_{}", "z".repeat(64))));
    }

    #[test]
    fn a_token_is_kept_as_a_hash_that_differs_from_it() {
        let token = text("cdl_", &[1; TOKEN_BYTES]);
        let kept = hashed(&token);
        assert_eq!(kept.len(), 64);
        assert!(!kept.contains(&token[4..]));
        assert_eq!(kept, hashed(&token));
        assert_ne!(kept, hashed(&text("cdl_", &[2; TOKEN_BYTES])));
    }

    #[test]
    fn secrets_are_the_same_only_when_every_byte_is() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
