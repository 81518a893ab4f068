//! Background jobs: what a job is, how the server runs them, and the
//! core's own (writing what time has done, forgetting old idempotency keys,
//! reading API keys other nodes wrote, writing when keys were last used).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use store::{BoxFuture, Command, Op, StoreError};
use tokio::time::{Instant, MissedTickBehavior};

use crate::AppState;

/// A background job: one round of its work, which the server runs every
/// `every` on each node from start to shutdown. No node leads, so a round
/// must be safe to run on several nodes at once and again after a crash; it
/// logs what it does and what fails, and a failed round waits for the next.
pub struct Job {
    /// What the job is called.
    pub name: &'static str,
    /// The pause from the start of one round to the start of the next; a
    /// round that takes longer delays the next rather than crowding it.
    pub every: Duration,
    /// Starts one round. The server awaits it before the next tick, so a
    /// job may keep state between rounds.
    round: Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>,
}

impl Job {
    /// The job `name` that runs `round` every `every`.
    pub fn new<F, R>(name: &'static str, every: Duration, mut round: F) -> Job
    where
        F: FnMut() -> R + Send + 'static,
        R: Future<Output = ()> + Send + 'static,
    {
        Job {
            name,
            every,
            round: Box::new(move || Box::pin(round())),
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Jobs running, each in its own task, until [`Running::stop`] (or until
/// dropped, which stops them without waiting).
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Whether the jobs are running: when each last began a round, and
/// whether it is in one now. What `/readyz` reads.
#[derive(Debug, Default)]
pub struct Health {
    // A std Mutex: nothing awaits while it is held.
    beats: std::sync::Mutex<Vec<Beat>>,
}

#[derive(Debug)]
struct Beat {
    name: &'static str,
    every: Duration,
    began: std::time::Instant,
    in_round: bool,
}

/// How many of its intervals a job may go without beginning a round, past
/// a grace for a slow round, before it counts as stalled.
const STALLED_AFTER_INTERVALS: u32 = 3;
const STALLED_GRACE: Duration = Duration::from_secs(30);

impl Health {
    fn beat(&self, index: usize, in_round: bool) {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(beat) = beats.get_mut(index) {
            if in_round {
                beat.began = std::time::Instant::now();
            }
            beat.in_round = in_round;
        }
    }

    /// `None` when no job was ever started here; else the names of the
    /// jobs that have not begun a round for too long, outside a round.
    pub fn stalled(&self) -> Option<Vec<&'static str>> {
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        if beats.is_empty() {
            return None;
        }
        Some(
            beats
                .iter()
                .filter(|b| {
                    !b.in_round
                        && b.began.elapsed() > b.every * STALLED_AFTER_INTERVALS + STALLED_GRACE
                })
                .map(|b| b.name)
                .collect(),
        )
    }
}

/// Starts `jobs`, each with a first round at once, each beating in
/// `health` when a round begins and ends.
pub fn start(jobs: Vec<Job>, health: &Arc<Health>) -> Running {
    {
        let mut beats = health.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.clear();
        beats.extend(jobs.iter().map(|job| Beat {
            name: job.name,
            every: job.every,
            began: std::time::Instant::now(),
            in_round: false,
        }));
    }
    let tasks = jobs
        .into_iter()
        .enumerate()
        .map(|(index, mut job)| {
            let health = health.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(job.every);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    health.beat(index, true);
                    (job.round)().await;
                    health.beat(index, false);
                }
            })
        })
        .collect();
    Running { tasks }
}

impl Running {
    /// Stops every job, in the middle of a round if need be, and waits
    /// until each has let go of what it held (the store, above all, which
    /// closes only when nothing else holds it).
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How often the core's background jobs run.
#[derive(Clone, Copy, Debug)]
pub struct JobsConfig {
    /// Pause between sweeps for due expiries and repayments.
    pub sweep_interval: Duration,
    /// How long idempotency keys are kept; at least a day.
    pub idempotency_retention: Duration,
    /// Pause between reads of API keys changed on other nodes: a key
    /// revoked anywhere stops working everywhere within about this long.
    pub key_refresh_interval: Duration,
    /// How often keys' `last_used_at` is written, at most.
    pub key_usage_interval: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            sweep_interval: Duration::from_secs(1),
            idempotency_retention: Duration::from_secs(48 * 3600),
            key_refresh_interval: Duration::from_secs(1),
            key_usage_interval: Duration::from_secs(60),
        }
    }
}

/// Accounts settled per round of a sweep.
const SWEEP_BATCH: usize = 256;
/// Rounds per sweep, so one sweep cannot run forever.
const SWEEP_ROUNDS_MAX: usize = 64;

/// Settles every account with something due now; returns how many it settled.
///
/// Safe to run on several nodes at once and again after a crash: settling an
/// account that has nothing due writes nothing.
pub async fn sweep(state: &Arc<AppState>) -> Result<usize, StoreError> {
    let mut settled = 0;
    for _ in 0..SWEEP_ROUNDS_MAX {
        let due = state
            .store
            .due_accounts(state.clock.now(), SWEEP_BATCH)
            .await?;
        if due.is_empty() {
            break;
        }
        let round = due.len();
        // Sent together, so they share batches.
        let mut tasks = tokio::task::JoinSet::new();
        for account in due {
            let state = state.clone();
            tasks.spawn(async move {
                state
                    .store
                    .execute(Command::new(Op::Settle { account }))
                    .await
            });
        }
        // One account that fails to settle must not stop the others.
        let mut failed = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    failed += 1;
                    tracing::warn!(%error, "settling an account failed");
                }
                Err(error) => {
                    failed += 1;
                    tracing::warn!(%error, "settling task failed");
                }
            }
        }
        if failed == round {
            return Err(StoreError::Internal(format!("all {round} settles failed")));
        }
        settled += round - failed;
        if round < SWEEP_BATCH {
            break;
        }
    }
    Ok(settled)
}

/// How often old idempotency keys and kept answers are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The core's jobs: the sweep, every `sweep_interval`, which also forgets
/// old idempotency keys every hour; and the keys' job, every
/// `key_refresh_interval`.
pub fn core(state: &Arc<AppState>, config: JobsConfig) -> Vec<Job> {
    vec![
        sweeps(state.clone(), config),
        keeps_keys(state.clone(), config),
    ]
}

/// Settles the accounts with something due, and forgets old idempotency
/// keys in its first round and then once an hour.
fn sweeps(state: Arc<AppState>, config: JobsConfig) -> Job {
    let mut last_prune = None::<Instant>;
    Job::new("sweep", config.sweep_interval, move || {
        let prune = last_prune.is_none_or(|t| t.elapsed() > PRUNE_INTERVAL);
        if prune {
            last_prune = Some(Instant::now());
        }
        let state = state.clone();
        async move {
            match sweep(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(accounts = n, "settled due accounts"),
                Err(error) => tracing::warn!(%error, "sweep failed"),
            }
            if prune {
                forget_idempotency(&state, config.idempotency_retention).await;
            }
        }
    })
}

/// Forgets the idempotency keys and kept answers older than `retention`
/// (at least a day).
async fn forget_idempotency(state: &AppState, retention: Duration) {
    let retention = retention.max(Duration::from_secs(86_400));
    let before = state
        .clock
        .now()
        .plus_secs(-i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    match state.store.prune_idempotency(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(keys = n, "forgot old idempotency keys"),
        Err(error) => tracing::warn!(%error, "idempotency pruning failed"),
    }
    match crate::idempotency::prune(state.store.as_ref(), before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(answers = n, "forgot old kept answers"),
        Err(error) => tracing::warn!(%error, "pruning kept answers failed"),
    }
}

/// Reads keys changed on other nodes every `key_refresh_interval`, and
/// writes when keys were last used every `key_usage_interval`, the first
/// time that long after the first round.
fn keeps_keys(state: Arc<AppState>, config: JobsConfig) -> Job {
    let mut last_usage = None::<Instant>;
    Job::new("keys", config.key_refresh_interval, move || {
        let since = *last_usage.get_or_insert_with(Instant::now);
        let write_usage = since.elapsed() >= config.key_usage_interval;
        if write_usage {
            last_usage = Some(Instant::now());
        }
        let state = state.clone();
        async move {
            if let Err(error) = state.keys.refresh(state.store.as_ref()).await {
                tracing::warn!(%error, "reading API keys failed");
            }
            if write_usage {
                let granularity = i64::try_from(config.key_usage_interval.as_secs()).unwrap_or(60);
                if let Err(error) = state
                    .keys
                    .write_usage(state.store.as_ref(), granularity)
                    .await
                {
                    tracing::warn!(%error, "writing when keys were last used failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A job that counts its rounds.
    fn counting(every: Duration) -> (Job, Arc<AtomicUsize>) {
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        let job = Job::new("counting", every, move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        (job, rounds)
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_runs_at_once_then_every_interval_until_stopped() {
        let (job, rounds) = counting(Duration::from_secs(10));
        let running = start(vec![job], &Arc::default());
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3);
        running.stop().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "no round after the stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_round_delays_the_next_rather_than_crowding_it() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        let job = Job::new("slow", Duration::from_secs(10), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(35)).await;
            }
        });
        let running = start(vec![job], &Arc::default());
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_running_jobs_stops_them() {
        let (job, rounds) = counting(Duration::from_secs(10));
        drop(start(vec![job], &Arc::default()));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rounds.load(Ordering::SeqCst) <= 1);
    }

    #[test]
    fn a_job_long_without_a_round_is_stalled_unless_it_is_in_one() {
        let health = Health::default();
        assert_eq!(health.stalled(), None, "nothing started");
        let long_ago = std::time::Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap();
        health.beats.lock().unwrap().extend([
            Beat {
                name: "fresh",
                every: Duration::from_secs(1),
                began: std::time::Instant::now(),
                in_round: false,
            },
            Beat {
                name: "late",
                every: Duration::from_secs(1),
                began: long_ago,
                in_round: false,
            },
            Beat {
                name: "slow",
                every: Duration::from_secs(1),
                began: long_ago,
                in_round: true,
            },
        ]);
        assert_eq!(health.stalled(), Some(vec!["late"]));
        health.beat(1, true);
        assert_eq!(health.stalled(), Some(vec![]));
    }
}
