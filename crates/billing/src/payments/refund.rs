//! A refunded payment: the refunded share of the credits it bought taken back, into debt when
//! they were spent, once however often and in whatever order the provider's events arrive.

use ledger::{AccountId, Amount, ExternalId, Metadata, Reject};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use server::error::ApiError;
use store::records::{self, Expect, Kind, Lookup, RecordWrite};
use store::{Command, Executed, Op, Refused, StoreError};

use super::checkout::{CheckoutSession, Purchase, provider_error};
use super::{Payments, is_provider_id};
use crate::Billing;
use crate::domain::refund::{refunded_share, still_to_take};

/// What was taken back for a refunded charge so far: a record of kind
/// `payment_refund` under the charge's id.
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
}

impl Kind for PaymentRefund {
    const KIND: &'static str = "payment_refund";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::ordered("account", self.account.clone())]
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
        .provider
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await
        .map_err(provider_error)?;
    if intent["metadata"]["creditd_kind"] == "auto_topup" {
        let Some((account, attempt)) = super::topup::attempt_of(billing, &intent).await? else {
            return Ok(None);
        };
        let grant = ExternalId::parse(&format!("auto_topup:{attempt}"))
            .map_err(|_| ApiError::Internal("an attempt that is no external id".into()))?;
        return Ok(Some((account, grant)));
    }
    let sessions = payments
        .provider
        .get(&format!(
            "/v1/checkout/sessions?payment_intent={intent_id}&limit=1"
        ))
        .await
        .map_err(provider_error)?;
    let Some(session_id) = sessions["data"][0]["id"].as_str() else {
        return Ok(None);
    };
    let Some(ours) = records::get::<CheckoutSession>(store, session_id).await? else {
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

/// A charge refunded, in part or in full: the refunded share of its grant's
/// credits taken back. The provider says how much was refunded in all; what
/// was taken back before is kept per charge and moves at its version in the
/// same transaction as the claw-back, so that each event takes only what
/// the ones before it did not. `with` is the event's record for an outcome.
pub async fn charge_refunded(
    billing: &Billing,
    payments: &Payments,
    charge: &Value,
    with: impl Fn(&str, &str) -> Vec<RecordWrite>,
) -> Result<(Option<String>, &'static str), ApiError> {
    let store = billing.store.as_ref();
    let (Some(charge_id), Some(intent_id)) =
        (charge["id"].as_str(), charge["payment_intent"].as_str())
    else {
        return Ok((None, "unknown_payment"));
    };
    let Some((account, grant)) = grant_of(billing, payments, intent_id).await? else {
        return Ok((None, "unknown_payment"));
    };
    let Some(granted) = store.external(account.clone(), grant.clone()).await? else {
        // Paid but not granted yet: there is nothing to take back, and the
        // grant, when it comes, is for a payment that was refunded. The
        // provider delivers this event again.
        return Err(crate::error::BillingError::RefundBeforeGrant.into());
    };
    let paid = charge["amount"].as_i64().unwrap_or(0);
    let refunded = charge["amount_refunded"].as_i64().unwrap_or(0);
    let Some(share) = refunded_share(granted.amount.micros(), paid, refunded) else {
        return Ok((Some(account.to_string()), "ignored"));
    };
    for _ in 0..8 {
        let before = records::get::<PaymentRefund>(store, charge_id).await?;
        let taken = before.as_ref().map_or(0, |doc| doc.body.taken_micros);
        let take = still_to_take(share, taken);
        if take == 0 {
            return Ok((Some(account.to_string()), "duplicate"));
        }
        let after = PaymentRefund {
            account: account.to_string(),
            grant: grant.to_string(),
            refunded,
            taken_micros: taken + take,
        };
        let mut records = vec![match &before {
            Some(doc) => records::put(charge_id, &after, Expect::Version(doc.version)),
            None => records::put(charge_id, &after, Expect::Absent),
        }];
        records.extend(with(account.as_str(), "refunded"));
        let metadata = serde_json::json!({
            "charge": charge_id,
            "payment_intent": intent_id,
            "amount_refunded": refunded,
            "currency": charge["currency"].as_str(),
        });
        let external_id = ExternalId::parse(&format!("refund:{charge_id}:{}", taken + take))
            .map_err(|_| ApiError::Internal("a charge id that is no external id".into()))?;
        let command = Command::new(Op::ClawBack {
            account: account.clone(),
            grant: grant.clone(),
            amount: Amount::from_micros(take),
            metadata: Metadata::from_json_object(metadata.to_string()).unwrap_or_default(),
            external_id: Some(external_id),
        })
        .with_records(records);
        match store.execute(command).await? {
            Executed::Fresh(Ok(_)) => return Ok((Some(account.to_string()), "refunded")),
            Executed::Existing(_) | Executed::Replayed(_) => {
                return Ok((Some(account.to_string()), "duplicate"));
            }
            Executed::Fresh(Err(Refused::Ledger(Reject::ExternalIdConflict))) => {
                return Ok((Some(account.to_string()), "duplicate"));
            }
            // Another delivery took its share first: look again.
            Executed::Fresh(Err(Refused::VersionConflict { .. })) => continue,
            Executed::Fresh(Err(refused)) => return Err(refused.into()),
        }
    }
    Err(StoreError::Unavailable("the refund kept changing; retry".into()).into())
}
