//! Browsers on the operator's own origins (`CREDITD_CORS_ORIGINS`) calling the routes customer
//! keys may call: preflights answered, responses readable, credentials never; admin and service
//! routes, and admin and service keys, never opened to them.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The origins allowed, as browsers send them (`https://app.example.com`);
/// empty: CORS is off, and no preflight is answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsOrigins(Vec<String>);

/// The request headers a browser may send: what creditd reads, and what
/// the official SDKs send beside it.
pub const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key, x-api-key, \
    anthropic-version, anthropic-beta, x-stainless-arch, x-stainless-lang, x-stainless-os, \
    x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, \
    x-stainless-retry-count, x-stainless-timeout";

/// The response headers a browser's script may read beside the usual ones.
pub const EXPOSED_HEADERS: &str = "idempotent-replayed, x-request-id, retry-after";

/// How long a browser may keep a preflight's answer, in seconds.
pub const MAX_AGE_SECS: u32 = 600;

impl CorsOrigins {
    /// The origins listed, each `scheme://host[:port]` without a trailing
    /// slash (the binary checks them when it reads its settings).
    pub fn new(origins: Vec<String>) -> CorsOrigins {
        CorsOrigins(
            origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
        )
    }

    /// Whether CORS is on.
    pub fn is_on(&self) -> bool {
        !self.0.is_empty()
    }

    /// The request's `Origin`, when it is one of the allowed.
    pub fn allowed<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.0.iter().any(|o| o == text).then_some(origin)
    }
}

/// Adds to a response the headers that let the allowed `origin` read it.
pub fn allow(response: &mut Response, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

/// Answers a preflight for a path whose routes customer keys may call with
/// `methods`: 204 with the methods and headers allowed when the origin and
/// the method asked for are allowed; 204 without them otherwise, which the
/// browser takes as a refusal. Credentials are never allowed: keys travel
/// in headers, not cookies.
pub async fn preflight(
    State((origins, methods)): State<(CorsOrigins, std::sync::Arc<[Method]>)>,
    request: Request,
) -> Response {
    let headers = request.headers();
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin) = origins.allowed(headers) else {
        return response;
    };
    let asked = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .and_then(|m| m.parse::<Method>().ok());
    if !asked.is_some_and(|m| methods.contains(&m)) {
        return response;
    }
    let listed: Vec<&str> = methods.iter().map(Method::as_str).collect();
    let out = response.headers_mut();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if let Ok(value) = HeaderValue::from_str(&listed.join(", ")) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
    }
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(MAX_AGE_SECS),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_origin_is_allowed() {
        let origins = CorsOrigins::new(vec!["https://app.example.com/".into()]);
        let mut headers = HeaderMap::new();
        assert!(origins.allowed(&headers).is_none());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.com"),
        );
        assert!(origins.allowed(&headers).is_some());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example.net"),
        );
        assert!(origins.allowed(&headers).is_none());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(origins.allowed(&headers).is_none());
        assert!(!CorsOrigins::default().is_on());
    }
}
