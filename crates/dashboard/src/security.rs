//! What keeps the pages safe: their headers (a Content-Security-Policy, no
//! framing, no sniffing, no caching), session cookies that scripts cannot
//! read and other sites do not send, the check every form's POST passes,
//! and the limit on failed admin sign-ins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use crate::domain::token;

/// The cookie of a customer's session, sent only to the Credits page.
pub const CUSTOMER_COOKIE: &str = "creditd_session";
/// The cookie of an operator's session, sent only to the admin panel.
pub const ADMIN_COOKIE: &str = "creditd_admin";

/// Puts the pages' headers on `response`: scripts, styles and images from
/// this origin only (the pages have no inline script or style), forms sent
/// here or to the payment provider's hosted pages, never framed.
pub fn page_headers(response: &mut Response, form_origins: &[String]) {
    let mut form_action = String::from("'self'");
    for origin in form_origins {
        form_action.push(' ');
        form_action.push_str(origin);
    }
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A `Set-Cookie` value for a session: `HttpOnly` (no script reads it),
/// `SameSite=Lax` (another site's POST does not carry it), `Secure` when
/// the public URL is https, scoped to `path`, for `max_age_secs`.
pub fn session_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
    secure: bool,
) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}")
}

/// A `Set-Cookie` value that removes the cookie `name` of `path`.
pub fn cleared_cookie(name: &str, path: &str, secure: bool) -> String {
    session_cookie(name, "", path, 0, secure)
}

/// The value of the cookie `name` the request carries.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether a form's POST may change anything: it carries the session's
/// CSRF token, and the browser says it comes from this origin (`Origin`,
/// or `Sec-Fetch-Site` when a browser sends no origin). A POST from another
/// site, or without the form's token, changes nothing.
pub fn form_is_genuine(
    headers: &HeaderMap,
    sent: Option<&str>,
    expected: &str,
    own_origin: &str,
) -> bool {
    let token_ok = sent.is_some_and(|sent| token::same(sent, expected));
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => origin.trim_end_matches('/') == own_origin,
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|site| site == "same-origin" || site == "none"),
    };
    token_ok && origin_ok
}

/// The origin (`scheme://host[:port]`) of a URL.
pub fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Failed admin sign-ins a node lets through per client address and window.
pub const SIGN_IN_FAILURES_MAX: u32 = 10;
/// The window failed sign-ins are counted over.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);

/// Failed admin sign-ins on this node, per client address in the current
/// window: past [`SIGN_IN_FAILURES_MAX`] from one address, its sign-ins are
/// refused until its window ends, so that guessing a key by the form is
/// slower than by the API; past [`SIGN_IN_FAILURES_NODE_MAX`] from all
/// addresses together, everyone's are, so that many addresses guess no
/// faster. An operator signing in from elsewhere is not locked out by one
/// address guessing.
#[derive(Default)]
pub struct SignInLimit {
    // A std Mutex: nothing awaits while it is held. `None` is the node's
    // count of every address.
    windows: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
}

/// The failed sign-ins of all addresses together a window takes on a node.
pub const SIGN_IN_FAILURES_NODE_MAX: u32 = 100;

/// The addresses whose failures are remembered at most.
const SIGN_IN_ADDRESSES_KEPT: usize = 10_000;

impl SignInLimit {
    /// Whether a sign-in from `address` (none for this process's own) may
    /// be tried now.
    pub fn allows(&self, address: Option<IpAddr>) -> bool {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let failures = |key: Option<IpAddr>| match windows.get(&key) {
            Some((start, failures)) if start.elapsed() < SIGN_IN_WINDOW => *failures,
            _ => 0,
        };
        failures(None) < SIGN_IN_FAILURES_NODE_MAX
            && (address.is_none() || failures(address) < SIGN_IN_FAILURES_MAX)
    }

    /// Counts a failed sign-in from `address`.
    pub fn failed(&self, address: Option<IpAddr>) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SIGN_IN_ADDRESSES_KEPT {
            windows.retain(|_, (start, _)| start.elapsed() < SIGN_IN_WINDOW);
        }
        let keys = if address.is_some() {
            vec![None, address]
        } else {
            vec![None]
        };
        for key in keys {
            let window = windows.entry(key).or_insert((Instant::now(), 0));
            if window.0.elapsed() >= SIGN_IN_WINDOW {
                *window = (Instant::now(), 0);
            }
            window.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_form_from_this_origin_with_its_token_is_genuine() {
        let h = headers(&[("origin", "https://credits.example.com")]);
        assert!(form_is_genuine(
            &h,
            Some("csrf_a"),
            "csrf_a",
            "https://credits.example.com"
        ));
    }

    #[test]
    fn a_form_from_another_origin_is_not_even_with_the_token() {
        let h = headers(&[("origin", "https://evil.example")]);
        assert!(!form_is_genuine(
            &h,
            Some("csrf_a"),
            "csrf_a",
            "https://credits.example.com"
        ));
        let h = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(!form_is_genuine(
            &h,
            Some("csrf_a"),
            "csrf_a",
            "https://credits.example.com"
        ));
    }

    #[test]
    fn a_form_without_its_token_is_not_genuine() {
        let h = headers(&[("origin", "https://credits.example.com")]);
        assert!(!form_is_genuine(
            &h,
            None,
            "csrf_a",
            "https://credits.example.com"
        ));
        assert!(!form_is_genuine(
            &h,
            Some("csrf_b"),
            "csrf_a",
            "https://credits.example.com"
        ));
    }

    #[test]
    fn cookies_are_http_only_same_site_and_secure_under_https() {
        let cookie = session_cookie("creditd_session", "cds_x", "/dashboard", 60, true);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
        assert!(cookie.ends_with("; Secure"));
        assert!(!session_cookie("a", "b", "/", 60, false).contains("Secure"));
    }

    #[test]
    fn a_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; creditd_session=cds_abc; b=2")]);
        assert_eq!(cookie(&h, CUSTOMER_COOKIE), Some("cds_abc"));
        assert_eq!(cookie(&h, ADMIN_COOKIE), None);
    }

    #[test]
    fn the_origin_of_a_url_is_its_scheme_and_host() {
        assert_eq!(
            origin_of("https://checkout.stripe.com/c/pay/cs_1"),
            "https://checkout.stripe.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }

    #[test]
    fn sign_ins_from_an_address_are_refused_after_ten_failures_in_a_minute() {
        let limit = SignInLimit::default();
        let (guesser, operator) = (
            Some("10.0.0.9".parse().unwrap()),
            Some("10.0.0.1".parse().unwrap()),
        );
        for _ in 0..SIGN_IN_FAILURES_MAX {
            assert!(limit.allows(guesser));
            limit.failed(guesser);
        }
        assert!(!limit.allows(guesser));
        assert!(limit.allows(operator), "another address is not locked out");
    }

    #[test]
    fn many_addresses_together_are_refused_past_the_nodes_count() {
        let limit = SignInLimit::default();
        for n in 0..SIGN_IN_FAILURES_NODE_MAX {
            let address = Some(std::net::IpAddr::from([
                10,
                1,
                (n / 250) as u8,
                (n % 250) as u8,
            ]));
            assert!(limit.allows(address));
            limit.failed(address);
        }
        assert!(!limit.allows(Some("192.0.2.1".parse().unwrap())));
    }
}
