//! Auto top-up at run time: the settings record, the job that starts a top-up when an account
//! falls below its threshold (one in flight across all nodes, by the record's version), the
//! off-session payment, and the grant made once by whichever of the payment's answer or its
//! webhook comes first.

use std::sync::Arc;

use ledger::{AccountId, ExternalId, Metadata, NewGrant, Source};
use server::error::ApiError;
use store::records::{self, Doc, Expect, Kind, Lookup, Modified, RecordFilter, Step, Written};
use store::{Command, Executed, Op, Refused, StoreError};

use super::Payments;
use super::checkout::{SavedCard, provider_error};
use super::objects::{self, Invoice, PaymentIntent};
use super::provider::PaymentError;
use crate::Billing;
use crate::domain::topup::{AutoTopup, Decision, TopupState, credits_of};
use crate::settings;

impl Kind for AutoTopup {
    const KIND: &'static str = "auto_topup";

    /// `enabled` is what the job looks at: an enabled top-up, or one with
    /// an attempt still pending (disabled since it started).
    fn lookups(&self) -> Vec<Lookup> {
        let looked_at = self.enabled || self.pending().is_some();
        vec![Lookup::ordered(
            "enabled",
            if looked_at { "true" } else { "false" },
        )]
    }
}

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
    let store = billing.store.as_ref();
    let topup = match doc.body.decide(available, now) {
        Decision::Wait(_) => return Ok(false),
        Decision::GiveUp { attempt } => {
            tracing::warn!(%account, attempt, "an auto top-up's outcome was never learnt; given up");
            failed(billing, &account, attempt, "outcome_unknown").await?;
            return Ok(true);
        }
        Decision::Resume { .. } => doc.body,
        Decision::Start { attempt } => {
            let card = records::get::<SavedCard>(store, account.as_str()).await?;
            let method = card.map(|c| c.body.payment_method).unwrap_or_default();
            let pending = doc.body.started(attempt, now, &method);
            let write = records::put(&doc.id, &pending, Expect::Version(doc.version));
            match records::write::<AutoTopup>(store, write).await? {
                Written::Stored(_) => pending,
                // Another node started it, or the settings changed.
                _ => return Ok(false),
            }
        }
    };
    pay(billing, payments, &account, &topup).await?;
    Ok(true)
}

/// Makes the pending attempt's payment off-session with the card and the
/// amount it started with — an invoice for the customer with the top-up as
/// its one line, paid with the saved card, each step under a key naming
/// the attempt — or, once an answer named the invoice, carries it on from
/// where it stands; and settles what it answers.
async fn pay(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    topup: &AutoTopup,
) -> Result<(), ApiError> {
    let Some((attempt, amount_cents, method, named)) = topup.pending() else {
        return Ok(());
    };
    let answer = match named {
        // Disabled since the attempt started, and never answered: no new
        // payment is made for it (a late webhook still grants one Stripe did
        // make).
        None if !topup.enabled => {
            return failed(billing, account, attempt, "disabled").await;
        }
        // An attempt started before top-ups were invoiced: its payment
        // intent is looked up.
        Some(id) if id.starts_with("pi_") && super::is_provider_id(id) => {
            let intent = payments.retrieve::<PaymentIntent>(id).await;
            return settle_intent(billing, payments, account, attempt, intent).await;
        }
        _ if method.is_empty() => {
            return failed(billing, account, attempt, "payment_method_required").await;
        }
        _ => {
            invoice_and_pay(
                billing,
                payments,
                account,
                attempt,
                amount_cents,
                method,
                named,
            )
            .await
        }
    };
    match answer {
        Ok(invoice) => match invoice.status() {
            "paid" => succeeded(billing, account, attempt, &Paid::of_invoice(&invoice))
                .await
                .map(drop),
            "void" | "uncollectible" => failed(billing, account, attempt, "payment_failed").await,
            _ => {
                // Neither paid nor refused: its webhook settles it, or a
                // later run carries it on, less and less often.
                tracing::info!(%account, attempt, status = invoice.status(), "an auto top-up is processing");
                keep_pending(billing, account, attempt, Some(&invoice.id)).await
            }
        },
        Err(PaymentError::Refused { code, .. }) => {
            let reason = code.unwrap_or_else(|| "refused".into());
            tracing::warn!(%account, attempt, %reason, "an auto top-up was declined");
            failed(billing, account, attempt, &reason).await
        }
        // Not known: the attempt stays pending, carried on later under the
        // same keys, which find what was made.
        Err(error @ (PaymentError::Unavailable(_) | PaymentError::Unreadable(_))) => {
            keep_pending(billing, account, attempt, None).await?;
            Err(provider_error(error))
        }
    }
}

/// Reads an auto top-up's invoice from a reply.
fn invoice_of(reply: &super::provider::Reply) -> Result<Invoice, PaymentError> {
    reply.read::<Invoice>("an invoice").and_then(|invoice| {
        match super::is_provider_id(&invoice.id) {
            true => Ok(invoice),
            false => Err(reply.unreadable("an invoice with a malformed id")),
        }
    })
}

/// Makes (or finds, once named) top-up `attempt`'s invoice, puts its one
/// line on it unless it is there, and pays it off-session with `method`.
/// Each step is keyed by the attempt, so a retry makes nothing twice; a
/// line is never added to an invoice that already has what is due.
async fn invoice_and_pay(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    attempt: u64,
    amount_cents: i64,
    method: &str,
    named: Option<&str>,
) -> Result<Invoice, PaymentError> {
    let provider = &payments.provider;
    let key = format!("creditd:auto_topup:{account}:{attempt}");
    let metadata = [
        ("metadata[creditd_account]", account.as_str().to_owned()),
        ("metadata[creditd_kind]", "auto_topup".to_owned()),
        ("metadata[creditd_attempt]", attempt.to_string()),
    ];
    let credits = credits_of(amount_cents, billing.credits_per_usd).unwrap_or(ledger::Amount::ZERO);
    let mut invoice = match named.filter(|id| super::is_provider_id(id)) {
        Some(id) => invoice_of(&provider.get(&format!("/v1/invoices/{id}")).await?)?,
        None => {
            let customer = super::checkout::customer_of(billing, payments, account)
                .await
                .map_err(|e| PaymentError::Unavailable(e.message()))?;
            let mut form: super::provider::Form = vec![
                ("customer".into(), customer),
                ("collection_method".into(), "charge_automatically".into()),
                ("auto_advance".into(), "false".into()),
                ("pending_invoice_items_behavior".into(), "exclude".into()),
                ("default_payment_method".into(), method.to_owned()),
                ("currency".into(), "usd".into()),
                ("description".into(), "Credits: auto top-up".into()),
            ];
            form.extend(metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            let created = invoice_of(
                &provider
                    .post("/v1/invoices", form, &format!("{key}:invoice"))
                    .await?,
            )?;
            // Named before anything is charged: a retry carries this one on.
            let id = created.id.clone();
            if let Err(error) = change(billing, account, |t| t.named(attempt, &id)).await {
                tracing::warn!(%account, attempt, code = error.code(), "naming a top-up's invoice failed");
            }
            created
        }
    };
    if matches!(invoice.status(), "paid" | "void" | "uncollectible") {
        return Ok(invoice);
    }
    if invoice.status() == "draft" && invoice.amount_due == 0 {
        let customer = super::checkout::customer_of(billing, payments, account)
            .await
            .map_err(|e| PaymentError::Unavailable(e.message()))?;
        let mut form: super::provider::Form = vec![
            ("customer".into(), customer),
            ("invoice".into(), invoice.id.clone()),
            ("amount".into(), amount_cents.to_string()),
            ("currency".into(), "usd".into()),
            (
                "description".into(),
                format!("{credits} credits (auto top-up)"),
            ),
        ];
        form.extend(metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        provider
            .post("/v1/invoiceitems", form, &format!("{key}:item"))
            .await?;
    }
    let paid = provider
        .post(
            &format!("/v1/invoices/{}/pay", invoice.id),
            vec![
                ("off_session".into(), "true".into()),
                ("payment_method".into(), method.to_owned()),
            ],
            &format!("{key}:pay"),
        )
        .await;
    match paid {
        Ok(reply) => invoice = invoice_of(&reply)?,
        // Paid meanwhile (by Stripe's own retry, or another node): the
        // invoice as it is now says so.
        Err(PaymentError::Refused {
            code: Some(code), ..
        }) if code == "invoice_already_paid" => {
            invoice = invoice_of(
                &provider
                    .get(&format!("/v1/invoices/{}", invoice.id))
                    .await?,
            )?;
        }
        // Declined: the attempt fails, and its invoice is voided so that the
        // customer is not left an unpaid invoice; a later attempt makes its own.
        Err(error @ PaymentError::Refused { .. }) => {
            let void = provider
                .post(
                    &format!("/v1/invoices/{}/void", invoice.id),
                    Vec::new(),
                    &format!("{key}:void"),
                )
                .await;
            if let Err(void_error) = void {
                tracing::warn!(%account, attempt, %void_error, "a declined top-up's invoice was not voided");
            }
            return Err(error);
        }
        Err(error) => return Err(error),
    }
    Ok(invoice)
}

/// Settles an attempt made as a bare payment intent, before top-ups were
/// invoiced, from what Stripe says of it.
async fn settle_intent(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    attempt: u64,
    answer: Result<PaymentIntent, PaymentError>,
) -> Result<(), ApiError> {
    match answer {
        Ok(intent) => match intent.status.as_deref() {
            Some("succeeded") => {
                let paid = Paid::of_intent(payments, &intent).await;
                succeeded(billing, account, attempt, &paid).await.map(drop)
            }
            Some("requires_payment_method" | "canceled") => {
                let reason = intent.failure_code().unwrap_or("payment_failed");
                failed(billing, account, attempt, reason).await
            }
            // Off-session, nobody is there to confirm or authenticate it.
            Some("requires_action" | "requires_confirmation") => {
                failed(billing, account, attempt, "authentication_required").await
            }
            _ => keep_pending(billing, account, attempt, Some(&intent.id)).await,
        },
        Err(PaymentError::Refused { code, .. }) => {
            let reason = code.unwrap_or_else(|| "refused".into());
            failed(billing, account, attempt, &reason).await
        }
        Err(error @ (PaymentError::Unavailable(_) | PaymentError::Unreadable(_))) => {
            keep_pending(billing, account, attempt, None).await?;
            Err(provider_error(error))
        }
    }
}

/// What a top-up's payment paid, as its grant records it.
#[derive(Clone, Debug, Default)]
pub struct Paid {
    /// What was charged, in cents, when the provider said.
    pub amount_cents: Option<i64>,
    /// Its currency.
    pub currency: Option<String>,
    /// The invoice, and the page the customer opens for it.
    pub invoice: Option<String>,
    /// The invoice's page.
    pub invoice_url: Option<String>,
    /// The payment intent.
    pub payment_intent: Option<String>,
    /// The charge, the receipt of a payment without an invoice.
    pub receipt: Option<String>,
    /// The charge's receipt page.
    pub receipt_url: Option<String>,
}

impl Paid {
    /// What a paid invoice says.
    pub fn of_invoice(invoice: &Invoice) -> Paid {
        Paid {
            amount_cents: Some(invoice.amount_paid).filter(|a| *a > 0),
            currency: invoice.currency.clone(),
            invoice: Some(invoice.id.clone()),
            invoice_url: invoice.hosted_invoice_url.clone(),
            payment_intent: invoice.payment_intent.clone(),
            receipt: invoice.charge.clone(),
            receipt_url: None,
        }
    }

    /// What a succeeded payment intent says, with its charge's receipt page.
    pub async fn of_intent(payments: &Payments, intent: &PaymentIntent) -> Paid {
        let receipt = intent.latest_charge.as_deref();
        Paid {
            amount_cents: intent.amount_received.filter(|a| *a > 0).or(intent.amount),
            currency: intent.currency.clone(),
            invoice: None,
            invoice_url: None,
            payment_intent: Some(intent.id.clone()),
            receipt: receipt.map(str::to_owned),
            receipt_url: super::checkout::receipt_link(payments, receipt).await,
        }
    }
}

/// Keeps the pending `attempt` pending: asked about once more, and, when an
/// answer named it, with the provider's id of its payment.
async fn keep_pending(
    billing: &Billing,
    account: &AccountId,
    attempt: u64,
    intent: Option<&str>,
) -> Result<(), ApiError> {
    let now = billing.clock.now();
    change(billing, account, |topup| {
        let asked = topup.checked(attempt, now);
        match intent {
            Some(id) => asked.named(attempt, id),
            None => asked,
        }
    })
    .await
}

/// Changes the account's top-up record by `step` (a step of its state
/// machine) at the version it was read at; a step that changes nothing
/// writes nothing.
async fn change(
    billing: &Billing,
    account: &AccountId,
    step: impl Fn(&AutoTopup) -> AutoTopup + Sync,
) -> Result<(), ApiError> {
    let next = |topup: &AutoTopup| Some(step(topup)).filter(|next| next != topup);
    match records::update(billing.store.as_ref(), account.as_str(), next).await? {
        records::Updated::Refused(refused) => Err(refused.into()),
        records::Updated::Changed(_) | records::Updated::Unchanged => Ok(()),
    }
}

/// What a payment says of who it is for: its metadata and its customer
/// (an invoice's or a payment intent's).
#[derive(Clone, Copy, Debug)]
pub struct PaidBy<'a> {
    /// Its metadata.
    pub metadata: &'a objects::Metadata,
    /// Its customer.
    pub customer: Option<&'a str>,
}

/// The account and attempt of an auto top-up payment creditd made: its
/// metadata names them, the account's record has reached that attempt, and
/// the payment is the account's own customer's. Anything else is not
/// creditd's, whatever its metadata says.
pub async fn attempt_of(
    billing: &Billing,
    paid_by: PaidBy<'_>,
) -> Result<Option<(AccountId, u64)>, ApiError> {
    let metadata = paid_by.metadata;
    let (true, Some(account), Some(attempt)) = (
        metadata.is_topup(),
        metadata
            .creditd_account
            .as_deref()
            .and_then(|a| AccountId::parse(a).ok()),
        metadata
            .creditd_attempt
            .as_deref()
            .and_then(|a| a.parse::<u64>().ok()),
    ) else {
        return Ok(None);
    };
    let store = billing.store.as_ref();
    let reached = records::get::<AutoTopup>(store, account.as_str())
        .await?
        .is_some_and(|doc| doc.body.attempts >= attempt);
    let customer = records::get::<super::checkout::PaymentCustomer>(store, account.as_str())
        .await?
        .map(|doc| doc.body.customer_id);
    let same_customer = customer.is_some() && paid_by.customer == customer.as_deref();
    Ok((reached && same_customer).then_some((account, attempt)))
}

/// Grants top-up `attempt`'s credits once and marks it succeeded, in one
/// write; whichever of the payment's answer and its webhook comes first
/// grants, the other finds it granted. Answers whether this call granted.
pub async fn succeeded(
    billing: &Billing,
    account: &AccountId,
    attempt: u64,
    payment: &Paid,
) -> Result<bool, ApiError> {
    let store = billing.store.as_ref();
    let settings = &settings::read(store, &billing.env).await?;
    let modified = records::modify::<AutoTopup, _, ApiError>(store, account.as_str(), |doc| {
        let Some(doc) = doc else {
            return Box::pin(std::future::ready(Ok(Step::Done(()))));
        };
        let now = billing.clock.now();
        Box::pin(std::future::ready(
            grant_command(billing, settings, account, attempt, payment, &doc, now)
                .map(|command| Step::Write(command, ())),
        ))
    })
    .await?;
    match modified {
        Modified::Done(()) => Ok(false),
        Modified::Written(Executed::Fresh(Ok(_)), ()) => {
            billing.count_topup(true);
            Ok(true)
        }
        Modified::Written(
            Executed::Existing(_)
            | Executed::Replayed(_)
            | Executed::Fresh(Err(Refused::Ledger(ledger::Reject::ExternalIdConflict))),
            (),
        ) => Ok(false),
        Modified::Written(Executed::Fresh(Err(refused)), ()) => Err(refused.into()),
    }
}

/// The grant of top-up `attempt`'s credits, with its record marked
/// succeeded at the version read.
fn grant_command(
    billing: &Billing,
    settings: &settings::CreditSettings,
    account: &AccountId,
    attempt: u64,
    payment: &Paid,
    doc: &Doc<AutoTopup>,
    now: ledger::Timestamp,
) -> Result<Command, ApiError> {
    // What the payment charged: the provider's word for this attempt, else
    // what the attempt started with.
    let paid = payment
        .amount_cents
        .or(doc.body.pending().map(|(_, amount, _, _)| amount))
        .unwrap_or(doc.body.amount_cents);
    let credits = credits_of(paid, billing.credits_per_usd)
        .ok_or_else(|| ApiError::Internal("a top-up's credits overflow".into()))?;
    let metadata = serde_json::json!({
        "amount_paid": payment.amount_cents,
        "currency": payment.currency,
        "invoice": payment.invoice,
        "invoice_url": payment.invoice_url,
        "payment_intent": payment.payment_intent,
        "receipt": payment.receipt,
        "receipt_url": payment.receipt_url,
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
    let next = doc.body.succeeded(attempt, paid, now);
    Ok(Command::new(Op::Grant {
        account: account.clone(),
        grant,
    })
    .with_records(vec![records::put(
        &doc.id,
        &next,
        Expect::Version(doc.version),
    )]))
}

/// Marks top-up `attempt` failed: backing off, never retried in a loop.
pub async fn failed(
    billing: &Billing,
    account: &AccountId,
    attempt: u64,
    reason: &str,
) -> Result<(), ApiError> {
    let now = billing.clock.now();
    // The failure and its event are one write: an operator's endpoint hears
    // of every attempt that failed, once it failed.
    let next = |topup: &AutoTopup, _version: u64| {
        let next = topup.failed(attempt, reason, now);
        if next == *topup {
            return None;
        }
        let retry_at = match &next.state {
            TopupState::BackingOff {
                retry_at_micros, ..
            } => Some(ledger::Timestamp::from_micros(*retry_at_micros).to_string()),
            _ => None,
        };
        let event = server::events::emit(
            server::events::EventType::TopupFailed,
            &format!("topup/{account}/{attempt}"),
            account,
            serde_json::json!({
                "attempt": attempt,
                "reason": reason,
                "failures": next.failures,
                "retry_at": retry_at,
            }),
            now,
        );
        Some((next, vec![event]))
    };
    match records::update_joined(billing.store.as_ref(), account.as_str(), next).await? {
        records::Updated::Refused(refused) => Err(refused.into()),
        records::Updated::Changed(_) => {
            billing.count_topup(false);
            Ok(())
        }
        records::Updated::Unchanged => Ok(()),
    }
}
