//! What creditd asks of a payment provider, whatever the provider.

use serde::de::DeserializeOwned;
use serde_json::Value;
use store::BoxFuture;

/// Why a call to the payment provider failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentError {
    /// The provider could not be reached, or kept failing (409, 429, 5xx) after
    /// the retries; nothing may be assumed done.
    Unavailable(String),
    /// The provider refused the request (a 4xx), with its error type, code
    /// and message.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The provider's error type (`card_error`, `invalid_request_error`).
        kind: String,
        /// Its code (`card_declined`, `authentication_required`), if any.
        code: Option<String>,
        /// Its message.
        message: String,
    },
    /// The provider answered success with a body creditd cannot read (not
    /// JSON, or without a field it must hold); what it did is unknown.
    Unreadable(String),
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaymentError::Unavailable(detail) => {
                write!(f, "the payment provider is unavailable: {detail}")
            }
            PaymentError::Unreadable(detail) => {
                write!(
                    f,
                    "the payment provider's answer could not be read: {detail}"
                )
            }
            PaymentError::Refused {
                status,
                kind,
                code,
                message,
                ..
            } => write!(
                f,
                "the payment provider refused ({status} {kind}{}): {message}",
                code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
            ),
        }
    }
}

/// A provider's successful answer: its JSON body, and the provider's id of
/// the request (Stripe's `Request-Id`), which support asks for when an
/// answer cannot be read. Reads as the body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// The body.
    pub body: Value,
    /// The provider's id of the request, when it sent one.
    pub request_id: Option<String>,
}

impl Reply {
    /// A reply of `body` with no request id.
    pub fn of(body: Value) -> Reply {
        Reply {
            body,
            request_id: None,
        }
    }

    /// The error for a reply missing what it must hold (`what`), logged
    /// with the provider's request id.
    pub fn unreadable(&self, what: &str) -> PaymentError {
        tracing::warn!(
            request_id = self.request_id.as_deref().unwrap_or("none"),
            what,
            "the payment provider answered success with a body creditd cannot read"
        );
        PaymentError::Unreadable(what.to_owned())
    }

    /// Reads the body as one of the provider's objects (`what` names it in
    /// the error when it does not read).
    pub fn read<T: DeserializeOwned>(&self, what: &str) -> Result<T, PaymentError> {
        T::deserialize(&self.body).map_err(|error| self.unreadable(&format!("{what}: {error}")))
    }
}

impl std::ops::Deref for Reply {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.body
    }
}

/// A form of key and value pairs, bracketed keys written as Stripe reads
/// them (`metadata[creditd_account]`, `line_items[0][quantity]`).
pub type Form = Vec<(String, String)>;

/// A payment provider's API, as creditd uses it. Every POST carries an
/// idempotency key derived from what it is for, so a retry — after a
/// timeout, or after a crash — creates nothing twice.
pub trait PaymentProvider: Send + Sync + 'static {
    /// POSTs `form` to `path` (`/v1/customers`) under `idempotency_key`.
    fn post<'a>(
        &'a self,
        path: &'a str,
        form: Form,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Reply, PaymentError>>;

    /// GETs `path` (`/v1/checkout/sessions/cs_…`).
    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Reply, PaymentError>>;
}
