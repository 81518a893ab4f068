//! What every store test binary shares: a fixed start, short ways to write ops, and running them.

// Each test binary uses its own part of this.
#![allow(dead_code)]

use std::sync::Arc;

use ledger::{
    AccountId, Amount, HoldId, HoldTtl, Metadata, NewAccount, NewGrant, Reject, Source, Timestamp,
};
use store::postgres::PostgresStore;
use store::sqlite::SqliteStore;
use store::{
    Charge, Command, Executed, IdempotencyKey, Op, Outcome, Refused, Store, StoredResponse,
};

/// What a test holds a store by, so that the helpers below take any of
/// them: a store, an `Arc` of one, or the suite's store of either kind.
pub trait Handle {
    /// The store.
    fn store(&self) -> &dyn Store;
}

impl Handle for dyn Store {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl Handle for Arc<dyn Store> {
    fn store(&self) -> &dyn Store {
        &**self
    }
}

impl Handle for SqliteStore {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl Handle for Arc<SqliteStore> {
    fn store(&self) -> &dyn Store {
        &**self
    }
}

impl Handle for PostgresStore {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl Handle for Arc<PostgresStore> {
    fn store(&self) -> &dyn Store {
        &**self
    }
}

/// 2027-01-15T08:00:00Z: a fixed start, so tests control time.
pub const START: Timestamp = Timestamp::from_secs(1_800_000_000);

pub fn id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

pub fn c(credits: i64) -> Amount {
    Amount::credits(credits)
}

/// Runs `op` with no idempotency key and answers what the ledger decided.
pub async fn run(store: &(impl Handle + ?Sized), op: Op) -> Result<Outcome, Reject> {
    match store.store().execute(Command::new(op)).await.unwrap() {
        Executed::Fresh(result) => result.map_err(|refused| match refused {
            Refused::Ledger(reject) => reject,
            other => panic!("refused {other:?}"),
        }),
        other => panic!("not applied now: {other:?}"),
    }
}

/// Runs a command and answers how it was executed.
pub async fn execute(store: &(impl Handle + ?Sized), command: Command) -> Executed {
    store.store().execute(command).await.unwrap()
}

pub fn create(account: &str) -> Op {
    Op::CreateAccount {
        account: NewAccount::new(id(account), None, Metadata::empty(), Amount::ZERO).unwrap(),
        grants: Vec::new(),
    }
}

/// Opens `account` with no overdraft and, unless `credits` is 0, a purchase of `credits`.
pub async fn open_account(store: &(impl Handle + ?Sized), account: &str, credits: i64) {
    run(store, create(account)).await.unwrap();
    if credits > 0 {
        run(store, grant(account, credits)).await.unwrap();
    }
}

/// A purchase of `credits` that never expires.
pub fn grant(account: &str, credits: i64) -> Op {
    Op::Grant {
        account: id(account),
        grant: NewGrant {
            amount: c(credits),
            source: Source::Purchase,
            priority: None,
            effective_at: None,
            expires_at: None,
            metadata: Metadata::empty(),
            external_id: None,
            actor: None,
            reason: None,
        },
    }
}

pub fn consume(account: &str, credits: i64) -> Op {
    Op::Consume {
        account: id(account),
        charge: Charge::Amount(c(credits)),
        metadata: Metadata::empty(),
        external_id: None,
    }
}

/// A hold of `credits` for a minute.
pub fn hold(account: &str, credits: i64) -> Op {
    Op::Hold {
        account: id(account),
        amount: c(credits),
        ttl: HoldTtl::from_secs(60).unwrap(),
        metadata: Metadata::empty(),
    }
}

/// Holds `credits` on the account for a minute; answers the hold's id.
pub async fn place_hold(store: &(impl Handle + ?Sized), account: &str, credits: i64) -> HoldId {
    let outcome = run(store, hold(account, credits)).await.unwrap();
    let Outcome::Held { hold, .. } = outcome else {
        panic!("not a hold: {outcome:?}")
    };
    hold.id
}

pub fn release(hold: HoldId) -> Op {
    Op::Release {
        hold,
        metadata: Metadata::empty(),
    }
}

/// The account's available balance at `now`, from its book as stored now.
pub async fn available(store: &(impl Handle + ?Sized), account: &str, now: Timestamp) -> Amount {
    let book = store
        .store()
        .book(id(account), None)
        .await
        .unwrap()
        .unwrap();
    book.balance(now).available
}

/// How a test renders an answer to keep under an idempotency key.
pub fn render(result: &Result<Outcome, Refused>) -> StoredResponse {
    StoredResponse {
        status: if result.is_ok() { 200 } else { 402 },
        body: format!("{result:?}").into_bytes(),
    }
}

/// `op` under the idempotency key `key`, sent as a request with `fingerprint`.
pub fn keyed(op: Op, key: &str, fingerprint: &[u8]) -> Command {
    Command {
        op,
        records: Vec::new(),
        call: None,
        idempotency: Some(IdempotencyKey {
            key: key.into(),
            fingerprint: fingerprint.to_vec(),
            render,
        }),
    }
}
