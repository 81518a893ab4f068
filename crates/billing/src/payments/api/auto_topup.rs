//! The auto top-up: read it, and set it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use server::error::ApiError;
use server::extract::{self, ExistingAccount, Sign};
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::records;
use utoipa::ToSchema;

use crate::Billing;
use crate::error::BillingError;
use crate::payments::checkout;
use crate::plan::{MoneyInput, MoneyJson};

use super::{BillingState, payments};

/// The auto top-up's routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::Account;
    vec![
        routes.route(Account, Doc::of::<__path_get>(), get),
        routes.route(Account, Doc::of::<__path_put>(), put),
    ]
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
async fn get(
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
async fn put(
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
