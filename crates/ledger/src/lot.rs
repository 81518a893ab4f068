//! Credit lots: what a grant creates, with a source, a burn priority, and an optional expiry.

use crate::{AccountId, Amount, ExternalId, LotId, Metadata, Timestamp};

/// The highest burn priority; lower numbers burn first.
pub const PRIORITY_MAX: u8 = 100;

/// Where a lot's credits came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A one-off bonus on sign-up.
    SignupBonus,
    /// A daily reward that usually expires at the end of the day.
    DailyReward,
    /// A subscription's periodic allowance.
    Subscription,
    /// A purchased credit package.
    Purchase,
    /// An automatic top-up at a low-balance threshold.
    AutoTopup,
    /// Granted by an operator by hand.
    Admin,
    /// A promotion.
    Promo,
    /// Unused subscription credits carried into the next period.
    Rollover,
    /// Credits handed back by a refund after the debt they once covered was repaid.
    Refund,
}

impl Source {
    /// Every source, in a fixed order.
    pub const ALL: [Source; 9] = [
        Source::SignupBonus,
        Source::DailyReward,
        Source::Subscription,
        Source::Purchase,
        Source::AutoTopup,
        Source::Admin,
        Source::Promo,
        Source::Rollover,
        Source::Refund,
    ];

    /// The stable text code, as used in the API and the database.
    pub const fn code(self) -> &'static str {
        match self {
            Source::SignupBonus => "signup_bonus",
            Source::DailyReward => "daily_reward",
            Source::Subscription => "subscription",
            Source::Purchase => "purchase",
            Source::AutoTopup => "auto_topup",
            Source::Admin => "admin",
            Source::Promo => "promo",
            Source::Rollover => "rollover",
            Source::Refund => "refund",
        }
    }

    /// The source with this code.
    pub fn parse(code: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The burn priority a grant gets when it names none. Daily rewards
    /// burn first; purchased and auto top-up credits, the customer's own
    /// money, burn last, whatever their expiry, so that a plan's credits
    /// are never left to expire or pass a rollover cap while paid ones are
    /// spent. Every other source shares one priority, so that expiry decides
    /// between them (credits that expire soonest burn first, credits that
    /// never expire last) and then age. Operators may set other priorities
    /// per source in their settings.
    pub const fn default_priority(self) -> u8 {
        match self {
            Source::DailyReward => 10,
            Source::Purchase | Source::AutoTopup => 90,
            _ => 50,
        }
    }
}

/// A grant request, before it becomes a lot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGrant {
    /// Credits to grant; must be positive.
    pub amount: Amount,
    /// Where they come from.
    pub source: Source,
    /// Burn priority, 0 to 100; the source's default when absent.
    pub priority: Option<u8>,
    /// When the credits become spendable; now when absent.
    pub effective_at: Option<Timestamp>,
    /// The first instant at which the credits are no longer spendable.
    pub expires_at: Option<Timestamp>,
    /// Operator metadata.
    pub metadata: Metadata,
    /// What caused the grant, unique per account; a second grant with the
    /// same id is the first one again.
    pub external_id: Option<ExternalId>,
    /// Why it was granted (an admin or promo grant's reason), kept on its
    /// transaction.
    pub reason: Option<String>,
    /// Who granted it (the API key's id), kept on its transaction.
    pub actor: Option<String>,
}

/// The longest grant reason accepted, in bytes.
pub const REASON_LEN_MAX: usize = 500;

/// A lot of credits held by one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lot {
    /// The lot's id.
    pub id: LotId,
    /// The account holding it.
    pub account: AccountId,
    /// Where the credits came from.
    pub source: Source,
    /// Burn priority; lower burns first.
    pub priority: u8,
    /// Credits granted.
    pub amount: Amount,
    /// Credits still in the lot; never negative, never above `amount`.
    pub remaining: Amount,
    /// When the credits become spendable.
    pub effective_at: Timestamp,
    /// The first instant at which the credits are no longer spendable.
    pub expires_at: Option<Timestamp>,
    /// When the lot was voided, if it was.
    pub voided_at: Option<Timestamp>,
    /// When the grant was made.
    pub created_at: Timestamp,
    /// Operator metadata.
    pub metadata: Metadata,
    /// What caused the grant, if the caller named it.
    pub external_id: Option<ExternalId>,
}

impl Lot {
    /// True when the lot has expired by `now` (expiry is exclusive: a lot that
    /// expires at `t` is not spendable at `t`).
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// True when credits returned to this lot at `now` may stay in it: the lot
    /// is neither voided nor expired. A lot not yet effective is live.
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.voided_at.is_none() && !self.is_expired_at(now)
    }

    /// True when the lot's credits can be spent at `now`.
    pub fn is_spendable_at(&self, now: Timestamp) -> bool {
        self.is_live_at(now) && self.effective_at <= now
    }

    /// The burn-down order: priority ascending, then earliest expiry (no
    /// expiry last), then the oldest grant.
    pub fn burn_key(&self) -> (u8, i64, LotId) {
        (
            self.priority,
            self.expires_at.map_or(i64::MAX, Timestamp::micros),
            self.id,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot(priority: u8, expires_at: Option<i64>, id: i64) -> Lot {
        Lot {
            id: LotId(id),
            account: AccountId::parse("a").unwrap(),
            source: Source::Admin,
            priority,
            amount: Amount::credits(1),
            remaining: Amount::credits(1),
            effective_at: Timestamp::from_secs(0),
            expires_at: expires_at.map(Timestamp::from_secs),
            voided_at: None,
            created_at: Timestamp::from_secs(0),
            metadata: Metadata::empty(),
            external_id: None,
        }
    }

    #[test]
    fn source_codes_round_trip() {
        for source in Source::ALL {
            assert_eq!(Source::parse(source.code()), Some(source));
        }
        assert_eq!(Source::parse("gift"), None);
    }

    #[test]
    fn daily_rewards_burn_first_purchases_last_and_the_rest_leave_it_to_expiry() {
        let paid = [Source::Purchase, Source::AutoTopup];
        for source in Source::ALL {
            if source == Source::DailyReward {
                continue;
            }
            assert!(Source::DailyReward.default_priority() < source.default_priority());
            if paid.contains(&source) {
                assert_eq!(source.default_priority(), 90);
            } else {
                assert_eq!(source.default_priority(), Source::Admin.default_priority());
                assert!(source.default_priority() < Source::Purchase.default_priority());
            }
        }
        assert!(
            Source::ALL
                .iter()
                .all(|s| s.default_priority() <= PRIORITY_MAX)
        );
    }

    #[test]
    fn lot_is_not_spendable_at_its_expiry_instant() {
        let l = lot(0, Some(100), 1);
        assert!(l.is_spendable_at(Timestamp::from_micros(100 * 1_000_000 - 1)));
        assert!(!l.is_spendable_at(Timestamp::from_secs(100)));
    }

    #[test]
    fn future_lot_is_live_but_not_spendable() {
        let mut l = lot(0, None, 1);
        l.effective_at = Timestamp::from_secs(50);
        assert!(l.is_live_at(Timestamp::from_secs(10)));
        assert!(!l.is_spendable_at(Timestamp::from_secs(10)));
        assert!(l.is_spendable_at(Timestamp::from_secs(50)));
    }

    #[test]
    fn burn_key_orders_priority_then_expiry_then_age() {
        let mut lots = [
            lot(5, None, 1),
            lot(1, None, 2),
            lot(1, Some(10), 3),
            lot(1, Some(5), 4),
            lot(1, Some(5), 0),
        ];
        lots.sort_by_key(Lot::burn_key);
        let order: Vec<i64> = lots.iter().map(|l| l.id.0).collect();
        assert_eq!(order, vec![0, 4, 3, 2, 1]);
    }
}
