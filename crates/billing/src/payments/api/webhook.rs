//! Stripe's webhook: the events the provider sends.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use server::error::ApiError;
use server::openapi::Doc;
use server::render;
use server::routes::{Idempotency, Routes};
use server::{Access, Route};
use utoipa::ToSchema;

use crate::Billing;
use crate::payments::webhook;

use super::{BillingState, payments};

/// The webhook's route: each sending address is held to 100 deliveries a
/// second (Stripe sends again what was refused).
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    vec![
        routes
            .route(Access::Public, Doc::of::<__path_receive>(), receive)
            .with_idempotency(Idempotency::NotKept(
                "each event is applied once by its own id",
            ))
            .limited_by_address("payment_webhook", server::limits::Rate::per_second(100)),
    ]
}

/// What a webhook delivery did.
#[derive(Serialize, ToSchema)]
struct WebhookView {
    /// `granted`, `duplicate`, `awaiting_payment`, `payment_failed`,
    /// `card_saved`, `subscribed`, `renewed`, `plan_changed`, `updated`,
    /// `past_due`, `ended`, `refunded`, `refund_pending`, `not_taken_back`,
    /// `conflicting_subscription`, `unknown_session`,
    /// `unknown_payment`, `unknown_subscription`, `unknown_plan` or
    /// `ignored`.
    outcome: String,
}

/// Receive a Stripe event
///
/// Stripe's webhook endpoint. The `Stripe-Signature` header must be valid
/// for the raw body under `STRIPE_WEBHOOK_SECRET`, within 300 s of now;
/// otherwise 400 and nothing is done. A paid checkout session that creditd
/// created grants its credits once, however often and in whatever order the
/// event arrives; a paid invoice of a subscription it sold grants the
/// period once; subscription updates change, cancel or end the plan; a
/// refunded charge takes back its share of the credits, into debt if they
/// were spent. Every event is kept with what was done.
#[utoipa::path(
    post,
    path = "/webhooks/stripe",
    tag = "payments",
    operation_id = "stripeWebhook",
    request_body(content = Object, description = "A Stripe event, signed."),
    responses(
        (status = 200, description = "Handled, known already, or of a type creditd does not \
            handle.", body = WebhookView),
        (status = 400, description = "`invalid_signature`, `malformed_json`, `invalid_request`."),
        (status = 500, description = "`internal_error`: nothing was applied; Stripe sends the \
            event again."),
        (status = 502, description = "`payment_provider_error`: Stripe could not be asked \
            about the event's object; nothing was applied; Stripe sends the event again."),
        (status = 503, description = "`payments_not_configured`, `store_unavailable`: nothing \
            was applied; Stripe sends the event again."),
    ),
)]
async fn receive(State(billing): BillingState, request: Request) -> Result<Response, ApiError> {
    let payments = payments(&billing)?;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, WEBHOOK_BODY_LEN_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit_bytes: WEBHOOK_BODY_LEN_MAX,
        })?;
    let outcome = webhook::receive(&billing, payments, &parts.headers, &body).await?;
    Ok(render::json(StatusCode::OK, &WebhookView { outcome }))
}

/// The largest webhook body accepted: Stripe's events are far smaller.
pub const WEBHOOK_BODY_LEN_MAX: usize = 1024 * 1024;
