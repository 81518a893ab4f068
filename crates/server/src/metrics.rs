//! Prometheus metrics: request counts and latencies by route, and the write path's batches.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use store::StoreStats;

use crate::AppState;

#[derive(Default, Clone, Copy)]
struct Tally {
    count: u64,
    micros: u64,
}

/// Request counters, keyed by method, route template and status.
#[derive(Default)]
pub struct Metrics {
    // A std Mutex: nothing awaits while it is held, and each hold is one map update.
    requests: Mutex<BTreeMap<(String, String, u16), Tally>>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, micros: u64) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let tally = match requests.get_mut(&(method.to_owned(), route.to_owned(), status)) {
            Some(tally) => tally,
            None => requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default(),
        };
        tally.count += 1;
        tally.micros += micros;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, store: &StoreStats) -> String {
        let mut out = String::new();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.push_str("# HELP creditd_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE creditd_http_requests_total counter\n");
        for ((method, route, status), tally) in &requests {
            let _ = writeln!(
                out,
                "creditd_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                tally.count
            );
        }
        out.push_str(
            "# HELP creditd_http_request_seconds_total Time spent answering HTTP requests.\n",
        );
        out.push_str("# TYPE creditd_http_request_seconds_total counter\n");
        for ((method, route, status), tally) in &requests {
            let _ = writeln!(
                out,
                "creditd_http_request_seconds_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {:.6}",
                tally.micros as f64 / 1e6
            );
        }
        let counters = [
            (
                "creditd_store_batches_total",
                "Write batches committed.",
                store.batches.load(Ordering::Relaxed),
            ),
            (
                "creditd_store_commands_total",
                "Write commands answered by committed batches.",
                store.commands.load(Ordering::Relaxed),
            ),
            (
                "creditd_store_failed_batches_total",
                "Write batches rolled back.",
                store.failed_batches.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        if let Some(bytes) = resident_bytes() {
            let _ = writeln!(
                out,
                "# HELP creditd_process_resident_bytes Resident memory of this process.\n\
                 # TYPE creditd_process_resident_bytes gauge\n\
                 creditd_process_resident_bytes {bytes}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP creditd_store_batch_seconds_total Time spent applying and committing batches.\n\
             # TYPE creditd_store_batch_seconds_total counter\n\
             creditd_store_batch_seconds_total {:.6}",
            store.batch_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        out
    }
}

/// The resident memory of this process, where the platform tells (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Counts every request by its route template (not its concrete path, so
/// account ids never become label values).
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state
        .metrics
        .record(&method, &route, response.status().as_u16(), micros);
    response
}
