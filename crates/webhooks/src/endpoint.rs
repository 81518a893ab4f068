//! An operator's webhook endpoint, as a record: where events go, which types, its signing
//! secrets (sealed under the master key), and whether it is failing or disabled.

use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use server::events::EventType;
use server::sealing::{Keyring, OpenError, Sealed};
use store::records::{Kind, Lookup};

/// The most endpoints an operator may register.
pub const ENDPOINTS_MAX: usize = 16;

/// How long a rotated-out secret keeps signing beside the new one, unless
/// the rotation says otherwise: a day, as Stripe does.
pub const PREVIOUS_SECRET_HOURS: u32 = 24;

/// Why an endpoint receives nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disabled {
    /// An operator disabled it.
    Operator,
    /// Every delivery failed for three days.
    Failing,
}

/// A signing secret kept after a rotation, until it lapses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// The secret, sealed.
    pub secret: Sealed,
    /// When it stops signing, in micros.
    pub until_micros: i64,
}

/// A webhook endpoint, as a record of kind `webhook_endpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Where events are POSTed.
    pub url: String,
    /// The types it receives; empty: every type.
    pub events: Vec<EventType>,
    /// The operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The signing secret, sealed.
    pub secret: Sealed,
    /// The secret's last four characters, to tell secrets apart.
    pub secret_last4: String,
    /// The secret before the last rotation, while it still signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// Why it receives nothing, if it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
    /// Since when every delivery to it failed, in micros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_micros: Option<i64>,
    /// When it was disabled, in micros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at_micros: Option<i64>,
}

impl Kind for Endpoint {
    const KIND: &'static str = "webhook_endpoint";

    fn lookups(&self) -> Vec<Lookup> {
        Vec::new()
    }
}

impl Endpoint {
    /// Whether it receives events of `event_type` now.
    pub fn receives(&self, event_type: EventType) -> bool {
        self.disabled.is_none() && (self.events.is_empty() || self.events.contains(&event_type))
    }
}

/// A new signing secret: `whsec_` and 32 random bytes as hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random bytes for a secret");
    format!("whsec_{}", server::sealing::to_hex(&bytes))
}

/// What a secret of endpoint `id` is bound to: a sealed secret moved to
/// another endpoint's record does not open.
fn bound_to(id: &str) -> Vec<u8> {
    format!("creditd webhook endpoint\0{id}").into_bytes()
}

/// Seals endpoint `id`'s secret.
pub fn seal(keyring: &Keyring, id: &str, secret: &str) -> Sealed {
    keyring.seal(&bound_to(id), secret.as_bytes())
}

/// The secrets that sign endpoint `id`'s events at `now`: the current one,
/// then the previous one while it is in force.
pub fn secrets(
    keyring: &Keyring,
    id: &str,
    endpoint: &Endpoint,
    now: Timestamp,
) -> Result<Vec<String>, OpenError> {
    let open = |sealed: &Sealed| {
        keyring
            .open(&bound_to(id), sealed)
            .and_then(|b| String::from_utf8(b).map_err(|_| OpenError::Forged))
    };
    let mut out = vec![open(&endpoint.secret)?];
    if let Some(previous) = &endpoint.previous
        && previous.until_micros > now.micros()
    {
        out.push(open(&previous.secret)?);
    }
    Ok(out)
}

/// The last four characters of a secret.
pub fn last4(secret: &str) -> String {
    secret[secret.len().saturating_sub(4)..].to_owned()
}

/// What resealing endpoints' secrets under the current master key did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resealed {
    /// Endpoints whose secrets were sealed again.
    pub resealed: usize,
    /// Endpoints already sealed under it.
    pub current: usize,
    /// Endpoints whose secrets could not be opened, by id.
    pub failed: Vec<String>,
}

/// Seals every endpoint's secrets again under the current master key, each
/// endpoint at the version it was read at (one changed meanwhile is
/// counted failed and resealed by the next run).
pub async fn reseal(
    store: &dyn store::Store,
    keyring: &Keyring,
) -> Result<Resealed, store::StoreError> {
    use store::records::{self, Expect, RecordFilter, Written};
    let mut out = Resealed::default();
    for doc in records::list_all::<Endpoint>(store, RecordFilter::All).await? {
        let endpoint = &doc.body;
        let previous_version = endpoint.previous.as_ref().map(|p| p.secret.key_version);
        if endpoint.secret.key_version == keyring.current.version
            && previous_version.is_none_or(|v| v == keyring.current.version)
        {
            out.current += 1;
            continue;
        }
        let open = |sealed: &Sealed| {
            keyring
                .open(&bound_to(&doc.id), sealed)
                .map(|secret| keyring.seal(&bound_to(&doc.id), &secret))
        };
        let mut next = endpoint.clone();
        let resealed = open(&endpoint.secret).and_then(|secret| {
            next.secret = secret;
            if let Some(previous) = &mut next.previous {
                previous.secret = open(&previous.secret)?;
            }
            Ok(())
        });
        if resealed.is_err() {
            out.failed.push(doc.id);
            continue;
        }
        let write = records::put(&doc.id, &next, Expect::Version(doc.version));
        match records::write::<Endpoint>(store, write).await? {
            Written::Stored(_) => out.resealed += 1,
            _ => out.failed.push(doc.id),
        }
    }
    Ok(out)
}
