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
    let body = state.metrics.render(state.store.stats());
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
