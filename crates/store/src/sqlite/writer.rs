//! The single writer: collects commands into batches, decides them with the
//! ledger core, and commits each batch in one transaction with one sync.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ledger::{
    AccountId, Amount, Book, Counters, ExternalId, Feature, FeatureId, Hold, HoldId, Lot, LotId,
    Timestamp, Transaction, TxId,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::books::Books;
use super::deferred::{Deferred, LotChange, Plan};
use super::read;
use crate::batch::{Batch, Source, Writes};
use crate::codec::{decode_postings, encode_legs, usage_of, write_postings, write_sources};
use crate::records::Record;
use crate::{Clock, Command, Executed, StoreError, StoreStats, StoredResponse};

/// How long an idle writer waits before looking for other processes' writes.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Work for the writer, with where to send the answer.
// Moved once per command into the writer's queue: boxing the large variant
// would cost an allocation per command to save a few idle bytes per prune.
#[allow(clippy::large_enum_variant)]
pub enum Job {
    /// A command, decided and committed with its batch.
    Command {
        command: Command,
        reply: oneshot::Sender<Result<Executed, StoreError>>,
    },
    /// Forgets up to `limit` idempotency keys created before `before`, in a
    /// transaction of its own; answers how many.
    Prune {
        before: Timestamp,
        limit: usize,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// A command taken from the queue, waiting for its batch.
struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Executed, StoreError>>,
}

pub struct Writer {
    conn: Connection,
    books: Arc<Books>,
    clock: Arc<dyn Clock>,
    batch_size_max: usize,
    stats: Arc<StoreStats>,
    ids: Counters,
    data_version: i64,
    last_now: Timestamp,
    deferred: Deferred,
}

/// How long a lot's row may lag the journal, and how many may.
#[derive(Clone, Copy, Debug)]
pub struct Lag {
    /// Transactions a changed lot's row may wait for; zero writes at once.
    pub txs: i64,
    /// Lots whose rows may wait at once.
    pub lots_max: usize,
}

impl Writer {
    pub fn new(
        conn: Connection,
        books: Arc<Books>,
        clock: Arc<dyn Clock>,
        batch_size_max: usize,
        stats: Arc<StoreStats>,
        lag: Lag,
    ) -> Result<Writer, StoreError> {
        // Read before any reader or the preload can fill the cache, so that
        // the first look for other writers clears it only if one wrote since.
        let data_version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let ids = load_counters(&conn)?;
        // Batches are stamped in the order of their ids, never going back,
        // even across a restart on a clock that stepped back meanwhile.
        let last_now = conn
            .query_row(
                "SELECT created_at FROM transactions ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .map_or(Timestamp::EPOCH, Timestamp::from_micros);
        let mut writer = Writer {
            conn,
            books,
            clock,
            batch_size_max,
            stats,
            ids,
            data_version,
            last_now,
            deferred: Deferred::new(0, lag.txs, lag.lots_max),
        };
        // Lots whose rows a process that stopped left lagging are brought
        // up to date before anything is decided.
        writer.in_transaction(|writer| {
            let watermark = reconcile(&writer.conn)?;
            writer.deferred.reset(watermark);
            Ok(())
        })?;
        Ok(writer)
    }

    /// Runs until every sender is gone. While one batch syncs, the next
    /// collects in the channel: that is the group commit. When idle, it
    /// looks for writes by other processes now and then, so that cached
    /// books never go stale for long.
    pub fn run(mut self, mut jobs_rx: mpsc::Receiver<Job>) {
        let idle = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a timer for the writer");
        let mut jobs = Vec::with_capacity(self.batch_size_max);
        loop {
            let first =
                idle.block_on(async { tokio::time::timeout(IDLE_CHECK, jobs_rx.recv()).await });
            let job = match first {
                Ok(Some(Job::Command { command, reply })) => Pending { command, reply },
                Ok(Some(Job::Prune {
                    before,
                    limit,
                    reply,
                })) => {
                    let _ = reply.send(self.prune(before, limit));
                    continue;
                }
                Ok(None) => {
                    if let Err(error) = self.in_transaction(Writer::write_back_all) {
                        tracing::warn!(%error, "writing lots back at close failed");
                    }
                    return;
                }
                Err(_) => {
                    if let Err(error) = self.in_transaction(Writer::catch_up_with_other_writers) {
                        tracing::warn!(%error, "checking for other writers failed");
                    }
                    continue;
                }
            };
            jobs.push(job);
            let mut prunes = Vec::new();
            while jobs.len() < self.batch_size_max {
                match jobs_rx.try_recv() {
                    Ok(Job::Command { command, reply }) => jobs.push(Pending { command, reply }),
                    Ok(prune @ Job::Prune { .. }) => prunes.push(prune),
                    Err(_) => break,
                }
            }
            self.run_batch(&mut jobs);
            for prune in prunes {
                if let Job::Prune {
                    before,
                    limit,
                    reply,
                } = prune
                {
                    let _ = reply.send(self.prune(before, limit));
                }
            }
        }
    }

    /// Deletes up to `limit` idempotency keys older than `before` in one
    /// transaction. Through the writer, as every write is: a write on any
    /// other connection would make the writer drop the books it keeps.
    fn prune(&mut self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            self.catch_up_with_other_writers()?;
            let deleted = self
                .conn
                .prepare_cached(
                    "DELETE FROM idempotency_keys WHERE key IN ( \
                       SELECT key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
                )?
                .execute(params![before.micros(), limit as i64])?;
            self.conn.execute_batch("COMMIT")?;
            Ok(deleted as u64)
        })();
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// Runs `f` in a write transaction, committed if it succeeds.
    fn in_transaction(
        &mut self,
        f: fn(&mut Writer) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = f(self).and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// Inside a write transaction: if another process committed since this
    /// writer last looked, brings every lot's row up to date from the
    /// journal and commits that on its own, then forgets the books kept in
    /// memory and the lots waiting here, continues that process's id
    /// sequences, and begins a new transaction. What memory holds changes
    /// only once the database has, so a batch that fails later cannot leave
    /// the two apart.
    fn catch_up_with_other_writers(&mut self) -> Result<(), StoreError> {
        loop {
            let version: i64 = self
                .conn
                .query_row("PRAGMA data_version", [], |r| r.get(0))?;
            if self.data_version == version {
                return Ok(());
            }
            // What waited here is in the journal: the other process brought
            // the rows up to date when it opened, and this brings them up to
            // date with what it wrote since.
            let watermark = reconcile(&self.conn)?;
            let ids = load_counters(&self.conn)?;
            self.conn.execute_batch("COMMIT")?;
            self.books.clear();
            self.deferred.reset(watermark);
            self.ids = ids;
            self.data_version = version;
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
        }
    }

    /// Writes every waiting lot back and raises the watermark to the last
    /// transaction, so that a store closed cleanly leaves no row lagging.
    /// Runs inside a write transaction.
    fn write_back_all(&mut self) -> Result<(), StoreError> {
        // If another process wrote, what waits here may be stale; catching
        // up brings every row up to date instead.
        self.catch_up_with_other_writers()?;
        let synced = self.ids.tx;
        if self.deferred.len() == 0 && self.deferred.watermark() >= synced {
            return Ok(());
        }
        write_back(&self.conn, &self.deferred.all(), synced)?;
        set_watermark(&self.conn, synced)?;
        self.deferred.reset(synced);
        Ok(())
    }

    fn run_batch(&mut self, jobs: &mut Vec<Pending>) {
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
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = self.apply_in_transaction(commands);
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    fn apply_in_transaction(&mut self, commands: &[&Command]) -> Result<Vec<Executed>, StoreError> {
        // Another process (an admin command) may have written since the last
        // batch: the lock is now ours, so look before reading anything.
        self.catch_up_with_other_writers()?;
        let now = self.clock.now().max(self.last_now);
        self.last_now = now;

        let mut batch = Batch::default();
        let mut answers = Vec::with_capacity(commands.len());
        let mut source = SqliteSource {
            conn: &self.conn,
            books: &self.books,
        };
        for command in commands {
            answers.push(batch.execute(&mut source, command, now, &mut self.ids)?);
        }
        let writes = batch.writes();
        let changes: Vec<LotChange> = writes
            .lots
            .iter()
            .filter(|lot| !writes.new_lots.contains(&lot.id))
            .map(|lot| LotChange {
                id: lot.id,
                remaining: lot.remaining,
                may_wait: writes.keeps_flags(lot),
            })
            .collect();
        let last_tx = self.ids.tx;
        let first_tx = writes
            .transactions
            .first()
            .map_or(last_tx + 1, |tx| tx.id.0);
        let plan = self.deferred.plan(&changes, first_tx, last_tx);
        write(&self.conn, &writes, &plan, now)?;
        self.conn.execute_batch("COMMIT")?;
        self.deferred.commit(plan);
        // Before anyone is answered, so that they read what they wrote.
        self.books.put(
            batch.into_books().map(|mut book| {
                book.compact(now);
                book
            }),
            now,
        );
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

/// Reads from the committed books kept in memory, or else from the writer's
/// open transaction.
struct SqliteSource<'a> {
    conn: &'a Connection,
    books: &'a Books,
}

impl Source for SqliteSource<'_> {
    fn book(&mut self, account: &AccountId) -> Result<Option<Book>, StoreError> {
        if let Some(book) = self.books.get(account) {
            return Ok(Some(book));
        }
        read::book(self.conn, account)
    }
    fn hold(&mut self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        read::hold(self.conn, id)
    }
    fn lot(&mut self, id: LotId) -> Result<Option<Lot>, StoreError> {
        read::lot(self.conn, id)
    }
    fn transaction(&mut self, id: TxId) -> Result<Option<Transaction>, StoreError> {
        read::transaction(self.conn, id)
    }
    fn refunded(&mut self, id: TxId) -> Result<Amount, StoreError> {
        read::refunded(self.conn, id)
    }
    fn feature(&mut self, id: &FeatureId) -> Result<Option<Feature>, StoreError> {
        read::feature(self.conn, id)
    }
    fn idempotent_response(
        &mut self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, StoredResponse)>, StoreError> {
        read::idempotent_response(self.conn, key)
    }
    fn external(
        &mut self,
        account: &AccountId,
        id: &ExternalId,
    ) -> Result<Option<(Transaction, String)>, StoreError> {
        read::external(self.conn, account, id)
    }
    fn record(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        read::record(self.conn, kind, id)
    }
    fn lookup_owner(
        &mut self,
        kind: &str,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        read::lookup_owner(self.conn, kind, name, value)
    }
}

/// Brings every lot's row up to date with the journal after the watermark,
/// and raises the watermark to the last transaction, which it returns.
/// Runs inside a write transaction, before anything is decided.
fn reconcile(conn: &Connection) -> Result<i64, StoreError> {
    let watermark = read::synced_through(conn)?;
    let last: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM transactions", [], |r| {
        r.get(0)
    })?;
    if last <= watermark {
        return Ok(watermark);
    }
    // What each lot's row reflects, and what the journal after it adds.
    let mut synced: std::collections::HashMap<LotId, i64> = std::collections::HashMap::new();
    let mut added: std::collections::BTreeMap<LotId, i64> = std::collections::BTreeMap::new();
    let mut txs =
        conn.prepare("SELECT id, postings FROM transactions WHERE id > ?1 ORDER BY id")?;
    let mut rows = txs.query([watermark])?;
    let mut lot_synced = conn.prepare_cached("SELECT synced_tx FROM lots WHERE id = ?1")?;
    while let Some(row) = rows.next()? {
        let (tx, postings): (i64, String) = (row.get(0)?, row.get(1)?);
        for posting in decode_postings(&postings)? {
            let ledger::LedgerAccount::Lot(lot) = posting.account else {
                continue;
            };
            let reflects = match synced.get(&lot) {
                Some(reflects) => *reflects,
                None => {
                    let column: i64 = lot_synced
                        .query_row([lot.0], |r| r.get(0))
                        .map_err(|e| StoreError::Corrupt(format!("{lot} in the journal: {e}")))?;
                    *synced.entry(lot).or_insert(column.max(watermark))
                }
            };
            if tx > reflects {
                *added.entry(lot).or_default() += posting.amount.micros();
            }
        }
    }
    let mut update = conn.prepare_cached(
        "UPDATE lots SET remaining = remaining + ?2, live = (remaining + ?2 > 0), synced_tx = ?3 \
         WHERE id = ?1",
    )?;
    for (lot, amount) in &added {
        update.execute(params![lot.0, amount, last])?;
    }
    set_watermark(conn, last)?;
    if !added.is_empty() {
        tracing::info!(
            lots = added.len(),
            transactions = last - watermark,
            "lot rows brought up to date with the journal"
        );
    }
    Ok(last)
}

fn set_watermark(conn: &Connection, through: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE lots_synced SET through_tx = ?1")?
        .execute([through])?;
    Ok(())
}

/// Writes lots back: what each holds, reflecting the journal up to `synced`.
fn write_back(conn: &Connection, lots: &[(LotId, Amount)], synced: i64) -> Result<(), StoreError> {
    let mut update =
        conn.prepare_cached("UPDATE lots SET remaining = ?2, synced_tx = ?3 WHERE id = ?1")?;
    for (lot, remaining) in lots {
        if update.execute(params![lot.0, remaining.micros(), synced])? != 1 {
            return Err(StoreError::Internal(format!(
                "{lot} to write back is missing"
            )));
        }
    }
    Ok(())
}

/// Writes everything a batch decided, with cached prepared statements.
fn write(
    conn: &Connection,
    writes: &Writes<'_>,
    plan: &Plan,
    now: Timestamp,
) -> Result<(), StoreError> {
    if !writes.new_accounts.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO accounts (id, name, metadata, overdraft_limit, debt, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for a in &writes.new_accounts {
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
    if !writes.accounts.is_empty() {
        let mut update = conn.prepare_cached(
            "UPDATE accounts SET name = ?2, metadata = ?3, overdraft_limit = ?4, debt = ?5 \
             WHERE id = ?1",
        )?;
        for a in &writes.accounts {
            update.execute(params![
                a.id.as_str(),
                a.name,
                a.metadata.as_str(),
                a.overdraft_limit.micros(),
                a.debt.micros()
            ])?;
        }
    }
    if !writes.lots.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO lots (id, account_id, source, priority, amount, remaining, \
                               effective_at, expires_at, voided_at, created_at, metadata, live, \
                               synced_tx, external_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?6 > 0, ?12, ?13)",
        )?;
        // Spending from a lot sets only `remaining` (and `voided_at`), so
        // that no index is touched; `live` is set only when it changes.
        let mut spend = conn.prepare_cached(
            "UPDATE lots SET remaining = ?2, voided_at = ?3, synced_tx = ?4 \
             WHERE id = ?1 AND live = (?2 > 0)",
        )?;
        let mut flip = conn.prepare_cached(
            "UPDATE lots SET remaining = ?2, voided_at = ?3, live = (?2 > 0), synced_tx = ?4 \
             WHERE id = ?1",
        )?;
        let synced = plan.synced_tx;
        for lot in &writes.lots {
            let (id, remaining, voided) = (
                lot.id.0,
                lot.remaining.micros(),
                lot.voided_at.map(Timestamp::micros),
            );
            if plan.held.contains(&lot.id) {
                // Waits, or is written back below.
                continue;
            }
            if writes.new_lots.contains(&lot.id) {
                insert.execute(params![
                    id,
                    lot.account.as_str(),
                    lot.source.code(),
                    lot.priority,
                    lot.amount.micros(),
                    remaining,
                    lot.effective_at.micros(),
                    lot.expires_at.map(Timestamp::micros),
                    voided,
                    lot.created_at.micros(),
                    lot.metadata.as_str(),
                    synced,
                    lot.external_id.as_ref().map(ExternalId::as_str),
                ])?;
            } else if spend.execute(params![id, remaining, voided, synced])? == 0
                && flip.execute(params![id, remaining, voided, synced])? != 1
            {
                return Err(StoreError::Internal(format!(
                    "lot {id} to update is missing"
                )));
            }
        }
    }
    write_back(conn, &plan.write_back, plan.synced_tx)?;
    if let Some(watermark) = plan.watermark {
        set_watermark(conn, watermark)?;
    }
    if !writes.holds.is_empty() {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO holds (id, account_id, amount, legs, status, committed_amount, \
                                created_at, expires_at, resolved_at, metadata) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                 committed_amount = excluded.committed_amount, \
                 resolved_at = excluded.resolved_at",
        )?;
        for hold in &writes.holds {
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
    if !writes.transactions.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO transactions (id, account_id, kind, amount, usage, balance_after, \
                 postings, sources, created_at, metadata, lot_id, hold_id, refund_of, \
                 feature_id, quantity, external_id, external_digest, reason, actor, \
                 grant_source) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
                     ?18, ?19, ?20)",
        )?;
        let (mut postings, mut sources) = (String::new(), String::new());
        let grant_sources = writes.grant_sources();
        for (tx, grant_source) in writes.transactions.iter().zip(grant_sources) {
            write_postings(&mut postings, &tx.postings);
            write_sources(&mut sources, &tx.sources);
            insert.execute(params![
                tx.id.0,
                tx.account.as_str(),
                tx.kind.code(),
                tx.amount.micros(),
                usage_of(tx),
                tx.balance_after.micros(),
                postings.as_str(),
                sources.as_str(),
                tx.created_at.micros(),
                tx.metadata.as_str(),
                tx.lot.map(|l| l.0),
                tx.hold.map(|h| h.0),
                tx.refund_of.map(|t| t.0),
                tx.feature.as_ref().map(|(f, _)| f.as_str()),
                tx.feature.as_ref().map(|(_, q)| q.micros()),
                tx.external_id.as_ref().map(ExternalId::as_str),
                writes.external_digests.get(&tx.id),
                tx.reason,
                tx.actor,
                grant_source,
            ])?;
        }
    }
    if !writes.features.is_empty() {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO features (id, credits_per_unit, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET credits_per_unit = excluded.credits_per_unit, \
                                            updated_at = excluded.updated_at",
        )?;
        for f in writes.features {
            upsert.execute(params![
                f.id.as_str(),
                f.credits_per_unit.micros(),
                f.updated_at.micros()
            ])?;
        }
    }
    if !writes.records.is_empty() {
        write_records(conn, &writes.records)?;
    }
    if !writes.calls.is_empty() {
        write_calls(conn, writes.calls)?;
    }
    if !writes.idempotency.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (key, fingerprint, response) in &writes.idempotency {
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

/// Writes gateway calls and adds them to their hourly buckets.
fn write_calls(conn: &Connection, calls: &[crate::usage::Call]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO gateway_calls (id, account_id, key_id, project, provider, model, mode, \
             input, cached, cache_write, output, reasoning, cost, list_cost, status, outcome, \
             latency_ms, tx_id, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
                 ?18, ?19)",
    )?;
    for c in calls {
        insert.execute(params![
            c.id,
            c.account.as_str(),
            c.key_id,
            c.project,
            c.provider,
            c.model,
            c.mode,
            c.tokens.input,
            c.tokens.cached,
            c.tokens.cache_write,
            c.tokens.output,
            c.tokens.reasoning,
            c.cost.micros(),
            c.list_cost.micros(),
            c.status,
            c.outcome,
            c.latency_ms,
            c.tx.map(|t| t.0),
            c.at.micros()
        ])?;
    }
    let mut add = conn.prepare_cached(
        "INSERT INTO gateway_usage_hourly (account_id, hour, model, key_id, project, mode, \
             calls, input, cached, cache_write, output, reasoning, cost, list_cost) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
         ON CONFLICT (account_id, hour, model, key_id, project, mode) DO UPDATE SET \
             calls = calls + excluded.calls, input = input + excluded.input, \
             cached = cached + excluded.cached, cache_write = cache_write + excluded.cache_write, \
             output = output + excluded.output, reasoning = reasoning + excluded.reasoning, \
             cost = cost + excluded.cost, list_cost = list_cost + excluded.list_cost",
    )?;
    for (account, b) in crate::usage::rollup(calls) {
        add.execute(params![
            account.as_str(),
            b.hour,
            b.model,
            b.key_id,
            b.project,
            b.mode,
            b.calls,
            b.tokens.input,
            b.tokens.cached,
            b.tokens.cache_write,
            b.tokens.output,
            b.tokens.reasoning,
            b.cost.micros(),
            b.list_cost.micros()
        ])?;
    }
    Ok(())
}

/// Writes records as they now stand, with their lookups.
fn write_records(
    conn: &Connection,
    records: &[(&crate::batch::RecordKey, Option<&Record>)],
) -> Result<(), StoreError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO records (kind, id, version, body, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, \
             body = excluded.body, updated_at = excluded.updated_at",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM records WHERE kind = ?1 AND id = ?2")?;
    let mut forget =
        conn.prepare_cached("DELETE FROM record_lookups WHERE kind = ?1 AND id = ?2")?;
    let mut index = conn.prepare_cached(
        "INSERT INTO record_lookups (kind, name, value, id, is_unique) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    // Lookups are removed first, so that a unique value moving from one
    // record to another in the batch is never held by both.
    for ((kind, id), _) in records {
        forget.execute([kind, id])?;
    }
    for ((kind, id), record) in records {
        match record {
            Some(r) => {
                upsert.execute(params![
                    kind,
                    id,
                    r.version as i64,
                    r.body,
                    r.created_at.micros(),
                    r.updated_at.micros()
                ])?;
                for lookup in &r.lookups {
                    index.execute(params![kind, lookup.name, lookup.value, id, lookup.unique])?;
                }
            }
            None => {
                delete.execute([kind, id])?;
            }
        }
    }
    Ok(())
}
