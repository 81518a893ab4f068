//! Auto top-up at run time: the settings record, the job that starts a top-up when an account
//! falls below its threshold (one in flight across all nodes, by the record's version), the
//! off-session payment, and the grant made once by whichever of the payment's answer or its
//! webhook comes first.

use std::sync::Arc;

use ledger::{AccountId, ExternalId, Metadata, NewGrant, Source};
use serde_json::Value;
use server::error::ApiError;
use store::records::{self, Doc, Expect, Kind, Lookup, RecordFilter, Written};
use store::{Command, Executed, Op, Refused, StoreError};

use super::Payments;
use super::checkout::{SavedCard, provider_error};
use super::provider::PaymentError;
use crate::Billing;
use crate::domain::topup::{AutoTopup, Decision, credits_of};
use crate::settings;

impl Kind for AutoTopup {
    const KIND: &'static str = "auto_topup";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::ordered(
            "enabled",
            if self.enabled { "true" } else { "false" },
        )]
    }
}

/// Writes of a top-up record retried when another node changed it between
/// the read and the write.
const RETRIES_MAX: usize = 20;

/// The external id of top-up `attempt`: unique per account, kept forever.
fn external_id(attempt: u64) -> ExternalId {
    ExternalId::parse(&format!("auto_topup:{attempt}")).expect("an external id")
}

/// Checks every enabled top-up once: starts those whose account fell below
/// its threshold, asks again about those whose outcome was never learnt.
/// Safe to run on every node at once: a start moves the record from idle
/// to pending at its version, so one node wins it.
pub async fn run_due(billing: &Arc<Billing>) -> Result<usize, StoreError> {
    let Some(payments) = &billing.payments else {
        return Ok(0);
    };
    let filter = RecordFilter::Equals {
        name: "enabled".into(),
        value: "true".into(),
    };
    let mut started = 0;
    for doc in records::list_all::<AutoTopup>(billing.store.as_ref(), filter).await? {
        match run_one(billing, payments, doc).await {
            Ok(true) => started += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(
                code = error.code(),
                message = %error.message(),
                "an auto top-up could not run"
            ),
        }
    }
    Ok(started)
}

async fn run_one(
    billing: &Billing,
    payments: &Payments,
    doc: Doc<AutoTopup>,
) -> Result<bool, ApiError> {
    let Ok(account) = AccountId::parse(&doc.id) else {
        return Ok(false);
    };
    let now = billing.clock.now();
    let available = match billing.store.standing(account.clone(), now).await? {
        Some(standing) => standing.available,
        None => return Ok(false),
    };
    let attempt = match doc.body.decide(available, now) {
        Decision::Wait(_) => return Ok(false),
        Decision::Resume { attempt } => attempt,
        Decision::Start { attempt } => {
            let pending = doc.body.started(attempt, now);
            let write = records::put(&doc.id, &pending, Expect::Version(doc.version));
            match records::write::<AutoTopup>(billing.store.as_ref(), write).await? {
                Written::Stored(_) => attempt,
                // Another node started it, or the settings changed.
                _ => return Ok(false),
            }
        }
    };
    pay(billing, payments, &account, &doc.body, attempt).await?;
    Ok(true)
}

/// Makes payment `attempt` off-session with the saved card, under a key
/// naming the attempt, and settles what it answers.
async fn pay(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    topup: &AutoTopup,
    attempt: u64,
) -> Result<(), ApiError> {
    let store = billing.store.as_ref();
    let Some(card) = records::get::<SavedCard>(store, account.as_str()).await? else {
        return failed(billing, account, attempt, "payment_method_required").await;
    };
    let customer = super::checkout::customer_of(billing, payments, account).await?;
    let form = vec![
        ("amount".into(), topup.amount_cents.to_string()),
        ("currency".into(), "usd".into()),
        ("customer".into(), customer),
        ("payment_method".into(), card.body.payment_method.clone()),
        ("confirm".into(), "true".into()),
        ("off_session".into(), "true".into()),
        (
            "metadata[creditd_account]".into(),
            account.as_str().to_owned(),
        ),
        ("metadata[creditd_kind]".into(), "auto_topup".into()),
        ("metadata[creditd_attempt]".into(), attempt.to_string()),
        ("description".into(), "creditd auto top-up".into()),
    ];
    let key = format!("creditd:auto_topup:{account}:{attempt}");
    match payments
        .provider
        .post("/v1/payment_intents", form, &key)
        .await
    {
        Ok(intent) if intent["status"].as_str() == Some("succeeded") => {
            succeeded(billing, account, attempt, &intent)
                .await
                .map(drop)
        }
        Ok(intent) => {
            // Still processing: its webhook settles it.
            tracing::info!(%account, attempt, status = ?intent["status"], "an auto top-up is processing");
            Ok(())
        }
        Err(PaymentError::Refused { code, .. }) => {
            let reason = code.unwrap_or_else(|| "refused".into());
            tracing::warn!(%account, attempt, %reason, "an auto top-up was declined");
            failed(billing, account, attempt, &reason).await
        }
        // Not known: the attempt stays pending, asked about again later
        // under the same key, which finds the payment if it was made.
        Err(error @ PaymentError::Unavailable(_)) => Err(provider_error(error)),
    }
}

/// Grants top-up `attempt`'s credits once and marks it succeeded, in one
/// write; whichever of the payment's answer and its webhook comes first
/// grants, the other finds it granted. Answers whether this call granted.
pub async fn succeeded(
    billing: &Billing,
    account: &AccountId,
    attempt: u64,
    intent: &Value,
) -> Result<bool, ApiError> {
    let store = billing.store.as_ref();
    let settings = settings::read(store, &billing.env).await?;
    for _ in 0..RETRIES_MAX {
        let Some(doc) = records::get::<AutoTopup>(store, account.as_str()).await? else {
            return Ok(false);
        };
        let now = billing.clock.now();
        let credits = credits_of(doc.body.amount_cents, billing.credits_per_usd)
            .ok_or_else(|| ApiError::Internal("a top-up's credits overflow".into()))?;
        let metadata = serde_json::json!({
            "amount_paid": intent["amount_received"].as_i64().or(intent["amount"].as_i64()),
            "currency": intent["currency"].as_str(),
            "payment_intent": intent["id"].as_str(),
            "receipt": intent["latest_charge"].as_str(),
        });
        let grant = NewGrant {
            amount: credits,
            source: Source::AutoTopup,
            priority: Some(settings.priority(Source::AutoTopup)),
            effective_at: None,
            expires_at: None,
            metadata: Metadata::from_json_object(metadata.to_string()).unwrap_or_default(),
            external_id: Some(external_id(attempt)),
            reason: None,
            actor: None,
        };
        let next = doc.body.succeeded(attempt, now);
        let command = Command::new(Op::Grant {
            account: account.clone(),
            grant,
        })
        .with_records(vec![records::put(
            &doc.id,
            &next,
            Expect::Version(doc.version),
        )]);
        match store.execute(command).await? {
            Executed::Fresh(Ok(_)) => return Ok(true),
            Executed::Existing(_)
            | Executed::Fresh(Err(Refused::Ledger(ledger::Reject::ExternalIdConflict))) => {
                return Ok(false);
            }
            Executed::Fresh(Err(Refused::VersionConflict { .. })) => continue,
            Executed::Fresh(Err(refused)) => return Err(refused.into()),
            Executed::Replayed(_) => return Ok(false),
        }
    }
    Err(ApiError::Internal(
        "an auto top-up record kept changing under its grant".into(),
    ))
}

/// Marks top-up `attempt` failed: backing off, never retried in a loop.
pub async fn failed(
    billing: &Billing,
    account: &AccountId,
    attempt: u64,
    reason: &str,
) -> Result<(), ApiError> {
    let store = billing.store.as_ref();
    for _ in 0..RETRIES_MAX {
        let Some(doc) = records::get::<AutoTopup>(store, account.as_str()).await? else {
            return Ok(());
        };
        let next = doc.body.failed(attempt, reason, billing.clock.now());
        if next == doc.body {
            return Ok(());
        }
        let write = records::put(&doc.id, &next, Expect::Version(doc.version));
        match records::write::<AutoTopup>(store, write).await? {
            Written::Stored(_) => return Ok(()),
            Written::Refused(Refused::VersionConflict { .. }) => continue,
            Written::Refused(refused) => return Err(refused.into()),
            Written::Deleted => return Ok(()),
        }
    }
    Err(ApiError::Internal(
        "an auto top-up record kept changing under its failure".into(),
    ))
}

/// Runs [`run_due`], and invoices overage charges
/// ([`super::overage::invoice_due`]), every `every` until the task is aborted.
pub fn spawn(billing: Arc<Billing>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(error) = run_due(&billing).await {
                tracing::warn!(%error, "the auto top-up job failed");
            }
            if let Err(error) = super::overage::invoice_due(&billing).await {
                tracing::warn!(
                    code = error.code(),
                    message = %error.message(),
                    "invoicing overage charges failed"
                );
            }
        }
    })
}
