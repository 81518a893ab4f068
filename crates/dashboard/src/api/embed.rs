//! The embeddable balance: short-lived read-only tokens, and the balance
//! they read from any origin.

use std::sync::Arc;

use axum::extract::{Path, State};
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

/// Lets a page on any origin read the answer: it holds one balance, and no
/// cookie or key is ever involved.
fn allow_any_origin(response: &mut Response) {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// `{token}`
enum TokenPath {}

impl utoipa::IntoParams for TokenPath {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        vec![
            utoipa::openapi::path::ParameterBuilder::new()
                .name("token")
                .parameter_in(utoipa::openapi::path::ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some(
                    "An embed token, as `POST …/embed-tokens` answered it.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^cde_[0-9a-f]{64}$"))
                        .examples([format!("cde_{}", "0f".repeat(32))]),
                ))
                .build(),
        ]
    }
}

/// Read the embedded balance
///
/// The available balance of the account an embed token reads, for the
/// `<creditd-balance>` element on a page of any origin
/// (`Access-Control-Allow-Origin: *`). The token is the path: it reads this
/// one balance, for an hour, and nothing else.
#[utoipa::path(
    get,
    path = "/v1/embed/balance/{token}",
    tag = "dashboard",
    operation_id = "getEmbeddedBalance",
    params(TokenPath),
    responses(
        (status = 200, description = "The available balance.", body = EmbeddedBalance),
        (status = 404, description = "`embed_token_not_found`: unknown or expired."),
    ),
)]
pub(crate) async fn balance(
    State(dashboard): State<Arc<Dashboard>>,
    Path(token): Path<String>,
) -> Response {
    let mut response = match embedded(&dashboard, &token).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    allow_any_origin(&mut response);
    response
}

async fn embedded(dashboard: &Dashboard, token: &str) -> Result<Response, ApiError> {
    let now = dashboard.clock.now();
    let account = session::embed_account(dashboard.store.as_ref(), token, now)
        .await?
        .ok_or(DashboardError::EmbedTokenNotFound)?;
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
