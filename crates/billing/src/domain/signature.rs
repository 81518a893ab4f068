//! Stripe's webhook signatures: `Stripe-Signature: t=…,v1=…`, an HMAC-SHA256 of `"{t}.{body}"`
//! under the endpoint's secret, checked in constant time within a tolerance around now.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a signature's timestamp may be from now, either way, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// The most `v1` signatures one header may carry.
const SIGNATURES_MAX: usize = 16;

/// Why a webhook's signature is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    Missing,
    /// A header that is not `t=…,v1=…`.
    Malformed,
    /// No `v1` signature (only `v0`, Stripe's test scheme, or none).
    NoV1,
    /// The timestamp is more than the tolerance before now.
    TooOld,
    /// The timestamp is more than the tolerance after now.
    TooNew,
    /// No `v1` matches the body.
    Mismatch,
}

impl SignatureError {
    /// What went wrong, for a person.
    pub fn message(self) -> &'static str {
        match self {
            SignatureError::Missing => "no Stripe-Signature header",
            SignatureError::Malformed => "the Stripe-Signature header is not t=…,v1=…",
            SignatureError::NoV1 => "the Stripe-Signature header has no v1 signature",
            SignatureError::TooOld => "the signature's timestamp is too old",
            SignatureError::TooNew => "the signature's timestamp is in the future",
            SignatureError::Mismatch => "no v1 signature matches the body",
        }
    }
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `header` against `body` and `secret` at `now_secs`; answers the
/// signature's timestamp. Any one `v1` may match; each is compared in
/// constant time.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now_secs: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" => {
                let t: i64 = value.parse().map_err(|_| SignatureError::Malformed)?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            "v1" if signatures.len() < SIGNATURES_MAX => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoV1);
    }
    if timestamp < now_secs.saturating_sub(TOLERANCE_SECS) {
        return Err(SignatureError::TooOld);
    }
    if timestamp > now_secs.saturating_add(TOLERANCE_SECS) {
        return Err(SignatureError::TooNew);
    }
    let expected = mac(secret, timestamp, body);
    let matched = signatures.iter().any(|signature| {
        from_hex(signature).is_some_and(|bytes| expected.clone().verify_slice(&bytes).is_ok())
    });
    if matched {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A `Stripe-Signature` header for `body` at `timestamp`, as Stripe signs.
pub fn sign(body: &[u8], secret: &[u8], timestamp: i64) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
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

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_signature_made_for_the_body_is_accepted() {
        let header = sign(BODY, SECRET, NOW);
        assert_eq!(verify(Some(&header), BODY, SECRET, NOW), Ok(NOW));
        assert_eq!(verify(Some(&header), BODY, SECRET, NOW + 299), Ok(NOW));
    }

    #[test]
    fn the_signature_matrix_is_refused_as_stripe_refuses_it() {
        let good = sign(BODY, SECRET, NOW);
        let v1 = good.split_once(",v1=").unwrap().1;
        let wrong = format!("t={NOW},v1={}", "0".repeat(64));
        let mut changed = BODY.to_vec();
        changed[5] ^= 1;
        assert_eq!(
            verify(None, BODY, SECRET, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some(&wrong), BODY, SECRET, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&good), &changed, SECRET, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&good), BODY, b"other", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&good), BODY, SECRET, NOW + 301),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            verify(Some(&good), BODY, SECRET, NOW - 301),
            Err(SignatureError::TooNew)
        );
        let only_v0 = format!("t={NOW},v0={v1}");
        assert_eq!(
            verify(Some(&only_v0), BODY, SECRET, NOW),
            Err(SignatureError::NoV1)
        );
        for malformed in [
            "",
            "garbage",
            "v1=ab",
            "t=abc,v1=ab",
            &format!("t=1,t=2,v1={v1}"),
        ] {
            assert_eq!(
                verify(Some(malformed), BODY, SECRET, NOW),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        // One good v1 among bad ones is enough.
        let among = format!("t={NOW},v1={},v1={v1},v0=zz,v1=nothex", "1".repeat(64));
        assert_eq!(verify(Some(&among), BODY, SECRET, NOW), Ok(NOW));
    }

    #[test]
    fn a_signature_matches_an_independently_known_digest() {
        // HMAC-SHA256 of "1700000000.{}" under "secret", from a second
        // implementation (Python's hmac module).
        let header = sign(b"{}", b"secret", 1_700_000_000);
        assert_eq!(
            header,
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
