//! One batch of commands decided against the books it touches: the logic
//! both stores share. A store hands the batch a [`Source`] to read from inside
//! its database transaction, then writes what [`Batch::writes`] lists.

use std::collections::{HashMap, HashSet};

use ledger::{
    Account, AccountId, Amount, Book, Feature, FeatureId, Hold, HoldId, IdSource, LedgerAccount,
    Lot, LotId, Origin, Reject, Timestamp, Transaction, TxId, TxKind,
};

use crate::{Charge, Command, Executed, Op, Outcome, StoreError, StoredResponse};

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
}

/// What a decided batch must write.
pub struct Writes<'a> {
    /// Accounts opened in the batch.
    pub new_accounts: Vec<&'a Account>,
    /// Existing accounts whose debt changed.
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
    /// Idempotency keys with the request fingerprint and the response to keep.
    pub idempotency: Vec<(&'a str, &'a [u8], &'a StoredResponse)>,
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
}

/// Everything one batch has loaded and decided, written at its end.
#[derive(Default)]
pub struct Batch {
    books: HashMap<AccountId, Book>,
    staged: Staged,
    features: HashMap<FeatureId, Option<Feature>>,
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
    idempotency: HashMap<String, (Vec<u8>, StoredResponse)>,
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
                // A grant creates its lot; so does a refund that names one.
                if matches!(tx.kind, TxKind::Grant | TxKind::Refund) {
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
                    Executed::Fresh(Err(Reject::IdempotencyConflict))
                });
            }
        }
        let result = self.decide(src, &command.op, now, ids)?;
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
            Op::CreateAccount(new) => {
                if self.books.contains_key(&new.id) || src.book(&new.id)?.is_some() {
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
                let (result, book, written) = self.run(account, |book, out| {
                    book.consume(amount, metadata.clone(), feature, now, ids, out)
                });
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
                let (result, book, _) = self.run(account, |book, out| {
                    book.place_hold(*amount, *ttl, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|id| Outcome::Held {
                    hold: book.hold(id).expect("placed hold").clone(),
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
                let (result, book, _) = self.run(&account, |book, out| {
                    book.release(*hold, metadata.clone(), now, ids, out)
                });
                Ok(result.map(|_| Outcome::Released {
                    hold: book.hold(*hold).expect("released hold").clone(),
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
                if !self.load(src, &account)? {
                    return Err(StoreError::Corrupt(format!(
                        "{tx} belongs to a missing account"
                    )));
                }
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
        if !self.load(src, &account)? {
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
        if !self.load(src, &account)? {
            return Err(StoreError::Corrupt(format!(
                "{lot} belongs to a missing account"
            )));
        }
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
            features: &staged.features,
            idempotency: staged
                .idempotency
                .iter()
                .map(|(key, (fingerprint, response))| {
                    (key.as_str(), fingerprint.as_slice(), response)
                })
                .collect(),
        }
    }
}

fn find(written: &[Transaction], pred: impl Fn(&Transaction) -> bool) -> Transaction {
    written
        .iter()
        .find(|tx| pred(tx))
        .expect("the operation wrote its transaction")
        .clone()
}
