//! Health: what the API can tell of the service: its health check, the last
//! `creditd verify`, the holds pending, the auto top-ups backing off, a few
//! figures from its metrics, the webhook endpoints failing or disabled, and
//! the latest payment events.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::super::{Notice, render};
use super::operator;
use crate::Dashboard;
use crate::domain::{format, metrics};

/// The payment events the page shows.
const EVENTS_SHOWN: usize = 20;

/// The auto top-ups backing off the page shows.
const TOPUPS_SHOWN: usize = 50;

/// The health page's route.
pub(super) fn router() -> Router<Arc<Dashboard>> {
    Router::new().route("/admin/health", get(health))
}

#[derive(Template)]
#[template(path = "admin_health.html")]
struct HealthPage {
    title: &'static str,
    csrf: String,
    section: &'static str,
    notice: Option<Notice>,
    healthy: bool,
    health: String,
    ledger: Option<LedgerRows>,
    topups: Option<TopupRows>,
    figures: Option<Vec<Figure>>,
    events: Option<Vec<EventRow>>,
    endpoints: Option<Vec<EndpointRow>>,
}

/// A webhook endpoint that is failing or disabled, as shown.
struct EndpointRow {
    url: String,
    status: &'static str,
    since: String,
}

#[derive(Deserialize)]
struct Endpoints {
    data: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    url: String,
    status: String,
    disabled_reason: Option<String>,
    failing_since: Option<String>,
    updated_at: String,
}

/// A figure read from the metrics.
struct Figure {
    name: &'static str,
    value: String,
}

struct EventRow {
    at: String,
    kind: String,
    account: String,
    outcome: String,
}

/// The ledger's health as shown.
struct LedgerRows {
    last_verify: Option<VerifyRow>,
    holds_pending: u64,
    holds_credits: String,
}

/// The last `creditd verify` as shown.
struct VerifyRow {
    at: String,
    accounts: u64,
    lots: u64,
    transactions: u64,
    violations: u64,
    first_violations: Vec<String>,
}

/// The auto top-ups backing off, as shown: the first page, and whether
/// there are more.
struct TopupRows {
    rows: Vec<TopupRow>,
    more: bool,
}

struct TopupRow {
    account: String,
    reason: String,
    retry_at: String,
}

#[derive(Deserialize)]
struct LedgerHealth {
    last_verify: Option<VerifyRun>,
    holds_pending: HoldsPending,
}

#[derive(Deserialize)]
struct VerifyRun {
    ran_at: String,
    accounts: u64,
    lots: u64,
    transactions: u64,
    violations: u64,
    first_violations: Vec<String>,
}

#[derive(Deserialize)]
struct HoldsPending {
    count: u64,
    amount: String,
}

#[derive(Deserialize)]
struct BackingOff {
    data: Vec<BackingOffEntry>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct BackingOffEntry {
    account_id: String,
    reason: String,
    retry_at: String,
}

#[derive(Deserialize)]
struct Health {
    status: String,
}

#[derive(Deserialize)]
struct Events {
    data: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    account_id: Option<String>,
    outcome: String,
    received_at: String,
}

/// `GET /admin/health`.
async fn health(State(dashboard): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let who = &operator.principal;
    let api = &dashboard.api;
    let events_path = format!("/v1/payments/events?limit={EVENTS_SHOWN}");
    let topups_path = format!("/v1/payments/auto-topups?state=backing_off&limit={TOPUPS_SHOWN}");
    let (health, ledger, topups, text, events, endpoints) = tokio::join!(
        api.get::<Health>(who, "/healthz"),
        api.get::<LedgerHealth>(who, "/v1/health/ledger"),
        api.get::<BackingOff>(who, &topups_path),
        api.get_text(who, "/metrics"),
        api.get::<Events>(who, &events_path),
        api.get::<Endpoints>(who, "/v1/webhook-endpoints"),
    );
    // Only what needs the operator: endpoints disabled for failing, and
    // those failing now. A server without webhooks shows nothing of them.
    let endpoints = endpoints.ok().map(|e| {
        e.data
            .into_iter()
            .filter_map(|e| match (e.disabled_reason.as_deref(), e.failing_since) {
                (Some("failing"), _) => Some(EndpointRow {
                    url: e.url,
                    status: "disabled: every delivery failed for three days",
                    since: shown_instant(e.updated_at),
                }),
                (None, Some(since)) if e.status == "enabled" => Some(EndpointRow {
                    url: e.url,
                    status: "failing, retried",
                    since: shown_instant(since),
                }),
                _ => None,
            })
            .collect::<Vec<_>>()
    });
    let disabled = endpoints
        .iter()
        .flatten()
        .filter(|e| e.status.starts_with("disabled"))
        .count();
    let notice = (disabled > 0).then(|| Notice {
        kind: "error",
        text: format!(
            "{disabled} webhook {} disabled after failing every delivery for three days: fix \
             it, enable it again (PATCH /v1/webhook-endpoints/{{id}} with disabled false) and \
             resend what it missed.",
            if disabled == 1 {
                "endpoint is"
            } else {
                "endpoints are"
            }
        ),
    });
    let (healthy, health) = match health {
        Ok(health) => (health.status == "ok", health.status),
        Err(refusal) => (false, refusal.to_string()),
    };
    let page = HealthPage {
        title: "Health",
        csrf: operator.csrf,
        section: "health",
        notice,
        healthy,
        health,
        ledger: ledger.ok().map(ledger_rows),
        topups: topups.ok().map(topup_rows),
        figures: text.ok().map(|text| figures(&text)),
        events: events
            .ok()
            .map(|e| e.data.into_iter().map(event_row).collect()),
        endpoints,
    };
    render(StatusCode::OK, &page, &[])
}

/// The figures the page shows, from the metrics' text.
fn figures(text: &str) -> Vec<Figure> {
    let count = |value: Option<f64>| value.map_or_else(|| "none".into(), |v| format!("{v:.0}"));
    let requests = "creditd_http_requests_total";
    let failed = metrics::sum(text, requests, |labels| labels.contains("status=\"5"));
    let batch_secs = metrics::total(text, "creditd_store_batch_seconds_total");
    let memory = metrics::total(text, "process_resident_memory_bytes");
    vec![
        Figure {
            name: "HTTP requests answered",
            value: count(metrics::total(text, requests)),
        },
        Figure {
            name: "of which server errors (5xx)",
            value: count(failed.or(Some(0.0))),
        },
        Figure {
            name: "Write batches committed",
            value: count(metrics::total(text, "creditd_store_batches_total")),
        },
        Figure {
            name: "Write commands in committed batches",
            value: count(metrics::total(text, "creditd_store_commands_total")),
        },
        Figure {
            name: "Write batches rolled back",
            value: count(metrics::total(text, "creditd_store_failed_batches_total")),
        },
        Figure {
            name: "Time applying and committing batches",
            value: batch_secs.map_or_else(|| "none".into(), |s| format!("{s:.3} s")),
        },
        Figure {
            name: "Resident memory",
            value: memory.map_or_else(
                || "not measured here".into(),
                |b| format!("{:.1} MiB", b / (1024.0 * 1024.0)),
            ),
        },
    ]
}

/// An instant from the API, in the page's format; as given when it does
/// not read.
fn shown_instant(text: String) -> String {
    ledger::Timestamp::parse_rfc3339(&text)
        .map(format::instant)
        .unwrap_or(text)
}

fn ledger_rows(health: LedgerHealth) -> LedgerRows {
    let credits = ledger::Amount::parse(&health.holds_pending.amount)
        .map(format::credits)
        .unwrap_or(health.holds_pending.amount);
    LedgerRows {
        last_verify: health.last_verify.map(|run| VerifyRow {
            at: shown_instant(run.ran_at),
            accounts: run.accounts,
            lots: run.lots,
            transactions: run.transactions,
            violations: run.violations,
            first_violations: run.first_violations,
        }),
        holds_pending: health.holds_pending.count,
        holds_credits: credits,
    }
}

fn topup_rows(page: BackingOff) -> TopupRows {
    TopupRows {
        more: page.next_cursor.is_some(),
        rows: page
            .data
            .into_iter()
            .map(|entry| TopupRow {
                account: entry.account_id,
                reason: entry.reason,
                retry_at: shown_instant(entry.retry_at),
            })
            .collect(),
    }
}

fn event_row(event: Event) -> EventRow {
    EventRow {
        at: shown_instant(event.received_at),
        kind: event.kind,
        account: event.account_id.unwrap_or_default(),
        outcome: event.outcome,
    }
}
