//! Plans the payment provider bills: a subscription started by a checkout creditd created,
//! renewed when the provider's invoice for a period is paid, changed, canceled and ended as the
//! provider says, each period granted once however its events arrive.

use ledger::{AccountId, Reject, Timestamp};
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use store::records::{self, Doc, Expect, Kind, Lookup, RecordFilter, RecordWrite, Written};
use store::{Executed, Refused, StoreError};

use super::checkout::{CheckoutSession, Purchase, provider_error};
use super::objects::{self, Invoice, Span};
use super::{Payments, is_provider_id};
use crate::Billing;
use crate::domain::{Period, period};
use crate::error::BillingError;
use crate::plan::Plan;
use crate::settings;
use crate::subscription::{self, ProviderLink, Subscription, transition};

/// A provider subscription started by a checkout creditd created: a record
/// of kind `payment_subscription` under the provider's id. The provider's
/// events about a subscription with no such record change nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSubscription {
    /// The account it pays for.
    pub account: String,
    /// The plan it was bought for.
    pub plan_id: String,
    /// The checkout session that started it.
    pub checkout_session: String,
}

impl Kind for PaymentSubscription {
    const KIND: &'static str = "payment_subscription";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::ordered("account", self.account.clone())]
    }
}

/// The provider's subscription, as creditd reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Its id (`sub_…`).
    pub id: String,
    /// `active`, `past_due`, `canceled`, ….
    pub status: String,
    /// The current period, in seconds since the epoch.
    pub period: Option<(i64, i64)>,
    /// The price of its item.
    pub price: Option<String>,
    /// Its item's id (`si_…`), which a plan change names.
    pub item: Option<String>,
    /// Whether it ends at the period's end.
    pub cancel_at_period_end: bool,
    /// Its latest invoice (`in_…`).
    pub latest_invoice: Option<String>,
}

impl Remote {
    /// What creditd follows of a subscription object.
    pub fn of(object: &objects::Subscription) -> Remote {
        let item = object.item();
        Remote {
            id: object.id.clone(),
            status: object.status.clone().unwrap_or_else(|| "active".to_owned()),
            period: object.period().map(|span| (span.start, span.end)),
            price: item.and_then(|i| i.price.clone()),
            item: item.and_then(|i| i.id.clone()),
            cancel_at_period_end: object.cancel_at_period_end,
            latest_invoice: object.latest_invoice.clone(),
        }
    }

    /// True once it has ended for good.
    fn ended(&self) -> bool {
        matches!(self.status.as_str(), "canceled" | "incomplete_expired")
    }

    /// True when its first payment went through (or a trial stands in).
    fn started(&self) -> bool {
        matches!(self.status.as_str(), "active" | "trialing")
    }
}

/// The subscription's link to an account, if creditd made it: its record,
/// or the checkout session the provider says started it, when that session
/// is one of creditd's, for a plan (an invoice may arrive before the
/// session's own event).
pub async fn link_of(
    billing: &Billing,
    payments: &Payments,
    subscription_id: &str,
) -> Result<Option<PaymentSubscription>, ApiError> {
    if !is_provider_id(subscription_id) {
        return Ok(None);
    }
    let store = billing.store.as_ref();
    if let Some(doc) = records::get::<PaymentSubscription>(store, subscription_id).await? {
        return Ok(Some(doc.body));
    }
    match super::checkout::session_that_made(payments, "subscription", subscription_id).await? {
        Some(session) => link_session(billing, subscription_id, &session).await,
        None => Ok(None),
    }
}

/// Links a subscription to the account whose plan checkout started it,
/// when `session_id` is creditd's own session for a plan.
pub async fn link_session(
    billing: &Billing,
    subscription_id: &str,
    session_id: &str,
) -> Result<Option<PaymentSubscription>, ApiError> {
    let store = billing.store.as_ref();
    let Some(ours) = records::get::<CheckoutSession>(store, session_id).await? else {
        return Ok(None);
    };
    let (Purchase::Plan, Some(plan_id)) = (ours.body.purchase, ours.body.plan.clone()) else {
        return Ok(None);
    };
    let link = PaymentSubscription {
        account: ours.body.account,
        plan_id,
        checkout_session: session_id.to_owned(),
    };
    // The same link from every event and node: whichever writes first, the
    // content is the same.
    match records::write::<PaymentSubscription>(
        store,
        records::put(subscription_id, &link, Expect::Any),
    )
    .await?
    {
        Written::Stored(_) | Written::Refused(Refused::VersionConflict { .. }) => Ok(Some(link)),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a link put answered deleted".into())),
    }
}

/// Reads the provider's subscription as it is now: an event's copy may be
/// older than one that came before it.
pub async fn fetch(payments: &Payments, subscription_id: &str) -> Result<Remote, ApiError> {
    if !is_provider_id(subscription_id) {
        return Err(ApiError::InvalidRequest(
            "a malformed subscription id".into(),
        ));
    }
    let object = payments
        .retrieve::<objects::Subscription>(subscription_id)
        .await
        .map_err(provider_error)?;
    Ok(Remote::of(&object))
}

/// The plan a provider price is for, else `fallback`.
async fn plan_for(
    billing: &Billing,
    price: Option<&str>,
    fallback: &str,
) -> Result<Option<(String, Plan)>, ApiError> {
    let store = billing.store.as_ref();
    if let Some(price) = price {
        for doc in records::list_all::<Plan>(store, RecordFilter::All).await? {
            if doc.body.provider_price_id.as_deref() == Some(price) {
                return Ok(Some((doc.id, doc.body)));
            }
        }
    }
    Ok(subscription::plan(store, fallback)
        .await?
        .ok()
        .map(|plan| (fallback.to_owned(), plan)))
}

/// The account's subscription, when the provider's `subscription_id` bills it.
fn linked<'a>(
    current: &'a Option<Doc<Subscription>>,
    subscription_id: &str,
) -> Option<&'a Doc<Subscription>> {
    current.as_ref().filter(|doc| {
        doc.body
            .provider
            .as_ref()
            .is_some_and(|p| p.subscription == subscription_id)
    })
}

/// How often a move is tried again when another one got in first.
const ATTEMPTS: usize = 8;

/// Where a subscription enters.
#[derive(Clone, Copy, Debug)]
enum Entry {
    /// A period the provider was paid for, `start..end`: the subscription
    /// opens in it or renews into it.
    Period(Timestamp, Timestamp),
    /// Another plan from now to the end of the period the subscription is
    /// in.
    Change,
}

/// Brings the account onto `plan_id`: opens the subscription in a paid
/// period (closing whatever plan the account was on), renews it into a
/// later one, or changes its plan from now on within the period it is in,
/// granting the plan's credits once. A period at or before the one the
/// subscription is in was granted already, and so was a change to the plan
/// it is on. `with` joins the event's record to the same transaction.
#[allow(clippy::too_many_arguments)]
async fn enter(
    billing: &Billing,
    account: &AccountId,
    subscription_id: &str,
    plan_id: &str,
    plan: &Plan,
    entry: Entry,
    status: &str,
    with: impl Fn(&str) -> Vec<RecordWrite>,
) -> Result<&'static str, ApiError> {
    let store = billing.store.as_ref();
    if let Entry::Period(start, end) = entry
        && end <= start
    {
        return Err(ApiError::InvalidRequest(
            "a period that ends before it starts".into(),
        ));
    }
    for _ in 0..ATTEMPTS {
        let settings = settings::read(store, &billing.env).await?;
        let current = records::get::<Subscription>(store, account.as_str()).await?;
        let now = billing.clock.now();
        let link = |billing_start: Timestamp| {
            Some(ProviderLink {
                subscription: subscription_id.to_owned(),
                status: status.to_owned(),
                checked_at_micros: None,
                billing_start_micros: Some(billing_start.micros()),
            })
        };
        let mut grant = true;
        let (next, settle_to, outcome) = match (linked(&current, subscription_id), entry) {
            (Some(doc), Entry::Period(start, end)) => {
                if start <= doc.body.grant_start() {
                    return Ok("duplicate");
                }
                let at = doc.body.period();
                let next = Subscription {
                    plan_id: plan_id.to_owned(),
                    anchor_micros: doc.body.anchor_micros,
                    period_index: doc.body.period_index.saturating_add(1),
                    period_start_micros: start.micros(),
                    period_end_micros: end.micros(),
                    cancel_at_period_end: doc.body.cancel_at_period_end,
                    provider: link(start),
                    entered_micros: None,
                };
                (next, at.end.min(start), "renewed")
            }
            (Some(doc), Entry::Change) => {
                if doc.body.plan_id == plan_id {
                    return Ok("duplicate");
                }
                // The new plan from now to the end of the period, within the
                // same billing period: its credits are granted once per
                // billing period, so moving back to a plan granted in it
                // grants nothing more.
                let billed = doc.body.grant_start();
                let end = doc.body.period().end.max(now.plus_secs(1));
                let next = Subscription {
                    plan_id: plan_id.to_owned(),
                    anchor_micros: doc.body.anchor_micros,
                    period_index: doc.body.period_index,
                    period_start_micros: now.micros(),
                    period_end_micros: end.micros(),
                    cancel_at_period_end: doc.body.cancel_at_period_end,
                    provider: link(billed),
                    entered_micros: None,
                };
                // Once the provider's period has rolled over, the renewal on
                // its way grants the plan the account is on then: a grant now
                // would pay for the same period twice.
                let rolled = now >= doc.body.period().end;
                grant = !rolled
                    && store
                        .external(
                            account.clone(),
                            subscription::period_external_id(plan_id, billed),
                        )
                        .await?
                        .is_none();
                (next, now, "plan_changed")
            }
            (None, Entry::Change) => return Ok("duplicate"),
            (None, Entry::Period(start, end)) => {
                if let Some(other) = current.as_ref().and_then(|d| d.body.provider.as_ref())
                    && other.status != "canceled"
                {
                    // The account already pays for a plan through another
                    // subscription: this one does not take it over.
                    tracing::warn!(
                        %account,
                        subscription = subscription_id,
                        current = %other.subscription,
                        "a second provider subscription for one account is not followed"
                    );
                    return Ok("conflicting_subscription");
                }
                let mut next = Subscription::new(
                    plan_id,
                    start,
                    Period {
                        index: 0,
                        start,
                        end,
                    },
                )
                .entered_at(now);
                next.provider = link(start);
                (next, now, "subscribed")
            }
        };
        let executed = transition(
            billing,
            &settings,
            account,
            current.as_ref(),
            Some((&next, plan)),
            settle_to,
            with(outcome),
            grant,
        )
        .await?;
        match executed {
            Executed::Fresh(Ok(_)) => return Ok(outcome),
            Executed::Existing(_) | Executed::Replayed(_) => return Ok("duplicate"),
            Executed::Fresh(Err(Refused::Ledger(Reject::ExternalIdConflict))) => {
                return Ok("duplicate");
            }
            Executed::Fresh(Err(Refused::VersionConflict { .. })) => continue,
            Executed::Fresh(Err(refused)) => return Err(refused.into()),
        }
    }
    Err(StoreError::Unavailable("the subscription kept changing; retry".into()).into())
}

/// Changes the account's subscription record where the provider's
/// `subscription_id` bills it; answers false when it does not (or no
/// longer does), or `change` changes nothing.
async fn amend(
    billing: &Billing,
    account: &AccountId,
    subscription_id: &str,
    change: impl Fn(&mut Subscription),
) -> Result<bool, ApiError> {
    let next = |sub: &Subscription| {
        let billed_by = sub.provider.as_ref().map(|p| p.subscription.as_str());
        if billed_by != Some(subscription_id) {
            return None;
        }
        let mut changed = sub.clone();
        change(&mut changed);
        (changed != *sub).then_some(changed)
    };
    match records::update(billing.store.as_ref(), account.as_str(), ATTEMPTS, next).await? {
        records::Updated::Changed(_) => Ok(true),
        records::Updated::Unchanged => Ok(false),
        records::Updated::Refused(refused) => Err(refused.into()),
    }
}

/// Ends the account's subscription now, as the provider ended it: the
/// plan's period closes and the account moves to the default plan (or to
/// none).
async fn end(
    billing: &Billing,
    account: &AccountId,
    subscription_id: &str,
) -> Result<&'static str, ApiError> {
    let store = billing.store.as_ref();
    for _ in 0..ATTEMPTS {
        let settings = settings::read(store, &billing.env).await?;
        let current = records::get::<Subscription>(store, account.as_str()).await?;
        let Some(doc) = linked(&current, subscription_id) else {
            return Ok("duplicate");
        };
        let now = billing.clock.now();
        let next = match &settings.default_plan {
            Some(id) => match subscription::plan(store, id).await? {
                Ok(default) => period(now, default.interval(), 0)
                    .map(|first| (Subscription::new(id, now, first), default)),
                Err(_) => None,
            },
            None => None,
        };
        let executed = transition(
            billing,
            &settings,
            account,
            Some(doc),
            next.as_ref().map(|(sub, plan)| (sub, plan)),
            now,
            Vec::new(),
            true,
        )
        .await?;
        match executed {
            Executed::Fresh(Ok(_)) => return Ok("ended"),
            Executed::Existing(_) | Executed::Replayed(_) => return Ok("duplicate"),
            Executed::Fresh(Err(Refused::VersionConflict { .. })) => continue,
            Executed::Fresh(Err(refused)) => return Err(refused.into()),
        }
    }
    Err(StoreError::Unavailable("the subscription kept changing; retry".into()).into())
}

/// The account a link is for.
fn account_of(link: &PaymentSubscription) -> Result<AccountId, ApiError> {
    AccountId::parse(&link.account)
        .map_err(|_| ApiError::Internal("a subscription link of a bad account".into()))
}

/// Brings the account's subscription to the provider's as it is now: opens
/// it once its first payment went through, follows a plan change, a
/// cancellation at the period's end (or its taking back) and the status,
/// and ends it when the provider ended it. `with` is the event's record for
/// an account and an outcome, written with the grant when there is one.
pub async fn sync(
    billing: &Billing,
    link: &PaymentSubscription,
    remote: &Remote,
    with: impl Fn(&str, &str) -> Vec<RecordWrite>,
) -> Result<&'static str, ApiError> {
    let account = account_of(link)?;
    if remote.ended() {
        return end(billing, &account, &remote.id).await;
    }
    let store = billing.store.as_ref();
    let current = records::get::<Subscription>(store, account.as_str()).await?;
    let fallback = linked(&current, &remote.id)
        .map_or(link.plan_id.as_str(), |doc| doc.body.plan_id.as_str())
        .to_owned();
    let Some((plan_id, plan)) = plan_for(billing, remote.price.as_deref(), &fallback).await? else {
        tracing::warn!(subscription = %remote.id, "a provider subscription's plan is gone");
        return Ok("unknown_plan");
    };
    let mut outcome = "duplicate";
    match linked(&current, &remote.id) {
        None => {
            let Some((start, end)) = remote.period.filter(|_| remote.started()) else {
                return Ok("awaiting_payment");
            };
            let period = Entry::Period(Timestamp::from_secs(start), Timestamp::from_secs(end));
            outcome = enter(
                billing,
                &account,
                &remote.id,
                &plan_id,
                &plan,
                period,
                &remote.status,
                |outcome| with(&link.account, outcome),
            )
            .await?;
        }
        // A plan changed at the provider: the new plan from now, to the end
        // of the period the subscription is in.
        Some(doc) if doc.body.plan_id != plan_id => {
            let status = doc
                .body
                .provider
                .as_ref()
                .map_or("active", |p| p.status.as_str());
            outcome = enter(
                billing,
                &account,
                &remote.id,
                &plan_id,
                &plan,
                Entry::Change,
                status,
                |outcome| with(&link.account, outcome),
            )
            .await?;
        }
        Some(_) => {}
    }
    let amended = amend(billing, &account, &remote.id, |sub| {
        sub.cancel_at_period_end = remote.cancel_at_period_end;
        if let Some(link) = &mut sub.provider {
            link.status.clone_from(&remote.status);
        }
    })
    .await?;
    Ok(match outcome {
        "duplicate" if amended => "updated",
        other => other,
    })
}

/// An invoice paid: a subscription's first or next period, granted once.
/// `with` is the event's record for an outcome, written with the grant.
pub async fn invoice_paid(
    billing: &Billing,
    payments: &Payments,
    invoice: &Invoice,
    with: impl Fn(&str, &str) -> Vec<RecordWrite>,
) -> Result<(Option<String>, &'static str), ApiError> {
    // A one-off purchase's invoice: the checkout session granted it.
    let Some(subscription_id) = invoice.subscription() else {
        return Ok((None, "ignored"));
    };
    let Some(link) = link_of(billing, payments, subscription_id).await? else {
        return Ok((None, "unknown_subscription"));
    };
    let account = account_of(&link)?;
    let (Some((Span { start, end }, price)), true) = (invoice.period_line(), invoice.is_cycle())
    else {
        // A proration or a manual invoice opens no period: the subscription
        // follows the provider's as it is.
        let remote = fetch(payments, subscription_id).await?;
        return Ok((
            Some(link.account.clone()),
            sync(billing, &link, &remote, with).await?,
        ));
    };
    let store = billing.store.as_ref();
    let current = records::get::<Subscription>(store, account.as_str()).await?;
    let found = match linked(&current, subscription_id) {
        // A renewal is for the plan the subscription is on at the provider
        // now: a change made after the invoice was drafted was paid for by
        // its own proration, and one made at the period's turn is billed by
        // this invoice.
        Some(doc) => {
            let on = &doc.body.plan_id;
            match plan_for(billing, price, on).await? {
                Some((id, plan)) if id == *on => Some((id, plan)),
                _ => {
                    let remote = fetch(payments, subscription_id).await?;
                    plan_for(billing, remote.price.as_deref(), on).await?
                }
            }
        }
        None => {
            // An invoice that would open the subscription after it ended (a
            // late redelivery) opens nothing.
            if fetch(payments, subscription_id).await?.ended() {
                return Ok((Some(link.account.clone()), "ended"));
            }
            plan_for(billing, price, &link.plan_id).await?
        }
    };
    let Some((plan_id, plan)) = found else {
        return Ok((Some(link.account.clone()), "unknown_plan"));
    };
    let period = Entry::Period(Timestamp::from_secs(start), Timestamp::from_secs(end));
    let outcome = enter(
        billing,
        &account,
        subscription_id,
        &plan_id,
        &plan,
        period,
        "active",
        |outcome| with(&link.account, outcome),
    )
    .await?;
    if outcome == "duplicate" {
        // Paid again after a failure, for the period it is in: active again.
        let start = Timestamp::from_secs(start);
        amend(billing, &account, subscription_id, |sub| {
            if sub.grant_start() == start
                && let Some(link) = &mut sub.provider
            {
                link.status = "active".into();
            }
        })
        .await?;
    }
    refuse_second(payments, subscription_id, outcome).await;
    Ok((Some(link.account.clone()), outcome))
}

/// A second subscription for an account that already pays for a plan is
/// told to end at its period's end, so that it is not charged again; what it
/// was paid is for the operator to refund (its event is kept as
/// `conflicting_subscription`). Best effort: a failure is logged, and the
/// next event about it tries again.
async fn refuse_second(payments: &Payments, subscription_id: &str, outcome: &str) {
    if outcome != "conflicting_subscription" || !is_provider_id(subscription_id) {
        return;
    }
    let form = vec![("cancel_at_period_end".to_owned(), "true".to_owned())];
    let key = format!("creditd:conflicting:{subscription_id}");
    if let Err(error) = payments
        .provider
        .post(&format!("/v1/subscriptions/{subscription_id}"), form, &key)
        .await
    {
        tracing::warn!(%error, subscription = subscription_id, "a second subscription could not be told to end");
    }
}

/// An invoice's payment failed: the subscription is past due and nothing is
/// granted.
pub async fn invoice_failed(
    billing: &Billing,
    payments: &Payments,
    invoice: &Invoice,
) -> Result<(Option<String>, &'static str), ApiError> {
    let Some(subscription_id) = invoice.subscription() else {
        return Ok((None, "ignored"));
    };
    let Some(link) = link_of(billing, payments, subscription_id).await? else {
        return Ok((None, "unknown_subscription"));
    };
    let account = account_of(&link)?;
    // A failed invoice for a period already paid for (a late delivery after
    // the retry's success) changes nothing.
    let starts = invoice
        .period_line()
        .map(|(span, _)| Timestamp::from_secs(span.start).micros());
    let amended = amend(billing, &account, subscription_id, |sub| {
        if starts.is_some_and(|start| start <= sub.grant_start().micros()) {
            return;
        }
        if let Some(link) = &mut sub.provider {
            link.status = "past_due".into();
        }
    })
    .await?;
    let outcome = if amended || starts.is_none() {
        "past_due"
    } else {
        "duplicate"
    };
    Ok((Some(link.account), outcome))
}

/// A subscription created, updated or deleted at the provider: the account's
/// follows it as it is now.
pub async fn subscription_event(
    billing: &Billing,
    payments: &Payments,
    object: &objects::Subscription,
    with: impl Fn(&str, &str) -> Vec<RecordWrite>,
) -> Result<(Option<String>, &'static str), ApiError> {
    let subscription_id = object.id.as_str();
    let Some(link) = link_of(billing, payments, subscription_id).await? else {
        return Ok((None, "unknown_subscription"));
    };
    let remote = fetch(payments, subscription_id).await?;
    let outcome = sync(billing, &link, &remote, with).await?;
    refuse_second(payments, subscription_id, outcome).await;
    Ok((Some(link.account.clone()), outcome))
}

/// A plan checkout's session completed: the subscription it started is
/// linked and followed.
pub async fn checkout_completed(
    billing: &Billing,
    payments: &Payments,
    session: &objects::CheckoutSession,
    with: impl Fn(&str, &str) -> Vec<RecordWrite>,
) -> Result<&'static str, ApiError> {
    let session_id = session.id.as_str();
    let Some(subscription_id) = session
        .subscription
        .as_deref()
        .filter(|id| is_provider_id(id))
    else {
        return Ok("awaiting_payment");
    };
    let Some(link) = link_session(billing, subscription_id, session_id).await? else {
        return Ok("unknown_session");
    };
    let remote = fetch(payments, subscription_id).await?;
    let outcome = sync(billing, &link, &remote, with).await?;
    refuse_second(payments, subscription_id, outcome).await;
    Ok(outcome)
}

/// Changes the plan of a subscription the provider bills: the provider's
/// subscription moves to the plan's price, its prorated difference invoiced
/// and paid at once (a payment that fails refuses the change), then the
/// account's follows it.
pub async fn change_plan(
    billing: &Billing,
    payments: &Payments,
    doc: &Doc<Subscription>,
    plan_id: &str,
    request_key: &str,
) -> Result<(), ApiError> {
    let store = billing.store.as_ref();
    let plan = subscription::plan(store, plan_id).await??;
    let Some(price) = plan.provider_price_id else {
        return Err(BillingError::InvalidPlan(
            "the account's plan is billed by the payment provider: it moves only to a plan with \
             a provider_price_id"
                .into(),
        )
        .into());
    };
    let remote = fetch(payments, provider_of(doc)?).await?;
    let mut form = vec![
        ("items[0][price]".to_owned(), price),
        // The prorated difference is invoiced and paid now, or the change
        // is refused: the new plan's credits are never granted unpaid.
        ("proration_behavior".to_owned(), "always_invoice".to_owned()),
        (
            "payment_behavior".to_owned(),
            "error_if_incomplete".to_owned(),
        ),
        ("metadata[creditd_plan]".to_owned(), plan_id.to_owned()),
    ];
    if let Some(item) = &remote.item {
        form.push(("items[0][id]".to_owned(), item.clone()));
    }
    update(
        billing,
        payments,
        doc,
        form,
        &format!("plan:{plan_id}:{request_key}"),
    )
    .await
}

/// Cancels a subscription the provider bills at its period's end, or takes
/// the cancellation back; the provider ends it then, and says so.
pub async fn cancel_at_period_end(
    billing: &Billing,
    payments: &Payments,
    doc: &Doc<Subscription>,
    cancel: bool,
    request_key: &str,
) -> Result<(), ApiError> {
    let form = vec![("cancel_at_period_end".to_owned(), cancel.to_string())];
    update(
        billing,
        payments,
        doc,
        form,
        &format!("cancel:{cancel}:{request_key}"),
    )
    .await
}

/// Updates the provider's subscription behind `doc` with `form`, under a
/// key naming the change and the request (its Idempotency-Key, so a retry
/// of the same request sends the same key, and a new request after a
/// refusal is asked afresh), and has the account's follow the answer.
async fn update(
    billing: &Billing,
    payments: &Payments,
    doc: &Doc<Subscription>,
    form: super::provider::Form,
    change: &str,
) -> Result<(), ApiError> {
    let subscription_id = provider_of(doc)?;
    let link = link_of(billing, payments, subscription_id)
        .await?
        .ok_or_else(|| ApiError::Internal("a provider subscription without a link".into()))?;
    let key = format!("creditd:subscription:{subscription_id}:{change}");
    let updated = payments
        .provider
        .post(&format!("/v1/subscriptions/{subscription_id}"), form, &key)
        .await
        .map_err(provider_error)?;
    let remote = Remote::of(
        &updated
            .read::<objects::Subscription>("a subscription")
            .map_err(provider_error)?,
    );
    sync(billing, &link, &remote, |_, _| Vec::new()).await?;
    Ok(())
}

/// Asks the provider about every subscription it bills whose period ended
/// a day ago with no word (a webhook lost, or an endpoint that was down
/// longer than the provider retries): a paid latest invoice renews it, an
/// ended subscription ends, a changed one is followed. Each is asked about
/// at most every six hours. Safe on every node at once: what it applies is
/// what the webhooks would have, made once the same way. Answers how many
/// it asked about.
pub async fn reconcile_due(billing: &Billing) -> Result<usize, ApiError> {
    let Some(payments) = &billing.payments else {
        return Ok(0);
    };
    let store = billing.store.as_ref();
    let now = billing.clock.now();
    let filter = RecordFilter::Range {
        name: "provider_due".to_owned(),
        from: None,
        to: Some(records::sortable_instant(Timestamp::from_micros(
            now.micros().saturating_add(1),
        ))),
    };
    let due = records::list_all::<Subscription>(store, filter).await?;
    let mut asked = 0;
    for doc in due {
        let Some(subscription_id) = doc.body.provider.as_ref().map(|p| p.subscription.clone())
        else {
            continue;
        };
        match reconcile_one(billing, payments, &subscription_id).await {
            Ok(outcome) => {
                asked += 1;
                tracing::info!(subscription = %subscription_id, outcome, "asked the provider about a late subscription");
            }
            Err(error) => tracing::warn!(
                subscription = %subscription_id,
                code = error.code(),
                message = %error.message(),
                "asking the provider about a late subscription failed"
            ),
        }
        let Ok(account) = AccountId::parse(&doc.id) else {
            continue;
        };
        if let Err(error) = amend(billing, &account, &subscription_id, |sub| {
            if let Some(link) = &mut sub.provider {
                link.checked_at_micros = Some(now.micros());
            }
        })
        .await
        {
            tracing::warn!(subscription = %subscription_id, code = error.code(), "a late subscription's check could not be kept");
        }
    }
    Ok(asked)
}

async fn reconcile_one(
    billing: &Billing,
    payments: &Payments,
    subscription_id: &str,
) -> Result<&'static str, ApiError> {
    let Some(link) = link_of(billing, payments, subscription_id).await? else {
        return Ok("unknown_subscription");
    };
    let remote = fetch(payments, subscription_id).await?;
    if !remote.ended()
        && let Some(id) = remote
            .latest_invoice
            .as_deref()
            .filter(|id| is_provider_id(id))
    {
        let invoice = payments
            .retrieve::<Invoice>(id)
            .await
            .map_err(provider_error)?;
        if invoice.status() == "paid" {
            let (_, outcome) = invoice_paid(billing, payments, &invoice, |_, _| Vec::new()).await?;
            if outcome != "duplicate" {
                return Ok(outcome);
            }
        }
    }
    sync(billing, &link, &remote, |_, _| Vec::new()).await
}

fn provider_of(doc: &Doc<Subscription>) -> Result<&str, ApiError> {
    doc.body
        .provider
        .as_ref()
        .map(|p| p.subscription.as_str())
        .ok_or_else(|| ApiError::Internal("not a provider subscription".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_provider_shaped_ids_reach_a_path() {
        assert!(is_provider_id("sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"));
        assert!(!is_provider_id("sub_1&limit=100"));
        assert!(!is_provider_id("../customers"));
        assert!(!is_provider_id(""));
    }
}
