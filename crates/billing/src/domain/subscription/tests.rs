//! The subscription machine, case by case, and a property: however the provider's events are
//! ordered or repeated, the subscription ends where the ordered sequence leaves it, each plan
//! granted at most once per billing period.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::domain::period::Unit;

const DAY: i64 = 86_400;
const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn monthly() -> Interval {
    Interval::new(Unit::Day, 30).unwrap()
}

fn billed(status: &str) -> Billed<'_> {
    Billed {
        subscription: "sub_1",
        status,
    }
}

/// An account subscribed through the provider to `plan` in `start..end`.
fn linked(plan: &str, start: i64, end: i64) -> Subscription {
    let Enter::Move { next, .. } = enter(
        None,
        billed("active"),
        plan,
        Entry::Period(at(start), at(end)),
        false,
        at(start),
    ) else {
        panic!("a first paid period opens the subscription");
    };
    next
}

fn moved(decision: Enter) -> (Subscription, bool, Outcome) {
    match decision {
        Enter::Move {
            next,
            grant,
            outcome,
            ..
        } => (next, grant, outcome),
        other => panic!("expected a move, got {other:?}"),
    }
}

#[test]
fn a_first_paid_period_opens_the_subscription_linked_to_the_provider() {
    let (sub, grant, outcome) = moved(enter(
        None,
        billed("active"),
        "pro",
        Entry::Period(at(0), at(30 * DAY)),
        false,
        at(60),
    ));
    assert_eq!(outcome, Outcome::Subscribed);
    assert!(grant);
    assert_eq!(sub.plan_id, "pro");
    assert_eq!(
        sub.period(),
        Period {
            index: 0,
            start: at(0),
            end: at(30 * DAY)
        }
    );
    assert_eq!(sub.grant_start(), at(0));
    assert!(sub.billed_by("sub_1") && !sub.billed_by("sub_2"));
    assert_eq!(
        sub.usage_start(),
        at(60),
        "usage counts from when it was entered"
    );
}

#[test]
fn a_paid_period_after_the_current_renews_into_it() {
    let sub = linked("pro", 0, 30 * DAY);
    let decision = enter(
        Some(&sub),
        billed("active"),
        "pro",
        Entry::Period(at(30 * DAY), at(60 * DAY)),
        false,
        at(30 * DAY + 5),
    );
    let Enter::Move {
        next,
        settle_to,
        grant,
        outcome,
    } = decision
    else {
        panic!("{decision:?}");
    };
    assert_eq!(outcome, Outcome::Renewed);
    assert!(grant);
    assert_eq!(
        settle_to,
        at(30 * DAY),
        "the old period is billed to its end"
    );
    assert_eq!(next.period_index, 1);
    assert_eq!(next.grant_start(), at(30 * DAY));
    assert_eq!(next.entered_micros, None);
}

#[test]
fn a_paid_period_at_or_before_the_current_is_stale() {
    let sub = linked("pro", 30 * DAY, 60 * DAY);
    for start in [0, 30 * DAY] {
        let decision = enter(
            Some(&sub),
            billed("active"),
            "pro",
            Entry::Period(at(start), at(start + 30 * DAY)),
            false,
            at(31 * DAY),
        );
        assert_eq!(decision, Enter::Stale, "{start}");
    }
}

#[test]
fn out_of_order_invoice_and_checkout_open_the_subscription_once() {
    // invoice.paid first: it opens; the session's event, following the
    // provider, finds it linked on the same plan.
    let sub = linked("pro", 0, 30 * DAY);
    let remote = AtProvider {
        status: "active",
        period: Some((T0, T0 + 30 * DAY)),
        cancel_at_period_end: false,
    };
    assert_eq!(follow(Some(&sub), "sub_1", remote, "pro"), Follow::Keep);
    assert_eq!(amend(&sub, "sub_1", copy_status(remote)), None);
    assert_eq!(followed(Outcome::Duplicate, false), Outcome::Duplicate);
    // The session's event first: following the provider opens it in the
    // provider's period; the invoice is then stale.
    let Follow::Enter(entry) = follow(None, "sub_1", remote, "pro") else {
        panic!("a started subscription is entered");
    };
    let (sub, _, outcome) = moved(enter(None, billed("active"), "pro", entry, false, at(60)));
    assert_eq!(outcome, Outcome::Subscribed);
    let invoice = Entry::Period(at(0), at(30 * DAY));
    assert_eq!(
        enter(Some(&sub), billed("active"), "pro", invoice, false, at(90)),
        Enter::Stale
    );
}

#[test]
fn back_and_forth_plan_changes_in_one_period_grant_each_plan_once() {
    let pro = linked("pro", 0, 30 * DAY);
    let (team, grant, outcome) = moved(enter(
        Some(&pro),
        billed("active"),
        "team",
        Entry::Change,
        false,
        at(DAY),
    ));
    assert_eq!((grant, outcome), (true, Outcome::PlanChanged));
    assert_eq!(team.grant_start(), at(0), "the billing period is kept");
    assert_eq!(team.period().start, at(DAY));
    assert_eq!(team.period().end, at(30 * DAY));
    // Back to pro, granted in this billing period already.
    let (back, grant, _) = moved(enter(
        Some(&team),
        billed("active"),
        "pro",
        Entry::Change,
        true,
        at(2 * DAY),
    ));
    assert!(!grant, "pro was granted in this billing period");
    // A change to the plan it is on is stale.
    assert_eq!(
        enter(
            Some(&back),
            billed("active"),
            "pro",
            Entry::Change,
            true,
            at(3 * DAY)
        ),
        Enter::Stale
    );
}

#[test]
fn a_plan_change_after_the_period_rolled_over_waits_for_the_renewal_to_grant() {
    let pro = linked("pro", 0, 30 * DAY);
    let (team, grant, _) = moved(enter(
        Some(&pro),
        billed("active"),
        "team",
        Entry::Change,
        false,
        at(30 * DAY + 10),
    ));
    assert!(!grant, "the renewal on its way grants it");
    assert!(
        team.period().end > at(30 * DAY + 10),
        "the period never ends before it starts"
    );
}

#[test]
fn a_change_for_a_subscription_not_linked_is_stale() {
    assert_eq!(
        enter(None, billed("active"), "pro", Entry::Change, false, at(0)),
        Enter::Stale
    );
}

#[test]
fn a_second_provider_subscription_is_not_followed_until_the_first_is_canceled() {
    let first = linked("pro", 0, 30 * DAY);
    let second = Billed {
        subscription: "sub_2",
        status: "active",
    };
    let period = Entry::Period(at(DAY), at(31 * DAY));
    assert_eq!(
        enter(Some(&first), second, "team", period, false, at(DAY)),
        Enter::Conflicting {
            other: "sub_1".into()
        }
    );
    let mut canceled = first.clone();
    canceled.provider.as_mut().unwrap().status = "canceled".into();
    let (next, _, outcome) = moved(enter(
        Some(&canceled),
        second,
        "team",
        period,
        false,
        at(DAY),
    ));
    assert_eq!(outcome, Outcome::Subscribed);
    assert!(next.billed_by("sub_2"));
}

#[test]
fn a_late_failure_after_a_paid_retry_changes_nothing() {
    let sub = linked("pro", 30 * DAY, 60 * DAY);
    let late = Some(at(30 * DAY));
    assert_eq!(amend(&sub, "sub_1", mark_past_due(late)), None);
    assert_eq!(failed_outcome(false, late), Outcome::Duplicate);
    // A failure for the next period marks it past due.
    let next = Some(at(60 * DAY));
    let past_due = amend(&sub, "sub_1", mark_past_due(next)).unwrap();
    assert_eq!(past_due.provider.as_ref().unwrap().status, "past_due");
    assert_eq!(failed_outcome(true, next), Outcome::PastDue);
    assert_eq!(failed_outcome(false, None), Outcome::PastDue);
    // Paid again for the period it is in: active again.
    let mut failed_now = sub.clone();
    failed_now.provider.as_mut().unwrap().status = "past_due".into();
    let active = amend(&failed_now, "sub_1", mark_paid_again(at(30 * DAY))).unwrap();
    assert_eq!(active.provider.unwrap().status, "active");
    assert_eq!(amend(&failed_now, "sub_1", mark_paid_again(at(0))), None);
}

#[test]
fn an_amendment_touches_only_the_subscription_the_provider_bills() {
    let sub = linked("pro", 0, 30 * DAY);
    let remote = AtProvider {
        status: "past_due",
        period: None,
        cancel_at_period_end: true,
    };
    assert_eq!(amend(&sub, "sub_2", copy_status(remote)), None);
    let changed = amend(&sub, "sub_1", copy_status(remote)).unwrap();
    assert!(changed.cancel_at_period_end);
    assert_eq!(changed.provider.unwrap().status, "past_due");
    assert_eq!(followed(Outcome::Duplicate, true), Outcome::Updated);
    assert_eq!(followed(Outcome::PlanChanged, true), Outcome::PlanChanged);
}

#[test]
fn following_the_provider_ends_awaits_enters_or_keeps() {
    let sub = linked("pro", 0, 30 * DAY);
    let at_provider = |status| AtProvider {
        status,
        period: Some((T0, T0 + 30 * DAY)),
        cancel_at_period_end: false,
    };
    for ended in ["canceled", "incomplete_expired"] {
        assert_eq!(
            follow(Some(&sub), "sub_1", at_provider(ended), "pro"),
            Follow::End
        );
    }
    for unpaid in ["incomplete", "past_due", "unpaid"] {
        assert_eq!(
            follow(None, "sub_1", at_provider(unpaid), "pro"),
            Follow::AwaitPayment,
            "{unpaid}"
        );
    }
    assert_eq!(
        follow(None, "sub_1", at_provider("trialing"), "pro"),
        Follow::Enter(Entry::Period(at(0), at(30 * DAY)))
    );
    let no_period = AtProvider {
        period: None,
        ..at_provider("active")
    };
    assert_eq!(
        follow(None, "sub_1", no_period, "pro"),
        Follow::AwaitPayment
    );
    assert_eq!(
        follow(Some(&sub), "sub_1", at_provider("active"), "team"),
        Follow::Enter(Entry::Change)
    );
}

#[test]
fn an_ended_provider_subscription_moves_the_account_to_the_default_plan_or_none() {
    let sub = linked("pro", 0, 30 * DAY);
    let free = DefaultPlan {
        id: "free",
        interval: monthly(),
    };
    let End::Close { next: Some(next) } = end(Some(&sub), "sub_1", Some(free), at(DAY)) else {
        panic!("the default plan follows");
    };
    assert_eq!(next.plan_id, "free");
    assert_eq!(next.period().start, at(DAY));
    assert!(next.provider.is_none());
    assert_eq!(
        end(Some(&sub), "sub_1", None, at(DAY)),
        End::Close { next: None }
    );
    assert_eq!(end(Some(&sub), "sub_2", Some(free), at(DAY)), End::Stale);
    assert_eq!(end(None, "sub_1", Some(free), at(DAY)), End::Stale);
}

#[test]
fn the_clock_renews_a_period_that_ended_into_the_next() {
    let sub = Subscription::new("pro", at(0), period(at(0), monthly(), 0).unwrap());
    assert_eq!(renewal(&sub, monthly(), None, at(DAY)), Renewal::NotDue);
    let Renewal::Renew {
        next: Some(next),
        at: boundary,
    } = renewal(&sub, monthly(), None, at(30 * DAY))
    else {
        panic!("due at its end");
    };
    assert_eq!(boundary, at(30 * DAY));
    assert_eq!(next.period_index, 1);
    assert_eq!(next.period().start, at(30 * DAY));
    assert_eq!(next.plan_id, "pro");
}

#[test]
fn the_clock_leaves_a_subscription_the_provider_bills_to_the_provider() {
    let sub = linked("pro", 0, 30 * DAY);
    assert_eq!(
        renewal(&sub, monthly(), None, at(90 * DAY)),
        Renewal::NotDue
    );
}

#[test]
fn a_renewal_after_cancellation_moves_to_the_default_plan_from_the_boundary() {
    let sub = Subscription::new("pro", at(0), period(at(0), monthly(), 0).unwrap());
    let canceled = cancel(&sub).unwrap();
    assert_eq!(cancel(&canceled), None, "canceling twice changes nothing");
    let free = DefaultPlan {
        id: "free",
        interval: Interval::new(Unit::Day, 1).unwrap(),
    };
    let Renewal::Renew {
        next: Some(next), ..
    } = renewal(&canceled, monthly(), Some(free), at(45 * DAY))
    else {
        panic!("a canceled subscription ends at its period's end");
    };
    assert_eq!(next.plan_id, "free");
    assert_eq!(next.anchor(), at(30 * DAY));
    assert_eq!(next.period().end, at(31 * DAY));
    assert_eq!(
        renewal(&canceled, monthly(), None, at(45 * DAY)),
        Renewal::Renew {
            next: None,
            at: at(30 * DAY)
        }
    );
}

#[test]
fn a_renewal_past_the_end_of_time_is_refused() {
    let last = Timestamp::from_secs(253_402_300_000);
    let mut sub = Subscription::new("pro", at(0), period(at(0), monthly(), 0).unwrap());
    sub.period_end_micros = last.micros() - DAY * 1_000_000 * 200;
    sub.period_index = u32::MAX;
    assert_eq!(renewal(&sub, monthly(), None, last), Renewal::OutOfTime);
}

#[test]
fn moving_to_a_plan_keeps_uncancels_moves_or_refuses() {
    let sub = Subscription::new("pro", at(0), period(at(0), monthly(), 0).unwrap());
    assert_eq!(
        change(Some(&sub), "pro", monthly(), None, at(DAY)),
        Change::Keep
    );
    let canceled = cancel(&sub).unwrap();
    assert_eq!(
        change(Some(&canceled), "pro", monthly(), None, at(DAY)),
        Change::Uncancel(sub.clone())
    );
    let Change::Move(team) = change(Some(&sub), "team", monthly(), None, at(DAY)) else {
        panic!("another plan is a move");
    };
    assert_eq!((team.plan_id.as_str(), team.anchor()), ("team", at(DAY)));
    // The same plan at another anchor is a move too.
    let Change::Move(anchored) = change(Some(&sub), "pro", monthly(), Some(at(-45 * DAY)), at(DAY))
    else {
        panic!("a new anchor is a move");
    };
    assert_eq!(anchored.period().start, at(-15 * DAY));
    assert_eq!(
        anchored.usage_start(),
        at(DAY),
        "usage counts from the move"
    );
    assert_eq!(
        change(None, "pro", monthly(), Some(at(2 * DAY)), at(DAY)),
        Change::Refused("anchor must not be in the future")
    );
}

#[test]
fn a_subscription_the_provider_bills_is_asked_about_a_day_late_then_every_six_hours() {
    let sub = linked("pro", 0, 30 * DAY);
    assert_eq!(sub.provider_due(), Some(at(31 * DAY)));
    let checked = amend(&sub, "sub_1", mark_checked(at(31 * DAY))).unwrap();
    assert_eq!(checked.provider_due(), Some(at(31 * DAY + 6 * 3600)));
    let own = Subscription::new("pro", at(0), period(at(0), monthly(), 0).unwrap());
    assert_eq!(own.provider_due(), None);
}

#[test]
fn a_lost_renewal_is_recovered_from_the_provider_as_its_webhook_would_have() {
    // The paid invoice's event never came; asking the provider finds its
    // latest invoice paid for the next period, which renews as the event
    // would have, and the event arriving after all is stale.
    let sub = linked("pro", 0, 30 * DAY);
    let next_period = Entry::Period(at(30 * DAY), at(60 * DAY));
    let (renewed, grant, outcome) = moved(enter(
        Some(&sub),
        billed("active"),
        "pro",
        next_period,
        false,
        at(31 * DAY),
    ));
    assert_eq!((grant, outcome), (true, Outcome::Renewed));
    assert_eq!(
        enter(
            Some(&renewed),
            billed("active"),
            "pro",
            next_period,
            true,
            at(32 * DAY)
        ),
        Enter::Stale
    );
}

#[test]
fn outcome_codes_are_stable() {
    let codes: Vec<&str> = [
        Outcome::Duplicate,
        Outcome::Subscribed,
        Outcome::Renewed,
        Outcome::PlanChanged,
        Outcome::Updated,
        Outcome::PastDue,
        Outcome::Ended,
        Outcome::AwaitingPayment,
        Outcome::ConflictingSubscription,
        Outcome::UnknownPlan,
        Outcome::UnknownSubscription,
        Outcome::UnknownSession,
        Outcome::Ignored,
    ]
    .map(Outcome::code)
    .into();
    assert_eq!(
        codes,
        [
            "duplicate",
            "subscribed",
            "renewed",
            "plan_changed",
            "updated",
            "past_due",
            "ended",
            "awaiting_payment",
            "conflicting_subscription",
            "unknown_plan",
            "unknown_subscription",
            "unknown_session",
            "ignored"
        ]
    );
}

/// An event about one provider subscription, as the webhook reads it.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// `checkout.session.completed` or `customer.subscription.*`: the
    /// subscription is followed as the provider has it now.
    Followed,
    /// `invoice.paid` for period `n`, at the price of `plan`.
    Paid { n: i64, plan: &'static str },
    /// `invoice.payment_failed` for period `n`.
    Failed { n: i64 },
}

/// The provider's subscription as it is at the end.
#[derive(Clone, Copy, Debug)]
struct Remote {
    plan: &'static str,
    last: i64,
    cancel_at_period_end: bool,
}

/// The webhook's shell, with the ledger as a set of granted periods.
#[derive(Default)]
struct Model {
    sub: Option<Subscription>,
    granted: BTreeSet<(String, Timestamp)>,
}

fn span(n: i64) -> (Timestamp, Timestamp) {
    (at(n * 30 * DAY), at((n + 1) * 30 * DAY))
}

impl Model {
    fn enter(&mut self, plan: &str, entry: Entry, status: &str, now: Timestamp) -> Outcome {
        let granted = self
            .sub
            .as_ref()
            .is_some_and(|sub| self.granted.contains(&(plan.to_owned(), sub.grant_start())));
        match enter(self.sub.as_ref(), billed(status), plan, entry, granted, now) {
            Enter::Stale => Outcome::Duplicate,
            Enter::Conflicting { .. } => Outcome::ConflictingSubscription,
            Enter::Move {
                next,
                grant,
                outcome,
                ..
            } => {
                if grant {
                    // The grant's external id makes it once.
                    self.granted
                        .insert((next.plan_id.clone(), next.grant_start()));
                }
                self.sub = Some(next);
                outcome
            }
        }
    }

    fn amend(&mut self, change: impl FnOnce(&mut Subscription)) -> bool {
        let Some(next) = self
            .sub
            .as_ref()
            .and_then(|sub| amend(sub, "sub_1", change))
        else {
            return false;
        };
        self.sub = Some(next);
        true
    }

    fn apply(&mut self, event: Event, remote: Remote, now: Timestamp) {
        let at_provider = AtProvider {
            status: "active",
            period: Some((
                T0 + remote.last * 30 * DAY,
                T0 + (remote.last + 1) * 30 * DAY,
            )),
            cancel_at_period_end: remote.cancel_at_period_end,
        };
        match event {
            Event::Followed => {
                match follow(self.sub.as_ref(), "sub_1", at_provider, remote.plan) {
                    Follow::Enter(entry) => {
                        let status = self
                            .sub
                            .as_ref()
                            .and_then(|s| s.provider.as_ref())
                            .map_or("active".to_owned(), |p| p.status.clone());
                        self.enter(remote.plan, entry, &status, now);
                    }
                    Follow::End | Follow::AwaitPayment | Follow::Keep => {}
                }
                self.amend(copy_status(at_provider));
            }
            Event::Paid { n, plan } => {
                // A renewal is for the plan the provider has now, unless the
                // invoice's price is the plan the account is on.
                let on = self.sub.as_ref().map(|s| s.plan_id.clone());
                let plan = match on {
                    Some(on) if on == plan => plan,
                    Some(_) => remote.plan,
                    None => plan,
                };
                let (start, end) = span(n);
                let outcome = self.enter(plan, Entry::Period(start, end), "active", now);
                if outcome == Outcome::Duplicate {
                    self.amend(mark_paid_again(start));
                }
            }
            Event::Failed { n } => {
                self.amend(mark_past_due(Some(span(n).0)));
            }
        }
    }

    /// What must not depend on the order: the plan, the billing period and
    /// where it ends, the status and the cancellation.
    fn end_state(&self) -> Option<(String, Timestamp, Timestamp, String, bool)> {
        self.sub.as_ref().map(|s| {
            (
                s.plan_id.clone(),
                s.grant_start(),
                s.period().end,
                s.provider
                    .as_ref()
                    .map_or(String::new(), |p| p.status.clone()),
                s.cancel_at_period_end,
            )
        })
    }
}

/// A subscription bought on `first`, paid for periods 0 to `last`, on
/// `remote.plan` at the end (changed at the provider when it differs), a
/// failure before each renewal's payment: the events in the order the
/// provider made them.
fn story(first: &'static str, remote: Remote) -> Vec<Event> {
    let mut events = vec![Event::Followed, Event::Paid { n: 0, plan: first }];
    if remote.plan != first {
        events.push(Event::Followed);
    }
    for n in 1..=remote.last {
        events.push(Event::Failed { n });
        events.push(Event::Paid {
            n,
            plan: remote.plan,
        });
    }
    events.push(Event::Followed);
    events
}

fn run(events: &[Event], remote: Remote) -> Model {
    let now = at(remote.last * 30 * DAY + 3600);
    let mut model = Model::default();
    for event in events {
        model.apply(*event, remote, now);
    }
    model
}

proptest! {
    #[test]
    fn any_order_of_the_providers_events_ends_where_the_ordered_sequence_does(
        first in prop::sample::select(vec!["pro", "team"]),
        last_plan in prop::sample::select(vec!["pro", "team"]),
        last in 0i64..3,
        cancel_at_period_end in any::<bool>(),
        order in any::<u64>(),
        repeats in prop::collection::vec(0usize..16, 0..4),
    ) {
        let remote = Remote { plan: last_plan, last, cancel_at_period_end };
        let ordered = story(first, remote);
        let expected = run(&ordered, remote);
        // Shuffled, with some events delivered again.
        let mut shuffled = ordered.clone();
        for i in repeats {
            shuffled.push(ordered[i % ordered.len()]);
        }
        let mut seed = order;
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let j = usize::try_from(seed >> 33).unwrap() % (i + 1);
            shuffled.swap(i, j);
        }
        let got = run(&shuffled, remote);
        prop_assert_eq!(got.end_state(), expected.end_state(), "{:?}", shuffled);
        let (plan, billing_start, ..) = got.end_state().unwrap();
        prop_assert_eq!(billing_start, span(last).0);
        prop_assert!(got.granted.contains(&(plan, billing_start)),
            "the plan the account ends on is granted for its billing period");
        // At most one grant per plan and billing period is what the set
        // holds by construction; no billing period holds more than the
        // plans the account was on in it.
        for (_, start) in &got.granted {
            prop_assert!(*start <= span(last).0);
        }
    }
}
