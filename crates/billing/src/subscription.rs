//! Subscriptions: an account on a plan, its current period, moving between plans, and the
//! renewals that grant each period once, however often they run and on however many nodes.

use std::sync::Arc;

use ledger::{
    AccountId, Amount, ExternalId, Metadata, NewGrant, Reject, Renewal, Source, Timestamp,
};
use serde::{Deserialize, Serialize};
use store::records::{self, Doc, Expect, Kind, Lookup, RecordFilter, RecordWrite};
use store::{Command, Executed, Op, Outcome, Refused, Store, StoreError};

use crate::Billing;
use crate::domain::{Period, overage_due, period, period_at, period_overage};
use crate::error::BillingError;
use crate::plan::{CurrencyJson, Plan};
use crate::settings::{self, CreditSettings};

/// An account's subscription, as stored: a record of kind `subscription`
/// whose id is the account's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The plan.
    pub plan_id: String,
    /// The instant periods are counted from.
    pub anchor_micros: i64,
    /// The current period's number, from 0 at the anchor.
    pub period_index: u32,
    /// The current period's start.
    pub period_start_micros: i64,
    /// The current period's end, where it renews.
    pub period_end_micros: i64,
    /// Whether it ends at the period's end (back to the default plan).
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// The payment provider's subscription that bills it, when one does:
    /// then the provider's paid invoices renew it, not creditd's renewals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderLink>,
    /// When the account moved onto the plan, in micros, when that was after
    /// the current period's start (a period counted from an earlier anchor):
    /// what it spent before, on another plan, is not this period's usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_micros: Option<i64>,
}

/// The provider's subscription behind a subscription, and its status there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLink {
    /// The provider's id (`sub_…`).
    pub subscription: String,
    /// Its status there: `active`, `past_due`, `trialing`, `unpaid`, ….
    pub status: String,
    /// When creditd last asked the provider about it because its period had
    /// ended with no word, in micros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at_micros: Option<i64>,
    /// The start of the provider's billing period the plan's credits are
    /// for, in micros; a plan change within it keeps it, so each plan is
    /// granted once per billing period however often the account moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_start_micros: Option<i64>,
}

/// How long after its period's end a subscription the provider bills waits
/// for the provider's word before creditd asks the provider itself.
pub const PROVIDER_GRACE_SECS: i64 = 86_400;

/// How long creditd waits between two such questions about one subscription.
pub const PROVIDER_RECHECK_SECS: i64 = 6 * 3600;

impl Kind for Subscription {
    const KIND: &'static str = "subscription";

    fn lookups(&self) -> Vec<Lookup> {
        let mut lookups = vec![Lookup::ordered("plan", self.plan_id.clone())];
        // A subscription the provider bills renews when its invoice is paid,
        // so creditd's renewals never find it; when the provider's word is
        // late, creditd asks the provider (`payments::subscriptions`).
        match &self.provider {
            None => lookups.push(Lookup::instant(
                "renews_at",
                Timestamp::from_micros(self.period_end_micros),
            )),
            Some(link) => {
                let micros = ledger::MICROS_PER_SECOND;
                let due = self
                    .period_end_micros
                    .saturating_add(PROVIDER_GRACE_SECS * micros)
                    .max(
                        link.checked_at_micros
                            .unwrap_or(i64::MIN)
                            .saturating_add(PROVIDER_RECHECK_SECS * micros),
                    );
                lookups.push(Lookup::instant("provider_due", Timestamp::from_micros(due)));
            }
        }
        lookups
    }
}

impl Subscription {
    /// A subscription to `plan_id` in `period`, counted from `anchor`.
    pub fn new(plan_id: &str, anchor: Timestamp, period: Period) -> Subscription {
        Subscription {
            plan_id: plan_id.to_owned(),
            anchor_micros: anchor.micros(),
            period_index: period.index,
            period_start_micros: period.start.micros(),
            period_end_micros: period.end.micros(),
            cancel_at_period_end: false,
            provider: None,
            entered_micros: None,
        }
    }

    /// The same subscription, entered at `at`: its usage counts from then
    /// when that is after its period's start.
    pub fn entered_at(mut self, at: Timestamp) -> Subscription {
        self.entered_micros = (at.micros() > self.period_start_micros).then_some(at.micros());
        self
    }

    /// Where the current period's usage is counted from: the period's start,
    /// or when the account moved onto the plan within it, that instant.
    pub fn usage_start(&self) -> Timestamp {
        Timestamp::from_micros(self.entered_micros.map_or(self.period_start_micros, |e| {
            e.max(self.period_start_micros)
        }))
    }

    /// The current period.
    pub fn period(&self) -> Period {
        Period {
            index: self.period_index,
            start: Timestamp::from_micros(self.period_start_micros),
            end: Timestamp::from_micros(self.period_end_micros),
        }
    }

    /// The anchor.
    pub fn anchor(&self) -> Timestamp {
        Timestamp::from_micros(self.anchor_micros)
    }

    /// The instant the plan's grant for the current period is named by:
    /// the period's start, or for a plan the provider bills, the start of
    /// the provider's billing period.
    pub fn grant_start(&self) -> Timestamp {
        Timestamp::from_micros(
            self.provider
                .as_ref()
                .and_then(|p| p.billing_start_micros)
                .unwrap_or(self.period_start_micros),
        )
    }
}

/// An overage billed at a period's end, as stored: a record of kind
/// `overage_charge`, once per account and period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverageCharge {
    /// The account.
    pub account: String,
    /// The plan whose overage it is.
    pub plan_id: String,
    /// The period's start.
    pub period_start_micros: i64,
    /// The period's end (or when the account left the plan).
    pub period_end_micros: i64,
    /// Credits used beyond the period's credits, as a plain decimal.
    pub credits: String,
    /// The price per credit, minor units.
    pub unit_price: String,
    /// The currency.
    pub currency: CurrencyJson,
    /// What is due, in minor units, rounded half up.
    pub amount_due: i64,
    /// The payment provider's invoice item it became, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_item: Option<String>,
}

impl Kind for OverageCharge {
    const KIND: &'static str = "overage_charge";

    fn lookups(&self) -> Vec<Lookup> {
        vec![
            Lookup::ordered("account", self.account.clone()),
            Lookup::ordered(
                "invoiced",
                if self.invoice_item.is_some() {
                    "true"
                } else {
                    "false"
                },
            ),
        ]
    }
}

impl OverageCharge {
    /// The charge's id: the account and the period's start, so that a
    /// period is charged once.
    pub fn id(account: &AccountId, period_start: Timestamp) -> String {
        format!("{account}:{}", records::sortable_instant(period_start))
    }
}

/// The external id of a plan's grant for a period: what makes it happen once.
pub fn period_external_id(plan_id: &str, start: Timestamp) -> ExternalId {
    ExternalId::parse(&format!("period:{plan_id}:{start}")).expect("a period's external id")
}

/// The grant of a plan's credits for a period, or none for a plan without
/// credits.
pub fn period_grant(
    plan_id: &str,
    plan: &Plan,
    period: Period,
    settings: &CreditSettings,
) -> Option<NewGrant> {
    let credits = plan.credits();
    credits.is_positive().then(|| NewGrant {
        amount: credits,
        source: Source::Subscription,
        priority: Some(settings.priority(Source::Subscription)),
        effective_at: Some(period.start),
        expires_at: plan.credits_expire_at_period_end.then_some(period.end),
        metadata: Metadata::empty(),
        external_id: Some(period_external_id(plan_id, period.start)),
        reason: None,
        actor: None,
    })
}

/// What subscribing a new account to `plan_id` at `now` writes with it.
pub fn opening(
    account: &AccountId,
    plan_id: &str,
    plan: &Plan,
    settings: &CreditSettings,
    now: Timestamp,
) -> Result<(Option<NewGrant>, RecordWrite), StoreError> {
    let first = period(now, plan.interval(), 0)
        .ok_or_else(|| StoreError::Internal("a period past the end of time".into()))?;
    let subscription = Subscription::new(plan_id, now, first);
    Ok((
        period_grant(plan_id, plan, first, settings),
        records::put(account.as_str(), &subscription, Expect::Absent),
    ))
}

/// Reads a plan, or says it does not exist.
pub async fn plan(
    store: &dyn Store,
    plan_id: &str,
) -> Result<Result<Plan, BillingError>, StoreError> {
    Ok(records::get::<Plan>(store, plan_id)
        .await?
        .map(|doc| doc.body)
        .ok_or(BillingError::PlanNotFound))
}

/// How a subscription change ended.
pub enum Changed {
    /// Applied: the subscription now.
    Done(Doc<Subscription>),
    /// Refused by billing.
    Refused(BillingError),
    /// Refused by the ledger (an account that does not exist).
    Rejected(Reject),
}

/// What an account owes that a plan with overage bills at the end of a
/// period, and the charge that bills it.
#[allow(clippy::too_many_arguments)]
async fn overage_to_settle(
    store: &dyn Store,
    account: &AccountId,
    plan_id: &str,
    plan: &Plan,
    from: Timestamp,
    usage_start: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<Option<(Amount, RecordWrite)>, StoreError> {
    let Some(overage) = &plan.overage else {
        return Ok(None);
    };
    let Some(book) = store.book(account.clone(), None).await? else {
        return Ok(None);
    };
    let used = store
        .usage_between(account.clone(), usage_start, to.max(usage_start))
        .await?;
    let debt = period_overage(book.settled(now).account.debt, used);
    if !debt.is_positive() {
        return Ok(None);
    }
    let due = overage_due(debt, overage.unit_price())
        .map_err(|e| StoreError::Internal(format!("overage of {account}: {e}")))?;
    let charge = OverageCharge {
        account: account.to_string(),
        plan_id: plan_id.to_owned(),
        period_start_micros: from.micros(),
        period_end_micros: to.micros(),
        credits: debt.to_string(),
        unit_price: overage.unit_price.clone(),
        currency: overage.currency,
        amount_due: due,
        invoice_item: None,
    };
    Ok(Some((
        debt,
        records::put(&OverageCharge::id(account, from), &charge, Expect::Absent),
    )))
}

/// Writes a subscription's move in one transaction: the current period (if
/// any) closed — its plan's leftovers carried or expired, its overage from
/// the period's start to `settle_to` billed as a charge — and the next one
/// (if any) opened with its plan's grant; the record moves at the version it
/// was read at, so a concurrent move makes this one refused or existing.
/// `with` joins other records to the same transaction; without `grant` the
/// next plan's credits are not granted (they were, for this period).
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    billing: &Billing,
    settings: &CreditSettings,
    account: &AccountId,
    current: Option<&Doc<Subscription>>,
    next: Option<(&Subscription, &Plan)>,
    settle_to: Timestamp,
    with: Vec<RecordWrite>,
    grant: bool,
) -> Result<Executed, StoreError> {
    let store = billing.store.as_ref();
    let now = billing.clock.now();
    let mut records = vec![match (next, current) {
        (Some((sub, _)), Some(doc)) => records::put(&doc.id, sub, Expect::Version(doc.version)),
        (Some((sub, _)), None) => records::put(account.as_str(), sub, Expect::Absent),
        (None, Some(doc)) => records::delete::<Subscription>(&doc.id, Expect::Version(doc.version)),
        (None, None) => {
            return Err(StoreError::Internal(
                "a move from nothing to nothing".into(),
            ));
        }
    }];
    records.extend(with);
    let old_plan = match current {
        Some(doc) => plan(store, &doc.body.plan_id).await?.ok(),
        None => None,
    };
    let settle = match (current, &old_plan) {
        (Some(doc), Some(old)) => {
            overage_to_settle(
                store,
                account,
                &doc.body.plan_id,
                old,
                doc.body.period().start,
                doc.body.usage_start(),
                settle_to,
                now,
            )
            .await?
        }
        _ => None,
    };
    let settle_debt = settle.map(|(debt, charge)| {
        records.push(charge);
        debt
    });
    let renewal = Renewal {
        close: current.is_some(),
        carry: old_plan.as_ref().map_or(ledger::Carry::Reset, Plan::carry),
        settle_debt,
        overdraft_limit: Some(next.map_or(Amount::ZERO, |(_, plan)| plan.overdraft_limit())),
        grant: next.filter(|_| grant).and_then(|(sub, plan)| {
            period_grant(&sub.plan_id, plan, sub.period(), settings).map(|mut g| {
                g.external_id = Some(period_external_id(&sub.plan_id, sub.grant_start()));
                g
            })
        }),
    };
    let command = Command::new(Op::Renew {
        account: account.clone(),
        renewal,
    })
    .with_records(records);
    store.execute(command).await
}

/// Moves an account to a plan now: the old plan's leftover credits expire or
/// roll over, its overage so far is billed, and the new plan's period starts
/// with its full grant, all in one transaction. Subscribing again to the
/// plan the account is on changes nothing (or takes back a cancellation).
pub async fn change(
    billing: &Billing,
    account: &AccountId,
    plan_id: &str,
    anchor: Option<Timestamp>,
) -> Result<Changed, StoreError> {
    let store = billing.store.as_ref();
    let new_plan = match plan(store, plan_id).await? {
        Ok(plan) => plan,
        Err(refused) => return Ok(Changed::Refused(refused)),
    };
    for _ in 0..5 {
        let now = billing.clock.now();
        if anchor.is_some_and(|a| a > now) {
            return Ok(Changed::Refused(BillingError::InvalidPlan(
                "anchor must not be in the future".into(),
            )));
        }
        let settings = settings::read(store, &billing.env).await?;
        let current = records::get::<Subscription>(store, account.as_str()).await?;
        if let Some(current) = &current
            && current.body.plan_id == plan_id
            && anchor.is_none_or(|a| a.micros() == current.body.anchor_micros)
        {
            if !current.body.cancel_at_period_end {
                return Ok(Changed::Done(current.clone()));
            }
            let mut kept = current.body.clone();
            kept.cancel_at_period_end = false;
            let write = records::put(&current.id, &kept, Expect::Version(current.version));
            match records::write::<Subscription>(store, write).await? {
                records::Written::Stored(doc) => return Ok(Changed::Done(doc)),
                _ => continue,
            }
        }
        let anchor = anchor.unwrap_or(now);
        let Some(first) = period_at(anchor, new_plan.interval(), now) else {
            return Ok(Changed::Refused(BillingError::InvalidPlan(
                "the anchor gives no period around now".into(),
            )));
        };
        let subscription = Subscription::new(plan_id, anchor, first).entered_at(now);
        let executed = transition(
            billing,
            &settings,
            account,
            current.as_ref(),
            Some((&subscription, &new_plan)),
            now,
            Vec::new(),
            true,
        )
        .await?;
        match executed {
            Executed::Fresh(Ok(_)) | Executed::Existing(_) => {
                let doc = records::get::<Subscription>(store, account.as_str())
                    .await?
                    .ok_or_else(|| StoreError::Internal("a subscription vanished".into()))?;
                return Ok(Changed::Done(doc));
            }
            Executed::Fresh(Err(Refused::Ledger(reject @ Reject::AccountNotFound))) => {
                return Ok(Changed::Rejected(reject));
            }
            // Moved meanwhile (another change, a renewal): look again.
            Executed::Fresh(Err(_)) => continue,
            Executed::Replayed(_) => {
                return Err(StoreError::Internal(
                    "a subscription change replayed".into(),
                ));
            }
        }
    }
    Err(StoreError::Unavailable(
        "the subscription kept changing while it was moved; retry".into(),
    ))
}

/// Cancels a subscription at the end of its period, when the account moves
/// to the default plan (or to none).
pub async fn cancel(
    store: &dyn Store,
    account: &AccountId,
) -> Result<Result<Doc<Subscription>, BillingError>, StoreError> {
    for _ in 0..5 {
        let Some(doc) = records::get::<Subscription>(store, account.as_str()).await? else {
            return Ok(Err(BillingError::SubscriptionNotFound));
        };
        if doc.body.cancel_at_period_end {
            return Ok(Ok(doc));
        }
        let mut canceled = doc.body.clone();
        canceled.cancel_at_period_end = true;
        let write = records::put(&doc.id, &canceled, Expect::Version(doc.version));
        if let records::Written::Stored(doc) = records::write::<Subscription>(store, write).await? {
            return Ok(Ok(doc));
        }
    }
    Err(StoreError::Unavailable(
        "the subscription kept changing while it was canceled; retry".into(),
    ))
}

/// The most periods one subscription is renewed by in one run: a server
/// down for longer catches up over several runs.
const PERIODS_PER_RUN: usize = 64;

/// Subscriptions read per page of a run.
const RUN_PAGE: usize = 100;

/// Renews every subscription whose period has ended, period by period, each
/// once; returns how many periods it renewed. Safe to run on every node at
/// once and again after a crash: a period's grant carries its external id,
/// and the subscription record moves at its expected version in the same
/// transaction.
pub async fn renew_due(billing: &Billing) -> Result<usize, StoreError> {
    let store = billing.store.as_ref();
    let now = billing.clock.now();
    // One reading of the settings for the whole run.
    let settings = settings::read(store, &billing.env).await?;
    let filter = RecordFilter::Range {
        name: "renews_at".to_owned(),
        from: None,
        to: Some(records::sortable_instant(Timestamp::from_micros(
            now.micros().saturating_add(1),
        ))),
    };
    let mut renewed = 0;
    let mut after = None;
    loop {
        let page = store
            .records(store::RecordQuery {
                kind: Subscription::KIND.to_owned(),
                filter: filter.clone(),
                after,
                limit: RUN_PAGE,
            })
            .await?;
        let full = page.len() == RUN_PAGE;
        after = page.last().map(|r| r.cursor(&filter));
        for record in page {
            let doc = Doc::<Subscription>::from_record(record)?;
            match renew_one(billing, &settings, doc, now).await {
                Ok(n) => renewed += n,
                Err(error) => tracing::warn!(%error, "renewing a subscription failed"),
            }
        }
        if !full {
            return Ok(renewed);
        }
    }
}

/// What follows a subscription's ending period: the same plan's next
/// period, or on cancellation the default plan from the boundary on (or no
/// plan).
pub async fn successor(
    store: &dyn Store,
    settings: &CreditSettings,
    current: &Subscription,
    old_plan: &Plan,
    from: Timestamp,
) -> Result<Option<(Subscription, Plan)>, StoreError> {
    if !current.cancel_at_period_end {
        let Some(period) = period(
            current.anchor(),
            old_plan.interval(),
            current.period_index + 1,
        ) else {
            return Err(StoreError::Internal("a period past the end of time".into()));
        };
        let mut next = Subscription::new(&current.plan_id, current.anchor(), period);
        next.provider.clone_from(&current.provider);
        return Ok(Some((next, old_plan.clone())));
    }
    let Some(id) = &settings.default_plan else {
        return Ok(None);
    };
    let Ok(default) = plan(store, id).await? else {
        return Ok(None);
    };
    let Some(first) = period(from, default.interval(), 0) else {
        return Err(StoreError::Internal("a period past the end of time".into()));
    };
    Ok(Some((Subscription::new(id, from, first), default)))
}

/// Renews one subscription until its period covers `now`.
async fn renew_one(
    billing: &Billing,
    settings: &CreditSettings,
    mut doc: Doc<Subscription>,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let store = billing.store.as_ref();
    let account = AccountId::parse(&doc.id)
        .map_err(|_| StoreError::Corrupt(format!("subscription of {:?}", doc.id)))?;
    let mut renewed = 0;
    for _ in 0..PERIODS_PER_RUN {
        let ending = doc.body.period();
        if ending.end > now || doc.body.provider.is_some() {
            break;
        }
        let Ok(old_plan) = plan(store, &doc.body.plan_id).await? else {
            tracing::warn!(account = %account, plan = %doc.body.plan_id, "a subscription's plan is gone");
            break;
        };
        let next = successor(store, settings, &doc.body, &old_plan, ending.end).await?;
        let executed = transition(
            billing,
            settings,
            &account,
            Some(&doc),
            next.as_ref().map(|(sub, plan)| (sub, plan)),
            ending.end,
            Vec::new(),
            true,
        )
        .await?;
        match executed {
            Executed::Fresh(Ok(Outcome::Renewed { .. })) => renewed += 1,
            // Renewed by another run (another node): read what it left.
            Executed::Existing(_) | Executed::Fresh(Err(Refused::VersionConflict { .. })) => {}
            Executed::Fresh(Err(refused)) => {
                tracing::warn!(account = %account, ?refused, "a renewal was refused; it is tried again");
                break;
            }
            other => {
                return Err(StoreError::Internal(format!(
                    "a renewal answered {other:?}"
                )));
            }
        }
        match records::get::<Subscription>(store, &doc.id).await? {
            Some(next) => doc = next,
            None => break,
        }
    }
    Ok(renewed)
}

/// Runs renewals every `every` until the process ends.
pub fn spawn(billing: Arc<Billing>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match renew_due(&billing).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(periods = n, "renewed subscriptions"),
                Err(error) => tracing::warn!(%error, "renewing subscriptions failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periods_external_id_names_its_plan_and_start() {
        let id = period_external_id("pro", Timestamp::from_secs(1_800_000_000));
        assert_eq!(id.as_str(), "period:pro:2027-01-15T08:00:00.000000Z");
    }

    #[test]
    fn an_overage_charge_is_one_per_account_and_period() {
        let account = AccountId::parse("u").unwrap();
        let a = OverageCharge::id(&account, Timestamp::from_secs(10));
        let b = OverageCharge::id(&account, Timestamp::from_secs(20));
        assert_ne!(a, b);
        assert!(a < b, "ids sort by period");
    }
}
