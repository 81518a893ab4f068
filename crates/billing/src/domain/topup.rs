//! Auto top-up as a small state machine: idle → pending → succeeded (idle again) or failed
//! (backing off 1 hour, doubling, at most a day), never more than the monthly cap, one payment in
//! flight at a time.

use ledger::{Amount, Timestamp};
use serde::{Deserialize, Serialize};

/// The first wait after a failed top-up, in seconds.
pub const BACKOFF_FIRST_SECS: i64 = 3600;

/// The longest wait after failed top-ups, in seconds.
pub const BACKOFF_MAX_SECS: i64 = 86_400;

/// The least a top-up may charge, in US cents.
pub const TOPUP_MIN_CENTS: i64 = 500;

/// The credits `cents` US cents buy at `credits_per_usd`, rounded down to
/// the micro-credit; none when zero or beyond what an amount holds.
pub fn credits_of(cents: i64, credits_per_usd: Amount) -> Option<Amount> {
    let micros = i128::from(cents) * i128::from(credits_per_usd.micros()) / 100;
    i64::try_from(micros)
        .ok()
        .filter(|m| *m > 0 && *m <= ledger::AMOUNT_MAX_MICROS)
        .map(Amount::from_micros)
}

/// A top-up threshold as the customer gives it: credits, or money ("top up
/// when I have less than $50 left").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// A number of credits.
    Credits(Amount),
    /// US cents, worth their credits at the rate.
    UsdCents(i64),
}

impl Threshold {
    /// The credits it stands for at `credits_per_usd`: a money threshold's
    /// rounded down to the micro-credit. `None` when negative or beyond
    /// what an amount holds.
    pub fn credits(self, credits_per_usd: Amount) -> Option<Amount> {
        match self {
            Threshold::Credits(credits) => Some(credits).filter(|c| !c.is_negative()),
            Threshold::UsdCents(0) => Some(Amount::ZERO),
            Threshold::UsdCents(cents) if cents > 0 => credits_of(cents, credits_per_usd),
            Threshold::UsdCents(_) => None,
        }
    }
}

/// Where an account's auto top-up stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TopupState {
    /// Nothing in flight.
    #[default]
    Idle,
    /// Payment `attempt` was started and its outcome is not known yet.
    Pending {
        /// The attempt's number: the payment's idempotency key names it.
        attempt: u64,
        /// When it started, in micros.
        started_at_micros: i64,
        /// What it charges, in US cents, fixed when it started: asking
        /// again under its key sends the same payment whatever the settings
        /// became since.
        #[serde(default)]
        amount_cents: i64,
        /// The card it charges, fixed when it started.
        #[serde(default)]
        payment_method: String,
        /// The provider's payment, once an answer named it — its invoice
        /// (`in_…`), or for an attempt made before top-ups were invoiced
        /// its payment intent (`pi_…`): carried on by its id from then on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intent: Option<String>,
        /// How often it was asked about without an outcome.
        #[serde(default)]
        checks: u32,
        /// When it was last asked about, in micros (0: never).
        #[serde(default)]
        checked_at_micros: i64,
    },
    /// The last attempts failed; none starts before `retry_at_micros`.
    BackingOff {
        /// Failures in a row.
        failures: u32,
        /// When one may start again, in micros.
        retry_at_micros: i64,
        /// Why the last one failed (`card_declined`, `authentication_required`).
        reason: String,
    },
}

/// An account's auto top-up: its settings and where it stands. The default
/// is one never set: disabled, nothing in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoTopup {
    /// Whether it runs.
    pub enabled: bool,
    /// Top up when the available balance falls below this.
    pub threshold_micros: i64,
    /// The threshold as money, in US cents, when it was given so ("top up
    /// below $50"): shown back as given; `threshold_micros` is its credits
    /// at the rate of the day it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_cents: Option<i64>,
    /// What one top-up charges, in US cents.
    pub amount_cents: i64,
    /// The most top-ups may charge in a calendar month (UTC), in US cents;
    /// no cap when `None`.
    #[serde(default)]
    pub monthly_cap_cents: Option<i64>,
    /// Where it stands.
    #[serde(default)]
    pub state: TopupState,
    /// Attempts made so far, over its life.
    #[serde(default)]
    pub attempts: u64,
    /// The month `charged_cents` counts (`2027-01`).
    #[serde(default)]
    pub month: String,
    /// What succeeded top-ups charged in `month`, in US cents.
    #[serde(default)]
    pub charged_cents: i64,
    /// Attempts failed in a row since the last success.
    #[serde(default)]
    pub failures: u32,
}

/// What the state machine decides for an account now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start payment `attempt` of the top-up's amount.
    Start {
        /// Its number.
        attempt: u64,
    },
    /// Resume the pending attempt: its outcome was never learnt (the
    /// provider was unreachable, or the payment was still processing); the
    /// same idempotency key, or the payment's id, finds it.
    Resume {
        /// Its number.
        attempt: u64,
    },
    /// Give the pending attempt up as failed: no answer ever named its
    /// payment, and asking again under its key this late could make a new
    /// one once the provider has forgotten the key. A success that arrives
    /// later by webhook is still granted.
    GiveUp {
        /// Its number.
        attempt: u64,
    },
    /// Nothing to do, and why.
    Wait(&'static str),
}

/// How long an attempt may stay pending before it is asked about again.
pub const PENDING_RETRY_SECS: i64 = 60;

/// How long an attempt whose payment no answer named is asked about under
/// its key: well inside the day the provider keeps an idempotency key.
pub const PENDING_GIVE_UP_SECS: i64 = 12 * 3600;

/// How long an attempt whose payment is named (still processing) is looked
/// up before it is given up.
pub const NAMED_GIVE_UP_SECS: i64 = 3 * 86_400;

/// The longest wait between two questions about one pending attempt; the
/// waits double from [`PENDING_RETRY_SECS`] up to it.
pub const PENDING_CHECK_MAX_SECS: i64 = 3600;

fn month_of(at: Timestamp) -> String {
    at.to_string().chars().take(7).collect()
}

impl AutoTopup {
    /// What charged this month so far, as of `now`.
    fn charged_in(&self, now: Timestamp) -> i64 {
        if self.month == month_of(now) {
            self.charged_cents
        } else {
            0
        }
    }

    /// What to do with `available` credits at `now`. A pending attempt is
    /// settled even when the top-up was disabled since it started.
    pub fn decide(&self, available: Amount, now: Timestamp) -> Decision {
        if let TopupState::Pending {
            attempt,
            started_at_micros,
            intent,
            checks,
            checked_at_micros,
            ..
        } = &self.state
        {
            let secs = ledger::MICROS_PER_SECOND;
            let waited = now.micros() - started_at_micros;
            let give_up = if intent.is_none() {
                PENDING_GIVE_UP_SECS
            } else {
                NAMED_GIVE_UP_SECS
            };
            if waited >= give_up * secs {
                return Decision::GiveUp { attempt: *attempt };
            }
            // The first question is the payment itself; each later one
            // waits twice as long as the one before.
            let wait = PENDING_RETRY_SECS
                .saturating_mul(1i64 << checks.saturating_sub(1).min(20))
                .min(PENDING_CHECK_MAX_SECS);
            let since = now.micros() - (*checked_at_micros).max(*started_at_micros);
            return if since >= wait * secs {
                Decision::Resume { attempt: *attempt }
            } else {
                Decision::Wait("a top-up is in flight")
            };
        }
        if !self.enabled {
            return Decision::Wait("disabled");
        }
        if let TopupState::BackingOff {
            retry_at_micros, ..
        } = &self.state
            && now.micros() < *retry_at_micros
        {
            return Decision::Wait("backing off");
        }
        if available.micros() >= self.threshold_micros {
            return Decision::Wait("above the threshold");
        }
        if let Some(cap) = self.monthly_cap_cents
            && self.charged_in(now).saturating_add(self.amount_cents) > cap
        {
            return Decision::Wait("the monthly cap is reached");
        }
        Decision::Start {
            attempt: self.attempts + 1,
        }
    }

    /// The same top-up with `attempt` started at `now`, charging its
    /// amount to `payment_method`.
    pub fn started(&self, attempt: u64, now: Timestamp, payment_method: &str) -> AutoTopup {
        AutoTopup {
            state: TopupState::Pending {
                attempt,
                started_at_micros: now.micros(),
                amount_cents: self.amount_cents,
                payment_method: payment_method.to_owned(),
                intent: None,
                checks: 0,
                checked_at_micros: 0,
            },
            attempts: self.attempts.max(attempt),
            ..self.clone()
        }
    }

    /// The pending attempt's payment: its number, amount, card and, once
    /// known, the provider's id for it. An attempt kept before the amount
    /// was fixed in it charges the settings' amount.
    pub fn pending(&self) -> Option<(u64, i64, &str, Option<&str>)> {
        match &self.state {
            TopupState::Pending {
                attempt,
                amount_cents,
                payment_method,
                intent,
                ..
            } => Some((
                *attempt,
                if *amount_cents > 0 {
                    *amount_cents
                } else {
                    self.amount_cents
                },
                payment_method,
                intent.as_deref(),
            )),
            _ => None,
        }
    }

    /// The same top-up with the pending `attempt`'s payment named `intent`.
    pub fn named(&self, attempt: u64, id: &str) -> AutoTopup {
        let mut next = self.clone();
        if let TopupState::Pending {
            attempt: a, intent, ..
        } = &mut next.state
            && *a == attempt
        {
            *intent = Some(id.to_owned());
        }
        next
    }

    /// The same top-up after the pending `attempt` was asked about at `now`
    /// with no outcome: the next question waits twice as long.
    pub fn checked(&self, attempt: u64, now: Timestamp) -> AutoTopup {
        let mut next = self.clone();
        if let TopupState::Pending {
            attempt: a,
            checks,
            checked_at_micros,
            ..
        } = &mut next.state
            && *a == attempt
        {
            *checks = checks.saturating_add(1);
            *checked_at_micros = now.micros();
        }
        next
    }

    /// The same top-up after `attempt` succeeded at `now`, charging
    /// `amount_cents`: the amount counted in the month whichever attempt it
    /// was (its credits were granted), and idle again when it was the
    /// pending attempt or the last one, failed too early.
    pub fn succeeded(&self, attempt: u64, amount_cents: i64, now: Timestamp) -> AutoTopup {
        let settles = match &self.state {
            TopupState::Pending { attempt: a, .. } => *a == attempt,
            TopupState::BackingOff { .. } => attempt == self.attempts,
            TopupState::Idle => false,
        };
        AutoTopup {
            charged_cents: self.charged_in(now).saturating_add(amount_cents),
            month: month_of(now),
            state: if settles {
                TopupState::Idle
            } else {
                self.state.clone()
            },
            failures: if settles { 0 } else { self.failures },
            ..self.clone()
        }
    }

    /// The same top-up after `attempt` failed at `now` for `reason`: backing
    /// off an hour after the first failure, doubling, at most a day.
    pub fn failed(&self, attempt: u64, reason: &str, now: Timestamp) -> AutoTopup {
        if !matches!(self.state, TopupState::Pending { attempt: a, .. } if a == attempt) {
            return self.clone();
        }
        let failures = self.failures.saturating_add(1);
        let wait = BACKOFF_FIRST_SECS
            .saturating_mul(1i64 << (failures - 1).min(30))
            .min(BACKOFF_MAX_SECS);
        AutoTopup {
            state: TopupState::BackingOff {
                failures,
                retry_at_micros: now.micros() + wait * ledger::MICROS_PER_SECOND,
                reason: reason.to_owned(),
            },
            failures,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn topup() -> AutoTopup {
        AutoTopup {
            enabled: true,
            threshold_micros: Amount::credits(50).micros(),
            threshold_cents: None,
            amount_cents: 2000,
            monthly_cap_cents: Some(5000),
            state: TopupState::Idle,
            attempts: 0,
            month: String::new(),
            charged_cents: 0,
            failures: 0,
        }
    }

    #[test]
    fn a_top_up_starts_only_below_the_threshold_and_one_at_a_time() {
        let t = topup();
        assert_eq!(
            t.decide(Amount::credits(50), T0),
            Decision::Wait("above the threshold")
        );
        assert_eq!(
            t.decide(Amount::credits(49), T0),
            Decision::Start { attempt: 1 }
        );
        let pending = t.started(1, T0, "pm_1");
        assert_eq!(
            pending.decide(Amount::ZERO, T0.plus_secs(1)),
            Decision::Wait("a top-up is in flight")
        );
        // An attempt whose outcome was never learnt is asked about again,
        // under the same number, for twelve hours; then given up, unless an
        // answer named its payment, which can always be looked up.
        assert_eq!(
            pending.decide(Amount::ZERO, T0.plus_secs(61)),
            Decision::Resume { attempt: 1 }
        );
        assert_eq!(
            pending.decide(Amount::ZERO, T0.plus_secs(12 * 3600)),
            Decision::GiveUp { attempt: 1 }
        );
        assert_eq!(
            pending
                .named(1, "pi_1")
                .decide(Amount::ZERO, T0.plus_secs(12 * 3600)),
            Decision::Resume { attempt: 1 }
        );
        assert_eq!(
            pending
                .named(1, "pi_1")
                .decide(Amount::ZERO, T0.plus_secs(3 * 86_400)),
            Decision::GiveUp { attempt: 1 }
        );
        let mut off = t.clone();
        off.enabled = false;
        assert_eq!(off.decide(Amount::ZERO, T0), Decision::Wait("disabled"));
    }

    #[test]
    fn the_monthly_cap_is_never_passed_and_resets_with_the_month() {
        let mut t = topup();
        for attempt in 1..=2 {
            assert_eq!(t.decide(Amount::ZERO, T0), Decision::Start { attempt });
            t = t.started(attempt, T0, "pm_1").succeeded(attempt, 2000, T0);
        }
        assert_eq!(t.charged_cents, 4000);
        // A third 20 USD would make 60 against a cap of 50.
        assert_eq!(
            t.decide(Amount::ZERO, T0),
            Decision::Wait("the monthly cap is reached")
        );
        let next_month = T0.plus_secs(31 * 86_400);
        assert_eq!(
            t.decide(Amount::ZERO, next_month),
            Decision::Start { attempt: 3 }
        );
        assert_eq!(
            t.started(3, next_month, "pm_1")
                .succeeded(3, 2000, next_month)
                .charged_cents,
            2000
        );
    }

    #[test]
    fn without_a_monthly_cap_every_crossing_tops_up() {
        let mut t = AutoTopup {
            monthly_cap_cents: None,
            ..topup()
        };
        for attempt in 1..=10 {
            assert_eq!(t.decide(Amount::ZERO, T0), Decision::Start { attempt });
            t = t.started(attempt, T0, "pm_1").succeeded(attempt, 2000, T0);
        }
        assert_eq!(t.charged_cents, 20_000);
    }

    #[test]
    fn a_threshold_in_money_is_its_credits_at_the_rate() {
        let rate = Amount::credits(100);
        assert_eq!(
            Threshold::UsdCents(5000).credits(rate),
            Some(Amount::credits(5000))
        );
        assert_eq!(
            Threshold::UsdCents(5000).credits(Amount::credits(1000)),
            Some(Amount::credits(50_000))
        );
        assert_eq!(Threshold::UsdCents(0).credits(rate), Some(Amount::ZERO));
        assert_eq!(Threshold::UsdCents(-1).credits(rate), None);
        assert_eq!(
            Threshold::Credits(Amount::credits(50)).credits(rate),
            Some(Amount::credits(50))
        );
        assert_eq!(Threshold::Credits(Amount::credits(-1)).credits(rate), None);
    }

    #[test]
    fn a_record_kept_with_a_cap_as_a_number_reads_as_that_cap() {
        let old = r#"{"enabled": true, "threshold_micros": 50000000, "amount_cents": 2000,
                      "monthly_cap_cents": 5000}"#;
        let read: AutoTopup = serde_json::from_str(old).unwrap();
        assert_eq!(read.monthly_cap_cents, Some(5000));
        assert_eq!(read.threshold_cents, None);
    }

    #[test]
    fn failures_back_off_an_hour_doubling_to_a_day() {
        let mut t = topup();
        let mut now = T0;
        let mut waits = Vec::new();
        for attempt in 1..=7 {
            assert_eq!(t.decide(Amount::ZERO, now), Decision::Start { attempt });
            t = t
                .started(attempt, now, "pm_1")
                .failed(attempt, "card_declined", now);
            let TopupState::BackingOff {
                retry_at_micros,
                failures,
                ..
            } = &t.state
            else {
                panic!("{t:?}");
            };
            assert_eq!(*failures, attempt as u32);
            waits.push((retry_at_micros - now.micros()) / 1_000_000);
            assert_eq!(
                t.decide(Amount::ZERO, now.plus_secs(1)),
                Decision::Wait("backing off")
            );
            now = Timestamp::from_micros(*retry_at_micros);
        }
        assert_eq!(waits, [3600, 7200, 14_400, 28_800, 57_600, 86_400, 86_400]);
        // A success resets the count.
        t = t.started(8, now, "pm_1").succeeded(8, 2000, now);
        assert_eq!(t.failures, 0);
        assert_eq!(t.state, TopupState::Idle);
    }

    #[test]
    fn an_outcome_for_another_attempt_leaves_the_pending_one() {
        let t = topup().started(2, T0, "pm_1");
        assert_eq!(t.failed(3, "card_declined", T0), t);
        // A late success of an earlier attempt was granted: it counts in
        // the month, and the pending attempt stays pending.
        let late = t.succeeded(1, 2000, T0);
        assert_eq!(late.state, t.state);
        assert_eq!(late.charged_cents, 2000);
    }

    #[test]
    fn a_pending_attempt_keeps_the_amount_and_card_it_started_with() {
        let mut t = topup().started(1, T0, "pm_1");
        t.amount_cents = 9900;
        assert_eq!(t.pending(), Some((1, 2000, "pm_1", None)));
        let t = t.named(1, "pi_9").named(2, "pi_other");
        assert_eq!(t.pending(), Some((1, 2000, "pm_1", Some("pi_9"))));
    }

    #[test]
    fn a_pending_attempt_is_asked_about_less_and_less_often() {
        let mut t = topup().started(1, T0, "pm_1");
        let mut now = T0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let mut waited = 0;
            while t.decide(Amount::ZERO, now) != (Decision::Resume { attempt: 1 }) {
                now = now.plus_secs(1);
                waited += 1;
            }
            waits.push(waited);
            t = t.checked(1, now);
        }
        assert_eq!(waits, [60, 60, 120, 240, 480, 960, 1920, 3600]);
    }

    #[test]
    fn a_pending_attempt_is_settled_after_the_top_up_was_disabled() {
        let mut t = topup().started(1, T0, "pm_1");
        t.enabled = false;
        assert_eq!(
            t.decide(Amount::ZERO, T0.plus_secs(61)),
            Decision::Resume { attempt: 1 }
        );
        t.state = TopupState::Idle;
        assert_eq!(t.decide(Amount::ZERO, T0), Decision::Wait("disabled"));
    }

    #[test]
    fn a_late_success_of_the_last_attempt_ends_its_backing_off() {
        let t = topup()
            .started(1, T0, "pm_1")
            .failed(1, "outcome_unknown", T0);
        let t = t.succeeded(1, 2000, T0.plus_secs(60));
        assert_eq!(t.state, TopupState::Idle);
        assert_eq!((t.failures, t.charged_cents), (0, 2000));
    }
}
