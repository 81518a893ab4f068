//! Plans the payment provider bills: a subscription started by a checkout creditd created,
//! renewed when the provider's invoice for a period is paid, changed, canceled and ended as the
//! provider says, each period granted once however its events arrive.

use ledger::{AccountId, Timestamp};
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use store::records::{
    self, Doc, Expect, Kind, Lookup, Modified, RecordFilter, RecordWrite, Step, Written,
};
use store::{Executed, Refused};

use super::checkout::{CheckoutSession, Purchase, provider_error};
use super::objects::{self, Invoice, Span};
use super::{Payments, is_provider_id};
use crate::Billing;
use crate::domain::subscription::{
    self as machine, AtProvider, Billed, DefaultPlan, End, Enter, Entry, Follow, Outcome,
};
use crate::error::BillingError;
use crate::plan::Plan;
use crate::settings;
use crate::subscription::{self, Subscription, transition};

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

/// A provider subscription as the subscription machine reads it: its
/// status (`active` when the provider gives none), its period and its
/// cancellation.
fn at_provider(remote: &objects::Subscription) -> AtProvider<'_> {
    AtProvider {
        status: remote.status.as_deref().unwrap_or("active"),
        period: remote.period().map(|span| (span.start, span.end)),
        cancel_at_period_end: remote.cancel_at_period_end,
    }
}

/// The price of a provider subscription's item.
fn price_of(remote: &objects::Subscription) -> Option<&str> {
    remote.item().and_then(|item| item.price.as_deref())
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
pub async fn fetch(
    payments: &Payments,
    subscription_id: &str,
) -> Result<objects::Subscription, ApiError> {
    if !is_provider_id(subscription_id) {
        return Err(ApiError::InvalidRequest(
            "a malformed subscription id".into(),
        ));
    }
    let object = payments
        .retrieve::<objects::Subscription>(subscription_id)
        .await
        .map_err(provider_error)?;
    Ok(object)
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
    current
        .as_ref()
        .filter(|doc| doc.body.billed_by(subscription_id))
}

/// The event's record for an account and an outcome, joined to the write
/// that settles it.
type With<'a> = &'a (dyn Fn(&str, &str) -> Vec<RecordWrite> + Sync);

/// Brings the account onto `plan_id` as the machine decides
/// ([`machine::enter`]), reading what it needs first — the subscription,
/// whether the ledger holds the plan's grant for the billing period — and
/// writing what it says in one transaction with the event's record.
#[allow(clippy::too_many_arguments)]
async fn enter(
    billing: &Billing,
    account: &AccountId,
    billed: Billed<'_>,
    plan_id: &str,
    plan: &Plan,
    entry: Entry,
    with: impl Fn(Outcome) -> Vec<RecordWrite> + Sync,
) -> Result<Outcome, ApiError> {
    let store = billing.store.as_ref();
    let with = &with;
    if let Entry::Period(start, end) = entry
        && end <= start
    {
        return Err(ApiError::InvalidRequest(
            "a period that ends before it starts".into(),
        ));
    }
    let modified =
        records::modify::<Subscription, _, ApiError>(store, account.as_str(), move |current| {
            Box::pin(async move {
                let now = billing.clock.now();
                let body = current.as_ref().map(|doc| &doc.body);
                let plan_granted = match body.filter(|sub| sub.billed_by(billed.subscription)) {
                    Some(sub) if entry == Entry::Change && sub.plan_id != plan_id => store
                        .external(
                            account.clone(),
                            subscription::period_external_id(plan_id, sub.grant_start()),
                        )
                        .await?
                        .is_some(),
                    _ => false,
                };
                match machine::enter(body, billed, plan_id, entry, plan_granted, now) {
                    Enter::Stale => Ok(Step::Done(Outcome::Duplicate)),
                    Enter::Conflicting { other } => {
                        // The account already pays for a plan through another
                        // subscription: this one does not take it over.
                        tracing::warn!(
                            %account,
                            subscription = billed.subscription,
                            current = %other,
                            "a second provider subscription for one account is not followed"
                        );
                        Ok(Step::Done(Outcome::ConflictingSubscription))
                    }
                    Enter::Move {
                        next,
                        settle_to,
                        grant,
                        outcome,
                    } => {
                        let settings = settings::read(store, &billing.env).await?;
                        let command = transition(
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
                        Ok(Step::Write(command, outcome))
                    }
                }
            })
        })
        .await?;
    super::once(modified, Outcome::Duplicate)
}

/// Changes the account's subscription record by `change` where the
/// provider's `subscription_id` bills it ([`machine::amend`]); answers
/// false when it does not (or no longer does), or `change` changes nothing.
async fn amend(
    billing: &Billing,
    account: &AccountId,
    subscription_id: &str,
    change: impl Fn(&mut Subscription) + Sync,
) -> Result<bool, ApiError> {
    let now = billing.clock.now();
    // A subscription that becomes past due says so to the operator's
    // endpoints in the same write.
    let next = |sub: &Subscription, version: u64| {
        let next = machine::amend(sub, subscription_id, &change)?;
        let mut joined = Vec::new();
        let past_due =
            |s: &Subscription| s.provider.as_ref().is_some_and(|l| l.status == "past_due");
        if past_due(&next) && !past_due(sub) {
            joined.push(server::events::emit(
                server::events::EventType::SubscriptionPastDue,
                &format!("past_due/{account}/{version}"),
                account,
                serde_json::json!({
                    "plan_id": next.plan_id,
                    "provider_subscription_id": subscription_id,
                    "period_start": next.period().start.to_string(),
                    "period_end": next.period().end.to_string(),
                }),
                now,
            ));
        }
        Some((next, joined))
    };
    match records::update_joined(billing.store.as_ref(), account.as_str(), next).await? {
        records::Updated::Changed(_) => Ok(true),
        records::Updated::Unchanged => Ok(false),
        records::Updated::Refused(refused) => Err(refused.into()),
    }
}

/// Ends the account's subscription now, as the provider ended it
/// ([`machine::end`]): the plan's period closes and the account moves to
/// the default plan (or to none).
async fn end(
    billing: &Billing,
    account: &AccountId,
    subscription_id: &str,
) -> Result<Outcome, ApiError> {
    let store = billing.store.as_ref();
    let modified =
        records::modify::<Subscription, _, ApiError>(store, account.as_str(), move |current| {
            Box::pin(async move {
                let now = billing.clock.now();
                let settings = settings::read(store, &billing.env).await?;
                let default = subscription::default_plan(store, &settings).await?;
                let default_plan = default.as_ref().map(|(id, plan)| DefaultPlan {
                    id,
                    interval: plan.interval(),
                });
                let body = current.as_ref().map(|doc| &doc.body);
                match machine::end(body, subscription_id, default_plan, now) {
                    End::Stale => Ok(Step::Done(Outcome::Duplicate)),
                    End::Close { next } => {
                        let next_plan = default.as_ref().map(|(_, plan)| plan);
                        let command = transition(
                            billing,
                            &settings,
                            account,
                            current.as_ref(),
                            next.as_ref().zip(next_plan),
                            now,
                            Vec::new(),
                            true,
                        )
                        .await?;
                        Ok(Step::Write(command, Outcome::Ended))
                    }
                }
            })
        })
        .await?;
    match modified {
        Modified::Done(outcome) | Modified::Written(Executed::Fresh(Ok(_)), outcome) => Ok(outcome),
        Modified::Written(Executed::Existing(_) | Executed::Replayed(_), _) => {
            Ok(Outcome::Duplicate)
        }
        Modified::Written(Executed::Fresh(Err(refused)), _) => Err(refused.into()),
    }
}

/// The account a link is for.
fn account_of(link: &PaymentSubscription) -> Result<AccountId, ApiError> {
    AccountId::parse(&link.account)
        .map_err(|_| ApiError::Internal("a subscription link of a bad account".into()))
}

/// Brings the account's subscription to the provider's as it is now
/// ([`machine::follow`]): opens it once its first payment went through,
/// follows a plan change, a cancellation at the period's end (or its taking
/// back) and the status, and ends it when the provider ended it. `with` is
/// the event's record for an account and an outcome, written with the
/// grant when there is one.
pub async fn sync(
    billing: &Billing,
    link: &PaymentSubscription,
    remote: &objects::Subscription,
    with: With<'_>,
) -> Result<Outcome, ApiError> {
    let account = account_of(link)?;
    let store = billing.store.as_ref();
    let current = records::get::<Subscription>(store, account.as_str()).await?;
    let on = linked(&current, &remote.id).map(|doc| &doc.body);
    let fallback = on.map_or(link.plan_id.as_str(), |sub| sub.plan_id.as_str());
    let found = if at_provider(remote).ended() {
        None
    } else {
        plan_for(billing, price_of(remote), fallback).await?
    };
    let plan_id = found.as_ref().map_or(fallback, |(id, _)| id.as_str());
    let entered = match (
        machine::follow(on, &remote.id, at_provider(remote), plan_id),
        &found,
    ) {
        (Follow::End, _) => return end(billing, &account, &remote.id).await,
        (_, None) => {
            tracing::warn!(subscription = %remote.id, "a provider subscription's plan is gone");
            return Ok(Outcome::UnknownPlan);
        }
        (Follow::AwaitPayment, _) => return Ok(Outcome::AwaitingPayment),
        (Follow::Keep, _) => Outcome::Duplicate,
        (Follow::Enter(entry), Some((plan_id, plan))) => {
            // A plan changed at the provider keeps the status the account's
            // subscription has; a new one takes the provider's.
            let status = match entry {
                Entry::Change => on
                    .and_then(|sub| sub.provider.as_ref())
                    .map_or("active", |p| p.status.as_str()),
                Entry::Period(..) => at_provider(remote).status,
            };
            let billed = Billed {
                subscription: &remote.id,
                status,
            };
            enter(billing, &account, billed, plan_id, plan, entry, |outcome| {
                with(&link.account, outcome.code())
            })
            .await?
        }
    };
    let amended = amend(billing, &account, &remote.id, |sub| {
        machine::copy_status(at_provider(remote))(sub);
    })
    .await?;
    Ok(machine::followed(entered, amended))
}

/// The subscription an invoice is for, with its link and account; or, as
/// the error, the outcome of an invoice for no subscription (a one-off
/// purchase's, which its checkout session granted) or for one creditd does
/// not know.
async fn invoice_subscription<'i>(
    billing: &Billing,
    payments: &Payments,
    invoice: &'i Invoice,
) -> Result<Result<(&'i str, PaymentSubscription, AccountId), Outcome>, ApiError> {
    let Some(subscription_id) = invoice.subscription() else {
        return Ok(Err(Outcome::Ignored));
    };
    let Some(link) = link_of(billing, payments, subscription_id).await? else {
        return Ok(Err(Outcome::UnknownSubscription));
    };
    let account = account_of(&link)?;
    Ok(Ok((subscription_id, link, account)))
}

/// An invoice paid: a subscription's first or next period, granted once.
/// `with` is the event's record for an outcome, written with the grant.
pub async fn invoice_paid(
    billing: &Billing,
    payments: &Payments,
    invoice: &Invoice,
    with: With<'_>,
) -> Result<(Option<String>, Outcome), ApiError> {
    let (subscription_id, link, account) =
        match invoice_subscription(billing, payments, invoice).await? {
            Ok(found) => found,
            Err(outcome) => return Ok((None, outcome)),
        };
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
                    plan_for(billing, price_of(&remote), on).await?
                }
            }
        }
        None => {
            // An invoice that would open the subscription after it ended (a
            // late redelivery) opens nothing.
            if at_provider(&fetch(payments, subscription_id).await?).ended() {
                return Ok((Some(link.account.clone()), Outcome::Ended));
            }
            plan_for(billing, price, &link.plan_id).await?
        }
    };
    let Some((plan_id, plan)) = found else {
        return Ok((Some(link.account.clone()), Outcome::UnknownPlan));
    };
    let start = Timestamp::from_secs(start);
    let period = Entry::Period(start, Timestamp::from_secs(end));
    let billed = Billed {
        subscription: subscription_id,
        status: "active",
    };
    let outcome = enter(
        billing,
        &account,
        billed,
        &plan_id,
        &plan,
        period,
        |outcome| with(&link.account, outcome.code()),
    )
    .await?;
    if outcome == Outcome::Duplicate {
        // Paid again after a failure, for the period it is in: active again.
        amend(billing, &account, subscription_id, |sub| {
            machine::mark_paid_again(start)(sub);
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
async fn refuse_second(payments: &Payments, subscription_id: &str, outcome: Outcome) {
    if outcome != Outcome::ConflictingSubscription || !is_provider_id(subscription_id) {
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
) -> Result<(Option<String>, Outcome), ApiError> {
    let (subscription_id, link, account) =
        match invoice_subscription(billing, payments, invoice).await? {
            Ok(found) => found,
            Err(outcome) => return Ok((None, outcome)),
        };
    // A failed invoice for a period already paid for (a late delivery after
    // the retry's success) changes nothing.
    let starts = invoice
        .period_line()
        .map(|(span, _)| Timestamp::from_secs(span.start));
    let amended = amend(billing, &account, subscription_id, |sub| {
        machine::mark_past_due(starts)(sub);
    })
    .await?;
    Ok((Some(link.account), machine::failed_outcome(amended, starts)))
}

/// A subscription created, updated or deleted at the provider: the account's
/// follows it as it is now.
pub async fn subscription_event(
    billing: &Billing,
    payments: &Payments,
    object: &objects::Subscription,
    with: With<'_>,
) -> Result<(Option<String>, Outcome), ApiError> {
    let subscription_id = object.id.as_str();
    let Some(link) = link_of(billing, payments, subscription_id).await? else {
        return Ok((None, Outcome::UnknownSubscription));
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
    with: With<'_>,
) -> Result<Outcome, ApiError> {
    let Some(subscription_id) = session
        .subscription
        .as_deref()
        .filter(|id| is_provider_id(id))
    else {
        return Ok(Outcome::AwaitingPayment);
    };
    let Some(link) = link_session(billing, subscription_id, &session.id).await? else {
        return Ok(Outcome::UnknownSession);
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
    if let Some(item) = remote.item().and_then(|item| item.id.clone()) {
        form.push(("items[0][id]".to_owned(), item));
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
    let remote = updated
        .read::<objects::Subscription>("a subscription")
        .map_err(provider_error)?;
    sync(billing, &link, &remote, &|_, _| Vec::new()).await?;
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
                tracing::info!(subscription = %subscription_id, outcome = outcome.code(), "asked the provider about a late subscription");
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
            machine::mark_checked(now)(sub);
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
) -> Result<Outcome, ApiError> {
    let Some(link) = link_of(billing, payments, subscription_id).await? else {
        return Ok(Outcome::UnknownSubscription);
    };
    let remote = fetch(payments, subscription_id).await?;
    if !at_provider(&remote).ended()
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
            let (_, outcome) =
                invoice_paid(billing, payments, &invoice, &|_, _| Vec::new()).await?;
            if outcome != Outcome::Duplicate {
                return Ok(outcome);
            }
        }
    }
    sync(billing, &link, &remote, &|_, _| Vec::new()).await
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
