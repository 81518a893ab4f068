//! Background work: writing what time has done (hold and lot expiry, debt
//! repayment), forgetting old idempotency keys, reading API keys other
//! nodes wrote, and writing when keys were last used.

use std::sync::Arc;
use std::time::Duration;

use store::{Command, Op, StoreError};

use crate::AppState;

/// How often the background jobs run.
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

/// Runs the jobs until the process ends.
pub fn spawn(state: Arc<AppState>, config: JobsConfig) -> tokio::task::JoinHandle<()> {
    let keys = tokio::spawn(keep_keys(state.clone(), config));
    tokio::spawn(async move {
        // Ends with the other jobs.
        let _keys = AbortOnDrop(keys);
        let mut ticker = tokio::time::interval(config.sweep_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = None::<tokio::time::Instant>;
        loop {
            ticker.tick().await;
            match sweep(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(accounts = n, "settled due accounts"),
                Err(error) => tracing::warn!(%error, "sweep failed"),
            }
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(tokio::time::Instant::now());
                let retention = config
                    .idempotency_retention
                    .max(Duration::from_secs(86_400));
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
        }
    })
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads keys changed on other nodes every `key_refresh_interval`, and
/// writes when keys were last used every `key_usage_interval`.
async fn keep_keys(state: Arc<AppState>, config: JobsConfig) {
    let mut ticker = tokio::time::interval(config.key_refresh_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_usage = tokio::time::Instant::now();
    loop {
        ticker.tick().await;
        if let Err(error) = state.keys.refresh(state.store.as_ref()).await {
            tracing::warn!(%error, "reading API keys failed");
        }
        if last_usage.elapsed() >= config.key_usage_interval {
            last_usage = tokio::time::Instant::now();
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
}
