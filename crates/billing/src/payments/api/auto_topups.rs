//! The accounts whose auto top-up is backing off after a failure, for operators.

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
use store::records::{self, RECORD_PAGE_MAX, RecordCursor, RecordFilter};
use utoipa::{IntoParams, ToSchema};

use crate::Billing;
use crate::domain::topup::{AutoTopup, TopupState};

use super::BillingState;

/// The list's route.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    vec![routes.route(Access::Service, Doc::of::<__path_list>(), list)]
}

/// An account whose auto top-up is backing off.
#[derive(Serialize, ToSchema)]
struct BackingOffView {
    /// The account.
    #[schema(value_type = server::openapi::schema::AccountId)]
    account_id: String,
    /// Why its last top-up failed (`card_declined`, `authentication_required`, …).
    reason: String,
    /// Top-ups failed in a row.
    #[schema(minimum = 0)]
    failures: u32,
    /// When the next top-up may start.
    retry_at: Instant,
}

/// A page of accounts whose auto top-up is backing off.
#[derive(Serialize, ToSchema)]
struct BackingOffPage {
    data: Vec<BackingOffView>,
    /// The `cursor` of the next page; null on the last.
    next_cursor: Option<String>,
}

/// The states the list can be asked for.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum TopupStateFilter {
    /// Top-ups whose last attempts failed, waiting to retry.
    BackingOff,
}

/// `?state=backing_off&limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AutoTopupQuery {
    /// The state listed; only `backing_off`.
    #[allow(dead_code)]
    #[param(inline)]
    state: TopupStateFilter,
    /// The page size, 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List failing auto top-ups
///
/// The accounts whose auto top-up is backing off after a failed payment, in
/// account id order, with why the last one failed and when the next may
/// start. Reads every account's auto top-up (one record per account that
/// set one up) until a page is full, so a page costs a read of the records
/// between its cursor and its last entry.
#[utoipa::path(
    get,
    path = "/v1/payments/auto-topups",
    tag = "payments",
    operation_id = "listAutoTopups",
    params(AutoTopupQuery),
    responses(
        (status = 200, description = "A page of accounts whose auto top-up is backing off.",
            body = BackingOffPage),
        (status = 400, description = "`invalid_request`: `state` missing or not \
            `backing_off`, a bad `limit` or `cursor`, an unknown parameter."),
    ),
)]
async fn list(
    State(billing): BillingState,
    Query(query): Query<AutoTopupQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let after = extract::id_cursor(query.cursor)?;
    let (data, next_cursor) = backing_off(&billing, after, limit).await?;
    Ok(render::json(
        StatusCode::OK,
        &BackingOffPage { data, next_cursor },
    ))
}

/// Up to `limit` backing-off top-ups after `after`, read page by page of
/// every auto top-up, and the cursor after the last one when the page is
/// full.
async fn backing_off(
    billing: &Billing,
    mut after: Option<RecordCursor>,
    limit: usize,
) -> Result<(Vec<BackingOffView>, Option<String>), ApiError> {
    let store = billing.store.as_ref();
    let mut found = Vec::new();
    loop {
        let page =
            records::list::<AutoTopup>(store, RecordFilter::All, after.take(), RECORD_PAGE_MAX)
                .await?;
        let read = page.len();
        for doc in page {
            if let Some(view) = view(&doc.id, &doc.body) {
                found.push(view);
                if found.len() == limit {
                    return Ok((found, Some(doc.id)));
                }
            }
            after = Some(RecordCursor {
                key: doc.id.clone(),
                id: doc.id,
            });
        }
        if read < RECORD_PAGE_MAX {
            return Ok((found, None));
        }
    }
}

/// The entry of an account whose top-up is backing off; none otherwise.
fn view(account: &str, topup: &AutoTopup) -> Option<BackingOffView> {
    let TopupState::BackingOff {
        failures,
        retry_at_micros,
        reason,
    } = &topup.state
    else {
        return None;
    };
    Some(BackingOffView {
        account_id: account.to_owned(),
        reason: reason.clone(),
        failures: *failures,
        retry_at: Instant(ledger::Timestamp::from_micros(*retry_at_micros)),
    })
}
