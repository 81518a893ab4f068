//! The payment events received, for support.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::extract::{self, Query};
use server::openapi::Doc;
use server::render::{self, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::records::{self, RecordFilter};
use utoipa::{IntoParams, ToSchema};

use crate::Billing;
use crate::payments::webhook::PaymentEvent;

use super::BillingState;

/// The events' route.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    vec![routes.route(Access::Service, Doc::of::<__path_list>(), list)]
}

/// An event as listed.
#[derive(Serialize, ToSchema)]
struct EventView {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    account_id: Option<String>,
    object_id: Option<String>,
    outcome: String,
    received_at: Instant,
}

/// A page of events.
#[derive(Serialize, ToSchema)]
struct EventPage {
    data: Vec<EventView>,
    next_cursor: Option<String>,
}

/// `?account=&limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// Only the events about this account.
    #[param(value_type = Option<server::openapi::schema::AccountId>)]
    account: Option<String>,
    /// The page size, 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List payment events
///
/// Every event the provider sent, with what creditd did with it, oldest
/// first; for support.
#[utoipa::path(
    get,
    path = "/v1/payments/events",
    tag = "payments",
    operation_id = "listPaymentEvents",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events.", body = EventPage),
        (status = 400, description = "`invalid_request`, `invalid_id`."),
    ),
)]
async fn list(
    State(billing): BillingState,
    Query(query): Query<EventQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let filter = match query.account {
        Some(account) => RecordFilter::Equals {
            name: "account".into(),
            value: extract::account_id(&account)?.as_str().to_owned(),
        },
        None => RecordFilter::All,
    };
    let after = extract::id_cursor(query.cursor)?;
    let page = records::list::<PaymentEvent>(billing.store.as_ref(), filter, after, limit).await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|d| d.id.clone()))
        .flatten();
    let data = page
        .into_iter()
        .map(|d| EventView {
            id: d.id,
            event_type: d.body.event_type,
            account_id: d.body.account,
            object_id: d.body.object_id,
            outcome: d.body.outcome,
            received_at: Instant(ledger::Timestamp::from_micros(d.body.received_at_micros)),
        })
        .collect();
    Ok(render::json(
        StatusCode::OK,
        &EventPage { data, next_cursor },
    ))
}
