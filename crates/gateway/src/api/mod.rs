//! The gateway's routes, one module per resource: the OpenAI- and Anthropic-compatible calls,
//! the model list, the price catalog and its import, an account's provider keys and its usage,
//! each with its handlers, views and request types.

mod calls;
mod models;
mod prices;
mod provider_keys;
mod usage;

use std::sync::Arc;

use axum::extract::State;
use server::Route;
use server::routes::Routes;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::Gateway;

pub use prices::PRICE_LIST_LEN_MAX;
pub use provider_keys::PROVIDER_KEY_LEN_MAX;

type GatewayState = State<Arc<Gateway>>;

/// The gateway's routes, answered with its state.
pub fn routes(gateway: &Arc<Gateway>) -> Vec<Route> {
    let routes = Routes::with(gateway.clone());
    [
        calls::routes,
        models::routes,
        prices::routes,
        provider_keys::routes,
        usage::routes,
    ]
    .iter()
    .flat_map(|resource| resource(&routes))
    .collect()
}

/// A model's name.
enum ModelName {}

impl utoipa::PartialSchema for ModelName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::catalog::plain_name_pattern(
                crate::catalog::MODEL_LEN_MAX,
            )))
            .into()
    }
}

impl ToSchema for ModelName {}
