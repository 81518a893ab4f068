//! The credit ledger's domain core: pure rules with no IO, no async and no clock.
//!
//! A store loads an account's [`Book`] (its lots and pending holds), calls one of
//! its operations with the current instant, and persists the [`Transaction`]s the
//! operation appends. Every transaction's postings sum to zero, and every
//! rejection is a [`Reject`] with a stable code.

mod account;
mod amount;
mod audit;
mod book;
pub mod decimal;
mod feature;
pub mod forecast;
mod hold;
mod id;
mod journal;
mod lot;
mod metadata;
mod reject;
mod replay;
mod standing;
mod text;
mod time;
mod totals;

pub use account::{Account, AccountPatch, NewAccount};
pub use amount::{AMOUNT_MAX_MICROS, Amount, AmountError, MICROS_PER_CREDIT};
pub use audit::{Violation, audit_account};
pub use book::{
    ACCOUNT_CREDITS_MAX, Balance, Book, Carry, Check, RefundDone, Renewal, Renewed, Usage,
};
pub use feature::Feature;
pub use hold::{HOLD_TTL_DEFAULT_SECS, HOLD_TTL_MAX_SECS, Hold, HoldStatus, HoldTtl, Leg};
pub use id::{
    AccountId, Counters, EXTERNAL_ID_LEN_MAX, ExternalId, FeatureId, HoldId, IdError, IdSource,
    LotId, NAME_ID_LEN_MAX, TxId,
};
pub use journal::{LedgerAccount, Origin, Posting, Share, Transaction, TxKind};
pub use lot::{Lot, NewGrant, PRIORITY_MAX, REASON_LEN_MAX, Source};
pub use metadata::{METADATA_LEN_MAX, Metadata};
pub use reject::Reject;
pub use replay::book_at;
pub use standing::Standing;
pub use text::{has_hidden_or_control, is_hidden_or_control};
pub use time::{
    Civil, MICROS_PER_DAY, MICROS_PER_SECOND, Timestamp, TimestampError, days_in_month,
};
pub use totals::{Totals, totals};
