//! Subscriptions as a state machine: an account on a plan in a period, and what each word from
//! the clock, the API or the payment provider makes of it — a typed decision the IO around it
//! carries out, with no IO and no clock of its own.

use ledger::{MICROS_PER_SECOND, Timestamp};
use serde::{Deserialize, Serialize};

use super::period::{Interval, Period, period, period_at};

/// How long after its period's end a subscription the provider bills waits
/// for the provider's word before creditd asks the provider itself.
pub const PROVIDER_GRACE_SECS: i64 = 86_400;

/// How long creditd waits between two such questions about one subscription.
pub const PROVIDER_RECHECK_SECS: i64 = 6 * 3600;

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

    /// Whether the clock renews it at `now`: its period has ended, and no
    /// provider bills it.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.period_end_micros <= now.micros() && self.provider.is_none()
    }

    /// Whether the provider's subscription `id` bills it.
    pub fn billed_by(&self, id: &str) -> bool {
        self.provider.as_ref().is_some_and(|p| p.subscription == id)
    }

    /// When creditd asks the provider about it, for one the provider bills:
    /// a day after its period's end, and no sooner than six hours after it
    /// last asked.
    pub fn provider_due(&self) -> Option<Timestamp> {
        let link = self.provider.as_ref()?;
        let due = self
            .period_end_micros
            .saturating_add(PROVIDER_GRACE_SECS * MICROS_PER_SECOND)
            .max(
                link.checked_at_micros
                    .unwrap_or(i64::MIN)
                    .saturating_add(PROVIDER_RECHECK_SECS * MICROS_PER_SECOND),
            );
        Some(Timestamp::from_micros(due))
    }
}

/// What a word about a subscription came to: the outcome a payment event's
/// record keeps. The codes are part of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied before, or older than what the subscription holds.
    Duplicate,
    /// The subscription opened in its first paid period.
    Subscribed,
    /// It moved into its next paid period.
    Renewed,
    /// Its plan changed within its period.
    PlanChanged,
    /// Its status or its cancellation changed.
    Updated,
    /// A payment failed: past due, nothing granted.
    PastDue,
    /// The provider ended it.
    Ended,
    /// Not paid yet.
    AwaitingPayment,
    /// A second provider subscription for an account that pays through
    /// another: not followed.
    ConflictingSubscription,
    /// Its price is no plan's.
    UnknownPlan,
    /// Not a subscription creditd started.
    UnknownSubscription,
    /// Not a checkout session creditd created.
    UnknownSession,
    /// Nothing about a subscription.
    Ignored,
}

impl Outcome {
    /// The stable code.
    pub const fn code(self) -> &'static str {
        match self {
            Outcome::Duplicate => "duplicate",
            Outcome::Subscribed => "subscribed",
            Outcome::Renewed => "renewed",
            Outcome::PlanChanged => "plan_changed",
            Outcome::Updated => "updated",
            Outcome::PastDue => "past_due",
            Outcome::Ended => "ended",
            Outcome::AwaitingPayment => "awaiting_payment",
            Outcome::ConflictingSubscription => "conflicting_subscription",
            Outcome::UnknownPlan => "unknown_plan",
            Outcome::UnknownSubscription => "unknown_subscription",
            Outcome::UnknownSession => "unknown_session",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Where a provider's word brings a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A period the provider was paid for, `start..end`: the subscription
    /// opens in it or renews into it.
    Period(Timestamp, Timestamp),
    /// Another plan from now to the end of the period it is in.
    Change,
}

/// The provider's subscription a word is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Billed<'a> {
    /// Its id (`sub_…`).
    pub subscription: &'a str,
    /// Its status there.
    pub status: &'a str,
}

/// What entering a plan comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enter {
    /// Applied before, or older than what the subscription holds: nothing
    /// changes.
    Stale,
    /// The account pays for a plan through another provider subscription
    /// (`other`): this one is not followed.
    Conflicting {
        /// The subscription the account pays through.
        other: String,
    },
    /// The subscription moves: the current plan's period (if any) closes,
    /// its overage billed up to `settle_to`, and `next` opens; its plan's
    /// credits are granted when `grant` says so.
    Move {
        /// The subscription after the move.
        next: Subscription,
        /// Where the old plan's usage is billed up to.
        settle_to: Timestamp,
        /// Whether the plan's credits are granted with it.
        grant: bool,
        /// What the move is: subscribed, renewed or plan changed.
        outcome: Outcome,
    },
}

/// Brings an account onto `plan_id` as the provider's subscription `billed`
/// says at `now`: opens the subscription in a paid period (closing whatever
/// plan the account was on), renews it into a later one, or changes its
/// plan from now to the end of the period it is in. A period at or before
/// the one the subscription is in was granted already, and so was a change
/// to the plan it is on. `plan_granted` says whether the ledger holds
/// `plan_id`'s grant for the billing period the subscription is in (a plan
/// moved back to within one billing period is granted once).
pub fn enter(
    current: Option<&Subscription>,
    billed: Billed<'_>,
    plan_id: &str,
    entry: Entry,
    plan_granted: bool,
    now: Timestamp,
) -> Enter {
    let link = |billing_start: Timestamp| {
        Some(ProviderLink {
            subscription: billed.subscription.to_owned(),
            status: billed.status.to_owned(),
            checked_at_micros: None,
            billing_start_micros: Some(billing_start.micros()),
        })
    };
    let linked = current.filter(|sub| sub.billed_by(billed.subscription));
    match (linked, entry) {
        (Some(sub), Entry::Period(start, end)) => {
            if start <= sub.grant_start() {
                return Enter::Stale;
            }
            let next = Subscription {
                plan_id: plan_id.to_owned(),
                period_index: sub.period_index.saturating_add(1),
                period_start_micros: start.micros(),
                period_end_micros: end.micros(),
                provider: link(start),
                entered_micros: None,
                ..sub.clone()
            };
            Enter::Move {
                next,
                settle_to: sub.period().end.min(start),
                grant: true,
                outcome: Outcome::Renewed,
            }
        }
        (Some(sub), Entry::Change) => {
            if sub.plan_id == plan_id {
                return Enter::Stale;
            }
            // The new plan from now to the end of the period, within the
            // same billing period: its credits are granted once per billing
            // period, so moving back to a plan granted in it grants nothing
            // more.
            let end = sub.period().end.max(now.plus_secs(1));
            let next = Subscription {
                plan_id: plan_id.to_owned(),
                period_start_micros: now.micros(),
                period_end_micros: end.micros(),
                provider: link(sub.grant_start()),
                entered_micros: None,
                ..sub.clone()
            };
            // Once the provider's period has rolled over, the renewal on its
            // way grants the plan the account is on then: a grant now would
            // pay for the same period twice.
            let rolled = now >= sub.period().end;
            Enter::Move {
                next,
                settle_to: now,
                grant: !rolled && !plan_granted,
                outcome: Outcome::PlanChanged,
            }
        }
        (None, Entry::Change) => Enter::Stale,
        (None, Entry::Period(start, end)) => {
            if let Some(other) = current.and_then(|sub| sub.provider.as_ref())
                && other.status != "canceled"
            {
                return Enter::Conflicting {
                    other: other.subscription.clone(),
                };
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
            Enter::Move {
                next,
                settle_to: now,
                grant: true,
                outcome: Outcome::Subscribed,
            }
        }
    }
}

/// What ending a provider's subscription comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// It no longer bills the account's subscription: nothing changes.
    Stale,
    /// The plan's period closes now, and the account moves to `next` (the
    /// default plan from now on), or to no plan.
    Close {
        /// The subscription after it.
        next: Option<Subscription>,
    },
}

/// The default plan, as a subscription's end needs it: its id and interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultPlan<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its interval.
    pub interval: Interval,
}

/// The default plan from `from` on, when there is one.
fn onto_default(default: Option<DefaultPlan<'_>>, from: Timestamp) -> Option<Subscription> {
    let default = default?;
    let first = period(from, default.interval, 0)?;
    Some(Subscription::new(default.id, from, first))
}

/// Ends the account's subscription at `now` as the provider ended its
/// subscription `subscription`.
pub fn end(
    current: Option<&Subscription>,
    subscription: &str,
    default: Option<DefaultPlan<'_>>,
    now: Timestamp,
) -> End {
    match current.filter(|sub| sub.billed_by(subscription)) {
        None => End::Stale,
        Some(_) => End::Close {
            next: onto_default(default, now),
        },
    }
}

/// The provider's subscription as it is now, as the machine reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtProvider<'a> {
    /// Its status (`active`, `past_due`, `canceled`, …).
    pub status: &'a str,
    /// Its current period, in seconds since the epoch.
    pub period: Option<(i64, i64)>,
    /// Whether it ends at its period's end.
    pub cancel_at_period_end: bool,
}

impl AtProvider<'_> {
    /// True once it has ended for good.
    pub fn ended(&self) -> bool {
        matches!(self.status, "canceled" | "incomplete_expired")
    }

    /// True when its first payment went through (or a trial stands in).
    pub fn started(&self) -> bool {
        matches!(self.status, "active" | "trialing")
    }
}

/// What following the provider's subscription as it is now comes to,
/// before its status and cancellation are copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// It ended: the account's ends.
    End,
    /// Not paid yet: nothing opens.
    AwaitPayment,
    /// The account enters its plan: in its period when the account's is not
    /// linked to it yet, or from now when its plan changed.
    Enter(Entry),
    /// On the same plan: only its status and cancellation are followed.
    Keep,
}

/// What the account's subscription does to follow the provider's
/// `remote`, which is on `plan_id` now.
pub fn follow(
    current: Option<&Subscription>,
    subscription: &str,
    remote: AtProvider<'_>,
    plan_id: &str,
) -> Follow {
    if remote.ended() {
        return Follow::End;
    }
    match current.filter(|sub| sub.billed_by(subscription)) {
        None => match remote.period.filter(|_| remote.started()) {
            Some((start, end)) => Follow::Enter(Entry::Period(
                Timestamp::from_secs(start),
                Timestamp::from_secs(end),
            )),
            None => Follow::AwaitPayment,
        },
        Some(sub) if sub.plan_id != plan_id => Follow::Enter(Entry::Change),
        Some(_) => Follow::Keep,
    }
}

/// The outcome of following the provider: what entering came to, or, when
/// that changed nothing, whether the status or the cancellation did.
pub fn followed(entered: Outcome, amended: bool) -> Outcome {
    match entered {
        Outcome::Duplicate if amended => Outcome::Updated,
        other => other,
    }
}

/// The account's subscription changed by `change`, where the provider's
/// `subscription` bills it and the change changes something; none
/// otherwise.
pub fn amend(
    current: &Subscription,
    subscription: &str,
    change: impl FnOnce(&mut Subscription),
) -> Option<Subscription> {
    if !current.billed_by(subscription) {
        return None;
    }
    let mut changed = current.clone();
    change(&mut changed);
    (changed != *current).then_some(changed)
}

/// Copies the provider's status and cancellation.
pub fn copy_status(remote: AtProvider<'_>) -> impl FnOnce(&mut Subscription) {
    move |sub| {
        sub.cancel_at_period_end = remote.cancel_at_period_end;
        if let Some(link) = &mut sub.provider {
            remote.status.clone_into(&mut link.status);
        }
    }
}

/// Marks it past due, unless the failed invoice was for a billing period at
/// or before the one it is in (a late failure after a paid retry).
pub fn mark_past_due(failed_period_start: Option<Timestamp>) -> impl FnOnce(&mut Subscription) {
    move |sub| {
        if failed_period_start.is_some_and(|start| start <= sub.grant_start()) {
            return;
        }
        if let Some(link) = &mut sub.provider {
            link.status = "past_due".into();
        }
    }
}

/// The outcome of a failed invoice: past due when it marked the
/// subscription so or named no period, else a duplicate.
pub fn failed_outcome(amended: bool, failed_period_start: Option<Timestamp>) -> Outcome {
    if amended || failed_period_start.is_none() {
        Outcome::PastDue
    } else {
        Outcome::Duplicate
    }
}

/// Active again: the period it is in was paid after a failure.
pub fn mark_paid_again(period_start: Timestamp) -> impl FnOnce(&mut Subscription) {
    move |sub| {
        if sub.grant_start() == period_start
            && let Some(link) = &mut sub.provider
        {
            link.status = "active".into();
        }
    }
}

/// Notes that creditd asked the provider about it at `now`.
pub fn mark_checked(now: Timestamp) -> impl FnOnce(&mut Subscription) {
    move |sub| {
        if let Some(link) = &mut sub.provider {
            link.checked_at_micros = Some(now.micros());
        }
    }
}

/// What the clock makes of a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Its period covers now, or the provider renews it: nothing to do.
    NotDue,
    /// Its period ended: it closes, and `next` follows — the same plan's
    /// next period, or on cancellation the default plan from the boundary
    /// (or no plan).
    Renew {
        /// What follows.
        next: Option<Subscription>,
        /// Where its period ended.
        at: Timestamp,
    },
    /// Its next period is past the end of time.
    OutOfTime,
}

/// What the clock makes of `current` at `now`; `interval` is its plan's.
pub fn renewal(
    current: &Subscription,
    interval: Interval,
    default: Option<DefaultPlan<'_>>,
    now: Timestamp,
) -> Renewal {
    let ending = current.period();
    if !current.is_due(now) {
        return Renewal::NotDue;
    }
    if current.cancel_at_period_end {
        return match default {
            Some(d) if period(ending.end, d.interval, 0).is_none() => Renewal::OutOfTime,
            _ => Renewal::Renew {
                next: onto_default(default, ending.end),
                at: ending.end,
            },
        };
    }
    let Some(next_period) = period(
        current.anchor(),
        interval,
        current.period_index.saturating_add(1),
    ) else {
        return Renewal::OutOfTime;
    };
    let mut next = Subscription::new(&current.plan_id, current.anchor(), next_period);
    next.provider.clone_from(&current.provider);
    Renewal::Renew {
        next: Some(next),
        at: ending.end,
    }
}

/// What an account's request to move to a plan comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// On that plan already: nothing changes.
    Keep,
    /// On that plan, canceled at the period's end: the cancellation is
    /// taken back.
    Uncancel(Subscription),
    /// A move to `next` now: the old plan's period closes, the new one
    /// opens with its full grant.
    Move(Subscription),
    /// Refused, with why.
    Refused(&'static str),
}

/// What moving `current` to `plan_id` (of `interval`) at `now` comes to,
/// with periods counted from `anchor`, or from now.
pub fn change(
    current: Option<&Subscription>,
    plan_id: &str,
    interval: Interval,
    anchor: Option<Timestamp>,
    now: Timestamp,
) -> Change {
    if anchor.is_some_and(|a| a > now) {
        return Change::Refused("anchor must not be in the future");
    }
    if let Some(sub) = current
        && sub.plan_id == plan_id
        && anchor.is_none_or(|a| a.micros() == sub.anchor_micros)
    {
        if !sub.cancel_at_period_end {
            return Change::Keep;
        }
        return Change::Uncancel(Subscription {
            cancel_at_period_end: false,
            ..sub.clone()
        });
    }
    let anchor = anchor.unwrap_or(now);
    match period_at(anchor, interval, now) {
        Some(first) => Change::Move(Subscription::new(plan_id, anchor, first).entered_at(now)),
        None => Change::Refused("the anchor gives no period around now"),
    }
}

/// The subscription canceled at its period's end; none when it is already.
pub fn cancel(current: &Subscription) -> Option<Subscription> {
    (!current.cancel_at_period_end).then(|| Subscription {
        cancel_at_period_end: true,
        ..current.clone()
    })
}

#[cfg(test)]
mod tests;
