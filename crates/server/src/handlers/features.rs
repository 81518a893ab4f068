//! Features: set and read prices in credits per unit.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{Feature, FeatureId};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::Op;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, PathParam, Sign, Write};
use crate::openapi::schema::{self, FeaturePath, IdempotencyKey};
use crate::render::{self, FeaturePage, FeatureView, Page};

fn feature_id(text: &str) -> Result<FeatureId, ApiError> {
    FeatureId::parse(text).map_err(|_| {
        ApiError::InvalidId("feature ids are 1 to 128 characters of A-Za-z0-9_.:-".into())
    })
}

/// A feature's price.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PutFeature<'a> {
    /// The price of one unit in credits; zero or more. At 0 the feature is
    /// free: its consumes record the use and move no credits.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::NonNegativeAmount, required = true)]
    credits_per_unit: Option<&'a RawValue>,
}

/// Set a feature's price
///
/// Creates the feature or replaces its price; consumes priced by the
/// feature afterwards use the new price, while past transactions keep what
/// they were charged. A price of 0 makes a free feature: its use is
/// recorded (and summed with `GET /v1/accounts/{account_id}/usage?group_by=feature`)
/// without spending credits. Answers 200 whether the feature is new or not.
#[utoipa::path(
    put,
    path = "/v1/features/{feature_id}",
    tag = "features",
    operation_id = "putFeature",
    params(FeaturePath, IdempotencyKey),
    request_body = PutFeature,
    responses(
        (status = 200, description = "The feature as now priced.", body = FeatureView),
        (status = 400, description = "`malformed_json`, `invalid_request` (missing \
            `credits_per_unit`, unknown or mistyped field), `invalid_id`, `invalid_amount`."),
    ),
)]
pub async fn put(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let id = feature_id(&id)?;
    let body: PutFeature = extract::parse_json(&write.body)?;
    let price =
        extract::required_amount(body.credits_per_unit, "credits_per_unit", Sign::NotNegative)?;
    let feature = Feature::new(id, price, state.clock.now())?;
    super::execute(state.store.as_ref(), write, Op::PutFeature(feature)).await
}

/// Get a feature
///
/// Returns one feature's price.
#[utoipa::path(
    get,
    path = "/v1/features/{feature_id}",
    tag = "features",
    operation_id = "getFeature",
    params(FeaturePath),
    responses(
        (status = 200, description = "The feature.", body = FeatureView),
        (status = 400, description = "`invalid_id`: not a well-formed feature id."),
        (status = 404, description = "`feature_not_found`."),
    ),
)]
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

/// List features
///
/// Lists every priced feature in id order, in a single page: `next_cursor`
/// is always null and no paging parameters are read.
#[utoipa::path(
    get,
    path = "/v1/features",
    tag = "features",
    operation_id = "listFeatures",
    responses(
        (status = 200, description = "Every feature.", body = FeaturePage),
    ),
)]
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
