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
//! Steps 1 and 2 are in `prefetch`, step 4 in `write`, and the statements
//! they send, named, in `statements`.
//!
//! A plain batch of consumes therefore takes two round trips. A node sends
//! each account's commands to one writer, so that they share batches rather
//! than queue for the account's lock in turn.

mod named;
mod pipeline;
mod prefetch;
mod statements;
mod write;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use ledger::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{pg_error, pool_error};
use crate::batch::Batch;
use crate::{Clock, Command, Executed, Op, StoreError, StoreStats};
use named::Named;
use prefetch::{Allocated, IdsWanted, Prefetched};
use statements::LockedReads;
#[cfg(test)]
pub(crate) use statements::named_sql;

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

/// One attempt: runs the whole batch in one transaction and commits it.
async fn attempt_batch(
    client: &deadpool_postgres::Client,
    commands: &[&Command],
    now: Timestamp,
) -> Result<Vec<Executed>, Failure> {
    let st = statements::prepare(client).await?;
    let named = Named::of(commands);
    let pg: &Client = client;
    let mut found = prefetch::look_up(pg, &st.lookups, &named, now).await?;
    // Only the writes need the keys claimed: a key claimed whose answer is
    // not kept is released.
    let claimed = std::mem::take(&mut found.claimed);
    let (mut source, ids, wanted) =
        prefetch::lock_and_read(pg, &st.reads, &named, found, commands.len()).await?;
    let (batch, answers) = decide(pg, &st.reads, commands, &mut source, ids, wanted, now).await?;
    write::write_and_commit(pg, &st, &batch.writes(), &claimed, now).await?;
    Ok(answers)
}

/// Decides the batch with no IO. If the estimate of transaction ids was
/// short, draws exactly enough and decides again from the same prefetched
/// state.
async fn decide(
    pg: &Client,
    st: &LockedReads<tokio_postgres::Statement>,
    commands: &[&Command],
    source: &mut Prefetched,
    mut ids: Allocated,
    wanted: IdsWanted,
    now: Timestamp,
) -> Result<(Batch, Vec<Executed>), Failure> {
    loop {
        let mut batch = Batch::default();
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            answers.push(batch.execute(source, command, now, &mut ids)?);
        }
        if !ids.exhausted {
            return Ok((batch, answers));
        }
        let needed = source
            .books
            .values()
            .map(|b| b.lots().len() + b.holds().len() + 1)
            .sum::<usize>()
            + commands.len() * 2;
        let row = pg
            .query_one(
                &st.allocate_ids,
                &[&(needed as i64), &wanted.lot, &wanted.hold],
            )
            .await?;
        ids = Allocated::from_row(&row)?;
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
