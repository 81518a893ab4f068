//! Stripe's REST API as Stripe's own libraries call it: form-encoded bodies with bracketed keys,
//! a pinned `Stripe-Version`, an `Idempotency-Key` on every POST, and retries with backoff on
//! 409, 429, 5xx and connection errors (or as `Stripe-Should-Retry` says), under the same key.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use server::Secret;
use store::BoxFuture;

use super::provider::{Form, PaymentError, PaymentProvider, Reply};

/// The API version every request pins, so that Stripe's answers keep the
/// shape this code reads.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// Attempts of one request before it is given up as unavailable.
const ATTEMPTS_MAX: u32 = 4;

/// The wait before the first retry; each next one doubles it.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);

/// A Stripe client.
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: Secret,
}

impl Stripe {
    /// A client of the API at `base` with the secret `key`.
    pub fn new(base: &str, key: Secret) -> Stripe {
        Stripe {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            key,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, PaymentError> {
        let url = format!("{}{path}", self.base);
        let body = form.map(|f| serde_urlencoded::to_string(f).unwrap_or_default());
        let request_id = server::request_id::current();
        let mut last = String::new();
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(attempt - 1)).await;
            }
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.key.expose())
                .header("Stripe-Version", STRIPE_VERSION);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            // The request creditd answers, if any: its logs and Stripe's
            // request log meet on it.
            if let Some(id) = &request_id {
                request = request.header("X-Request-Id", id.as_ref());
            }
            if let Some(body) = &body {
                request = request
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    last = if error.is_timeout() {
                        "timed out"
                    } else {
                        "connection failed"
                    }
                    .to_owned();
                    continue;
                }
            };
            let status = response.status().as_u16();
            // Stripe says when a request is worth sending again (a 409 for a
            // concurrent request under the same idempotency key, say).
            let should_retry = response
                .headers()
                .get("stripe-should-retry")
                .and_then(|v| v.to_str().ok())
                .map(|v| v == "true");
            let request_id = response
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let value: Value = match response.json().await {
                Ok(value) => value,
                // A success creditd cannot read may have done something at
                // Stripe: sending it again would only repeat the answer.
                Err(_) if (200..300).contains(&status) => {
                    return Err(Reply {
                        body: Value::Null,
                        request_id,
                    }
                    .unreadable("a body that is not JSON"));
                }
                Err(_) => {
                    last = format!("{status} with a body that is not JSON");
                    continue;
                }
            };
            if (200..300).contains(&status) {
                if !value.is_object() {
                    return Err(Reply {
                        body: value,
                        request_id,
                    }
                    .unreadable("a body that is not a JSON object"));
                }
                return Ok(Reply {
                    body: value,
                    request_id,
                });
            }
            if should_retry == Some(true)
                || (should_retry.is_none() && (status == 429 || status >= 500 || status == 409))
            {
                last = format!("{status}");
                continue;
            }
            let error = super::objects::ErrorBody::deserialize(&value)
                .unwrap_or_default()
                .error;
            return Err(PaymentError::Refused {
                status,
                kind: error.kind.unwrap_or_else(|| "unknown".to_owned()),
                code: error.code,
                message: error.message.unwrap_or_default(),
            });
        }
        Err(PaymentError::Unavailable(last))
    }
}

impl PaymentProvider for Stripe {
    fn post<'a>(
        &'a self,
        path: &'a str,
        form: Form,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Reply, PaymentError>> {
        Box::pin(async move {
            self.call(
                reqwest::Method::POST,
                path,
                Some(&form),
                Some(idempotency_key),
            )
            .await
        })
    }

    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Reply, PaymentError>> {
        Box::pin(async move { self.call(reqwest::Method::GET, path, None, None).await })
    }
}
