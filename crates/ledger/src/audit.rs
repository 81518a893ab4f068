//! The audit: rebuilds every balance from the journal and reports where stored state disagrees.

use std::collections::HashMap;
use std::fmt;

use crate::{Account, Amount, Hold, HoldStatus, LedgerAccount, Lot, Transaction, TxId, TxKind};

/// One way the stored state breaks a law of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A transaction's postings do not sum to zero.
    Unbalanced {
        /// The transaction.
        tx: TxId,
        /// What its postings sum to.
        sum: i128,
    },
    /// A transaction belongs to one account but posts to another's lot or hold.
    ForeignPosting {
        /// The transaction.
        tx: TxId,
    },
    /// A lot's remaining credits differ from the sum of its postings.
    LotMismatch {
        /// The lot.
        lot: crate::LotId,
        /// What the lot says it holds.
        remaining: Amount,
        /// What its postings sum to.
        posted: i128,
    },
    /// A lot holds less than nothing or more than it was granted.
    LotOutOfRange {
        /// The lot.
        lot: crate::LotId,
    },
    /// A lot's amount differs from what its grant issued.
    LotAmountMismatch {
        /// The lot.
        lot: crate::LotId,
    },
    /// A hold's escrow differs from the sum of its postings.
    EscrowMismatch {
        /// The hold.
        hold: crate::HoldId,
        /// What the hold says is escrowed (zero once resolved).
        expected: Amount,
        /// What its postings sum to.
        posted: i128,
    },
    /// The account's debt differs from the sum of its debt postings, or is negative.
    DebtMismatch {
        /// What the account says it owes.
        debt: Amount,
        /// Minus the sum of its debt postings.
        posted: i128,
    },
    /// Refunds of a usage transaction add up to more than it spent.
    OverRefunded {
        /// The usage transaction.
        tx: TxId,
    },
    /// A refund names a transaction that is not this account's usage.
    RefundOfNonUsage {
        /// The refund.
        tx: TxId,
    },
    /// Postings reach a lot or hold that is not stored.
    UnknownLedgerAccount {
        /// The transaction.
        tx: TxId,
        /// The ledger account.
        account: LedgerAccount,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Unbalanced { tx, sum } => {
                write!(
                    f,
                    "{tx}: postings sum to {} credits, not zero",
                    Credits(*sum)
                )
            }
            Violation::ForeignPosting { tx } => {
                write!(f, "{tx}: posts to a lot or hold of another account")
            }
            Violation::LotMismatch {
                lot,
                remaining,
                posted,
            } => write!(
                f,
                "{lot}: remaining {remaining} credits but postings sum to {} credits",
                Credits(*posted)
            ),
            Violation::LotOutOfRange { lot } => {
                write!(f, "{lot}: remaining is below zero or above its amount")
            }
            Violation::LotAmountMismatch { lot } => {
                write!(f, "{lot}: amount differs from what its grant issued")
            }
            Violation::EscrowMismatch {
                hold,
                expected,
                posted,
            } => write!(
                f,
                "{hold}: escrow should be {expected} credits but postings sum to {} credits",
                Credits(*posted)
            ),
            Violation::DebtMismatch { debt, posted } => write!(
                f,
                "debt is {debt} credits but debt postings sum to {} credits",
                Credits(-*posted)
            ),
            Violation::OverRefunded { tx } => {
                write!(f, "{tx}: refunded more than it spent")
            }
            Violation::RefundOfNonUsage { tx } => {
                write!(
                    f,
                    "{tx}: refunds something that is not usage of this account"
                )
            }
            Violation::UnknownLedgerAccount { tx, account } => {
                write!(f, "{tx}: posts to {account}, which is not stored")
            }
        }
    }
}

/// A sum of micro-credits written as credits, as amounts are (`-12.5`): a
/// sum of postings may lie outside an amount's range, so it is an `i128`.
struct Credits(i128);

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros_per_credit = i128::from(crate::MICROS_PER_CREDIT);
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let whole = magnitude / micros_per_credit.unsigned_abs();
        let fraction = magnitude % micros_per_credit.unsigned_abs();
        if fraction == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{fraction:06}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// Checks one account's stored state against its whole journal: every
/// transaction sums to zero, every lot's remaining credits equal the sum of
/// its postings and lie between zero and its amount, every hold's escrow
/// matches, the debt matches, and no usage is refunded twice over.
pub fn audit_account(
    account: &Account,
    lots: &[Lot],
    holds: &[Hold],
    journal: &[Transaction],
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut posted: HashMap<LedgerAccount, i128> = HashMap::new();
    let mut issued: HashMap<crate::LotId, i128> = HashMap::new();
    let mut usage: HashMap<TxId, i128> = HashMap::new();
    let mut refunded: HashMap<TxId, i128> = HashMap::new();
    let lot_ids: std::collections::HashSet<_> = lots.iter().map(|l| l.id).collect();
    let hold_ids: std::collections::HashSet<_> = holds.iter().map(|h| h.id).collect();

    for tx in journal {
        if tx.account != account.id {
            violations.push(Violation::ForeignPosting { tx: tx.id });
            continue;
        }
        let sum: i128 = tx
            .postings
            .iter()
            .map(|p| i128::from(p.amount.micros()))
            .sum();
        if sum != 0 {
            violations.push(Violation::Unbalanced { tx: tx.id, sum });
        }
        for p in &tx.postings {
            let known = match p.account {
                LedgerAccount::Lot(id) => lot_ids.contains(&id),
                LedgerAccount::Hold(id) => hold_ids.contains(&id),
                _ => true,
            };
            if !known {
                violations.push(Violation::UnknownLedgerAccount {
                    tx: tx.id,
                    account: p.account,
                });
            }
            *posted.entry(p.account).or_default() += i128::from(p.amount.micros());
        }
        // A lot is created by its grant, by a refund of debt already repaid,
        // or by a rollover of a period's plan credits.
        if let (TxKind::Grant | TxKind::Refund | TxKind::Rollover, Some(lot)) = (tx.kind, tx.lot) {
            let created = tx.posted_to(LedgerAccount::Lot(lot)).unwrap_or_default();
            *issued.entry(lot).or_default() += i128::from(created.micros());
        }
        if tx.kind.is_usage() {
            let spent: i128 = tx
                .sources
                .iter()
                .map(|s| i128::from(s.amount.micros()))
                .sum();
            usage.insert(tx.id, spent);
        }
        if tx.kind == TxKind::Refund {
            match tx.refund_of {
                Some(of) if usage.contains_key(&of) => {
                    let back = -i128::from(
                        tx.posted_to(LedgerAccount::Usage)
                            .unwrap_or_default()
                            .micros(),
                    );
                    *refunded.entry(of).or_default() += back;
                }
                _ => violations.push(Violation::RefundOfNonUsage { tx: tx.id }),
            }
        }
    }

    for lot in lots {
        let sum = posted
            .get(&LedgerAccount::Lot(lot.id))
            .copied()
            .unwrap_or(0);
        if sum != i128::from(lot.remaining.micros()) {
            violations.push(Violation::LotMismatch {
                lot: lot.id,
                remaining: lot.remaining,
                posted: sum,
            });
        }
        if lot.remaining.is_negative() || lot.remaining > lot.amount {
            violations.push(Violation::LotOutOfRange { lot: lot.id });
        }
        if issued.get(&lot.id).copied() != Some(i128::from(lot.amount.micros())) {
            violations.push(Violation::LotAmountMismatch { lot: lot.id });
        }
    }
    for hold in holds {
        let sum = posted
            .get(&LedgerAccount::Hold(hold.id))
            .copied()
            .unwrap_or(0);
        let expected = if hold.status == HoldStatus::Pending {
            hold.funded()
        } else {
            Amount::ZERO
        };
        if sum != i128::from(expected.micros()) {
            violations.push(Violation::EscrowMismatch {
                hold: hold.id,
                expected,
                posted: sum,
            });
        }
    }
    let debt_posted = -posted.get(&LedgerAccount::Debt).copied().unwrap_or(0);
    if account.debt.is_negative() || debt_posted != i128::from(account.debt.micros()) {
        violations.push(Violation::DebtMismatch {
            debt: account.debt,
            posted: debt_posted,
        });
    }
    for (tx, back) in refunded {
        if back > usage.get(&tx).copied().unwrap_or(0) {
            violations.push(Violation::OverRefunded { tx });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_speaks_of_credits_only() {
        let lot = crate::LotId(1);
        let messages = [
            Violation::Unbalanced {
                tx: TxId(7),
                sum: 1_500_000,
            }
            .to_string(),
            Violation::LotMismatch {
                lot,
                remaining: Amount::credits(1),
                posted: 0,
            }
            .to_string(),
            Violation::EscrowMismatch {
                hold: crate::HoldId(3),
                expected: Amount::from_micros(2_500_000),
                posted: -1,
            }
            .to_string(),
            Violation::DebtMismatch {
                debt: Amount::credits(4),
                posted: 3_000_000,
            }
            .to_string(),
        ];
        assert_eq!(messages[0], "tx_7: postings sum to 1.5 credits, not zero");
        assert_eq!(
            messages[1],
            "lot_1: remaining 1 credits but postings sum to 0 credits"
        );
        assert_eq!(
            messages[2],
            "hold_3: escrow should be 2.5 credits but postings sum to -0.000001 credits"
        );
        assert_eq!(
            messages[3],
            "debt is 4 credits but debt postings sum to -3 credits"
        );
        for message in &messages {
            assert!(!message.contains("micro"), "{message}");
        }
    }
}
