//! Unit tests for every rule of the book, including the scenarios the ledger promises.

use super::*;
use crate::{AccountId, Counters, NewAccount, audit_account};

const DAY: i64 = 86_400;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + secs)
}

fn c(credits: i64) -> Amount {
    Amount::credits(credits)
}

/// A book with its journal, its id counters and a settable clock.
struct Fixture {
    book: Book,
    ids: Counters,
    journal: Vec<Transaction>,
    holds_seen: Vec<Hold>,
    lots_seen: Vec<Lot>,
    now: Timestamp,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_overdraft(0)
    }

    fn with_overdraft(credits: i64) -> Fixture {
        let account = NewAccount::new(
            AccountId::parse("acme").unwrap(),
            None,
            Metadata::empty(),
            c(credits),
        )
        .unwrap()
        .open(t(0));
        Fixture {
            book: Book::new(account, Vec::new(), Vec::new()).unwrap(),
            ids: Counters::default(),
            journal: Vec::new(),
            holds_seen: Vec::new(),
            lots_seen: Vec::new(),
            now: t(0),
        }
    }

    fn grant_with(&mut self, grant: NewGrant) -> Result<LotId, Reject> {
        self.book
            .grant(grant, self.now, &mut self.ids, &mut self.journal)
    }

    fn grant(&mut self, credits: i64, priority: u8, expires_in: Option<i64>) -> LotId {
        self.grant_with(NewGrant {
            amount: c(credits),
            source: Source::Admin,
            priority: Some(priority),
            effective_at: None,
            expires_at: expires_in.map(|s| self.now.plus_secs(s)),
            metadata: Metadata::empty(),
            external_id: None,
            actor: None,
            reason: None,
        })
        .unwrap()
    }

    fn consume(&mut self, credits: i64) -> Result<TxId, Reject> {
        self.book.consume(
            Usage::of(c(credits)),
            self.now,
            &mut self.ids,
            &mut self.journal,
        )
    }

    fn hold(&mut self, credits: i64, ttl: i64) -> Result<HoldId, Reject> {
        self.book.place_hold(
            c(credits),
            HoldTtl::from_secs(ttl).unwrap(),
            Metadata::empty(),
            self.now,
            &mut self.ids,
            &mut self.journal,
        )
    }

    fn commit(&mut self, hold: HoldId, credits: i64) -> Result<TxId, Reject> {
        self.book.commit(
            hold,
            c(credits),
            Metadata::empty(),
            self.now,
            &mut self.ids,
            &mut self.journal,
        )
    }

    fn release(&mut self, hold: HoldId) -> Result<TxId, Reject> {
        self.book.release(
            hold,
            Metadata::empty(),
            self.now,
            &mut self.ids,
            &mut self.journal,
        )
    }

    fn void(&mut self, lot: LotId) -> Result<TxId, Reject> {
        self.book.void(
            lot,
            Metadata::empty(),
            self.now,
            &mut self.ids,
            &mut self.journal,
        )
    }

    fn refund(&mut self, tx: TxId, credits: Option<i64>) -> Result<RefundDone, Reject> {
        let original = self.tx(tx).clone();
        let already = self.refunded(tx);
        self.book.refund(
            &original,
            already,
            credits.map(c),
            Metadata::empty(),
            self.now,
            &mut self.ids,
            &mut self.journal,
        )
    }

    fn settle(&mut self) {
        self.book
            .settle(self.now, &mut self.ids, &mut self.journal)
            .unwrap();
    }

    fn tx(&self, id: TxId) -> &Transaction {
        self.journal.iter().find(|tx| tx.id == id).unwrap()
    }

    fn refunded(&self, id: TxId) -> Amount {
        self.journal
            .iter()
            .filter(|tx| tx.refund_of == Some(id))
            .map(|tx| neg(tx.posted_to(LedgerAccount::Usage).unwrap()))
            .fold(Amount::ZERO, |a, b| a.checked_add(b).unwrap())
    }

    fn remaining(&self, lot: LotId) -> Amount {
        self.book.lot(lot).unwrap().remaining
    }

    fn balance(&self) -> Balance {
        self.book.balance(self.now)
    }

    fn available(&self) -> Amount {
        self.balance().available
    }

    fn advance(&mut self, secs: i64) {
        self.now = self.now.plus_secs(secs);
    }

    /// Runs the audit over everything the book ever held.
    fn audit(&mut self) -> Vec<crate::Violation> {
        for lot in self.book.lots() {
            self.lots_seen.retain(|l| l.id != lot.id);
            self.lots_seen.push(lot.clone());
        }
        for hold in self.book.holds() {
            self.holds_seen.retain(|h| h.id != hold.id);
            self.holds_seen.push(hold.clone());
        }
        audit_account(
            &self.book.account,
            &self.lots_seen,
            &self.holds_seen,
            &self.journal,
        )
    }
}

// The scenarios the ledger promises.

#[test]
fn lower_priority_number_burns_first() {
    let mut f = Fixture::new();
    let a = f.grant(100, 1, None);
    let b = f.grant(100, 2, None);
    f.consume(120).unwrap();
    assert_eq!(f.remaining(a), c(0));
    assert_eq!(f.remaining(b), c(80));
    assert!(f.audit().is_empty());
}

#[test]
fn at_equal_priority_the_earlier_expiry_burns_first() {
    let mut f = Fixture::new();
    let b = f.grant(100, 5, Some(100 * 365 * DAY));
    let a = f.grant(100, 5, Some(30 * DAY));
    f.consume(120).unwrap();
    assert_eq!(f.remaining(a), c(0));
    assert_eq!(f.remaining(b), c(80));
}

#[test]
fn at_equal_priority_and_expiry_the_oldest_grant_burns_first() {
    let mut f = Fixture::new();
    let old = f.grant(10, 5, None);
    let new = f.grant(10, 5, None);
    f.consume(15).unwrap();
    assert_eq!(f.remaining(old), c(0));
    assert_eq!(f.remaining(new), c(5));
}

#[test]
fn lot_without_expiry_burns_after_lots_that_expire() {
    let mut f = Fixture::new();
    let forever = f.grant(10, 5, None);
    let soon = f.grant(10, 5, Some(DAY));
    f.consume(5).unwrap();
    assert_eq!(f.remaining(forever), c(10));
    assert_eq!(f.remaining(soon), c(5));
}

#[test]
fn future_grant_is_not_spendable_until_it_takes_effect() {
    let mut f = Fixture::new();
    let lot = f
        .grant_with(NewGrant {
            amount: c(100),
            source: Source::Subscription,
            priority: None,
            effective_at: Some(f.now.plus_secs(DAY)),
            expires_at: None,
            metadata: Metadata::empty(),
            external_id: None,
            actor: None,
            reason: None,
        })
        .unwrap();
    assert_eq!(f.available(), c(0));
    assert_eq!(
        f.consume(1),
        Err(Reject::InsufficientCredits {
            required: c(1),
            available: c(0)
        })
    );
    f.advance(DAY);
    assert_eq!(f.available(), c(100));
    f.consume(1).unwrap();
    assert_eq!(f.remaining(lot), c(99));
}

#[test]
fn void_after_spending_then_overdraft_then_grant_repays_debt() {
    // Without an overdraft limit, the voided credits are simply gone.
    let mut f = Fixture::new();
    let lot = f.grant(100, 50, None);
    f.consume(50).unwrap();
    f.void(lot).unwrap();
    assert_eq!(f.remaining(lot), c(0));
    assert!(matches!(
        f.consume(50),
        Err(Reject::InsufficientCredits { .. })
    ));
    assert!(f.audit().is_empty());

    // With an overdraft limit of 50, the same consume runs into debt.
    let mut f = Fixture::with_overdraft(50);
    let lot = f.grant(100, 50, None);
    f.consume(50).unwrap();
    f.void(lot).unwrap();
    f.consume(50).unwrap();
    assert_eq!(f.balance().debt, c(50));
    assert_eq!(f.available(), c(-50));
    f.grant(100, 50, None);
    assert_eq!(f.balance().debt, c(0));
    assert_eq!(f.available(), c(50));
    assert!(f.audit().is_empty());
}

// Consume.

#[test]
fn one_consume_draws_on_several_lots_and_records_each_share() {
    let mut f = Fixture::new();
    let a = f.grant(30, 1, None);
    let b = f.grant(30, 2, None);
    let tx = f.consume(50).unwrap();
    let tx = f.tx(tx).clone();
    assert_eq!(
        tx.sources,
        vec![
            Share {
                origin: Origin::Lot(a),
                amount: c(30)
            },
            Share {
                origin: Origin::Lot(b),
                amount: c(20)
            },
        ]
    );
    assert_eq!(tx.amount, c(-50));
    assert_eq!(tx.balance_after, c(10));
    assert_eq!(tx.imbalance(), Some(Amount::ZERO));
    assert_eq!(tx.posted_to(LedgerAccount::Usage), Some(c(50)));
}

#[test]
fn consume_beyond_available_is_rejected_and_changes_nothing() {
    let mut f = Fixture::new();
    let lot = f.grant(10, 1, None);
    let journal_len = f.journal.len();
    assert_eq!(
        f.consume(11),
        Err(Reject::InsufficientCredits {
            required: c(11),
            available: c(10)
        })
    );
    assert_eq!(f.remaining(lot), c(10));
    assert_eq!(f.journal.len(), journal_len);
}

#[test]
fn zero_or_negative_consume_is_an_invalid_amount() {
    let mut f = Fixture::new();
    f.grant(10, 1, None);
    assert!(matches!(f.consume(0), Err(Reject::InvalidAmount(_))));
    assert!(matches!(f.consume(-1), Err(Reject::InvalidAmount(_))));
}

#[test]
fn overdraft_limit_is_the_exact_floor() {
    let mut f = Fixture::with_overdraft(20);
    f.grant(10, 1, None);
    assert!(matches!(
        f.consume(31),
        Err(Reject::InsufficientCredits { .. })
    ));
    let tx = f.consume(30).unwrap();
    assert_eq!(f.available(), c(-20));
    assert_eq!(f.balance().debt, c(20));
    let sources = &f.tx(tx).sources;
    assert_eq!(sources.last().unwrap().origin, Origin::Debt);
    assert!(matches!(
        f.consume(1),
        Err(Reject::InsufficientCredits { .. })
    ));
}

#[test]
fn check_answers_without_changing_anything() {
    let mut f = Fixture::with_overdraft(5);
    f.grant(10, 1, None);
    let before = f.book.clone();
    let yes = f.book.check(c(15), f.now).unwrap();
    let no = f.book.check(c(16), f.now).unwrap();
    assert!(yes.allowed);
    assert!(!no.allowed);
    assert_eq!(no.available, c(10));
    assert_eq!(no.required, c(16));
    assert_eq!(f.book, before);
}

// Expiry.

#[test]
fn expired_lot_is_not_spent() {
    let mut f = Fixture::new();
    let daily = f.grant(10, 1, Some(DAY));
    let permanent = f.grant(10, 2, None);
    f.advance(DAY);
    f.consume(5).unwrap();
    assert_eq!(f.remaining(permanent), c(5));
    assert_eq!(f.remaining(daily), c(0));
    let expiry = f
        .journal
        .iter()
        .find(|tx| tx.kind == TxKind::Expire)
        .unwrap();
    assert_eq!(expiry.lot, Some(daily));
    assert_eq!(expiry.posted_to(LedgerAccount::Expiry), Some(c(10)));
    assert!(f.audit().is_empty());
}

#[test]
fn expired_lot_stops_counting_before_its_expiry_is_written() {
    let mut f = Fixture::new();
    f.grant(10, 1, Some(60));
    f.advance(59);
    assert_eq!(f.available(), c(10));
    f.advance(1);
    assert_eq!(f.available(), c(0));
    assert!(!f.book.is_settled_at(f.now));
    // Only reading: nothing was written.
    assert!(f.journal.iter().all(|tx| tx.kind != TxKind::Expire));
}

#[test]
fn a_read_settlement_adds_to_the_totals_what_it_expires_so_they_agree_with_the_balance() {
    let mut f = Fixture::new();
    f.grant(10, 1, Some(60));
    f.grant(5, 2, None);
    f.hold(3, 30).unwrap();
    f.advance(60);
    let lots = f.book.lots().to_vec();
    let mut totals = crate::totals(&lots, &f.journal).unwrap();
    assert_eq!(totals.expired, c(0));
    let (settled, pending) = f.book.settlement(f.now);
    totals.add_settlement(&pending).unwrap();
    let balance = settled.balance(f.now);
    // The hold ran out and went back to its lot, which then expired.
    assert_eq!((balance.available, balance.held), (c(5), c(0)));
    assert_eq!(totals.expired, c(10));
    let granted: i64 = totals.granted.iter().map(|(_, a)| a.micros()).sum();
    assert_eq!(Amount::from_micros(granted), c(15));
    // Nothing was written.
    assert!(f.journal.iter().all(|tx| tx.kind != TxKind::Expire));
}

#[test]
fn a_settlement_that_grants_is_refused_by_the_totals() {
    let mut f = Fixture::new();
    f.grant(10, 1, None);
    let grants = f.journal.clone();
    assert!(crate::Totals::default().add_settlement(&grants).is_err());
}

#[test]
fn grant_that_expires_before_it_takes_effect_or_in_the_past_is_rejected() {
    let mut f = Fixture::new();
    let mut grant = NewGrant {
        amount: c(1),
        source: Source::Promo,
        priority: None,
        effective_at: Some(f.now.plus_secs(100)),
        expires_at: Some(f.now.plus_secs(100)),
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    };
    assert!(matches!(
        f.grant_with(grant.clone()),
        Err(Reject::InvalidTimestamp(_))
    ));
    grant.effective_at = None;
    grant.expires_at = Some(f.now);
    assert!(matches!(
        f.grant_with(grant),
        Err(Reject::InvalidTimestamp(_))
    ));
}

#[test]
fn grant_needs_a_positive_amount_and_a_priority_up_to_100() {
    let mut f = Fixture::new();
    let base = NewGrant {
        amount: c(1),
        source: Source::Promo,
        priority: None,
        effective_at: None,
        expires_at: None,
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    };
    let zero = NewGrant {
        amount: c(0),
        ..base.clone()
    };
    let high = NewGrant {
        priority: Some(101),
        ..base.clone()
    };
    assert!(matches!(f.grant_with(zero), Err(Reject::InvalidAmount(_))));
    assert!(matches!(f.grant_with(high), Err(Reject::InvalidRequest(_))));
    let lot = f.grant_with(base).unwrap();
    assert_eq!(
        f.book.lot(lot).unwrap().priority,
        Source::Promo.default_priority()
    );
}

#[test]
fn grant_beyond_the_account_cap_is_an_overflow() {
    let mut f = Fixture::new();
    let max = Amount::from_micros(crate::AMOUNT_MAX_MICROS);
    let grant = NewGrant {
        amount: max,
        source: Source::Admin,
        priority: None,
        effective_at: None,
        expires_at: None,
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    };
    f.grant_with(grant.clone()).unwrap();
    f.grant_with(grant.clone()).unwrap();
    assert_eq!(f.grant_with(grant), Err(Reject::Overflow));
}

// Holds.

#[test]
fn hold_reduces_available_and_escrows_its_credits() {
    let mut f = Fixture::new();
    let lot = f.grant(100, 1, None);
    let hold = f.hold(30, 60).unwrap();
    assert_eq!(
        f.balance(),
        Balance {
            available: c(70),
            held: c(30),
            debt: c(0)
        }
    );
    assert_eq!(f.remaining(lot), c(70));
    assert_eq!(f.book.hold(hold).unwrap().funded(), c(30));
    assert!(f.audit().is_empty());
}

#[test]
fn hold_larger_than_balance_is_rejected() {
    let mut f = Fixture::new();
    f.grant(10, 1, None);
    assert!(matches!(
        f.hold(11, 60),
        Err(Reject::InsufficientCredits { .. })
    ));
    assert_eq!(f.balance().held, c(0));
}

#[test]
fn commit_of_less_than_held_returns_the_rest() {
    let mut f = Fixture::new();
    let lot = f.grant(100, 1, None);
    let hold = f.hold(30, 60).unwrap();
    let tx = f.commit(hold, 12).unwrap();
    assert_eq!(f.remaining(lot), c(88));
    assert_eq!(f.balance().held, c(0));
    assert_eq!(f.tx(tx).amount, c(-12));
    assert_eq!(f.tx(tx).usage_amount(), Some(c(12)));
    assert_eq!(f.book.hold(hold).unwrap().status, HoldStatus::Committed);
    assert!(f.audit().is_empty());
}

#[test]
fn commit_of_more_than_held_charges_the_excess_then_debt() {
    let mut f = Fixture::new();
    f.grant(50, 1, None);
    let hold = f.hold(30, 60).unwrap();
    let tx = f.commit(hold, 70).unwrap();
    // 30 from escrow, 20 from the lot, 20 not covered: debt even without overdraft.
    assert_eq!(f.balance().debt, c(20));
    assert_eq!(f.available(), c(-20));
    let sources = &f.tx(tx).sources;
    assert_eq!(
        sources.last().unwrap(),
        &Share {
            origin: Origin::Debt,
            amount: c(20)
        }
    );
    assert!(f.audit().is_empty());
}

#[test]
fn hold_commits_or_releases_only_once() {
    let mut f = Fixture::new();
    f.grant(50, 1, None);
    let hold = f.hold(10, 60).unwrap();
    f.commit(hold, 10).unwrap();
    assert_eq!(
        f.commit(hold, 10),
        Err(Reject::HoldNotPending {
            status: HoldStatus::Committed
        })
    );
    assert_eq!(
        f.release(hold),
        Err(Reject::HoldNotPending {
            status: HoldStatus::Committed
        })
    );
    let other = f.hold(10, 60).unwrap();
    f.release(other).unwrap();
    assert_eq!(
        f.release(other),
        Err(Reject::HoldNotPending {
            status: HoldStatus::Released
        })
    );
    assert_eq!(f.available(), c(40));
}

#[test]
fn unknown_hold_is_not_found() {
    let mut f = Fixture::new();
    assert_eq!(f.release(HoldId(99)), Err(Reject::HoldNotFound));
    assert_eq!(f.commit(HoldId(99), 1), Err(Reject::HoldNotFound));
}

#[test]
fn hold_releases_itself_when_its_ttl_runs_out() {
    let mut f = Fixture::new();
    f.grant(100, 1, None);
    let hold = f.hold(40, 60).unwrap();
    f.advance(59);
    assert_eq!(f.available(), c(60));
    f.advance(1);
    // A read already sees it released.
    assert_eq!(f.available(), c(100));
    assert_eq!(
        f.book.hold(hold).unwrap().status_at(f.now),
        HoldStatus::Expired
    );
    f.settle();
    assert_eq!(f.book.hold(hold).unwrap().status, HoldStatus::Expired);
    assert_eq!(
        f.commit(hold, 1),
        Err(Reject::HoldNotPending {
            status: HoldStatus::Expired
        })
    );
    assert!(f.audit().is_empty());
}

#[test]
fn escrowed_credits_survive_their_lot_expiring() {
    let mut f = Fixture::new();
    let daily = f.grant(10, 1, Some(30));
    f.grant(100, 2, None);
    let hold = f.hold(10, 600).unwrap();
    f.advance(60);
    let tx = f.commit(hold, 10).unwrap();
    assert_eq!(
        f.tx(tx).sources,
        vec![Share {
            origin: Origin::Lot(daily),
            amount: c(10)
        }]
    );
    assert_eq!(f.available(), c(100));
}

#[test]
fn credits_released_into_an_expired_lot_expire_at_once() {
    let mut f = Fixture::new();
    let daily = f.grant(10, 1, Some(30));
    let hold = f.hold(10, 600).unwrap();
    f.advance(60);
    let tx = f.release(hold).unwrap();
    assert_eq!(f.remaining(daily), c(0));
    assert_eq!(f.tx(tx).posted_to(LedgerAccount::Expiry), Some(c(10)));
    assert_eq!(f.available(), c(0));
    assert!(f.audit().is_empty());
}

#[test]
fn overdraft_lets_a_hold_go_beyond_the_lots_unfunded() {
    let mut f = Fixture::with_overdraft(50);
    f.grant(100, 1, None);
    let hold = f.hold(120, 60).unwrap();
    assert_eq!(f.book.hold(hold).unwrap().unfunded(), c(20));
    assert_eq!(f.available(), c(-20));
    assert!(matches!(
        f.hold(31, 60),
        Err(Reject::InsufficientCredits { .. })
    ));
    f.consume(30).unwrap();
    assert_eq!(f.available(), c(-50));
    f.commit(hold, 120).unwrap();
    assert_eq!(f.balance().debt, c(50));
    assert_eq!(f.available(), c(-50));
    assert!(f.audit().is_empty());
}

#[test]
fn fifty_holds_of_ten_on_a_hundred_leave_exactly_ten_pending() {
    let mut f = Fixture::new();
    f.grant(100, 1, None);
    let placed = (0..50).filter(|_| f.hold(10, 60).is_ok()).count();
    assert_eq!(placed, 10);
    assert_eq!(f.available(), c(0));
    assert_eq!(f.balance().held, c(100));
}

// Void.

#[test]
fn void_removes_what_remains_and_keeps_what_was_spent() {
    let mut f = Fixture::new();
    let lot = f.grant(100, 1, None);
    let spent = f.consume(30).unwrap();
    let void = f.void(lot).unwrap();
    assert_eq!(f.tx(void).posted_to(LedgerAccount::Void), Some(c(70)));
    assert_eq!(f.tx(spent).usage_amount(), Some(c(30)));
    assert_eq!(f.void(lot), Err(Reject::GrantVoided));
    assert_eq!(f.void(LotId(404)), Err(Reject::GrantNotFound));
    assert!(f.audit().is_empty());
}

// Refund.

#[test]
fn refund_returns_credits_to_the_lots_they_came_from() {
    let mut f = Fixture::new();
    let a = f.grant(30, 1, None);
    let b = f.grant(30, 2, None);
    let tx = f.consume(50).unwrap();
    let done = f.refund(tx, None).unwrap();
    assert_eq!(done.refunded_total, c(50));
    assert_eq!(f.remaining(a), c(30));
    assert_eq!(f.remaining(b), c(30));
    assert_eq!(f.tx(done.tx).amount, c(50));
    assert!(f.audit().is_empty());
}

#[test]
fn partial_refund_returns_the_latest_share_first() {
    let mut f = Fixture::new();
    let a = f.grant(30, 1, None);
    let b = f.grant(30, 2, None);
    let tx = f.consume(50).unwrap();
    f.refund(tx, Some(25)).unwrap();
    assert_eq!(f.remaining(b), c(30));
    assert_eq!(f.remaining(a), c(5));
    let rest = f.refund(tx, None).unwrap();
    assert_eq!(rest.refunded_total, c(50));
    assert_eq!(f.remaining(a), c(30));
    assert_eq!(
        f.refund(tx, Some(1)),
        Err(Reject::RefundTooLarge { refundable: c(0) })
    );
}

#[test]
fn refund_larger_than_what_is_left_is_rejected() {
    let mut f = Fixture::new();
    f.grant(30, 1, None);
    let tx = f.consume(10).unwrap();
    f.refund(tx, Some(4)).unwrap();
    assert_eq!(
        f.refund(tx, Some(7)),
        Err(Reject::RefundTooLarge { refundable: c(6) })
    );
}

#[test]
fn refund_into_an_expired_lot_expires_again_at_once() {
    let mut f = Fixture::new();
    let daily = f.grant(10, 1, Some(60));
    let tx = f.consume(10).unwrap();
    f.advance(120);
    let done = f.refund(tx, None).unwrap();
    assert_eq!(f.remaining(daily), c(0));
    assert_eq!(f.tx(done.tx).posted_to(LedgerAccount::Expiry), Some(c(10)));
    assert_eq!(f.available(), c(0));
    assert!(f.audit().is_empty());
}

#[test]
fn refund_into_a_voided_lot_is_voided_again_at_once() {
    let mut f = Fixture::new();
    let lot = f.grant(10, 1, None);
    let tx = f.consume(4).unwrap();
    f.void(lot).unwrap();
    let done = f.refund(tx, None).unwrap();
    assert_eq!(f.tx(done.tx).posted_to(LedgerAccount::Void), Some(c(4)));
    assert_eq!(f.available(), c(0));
}

#[test]
fn refund_of_a_debt_share_reduces_the_debt() {
    let mut f = Fixture::with_overdraft(50);
    let tx = f.consume(20).unwrap();
    assert_eq!(f.balance().debt, c(20));
    f.refund(tx, Some(15)).unwrap();
    assert_eq!(f.balance().debt, c(5));
    assert!(f.audit().is_empty());
}

#[test]
fn refund_of_debt_already_repaid_comes_back_as_a_refund_lot() {
    let mut f = Fixture::with_overdraft(50);
    let tx = f.consume(20).unwrap();
    f.grant(100, 1, None);
    assert_eq!(f.available(), c(80));
    let done = f.refund(tx, None).unwrap();
    let lot = f.tx(done.tx).lot.unwrap();
    assert_eq!(f.book.lot(lot).unwrap().source, Source::Refund);
    assert_eq!(f.available(), c(100));
    assert!(f.audit().is_empty());
}

#[test]
fn refund_of_a_commit_returns_to_the_escrowed_lots() {
    let mut f = Fixture::new();
    let a = f.grant(10, 1, None);
    let b = f.grant(10, 2, None);
    let hold = f.hold(15, 60).unwrap();
    let tx = f.commit(hold, 15).unwrap();
    f.refund(tx, None).unwrap();
    assert_eq!(f.remaining(a), c(10));
    assert_eq!(f.remaining(b), c(10));
}

#[test]
fn only_usage_can_be_refunded() {
    let mut f = Fixture::new();
    f.grant(10, 1, None);
    let grant_tx = f.journal.last().unwrap().id;
    assert_eq!(f.refund(grant_tx, None), Err(Reject::NotRefundable));
}

// Debt.

#[test]
fn grant_repays_debt_before_it_can_be_spent() {
    let mut f = Fixture::with_overdraft(100);
    f.consume(60).unwrap();
    let lot = f.grant(50, 1, None);
    assert_eq!(f.remaining(lot), c(0));
    assert_eq!(f.balance().debt, c(10));
    let repayment = f.journal.last().unwrap();
    assert_eq!(repayment.kind, TxKind::DebtRepayment);
    assert_eq!(repayment.posted_to(LedgerAccount::Debt), Some(c(50)));
    assert!(f.audit().is_empty());
}

#[test]
fn future_grant_repays_debt_when_it_takes_effect() {
    let mut f = Fixture::with_overdraft(100);
    f.consume(30).unwrap();
    f.grant_with(NewGrant {
        amount: c(50),
        source: Source::Subscription,
        priority: None,
        effective_at: Some(f.now.plus_secs(DAY)),
        expires_at: None,
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    })
    .unwrap();
    assert_eq!(f.balance().debt, c(30));
    f.advance(DAY);
    assert_eq!(f.balance().debt, c(0));
    assert_eq!(f.available(), c(20));
    f.settle();
    assert_eq!(f.book.account.debt, c(0));
    assert!(f.audit().is_empty());
}

#[test]
fn every_transaction_sums_to_zero_and_amounts_match_balances() {
    let mut f = Fixture::with_overdraft(10);
    let lot = f.grant(100, 1, Some(DAY));
    f.grant(50, 2, None);
    let spent = f.consume(70).unwrap();
    let hold = f.hold(50, 60).unwrap();
    f.commit(hold, 60).unwrap();
    f.refund(spent, Some(5)).unwrap();
    f.void(lot).unwrap();
    f.advance(DAY);
    f.settle();
    for tx in &f.journal {
        assert_eq!(tx.imbalance(), Some(Amount::ZERO), "{tx:?}");
    }
    let net = Amount::checked_sum(f.journal.iter().map(|tx| tx.amount)).unwrap();
    let balance = f.balance();
    assert_eq!(net, balance.available.checked_add(balance.held).unwrap());
    assert!(f.audit().is_empty());
}

#[test]
fn refund_beyond_the_account_cap_is_an_overflow() {
    let mut f = Fixture::new();
    let max = Amount::from_micros(crate::AMOUNT_MAX_MICROS);
    let grant = NewGrant {
        amount: max,
        source: Source::Admin,
        priority: None,
        effective_at: None,
        expires_at: None,
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    };
    f.grant_with(grant.clone()).unwrap();
    let spent = f
        .book
        .consume(Usage::of(max), f.now, &mut f.ids, &mut f.journal)
        .unwrap();
    f.grant_with(grant.clone()).unwrap();
    f.grant_with(grant).unwrap();
    let before = f.book.clone();
    assert_eq!(f.refund(spent, None), Err(Reject::Overflow));
    assert_eq!(f.book, before);
}

#[test]
fn compacting_keeps_a_lot_that_a_pending_hold_escrowed_in_full() {
    let mut f = Fixture::new();
    let lot = f.grant(10, 1, None);
    let hold = f.hold(10, 60).unwrap();
    assert_eq!(f.remaining(lot), c(0));
    f.book.compact(f.now);
    assert!(f.book.lot(lot).is_some());
    f.release(hold).unwrap();
    assert_eq!(f.remaining(lot), c(10));
    f.book.compact(f.now);
    assert!(f.book.holds().is_empty());
}

#[test]
fn a_standing_ends_where_a_lot_expires_or_takes_effect() {
    let mut f = Fixture::new();
    f.grant(10, 10, Some(100));
    f.grant_with(NewGrant {
        amount: c(5),
        source: Source::Subscription,
        priority: None,
        effective_at: Some(f.now.plus_secs(50)),
        expires_at: None,
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    })
    .unwrap();
    let standing = f.book.standing(f.now);
    assert_eq!((standing.from, standing.until), (t(0), t(50)));
    let answer = standing.check(c(10), t(49)).unwrap().unwrap();
    assert!(answer.allowed);
    assert_eq!(answer.available, c(10));
    assert!(!standing.check(c(11), t(49)).unwrap().unwrap().allowed);
    // At 50 the future lot is spendable: the standing no longer answers.
    assert_eq!(standing.check(c(11), t(50)), None);
    assert!(f.book.check(c(11), t(50)).unwrap().allowed);

    let later = f.book.standing(t(60));
    assert_eq!((later.from, later.until), (t(50), t(100)));
    assert_eq!(later.available, c(15));
    // At 100 the first lot expires.
    assert_eq!(later.check(c(1), t(100)), None);
    assert_eq!(f.book.check(c(1), t(100)).unwrap().available, c(5));
}

#[test]
fn a_standing_ends_where_a_hold_expires() {
    let mut f = Fixture::new();
    f.grant(10, 10, None);
    f.hold(4, 30).unwrap();
    let standing = f.book.standing(f.now);
    assert_eq!(standing.until, t(30));
    assert_eq!(standing.available, c(6));
    assert_eq!(standing.check(c(6), t(29)), Some(f.book.check(c(6), t(29))));
    assert_eq!(standing.check(c(6), t(30)), None);
    assert_eq!(f.book.check(c(10), t(30)).unwrap().available, c(10));
}

#[test]
fn a_standing_with_nothing_ahead_answers_until_the_end_of_time() {
    let mut f = Fixture::with_overdraft(3);
    f.grant(2, 10, None);
    let standing = f.book.standing(f.now);
    assert_eq!(standing.until, Timestamp::from_micros(i64::MAX));
    let answer = standing.check(c(5), t(10 * DAY)).unwrap().unwrap();
    assert!(answer.allowed);
    assert!(!standing.check(c(6), t(10 * DAY)).unwrap().unwrap().allowed);
    assert!(matches!(
        standing.check(c(-1), f.now),
        Some(Err(Reject::InvalidAmount(_)))
    ));
    // Zero, a free feature's use, is always allowed.
    assert!(standing.check(c(0), f.now).unwrap().unwrap().allowed);
}

fn sourced(amount: i64, source: Source, expires_at: Option<Timestamp>) -> NewGrant {
    NewGrant {
        amount: c(amount),
        source,
        priority: None,
        effective_at: None,
        expires_at,
        metadata: Metadata::empty(),
        external_id: None,
        reason: None,
        actor: None,
    }
}

impl Fixture {
    fn renew(&mut self, renewal: Renewal) -> Result<Renewed, Reject> {
        self.book
            .renew(renewal, self.now, &mut self.ids, &mut self.journal)
    }
}

#[test]
fn by_default_daily_rewards_burn_first_then_the_soonest_expiry_then_what_never_expires_then_purchases()
 {
    let mut f = Fixture::new();
    let admin = f.grant_with(sourced(10, Source::Admin, None)).unwrap();
    let purchase = f
        .grant_with(sourced(10, Source::Purchase, Some(t(90 * DAY))))
        .unwrap();
    let bonus = f
        .grant_with(sourced(10, Source::SignupBonus, Some(t(30 * DAY))))
        .unwrap();
    let plan = f
        .grant_with(sourced(10, Source::Subscription, Some(t(5 * DAY))))
        .unwrap();
    let daily = f
        .grant_with(sourced(10, Source::DailyReward, Some(t(DAY))))
        .unwrap();
    let order: Vec<LotId> = f.book.lots().iter().map(|l| l.id).collect();
    // The purchase, though it expires, burns after the admin credits that
    // never do: it is the customer's own money.
    assert_eq!(order, vec![daily, plan, bonus, admin, purchase]);
    f.consume(25).unwrap();
    assert_eq!(f.remaining(daily), c(0));
    assert_eq!(f.remaining(plan), c(0));
    assert_eq!(f.remaining(bonus), c(5));
    assert_eq!(f.remaining(admin), c(10));
    f.consume(10).unwrap();
    assert_eq!(f.remaining(admin), c(5));
    assert_eq!(f.remaining(purchase), c(10));
}

#[test]
fn a_reset_renewal_expires_what_is_left_of_the_plan_and_leaves_other_credits_alone() {
    let mut f = Fixture::new();
    let period = f
        .grant_with(sourced(100, Source::Subscription, None))
        .unwrap();
    // Granted later, so the plan's credits burn first.
    let purchase = f.grant_with(sourced(7, Source::Purchase, None)).unwrap();
    f.consume(30).unwrap();
    f.advance(30 * DAY);
    let mut next = sourced(100, Source::Subscription, None);
    next.effective_at = Some(f.now);
    let renewed = f
        .renew(Renewal {
            close: true,
            carry: Carry::Reset,
            settle_debt: None,
            overdraft_limit: None,
            grant: Some(next),
        })
        .unwrap();
    assert_eq!(renewed.expired, c(70));
    assert_eq!(renewed.carried, c(0));
    assert_eq!(f.remaining(period), c(0));
    assert_eq!(f.remaining(purchase), c(7));
    assert_eq!(f.remaining(renewed.lot.unwrap()), c(100));
    assert_eq!(f.available(), c(107));
    assert!(f.audit().is_empty());
}

#[test]
fn a_rollover_renewal_carries_up_to_the_cap_and_the_rest_expires() {
    let mut f = Fixture::new();
    f.grant_with(sourced(100, Source::Subscription, None))
        .unwrap();
    let purchase = f.grant_with(sourced(5, Source::Purchase, None)).unwrap();
    f.consume(40).unwrap();
    let renew = |f: &mut Fixture| {
        f.renew(Renewal {
            close: true,
            carry: Carry::Rollover { cap: c(80) },
            settle_debt: None,
            overdraft_limit: None,
            grant: Some(sourced(100, Source::Subscription, None)),
        })
        .unwrap()
    };
    // 60 left, all carried.
    f.advance(30 * DAY);
    let second = renew(&mut f);
    assert_eq!((second.carried, second.expired), (c(60), c(0)));
    // Nothing spent: 100 left, 20 more fit under the cap of 80.
    f.advance(30 * DAY);
    let third = renew(&mut f);
    assert_eq!((third.carried, third.expired), (c(20), c(80)));
    let rollover: i64 = f
        .book
        .lots()
        .iter()
        .filter(|l| l.source == Source::Rollover)
        .map(|l| l.remaining.micros())
        .sum();
    assert_eq!(rollover, c(80).micros());
    assert_eq!(f.remaining(purchase), c(5));
    assert_eq!(f.available(), c(185));
    assert!(f.audit().is_empty());
}

#[test]
fn settling_debt_clears_it_to_the_receivable_so_the_next_period_starts_full() {
    let mut f = Fixture::with_overdraft(1_000);
    f.grant_with(sourced(100, Source::Subscription, None))
        .unwrap();
    f.consume(150).unwrap();
    assert_eq!(f.book.account.debt, c(50));
    f.advance(30 * DAY);
    let renewed = f
        .renew(Renewal {
            close: true,
            carry: Carry::Reset,
            settle_debt: Some(c(50)),
            overdraft_limit: None,
            grant: Some(sourced(100, Source::Subscription, None)),
        })
        .unwrap();
    assert_eq!(renewed.settled, c(50));
    assert_eq!(f.book.account.debt, c(0));
    assert_eq!(f.available(), c(100));
    let settlement = f
        .journal
        .iter()
        .find(|tx| tx.kind == TxKind::DebtSettlement)
        .unwrap();
    assert_eq!(
        settlement.posted_to(LedgerAccount::Receivable),
        Some(c(-50))
    );
    assert_eq!(settlement.amount, c(50));
    assert!(f.audit().is_empty());
    // With no debt, settling writes nothing.
    let before = f.journal.len();
    assert_eq!(
        f.book
            .settle_debt(f.now, &mut f.ids, &mut f.journal)
            .unwrap(),
        c(0)
    );
    assert_eq!(f.journal.len(), before);
}

#[test]
fn a_renewal_catching_up_grants_a_period_already_over_and_expires_it_at_once() {
    let mut f = Fixture::new();
    f.advance(90 * DAY);
    let mut past = sourced(100, Source::Subscription, Some(t(60 * DAY)));
    past.effective_at = Some(t(30 * DAY));
    let renewed = f
        .renew(Renewal {
            close: false,
            carry: Carry::Reset,
            settle_debt: None,
            overdraft_limit: None,
            grant: Some(past),
        })
        .unwrap();
    let lot = renewed.lot.unwrap();
    assert_eq!(f.remaining(lot), c(0));
    assert_eq!(f.available(), c(0));
    let kinds: Vec<TxKind> = f.journal.iter().map(|tx| tx.kind).collect();
    assert_eq!(kinds, vec![TxKind::Grant, TxKind::Expire]);
    assert!(f.audit().is_empty());
}

#[test]
fn a_renewal_that_cannot_be_applied_changes_nothing() {
    let mut f = Fixture::new();
    f.grant_with(sourced(100, Source::Subscription, None))
        .unwrap();
    let before = f.book.clone();
    let journal = f.journal.len();
    let mut bad = sourced(100, Source::Subscription, Some(t(DAY)));
    bad.effective_at = Some(t(2 * DAY));
    assert!(matches!(
        f.renew(Renewal {
            close: true,
            carry: Carry::Reset,
            settle_debt: None,
            overdraft_limit: None,
            grant: Some(bad),
        }),
        Err(Reject::InvalidTimestamp(_))
    ));
    assert!(matches!(
        f.renew(Renewal {
            close: true,
            carry: Carry::Rollover { cap: c(-1) },
            settle_debt: None,
            overdraft_limit: None,
            grant: None,
        }),
        Err(Reject::InvalidAmount(_))
    ));
    assert_eq!(f.book, before);
    assert_eq!(f.journal.len(), journal);
}

#[test]
fn lifetime_totals_add_up_what_the_journal_did() {
    let mut f = Fixture::with_overdraft(100);
    f.grant_with(sourced(50, Source::Purchase, None)).unwrap();
    let bonus = f
        .grant_with(sourced(20, Source::SignupBonus, Some(t(DAY))))
        .unwrap();
    f.grant_with(sourced(5, Source::Purchase, None)).unwrap();
    let spent = f.consume(30).unwrap();
    f.refund(spent, Some(4)).unwrap();
    f.advance(2 * DAY);
    f.consume(60).unwrap();
    f.book
        .settle_debt(f.now, &mut f.ids, &mut f.journal)
        .unwrap();
    f.audit();
    let totals = crate::totals(&f.lots_seen, &f.journal).unwrap();
    assert_eq!(
        totals.granted,
        vec![(Source::SignupBonus, c(20)), (Source::Purchase, c(55))]
    );
    assert_eq!(totals.spent, c(90));
    assert_eq!(totals.refunded, c(4));
    // The bonus had 0 left when it expired (it burnt first), so nothing expired.
    assert_eq!(f.remaining(bonus), c(0));
    assert_eq!(totals.expired, c(0));
    assert_eq!(totals.voided, c(0));
    // 55 + 20 - 90 + 4 = -11: eleven credits of debt, settled.
    assert_eq!(totals.settled, c(11));
}

// Claw-backs.

impl Fixture {
    fn claw_back(&mut self, lot: LotId, credits: i64) -> Result<TxId, Reject> {
        self.book.claw_back(
            lot,
            c(credits),
            Metadata::empty(),
            None,
            self.now,
            &mut self.ids,
            &mut self.journal,
        )
    }
}

#[test]
fn a_claw_back_takes_from_the_grants_own_lot_before_any_other() {
    let mut f = Fixture::new();
    let first = f.grant(100, 1, None);
    let purchase = f.grant(100, 2, None);
    let external = ExternalId::parse("refund:re_1").unwrap();
    let tx = f
        .book
        .claw_back(
            purchase,
            c(30),
            Metadata::empty(),
            Some(external.clone()),
            f.now,
            &mut f.ids,
            &mut f.journal,
        )
        .unwrap();
    // The lot that burns first is left alone.
    assert_eq!(f.remaining(first), c(100));
    assert_eq!(f.remaining(purchase), c(70));
    let tx = f.tx(tx).clone();
    assert_eq!(tx.kind, TxKind::ClawBack);
    assert_eq!(tx.kind.code(), "claw_back");
    assert_eq!(tx.lot, Some(purchase));
    assert_eq!(tx.external_id, Some(external));
    assert_eq!(
        tx.postings,
        vec![
            posting(LedgerAccount::Lot(purchase), c(-30)),
            posting(LedgerAccount::Void, c(30)),
        ]
    );
    assert_eq!(
        tx.sources,
        vec![Share {
            origin: Origin::Lot(purchase),
            amount: c(30)
        }]
    );
    assert_eq!((tx.amount, tx.balance_after), (c(-30), c(170)));
    assert_eq!(f.balance().debt, c(0));
    assert!(f.audit().is_empty());
}

#[test]
fn a_claw_back_of_a_partly_spent_lot_takes_the_rest_from_other_lots_in_burn_down_order() {
    let mut f = Fixture::new();
    let purchase = f.grant(100, 1, None);
    let later = f.grant(50, 5, None);
    let earlier = f.grant(50, 3, None);
    f.consume(80).unwrap();
    assert_eq!(f.remaining(purchase), c(20));
    let tx = f.claw_back(purchase, 100).unwrap();
    assert_eq!(f.remaining(purchase), c(0));
    assert_eq!(f.remaining(earlier), c(0));
    assert_eq!(f.remaining(later), c(20));
    let share = |lot, credits| Share {
        origin: Origin::Lot(lot),
        amount: c(credits),
    };
    assert_eq!(
        f.tx(tx).sources,
        vec![share(purchase, 20), share(earlier, 50), share(later, 30)]
    );
    assert_eq!(f.tx(tx).posted_to(LedgerAccount::Void), Some(c(100)));
    assert_eq!(f.balance().debt, c(0));
    assert_eq!(f.available(), c(20));
    assert!(f.audit().is_empty());
}

#[test]
fn a_claw_back_of_spent_credits_runs_into_debt_beyond_a_zero_overdraft_limit() {
    let mut f = Fixture::new();
    let purchase = f.grant(100, 1, None);
    f.consume(100).unwrap();
    let tx = f.claw_back(purchase, 60).unwrap();
    let tx = f.tx(tx).clone();
    assert_eq!(
        tx.sources,
        vec![Share {
            origin: Origin::Debt,
            amount: c(60)
        }]
    );
    assert_eq!(tx.posted_to(LedgerAccount::Debt), Some(c(-60)));
    assert_eq!(tx.posted_to(LedgerAccount::Void), Some(c(60)));
    assert_eq!((tx.amount, tx.balance_after), (c(-60), c(-60)));
    assert_eq!(
        f.balance(),
        Balance {
            available: c(-60),
            held: c(0),
            debt: c(60)
        }
    );
    // The overdraft limit of zero still holds for spending.
    assert!(matches!(
        f.consume(1),
        Err(Reject::InsufficientCredits { .. })
    ));
    assert!(f.audit().is_empty());

    // A later grant repays the debt first.
    let next = f.grant(100, 1, None);
    assert_eq!(f.journal.last().unwrap().kind, TxKind::DebtRepayment);
    assert_eq!(f.remaining(next), c(40));
    assert_eq!(f.balance().debt, c(0));
    assert_eq!(f.available(), c(40));
    assert!(f.audit().is_empty());
}

#[test]
fn a_claw_back_leaves_a_holds_escrow_alone() {
    let mut f = Fixture::new();
    let purchase = f.grant(50, 1, None);
    let other = f.grant(50, 2, None);
    let hold = f.hold(60, 60).unwrap();
    assert_eq!((f.remaining(purchase), f.remaining(other)), (c(0), c(40)));
    f.claw_back(purchase, 50).unwrap();
    assert_eq!(f.remaining(other), c(0));
    assert_eq!(f.book.hold(hold).unwrap().funded(), c(60));
    assert_eq!(
        f.balance(),
        Balance {
            available: c(-10),
            held: c(60),
            debt: c(10)
        }
    );
    // Released, the escrow goes back to its lots and repays the debt.
    f.release(hold).unwrap();
    f.settle();
    assert_eq!(f.balance().debt, c(0));
    assert_eq!(f.available(), c(50));
    assert!(f.audit().is_empty());
}

#[test]
fn a_claw_back_of_a_voided_lot_takes_everything_from_elsewhere() {
    let mut f = Fixture::new();
    let purchase = f.grant(30, 1, None);
    let other = f.grant(100, 2, None);
    f.void(purchase).unwrap();
    let tx = f.claw_back(purchase, 30).unwrap();
    assert_eq!(f.remaining(other), c(70));
    assert_eq!(
        f.tx(tx).sources,
        vec![Share {
            origin: Origin::Lot(other),
            amount: c(30)
        }]
    );
    assert_eq!(f.tx(tx).lot, Some(purchase));
    assert!(f.audit().is_empty());
}

#[test]
fn a_claw_back_needs_a_positive_amount_and_a_known_lot() {
    let mut f = Fixture::new();
    let purchase = f.grant(10, 1, None);
    let before = f.book.clone();
    let journal = f.journal.len();
    assert!(matches!(
        f.claw_back(purchase, 0),
        Err(Reject::InvalidAmount(_))
    ));
    assert!(matches!(
        f.claw_back(purchase, -1),
        Err(Reject::InvalidAmount(_))
    ));
    assert_eq!(f.claw_back(LotId(99), 1), Err(Reject::GrantNotFound));
    assert_eq!(f.book, before);
    assert_eq!(f.journal.len(), journal);
}

#[test]
fn a_claw_back_beyond_the_account_cap_is_an_overflow() {
    let mut f = Fixture::new();
    let max = Amount::from_micros(crate::AMOUNT_MAX_MICROS);
    let lot = f.grant(1, 1, None);
    let claw_back = |f: &mut Fixture| {
        f.book.claw_back(
            lot,
            max,
            Metadata::empty(),
            None,
            f.now,
            &mut f.ids,
            &mut f.journal,
        )
    };
    claw_back(&mut f).unwrap();
    claw_back(&mut f).unwrap();
    let before = f.book.clone();
    assert_eq!(claw_back(&mut f), Err(Reject::Overflow));
    assert_eq!(f.book, before);
}

#[test]
fn the_balance_before_a_claw_back_is_rebuilt_unchanged_and_totals_count_it_as_voided() {
    let mut f = Fixture::new();
    let purchase = f.grant(100, 1, None);
    f.advance(10);
    f.consume(30).unwrap();
    f.advance(10);
    f.claw_back(purchase, 100).unwrap();
    assert!(f.audit().is_empty());
    let at = |f: &Fixture, secs: i64| {
        crate::book_at(
            f.book.account.clone(),
            f.lots_seen.clone(),
            f.holds_seen.clone(),
            &f.journal,
            t(secs),
        )
        .unwrap()
        .balance(t(secs))
    };
    let before = at(&f, 15);
    assert_eq!((before.available, before.debt), (c(70), c(0)));
    let after = at(&f, 20);
    assert_eq!((after.available, after.debt), (c(-30), c(30)));
    assert_eq!(after, f.balance());
    let totals = crate::totals(&f.lots_seen, &f.journal).unwrap();
    assert_eq!(
        (totals.spent, totals.voided, totals.expired),
        (c(30), c(100), c(0))
    );
}

#[test]
fn a_free_features_use_is_recorded_and_moves_nothing_even_in_debt() {
    let mut f = Fixture::with_overdraft(5);
    f.consume(5).unwrap();
    let before = f.book.balance(f.now);
    let mut usage = Usage::of(Amount::ZERO);
    usage.feature = Some((crate::FeatureId::parse("search").unwrap(), c(3)));
    let id = f
        .book
        .consume(usage, f.now, &mut f.ids, &mut f.journal)
        .unwrap();
    let tx = f.journal.iter().find(|tx| tx.id == id).unwrap();
    assert_eq!(tx.kind, TxKind::Consume);
    assert!(tx.postings.is_empty());
    assert_eq!(tx.amount, Amount::ZERO);
    assert_eq!(f.book.balance(f.now), before);
    // Without a feature, nothing is free.
    assert!(matches!(f.consume(0), Err(Reject::InvalidAmount(_))));
}
