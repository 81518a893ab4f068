//! A request id for every request: the client's `X-Request-Id` when it
//! sends a usable one, else one drawn here. It is answered as
//! `Request-Id`, names the span every log line of the request is written
//! in, and travels on in the request's `X-Request-Id` header, which the
//! gateway sends to its upstream; [`current`] gives it to what the request
//! calls (Stripe's API is sent it the same way).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header a client may name its request by, and the one passed on.
pub const INCOMING: &str = "x-request-id";
/// The header the answer carries it in.
pub const ANSWERED: &str = "request-id";

/// The longest request id taken from a client.
const LEN_MAX: usize = 128;

/// Whether a client's id can be used: 1 to 128 characters of letters,
/// digits and `-_.:`, so that it cannot forge a log line.
fn usable(id: &str) -> bool {
    (1..=LEN_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new request id: `req_` and [`unique`]'s digits.
pub fn new_id() -> String {
    unique("req_")
}

/// `prefix`, 16 hex digits drawn at random once per process (so that
/// nodes do not collide), and 16 of a counter (so that drawing one costs
/// no system call): ids unique across nodes, for requests and for the
/// gateway's calls.
pub fn unique(prefix: &str) -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the ids still differ within this process.
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    format!(
        "{prefix}{process:016x}{:016x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

tokio::task_local! {
    /// The id of the request the running task answers.
    static CURRENT: std::sync::Arc<str>;
}

/// The id of the request the running task answers, if it answers one (a
/// background job answers none): for the calls it makes on its way.
pub fn current() -> Option<std::sync::Arc<str>> {
    CURRENT.try_with(std::sync::Arc::clone).ok()
}

/// The layer that gives each request its id (see the module).
pub async fn assign(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(INCOMING)
        .and_then(|v| v.to_str().ok())
        .filter(|id| usable(id))
        .map(str::to_owned);
    let id = given.unwrap_or_else(new_id);
    let Ok(value) = HeaderValue::from_str(&id) else {
        return next.run(request).await;
    };
    request.headers_mut().insert(INCOMING, value.clone());
    // At the highest level, so that it is on whenever anything is logged:
    // a warning of the request names it even when only warnings are kept.
    let span = tracing::error_span!("request", id = %id);
    let mut response = CURRENT
        .scope(id.into(), next.run(request).instrument(span))
        .await;
    response.headers_mut().insert(ANSWERED, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_id_is_taken_only_when_it_cannot_forge_a_line() {
        assert!(usable("order-7f3a:retry.2_b"));
        assert!(!usable(""));
        assert!(!usable("two words"));
        assert!(!usable("line\nbreak"));
        assert!(!usable(&"x".repeat(129)));
        assert!(usable(&"x".repeat(128)));
    }

    #[test]
    fn new_ids_differ_and_are_usable() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(a.starts_with("req_") && a.len() == 36, "{a}");
        assert!(usable(&a));
    }
}
