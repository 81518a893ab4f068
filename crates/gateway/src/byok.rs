//! Bring your own key: an account's provider keys, sealed with XChaCha20-Poly1305 under the
//! operator's master key (the account and provider bound in as associated data), and the
//! addresses a provider's base URL may point to.

use ledger::AccountId;
use serde::{Deserialize, Serialize};
use store::records::{Kind, Lookup};

pub use server::outbound::{PublicOnly, is_private};
use server::sealing::Sealed;
pub use server::sealing::{Keyring, MASTER_KEY_LEN, MasterKey, OpenError};

/// A provider key as stored: sealed, never in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderKey {
    /// The account it belongs to.
    pub account: String,
    /// The provider (`openai`, `anthropic`, …).
    pub provider: String,
    /// Where its calls go, when not the provider's own API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The key's last four characters, to tell keys apart.
    pub last4: String,
    /// The master key version that sealed it.
    pub key_version: u32,
    /// The 24-byte nonce, as hex.
    pub nonce: String,
    /// The sealed key and its tag, as hex.
    pub ciphertext: String,
}

impl Kind for ProviderKey {
    const KIND: &'static str = "provider_key";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::ordered("account", self.account.clone())]
    }
}

/// The record id of an account's key for a provider.
pub fn record_id(account: &AccountId, provider: &str) -> String {
    format!("{}/{provider}", account.as_str())
}

/// What is bound to a sealed key beside the key itself: the account and the
/// provider, so that a ciphertext moved to another record does not open.
fn associated_data(account: &str, provider: &str) -> Vec<u8> {
    format!("creditd provider key\0{account}\0{provider}").into_bytes()
}

/// Sealing and opening provider keys with the master keys.
pub trait ProviderKeys {
    /// Seals `api_key` for `account` and `provider` under the current master key.
    fn seal_key(
        &self,
        account: &AccountId,
        provider: &str,
        api_key: &str,
        base_url: Option<String>,
    ) -> ProviderKey;

    /// Opens a sealed key, checking it belongs to `account` and `provider`.
    fn open_key(
        &self,
        account: &AccountId,
        provider: &str,
        sealed: &ProviderKey,
    ) -> Result<String, OpenError>;
}

impl ProviderKeys for Keyring {
    fn seal_key(
        &self,
        account: &AccountId,
        provider: &str,
        api_key: &str,
        base_url: Option<String>,
    ) -> ProviderKey {
        let aad = associated_data(account.as_str(), provider);
        let sealed = self.seal(&aad, api_key.as_bytes());
        ProviderKey {
            account: account.as_str().to_owned(),
            provider: provider.to_owned(),
            base_url,
            last4: api_key
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
            key_version: sealed.key_version,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        }
    }

    fn open_key(
        &self,
        account: &AccountId,
        provider: &str,
        sealed: &ProviderKey,
    ) -> Result<String, OpenError> {
        let aad = associated_data(account.as_str(), provider);
        let opened = self.open(
            &aad,
            &Sealed {
                key_version: sealed.key_version,
                nonce: sealed.nonce.clone(),
                ciphertext: sealed.ciphertext.clone(),
            },
        )?;
        String::from_utf8(opened).map_err(|_| OpenError::Forged)
    }
}

/// What resealing under the current master key did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rotated {
    /// Keys resealed under the current master key.
    pub resealed: usize,
    /// Keys already sealed under it.
    pub current: usize,
    /// Keys that could not be opened (an unknown version, or forged), by record id.
    pub failed: Vec<String>,
}

/// Reseals every provider key not sealed under the current master key,
/// each at the version it was read at (a key changed meanwhile is read
/// again by the next run).
pub async fn rotate(
    store: &dyn store::Store,
    keyring: &Keyring,
) -> Result<Rotated, store::StoreError> {
    use store::records::{self, Expect, RecordFilter, Written};
    let mut out = Rotated::default();
    for doc in records::list_all::<ProviderKey>(store, RecordFilter::All).await? {
        if doc.body.key_version == keyring.current.version {
            out.current += 1;
            continue;
        }
        let Ok(account) = AccountId::parse(&doc.body.account) else {
            out.failed.push(doc.id);
            continue;
        };
        let Ok(key) = keyring.open_key(&account, &doc.body.provider, &doc.body) else {
            out.failed.push(doc.id);
            continue;
        };
        let resealed = keyring.seal_key(
            &account,
            &doc.body.provider,
            &key,
            doc.body.base_url.clone(),
        );
        let write = records::put(&doc.id, &resealed, Expect::Version(doc.version));
        match records::write::<ProviderKey>(store, write).await? {
            Written::Stored(_) => out.resealed += 1,
            _ => out.failed.push(doc.id),
        }
    }
    Ok(out)
}

/// The longest base URL accepted, in characters.
pub const BASE_URL_LEN_MAX: usize = 2048;

/// Checks a provider's base URL: `https://` (or `http://`) with a host, at
/// most [`BASE_URL_LEN_MAX`] characters; a private address written in it,
/// or a name of one label (`localhost`, or any name the resolver completes
/// with its search domains inside the operator's network), only when
/// private upstreams are allowed. Host names
/// are checked when they are resolved, by [`PublicOnly`].
pub fn check_base_url(url: &str, allow_private: bool) -> Result<(), String> {
    if url.chars().count() > BASE_URL_LEN_MAX {
        return Err(format!(
            "base_url is longer than {BASE_URL_LEN_MAX} characters"
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| "base_url is not a URL".to_owned())?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("base_url must start with https:// or http://".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("base_url must not carry credentials".into());
    }
    let Some(private) = server::outbound::host_is_private(&parsed) else {
        return Err("base_url has no host".into());
    };
    if private && !allow_private {
        return Err(
            "base_url points to a private, loopback or link-local address or to a name of one \
             label, which the operator does not allow (CREDITD_ALLOW_PRIVATE_UPSTREAMS)"
                .into(),
        );
    }
    Ok(())
}

/// A client for customers' upstreams: private addresses refused unless
/// the operator allows them.
pub fn client(allow_private: bool) -> reqwest::Client {
    server::outbound::client(allow_private, std::time::Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use server::sealing::to_hex;

    fn keyring(version: u32, byte: u8) -> Keyring {
        Keyring {
            current: MasterKey::from_bytes(version, [byte; 32]),
            retired: Vec::new(),
        }
    }

    #[test]
    fn a_sealed_key_opens_for_its_account_and_provider_only() {
        let ring = keyring(1, 7);
        let acme = AccountId::parse("acme").unwrap();
        let other = AccountId::parse("other").unwrap();
        let sealed = ring.seal_key(&acme, "openai", "sk-secret-1234", None);
        assert_eq!(sealed.last4, "1234");
        assert!(!sealed.ciphertext.contains(&to_hex(b"sk-secret")));
        assert_eq!(
            ring.open_key(&acme, "openai", &sealed).unwrap(),
            "sk-secret-1234"
        );
        assert_eq!(
            ring.open_key(&other, "openai", &sealed),
            Err(OpenError::Forged)
        );
        assert_eq!(
            ring.open_key(&acme, "anthropic", &sealed),
            Err(OpenError::Forged)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(0..2, "00");
        if tampered.ciphertext != sealed.ciphertext {
            assert_eq!(
                ring.open_key(&acme, "openai", &tampered),
                Err(OpenError::Forged)
            );
        }
        // Two seals of one key differ: each has its own nonce.
        assert_ne!(
            ring.seal_key(&acme, "openai", "sk-secret-1234", None)
                .ciphertext,
            sealed.ciphertext
        );
    }

    #[test]
    fn a_rotated_keyring_opens_old_keys_through_the_retired_master() {
        let acme = AccountId::parse("acme").unwrap();
        let old = keyring(1, 7);
        let sealed = old.seal_key(&acme, "openai", "sk-old", None);
        let mut new = keyring(2, 9);
        assert_eq!(
            new.open_key(&acme, "openai", &sealed),
            Err(OpenError::UnknownVersion(1))
        );
        new.retired.push(old.current.clone());
        assert_eq!(new.open_key(&acme, "openai", &sealed).unwrap(), "sk-old");
        assert_eq!(new.seal_key(&acme, "openai", "sk-old", None).key_version, 2);
    }

    #[test]
    fn private_loopback_and_link_local_addresses_are_refused() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
        assert!(check_base_url("https://api.openai.com/v1", false).is_ok());
        assert!(check_base_url("http://169.254.169.254/latest", false).is_err());
        assert!(check_base_url("http://[::1]:8080", false).is_err());
        assert!(check_base_url("http://localhost:8080", false).is_err());
        assert!(check_base_url("http://proxy.:8080", false).is_err());
        assert!(check_base_url("http://proxy:8080", true).is_ok());
        assert!(check_base_url("https://llm.example.com.:8443/v1", false).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(BASE_URL_LEN_MAX));
        assert!(check_base_url(&long, false).is_err());
        assert!(check_base_url("http://127.0.0.1:8080", true).is_ok());
        assert!(check_base_url("ftp://example.com", false).is_err());
        assert!(check_base_url("https://user:pw@example.com", false).is_err());
    }
}
