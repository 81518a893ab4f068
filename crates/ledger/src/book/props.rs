//! Property tests: random operation sequences never break the ledger's laws.

use proptest::prelude::*;

use super::*;
use crate::{AccountId, Counters, NewAccount, audit_account};

#[derive(Clone, Debug)]
enum Step {
    Grant {
        micros: i64,
        priority: u8,
        source: usize,
        effective_in: Option<i64>,
        expires_in: Option<i64>,
    },
    Consume {
        micros: i64,
    },
    Hold {
        micros: i64,
        ttl: i64,
    },
    Commit {
        pick: usize,
        micros: i64,
    },
    Release {
        pick: usize,
    },
    Void {
        pick: usize,
    },
    ClawBack {
        pick: usize,
        micros: i64,
    },
    Refund {
        pick: usize,
        micros: Option<i64>,
    },
    Advance {
        secs: i64,
    },
    Renew {
        rollover_cap: Option<i64>,
        settle_debt: bool,
        micros: Option<i64>,
        expires_in: Option<i64>,
    },
    SettleDebt,
}

fn step() -> impl Strategy<Value = Step> {
    let micros = 1i64..200_000_000;
    prop_oneof![
        3 => (micros.clone(), 0u8..=100, 0usize..Source::ALL.len(),
              prop::option::of(1i64..3_000), prop::option::of(1i64..6_000))
            .prop_map(|(micros, priority, source, effective_in, expires_in)| Step::Grant {
                micros, priority, source, effective_in, expires_in,
            }),
        4 => micros.clone().prop_map(|micros| Step::Consume { micros }),
        2 => (micros.clone(), 1i64..4_000).prop_map(|(micros, ttl)| Step::Hold { micros, ttl }),
        2 => (any::<usize>(), 0i64..250_000_000).prop_map(|(pick, micros)| Step::Commit { pick, micros }),
        1 => any::<usize>().prop_map(|pick| Step::Release { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Void { pick }),
        2 => (any::<usize>(), micros.clone()).prop_map(|(pick, micros)| Step::ClawBack { pick, micros }),
        2 => (any::<usize>(), prop::option::of(micros.clone())).prop_map(|(pick, micros)| Step::Refund { pick, micros }),
        2 => (1i64..2_000).prop_map(|secs| Step::Advance { secs }),
        2 => (prop::option::of(0i64..300_000_000), any::<bool>(), prop::option::of(micros.clone()),
              prop::option::of(-3_000i64..3_000))
            .prop_map(|(rollover_cap, settle_debt, micros, expires_in)| Step::Renew {
                rollover_cap, settle_debt, micros, expires_in,
            }),
        1 => Just(Step::SettleDebt),
    ]
}

struct World {
    book: Book,
    ids: Counters,
    journal: Vec<Transaction>,
    now: Timestamp,
}

impl World {
    fn new(overdraft_micros: i64) -> World {
        let account = NewAccount::new(
            AccountId::parse("prop").unwrap(),
            None,
            Metadata::empty(),
            Amount::from_micros(overdraft_micros),
        )
        .unwrap()
        .open(Timestamp::from_secs(1_000));
        World {
            book: Book::new(account, Vec::new(), Vec::new()).unwrap(),
            ids: Counters::default(),
            journal: Vec::new(),
            now: Timestamp::from_secs(1_000),
        }
    }

    fn refunded(&self, id: TxId) -> Amount {
        let micros: i64 = self
            .journal
            .iter()
            .filter(|tx| tx.refund_of == Some(id))
            .map(|tx| -tx.posted_to(LedgerAccount::Usage).unwrap().micros())
            .sum();
        Amount::from_micros(micros)
    }

    fn apply(&mut self, step: &Step) -> Result<(), Reject> {
        let now = self.now;
        let (ids, out) = (&mut self.ids, &mut self.journal);
        match *step {
            Step::Grant {
                micros,
                priority,
                source,
                effective_in,
                expires_in,
            } => {
                let effective_at = effective_in.map(|s| now.plus_secs(s));
                let expires_at = expires_in.map(|s| effective_at.unwrap_or(now).plus_secs(s));
                self.book
                    .grant(
                        NewGrant {
                            amount: Amount::from_micros(micros),
                            source: Source::ALL[source],
                            priority: Some(priority),
                            effective_at,
                            expires_at,
                            metadata: Metadata::empty(),
                            external_id: None,
                            actor: None,
                            reason: None,
                        },
                        now,
                        ids,
                        out,
                    )
                    .map(drop)
            }
            Step::Consume { micros } => self
                .book
                .consume(Usage::of(Amount::from_micros(micros)), now, ids, out)
                .map(drop),
            Step::Hold { micros, ttl } => self
                .book
                .place_hold(
                    Amount::from_micros(micros),
                    HoldTtl::from_secs(ttl).unwrap(),
                    Metadata::empty(),
                    now,
                    ids,
                    out,
                )
                .map(drop),
            Step::Commit { pick, micros } => {
                let Some(hold) = pick_from(self.book.holds(), pick).map(|h| h.id) else {
                    return Ok(());
                };
                self.book
                    .commit(
                        hold,
                        Amount::from_micros(micros),
                        Metadata::empty(),
                        now,
                        ids,
                        out,
                    )
                    .map(drop)
            }
            Step::Release { pick } => {
                let Some(hold) = pick_from(self.book.holds(), pick).map(|h| h.id) else {
                    return Ok(());
                };
                self.book
                    .release(hold, Metadata::empty(), now, ids, out)
                    .map(drop)
            }
            Step::Void { pick } => {
                let Some(lot) = pick_from(self.book.lots(), pick).map(|l| l.id) else {
                    return Ok(());
                };
                self.book
                    .void(lot, Metadata::empty(), now, ids, out)
                    .map(drop)
            }
            Step::ClawBack { pick, micros } => {
                let Some(lot) = pick_from(self.book.lots(), pick).map(|l| l.id) else {
                    return Ok(());
                };
                self.book
                    .claw_back(
                        lot,
                        Amount::from_micros(micros),
                        Metadata::empty(),
                        None,
                        now,
                        ids,
                        out,
                    )
                    .map(drop)
            }
            Step::Refund { pick, micros } => {
                let usage: Vec<Transaction> = self
                    .journal
                    .iter()
                    .filter(|tx| tx.kind.is_usage())
                    .cloned()
                    .collect();
                let Some(original) = pick_from(&usage, pick) else {
                    return Ok(());
                };
                let already = self.refunded(original.id);
                self.book
                    .refund(
                        original,
                        already,
                        micros.map(Amount::from_micros),
                        Metadata::empty(),
                        now,
                        &mut self.ids,
                        &mut self.journal,
                    )
                    .map(drop)
            }
            Step::Advance { secs } => {
                self.now = self.now.plus_secs(secs);
                Ok(())
            }
            Step::Renew {
                rollover_cap,
                settle_debt,
                micros,
                expires_in,
            } => {
                // The plan's lots are this run's subscription lots; a grant
                // that expires in the past is a period a renewal catches up on.
                let close = true;
                let grant = micros.map(|micros| NewGrant {
                    amount: Amount::from_micros(micros),
                    source: Source::Subscription,
                    priority: None,
                    effective_at: Some(now.plus_secs(-4_000)),
                    expires_at: expires_in.map(|s| now.plus_secs(s)),
                    metadata: Metadata::empty(),
                    external_id: None,
                    reason: None,
                    actor: None,
                });
                let carry = match rollover_cap {
                    Some(cap) => Carry::Rollover {
                        cap: Amount::from_micros(cap),
                    },
                    None => Carry::Reset,
                };
                let settle_debt = settle_debt.then_some(self.book.account.debt);
                self.book
                    .renew(
                        Renewal {
                            close,
                            carry,
                            settle_debt,
                            grant,
                            overdraft_limit: None,
                        },
                        now,
                        ids,
                        out,
                    )
                    .map(drop)
            }
            Step::SettleDebt => self.book.settle_debt(now, ids, out).map(drop),
        }
    }
}

fn pick_from<T>(items: &[T], pick: usize) -> Option<&T> {
    (!items.is_empty()).then(|| &items[pick % items.len()])
}

fn sum_posted(journal: &[Transaction], kinds: &[TxKind], account: LedgerAccount) -> i128 {
    journal
        .iter()
        .filter(|tx| kinds.contains(&tx.kind))
        .flat_map(|tx| &tx.postings)
        .filter(|p| p.account == account)
        .map(|p| i128::from(p.amount.micros()))
        .sum()
}

/// The spendable lots with credits, in burn-down order, as (id, remaining).
fn spendable(book: &Book, now: Timestamp) -> Vec<(LotId, Amount)> {
    book.lots()
        .iter()
        .filter(|l| l.is_spendable_at(now) && l.remaining.is_positive())
        .map(|l| (l.id, l.remaining))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_operation_sequence_breaks_the_ledger(
        overdraft in prop_oneof![Just(0i64), 1i64..100_000_000],
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let mut world = World::new(overdraft);
        // The balance after the last step at each instant, for the replay below.
        let mut seen: Vec<(Timestamp, Balance)> = Vec::new();
        for step in &steps {
            let settled_before = world.book.settled(world.now);
            let journal_before = world.journal.len();
            let result = world.apply(step);
            let new_txs = &world.journal[journal_before..];

            // Every transaction sums to zero.
            for tx in new_txs {
                prop_assert_eq!(tx.imbalance(), Some(Amount::ZERO), "{:?}", tx);
            }
            // No lot is ever negative or above its amount.
            for lot in world.book.lots() {
                prop_assert!(!lot.remaining.is_negative(), "{:?}", lot);
                prop_assert!(lot.remaining <= lot.amount, "{:?}", lot);
            }
            prop_assert!(!world.book.account.debt.is_negative());

            match &result {
                // A rejected operation changes nothing beyond settling.
                Err(_) => prop_assert_eq!(&world.book, &settled_before),
                // A consume burns down in order: it empties each lot it draws
                // on but the last, in burn-down order, and only runs into debt
                // once every spendable lot is empty.
                Ok(()) if matches!(step, Step::Consume { .. }) => {
                    let tx = new_txs.last().unwrap();
                    prop_assert_eq!(tx.kind, TxKind::Consume);
                    let order = spendable(&settled_before, world.now);
                    let lots: Vec<(LotId, Amount)> = tx.sources.iter().filter_map(|s| match s.origin {
                        Origin::Lot(id) => Some((id, s.amount)),
                        Origin::Debt => None,
                    }).collect();
                    prop_assert!(lots.len() <= order.len());
                    for (i, (id, amount)) in lots.iter().enumerate() {
                        prop_assert_eq!(*id, order[i].0);
                        if i + 1 < lots.len() {
                            prop_assert_eq!(*amount, order[i].1);
                        }
                    }
                    if tx.sources.iter().any(|s| s.origin == Origin::Debt) {
                        prop_assert!(spendable(&world.book, world.now).is_empty());
                    }
                }
                // A claw-back takes what it can from its lot, then burns
                // down the other lots in order, and only runs into debt once
                // every spendable lot is empty. (With no lot to pick, the step
                // does nothing.)
                Ok(()) if matches!(step, Step::ClawBack { .. }) && !world.book.lots().is_empty() => {
                    let &Step::ClawBack { micros, .. } = step else { unreachable!() };
                    let amount = Amount::from_micros(micros);
                    let tx = new_txs.last().unwrap();
                    prop_assert_eq!(tx.kind, TxKind::ClawBack);
                    prop_assert_eq!(tx.amount, Amount::from_micros(-micros));
                    prop_assert_eq!(tx.posted_to(LedgerAccount::Void), Some(amount));
                    prop_assert_eq!(tx.usage_amount(), Some(amount));
                    let lot = tx.lot.unwrap();
                    let had = settled_before.lot(lot).unwrap().remaining;
                    let mut shares = tx.sources.iter().copied();
                    if had.is_positive() {
                        prop_assert_eq!(
                            shares.next(),
                            Some(Share { origin: Origin::Lot(lot), amount: had.min(amount) })
                        );
                    }
                    let order: Vec<(LotId, Amount)> = spendable(&settled_before, world.now)
                        .into_iter()
                        .filter(|(id, _)| *id != lot)
                        .collect();
                    let rest: Vec<Share> = shares.collect();
                    let lots: Vec<(LotId, Amount)> = rest.iter().filter_map(|s| match s.origin {
                        Origin::Lot(id) => Some((id, s.amount)),
                        Origin::Debt => None,
                    }).collect();
                    prop_assert!(lots.len() <= order.len());
                    for (i, (id, amount)) in lots.iter().enumerate() {
                        prop_assert_eq!(*id, order[i].0);
                        if i + 1 < lots.len() {
                            prop_assert_eq!(*amount, order[i].1);
                        }
                    }
                    if rest.iter().any(|s| s.origin == Origin::Debt) {
                        prop_assert!(spendable(&world.book, world.now).is_empty());
                    }
                }
                Ok(()) => {}
            }

            // A standing answers every check in its span as the book does,
            // and no check outside it; so does one taken from the book as a
            // store keeps it, compacted.
            let mut compacted = world.book.clone();
            compacted.compact(world.now);
            for standing in [world.book.standing(world.now), compacted.standing(world.now)] {
                prop_assert!(standing.covers(world.now));
                let near = |secs: i64| world.now.plus_secs(secs);
                let last = Timestamp::from_micros(standing.until.micros().saturating_sub(1));
                let probes = [standing.from.max(near(-10_000)), world.now, last.min(near(10_000)),
                              Timestamp::from_micros(standing.from.max(near(-10_000)).micros() / 2
                                                     + last.min(near(10_000)).micros() / 2)];
                let available = standing.available.micros();
                let amounts = [1, available, available.saturating_add(1), standing.headroom_micros,
                               standing.headroom_micros.saturating_add(1), 0];
                for t in probes {
                    for micros in amounts {
                        let amount = Amount::from_micros(micros);
                        prop_assert_eq!(standing.check(amount, t), Some(world.book.check(amount, t)), "at {:?}", t);
                    }
                }
                if standing.until < near(10_000) {
                    prop_assert_eq!(standing.check(Amount::from_micros(1), standing.until), None);
                }
                if standing.from > near(-10_000) {
                    let before = Timestamp::from_micros(standing.from.micros() - 1);
                    prop_assert_eq!(standing.check(Amount::from_micros(1), before), None);
                }
            }

            // Balance = grants - spends + refunds - expiries - voids (claw-backs
            // included) + settled debt.
            let held_in_lots: i128 = world.book.lots().iter().map(|l| i128::from(l.remaining.micros())).sum();
            let escrow: i128 = world.book.holds().iter()
                .filter(|h| h.status == HoldStatus::Pending)
                .map(|h| i128::from(h.funded().micros())).sum();
            let balance = held_in_lots + escrow - i128::from(world.book.account.debt.micros());
            let grants = -sum_posted(&world.journal, &[TxKind::Grant], LedgerAccount::Issuance);
            let spends = sum_posted(&world.journal, &[TxKind::Consume, TxKind::HoldCommit], LedgerAccount::Usage);
            let refunds = -sum_posted(&world.journal, &[TxKind::Refund], LedgerAccount::Usage);
            let expiries = sum_posted(&world.journal, &TxKind::ALL, LedgerAccount::Expiry);
            let voids = sum_posted(&world.journal, &TxKind::ALL, LedgerAccount::Void);
            let settled_debt = -sum_posted(&world.journal, &TxKind::ALL, LedgerAccount::Receivable);
            prop_assert_eq!(balance, grants - spends + refunds - expiries - voids + settled_debt);

            // The balance report agrees with the book.
            let report = world.book.balance(world.now);
            let settled = world.book.settled(world.now);
            let spendable_now: i128 = spendable(&settled, world.now).iter().map(|(_, a)| i128::from(a.micros())).sum();
            let unfunded: i128 = settled.holds().iter().filter(|h| h.is_pending_at(world.now))
                .map(|h| i128::from(h.unfunded().micros())).sum();
            prop_assert_eq!(
                i128::from(report.available.micros()),
                spendable_now - i128::from(report.debt.micros()) - unfunded
            );
            prop_assert!(
                i128::from(report.available.micros()) >= -i128::from(overdraft)
                    || report.debt.is_positive(),
            );
            if seen.last().is_some_and(|(at, _)| *at == world.now) {
                seen.pop();
            }
            seen.push((world.now, report));
        }
        // The book replayed from its rows as they stand at the end shows, at
        // every instant passed through, the balance the book showed then.
        for (at, balance) in seen {
            let replayed = crate::book_at(
                world.book.account.clone(),
                world.book.lots().to_vec(),
                world.book.holds().to_vec(),
                &world.journal,
                at,
            );
            prop_assert_eq!(replayed.map(|book| book.balance(at)), Ok(balance), "at {:?}", at);
        }
        // The audit finds nothing wrong with the whole journal.
        let violations = audit_account(
            &world.book.account,
            world.book.lots(),
            world.book.holds(),
            &world.journal,
        );
        prop_assert!(violations.is_empty(), "{:?}", violations);
    }
}
