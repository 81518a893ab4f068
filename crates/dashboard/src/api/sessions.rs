//! Links to a customer's Credits page, made by the operator's backend.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::extract::{self, ExistingAccount, Write};
use server::openapi::schema::AccountPath;
use server::render::{self, Instant};
use utoipa::ToSchema;

use crate::Dashboard;
use crate::domain::session::LINK_TTL_SECS;
use crate::session;

/// The longest `return_url`.
pub const RETURN_URL_LEN_MAX: usize = 2048;

/// What the link opens.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDashboardSession {
    /// The page's language (`en`, `zh`); else the browser's
    /// `Accept-Language`, else English.
    #[schema(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    locale: Option<String>,
    /// Where the page's "Back to the app" link leads: an `https://` or
    /// `http://` URL of at most 2048 characters.
    #[schema(pattern = "^https?://[^\\s]+$", max_length = 2048)]
    return_url: Option<String>,
}

/// A link to the Credits page.
#[derive(Serialize, ToSchema)]
pub(crate) struct DashboardSessionView {
    /// The link: it opens a session of this account's Credits page once.
    url: String,
    /// When the link stops working if it was not opened.
    #[schema(value_type = String, format = DateTime)]
    expires_at: Instant,
}

/// Create a link to an account's Credits page
///
/// Answers a link to the account's Credits page, as Stripe's customer
/// portal sessions do: the operator's backend asks for it when a signed-in
/// customer wants to see their credits, and sends the browser there. The
/// link opens a session of this account only, works once, and only within
/// ten minutes; the session lasts two hours or until the customer signs
/// out. Takes no Idempotency-Key: the link is a secret shown once.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/dashboard-sessions",
    tag = "dashboard",
    operation_id = "createDashboardSession",
    params(AccountPath),
    request_body(content = Option<NewDashboardSession>, description = "Optional; an empty \
        body, or `null`, reads as `{}`."),
    responses(
        (status = 201, description = "The link.", body = DashboardSessionView),
        (status = 400, description = "`malformed_json`, `invalid_request` (a bad `locale` or \
            `return_url`, an unknown field, an Idempotency-Key), `invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub(crate) async fn create(
    State(dashboard): State<Arc<Dashboard>>,
    ExistingAccount(account): ExistingAccount,
    write: Write,
) -> Result<Response, ApiError> {
    if write.idempotency.is_some() {
        return Err(ApiError::InvalidRequest(
            "a dashboard link is shown only once, so creating one takes no Idempotency-Key".into(),
        ));
    }
    let body: NewDashboardSession = extract::parse_optional_json(&write.body)?;
    let locale = body.locale.map(checked_locale).transpose()?;
    let return_url = body.return_url.map(checked_return_url).transpose()?;
    let now = dashboard.clock.now();
    let token =
        session::new_link(dashboard.store.as_ref(), &account, locale, return_url, now).await?;
    let view = DashboardSessionView {
        url: format!("{}/dashboard/link/{token}", dashboard.public_url),
        expires_at: Instant(now.plus_secs(LINK_TTL_SECS)),
    };
    Ok(render::json(StatusCode::CREATED, &view))
}

/// A language tag such as `zh` or `pt-BR`.
fn checked_locale(tag: String) -> Result<String, ApiError> {
    let mut parts = tag.splitn(2, '-');
    let primary = parts.next().unwrap_or("");
    let region_ok = parts.next().is_none_or(|region| {
        (2..=8).contains(&region.len()) && region.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && region_ok
    {
        Ok(tag)
    } else {
        Err(ApiError::InvalidRequest(
            "locale is a language tag such as en, zh or pt-BR".into(),
        ))
    }
}

/// An `http(s)://` URL without spaces, of at most 2048 characters.
fn checked_return_url(url: String) -> Result<String, ApiError> {
    let shaped = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "http://".len()
        && url.chars().count() <= RETURN_URL_LEN_MAX
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if shaped {
        Ok(url)
    } else {
        Err(ApiError::InvalidRequest(
            "return_url is an https:// or http:// URL of at most 2048 characters, without spaces"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_checked() {
        assert!(checked_locale("zh".into()).is_ok());
        assert!(checked_locale("pt-BR".into()).is_ok());
        assert!(checked_locale("z".into()).is_err());
        assert!(checked_locale("zh-".into()).is_err());
        assert!(checked_locale("<b>".into()).is_err());
    }

    #[test]
    fn a_return_url_is_an_http_url_without_spaces() {
        assert!(checked_return_url("https://app.example.com/settings".into()).is_ok());
        assert!(checked_return_url("javascript:alert(1)".into()).is_err());
        assert!(checked_return_url("https://a b".into()).is_err());
        assert!(checked_return_url(format!("https://{}", "a".repeat(2048))).is_err());
    }
}
