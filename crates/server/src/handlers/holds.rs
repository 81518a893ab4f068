//! Holds: reserve credits, then commit the final amount or release them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{HoldId, HoldStatus, HoldTtl};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::{HoldFilter, Op};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, ExistingAccount, PathAccount, PathParam, Query, Sign, Write};
use crate::openapi::schema::{self, AccountPath, HoldPath, IdempotencyKey};
use crate::render::{self, HoldPage, HoldView, HoldWritten, Page};

/// A hold to place.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateHold<'a> {
    /// Credits to reserve; greater than zero.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::PositiveAmount, required = true)]
    amount: Option<&'a RawValue>,
    /// Seconds until the hold releases by itself, from 1 to 86400; 900 when
    /// absent.
    #[serde(default, deserialize_with = "extract::whole_opt")]
    #[schema(minimum = 1, maximum = 86400, default = 900)]
    ttl_seconds: Option<i64>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
}

/// Place a hold
///
/// Reserves credits for work whose final cost is not known yet. Spendable
/// lots cover what they can, in burn-down order, and those credits move
/// into the hold's escrow; any rest is allowed only by the overdraft limit.
/// A pending hold releases by itself when its time-to-live runs out.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/holds",
    tag = "holds",
    operation_id = "createHold",
    params(AccountPath, IdempotencyKey),
    request_body = CreateHold,
    responses(
        (status = 201, description = "The hold, the `hold` transaction that moved credits \
            into its escrow, and the balance right after.", body = HoldWritten),
        (status = 400, description = "`malformed_json`, `invalid_request` (missing `amount`, \
            `ttl_seconds` outside 1-86400, unknown or mistyped field), `invalid_id`, \
            `invalid_amount`, `invalid_metadata`, `amount_overflow`."),
        (status = 402, description = "`insufficient_credits`: the amount is more than the \
            available balance plus the overdraft limit; the body carries `required` and \
            `available`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    PathAccount(account): PathAccount,
    write: Write,
) -> Result<Response, ApiError> {
    let body: CreateHold = extract::parse_json(&write.body)?;
    let op = Op::Hold {
        account,
        amount: extract::required_amount(body.amount, "amount", Sign::Positive)?,
        ttl: body
            .ttl_seconds
            .map(HoldTtl::from_secs)
            .transpose()?
            .unwrap_or_default(),
        metadata: extract::metadata(body.metadata)?,
    };
    super::execute(state.store.as_ref(), write, op).await
}

fn hold_id(text: &str) -> Result<HoldId, ApiError> {
    extract::numbered_id(text, HoldId::parse, "hold")
}

/// The query of an account's hold list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HoldQuery {
    /// Only holds that read as this status now (`pending`: still reserving
    /// credits; a pending hold past its expiry reads as `expired`).
    #[param(pattern = "^(pending|committed|released|expired)$")]
    status: Option<String>,
    /// The page size, a whole number from 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page; older holds follow.
    #[param(value_type = Option<schema::HoldId>)]
    cursor: Option<String>,
}

/// List an account's holds
///
/// Lists an account's holds, newest first, each as it stands now,
/// optionally only those of one status: `status=pending` shows what is
/// reserved now and until when.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/holds",
    tag = "holds",
    operation_id = "listHolds",
    params(AccountPath, HoldQuery),
    responses(
        (status = 200, description = "A page of holds; `next_cursor` is a hold id, and older \
            holds follow it.", body = HoldPage),
        (status = 400, description = "`invalid_id`, `invalid_request` (a bad `limit`, \
            `cursor` or `status`, or an unknown query parameter)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HoldQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(|code| {
            HoldStatus::parse(code).ok_or_else(|| {
                ApiError::InvalidRequest(format!("status {code:?} is not a hold status"))
            })
        })
        .transpose()?;
    let now = state.clock.now();
    let holds = state
        .store
        .holds(HoldFilter {
            account,
            status,
            now,
            before: extract::cursor(query.cursor.as_deref(), HoldId::parse)?,
            limit,
        })
        .await?;
    let page = Page::new(&holds, limit, |h| h.id, |h| HoldView::new(h, now));
    Ok(render::json(StatusCode::OK, &page))
}

/// Get a hold
///
/// Returns one hold. A pending hold whose expiry has passed reads as
/// `expired` even before its release is written.
#[utoipa::path(
    get,
    path = "/v1/holds/{hold_id}",
    tag = "holds",
    operation_id = "getHold",
    params(HoldPath),
    responses(
        (status = 200, description = "The hold.", body = HoldView),
        (status = 400, description = "`invalid_id`: not an id of the form `hold_<n>`."),
        (status = 404, description = "`hold_not_found`."),
    ),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let hold = state
        .store
        .hold(hold_id(&id)?)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::HoldNotFound))?;
    Ok(render::json(
        StatusCode::OK,
        &HoldView::new(&hold, state.clock.now()),
    ))
}

/// The final cost of a hold's work.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CommitHold<'a> {
    /// The final cost; zero or more. It may differ from the held amount.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::NonNegativeAmount, required = true)]
    amount: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
}

/// The responses of a write on a pending hold.
const NOT_PENDING: &str = "`hold_not_pending`: the hold was already committed, released or \
    expired.";

/// Commit a hold
///
/// Turns a pending hold into usage of the final amount. Escrowed credits
/// pay first and any unused escrow returns to its lots; an amount above the
/// escrow is charged from available credits, and what they cannot cover
/// becomes debt regardless of the overdraft limit, because the work has
/// already been done.
#[utoipa::path(
    post,
    path = "/v1/holds/{hold_id}/commit",
    tag = "holds",
    operation_id = "commitHold",
    params(HoldPath, IdempotencyKey),
    request_body = CommitHold,
    responses(
        (status = 200, description = "The committed hold, the `hold_commit` transaction and \
            the balance right after.", body = HoldWritten),
        (status = 400, description = "`malformed_json`, `invalid_request` (missing `amount`, \
            unknown or mistyped field), `invalid_id`, `invalid_amount` (negative or \
            malformed), `invalid_metadata`, `amount_overflow`."),
        (status = 404, description = "`hold_not_found`."),
        (status = 409, description = NOT_PENDING),
    ),
)]
pub async fn commit(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let hold = hold_id(&id)?;
    let body: CommitHold = extract::parse_json(&write.body)?;
    let op = Op::Commit {
        hold,
        amount: extract::required_amount(body.amount, "amount", Sign::NotNegative)?,
        metadata: extract::metadata(body.metadata)?,
    };
    super::execute(state.store.as_ref(), write, op).await
}

/// A release's optional body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReleaseHold<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
}

/// Release a hold
///
/// Cancels a pending hold and returns its escrow to the lots it came from
/// (credits whose lot has expired or been voided in the meantime leave
/// again at once).
#[utoipa::path(
    post,
    path = "/v1/holds/{hold_id}/release",
    tag = "holds",
    operation_id = "releaseHold",
    params(HoldPath, IdempotencyKey),
    request_body(content = Option<ReleaseHold>, description = "Optional; an empty body, or `null`, reads as `{}`. \
        The metadata is attached to the `hold_release` transaction."),
    responses(
        (status = 200, description = "The released hold, the `hold_release` transaction and \
            the balance right after.", body = HoldWritten),
        (status = 400, description = "`malformed_json`, `invalid_request` (unknown or \
            mistyped field), `invalid_id`, `invalid_metadata`."),
        (status = 404, description = "`hold_not_found`."),
        (status = 409, description = NOT_PENDING),
    ),
)]
pub async fn release(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let hold = hold_id(&id)?;
    let body: ReleaseHold = extract::parse_optional_json(&write.body)?;
    let metadata = extract::metadata(body.metadata)?;
    super::execute(state.store.as_ref(), write, Op::Release { hold, metadata }).await
}
