//! The credit settings: read them, and change some of them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use server::error::ApiError;
use server::extract::{self, ReadBody};
use server::openapi::Doc;
use server::render;
use server::routes::Routes;
use server::{Access, Route};
use store::records;

use crate::Billing;
use crate::error::BillingError;
use crate::plan::Plan;
use crate::settings::{self, SettingsPatch};

use super::BillingState;

/// The credit settings' routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::Admin;
    vec![
        routes.route(Admin, Doc::of::<__path_get>(), get),
        routes.route(Admin, Doc::of::<__path_patch>(), patch),
    ]
}

/// Get the credit settings
///
/// The sign-up bonus, the daily reward, whether free accounts may buy
/// packages, burn priorities per source and the default plan, each with
/// where its value comes from in `sources` (`default`, `env`: the server's
/// environment at start, `api`: set here, which wins).
#[utoipa::path(
    get,
    path = "/v1/settings/credits",
    tag = "billing",
    operation_id = "getCreditSettings",
    responses((status = 200, description = "The settings in force.", body = Object)),
)]
async fn get(State(billing): BillingState) -> Result<Response, ApiError> {
    let settings = settings::read(billing.store.as_ref(), &billing.env).await?;
    Ok(render::json(StatusCode::OK, &settings.view()))
}

/// Change the credit settings
///
/// Changes the settings sent, nested as `GET` shows them; the others stay.
/// Stored once for every node, and over the environment's values.
#[utoipa::path(
    patch,
    path = "/v1/settings/credits",
    tag = "billing",
    operation_id = "patchCreditSettings",
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The settings now in force.", body = Object),
        (status = 400, description = "`malformed_json`, `invalid_settings` (an unknown \
            setting or a bad value)."),
        (status = 404, description = "`plan_not_found`: `default_plan` names no plan."),
    ),
)]
async fn patch(
    State(billing): BillingState,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let body: Value = extract::parse_json(&body)?;
    let changes = settings::parse_patch(&body)?;
    if let Some(Value::String(plan)) = changes.get("default_plan")
        && records::get::<Plan>(billing.store.as_ref(), plan)
            .await?
            .is_none()
    {
        return Err(BillingError::PlanNotFound.into());
    }
    let settings = settings::patch(billing.store.as_ref(), &billing.env, &changes).await??;
    Ok(render::json(StatusCode::OK, &settings.view()))
}
