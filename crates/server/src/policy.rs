//! What a capability decides inside the core's writes: what a new account
//! opens with (a sign-up bonus, a default plan), and the burn priority a
//! grant gets by its source. Billing provides it; without it, accounts open
//! empty and grants take the ledger's default priorities.

use ledger::{AccountId, Amount, NewGrant, Source, Timestamp};
use store::BoxFuture;
use store::records::RecordWrite;

use crate::error::ApiError;

/// What a new account opens with, all in the transaction that creates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opening {
    /// Grants applied as the account opens.
    pub grants: Vec<NewGrant>,
    /// Records written with it (a subscription to the default plan).
    pub records: Vec<RecordWrite>,
    /// An overdraft limit that replaces the one asked for (a default plan's
    /// overage cap).
    pub overdraft_limit: Option<Amount>,
}

/// Decisions a capability makes inside the core's writes.
pub trait Policy: Send + Sync + 'static {
    /// What `account`, opening at `now`, opens with.
    fn opening<'a>(
        &'a self,
        account: &'a AccountId,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Opening, ApiError>>;

    /// The burn priority a grant of `source` gets when it names none; `None`
    /// leaves the ledger's default.
    fn priority<'a>(&'a self, source: Source) -> BoxFuture<'a, Result<Option<u8>, ApiError>>;
}

/// No capability: accounts open empty, grants take the ledger's defaults.
pub struct NoPolicy;

impl Policy for NoPolicy {
    fn opening<'a>(
        &'a self,
        _account: &'a AccountId,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<Opening, ApiError>> {
        Box::pin(std::future::ready(Ok(Opening::default())))
    }

    fn priority<'a>(&'a self, _source: Source) -> BoxFuture<'a, Result<Option<u8>, ApiError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}
