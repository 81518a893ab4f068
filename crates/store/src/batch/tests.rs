//! The batch decided against a store held in memory: what each command
//! answers, what a batch writes, and what it leaves alone.

use std::collections::HashMap;

use ledger::{
    Account, AccountId, Amount, Book, Counters, ExternalId, Feature, FeatureId, Hold, HoldId,
    HoldStatus, HoldTtl, LedgerAccount, Lot, LotId, Metadata, NewAccount, NewGrant, Reject, Source,
    Timestamp, Transaction, TxId,
};

use super::{Batch, RecordKey, Source as BatchSource, Writes};
use crate::records::{Expect, Lookup, Record, RecordWrite};
use crate::{
    Charge, Command, Executed, IdempotencyKey, Op, Outcome, Refused, StoreError, StoredResponse,
};

/// The instant every batch here runs at.
const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A store's state in memory: read as a batch's source, and changed by
/// applying what a batch decided to write.
#[derive(Default)]
struct Memory {
    accounts: HashMap<AccountId, Account>,
    lots: HashMap<LotId, Lot>,
    holds: HashMap<HoldId, Hold>,
    transactions: Vec<Transaction>,
    digests: HashMap<TxId, String>,
    features: HashMap<FeatureId, Feature>,
    answers: HashMap<String, (Vec<u8>, StoredResponse)>,
    records: HashMap<RecordKey, Record>,
    /// How many times each account's book was read.
    book_reads: HashMap<AccountId, usize>,
}

impl Memory {
    /// Writes what a batch decided, as a store would in its transaction.
    fn apply(&mut self, writes: &Writes<'_>) {
        for account in writes.new_accounts.iter().chain(&writes.accounts) {
            self.accounts.insert(account.id.clone(), (*account).clone());
        }
        for lot in &writes.lots {
            self.lots.insert(lot.id, (*lot).clone());
        }
        for hold in &writes.holds {
            self.holds.insert(hold.id, (*hold).clone());
        }
        self.transactions
            .extend(writes.transactions.iter().cloned());
        self.digests.extend(writes.external_digests.clone());
        for feature in writes.features {
            self.features.insert(feature.id.clone(), feature.clone());
        }
        for (key, fingerprint, response) in &writes.idempotency {
            let kept = (fingerprint.to_vec(), (*response).clone());
            self.answers.insert((*key).to_owned(), kept);
        }
        for (key, record) in &writes.records {
            match record {
                Some(record) => self.records.insert((*key).clone(), (*record).clone()),
                None => self.records.remove(*key),
            };
        }
    }
}

impl BatchSource for Memory {
    fn book(&mut self, account: &AccountId) -> Result<Option<Book>, StoreError> {
        *self.book_reads.entry(account.clone()).or_default() += 1;
        let Some(found) = self.accounts.get(account) else {
            return Ok(None);
        };
        // As the stores load a book: its lots with credits left, its pending
        // holds, and the lots those holds escrowed from.
        let holds: Vec<Hold> = self
            .holds
            .values()
            .filter(|h| &h.account == account && h.status == HoldStatus::Pending)
            .cloned()
            .collect();
        let escrowed = |lot: &Lot| holds.iter().flat_map(|h| &h.legs).any(|l| l.lot == lot.id);
        let lots: Vec<Lot> = self
            .lots
            .values()
            .filter(|l| &l.account == account && (l.remaining.is_positive() || escrowed(l)))
            .cloned()
            .collect();
        Book::new(found.clone(), lots, holds)
            .map(Some)
            .map_err(|r| StoreError::Corrupt(r.to_string()))
    }

    fn hold(&mut self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        Ok(self.holds.get(&id).cloned())
    }

    fn lot(&mut self, id: LotId) -> Result<Option<Lot>, StoreError> {
        Ok(self.lots.get(&id).cloned())
    }

    fn transaction(&mut self, id: TxId) -> Result<Option<Transaction>, StoreError> {
        Ok(self.transactions.iter().find(|tx| tx.id == id).cloned())
    }

    fn refunded(&mut self, id: TxId) -> Result<Amount, StoreError> {
        let micros = self
            .transactions
            .iter()
            .filter(|tx| tx.refund_of == Some(id))
            .map(|tx| {
                -tx.posted_to(LedgerAccount::Usage)
                    .unwrap_or_default()
                    .micros()
            })
            .sum();
        Ok(Amount::from_micros(micros))
    }

    fn feature(&mut self, id: &FeatureId) -> Result<Option<Feature>, StoreError> {
        Ok(self.features.get(id).cloned())
    }

    fn idempotent_response(
        &mut self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, StoredResponse)>, StoreError> {
        Ok(self.answers.get(key).cloned())
    }

    fn external(
        &mut self,
        account: &AccountId,
        id: &ExternalId,
    ) -> Result<Option<(Transaction, String)>, StoreError> {
        let found = self
            .transactions
            .iter()
            .find(|tx| &tx.account == account && tx.external_id.as_ref() == Some(id));
        Ok(found.map(|tx| (tx.clone(), self.digests[&tx.id].clone())))
    }

    fn record(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.records.get(&(kind.to_owned(), id.to_owned())).cloned())
    }

    fn lookup_owner(
        &mut self,
        kind: &str,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let holds = |r: &&Record| {
            r.kind == kind
                && r.lookups
                    .iter()
                    .any(|l| l.unique && l.name == name && l.value == value)
        };
        Ok(self.records.values().find(holds).map(|r| r.id.clone()))
    }
}

/// How many rows of each sort a batch wrote.
#[derive(Debug, Default, PartialEq, Eq)]
struct Written {
    accounts: usize,
    lots: usize,
    holds: usize,
    transactions: usize,
    features: usize,
    answers: usize,
    records: usize,
}

impl Written {
    fn of(writes: &Writes<'_>) -> Written {
        Written {
            accounts: writes.new_accounts.len() + writes.accounts.len(),
            lots: writes.lots.len(),
            holds: writes.holds.len(),
            transactions: writes.transactions.len(),
            features: writes.features.len(),
            answers: writes.idempotency.len(),
            records: writes.records.len(),
        }
    }
}

/// A store in memory and the ids its batches draw.
#[derive(Default)]
struct Harness {
    memory: Memory,
    ids: Counters,
}

impl Harness {
    /// Decides `commands` as one batch, applies what it wrote, and answers
    /// each command's answer with how much the batch wrote.
    fn batch(&mut self, commands: &[Command]) -> (Vec<Executed>, Written) {
        let mut batch = Batch::default();
        let answers = commands
            .iter()
            .map(|command| {
                batch
                    .execute(&mut self.memory, command, NOW, &mut self.ids)
                    .expect("the memory never fails")
            })
            .collect();
        let writes = batch.writes();
        self.memory.apply(&writes);
        (answers, Written::of(&writes))
    }

    /// Decides one command in a batch of its own.
    fn one(&mut self, command: Command) -> Executed {
        self.batch(&[command]).0.remove(0)
    }

    /// Decides one operation with no key or joined writes, in a batch of
    /// its own; panics unless the ledger applies it.
    fn run(&mut self, op: Op) -> Outcome {
        match self.one(Command::new(op)) {
            Executed::Fresh(Ok(outcome)) => outcome,
            other => panic!("not applied: {other:?}"),
        }
    }

    /// Opens `account` with a purchase of `credits`.
    fn open(&mut self, account: &str, credits: i64) {
        self.run(create(account));
        self.run(grant(account, credits));
    }

    fn available(&mut self, account: &str) -> Amount {
        let book = self.memory.book(&id(account)).unwrap().unwrap();
        book.balance(NOW).available
    }
}

fn id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

fn c(credits: i64) -> Amount {
    Amount::credits(credits)
}

fn external(text: &str) -> ExternalId {
    ExternalId::parse(text).unwrap()
}

fn create(account: &str) -> Op {
    Op::CreateAccount {
        account: NewAccount::new(id(account), None, Metadata::empty(), Amount::ZERO).unwrap(),
        grants: Vec::new(),
    }
}

fn purchase(credits: i64) -> NewGrant {
    NewGrant {
        amount: c(credits),
        source: Source::Purchase,
        priority: None,
        effective_at: None,
        expires_at: None,
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    }
}

fn grant(account: &str, credits: i64) -> Op {
    Op::Grant {
        account: id(account),
        grant: purchase(credits),
    }
}

/// A purchase of `credits` caused by `cause`.
fn grant_for(account: &str, credits: i64, cause: &str) -> Op {
    Op::Grant {
        account: id(account),
        grant: NewGrant {
            external_id: Some(external(cause)),
            ..purchase(credits)
        },
    }
}

fn consume(account: &str, credits: i64) -> Op {
    Op::Consume {
        account: id(account),
        charge: Charge::Amount(c(credits)),
        metadata: Metadata::empty(),
        external_id: None,
    }
}

fn render(result: &Result<Outcome, Refused>) -> StoredResponse {
    StoredResponse {
        status: if result.is_ok() { 200 } else { 402 },
        body: format!("{result:?}").into_bytes(),
    }
}

/// `op` under the idempotency key `key`, sent as a request with `fingerprint`.
fn keyed(op: Op, key: &str, fingerprint: &[u8]) -> Command {
    Command {
        idempotency: Some(IdempotencyKey {
            key: key.into(),
            fingerprint: fingerprint.to_vec(),
            render,
        }),
        ..Command::new(op)
    }
}

/// A record of kind `note` with the unique lookup `email`.
fn note(id: &str, email: &str, expect: Expect) -> RecordWrite {
    RecordWrite::Put {
        kind: "note".into(),
        id: id.into(),
        body: "{}".into(),
        lookups: vec![Lookup::unique("email", email)],
        expect,
    }
}

fn note_key(id: &str) -> RecordKey {
    ("note".to_owned(), id.to_owned())
}

fn insufficient(required: i64, available: i64) -> Refused {
    Refused::Ledger(Reject::InsufficientCredits {
        required: c(required),
        available: c(available),
    })
}

#[test]
fn a_key_seen_with_the_same_request_replays_the_first_answer() {
    let mut h = Harness::default();
    h.open("a", 10);
    let Executed::Fresh(first) = h.one(keyed(consume("a", 3), "k", b"consume 3")) else {
        panic!("not applied now");
    };
    assert!(first.is_ok(), "{first:?}");
    let again = h.one(keyed(consume("a", 3), "k", b"consume 3"));
    assert_eq!(again, Executed::Replayed(render(&first)));
    assert_eq!(h.available("a"), c(7));
}

#[test]
fn a_key_seen_with_another_request_is_an_idempotency_conflict() {
    let mut h = Harness::default();
    h.open("a", 10);
    h.one(keyed(consume("a", 3), "k", b"consume 3"));
    let other = h.one(keyed(consume("a", 4), "k", b"consume 4"));
    assert_eq!(
        other,
        Executed::Fresh(Err(Refused::Ledger(Reject::IdempotencyConflict)))
    );
    assert_eq!(h.available("a"), c(7));
}

#[test]
fn a_key_sent_twice_in_one_batch_is_applied_once() {
    let mut h = Harness::default();
    h.open("a", 10);
    let command = keyed(consume("a", 3), "k", b"consume 3");
    let (answers, written) = h.batch(&[command.clone(), command]);
    let Executed::Fresh(first) = &answers[0] else {
        panic!("not applied now: {answers:?}");
    };
    assert_eq!(answers[1], Executed::Replayed(render(first)));
    assert_eq!(written.transactions, 1);
    assert_eq!(written.answers, 1);
    assert_eq!(h.available("a"), c(7));
}

#[test]
fn a_refusal_is_kept_under_its_key_and_replayed_even_once_it_would_apply() {
    let mut h = Harness::default();
    h.open("a", 10);
    let command = keyed(consume("a", 20), "k", b"consume 20");
    let refused = h.one(command.clone());
    assert_eq!(refused, Executed::Fresh(Err(insufficient(20, 10))));
    h.run(grant("a", 100));
    let again = h.one(command);
    assert_eq!(
        again,
        Executed::Replayed(render(&Err(insufficient(20, 10))))
    );
    assert_eq!(h.available("a"), c(110));
}

#[test]
fn a_joined_record_at_the_wrong_version_refuses_the_whole_command() {
    let mut h = Harness::default();
    h.open("a", 10);
    let command = Command::new(consume("a", 3)).with_records(vec![note(
        "n1",
        "x@example.com",
        Expect::Version(3),
    )]);
    let (answers, written) = h.batch(&[command]);
    let conflict = Refused::VersionConflict {
        kind: "note".into(),
        id: "n1".into(),
        current: None,
    };
    assert_eq!(answers, [Executed::Fresh(Err(conflict))]);
    assert_eq!(written, Written::default());
    assert_eq!(h.available("a"), c(10));
}

#[test]
fn a_joined_record_is_written_with_the_operation_it_joins() {
    let mut h = Harness::default();
    h.open("a", 10);
    let command = Command::new(consume("a", 3)).with_records(vec![note(
        "n1",
        "x@example.com",
        Expect::Absent,
    )]);
    let (answers, written) = h.batch(&[command]);
    assert!(matches!(answers[0], Executed::Fresh(Ok(_))), "{answers:?}");
    assert_eq!(written.transactions, 1);
    assert_eq!(written.records, 1);
    assert_eq!(h.memory.records[&note_key("n1")].version, 1);
    assert_eq!(h.available("a"), c(7));
}

#[test]
fn a_joined_record_is_not_written_when_the_ledger_refuses_the_operation() {
    let mut h = Harness::default();
    h.open("a", 10);
    let command = Command::new(consume("a", 30)).with_records(vec![note(
        "n1",
        "x@example.com",
        Expect::Absent,
    )]);
    let (answers, written) = h.batch(&[command]);
    assert_eq!(answers, [Executed::Fresh(Err(insufficient(30, 10)))]);
    assert_eq!(written, Written::default());
    assert!(h.memory.records.is_empty());
}

#[test]
fn an_external_id_seen_before_answers_the_first_outcome_and_changes_nothing() {
    let mut h = Harness::default();
    h.open("a", 10);
    let Outcome::Granted { tx: first, .. } = h.run(grant_for("a", 5, "pay:1")) else {
        panic!("not a grant");
    };
    let again = Command::new(grant_for("a", 5, "pay:1")).with_records(vec![note(
        "n1",
        "x@example.com",
        Expect::Absent,
    )]);
    let (answers, written) = h.batch(&[again]);
    let Executed::Existing(Outcome::Granted { tx, .. }) = &answers[0] else {
        panic!("not the first grant: {answers:?}");
    };
    assert_eq!(tx, &first);
    assert_eq!(written, Written::default());
    assert!(h.memory.records.is_empty());
    assert_eq!(h.available("a"), c(15));
}

#[test]
fn an_external_id_seen_with_other_content_is_a_conflict() {
    let mut h = Harness::default();
    h.open("a", 10);
    h.run(grant_for("a", 5, "pay:1"));
    let (answers, written) = h.batch(&[Command::new(grant_for("a", 6, "pay:1"))]);
    assert_eq!(
        answers,
        [Executed::Fresh(Err(Refused::Ledger(
            Reject::ExternalIdConflict
        )))]
    );
    assert_eq!(written, Written::default());
    assert_eq!(h.available("a"), c(15));
}

#[test]
fn an_external_id_used_earlier_in_the_batch_answers_that_outcome() {
    let mut h = Harness::default();
    h.open("a", 10);
    let command = Command::new(grant_for("a", 5, "pay:1"));
    let (answers, written) = h.batch(&[command.clone(), command]);
    let Executed::Fresh(Ok(Outcome::Granted { tx: first, .. })) = &answers[0] else {
        panic!("not granted: {answers:?}");
    };
    let Executed::Existing(Outcome::Granted { tx, .. }) = &answers[1] else {
        panic!("not the first grant: {answers:?}");
    };
    assert_eq!(tx, first);
    assert_eq!(written.transactions, 1);
    assert_eq!(h.available("a"), c(15));
}

#[test]
fn an_opening_grants_external_id_is_the_same_grant_when_sent_again() {
    let mut h = Harness::default();
    let opening = NewGrant {
        external_id: Some(external("signup:b")),
        ..purchase(5)
    };
    let Op::CreateAccount { account, .. } = create("b") else {
        unreachable!("create opens an account");
    };
    h.run(Op::CreateAccount {
        account,
        grants: vec![opening.clone()],
    });
    let again = h.one(Command::new(Op::Grant {
        account: id("b"),
        grant: opening,
    }));
    assert!(
        matches!(again, Executed::Existing(Outcome::Granted { .. })),
        "{again:?}"
    );
    assert_eq!(h.available("b"), c(5));
}

#[test]
fn a_refused_opening_grant_leaves_no_account_behind() {
    let mut h = Harness::default();
    let Op::CreateAccount { account, .. } = create("b") else {
        unreachable!("create opens an account");
    };
    let (answers, written) = h.batch(&[Command::new(Op::CreateAccount {
        account,
        grants: vec![purchase(5), purchase(0)],
    })]);
    assert!(
        matches!(
            answers[0],
            Executed::Fresh(Err(Refused::Ledger(Reject::InvalidAmount(_))))
        ),
        "{answers:?}"
    );
    assert_eq!(written, Written::default());
    assert!(h.memory.accounts.is_empty());
}

#[test]
fn a_refused_command_leaves_the_others_of_its_batch_applied() {
    let mut h = Harness::default();
    h.open("a", 10);
    let (answers, written) = h.batch(&[
        Command::new(consume("a", 4)),
        Command::new(consume("a", 40)),
        Command::new(consume("a", 5)),
    ]);
    assert!(matches!(answers[0], Executed::Fresh(Ok(_))), "{answers:?}");
    assert_eq!(answers[1], Executed::Fresh(Err(insufficient(40, 6))));
    assert!(matches!(answers[2], Executed::Fresh(Ok(_))), "{answers:?}");
    assert_eq!(written.transactions, 2);
    assert_eq!(h.available("a"), c(1));
}

#[test]
fn commands_in_one_batch_see_each_others_effects() {
    let mut h = Harness::default();
    let (answers, _) = h.batch(&[
        Command::new(create("b")),
        Command::new(grant("b", 5)),
        Command::new(consume("b", 5)),
        Command::new(consume("b", 1)),
    ]);
    assert!(matches!(
        answers[0],
        Executed::Fresh(Ok(Outcome::AccountCreated { .. }))
    ));
    assert!(matches!(
        answers[1],
        Executed::Fresh(Ok(Outcome::Granted { .. }))
    ));
    assert!(matches!(
        answers[2],
        Executed::Fresh(Ok(Outcome::Consumed { .. }))
    ));
    assert_eq!(answers[3], Executed::Fresh(Err(insufficient(1, 0))));
    assert_eq!(h.available("b"), c(0));
}

#[test]
fn an_account_opened_earlier_in_the_batch_cannot_be_opened_again() {
    let mut h = Harness::default();
    let (answers, written) = h.batch(&[Command::new(create("b")), Command::new(create("b"))]);
    assert!(matches!(answers[0], Executed::Fresh(Ok(_))), "{answers:?}");
    assert_eq!(
        answers[1],
        Executed::Fresh(Err(Refused::Ledger(Reject::AccountExists)))
    );
    assert_eq!(written.accounts, 1);
}

#[test]
fn a_hold_placed_earlier_in_the_batch_can_be_committed_in_it() {
    let mut h = Harness::default();
    h.open("a", 10);
    let hold = HoldId(h.ids.hold + 1);
    let (answers, written) = h.batch(&[
        Command::new(Op::Hold {
            account: id("a"),
            amount: c(6),
            ttl: HoldTtl::from_secs(60).unwrap(),
            metadata: Metadata::empty(),
        }),
        Command::new(Op::Commit {
            hold,
            amount: c(4),
            metadata: Metadata::empty(),
        }),
    ]);
    let Executed::Fresh(Ok(Outcome::Committed {
        hold: committed, ..
    })) = &answers[1]
    else {
        panic!("not committed: {answers:?}");
    };
    assert_eq!(committed.status, HoldStatus::Committed);
    assert_eq!(written.holds, 1);
    assert_eq!(h.memory.holds[&hold].status, HoldStatus::Committed);
    assert_eq!(h.available("a"), c(6));
}

#[test]
fn refunds_earlier_in_the_batch_count_against_what_is_left_to_refund() {
    let mut h = Harness::default();
    h.open("a", 10);
    let Outcome::Consumed { tx, .. } = h.run(consume("a", 4)) else {
        panic!("not a consume");
    };
    let refund = |credits| {
        Command::new(Op::Refund {
            tx: tx.id,
            amount: Some(c(credits)),
            metadata: Metadata::empty(),
        })
    };
    let (answers, _) = h.batch(&[refund(3), refund(3)]);
    assert!(matches!(
        answers[0],
        Executed::Fresh(Ok(Outcome::Refunded { .. }))
    ));
    assert_eq!(
        answers[1],
        Executed::Fresh(Err(Refused::Ledger(Reject::RefundTooLarge {
            refundable: c(1)
        })))
    );
    // And so do those of earlier batches.
    let (answers, _) = h.batch(&[refund(2)]);
    assert_eq!(
        answers[0],
        Executed::Fresh(Err(Refused::Ledger(Reject::RefundTooLarge {
            refundable: c(1)
        })))
    );
    assert_eq!(h.available("a"), c(9));
}

#[test]
fn a_feature_priced_earlier_in_the_batch_prices_a_consume() {
    let mut h = Harness::default();
    h.open("a", 10);
    let tokens = FeatureId::parse("tokens").unwrap();
    let (answers, written) = h.batch(&[
        Command::new(Op::PutFeature(
            Feature::new(tokens.clone(), c(2), Timestamp::EPOCH).unwrap(),
        )),
        Command::new(Op::Consume {
            account: id("a"),
            charge: Charge::Feature {
                feature: tokens,
                quantity: c(3),
            },
            metadata: Metadata::empty(),
            external_id: None,
        }),
    ]);
    let Executed::Fresh(Ok(Outcome::FeatureSet(set))) = &answers[0] else {
        panic!("not set: {answers:?}");
    };
    assert_eq!(set.updated_at, NOW);
    assert!(matches!(
        answers[1],
        Executed::Fresh(Ok(Outcome::Consumed { .. }))
    ));
    assert_eq!(written.features, 1);
    assert_eq!(h.available("a"), c(4));
}

#[test]
fn a_claw_back_finds_a_grant_made_earlier_in_the_batch() {
    let mut h = Harness::default();
    h.open("a", 10);
    let (answers, _) = h.batch(&[
        Command::new(grant_for("a", 5, "pay:2")),
        Command::new(Op::ClawBack {
            account: id("a"),
            grant: external("pay:2"),
            amount: c(2),
            metadata: Metadata::empty(),
            external_id: Some(external("refund:2")),
        }),
    ]);
    assert!(
        matches!(answers[1], Executed::Fresh(Ok(Outcome::ClawedBack { .. }))),
        "{answers:?}"
    );
    assert_eq!(h.available("a"), c(13));
}

#[test]
fn a_unique_value_held_by_another_record_refuses_the_write() {
    let mut h = Harness::default();
    h.run(Op::Record(note("n1", "x@example.com", Expect::Absent)));
    let (answers, written) = h.batch(&[Command::new(Op::Record(note(
        "n2",
        "x@example.com",
        Expect::Absent,
    )))]);
    let taken = Refused::LookupTaken {
        kind: "note".into(),
        name: "email".into(),
    };
    assert_eq!(answers, [Executed::Fresh(Err(taken))]);
    assert_eq!(written, Written::default());
}

#[test]
fn a_unique_value_freed_earlier_in_the_batch_can_be_taken() {
    let mut h = Harness::default();
    h.run(Op::Record(note("n1", "x@example.com", Expect::Absent)));
    let (answers, written) = h.batch(&[
        Command::new(Op::Record(note("n1", "y@example.com", Expect::Version(1)))),
        Command::new(Op::Record(note("n2", "x@example.com", Expect::Absent))),
    ]);
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Executed::Fresh(Ok(Outcome::RecordPut(_)))))
    );
    assert_eq!(written.records, 2);
    assert_eq!(h.memory.records[&note_key("n1")].version, 2);
}

#[test]
fn a_record_written_earlier_in_the_batch_is_at_its_new_version() {
    let mut h = Harness::default();
    let (answers, _) = h.batch(&[
        Command::new(Op::Record(note("n1", "x@example.com", Expect::Absent))),
        Command::new(Op::Record(note("n1", "x@example.com", Expect::Version(1)))),
        Command::new(Op::Record(note("n1", "x@example.com", Expect::Version(1)))),
    ]);
    let Executed::Fresh(Ok(Outcome::RecordPut(second))) = &answers[1] else {
        panic!("not put: {answers:?}");
    };
    assert_eq!(second.version, 2);
    let conflict = Refused::VersionConflict {
        kind: "note".into(),
        id: "n1".into(),
        current: Some(2),
    };
    assert_eq!(answers[2], Executed::Fresh(Err(conflict)));
}

#[test]
fn each_book_is_read_once_however_many_commands_touch_it() {
    let mut h = Harness::default();
    h.open("a", 10);
    h.memory.book_reads.clear();
    h.batch(&[
        Command::new(consume("a", 1)),
        Command::new(consume("a", 2)),
        Command::new(grant("a", 3)),
    ]);
    assert_eq!(h.memory.book_reads[&id("a")], 1);
    assert_eq!(h.available("a"), c(10));
}
