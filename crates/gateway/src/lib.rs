//! The AI gateway: OpenAI- and Anthropic-compatible endpoints that price every call per model
//! and charge it in credits through a hold, or pass it through with the customer's own key.
//!
//! A call holds its worst case before it goes upstream (one durable write on the way to the
//! first byte), and settles the hold from the usage the upstream reports, recording the call in
//! the same write: there is never a charge without a record nor a record without a charge.

pub mod api;
pub mod byok;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod limit;
pub mod proxy;
pub mod sse;
pub mod usage;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ledger::AccountId;
use server::Secret;
use server::account_billing::{self, AccountBilling};
use server::error::ApiError;
use store::records;
use store::{Clock, Store};

use crate::domain::Wire;
use crate::error::GatewayError;

pub use config::{GatewayConfig, Upstream};

/// The most tokens a minute a key may be held to.
pub const TOKENS_PER_MINUTE_MAX: u32 = 1_000_000_000;

/// The kinds of record the gateway keeps. A kind's name is its records' key
/// in the store, shared with every other crate's: a test where all the
/// crates meet checks that no two kinds share a name.
pub const RECORD_KINDS: &[&str] = &[
    <domain::ModelPrice as records::Kind>::KIND,
    <byok::ProviderKey as records::Kind>::KIND,
    <limit::KeySpend as records::Kind>::KIND,
];

/// The gateway's state.
pub struct Gateway {
    /// The ledger's storage, where prices and calls live too.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The operator's configuration.
    pub config: GatewayConfig,
    /// Prices, cached for the call path.
    pub catalog: catalog::Catalog,
    /// The client calls go upstream with.
    pub http: reqwest::Client,
    /// The client BYOK calls go to customers' upstreams with: private
    /// addresses refused unless the operator allows them.
    pub byok_http: reqwest::Client,
    /// Serializes the writes of keys with spend limits.
    pub limiter: limit::Limiter,
    /// The keys' buckets of tokens a minute, on this node.
    pub token_limits: limit::TokenLimits,
    billing: RwLock<HashMap<AccountId, (Instant, AccountBilling)>>,
    /// The server's metrics, once it is plugged in.
    metrics: server::metrics::MetricsHandle,
}

/// How long an account's billing mode read from the store answers calls
/// before it is read again.
const BILLING_FRESH_FOR: Duration = Duration::from_secs(1);

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an upstream may send nothing while answering.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

impl Gateway {
    /// The gateway over a store.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: GatewayConfig) -> Gateway {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client");
        let byok_http = byok::client(config.allow_private_upstreams);
        Gateway {
            store,
            clock,
            config,
            catalog: catalog::Catalog::default(),
            http,
            byok_http,
            limiter: limit::Limiter::default(),
            token_limits: limit::TokenLimits::default(),
            billing: RwLock::new(HashMap::new()),
            metrics: server::metrics::MetricsHandle::new(),
        }
    }

    /// The account's billing mode and fee, read at most once a second.
    pub async fn billing_of(&self, account: &AccountId) -> Result<AccountBilling, ApiError> {
        {
            let cached = self.billing.read().unwrap_or_else(|e| e.into_inner());
            if let Some((at, billing)) = cached.get(account)
                && at.elapsed() < BILLING_FRESH_FOR
            {
                return Ok(billing.clone());
            }
        }
        let (billing, _) = account_billing::read(self.store.as_ref(), account).await?;
        let mut cached = self.billing.write().unwrap_or_else(|e| e.into_inner());
        if cached.len() > 100_000 {
            cached.clear();
        }
        cached.insert(account.clone(), (Instant::now(), billing.clone()));
        Ok(billing)
    }

    /// The master keys, or `byok_not_configured`.
    pub fn keyring(&self) -> Result<&byok::Keyring, GatewayError> {
        self.config
            .keyring
            .as_ref()
            .ok_or(GatewayError::ByokNotConfigured)
    }

    /// Where a BYOK account's call to `provider` goes: its own key, opened
    /// here and held only for the call, to its base URL or the provider's.
    pub async fn byok_upstream(
        &self,
        account: &AccountId,
        provider: &str,
    ) -> Result<Upstream, ApiError> {
        let keyring = self.keyring()?;
        let id = byok::record_id(account, provider);
        let sealed = records::get::<byok::ProviderKey>(self.store.as_ref(), &id)
            .await?
            .ok_or_else(|| GatewayError::ProviderKeyMissing(provider.to_owned()))?;
        let key = byok::ProviderKeys::open_key(keyring, account, provider, &sealed.body).map_err(
            |e| match e {
                byok::OpenError::UnknownVersion(version) => ApiError::Internal(format!(
                    "a provider key is sealed under master key version {version}, which this \
                     node does not have"
                )),
                byok::OpenError::Forged => {
                    ApiError::Internal("a provider key does not open for its record".into())
                }
            },
        )?;
        let wire = Wire::of_provider(provider);
        let base_url = match (&sealed.body.base_url, provider) {
            (Some(url), _) => url.clone(),
            (None, config::OPENAI_UPSTREAM) => "https://api.openai.com/v1".to_owned(),
            (None, config::ANTHROPIC_UPSTREAM) => "https://api.anthropic.com".to_owned(),
            (None, other) => {
                return Err(GatewayError::InvalidProviderKey(format!(
                    "the key for {other:?} has no base_url"
                ))
                .into());
            }
        };
        Ok(Upstream {
            wire,
            base_url,
            api_key: Some(Secret::new(key)),
            keyless: false,
        })
    }

    /// The gateway's routes and error codes, to plug into the server; it
    /// has no background job and no policy.
    pub fn capability(self: &Arc<Gateway>) -> server::Capability {
        server::Capability::new(api::routes(self), error::GatewayError::codes())
            .with_metrics(self.metrics.clone())
    }

    /// The server's metrics, once it is plugged in.
    pub fn metrics(&self) -> Option<&server::Metrics> {
        self.metrics.get()
    }
}

impl server::extract::HasStore for Gateway {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

#[cfg(test)]
mod record_kinds {
    #[test]
    fn the_list_of_record_kinds_names_every_kind_the_gateway_declares() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut listed: Vec<&str> = super::RECORD_KINDS.to_vec();
        listed.sort_unstable();
        assert_eq!(testkit::kinds::declared_in(&src), listed);
    }
}
