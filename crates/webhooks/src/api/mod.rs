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

/// Whether `text` is an endpoint's id: `we_` and 16 lowercase hex digits.
fn is_endpoint_id(text: &str) -> bool {
    text.strip_prefix("we_").is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
