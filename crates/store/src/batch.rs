//! One batch of commands decided against the books it touches: the logic
//! both stores share. A store hands the batch a [`Source`] to read from inside
//! its database transaction, then writes what [`Batch::writes`] lists.

use std::collections::{HashMap, HashSet};

use ledger::{
    Account, AccountId, Amount, Book, ExternalId, Feature, FeatureId, Hold, HoldId, IdSource,
    LedgerAccount, Lot, LotId, Origin, Reject, Timestamp, Transaction, TxId, TxKind, Usage,
};
use sha2::{Digest, Sha256};

use crate::records::{Record, RecordWrite, decide_write};
use crate::{Charge, Command, Executed, Op, Outcome, Refused, StoreError, StoredResponse};

#[cfg(test)]
mod tests;

/// Where a batch reads what it needs, inside the store's open transaction.
pub trait Source {
    /// The account's book: its lots with credits left, its pending holds and
    /// the lots they escrowed from.
    fn book(&mut self, account: &AccountId) -> Result<Option<Book>, StoreError>;
    /// One hold, whatever its status.
    fn hold(&mut self, id: HoldId) -> Result<Option<Hold>, StoreError>;
    /// One lot, even an empty one.
    fn lot(&mut self, id: LotId) -> Result<Option<Lot>, StoreError>;
    /// One transaction.
    fn transaction(&mut self, id: TxId) -> Result<Option<Transaction>, StoreError>;
    /// How much refunds have handed back of a usage transaction.
    fn refunded(&mut self, id: TxId) -> Result<Amount, StoreError>;
    /// One feature.
    fn feature(&mut self, id: &FeatureId) -> Result<Option<Feature>, StoreError>;
    /// The stored fingerprint and response of an idempotency key.
    fn idempotent_response(
        &mut self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, StoredResponse)>, StoreError>;
    /// The account's transaction carrying an external id, with the digest
    /// of the write that made it.
    fn external(
        &mut self,
        account: &AccountId,
        id: &ExternalId,
    ) -> Result<Option<(Transaction, String)>, StoreError>;
    /// One record, with its lookups.
    fn record(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError>;
    /// The id of the record of `kind` holding `value` under the unique
    /// lookup `name`.
    fn lookup_owner(
        &mut self,
        kind: &str,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError>;
}

/// A record's kind and id.
pub type RecordKey = (String, String);

/// What a decided batch must write.
pub struct Writes<'a> {
    /// Accounts opened in the batch.
    pub new_accounts: Vec<&'a Account>,
    /// Existing accounts that changed (their debt, name, metadata or
    /// overdraft limit).
    pub accounts: Vec<&'a Account>,
    /// Lots created or changed.
    pub lots: Vec<&'a Lot>,
    /// Which of `lots` this batch created.
    pub new_lots: &'a HashSet<LotId>,
    /// Each loaded lot's `live` flag and void instant as loaded.
    pub lots_as_loaded: &'a HashMap<LotId, (bool, Option<Timestamp>)>,
    /// Holds created or changed.
    pub holds: Vec<&'a Hold>,
    /// New transactions, in id order of creation.
    pub transactions: &'a [Transaction],
    /// Features set.
    pub features: &'a [Feature],
    /// Gateway calls recorded.
    pub calls: &'a [crate::usage::Call],
    /// Idempotency keys with the request fingerprint and the response to keep.
    pub idempotency: Vec<(&'a str, &'a [u8], &'a StoredResponse)>,
    /// The digest of the write behind each new transaction with an external id.
    pub external_digests: &'a HashMap<TxId, String>,
    /// Records written, each as it now stands (`None`: deleted).
    pub records: Vec<(&'a RecordKey, Option<&'a Record>)>,
}

impl Writes<'_> {
    /// True when `lot` existed before the batch and the batch left its
    /// `live` flag (credits left or not) and its void instant as they were,
    /// so that writing it touches no index.
    pub fn keeps_flags(&self, lot: &Lot) -> bool {
        !self.new_lots.contains(&lot.id)
            && self
                .lots_as_loaded
                .get(&lot.id)
                .is_some_and(|(live, voided)| {
                    *live == lot.remaining.is_positive() && *voided == lot.voided_at
                })
    }

    /// The source of each new transaction's lot when it is a grant, in the
    /// order of `transactions`: what the journal's `grant_source` column
    /// keeps so that grants are listed by source from an index.
    pub fn grant_sources(&self) -> Vec<Option<&'static str>> {
        let new_lots: HashMap<LotId, ledger::Source> = self
            .lots
            .iter()
            .filter(|lot| self.new_lots.contains(&lot.id))
            .map(|lot| (lot.id, lot.source))
            .collect();
        self.transactions
            .iter()
            .map(|tx| match (tx.kind, tx.lot) {
                (TxKind::Grant, Some(lot)) => new_lots.get(&lot).map(|s| s.code()),
                _ => None,
            })
            .collect()
    }
}

/// Everything one batch has loaded and decided, written at its end.
#[derive(Default)]
pub struct Batch {
    books: HashMap<AccountId, Book>,
    staged: Staged,
    features: HashMap<FeatureId, Option<Feature>>,
    /// Every record the batch has read or written, as it now stands.
    records: HashMap<RecordKey, Option<Record>>,
    /// Who holds each unique lookup value the batch has looked at:
    /// (kind, name, value) to record id.
    owners: HashMap<(String, String, String), Option<String>>,
}

#[derive(Default)]
struct Staged {
    new_accounts: HashSet<AccountId>,
    accounts: HashSet<AccountId>,
    lots: HashSet<(AccountId, LotId)>,
    new_lots: HashSet<LotId>,
    holds: HashSet<(AccountId, HoldId)>,
    /// Which account each lot and hold seen in this batch belongs to.
    lot_accounts: HashMap<LotId, AccountId>,
    /// Whether each lot loaded held credits, and when it was voided, as
    /// loaded: a store may write changes that keep both differently.
    lots_as_loaded: HashMap<LotId, (bool, Option<Timestamp>)>,
    hold_accounts: HashMap<HoldId, AccountId>,
    transactions: Vec<Transaction>,
    features: Vec<Feature>,
    calls: Vec<crate::usage::Call>,
    idempotency: HashMap<String, (Vec<u8>, StoredResponse)>,
    /// External ids used by the batch's new transactions.
    externals: HashMap<(AccountId, ExternalId), (TxId, String)>,
    external_digests: HashMap<TxId, String>,
    records: HashSet<RecordKey>,
}

impl Staged {
    fn note_loaded(&mut self, lot: &Lot) {
        self.lots_as_loaded
            .entry(lot.id)
            .or_insert((lot.remaining.is_positive(), lot.voided_at));
    }

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
                // A grant creates its lot; so do a refund and a rollover
                // that name one.
                if matches!(tx.kind, TxKind::Grant | TxKind::Refund | TxKind::Rollover) {
                    self.new_lots.insert(lot);
                }
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
    /// Decides one command; a store error fails the whole batch.
    pub fn execute(
        &mut self,
        src: &mut dyn Source,
        command: &Command,
        now: Timestamp,
        ids: &mut dyn IdSource,
    ) -> Result<Executed, StoreError> {
        if let Some(key) = &command.idempotency {
            let seen = match self.staged.idempotency.get(&key.key) {
                Some(seen) => Some(seen.clone()),
                None => src.idempotent_response(&key.key)?,
            };
            if let Some((fingerprint, response)) = seen {
                return Ok(if fingerprint == key.fingerprint {
                    Executed::Replayed(response)
                } else {
                    Executed::Fresh(Err(Reject::IdempotencyConflict.into()))
                });
            }
        }
        let executed = self.decide_command(src, command, now, ids)?;
        if let Some(key) = &command.idempotency {
            let result = match &executed {
                Executed::Fresh(result) => Some(result.clone()),
                Executed::Existing(outcome) => Some(Ok(outcome.clone())),
                Executed::Replayed(_) => None,
            };
            // A bug is not an answer worth replaying; everything else is.
            if let Some(result) = result
                && !matches!(result, Err(Refused::Ledger(Reject::Inconsistent(_))))
            {
                let response = (key.render)(&result);
                self.staged
                    .idempotency
                    .insert(key.key.clone(), (key.fingerprint.clone(), response));
            }
        }
        Ok(executed)
    }

    /// Decides a command: its external id first (a write applied before is
    /// answered as it was, and nothing of the command applies), then its
    /// record writes (one at the wrong version refuses the command), then
    /// its operation; the records are written only if the operation applies.
    fn decide_command(
        &mut self,
        src: &mut dyn Source,
        command: &Command,
        now: Timestamp,
        ids: &mut dyn IdSource,
    ) -> Result<Executed, StoreError> {
        let external = external_of(&command.op);
        if let Some((account, id, digest)) = &external {
            let seen = match self.staged.externals.get(&(account.clone(), id.clone())) {
                Some((tx, digest)) => Some((
                    self.staged
                        .transaction(*tx)
                        .expect("a staged external id's transaction")
                        .clone(),
                    digest.clone(),
                )),
                None => src.external(account, id)?,
            };
            if let Some((tx, first)) = seen {
                if &first != digest {
                    return Ok(Executed::Fresh(Err(Reject::ExternalIdConflict.into())));
                }
                return Ok(Executed::Existing(self.outcome_of(src, tx, now)?));
            }
        }
        // Most commands write no record: they skip the planning, and its
        // allocations, altogether.
        let plan = if command.records.is_empty() && !matches!(command.op, Op::Record(_)) {
            RecordPlan::default()
        } else {
            let own = match &command.op {
                Op::Record(write) => Some(write),
                _ => None,
            };
            let writes: Vec<&RecordWrite> = own.into_iter().chain(&command.records).collect();
            match self.plan_records(src, &writes, now)? {
                Ok(plan) => plan,
                Err(refused) => return Ok(Executed::Fresh(Err(refused))),
            }
        };
        let result = match &command.op {
            Op::Record(write) => Ok(match plan.records.get(&key_of(write)) {
                Some(Some(record)) => Outcome::RecordPut(record.clone()),
                _ => Outcome::RecordDeleted,
            }),
            op => self.decide(src, op, now, ids)?.map_err(Refused::Ledger),
        };
        if let Ok(outcome) = &result {
            if let Some((account, id, digest)) = external {
                let tx = match outcome {
                    Outcome::Granted { tx, .. }
                    | Outcome::Consumed { tx, .. }
                    | Outcome::ClawedBack { tx, .. } => tx.id,
                    Outcome::Renewed { tx: Some(tx), .. } => tx.id,
                    _ => unreachable!(
                        "only grants, consumes, claw-backs and renewals carry external ids"
                    ),
                };
                self.staged.external_digests.insert(tx, digest.clone());
                self.staged.externals.insert((account, id), (tx, digest));
            }
            if let Some(call) = &command.call {
                let mut call = (**call).clone();
                call.at = now;
                call.tx = match outcome {
                    Outcome::Committed { tx, .. }
                    | Outcome::Released { tx, .. }
                    | Outcome::Consumed { tx, .. }
                    | Outcome::Held { tx, .. } => Some(tx.id),
                    _ => None,
                };
                self.staged.calls.push(call);
            }
            self.staged.records.extend(plan.records.keys().cloned());
            self.records.extend(plan.records);
            self.owners.extend(plan.owners);
        }
        Ok(Executed::Fresh(result))
    }

    /// Decides record writes in order against the records as the batch
    /// sees them, without changing anything yet.
    fn plan_records(
        &mut self,
        src: &mut dyn Source,
        writes: &[&RecordWrite],
        now: Timestamp,
    ) -> Result<Result<RecordPlan, Refused>, StoreError> {
        let mut plan = RecordPlan::default();
        for write in writes {
            write.check()?;
            let key = key_of(write);
            let current = match plan.records.get(&key) {
                Some(current) => current.clone(),
                None => self.record(src, &key)?,
            };
            let next = match decide_write(write, current.as_ref(), now) {
                Ok(next) => next,
                Err(refused) => return Ok(Err(refused)),
            };
            let (kind, id) = (&key.0, &key.1);
            for lookup in next.iter().flat_map(|r| &r.lookups).filter(|l| l.unique) {
                let owner_key = (kind.clone(), lookup.name.clone(), lookup.value.clone());
                let owner = match plan.owners.get(&owner_key) {
                    Some(owner) => owner.clone(),
                    None => self.owner(src, &owner_key)?,
                };
                if owner.is_some_and(|owner| &owner != id) {
                    return Ok(Err(Refused::LookupTaken {
                        kind: kind.clone(),
                        name: lookup.name.clone(),
                    }));
                }
            }
            for old in current.iter().flat_map(|r| &r.lookups).filter(|l| l.unique) {
                plan.owners
                    .insert((kind.clone(), old.name.clone(), old.value.clone()), None);
            }
            for new in next.iter().flat_map(|r| &r.lookups).filter(|l| l.unique) {
                plan.owners.insert(
                    (kind.clone(), new.name.clone(), new.value.clone()),
                    Some(id.clone()),
                );
            }
            plan.records.insert(key, next);
        }
        Ok(Ok(plan))
    }

    fn record(
        &mut self,
        src: &mut dyn Source,
        key: &RecordKey,
    ) -> Result<Option<Record>, StoreError> {
        if let Some(record) = self.records.get(key) {
            return Ok(record.clone());
        }
        let record = src.record(&key.0, &key.1)?;
        self.records.insert(key.clone(), record.clone());
        Ok(record)
    }

    fn owner(
        &mut self,
        src: &mut dyn Source,
        key: &(String, String, String),
    ) -> Result<Option<String>, StoreError> {
        if let Some(owner) = self.owners.get(key) {
            return Ok(owner.clone());
        }
        let owner = src.lookup_owner(&key.0, &key.1, &key.2)?;
        self.owners.insert(key.clone(), owner.clone());
        Ok(owner)
    }

    /// What a grant, consume or claw-back answered when it was applied: its
    /// transaction, with the lot or the balance as they stand now.
    fn outcome_of(
        &mut self,
        src: &mut dyn Source,
        tx: Transaction,
        now: Timestamp,
    ) -> Result<Outcome, StoreError> {
        let account = tx.account.clone();
        self.load_owner(src, &account, tx.id)?;
        match (tx.kind, tx.lot) {
            (TxKind::Grant, Some(lot)) => {
                self.load_lot(src, lot)?;
                let lot = self.books[&account]
                    .lot(lot)
                    .ok_or_else(|| StoreError::Corrupt(format!("{lot} of {} is missing", tx.id)))?
                    .clone();
                Ok(Outcome::Granted { lot, tx })
            }
            (TxKind::Consume, _) => Ok(Outcome::Consumed {
                balance: self.books[&account].balance(now),
                tx,
            }),
            (TxKind::ClawBack, _) => Ok(Outcome::ClawedBack {
                balance: self.books[&account].balance(now),
                tx,
            }),
            _ => Err(StoreError::Corrupt(format!(
                "{} carries an external id but is not a grant, a consume or a claw-back",
                tx.id
            ))),
        }
    }

    /// Loads the account's book into the batch, once.
    fn load(&mut self, src: &mut dyn Source, account: &AccountId) -> Result<bool, StoreError> {
        if self.books.contains_key(account) {
            return Ok(true);
        }
        match src.book(account)? {
            Some(book) => {
                for lot in book.lots() {
                    self.staged.lot_accounts.insert(lot.id, account.clone());
                    self.staged.note_loaded(lot);
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
    ) -> (Result<T, Reject>, &Book, &[Transaction]) {
        let book = self.books.get_mut(account).expect("book loaded");
        let mut out = Vec::new();
        let result = op(book, &mut out);
        let first = self.staged.transactions.len();
        self.staged.record(out);
        (
            result,
            &self.books[account],
            &self.staged.transactions[first..],
        )
    }

    fn decide(
        &mut self,
        src: &mut dyn Source,
        op: &Op,
        now: Timestamp,
        ids: &mut dyn IdSource,
    ) -> Result<Result<Outcome, Reject>, StoreError> {
        let missing = |what: Reject| Ok(Err(what));
        match op {
            Op::CreateAccount {
                account: new,
                grants,
            } => {
                if self.books.contains_key(&new.id) || src.book(&new.id)?.is_some() {
                    return missing(Reject::AccountExists);
                }
                let account = new.clone().open(now);
                let mut book = Book::new(account.clone(), Vec::new(), Vec::new())
                    .map_err(|r| StoreError::Internal(r.to_string()))?;
                // The opening grants apply to the new book before it is
                // staged, so that a refused one leaves no account behind.
                let mut out = Vec::new();
                let mut lots = Vec::with_capacity(grants.len());
                for grant in grants {
                    match book.grant(grant.clone(), now, ids, &mut out) {
                        Ok(lot) => lots.push(lot),
                        Err(reject) => return Ok(Err(reject)),
                    }
                }
                let lots: Vec<Lot> = lots
                    .into_iter()
                    .map(|id| book.lot(id).expect("granted lot").clone())
                    .collect();
                // An opening grant's external id is kept as a grant's would
                // be, so that the same cause granted later is this grant.
                for (grant, lot) in grants.iter().zip(&lots) {
                    let (Some(external), Some(tx)) = (
                        &grant.external_id,
                        out.iter().find(|tx: &&Transaction| {
                            tx.kind == TxKind::Grant && tx.lot == Some(lot.id)
                        }),
                    ) else {
                        continue;
                    };
                    let digest = digest(&format!("grant\n{}", grant_content(grant)));
                    self.staged.external_digests.insert(tx.id, digest.clone());
                    self.staged
                        .externals
                        .insert((account.id.clone(), external.clone()), (tx.id, digest));
                }
                self.books.insert(account.id.clone(), book);
                self.staged.new_accounts.insert(account.id.clone());
                self.staged.record(out);
                Ok(Ok(Outcome::AccountCreated { account, lots }))
            }
            Op::Renew { account, renewal } => {
                if !self.load(src, account)? {
                    return missing(Reject::AccountNotFound);
                }
                // A changed overdraft limit is written with the account.
                if renewal.overdraft_limit.is_some() && !self.staged.new_accounts.contains(account)
                {
                    self.staged.accounts.insert(account.clone());
                }
                let (result, book, written) = self.run(account, |book, out| {
                    book.renew(renewal.clone(), now, ids, out)
                });
                Ok(result.map(|renewed| Outcome::Renewed {
                    lot: renewed
                        .lot
                        .map(|id| book.lot(id).expect("renewed lot").clone()),
                    tx: renewed.lot.map(|id| {
                        find(written, |tx| tx.kind == TxKind::Grant && tx.lot == Some(id))
                    }),
                    balance: book.balance(now),
                    renewed,
                }))
            }
            Op::UpdateAccount { account, patch } => {
                if !self.load(src, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let book = self.books.get_mut(account).expect("book loaded");
                book.account.apply(patch);
                let updated = book.account.clone();
                if !self.staged.new_accounts.contains(account) {
                    self.staged.accounts.insert(account.clone());
                }
                Ok(Ok(Outcome::AccountUpdated(updated)))
            }
            Op::Grant { account, grant } => {
                if !self.load(src, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let (result, book, written) = self.run(account, |book, out| {
                    book.grant(grant.clone(), now, ids, out)
                });
                Ok(result.map(|lot| Outcome::Granted {
                    lot: book.lot(lot).expect("granted lot").clone(),
                    tx: find(written, |tx| {
                        tx.kind == TxKind::Grant && tx.lot == Some(lot)
                    }),
                }))
            }
            Op::Consume {
                account,
                charge,
                metadata,
                external_id,
            } => {
                let (amount, feature) = match charge {
                    Charge::Amount(amount) => (*amount, None),
                    Charge::Feature { feature, quantity } => {
                        let Some(priced) = self.feature(src, feature)? else {
                            return missing(Reject::FeatureNotFound);
                        };
                        match priced.price(*quantity) {
                            Ok(amount) => (amount, Some((feature.clone(), *quantity))),
                            Err(reject) => return Ok(Err(reject)),
                        }
                    }
                };
                if !self.load(src, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let usage = Usage {
                    amount,
                    feature,
                    metadata: metadata.clone(),
                    external_id: external_id.clone(),
                };
                let (result, book, written) =
                    self.run(account, |book, out| book.consume(usage, now, ids, out));
                Ok(result.map(|id| Outcome::Consumed {
                    tx: find(written, |tx| tx.id == id),
                    balance: book.balance(now),
                }))
            }
            Op::Hold {
                account,
                amount,
                ttl,
                metadata,
            } => {
                if !self.load(src, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let (result, book, written) = self.run(account, |book, out| {
                    book.place_hold(*amount, *ttl, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|id| Outcome::Held {
                    hold: book.hold(id).expect("placed hold").clone(),
                    tx: find(written, |tx| tx.kind == TxKind::Hold && tx.hold == Some(id)),
                    balance: book.balance(now),
                }))
            }
            Op::Commit {
                hold,
                amount,
                metadata,
            } => {
                let Some(account) = self.load_hold(src, *hold)? else {
                    return missing(Reject::HoldNotFound);
                };
                let (result, book, written) = self.run(&account, |book, out| {
                    book.commit(*hold, *amount, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|id| Outcome::Committed {
                    hold: book.hold(*hold).expect("committed hold").clone(),
                    tx: find(written, |tx| tx.id == id),
                    balance: book.balance(now),
                }))
            }
            Op::Release { hold, metadata } => {
                let Some(account) = self.load_hold(src, *hold)? else {
                    return missing(Reject::HoldNotFound);
                };
                let (result, book, written) = self.run(&account, |book, out| {
                    book.release(*hold, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|id| Outcome::Released {
                    hold: book.hold(*hold).expect("released hold").clone(),
                    tx: find(written, |tx| tx.id == id),
                    balance: book.balance(now),
                }))
            }
            Op::Void { lot, metadata } => {
                let Some(account) = self.load_lot(src, *lot)? else {
                    return missing(Reject::GrantNotFound);
                };
                let (result, book, written) = self.run(&account, |book, out| {
                    book.void(*lot, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|id| Outcome::Voided {
                    lot: book.lot(*lot).expect("voided lot").clone(),
                    tx: find(written, |tx| tx.id == id),
                }))
            }
            Op::ClawBack {
                account,
                grant,
                amount,
                metadata,
                external_id,
            } => {
                if !self.load(src, account)? {
                    return missing(Reject::AccountNotFound);
                }
                // The grant is found by its external id, as the batch sees
                // them: one granted earlier in this batch included.
                let granted = match self.staged.externals.get(&(account.clone(), grant.clone())) {
                    Some((tx, _)) => self.staged.transaction(*tx).cloned(),
                    None => src.external(account, grant)?.map(|(tx, _)| tx),
                };
                let Some(lot) = granted
                    .filter(|tx| tx.kind == TxKind::Grant)
                    .and_then(|tx| tx.lot)
                else {
                    return missing(Reject::GrantNotFound);
                };
                if self.load_lot(src, lot)?.as_ref() != Some(account) {
                    return Err(StoreError::Corrupt(format!(
                        "the lot {lot} of grant {grant} is not one of {account}'s"
                    )));
                }
                let (result, book, written) = self.run(account, |book, out| {
                    book.claw_back(
                        lot,
                        *amount,
                        metadata.clone(),
                        external_id.clone(),
                        now,
                        ids,
                        out,
                    )
                });
                Ok(result.map(|id| Outcome::ClawedBack {
                    tx: find(written, |tx| tx.id == id),
                    balance: book.balance(now),
                }))
            }
            Op::Refund {
                tx,
                amount,
                metadata,
            } => {
                let original = match self.staged.transaction(*tx) {
                    Some(original) => Some(original.clone()),
                    None => src.transaction(*tx)?,
                };
                let Some(original) = original else {
                    return missing(Reject::TransactionNotFound);
                };
                let account = original.account.clone();
                self.load_owner(src, &account, tx)?;
                for share in &original.sources {
                    if let Origin::Lot(lot) = share.origin {
                        self.load_lot(src, lot)?;
                    }
                }
                let already = src
                    .refunded(*tx)?
                    .checked_add(self.staged.refunded_in_batch(*tx))
                    .ok_or_else(|| StoreError::Corrupt(format!("{tx} refunds overflow")))?;
                let (result, _, written) = self.run(&account, |book, out| {
                    book.refund(&original, already, *amount, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|done| Outcome::Refunded {
                    tx: find(written, |tx| tx.id == done.tx),
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
                if !self.load(src, account)? {
                    return missing(Reject::AccountNotFound);
                }
                let (result, _, written) =
                    self.run(account, |book, out| book.settle(now, ids, out));
                Ok(result.map(|()| Outcome::Settled {
                    transactions: written.len(),
                }))
            }
            Op::Record(_) => unreachable!("decided by decide_command"),
        }
    }

    fn feature(
        &mut self,
        src: &mut dyn Source,
        id: &FeatureId,
    ) -> Result<Option<Feature>, StoreError> {
        if let Some(feature) = self.features.get(id) {
            return Ok(feature.clone());
        }
        let feature = src.feature(id)?;
        self.features.insert(id.clone(), feature.clone());
        Ok(feature)
    }

    /// Loads the book of `account`, which `owned` (a transaction, a hold, a
    /// lot) names as its own; a stored row whose account is missing means
    /// the store is corrupt.
    fn load_owner(
        &mut self,
        src: &mut dyn Source,
        account: &AccountId,
        owned: impl std::fmt::Display,
    ) -> Result<(), StoreError> {
        if self.load(src, account)? {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "{owned} belongs to a missing account"
            )))
        }
    }

    /// Loads the book a hold belongs to, with the hold in it even when it is
    /// no longer pending; `None` when there is no such hold.
    fn load_hold(
        &mut self,
        src: &mut dyn Source,
        hold: HoldId,
    ) -> Result<Option<AccountId>, StoreError> {
        if let Some(account) = self.staged.hold_accounts.get(&hold) {
            return Ok(Some(account.clone()));
        }
        let Some(stored) = src.hold(hold)? else {
            return Ok(None);
        };
        let account = stored.account.clone();
        self.load_owner(src, &account, hold)?;
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
    fn load_lot(
        &mut self,
        src: &mut dyn Source,
        lot: LotId,
    ) -> Result<Option<AccountId>, StoreError> {
        if let Some(account) = self.staged.lot_accounts.get(&lot) {
            return Ok(Some(account.clone()));
        }
        let Some(stored) = src.lot(lot)? else {
            return Ok(None);
        };
        let account = stored.account.clone();
        self.load_owner(src, &account, lot)?;
        let book = self.books.get_mut(&account).expect("book loaded");
        if book.lot(lot).is_none() {
            self.staged.note_loaded(&stored);
        }
        book.load_lot(stored)
            .map_err(|r| StoreError::Corrupt(r.to_string()))?;
        self.staged.lot_accounts.insert(lot, account.clone());
        Ok(Some(account))
    }

    /// The books the batch loaded, as it left them.
    pub fn into_books(self) -> impl Iterator<Item = Book> {
        self.books.into_values()
    }

    /// Everything the batch decided, for the store to write.
    pub fn writes(&self) -> Writes<'_> {
        let staged = &self.staged;
        Writes {
            new_accounts: staged
                .new_accounts
                .iter()
                .map(|id| &self.books[id].account)
                .collect(),
            accounts: staged
                .accounts
                .iter()
                .filter(|id| !staged.new_accounts.contains(*id))
                .map(|id| &self.books[id].account)
                .collect(),
            lots: staged
                .lots
                .iter()
                .map(|(account, id)| self.books[account].lot(*id).expect("staged lot"))
                .collect(),
            new_lots: &staged.new_lots,
            lots_as_loaded: &staged.lots_as_loaded,
            holds: staged
                .holds
                .iter()
                .map(|(account, id)| self.books[account].hold(*id).expect("staged hold"))
                .collect(),
            transactions: &staged.transactions,
            calls: &staged.calls,
            features: &staged.features,
            idempotency: staged
                .idempotency
                .iter()
                .map(|(key, (fingerprint, response))| {
                    (key.as_str(), fingerprint.as_slice(), response)
                })
                .collect(),
            external_digests: &staged.external_digests,
            records: staged
                .records
                .iter()
                .map(|key| (key, self.records[key].as_ref()))
                .collect(),
        }
    }
}

/// Record writes decided but not yet applied to the batch.
#[derive(Default)]
struct RecordPlan {
    records: HashMap<RecordKey, Option<Record>>,
    owners: HashMap<(String, String, String), Option<String>>,
}

fn key_of(write: &RecordWrite) -> RecordKey {
    let (kind, id) = write.key();
    (kind.to_owned(), id.to_owned())
}

/// The account, external id and content digest of a grant, consume or
/// claw-back that names an external id. Two writes with one external id are
/// the same write when their digests agree: the digest covers every field
/// the caller sent and nothing the store derived (an instant, a price).
fn external_of(op: &Op) -> Option<(AccountId, ExternalId, String)> {
    let (account, id, content) = match op {
        Op::Grant { account, grant } => {
            let id = grant.external_id.as_ref()?;
            (account, id, format!("grant\n{}", grant_content(grant)))
        }
        // A renewal is the period's grant: the same period renewed twice,
        // by a job run twice or on two nodes, is one renewal.
        Op::Renew { account, renewal } => {
            let grant = renewal.grant.as_ref()?;
            let id = grant.external_id.as_ref()?;
            (account, id, format!("renew\n{}", grant_content(grant)))
        }
        Op::Consume {
            account,
            charge,
            metadata,
            external_id,
        } => {
            let id = external_id.as_ref()?;
            let charge = match charge {
                Charge::Amount(amount) => format!("amount\n{amount}"),
                Charge::Feature { feature, quantity } => format!("feature\n{feature}\n{quantity}"),
            };
            let content = format!("consume\n{charge}\n{}", metadata.as_str());
            (account, id, content)
        }
        Op::ClawBack {
            account,
            grant,
            amount,
            metadata,
            external_id,
        } => {
            let id = external_id.as_ref()?;
            let content = format!("claw_back\n{grant}\n{amount}\n{}", metadata.as_str());
            (account, id, content)
        }
        _ => return None,
    };
    Some((account.clone(), id.clone(), digest(&content)))
}

/// The digest a write's content is kept under: the first 128 bits of its
/// SHA-256, as hex.
fn digest(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What a caller sent in a grant, for its digest (who sent it is not part
/// of it: the same cause sent by another key is the same grant).
fn grant_content(grant: &ledger::NewGrant) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}",
        grant.amount,
        grant.source.code(),
        grant.priority.map_or(String::new(), |p| p.to_string()),
        optional_instant(grant.effective_at),
        optional_instant(grant.expires_at),
        grant.metadata.as_str(),
        grant.reason.as_deref().unwrap_or(""),
    )
}

fn optional_instant(at: Option<Timestamp>) -> String {
    at.map_or(String::new(), |t| t.micros().to_string())
}

fn find(written: &[Transaction], pred: impl Fn(&Transaction) -> bool) -> Transaction {
    written
        .iter()
        .find(|tx| pred(tx))
        .expect("the operation wrote its transaction")
        .clone()
}
