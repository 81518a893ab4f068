//! Overage charges invoiced: each becomes one invoice item on the account's provider customer,
//! made once by the charge's own id, and picked up by the customer's next invoice (on a plan the
//! provider bills, that subscription's next invoice).

use std::sync::Arc;

use ledger::{AccountId, Timestamp};
use server::error::ApiError;
use store::records::{self, Expect, RecordFilter, Written};

use super::Payments;
use super::checkout::{customer_of, provider_error};
use crate::Billing;
use crate::subscription::{OverageCharge, Subscription};

/// Makes an invoice item of every overage charge not yet invoiced; answers
/// how many it made. Safe on every node at once: the item's idempotency key
/// is the charge's id, and the charge is marked at the version it was read.
pub async fn invoice_due(billing: &Arc<Billing>) -> Result<usize, ApiError> {
    let Some(payments) = &billing.payments else {
        return Ok(0);
    };
    let store = billing.store.as_ref();
    let filter = RecordFilter::Equals {
        name: "invoiced".into(),
        value: "false".into(),
    };
    let mut made = 0;
    for doc in records::list_all::<OverageCharge>(store, filter).await? {
        if doc.body.amount_due <= 0 {
            continue;
        }
        match invoice(billing, payments, &doc.id, &doc.body).await {
            Ok(item) => {
                let mut charge = doc.body.clone();
                charge.invoice_item = Some(item);
                let write = records::put(&doc.id, &charge, Expect::Version(doc.version));
                if let Written::Stored(_) = records::write::<OverageCharge>(store, write).await? {
                    made += 1;
                }
            }
            Err(error) => tracing::warn!(
                charge = %doc.id,
                code = error.code(),
                message = %error.message(),
                "an overage charge could not be invoiced; it is tried again"
            ),
        }
    }
    Ok(made)
}

async fn invoice(
    billing: &Billing,
    payments: &Payments,
    id: &str,
    charge: &OverageCharge,
) -> Result<String, ApiError> {
    let account = AccountId::parse(&charge.account)
        .map_err(|_| ApiError::Internal("an overage charge of a bad account".into()))?;
    let customer = customer_of(billing, payments, &account).await?;
    let day = |micros: i64| -> String {
        Timestamp::from_micros(micros)
            .to_string()
            .chars()
            .take(10)
            .collect()
    };
    let form = vec![
        ("customer".into(), customer),
        ("amount".into(), charge.amount_due.to_string()),
        ("currency".into(), charge.currency.0.as_str().to_owned()),
        (
            "description".into(),
            format!(
                "Overage: {} credits on {} from {} to {}",
                charge.credits,
                charge.plan_id,
                day(charge.period_start_micros),
                day(charge.period_end_micros)
            ),
        ),
        ("metadata[creditd_account]".into(), charge.account.clone()),
        ("metadata[creditd_overage]".into(), id.to_owned()),
    ];
    // On a plan the provider bills, the charge joins that subscription's
    // next invoice.
    let mut form = form;
    if let Some(doc) =
        records::get::<Subscription>(billing.store.as_ref(), account.as_str()).await?
        && let Some(link) = doc.body.provider
    {
        form.push(("subscription".into(), link.subscription));
    }
    let item = payments
        .provider
        .post("/v1/invoiceitems", form, &format!("creditd:overage:{id}"))
        .await
        .and_then(|reply| reply.read::<super::objects::Created>("an invoice item"))
        .map_err(provider_error)?;
    Ok(item.id)
}
