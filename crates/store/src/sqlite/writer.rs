//! The single writer: collects commands into batches, decides them with the
//! ledger core, and commits each batch in one transaction with one sync.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ledger::{
    AccountId, Amount, Book, Counters, Feature, FeatureId, HoldId, LedgerAccount, LotId, Origin,
    Reject, Timestamp, Transaction, TxId, TxKind,
};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::codec::{encode_legs, encode_postings, encode_sources};
use super::read;
use crate::{
    Charge, Clock, Command, Executed, Op, Outcome, StoreError, StoreStats, StoredResponse,
};

/// A command waiting for its batch, with where to send the answer.
pub struct Job {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Executed, StoreError>>,
}

pub struct Writer {
    conn: Connection,
    clock: Arc<dyn Clock>,
    batch_size_max: usize,
    stats: Arc<StoreStats>,
    ids: Counters,
    data_version: Option<i64>,
    last_now: Timestamp,
}

impl Writer {
    pub fn new(
        conn: Connection,
        clock: Arc<dyn Clock>,
        batch_size_max: usize,
        stats: Arc<StoreStats>,
    ) -> Writer {
        Writer {
            conn,
            clock,
            batch_size_max,
            stats,
            ids: Counters::default(),
            data_version: None,
            last_now: Timestamp::EPOCH,
        }
    }

    /// Runs until every sender is gone. While one batch syncs, the next
    /// collects in the channel: that is the group commit.
    pub fn run(mut self, mut jobs_rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.batch_size_max);
        while let Some(job) = jobs_rx.blocking_recv() {
            jobs.push(job);
            while jobs.len() < self.batch_size_max {
                match jobs_rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(&mut jobs);
        }
    }

    fn run_batch(&mut self, jobs: &mut Vec<Job>) {
        let commands: Vec<&Command> = jobs.iter().map(|j| &j.command).collect();
        let started = Instant::now();
        let applied = self.apply(&commands);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match applied {
            Ok(answers) => {
                self.stats.record_batch(answers.len(), micros);
                for (job, answer) in jobs.drain(..).zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            // One bad command must not fail the others: retry them one by one.
            // An unavailable database would fail each of them again, slowly,
            // so that error is answered at once.
            Err(error) if jobs.len() > 1 && !matches!(error, StoreError::Unavailable(_)) => {
                tracing::warn!(%error, "write batch failed; retrying its commands one by one");
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                for job in jobs.drain(..) {
                    let answer = self.apply(&[&job.command]).map(|mut a| a.remove(0));
                    let _ = job.reply.send(answer);
                }
            }
            Err(error) => {
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "write batch failed");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Applies commands in one database transaction. On any store error
    /// nothing of the batch is written.
    pub fn apply(&mut self, commands: &[&Command]) -> Result<Vec<Executed>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process (an admin command) may have written since the last
        // batch; if so, continue its id sequences rather than ours.
        let version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version != Some(version) {
            self.ids = load_counters(&tx)?;
            self.data_version = Some(version);
        }
        let now = self.clock.now().max(self.last_now);
        self.last_now = now;

        let mut batch = Batch::default();
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            answers.push(batch.execute(&tx, command, now, &mut self.ids)?);
        }
        batch.write(&tx, now)?;
        tx.commit()?;
        Ok(answers)
    }
}

fn load_counters(conn: &Connection) -> Result<Counters, StoreError> {
    let max = |table: &str| -> Result<i64, StoreError> {
        Ok(conn.query_row(
            &format!("SELECT coalesce(max(id), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )?)
    };
    Ok(Counters {
        tx: max("transactions")?,
        lot: max("lots")?,
        hold: max("holds")?,
    })
}

/// Everything one batch has loaded and decided, written at its end.
#[derive(Default)]
struct Batch {
    books: HashMap<AccountId, Book>,
    staged: Staged,
    features: HashMap<FeatureId, Option<Feature>>,
}

#[derive(Default)]
struct Staged {
    new_accounts: HashSet<AccountId>,
    accounts: HashSet<AccountId>,
    lots: HashSet<(AccountId, LotId)>,
    holds: HashSet<(AccountId, HoldId)>,
    /// Which account each lot and hold seen in this batch belongs to.
    lot_accounts: HashMap<LotId, AccountId>,
    hold_accounts: HashMap<HoldId, AccountId>,
    transactions: Vec<Transaction>,
    features: Vec<Feature>,
    idempotency: HashMap<String, (Vec<u8>, StoredResponse)>,
}

impl Staged {
    /// Notes what each new transaction changed, so that it is written.
    fn record(&mut self, transactions: Vec<Transaction>) {
        for tx in &transactions {
            for posting in &tx.postings {
                match posting.account {
                    LedgerAccount::Lot(lot) => {
                        self.lots.insert((tx.account.clone(), lot));
                        self.lot_accounts.insert(lot, tx.account.clone());
                    }
                    LedgerAccount::Debt => {
                        self.accounts.insert(tx.account.clone());
                    }
                    _ => {}
                }
            }
            if let Some(lot) = tx.lot {
                self.lots.insert((tx.account.clone(), lot));
                self.lot_accounts.insert(lot, tx.account.clone());
            }
            if let Some(hold) = tx.hold {
                self.holds.insert((tx.account.clone(), hold));
                self.hold_accounts.insert(hold, tx.account.clone());
            }
        }
        self.transactions.extend(transactions);
    }

    fn transaction(&self, id: TxId) -> Option<&Transaction> {
        self.transactions.iter().find(|tx| tx.id == id)
    }

    fn refunded_in_batch(&self, id: TxId) -> Amount {
        Amount::from_micros(
            self.transactions
                .iter()
                .filter(|tx| tx.refund_of == Some(id))
                .map(|tx| {
                    -tx.posted_to(LedgerAccount::Usage)
                        .unwrap_or_default()
                        .micros()
                })
                .sum(),
        )
    }
}

impl Batch {
    fn execute(
        &mut self,
        conn: &Connection,
        command: &Command,
        now: Timestamp,
        ids: &mut Counters,
    ) -> Result<Executed, StoreError> {
        if let Some(key) = &command.idempotency {
            let seen = match self.staged.idempotency.get(&key.key) {
                Some(seen) => Some(seen.clone()),
                None => read::idempotent_response(conn, &key.key)?,
            };
            if let Some((fingerprint, response)) = seen {
                return Ok(if fingerprint == key.fingerprint {
                    Executed::Replayed(response)
                } else {
                    Executed::Fresh(Err(Reject::IdempotencyConflict))
                });
            }
        }
        let result = self.decide(conn, &command.op, now, ids)?;
        if let Some(key) = &command.idempotency {
            // A bug is not an answer worth replaying; everything else is.
            if !matches!(result, Err(Reject::Inconsistent(_))) {
                let response = (key.render)(&result);
                self.staged
                    .idempotency
                    .insert(key.key.clone(), (key.fingerprint.clone(), response));
            }
        }
        Ok(Executed::Fresh(result))
    }

    /// Loads the account's book into the batch, once.
    fn load(&mut self, conn: &Connection, account: &AccountId) -> Result<bool, StoreError> {
        if self.books.contains_key(account) {
            return Ok(true);
        }
        match read::book(conn, account)? {
            Some(book) => {
                for lot in book.lots() {
                    self.staged.lot_accounts.insert(lot.id, account.clone());
                }
                for hold in book.holds() {
                    self.staged.hold_accounts.insert(hold.id, account.clone());
                }
                self.books.insert(account.clone(), book);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Runs one ledger operation on a loaded book and stages what it wrote.
    fn run<T>(
        &mut self,
        account: &AccountId,
        op: impl FnOnce(&mut Book, &mut Vec<Transaction>) -> Result<T, Reject>,
    ) -> (Result<T, Reject>, &Book, Vec<Transaction>) {
        let book = self.books.get_mut(account).expect("book loaded");
        let mut out = Vec::new();
        let result = op(book, &mut out);
        let written = out.clone();
        self.staged.record(out);
        (result, &self.books[account], written)
    }

    fn decide(
        &mut self,
        conn: &Connection,
        op: &Op,
        now: Timestamp,
        ids: &mut Counters,
    ) -> Result<Result<Outcome, Reject>, StoreError> {
        let missing = |what: Reject| Ok(Err(what));
        match op {
            Op::CreateAccount(new) => {
                if self.books.contains_key(&new.id) || read::account(conn, &new.id)?.is_some() {
                    return missing(Reject::AccountExists);
                }
                let account = new.clone().open(now);
                let book = Book::new(account.clone(), Vec::new(), Vec::new())
                    .map_err(|r| StoreError::Internal(r.to_string()))?;
                self.books.insert(account.id.clone(), book);
                self.staged.new_accounts.insert(account.id.clone());
                Ok(Ok(Outcome::AccountCreated(account)))
            }
            Op::Grant { account, grant } => {
                if !self.load(conn, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let (result, book, written) = self.run(account, |book, out| {
                    book.grant(grant.clone(), now, ids, out)
                });
                Ok(result.map(|lot| Outcome::Granted {
                    lot: book.lot(lot).expect("granted lot").clone(),
                    tx: find(&written, |tx| {
                        tx.kind == TxKind::Grant && tx.lot == Some(lot)
                    }),
                }))
            }
            Op::Consume {
                account,
                charge,
                metadata,
            } => {
                let (amount, feature) = match charge {
                    Charge::Amount(amount) => (*amount, None),
                    Charge::Feature { feature, quantity } => {
                        let Some(priced) = self.feature(conn, feature)? else {
                            return missing(Reject::FeatureNotFound);
                        };
                        match priced.price(*quantity) {
                            Ok(amount) => (amount, Some((feature.clone(), *quantity))),
                            Err(reject) => return Ok(Err(reject)),
                        }
                    }
                };
                if !self.load(conn, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let (result, book, written) = self.run(account, |book, out| {
                    book.consume(amount, metadata.clone(), feature, now, ids, out)
                });
                Ok(result.and_then(|id| {
                    Ok(Outcome::Consumed {
                        tx: find(&written, |tx| tx.id == id),
                        balance: book.balance(now)?,
                    })
                }))
            }
            Op::Hold {
                account,
                amount,
                ttl,
                metadata,
            } => {
                if !self.load(conn, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let (result, book, _) = self.run(account, |book, out| {
                    book.place_hold(*amount, *ttl, metadata.clone(), now, ids, out)
                });
                Ok(result.and_then(|id| {
                    Ok(Outcome::Held {
                        hold: book.hold(id).expect("placed hold").clone(),
                        balance: book.balance(now)?,
                    })
                }))
            }
            Op::Commit {
                hold,
                amount,
                metadata,
            } => {
                let Some(account) = self.load_hold(conn, *hold)? else {
                    return missing(Reject::HoldNotFound);
                };
                let (result, book, written) = self.run(&account, |book, out| {
                    book.commit(*hold, *amount, metadata.clone(), now, ids, out)
                });
                Ok(result.and_then(|id| {
                    Ok(Outcome::Committed {
                        hold: book.hold(*hold).expect("committed hold").clone(),
                        tx: find(&written, |tx| tx.id == id),
                        balance: book.balance(now)?,
                    })
                }))
            }
            Op::Release { hold, metadata } => {
                let Some(account) = self.load_hold(conn, *hold)? else {
                    return missing(Reject::HoldNotFound);
                };
                let (result, book, _) = self.run(&account, |book, out| {
                    book.release(*hold, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|_| Outcome::Released {
                    hold: book.hold(*hold).expect("released hold").clone(),
                }))
            }
            Op::Void { lot, metadata } => {
                let Some(account) = self.load_lot(conn, *lot)? else {
                    return missing(Reject::GrantNotFound);
                };
                let (result, book, written) = self.run(&account, |book, out| {
                    book.void(*lot, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|id| Outcome::Voided {
                    lot: book.lot(*lot).expect("voided lot").clone(),
                    tx: find(&written, |tx| tx.id == id),
                }))
            }
            Op::Refund {
                tx,
                amount,
                metadata,
            } => {
                let original = match self.staged.transaction(*tx) {
                    Some(original) => Some(original.clone()),
                    None => read::transaction(conn, *tx)?,
                };
                let Some(original) = original else {
                    return missing(Reject::TransactionNotFound);
                };
                let account = original.account.clone();
                if !self.load(conn, &account)? {
                    return Err(StoreError::Corrupt(format!(
                        "{tx} belongs to a missing account"
                    )));
                }
                for share in &original.sources {
                    if let Origin::Lot(lot) = share.origin {
                        self.load_lot(conn, lot)?;
                    }
                }
                let already = read::refunded(conn, *tx)?
                    .checked_add(self.staged.refunded_in_batch(*tx))
                    .ok_or_else(|| StoreError::Corrupt(format!("{tx} refunds overflow")))?;
                let (result, _, written) = self.run(&account, |book, out| {
                    book.refund(&original, already, *amount, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|done| Outcome::Refunded {
                    tx: find(&written, |tx| tx.id == done.tx),
                }))
            }
            Op::PutFeature(feature) => {
                let feature = Feature {
                    updated_at: now,
                    ..feature.clone()
                };
                self.features
                    .insert(feature.id.clone(), Some(feature.clone()));
                self.staged.features.push(feature.clone());
                Ok(Ok(Outcome::FeatureSet(feature)))
            }
            Op::Settle { account } => {
                if !self.load(conn, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let (result, _, written) =
                    self.run(account, |book, out| book.settle(now, ids, out));
                Ok(result.map(|()| Outcome::Settled {
                    transactions: written.len(),
                }))
            }
        }
    }

    fn feature(
        &mut self,
        conn: &Connection,
        id: &FeatureId,
    ) -> Result<Option<Feature>, StoreError> {
        if let Some(feature) = self.features.get(id) {
            return Ok(feature.clone());
        }
        let feature = read::feature(conn, id)?;
        self.features.insert(id.clone(), feature.clone());
        Ok(feature)
    }

    /// Loads the book a hold belongs to, with the hold in it even when it is
    /// no longer pending; `None` when there is no such hold.
    fn load_hold(
        &mut self,
        conn: &Connection,
        hold: HoldId,
    ) -> Result<Option<AccountId>, StoreError> {
        if let Some(account) = self.staged.hold_accounts.get(&hold) {
            return Ok(Some(account.clone()));
        }
        let Some(stored) = read::hold(conn, hold)? else {
            return Ok(None);
        };
        let account = stored.account.clone();
        if !self.load(conn, &account)? {
            return Err(StoreError::Corrupt(format!(
                "{hold} belongs to a missing account"
            )));
        }
        let book = self.books.get_mut(&account).expect("book loaded");
        if book.hold(hold).is_none() {
            book.load_hold(stored)
                .map_err(|r| StoreError::Corrupt(r.to_string()))?;
        }
        self.staged.hold_accounts.insert(hold, account.clone());
        Ok(Some(account))
    }

    /// Loads the book a lot belongs to, with the lot in it even when it is
    /// empty; `None` when there is no such lot.
    fn load_lot(&mut self, conn: &Connection, lot: LotId) -> Result<Option<AccountId>, StoreError> {
        if let Some(account) = self.staged.lot_accounts.get(&lot) {
            return Ok(Some(account.clone()));
        }
        let Some(stored) = read::lot(conn, lot)? else {
            return Ok(None);
        };
        let account = stored.account.clone();
        if !self.load(conn, &account)? {
            return Err(StoreError::Corrupt(format!(
                "{lot} belongs to a missing account"
            )));
        }
        let book = self.books.get_mut(&account).expect("book loaded");
        book.load_lot(stored)
            .map_err(|r| StoreError::Corrupt(r.to_string()))?;
        self.staged.lot_accounts.insert(lot, account.clone());
        Ok(Some(account))
    }

    /// Writes everything the batch decided.
    fn write(&self, conn: &Connection, now: Timestamp) -> Result<(), StoreError> {
        let staged = &self.staged;
        if !staged.new_accounts.is_empty() {
            let mut insert = conn.prepare_cached(
                "INSERT INTO accounts (id, name, metadata, overdraft_limit, debt, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for id in &staged.new_accounts {
                let a = &self.books[id].account;
                insert.execute(params![
                    a.id.as_str(),
                    a.name,
                    a.metadata.as_str(),
                    a.overdraft_limit.micros(),
                    a.debt.micros(),
                    a.created_at.micros()
                ])?;
            }
        }
        if !staged.accounts.is_empty() {
            let mut update = conn.prepare_cached("UPDATE accounts SET debt = ?2 WHERE id = ?1")?;
            for id in &staged.accounts {
                if !staged.new_accounts.contains(id) {
                    update.execute(params![id.as_str(), self.books[id].account.debt.micros()])?;
                }
            }
        }
        if !staged.lots.is_empty() {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO lots (id, account_id, source, priority, amount, remaining, \
                                   effective_at, expires_at, voided_at, created_at, metadata) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining, \
                                                voided_at = excluded.voided_at",
            )?;
            for (account, id) in &staged.lots {
                let lot = self.books[account].lot(*id).expect("staged lot");
                upsert.execute(params![
                    lot.id.0,
                    lot.account.as_str(),
                    lot.source.code(),
                    lot.priority,
                    lot.amount.micros(),
                    lot.remaining.micros(),
                    lot.effective_at.micros(),
                    lot.expires_at.map(Timestamp::micros),
                    lot.voided_at.map(Timestamp::micros),
                    lot.created_at.micros(),
                    lot.metadata.as_str(),
                ])?;
            }
        }
        if !staged.holds.is_empty() {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO holds (id, account_id, amount, legs, status, committed_amount, \
                                    created_at, expires_at, resolved_at, metadata) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                     committed_amount = excluded.committed_amount, \
                     resolved_at = excluded.resolved_at",
            )?;
            for (account, id) in &staged.holds {
                let hold = self.books[account].hold(*id).expect("staged hold");
                upsert.execute(params![
                    hold.id.0,
                    hold.account.as_str(),
                    hold.amount.micros(),
                    encode_legs(&hold.legs),
                    hold.status.code(),
                    hold.committed_amount.map(Amount::micros),
                    hold.created_at.micros(),
                    hold.expires_at.micros(),
                    hold.resolved_at.map(Timestamp::micros),
                    hold.metadata.as_str(),
                ])?;
            }
        }
        if !staged.transactions.is_empty() {
            let mut insert = conn.prepare_cached(
                "INSERT INTO transactions (id, account_id, kind, amount, usage, balance_after, \
                     postings, sources, created_at, metadata, lot_id, hold_id, refund_of, \
                     feature_id, quantity) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for tx in &staged.transactions {
                let usage = tx
                    .posted_to(LedgerAccount::Usage)
                    .unwrap_or_default()
                    .micros();
                insert.execute(params![
                    tx.id.0,
                    tx.account.as_str(),
                    tx.kind.code(),
                    tx.amount.micros(),
                    usage,
                    tx.balance_after.micros(),
                    encode_postings(&tx.postings),
                    encode_sources(&tx.sources),
                    tx.created_at.micros(),
                    tx.metadata.as_str(),
                    tx.lot.map(|l| l.0),
                    tx.hold.map(|h| h.0),
                    tx.refund_of.map(|t| t.0),
                    tx.feature.as_ref().map(|(f, _)| f.as_str()),
                    tx.feature.as_ref().map(|(_, q)| q.micros()),
                ])?;
            }
        }
        if !staged.features.is_empty() {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO features (id, credits_per_unit, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET credits_per_unit = excluded.credits_per_unit, \
                                                updated_at = excluded.updated_at",
            )?;
            for f in &staged.features {
                upsert.execute(params![
                    f.id.as_str(),
                    f.credits_per_unit.micros(),
                    f.updated_at.micros()
                ])?;
            }
        }
        if !staged.idempotency.is_empty() {
            let mut insert = conn.prepare_cached(
                "INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (key, (fingerprint, response)) in &staged.idempotency {
                insert.execute(params![
                    key,
                    fingerprint,
                    response.status,
                    response.body,
                    now.micros()
                ])?;
            }
        }
        Ok(())
    }
}

fn find(written: &[Transaction], pred: impl Fn(&Transaction) -> bool) -> Transaction {
    written
        .iter()
        .find(|tx| pred(tx))
        .expect("the operation wrote its transaction")
        .clone()
}
