//! The journal: list an account's transactions, read one, refund usage.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{TxId, TxKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::{Op, TxFilter};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{self, ExistingAccount, PathParam, Query, Sign, Write};
use crate::openapi::schema::{self, AccountPath, IdempotencyKey, TxPath};
use crate::render::{self, Page, TransactionPage, TransactionView};
use crate::{AppState, Principal};

/// `?type=&from=&to=&limit=&cursor=`, the query of a journal page.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only transactions of this type.
    #[serde(rename = "type")]
    #[param(value_type = Option<schema::TransactionType>)]
    kind: Option<String>,
    /// Only transactions created at or after this instant.
    #[param(value_type = Option<schema::TimestampInput>)]
    from: Option<String>,
    /// Only transactions created before this instant.
    #[param(value_type = Option<schema::TimestampInput>)]
    to: Option<String>,
    /// The page size, a whole number from 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page (a transaction id); older
    /// transactions follow.
    #[param(value_type = Option<schema::TransactionId>)]
    cursor: Option<String>,
}

/// List an account's transactions
///
/// Lists the account's journal, newest first, optionally filtered by type
/// and by a creation-time window [`from`, `to`).
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/transactions",
    tag = "transactions",
    operation_id = "listTransactions",
    params(AccountPath, ListQuery),
    responses(
        (status = 200, description = "A page of transactions.", body = TransactionPage),
        (status = 400, description = "`invalid_id`, `invalid_timestamp` (`from` or `to`), \
            `invalid_request` (unknown `type`, a bad `limit` or `cursor`, an unknown query \
            parameter)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let kind = query
        .kind
        .as_deref()
        .map(|k| {
            TxKind::parse(k).ok_or_else(|| {
                let known: Vec<&str> = TxKind::ALL.iter().map(|k| k.code()).collect();
                ApiError::InvalidRequest(format!("type must be one of {}", known.join(", ")))
            })
        })
        .transpose()?;
    let limit = extract::limit(query.limit.as_deref())?;
    let before = extract::cursor(query.cursor.as_deref(), TxId::parse)?;
    let filter = TxFilter {
        account: account.clone(),
        kind,
        from: extract::timestamp(query.from.as_deref(), "from")?,
        to: extract::timestamp(query.to.as_deref(), "to")?,
        before,
        limit,
    };
    let transactions = state.store.transactions(filter).await?;
    let page = Page::new(&transactions, limit, |t| t.id, TransactionView::new);
    Ok(render::json(StatusCode::OK, &page))
}

fn tx_id(text: &str) -> Result<TxId, ApiError> {
    extract::numbered_id(text, TxId::parse, "transaction")
}

/// Get a transaction
///
/// Returns one journal transaction with its double-entry postings.
#[utoipa::path(
    get,
    path = "/v1/transactions/{tx_id}",
    tag = "transactions",
    operation_id = "getTransaction",
    params(TxPath),
    responses(
        (status = 200, description = "The transaction.", body = TransactionView),
        (status = 400, description = "`invalid_id`: not an id of the form `tx_<n>`."),
        (status = 404, description = "`transaction_not_found`."),
    ),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let tx = state
        .store
        .transaction(tx_id(&id)?)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::TransactionNotFound))?;
    super::require_visible(&principal, &tx.account, ledger::Reject::TransactionNotFound)?;
    Ok(render::json(StatusCode::OK, &TransactionView::new(&tx)))
}

/// A refund's optional body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Refund)]
struct RefundBody<'a> {
    /// Credits to refund; greater than zero and at most what is left to
    /// refund. Everything left when absent.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = Option<schema::PositiveAmount>)]
    amount: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
}

/// Refund usage
///
/// Refunds all or part of a `consume` or `hold_commit` transaction,
/// returning credits to the lots they came from, most recently drawn share
/// first; credits whose lot has since expired or been voided expire or are
/// voided again at once. A share that was debt reduces the debt, and what
/// the debt no longer needs comes back as a new `refund` lot without
/// expiry. Several partial refunds may be made until the usage is fully
/// refunded.
#[utoipa::path(
    post,
    path = "/v1/transactions/{tx_id}/refund",
    tag = "transactions",
    operation_id = "refundTransaction",
    params(TxPath, IdempotencyKey),
    request_body(content = Option<RefundBody>, description = "Optional; an empty body, or `null`, reads as `{}` \
        and refunds everything left."),
    responses(
        (status = 201, description = "The `refund` transaction.", body = TransactionView),
        (status = 400, description = "`malformed_json`, `invalid_request` (unknown or \
            mistyped field), `invalid_id`, `invalid_amount` (zero, negative or malformed), \
            `invalid_metadata`, `amount_overflow`."),
        (status = 404, description = "`transaction_not_found`."),
        (status = 409, description = "`not_refundable`: the transaction is not a `consume` or \
            `hold_commit`; or `refund_too_large`: more than what is left to refund, or \
            nothing is left (the body carries `refundable`)."),
    ),
)]
pub async fn refund(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let tx = tx_id(&id)?;
    let body: RefundBody = extract::parse_optional_json(&write.body)?;
    let op = Op::Refund {
        tx,
        amount: body
            .amount
            .map(|raw| extract::amount(raw, "amount", Sign::Positive))
            .transpose()?,
        metadata: extract::metadata(body.metadata)?,
    };
    super::execute(state.store.as_ref(), write, op).await
}
