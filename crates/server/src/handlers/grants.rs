//! Grants: give credits to an account, list its lots, void one.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{LotId, NewGrant, PRIORITY_MAX, Source};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::Op;

use crate::error::ApiError;
use crate::extract::{self, PageQuery, PathParam, Query, Sign, Write};
use crate::render::{self, GrantView, Page};
use crate::{AppState, Principal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGrant<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    amount: Option<&'a RawValue>,
    source: String,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    effective_at: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    external_id: Option<String>,
}

/// `POST /v1/accounts/{account_id}/grants`
pub async fn create(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
    let body: CreateGrant = extract::parse_json(&write.body)?;
    let source = Source::parse(&body.source).ok_or_else(|| {
        let known: Vec<&str> = Source::ALL.iter().map(|s| s.code()).collect();
        ApiError::InvalidRequest(format!("source must be one of {}", known.join(", ")))
    })?;
    let priority = body
        .priority
        .map(|p| {
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= PRIORITY_MAX)
                .ok_or_else(|| ApiError::InvalidRequest("priority must be from 0 to 100".into()))
        })
        .transpose()?;
    let grant = NewGrant {
        amount: extract::required_amount(body.amount, "amount", Sign::Positive)?,
        source,
        priority,
        effective_at: extract::timestamp(body.effective_at.as_deref(), "effective_at")?,
        expires_at: extract::timestamp(body.expires_at.as_deref(), "expires_at")?,
        metadata: extract::metadata(body.metadata)?,
        external_id: extract::external_id(body.external_id)?,
    };
    super::execute(state.store.as_ref(), write, Op::Grant { account, grant }).await
}

/// `GET /v1/accounts/{account_id}/grants`, newest first.
pub async fn list(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
    let limit = extract::limit(query.limit.as_deref())?;
    let before = extract::cursor(query.cursor.as_deref(), LotId::parse)?;
    super::require_account(state.store.as_ref(), &account).await?;
    let lots = state.store.lots(account, before, limit).await?;
    let now = state.clock.now();
    let page = Page::new(&lots, limit, |l| l.id, |l| GrantView::new(l, now));
    Ok(render::json(StatusCode::OK, &page))
}

/// `GET /v1/grants/{grant_id}`
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = extract::numbered_id(&id, LotId::parse, "grant")?;
    let lot = state
        .store
        .lot(id)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::GrantNotFound))?;
    super::require_visible(&principal, &lot.account, ledger::Reject::GrantNotFound)?;
    Ok(render::json(
        StatusCode::OK,
        &GrantView::new(&lot, state.clock.now()),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Annotate<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
}

/// `POST /v1/grants/{grant_id}/void`
pub async fn void(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let lot = extract::numbered_id(&id, LotId::parse, "grant")?;
    let body: Annotate = extract::parse_optional_json(&write.body)?;
    let metadata = extract::metadata(body.metadata)?;
    super::execute(state.store.as_ref(), write, Op::Void { lot, metadata }).await
}
