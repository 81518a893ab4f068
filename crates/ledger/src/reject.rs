//! Rejections: every reason the ledger refuses an operation, each with a stable code.

use std::fmt;

use crate::{Amount, HoldStatus};

/// Why an operation was refused. Nothing changes when an operation is rejected.
///
/// The codes are part of the API: never rename or reuse one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// An amount is negative, zero, or otherwise not allowed where it appears.
    InvalidAmount(&'static str),
    /// A timestamp is out of order or out of range.
    InvalidTimestamp(&'static str),
    /// A field other than an amount or a timestamp is not acceptable.
    InvalidRequest(&'static str),
    /// A sum would leave the range of amounts.
    Overflow,
    /// The account cannot cover the amount, even with its overdraft limit.
    InsufficientCredits {
        /// Credits the operation needs.
        required: Amount,
        /// Credits available before it.
        available: Amount,
    },
    /// An account with this id already exists.
    AccountExists,
    /// No such account.
    AccountNotFound,
    /// No such grant.
    GrantNotFound,
    /// No such hold.
    HoldNotFound,
    /// No such transaction.
    TransactionNotFound,
    /// No such feature.
    FeatureNotFound,
    /// The hold was already committed, released or expired.
    HoldNotPending {
        /// Where the hold stands.
        status: HoldStatus,
    },
    /// The grant was already voided.
    GrantVoided,
    /// The transaction is not usage, so there is nothing to refund.
    NotRefundable,
    /// The refund is larger than what is left to refund.
    RefundTooLarge {
        /// What is left to refund.
        refundable: Amount,
    },
    /// The idempotency key was used before with a different request.
    IdempotencyConflict,
    /// The external id was used before on this account by a write with
    /// different content.
    ExternalIdConflict,
    /// The store handed the core state that breaks an invariant; a bug.
    Inconsistent(&'static str),
}

impl Reject {
    /// The stable, machine-readable code.
    pub const fn code(&self) -> &'static str {
        match self {
            Reject::InvalidAmount(_) => "invalid_amount",
            Reject::InvalidTimestamp(_) => "invalid_timestamp",
            Reject::InvalidRequest(_) => "invalid_request",
            Reject::Overflow => "amount_overflow",
            Reject::InsufficientCredits { .. } => "insufficient_credits",
            Reject::AccountExists => "account_exists",
            Reject::AccountNotFound => "account_not_found",
            Reject::GrantNotFound => "grant_not_found",
            Reject::HoldNotFound => "hold_not_found",
            Reject::TransactionNotFound => "transaction_not_found",
            Reject::FeatureNotFound => "feature_not_found",
            Reject::HoldNotPending { .. } => "hold_not_pending",
            Reject::GrantVoided => "grant_voided",
            Reject::NotRefundable => "not_refundable",
            Reject::RefundTooLarge { .. } => "refund_too_large",
            Reject::IdempotencyConflict => "idempotency_conflict",
            Reject::ExternalIdConflict => "external_id_conflict",
            Reject::Inconsistent(_) => "internal_error",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::InvalidAmount(why)
            | Reject::InvalidTimestamp(why)
            | Reject::InvalidRequest(why) => f.write_str(why),
            Reject::Overflow => f.write_str("the result would exceed the largest amount"),
            Reject::InsufficientCredits {
                required,
                available,
            } => write!(
                f,
                "insufficient credits: {required} required, {available} available"
            ),
            Reject::AccountExists => f.write_str("an account with this id already exists"),
            Reject::AccountNotFound => f.write_str("no account with this id"),
            Reject::GrantNotFound => f.write_str("no grant with this id"),
            Reject::HoldNotFound => f.write_str("no hold with this id"),
            Reject::TransactionNotFound => f.write_str("no transaction with this id"),
            Reject::FeatureNotFound => f.write_str("no feature with this id"),
            Reject::HoldNotPending { status } => {
                write!(f, "the hold is {}, not pending", status.code())
            }
            Reject::GrantVoided => f.write_str("the grant is already voided"),
            Reject::NotRefundable => {
                f.write_str("only consume and hold_commit transactions can be refunded")
            }
            Reject::RefundTooLarge { refundable } => {
                write!(f, "at most {refundable} credits are left to refund")
            }
            Reject::IdempotencyConflict => {
                f.write_str("this Idempotency-Key was already used with a different request")
            }
            Reject::ExternalIdConflict => f.write_str(
                "this external_id was already used on this account by a write with different content",
            ),
            Reject::Inconsistent(why) => write!(f, "internal inconsistency: {why}"),
        }
    }
}
