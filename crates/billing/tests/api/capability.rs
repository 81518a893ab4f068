//! What billing hands the server beside its routes: its jobs, each at the
//! interval billing is given, and its policy.

use std::sync::Arc;
use std::time::Duration;

use billing::payments::{Payments, PaymentsConfig};
use billing::{Billing, EnvSettings};
use server::Secret;

use crate::support::*;

/// Billing over the app's store and clock, its jobs every `every`.
fn billing_every(app: &TestApp, every: Duration) -> Billing {
    Billing::new(
        app.state.store.clone(),
        app.state.clock.clone(),
        EnvSettings::default(),
    )
    .with_jobs_interval(every)
}

/// The (name, interval) of each job of `capability`.
fn jobs_of(capability: &server::Capability) -> Vec<(&'static str, Duration)> {
    capability
        .jobs
        .iter()
        .map(|job| (job.name, job.every))
        .collect()
}

billing_test! {
    #[tokio::test]
    async fn without_payments_billing_runs_its_renewals_and_brings_its_policy(app) {
        let every = Duration::from_secs(7);
        let capability = Arc::new(billing_every(&app, every)).capability();
        assert_eq!(jobs_of(&capability), [("renewals", every)]);
        assert!(capability.policy.is_some());
    }
}

billing_test! {
    #[tokio::test]
    async fn with_payments_billing_runs_its_payments_job_too(app) {
        let every = Duration::from_secs(7);
        let payments = Payments::stripe(PaymentsConfig {
            secret_key: Secret::new("sk_test_creditd".into()),
            webhook_secret: Secret::new("whsec_test_creditd".into()),
            public_url: "https://app.example.com".into(),
            api_base: "http://127.0.0.1:9".into(),
            return_origins: Vec::new(),
        });
        let billing = billing_every(&app, every)
            .with_payments(Some(payments), ledger::Amount::credits(100));
        let capability = Arc::new(billing).capability();
        assert_eq!(jobs_of(&capability), [("renewals", every), ("payments", every)]);
    }
}
