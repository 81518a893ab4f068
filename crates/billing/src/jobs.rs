//! Billing's background jobs: the renewals, and with a payment provider the
//! payments job, which billing's capability hands the server to run.

use std::sync::Arc;

use server::Job;

use crate::{Billing, payments, subscription};

/// Renews the subscriptions whose period has ended
/// ([`subscription::renew_due`]), every [`Billing::jobs_interval`].
pub fn renewals(billing: &Arc<Billing>) -> Job {
    let billing = billing.clone();
    Job::new("renewals", billing.jobs_interval, move || {
        let billing = billing.clone();
        async move {
            match subscription::renew_due(&billing).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(periods = n, "renewed subscriptions"),
                Err(error) => tracing::warn!(%error, "renewing subscriptions failed"),
            }
        }
    })
}

/// Starts the auto top-ups that are due, asks the provider about late
/// subscriptions, takes back refunds whose grants landed and invoices
/// overage charges, every [`Billing::jobs_interval`]: an account that fell
/// below its threshold starts its top-up within that interval.
pub fn payments(billing: &Arc<Billing>) -> Job {
    let billing = billing.clone();
    Job::new("payments", billing.jobs_interval, move || {
        let billing = billing.clone();
        async move { payments_round(&billing).await }
    })
}

/// One round of the payments job: each step runs whether the one before
/// failed or not.
async fn payments_round(billing: &Arc<Billing>) {
    if let Err(error) = payments::topup::run_due(billing).await {
        tracing::warn!(%error, "the auto top-up job failed");
    }
    if let Err(error) = payments::subscriptions::reconcile_due(billing).await {
        tracing::warn!(
            code = error.code(),
            message = %error.message(),
            "asking about late subscriptions failed"
        );
    }
    if let Err(error) = payments::refund::settle_pending(billing).await {
        tracing::warn!(
            code = error.code(),
            message = %error.message(),
            "taking back pending refunds failed"
        );
    }
    if let Err(error) = payments::overage::invoice_due(billing).await {
        tracing::warn!(
            code = error.code(),
            message = %error.message(),
            "invoicing overage charges failed"
        );
    }
}
