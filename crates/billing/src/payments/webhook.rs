//! The payment provider's webhook: a signed event, matched to what creditd itself created, made
//! exactly once by the object it settles, and kept for support whatever it was.

use axum::http::HeaderMap;
use ledger::{AccountId, ExternalId, Metadata, NewGrant, Source};
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use store::records::{self, Expect, Kind, Lookup, RecordWrite, Written};
use store::{Command, Executed, Op, Refused};

use super::Payments;
use super::checkout::{CheckoutSession, Settled};
use super::objects::{self, Event, Happened, Invoice, PaymentIntent, Unreadable};
use crate::Billing;
use crate::domain::signature;
use crate::error::BillingError;
use crate::settings;

/// An event received from the provider: a record of kind `payment_event`
/// under the event's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// The event's type (`checkout.session.completed`).
    pub event_type: String,
    /// The account it was about, when creditd could tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The id of the object it was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// What creditd did: `granted`, `duplicate`, `awaiting_payment`,
    /// `payment_failed`, `card_saved`, `subscribed`, `renewed`,
    /// `plan_changed`, `updated`, `past_due`, `ended`, `refunded`,
    /// `refund_pending`, `not_taken_back`, `conflicting_subscription`, `unknown_session`,
    /// `unknown_payment`, `unknown_subscription`, `unknown_plan`, `ignored`.
    pub outcome: String,
    /// When it arrived, in micros.
    pub received_at_micros: i64,
}

impl Kind for PaymentEvent {
    const KIND: &'static str = "payment_event";

    fn lookups(&self) -> Vec<Lookup> {
        let mut lookups = vec![Lookup::instant(
            "received",
            ledger::Timestamp::from_micros(self.received_at_micros),
        )];
        if let Some(account) = &self.account {
            lookups.push(Lookup::ordered("account", account.clone()));
        }
        lookups
    }
}

/// Seconds since the epoch on the machine's own clock: a signature's
/// freshness is about when the provider sent it, whatever the ledger's clock.
fn wall_clock_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Answers a webhook delivery: 400 and nothing done when its signature
/// fails; 200 once the event is handled (or known, or of a type creditd
/// does not handle); 5xx when handling it failed, so that the provider
/// sends it again, with nothing half-applied.
pub async fn receive(
    billing: &Billing,
    payments: &Payments,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    signature::verify(
        header,
        body,
        payments.config.webhook_secret.expose().as_bytes(),
        wall_clock_secs(),
    )
    .map_err(|e| BillingError::InvalidSignature(e.message().to_owned()))?;
    server::extract::check_content_type(headers, body)?;
    let event = Event::parse(body).map_err(|unreadable| {
        if let Unreadable::Object { id, kind, detail } = &unreadable {
            tracing::warn!(event = %id, kind = %kind, %detail, "a payment event creditd cannot read");
        }
        match unreadable {
            Unreadable::NotJson(_) => ApiError::MalformedJson(unreadable.to_string()),
            _ => ApiError::InvalidRequest(unreadable.to_string()),
        }
    })?;
    let now = billing.clock.now().micros();
    let seen = Seen {
        id: &event.id,
        kind: &event.kind,
        object_id: event.object_id.as_deref(),
        now,
    };
    // The event's record with an outcome, to join the write that settles it.
    let with = |account: &str, outcome: &str| {
        let (event_id, record) = seen.record(Some(account), outcome);
        vec![records::put(&event_id, &record, Expect::Any)]
    };
    let outcome = match &event.happened {
        Happened::CheckoutPaid(session) => {
            checkout_paid(billing, payments, &seen, session, with).await?
        }
        Happened::CheckoutFailed(session) => {
            let account = records::get::<CheckoutSession>(billing.store.as_ref(), &session.id)
                .await?
                .map(|doc| doc.body.account);
            let outcome = if account.is_some() {
                settle(billing, &session.id, Settled::PaymentFailed).await?;
                "payment_failed"
            } else {
                "unknown_session"
            };
            seen.keep(billing, account.as_deref(), outcome).await?
        }
        Happened::PaymentIntent(intent, succeeded) => {
            topup_event(billing, payments, &seen, intent, *succeeded).await?
        }
        Happened::Invoice(invoice, paid) if invoice.metadata.is_topup() => {
            topup_invoice_event(billing, payments, &seen, invoice, *paid).await?
        }
        Happened::Invoice(invoice, true) => {
            let (account, outcome) =
                super::subscriptions::invoice_paid(billing, payments, invoice, &with).await?;
            seen.keep(billing, account.as_deref(), outcome.code())
                .await?
        }
        Happened::Invoice(invoice, false) => {
            let (account, outcome) =
                super::subscriptions::invoice_failed(billing, payments, invoice).await?;
            seen.keep(billing, account.as_deref(), outcome.code())
                .await?
        }
        Happened::ChargeRefunded(charge) => {
            let (account, outcome) =
                super::refund::charge_refunded(billing, payments, charge, with).await?;
            seen.keep(billing, account.as_deref(), outcome).await?
        }
        Happened::Subscription(subscription) => {
            let (account, outcome) =
                super::subscriptions::subscription_event(billing, payments, subscription, &with)
                    .await?;
            seen.keep(billing, account.as_deref(), outcome.code())
                .await?
        }
        Happened::Other => {
            tracing::info!(
                event = %event.id,
                kind = %event.kind,
                "a payment event of a type creditd does not handle"
            );
            seen.keep(billing, None, "ignored").await?
        }
    };
    Ok(outcome)
}

/// An auto top-up's payment intent settled: granted (once, whoever comes
/// first) or failed. Only an attempt creditd started counts: its record
/// must have reached that attempt, for the account's own customer.
async fn topup_event(
    billing: &Billing,
    payments: &Payments,
    seen: &Seen<'_>,
    intent: &PaymentIntent,
    succeeded: bool,
) -> Result<String, ApiError> {
    let paid_by = super::topup::PaidBy {
        metadata: &intent.metadata,
        customer: intent.customer.as_deref(),
    };
    let Some((account, attempt)) = super::topup::attempt_of(billing, paid_by).await? else {
        return seen.keep(billing, None, "unknown_payment").await;
    };
    let outcome = if succeeded {
        let paid = super::topup::Paid::of_intent(payments, intent).await;
        if super::topup::succeeded(billing, &account, attempt, &paid).await? {
            "granted"
        } else {
            "duplicate"
        }
    } else {
        let reason = intent.failure_code().unwrap_or("payment_failed");
        super::topup::failed(billing, &account, attempt, reason).await?;
        "payment_failed"
    };
    seen.keep(billing, Some(account.as_str()), outcome).await
}

/// An auto top-up's invoice paid or failed: granted (once, whoever comes
/// first) or backing off. Only an attempt creditd started counts: its
/// record must have reached that attempt, for the account's own customer;
/// never mistaken for a plan's invoice.
async fn topup_invoice_event(
    billing: &Billing,
    payments: &Payments,
    seen: &Seen<'_>,
    invoice: &Invoice,
    paid: bool,
) -> Result<String, ApiError> {
    let paid_by = super::topup::PaidBy {
        metadata: &invoice.metadata,
        customer: invoice.customer.as_deref(),
    };
    let Some((account, attempt)) = super::topup::attempt_of(billing, paid_by).await? else {
        return seen.keep(billing, None, "unknown_payment").await;
    };
    let outcome = if paid {
        let paid = super::topup::Paid::of_invoice(invoice);
        if super::topup::succeeded(billing, &account, attempt, &paid).await? {
            "granted"
        } else {
            "duplicate"
        }
    } else {
        // Why it failed is on its payment, when Stripe answers for it.
        let reason = match invoice.payment_intent.as_deref() {
            Some(pi) => payments
                .retrieve::<PaymentIntent>(pi)
                .await
                .ok()
                .and_then(|intent| intent.failure_code().map(str::to_owned)),
            None => None,
        };
        let reason = reason.unwrap_or_else(|| "payment_failed".to_owned());
        super::topup::failed(billing, &account, attempt, &reason).await?;
        "payment_failed"
    };
    seen.keep(billing, Some(account.as_str()), outcome).await
}

/// An event as received: what its record names, and when it came.
struct Seen<'a> {
    id: &'a str,
    kind: &'a str,
    object_id: Option<&'a str>,
    now: i64,
}

impl Seen<'_> {
    /// The event's record, with what was done.
    fn record(&self, account: Option<&str>, outcome: &str) -> (String, PaymentEvent) {
        (
            self.id.to_owned(),
            PaymentEvent {
                event_type: self.kind.to_owned(),
                account: account.map(str::to_owned),
                object_id: self.object_id.map(str::to_owned),
                outcome: outcome.to_owned(),
                received_at_micros: self.now,
            },
        )
    }

    /// Keeps the record of the event with what was done, and answers the
    /// outcome.
    async fn keep(
        &self,
        billing: &Billing,
        account: Option<&str>,
        outcome: &str,
    ) -> Result<String, ApiError> {
        let (id, event) = self.record(account, outcome);
        keep(billing, &id, &event).await?;
        Ok(event.outcome)
    }
}

/// Keeps an event's record unless one is kept already: a redelivery does
/// not overwrite what the first delivery did.
async fn keep(billing: &Billing, id: &str, event: &PaymentEvent) -> Result<(), ApiError> {
    match records::write::<PaymentEvent>(
        billing.store.as_ref(),
        records::put(id, event, Expect::Absent),
    )
    .await?
    {
        Written::Stored(_) | Written::Refused(Refused::VersionConflict { .. }) => Ok(()),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Ok(()),
    }
}

/// Notes on a session's record what became of it, for its status; once is
/// enough, and a later word does not undo a card saved.
async fn settle(billing: &Billing, session_id: &str, settled: Settled) -> Result<(), ApiError> {
    let next = |session: &CheckoutSession| {
        (session.settled.is_none()).then(|| CheckoutSession {
            settled: Some(settled),
            ..session.clone()
        })
    };
    match records::update(billing.store.as_ref(), session_id, next).await? {
        records::Updated::Refused(refused) => Err(refused.into()),
        records::Updated::Changed(_) | records::Updated::Unchanged => Ok(()),
    }
}

/// A checkout session paid: its credits granted once, by the session's id,
/// with the event's record written in the same transaction.
async fn checkout_paid(
    billing: &Billing,
    payments: &Payments,
    seen: &Seen<'_>,
    session: &objects::CheckoutSession,
    with: impl Fn(&str, &str) -> Vec<RecordWrite> + Sync,
) -> Result<String, ApiError> {
    let store = billing.store.as_ref();
    let session_id = session.id.as_str();
    let Some(ours) = records::get::<CheckoutSession>(store, session_id).await? else {
        // Not a session creditd created: whatever its metadata says, it
        // grants nothing.
        return seen.keep(billing, None, "unknown_session").await;
    };
    let ours = ours.body;
    let account = AccountId::parse(&ours.account)
        .map_err(|_| ApiError::Internal("a checkout session of a bad account".into()))?;
    let ours_account = account.clone();
    if ours.purchase == super::checkout::Purchase::Setup {
        let Some(intent) = session.setup_intent.as_deref() else {
            return seen.keep(billing, Some(&ours.account), "ignored").await;
        };
        super::checkout::save_card(billing, payments, &account, intent).await?;
        settle(billing, session_id, Settled::CardSaved).await?;
        return seen.keep(billing, Some(&ours.account), "card_saved").await;
    }
    if ours.purchase == super::checkout::Purchase::Plan {
        let outcome =
            super::subscriptions::checkout_completed(billing, payments, session, &with).await?;
        return seen
            .keep(billing, Some(&ours.account), outcome.code())
            .await;
    }
    if session.payment_status.as_deref() != Some("paid") {
        return seen
            .keep(billing, Some(&ours.account), "awaiting_payment")
            .await;
    }
    let credits = ours.credits;
    let settings = settings::read(store, &billing.env).await?;
    // What was paid is what creditd asked for; the invoice and its link are
    // the provider's.
    let invoice = session.invoice.as_deref();
    let invoice_url = super::checkout::invoice_link(payments, invoice).await;
    let metadata = serde_json::json!({
        "amount_paid": ours.price.amount,
        "currency": ours.price.currency.0.as_str(),
        "checkout_session": session_id,
        "invoice": invoice,
        "invoice_url": invoice_url,
        "package_id": ours.package,
    });
    let grant = NewGrant {
        amount: credits,
        source: Source::Purchase,
        priority: Some(settings.priority(Source::Purchase)),
        effective_at: None,
        expires_at: None,
        metadata: Metadata::from_json_object(metadata.to_string()).unwrap_or_default(),
        external_id: Some(
            ExternalId::parse(&format!("checkout:{session_id}"))
                .map_err(|_| ApiError::Internal("a session id that is no external id".into()))?,
        ),
        reason: None,
        actor: None,
    };
    let command =
        Command::new(Op::Grant { account, grant }).with_records(with(&ours.account, "granted"));
    let outcome = match store.execute(command).await? {
        Executed::Fresh(Ok(_)) => {
            super::checkout::keep_card_of_payment(
                billing,
                payments,
                &ours_account,
                session.payment_intent.as_deref(),
            )
            .await;
            return Ok("granted".to_owned());
        }
        // Granted before, by this event delivered again or by another event
        // of the same session.
        Executed::Existing(_)
        | Executed::Fresh(Err(Refused::Ledger(ledger::Reject::ExternalIdConflict))) => "duplicate",
        Executed::Fresh(Err(refused)) => return Err(refused.into()),
        Executed::Replayed(_) => "duplicate",
    };
    seen.keep(billing, Some(&ours.account), outcome).await
}
