//! `creditd bench`: drives creditd (over HTTP, or its store in-process) and,
//! side by side, the usual hand-written credits design on PostgreSQL, or
//! creditd's gateway beside the fake upstream it forwards to, and reports
//! throughput and latency for each workload.

mod baseline;
mod driver;
mod http;
mod report;
mod upstream;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;

use driver::{Driver, Outcome};
pub use report::{Batches, Report, RunResult};

/// What the clients do, over and over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Consume 1 credit from one hot account.
    ConsumeHot,
    /// Consume 1 credit from one of many accounts, chosen at random.
    ConsumeSpread,
    /// Hold 1 credit, then commit it, on accounts chosen at random.
    HoldCommit,
    /// Check whether 1 credit could be consumed, on accounts chosen at random.
    Check,
    /// Read the balance (with its lots) of an account chosen at random.
    Balance,
    /// 80% check, 15% consume, 5% hold + commit, on accounts chosen at random.
    Mixed,
    /// A chat completion through the gateway (or the upstream directly),
    /// each client on its own account and customer key.
    Gateway,
    /// The same, streamed: latency is the time to the first body byte, and
    /// the client reads the stream to its end before its next call.
    GatewayStream,
}

impl Workload {
    /// The workloads run when none is named: the ledger's. The gateway's
    /// run only when named, as they need a creditd with an upstream set.
    const ALL: [Workload; 6] = [
        Workload::ConsumeHot,
        Workload::ConsumeSpread,
        Workload::HoldCommit,
        Workload::Check,
        Workload::Balance,
        Workload::Mixed,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::ConsumeHot => "consume-hot",
            Workload::ConsumeSpread => "consume-spread",
            Workload::HoldCommit => "hold-commit",
            Workload::Check => "check",
            Workload::Balance => "balance",
            Workload::Mixed => "mixed",
            Workload::Gateway => "gateway",
            Workload::GatewayStream => "gateway-stream",
        }
    }

    /// Whether this is a gateway workload, run on the fake upstream and
    /// through the gateway rather than on the ledger.
    fn is_gateway(self) -> bool {
        matches!(self, Workload::Gateway | Workload::GatewayStream)
    }
}

/// `creditd bench` options.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// A running creditd to drive over HTTP, such as http://127.0.0.1:8080.
    #[arg(long)]
    pub http: Option<String>,
    /// The admin key for --http (default: CREDITD_ADMIN_KEY).
    #[arg(long)]
    pub key: Option<String>,
    /// A database to drive creditd's store on in-process: sqlite://file or postgres://…
    #[arg(long)]
    pub store: Option<String>,
    /// A PostgreSQL database to run the baseline design on, for comparison.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Workloads to run (default: all the ledger's; `gateway` and
    /// `gateway-stream` only when named).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workload: Vec<Workload>,
    /// Concurrent clients (one connection each over HTTP and for the baseline).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Clients for in-process runs, if different (they cost no connection).
    #[arg(long)]
    pub store_clients: Option<usize>,
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of unmeasured warm-up before each run.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Accounts the spread workloads choose from.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Target rate in operations per second over all clients (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The prefix of the accounts' ids (default: a fresh random one).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Use the accounts a run with the same --prefix already opened.
    #[arg(long, requires = "prefix")]
    pub skip_setup: bool,
    /// Where the fake upstream of the gateway workloads listens; the creditd
    /// under test forwards to it (CREDITD_UPSTREAM_BASE_URL=http://ADDR/v1).
    #[arg(long, default_value = "127.0.0.1:18190")]
    pub upstream_listen: String,
    /// Instead of the workloads: seed one account of --store with this many
    /// gateway calls over 30 days, and time its 30-day usage summary by model.
    #[arg(long, requires = "store")]
    pub usage_summary_calls: Option<usize>,
}

/// Runs every requested workload on every requested target and prints the table.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    if let (Some(calls), Some(url)) = (options.usage_summary_calls, &options.store) {
        let figures = usage::measure(url, calls, USAGE_SUMMARY_RUNS).await?;
        println!(
            "usage summary, 30 days by model, {} calls ({} buckets read): p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms over {} runs (seeded in {:.1} s)",
            figures.calls,
            figures.buckets,
            figures.p50_ms,
            figures.p99_ms,
            figures.max_ms,
            figures.runs,
            figures.seed_seconds
        );
        let mut report = Report::new(&options);
        report.usage_summary = Some(figures);
        if let Some(path) = &options.json {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(report);
    }
    let workloads = if options.workload.is_empty() {
        Workload::ALL.to_vec()
    } else {
        options.workload.clone()
    };
    let gateway = workloads.iter().any(|w| w.is_gateway());
    if options.http.is_none() && options.store.is_none() && options.baseline.is_none() && !gateway {
        bail!(
            "name at least one target: --http URL, --store DATABASE_URL or --baseline POSTGRES_URL"
        );
    }
    let mut drivers = Vec::new();
    // The fake upstream serves for as long as the run lasts. Its direct
    // target comes first, so each gateway row follows the row it is
    // measured against.
    let upstream = if gateway {
        let upstream = upstream::FakeUpstream::start(&options.upstream_listen).await?;
        eprintln!(
            "fake upstream listening on {}; creditd forwards to it with \
             CREDITD_UPSTREAM_BASE_URL={}/v1",
            upstream.addr,
            upstream.origin()
        );
        drivers.push(Driver::upstream(upstream.origin()));
        Some(upstream)
    } else {
        None
    };
    if let Some(url) = &options.store {
        drivers.push(Driver::store(url).await?);
    }
    if let Some(base) = &options.http {
        let key = options
            .key
            .clone()
            .or_else(|| std::env::var("CREDITD_ADMIN_KEY").ok())
            .context("--http needs the admin key: --key or CREDITD_ADMIN_KEY")?;
        drivers.push(Driver::http(base, &key));
    }
    if let Some(url) = &options.baseline {
        drivers.push(Driver::baseline(url).await?);
    }

    let mut report = Report::new(&options);
    for driver in &drivers {
        let clients = match driver {
            Driver::Store { .. } => options.store_clients.unwrap_or(options.clients),
            _ => options.clients,
        };
        let prefix = options.prefix.clone().unwrap_or_else(run_prefix);
        let runs = |gateway: bool| {
            workloads
                .iter()
                .any(|&w| w.is_gateway() == gateway && driver.supports(w))
        };
        if !options.skip_setup && runs(false) {
            eprintln!(
                "setting up {} accounts on {} ...",
                options.accounts + 1,
                driver.label()
            );
            driver
                .setup(&prefix, options.accounts)
                .await
                .with_context(|| format!("setting up {}", driver.label()))?;
        }
        let customer_keys = if runs(true) {
            driver
                .setup_gateway(&prefix, clients, options.skip_setup)
                .await
                .with_context(|| format!("setting up the gateway on {}", driver.label()))?
        } else {
            Vec::new()
        };
        for &workload in &workloads {
            if !driver.supports(workload) {
                continue;
            }
            let keys = if workload.is_gateway() {
                &customer_keys[..]
            } else {
                &[]
            };
            let result = measure(driver, &prefix, workload, clients, keys, &options).await?;
            report.push(result);
        }
        report
            .memory
            .push((driver.label(), driver.resident_bytes().await));
    }
    for driver in drivers {
        driver.close().await;
    }
    drop(upstream);
    report.print();
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// How many usage summaries `--usage-summary-calls` times.
const USAGE_SUMMARY_RUNS: usize = 50;

/// A prefix that keeps this run's accounts apart from anything already there.
fn run_prefix() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("random bytes");
    let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("bench-{tag}-")
}

/// What one client measured.
#[derive(Default)]
struct Sample {
    latencies_us: Vec<u32>,
    rejected: u64,
    errors: u64,
    first_error: Option<String>,
}

/// A small deterministic generator, so runs are repeatable and cheap.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs one workload on one target. `customer_keys` holds each client's
/// key when the clients call the gateway.
async fn measure(
    driver: &Driver,
    prefix: &str,
    workload: Workload,
    clients: usize,
    customer_keys: &[String],
    options: &Options,
) -> anyhow::Result<RunResult> {
    let warmup = Duration::from_secs_f64(options.warmup.max(0.0));
    let measured = Duration::from_secs_f64(options.seconds.max(0.1));
    let started = Instant::now();
    let measure_from = started + warmup;
    let stop_at = measure_from + measured;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let interval = options
        .rate
        .map(|rate| Duration::from_secs_f64(clients as f64 / rate.max(1) as f64));

    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut client = driver
            .client(prefix, customer_keys.get(c).map(String::as_str))
            .await
            .with_context(|| format!("connecting client {c} to {}", driver.label()))?;
        let done = done.clone();
        let accounts = options.accounts;
        tasks.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            let mut rng =
                Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1).wrapping_mul(0x1234_5678_9abc));
            // Paced clients start spread over one interval.
            let mut next = interval.map(|i| Instant::now() + i.mul_f64(c as f64 / clients as f64));
            loop {
                let intended = match (next, interval) {
                    (Some(at), Some(i)) => {
                        next = Some(at + i);
                        if at > Instant::now() {
                            // Tokio's timer wakes on whole milliseconds, so
                            // the request goes out on the next tick: that
                            // tick is when it was due. A client still busy
                            // with its last request, though, is late, and
                            // its lateness counts.
                            tokio::time::sleep_until(at.into()).await;
                            Instant::now()
                        } else {
                            at
                        }
                    }
                    _ => Instant::now(),
                };
                if intended >= stop_at {
                    break;
                }
                let account = rng.below(accounts);
                let roll = rng.below(100);
                let (outcome, first_byte) = match workload {
                    Workload::ConsumeHot => (client.consume(None).await, None),
                    Workload::ConsumeSpread => (client.consume(Some(account)).await, None),
                    Workload::HoldCommit => (client.hold_commit(account).await, None),
                    Workload::Check => (client.check(account).await, None),
                    Workload::Balance => (client.balance(account).await, None),
                    Workload::Mixed if roll < 80 => (client.check(account).await, None),
                    Workload::Mixed if roll < 95 => (client.consume(Some(account)).await, None),
                    Workload::Mixed => (client.hold_commit(account).await, None),
                    Workload::Gateway => client.chat(false).await,
                    Workload::GatewayStream => client.chat(true).await,
                };
                // A stream's latency ends at its first body byte.
                let finished = first_byte.unwrap_or_else(Instant::now);
                // Latency counts from when the request should have gone out,
                // so a stalled server is not hidden by a stalled client.
                if intended >= measure_from {
                    let micros = finished.duration_since(intended).as_micros();
                    sample
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    match outcome {
                        Outcome::Ok => {}
                        Outcome::Rejected => sample.rejected += 1,
                        Outcome::Error(e) => {
                            sample.errors += 1;
                            sample.first_error.get_or_insert(e);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            sample
        }));
    }

    let label = format!(
        "{:<14} {:<28} {:>4} clients",
        workload.name(),
        driver.label_for(workload),
        clients
    );
    let progress = tokio::spawn(report::progress(
        label,
        done.clone(),
        stop.clone(),
        measure_from,
        measured,
    ));
    // The write batches of the measured period: counters when warm-up ends
    // and when the last client stops.
    tokio::time::sleep_until(measure_from.into()).await;
    let counters_before = driver.batch_counters().await;
    let mut samples = Vec::with_capacity(clients);
    for task in tasks {
        samples.push(task.await?);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    let mut result = RunResult::from_samples(
        driver.label_for(workload),
        workload,
        clients,
        measured,
        options.rate,
        samples,
    );
    if let (Some(before), Some(after)) = (counters_before, driver.batch_counters().await) {
        result.batches = Batches::between(before, after);
    }
    Ok(result)
}
