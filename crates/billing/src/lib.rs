//! Where credits come from: plans and their periods, subscriptions,
//! packages, the sign-up bonus, the daily reward and overage, built on the
//! ledger's grants and their external ids.
//!
//! Every grant billing makes carries an external id derived from its cause
//! (`signup_bonus`, `daily:2027-01-15`, `period:pro:<start>`), so that it
//! happens once however often a request is retried, a renewal runs, or
//! nodes race.

pub mod api;
pub mod daily;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod package;
pub mod payments;
pub mod plan;
pub mod settings;
pub mod stored;
pub mod subscription;

use std::sync::Arc;

use ledger::{AccountId, ExternalId, Metadata, NewGrant, Source, Timestamp};
use server::error::ApiError;
use server::policy::{Opening, Policy};
use store::records;
use store::{BoxFuture, Clock, Store, StoreError};

pub use settings::EnvSettings;

/// The kinds of record billing keeps. A kind's name is its records' key in
/// the store, shared with every other crate's: a test where all the crates
/// meet checks that no two kinds share a name.
pub const RECORD_KINDS: &[&str] = &[
    <plan::Plan as records::Kind>::KIND,
    <package::Package as records::Kind>::KIND,
    <subscription::Subscription as records::Kind>::KIND,
    <subscription::OverageCharge as records::Kind>::KIND,
    <settings::Stored as records::Kind>::KIND,
    <domain::topup::AutoTopup as records::Kind>::KIND,
    <payments::subscriptions::PaymentSubscription as records::Kind>::KIND,
    <payments::checkout::PaymentCustomer as records::Kind>::KIND,
    <payments::checkout::CheckoutSession as records::Kind>::KIND,
    <payments::checkout::SavedCard as records::Kind>::KIND,
    <payments::refund::PaymentRefund as records::Kind>::KIND,
    <payments::webhook::PaymentEvent as records::Kind>::KIND,
];

/// Billing's state: the store, the clock, and the environment's settings.
pub struct Billing {
    /// The ledger's storage, where billing's records live too.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The credit settings the environment gives.
    pub env: EnvSettings,
    /// The payment provider, when one is configured.
    pub payments: Option<payments::Payments>,
    /// Credits a US dollar buys, for custom top-ups (100: a credit is a cent).
    pub credits_per_usd: ledger::Amount,
    /// How often its background jobs run: the renewals and, with payments,
    /// the payments job.
    pub jobs_interval: std::time::Duration,
    /// The server's metrics, once it is plugged in.
    metrics: server::metrics::MetricsHandle,
}

/// The external id of the sign-up bonus.
pub const SIGNUP_BONUS_ID: &str = "signup_bonus";

impl Billing {
    /// Billing over a store.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, env: EnvSettings) -> Billing {
        Billing {
            store,
            clock,
            env,
            payments: None,
            credits_per_usd: ledger::Amount::credits(100),
            jobs_interval: server::JobsConfig::default().sweep_interval,
            metrics: server::metrics::MetricsHandle::new(),
        }
    }

    /// The same billing, taking payments through `payments`, with custom
    /// top-ups at `credits_per_usd`.
    pub fn with_payments(
        mut self,
        payments: Option<payments::Payments>,
        credits_per_usd: ledger::Amount,
    ) -> Billing {
        self.payments = payments;
        self.credits_per_usd = credits_per_usd;
        self
    }

    /// The same billing, running its background jobs every `every` (in
    /// `creditd serve`, the sweep's interval).
    pub fn with_jobs_interval(mut self, every: std::time::Duration) -> Billing {
        self.jobs_interval = every;
        self
    }

    /// Billing as the server plugs it in: its routes and error codes, its
    /// renewals and, with payments, its payments job, and its policy for
    /// what accounts open with and the priorities of grants.
    pub fn capability(self: &Arc<Billing>) -> server::Capability {
        let routes = api::routes(self)
            .into_iter()
            .chain(payments::api::routes(self))
            .collect();
        let capability = server::Capability::new(routes, error::BillingError::codes())
            .with_policy(self.clone())
            .with_metrics(self.metrics.clone())
            .with_job(jobs::renewals(self));
        match self.payments {
            Some(_) => capability.with_job(jobs::payments(self)),
            None => capability,
        }
    }

    /// Counts an auto top-up that ended, in the server's metrics.
    pub fn count_topup(&self, succeeded: bool) {
        if let Some(metrics) = self.metrics.get() {
            metrics.auto_topup(succeeded);
        }
    }

    /// Whether the account is on a plan that costs money.
    pub async fn has_paid_plan(&self, account: &AccountId) -> Result<bool, StoreError> {
        let store = self.store.as_ref();
        let Some(sub) = records::get::<subscription::Subscription>(store, account.as_str()).await?
        else {
            return Ok(false);
        };
        Ok(matches!(
            subscription::plan(store, &sub.body.plan_id).await?,
            Ok(plan) if plan.is_paid()
        ))
    }

    async fn opening_of(&self, account: &AccountId, now: Timestamp) -> Result<Opening, ApiError> {
        let store = self.store.as_ref();
        let settings = settings::read(store, &self.env).await?;
        let mut opening = Opening::default();
        let bonus = settings.signup_bonus;
        if bonus.enabled && bonus.amount.is_positive() {
            opening.grants.push(NewGrant {
                amount: bonus.amount,
                source: Source::SignupBonus,
                priority: Some(settings.priority(Source::SignupBonus)),
                effective_at: None,
                expires_at: bonus
                    .expire_days
                    .map(|days| now.plus_secs(i64::from(days) * 86_400)),
                metadata: Metadata::empty(),
                external_id: Some(ExternalId::parse(SIGNUP_BONUS_ID).expect("an external id")),
                reason: None,
                actor: None,
            });
        }
        if let Some(plan_id) = &settings.default_plan {
            match subscription::plan(store, plan_id).await? {
                Ok(plan) => {
                    let (grant, record) =
                        subscription::opening(account, plan_id, &plan, &settings, now)?;
                    opening.grants.extend(grant);
                    opening.records.push(record);
                    opening.overdraft_limit = Some(plan.overdraft_limit());
                }
                Err(_) => tracing::warn!(plan = %plan_id, "the default plan does not exist"),
            }
        }
        Ok(opening)
    }
}

impl Policy for Billing {
    fn opening<'a>(
        &'a self,
        account: &'a AccountId,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Opening, ApiError>> {
        Box::pin(self.opening_of(account, now))
    }

    fn priority<'a>(&'a self, source: Source) -> BoxFuture<'a, Result<Option<u8>, ApiError>> {
        Box::pin(async move {
            let settings = settings::read(self.store.as_ref(), &self.env).await?;
            Ok(Some(settings.priority(source)))
        })
    }
}

impl server::extract::HasStore for Billing {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

#[cfg(test)]
mod record_kinds {
    #[test]
    fn the_list_of_record_kinds_names_every_kind_billing_declares() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut listed: Vec<&str> = super::RECORD_KINDS.to_vec();
        listed.sort_unstable();
        assert_eq!(testkit::kinds::declared_in(&src), listed);
    }
}
