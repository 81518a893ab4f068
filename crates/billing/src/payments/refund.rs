//! A refunded payment: the refunded share of the credits it bought taken back, into debt when
//! they were spent, once however often and in whatever order the provider's events arrive.

use ledger::{AccountId, Amount, ExternalId, Metadata};
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use store::records::{self, Doc, Expect, Kind, Lookup, RecordFilter, RecordWrite, Step};
use store::{Command, Op};

use super::checkout::{CheckoutSession, Purchase, provider_error};
use super::objects::{Charge, Invoice, PaymentIntent};
use super::topup::PaidBy;
use super::{Payments, is_provider_id};
use crate::Billing;
use crate::domain::refund::{refunded_share, still_to_take};

/// What was taken back for a refunded charge so far: a record of kind
/// `payment_refund` under the charge's id. A refund that arrives before the
/// credits it takes back were granted is kept `pending`, and taken back by
/// the payments job once they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefund {
    /// The account.
    pub account: String,
    /// The external id of the grant the payment made.
    pub grant: String,
    /// What the provider says was refunded so far, in minor units.
    pub refunded: i64,
    /// The credits taken back so far, in micro-credits.
    pub taken_micros: i64,
    /// What the charge was for, in minor units.
    #[serde(default)]
    pub paid: i64,
    /// The charge's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The payment intent the charge belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    /// Whether `refunded` waits for its grant to be taken back.
    #[serde(default)]
    pub pending: bool,
}

impl Kind for PaymentRefund {
    const KIND: &'static str = "payment_refund";

    fn lookups(&self) -> Vec<Lookup> {
        let mut lookups = vec![Lookup::ordered("account", self.account.clone())];
        if self.pending {
            lookups.push(Lookup::ordered("pending", "true"));
        }
        lookups
    }
}

/// The account and the grant a payment intent paid for, when creditd made
/// the payment: an auto top-up's attempt (see `topup::attempt_of`), or a
/// checkout session of its own (the provider says which session the
/// intent belongs to).
async fn grant_of(
    billing: &Billing,
    payments: &Payments,
    intent_id: &str,
) -> Result<Option<(AccountId, ExternalId)>, ApiError> {
    if !is_provider_id(intent_id) {
        return Ok(None);
    }
    let store = billing.store.as_ref();
    let intent = payments
        .retrieve::<PaymentIntent>(intent_id)
        .await
        .map_err(provider_error)?;
    // An auto top-up's payment: its invoice names the attempt, or, for one
    // made before top-ups were invoiced, the payment itself does.
    let invoice = match intent.invoice.as_deref().filter(|id| is_provider_id(id)) {
        Some(id) => Some(
            payments
                .retrieve::<Invoice>(id)
                .await
                .map_err(provider_error)?,
        ),
        None => None,
    };
    let topup = match &invoice {
        Some(invoice) if invoice.metadata.is_topup() => Some(PaidBy {
            metadata: &invoice.metadata,
            customer: invoice.customer.as_deref(),
        }),
        _ if intent.metadata.is_topup() => Some(PaidBy {
            metadata: &intent.metadata,
            customer: intent.customer.as_deref(),
        }),
        _ => None,
    };
    if let Some(paid_by) = topup {
        let Some((account, attempt)) = super::topup::attempt_of(billing, paid_by).await? else {
            return Ok(None);
        };
        let grant = ExternalId::parse(&format!("auto_topup:{attempt}"))
            .map_err(|_| ApiError::Internal("an attempt that is no external id".into()))?;
        return Ok(Some((account, grant)));
    }
    let Some(session_id) =
        super::checkout::session_that_made(payments, "payment_intent", intent_id).await?
    else {
        return Ok(None);
    };
    let Some(ours) = records::get::<CheckoutSession>(store, &session_id).await? else {
        return Ok(None);
    };
    if !matches!(ours.body.purchase, Purchase::Package | Purchase::Topup) {
        return Ok(None);
    }
    let account = AccountId::parse(&ours.body.account)
        .map_err(|_| ApiError::Internal("a checkout session of a bad account".into()))?;
    let grant = ExternalId::parse(&format!("checkout:{session_id}"))
        .map_err(|_| ApiError::Internal("a session id that is no external id".into()))?;
    Ok(Some((account, grant)))
}

/// A refund as the provider said it last: what the charge was for and what
/// of it was refunded in all.
struct Refund<'a> {
    charge: &'a str,
    account: AccountId,
    grant: ExternalId,
    paid: i64,
    refunded: i64,
    currency: Option<String>,
    payment_intent: Option<String>,
}

/// A charge refunded, in part or in full: the refunded share of its grant's
/// credits taken back. The provider says how much was refunded in all; what
/// was taken back before is kept per charge and moves at its version in the
/// same transaction as the claw-back, so that each event takes only what
/// the ones before it did not. `with` is the event's record for an outcome.
pub async fn charge_refunded(
    billing: &Billing,
    payments: &Payments,
    charge: &Charge,
    with: impl Fn(&str, &str) -> Vec<RecordWrite> + Sync,
) -> Result<(Option<String>, &'static str), ApiError> {
    let (charge_id, Some(intent_id)) = (charge.id.as_str(), charge.payment_intent.as_deref())
    else {
        return Ok((None, "unknown_payment"));
    };
    let Some((account, grant)) = grant_of(billing, payments, intent_id).await? else {
        // A plan's invoice (its period's credits stay until the period
        // ends), or a payment creditd did not make.
        let outcome = if charge.invoice.is_some() {
            "not_taken_back"
        } else {
            "unknown_payment"
        };
        return Ok((None, outcome));
    };
    let refund = Refund {
        charge: charge_id,
        account,
        grant,
        paid: charge.amount,
        refunded: charge.amount_refunded,
        currency: charge.currency.clone(),
        payment_intent: Some(intent_id.to_owned()),
    };
    let outcome = take_back(billing, &refund, with).await?;
    Ok((Some(refund.account.to_string()), outcome))
}

/// Takes back the refunds kept pending whose grants have landed since;
/// answers how many it took back. Safe on every node at once.
pub async fn settle_pending(billing: &Billing) -> Result<usize, ApiError> {
    let store = billing.store.as_ref();
    let filter = RecordFilter::Equals {
        name: "pending".into(),
        value: "true".into(),
    };
    let mut settled = 0;
    for doc in records::list_all::<PaymentRefund>(store, filter).await? {
        let (Ok(account), Ok(grant)) = (
            AccountId::parse(&doc.body.account),
            ExternalId::parse(&doc.body.grant),
        ) else {
            continue;
        };
        let refund = Refund {
            charge: &doc.id,
            account,
            grant,
            paid: doc.body.paid,
            refunded: doc.body.refunded,
            currency: doc.body.currency.clone(),
            payment_intent: doc.body.payment_intent.clone(),
        };
        match take_back(billing, &refund, |_, _| Vec::new()).await {
            Ok("refunded") => settled += 1,
            Ok(_) => {}
            // One refund that cannot be taken back now holds up no other.
            Err(error) => tracing::warn!(
                charge = %doc.id,
                code = error.code(),
                message = %error.message(),
                "a pending refund could not be taken back; it is tried again"
            ),
        }
    }
    Ok(settled)
}

/// Takes back what `refund` still owes, once; keeps it pending while its
/// grant has not landed.
async fn take_back(
    billing: &Billing,
    refund: &Refund<'_>,
    with: impl Fn(&str, &str) -> Vec<RecordWrite> + Sync,
) -> Result<&'static str, ApiError> {
    let store = billing.store.as_ref();
    let with = &with;
    let modified = records::modify::<PaymentRefund, _, ApiError>(store, refund.charge, |before| {
        Box::pin(async move { take_back_step(store, refund, before, with).await })
    })
    .await?;
    super::once(modified, "duplicate")
}

/// What taking back `refund` writes, given what was taken before: the
/// refund kept pending, a claw-back of what is still owed with the record
/// at its version, or nothing.
async fn take_back_step(
    store: &dyn store::Store,
    refund: &Refund<'_>,
    before: Option<Doc<PaymentRefund>>,
    with: &(dyn Fn(&str, &str) -> Vec<RecordWrite> + Sync),
) -> Result<Step<&'static str>, ApiError> {
    let account = &refund.account;
    let taken = before.as_ref().map_or(0, |doc| doc.body.taken_micros);
    // The most the provider ever said was refunded.
    let refunded = before.as_ref().map_or(refund.refunded, |doc| {
        doc.body.refunded.max(refund.refunded)
    });
    let mut after = PaymentRefund {
        account: account.to_string(),
        grant: refund.grant.to_string(),
        refunded,
        taken_micros: taken,
        paid: refund.paid,
        currency: refund.currency.clone(),
        payment_intent: refund.payment_intent.clone(),
        pending: false,
    };
    let put = |after: &PaymentRefund| match &before {
        Some(doc) => records::put(refund.charge, after, Expect::Version(doc.version)),
        None => records::put(refund.charge, after, Expect::Absent),
    };
    let Some(granted) = store
        .external(account.clone(), refund.grant.clone())
        .await?
    else {
        // Refunded before its credits were granted: kept, and taken back by
        // the payments job once the grant lands.
        if before
            .as_ref()
            .is_some_and(|doc| doc.body.pending && doc.body.refunded >= refunded)
        {
            return Ok(Step::Done("duplicate"));
        }
        after.pending = true;
        return Ok(Step::Write(
            Command::new(Op::Record(put(&after))),
            "refund_pending",
        ));
    };
    let Some(share) = refunded_share(granted.amount.micros(), refund.paid, refunded) else {
        return Ok(Step::Done("ignored"));
    };
    let take = still_to_take(share, taken);
    if take == 0 {
        return Ok(match before.as_ref().is_some_and(|doc| doc.body.pending) {
            true => Step::Write(Command::new(Op::Record(put(&after))), "duplicate"),
            false => Step::Done("duplicate"),
        });
    }
    after.taken_micros = taken + take;
    let mut records = vec![put(&after)];
    records.extend(with(account.as_str(), "refunded"));
    let metadata = serde_json::json!({
        "charge": refund.charge,
        "payment_intent": refund.payment_intent,
        "amount_refunded": refunded,
        "currency": refund.currency,
    });
    let external_id = ExternalId::parse(&format!("refund:{}:{}", refund.charge, taken + take))
        .map_err(|_| ApiError::Internal("a charge id that is no external id".into()))?;
    let command = Command::new(Op::ClawBack {
        account: account.clone(),
        grant: refund.grant.clone(),
        amount: Amount::from_micros(take),
        metadata: Metadata::from_json_object(metadata.to_string()).unwrap_or_default(),
        external_id: Some(external_id),
    })
    .with_records(records);
    Ok(Step::Write(command, "refunded"))
}
