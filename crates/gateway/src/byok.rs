//! Bring your own key: an account's provider keys, sealed with XChaCha20-Poly1305 under the
//! operator's master key (the account and provider bound in as associated data), and the
//! addresses a provider's base URL may point to.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ledger::AccountId;
use serde::{Deserialize, Serialize};
use store::records::{Kind, Lookup};

/// The length of a master key, in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// One master key and its version. Never printed.
#[derive(Clone)]
pub struct MasterKey {
    /// Its version, stored beside every key sealed with it.
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
}

/// The master keys: the current one, which seals, and retired ones, which
/// only open what they sealed until `creditd keys rotate-master` reseals it.
#[derive(Clone, Debug)]
pub struct Keyring {
    /// Seals new keys.
    pub current: MasterKey,
    /// Open keys sealed before a rotation.
    pub retired: Vec<MasterKey>,
}

/// Why a sealed key cannot be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Sealed under a master key version this node does not have.
    UnknownVersion(u32),
    /// The ciphertext, nonce or associated data do not match: tampered
    /// with, or moved to another account's or provider's record.
    Forged,
}

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

impl Keyring {
    /// Seals `api_key` for `account` and `provider` under the current master key.
    pub fn seal(
        &self,
        account: &AccountId,
        provider: &str,
        api_key: &str,
        base_url: Option<String>,
    ) -> ProviderKey {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("random bytes for a nonce");
        let cipher = XChaCha20Poly1305::new((&self.current.key).into());
        let aad = associated_data(account.as_str(), provider);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: api_key.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("sealing never fails for keys this short");
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
            key_version: self.current.version,
            nonce: to_hex(&nonce),
            ciphertext: to_hex(&sealed),
        }
    }

    /// Opens a sealed key, checking it belongs to `account` and `provider`.
    pub fn open(
        &self,
        account: &AccountId,
        provider: &str,
        sealed: &ProviderKey,
    ) -> Result<String, OpenError> {
        let master = std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|k| k.version == sealed.key_version)
            .ok_or(OpenError::UnknownVersion(sealed.key_version))?;
        let nonce = from_hex(&sealed.nonce)
            .filter(|n| n.len() == 24)
            .ok_or(OpenError::Forged)?;
        let ciphertext = from_hex(&sealed.ciphertext).ok_or(OpenError::Forged)?;
        let cipher = XChaCha20Poly1305::new((&master.key).into());
        let aad = associated_data(account.as_str(), provider);
        let opened = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Forged)?;
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
        let Ok(key) = keyring.open(&account, &doc.body.provider, &doc.body) else {
            out.failed.push(doc.id);
            continue;
        };
        let resealed = keyring.seal(
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

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether an address is one a customer's upstream may not point to:
/// loopback, private, link-local, unspecified, shared (100.64/10),
/// unique-local or multicast — the operator's own network.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
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
    let private = match parsed.host() {
        None => return Err("base_url has no host".into()),
        Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => !name.trim_end_matches('.').contains('.'),
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

/// Resolves host names for calls to customers' upstreams and refuses
/// private addresses, so that a name that resolves (or later re-resolves)
/// into the operator's network is never reached.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// A client for customers' upstreams: private addresses refused unless
/// the operator allows them.
pub fn client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(300))
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build().expect("an HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(version: u32, byte: u8) -> Keyring {
        Keyring {
            current: MasterKey {
                version,
                key: [byte; 32],
            },
            retired: Vec::new(),
        }
    }

    #[test]
    fn a_sealed_key_opens_for_its_account_and_provider_only() {
        let ring = keyring(1, 7);
        let acme = AccountId::parse("acme").unwrap();
        let other = AccountId::parse("other").unwrap();
        let sealed = ring.seal(&acme, "openai", "sk-secret-1234", None);
        assert_eq!(sealed.last4, "1234");
        assert!(!sealed.ciphertext.contains(&to_hex(b"sk-secret")));
        assert_eq!(
            ring.open(&acme, "openai", &sealed).unwrap(),
            "sk-secret-1234"
        );
        assert_eq!(ring.open(&other, "openai", &sealed), Err(OpenError::Forged));
        assert_eq!(
            ring.open(&acme, "anthropic", &sealed),
            Err(OpenError::Forged)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(0..2, "00");
        if tampered.ciphertext != sealed.ciphertext {
            assert_eq!(
                ring.open(&acme, "openai", &tampered),
                Err(OpenError::Forged)
            );
        }
        // Two seals of one key differ: each has its own nonce.
        assert_ne!(
            ring.seal(&acme, "openai", "sk-secret-1234", None)
                .ciphertext,
            sealed.ciphertext
        );
    }

    #[test]
    fn a_rotated_keyring_opens_old_keys_through_the_retired_master() {
        let acme = AccountId::parse("acme").unwrap();
        let old = keyring(1, 7);
        let sealed = old.seal(&acme, "openai", "sk-old", None);
        let mut new = keyring(2, 9);
        assert_eq!(
            new.open(&acme, "openai", &sealed),
            Err(OpenError::UnknownVersion(1))
        );
        new.retired.push(old.current.clone());
        assert_eq!(new.open(&acme, "openai", &sealed).unwrap(), "sk-old");
        assert_eq!(new.seal(&acme, "openai", "sk-old", None).key_version, 2);
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
