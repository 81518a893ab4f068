//! The journal: transactions of postings that sum to zero.

use std::fmt;

use crate::{
    AccountId, Amount, ExternalId, FeatureId, HoldId, LotId, Metadata, Reject, Timestamp, TxId,
};

/// What a transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxKind {
    /// Credits issued into a new lot.
    Grant,
    /// Credits spent directly.
    Consume,
    /// Credits moved from lots into a hold's escrow.
    Hold,
    /// A hold turned into usage.
    HoldCommit,
    /// A hold's escrow returned to its lots, by the caller or on expiry.
    HoldRelease,
    /// A lot's remaining credits removed at its expiry.
    Expire,
    /// A lot's remaining credits removed by an operator.
    Void,
    /// Usage handed back to the lots it came from.
    Refund,
    /// Spendable credits used to pay off debt.
    DebtRepayment,
    /// What was left of a period's plan credits carried into a rollover lot.
    Rollover,
    /// Debt cleared to the receivable account: billed as a charge instead.
    DebtSettlement,
    /// Credits of a refunded purchase taken back: from the grant's lot, then
    /// from other lots, and the rest as debt.
    ClawBack,
}

impl TxKind {
    /// Every kind, in a fixed order.
    pub const ALL: [TxKind; 12] = [
        TxKind::Grant,
        TxKind::Consume,
        TxKind::Hold,
        TxKind::HoldCommit,
        TxKind::HoldRelease,
        TxKind::Expire,
        TxKind::Void,
        TxKind::Refund,
        TxKind::DebtRepayment,
        TxKind::Rollover,
        TxKind::DebtSettlement,
        TxKind::ClawBack,
    ];

    /// The stable text code.
    pub const fn code(self) -> &'static str {
        match self {
            TxKind::Grant => "grant",
            TxKind::Consume => "consume",
            TxKind::Hold => "hold",
            TxKind::HoldCommit => "hold_commit",
            TxKind::HoldRelease => "hold_release",
            TxKind::Expire => "expire",
            TxKind::Void => "void",
            TxKind::Refund => "refund",
            TxKind::DebtRepayment => "debt_repayment",
            TxKind::Rollover => "rollover",
            TxKind::DebtSettlement => "debt_settlement",
            TxKind::ClawBack => "claw_back",
        }
    }

    /// The kind with this code.
    pub fn parse(code: &str) -> Option<TxKind> {
        TxKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// True for the kinds that record usage, which a refund may reverse.
    pub const fn is_usage(self) -> bool {
        matches!(self, TxKind::Consume | TxKind::HoldCommit)
    }
}

/// One side of the double entry.
///
/// Lots, hold escrows and debt belong to the transaction's account; the other
/// four are system-wide. Balances: a lot's is its remaining credits, an
/// escrow's is what it holds, debt's is minus what the account owes, and the
/// system accounts collect what left or entered the accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedgerAccount {
    /// A credit lot.
    Lot(LotId),
    /// A hold's escrow.
    Hold(HoldId),
    /// The account's debt.
    Debt,
    /// Where granted credits come from.
    Issuance,
    /// Where spent credits go.
    Usage,
    /// Where expired credits go.
    Expiry,
    /// Where voided and clawed-back credits go.
    Void,
    /// Where settled debt goes: what accounts owe, billed as charges.
    Receivable,
}

impl LedgerAccount {
    /// True for the ledger accounts that belong to the customer's account.
    pub const fn is_account_side(self) -> bool {
        matches!(
            self,
            LedgerAccount::Lot(_) | LedgerAccount::Hold(_) | LedgerAccount::Debt
        )
    }

    /// Parses the text form written by `Display`.
    pub fn parse(text: &str) -> Option<LedgerAccount> {
        Some(match text {
            "debt" => LedgerAccount::Debt,
            "issuance" => LedgerAccount::Issuance,
            "usage" => LedgerAccount::Usage,
            "expiry" => LedgerAccount::Expiry,
            "void" => LedgerAccount::Void,
            "receivable" => LedgerAccount::Receivable,
            _ => {
                if let Ok(lot) = LotId::parse(text) {
                    LedgerAccount::Lot(lot)
                } else {
                    LedgerAccount::Hold(HoldId::parse(text).ok()?)
                }
            }
        })
    }
}

impl fmt::Display for LedgerAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerAccount::Lot(id) => write!(f, "{id}"),
            LedgerAccount::Hold(id) => write!(f, "{id}"),
            LedgerAccount::Debt => f.write_str("debt"),
            LedgerAccount::Issuance => f.write_str("issuance"),
            LedgerAccount::Usage => f.write_str("usage"),
            LedgerAccount::Expiry => f.write_str("expiry"),
            LedgerAccount::Void => f.write_str("void"),
            LedgerAccount::Receivable => f.write_str("receivable"),
        }
    }
}

/// A signed movement into (positive) or out of (negative) one ledger account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    /// The ledger account.
    pub account: LedgerAccount,
    /// The signed amount.
    pub amount: Amount,
}

/// Where spent credits came from: a lot, or the account's debt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A lot, directly or through a hold's escrow.
    Lot(LotId),
    /// Credits the account did not have, owed as debt.
    Debt,
}

/// One origin's share of a usage transaction (refunds retrace these) or of
/// a claw-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// Where the credits came from.
    pub origin: Origin,
    /// How many, always positive.
    pub amount: Amount,
}

/// One journal transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The transaction's id.
    pub id: TxId,
    /// The account it belongs to.
    pub account: AccountId,
    /// What it did.
    pub kind: TxKind,
    /// The double entry; sums to zero.
    pub postings: Vec<Posting>,
    /// For usage and claw-backs: where the credits came from, in the order
    /// taken.
    pub sources: Vec<Share>,
    /// Signed change to the account's credits (lots plus escrow minus debt).
    pub amount: Amount,
    /// The account's available balance right after.
    pub balance_after: Amount,
    /// When it happened.
    pub created_at: Timestamp,
    /// Operator metadata.
    pub metadata: Metadata,
    /// The lot it is about (grant, expire, void, claw-back).
    pub lot: Option<LotId>,
    /// The hold it is about (hold, commit, release).
    pub hold: Option<HoldId>,
    /// The usage transaction it refunds.
    pub refund_of: Option<TxId>,
    /// The feature and quantity it was priced from.
    pub feature: Option<(FeatureId, Amount)>,
    /// What caused it (a grant, a consume or a claw-back), unique per account.
    pub external_id: Option<ExternalId>,
    /// Why it was made (a grant's reason).
    pub reason: Option<String>,
    /// Who made it (the API key's id), for grants.
    pub actor: Option<String>,
    /// Where a grant's credits come from: its lot's source.
    pub source: Option<crate::Source>,
}

impl Transaction {
    /// The sum of all postings; zero for every well-formed transaction.
    pub fn imbalance(&self) -> Option<Amount> {
        Amount::checked_sum(self.postings.iter().map(|p| p.amount))
    }

    /// The sum of postings on the customer's side.
    pub fn account_side_sum(postings: &[Posting]) -> Result<Amount, Reject> {
        Amount::checked_sum(
            postings
                .iter()
                .filter(|p| p.account.is_account_side())
                .map(|p| p.amount),
        )
        .ok_or(Reject::Overflow)
    }

    /// Credits spent by a usage transaction: the sum of its sources.
    pub fn usage_amount(&self) -> Option<Amount> {
        Amount::checked_sum(self.sources.iter().map(|s| s.amount))
    }

    /// The sum of the postings on one ledger account.
    pub fn posted_to(&self, account: LedgerAccount) -> Option<Amount> {
        Amount::checked_sum(
            self.postings
                .iter()
                .filter(|p| p.account == account)
                .map(|p| p.amount),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_account_text_round_trips() {
        for account in [
            LedgerAccount::Lot(LotId(3)),
            LedgerAccount::Hold(HoldId(9)),
            LedgerAccount::Debt,
            LedgerAccount::Issuance,
            LedgerAccount::Usage,
            LedgerAccount::Expiry,
            LedgerAccount::Void,
            LedgerAccount::Receivable,
        ] {
            assert_eq!(LedgerAccount::parse(&account.to_string()), Some(account));
        }
        assert_eq!(LedgerAccount::parse("bank"), None);
    }

    #[test]
    fn kind_codes_round_trip_and_only_usage_is_refundable() {
        for kind in TxKind::ALL {
            assert_eq!(TxKind::parse(kind.code()), Some(kind));
        }
        let usage: Vec<_> = TxKind::ALL.into_iter().filter(|k| k.is_usage()).collect();
        assert_eq!(usage, vec![TxKind::Consume, TxKind::HoldCommit]);
    }
}
