//! Round trips 1 and 2 of a batch: look up what the commands name, lock the
//! accounts, records and unique values involved, and read what the locks
//! protect, so that the batch is then decided with no IO.

use std::collections::{BTreeSet, HashMap, HashSet};

use ledger::{
    Account, AccountId, Amount, Book, ExternalId, Feature, FeatureId, Hold, HoldId, IdSource, Lot,
    LotId, Origin, Timestamp, Transaction, TxId,
};
use tokio_postgres::{Client, Row, Statement};

use super::named::Named;
use super::pipeline::Pipeline;
use super::statements::{LockedReads, Lookups};
use super::{Failure, lock_keys};
use crate::batch::Source;
use crate::postgres::read::{assemble_books, missing_leg_lots, stored_responses};
use crate::records::{Lookup, Record};
use crate::rows::{
    TX_COLUMNS, account_from_row, feature_from_row, hold_from_row, lot_from_row, record_from_row,
    tx_from_row,
};
use crate::{StoreError, StoredResponse};

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// What round trip 1 found, and what it says round trip 2 must read.
pub(super) struct Found {
    /// Whether round trip 1 sent anything, and so began the transaction.
    pub begun: bool,
    /// The idempotency keys this batch claimed: no answer is kept under them yet.
    pub claimed: HashSet<String>,
    /// The answers kept under the other keys, with their fingerprints.
    stored: HashMap<String, (Vec<u8>, StoredResponse)>,
    /// The accounts named, and those owning the holds, lots and
    /// transactions named.
    pub accounts: BTreeSet<String>,
    /// The transactions named.
    transactions: Vec<Transaction>,
    /// The lots named, and those the transactions named drew from.
    extra_lots: BTreeSet<i64>,
    /// The features named, `None` for those that do not exist.
    features: HashMap<FeatureId, Option<Feature>>,
}

/// The rows of round trip 1, each empty when its request was not needed.
struct LookupRows {
    claimed: Vec<Row>,
    stored: Vec<Row>,
    hold_owners: Vec<Row>,
    lot_owners: Vec<Row>,
    transactions: Vec<Row>,
    features: Vec<Row>,
}

/// Round trip 1, only when the commands name keys, holds, lots,
/// transactions or features: begins, claims the keys, looks them all up.
pub(super) async fn look_up(
    pg: &Client,
    st: &Lookups<Statement>,
    named: &Named,
    now: Timestamp,
) -> Result<Found, Failure> {
    let begun = !(named.keys.is_empty()
        && named.holds.is_empty()
        && named.lots.is_empty()
        && named.transactions.is_empty()
        && named.features.is_empty());
    let rows = send_lookups(pg, st, named, now, begun).await?;
    Ok(Found::of(named, rows, begun)?)
}

async fn send_lookups(
    pg: &Client,
    st: &Lookups<Statement>,
    named: &Named,
    now: Timestamp,
    begin: bool,
) -> Result<LookupRows, tokio_postgres::Error> {
    // Requests on one connection run in the order they are sent, and each
    // request below is sent when first polled, in order.
    let key_names: Vec<&str> = named.keys.iter().map(|(k, _)| k.as_str()).collect();
    let key_prints: Vec<&[u8]> = named.keys.iter().map(|(_, f)| f.as_slice()).collect();
    let holds: Vec<i64> = named.holds.iter().copied().collect();
    let lots: Vec<i64> = named.lots.iter().copied().collect();
    let txs: Vec<i64> = named.transactions.iter().copied().collect();
    let features: Vec<&str> = named.features.iter().map(String::as_str).collect();
    let now_micros = now.micros();
    let mut first = Pipeline::default();
    if begin {
        first.begin(pg);
    }
    let claim = (!key_names.is_empty()).then(|| {
        first.push(async {
            pg.query(&st.claim_keys, &[&key_names, &key_prints, &now_micros])
                .await
        })
    });
    let stored = (!key_names.is_empty())
        .then(|| first.push(async { pg.query(&st.stored_keys, &[&key_names]).await }));
    let hold_owners = (!holds.is_empty())
        .then(|| first.push(async { pg.query(&st.hold_owners, &[&holds]).await }));
    let lot_owners =
        (!lots.is_empty()).then(|| first.push(async { pg.query(&st.lot_owners, &[&lots]).await }));
    let transactions =
        (!txs.is_empty()).then(|| first.push(async { pg.query(&st.transactions, &[&txs]).await }));
    let feature_rows = (!features.is_empty())
        .then(|| first.push(async { pg.query(&st.features, &[&features]).await }));
    let mut answers = first.run().await?;
    Ok(LookupRows {
        claimed: answers.take(claim),
        stored: answers.take(stored),
        hold_owners: answers.take(hold_owners),
        lot_owners: answers.take(lot_owners),
        transactions: answers.take(transactions),
        features: answers.take(feature_rows),
    })
}

impl Found {
    fn of(named: &Named, rows: LookupRows, begun: bool) -> Result<Found, StoreError> {
        let claimed: HashSet<String> = rows
            .claimed
            .iter()
            .map(|r| r.try_get(0).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let mut stored = stored_responses(rows.stored)?;
        stored.retain(|key, _| !claimed.contains(key));
        let mut accounts = named.accounts.clone();
        for row in rows.hold_owners.iter().chain(&rows.lot_owners) {
            accounts.insert(row.try_get(1).map_err(corrupt)?);
        }
        let transactions: Vec<Transaction> = rows
            .transactions
            .iter()
            .map(tx_from_row)
            .collect::<Result<_, _>>()?;
        let mut extra_lots: BTreeSet<i64> = named.lots.clone();
        for tx in &transactions {
            accounts.insert(tx.account.to_string());
            for share in &tx.sources {
                if let Origin::Lot(lot) = share.origin {
                    extra_lots.insert(lot.0);
                }
            }
        }
        let mut features: HashMap<FeatureId, Option<Feature>> = named
            .features
            .iter()
            .filter_map(|f| FeatureId::parse(f).ok())
            .map(|f| (f, None))
            .collect();
        for row in &rows.features {
            let feature = feature_from_row(row)?;
            features.insert(feature.id.clone(), Some(feature));
        }
        Ok(Found {
            begun,
            claimed,
            stored,
            accounts,
            transactions,
            extra_lots,
            features,
        })
    }
}

/// The rows of round trip 2, each empty when its request was not needed.
struct LockedRows {
    accounts: Vec<Row>,
    lots: Vec<Row>,
    pending_holds: Vec<Row>,
    ids: Vec<Row>,
    named_holds: Vec<Row>,
    refunded: Vec<Row>,
    externals: Vec<Row>,
    external_lots: Vec<Row>,
    records: Vec<Row>,
    record_lookups: Vec<Row>,
    owners: Vec<Row>,
}

/// How many ids of each kind to draw with the locks.
#[derive(Clone, Copy)]
pub(super) struct IdsWanted {
    pub tx: i64,
    pub lot: i64,
    pub hold: i64,
}

impl IdsWanted {
    /// One transaction per command, one more per grant (a debt repayment)
    /// and one per account; settling an account that has expiries due
    /// needs more, found out when the batch is decided.
    fn estimate(commands: usize, named: &Named, found: &Found) -> IdsWanted {
        let tx = commands
            .saturating_add(named.lot_ids)
            .saturating_add(found.accounts.len());
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        IdsWanted {
            tx: count(tx),
            lot: count(named.lot_ids),
            hold: count(named.hold_ids),
        }
    }
}

/// Round trip 2: locks the accounts, records and unique values in one fixed
/// order, reads what the locks protect and draws fresh ids; then reads the
/// lots pending holds escrowed from that were not read yet, if any. Answers
/// the batch's source, its ids, and how many of each it asked for.
pub(super) async fn lock_and_read(
    pg: &Client,
    st: &LockedReads<Statement>,
    named: &Named,
    found: Found,
    commands: usize,
) -> Result<(Prefetched, Allocated, IdsWanted), Failure> {
    let wanted = IdsWanted::estimate(commands, named, &found);
    let mut rows = send_locked_reads(pg, st, named, &found, wanted).await?;
    let id_rows = std::mem::take(&mut rows.ids);
    let source = Prefetched::of(pg, st, named, found, rows).await?;
    let ids = Allocated::from_row(
        id_rows
            .first()
            .ok_or_else(|| StoreError::Internal("no ids".into()))?,
    )?;
    Ok((source, ids, wanted))
}

async fn send_locked_reads(
    pg: &Client,
    st: &LockedReads<Statement>,
    named: &Named,
    found: &Found,
    wanted: IdsWanted,
) -> Result<LockedRows, tokio_postgres::Error> {
    let account_ids: Vec<&str> = found.accounts.iter().map(String::as_str).collect();
    let extra_lots: Vec<i64> = found.extra_lots.iter().copied().collect();
    let holds: Vec<i64> = named.holds.iter().copied().collect();
    let txs: Vec<i64> = named.transactions.iter().copied().collect();
    let lock_keys = lock_keys(&found.accounts, &named.records, &named.lookups);
    let (ext_accounts, ext_ids): (Vec<&str>, Vec<&str>) = named
        .externals
        .iter()
        .map(|(a, e)| (a.as_str(), e.as_str()))
        .unzip();
    let (record_kinds, record_ids): (Vec<&str>, Vec<&str>) = named
        .records
        .iter()
        .map(|(k, i)| (k.as_str(), i.as_str()))
        .unzip();
    let lookup_kinds: Vec<&str> = named.lookups.iter().map(|l| l.0.as_str()).collect();
    let lookup_names: Vec<&str> = named.lookups.iter().map(|l| l.1.as_str()).collect();
    let lookup_values: Vec<&str> = named.lookups.iter().map(|l| l.2.as_str()).collect();
    let IdsWanted { tx, lot, hold } = wanted;
    // The reads are sent after the lock statement, so they see the state the
    // previous holder of each lock committed.
    let mut second = Pipeline::default();
    if !found.begun {
        second.begin(pg);
    }
    second.push(async { pg.query(&st.lock_accounts, &[&lock_keys]).await });
    let accounts = second.push(async { pg.query(&st.read_accounts, &[&account_ids]).await });
    let lots = second.push(async { pg.query(&st.live_lots, &[&account_ids, &extra_lots]).await });
    let pending = second.push(async { pg.query(&st.pending_holds, &[&account_ids]).await });
    let named_holds = (!holds.is_empty())
        .then(|| second.push(async { pg.query(&st.holds_by_id, &[&holds]).await }));
    let refunded =
        (!txs.is_empty()).then(|| second.push(async { pg.query(&st.refunded, &[&txs]).await }));
    let ids = second.push(async { pg.query(&st.allocate_ids, &[&tx, &lot, &hold]).await });
    let externals = (!ext_ids.is_empty())
        .then(|| second.push(async { pg.query(&st.externals, &[&ext_accounts, &ext_ids]).await }));
    let external_lots = (!ext_ids.is_empty()).then(|| {
        second.push(async {
            pg.query(&st.external_lots, &[&ext_accounts, &ext_ids])
                .await
        })
    });
    let records = (!record_ids.is_empty())
        .then(|| second.push(async { pg.query(&st.records, &[&record_kinds, &record_ids]).await }));
    let record_lookups = (!record_ids.is_empty()).then(|| {
        second.push(async {
            pg.query(&st.record_lookups, &[&record_kinds, &record_ids])
                .await
        })
    });
    let owners = (!lookup_values.is_empty()).then(|| {
        second.push(async {
            pg.query(
                &st.lookup_owners,
                &[&lookup_kinds, &lookup_names, &lookup_values],
            )
            .await
        })
    });
    let mut answers = second.run().await?;
    Ok(LockedRows {
        accounts: answers.take(Some(accounts)),
        lots: answers.take(Some(lots)),
        pending_holds: answers.take(Some(pending)),
        ids: answers.take(Some(ids)),
        named_holds: answers.take(named_holds),
        refunded: answers.take(refunded),
        externals: answers.take(externals),
        external_lots: answers.take(external_lots),
        records: answers.take(records),
        record_lookups: answers.take(record_lookups),
        owners: answers.take(owners),
    })
}

/// Ids drawn from the sequences while the batch holds its locks.
pub(super) struct Allocated {
    tx: std::vec::IntoIter<i64>,
    lot: std::vec::IntoIter<i64>,
    hold: std::vec::IntoIter<i64>,
    /// Set when the batch asked for more ids than were drawn: it is decided
    /// again with more, and what it decided is never written.
    pub exhausted: bool,
}

impl Allocated {
    pub fn from_row(row: &Row) -> Result<Allocated, StoreError> {
        let get = |i: usize| -> Result<Vec<i64>, StoreError> { row.try_get(i).map_err(corrupt) };
        Ok(Allocated {
            tx: get(0)?.into_iter(),
            lot: get(1)?.into_iter(),
            hold: get(2)?.into_iter(),
            exhausted: false,
        })
    }

    fn take(&mut self, which: fn(&mut Allocated) -> Option<i64>) -> i64 {
        which(self).unwrap_or_else(|| {
            // The batch is decided again with more ids; this one is never written.
            self.exhausted = true;
            i64::MAX
        })
    }
}

impl IdSource for Allocated {
    fn next_tx(&mut self) -> TxId {
        TxId(self.take(|a| a.tx.next()))
    }
    fn next_lot(&mut self) -> LotId {
        LotId(self.take(|a| a.lot.next()))
    }
    fn next_hold(&mut self) -> HoldId {
        HoldId(self.take(|a| a.hold.next()))
    }
}

/// What round trips 1 and 2 read, served to the batch without IO. Asking
/// for something that was not prefetched is a bug, reported as such.
pub(super) struct Prefetched {
    pub books: HashMap<AccountId, Book>,
    holds: HashMap<HoldId, Option<Hold>>,
    lots: HashMap<LotId, Lot>,
    asked_lots: HashSet<LotId>,
    transactions: HashMap<TxId, Option<Transaction>>,
    refunded: HashMap<TxId, Amount>,
    features: HashMap<FeatureId, Option<Feature>>,
    stored: HashMap<String, (Vec<u8>, StoredResponse)>,
    externals: HashMap<(AccountId, ExternalId), Option<(Transaction, String)>>,
    records: HashMap<(String, String), Option<Record>>,
    owners: Owners,
}

impl Prefetched {
    /// Assembles the source from the rows read, reading first the lots that
    /// pending holds escrowed from and that were not read yet.
    async fn of(
        pg: &Client,
        st: &LockedReads<Statement>,
        named: &Named,
        found: Found,
        rows: LockedRows,
    ) -> Result<Prefetched, Failure> {
        let locked: Vec<Account> = rows
            .accounts
            .iter()
            .map(account_from_row)
            .collect::<Result<_, _>>()?;
        let mut lots: Vec<Lot> = rows
            .lots
            .iter()
            .map(lot_from_row)
            .collect::<Result<_, _>>()?;
        let pending: Vec<Hold> = rows
            .pending_holds
            .iter()
            .map(hold_from_row)
            .collect::<Result<_, _>>()?;
        let missing = missing_leg_lots(&pending, &lots);
        if !missing.is_empty() {
            for row in pg.query(&st.lots_by_id, &[&missing]).await? {
                lots.push(lot_from_row(&row)?);
            }
        }
        let mut named_lots: HashMap<LotId, Lot> = lots
            .iter()
            .filter(|l| found.extra_lots.contains(&l.id.0))
            .map(|l| (l.id, l.clone()))
            .collect();
        for row in &rows.external_lots {
            let lot = lot_from_row(row)?;
            named_lots.insert(lot.id, lot);
        }
        let mut holds: HashMap<HoldId, Option<Hold>> =
            named.holds.iter().map(|h| (HoldId(*h), None)).collect();
        for row in &rows.named_holds {
            let hold = hold_from_row(row)?;
            holds.insert(hold.id, Some(hold));
        }
        let mut transactions: HashMap<TxId, Option<Transaction>> = named
            .transactions
            .iter()
            .map(|t| (TxId(*t), None))
            .collect();
        for tx in found.transactions {
            transactions.insert(tx.id, Some(tx));
        }
        Ok(Prefetched {
            books: assemble_books(locked, lots, pending)?,
            holds,
            lots: named_lots,
            asked_lots: found.extra_lots.iter().map(|l| LotId(*l)).collect(),
            transactions,
            refunded: refunded_of(named, &rows.refunded)?,
            features: found.features,
            stored: found.stored,
            externals: externals_of(named, &rows.externals)?,
            records: records_of(named, &rows.records, &rows.record_lookups)?,
            owners: owners_of(named, &rows.owners)?,
        })
    }
}

/// How much refunds have handed back of each transaction named.
fn refunded_of(named: &Named, rows: &[Row]) -> Result<HashMap<TxId, Amount>, StoreError> {
    let mut refunded: HashMap<TxId, Amount> = named
        .transactions
        .iter()
        .map(|t| (TxId(*t), Amount::ZERO))
        .collect();
    for row in rows {
        let usage: i64 = row.try_get(1).map_err(corrupt)?;
        refunded.insert(
            TxId(row.try_get(0).map_err(corrupt)?),
            Amount::from_micros(-usage),
        );
    }
    Ok(refunded)
}

type Externals = HashMap<(AccountId, ExternalId), Option<(Transaction, String)>>;

/// The transaction behind each external id named, with the digest of the
/// write that made it; `None` for those not used yet.
fn externals_of(named: &Named, rows: &[Row]) -> Result<Externals, StoreError> {
    // Past the transaction columns: the digest.
    let digest_at = TX_COLUMNS.split(',').count();
    let mut externals: Externals = named
        .externals
        .iter()
        .filter_map(|(a, e)| {
            Some((
                (AccountId::parse(a).ok()?, ExternalId::parse(e).ok()?),
                None,
            ))
        })
        .collect();
    for row in rows {
        let tx = tx_from_row(row)?;
        let digest: String = row.try_get(digest_at).map_err(corrupt)?;
        let external = tx
            .external_id
            .clone()
            .ok_or_else(|| StoreError::Corrupt(format!("{} lost its external id", tx.id)))?;
        externals.insert((tx.account.clone(), external), Some((tx, digest)));
    }
    Ok(externals)
}

/// Each record written, with its lookups; `None` for those that do not exist.
fn records_of(
    named: &Named,
    rows: &[Row],
    lookup_rows: &[Row],
) -> Result<HashMap<(String, String), Option<Record>>, StoreError> {
    let mut records: HashMap<(String, String), Option<Record>> = named
        .records
        .iter()
        .map(|key| (key.clone(), None))
        .collect();
    for row in rows {
        let record = record_from_row(row)?;
        records.insert((record.kind.clone(), record.id.clone()), Some(record));
    }
    for row in lookup_rows {
        let text = |i: usize| -> Result<String, StoreError> { row.try_get(i).map_err(corrupt) };
        if let Some(Some(record)) = records.get_mut(&(text(0)?, text(1)?)) {
            record.lookups.push(Lookup {
                name: text(2)?,
                value: text(3)?,
                unique: row.try_get(4).map_err(corrupt)?,
            });
        }
    }
    Ok(records)
}

/// The id of the record holding each (kind, name, value) of a unique lookup.
type Owners = HashMap<(String, String, String), Option<String>>;

/// The record holding each unique value written; `None` for values free.
fn owners_of(named: &Named, rows: &[Row]) -> Result<Owners, StoreError> {
    let mut owners: Owners = named
        .lookups
        .iter()
        .map(|key| (key.clone(), None))
        .collect();
    for row in rows {
        let text = |i: usize| -> Result<String, StoreError> { row.try_get(i).map_err(corrupt) };
        owners.insert((text(0)?, text(1)?, text(2)?), Some(text(3)?));
    }
    Ok(owners)
}

fn not_prefetched(what: String) -> StoreError {
    StoreError::Internal(format!("{what} was not prefetched"))
}

impl Source for Prefetched {
    fn book(&mut self, account: &AccountId) -> Result<Option<Book>, StoreError> {
        Ok(self.books.get(account).cloned())
    }
    fn hold(&mut self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        self.holds
            .get(&id)
            .cloned()
            .ok_or_else(|| not_prefetched(id.to_string()))
    }
    fn lot(&mut self, id: LotId) -> Result<Option<Lot>, StoreError> {
        if let Some(lot) = self.lots.get(&id) {
            return Ok(Some(lot.clone()));
        }
        if self.asked_lots.contains(&id) {
            return Ok(None);
        }
        // A lot of a loaded book (a refund's source drawn this batch).
        for book in self.books.values() {
            if let Some(lot) = book.lot(id) {
                return Ok(Some(lot.clone()));
            }
        }
        Err(not_prefetched(id.to_string()))
    }
    fn transaction(&mut self, id: TxId) -> Result<Option<Transaction>, StoreError> {
        self.transactions
            .get(&id)
            .cloned()
            .ok_or_else(|| not_prefetched(id.to_string()))
    }
    fn refunded(&mut self, id: TxId) -> Result<Amount, StoreError> {
        self.refunded
            .get(&id)
            .copied()
            .ok_or_else(|| not_prefetched(format!("refunds of {id}")))
    }
    fn feature(&mut self, id: &FeatureId) -> Result<Option<Feature>, StoreError> {
        self.features
            .get(id)
            .cloned()
            .ok_or_else(|| not_prefetched(format!("feature {id}")))
    }
    fn idempotent_response(
        &mut self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, StoredResponse)>, StoreError> {
        Ok(self.stored.get(key).cloned())
    }
    fn external(
        &mut self,
        account: &AccountId,
        id: &ExternalId,
    ) -> Result<Option<(Transaction, String)>, StoreError> {
        self.externals
            .get(&(account.clone(), id.clone()))
            .cloned()
            .ok_or_else(|| not_prefetched(format!("external id {id} of {account}")))
    }
    fn record(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.records
            .get(&(kind.to_owned(), id.to_owned()))
            .cloned()
            .ok_or_else(|| not_prefetched(format!("record {kind}/{id}")))
    }
    fn lookup_owner(
        &mut self,
        kind: &str,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        self.owners
            .get(&(kind.to_owned(), name.to_owned(), value.to_owned()))
            .cloned()
            .ok_or_else(|| not_prefetched(format!("lookup {kind}/{name}")))
    }
}
