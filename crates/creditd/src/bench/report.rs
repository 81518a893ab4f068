//! Results: percentiles, the table, the JSON, and the progress bar.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::driver::{BatchCounters, DIRECT_LABEL, GATEWAY_LABEL};
use super::{Options, Sample, Workload};

/// One workload on one target.
#[derive(Debug, Serialize)]
pub struct RunResult {
    pub target: String,
    pub workload: Workload,
    pub clients: usize,
    pub seconds: f64,
    /// The paced rate asked for, if any.
    pub target_rate: Option<u64>,
    pub operations: u64,
    pub throughput: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
    pub rejected: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// creditd's write batches during the measured period, when it wrote.
    pub batches: Option<Batches>,
}

/// How a creditd target grouped its writes while measured.
#[derive(Debug, Serialize)]
pub struct Batches {
    pub count: u64,
    /// Commands per batch, on average.
    pub mean_commands: f64,
    /// Time to apply and commit one batch, on average.
    pub mean_us: f64,
}

impl Batches {
    /// The batches between two snapshots of the counters, if there were any.
    pub fn between(before: BatchCounters, after: BatchCounters) -> Option<Batches> {
        let count = after.batches.checked_sub(before.batches)?;
        if count == 0 {
            return None;
        }
        let commands = after.commands.saturating_sub(before.commands);
        Some(Batches {
            count,
            mean_commands: commands as f64 / count as f64,
            mean_us: (after.seconds - before.seconds).max(0.0) * 1e6 / count as f64,
        })
    }
}

impl RunResult {
    pub(super) fn from_samples(
        target: String,
        workload: Workload,
        clients: usize,
        measured: Duration,
        target_rate: Option<u64>,
        samples: Vec<Sample>,
    ) -> RunResult {
        let mut latencies: Vec<u32> = Vec::new();
        let (mut rejected, mut errors, mut first_error) = (0, 0, None);
        for sample in samples {
            latencies.extend(sample.latencies_us);
            rejected += sample.rejected;
            errors += sample.errors;
            first_error = first_error.or(sample.first_error);
        }
        latencies.sort_unstable();
        let at = |q: f64| -> u32 {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i]
        };
        let operations = latencies.len() as u64;
        RunResult {
            target,
            workload,
            clients,
            seconds: measured.as_secs_f64(),
            target_rate,
            operations,
            throughput: operations as f64 / measured.as_secs_f64(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: latencies.last().copied().unwrap_or(0),
            rejected,
            errors,
            first_error,
            batches: None,
        }
    }
}

/// Throughput of a creditd target over the baseline's, per workload.
#[derive(Debug, Serialize)]
pub struct Ratio {
    pub workload: Workload,
    pub target: String,
    pub creditd: f64,
    pub baseline: f64,
    pub ratio: f64,
}

/// What the gateway adds to a call: its latency minus the upstream's called
/// directly, per gateway workload and client count.
#[derive(Debug, Serialize)]
pub struct Added {
    pub workload: Workload,
    pub clients: usize,
    /// Calls a second on the upstream directly.
    pub direct_throughput: f64,
    /// Calls a second through the gateway.
    pub gateway_throughput: f64,
    /// Gateway p50 minus direct p50, in microseconds (negative if the
    /// gateway measured faster).
    pub p50_us: i64,
    /// Gateway p99 minus direct p99, in microseconds.
    pub p99_us: i64,
}

/// Everything a `creditd bench` run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub durability: &'static str,
    pub runs: Vec<RunResult>,
    pub ratios: Vec<Ratio>,
    /// The gateway's added latency, for the gateway workloads.
    pub added_latency: Vec<Added>,
    /// Resident memory of the process holding creditd's state, per target.
    pub memory: Vec<(String, Option<u64>)>,
    /// The usage summary's timing, when measured.
    pub usage_summary: Option<super::usage::UsageFigures>,
}

/// Where the numbers were taken.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub accounts: usize,
}

impl Report {
    pub(super) fn new(options: &Options) -> Report {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Report {
            machine: Machine {
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
                cpu,
                accounts: options.accounts,
            },
            durability: "on: SQLite WAL with synchronous=FULL; PostgreSQL with synchronous_commit as configured (checked not off for the baseline)",
            runs: Vec::new(),
            ratios: Vec::new(),
            added_latency: Vec::new(),
            memory: Vec::new(),
            usage_summary: None,
        }
    }

    pub(super) fn push(&mut self, run: RunResult) {
        self.runs.push(run);
        self.ratios = self.compute_ratios();
        self.added_latency = self.compute_added();
    }

    fn compute_added(&self) -> Vec<Added> {
        let mut added = Vec::new();
        for gateway in self.runs.iter().filter(|r| r.target == GATEWAY_LABEL) {
            let Some(direct) = self.runs.iter().find(|r| {
                r.target == DIRECT_LABEL
                    && r.workload == gateway.workload
                    && r.clients == gateway.clients
            }) else {
                continue;
            };
            added.push(Added {
                workload: gateway.workload,
                clients: gateway.clients,
                direct_throughput: direct.throughput,
                gateway_throughput: gateway.throughput,
                p50_us: i64::from(gateway.p50_us) - i64::from(direct.p50_us),
                p99_us: i64::from(gateway.p99_us) - i64::from(direct.p99_us),
            });
        }
        added
    }

    fn compute_ratios(&self) -> Vec<Ratio> {
        let mut ratios = Vec::new();
        for base in self
            .runs
            .iter()
            .filter(|r| r.target.starts_with("baseline"))
        {
            for run in self
                .runs
                .iter()
                .filter(|r| !r.target.starts_with("baseline") && r.workload == base.workload)
            {
                ratios.push(Ratio {
                    workload: run.workload,
                    target: run.target.clone(),
                    creditd: run.throughput,
                    baseline: base.throughput,
                    ratio: run.throughput / base.throughput.max(f64::MIN_POSITIVE),
                });
            }
        }
        ratios
    }

    /// Prints the table.
    pub fn print(&self) {
        println!(
            "\nmachine: {} cores, {}; durability {}",
            self.machine.cores, self.machine.cpu, self.durability
        );
        println!(
            "\n{:<28} {:<15} {:>7} {:>12} {:>9} {:>9} {:>9} {:>8} {:>7}",
            "target", "workload", "clients", "ops/s", "p50", "p99", "max", "rejected", "errors"
        );
        for r in &self.runs {
            println!(
                "{:<28} {:<15} {:>7} {:>12} {:>9} {:>9} {:>9} {:>8} {:>7}",
                r.target,
                r.workload.name(),
                r.clients,
                thousands(r.throughput),
                micros(r.p50_us),
                micros(r.p99_us),
                micros(r.max_us),
                r.rejected,
                r.errors
            );
            if let Some(error) = &r.first_error {
                println!("    first error: {error}");
            }
            if let Some(b) = &r.batches {
                println!(
                    "    write batches: {}, {:.1} commands and {} each on average",
                    thousands(b.count as f64),
                    b.mean_commands,
                    micros(b.mean_us.round() as u32)
                );
            }
        }
        if !self.ratios.is_empty() {
            println!("\nthroughput against the baseline:");
            for r in &self.ratios {
                println!(
                    "  {:<15} {:<28} {:>8.1}x  ({} vs {} ops/s)",
                    r.workload.name(),
                    r.target,
                    r.ratio,
                    thousands(r.creditd),
                    thousands(r.baseline)
                );
            }
        }
        if !self.added_latency.is_empty() {
            println!("\nthe gateway against the upstream directly:");
            for a in &self.added_latency {
                println!(
                    "  {:<15} added latency: p50 {} ms, p99 {} ms  ({} clients; {} calls/s direct, {} through creditd)",
                    a.workload.name(),
                    millis(a.p50_us),
                    millis(a.p99_us),
                    a.clients,
                    thousands(a.direct_throughput),
                    thousands(a.gateway_throughput)
                );
            }
        }
        for (target, bytes) in &self.memory {
            if let Some(bytes) = bytes {
                println!(
                    "resident memory of {target}: {:.1} MiB",
                    *bytes as f64 / 1_048_576.0
                );
            }
        }
    }
}

fn thousands(value: f64) -> String {
    let whole = value.round() as u64;
    let text = whole.to_string();
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i > 0 && (text.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Signed microseconds as milliseconds with two decimals.
fn millis(us: i64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn micros(us: u32) -> String {
    if us >= 1000 {
        format!("{:.1}ms", f64::from(us) / 1000.0)
    } else {
        format!("{us}µs")
    }
}

/// Shows a progress bar on the terminal (or a line per second otherwise)
/// until `stop` is set.
pub(super) async fn progress(
    label: String,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    measure_from: Instant,
    measured: Duration,
) {
    let terminal = std::io::stderr().is_terminal();
    let width = 30;
    let mut last = (Instant::now(), 0u64);
    let mut ticks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ticks += 1;
        let now = Instant::now();
        let count = done.load(Ordering::Relaxed);
        let rate = (count - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, count);
        let elapsed = now.saturating_duration_since(measure_from);
        let fraction = (elapsed.as_secs_f64() / measured.as_secs_f64()).clamp(0.0, 1.0);
        let filled = (fraction * width as f64) as usize;
        let phase = if now < measure_from {
            "warming up"
        } else {
            "measuring"
        };
        let line = format!(
            "{label} [{}{}] {:>5.1}/{:.0}s {:>10} ops/s {phase}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            elapsed.as_secs_f64().min(measured.as_secs_f64()),
            measured.as_secs_f64(),
            thousands(rate)
        );
        let mut err = std::io::stderr();
        if terminal {
            let _ = write!(err, "\r{line}\x1b[K");
        } else if ticks.is_multiple_of(4) {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
    if terminal {
        let _ = writeln!(std::io::stderr());
    }
}
