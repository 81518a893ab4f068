//! Prometheus metrics: requests and their latencies by route, the write path's batches, and the
//! process.

mod process;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use store::StoreStats;

use crate::AppState;

pub use process::{Process, resident_bytes};

/// The `content-type` of [`Metrics::render`]'s text: the Prometheus text
/// format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The route label of a request that matched no route, so that a path
/// nobody routes never becomes a label value.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds, in seconds, of the latency histogram's buckets: a typical
/// request takes 50 µs to 5 ms, so the buckets are dense there, and sparse
/// up to the seconds a slow one takes.
const DURATION_BUCKETS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of a request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Arc<str>,
    status: u16,
}

/// The labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Arc<str>,
}

/// The labels of a count of requests refused before their handler ran.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// Handles to the count and the histogram that one method, route and
/// status record into; each shares its value with its family.
#[derive(Debug)]
struct Series {
    requests: Counter,
    duration: Histogram,
}

/// A handle on the server's metrics for a capability, empty until
/// [`crate::App::new`] fills it: it holds the metrics alone, so a capability
/// that keeps it keeps nothing else of the server alive.
#[derive(Clone, Default)]
pub struct MetricsHandle(Arc<std::sync::OnceLock<Arc<Metrics>>>);

impl MetricsHandle {
    /// An empty handle.
    pub fn new() -> MetricsHandle {
        MetricsHandle::default()
    }

    /// Gives the handle the metrics; a second is ignored.
    pub fn attach(&self, metrics: Arc<Metrics>) {
        let _ = self.0.set(metrics);
    }

    /// The metrics, once attached.
    pub fn get(&self) -> Option<&Metrics> {
        self.0.get().map(Arc::as_ref)
    }
}

/// Request counts and latencies by method and route template. The store's
/// counters and the process's figures are read when the metrics are rendered.
#[derive(Debug)]
pub struct Metrics {
    // The series of each method and status, by route template. Counting a
    // request already seen takes one read lock and one lookup by &str, and
    // copies nothing; the families below are looked up only when a series
    // is first seen, and read when rendering. A std RwLock: nothing awaits
    // while it is held.
    series: RwLock<HashMap<(&'static str, u16), Routes>>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    refused: Family<RefusalLabels, Counter>,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    auto_topups: Family<OutcomeLabels, Counter>,
    batch_sizes: Histogram,
    batch_seconds: Histogram,
    gateway_tokens: Family<TokenLabels, Counter>,
    gateway_cost: Family<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    /// Whether the gateway has counted anything: its families are exported
    /// from then on.
    gateway_seen: std::sync::atomic::AtomicBool,
}

/// The labels of a count of gateway tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    class: &'static str,
}

/// The labels of a sum per model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

/// The labels of a count of upstream failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    kind: &'static str,
}

/// Upper bounds of the batch-size histogram's buckets, in commands.
const BATCH_SIZE_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Upper bounds, in seconds, of the batch-time histogram's buckets: a
/// batch commits in tens of microseconds to a few milliseconds, with the
/// sync to disk.
const BATCH_SECONDS_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// The outcome a background action is counted under.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The series of one method and status, by route template.
type Routes = HashMap<Arc<str>, Series>;

/// Why a request may be refused before its handler runs: each reason is
/// exported from the start, at zero, so that a rate over it is defined.
const REFUSALS: [&str; 3] = ["overloaded", "request_timeout", "rate_limited"];

impl Default for Metrics {
    fn default() -> Metrics {
        let refused = Family::<RefusalLabels, Counter>::default();
        for reason in REFUSALS {
            let _ = refused.get_or_create(&RefusalLabels { reason });
        }
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["succeeded", "failed"] {
            let _ = webhook_deliveries.get_or_create(&OutcomeLabels { outcome });
        }
        let auto_topups = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["succeeded", "failed"] {
            let _ = auto_topups.get_or_create(&OutcomeLabels { outcome });
        }
        Metrics {
            series: RwLock::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            refused,
            webhook_deliveries,
            auto_topups,
            batch_sizes: Histogram::new(BATCH_SIZE_BUCKETS),
            batch_seconds: Histogram::new(BATCH_SECONDS_BUCKETS),
            gateway_tokens: Family::default(),
            gateway_cost: Family::default(),
            upstream_errors: Family::default(),
            gateway_seen: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

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

impl Series {
    /// Counts one request that took `elapsed`.
    fn record(&self, elapsed: Duration) {
        self.requests.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    /// Counts one request refused because every place for a request was
    /// taken (`503 overloaded`).
    pub fn shed(&self) {
        self.refuse("overloaded");
    }

    /// Counts one request whose answer did not begin in time (`503
    /// request_timeout`).
    pub fn timed_out(&self) {
        self.refuse("request_timeout");
    }

    /// Counts one request refused by its key's rate (`429 rate_limited`).
    pub fn rate_limited(&self) {
        self.refuse("rate_limited");
    }

    /// Counts one attempt to deliver a webhook event: the endpoint answered
    /// 2xx, or it did not.
    pub fn webhook_delivered(&self, succeeded: bool) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Feeds the batch histograms from `stats`: each committed batch's
    /// size and time.
    pub fn observe(&self, stats: &StoreStats) {
        let (sizes, seconds) = (self.batch_sizes.clone(), self.batch_seconds.clone());
        stats.observe_batches(Box::new(move |commands, micros| {
            sizes.observe(commands as f64);
            seconds.observe(micros as f64 / 1e6);
        }));
    }

    /// Counts a gateway call's tokens by class (`input`, `cached`,
    /// `cache_write`, `output`, `reasoning`) and what it cost in credits,
    /// under its model.
    pub fn gateway_call(&self, model: &str, tokens: &[(&'static str, u64)], credits: f64) {
        self.gateway_seen.store(true, Ordering::Relaxed);
        for (class, count) in tokens {
            if *count > 0 {
                self.gateway_tokens
                    .get_or_create(&TokenLabels {
                        model: model.to_owned(),
                        class,
                    })
                    .inc_by(*count);
            }
        }
        self.gateway_cost
            .get_or_create(&ModelLabels {
                model: model.to_owned(),
            })
            .inc_by(credits);
    }

    /// Counts an upstream's failure: `server_error` (it answered 5xx) or
    /// `unreachable`.
    pub fn upstream_failed(&self, upstream: &str, kind: &'static str) {
        self.gateway_seen.store(true, Ordering::Relaxed);
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
                kind,
            })
            .inc();
    }

    /// Counts one auto top-up that ended: paid and granted, or failed.
    pub fn auto_topup(&self, succeeded: bool) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.auto_topups
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    fn register_gateway(&self, registry: &mut Registry) {
        registry.register(
            "creditd_gateway_tokens",
            "Tokens of gateway calls settled, by model and class (input, cached, cache_write, \
             output, reasoning)",
            self.gateway_tokens.clone(),
        );
        registry.register(
            "creditd_gateway_cost_credits",
            "Credits gateway calls were charged, by model",
            self.gateway_cost.clone(),
        );
        registry.register(
            "creditd_gateway_upstream_errors",
            "Upstream failures of gateway calls, by upstream and kind: server_error (a 5xx \
             answer) or unreachable; the call went to the next upstream",
            self.upstream_errors.clone(),
        );
    }

    fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// Counts one answered request and its latency.
    fn record(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = series.get(&(method, status)).and_then(|r| r.get(route)) {
            found.record(elapsed);
            return;
        }
        drop(series);
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        let routes = series.entry((method, status)).or_default();
        if let Some(found) = routes.get(route) {
            found.record(elapsed);
            return;
        }
        let route: Arc<str> = Arc::from(route);
        let found = Series {
            requests: self.requests.get_or_create_owned(&RequestLabels {
                method,
                route: route.clone(),
                status,
            }),
            duration: self.durations.get_or_create_owned(&RouteLabels {
                method,
                route: route.clone(),
            }),
        };
        found.record(elapsed);
        routes.insert(route, found);
    }

    /// Every metric in the Prometheus text format (see [`CONTENT_TYPE`]),
    /// with the store's counters as they are now.
    pub fn render(&self, store: &StoreStats, pending: Option<store::PendingHolds>) -> String {
        // A registry per scrape: it holds handles to the request metrics,
        // which keep counting between scrapes, and the values read now. The
        // encoder ends each help text with a full stop.
        let mut registry = Registry::default();
        registry.register(
            "creditd_http_requests",
            "HTTP requests answered, by method, route template and status",
            self.requests.clone(),
        );
        registry.register(
            "creditd_http_request_duration_seconds",
            "Time from a request reaching the router to its handler's response, by method and route template",
            self.durations.clone(),
        );
        registry.register(
            "creditd_http_refused_requests",
            "Requests refused before their handler ran, by reason: overloaded (every place for \
             a request taken), request_timeout (no answer within the route's limit), rate_limited (over the key's rate)",
            self.refused.clone(),
        );
        registry.register(
            "creditd_webhook_deliveries",
            "Attempts to deliver an outbound webhook event, by outcome: succeeded (the endpoint \
             answered 2xx) or failed",
            self.webhook_deliveries.clone(),
        );
        registry.register(
            "creditd_auto_topups",
            "Auto top-ups ended on this node, by outcome: succeeded (paid and granted) or failed",
            self.auto_topups.clone(),
        );
        registry.register(
            "creditd_store_batch_size",
            "Commands in each committed write batch",
            self.batch_sizes.clone(),
        );
        registry.register(
            "creditd_store_batch_commit_seconds",
            "Time to apply and commit each write batch, its sync to disk included",
            self.batch_seconds.clone(),
        );
        if self.gateway_seen.load(Ordering::Relaxed) {
            self.register_gateway(&mut registry);
        }
        let counters = [
            (
                "creditd_store_batches",
                "Write batches committed",
                &store.batches,
            ),
            (
                "creditd_store_commands",
                "Write commands answered by committed batches",
                &store.commands,
            ),
            (
                "creditd_store_failed_batches",
                "Write batches rolled back",
                &store.failed_batches,
            ),
        ];
        for (name, help, value) in counters {
            registry.register(name, help, ConstCounter::new(value.load(Ordering::Relaxed)));
        }
        registry.register(
            "creditd_store_batch_seconds",
            "Time spent applying and committing batches",
            ConstCounter::new(store.batch_micros.load(Ordering::Relaxed) as f64 / 1e6),
        );
        if let Some(pending) = pending {
            registry.register(
                "creditd_holds_pending",
                "Holds pending across every account, past their expiry or not",
                ConstGauge::new(pending.count as i64),
            );
            registry.register(
                "creditd_holds_pending_credits",
                "Credits the pending holds hold",
                ConstGauge::new(pending.amount.micros() as f64 / 1e6),
            );
        }
        let process = Process::read();
        process.register(&mut registry);
        if let Some(bytes) = process.resident_bytes {
            // The name this figure had before the standard one was exported;
            // `creditd bench --http` reads it.
            registry.register(
                "creditd_process_resident_bytes",
                "Resident memory of this process, the same as process_resident_memory_bytes",
                ConstGauge::new(bytes),
            );
        }
        let mut out = String::new();
        // Writing to a String cannot fail, and every metric registered above
        // has a text form.
        prometheus_text::encode(&mut out, &registry).expect("metrics encode as text");
        out
    }
}

/// Counts every request, routed or not, by its route template (not its
/// concrete path, so account ids never become label values), and times it.
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_name(request.method());
    // A MatchedPath clone shares its text; nothing is copied per request.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    state.metrics.record(
        method,
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_counts_into_its_families() {
        let metrics = Metrics::default();
        let route = "/v1/accounts/{id}/consume";
        for _ in 0..3 {
            metrics.record("POST", route, 200, Duration::from_micros(80));
        }
        metrics.record("POST", route, 402, Duration::from_micros(90));
        let labels = RequestLabels {
            method: "POST",
            route: Arc::from(route),
            status: 200,
        };
        assert_eq!(metrics.requests.get_or_create(&labels).get(), 3);
        let refused = RequestLabels {
            status: 402,
            ..labels
        };
        assert_eq!(metrics.requests.get_or_create(&refused).get(), 1);
        assert_eq!(metrics.series.read().unwrap().len(), 2);
    }

    #[test]
    fn duration_buckets_rise() {
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
