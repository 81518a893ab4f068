//! Outbound webhooks' refusals, each with a stable code and its HTTP status.

use axum::http::StatusCode;
use server::error::ApiError;

/// Why a webhook request was refused. Codes are stable and never renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// 404 `webhook_endpoint_not_found`.
    EndpointNotFound,
    /// 404 `webhook_event_not_found`.
    EventNotFound,
    /// 400 `invalid_webhook_endpoint`: a URL, event type or description
    /// that cannot be used; the message says which.
    InvalidEndpoint(String),
    /// 409 `webhook_endpoint_limit`: as many endpoints as allowed exist.
    TooManyEndpoints,
    /// 503 `webhooks_not_configured`: no master key to seal signing secrets with.
    NotConfigured,
}

impl WebhookError {
    /// Every code beside the core's, with its status.
    pub fn codes() -> Vec<(&'static str, StatusCode)> {
        [
            WebhookError::EndpointNotFound,
            WebhookError::EventNotFound,
            WebhookError::InvalidEndpoint(String::new()),
            WebhookError::TooManyEndpoints,
            WebhookError::NotConfigured,
        ]
        .iter()
        .map(|e| (e.code(), e.status()))
        .collect()
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::EndpointNotFound => "webhook_endpoint_not_found",
            WebhookError::EventNotFound => "webhook_event_not_found",
            WebhookError::InvalidEndpoint(_) => "invalid_webhook_endpoint",
            WebhookError::TooManyEndpoints => "webhook_endpoint_limit",
            WebhookError::NotConfigured => "webhooks_not_configured",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::EndpointNotFound | WebhookError::EventNotFound => StatusCode::NOT_FOUND,
            WebhookError::InvalidEndpoint(_) => StatusCode::BAD_REQUEST,
            WebhookError::TooManyEndpoints => StatusCode::CONFLICT,
            WebhookError::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What went wrong, for a person.
    pub fn message(&self) -> String {
        match self {
            WebhookError::EndpointNotFound => "no webhook endpoint with this id".into(),
            WebhookError::EventNotFound => "no webhook event with this id".into(),
            WebhookError::InvalidEndpoint(m) => m.clone(),
            WebhookError::TooManyEndpoints => format!(
                "at most {} webhook endpoints may exist; delete one first",
                crate::endpoint::ENDPOINTS_MAX
            ),
            WebhookError::NotConfigured => "webhook signing secrets are kept sealed under a \
                 master key: set CREDITD_MASTER_KEY to 64 hex digits (32 random bytes, e.g. from \
                 `openssl rand -hex 32`) and restart"
                .into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> ApiError {
        ApiError::Capability {
            status: error.status(),
            code: error.code(),
            message: error.message(),
        }
    }
}
