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

use crate::error::ApiError;
use crate::extract::{self, PathParam, Query, Sign, Write};
use crate::render::{self, Page, TransactionView};
use crate::{AppState, Principal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/accounts/{account_id}/transactions?type=&from=&to=&limit=&cursor=`, newest first.
pub async fn list(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
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
    super::require_account(state.store.as_ref(), &account).await?;
    let transactions = state.store.transactions(filter).await?;
    let page = Page::new(&transactions, limit, |t| t.id, TransactionView::new);
    Ok(render::json(StatusCode::OK, &page))
}

fn tx_id(text: &str) -> Result<TxId, ApiError> {
    extract::numbered_id(text, TxId::parse, "transaction")
}

/// `GET /v1/transactions/{tx_id}`
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    amount: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
}

/// `POST /v1/transactions/{tx_id}/refund`
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
