//! Overage charges: each period's overage, billed when the period closed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::Timestamp;
use serde::Serialize;
use serde_json::Value;
use server::error::ApiError;
use server::extract::ExistingAccount;
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Decimal, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::records::{self, RecordFilter};
use utoipa::ToSchema;

use crate::Billing;
use crate::domain::Money;
use crate::subscription::OverageCharge;

use super::{BillingState, money_view};

/// The overage charges' route.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::Service;
    vec![routes.route(Service, Doc::of::<__path_list>(), list)]
}

/// An overage billed at a period's end.
#[derive(Serialize, ToSchema)]
#[schema(as = OverageCharge)]
struct ChargeView {
    id: String,
    account_id: String,
    plan_id: String,
    period_start: Instant,
    period_end: Instant,
    /// Credits used beyond the period's.
    credits: Decimal,
    /// Minor units per credit.
    unit_price: String,
    /// What is due: credits × unit price, rounded half up to a minor unit.
    #[schema(value_type = Object)]
    amount_due: Value,
    /// The payment provider's invoice item it became; null until it is
    /// invoiced (with Stripe configured, within a second or so).
    invoice_item: Option<String>,
    created_at: Instant,
}

/// A list of overage charges.
#[derive(Serialize, ToSchema)]
struct ChargeList {
    data: Vec<ChargeView>,
}

/// List an account's overage charges
///
/// Each period's overage, billed once when the period closed, oldest first.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/overage-charges",
    tag = "billing",
    operation_id = "listOverageCharges",
    params(AccountPath),
    responses(
        (status = 200, description = "The charges.", body = ChargeList),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn list(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let filter = RecordFilter::Equals {
        name: "account".to_owned(),
        value: account.to_string(),
    };
    let charges = records::list_all::<OverageCharge>(store, filter).await?;
    let mut data = Vec::with_capacity(charges.len());
    for doc in charges {
        let charge = &doc.body;
        data.push(ChargeView {
            id: doc.id.clone(),
            account_id: charge.account.clone(),
            plan_id: charge.plan_id.clone(),
            period_start: Instant(Timestamp::from_micros(charge.period_start_micros)),
            period_end: Instant(Timestamp::from_micros(charge.period_end_micros)),
            credits: Decimal(charge.credits),
            unit_price: charge.unit_price.to_string(),
            amount_due: money_view(Money::new(charge.amount_due, charge.currency.0)?),
            invoice_item: charge.invoice_item.clone(),
            created_at: Instant(doc.created_at),
        });
    }
    Ok(render::json(StatusCode::OK, &ChargeList { data }))
}
