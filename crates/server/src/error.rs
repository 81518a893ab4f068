//! The API's one error type and its JSON form: `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger::Reject;
use serde::Serialize;
use store::{Refused, StoreError};
use utoipa::ToSchema;

use crate::openapi::schema::ErrorCode;
use crate::render::Decimal;

/// A size in bytes as people read it: `64 KiB`, `16 MiB`, `1000 bytes`.
fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Every way a request can fail. Each variant's doc names its HTTP status;
/// codes are stable and never renamed.
#[derive(Debug)]
pub enum ApiError {
    /// 401 `unauthorized`: no or a wrong bearer key.
    Unauthorized,
    /// 403 `forbidden`: the key may not do this; names the scope it lacks.
    Forbidden {
        /// The scope the route needs.
        scope: &'static str,
    },
    /// 404 `key_not_found`: no API key with this id.
    KeyNotFound,
    /// 409 `last_admin_key`: revoking it would leave no admin key.
    LastAdminKey,
    /// 409 `version_conflict`: the object changed since it was read.
    VersionConflict,
    /// 409 `idempotency_in_progress`: the first request under this
    /// Idempotency-Key is still running; retry it shortly.
    IdempotencyInProgress,
    /// 409 `conflict`: another object already holds a value that must be unique.
    Conflict(String),
    /// 400 `malformed_json`: the body is not JSON.
    MalformedJson(String),
    /// 400 `invalid_request`: a field is missing, unknown or of the wrong type,
    /// or a query parameter is bad.
    InvalidRequest(String),
    /// 400 `invalid_amount`: not a decimal with at most 6 fractional digits,
    /// out of range, or negative or zero where that is not allowed.
    InvalidAmount(String),
    /// 400 `invalid_timestamp`: not an RFC 3339 instant.
    InvalidTimestamp(String),
    /// 400 `invalid_id`: an id that cannot exist (bad characters, length, prefix).
    InvalidId(String),
    /// 400 `invalid_metadata`: metadata that is not a JSON object of at most 4 KiB.
    InvalidMetadata(String),
    /// 413 `payload_too_large`: the body is larger than the route's limit,
    /// which the message names.
    PayloadTooLarge {
        /// The route's limit, in bytes.
        limit_bytes: usize,
    },
    /// 415 `unsupported_media_type`: a body that says it is not JSON.
    UnsupportedMediaType,
    /// 404 `not_found`: no such route.
    RouteNotFound,
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// The ledger refused; status by rejection (402, 404, 409, 400).
    Rejected(Reject),
    /// 503 `store_unavailable`: the database cannot be reached; nothing was applied.
    StoreUnavailable(String),
    /// 429 `rate_limited`: the key, or the client's address on a route held
    /// by address, made more requests than its rate lets; nothing was done.
    /// Sent with `Retry-After` and `RateLimit-*`.
    RateLimited {
        /// The rate's requests a period, and the burst.
        limit: u32,
        /// Seconds until the key may make one more.
        retry_after_secs: u64,
    },
    /// 503 `overloaded`: every place for a request on this node is taken;
    /// nothing was done. Sent with `Retry-After`.
    Overloaded,
    /// 503 `request_timeout`: the answer did not begin within the route's
    /// time limit; a write may still be applied, so a retry carries the
    /// same `Idempotency-Key`. Sent with `Retry-After`.
    RequestTimeout {
        /// The route's limit.
        limit: std::time::Duration,
    },
    /// 500 `internal_error`: a bug; the detail is logged, not shown.
    Internal(String),
    /// A capability's own refusal (billing, the gateway): its status, its
    /// stable code (listed in the capability's error codes) and a message.
    Capability {
        /// The HTTP status.
        status: StatusCode,
        /// The stable code.
        code: &'static str,
        /// What went wrong, for a person.
        message: String,
    },
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::KeyNotFound => StatusCode::NOT_FOUND,
            ApiError::VersionConflict
            | ApiError::Conflict(_)
            | ApiError::LastAdminKey
            | ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::MalformedJson(_)
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidAmount(_)
            | ApiError::InvalidTimestamp(_)
            | ApiError::InvalidId(_)
            | ApiError::InvalidMetadata(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Rejected(reject) => reject_status(reject),
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StoreUnavailable(_)
            | ApiError::Overloaded
            | ApiError::RequestTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Capability { status, .. } => *status,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::KeyNotFound => "key_not_found",
            ApiError::LastAdminKey => "last_admin_key",
            ApiError::VersionConflict => "version_conflict",
            ApiError::IdempotencyInProgress => "idempotency_in_progress",
            ApiError::Conflict(_) => "conflict",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidAmount(_) => "invalid_amount",
            ApiError::InvalidTimestamp(_) => "invalid_timestamp",
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::InvalidMetadata(_) => "invalid_metadata",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Rejected(reject) => reject.code(),
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded => "overloaded",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::Internal(_) => "internal_error",
            ApiError::Capability { code, .. } => code,
        }
    }

    /// What went wrong, for a person (a 500's detail stays hidden).
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthorized => {
                "send a valid API key as `Authorization: Bearer <key>`".to_owned()
            }
            ApiError::Forbidden { scope } => {
                format!("this key may not do this: it needs the `{scope}` scope")
            }
            ApiError::KeyNotFound => "no API key with this id".to_owned(),
            ApiError::LastAdminKey => {
                "this is the last admin key; create another before revoking it".to_owned()
            }
            ApiError::VersionConflict => {
                "the object changed since it was read; read it again and retry".to_owned()
            }
            ApiError::IdempotencyInProgress => {
                "the first request with this Idempotency-Key is still running; retry it shortly"
                    .to_owned()
            }
            ApiError::Conflict(m) => m.clone(),
            ApiError::MalformedJson(m)
            | ApiError::InvalidRequest(m)
            | ApiError::InvalidAmount(m)
            | ApiError::InvalidTimestamp(m)
            | ApiError::InvalidId(m)
            | ApiError::InvalidMetadata(m) => m.clone(),
            ApiError::PayloadTooLarge { limit_bytes } => format!(
                "the request body is larger than this route's limit of {}",
                size(*limit_bytes)
            ),
            ApiError::UnsupportedMediaType => "send the body as application/json".to_owned(),
            ApiError::RouteNotFound => "no such route".to_owned(),
            ApiError::MethodNotAllowed => "method not allowed on this route".to_owned(),
            ApiError::Rejected(Reject::Inconsistent(_)) | ApiError::Internal(_) => {
                "internal error".to_owned()
            }
            ApiError::Rejected(reject) => reject.to_string(),
            ApiError::StoreUnavailable(_) => {
                "the database is unavailable; nothing was changed, retry later".to_owned()
            }
            ApiError::RateLimited { .. } => "too many requests from this key or address; nothing \
                was done, retry after the seconds in Retry-After"
                .to_owned(),
            ApiError::Overloaded => {
                "this node is working on as many requests as it takes; nothing was done, \
                 retry shortly"
                    .to_owned()
            }
            ApiError::RequestTimeout { limit } => format!(
                "no answer within this route's limit of {} s; a write may still be applied, \
                 so retry it with the same Idempotency-Key",
                limit.as_secs_f64()
            ),
            ApiError::Capability { message, .. } => message.clone(),
        }
    }

    /// The error's response with `body`, in whatever wire format it is
    /// written: JSON with `status`, and on a 401 the bearer challenge.
    pub fn json_response(&self, status: StatusCode, body: Vec<u8>) -> Response {
        let mut response = crate::render::json_response(status, body);
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if let Some(rate) = self.rate_left() {
            rate.write(&mut response);
        }
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"creditd\""),
            );
        }
        response
    }

    /// The seconds a client should wait before it retries, for the
    /// refusals that say so.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded | ApiError::RequestTimeout { .. } => Some(1),
            ApiError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The `RateLimit-*` headers a `rate_limited` refusal carries.
    pub fn rate_left(&self) -> Option<crate::auth::RateLeft> {
        match self {
            ApiError::RateLimited {
                limit,
                retry_after_secs,
            } => Some(crate::auth::RateLeft {
                limit: *limit,
                remaining: 0,
                reset_secs: *retry_after_secs,
            }),
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let required_scope = match self {
            ApiError::Forbidden { scope } => Some(*scope),
            _ => None,
        };
        let (required, available, refundable) = match self {
            ApiError::Rejected(Reject::InsufficientCredits {
                required,
                available,
            }) => (Some(Decimal(*required)), Some(Decimal(*available)), None),
            ApiError::Rejected(Reject::RefundTooLarge { refundable }) => {
                (None, None, Some(Decimal(*refundable)))
            }
            _ => (None, None, None),
        };
        serde_json::to_vec(&ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.message(),
                required,
                available,
                refundable,
                required_scope,
                top_up_url: None,
            },
        })
        .expect("error bodies serialize")
    }

    /// One error of every kind the API answers with, and one of every
    /// ledger rejection: what the description's list of codes is made of.
    pub fn every() -> Vec<ApiError> {
        let text = String::new;
        let mut every = vec![
            ApiError::Unauthorized,
            ApiError::Forbidden { scope: "admin" },
            ApiError::KeyNotFound,
            ApiError::LastAdminKey,
            ApiError::VersionConflict,
            ApiError::IdempotencyInProgress,
            ApiError::Conflict(text()),
            ApiError::MalformedJson(text()),
            ApiError::InvalidRequest(text()),
            ApiError::InvalidAmount(text()),
            ApiError::InvalidTimestamp(text()),
            ApiError::InvalidId(text()),
            ApiError::InvalidMetadata(text()),
            ApiError::PayloadTooLarge {
                limit_bytes: crate::extract::BODY_LEN_MAX,
            },
            ApiError::UnsupportedMediaType,
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::StoreUnavailable(text()),
            ApiError::RateLimited {
                limit: 1,
                retry_after_secs: 1,
            },
            ApiError::Overloaded,
            ApiError::RequestTimeout {
                limit: std::time::Duration::ZERO,
            },
            ApiError::Internal(text()),
        ];
        every.extend(every_reject().into_iter().map(ApiError::Rejected));
        every
    }

    /// Every code the API answers with, and its status, in the order of
    /// [`ApiError::every`], each once.
    pub fn codes() -> Vec<(&'static str, StatusCode)> {
        let mut codes: Vec<(&'static str, StatusCode)> = Vec::new();
        for error in ApiError::every() {
            if !codes.iter().any(|(code, _)| *code == error.code()) {
                codes.push((error.code(), error.status()));
            }
        }
        codes
    }
}

/// One of every ledger rejection.
fn every_reject() -> Vec<Reject> {
    let zero = ledger::Amount::ZERO;
    vec![
        Reject::InvalidAmount(""),
        Reject::InvalidTimestamp(""),
        Reject::InvalidRequest(""),
        Reject::Overflow,
        Reject::InsufficientCredits {
            required: zero,
            available: zero,
        },
        Reject::AccountExists,
        Reject::AccountNotFound,
        Reject::GrantNotFound,
        Reject::HoldNotFound,
        Reject::TransactionNotFound,
        Reject::FeatureNotFound,
        Reject::HoldNotPending {
            status: ledger::HoldStatus::Committed,
        },
        Reject::GrantVoided,
        Reject::NotRefundable,
        Reject::RefundTooLarge { refundable: zero },
        Reject::IdempotencyConflict,
        Reject::ExternalIdConflict,
        Reject::Inconsistent(""),
    ]
}

/// An error's JSON body: `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// The stable, machine-readable code.
    #[schema(value_type = ErrorCode)]
    code: &'a str,
    /// A human-readable explanation; not stable.
    message: String,
    /// Only with `insufficient_credits`: the credits the operation needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    required: Option<Decimal>,
    /// Only with `insufficient_credits`: the available balance before the operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    available: Option<Decimal>,
    /// Only with `refund_too_large`: what is left to refund.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refundable: Option<Decimal>,
    /// Only with `forbidden`: the kind of key the route needs (`admin` or `service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    required_scope: Option<&'a str>,
    /// Only with `insufficient_credits`, when the operator set
    /// `CREDITD_TOP_UP_URL`: where the customer buys more credits.
    // Never set here: the response layer of `crate::top_up` adds it to
    // every such answer, whichever wire format wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<String>)]
    top_up_url: Option<&'a str>,
}

/// The HTTP status of each ledger rejection.
pub fn reject_status(reject: &Reject) -> StatusCode {
    match reject {
        Reject::InvalidAmount(_)
        | Reject::InvalidTimestamp(_)
        | Reject::InvalidRequest(_)
        | Reject::Overflow => StatusCode::BAD_REQUEST,
        Reject::InsufficientCredits { .. } => StatusCode::PAYMENT_REQUIRED,
        Reject::AccountNotFound
        | Reject::GrantNotFound
        | Reject::HoldNotFound
        | Reject::TransactionNotFound
        | Reject::FeatureNotFound => StatusCode::NOT_FOUND,
        Reject::AccountExists
        | Reject::HoldNotPending { .. }
        | Reject::GrantVoided
        | Reject::NotRefundable
        | Reject::RefundTooLarge { .. }
        | Reject::IdempotencyConflict
        | Reject::ExternalIdConflict => StatusCode::CONFLICT,
        Reject::Inconsistent(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Reject> for ApiError {
    fn from(reject: Reject) -> Self {
        ApiError::Rejected(reject)
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Ledger(reject) => ApiError::Rejected(reject),
            Refused::VersionConflict { .. } => ApiError::VersionConflict,
            Refused::LookupTaken { kind, name } => {
                ApiError::Conflict(format!("another {kind} already has this {name}"))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
            StoreError::Closed => ApiError::StoreUnavailable("store closed".to_owned()),
            StoreError::Corrupt(detail) | StoreError::Internal(detail) => {
                ApiError::Internal(detail)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Rejected(Reject::Inconsistent(detail)) => {
                tracing::error!(%detail, "ledger inconsistency")
            }
            ApiError::StoreUnavailable(detail) => tracing::warn!(%detail, "store unavailable"),
            _ => {}
        }
        self.json_response(self.status(), self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_too_large_names_its_routes_limit() {
        for (limit, named) in [
            (64 * 1024, "64 KiB"),
            (16 * 1024 * 1024, "16 MiB"),
            (1000, "1000 bytes"),
        ] {
            let error = ApiError::PayloadTooLarge { limit_bytes: limit };
            assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(
                error.message(),
                format!("the request body is larger than this route's limit of {named}")
            );
        }
    }

    #[test]
    fn an_unavailable_store_is_503_and_a_bug_hides_its_detail() {
        let down = ApiError::from(StoreError::Unavailable("disk full".into()));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.code(), "store_unavailable");
        let bug = ApiError::from(StoreError::Internal("no such column: x".into()));
        assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8(bug.body()).unwrap();
        assert!(!body.contains("column"), "{body}");
    }

    #[test]
    fn every_lists_each_kind_of_error_and_of_rejection() {
        // Each match names every variant without a wildcard, so a new kind
        // of error fails to compile here until it is given the next number
        // and the range below is raised to it; the assertions then fail
        // until `every` lists it.
        let kind = |error: &ApiError| match error {
            ApiError::Unauthorized => 0,
            ApiError::Forbidden { .. } => 1,
            ApiError::KeyNotFound => 2,
            ApiError::LastAdminKey => 3,
            ApiError::VersionConflict => 4,
            ApiError::Conflict(_) => 5,
            ApiError::MalformedJson(_) => 6,
            ApiError::InvalidRequest(_) => 7,
            ApiError::InvalidAmount(_) => 8,
            ApiError::InvalidTimestamp(_) => 9,
            ApiError::InvalidId(_) => 10,
            ApiError::InvalidMetadata(_) => 11,
            ApiError::PayloadTooLarge { .. } => 12,
            ApiError::UnsupportedMediaType => 13,
            ApiError::RouteNotFound => 14,
            ApiError::MethodNotAllowed => 15,
            ApiError::Rejected(_) => 16,
            ApiError::StoreUnavailable(_) => 17,
            ApiError::Internal(_) => 18,
            // A capability lists its own codes (`routes::Capability`).
            ApiError::Capability { .. } => 19,
            ApiError::IdempotencyInProgress => 20,
            ApiError::Overloaded => 21,
            ApiError::RequestTimeout { .. } => 22,
            ApiError::RateLimited { .. } => 23,
        };
        let rejection = |reject: &Reject| match reject {
            Reject::InvalidAmount(_) => 0,
            Reject::InvalidTimestamp(_) => 1,
            Reject::InvalidRequest(_) => 2,
            Reject::Overflow => 3,
            Reject::InsufficientCredits { .. } => 4,
            Reject::AccountExists => 5,
            Reject::AccountNotFound => 6,
            Reject::GrantNotFound => 7,
            Reject::HoldNotFound => 8,
            Reject::TransactionNotFound => 9,
            Reject::FeatureNotFound => 10,
            Reject::HoldNotPending { .. } => 11,
            Reject::GrantVoided => 12,
            Reject::NotRefundable => 13,
            Reject::RefundTooLarge { .. } => 14,
            Reject::IdempotencyConflict => 15,
            Reject::ExternalIdConflict => 16,
            Reject::Inconsistent(_) => 17,
        };
        let every = ApiError::every();
        let kinds: std::collections::BTreeSet<usize> = every.iter().map(kind).collect();
        assert_eq!(kinds, (0..=18).chain(20..=23).collect());
        let rejections: std::collections::BTreeSet<usize> = every
            .iter()
            .filter_map(|e| match e {
                ApiError::Rejected(reject) => Some(rejection(reject)),
                _ => None,
            })
            .collect();
        assert_eq!(rejections, (0..=17).collect());
    }

    #[test]
    fn each_code_has_one_status() {
        for error in ApiError::every() {
            let listed = ApiError::codes()
                .into_iter()
                .find(|(code, _)| *code == error.code())
                .map(|(_, status)| status);
            assert_eq!(listed, Some(error.status()), "{}", error.code());
        }
    }

    #[test]
    fn insufficient_credits_carries_the_amounts() {
        let error = ApiError::Rejected(Reject::InsufficientCredits {
            required: ledger::Amount::credits(5),
            available: ledger::Amount::from_micros(1_500_000),
        });
        assert_eq!(error.status(), StatusCode::PAYMENT_REQUIRED);
        let body: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
        assert_eq!(body["error"]["required"], "5");
        assert_eq!(body["error"]["available"], "1.5");
    }
}
