//! Holds: credits reserved for an operation whose final cost is not known yet.

use crate::{AccountId, Amount, HoldId, LotId, Metadata, Reject, Timestamp};

/// The time-to-live a hold gets when the caller names none: 15 minutes.
pub const HOLD_TTL_DEFAULT_SECS: i64 = 900;
/// The longest time-to-live a hold may have: one day.
pub const HOLD_TTL_MAX_SECS: i64 = 86_400;

/// How long a hold lives before it releases by itself: 1 s to 1 day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldTtl(i64);

impl HoldTtl {
    /// Checks a time-to-live in seconds.
    pub fn from_secs(secs: i64) -> Result<HoldTtl, Reject> {
        if (1..=HOLD_TTL_MAX_SECS).contains(&secs) {
            Ok(HoldTtl(secs))
        } else {
            Err(Reject::InvalidRequest(
                "ttl_seconds must be between 1 and 86400",
            ))
        }
    }

    /// Seconds.
    pub fn secs(self) -> i64 {
        self.0
    }
}

impl Default for HoldTtl {
    fn default() -> Self {
        HoldTtl(HOLD_TTL_DEFAULT_SECS)
    }
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldStatus {
    /// Reserving credits.
    Pending,
    /// Turned into usage.
    Committed,
    /// Cancelled by the caller.
    Released,
    /// Released by itself when its time-to-live ran out.
    Expired,
}

impl HoldStatus {
    /// The stable text code.
    pub const fn code(self) -> &'static str {
        match self {
            HoldStatus::Pending => "pending",
            HoldStatus::Committed => "committed",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
        }
    }

    /// The status with this code.
    pub fn parse(code: &str) -> Option<HoldStatus> {
        [
            HoldStatus::Pending,
            HoldStatus::Committed,
            HoldStatus::Released,
            HoldStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// Credits a hold took out of one lot into escrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    /// The lot the credits came from.
    pub lot: LotId,
    /// How many.
    pub amount: Amount,
}

/// A reservation of credits.
///
/// The part of the hold that lots could cover is moved into escrow at once
/// (its `legs`), so a lot expiring later cannot take reserved credits away.
/// The rest, allowed only by an overdraft limit, is `unfunded`: it counts
/// against the available balance and is charged when the hold commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The hold's id.
    pub id: HoldId,
    /// The account it reserves from.
    pub account: AccountId,
    /// Credits reserved.
    pub amount: Amount,
    /// The escrowed part, lot by lot, in burn-down order.
    pub legs: Vec<Leg>,
    /// Where the hold stands, as last written; see [`Hold::status_at`].
    pub status: HoldStatus,
    /// The final amount, once committed.
    pub committed_amount: Option<Amount>,
    /// When the hold was placed.
    pub created_at: Timestamp,
    /// The instant it releases by itself.
    pub expires_at: Timestamp,
    /// When it was committed, released or expired.
    pub resolved_at: Option<Timestamp>,
    /// Operator metadata.
    pub metadata: Metadata,
}

impl Hold {
    /// The escrowed part of the hold.
    pub fn funded(&self) -> Amount {
        // Legs are bounded by the hold's amount, which was checked when it was placed.
        Amount::checked_sum(self.legs.iter().map(|l| l.amount)).unwrap_or(self.amount)
    }

    /// The part not escrowed, allowed by the overdraft limit.
    pub fn unfunded(&self) -> Amount {
        self.amount
            .checked_sub(self.funded())
            .unwrap_or(Amount::ZERO)
    }

    /// The status as seen at `now`: a pending hold past its expiry is expired
    /// even before the release is written.
    pub fn status_at(&self, now: Timestamp) -> HoldStatus {
        if self.status == HoldStatus::Pending && self.expires_at <= now {
            HoldStatus::Expired
        } else {
            self.status
        }
    }

    /// True when the hold still reserves credits at `now`.
    pub fn is_pending_at(&self, now: Timestamp) -> bool {
        self.status_at(now) == HoldStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_outside_one_second_to_one_day_is_rejected() {
        assert!(HoldTtl::from_secs(0).is_err());
        assert!(HoldTtl::from_secs(-5).is_err());
        assert!(HoldTtl::from_secs(86_401).is_err());
        assert_eq!(HoldTtl::from_secs(86_400).map(HoldTtl::secs), Ok(86_400));
        assert_eq!(HoldTtl::default().secs(), 900);
    }

    #[test]
    fn pending_hold_reads_as_expired_from_its_expiry_instant() {
        let hold = Hold {
            id: HoldId(1),
            account: AccountId::parse("a").unwrap(),
            amount: Amount::credits(10),
            legs: vec![Leg {
                lot: LotId(1),
                amount: Amount::credits(4),
            }],
            status: HoldStatus::Pending,
            committed_amount: None,
            created_at: Timestamp::from_secs(0),
            expires_at: Timestamp::from_secs(60),
            resolved_at: None,
            metadata: Metadata::empty(),
        };
        assert_eq!(
            hold.status_at(Timestamp::from_secs(59)),
            HoldStatus::Pending
        );
        assert_eq!(
            hold.status_at(Timestamp::from_secs(60)),
            HoldStatus::Expired
        );
        assert_eq!(hold.funded(), Amount::credits(4));
        assert_eq!(hold.unfunded(), Amount::credits(6));
    }

    #[test]
    fn status_codes_round_trip() {
        for code in ["pending", "committed", "released", "expired"] {
            assert_eq!(HoldStatus::parse(code).map(HoldStatus::code), Some(code));
        }
    }
}
