//! The API as the dashboard calls it: in process, as the session's
//! principal, its answers read at the edge into the types a page needs.

use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use server::in_process::InProcess;
use server::{KeyKind, Principal};

/// The largest answer the dashboard reads from the API.
const ANSWER_LEN_MAX: usize = 8 << 20;

/// The API, called in process.
pub struct Api {
    handle: InProcess,
}

/// An answer of the API that was not what the page asked for: its status
/// and its error's code and message, which the page shows.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error's stable code.
    pub code: String,
    /// The error's message.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl Api {
    /// The API behind `handle`, once the server has attached it.
    pub fn new(handle: InProcess) -> Api {
        Api { handle }
    }

    /// The handle the server attaches the API to.
    pub fn handle(&self) -> InProcess {
        self.handle.clone()
    }

    /// The server's shared state, once attached.
    pub fn state(&self) -> Option<&std::sync::Arc<server::AppState>> {
        self.handle.state()
    }

    /// `GET path` as `who`, read as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        who: &Principal,
        path: &str,
    ) -> Result<T, Refusal> {
        self.send(who, Method::GET, path, None::<&()>, None).await
    }

    /// `method path` as `who` with the JSON `body`, and `key` as its
    /// `Idempotency-Key` when given, read as `T`.
    pub async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        who: &Principal,
        method: Method,
        path: &str,
        body: Option<&B>,
        key: Option<&str>,
    ) -> Result<T, Refusal> {
        let body = match body.map(serde_json::to_vec).transpose() {
            Ok(body) => body,
            Err(error) => return Err(internal(format!("a request body: {error}"))),
        };
        let bytes = self.exchange(who, method, path, body, key).await?;
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| internal(format!("{path} answered {e}")))
    }

    /// `GET path` as `who`, its answer as text: the metrics, which are not
    /// JSON.
    pub async fn get_text(&self, who: &Principal, path: &str) -> Result<String, Refusal> {
        let bytes = self.exchange(who, Method::GET, path, None, None).await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| internal(format!("{path} answered non-UTF-8")))
    }

    /// Sends one request and reads its successful answer's bytes.
    async fn exchange(
        &self,
        who: &Principal,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<axum::body::Bytes, Refusal> {
        let mut request = InProcess::request(method, path, body);
        if let Some(key) = key
            && let Ok(value) = axum::http::HeaderValue::from_str(key)
        {
            request.headers_mut().insert("idempotency-key", value);
        }
        let response = self.handle.call(who.clone(), request).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), ANSWER_LEN_MAX)
            .await
            .map_err(|e| internal(format!("reading an answer: {e}")))?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Refusal {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => internal(format!("{path} answered {status}")),
        })
    }
}

/// A refusal of the dashboard's own making: an answer it could not read.
/// Its message names the cause, for the log; pages show only the code.
fn internal(message: String) -> Refusal {
    tracing::warn!(%message, "the dashboard could not read the API");
    Refusal {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal_error".into(),
        message,
    }
}

/// The id the dashboard's calls for a customer's session are made under:
/// idempotency keys are kept per key id.
pub const CUSTOMER_KEY_ID: &str = "dashboard_customer";

/// The id of the dashboard's calls that the API leaves to operators.
pub const OPERATOR_KEY_ID: &str = "dashboard_operator";

/// The principal of a customer's session of `account`: that account's
/// customer key, so that the API holds every call to that account.
pub fn customer(account: &ledger::AccountId, read_only: bool) -> Principal {
    Principal {
        key_id: CUSTOMER_KEY_ID.into(),
        kind: KeyKind::Customer,
        account: Some(account.clone()),
        project: None,
        spend_limit: None,
        read_only,
        rate_limit: None,
        token_rate_limit: None,
    }
}

/// The principal of the few things the Credits page lets a customer do
/// that the API leaves to operators (managing the account's gateway keys,
/// changing or cancelling its plan): a service principal, used only on
/// paths built from the session's own account, and on a key found among
/// that account's keys.
pub fn operator() -> Principal {
    Principal {
        key_id: OPERATOR_KEY_ID.into(),
        kind: KeyKind::Service,
        account: None,
        project: None,
        spend_limit: None,
        read_only: false,
        rate_limit: None,
        token_rate_limit: None,
    }
}
