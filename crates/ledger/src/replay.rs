//! The replay: an account's book as it stood at a past instant, rebuilt from its rows and journal.

use std::collections::HashMap;

use crate::{
    Account, Amount, Book, Hold, HoldStatus, LedgerAccount, Lot, Reject, Timestamp, Transaction,
};

/// Rebuilds the book of `account` as it stood at `at` from what the store
/// holds now: the account's lots and holds as their rows stand, and its
/// journal.
///
/// Only what existed at `at` counts: lots and holds created after it and
/// transactions written after it are left out, so a store may pass more
/// than it needs. Each lot holds what the journal posted to it by `at` and
/// the account owes what its debt postings owe by then; a void, commit,
/// release or expiry written after `at` is undone, so such a lot is not yet
/// voided and such a hold is pending again. The lots and holds keep every
/// other field as stored, the account too (its overdraft limit is today's).
///
/// The book is not settled: the caller settles it at `at`, as any read does,
/// so that what had expired by then stops counting even where the expiry
/// was written later.
///
/// Rejects a lot, hold or transaction of another account and a pending hold
/// whose lot is missing as [`Reject::Inconsistent`], and postings to one
/// ledger account that sum beyond the range of amounts as [`Reject::Overflow`].
pub fn book_at(
    mut account: Account,
    lots: Vec<Lot>,
    holds: Vec<Hold>,
    journal: &[Transaction],
    at: Timestamp,
) -> Result<Book, Reject> {
    // Summed wide: a journal read in any order cannot overflow on the way
    // to a total that fits.
    let mut posted: HashMap<LedgerAccount, i128> = HashMap::new();
    for tx in journal.iter().filter(|tx| tx.created_at <= at) {
        if tx.account != account.id {
            return Err(Reject::Inconsistent("a transaction of another account"));
        }
        for posting in &tx.postings {
            *posted.entry(posting.account).or_default() += i128::from(posting.amount.micros());
        }
    }
    let total = |ledger_account: LedgerAccount| -> Result<Amount, Reject> {
        let micros = posted.get(&ledger_account).copied().unwrap_or(0);
        i64::try_from(micros)
            .map(Amount::from_micros)
            .map_err(|_| Reject::Overflow)
    };
    let lots = lots
        .into_iter()
        .filter(|lot| lot.created_at <= at)
        .map(|mut lot| {
            lot.remaining = total(LedgerAccount::Lot(lot.id))?;
            lot.voided_at = lot.voided_at.filter(|voided| *voided <= at);
            Ok(lot)
        })
        .collect::<Result<Vec<Lot>, Reject>>()?;
    let holds = holds
        .into_iter()
        .filter(|hold| hold.created_at <= at)
        .map(|mut hold| {
            if hold.resolved_at.is_none_or(|resolved| resolved > at) {
                hold.status = HoldStatus::Pending;
                hold.resolved_at = None;
                hold.committed_amount = None;
            }
            hold
        })
        .collect();
    account.debt = total(LedgerAccount::Debt)?
        .checked_neg()
        .ok_or(Reject::Overflow)?;
    Book::new(account, lots, holds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AccountId, Counters, HoldTtl, LotId, Metadata, NewAccount, NewGrant, Posting, Source, TxId,
        Usage,
    };

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_800_000_000 + secs)
    }

    fn c(credits: i64) -> Amount {
        Amount::credits(credits)
    }

    /// A book driven through the core as a store would, with the journal it
    /// wrote; its lots and holds stand for the store's rows.
    struct Recorded {
        book: Book,
        ids: Counters,
        journal: Vec<Transaction>,
    }

    impl Recorded {
        fn new(overdraft: i64) -> Recorded {
            let account = NewAccount::new(
                AccountId::parse("acme").unwrap(),
                None,
                Metadata::empty(),
                c(overdraft),
            )
            .unwrap()
            .open(t(0));
            Recorded {
                book: Book::new(account, Vec::new(), Vec::new()).unwrap(),
                ids: Counters::default(),
                journal: Vec::new(),
            }
        }

        fn grant(&mut self, credits: i64, expires_at: Option<Timestamp>, now: Timestamp) -> LotId {
            let grant = NewGrant {
                amount: c(credits),
                source: Source::Purchase,
                priority: None,
                effective_at: None,
                expires_at,
                metadata: Metadata::empty(),
                external_id: None,
                actor: None,
                reason: None,
            };
            self.book
                .grant(grant, now, &mut self.ids, &mut self.journal)
                .unwrap()
        }

        fn consume(&mut self, credits: i64, now: Timestamp) {
            self.book
                .consume(Usage::of(c(credits)), now, &mut self.ids, &mut self.journal)
                .unwrap();
        }

        fn hold(&mut self, credits: i64, now: Timestamp) -> crate::HoldId {
            self.book
                .place_hold(
                    c(credits),
                    HoldTtl::from_secs(60).unwrap(),
                    Metadata::empty(),
                    now,
                    &mut self.ids,
                    &mut self.journal,
                )
                .unwrap()
        }

        /// The book replayed at `at` from the rows as they stand now.
        fn at(&self, at: Timestamp) -> Result<Book, Reject> {
            book_at(
                self.book.account.clone(),
                self.book.lots().to_vec(),
                self.book.holds().to_vec(),
                &self.journal,
                at,
            )
        }
    }

    #[test]
    fn a_lot_holds_what_was_posted_to_it_by_the_instant() {
        let mut r = Recorded::new(0);
        let lot = r.grant(100, None, t(0));
        r.consume(30, t(10));
        r.consume(20, t(20));
        assert_eq!(r.at(t(5)).unwrap().lot(lot).unwrap().remaining, c(100));
        assert_eq!(r.at(t(10)).unwrap().lot(lot).unwrap().remaining, c(70));
        assert_eq!(r.at(t(25)).unwrap().lot(lot).unwrap().remaining, c(50));
    }

    #[test]
    fn rows_created_after_the_instant_are_left_out() {
        let mut r = Recorded::new(0);
        r.grant(10, None, t(0));
        let later = r.grant(5, None, t(10));
        r.hold(3, t(10));
        let before = r.at(t(9)).unwrap();
        assert!(before.lot(later).is_none());
        assert!(before.holds().is_empty());
        assert_eq!(before.balance(t(9)).available, c(10));
        assert_eq!(r.at(t(10)).unwrap().holds().len(), 1);
    }

    #[test]
    fn before_anything_happened_the_book_is_empty() {
        let mut r = Recorded::new(0);
        r.grant(10, None, t(0));
        let book = r.at(t(-1)).unwrap();
        assert!(book.lots().is_empty());
        assert_eq!(book.balance(t(-1)).available, c(0));
    }

    #[test]
    fn a_void_written_after_the_instant_is_undone() {
        let mut r = Recorded::new(0);
        let lot = r.grant(10, None, t(0));
        r.book
            .void(lot, Metadata::empty(), t(10), &mut r.ids, &mut r.journal)
            .unwrap();
        let before = r.at(t(9)).unwrap();
        assert_eq!(before.lot(lot).unwrap().voided_at, None);
        assert_eq!(before.balance(t(9)).available, c(10));
        let after = r.at(t(10)).unwrap();
        assert_eq!(after.lot(lot).unwrap().voided_at, Some(t(10)));
        assert_eq!(after.balance(t(10)).available, c(0));
    }

    #[test]
    fn a_hold_resolved_after_the_instant_is_pending_again() {
        let mut r = Recorded::new(0);
        r.grant(100, None, t(0));
        let hold = r.hold(20, t(10));
        r.book
            .commit(
                hold,
                c(5),
                Metadata::empty(),
                t(20),
                &mut r.ids,
                &mut r.journal,
            )
            .unwrap();
        let before = r.at(t(15)).unwrap();
        let pending = before.hold(hold).unwrap();
        assert_eq!(pending.status, HoldStatus::Pending);
        assert_eq!(
            (pending.resolved_at, pending.committed_amount),
            (None, None)
        );
        let balance = before.balance(t(15));
        assert_eq!((balance.available, balance.held), (c(80), c(20)));
        let after = r.at(t(20)).unwrap();
        assert_eq!(after.hold(hold).unwrap().status, HoldStatus::Committed);
        assert_eq!(after.hold(hold).unwrap().committed_amount, Some(c(5)));
        let balance = after.balance(t(20));
        assert_eq!((balance.available, balance.held), (c(95), c(0)));
    }

    #[test]
    fn what_expired_by_the_instant_stops_counting_though_written_later() {
        let mut r = Recorded::new(0);
        r.grant(10, Some(t(30)), t(0));
        r.grant(5, None, t(0));
        let hold = r.hold(12, t(0));
        // Both expiries are written only when something settles the book, long after.
        r.book.settle(t(500), &mut r.ids, &mut r.journal).unwrap();
        assert_eq!(r.book.hold(hold).unwrap().status, HoldStatus::Expired);
        let held = |at: Timestamp| {
            let balance = r.at(at).unwrap().balance(at);
            (balance.available, balance.held)
        };
        // The hold escrowed the expiring lot's 10 and 2 of the other.
        assert_eq!(held(t(29)), (c(3), c(12)));
        // The lot expired at 30, with nothing left in it outside the hold.
        assert_eq!(held(t(30)), (c(3), c(12)));
        // The hold expired at 60: its 2 went back, its 10 expired with their lot.
        assert_eq!(held(t(60)), (c(5), c(0)));
        assert_eq!(held(t(100)), (c(5), c(0)));
    }

    #[test]
    fn debt_is_what_the_debt_postings_owe_by_the_instant() {
        let mut r = Recorded::new(50);
        r.grant(10, None, t(0));
        r.consume(30, t(10));
        // The next grant repays the debt first.
        r.grant(25, None, t(20));
        let in_debt = r.at(t(15)).unwrap();
        assert_eq!(in_debt.account.debt, c(20));
        assert_eq!(in_debt.balance(t(15)).available, c(-20));
        let repaid = r.at(t(20)).unwrap();
        assert_eq!(repaid.account.debt, c(0));
        assert_eq!(repaid.balance(t(20)).available, c(5));
    }

    #[test]
    fn a_transaction_of_another_account_is_inconsistent() {
        let mut r = Recorded::new(0);
        r.grant(10, None, t(0));
        r.journal[0].account = AccountId::parse("other").unwrap();
        assert_eq!(
            r.at(t(0)).unwrap_err(),
            Reject::Inconsistent("a transaction of another account")
        );
        // Unless it was written after the instant, and so is left out.
        assert!(r.at(t(-1)).is_ok());
    }

    #[test]
    fn postings_beyond_the_range_of_amounts_are_an_overflow() {
        let mut r = Recorded::new(0);
        let lot = r.grant(10, None, t(0));
        let huge = Posting {
            account: LedgerAccount::Lot(lot),
            amount: Amount::from_micros(i64::MAX),
        };
        let mut tx = r.journal[0].clone();
        tx.id = TxId(99);
        tx.postings = vec![huge, huge];
        r.journal.push(tx);
        assert_eq!(r.at(t(0)).unwrap_err(), Reject::Overflow);
    }
}
