//! A node's batch writers: prefetch and lock what a batch touches, decide it
//! with the ledger core, write it and commit, in a few pipelined round trips.
//!
//! 1. Only when the commands name them: idempotency keys are claimed (in key
//!    order) and the holds, lots, transactions and features named are looked up.
//! 2. The accounts involved are locked (advisory locks, in one fixed order);
//!    their live lots, pending holds, the other lots the commands name,
//!    refund totals and fresh ids are read after the lock, in the same round
//!    trip.
//! 3. The batch is decided in memory, with no IO.
//! 4. Every write and the `COMMIT` go out together.
//!
//! A plain batch of consumes therefore takes two round trips. A node sends
//! each account's commands to one writer, so that they share batches rather
//! than queue for the account's lock in turn.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use ledger::{
    Account, AccountId, Amount, Book, ExternalId, Feature, FeatureId, Hold, HoldId, IdSource, Lot,
    LotId, Origin, Timestamp, Transaction, TxId,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::read::{assemble_books, missing_leg_lots, stored_responses};
use super::{pg_error, pool_error};
use crate::batch::{Batch, Source, Writes};
use crate::codec::{encode_legs, encode_postings, encode_sources, usage_of};
use crate::records::{Lookup, Record, RecordWrite};
use crate::rows::{
    ACCOUNT_COLUMNS, HOLD_COLUMNS, LOT_COLUMNS, RECORD_COLUMNS, TX_COLUMNS, account_from_row,
    feature_from_row, hold_from_row, lot_from_row, record_from_row, tx_from_row,
};
use crate::{Charge, Clock, Command, Executed, Op, StoreError, StoreStats, StoredResponse};

/// A command waiting for its batch, with where to send the answer.
pub struct Job {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Executed, StoreError>>,
}

/// How long a writer waits for stragglers when a batch comes out much
/// smaller than the one before.
const LINGER: Duration = Duration::from_micros(150);

/// Moves what is queued into `jobs`, up to `max`.
fn drain(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max: usize) {
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// How often a batch is tried again after a serialization failure, a
/// deadlock or a racing insert, before it fails.
const ATTEMPTS_MAX: usize = 8;

pub struct Writer {
    pool: Pool,
    clock: Arc<dyn Clock>,
    batch_size_max: usize,
    stats: Arc<StoreStats>,
    last_now: Timestamp,
}

/// Why an attempt at a batch failed.
enum Failure {
    /// Nothing was applied and trying again may succeed.
    Retry(String),
    /// Nothing was applied, or (if the connection broke during `COMMIT`)
    /// it is unknown; either way the error is the answer.
    Fail(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        let retry = [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            // Two nodes opening the same account at once: the loser retries
            // and then finds the account exists.
            SqlState::UNIQUE_VIOLATION,
        ];
        match error.code() {
            Some(code) if retry.contains(code) => Failure::Retry(error.to_string()),
            _ => Failure::Fail(pg_error(error)),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Fail(error)
    }
}

impl Writer {
    pub fn new(
        pool: Pool,
        clock: Arc<dyn Clock>,
        batch_size_max: usize,
        stats: Arc<StoreStats>,
    ) -> Writer {
        Writer {
            pool,
            clock,
            batch_size_max,
            stats,
            last_now: Timestamp::EPOCH,
        }
    }

    /// Takes what is queued, up to a batch, applies it, answers, and repeats
    /// until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut last_len = 0;
        loop {
            let mut jobs = Vec::with_capacity(self.batch_size_max);
            {
                let Some(first) = rx.recv().await else { return };
                jobs.push(first);
                drain(&mut rx, &mut jobs, self.batch_size_max);
                // Clients answered by the last batch are about to send again.
                // Waiting a moment for them keeps them in one batch instead of
                // splitting the load into a large and a small batch in turn.
                // Tokio's timers tick in milliseconds, too coarse for this:
                // yield to the other tasks until the moment has passed.
                let lingering = Instant::now();
                while jobs.len() < last_len / 2 && lingering.elapsed() < LINGER {
                    tokio::task::yield_now().await;
                    drain(&mut rx, &mut jobs, self.batch_size_max);
                }
            }
            last_len = jobs.len();
            self.run_batch(jobs).await;
        }
    }

    async fn run_batch(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let commands: Vec<&Command> = jobs.iter().map(|j| &j.command).collect();
        match self.apply(&commands).await {
            Ok(answers) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.stats.record_batch(answers.len(), micros);
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            // One bad command must not fail the others: retry them one by one,
            // unless the database itself is unavailable.
            Err(error) if jobs.len() > 1 && !matches!(error, StoreError::Unavailable(_)) => {
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "write batch failed; retrying its commands one by one");
                for job in jobs {
                    let answer = self.apply(&[&job.command]).await.map(|mut a| a.remove(0));
                    let _ = job.reply.send(answer);
                }
            }
            Err(error) => {
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "write batch failed");
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Applies a batch, trying again from the start after a retryable failure.
    async fn apply(&mut self, commands: &[&Command]) -> Result<Vec<Executed>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        for attempt in 1.. {
            let now = self.clock.now().max(self.last_now);
            self.last_now = now;
            match attempt_batch(&client, commands, now).await {
                Ok(answers) => return Ok(answers),
                Err(failure) => {
                    // The transaction may be open or aborted; end it. If even
                    // that fails, the connection is broken: never reuse it.
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        let _ = deadpool_postgres::Object::take(client);
                        return Err(match failure {
                            Failure::Fail(error) => error,
                            Failure::Retry(why) => StoreError::Unavailable(why),
                        });
                    }
                    match failure {
                        Failure::Retry(why) if attempt < ATTEMPTS_MAX => {
                            tracing::debug!(%why, attempt, "retrying write batch");
                            tokio::time::sleep(Duration::from_millis(1 << attempt.min(6))).await;
                        }
                        Failure::Retry(why) => return Err(StoreError::Unavailable(why)),
                        Failure::Fail(error) => return Err(error),
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }
}

/// What the commands of a batch name, before anything is read.
#[derive(Default)]
struct Named {
    accounts: BTreeSet<String>,
    holds: BTreeSet<i64>,
    lots: BTreeSet<i64>,
    transactions: BTreeSet<i64>,
    features: BTreeSet<String>,
    /// Distinct idempotency keys in key order, with the first fingerprint sent for each.
    keys: Vec<(String, Vec<u8>)>,
    lot_ids: usize,
    hold_ids: usize,
    /// (account, external id) of grants, consumes and claw-backs that name
    /// one, and of the grants claw-backs take back.
    externals: BTreeSet<(String, String)>,
    /// (kind, id) of records written.
    records: BTreeSet<(String, String)>,
    /// (kind, name, value) of unique lookups records are written with.
    lookups: BTreeSet<(String, String, String)>,
}

impl Named {
    fn of(commands: &[&Command]) -> Named {
        let mut named = Named::default();
        let mut keys: HashMap<&str, &[u8]> = HashMap::new();
        for command in commands {
            if let Some(key) = &command.idempotency {
                keys.entry(&key.key).or_insert(&key.fingerprint);
            }
            let own = match &command.op {
                Op::Record(write) => Some(write),
                _ => None,
            };
            for write in own.into_iter().chain(&command.records) {
                let (kind, id) = write.key();
                named.records.insert((kind.to_owned(), id.to_owned()));
                if let RecordWrite::Put { lookups, .. } = write {
                    for Lookup { name, value, .. } in lookups.iter().filter(|l| l.unique) {
                        named
                            .lookups
                            .insert((kind.to_owned(), name.clone(), value.clone()));
                    }
                }
            }
            match &command.op {
                Op::CreateAccount { account, grants } => {
                    named.accounts.insert(account.id.to_string());
                    named.lot_ids += grants.len();
                }
                Op::Renew { account, renewal } => {
                    named.accounts.insert(account.to_string());
                    // The new period's lot and a rollover lot.
                    named.lot_ids += 2;
                    if let Some(external) =
                        renewal.grant.as_ref().and_then(|g| g.external_id.as_ref())
                    {
                        named
                            .externals
                            .insert((account.to_string(), external.to_string()));
                    }
                }
                Op::UpdateAccount { account, .. } => {
                    named.accounts.insert(account.to_string());
                }
                Op::Grant { account, grant } => {
                    named.accounts.insert(account.to_string());
                    named.lot_ids += 1;
                    if let Some(external) = &grant.external_id {
                        named
                            .externals
                            .insert((account.to_string(), external.to_string()));
                    }
                }
                Op::Consume {
                    account,
                    charge,
                    external_id,
                    ..
                } => {
                    named.accounts.insert(account.to_string());
                    if let Charge::Feature { feature, .. } = charge {
                        named.features.insert(feature.to_string());
                    }
                    if let Some(external) = external_id {
                        named
                            .externals
                            .insert((account.to_string(), external.to_string()));
                    }
                }
                Op::Hold { account, .. } => {
                    named.accounts.insert(account.to_string());
                    named.hold_ids += 1;
                }
                Op::Settle { account } => {
                    named.accounts.insert(account.to_string());
                }
                Op::Commit { hold, .. } | Op::Release { hold, .. } => {
                    named.holds.insert(hold.0);
                }
                Op::Void { lot, .. } => {
                    named.lots.insert(lot.0);
                }
                Op::ClawBack {
                    account,
                    grant,
                    external_id,
                    ..
                } => {
                    // The grant's transaction and lot are read by the
                    // grant's external id, as is the claw-back's own.
                    named.accounts.insert(account.to_string());
                    for external in std::iter::once(grant).chain(external_id) {
                        named
                            .externals
                            .insert((account.to_string(), external.to_string()));
                    }
                }
                Op::Refund { tx, .. } => {
                    named.transactions.insert(tx.0);
                    named.lot_ids += 1;
                }
                Op::PutFeature(_) | Op::Record(_) => {}
            }
        }
        let mut keys: Vec<(String, Vec<u8>)> = keys
            .into_iter()
            .map(|(k, f)| (k.to_owned(), f.to_vec()))
            .collect();
        keys.sort_unstable();
        named.keys = keys;
        named
    }
}

/// The statements a batch uses, prepared once per connection and cached by
/// the driver's connection wrapper.
struct Statements {
    claim_keys: tokio_postgres::Statement,
    stored_keys: tokio_postgres::Statement,
    hold_owners: tokio_postgres::Statement,
    lot_owners: tokio_postgres::Statement,
    transactions: tokio_postgres::Statement,
    features: tokio_postgres::Statement,
    lock_accounts: tokio_postgres::Statement,
    read_accounts: tokio_postgres::Statement,
    live_lots: tokio_postgres::Statement,
    pending_holds: tokio_postgres::Statement,
    holds_by_id: tokio_postgres::Statement,
    refunded: tokio_postgres::Statement,
    allocate_ids: tokio_postgres::Statement,
    lots_by_id: tokio_postgres::Statement,
    insert_accounts: tokio_postgres::Statement,
    update_accounts: tokio_postgres::Statement,
    insert_lots: tokio_postgres::Statement,
    update_lots: tokio_postgres::Statement,
    upsert_holds: tokio_postgres::Statement,
    insert_transactions: tokio_postgres::Statement,
    upsert_features: tokio_postgres::Statement,
    keep_responses: tokio_postgres::Statement,
    release_keys: tokio_postgres::Statement,
    externals: tokio_postgres::Statement,
    external_lots: tokio_postgres::Statement,
    records: tokio_postgres::Statement,
    record_lookups: tokio_postgres::Statement,
    lookup_owners: tokio_postgres::Statement,
    forget_lookups: tokio_postgres::Statement,
    upsert_records: tokio_postgres::Statement,
    delete_records: tokio_postgres::Statement,
    insert_lookups: tokio_postgres::Statement,
    insert_calls: tokio_postgres::Statement,
    add_buckets: tokio_postgres::Statement,
}

/// A column list with every column prefixed by a table's alias.
fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SQL of the writers' statements, in the order of [`Statements`]'s fields.
pub(crate) fn writer_sql() -> &'static [String] {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        vec![
            // claim_keys
            "INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at) \
             SELECT k, f, 0, '', $3 FROM UNNEST($1::text[], $2::bytea[]) AS u(k, f) \
             ON CONFLICT (key) DO NOTHING RETURNING key"
                .to_owned(),
            // stored_keys
            "SELECT key, fingerprint, status, body FROM idempotency_keys WHERE key = ANY($1)".to_owned(),
            // hold_owners
            "SELECT id, account_id FROM holds WHERE id = ANY($1)".to_owned(),
            // lot_owners
            "SELECT id, account_id FROM lots WHERE id = ANY($1)".to_owned(),
            // transactions
            format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = ANY($1)"
        ),
            // features
            "SELECT id, credits_per_unit, updated_at FROM features WHERE id = ANY($1)".to_owned(),
            // lock_accounts
            "SELECT pg_advisory_xact_lock(k) FROM UNNEST($1::int8[]) AS k".to_owned(),
            // read_accounts
            format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1)"
        ),
            // live_lots
            format!(
            "SELECT {LOT_COLUMNS} FROM lots \
             WHERE (account_id = ANY($1) AND live) OR id = ANY($2)"
        ),
            // pending_holds
            format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = ANY($1) AND status = 'pending' \
                 ORDER BY account_id"
        ),
            // holds_by_id
            format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ANY($1)"),
            // refunded
            "SELECT refund_of, sum(usage)::bigint FROM transactions \
             WHERE refund_of = ANY($1) GROUP BY refund_of"
                .to_owned(),
            // allocate_ids
            "SELECT ARRAY(SELECT nextval('transaction_ids') FROM generate_series(1, $1::int8)), \
                    ARRAY(SELECT nextval('lot_ids') FROM generate_series(1, $2::int8)), \
                    ARRAY(SELECT nextval('hold_ids') FROM generate_series(1, $3::int8))"
                .to_owned(),
            // lots_by_id
            format!("SELECT {LOT_COLUMNS} FROM lots WHERE id = ANY($1)"),
            // insert_accounts
            "INSERT INTO accounts (id, name, metadata, overdraft_limit, debt, created_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[])".to_owned(),
            // update_accounts
            "UPDATE accounts a SET name = u.name, metadata = u.metadata, \
                 overdraft_limit = u.overdraft_limit, debt = u.debt \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) \
                 AS u(id, name, metadata, overdraft_limit, debt) WHERE a.id = u.id".to_owned(),
            // insert_lots
            "INSERT INTO lots (id, account_id, source, priority, amount, remaining, effective_at, \
                               expires_at, voided_at, created_at, metadata, external_id, live) \
             SELECT *, r > 0 FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
                                  $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::text[], \
                                  $12::text[]) \
                        AS u(i, a, s, p, m, r, e, x, v, c, d, ext)"
                .to_owned(),
            // update_lots
            "UPDATE lots l SET remaining = u.r, voided_at = u.v, live = u.r > 0 \
             FROM UNNEST($1::int8[], $2::int8[], $3::int8[]) AS u(i, r, v) WHERE l.id = u.i"
                .to_owned(),
            // upsert_holds
            "INSERT INTO holds (id, account_id, amount, legs, status, committed_amount, \
                                created_at, expires_at, resolved_at, metadata) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[], \
                                  $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::text[]) \
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, \
                 committed_amount = EXCLUDED.committed_amount, resolved_at = EXCLUDED.resolved_at".to_owned(),
            // insert_transactions
            "INSERT INTO transactions (id, account_id, kind, amount, usage, balance_after, \
                 postings, sources, created_at, metadata, lot_id, hold_id, refund_of, \
                 feature_id, quantity, external_id, external_digest, reason, actor) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
                 $6::int8[], $7::text[], $8::text[], $9::int8[], $10::text[], $11::int8[], \
                 $12::int8[], $13::int8[], $14::text[], $15::int8[], $16::text[], $17::text[], \
                 $18::text[], $19::text[])".to_owned(),
            // upsert_features
            "INSERT INTO features (id, credits_per_unit, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[]) \
             ON CONFLICT (id) DO UPDATE SET credits_per_unit = EXCLUDED.credits_per_unit, \
                                            updated_at = EXCLUDED.updated_at".to_owned(),
            // keep_responses
            "UPDATE idempotency_keys k SET fingerprint = u.f, status = u.s, body = u.b, \
                                           created_at = $5 \
             FROM UNNEST($1::text[], $2::bytea[], $3::int8[], $4::bytea[]) AS u(key, f, s, b) \
             WHERE k.key = u.key".to_owned(),
            // release_keys
            "DELETE FROM idempotency_keys WHERE key = ANY($1)".to_owned(),
            // externals
            format!(
                "SELECT {}, t.external_digest \
                 FROM UNNEST($1::text[], $2::text[]) AS u(a, e) \
                 JOIN transactions t ON t.account_id = u.a AND t.external_id = u.e \
                 WHERE t.external_id IS NOT NULL",
                qualified(TX_COLUMNS, "t")
            ),
            // external_lots
            format!(
                "SELECT {} FROM UNNEST($1::text[], $2::text[]) AS u(a, e) \
                 JOIN transactions t ON t.account_id = u.a AND t.external_id = u.e \
                 JOIN lots l ON l.id = t.lot_id \
                 WHERE t.external_id IS NOT NULL",
                qualified(LOT_COLUMNS, "l")
            ),
            // records
            format!(
                "SELECT {} FROM UNNEST($1::text[], $2::text[]) AS u(k, i) \
                 JOIN records r ON r.kind = u.k AND r.id = u.i",
                qualified(RECORD_COLUMNS, "r")
            ),
            // record_lookups
            "SELECT l.kind, l.id, l.name, l.value, l.is_unique \
             FROM UNNEST($1::text[], $2::text[]) AS u(k, i) \
             JOIN record_lookups l ON l.kind = u.k AND l.id = u.i"
                .to_owned(),
            // lookup_owners
            "SELECT l.kind, l.name, l.value, l.id \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, n, v) \
             JOIN record_lookups l ON l.kind = u.k AND l.name = u.n AND l.value = u.v \
             WHERE l.is_unique"
                .to_owned(),
            // forget_lookups
            "DELETE FROM record_lookups l USING UNNEST($1::text[], $2::text[]) AS u(k, i) \
             WHERE l.kind = u.k AND l.id = u.i"
                .to_owned(),
            // upsert_records
            "INSERT INTO records (kind, id, version, body, created_at, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], \
                                  $6::int8[]) \
             ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version, \
                 body = EXCLUDED.body, updated_at = EXCLUDED.updated_at"
                .to_owned(),
            // delete_records
            "DELETE FROM records r USING UNNEST($1::text[], $2::text[]) AS u(k, i) \
             WHERE r.kind = u.k AND r.id = u.i"
                .to_owned(),
            // insert_lookups
            "INSERT INTO record_lookups (kind, name, value, id, is_unique) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[])"
                .to_owned(),
            // insert_calls
            "INSERT INTO gateway_calls (id, account_id, key_id, project, provider, model, mode, \
                 input, cached, cache_write, output, reasoning, cost, list_cost, status, outcome, \
                 latency_ms, tx_id, at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
                 $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::text[], $17::int8[], \
                 $18::int8[], $19::int8[])"
                .to_owned(),
            // add_buckets
            "INSERT INTO gateway_usage_hourly AS h (account_id, hour, model, key_id, project, mode, \
                 calls, input, cached, cache_write, output, reasoning, cost, list_cost) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
                 $12::int8[], $13::int8[], $14::int8[]) \
             ON CONFLICT (account_id, hour, model, key_id, project, mode) DO UPDATE SET \
                 calls = h.calls + EXCLUDED.calls, input = h.input + EXCLUDED.input, \
                 cached = h.cached + EXCLUDED.cached, \
                 cache_write = h.cache_write + EXCLUDED.cache_write, \
                 output = h.output + EXCLUDED.output, reasoning = h.reasoning + EXCLUDED.reasoning, \
                 cost = h.cost + EXCLUDED.cost, list_cost = h.list_cost + EXCLUDED.list_cost"
                .to_owned(),
        ]
    })
}

async fn statements(client: &deadpool_postgres::Client) -> Result<Statements, Failure> {
    let mut prepared = Vec::with_capacity(writer_sql().len());
    for sql in writer_sql() {
        prepared.push(client.prepare_cached(sql).await?);
    }
    let mut prepared = prepared.into_iter();
    let mut next = || prepared.next().expect("one statement per field");
    Ok(Statements {
        claim_keys: next(),
        stored_keys: next(),
        hold_owners: next(),
        lot_owners: next(),
        transactions: next(),
        features: next(),
        lock_accounts: next(),
        read_accounts: next(),
        live_lots: next(),
        pending_holds: next(),
        holds_by_id: next(),
        refunded: next(),
        allocate_ids: next(),
        lots_by_id: next(),
        insert_accounts: next(),
        update_accounts: next(),
        insert_lots: next(),
        update_lots: next(),
        upsert_holds: next(),
        insert_transactions: next(),
        upsert_features: next(),
        keep_responses: next(),
        release_keys: next(),
        externals: next(),
        external_lots: next(),
        records: next(),
        record_lookups: next(),
        lookup_owners: next(),
        forget_lookups: next(),
        upsert_records: next(),
        delete_records: next(),
        insert_lookups: next(),
        insert_calls: next(),
        add_buckets: next(),
    })
}

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// One attempt: runs the whole batch in one transaction and commits it.
async fn attempt_batch(
    client: &deadpool_postgres::Client,
    commands: &[&Command],
    now: Timestamp,
) -> Result<Vec<Executed>, Failure> {
    let st = statements(client).await?;
    let named = Named::of(commands);
    let pg: &Client = client;

    // Round trip 1, only when the commands name keys, holds, lots,
    // transactions or features: begin, claim the keys, look them all up.
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
    let looks_up = !(key_names.is_empty()
        && holds.is_empty()
        && lots.is_empty()
        && txs.is_empty()
        && features.is_empty());
    if looks_up {
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
    let tx_rows =
        (!txs.is_empty()).then(|| first.push(async { pg.query(&st.transactions, &[&txs]).await }));
    let feature_rows = (!features.is_empty())
        .then(|| first.push(async { pg.query(&st.features, &[&features]).await }));
    let mut answers1 = first.run().await?;

    let claimed: HashSet<String> = answers1
        .take(claim)
        .iter()
        .map(|r| r.try_get(0).map_err(corrupt))
        .collect::<Result<_, _>>()?;
    let mut stored = stored_responses(answers1.take(stored))?;
    stored.retain(|key, _| !claimed.contains(key));
    let mut accounts = named.accounts.clone();
    for row in answers1
        .take(hold_owners)
        .iter()
        .chain(&answers1.take(lot_owners))
    {
        accounts.insert(row.try_get(1).map_err(corrupt)?);
    }
    let transactions: Vec<Transaction> = answers1
        .take(tx_rows)
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
    let features: HashMap<FeatureId, Option<Feature>> = {
        let mut map: HashMap<FeatureId, Option<Feature>> = named
            .features
            .iter()
            .filter_map(|f| FeatureId::parse(f).ok())
            .map(|f| (f, None))
            .collect();
        for row in &answers1.take(feature_rows) {
            let feature = feature_from_row(row)?;
            map.insert(feature.id.clone(), Some(feature));
        }
        map
    };

    // Round trip 2: lock the accounts in id order, then read what the lock
    // protects. The reads run after the lock statement, so they see the
    // state the previous holder of each lock committed.
    let account_ids: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let extra_lots: Vec<i64> = extra_lots.into_iter().collect();
    // One transaction per command and one more per grant (a debt repayment);
    // settling an account that has expiries due needs more, found out below.
    let tx_estimate = (commands.len() + named.lot_ids + accounts.len()) as i64;
    let (lot_ids, hold_ids) = (named.lot_ids as i64, named.hold_ids as i64);
    let lock_keys = lock_keys(&accounts, &named.records, &named.lookups);
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
    let mut second = Pipeline::default();
    if !looks_up {
        second.begin(pg);
    }
    second.push(async { pg.query(&st.lock_accounts, &[&lock_keys]).await });
    let locked = second.push(async { pg.query(&st.read_accounts, &[&account_ids]).await });
    let lot_rows =
        second.push(async { pg.query(&st.live_lots, &[&account_ids, &extra_lots]).await });
    let hold_rows = second.push(async { pg.query(&st.pending_holds, &[&account_ids]).await });
    let named_hold_rows = (!holds.is_empty())
        .then(|| second.push(async { pg.query(&st.holds_by_id, &[&holds]).await }));
    let refunded_rows =
        (!txs.is_empty()).then(|| second.push(async { pg.query(&st.refunded, &[&txs]).await }));
    let id_rows = second.push(async {
        pg.query(&st.allocate_ids, &[&tx_estimate, &lot_ids, &hold_ids])
            .await
    });
    let external_rows = (!ext_ids.is_empty())
        .then(|| second.push(async { pg.query(&st.externals, &[&ext_accounts, &ext_ids]).await }));
    let external_lot_rows = (!ext_ids.is_empty()).then(|| {
        second.push(async {
            pg.query(&st.external_lots, &[&ext_accounts, &ext_ids])
                .await
        })
    });
    let record_rows = (!record_ids.is_empty())
        .then(|| second.push(async { pg.query(&st.records, &[&record_kinds, &record_ids]).await }));
    let record_lookup_rows = (!record_ids.is_empty()).then(|| {
        second.push(async {
            pg.query(&st.record_lookups, &[&record_kinds, &record_ids])
                .await
        })
    });
    let owner_rows = (!lookup_values.is_empty()).then(|| {
        second.push(async {
            pg.query(
                &st.lookup_owners,
                &[&lookup_kinds, &lookup_names, &lookup_values],
            )
            .await
        })
    });
    let mut answers2 = second.run().await?;
    let (locked, lot_rows, hold_rows, id_rows) = (
        answers2.take(Some(locked)),
        answers2.take(Some(lot_rows)),
        answers2.take(Some(hold_rows)),
        answers2.take(Some(id_rows)),
    );
    let named_hold_rows = answers2.take(named_hold_rows);
    let refunded_rows = answers2.take(refunded_rows);
    let external_rows = answers2.take(external_rows);
    let external_lot_rows = answers2.take(external_lot_rows);
    let record_rows = answers2.take(record_rows);
    let record_lookup_rows = answers2.take(record_lookup_rows);
    let owner_rows = answers2.take(owner_rows);
    let locked: Vec<Account> = locked
        .iter()
        .map(account_from_row)
        .collect::<Result<_, _>>()?;
    let mut lots: Vec<Lot> = lot_rows
        .iter()
        .map(lot_from_row)
        .collect::<Result<_, _>>()?;
    let pending: Vec<Hold> = hold_rows
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
        .filter(|l| named.lots.contains(&l.id.0) || extra_lots.contains(&l.id.0))
        .map(|l| (l.id, l.clone()))
        .collect();
    for row in &external_lot_rows {
        let lot = lot_from_row(row)?;
        named_lots.insert(lot.id, lot);
    }
    // Past the transaction columns: the digest.
    let digest_at = TX_COLUMNS.split(',').count();
    let mut externals: HashMap<(AccountId, ExternalId), Option<(Transaction, String)>> = named
        .externals
        .iter()
        .filter_map(|(a, e)| {
            Some((
                (AccountId::parse(a).ok()?, ExternalId::parse(e).ok()?),
                None,
            ))
        })
        .collect();
    for row in &external_rows {
        let tx = tx_from_row(row)?;
        let digest: String = row.try_get(digest_at).map_err(corrupt)?;
        let external = tx
            .external_id
            .clone()
            .ok_or_else(|| StoreError::Corrupt(format!("{} lost its external id", tx.id)))?;
        externals.insert((tx.account.clone(), external), Some((tx, digest)));
    }
    let mut records: HashMap<(String, String), Option<Record>> = named
        .records
        .iter()
        .map(|key| (key.clone(), None))
        .collect();
    for row in &record_rows {
        let record = record_from_row(row)?;
        records.insert((record.kind.clone(), record.id.clone()), Some(record));
    }
    for row in &record_lookup_rows {
        let text = |i: usize| -> Result<String, StoreError> { row.try_get(i).map_err(corrupt) };
        if let Some(Some(record)) = records.get_mut(&(text(0)?, text(1)?)) {
            record.lookups.push(Lookup {
                name: text(2)?,
                value: text(3)?,
                unique: row.try_get(4).map_err(corrupt)?,
            });
        }
    }
    let mut owners: HashMap<(String, String, String), Option<String>> = named
        .lookups
        .iter()
        .map(|key| (key.clone(), None))
        .collect();
    for row in &owner_rows {
        let text = |i: usize| -> Result<String, StoreError> { row.try_get(i).map_err(corrupt) };
        owners.insert((text(0)?, text(1)?, text(2)?), Some(text(3)?));
    }
    let mut refunded: HashMap<TxId, Amount> =
        txs.iter().map(|t| (TxId(*t), Amount::ZERO)).collect();
    for row in &refunded_rows {
        let usage: i64 = row.try_get(1).map_err(corrupt)?;
        refunded.insert(
            TxId(row.try_get(0).map_err(corrupt)?),
            Amount::from_micros(-usage),
        );
    }
    let mut source = Prefetched {
        books: assemble_books(locked, lots, pending)?,
        holds: holds.iter().map(|h| (HoldId(*h), None)).collect(),
        lots: named_lots,
        asked_lots: extra_lots.iter().map(|l| LotId(*l)).collect(),
        transactions: txs.iter().map(|t| (TxId(*t), None)).collect(),
        refunded,
        features,
        stored,
        externals,
        records,
        owners,
    };
    for row in &named_hold_rows {
        let hold = hold_from_row(row)?;
        source.holds.insert(hold.id, Some(hold));
    }
    for tx in transactions {
        source.transactions.insert(tx.id, Some(tx));
    }
    let mut ids = Allocated::from_row(
        id_rows
            .first()
            .ok_or_else(|| StoreError::Internal("no ids".into()))?,
    )?;

    // Decide, with no IO. If the estimate of transaction ids was short, draw
    // exactly enough and decide again from the same prefetched state.
    let (batch, answers) = loop {
        let mut batch = Batch::default();
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            answers.push(batch.execute(&mut source, command, now, &mut ids)?);
        }
        if !ids.exhausted {
            break (batch, answers);
        }
        let needed = source
            .books
            .values()
            .map(|b| b.lots().len() + b.holds().len() + 1)
            .sum::<usize>()
            + commands.len() * 2;
        let row = pg
            .query_one(&st.allocate_ids, &[&(needed as i64), &lot_ids, &hold_ids])
            .await?;
        ids = Allocated::from_row(&row)?;
    };

    // Round trip 3: every write, then COMMIT.
    write_and_commit(pg, &st, &batch.writes(), &claimed, now).await?;
    Ok(answers)
}

/// Ids drawn from the sequences while the batch holds its locks.
struct Allocated {
    tx: std::vec::IntoIter<i64>,
    lot: std::vec::IntoIter<i64>,
    hold: std::vec::IntoIter<i64>,
    exhausted: bool,
}

impl Allocated {
    fn from_row(row: &tokio_postgres::Row) -> Result<Allocated, StoreError> {
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
struct Prefetched {
    books: HashMap<AccountId, Book>,
    holds: HashMap<HoldId, Option<Hold>>,
    lots: HashMap<LotId, Lot>,
    asked_lots: HashSet<LotId>,
    transactions: HashMap<TxId, Option<Transaction>>,
    refunded: HashMap<TxId, Amount>,
    features: HashMap<FeatureId, Option<Feature>>,
    stored: HashMap<String, (Vec<u8>, StoredResponse)>,
    externals: HashMap<(AccountId, ExternalId), Option<(Transaction, String)>>,
    records: HashMap<(String, String), Option<Record>>,
    owners: HashMap<(String, String, String), Option<String>>,
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

/// Sends every write and `COMMIT` in one round trip. Each bulk write is one
/// statement over arrays. If any write fails, PostgreSQL turns the `COMMIT`
/// into a rollback and the error is reported.
async fn write_and_commit(
    pg: &Client,
    st: &Statements,
    writes: &Writes<'_>,
    claimed: &HashSet<String>,
    now: Timestamp,
) -> Result<(), Failure> {
    let mut new_accounts = writes.new_accounts.clone();
    new_accounts.sort_by(|a, b| a.id.cmp(&b.id));
    let a_ids: Vec<&str> = new_accounts.iter().map(|a| a.id.as_str()).collect();
    let a_names: Vec<Option<&str>> = new_accounts.iter().map(|a| a.name.as_deref()).collect();
    let a_meta: Vec<&str> = new_accounts.iter().map(|a| a.metadata.as_str()).collect();
    let a_overdraft: Vec<i64> = new_accounts
        .iter()
        .map(|a| a.overdraft_limit.micros())
        .collect();
    let a_debt: Vec<i64> = new_accounts.iter().map(|a| a.debt.micros()).collect();
    let a_created: Vec<i64> = new_accounts.iter().map(|a| a.created_at.micros()).collect();

    let d_ids: Vec<&str> = writes.accounts.iter().map(|a| a.id.as_str()).collect();
    let d_names: Vec<Option<&str>> = writes.accounts.iter().map(|a| a.name.as_deref()).collect();
    let d_meta: Vec<&str> = writes
        .accounts
        .iter()
        .map(|a| a.metadata.as_str())
        .collect();
    let d_overdraft: Vec<i64> = writes
        .accounts
        .iter()
        .map(|a| a.overdraft_limit.micros())
        .collect();
    let d_debt: Vec<i64> = writes.accounts.iter().map(|a| a.debt.micros()).collect();

    let (new_lots, changed_lots): (Vec<&Lot>, Vec<&Lot>) = writes
        .lots
        .iter()
        .partition(|l| writes.new_lots.contains(&l.id));
    let l = &new_lots;
    let l_id: Vec<i64> = l.iter().map(|x| x.id.0).collect();
    let l_account: Vec<&str> = l.iter().map(|x| x.account.as_str()).collect();
    let l_source: Vec<&str> = l.iter().map(|x| x.source.code()).collect();
    let l_priority: Vec<i64> = l.iter().map(|x| i64::from(x.priority)).collect();
    let l_amount: Vec<i64> = l.iter().map(|x| x.amount.micros()).collect();
    let l_remaining: Vec<i64> = l.iter().map(|x| x.remaining.micros()).collect();
    let l_effective: Vec<i64> = l.iter().map(|x| x.effective_at.micros()).collect();
    let l_expires: Vec<Option<i64>> = l
        .iter()
        .map(|x| x.expires_at.map(Timestamp::micros))
        .collect();
    let l_voided: Vec<Option<i64>> = l
        .iter()
        .map(|x| x.voided_at.map(Timestamp::micros))
        .collect();
    let l_created: Vec<i64> = l.iter().map(|x| x.created_at.micros()).collect();
    let l_meta: Vec<&str> = l.iter().map(|x| x.metadata.as_str()).collect();
    let l_ext: Vec<Option<&str>> = l
        .iter()
        .map(|x| x.external_id.as_ref().map(ExternalId::as_str))
        .collect();
    let u_id: Vec<i64> = changed_lots.iter().map(|x| x.id.0).collect();
    let u_remaining: Vec<i64> = changed_lots.iter().map(|x| x.remaining.micros()).collect();
    let u_voided: Vec<Option<i64>> = changed_lots
        .iter()
        .map(|x| x.voided_at.map(Timestamp::micros))
        .collect();

    let h = &writes.holds;
    let h_id: Vec<i64> = h.iter().map(|x| x.id.0).collect();
    let h_account: Vec<&str> = h.iter().map(|x| x.account.as_str()).collect();
    let h_amount: Vec<i64> = h.iter().map(|x| x.amount.micros()).collect();
    let h_legs: Vec<String> = h.iter().map(|x| encode_legs(&x.legs)).collect();
    let h_status: Vec<&str> = h.iter().map(|x| x.status.code()).collect();
    let h_committed: Vec<Option<i64>> = h
        .iter()
        .map(|x| x.committed_amount.map(Amount::micros))
        .collect();
    let h_created: Vec<i64> = h.iter().map(|x| x.created_at.micros()).collect();
    let h_expires: Vec<i64> = h.iter().map(|x| x.expires_at.micros()).collect();
    let h_resolved: Vec<Option<i64>> = h
        .iter()
        .map(|x| x.resolved_at.map(Timestamp::micros))
        .collect();
    let h_meta: Vec<&str> = h.iter().map(|x| x.metadata.as_str()).collect();

    let t = writes.transactions;
    let t_id: Vec<i64> = t.iter().map(|x| x.id.0).collect();
    let t_account: Vec<&str> = t.iter().map(|x| x.account.as_str()).collect();
    let t_kind: Vec<&str> = t.iter().map(|x| x.kind.code()).collect();
    let t_amount: Vec<i64> = t.iter().map(|x| x.amount.micros()).collect();
    let t_usage: Vec<i64> = t.iter().map(usage_of).collect();
    let t_balance: Vec<i64> = t.iter().map(|x| x.balance_after.micros()).collect();
    let t_postings: Vec<String> = t.iter().map(|x| encode_postings(&x.postings)).collect();
    let t_sources: Vec<String> = t.iter().map(|x| encode_sources(&x.sources)).collect();
    let t_created: Vec<i64> = t.iter().map(|x| x.created_at.micros()).collect();
    let t_meta: Vec<&str> = t.iter().map(|x| x.metadata.as_str()).collect();
    let t_lot: Vec<Option<i64>> = t.iter().map(|x| x.lot.map(|l| l.0)).collect();
    let t_hold: Vec<Option<i64>> = t.iter().map(|x| x.hold.map(|h| h.0)).collect();
    let t_refund: Vec<Option<i64>> = t.iter().map(|x| x.refund_of.map(|r| r.0)).collect();
    let t_feature: Vec<Option<&str>> = t
        .iter()
        .map(|x| x.feature.as_ref().map(|(f, _)| f.as_str()))
        .collect();
    let t_quantity: Vec<Option<i64>> = t
        .iter()
        .map(|x| x.feature.as_ref().map(|(_, q)| q.micros()))
        .collect();
    let t_ext: Vec<Option<&str>> = t
        .iter()
        .map(|x| x.external_id.as_ref().map(ExternalId::as_str))
        .collect();
    let t_digest: Vec<Option<&str>> = t
        .iter()
        .map(|x| writes.external_digests.get(&x.id).map(String::as_str))
        .collect();
    let t_reason: Vec<Option<&str>> = t.iter().map(|x| x.reason.as_deref()).collect();
    let t_actor: Vec<Option<&str>> = t.iter().map(|x| x.actor.as_deref()).collect();

    let r_kind: Vec<&str> = writes
        .records
        .iter()
        .map(|((k, _), _)| k.as_str())
        .collect();
    let r_id: Vec<&str> = writes
        .records
        .iter()
        .map(|((_, i), _)| i.as_str())
        .collect();
    let stored: Vec<&Record> = writes.records.iter().filter_map(|(_, r)| *r).collect();
    let s_kind: Vec<&str> = stored.iter().map(|r| r.kind.as_str()).collect();
    let s_id: Vec<&str> = stored.iter().map(|r| r.id.as_str()).collect();
    let s_version: Vec<i64> = stored.iter().map(|r| r.version as i64).collect();
    let s_body: Vec<&str> = stored.iter().map(|r| r.body.as_str()).collect();
    let s_created: Vec<i64> = stored.iter().map(|r| r.created_at.micros()).collect();
    let s_updated: Vec<i64> = stored.iter().map(|r| r.updated_at.micros()).collect();
    let (d_kind, d_id): (Vec<&str>, Vec<&str>) = writes
        .records
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|((k, i), _)| (k.as_str(), i.as_str()))
        .unzip();
    let indexed: Vec<(&Record, &Lookup)> = stored
        .iter()
        .flat_map(|r| r.lookups.iter().map(move |l| (*r, l)))
        .collect();
    let i_kind: Vec<&str> = indexed.iter().map(|(r, _)| r.kind.as_str()).collect();
    let i_name: Vec<&str> = indexed.iter().map(|(_, l)| l.name.as_str()).collect();
    let i_value: Vec<&str> = indexed.iter().map(|(_, l)| l.value.as_str()).collect();
    let i_id: Vec<&str> = indexed.iter().map(|(r, _)| r.id.as_str()).collect();
    let i_unique: Vec<bool> = indexed.iter().map(|(_, l)| l.unique).collect();

    let mut features: Vec<&Feature> = writes.features.iter().collect();
    features.sort_by(|a, b| a.id.cmp(&b.id));
    // Several puts of one feature in a batch: the last one counts.
    features.dedup_by(|later, earlier| {
        if later.id == earlier.id {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    let f_id: Vec<&str> = features.iter().map(|f| f.id.as_str()).collect();
    let f_price: Vec<i64> = features
        .iter()
        .map(|f| f.credits_per_unit.micros())
        .collect();
    let f_updated: Vec<i64> = features.iter().map(|f| f.updated_at.micros()).collect();

    let k_key: Vec<&str> = writes.idempotency.iter().map(|(k, _, _)| *k).collect();
    let k_print: Vec<&[u8]> = writes.idempotency.iter().map(|(_, f, _)| *f).collect();
    let k_status: Vec<i64> = writes
        .idempotency
        .iter()
        .map(|(_, _, r)| i64::from(r.status))
        .collect();
    let k_body: Vec<&[u8]> = writes
        .idempotency
        .iter()
        .map(|(_, _, r)| r.body.as_slice())
        .collect();
    // Keys claimed for commands whose answer is not kept (a bug): release them.
    let kept: HashSet<&str> = k_key.iter().copied().collect();
    let unkept: Vec<&str> = claimed
        .iter()
        .map(String::as_str)
        .filter(|k| !kept.contains(k))
        .collect();
    let now_micros = now.micros();

    let calls = writes.calls;
    let c_id: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    let c_account: Vec<&str> = calls.iter().map(|c| c.account.as_str()).collect();
    let c_key: Vec<Option<&str>> = calls.iter().map(|c| c.key_id.as_deref()).collect();
    let c_project: Vec<Option<&str>> = calls.iter().map(|c| c.project.as_deref()).collect();
    let c_provider: Vec<&str> = calls.iter().map(|c| c.provider.as_str()).collect();
    let c_model: Vec<&str> = calls.iter().map(|c| c.model.as_str()).collect();
    let c_mode: Vec<&str> = calls.iter().map(|c| c.mode.as_str()).collect();
    let c_tokens: [Vec<i64>; 5] = [
        calls.iter().map(|c| c.tokens.input).collect(),
        calls.iter().map(|c| c.tokens.cached).collect(),
        calls.iter().map(|c| c.tokens.cache_write).collect(),
        calls.iter().map(|c| c.tokens.output).collect(),
        calls.iter().map(|c| c.tokens.reasoning).collect(),
    ];
    let c_cost: Vec<i64> = calls.iter().map(|c| c.cost.micros()).collect();
    let c_list: Vec<i64> = calls.iter().map(|c| c.list_cost.micros()).collect();
    let c_status: Vec<i64> = calls.iter().map(|c| i64::from(c.status)).collect();
    let c_outcome: Vec<&str> = calls.iter().map(|c| c.outcome.as_str()).collect();
    let c_latency: Vec<i64> = calls.iter().map(|c| c.latency_ms).collect();
    let c_tx: Vec<Option<i64>> = calls.iter().map(|c| c.tx.map(|t| t.0)).collect();
    let c_at: Vec<i64> = calls.iter().map(|c| c.at.micros()).collect();
    let buckets = crate::usage::rollup(calls);
    let b_account: Vec<&str> = buckets.iter().map(|(a, _)| a.as_str()).collect();
    let b_hour: Vec<i64> = buckets.iter().map(|(_, b)| b.hour).collect();
    let b_model: Vec<&str> = buckets.iter().map(|(_, b)| b.model.as_str()).collect();
    let b_key: Vec<&str> = buckets.iter().map(|(_, b)| b.key_id.as_str()).collect();
    let b_project: Vec<&str> = buckets.iter().map(|(_, b)| b.project.as_str()).collect();
    let b_mode: Vec<&str> = buckets.iter().map(|(_, b)| b.mode.as_str()).collect();
    let b_calls: Vec<i64> = buckets.iter().map(|(_, b)| b.calls).collect();
    let b_tokens: [Vec<i64>; 5] = [
        buckets.iter().map(|(_, b)| b.tokens.input).collect(),
        buckets.iter().map(|(_, b)| b.tokens.cached).collect(),
        buckets.iter().map(|(_, b)| b.tokens.cache_write).collect(),
        buckets.iter().map(|(_, b)| b.tokens.output).collect(),
        buckets.iter().map(|(_, b)| b.tokens.reasoning).collect(),
    ];
    let b_cost: Vec<i64> = buckets.iter().map(|(_, b)| b.cost.micros()).collect();
    let b_list: Vec<i64> = buckets.iter().map(|(_, b)| b.list_cost.micros()).collect();
    let mut writes_out = Pipeline::default();
    if !a_ids.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.insert_accounts,
                &[&a_ids, &a_names, &a_meta, &a_overdraft, &a_debt, &a_created],
            )
            .await
        });
    }
    if !d_ids.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.update_accounts,
                &[&d_ids, &d_names, &d_meta, &d_overdraft, &d_debt],
            )
            .await
        });
    }
    if !l_id.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.insert_lots,
                &[
                    &l_id,
                    &l_account,
                    &l_source,
                    &l_priority,
                    &l_amount,
                    &l_remaining,
                    &l_effective,
                    &l_expires,
                    &l_voided,
                    &l_created,
                    &l_meta,
                    &l_ext,
                ],
            )
            .await
        });
    }
    if !u_id.is_empty() {
        writes_out.push_execute(async {
            pg.execute(&st.update_lots, &[&u_id, &u_remaining, &u_voided])
                .await
        });
    }
    if !h_id.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.upsert_holds,
                &[
                    &h_id,
                    &h_account,
                    &h_amount,
                    &h_legs,
                    &h_status,
                    &h_committed,
                    &h_created,
                    &h_expires,
                    &h_resolved,
                    &h_meta,
                ],
            )
            .await
        });
    }
    if !t_id.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.insert_transactions,
                &[
                    &t_id,
                    &t_account,
                    &t_kind,
                    &t_amount,
                    &t_usage,
                    &t_balance,
                    &t_postings,
                    &t_sources,
                    &t_created,
                    &t_meta,
                    &t_lot,
                    &t_hold,
                    &t_refund,
                    &t_feature,
                    &t_quantity,
                    &t_ext,
                    &t_digest,
                    &t_reason,
                    &t_actor,
                ],
            )
            .await
        });
    }
    if !f_id.is_empty() {
        writes_out.push_execute(async {
            pg.execute(&st.upsert_features, &[&f_id, &f_price, &f_updated])
                .await
        });
    }
    if !r_kind.is_empty() {
        // Lookups go first, so that a unique value moving from one record to
        // another in the batch is never held by both.
        writes_out.push_execute(async { pg.execute(&st.forget_lookups, &[&r_kind, &r_id]).await });
    }
    if !s_kind.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.upsert_records,
                &[&s_kind, &s_id, &s_version, &s_body, &s_created, &s_updated],
            )
            .await
        });
    }
    if !d_kind.is_empty() {
        writes_out.push_execute(async { pg.execute(&st.delete_records, &[&d_kind, &d_id]).await });
    }
    if !i_kind.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.insert_lookups,
                &[&i_kind, &i_name, &i_value, &i_id, &i_unique],
            )
            .await
        });
    }
    if !calls.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.insert_calls,
                &[
                    &c_id,
                    &c_account,
                    &c_key,
                    &c_project,
                    &c_provider,
                    &c_model,
                    &c_mode,
                    &c_tokens[0],
                    &c_tokens[1],
                    &c_tokens[2],
                    &c_tokens[3],
                    &c_tokens[4],
                    &c_cost,
                    &c_list,
                    &c_status,
                    &c_outcome,
                    &c_latency,
                    &c_tx,
                    &c_at,
                ],
            )
            .await
        });
        writes_out.push_execute(async {
            pg.execute(
                &st.add_buckets,
                &[
                    &b_account,
                    &b_hour,
                    &b_model,
                    &b_key,
                    &b_project,
                    &b_mode,
                    &b_calls,
                    &b_tokens[0],
                    &b_tokens[1],
                    &b_tokens[2],
                    &b_tokens[3],
                    &b_tokens[4],
                    &b_cost,
                    &b_list,
                ],
            )
            .await
        });
    }
    if !k_key.is_empty() {
        writes_out.push_execute(async {
            pg.execute(
                &st.keep_responses,
                &[&k_key, &k_print, &k_status, &k_body, &now_micros],
            )
            .await
        });
    }
    if !unkept.is_empty() {
        writes_out.push_execute(async { pg.execute(&st.release_keys, &[&unkept]).await });
    }
    writes_out.push_execute(async { pg.batch_execute("COMMIT").await.map(|()| 0) });
    writes_out.run().await?;
    Ok(())
}

/// A request that answers rows (a query) or nothing useful (a command).
type Request<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

/// Requests sent together on one connection and answered in order: one
/// round trip for all of them. Each is sent when first polled, and they are
/// first polled in the order they were pushed.
#[derive(Default)]
struct Pipeline<'a> {
    requests: Vec<Request<'a>>,
}

impl<'a> Pipeline<'a> {
    /// Opens the transaction, as the first request.
    fn begin(&mut self, pg: &'a Client) {
        self.requests.push(Box::pin(async move {
            pg.batch_execute("BEGIN").await.map(|()| Vec::new())
        }));
    }

    /// Adds a query; returns its place among the answers.
    fn push(
        &mut self,
        request: impl std::future::Future<
            Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
        > + Send
        + 'a,
    ) -> usize {
        self.requests.push(Box::pin(request));
        self.requests.len() - 1
    }

    /// Adds a command whose row count does not matter.
    fn push_execute(
        &mut self,
        request: impl std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a,
    ) {
        self.requests
            .push(Box::pin(async move { request.await.map(|_| Vec::new()) }));
    }

    /// Sends everything and waits for every answer; the first error wins.
    async fn run(self) -> Result<Answers, tokio_postgres::Error> {
        Ok(Answers(
            futures_util::future::try_join_all(self.requests)
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        ))
    }
}

/// The answers of a pipeline, taken out by place.
struct Answers(Vec<Option<Vec<tokio_postgres::Row>>>);

impl Answers {
    /// The rows of the request at `place`; none when it was not sent.
    fn take(&mut self, place: Option<usize>) -> Vec<tokio_postgres::Row> {
        place
            .and_then(|i| self.0.get_mut(i).and_then(Option::take))
            .unwrap_or_default()
    }
}

/// Which writer a command belongs to: by its account when it names one,
/// else by the hold, lot or transaction it names.
pub fn route(op: &Op) -> u64 {
    let hash = |text: &str| fnv1a(text.as_bytes());
    match op {
        Op::CreateAccount { account, .. } => hash(account.id.as_str()),
        Op::Grant { account, .. }
        | Op::Renew { account, .. }
        | Op::UpdateAccount { account, .. }
        | Op::Consume { account, .. }
        | Op::ClawBack { account, .. }
        | Op::Hold { account, .. }
        | Op::Settle { account } => hash(account.as_str()),
        Op::Commit { hold, .. } | Op::Release { hold, .. } => hold.0 as u64,
        Op::Void { lot, .. } => lot.0 as u64,
        Op::Refund { tx, .. } => tx.0 as u64,
        Op::PutFeature(_) => 0,
        Op::Record(write) => {
            let (kind, id) = write.key();
            fnv1a(kind.as_bytes()) ^ fnv1a(id.as_bytes())
        }
    }
}

/// 64-bit FNV-1a: a fixed hash, the same on every node and every release.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The advisory lock keys of accounts, records and unique lookup values, in
/// the one order every batch takes them, so that batches never deadlock. Keys are a fixed hash (FNV-1a) of
/// the id, the same on every node; two ids sharing a key only wait for each
/// other.
fn lock_keys(
    accounts: &BTreeSet<String>,
    records: &BTreeSet<(String, String)>,
    lookups: &BTreeSet<(String, String, String)>,
) -> Vec<i64> {
    // Records and lookup values are hashed with a leading byte that no
    // account id has, so their keys stay apart from accounts'.
    let mut keys: Vec<i64> = accounts
        .iter()
        .map(|id| fnv1a(id.as_bytes()) as i64)
        .chain(
            records
                .iter()
                .map(|(kind, id)| fnv1a(format!("\x01{kind}\x00{id}").as_bytes()) as i64),
        )
        .chain(lookups.iter().map(|(kind, name, value)| {
            fnv1a(format!("\x02{kind}\x00{name}\x00{value}").as_bytes()) as i64
        }))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}
