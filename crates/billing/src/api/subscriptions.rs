//! An account's subscription: move it to a plan, read it, cancel it at the period's end.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{AccountId, Amount, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use server::error::ApiError;
use server::extract::{self, PathAccount, ReadBody};
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Decimal, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::records::{self, Doc as Record};
use utoipa::ToSchema;

use crate::Billing;
use crate::domain::{Money, overage_due, period_overage};
use crate::error::BillingError;
use crate::payments::subscriptions as provider_subscriptions;
use crate::subscription::{self, Changed, Subscription};

use super::{BillingState, money_view, record_id};

/// The subscription's routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::{Account, Service};
    vec![
        routes.route(Service, Doc::of::<__path_put>(), put),
        routes.route(Account, Doc::of::<__path_get>(), get),
        routes.route(Service, Doc::of::<__path_cancel>(), cancel),
    ]
}

/// Moving an account to a plan.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionBody {
    /// The plan.
    #[schema(pattern = "^(?!\\.+$)[A-Za-z0-9_.:-]{1,128}$")]
    plan_id: String,
    /// The instant periods are counted from (monthly periods keep its day,
    /// clamped to each month's last); now when absent; not in the future.
    #[serde(default)]
    #[schema(value_type = Option<server::openapi::schema::TimestampInput>)]
    anchor: Option<String>,
}

/// A subscription's current period.
#[derive(Serialize, ToSchema)]
struct PeriodView {
    start: Instant,
    end: Instant,
    /// The plan's credits granted for it.
    granted: Decimal,
    /// Credits spent in it so far (all sources, less refunds), from its
    /// start or, when the account moved onto the plan later, from the move.
    used: Decimal,
    /// Credits owed beyond the balance so far, billed at the period's end:
    /// the debt, but never more than `used` (what was spent before the
    /// period is not its overage).
    overage_credits: Decimal,
    /// What that overage costs so far; null on a plan without overage.
    #[schema(value_type = Option<Object>)]
    overage_due: Option<Value>,
}

/// An account's subscription.
#[derive(Serialize, ToSchema)]
#[schema(as = Subscription)]
struct SubscriptionView {
    account_id: String,
    plan_id: String,
    /// `active`; `canceling`: it ends at the period's end; `past_due`: the
    /// payment provider could not collect its last invoice.
    status: &'static str,
    cancel_at_period_end: bool,
    /// The payment provider's subscription that bills it and whose paid
    /// invoices renew it; null for a plan creditd renews itself.
    provider_subscription: Option<String>,
    anchor: Instant,
    current_period: PeriodView,
}

async fn subscription_view(
    billing: &Billing,
    account: &AccountId,
    doc: &Record<Subscription>,
) -> Result<SubscriptionView, ApiError> {
    let store = billing.store.as_ref();
    let now = billing.clock.now();
    let sub = &doc.body;
    let period = sub.period();
    let plan = subscription::plan(store, &sub.plan_id).await?.ok();
    let granted = match store
        .external(
            account.clone(),
            subscription::period_external_id(&sub.plan_id, sub.grant_start()),
        )
        .await?
    {
        Some(tx) => tx.amount,
        None => Amount::ZERO,
    };
    // Up to and including now: what was spent at this very instant counts;
    // what was spent before the account moved onto the plan does not.
    let from = sub.usage_start();
    let until = Timestamp::from_micros(now.micros().saturating_add(1))
        .min(period.end)
        .max(from);
    let used = store.usage_between(account.clone(), from, until).await?;
    let (overage_credits, overage_due_view) = match plan.as_ref().and_then(|p| p.overage.clone()) {
        Some(overage) => {
            let debt = store
                .book(account.clone(), None)
                .await?
                .map(|b| b.settled(now).account.debt)
                .unwrap_or(Amount::ZERO);
            let debt = period_overage(debt, used);
            let due = overage_due(debt, overage.unit_price)?;
            (debt, Some(money_view(Money::new(due, overage.currency.0)?)))
        }
        None => (Amount::ZERO, None),
    };
    Ok(SubscriptionView {
        account_id: account.to_string(),
        plan_id: sub.plan_id.clone(),
        status: match &sub.provider {
            Some(link) if matches!(link.status.as_str(), "past_due" | "unpaid") => "past_due",
            _ if sub.cancel_at_period_end => "canceling",
            _ => "active",
        },
        cancel_at_period_end: sub.cancel_at_period_end,
        provider_subscription: sub.provider.as_ref().map(|p| p.subscription.clone()),
        anchor: Instant(sub.anchor()),
        current_period: PeriodView {
            start: Instant(period.start),
            end: Instant(period.end),
            granted: Decimal(granted),
            used: Decimal(used),
            overage_credits: Decimal(overage_credits),
            overage_due: overage_due_view,
        },
    })
}

/// The account's subscription when the payment provider bills it, with the
/// payments that reach the provider (503 without them).
async fn provider_billed<'a>(
    billing: &'a Billing,
    account: &AccountId,
) -> Result<Option<(Record<Subscription>, &'a crate::payments::Payments)>, ApiError> {
    let Some(doc) = records::get::<Subscription>(billing.store.as_ref(), account.as_str()).await?
    else {
        return Ok(None);
    };
    if doc.body.provider.is_none() {
        return Ok(None);
    }
    let payments = billing
        .payments
        .as_ref()
        .ok_or(BillingError::PaymentsNotConfigured)?;
    Ok(Some((doc, payments)))
}

/// Move an account to a plan
///
/// Moves the account to the plan now: what is left of the old plan's credits
/// expires (`reset`) or rolls over (`rollover`), its overage so far is billed
/// as a charge, and the new plan's first period starts with its full grant,
/// all in one transaction. Purchased, bonus and admin credits are never
/// touched. Subscribing again to the plan the account is on changes nothing,
/// or takes back a cancellation. On a plan the payment provider bills, the
/// change is made there first (to the new plan's `provider_price_id`, the
/// prorated difference paid at once) and the account follows from now to
/// the period's end.
#[utoipa::path(
    put,
    path = "/v1/accounts/{account_id}/subscription",
    tag = "billing",
    operation_id = "putSubscription",
    params(AccountPath, server::openapi::schema::IdempotencyKey),
    request_body = SubscriptionBody,
    responses(
        (status = 200, description = "The subscription now.", body = SubscriptionView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_timestamp`, `invalid_plan` (an anchor in the future)."),
        (status = 404, description = "`account_not_found`, `plan_not_found`."),
        (status = 502, description = "`payment_provider_error` (a plan the provider bills)."),
        (status = 503, description = "`payments_not_configured` (a plan the provider bills)."),
    ),
)]
async fn put(
    State(billing): BillingState,
    kept: Option<Extension<server::idempotency::KeptKey>>,
    PathAccount(account): PathAccount,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let body: SubscriptionBody = extract::parse_json(&body)?;
    let plan_id = record_id(&body.plan_id, "plan")?;
    let anchor = extract::timestamp(body.anchor.as_deref(), "anchor")?;
    let store = billing.store.as_ref();
    if let Some((doc, payments)) = provider_billed(&billing, &account).await? {
        // The provider bills this plan: the change is made there, and the
        // account's subscription follows it.
        if anchor.is_some() {
            return Err(BillingError::InvalidPlan(
                "the payment provider sets the periods of the plan it bills: no anchor".into(),
            )
            .into());
        }
        if doc.body.plan_id == plan_id {
            if doc.body.cancel_at_period_end {
                let key = crate::payments::api::request_key(kept.as_ref().map(|k| &k.0))?;
                provider_subscriptions::cancel_at_period_end(&billing, payments, &doc, false, &key)
                    .await?;
            }
        } else {
            let key = crate::payments::api::request_key(kept.as_ref().map(|k| &k.0))?;
            provider_subscriptions::change_plan(&billing, payments, &doc, &plan_id, &key).await?;
        }
        let doc = records::get::<Subscription>(store, account.as_str())
            .await?
            .ok_or(BillingError::SubscriptionNotFound)?;
        return Ok(render::json(
            StatusCode::OK,
            &subscription_view(&billing, &account, &doc).await?,
        ));
    }
    match subscription::change(&billing, &account, &plan_id, anchor).await? {
        Changed::Done(doc) => Ok(render::json(
            StatusCode::OK,
            &subscription_view(&billing, &account, &doc).await?,
        )),
        Changed::Refused(error) => Err(error.into()),
        Changed::Rejected(reject) => Err(ApiError::Rejected(reject)),
    }
}

/// Get an account's subscription
///
/// The plan, whether it ends at the period's end, and the current period:
/// its credits, what was spent, and the overage so far.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/subscription",
    tag = "billing",
    operation_id = "getSubscription",
    params(AccountPath),
    responses(
        (status = 200, description = "The subscription.", body = SubscriptionView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`subscription_not_found`."),
    ),
)]
async fn get(
    State(billing): BillingState,
    PathAccount(account): PathAccount,
) -> Result<Response, ApiError> {
    let doc = records::get::<Subscription>(billing.store.as_ref(), account.as_str())
        .await?
        .ok_or(BillingError::SubscriptionNotFound)?;
    Ok(render::json(
        StatusCode::OK,
        &subscription_view(&billing, &account, &doc).await?,
    ))
}

/// Cancel a subscription at the period's end
///
/// The account stays on the plan until the current period ends, then moves
/// to the default plan (or to none). On a plan the payment provider bills,
/// the provider's subscription is set to cancel at its period's end, and
/// ends the plan when it says it ended.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{account_id}/subscription",
    tag = "billing",
    operation_id = "cancelSubscription",
    params(AccountPath, server::openapi::schema::IdempotencyKey),
    responses(
        (status = 200, description = "The subscription, canceling.", body = SubscriptionView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`subscription_not_found`."),
        (status = 502, description = "`payment_provider_error` (a plan the provider bills)."),
        (status = 503, description = "`payments_not_configured` (a plan the provider bills)."),
    ),
)]
async fn cancel(
    State(billing): BillingState,
    kept: Option<Extension<server::idempotency::KeptKey>>,
    PathAccount(account): PathAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    if let Some((doc, payments)) = provider_billed(&billing, &account).await? {
        let key = crate::payments::api::request_key(kept.as_ref().map(|k| &k.0))?;
        provider_subscriptions::cancel_at_period_end(&billing, payments, &doc, true, &key).await?;
    }
    let doc = subscription::cancel(store, &account).await??;
    Ok(render::json(
        StatusCode::OK,
        &subscription_view(&billing, &account, &doc).await?,
    ))
}
