//! Health, metrics and the API description; none needs a key.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::Served;
use crate::{metrics, render};

/// The answer of a health check.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// Health check
///
/// Answers 200 when the database responds to a ping and 503 when it does
/// not.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    operation_id = "getHealth",
    responses(
        (status = 200, description = "The service and its database are up.", body = Health),
        (status = 500, description = "`internal_error`: the ping failed in an unexpected way."),
        (status = 503, description = "`store_unavailable`: the database did not answer."),
    ),
)]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    state.store.ping().await?;
    Ok(render::json(StatusCode::OK, &Health { status: "ok" }))
}

/// What a readiness check found.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready`, or `not_ready` when a check failed.
    #[schema(pattern = "^(ready|not_ready)$")]
    status: &'static str,
    /// `ok`, or `unavailable` when the database did not answer.
    #[schema(pattern = "^(ok|unavailable)$")]
    store: &'static str,
    /// The newest migration the database has applied and the newest this
    /// build knows; not ready while the first is below the second. Null
    /// when the database did not answer.
    migrations: Option<MigrationsView>,
    /// `running`; `not_started` on a server that runs no jobs; or
    /// `stalled`, with the jobs that have not begun a round for three of
    /// their intervals and more.
    #[schema(pattern = "^(running|not_started|stalled)$")]
    jobs: &'static str,
    /// The stalled jobs, by name.
    stalled_jobs: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
struct MigrationsView {
    applied: i64,
    known: i64,
}

/// Readiness check
///
/// Answers 200 when this node can serve: its database answers, has every
/// migration this build knows, and its background jobs (expiries,
/// renewals, top-ups, key refreshes) are running; 503 with what failed
/// otherwise. `/healthz` says whether the process is alive; this says
/// whether to send it traffic.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    operation_id = "getReadiness",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready: the body says which check failed.",
            body = Readiness),
    ),
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let migrations = state.store.migrations().await.ok();
    let store = if migrations.is_some() {
        "ok"
    } else {
        "unavailable"
    };
    let stalled = state.jobs_health.stalled();
    let jobs = match &stalled {
        None => "not_started",
        Some(names) if names.is_empty() => "running",
        Some(_) => "stalled",
    };
    let ready = migrations.is_some_and(|m| m.applied >= m.known) && jobs == "running";
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        store,
        migrations: migrations.map(|m| MigrationsView {
            applied: m.applied,
            known: m.known,
        }),
        jobs,
        stalled_jobs: stalled.unwrap_or_default(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    render::json(status, &body)
}

/// Prometheus metrics
///
/// Request counts by method, route template and status, latency histograms
/// by method and route template, counters of the store's group-commit write
/// batches, and the process's CPU time, memory and file descriptors, in the
/// Prometheus text exposition format. docs/operations.md lists every
/// metric.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    operation_id = "getMetrics",
    responses(
        (status = 200, description = "Every metric, in the Prometheus text format.",
            body = String, content_type = metrics::CONTENT_TYPE),
    ),
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // Read at each scrape; a store that does not answer leaves it out, and
    // the metrics are answered still.
    let pending = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.store.pending_holds(),
    )
    .await
    .ok()
    .and_then(Result::ok);
    let body = state.metrics.render(state.store.stats(), pending);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// This API description
///
/// Returns this OpenAPI document, generated from the server's routes and
/// types when it starts.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    operation_id = "getOpenApi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = Object),
    ),
)]
pub async fn openapi(Extension(Served(description)): Extension<Served>) -> Response {
    let mut response = description.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
