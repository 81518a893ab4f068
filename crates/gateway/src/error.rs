//! The gateway's refusals, each with a stable code and its HTTP status, and the two wire formats
//! its OpenAI- and Anthropic-compatible endpoints write every error in.

use axum::http::StatusCode;
use axum::response::Response;
use server::error::ApiError;

/// Why the gateway refused a request. Codes are stable and never renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayError {
    /// 400 `model_not_priced`: the catalog has no price for the model, so
    /// it is not served in credits (never served free).
    ModelNotPriced(String),
    /// 400 `model_not_supported`: the model is priced, but not for this
    /// endpoint (an embedding model asked for a chat completion).
    ModelNotSupported(String),
    /// 503 `upstream_not_configured`: no upstream the model's calls could go
    /// to, or none with the operator's key; the message says which.
    UpstreamNotConfigured(String),
    /// 502 `upstream_unavailable`: every upstream failed before answering;
    /// nothing was charged.
    UpstreamUnavailable(String),
    /// 400 `invalid_model_price`: a catalog entry with a bad field.
    InvalidPrice(String),
    /// 404 `price_not_found`: no catalog entry for the model.
    PriceNotFound,
    /// 400 `invalid_price_list`: a price list that cannot be read.
    InvalidPriceList(String),
    /// 402 `key_spend_limit`: the call would take the key past its spend
    /// limit for the window; the upstream was not called.
    KeySpendLimit {
        /// The key's limit.
        limit: ledger::Amount,
        /// What the window has spent and holds.
        spent: ledger::Amount,
    },
    /// 503 `byok_not_configured`: the operator has set no master key, so
    /// provider keys cannot be stored or used.
    ByokNotConfigured,
    /// 400 `provider_key_missing`: a BYOK account has no key for the
    /// model's provider.
    ProviderKeyMissing(String),
    /// 404 `provider_key_not_found`.
    ProviderKeyNotFound,
    /// 400 `invalid_provider_key`: a provider key or base URL that cannot be used.
    InvalidProviderKey(String),
}

impl GatewayError {
    /// Every code the gateway answers with beside the core's, with its status.
    pub fn codes() -> Vec<(&'static str, StatusCode)> {
        [
            GatewayError::ModelNotPriced(String::new()),
            GatewayError::ModelNotSupported(String::new()),
            GatewayError::UpstreamNotConfigured(String::new()),
            GatewayError::UpstreamUnavailable(String::new()),
            GatewayError::InvalidPrice(String::new()),
            GatewayError::PriceNotFound,
            GatewayError::InvalidPriceList(String::new()),
            GatewayError::KeySpendLimit {
                limit: ledger::Amount::ZERO,
                spent: ledger::Amount::ZERO,
            },
            GatewayError::ByokNotConfigured,
            GatewayError::ProviderKeyMissing(String::new()),
            GatewayError::ProviderKeyNotFound,
            GatewayError::InvalidProviderKey(String::new()),
        ]
        .iter()
        .map(|e| (e.code(), e.status()))
        .collect()
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::ModelNotPriced(_) => "model_not_priced",
            GatewayError::ModelNotSupported(_) => "model_not_supported",
            GatewayError::UpstreamNotConfigured(_) => "upstream_not_configured",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::InvalidPrice(_) => "invalid_model_price",
            GatewayError::PriceNotFound => "price_not_found",
            GatewayError::InvalidPriceList(_) => "invalid_price_list",
            GatewayError::KeySpendLimit { .. } => "key_spend_limit",
            GatewayError::ByokNotConfigured => "byok_not_configured",
            GatewayError::ProviderKeyMissing(_) => "provider_key_missing",
            GatewayError::ProviderKeyNotFound => "provider_key_not_found",
            GatewayError::InvalidProviderKey(_) => "invalid_provider_key",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::ModelNotPriced(_)
            | GatewayError::ModelNotSupported(_)
            | GatewayError::InvalidPrice(_)
            | GatewayError::InvalidPriceList(_)
            | GatewayError::ProviderKeyMissing(_)
            | GatewayError::InvalidProviderKey(_) => StatusCode::BAD_REQUEST,
            GatewayError::KeySpendLimit { .. } => StatusCode::PAYMENT_REQUIRED,
            GatewayError::PriceNotFound | GatewayError::ProviderKeyNotFound => {
                StatusCode::NOT_FOUND
            }
            GatewayError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamNotConfigured(_) | GatewayError::ByokNotConfigured => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// What went wrong, for a person.
    pub fn message(&self) -> String {
        match self {
            GatewayError::ModelNotPriced(model) => format!(
                "the model {model:?} has no price in the catalog, so it cannot be called in \
                 credits; an operator adds it with PUT /v1/prices/{{model}} or an import"
            ),
            GatewayError::ModelNotSupported(detail) => detail.clone(),
            GatewayError::UpstreamNotConfigured(message) => message.clone(),
            GatewayError::UpstreamUnavailable(detail) => {
                format!("the model's upstreams failed; nothing was charged: {detail}")
            }
            GatewayError::InvalidPrice(m) | GatewayError::InvalidPriceList(m) => m.clone(),
            GatewayError::PriceNotFound => "no price for this model in the catalog".to_owned(),
            GatewayError::KeySpendLimit { limit, spent } => format!(
                "this key may spend {limit} credits in its window and has spent or holds \
                 {spent}; the call's worst case does not fit"
            ),
            GatewayError::ByokNotConfigured => {
                "provider keys need a master key: set CREDITD_MASTER_KEY to 64 hex digits \
                 (32 random bytes, e.g. from `openssl rand -hex 32`) and restart"
                    .to_owned()
            }
            GatewayError::ProviderKeyMissing(provider) => format!(
                "the account pays with its own keys and has none for {provider:?}; add one \
                 with PUT /v1/accounts/{{account_id}}/provider-keys/{provider}"
            ),
            GatewayError::ProviderKeyNotFound => "no key for this provider".to_owned(),
            GatewayError::InvalidProviderKey(m) => m.clone(),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> ApiError {
        ApiError::Capability {
            status: error.status(),
            code: error.code(),
            message: error.message(),
        }
    }
}

/// Writes an error as OpenAI's API does:
/// `{"error": {"message", "type", "param", "code"}}`.
pub fn openai_error(error: &ApiError) -> Response {
    let status = error.status();
    let kind = match status.as_u16() {
        401 => "authentication_error",
        402 => "insufficient_credits",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    };
    let mut body = serde_json::json!({
        "error": {"message": error.message(), "type": kind, "param": null, "code": error.code()}
    });
    if let ApiError::Forbidden { scope } = error {
        body["error"]["required_scope"] = (*scope).into();
    }
    respond(error, status, body)
}

/// Writes an error as Anthropic's API does:
/// `{"type": "error", "error": {"type", "message"}}`, with the stable code beside.
pub fn anthropic_error(error: &ApiError) -> Response {
    let status = error.status();
    let kind = match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    };
    let mut body = serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": error.message(), "code": error.code()}
    });
    if let ApiError::Forbidden { scope } = error {
        body["error"]["required_scope"] = (*scope).into();
    }
    respond(error, status, body)
}

fn respond(error: &ApiError, status: StatusCode, body: serde_json::Value) -> Response {
    if let ApiError::Internal(detail) = error {
        tracing::error!(%detail, "internal error");
    }
    error.json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_are_written_in_each_wire_format_with_the_stable_code() {
        let error = ApiError::from(GatewayError::ModelNotPriced("x".into()));
        let openai = openai_error(&error);
        assert_eq!(openai.status(), StatusCode::BAD_REQUEST);
        let openai = body(openai).await;
        assert_eq!(openai["error"]["code"], "model_not_priced");
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        let anthropic = body(anthropic_error(&ApiError::Unauthorized)).await;
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "authentication_error");
        assert_eq!(anthropic["error"]["code"], "unauthorized");
    }
}
