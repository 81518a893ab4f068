//! The AI gateway: OpenAI- and Anthropic-compatible endpoints that price every call per model
//! and charge it in credits through a hold, or pass it through with the customer's own key.
//!
//! A call holds its worst case before it goes upstream (one durable write on the way to the
//! first byte), and settles the hold from the usage the upstream reports, recording the call in
//! the same write: there is never a charge without a record nor a record without a charge.

pub mod api;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod proxy;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use store::{Clock, Store};

pub use config::{GatewayConfig, Upstream};

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
}

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
        Gateway {
            store,
            clock,
            config,
            catalog: catalog::Catalog::default(),
            http,
        }
    }

    /// The gateway's routes and error codes, to plug into the server.
    pub fn capability(self: &Arc<Gateway>) -> server::Capability {
        server::Capability {
            routes: api::routes(self),
            errors: error::GatewayError::codes(),
        }
    }
}
