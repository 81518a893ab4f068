//! The dashboard API's refusals, each with a stable code and its status.

use axum::http::StatusCode;
use server::error::ApiError;

/// Why the dashboard's API refused a request. Codes are stable and never
/// renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DashboardError {
    /// 401 `invalid_embed_token`: no embed token, or one that is unknown or
    /// has expired; the operator's backend makes a new one.
    InvalidEmbedToken,
}

impl DashboardError {
    /// Every code the dashboard answers with beside the core's, with its status.
    pub fn codes() -> Vec<(&'static str, StatusCode)> {
        [DashboardError::InvalidEmbedToken]
            .iter()
            .map(|e| (e.code(), e.status()))
            .collect()
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            DashboardError::InvalidEmbedToken => "invalid_embed_token",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            DashboardError::InvalidEmbedToken => StatusCode::UNAUTHORIZED,
        }
    }

    fn message(&self) -> String {
        match self {
            DashboardError::InvalidEmbedToken => {
                "the embed token is missing, unknown or expired; ask for a new one".into()
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
