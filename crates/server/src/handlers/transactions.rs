//! The journal: list an account's transactions, read one, refund usage.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{Source, Transaction, TxId, TxKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::{Op, Store, TxFilter};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{self, ExistingAccount, PathParam, Query, Sign, Write};
use crate::openapi::schema::{self, AccountPath, IdempotencyKey, TxPath};
use crate::render::{self, Page, TransactionPage, TransactionView};
use crate::{AppState, Principal};

/// `?type=&source=&from=&to=&limit=&cursor=`, the query of a journal page.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only transactions of these types, comma-separated
    /// (`consume,hold_commit`: what was spent).
    #[serde(rename = "type")]
    #[param(
        pattern = "^(grant|consume|hold|hold_commit|hold_release|expire|void|refund|debt_repayment|rollover|debt_settlement|claw_back)(,(grant|consume|hold|hold_commit|hold_release|expire|void|refund|debt_repayment|rollover|debt_settlement|claw_back))*$"
    )]
    kind: Option<String>,
    /// Only grants whose lot came from these sources, comma-separated
    /// (`purchase,auto_topup`); it keeps grants alone, so a `type` list
    /// given with it must include `grant`.
    #[param(
        pattern = "^(signup_bonus|daily_reward|subscription|purchase|auto_topup|admin|promo|rollover|refund)(,(signup_bonus|daily_reward|subscription|purchase|auto_topup|admin|promo|rollover|refund))*$"
    )]
    source: Option<String>,
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

/// The transaction kinds a comma-separated list of their codes names, as
/// `?type=` takes it; `invalid_request` naming the known codes otherwise.
pub fn parse_kinds(list: &str) -> Result<Vec<TxKind>, ApiError> {
    list.split(',')
        .map(|code| {
            TxKind::parse(code).ok_or_else(|| {
                let known: Vec<&str> = TxKind::ALL.iter().map(|k| k.code()).collect();
                ApiError::InvalidRequest(format!(
                    "type {code:?} is not a transaction type; the types are {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// The grant sources a comma-separated list of their codes names, as
/// `?source=` takes it; `invalid_request` naming the known codes otherwise.
pub fn parse_sources(list: &str) -> Result<Vec<Source>, ApiError> {
    list.split(',')
        .map(|code| {
            Source::parse(code).ok_or_else(|| {
                let known: Vec<&str> = Source::ALL.iter().map(|s| s.code()).collect();
                ApiError::InvalidRequest(format!(
                    "source {code:?} is not a grant source; the sources are {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// One page of an account's journal and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The page's transactions, newest first.
    pub transactions: Vec<Transaction>,
    /// The cursor (`TxFilter::before`) of the next page; none after the last.
    pub next_cursor: Option<TxId>,
}

/// Reads one page of the journal `filter` selects: the account's
/// transactions of its kinds and, when it names sources, only grants of
/// those sources, in its time window, older than its cursor, newest first.
/// What `GET /v1/accounts/{account_id}/transactions` answers, for a caller
/// in the same process (a dashboard page, say).
///
/// A filter naming sources with kinds that leave grants out can match
/// nothing and is refused as `invalid_request`; a missing account reads as
/// an empty page.
pub async fn history(store: &dyn Store, filter: TxFilter) -> Result<History, ApiError> {
    if !filter.sources.is_empty()
        && !filter.kinds.is_empty()
        && !filter.kinds.contains(&TxKind::Grant)
    {
        return Err(ApiError::InvalidRequest(
            "source keeps only grants: give it without type, or with a type list that \
             includes grant"
                .into(),
        ));
    }
    let transactions = store.transactions(filter.clone()).await?;
    let next_cursor = filter.next_cursor(&transactions);
    Ok(History {
        transactions,
        next_cursor,
    })
}

/// List an account's transactions
///
/// Lists the account's journal, newest first, optionally filtered by types,
/// by the source of a grant's lot (only grants then) and by a creation-time
/// window [`from`, `to`).
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/transactions",
    tag = "transactions",
    operation_id = "listTransactions",
    params(AccountPath, ListQuery),
    responses(
        (status = 200, description = "A page of transactions.", body = TransactionPage),
        (status = 400, description = "`invalid_id`, `invalid_timestamp` (`from` or `to`), \
            `invalid_request` (an unknown `type` or `source`, a `source` with a `type` list \
            that leaves out `grant`, a bad `limit` or `cursor`, an unknown query parameter)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let filter = TxFilter {
        kinds: query
            .kind
            .as_deref()
            .map(parse_kinds)
            .transpose()?
            .unwrap_or_default(),
        sources: query
            .source
            .as_deref()
            .map(parse_sources)
            .transpose()?
            .unwrap_or_default(),
        from: extract::timestamp(query.from.as_deref(), "from")?,
        to: extract::timestamp(query.to.as_deref(), "to")?,
        before: extract::cursor(query.cursor.as_deref(), TxId::parse)?,
        ..TxFilter::new(account, limit)
    };
    let history = history(state.store.as_ref(), filter).await?;
    let page = Page {
        data: history
            .transactions
            .iter()
            .map(TransactionView::new)
            .collect(),
        next_cursor: history.next_cursor.map(|id| id.to_string()),
    };
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
