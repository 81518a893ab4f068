//! creditd's HTTP API: the axum router, authentication, handlers, metrics and
//! background jobs. Handlers parse requests into ledger types at the edge,
//! hand writes to the store's group commit, and render the outcome.

pub mod auth;
pub mod error;
pub mod extract;
mod handlers;
pub mod jobs;
pub mod metrics;
pub mod render;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;
use store::{Clock, Store};
use tokio::net::TcpListener;

pub use auth::{AdminKey, KeyHash, Secret};
pub use handlers::system::OPENAPI;
pub use jobs::JobsConfig;
pub use metrics::Metrics;

use error::ApiError;
use handlers::{accounts, features, grants, holds, system, transactions, usage};

/// What every handler shares.
pub struct AppState {
    /// The ledger's storage.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The admin key's hash.
    pub admin_key: KeyHash,
    /// Request counters.
    pub metrics: Metrics,
}

impl AppState {
    /// State around a store.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, admin_key: KeyHash) -> AppState {
        AppState {
            store,
            clock,
            admin_key,
            metrics: Metrics::default(),
        }
    }
}

/// Every route. `/v1` needs the admin key; health, metrics and the API
/// description do not.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/accounts", post(accounts::create).get(accounts::list))
        .route("/v1/accounts/{id}", get(accounts::get))
        .route("/v1/accounts/{id}/balance", get(accounts::balance))
        .route(
            "/v1/accounts/{id}/grants",
            post(grants::create).get(grants::list),
        )
        .route("/v1/accounts/{id}/consume", post(usage::consume))
        .route("/v1/accounts/{id}/check", post(usage::check))
        .route("/v1/accounts/{id}/holds", post(holds::create))
        .route("/v1/accounts/{id}/transactions", get(transactions::list))
        .route("/v1/grants/{id}", get(grants::get))
        .route("/v1/grants/{id}/void", post(grants::void))
        .route("/v1/holds/{id}", get(holds::get))
        .route("/v1/holds/{id}/commit", post(holds::commit))
        .route("/v1/holds/{id}/release", post(holds::release))
        .route("/v1/transactions/{id}", get(transactions::get))
        .route("/v1/transactions/{id}/refund", post(transactions::refund))
        .route("/v1/features", get(features::list))
        .route("/v1/features/{id}", put(features::put).get(features::get))
        .route_layer(from_fn_with_state(state.clone(), auth::require_key));
    Router::new()
        .merge(v1)
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(extract::BODY_LEN_MAX))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY, small responses on a kept-alive connection can
    // wait for the peer's delayed acknowledgement.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
