//! The top-up link: where a customer out of credits buys more, added to every `insufficient_credits` answer.

use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// An absolute `http` or `https` URL with a host and no user name or
/// password, where customers buy credits (`CREDITD_TOP_UP_URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopUpUrl(String);

/// The most characters a top-up URL may have.
pub const TOP_UP_URL_LEN_MAX: usize = 2048;

impl TopUpUrl {
    /// Checks `text` as a top-up URL; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<TopUpUrl, String> {
        if text.len() > TOP_UP_URL_LEN_MAX {
            return Err(format!("longer than {TOP_UP_URL_LEN_MAX} characters"));
        }
        let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "its scheme is {:?}, not http or https",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("it names no host".into());
        }
        // Every customer short of credits is shown the link, so it must not
        // carry credentials.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("it carries a user name or password".into());
        }
        Ok(TopUpUrl(text.to_owned()))
    }

    /// The URL as it was configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The largest body this layer reads to add the link: error bodies are far
/// smaller, and a larger 402 is passed on as it is.
const ERROR_BODY_LEN_MAX: usize = 64 * 1024;

/// A response layer that adds `top_up_url` to the `error` object of every
/// `402` whose `error.code` is `insufficient_credits`, whatever wire format
/// wrote it (the core API's, or the gateway's OpenAI- and
/// Anthropic-compatible ones), and a replayed idempotent answer as well.
/// [`crate::router`] puts it in place when [`AppState::top_up_url`] is set.
pub async fn add_top_up_url(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let Some(url) = &state.top_up_url else {
        return response;
    };
    // A body of unknown or large size is no error body: it is passed on
    // unread, so that nothing is lost to a read cut short.
    let small =
        (response.body().size_hint().upper()).is_some_and(|len| len <= ERROR_BODY_LEN_MAX as u64);
    if response.status() != StatusCode::PAYMENT_REQUIRED || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, ERROR_BODY_LEN_MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "reading a 402 answer's body failed");
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, Body::empty());
        }
    };
    match with_top_up_url(&bytes, url) {
        Some(changed) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(changed))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// `body` with `"top_up_url": url` added to its `error` object, when it is
/// a JSON object whose `error.code` is `insufficient_credits`; `None` for
/// any other body.
pub fn with_top_up_url(body: &[u8], url: &TopUpUrl) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get_mut("error")?.as_object_mut()?;
    if error.get("code")?.as_str()? != "insufficient_credits" {
        return None;
    }
    error.insert("top_up_url".into(), url.as_str().into());
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_absolute_http_url_without_credentials_is_a_top_up_url() {
        for good in [
            "https://shop.example.com/credits?from=api",
            "http://localhost:3000/buy",
        ] {
            assert_eq!(TopUpUrl::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "shop.example.com/credits",
            "ftp://shop.example.com",
            "https://user:secret@shop.example.com",
            "https://",
            "javascript:alert(1)",
            "",
        ] {
            assert!(TopUpUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(TopUpUrl::parse(&format!("https://a.example/{}", "x".repeat(2048))).is_err());
    }

    #[test]
    fn the_link_joins_an_insufficient_credits_error_in_any_format() {
        let url = TopUpUrl::parse("https://shop.example.com/buy").unwrap();
        let anthropic =
            br#"{"type":"error","error":{"type":"billing_error","code":"insufficient_credits"}}"#;
        let added: serde_json::Value =
            serde_json::from_slice(&with_top_up_url(anthropic, &url).unwrap()).unwrap();
        assert_eq!(added["error"]["top_up_url"], "https://shop.example.com/buy");
        assert_eq!(added["error"]["type"], "billing_error");
        assert_eq!(added["type"], "error");
    }

    #[test]
    fn other_bodies_are_left_alone() {
        let url = TopUpUrl::parse("https://shop.example.com/buy").unwrap();
        for body in [
            &br#"{"error":{"code":"payment_required"}}"#[..],
            br#"{"error":"insufficient_credits"}"#,
            br#"[1, 2]"#,
            b"not json",
        ] {
            assert_eq!(with_top_up_url(body, &url), None);
        }
    }
}
