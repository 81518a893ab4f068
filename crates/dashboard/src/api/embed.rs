//! The embeddable balance: short-lived read-only tokens, and the balance
//! they read from any origin.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use server::error::ApiError;
use server::openapi::schema::AccountPath;
use server::render::{self, Decimal, Instant};
use utoipa::ToSchema;

use crate::Dashboard;
use crate::client;
use crate::error::DashboardError;
use crate::session;

/// A new embed token.
#[derive(Serialize, ToSchema)]
pub(crate) struct EmbedTokenView {
    /// The token: give it to `<creditd-balance token="…">`. It reads this
    /// account's available balance and nothing else.
    token: String,
    /// When it stops working (an hour from now).
    #[schema(value_type = String, format = DateTime)]
    expires_at: Instant,
}

/// Create an embed token
///
/// A short-lived, read-only token for the account's balance alone, for
/// the `<creditd-balance>` element of `/embed/creditd.js` on a page of the
/// operator's app. It reads the available balance for an hour and nothing
/// else. Takes no Idempotency-Key: the token is a secret shown once.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/embed-tokens",
    tag = "dashboard",
    operation_id = "createEmbedToken",
    params(AccountPath),
    responses(
        (status = 201, description = "The token.", body = EmbedTokenView),
        (status = 400, description = "`invalid_id`, `invalid_request` (an Idempotency-Key)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub(crate) async fn create(
    State(dashboard): State<Arc<Dashboard>>,
    server::extract::ExistingAccount(account): server::extract::ExistingAccount,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if headers.contains_key("idempotency-key") {
        return Err(ApiError::InvalidRequest(
            "an embed token is shown only once, so creating one takes no Idempotency-Key".into(),
        ));
    }
    let now = dashboard.clock.now();
    let (token, expires) =
        session::new_embed_token(dashboard.store.as_ref(), &account, now).await?;
    let view = EmbedTokenView {
        token,
        expires_at: Instant(expires),
    };
    Ok(render::json(StatusCode::CREATED, &view))
}

/// The balance an embed shows.
#[derive(Serialize, ToSchema)]
pub(crate) struct EmbeddedBalance {
    /// The account.
    account_id: String,
    /// Credits available to spend now.
    #[schema(value_type = String)]
    available: Decimal,
}

/// What the balance's answer to a preflight allows: any origin may read
/// it, with the token in `Authorization`; no cookie is ever involved.
fn allow_any_origin(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// Answers a browser's preflight of the embedded balance.
pub(crate) async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    allow_any_origin(&mut response);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Read the embedded balance
///
/// The available balance of the account an embed token reads, for the
/// `<creditd-balance>` element on any origin (`Access-Control-Allow-Origin:
/// *`; the token goes in `Authorization: Bearer`).
#[utoipa::path(
    get,
    path = "/v1/embed/balance",
    tag = "dashboard",
    operation_id = "getEmbeddedBalance",
    responses(
        (status = 200, description = "The available balance.", body = EmbeddedBalance),
        (status = 401, description = "`invalid_embed_token`."),
    ),
)]
pub(crate) async fn balance(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Response {
    let mut response = match embedded(&dashboard, &headers).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    allow_any_origin(&mut response);
    response
}

async fn embedded(dashboard: &Dashboard, headers: &HeaderMap) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(DashboardError::InvalidEmbedToken)?;
    let now = dashboard.clock.now();
    let account = session::embed_account(dashboard.store.as_ref(), token.trim(), now)
        .await?
        .ok_or(DashboardError::InvalidEmbedToken)?;
    let path = format!("/v1/accounts/{account}/balance");
    let balance: crate::pages::views::Balance = dashboard
        .api
        .get(&client::customer(&account, true), &path)
        .await
        .map_err(|refusal| ApiError::Internal(refusal.to_string()))?;
    let view = EmbeddedBalance {
        account_id: account.to_string(),
        available: Decimal(balance.available),
    };
    Ok(render::json(StatusCode::OK, &view))
}
