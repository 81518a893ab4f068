//! The saved card: save one through a setup session, and read it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::extract::{self, ExistingAccount};
use server::idempotency::KeptKey;
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render;
use server::routes::Routes;
use server::{Access, Route};
use store::records;
use utoipa::ToSchema;

use crate::Billing;
use crate::payments::checkout;

use super::{BillingState, CheckoutView, checkout_locale, payments, request_key};

/// The saved card's routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::Account;
    vec![
        routes
            .route(Account, Doc::of::<__path_setup>(), setup)
            .not_audited("a customer's card, through the operator's backend"),
        routes.route(Account, Doc::of::<__path_get>(), get),
    ]
}

/// Where a setup session sends the customer back to.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    /// As a checkout's `locale`.
    #[schema(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    locale: Option<String>,
    /// As a checkout's `success_url`.
    success_url: Option<String>,
    /// As a checkout's `cancel_url`.
    cancel_url: Option<String>,
}

/// Save a card
///
/// Creates a checkout session in setup mode: the customer adds or replaces
/// the card later payments (auto top-up) are made with, paying nothing now.
/// The card is saved when the provider's webhook says the session completed.
/// The body, optional, names where the customer comes back to.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/payment-method/setup",
    tag = "payments",
    operation_id = "setupPaymentMethod",
    params(AccountPath, server::openapi::schema::IdempotencyKey),
    request_body(content = Option<SetupBody>),
    responses(
        (status = 200, description = "The session.", body = CheckoutView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_locale`, `invalid_return_url`."),
        (status = 404, description = "`account_not_found`."),
        (status = 502, description = "`payment_provider_error`."),
        (status = 503, description = "`payments_not_configured`."),
    ),
)]
async fn setup(
    State(billing): BillingState,
    headers: axum::http::HeaderMap,
    kept: Option<axum::Extension<KeptKey>>,
    ExistingAccount(account): ExistingAccount,
    extract::ReadBody(body): extract::ReadBody,
) -> Result<Response, ApiError> {
    let payments = payments(&billing)?;
    let body: SetupBody = extract::parse_optional_json(&body)?;
    let locale = checkout_locale(body.locale, &headers)?;
    let returns = checkout::Returns::of(&payments.config, body.success_url, body.cancel_url)?;
    let key = request_key(kept.as_ref().map(|k| &k.0))?;
    let session =
        checkout::create_setup_session(&billing, payments, &account, &key, &returns, &locale)
            .await?;
    Ok(CheckoutView::response(session))
}

/// The saved card, or none.
#[derive(Serialize, ToSchema)]
struct PaymentMethodView {
    /// Null when no card is saved.
    card: Option<CardView>,
}

/// A saved card, without its number.
#[derive(Serialize, ToSchema)]
struct CardView {
    brand: String,
    last4: String,
    exp_month: u32,
    exp_year: u32,
}

/// Get the saved card
///
/// The card auto top-ups are paid with: brand, last four digits and
/// expiry, or `card: null`.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/payment-method",
    tag = "payments",
    operation_id = "getPaymentMethod",
    params(AccountPath),
    responses(
        (status = 200, description = "The card, or none.", body = PaymentMethodView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn get(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let card = records::get::<checkout::SavedCard>(store, account.as_str())
        .await?
        .map(|d| CardView {
            brand: d.body.brand,
            last4: d.body.last4,
            exp_month: d.body.exp_month,
            exp_year: d.body.exp_year,
        });
    Ok(render::json(StatusCode::OK, &PaymentMethodView { card }))
}
