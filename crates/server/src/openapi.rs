//! The OpenAPI description, generated from the code: each route of the table
//! carries its handler's `#[utoipa::path]` description, and the document is
//! folded over the same routes the router is built from.

pub mod schema;

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use utoipa::openapi::content::Content;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::info::{InfoBuilder, LicenseBuilder};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn, PathItem, Paths};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{Components, OpenApi, OpenApiBuilder, Ref, RefOr, ServerBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::auth::{Access, KeyKind};
use crate::error::ErrorBody;
use crate::routes::Route;

/// The schemas an operation refers to, by name.
type Schemas = Vec<(String, RefOr<Schema>)>;

/// What the description says of one route: the operation that
/// `#[utoipa::path]` generated for its handler, and the schemas it refers to.
#[derive(Clone, Copy)]
pub struct Doc {
    path: fn() -> String,
    methods: fn() -> Vec<HttpMethod>,
    operation: fn() -> Operation,
    tags: fn() -> Vec<&'static str>,
    schemas: fn(&mut Schemas),
    upstream_errors: bool,
}

impl Doc {
    /// The description of a handler, from the type `#[utoipa::path]`
    /// generates beside it (`__path_<handler>`).
    pub fn of<P>() -> Doc
    where
        // `Tags` and `SchemaReferences` are what utoipa's own `OpenApi`
        // derive and its axum bindings read a path's tags and schemas through.
        P: utoipa::Path + utoipa::__dev::Tags<'static> + utoipa::__dev::SchemaReferences,
    {
        Doc {
            path: P::path,
            methods: P::methods,
            operation: P::operation,
            tags: P::tags,
            schemas: P::schemas,
            upstream_errors: false,
        }
    }

    /// The one method and the path it describes, as its route answers them.
    ///
    /// # Panics
    ///
    /// When it describes several methods, or none: a route has one.
    pub fn method_and_path(&self) -> (Method, &'static str) {
        let path = (self.path)();
        match (self.methods)().as_slice() {
            [method] => (method_of(method), interned(path)),
            methods => panic!(
                "{path} is described as {}: a route has one method",
                serde_json::to_string(methods).unwrap_or_default()
            ),
        }
    }

    /// For a route that passes an upstream's refusal on as the upstream
    /// wrote it (a model call): its 4xx answers are creditd's errors or the
    /// upstream's, in the upstream's shape.
    pub const fn passing_upstream_errors(mut self) -> Doc {
        self.upstream_errors = true;
        self
    }
}

/// The description as served at `GET /openapi.json`: built once, with the
/// router.
#[derive(Clone)]
pub struct Served(pub Bytes);

impl Served {
    /// The JSON text of `routes`' description.
    pub fn of(routes: &[Route], extra_codes: &[(&'static str, StatusCode)]) -> Served {
        let mut json = document(routes, extra_codes)
            .to_pretty_json()
            .expect("the description serializes");
        json.push('\n');
        Served(Bytes::from(json))
    }
}

/// The description of `routes`.
///
/// # Panics
///
/// When a route's description names another method or path than the route,
/// or two routes are the same, or two schemas of one name differ: each is a
/// mistake in the code that the first router built shows.
pub fn document(routes: &[Route], extra_codes: &[(&'static str, StatusCode)]) -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas: Schemas = schema::common();
    schemas.push((ErrorBody::name().into_owned(), ErrorBody::schema()));
    ErrorBody::schemas(&mut schemas);
    for route in routes {
        let (described, methods) = ((route.doc.path)(), (route.doc.methods)());
        let method = http_method(&route.method);
        assert!(
            described == route.path && methods == [method.clone()],
            "{} {} is described as {} {described}",
            route.method,
            route.path,
            serde_json::to_string(&methods).unwrap_or_default(),
        );
        let item = paths.paths.entry(route.path.to_owned()).or_default();
        assert!(
            operation_mut(item, &method).is_none(),
            "{} {} is in the route table twice",
            route.method,
            route.path
        );
        let mut operation = (route.doc.operation)();
        let tags = operation.tags.get_or_insert_with(Vec::new);
        tags.extend((route.doc.tags)().into_iter().map(str::to_owned));
        complete(
            &mut operation,
            route.access,
            route.writes(),
            route.idempotency,
        );
        describe_limits(&mut operation, route);
        if route.doc.upstream_errors {
            pass_upstream_errors(&mut operation);
        }
        *operation_mut(item, &method) = Some(operation);
        (route.doc.schemas)(&mut schemas);
    }
    // The codes capabilities answer with join the core's.
    if !extra_codes.is_empty() {
        schemas.retain(|(name, _)| name != &schema::ErrorCode::name());
        schemas.push((
            schema::ErrorCode::name().into_owned(),
            schema::error_code(extra_codes).into(),
        ));
    }
    let mut components = Components::new();
    for (name, schema) in schemas {
        if let Some(known) = components.schemas.get(&name) {
            assert!(
                known == &schema,
                "two different schemas are both named {name}"
            );
        }
        components.schemas.insert(name, schema);
    }
    let error = Content::new(Some(Ref::from_schema_name(ErrorBody::name())));
    let mut errors = Response::new(
        "An error. The body names a stable code (see `ErrorCode`); each operation's \
         description of the status tells which codes it answers with there.",
    );
    errors
        .content
        .insert("application/json".to_owned(), error.into());
    components.responses.insert(ERROR.to_owned(), errors.into());
    if routes.iter().any(|r| r.doc.upstream_errors) {
        components.schemas.insert(
            UPSTREAM_ERROR.to_owned(),
            schema::upstream_error_body().into(),
        );
        let either = AnyOfBuilder::new()
            .item(Ref::from_schema_name(ErrorBody::name()))
            .item(Ref::from_schema_name(UPSTREAM_ERROR));
        let mut errors = Response::new(
            "An error: creditd's own (see `ErrorCode`), or the upstream's refusal passed on as \
             the upstream wrote it (see `UpstreamError`).",
        );
        errors.content.insert(
            "application/json".to_owned(),
            Content::new(Some(either)).into(),
        );
        components
            .responses
            .insert(CALL_ERROR.to_owned(), errors.into());
    }
    components
        .security_schemes
        .insert(BEARER.to_owned(), bearer_scheme().into());
    components
        .security_schemes
        .insert(X_API_KEY.to_owned(), header_scheme().into());
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("creditd")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new()
            .url("http://127.0.0.1:8080")
            .description(Some("The default address of `creditd serve`."))
            .build()]))
        .tags(Some(TAGS.iter().map(|(name, description)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(*description))
                .build()
        })))
        .paths(paths)
        .components(Some(components))
        .build()
}

const DESCRIPTION: &str = "A double-entry credit ledger for AI products. Operators open \
accounts for their customers, grant credits in lots with sources, burn priorities and \
expiries, and spend them by amount or by priced feature, directly or through holds that \
reserve credits for work whose cost is not yet known. Every change is a journal transaction \
whose postings sum to zero; usage can be refunded to the lots it came from, and overdraft \
limits let usage run into debt that later grants repay.\n\n\
Amounts are exact decimal strings with up to 6 fractional digits. Request bodies are JSON \
objects of at most 64 KiB; unknown body fields are refused, and so are unknown query \
parameters on the routes that read a query. Every error answers `{\"error\": {\"code\", \"message\"}}` with a stable code \
(see the `ErrorCode` schema).\n\n\
Every `/v1` route needs an API key, and each operation says which kinds of key it admits \
(the roles of its security requirements): admin keys may do everything, service keys what \
the operator's backend does, customer keys read their own account.";

const TAGS: &[(&str, &str)] = &[
    ("accounts", "Customers and their balances."),
    ("grants", "Credit lots."),
    ("usage", "Spending credits."),
    ("holds", "Reservations committed or released later."),
    ("transactions", "The journal and refunds."),
    ("features", "Prices per unit."),
    ("keys", "API keys: admin, service and customer."),
    (
        "test-clock",
        "Moving the server's time forward, to rehearse what months bring; only on a server \
         started with `CREDITD_TEST_CLOCK=true`.",
    ),
    (
        "system",
        "Health, metrics and this description; no key needed.",
    ),
];

/// The response every error status of every operation refers to.
const ERROR: &str = "Error";

/// The response of 4xx statuses of routes that pass an upstream's refusal on.
const CALL_ERROR: &str = "CallError";
/// The schema of an upstream's error body.
const UPSTREAM_ERROR: &str = "UpstreamError";

/// The security scheme of `Authorization: Bearer`.
const BEARER: &str = "bearer";
/// The security scheme of the `x-api-key` header.
const X_API_KEY: &str = "x_api_key";

fn bearer_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(format!(
                "An API key, sent as `Authorization: Bearer <key>` (the scheme name is \
                 case-insensitive). There are three kinds, and each operation lists the kinds \
                 it admits as this scheme's roles:\n\n\
                 - `admin`: everything. The key set in `CREDITD_ADMIN_KEY`, the one generated \
                 and printed once at first start, and those created with `POST /v1/keys` \
                 (`{}…`).\n\
                 - `service`: the operator's backend: accounts, grants, usage, holds, refunds \
                 and customer keys; not prices, nor admin and service keys (`{}…`).\n\
                 - `customer`: one customer: reads of its own account, its balance, grants \
                 and transactions (`{}…`). Another account's objects answer 404 as if they \
                 did not exist.\n\n\
                 A key is shown once, when it is created; only its SHA-256 is stored. A \
                 missing, unknown or revoked key is 401 `unauthorized`; a key of a kind the \
                 route does not admit is 403 `forbidden`.",
                KeyKind::Admin.prefix(),
                KeyKind::Service.prefix(),
                KeyKind::Customer.prefix(),
            )))
            .build(),
    )
}

fn header_scheme() -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
        "x-api-key",
        "The same API key in an `x-api-key` header, as some clients send it; sent with a \
         different key in `Authorization`, or twice, it is 400 `invalid_request`.",
    )))
}

/// Describes the `Idempotency-Key` header as the route table says the
/// route honours it, in place of whatever its handler declared.
fn describe_idempotency(operation: &mut Operation, idempotency: crate::idempotency::Idempotency) {
    use crate::idempotency::Idempotency;
    let declared = operation.parameters.get_or_insert_with(Vec::new);
    let ledger = declared.iter().find_map(|p| match p {
        RefOr::T(p) if p.name == schema::IDEMPOTENCY_KEY => p.description.clone(),
        _ => None,
    });
    declared.retain(|p| !matches!(p, RefOr::T(p) if p.name == schema::IDEMPOTENCY_KEY));
    let description = match idempotency {
        Idempotency::NotRead => return,
        Idempotency::Ledger => ledger.unwrap_or_else(|| {
            <schema::IdempotencyKey as utoipa::IntoParams>::into_params(|| None)
                .into_iter()
                .find_map(|p| p.description)
                .unwrap_or_default()
        }),
        Idempotency::Kept => schema::kept_idempotency_description(),
        // Not a parameter of the route: the description says it is refused.
        Idempotency::Refused => {
            let description = operation.description.get_or_insert_with(String::new);
            description.push_str(
                "\n\nTakes no `Idempotency-Key`: the answer shows a secret once, which a replay \
                 would show again, so a key is 400 `invalid_request`.",
            );
            return;
        }
        Idempotency::NotKept(why) => {
            format!("Checked (a malformed key is 400 `invalid_request`) and not replayed: {why}.")
        }
    };
    declared.push(RefOr::T(schema::idempotency_parameter(description)));
}

/// The kinds of key a route admits, as its security requirements' roles.
fn roles(access: Access) -> &'static [&'static str] {
    match access {
        Access::Public => &[],
        Access::Admin => &["admin"],
        Access::Service => &["admin", "service"],
        Access::Account | Access::Own | Access::Catalog => &["admin", "service", "customer"],
        Access::Customer => &["customer"],
    }
}

/// Who may call a route, in words.
fn who(access: Access) -> &'static str {
    match access {
        Access::Public => "Needs no API key.",
        Access::Admin => "Keys: admin.",
        Access::Service => "Keys: admin, service.",
        Access::Account => {
            "Keys: admin, service, and the customer key of the account the path names (another \
             account's customer key answers 404 `account_not_found`)."
        }
        Access::Own => {
            "Keys: admin, service, and customer keys, which see only their own account's \
             objects (another account's answers 404, as if it did not exist)."
        }
        Access::Customer => {
            "Keys: customer; the call acts for, and is charged to, the key's own account."
        }
        Access::Catalog => {
            "Keys: admin, service and customer; a customer key sees only what is for sale, \
             without operator-only fields."
        }
    }
}

/// Adds to an operation what every route of its kind shares: who may call
/// it, the errors of authentication, of request bodies, of idempotency keys
/// and of the store; and makes each error response without a body of its
/// own refer to the shared error response, keeping its description.
/// The refusals of the node's limits a route may answer: `503
/// overloaded` and `request_timeout` unless it is always answered, and `429
/// rate_limited` where a key's rate or the client's address is counted.
fn describe_limits(operation: &mut Operation, route: &Route) {
    if !route.always_answered {
        add_response(
            operation,
            503,
            "`overloaded`: every place for a request on this node was taken, and              `request_timeout`: no answer began within the route's time limit; both with              `Retry-After`.",
        );
    }
    if route.access != Access::Public || route.by_address.is_some() {
        add_response(
            operation,
            429,
            "`rate_limited`: over the key's rate, or the client address's on this route;              nothing was done. With `Retry-After` and `RateLimit-*`.",
        );
    }
}

fn complete(
    operation: &mut Operation,
    access: Access,
    writes: bool,
    idempotency: crate::idempotency::Idempotency,
) {
    describe_idempotency(operation, idempotency);
    let description = operation.description.get_or_insert_with(String::new);
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(who(access));
    let customers = matches!(
        access,
        Access::Account | Access::Own | Access::Customer | Access::Catalog
    );
    if customers && writes {
        description.push_str(
            " Not a read-only customer key (`access: read`): 403 `forbidden`, scope `write`.",
        );
    }
    operation.security = Some(if access == Access::Public {
        Vec::new()
    } else {
        [BEARER, X_API_KEY]
            .into_iter()
            .map(|scheme| SecurityRequirement::new(scheme, roles(access).iter().copied()))
            .collect()
    });
    if access != Access::Public {
        add_response(
            operation,
            401,
            "`unauthorized`: no API key, or one that is unknown or revoked.",
        );
        add_response(
            operation,
            500,
            "`internal_error`: a bug on the server; the detail is logged, not returned.",
        );
        add_response(
            operation,
            503,
            "`store_unavailable`: the database could not be reached; nothing was changed, so \
             the request can be retried.",
        );
    }
    if matches!(access, Access::Admin | Access::Service | Access::Customer) {
        add_response(
            operation,
            403,
            "`forbidden`: a key of a kind this route does not admit; `required_scope` names \
             the kind it needs.",
        );
    }
    if operation.request_body.is_some() {
        add_response(
            operation,
            413,
            "`payload_too_large`: the body is larger than the route's limit, which the message \
             names (64 KiB for most routes).",
        );
        add_response(
            operation,
            415,
            "`unsupported_media_type`: a body with a Content-Type other than `application/json` \
             (in UTF-8 or with no charset), or with none.",
        );
    }
    let idempotent = operation.parameters.iter().flatten().any(|p| {
        matches!(p, RefOr::T(p) if p.name == schema::IDEMPOTENCY_KEY
            && p.parameter_in == ParameterIn::Header)
    });
    let replayed = matches!(
        idempotency,
        crate::idempotency::Idempotency::Ledger | crate::idempotency::Idempotency::Kept
    );
    if idempotent {
        add_response(
            operation,
            400,
            "`invalid_request`: among other causes, a malformed Idempotency-Key.",
        );
    }
    if idempotent && replayed {
        add_response(
            operation,
            409,
            "`idempotency_conflict`: the Idempotency-Key was already used with a different \
             request (method, path with query string, or body bytes).",
        );
    }
    if idempotency == crate::idempotency::Idempotency::Kept {
        add_response(
            operation,
            409,
            "`idempotency_in_progress`: the first request under this Idempotency-Key still \
             runs; retry it shortly.",
        );
    }
    let idempotent = idempotent && replayed;
    for (status, response) in &mut operation.responses.responses {
        let RefOr::T(answer) = response else {
            continue;
        };
        if !status.starts_with('2') && answer.content.is_empty() {
            let mut error = Ref::from_response_name(ERROR);
            error.description = std::mem::take(&mut answer.description);
            *response = RefOr::Ref(error);
        } else if status.starts_with('2') && idempotent {
            answer.headers.insert(
                "Idempotent-Replayed".to_owned(),
                HeaderBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(["true"])),
                    ))
                    .description(Some(
                        "`true` when this is the stored answer to an earlier request with the \
                         same Idempotency-Key or external id; absent otherwise.",
                    ))
                    .build()
                    .into(),
            );
        }
    }
}

/// Makes an operation's 4xx answers creditd's errors or the upstream's,
/// and adds the statuses only an upstream answers with.
fn pass_upstream_errors(operation: &mut Operation) {
    for (status, response) in &mut operation.responses.responses {
        if let RefOr::Ref(error) = response
            && status.starts_with('4')
        {
            error.ref_location = Ref::from_response_name(CALL_ERROR).ref_location;
        }
    }
    let mut other = Ref::from_response_name(CALL_ERROR);
    other.description = "The upstream's own refusal at a status creditd does not answer with \
        itself (404 for a model it does not know, 422, 429, …), passed on as it wrote it; \
        nothing is charged."
        .to_owned();
    operation
        .responses
        .responses
        .insert("4XX".to_owned(), RefOr::Ref(other));
}

/// Adds an error response, or one more reason to the one the route
/// already describes for that status.
fn add_response(operation: &mut Operation, status: u16, description: &str) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(&status.to_string()) {
        Some(RefOr::T(response)) => {
            response.description = format!("{}\n\n{description}", response.description);
        }
        Some(RefOr::Ref(reference)) => {
            reference.description = format!("{}\n\n{description}", reference.description);
        }
        None => {
            responses.insert(status.to_string(), Response::new(description).into());
        }
    }
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        Method::TRACE => HttpMethod::Trace,
        _ => panic!("{method} cannot be described"),
    }
}

fn method_of(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// `path` as the static text a route holds: a description gives its path
/// as a `String`, and each distinct one is leaked once, however many
/// routers are built.
fn interned(path: String) -> &'static str {
    static PATHS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut paths = PATHS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = paths.get(path.as_str()) {
        return known;
    }
    let path: &'static str = Box::leak(path.into_boxed_str());
    paths.insert(path);
    path
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &HttpMethod) -> &'a mut Option<Operation> {
    match method {
        HttpMethod::Get => &mut item.get,
        HttpMethod::Post => &mut item.post,
        HttpMethod::Put => &mut item.put,
        HttpMethod::Patch => &mut item.patch,
        HttpMethod::Delete => &mut item.delete,
        HttpMethod::Head => &mut item.head,
        HttpMethod::Options => &mut item.options,
        HttpMethod::Trace => &mut item.trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document_of(routes: &[Route]) -> OpenApi {
        document(routes, &[])
    }
    use crate::handlers::system;

    fn route(method: Method, path: &'static str, access: Access) -> Route {
        Route {
            idempotency: crate::idempotency::Idempotency::of(&method),
            method,
            path,
            access,
            handler: axum::routing::get(|| async {}),
            doc: Doc::of::<system::__path_healthz>(),
            dialect: None,
            time_limit: crate::limits::TimeLimit::Request,
            always_answered: false,
            by_address: None,
            audit: crate::audit::Audit::Kept,
        }
    }

    #[test]
    #[should_panic(expected = "GET /health is described as")]
    fn a_route_described_under_another_path_is_refused() {
        document_of(&[route(Method::GET, "/health", Access::Public)]);
    }

    #[test]
    #[should_panic(expected = "POST /healthz is described as")]
    fn a_route_described_under_another_method_is_refused() {
        document_of(&[route(Method::POST, "/healthz", Access::Public)]);
    }

    #[test]
    #[should_panic(expected = "GET /healthz is in the route table twice")]
    fn a_route_in_the_table_twice_is_refused() {
        let twice = || route(Method::GET, "/healthz", Access::Public);
        document_of(&[twice(), twice()]);
    }

    #[test]
    fn a_route_is_described_with_the_keys_its_access_admits() {
        let described = document_of(&[route(Method::GET, "/healthz", Access::Service)]);
        let json = serde_json::to_value(&described).unwrap();
        let operation = &json["paths"]["/healthz"]["get"];
        assert_eq!(
            operation["security"],
            serde_json::json!([{"bearer": ["admin", "service"]}, {"x_api_key": ["admin", "service"]}])
        );
        for status in ["401", "403", "500", "503"] {
            assert_eq!(
                operation["responses"][status]["$ref"], "#/components/responses/Error",
                "{status}"
            );
        }
        let text = operation["description"].as_str().unwrap();
        assert!(text.ends_with("Keys: admin, service."), "{text}");
        assert_eq!(operation["tags"], serde_json::json!(["system"]));
    }
}
