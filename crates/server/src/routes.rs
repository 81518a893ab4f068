//! The route table: every route with the access it needs and its
//! description, in one place. The router and the OpenAPI description are
//! built from it, the authorization tests walk it, and a capability
//! (billing, the gateway) adds its own routes to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodFilter, MethodRouter, on, options};
use axum::{Extension, Router};

use crate::AppState;
use crate::auth::{self, Access};
use crate::error::ApiError;
use crate::extract;
use crate::handlers::{
    accounts, audit, features, grants, health, holds, keys, system, transactions, usage,
};
pub use crate::idempotency::Idempotency;
use crate::jobs::Job;
pub use crate::limits::TimeLimit;
use crate::openapi::{self, Doc};
use crate::policy::Policy;

/// One route: a method on a path template, who may call it, the handler,
/// its state already given, and its description. [`Routes::route`] makes
/// one from its description, which names its method and path.
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
    /// The time its answer may take to begin: the API's own by default.
    pub time_limit: TimeLimit,
    /// Answered even when every place for a request is taken: the probes
    /// an orchestrator or a scraper relies on most when the node is busy.
    pub always_answered: bool,
    /// The rate each client address is held to on it, under a name of its
    /// own, over any key's rate: for what takes no key or is worth a
    /// stolen key's hammering (webhooks, links that open sessions).
    pub by_address: Option<(&'static str, crate::limits::Rate)>,
    /// Whether its successful writes by admin and service keys are kept in
    /// the audit trail: every write's are, unless it says why not.
    pub audit: crate::audit::Audit,
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

    /// The same route, writing its errors as `dialect` does.
    pub fn with_dialect(mut self, dialect: Dialect) -> Route {
        self.dialect = Some(dialect);
        self
    }

    /// The same route, holding each client address to `rate`, counted
    /// under `name`.
    pub fn limited_by_address(mut self, name: &'static str, rate: crate::limits::Rate) -> Route {
        self.by_address = Some((name, rate));
        self
    }

    /// The same route, its writes left out of the audit trail for `reason`.
    pub fn not_audited(mut self, reason: &'static str) -> Route {
        self.audit = crate::audit::Audit::NotKept(reason);
        self
    }

    /// The same route, answered even when every place for a request is
    /// taken (health and metrics).
    pub fn always_answered(mut self) -> Route {
        self.always_answered = true;
        self
    }

    /// The same route, held to the time limit of routes that wait on a
    /// model's answer rather than the API's own.
    pub fn waiting_on_upstream(mut self) -> Route {
        self.time_limit = TimeLimit::Upstream;
        self
    }
}

/// Makes the routes answered with one state, each from who may call it,
/// its description and its handler. A route's method and path are the ones
/// its handler's `#[utoipa::path]` names, written there and nowhere else.
pub struct Routes<S> {
    state: S,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// Routes answered with `state`.
    pub fn with(state: S) -> Routes<S> {
        Routes { state }
    }

    /// The route `doc` describes, answered by `handler`, for the keys
    /// `access` admits. It writes its errors as the core API does, and
    /// honours an `Idempotency-Key` as [`Idempotency::of`] its method says,
    /// unless [`Route::with_dialect`] and [`Route::with_idempotency`] say
    /// otherwise.
    ///
    /// # Panics
    ///
    /// When `doc` does not describe one method (see [`Doc::method_and_path`]).
    pub fn route<H, T>(&self, access: Access, doc: Doc, handler: H) -> Route
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let (method, path) = doc.method_and_path();
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} {path} cannot be routed"));
        Route {
            idempotency: Idempotency::of(&method),
            time_limit: TimeLimit::Request,
            always_answered: false,
            by_address: None,
            audit: crate::audit::Audit::Kept,
            method,
            path,
            access,
            handler: on(filter, handler).with_state(self.state.clone()),
            doc,
            dialect: None,
        }
    }
}

/// What a capability (billing, the gateway, the test clock) adds to the
/// server: its routes, the error codes they answer with beside the core's,
/// the background jobs the server runs for it, and at most one capability's
/// policy for the core's writes. [`crate::App`] puts them all in place.
pub struct Capability {
    /// Its routes, each with its access and description.
    pub routes: Vec<Route>,
    /// Its own error codes, each with its status.
    pub errors: Vec<(&'static str, axum::http::StatusCode)>,
    /// Its background jobs, each with its interval.
    pub jobs: Vec<Job>,
    /// What it decides inside the core's writes, if anything.
    pub policy: Option<Arc<dyn Policy>>,
    /// Its pages: routes outside the API (HTML, scripts), with no entry in
    /// the route table or the description; each does its own access check.
    pub pages: Option<Router>,
    /// Where it calls the API in process, filled by [`crate::App::new`]
    /// once the router of every capability is built.
    pub in_process: Option<crate::in_process::InProcess>,
    /// Where it counts into the server's metrics, filled by
    /// [`crate::App::new`].
    pub metrics: Option<crate::metrics::MetricsHandle>,
}

impl Capability {
    /// A capability of `routes` answering with `errors` besides the core's,
    /// with no job and no policy.
    pub fn new(routes: Vec<Route>, errors: Vec<(&'static str, axum::http::StatusCode)>) -> Self {
        Capability {
            routes,
            errors,
            jobs: Vec::new(),
            policy: None,
            pages: None,
            in_process: None,
            metrics: None,
        }
    }

    /// The same capability, serving `pages` beside the API: routes that the
    /// route table does not list and the description does not show, which
    /// check their callers themselves.
    pub fn with_pages(mut self, pages: Router) -> Self {
        self.pages = Some(pages);
        self
    }

    /// The same capability, calling the whole API in process through
    /// `handle` once [`crate::App::new`] has built it.
    pub fn with_in_process(mut self, handle: crate::in_process::InProcess) -> Self {
        self.in_process = Some(handle);
        self
    }

    /// The same capability, counting into the server's metrics through
    /// `handle` once [`crate::App::new`] has filled it.
    pub fn with_metrics(mut self, handle: crate::metrics::MetricsHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// The same capability, with `job` run in the background too.
    pub fn with_job(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    /// The same capability, deciding inside the core's writes as `policy`
    /// does.
    pub fn with_policy(mut self, policy: Arc<dyn Policy>) -> Self {
        self.policy = Some(policy);
        self
    }
}

/// Why usage is not in the audit trail: it comes at the rate of the
/// product's traffic, and the journal keeps each use with its key.
pub const USAGE: &str = "usage, kept in the journal";

/// The routes of the core API: the ledger, keys, and the system routes.
/// The ledger's writes keep their answers in their own transactions, a
/// check changes nothing, a new key is shown once, and every other write
/// keeps its first answer.
pub fn core_routes(state: &Arc<AppState>) -> Vec<Route> {
    use Access::{Account, Admin, Own, Public, Service};
    use Idempotency::{Ledger, NotRead, Refused};
    let routes = Routes::with(state.clone());
    vec![
        routes
            .route(
                Service,
                Doc::of::<accounts::__path_create>(),
                accounts::create,
            )
            .with_idempotency(Ledger),
        routes.route(Service, Doc::of::<accounts::__path_list>(), accounts::list),
        routes.route(Account, Doc::of::<accounts::__path_get>(), accounts::get),
        routes.route(
            Service,
            Doc::of::<accounts::__path_update>(),
            accounts::update,
        ),
        routes.route(
            Account,
            Doc::of::<accounts::__path_balance>(),
            accounts::balance,
        ),
        routes
            .route(Service, Doc::of::<grants::__path_create>(), grants::create)
            .with_idempotency(Ledger),
        routes.route(Account, Doc::of::<grants::__path_list>(), grants::list),
        routes
            .route(Service, Doc::of::<usage::__path_consume>(), usage::consume)
            .with_idempotency(Ledger)
            .not_audited(USAGE),
        routes
            .route(Service, Doc::of::<usage::__path_check>(), usage::check)
            .with_idempotency(NotRead)
            .not_audited("a check changes nothing"),
        routes
            .route(Service, Doc::of::<holds::__path_create>(), holds::create)
            .with_idempotency(Ledger)
            .not_audited(USAGE),
        routes.route(Account, Doc::of::<holds::__path_list>(), holds::list),
        routes.route(
            Account,
            Doc::of::<transactions::__path_list>(),
            transactions::list,
        ),
        routes
            .route(
                Service,
                Doc::of::<keys::__path_create_for_account>(),
                keys::create_for_account,
            )
            .with_idempotency(Refused),
        routes.route(
            Service,
            Doc::of::<keys::__path_list_for_account>(),
            keys::list_for_account,
        ),
        routes.route(Own, Doc::of::<grants::__path_get>(), grants::get),
        routes
            .route(Service, Doc::of::<grants::__path_void>(), grants::void)
            .with_idempotency(Ledger),
        routes.route(Service, Doc::of::<holds::__path_get>(), holds::get),
        routes
            .route(Service, Doc::of::<holds::__path_commit>(), holds::commit)
            .with_idempotency(Ledger)
            .not_audited(USAGE),
        routes
            .route(Service, Doc::of::<holds::__path_release>(), holds::release)
            .with_idempotency(Ledger)
            .not_audited(USAGE),
        routes.route(
            Own,
            Doc::of::<transactions::__path_get>(),
            transactions::get,
        ),
        routes
            .route(
                Service,
                Doc::of::<transactions::__path_refund>(),
                transactions::refund,
            )
            .with_idempotency(Ledger),
        routes.route(Admin, Doc::of::<features::__path_list>(), features::list),
        routes.route(Admin, Doc::of::<features::__path_get>(), features::get),
        routes
            .route(Admin, Doc::of::<features::__path_put>(), features::put)
            .with_idempotency(Ledger),
        routes
            .route(Admin, Doc::of::<keys::__path_create>(), keys::create)
            .with_idempotency(Refused),
        routes.route(Admin, Doc::of::<keys::__path_list>(), keys::list),
        routes.route(Service, Doc::of::<keys::__path_revoke>(), keys::revoke),
        routes.route(Service, Doc::of::<keys::__path_update>(), keys::update),
        routes.route(Admin, Doc::of::<health::__path_ledger>(), health::ledger),
        routes.route(Admin, Doc::of::<audit::__path_list>(), audit::list),
        routes
            .route(Public, Doc::of::<system::__path_healthz>(), system::healthz)
            .always_answered(),
        routes
            .route(Public, Doc::of::<system::__path_readyz>(), system::readyz)
            .always_answered(),
        routes
            .route(Public, Doc::of::<system::__path_metrics>(), system::metrics)
            .always_answered(),
        routes.route(Public, Doc::of::<system::__path_openapi>(), system::openapi),
    ]
}

/// The whole API: the core routes and each capability's, every one behind
/// the access check its table entry names, under the shared metrics, error
/// and body-size layers, with the description of them all served at
/// `GET /openapi.json`. The capabilities' jobs and policy are left out:
/// [`crate::App`] serves this router with them in place.
///
/// # Panics
///
/// When a route's description does not match it (see [`openapi::document`]).
pub fn router(state: Arc<AppState>, capabilities: Vec<Capability>) -> Router {
    let mut routes: Vec<Route> = core_routes(&state);
    let mut errors = Vec::new();
    let mut pages = Vec::new();
    for capability in capabilities {
        routes.extend(capability.routes);
        errors.extend(capability.errors);
        pages.extend(capability.pages);
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
            auth::Guard {
                state: state.clone(),
                access: route.access,
                writes,
                dialect: route.dialect,
                idempotency: route.idempotency,
                time_limit: route.time_limit,
                always_answered: route.always_answered,
                by_address: route.by_address,
                audited: writes && route.audit == crate::audit::Audit::Kept,
            },
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
    for page in pages {
        app = app.merge(page);
    }
    if state.top_up_url.is_some() {
        app = app.layer(from_fn_with_state(
            state.clone(),
            crate::top_up::add_top_up_url,
        ));
    }
    app.fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(description))
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(from_fn(extract::refuse_repeated_headers))
        .layer(DefaultBodyLimit::max(extract::BODY_LEN_MAX))
        .layer(from_fn(crate::request_id::assign))
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
