//! A key's tokens a minute: a bucket a gateway call must find with tokens left, and that the
//! call's tokens are taken from when it is settled, below zero if the call used more.

/// Microseconds in a minute: a bucket counts in tokens × this, so that it
/// refills by whole units every microsecond.
const MINUTE_MICROS: i128 = 60_000_000;

/// One key's bucket of tokens: how full it was when last looked at.
/// Starts full; may go below zero, as a call's tokens are known only once
/// it is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens × [`MINUTE_MICROS`] in it then.
    level: i128,
    /// When, in microseconds since the epoch.
    at_micros: i64,
}

/// What a bucket answers a call about to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// Let through, with this many whole tokens left.
    Allowed {
        /// Whole tokens in the bucket now.
        remaining: u64,
    },
    /// Refused: the calls before it used every token of the last minute.
    Limited {
        /// Seconds until the bucket holds a token again (rounded up, at least 1).
        retry_after_secs: u64,
    },
}

impl TokenBucket {
    /// A full bucket of `per_minute` tokens at `now_micros`.
    pub fn full(per_minute: u32, now_micros: i64) -> TokenBucket {
        TokenBucket {
            level: i128::from(per_minute) * MINUTE_MICROS,
            at_micros: now_micros,
        }
    }

    /// Refills for the time since it was last looked at, a minute's worth
    /// at most. Time that seems to run backwards refills nothing.
    fn refill(&mut self, per_minute: u32, now_micros: i64) {
        let elapsed = i128::from(now_micros.saturating_sub(self.at_micros).max(0));
        let capacity = i128::from(per_minute) * MINUTE_MICROS;
        self.level = (self.level + elapsed * i128::from(per_minute)).min(capacity);
        self.at_micros = self.at_micros.max(now_micros);
    }

    /// Whether a call may start at `now_micros`: it may while the bucket
    /// holds any token. Takes nothing: the call's tokens are taken by
    /// [`TokenBucket::charge`] once known.
    pub fn check(&mut self, per_minute: u32, now_micros: i64) -> TokenCheck {
        self.refill(per_minute, now_micros);
        if self.level >= MINUTE_MICROS {
            return TokenCheck::Allowed {
                remaining: u64::try_from(self.level / MINUTE_MICROS).unwrap_or(u64::MAX),
            };
        }
        let missing = MINUTE_MICROS - self.level;
        let rate = i128::from(per_minute.max(1));
        let wait_micros = (missing + rate - 1) / rate;
        let secs = (wait_micros + 999_999) / 1_000_000;
        TokenCheck::Limited {
            retry_after_secs: u64::try_from(secs).unwrap_or(u64::MAX).max(1),
        }
    }

    /// Takes a settled call's `tokens` out at `now_micros`, below zero if
    /// the bucket held fewer.
    pub fn charge(&mut self, per_minute: u32, tokens: u64, now_micros: i64) {
        self.refill(per_minute, now_micros);
        self.level = self
            .level
            .saturating_sub(i128::from(tokens).saturating_mul(MINUTE_MICROS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn a_full_bucket_lets_calls_start_until_their_tokens_used_it_up() {
        let mut bucket = TokenBucket::full(1_000, 0);
        assert_eq!(
            bucket.check(1_000, 0),
            TokenCheck::Allowed { remaining: 1_000 }
        );
        bucket.charge(1_000, 600, 0);
        assert_eq!(
            bucket.check(1_000, 0),
            TokenCheck::Allowed { remaining: 400 }
        );
        // The second call used more than was left: the bucket is below zero.
        bucket.charge(1_000, 700, 0);
        assert_eq!(
            bucket.check(1_000, 0),
            TokenCheck::Limited {
                retry_after_secs: 19
            }
        );
    }

    #[test]
    fn a_bucket_below_zero_refills_at_the_rate_until_a_token_is_back() {
        let mut bucket = TokenBucket::full(600, 0);
        bucket.charge(600, 610, 0);
        // 10 below zero, 10 tokens a second: one more second and a token.
        assert_eq!(
            bucket.check(600, 0),
            TokenCheck::Limited {
                retry_after_secs: 2
            }
        );
        assert!(matches!(
            bucket.check(600, SECOND),
            TokenCheck::Limited { .. }
        ));
        assert_eq!(
            bucket.check(600, SECOND + SECOND / 10),
            TokenCheck::Allowed { remaining: 1 }
        );
    }

    #[test]
    fn a_bucket_holds_a_minutes_worth_at_most_and_time_going_back_refills_nothing() {
        let mut bucket = TokenBucket::full(60, 0);
        assert_eq!(
            bucket.check(60, 3_600 * SECOND),
            TokenCheck::Allowed { remaining: 60 }
        );
        bucket.charge(60, 60, 3_600 * SECOND);
        assert!(matches!(bucket.check(60, 0), TokenCheck::Limited { .. }));
    }

    #[test]
    fn a_huge_charge_saturates_rather_than_wraps() {
        let mut bucket = TokenBucket::full(u32::MAX, 0);
        bucket.charge(u32::MAX, u64::MAX, 0);
        bucket.charge(u32::MAX, u64::MAX, 0);
        assert!(matches!(
            bucket.check(u32::MAX, 0),
            TokenCheck::Limited { .. }
        ));
    }
}
