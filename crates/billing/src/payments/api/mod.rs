//! Payments' routes, one module per resource: checkouts, the saved card, the auto top-up,
//! the provider's webhook and the events received, each with its handlers, views and
//! request types.

mod auto_topup;
mod auto_topups;
mod checkout;
mod events;
mod payment_method;
mod webhook;

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;
use server::Route;
use server::error::ApiError;
use server::idempotency::KeptKey;
use server::routes::Routes;
use utoipa::ToSchema;

use super::Payments;
use crate::Billing;
use crate::error::BillingError;

pub use webhook::WEBHOOK_BODY_LEN_MAX;

type BillingState = State<Arc<Billing>>;

/// Payments' routes, answered with billing's state.
pub fn routes(billing: &Arc<Billing>) -> Vec<Route> {
    let routes = Routes::with(billing.clone());
    [
        checkout::routes,
        payment_method::routes,
        auto_topup::routes,
        auto_topups::routes,
        webhook::routes,
        events::routes,
    ]
    .iter()
    .flat_map(|resource| resource(&routes))
    .collect()
}

/// The payments that reach the provider, or 503 `payments_not_configured`.
fn payments(billing: &Billing) -> Result<&Payments, ApiError> {
    billing
        .payments
        .as_ref()
        .ok_or_else(|| BillingError::PaymentsNotConfigured.into())
}

/// The request's Idempotency-Key (which the route's layer hands over as
/// [`KeptKey`]), or a fresh random one: what the payment provider's own
/// idempotency key for the request is made of.
pub(crate) fn request_key(kept: Option<&KeptKey>) -> Result<String, ApiError> {
    if let Some(KeptKey(key)) = kept {
        return Ok(key.clone());
    }
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The checkout's locale: the one the body names (checked), else the
/// request's `Accept-Language`, else `en`.
fn checkout_locale(
    named: Option<String>,
    headers: &axum::http::HeaderMap,
) -> Result<String, ApiError> {
    use crate::domain::{FALLBACK_LOCALE, is_locale, preferred_locale};
    if let Some(named) = named {
        let (language, rest) = named.split_once('-').unwrap_or((&named, ""));
        let normal = if rest.is_empty() {
            language.to_ascii_lowercase()
        } else {
            format!("{}-{rest}", language.to_ascii_lowercase())
        };
        if !is_locale(&normal) {
            return Err(
                BillingError::from(crate::domain::DomainError::InvalidLocale(
                    "locale must be a tag such as en, zh or pt-BR",
                ))
                .into(),
            );
        }
        return Ok(normal);
    }
    Ok(headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(preferred_locale)
        .unwrap_or_else(|| FALLBACK_LOCALE.to_owned()))
}

/// A checkout to send the customer to.
#[derive(Serialize, ToSchema)]
struct CheckoutView {
    /// Where the customer pays.
    checkout_url: String,
    /// The provider's session id.
    session_id: String,
}

impl CheckoutView {
    /// The answer to a session the provider created, from its id and URL.
    fn response((session_id, checkout_url): (String, String)) -> axum::response::Response {
        server::render::json(
            axum::http::StatusCode::OK,
            &CheckoutView {
                checkout_url,
                session_id,
            },
        )
    }
}
