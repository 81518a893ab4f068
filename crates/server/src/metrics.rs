//! Prometheus metrics: request counts and latencies by route, and the write path's batches.

use std::collections::{BTreeMap, HashMap};
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

/// Request counters, by method and status, then by route template.
#[derive(Default)]
pub struct Metrics {
    // A std Mutex: nothing awaits while it is held, and each hold is one map
    // update. Routes are looked up by &str, so counting allocates nothing
    // once a route has been seen.
    requests: Mutex<BTreeMap<(&'static str, u16), Routes>>,
}

/// The tallies of one method and status, by route template.
type Routes = HashMap<Box<str>, Tally>;

/// The standard method names, so that counting never allocates one.
fn method_name(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    fn record(&self, method: &'static str, route: &str, status: u16, micros: u64) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let routes = requests.entry((method, status)).or_default();
        let tally = match routes.get_mut(route) {
            Some(tally) => tally,
            None => routes.entry(route.into()).or_default(),
        };
        tally.count += 1;
        tally.micros += micros;
    }

    /// Every tally, sorted, as (method, route, status).
    fn snapshot(&self) -> Vec<((&'static str, String, u16), Tally)> {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = requests
            .iter()
            .flat_map(|((method, status), routes)| {
                routes
                    .iter()
                    .map(move |(route, tally)| ((*method, route.to_string(), *status), *tally))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The Prometheus text exposition.
    pub fn render(&self, store: &StoreStats) -> String {
        let mut out = String::new();
        let requests = self.snapshot();
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
    let method = method_name(request.method());
    // A MatchedPath clone shares its text; nothing is copied per request.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state.metrics.record(
        method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        micros,
    );
    response
}
