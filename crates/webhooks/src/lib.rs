//! Outbound webhooks: operators register endpoints, and creditd tells them what happened to
//! their customers' credits — a balance low or depleted, credits granted, a top-up paid or
//! failed, a grant about to expire, a hold expired, a subscription renewed or past due, overage
//! billed — signed as Stripe signs its own events, at least once, from an outbox written with
//! the change that caused each event.

pub mod api;
pub mod dispatch;
pub mod domain;
pub mod endpoint;
pub mod error;

use std::sync::Arc;
use std::time::Duration;

use server::sealing::Keyring;
use store::records;
use store::{Clock, Store};

/// The kinds of record the webhooks keep (events are the server's:
/// `server::events`, as any part may emit one).
pub const RECORD_KINDS: &[&str] = &[
    <endpoint::Endpoint as records::Kind>::KIND,
    <dispatch::Cursor as records::Kind>::KIND,
];

/// How the operator set webhooks up.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Whether endpoints may be at private, loopback or link-local
    /// addresses (`CREDITD_ALLOW_PRIVATE_WEBHOOKS`).
    pub allow_private: bool,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    /// How often the work runs.
    pub interval: Duration,
    /// Seals signing secrets (`CREDITD_MASTER_KEY`).
    pub keyring: Option<Keyring>,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            allow_private: false,
            attempt_timeout: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            keyring: None,
        }
    }
}

/// The webhooks' state.
pub struct Webhooks {
    /// Where endpoints, events and the journal live.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The operator's configuration.
    pub config: WebhookConfig,
    /// The master keys, when set.
    pub keyring: Option<Keyring>,
    /// Billing, whose settings hold the default threshold and the days of
    /// warning before an expiry.
    pub billing: Arc<billing::Billing>,
    http: reqwest::Client,
    metrics: server::metrics::MetricsHandle,
}

impl Webhooks {
    /// The webhooks over a store.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        billing: Arc<billing::Billing>,
        config: WebhookConfig,
    ) -> Webhooks {
        let http = server::outbound::client(config.allow_private, config.attempt_timeout);
        Webhooks {
            store,
            clock,
            keyring: config.keyring.clone(),
            config,
            billing,
            http,
            metrics: server::metrics::MetricsHandle::new(),
        }
    }

    /// The webhooks as the server plugs them in: the endpoints' and events'
    /// routes, and the delivery job.
    pub fn capability(self: &Arc<Webhooks>) -> server::Capability {
        let webhooks = self.clone();
        server::Capability::new(api::routes(self), error::WebhookError::codes())
            .with_metrics(self.metrics.clone())
            .with_job(server::Job::new(
                "webhooks",
                self.config.interval,
                move || {
                    let webhooks = webhooks.clone();
                    async move {
                        match webhooks.run_once().await {
                            Ok(round) if round == dispatch::Round::default() => {}
                            Ok(round) => tracing::debug!(?round, "webhooks round"),
                            Err(error) => tracing::warn!(%error, "a webhooks round failed"),
                        }
                    }
                },
            ))
    }

    fn count_delivery(&self, succeeded: bool) {
        if let Some(metrics) = self.metrics.get() {
            metrics.webhook_delivered(succeeded);
        }
    }
}

#[cfg(test)]
mod record_kinds {
    #[test]
    fn the_list_of_record_kinds_names_every_kind_the_webhooks_declare() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut listed: Vec<&str> = super::RECORD_KINDS.to_vec();
        listed.sort_unstable();
        assert_eq!(testkit::kinds::declared_in(&src), listed);
    }
}
