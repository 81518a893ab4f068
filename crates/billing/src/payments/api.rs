//! Payments' routes: checkout, the provider's webhook, and the events received.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use server::error::ApiError;
use server::extract::{self, ExistingAccount, Query, Sign};
use server::idempotency::KeptKey;
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Instant};
use server::routes::{Idempotency, Routes};
use server::{Access, Route};
use store::records::{self, RecordFilter};
use utoipa::{IntoParams, ToSchema};

use super::Payments;
use super::checkout;
use super::webhook::{self, PaymentEvent};
use crate::Billing;
use crate::error::BillingError;
use crate::plan::{MoneyInput, MoneyJson};

type BillingState = State<Arc<Billing>>;

/// Payments' routes, answered with billing's state.
pub fn routes(billing: &Arc<Billing>) -> Vec<Route> {
    use Access::{Account, Public, Service};
    let routes = Routes::with(billing.clone());
    vec![
        routes.route(
            Account,
            Doc::of::<__path_create_checkout>(),
            create_checkout,
        ),
        routes.route(Account, Doc::of::<__path_get_checkout>(), get_checkout),
        routes.route(
            Account,
            Doc::of::<__path_setup_payment_method>(),
            setup_payment_method,
        ),
        routes.route(
            Account,
            Doc::of::<__path_get_payment_method>(),
            get_payment_method,
        ),
        routes.route(Account, Doc::of::<__path_get_auto_topup>(), get_auto_topup),
        routes.route(Account, Doc::of::<__path_put_auto_topup>(), put_auto_topup),
        routes
            .route(Public, Doc::of::<__path_stripe_webhook>(), stripe_webhook)
            .with_idempotency(Idempotency::NotKept(
                "each event is applied once by its own id",
            )),
        routes.route(Service, Doc::of::<__path_list_events>(), list_events),
    ]
}

fn payments(billing: &Billing) -> Result<&Payments, ApiError> {
    billing
        .payments
        .as_ref()
        .ok_or_else(|| BillingError::PaymentsNotConfigured.into())
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
async fn create_checkout(
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
    let (session_id, checkout_url) = checkout::create_session(
        &billing,
        payments,
        &account,
        sale,
        &request_key,
        &returns,
        &locale,
    )
    .await?;
    Ok(render::json(
        StatusCode::OK,
        &CheckoutView {
            checkout_url,
            session_id,
        },
    ))
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
async fn get_checkout(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
    axum::extract::Path((_, session)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    let payments = payments(&billing)?;
    if !super::is_provider_id(&session) {
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
            credits: ours.credits,
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
async fn setup_payment_method(
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
    let (session_id, checkout_url) =
        checkout::create_setup_session(&billing, payments, &account, &key, &returns, &locale)
            .await?;
    Ok(render::json(
        StatusCode::OK,
        &CheckoutView {
            checkout_url,
            session_id,
        },
    ))
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
async fn get_payment_method(
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

/// An account's auto top-up settings as written.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AutoTopupBody<'a> {
    /// Whether it runs; enabling it needs a saved card.
    enabled: bool,
    /// Top up when the available balance falls below this: credits (`"50"`),
    /// or money (`{"amount": 5000, "currency": "usd"}`: below 50 USD worth
    /// of credits at `CREDITD_CREDITS_PER_USD`), shown back as given.
    #[serde(borrow)]
    #[schema(value_type = ThresholdInput)]
    threshold: &'a RawValue,
    /// What one top-up charges: at least 5 USD (`{"amount": 2000, "currency": "usd"}`).
    #[schema(value_type = MoneyInput)]
    amount: MoneyJson,
    /// The most top-ups may charge in a calendar month (UTC), at least
    /// `amount`; absent or null: no cap.
    #[serde(default)]
    #[schema(value_type = Option<MoneyInput>)]
    monthly_cap: Option<MoneyJson>,
}

/// A threshold, for the description: a decimal number of credits, or money.
enum ThresholdInput {}

impl utoipa::PartialSchema for ThresholdInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::OneOfBuilder;
        OneOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name("NonNegativeAmount"))
            .item(utoipa::openapi::Ref::from_schema_name("MoneyInput"))
            .description(Some(
                "Credits, as a decimal string or number, zero or more; or money in US cents, \
                 worth its credits at the rate.",
            ))
            .into()
    }
}

impl ToSchema for ThresholdInput {
    fn name() -> std::borrow::Cow<'static, str> {
        "ThresholdInput".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            "NonNegativeAmount".into(),
            server::openapi::schema::NonNegativeAmount::schema(),
        ));
        schemas.push(("MoneyInput".into(), MoneyInput::schema()));
    }
}

/// An account's auto top-up.
#[derive(Serialize, ToSchema)]
struct AutoTopupView {
    enabled: bool,
    /// The threshold as it was given: credits (`"50"`) or money
    /// (`{"amount": 5000, "currency": "usd"}`).
    #[schema(value_type = ThresholdInput)]
    threshold: Value,
    /// The threshold in credits, whichever way it was given.
    #[schema(value_type = String)]
    threshold_credits: server::render::Decimal,
    #[schema(value_type = Object)]
    amount: MoneyJson,
    /// Null: no cap.
    #[schema(value_type = Option<Object>)]
    monthly_cap: Option<MoneyJson>,
    /// Credits one top-up grants.
    #[schema(value_type = String)]
    credits: server::render::Decimal,
    /// `idle`, `pending` or `backing_off`.
    state: &'static str,
    /// Why the last top-up failed, while backing off.
    last_failure: Option<String>,
    /// When the next may start, while backing off.
    retry_at: Option<Instant>,
    /// What top-ups charged this month, in cents.
    charged_this_month: i64,
}

fn auto_topup_view(billing: &Billing, topup: &crate::domain::topup::AutoTopup) -> AutoTopupView {
    use crate::domain::topup::TopupState;
    let now = billing.clock.now();
    let month: String = now.to_string().chars().take(7).collect();
    let (state, last_failure, retry_at) = match &topup.state {
        TopupState::Idle => ("idle", None, None),
        TopupState::Pending { .. } => ("pending", None, None),
        TopupState::BackingOff {
            reason,
            retry_at_micros,
            ..
        } => (
            "backing_off",
            Some(reason.clone()),
            Some(Instant(ledger::Timestamp::from_micros(*retry_at_micros))),
        ),
    };
    let threshold_credits = ledger::Amount::from_micros(topup.threshold_micros);
    AutoTopupView {
        enabled: topup.enabled,
        threshold: match topup.threshold_cents {
            Some(cents) => serde_json::to_value(checkout::usd(cents)).unwrap_or(Value::Null),
            None => Value::String(threshold_credits.to_string()),
        },
        threshold_credits: server::render::Decimal(threshold_credits),
        amount: checkout::usd(topup.amount_cents),
        monthly_cap: topup.monthly_cap_cents.map(checkout::usd),
        credits: server::render::Decimal(
            crate::domain::topup::credits_of(topup.amount_cents, billing.credits_per_usd)
                .unwrap_or(ledger::Amount::ZERO),
        ),
        state,
        last_failure,
        retry_at,
        charged_this_month: if topup.month == month {
            topup.charged_cents
        } else {
            0
        },
    }
}

/// Get the auto top-up
///
/// The account's auto top-up settings and where it stands; disabled, with
/// nothing set, until it is set.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/auto-topup",
    tag = "payments",
    operation_id = "getAutoTopup",
    params(AccountPath),
    responses(
        (status = 200, description = "The settings and state.", body = AutoTopupView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn get_auto_topup(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let topup = records::get::<crate::domain::topup::AutoTopup>(store, account.as_str())
        .await?
        .map(|doc| doc.body)
        .unwrap_or_default();
    Ok(render::json(
        StatusCode::OK,
        &auto_topup_view(&billing, &topup),
    ))
}

/// Set the auto top-up
///
/// "Top up 20 USD when below 50 credits (or below 5 USD worth of credits),
/// at most 100 USD a month" (or with no monthly cap): when a
/// consume, a commit or a gateway call takes the available balance below
/// the threshold, one top-up starts — one in flight per account across all
/// nodes — as an off-session payment with the saved card. Its credits are
/// granted once, when the payment succeeds. A decline backs off (an hour,
/// doubling, at most a day). Enabling needs a saved card.
#[utoipa::path(
    put,
    path = "/v1/accounts/{account_id}/auto-topup",
    tag = "payments",
    operation_id = "putAutoTopup",
    params(AccountPath),
    request_body = AutoTopupBody,
    responses(
        (status = 200, description = "The settings and state.", body = AutoTopupView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_auto_topup`, `invalid_currency`."),
        (status = 404, description = "`account_not_found`."),
        (status = 409, description = "`payment_method_required`: no card is saved; or \
            `version_conflict`: it changed meanwhile, retry."),
        (status = 503, description = "`payments_not_configured`."),
    ),
)]
async fn put_auto_topup(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
    extract::ReadBody(body): extract::ReadBody,
) -> Result<Response, ApiError> {
    use crate::domain::topup::{AutoTopup, TOPUP_MIN_CENTS, Threshold};
    payments(&billing)?;
    let body: AutoTopupBody = extract::parse_json(&body)?;
    let bad = |message: &str| -> ApiError { BillingError::InvalidAutoTopup(message.into()).into() };
    let threshold = if body.threshold.get().starts_with('{') {
        let money: MoneyJson = serde_json::from_str(body.threshold.get()).map_err(|_| {
            bad("threshold is credits (\"50\") or money ({\"amount\": 5000, \"currency\": \"usd\"})")
        })?;
        if money.currency.0.as_str() != "usd" {
            return Err(bad("a threshold in money is in usd"));
        }
        Threshold::UsdCents(money.amount)
    } else {
        Threshold::Credits(
            extract::amount(body.threshold, "threshold", Sign::NotNegative)
                .map_err(|_| bad("threshold is a decimal number of credits, zero or more"))?,
        )
    };
    let threshold_credits = threshold
        .credits(billing.credits_per_usd)
        .ok_or_else(|| bad("threshold is zero or more, and not beyond what an amount holds"))?;
    let cap_currency_ok = body
        .monthly_cap
        .is_none_or(|cap| cap.currency.0.as_str() == "usd");
    if body.amount.currency.0.as_str() != "usd" || !cap_currency_ok {
        return Err(bad("top-ups are in usd"));
    }
    if body.amount.amount < TOPUP_MIN_CENTS {
        return Err(bad("a top-up is at least 5 usd (500)"));
    }
    if body
        .monthly_cap
        .is_some_and(|cap| cap.amount < body.amount.amount)
    {
        return Err(bad("monthly_cap is at least one top-up's amount"));
    }
    if crate::domain::topup::credits_of(body.amount.amount, billing.credits_per_usd).is_none() {
        return Err(bad("the amount is too large"));
    }
    let store = billing.store.as_ref();
    if body.enabled
        && records::get::<checkout::SavedCard>(store, account.as_str())
            .await?
            .is_none()
    {
        return Err(BillingError::PaymentMethodRequired.into());
    }
    let existing = records::get::<AutoTopup>(store, account.as_str()).await?;
    let (mut topup, expect) = match existing {
        Some(doc) => (doc.body, store::records::Expect::Version(doc.version)),
        None => (AutoTopup::default(), store::records::Expect::Absent),
    };
    topup.enabled = body.enabled;
    topup.threshold_micros = threshold_credits.micros();
    topup.threshold_cents = match threshold {
        Threshold::UsdCents(cents) => Some(cents),
        Threshold::Credits(_) => None,
    };
    topup.amount_cents = body.amount.amount;
    topup.monthly_cap_cents = body.monthly_cap.map(|cap| cap.amount);
    match records::write::<AutoTopup>(store, records::put(account.as_str(), &topup, expect)).await?
    {
        store::records::Written::Stored(doc) => Ok(render::json(
            StatusCode::OK,
            &auto_topup_view(&billing, &doc.body),
        )),
        store::records::Written::Refused(refused) => Err(refused.into()),
        store::records::Written::Deleted => {
            Err(ApiError::Internal("a top-up put answered deleted".into()))
        }
    }
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
async fn stripe_webhook(
    State(billing): BillingState,
    request: Request,
) -> Result<Response, ApiError> {
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

/// An event as listed.
#[derive(Serialize, ToSchema)]
struct EventView {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    account_id: Option<String>,
    object_id: Option<String>,
    outcome: String,
    received_at: Instant,
}

/// A page of events.
#[derive(Serialize, ToSchema)]
struct EventPage {
    data: Vec<EventView>,
    next_cursor: Option<String>,
}

/// `?account=&limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// Only the events about this account.
    #[param(value_type = Option<server::openapi::schema::AccountId>)]
    account: Option<String>,
    /// The page size, 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List payment events
///
/// Every event the provider sent, with what creditd did with it, oldest
/// first; for support.
#[utoipa::path(
    get,
    path = "/v1/payments/events",
    tag = "payments",
    operation_id = "listPaymentEvents",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events.", body = EventPage),
        (status = 400, description = "`invalid_request`, `invalid_id`."),
    ),
)]
async fn list_events(
    State(billing): BillingState,
    Query(query): Query<EventQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let filter = match query.account {
        Some(account) => RecordFilter::Equals {
            name: "account".into(),
            value: extract::account_id(&account)?.as_str().to_owned(),
        },
        None => RecordFilter::All,
    };
    let after = extract::id_cursor(query.cursor)?;
    let page = records::list::<PaymentEvent>(billing.store.as_ref(), filter, after, limit).await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|d| d.id.clone()))
        .flatten();
    let data = page
        .into_iter()
        .map(|d| EventView {
            id: d.id,
            event_type: d.body.event_type,
            account_id: d.body.account,
            object_id: d.body.object_id,
            outcome: d.body.outcome,
            received_at: Instant(ledger::Timestamp::from_micros(d.body.received_at_micros)),
        })
        .collect();
    Ok(render::json(
        StatusCode::OK,
        &EventPage { data, next_cursor },
    ))
}
