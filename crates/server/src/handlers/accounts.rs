//! Accounts: open, read, list, and the balance now or at a past instant.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{AccountPatch, NewAccount};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::Op;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, PageQuery, PathParam, Query, Sign, Write};
use crate::render::{self, AccountView, BalanceView, Page};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccount<'a> {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    overdraft_limit: Option<&'a RawValue>,
}

/// `POST /v1/accounts`
pub async fn create(
    State(state): State<Arc<AppState>>,
    write: Write,
) -> Result<Response, ApiError> {
    let body: CreateAccount = extract::parse_json(&write.body)?;
    let overdraft_limit = match body.overdraft_limit {
        Some(raw) => extract::amount(raw, "overdraft_limit", Sign::NotNegative)?,
        None => ledger::Amount::ZERO,
    };
    let new = NewAccount::new(
        extract::account_id(&body.id)?,
        body.name,
        extract::metadata(body.metadata)?,
        overdraft_limit,
    )?;
    let op = Op::CreateAccount(new);
    super::execute(state.store.as_ref(), write, op).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAccount<'a> {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    overdraft_limit: Option<&'a RawValue>,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /v1/accounts/{account_id}`: changes the name (`null` removes it),
/// the metadata (replaced whole) or the overdraft limit; what is not sent
/// stays as it is.
pub async fn update(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
    let body: UpdateAccount = extract::parse_json(&write.body)?;
    let overdraft_limit = body
        .overdraft_limit
        .map(|raw| extract::amount(raw, "overdraft_limit", Sign::NotNegative))
        .transpose()?;
    let metadata = body
        .metadata
        .map(|raw| extract::metadata(Some(raw)))
        .transpose()?;
    let patch = AccountPatch::new(body.name, metadata, overdraft_limit)?;
    super::execute(
        state.store.as_ref(),
        write,
        Op::UpdateAccount { account, patch },
    )
    .await
}

/// `GET /v1/accounts/{account_id}`
pub async fn get(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = extract::account_id(&id)?;
    let account = state
        .store
        .account(id)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
    Ok(render::json(StatusCode::OK, &AccountView::new(&account)))
}

/// `GET /v1/accounts?limit&cursor`
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let after = extract::cursor(query.cursor.as_deref(), ledger::AccountId::parse)?;
    let accounts = state.store.accounts(after, limit).await?;
    let page = Page::new(&accounts, limit, |a| a.id.clone(), AccountView::new);
    Ok(render::json(StatusCode::OK, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceQuery {
    at: Option<String>,
}

/// `GET /v1/accounts/{account_id}/balance?at=`
pub async fn balance(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    Query(query): Query<BalanceQuery>,
) -> Result<Response, ApiError> {
    let id = extract::account_id(&id)?;
    let now = state.clock.now();
    let at = extract::timestamp(query.at.as_deref(), "at")?;
    let when = at.unwrap_or(now);
    let book = state
        .store
        .book(id, at)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
    let settled = book.settled(when);
    let balance = settled.balance(when);
    Ok(render::json(
        StatusCode::OK,
        &BalanceView::new(settled.account.id.as_str(), balance, settled.lots(), when),
    ))
}
