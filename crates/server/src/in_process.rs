//! Calling the whole API from inside the process: a capability that is a
//! client of the others (the dashboard) sends them requests through the
//! router, acting as a principal, and gets their answers with every rule
//! (access, validation, idempotency) applied as for any client.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use tower::ServiceExt;

use crate::AppState;
use crate::auth::{Delegated, Principal};

/// A handle on the assembled router and the state it shares, empty until
/// [`crate::App::new`] has built them and attached them.
#[derive(Clone, Default)]
pub struct InProcess(Arc<OnceLock<(Router, Arc<AppState>)>>);

impl InProcess {
    /// A handle with no router yet.
    pub fn new() -> InProcess {
        InProcess::default()
    }

    /// Gives the handle the router and its state; a second is ignored.
    pub fn attach(&self, router: Router, state: Arc<AppState>) {
        let _ = self.0.set((router, state));
    }

    /// The state every handler shares, once attached: for what a caller
    /// needs beyond the routes (the keys in memory).
    pub fn state(&self) -> Option<&Arc<AppState>> {
        self.0.get().map(|(_, state)| state)
    }

    /// Sends `request` through the API as `principal` and answers its
    /// response. Before the router is attached every call is a 503.
    pub async fn call(&self, principal: Principal, mut request: Request) -> Response {
        let Some((router, _)) = self.0.get() else {
            return axum::response::IntoResponse::into_response(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
            );
        };
        request.extensions_mut().insert(Delegated::new(principal));
        match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// A request of `method` to `uri` with a JSON `body` (none when `None`).
    pub fn request(method: axum::http::Method, uri: &str, body: Option<Vec<u8>>) -> Request {
        let builder = Request::builder().method(method).uri(uri);
        match body {
            Some(body) => builder
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(body)),
            None => builder.body(Body::empty()),
        }
        .expect("a request built from a method, a path and a body")
    }
}
