//! The webhooks' routes, one module per resource: endpoints and events.

mod endpoints;
mod events;

use std::sync::Arc;

use server::Route;
use server::routes::Routes;

use crate::Webhooks;

/// The state every handler of the webhooks takes.
type WebhooksState = axum::extract::State<Arc<Webhooks>>;

/// Every route of the webhooks.
pub fn routes(webhooks: &Arc<Webhooks>) -> Vec<Route> {
    let routes = Routes::with(webhooks.clone());
    let mut all = endpoints::routes(&routes);
    all.extend(events::routes(&routes));
    all
}

/// An event type as the description lists it: every `EventType`'s code,
/// and `*` for every type where `EVERY` says so.
pub(crate) enum EventTypes<const EVERY: bool> {}

impl<const EVERY: bool> utoipa::PartialSchema for EventTypes<EVERY> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let every = EVERY.then_some("*");
        let codes = every
            .into_iter()
            .chain(server::events::EventType::ALL.map(server::events::EventType::code));
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes))
            .into()
    }
}

impl<const EVERY: bool> utoipa::ToSchema for EventTypes<EVERY> {
    fn name() -> std::borrow::Cow<'static, str> {
        if EVERY {
            "WebhookEventTypeOrEvery".into()
        } else {
            "WebhookEventType".into()
        }
    }
}

/// Whether `text` is an endpoint's id: `we_` and 16 lowercase hex digits.
fn is_endpoint_id(text: &str) -> bool {
    server::extract::is_hex_id(text, "we_", 16)
}
