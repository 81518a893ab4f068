//! The gateway's usage summary over a month of calls: one account seeded with a million calls
//! spread over 30 days (five models, three keys, two projects), then its 30-day summary by model
//! timed as `GET /v1/accounts/{id}/usage` computes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::usage::GroupBy;
use ledger::{AccountId, Amount, Metadata, NewAccount, Timestamp};
use store::usage::{Call, CallTokens};
use store::{Clock, Command, Executed, ManualClock, Op, SystemClock};

use crate::config;

/// Calls written at once while seeding: one group commit's worth.
const SEED_ROUND: usize = 1000;

/// What the measurement found.
#[derive(Debug, serde::Serialize)]
pub struct UsageFigures {
    /// Calls the account holds.
    pub calls: usize,
    /// Seconds seeding took.
    pub seed_seconds: f64,
    /// Rollup buckets and edge calls the summary read.
    pub buckets: usize,
    /// Summaries timed.
    pub runs: usize,
    /// Their median, in milliseconds.
    pub p50_ms: f64,
    /// Their 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// The slowest, in milliseconds.
    pub max_ms: f64,
}

fn call(account: &AccountId, i: usize) -> Call {
    let model = [
        "gpt-4o-mini",
        "gpt-4o",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "gpt-5",
    ][i % 5];
    Call {
        id: format!("gw_seed_{i:012}"),
        account: account.clone(),
        key_id: Some(format!("key_{}", i % 3)),
        project: i.is_multiple_of(2).then(|| "web".to_owned()),
        provider: if model.starts_with("claude") {
            "anthropic"
        } else {
            "openai"
        }
        .to_owned(),
        model: model.to_owned(),
        mode: "credits".to_owned(),
        tokens: CallTokens {
            input: 800,
            cached: 200,
            cache_write: 0,
            output: 150,
            reasoning: 0,
        },
        cost: Amount::from_micros(2_750),
        list_cost: Amount::from_micros(2_500),
        status: 200,
        outcome: "ok".to_owned(),
        latency_ms: 420,
        tx: None,
        at: Timestamp::from_micros(0),
    }
}

/// Seeds a fresh account of the store at `url` with `calls` calls over the
/// 30 days before now, then times `runs` summaries of those 30 days by model.
pub async fn measure(url: &str, calls: usize, runs: usize) -> anyhow::Result<UsageFigures> {
    let mut settings = config::Settings::load(None)?;
    settings.database = config::parse_database_url(url)?;
    let now = SystemClock.now();
    let month_secs = 30 * 86_400;
    let start = now.plus_secs(-month_secs);
    // The store stamps each call with its batch's instant: a clock moved
    // through the month spreads them over it.
    let clock = ManualClock::new(start);
    let opened = crate::open_store_on(&settings, true, Arc::new(clock.clone())).await?;
    let store = opened.store();
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| anyhow::anyhow!("random bytes: {e}"))?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let account = AccountId::parse(&format!("usage-{tag}"))
        .map_err(|_| anyhow::anyhow!("a bad account id"))?;
    let new = NewAccount::new(account.clone(), None, Metadata::empty(), Amount::ZERO)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    let opened_account = store
        .execute(Command::new(Op::CreateAccount {
            account: new,
            grants: Vec::new(),
        }))
        .await?;
    anyhow::ensure!(
        matches!(opened_account, Executed::Fresh(Ok(_))),
        "opening the account: {opened_account:?}"
    );

    let began = Instant::now();
    let rounds = calls.div_ceil(SEED_ROUND);
    let step_micros = month_secs * ledger::MICROS_PER_SECOND / rounds.max(1) as i64;
    for round in 0..rounds {
        clock.set(Timestamp::from_micros(
            start.micros() + round as i64 * step_micros,
        ));
        let mut writes = tokio::task::JoinSet::new();
        for i in round * SEED_ROUND..((round + 1) * SEED_ROUND).min(calls) {
            let store = store.clone();
            // A settle of the account writes nothing of its own: the call is
            // written as a settle of a gateway call is, in its batch.
            let command = Command::new(Op::Settle {
                account: account.clone(),
            })
            .with_call(call(&account, i));
            writes.spawn(async move { store.execute(command).await });
        }
        while let Some(written) = writes.join_next().await {
            let written = written??;
            anyhow::ensure!(
                matches!(written, Executed::Fresh(Ok(_))),
                "writing a call: {written:?}"
            );
        }
        if round % 50 == 0 {
            eprint!("\rseeding calls: {}/{calls}", (round + 1) * SEED_ROUND);
        }
    }
    let seed_seconds = began.elapsed().as_secs_f64();
    eprintln!("\rseeded {calls} calls in {seed_seconds:.1}s{:20}", "");

    let to = Timestamp::from_micros(start.micros() + month_secs * ledger::MICROS_PER_SECOND + 1);
    let mut took: Vec<Duration> = Vec::with_capacity(runs);
    let mut buckets = 0;
    for _ in 0..runs {
        let began = Instant::now();
        let read = gateway::usage::buckets(
            store.as_ref(),
            &account,
            start,
            to,
            store::usage::SumBy::Model,
        )
        .await?;
        let (groups, total) = gateway::usage::group(&read, GroupBy::Model);
        took.push(began.elapsed());
        anyhow::ensure!(
            total.calls == calls as i64 && groups.len() == 5,
            "the summary counted {} calls in {} groups",
            total.calls,
            groups.len()
        );
        buckets = read.len();
    }
    opened.close().await;
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(took[((took.len() as f64 * q) as usize).min(took.len() - 1)]);
    Ok(UsageFigures {
        calls,
        seed_seconds,
        buckets,
        runs,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: ms(*took.last().expect("at least one run")),
    })
}
