//! An account's standing: the answer to every check over a span of time, in a few words.

use crate::{Amount, Check, Reject, Timestamp};

/// What a book answers to checks from `from` until just before `until`.
///
/// A book's answers change with time only when an instant it names is
/// reached: a lot's `effective_at` or `expires_at`, a hold's `expires_at`.
/// Between two such instants every check gives the same answer, so a
/// standing taken from the book answers in its place, with no book at hand.
/// It is small and `Copy`, so a store can keep one for every account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The first instant the answers hold at.
    pub from: Timestamp,
    /// The first instant they may no longer hold at.
    pub until: Timestamp,
    /// The most a consume could take, clamped to the `i64` range (which
    /// keeps every comparison with an amount as it was).
    pub headroom_micros: i64,
    /// The available balance.
    pub available: Amount,
}

impl Standing {
    /// True when the standing answers checks at `now`.
    pub fn covers(&self, now: Timestamp) -> bool {
        self.from <= now && now < self.until
    }

    /// Whether `amount` could be consumed at `now`, as the book would answer,
    /// or `None` when `now` is outside the span and the book must answer.
    pub fn check(&self, amount: Amount, now: Timestamp) -> Option<Result<Check, Reject>> {
        if !self.covers(now) {
            return None;
        }
        if amount.is_negative() {
            return Some(Err(Reject::InvalidAmount("amount must not be negative")));
        }
        // Zero is a free feature's use, which spends nothing and is always allowed.
        Some(Ok(Check {
            allowed: amount == Amount::ZERO || amount.micros() <= self.headroom_micros,
            required: amount,
            available: self.available,
        }))
    }
}
