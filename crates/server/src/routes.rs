//! The route table: every route with the access it needs and its
//! description, in one place. The router and the OpenAPI description are
//! built from it, the authorization tests walk it, and a capability
//! (billing, the gateway) adds its own routes to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodRouter, delete, get, options, patch, post, put};
use axum::{Extension, Router};

use crate::AppState;
use crate::auth::{self, Access};
use crate::error::ApiError;
use crate::extract;
use crate::handlers::{accounts, features, grants, holds, keys, system, transactions, usage};
pub use crate::idempotency::Idempotency;
use crate::openapi::{self, Doc};

/// One route: a method on a path template, who may call it, the handler,
/// its state already given, and its description.
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template, with parameters in braces (`{account_id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What answers it.
    pub handler: MethodRouter,
    /// What the OpenAPI description says of it: the `#[utoipa::path]` of
    /// its handler, which must name the same method and path.
    pub doc: Doc,
    /// How its errors are written when not as the core API writes them:
    /// the wire format its clients expect. The access check writes its
    /// refusals this way too.
    pub dialect: Option<Dialect>,
    /// How it honours an `Idempotency-Key`: by default a `GET` reads none
    /// and every write keeps its first answer ([`Idempotency::of`]).
    pub idempotency: Idempotency,
}

/// Writes an error in a route's own wire format (the gateway's OpenAI- and
/// Anthropic-compatible endpoints).
pub type Dialect = fn(&ApiError) -> axum::response::Response;

impl Route {
    /// Whether the route changes anything: every method but `GET` and
    /// `HEAD`. A read-only customer key may call only routes that do not.
    pub fn writes(&self) -> bool {
        writes(&self.method)
    }

    /// The same route, honouring an `Idempotency-Key` as `idempotency` says.
    pub fn with_idempotency(mut self, idempotency: Idempotency) -> Route {
        self.idempotency = idempotency;
        self
    }

    /// A route of the core API, answered with the shared state.
    fn core(
        state: &Arc<AppState>,
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<Arc<AppState>>,
        doc: Doc,
    ) -> Route {
        Route {
            idempotency: Idempotency::of(&method),
            method,
            path,
            access,
            handler: handler.with_state(state.clone()),
            doc,
            dialect: None,
        }
    }
}

/// How each core route honours an `Idempotency-Key`: the ledger's writes
/// keep their answers in their own transactions; a check changes nothing;
/// a new key is shown once; every other write keeps its first answer.
fn core_idempotency(method: &Method, path: &str) -> Idempotency {
    const LEDGER: [(Method, &str); 9] = [
        (Method::POST, "/v1/accounts"),
        (Method::POST, "/v1/accounts/{account_id}/grants"),
        (Method::POST, "/v1/accounts/{account_id}/consume"),
        (Method::POST, "/v1/accounts/{account_id}/holds"),
        (Method::POST, "/v1/grants/{grant_id}/void"),
        (Method::POST, "/v1/holds/{hold_id}/commit"),
        (Method::POST, "/v1/holds/{hold_id}/release"),
        (Method::POST, "/v1/transactions/{tx_id}/refund"),
        (Method::PUT, "/v1/features/{feature_id}"),
    ];
    if LEDGER.iter().any(|(m, p)| m == method && *p == path) {
        return Idempotency::Ledger;
    }
    match (method, path) {
        (&Method::POST, "/v1/accounts/{account_id}/check") => Idempotency::NotRead,
        (&Method::POST, "/v1/keys" | "/v1/accounts/{account_id}/keys") => Idempotency::Refused,
        _ => Idempotency::of(method),
    }
}

/// What a capability (billing, the gateway) adds to the API: its routes and
/// the error codes they answer with beside the core's, each with its status.
pub struct Capability {
    /// Its routes, each with its access and description.
    pub routes: Vec<Route>,
    /// Its own error codes.
    pub errors: Vec<(&'static str, axum::http::StatusCode)>,
}

/// The routes of the core API: the ledger, keys, and the system routes.
pub fn core_routes(state: &Arc<AppState>) -> Vec<Route> {
    use Access::{Account, Admin, Own, Public, Service};
    let r =
        |method, path, access, handler, doc| Route::core(state, method, path, access, handler, doc);
    [
        r(
            Method::POST,
            "/v1/accounts",
            Service,
            post(accounts::create),
            Doc::of::<accounts::__path_create>(),
        ),
        r(
            Method::GET,
            "/v1/accounts",
            Service,
            get(accounts::list),
            Doc::of::<accounts::__path_list>(),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}",
            Account,
            get(accounts::get),
            Doc::of::<accounts::__path_get>(),
        ),
        r(
            Method::PATCH,
            "/v1/accounts/{account_id}",
            Service,
            patch(accounts::update),
            Doc::of::<accounts::__path_update>(),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/balance",
            Account,
            get(accounts::balance),
            Doc::of::<accounts::__path_balance>(),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/grants",
            Service,
            post(grants::create),
            Doc::of::<grants::__path_create>(),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/grants",
            Account,
            get(grants::list),
            Doc::of::<grants::__path_list>(),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/consume",
            Service,
            post(usage::consume),
            Doc::of::<usage::__path_consume>(),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/check",
            Service,
            post(usage::check),
            Doc::of::<usage::__path_check>(),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/holds",
            Service,
            post(holds::create),
            Doc::of::<holds::__path_create>(),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/transactions",
            Account,
            get(transactions::list),
            Doc::of::<transactions::__path_list>(),
        ),
        r(
            Method::POST,
            "/v1/accounts/{account_id}/keys",
            Service,
            post(keys::create_for_account),
            Doc::of::<keys::__path_create_for_account>(),
        ),
        r(
            Method::GET,
            "/v1/accounts/{account_id}/keys",
            Service,
            get(keys::list_for_account),
            Doc::of::<keys::__path_list_for_account>(),
        ),
        r(
            Method::GET,
            "/v1/grants/{grant_id}",
            Own,
            get(grants::get),
            Doc::of::<grants::__path_get>(),
        ),
        r(
            Method::POST,
            "/v1/grants/{grant_id}/void",
            Service,
            post(grants::void),
            Doc::of::<grants::__path_void>(),
        ),
        r(
            Method::GET,
            "/v1/holds/{hold_id}",
            Service,
            get(holds::get),
            Doc::of::<holds::__path_get>(),
        ),
        r(
            Method::POST,
            "/v1/holds/{hold_id}/commit",
            Service,
            post(holds::commit),
            Doc::of::<holds::__path_commit>(),
        ),
        r(
            Method::POST,
            "/v1/holds/{hold_id}/release",
            Service,
            post(holds::release),
            Doc::of::<holds::__path_release>(),
        ),
        r(
            Method::GET,
            "/v1/transactions/{tx_id}",
            Own,
            get(transactions::get),
            Doc::of::<transactions::__path_get>(),
        ),
        r(
            Method::POST,
            "/v1/transactions/{tx_id}/refund",
            Service,
            post(transactions::refund),
            Doc::of::<transactions::__path_refund>(),
        ),
        r(
            Method::GET,
            "/v1/features",
            Admin,
            get(features::list),
            Doc::of::<features::__path_list>(),
        ),
        r(
            Method::GET,
            "/v1/features/{feature_id}",
            Admin,
            get(features::get),
            Doc::of::<features::__path_get>(),
        ),
        r(
            Method::PUT,
            "/v1/features/{feature_id}",
            Admin,
            put(features::put),
            Doc::of::<features::__path_put>(),
        ),
        r(
            Method::POST,
            "/v1/keys",
            Admin,
            post(keys::create),
            Doc::of::<keys::__path_create>(),
        ),
        r(
            Method::GET,
            "/v1/keys",
            Admin,
            get(keys::list),
            Doc::of::<keys::__path_list>(),
        ),
        r(
            Method::DELETE,
            "/v1/keys/{key_id}",
            Service,
            delete(keys::revoke),
            Doc::of::<keys::__path_revoke>(),
        ),
        r(
            Method::PATCH,
            "/v1/keys/{key_id}",
            Service,
            patch(keys::update),
            Doc::of::<keys::__path_update>(),
        ),
        r(
            Method::GET,
            "/healthz",
            Public,
            get(system::healthz),
            Doc::of::<system::__path_healthz>(),
        ),
        r(
            Method::GET,
            "/metrics",
            Public,
            get(system::metrics),
            Doc::of::<system::__path_metrics>(),
        ),
        r(
            Method::GET,
            "/openapi.json",
            Public,
            get(system::openapi),
            Doc::of::<system::__path_openapi>(),
        ),
    ]
    .into_iter()
    .map(|route| {
        let idempotency = core_idempotency(&route.method, route.path);
        route.with_idempotency(idempotency)
    })
    .collect()
}

/// The whole API: the core routes and each capability's, every one behind
/// the access check its table entry names, under the shared metrics, error
/// and body-size layers, with the description of them all served at
/// `GET /openapi.json`.
///
/// # Panics
///
/// When a route's description does not match it (see [`openapi::document`]).
pub fn router(state: Arc<AppState>, capabilities: Vec<Capability>) -> Router {
    let mut routes: Vec<Route> = core_routes(&state);
    let mut errors = Vec::new();
    for capability in capabilities {
        routes.extend(capability.routes);
        errors.extend(capability.errors);
    }
    let description = openapi::Served::of(&routes, &errors);
    let mut paths: BTreeMap<&'static str, MethodRouter> = BTreeMap::new();
    // The methods customer keys may call on each path: what a browser's
    // preflight may ask for, when CORS is on.
    let mut browser_methods: BTreeMap<&'static str, Vec<Method>> = BTreeMap::new();
    for route in routes.iter().filter(|r| r.access.admits_customers()) {
        browser_methods
            .entry(route.path)
            .or_default()
            .push(route.method.clone());
    }
    for route in routes {
        let writes = route.writes();
        // The access check runs first, then the key is honoured, per route.
        let guarded = route.handler.route_layer(from_fn_with_state(
            (
                state.clone(),
                route.access,
                writes,
                route.dialect,
                route.idempotency,
            ),
            auth::authorize,
        ));
        let merged = match paths.remove(route.path) {
            Some(existing) => existing.merge(guarded),
            None => guarded,
        };
        paths.insert(route.path, merged);
    }
    let mut app = Router::new();
    for (path, mut handler) in paths {
        if state.cors.is_on()
            && let Some(methods) = browser_methods.remove(path)
        {
            let preflight =
                options(crate::cors::preflight).with_state((state.cors.clone(), methods.into()));
            handler = handler.merge(preflight);
        }
        app = app.route(path, handler);
    }
    app.fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(description))
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(from_fn(extract::refuse_repeated_headers))
        .layer(DefaultBodyLimit::max(extract::BODY_LEN_MAX))
}

/// Whether a route of `method` changes anything: every method but `GET`
/// and `HEAD`.
pub fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// How every route of the core API and the given capabilities honours an
/// `Idempotency-Key`, for the test that walks them.
pub fn idempotency_table(
    state: &Arc<AppState>,
    capabilities: Vec<Capability>,
) -> Vec<(Method, &'static str, Access, Idempotency)> {
    core_routes(state)
        .into_iter()
        .chain(capabilities.into_iter().flat_map(|c| c.routes))
        .map(|r| (r.method, r.path, r.access, r.idempotency))
        .collect()
}

/// The table without the handlers: (method, path, access) of every route
/// of the core API and the given capabilities, for tests and documentation.
pub fn table(
    state: &Arc<AppState>,
    capabilities: Vec<Capability>,
) -> Vec<(Method, &'static str, Access)> {
    core_routes(state)
        .into_iter()
        .chain(capabilities.into_iter().flat_map(|c| c.routes))
        .map(|r| (r.method, r.path, r.access))
        .collect()
}
