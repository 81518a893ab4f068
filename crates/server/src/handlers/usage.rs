//! Usage: consume credits by amount or by feature, or check whether a consume would succeed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{Amount, FeatureId, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use store::{Charge, Op};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, PathParam, Sign, Write};
use crate::render::{self, Decimal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageBody<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    amount: Option<&'a RawValue>,
    #[serde(default)]
    feature: Option<String>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    quantity: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    external_id: Option<String>,
}

/// Reads `{"amount"}` or `{"feature", "quantity"}`, never both.
fn charge(body: &UsageBody<'_>) -> Result<(Charge, Metadata), ApiError> {
    let charge = match (body.amount, &body.feature, body.quantity) {
        (Some(amount), None, None) => {
            Charge::Amount(extract::amount(amount, "amount", Sign::Positive)?)
        }
        (None, Some(feature), Some(quantity)) => Charge::Feature {
            feature: FeatureId::parse(feature).map_err(|_| {
                ApiError::InvalidId("feature ids are 1 to 128 characters of A-Za-z0-9_.:-".into())
            })?,
            quantity: extract::amount(quantity, "quantity", Sign::Positive)?,
        },
        _ => {
            return Err(ApiError::InvalidRequest(
                "send either `amount`, or `feature` with `quantity`".into(),
            ));
        }
    };
    Ok((charge, extract::metadata(body.metadata)?))
}

/// `POST /v1/accounts/{account_id}/consume`
pub async fn consume(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
    let body: UsageBody = extract::parse_json(&write.body)?;
    let (charge, metadata) = charge(&body)?;
    let op = Op::Consume {
        account,
        charge,
        metadata,
        external_id: extract::external_id(body.external_id)?,
    };
    super::execute(state.store.as_ref(), write, op).await
}

#[derive(Serialize)]
struct CheckView {
    allowed: bool,
    required: Decimal,
    available: Decimal,
}

/// `POST /v1/accounts/{account_id}/check`: would this consume succeed now? Changes nothing.
pub async fn check(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
    let body: UsageBody = extract::parse_json(&write.body)?;
    if body.external_id.is_some() {
        return Err(ApiError::InvalidRequest(
            "a check changes nothing, so it takes no external_id".into(),
        ));
    }
    let (charge, _) = charge(&body)?;
    let amount: Amount = match charge {
        Charge::Amount(amount) => amount,
        Charge::Feature { feature, quantity } => state
            .store
            .feature(feature)
            .await?
            .ok_or(ApiError::Rejected(ledger::Reject::FeatureNotFound))?
            .price(quantity)?,
    };
    let now = state.clock.now();
    let standing = state
        .store
        .standing(account, now)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
    let check = standing
        .check(amount, now)
        .ok_or_else(|| ApiError::Internal("a standing that does not cover its instant".into()))??;
    Ok(render::json(
        StatusCode::OK,
        &CheckView {
            allowed: check.allowed,
            required: Decimal(check.required),
            available: Decimal(check.available),
        },
    ))
}
