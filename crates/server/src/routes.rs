//! The route table: every route with the access it needs, in one place. The
//! router is built from it, the authorization tests walk it, and a
//! capability (billing, the gateway) adds its own routes to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodRouter, delete, get, patch, post, put};

use crate::AppState;
use crate::auth::{self, Access};
use crate::error::ApiError;
use crate::extract;
use crate::handlers::{accounts, features, grants, holds, keys, system, transactions, usage};

/// One route: a method on a path template, who may call it, and the
/// handler, its state already given.
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template, with parameters in braces (`{account_id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What answers it.
    pub handler: MethodRouter,
}

impl Route {
    /// A route of the core API, answered with the shared state.
    fn core(
        state: &Arc<AppState>,
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<Arc<AppState>>,
    ) -> Route {
        Route {
            method,
            path,
            access,
            handler: handler.with_state(state.clone()),
        }
    }
}

/// The routes of the core API: the ledger, keys, and the system routes.
pub fn core_routes(state: &Arc<AppState>) -> Vec<Route> {
    use Access::{Account, Admin, Own, Public, Service};
    let r = |method, path, access, handler| Route::core(state, method, path, access, handler);
    vec![
        r(
            Method::POST,
            "/v1/accounts",
            Service,
            post(accounts::create),
        ),
        r(Method::GET, "/v1/accounts", Service, get(accounts::list)),
        r(
            Method::GET,
            "/v1/accounts/{account_id}",
            Account,
            get(accounts::get),
        ),
        r(
            Method::PATCH,
            "/v1/accounts/{account_id}",
            Service,
            patch(accounts::update),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/balance",
            Account,
            get(accounts::balance),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/grants",
            Service,
            post(grants::create),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/grants",
            Account,
            get(grants::list),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/consume",
            Service,
            post(usage::consume),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/check",
            Service,
            post(usage::check),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/holds",
            Service,
            post(holds::create),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/transactions",
            Account,
            get(transactions::list),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/keys",
            Service,
            post(keys::create_for_account),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/keys",
            Service,
            get(keys::list_for_account),
        ),
        r(Method::GET, "/v1/grants/{grant_id}", Own, get(grants::get)),
        r(
            Method::POST,
            "/v1/grants/{grant_id}/void",
            Service,
            post(grants::void),
        ),
        r(Method::GET, "/v1/holds/{hold_id}", Service, get(holds::get)),
        r(
            Method::POST,
            "/v1/holds/{hold_id}/commit",
            Service,
            post(holds::commit),
        ),
        r(
            Method::POST,
            "/v1/holds/{hold_id}/release",
            Service,
            post(holds::release),
        ),
        r(
            Method::GET,
            "/v1/transactions/{tx_id}",
            Own,
            get(transactions::get),
        ),
        r(
            Method::POST,
            "/v1/transactions/{tx_id}/refund",
            Service,
            post(transactions::refund),
        ),
        r(Method::GET, "/v1/features", Admin, get(features::list)),
        r(
            Method::GET,
            "/v1/features/{feature_id}",
            Admin,
            get(features::get),
        ),
        r(
            Method::PUT,
            "/v1/features/{feature_id}",
            Admin,
            put(features::put),
        ),
        r(Method::POST, "/v1/keys", Admin, post(keys::create)),
        r(Method::GET, "/v1/keys", Admin, get(keys::list)),
        r(
            Method::DELETE,
            "/v1/keys/{key_id}",
            Service,
            delete(keys::revoke),
        ),
        r(Method::GET, "/healthz", Public, get(system::healthz)),
        r(Method::GET, "/metrics", Public, get(system::metrics)),
        r(Method::GET, "/openapi.json", Public, get(system::openapi)),
    ]
}

/// The whole API: the core routes and each capability's, every one behind
/// the access check its table entry names, under the shared metrics, error
/// and body-size layers.
pub fn router(state: Arc<AppState>, capabilities: Vec<Vec<Route>>) -> Router {
    let mut paths: BTreeMap<&'static str, MethodRouter> = BTreeMap::new();
    for route in core_routes(&state)
        .into_iter()
        .chain(capabilities.into_iter().flatten())
    {
        let guarded = route.handler.route_layer(from_fn_with_state(
            (state.clone(), route.access),
            auth::authorize,
        ));
        let merged = match paths.remove(route.path) {
            Some(existing) => existing.merge(guarded),
            None => guarded,
        };
        paths.insert(route.path, merged);
    }
    let mut app = Router::new();
    for (path, handler) in paths {
        app = app.route(path, handler);
    }
    app.fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(from_fn(extract::refuse_repeated_headers))
        .layer(DefaultBodyLimit::max(extract::BODY_LEN_MAX))
}

/// The table without the handlers: (method, path, access) of every route
/// of the core API and the given capabilities, for tests and documentation.
pub fn table(
    state: &Arc<AppState>,
    capabilities: Vec<Vec<Route>>,
) -> Vec<(Method, &'static str, Access)> {
    core_routes(state)
        .into_iter()
        .chain(capabilities.into_iter().flatten())
        .map(|r| (r.method, r.path, r.access))
        .collect()
}
