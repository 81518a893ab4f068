//! Subscriptions: an account on a plan, its current period, moving between plans, and the
//! renewals that grant each period once, however often they run and on however many nodes.

use ledger::{
    AccountId, Amount, ExternalId, Metadata, NewGrant, Reject, Renewal, Source, Timestamp,
};
use serde::{Deserialize, Serialize};
use store::records::{self, Doc, Expect, Kind, Lookup, Modified, RecordFilter, RecordWrite, Step};
use store::{Command, Executed, Op, Outcome, Refused, Store, StoreError};

use crate::Billing;
use crate::domain::subscription::{self as machine, DefaultPlan, Renewal as Next};
use crate::domain::{Period, UnitPrice, overage_due, period, period_overage};
use crate::error::BillingError;
use crate::plan::{CurrencyJson, Plan};
use crate::settings::{self, CreditSettings};

pub use crate::domain::subscription::{
    PROVIDER_GRACE_SECS, PROVIDER_RECHECK_SECS, ProviderLink, Subscription,
};

impl Kind for Subscription {
    const KIND: &'static str = "subscription";

    fn lookups(&self) -> Vec<Lookup> {
        let mut lookups = vec![Lookup::ordered("plan", self.plan_id.clone())];
        // A subscription the provider bills renews when its invoice is paid,
        // so creditd's renewals never find it; when the provider's word is
        // late, creditd asks the provider (`payments::subscriptions`).
        match self.provider_due() {
            None => lookups.push(Lookup::instant(
                "renews_at",
                Timestamp::from_micros(self.period_end_micros),
            )),
            Some(due) => lookups.push(Lookup::instant("provider_due", due)),
        }
        lookups
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
    /// Credits used beyond the period's credits, kept as a plain decimal.
    #[serde(with = "crate::stored::amount")]
    pub credits: Amount,
    /// The price per credit, minor units, kept as a plain decimal.
    #[serde(with = "crate::stored::unit_price")]
    pub unit_price: UnitPrice,
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
/// period, and the charge that bills it with its `overage.charged` event.
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
) -> Result<Option<(Amount, Vec<RecordWrite>)>, StoreError> {
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
    let due = overage_due(debt, overage.unit_price)
        .map_err(|e| StoreError::Internal(format!("overage of {account}: {e}")))?;
    let charge = OverageCharge {
        account: account.to_string(),
        plan_id: plan_id.to_owned(),
        period_start_micros: from.micros(),
        period_end_micros: to.micros(),
        credits: debt,
        unit_price: overage.unit_price,
        currency: overage.currency,
        amount_due: due,
        invoice_item: None,
    };
    let id = OverageCharge::id(account, from);
    Ok(Some((
        debt,
        vec![
            overage_event(account, &id, &charge, now),
            records::put(&id, &charge, Expect::Absent),
        ],
    )))
}

/// The `overage.charged` event of an overage charge, written with it.
fn overage_event(
    account: &AccountId,
    id: &str,
    charge: &OverageCharge,
    now: Timestamp,
) -> RecordWrite {
    server::events::emit(
        server::events::EventType::OverageCharged,
        &format!("overage/{id}"),
        account,
        serde_json::json!({
            "charge_id": id,
            "plan_id": charge.plan_id,
            "credits": charge.credits.to_string(),
            "amount_due": charge.amount_due,
            "currency": charge.currency.0.as_str(),
            "period_start": Timestamp::from_micros(charge.period_start_micros).to_string(),
            "period_end": Timestamp::from_micros(charge.period_end_micros).to_string(),
        }),
        now,
    )
}

/// The command that moves a subscription in one transaction: the current
/// period (if any) closed — its plan's leftovers carried or expired, its
/// overage from the period's start to `settle_to` billed as a charge — and
/// the next one (if any) opened with its plan's grant; the record moves at
/// the version it was read at, so a concurrent move makes it refused or
/// existing. `with` joins other records to the same transaction; without
/// `grant` the next plan's credits are not granted (they were, for this
/// period). Reads what the move needs: the old plan and its usage.
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
) -> Result<Command, StoreError> {
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
        records.extend(charge);
        debt
    });
    // A period that follows the last of the same plan is a renewal: its
    // event joins the move.
    if let (Some(doc), Some((sub, plan))) = (current, next)
        && doc.body.plan_id == sub.plan_id
        && sub.period().start > doc.body.period().start
    {
        let period = sub.period();
        let granted = grant
            .then(|| period_grant(&sub.plan_id, plan, period, settings))
            .flatten()
            .map(|g| g.amount.to_string());
        records.push(server::events::emit(
            server::events::EventType::SubscriptionRenewed,
            &format!(
                "renewed/{account}/{}/{}",
                sub.plan_id,
                period.start.micros()
            ),
            account,
            serde_json::json!({
                "plan_id": sub.plan_id,
                "period_start": period.start.to_string(),
                "period_end": period.end.to_string(),
                "granted": granted,
            }),
            now,
        ));
    }
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
    Ok(Command::new(Op::Renew {
        account: account.clone(),
        renewal,
    })
    .with_records(records))
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
    let new_plan = &new_plan;
    let modified =
        records::modify::<Subscription, _, StoreError>(store, account.as_str(), move |current| {
            Box::pin(async move {
                let now = billing.clock.now();
                let body = current.as_ref().map(|doc| &doc.body);
                Ok(
                    match machine::change(body, plan_id, new_plan.interval(), anchor, now) {
                        machine::Change::Keep => Step::Done(current.map(Changed::Done)),
                        machine::Change::Refused(why) => Step::Done(Some(Changed::Refused(
                            BillingError::InvalidPlan(why.into()),
                        ))),
                        machine::Change::Uncancel(kept) => {
                            let version = current.as_ref().map_or(0, |doc| doc.version);
                            let write =
                                records::put(account.as_str(), &kept, Expect::Version(version));
                            Step::Write(Command::new(Op::Record(write)), None)
                        }
                        machine::Change::Move(next) => {
                            let settings = settings::read(store, &billing.env).await?;
                            let command = transition(
                                billing,
                                &settings,
                                account,
                                current.as_ref(),
                                Some((&next, new_plan)),
                                now,
                                Vec::new(),
                                true,
                            )
                            .await?;
                            Step::Write(command, None)
                        }
                    },
                )
            })
        })
        .await?;
    let executed = match modified {
        Modified::Done(Some(changed)) => return Ok(changed),
        Modified::Done(None) => {
            return Err(StoreError::Internal("a kept subscription vanished".into()));
        }
        Modified::Written(executed, _) => executed,
    };
    match executed {
        Executed::Fresh(Ok(_)) | Executed::Existing(_) => {
            let doc = records::get::<Subscription>(store, account.as_str())
                .await?
                .ok_or_else(|| StoreError::Internal("a subscription vanished".into()))?;
            Ok(Changed::Done(doc))
        }
        Executed::Fresh(Err(Refused::Ledger(reject))) => Ok(Changed::Rejected(reject)),
        other => Err(StoreError::Internal(format!(
            "a subscription change answered {other:?}"
        ))),
    }
}

/// Cancels a subscription at the end of its period, when the account moves
/// to the default plan (or to none).
pub async fn cancel(
    store: &dyn Store,
    account: &AccountId,
) -> Result<Result<Doc<Subscription>, BillingError>, StoreError> {
    let canceled = |sub: &Subscription| machine::cancel(sub);
    match records::update(store, account.as_str(), canceled).await? {
        records::Updated::Changed(doc) => Ok(Ok(doc)),
        records::Updated::Refused(refused) => Err(StoreError::Internal(format!(
            "canceling a subscription was refused: {refused:?}"
        ))),
        // Canceled already, or absent.
        records::Updated::Unchanged => Ok(records::get::<Subscription>(store, account.as_str())
            .await?
            .ok_or(BillingError::SubscriptionNotFound)),
    }
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
    // One reading of the settings and the default plan for the whole run.
    let settings = settings::read(store, &billing.env).await?;
    let default = default_plan(store, &settings).await?;
    let default = default.as_ref().map(|(id, plan)| DefaultPlan {
        id,
        interval: plan.interval(),
    });
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
            match renew_one(billing, &settings, default, doc, now).await {
                Ok(n) => renewed += n,
                Err(error) => tracing::warn!(%error, "renewing a subscription failed"),
            }
        }
        if !full {
            return Ok(renewed);
        }
    }
}

/// The default plan the settings name, when it exists.
pub async fn default_plan(
    store: &dyn Store,
    settings: &CreditSettings,
) -> Result<Option<(String, Plan)>, StoreError> {
    let Some(id) = &settings.default_plan else {
        return Ok(None);
    };
    Ok(plan(store, id).await?.ok().map(|plan| (id.clone(), plan)))
}

/// Renews one subscription until its period covers `now`.
async fn renew_one(
    billing: &Billing,
    settings: &CreditSettings,
    default: Option<DefaultPlan<'_>>,
    doc: Doc<Subscription>,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let store = billing.store.as_ref();
    let account = AccountId::parse(&doc.id)
        .map_err(|_| StoreError::Corrupt(format!("subscription of {:?}", doc.id)))?;
    let account = &account;
    let mut renewed = 0;
    for _ in 0..PERIODS_PER_RUN {
        let modified = records::modify::<Subscription, _, StoreError>(
            store,
            &doc.id,
            move |current| Box::pin(async move {
                let Some(current) = current.filter(|c| c.body.is_due(now)) else {
                    return Ok(Step::Done(false));
                };
                let Ok(old_plan) = plan(store, &current.body.plan_id).await? else {
                    tracing::warn!(account = %account, plan = %current.body.plan_id, "a subscription's plan is gone");
                    return Ok(Step::Done(false));
                };
                match machine::renewal(&current.body, old_plan.interval(), default, now) {
                    Next::NotDue => Ok(Step::Done(false)),
                    Next::OutOfTime => Err(StoreError::Internal(
                        "a period past the end of time".into(),
                    )),
                    Next::Renew { next, at } => {
                        let next_plan = match &next {
                            Some(sub) if sub.plan_id == current.body.plan_id => Some(old_plan.clone()),
                            Some(sub) => plan(store, &sub.plan_id).await?.ok(),
                            None => None,
                        };
                        let next = next.as_ref().zip(next_plan.as_ref());
                        let command = transition(
                            billing,
                            settings,
                            account,
                            Some(&current),
                            next,
                            at,
                            Vec::new(),
                            true,
                        )
                        .await?;
                        Ok(Step::Write(command, true))
                    }
                }
            }),
        )
        .await?;
        match modified {
            Modified::Done(_) => break,
            Modified::Written(Executed::Fresh(Ok(Outcome::Renewed { .. })), _) => renewed += 1,
            // Renewed by another run (another node): look again.
            Modified::Written(Executed::Existing(_), _) => {}
            Modified::Written(Executed::Fresh(Err(refused)), _) => {
                tracing::warn!(account = %account, ?refused, "a renewal was refused; it is tried again");
                break;
            }
            Modified::Written(other, _) => {
                return Err(StoreError::Internal(format!(
                    "a renewal answered {other:?}"
                )));
            }
        }
    }
    Ok(renewed)
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
