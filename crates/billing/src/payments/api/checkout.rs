//! Checkouts: start one for a package, a plan or an amount, and read what became of it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use server::error::ApiError;
use server::extract::{self, ExistingAccount};
use server::idempotency::KeptKey;
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render;
use server::routes::Routes;
use server::{Access, Route};
use utoipa::{IntoParams, ToSchema};

use crate::Billing;
use crate::error::BillingError;
use crate::payments::checkout;
use crate::plan::MoneyJson;

use super::{BillingState, CheckoutView, checkout_locale, payments, request_key};

/// The checkouts' routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::Account;
    vec![
        routes
            .route(Account, Doc::of::<__path_create>(), create)
            .not_audited("a customer's purchase, through the operator's backend"),
        routes.route(Account, Doc::of::<__path_get>(), get),
    ]
}

/// What to buy: a package, a plan, or credits for a custom amount.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CheckoutBody {
    /// A package for sale.
    package_id: Option<String>,
    /// A plan with a price: the checkout starts a subscription the provider
    /// bills every period.
    plan_id: Option<String>,
    /// A custom amount, at least 5 USD (`{"amount": 500, "currency": "usd"}`);
    /// its credits at the configured rate.
    #[schema(value_type = Option<Object>)]
    amount: Option<MoneyJson>,
    /// The checkout's locale (`zh`, `pt-BR`): the package's name and
    /// description in it, and the provider's page in it when the provider
    /// speaks it. Else the request's `Accept-Language`, else `en`.
    #[schema(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    locale: Option<String>,
    /// Where the customer lands after paying; `{CHECKOUT_SESSION_ID}` is
    /// replaced by the session's id. Under `CREDITD_PUBLIC_URL` or on an
    /// origin of `CREDITD_CHECKOUT_RETURN_ORIGINS`; the public URL's
    /// `/checkout/success?session_id={CHECKOUT_SESSION_ID}` when absent.
    success_url: Option<String>,
    /// Where the customer lands after giving up, allowed as `success_url`
    /// is; the public URL's `/checkout/cancel` when absent.
    cancel_url: Option<String>,
}

/// Start a checkout
///
/// Creates a payment provider checkout session for a package, a custom
/// amount or a plan, for the account's provider customer (created once).
/// Its credits are granted, once, when the provider's webhook says it was
/// paid; a plan's checkout starts a subscription the provider bills every
/// period, whose paid invoices renew the plan. A package or plan with a
/// `provider_price_id` is sold as that price; otherwise the line is made
/// from its price and named in the checkout's locale. The same
/// Idempotency-Key answers the same session; `GET
/// /v1/accounts/{account_id}/checkout/{session_id}` says what became of it.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/checkout",
    tag = "payments",
    operation_id = "createCheckout",
    params(AccountPath, server::openapi::schema::IdempotencyKey),
    request_body = CheckoutBody,
    responses(
        (status = 200, description = "The session.", body = CheckoutView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_checkout`, `invalid_currency`, `invalid_money`, `invalid_locale`, \
            `invalid_return_url`."),
        (status = 404, description = "`account_not_found`, `package_not_found`, \
            `plan_not_found`."),
        (status = 409, description = "`package_inactive`, `purchase_not_allowed`."),
        (status = 502, description = "`payment_provider_error`."),
        (status = 503, description = "`payments_not_configured`."),
    ),
)]
async fn create(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
    request: Request,
) -> Result<Response, ApiError> {
    let payments = payments(&billing)?;
    let request_key = request_key(request.extensions().get::<KeptKey>())?;
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), extract::BODY_LEN_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit_bytes: extract::BODY_LEN_MAX,
        })?;
    extract::check_content_type(&headers, &body)?;
    let body: CheckoutBody = extract::parse_json(&body)?;
    let locale = checkout_locale(body.locale, &headers)?;
    let returns = checkout::Returns::of(&payments.config, body.success_url, body.cancel_url)?;
    let sale = match (body.package_id, body.plan_id, body.amount) {
        (Some(package), None, None) => {
            checkout::package_sale(&billing, &account, &package, &locale).await?
        }
        (None, Some(plan), None) => {
            let plan = crate::api::record_id(&plan, "plan")?;
            checkout::plan_sale(&billing, &account, &plan).await?
        }
        (None, None, Some(amount)) => {
            checkout::topup_sale(&account, amount, billing.credits_per_usd)?
        }
        _ => {
            return Err(BillingError::InvalidCheckout(
                "name exactly one of package_id, plan_id and amount".into(),
            )
            .into());
        }
    };
    let session = checkout::create_session(
        &billing,
        payments,
        &account,
        sale,
        &request_key,
        &returns,
        &locale,
    )
    .await?;
    Ok(CheckoutView::response(session))
}

/// `{session_id}`
enum SessionPath {}

impl IntoParams for SessionPath {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        vec![
            utoipa::openapi::path::ParameterBuilder::new()
                .name("session_id")
                .parameter_in(utoipa::openapi::path::ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some(
                    "The checkout session's id, as `POST …/checkout` answered it.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[A-Za-z0-9_]{1,255}$"))
                        .examples(["cs_test_a1b2c3"]),
                ))
                .build(),
        ]
    }
}

/// What became of a checkout session.
#[derive(Serialize, ToSchema)]
struct CheckoutStatusView {
    /// The provider's session id.
    session_id: String,
    /// `package`, `topup`, `plan` or `setup`.
    purchase: &'static str,
    /// `open`: not paid yet; `processing`: completed, its payment not yet
    /// confirmed (a bank debit); `paid_pending`: paid, its credits (or its
    /// card) not yet in creditd, until the provider's webhook lands;
    /// `granted`: its credits are in the balance (`transaction`);
    /// `card_saved`: a setup session's card is saved; `payment_failed`: a
    /// delayed payment failed; `expired`: closed unpaid.
    status: &'static str,
    /// Credits it grants once paid (a plan's: each period).
    #[schema(value_type = String)]
    credits: String,
    /// What it costs.
    #[schema(value_type = Object)]
    price: MoneyJson,
    /// The package, for a package.
    package_id: Option<String>,
    /// The plan, for a plan.
    plan_id: Option<String>,
    /// The grant's transaction, once granted (a plan's first period).
    #[schema(value_type = Option<Object>)]
    transaction: Option<Value>,
}

/// Get a checkout session's status
///
/// What became of a checkout session the account started: `open`,
/// `processing`, `paid_pending` (paid, until the provider's webhook lands),
/// `granted` with the grant's transaction, `card_saved`, `payment_failed`
/// or `expired`; so a success page shows the outcome without polling
/// grants or matching metadata.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/checkout/{session_id}",
    tag = "payments",
    operation_id = "getCheckout",
    params(AccountPath, SessionPath),
    responses(
        (status = 200, description = "Where the session stands.", body = CheckoutStatusView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`, `checkout_session_not_found`."),
        (status = 502, description = "`payment_provider_error`."),
        (status = 503, description = "`payments_not_configured`."),
    ),
)]
async fn get(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
    axum::extract::Path((_, session)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    let payments = payments(&billing)?;
    if !crate::payments::is_provider_id(&session) {
        return Err(ApiError::InvalidId(
            "a checkout session id is 1 to 255 letters, digits and underscores".into(),
        ));
    }
    let status = checkout::status(&billing, payments, &account, &session).await?;
    let ours = status.session;
    Ok(render::json(
        StatusCode::OK,
        &CheckoutStatusView {
            session_id: session,
            purchase: ours.purchase.code(),
            status: status.status.code(),
            credits: ours.credits.to_string(),
            price: ours.price,
            package_id: ours.package,
            plan_id: ours.plan,
            transaction: status
                .transaction
                .map(|tx| serde_json::to_value(render::TransactionView::new(&tx)))
                .transpose()
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        },
    ))
}
