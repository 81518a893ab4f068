//! The models a caller can call, as OpenAI's model list writes them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use server::error::ApiError;
use server::openapi::Doc;
use server::render;
use server::routes::Routes;
use server::{Access, Route};
use utoipa::ToSchema;

use crate::Gateway;
use crate::catalog;
use crate::error::openai_error;

use super::GatewayState;

/// The model list's route, answered in OpenAI's format.
pub(super) fn routes(routes: &Routes<Arc<Gateway>>) -> Vec<Route> {
    vec![
        routes
            .route(Access::Customer, Doc::of::<__path_list>(), list)
            .with_dialect(openai_error),
    ]
}

/// A model as OpenAI's model list writes it.
#[derive(Serialize, ToSchema)]
struct ModelView {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: String,
}

/// OpenAI's model list.
#[derive(Serialize, ToSchema)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelView>,
}

/// List the models (OpenAI-compatible)
///
/// The models of the catalog the caller can call: priced, with an upstream
/// configured for them.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "gateway",
    operation_id = "listModels",
    responses(
        (status = 200, description = "OpenAI's model list.", body = ModelList),
        (status = 401, description = "`unauthorized`."),
    ),
)]
async fn list(State(gateway): GatewayState) -> Response {
    match model_list(&gateway).await {
        Ok(response) => response,
        Err(error) => openai_error(&error),
    }
}

async fn model_list(gateway: &Gateway) -> Result<Response, ApiError> {
    let prices = catalog::all(gateway.store.as_ref(), None).await?;
    let data = prices
        .iter()
        .filter(|doc| {
            !gateway
                .config
                .route_of(&doc.body.upstreams, doc.body.wire())
                .is_empty()
        })
        .map(|doc| ModelView {
            id: doc.id.clone(),
            object: "model",
            created: doc.created_at.micros() / ledger::MICROS_PER_SECOND,
            owned_by: doc.body.provider.clone(),
        })
        .collect();
    Ok(render::json(
        StatusCode::OK,
        &ModelList {
            object: "list",
            data,
        },
    ))
}
