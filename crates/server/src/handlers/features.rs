//! Features: set and read prices in credits per unit.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{Feature, FeatureId};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::Op;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, PathParam, Sign, Write};
use crate::render::{self, FeatureView, Page};

fn feature_id(text: &str) -> Result<FeatureId, ApiError> {
    FeatureId::parse(text).map_err(|_| {
        ApiError::InvalidId("feature ids are 1 to 128 characters of A-Za-z0-9_.:-".into())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFeature<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    credits_per_unit: Option<&'a RawValue>,
}

/// `PUT /v1/features/{feature_id}`
pub async fn put(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let id = feature_id(&id)?;
    let body: PutFeature = extract::parse_json(&write.body)?;
    let price =
        extract::required_amount(body.credits_per_unit, "credits_per_unit", Sign::Positive)?;
    let feature = Feature::new(id, price, state.clock.now())?;
    super::execute(state.store.as_ref(), write, Op::PutFeature(feature)).await
}

/// `GET /v1/features/{feature_id}`
pub async fn get(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let feature = state
        .store
        .feature(feature_id(&id)?)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::FeatureNotFound))?;
    Ok(render::json(StatusCode::OK, &FeatureView::new(&feature)))
}

/// `GET /v1/features`
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let features = state.store.features().await?;
    Ok(render::json(
        StatusCode::OK,
        &Page {
            data: features.iter().map(FeatureView::new).collect(),
            next_cursor: None,
        },
    ))
}
