//! Holds: reserve credits, then commit the final amount or release them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{HoldId, HoldTtl};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::Op;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, PathParam, Sign, Write};
use crate::render::{self, HoldView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateHold<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    amount: Option<&'a RawValue>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
}

/// `POST /v1/accounts/{id}/holds`
pub async fn create(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
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

/// `GET /v1/holds/{hold_id}`
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitHold<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    amount: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
}

/// `POST /v1/holds/{hold_id}/commit`
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseHold<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
}

/// `POST /v1/holds/{hold_id}/release`
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
