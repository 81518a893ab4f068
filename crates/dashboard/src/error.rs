//! The dashboard API's refusals, each with a stable code and its status.

use axum::http::StatusCode;
use server::error::ApiError;

/// Why the dashboard's API refused a request. Codes are stable and never
/// renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DashboardError {
    /// 404 `embed_token_not_found`: no embed token of this value, or it has
    /// expired; the operator's backend makes a new one.
    EmbedTokenNotFound,
}

impl DashboardError {
    /// Every code the dashboard answers with beside the core's, with its status.
    pub fn codes() -> Vec<(&'static str, StatusCode)> {
        [DashboardError::EmbedTokenNotFound]
            .iter()
            .map(|e| (e.code(), e.status()))
            .collect()
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            DashboardError::EmbedTokenNotFound => "embed_token_not_found",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            DashboardError::EmbedTokenNotFound => StatusCode::NOT_FOUND,
        }
    }

    fn message(&self) -> String {
        match self {
            DashboardError::EmbedTokenNotFound => {
                "no embed token of this value, or it has expired; ask for a new one".into()
            }
        }
    }
}

impl From<DashboardError> for ApiError {
    fn from(error: DashboardError) -> ApiError {
        ApiError::Capability {
            status: error.status(),
            code: error.code(),
            message: error.message(),
        }
    }
}
