//! creditd's HTTP API: the axum router, authentication, handlers, metrics,
//! background jobs and the test clock. Handlers parse requests into ledger types at the edge,
//! hand writes to the store's group commit, and render the outcome.

pub mod account_billing;
pub mod app;
pub mod audit;
pub mod auth;
pub mod connections;
pub mod cors;
pub mod error;
pub mod events;
pub mod extract;
pub mod handlers;
pub mod idempotency;
pub mod in_process;
pub mod jobs;
pub mod json_objects;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod policy;
pub mod render;
pub mod request_id;
pub mod routes;
pub mod sealing;
pub mod test_clock;
pub mod top_up;
pub mod verify_run;

use std::future::Future;
use std::sync::Arc;

use store::{Clock, Store};
use tokio::net::TcpListener;

pub use auth::{Access, KeyHash, KeyKind, Keys, Principal, Secret, SpendLimit, SpendPeriod};

/// The kinds of record the server keeps. A kind's name is its records' key
/// in the store, shared with every other crate's: a test where all the
/// crates meet checks that no two kinds share a name.
pub const RECORD_KINDS: &[&str] = &[
    <auth::ApiKey as store::records::Kind>::KIND,
    <idempotency::KeptAnswer as store::records::Kind>::KIND,
    <account_billing::AccountBilling as store::records::Kind>::KIND,
    <test_clock::Offset as store::records::Kind>::KIND,
    <verify_run::VerifyRun as store::records::Kind>::KIND,
    <events::Event as store::records::Kind>::KIND,
    <audit::AuditEvent as store::records::Kind>::KIND,
];
pub use app::App;
pub use jobs::{Job, JobsConfig};
pub use metrics::Metrics;
pub use routes::{Capability, Route, router};

/// What every handler shares.
pub struct AppState {
    /// The ledger's storage.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The API keys, in memory.
    pub keys: Keys,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// What a capability decides inside the core's writes; [`App::new`]
    /// puts the one a capability brings here.
    pub policy: Arc<dyn policy::Policy>,
    /// The origins whose browsers may call the routes customer keys may.
    pub cors: cors::CorsOrigins,
    /// Where customers buy credits: added as `top_up_url` to every
    /// `402 insufficient_credits` answer when set (`CREDITD_TOP_UP_URL`).
    pub top_up_url: Option<top_up::TopUpUrl>,
    /// What one request may take: a place among those in flight, and time.
    pub limits: limits::RequestLimits,
    /// The rates keys are held to, and their buckets on this node.
    pub rate_limits: limits::RateLimits,
    /// The buckets of client addresses on the routes held by address.
    pub address_limits: limits::AddressLimits,
    /// Whether the background jobs are running, for `/readyz`.
    pub jobs_health: Arc<jobs::Health>,
    /// When an unknown key last made this node look for new keys.
    unknown_key_refresh: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// How often at most an unknown key makes a node read new keys at once,
/// rather than wait for the next refresh.
const UNKNOWN_KEY_REFRESH_MIN: std::time::Duration = std::time::Duration::from_millis(250);

impl AppState {
    /// State around a store, with the keys it will authenticate.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, keys: Keys) -> AppState {
        AppState {
            store,
            clock,
            keys,
            metrics: Arc::new(Metrics::default()),
            policy: Arc::new(policy::NoPolicy),
            cors: cors::CorsOrigins::default(),
            top_up_url: None,
            limits: limits::RequestLimits::default(),
            rate_limits: limits::RateLimits::default(),
            address_limits: limits::AddressLimits::default(),
            jobs_health: Arc::default(),
            unknown_key_refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// The same state, letting browsers on `origins` call the routes
    /// customer keys may (`CREDITD_CORS_ORIGINS`).
    pub fn with_cors(mut self, origins: cors::CorsOrigins) -> AppState {
        self.cors = origins;
        self
    }

    /// The same state, holding requests to `limits`.
    pub fn with_limits(mut self, limits: limits::RequestLimits) -> AppState {
        self.limits = limits;
        self
    }

    /// The same state, holding each kind of key (admin, service, customer)
    /// without a rate of its own to `by_kind` requests a second.
    pub fn with_rate_limits(mut self, by_kind: [Option<u32>; 3]) -> AppState {
        self.rate_limits = limits::RateLimits::new(by_kind);
        self
    }

    /// The same state, with every `402 insufficient_credits` answer
    /// carrying `url` as `top_up_url` (`CREDITD_TOP_UP_URL`).
    pub fn with_top_up_url(mut self, url: Option<top_up::TopUpUrl>) -> AppState {
        self.top_up_url = url;
        self
    }

    /// Called when a request presents a key this node does not know: it may
    /// have been created on another node a moment ago. Reads new keys,
    /// unless that was done in the last quarter second (so that a flood of
    /// bad keys costs the database at most four reads a second); true when
    /// the keys are fresh enough to look again.
    pub async fn keys_refreshed_for_unknown_key(&self) -> bool {
        let mut last = self.unknown_key_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KEY_REFRESH_MIN) {
            return true;
        }
        *last = Some(std::time::Instant::now());
        match self.keys.refresh(self.store.as_ref()).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "reading API keys failed");
                false
            }
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight, with the default [`connections::Limits`].
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve(listener, app, connections::Limits::default(), shutdown).await
}

#[cfg(test)]
mod record_kinds {
    #[test]
    fn the_list_of_record_kinds_names_every_kind_the_server_declares() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut listed: Vec<&str> = super::RECORD_KINDS.to_vec();
        listed.sort_unstable();
        assert_eq!(testkit::kinds::declared_in(&src), listed);
    }
}
