//! The gateway's routes: the OpenAI- and Anthropic-compatible endpoints, the model list, the
//! price catalog and its import, and an account's usage, each with its description and access.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::extract::{self, ExistingAccount, PathAccount, PathParam, Query};
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Decimal, Instant};
use server::routes::{Idempotency, Routes};
use server::{Access, Route};
use store::records::{self, Doc as Record, Expect, Written};
use store::usage::{Call, CallQuery};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::catalog::{self, ImportReport, check_model, check_price};
use crate::domain::import::Format;
use crate::domain::{Mode, ModelPrice, Percent, UsdPerMtok};
use crate::error::{GatewayError, anthropic_error, openai_error};
use crate::proxy::{self, Endpoint};
use crate::usage::{self, GroupBy};

type GatewayState = State<Arc<Gateway>>;

/// The gateway's routes, answered with its state.
pub fn routes(gateway: &Arc<Gateway>) -> Vec<Route> {
    use Access::{Account, Admin, Customer};
    // A call to a model is metered once per call by its own request id and
    // may stream its answer, which is not kept: the OpenAI and Anthropic
    // SDKs send a key on every request, which is checked and let through.
    let calls = Idempotency::NotKept("a model's answer is streamed and metered per call");
    let routes = Routes::with(gateway.clone());
    vec![
        routes
            .route(
                Customer,
                Doc::of::<__path_chat_completions>().passing_upstream_errors(),
                chat_completions,
            )
            .with_dialect(openai_error)
            .with_idempotency(calls),
        routes
            .route(
                Customer,
                Doc::of::<__path_embeddings>().passing_upstream_errors(),
                embeddings,
            )
            .with_dialect(openai_error)
            .with_idempotency(calls),
        routes
            .route(
                Customer,
                Doc::of::<__path_messages>().passing_upstream_errors(),
                messages,
            )
            .with_dialect(anthropic_error)
            .with_idempotency(calls),
        routes
            .route(Customer, Doc::of::<__path_models>(), models)
            .with_dialect(openai_error),
        routes.route(Admin, Doc::of::<__path_list_prices>(), list_prices),
        routes.route(Admin, Doc::of::<__path_import_prices>(), import_prices),
        routes.route(Admin, Doc::of::<__path_get_price>(), get_price),
        routes.route(Admin, Doc::of::<__path_put_price>(), put_price),
        routes.route(Admin, Doc::of::<__path_delete_price>(), delete_price),
        routes.route(
            Account,
            Doc::of::<__path_put_provider_key>(),
            put_provider_key,
        ),
        routes.route(
            Account,
            Doc::of::<__path_delete_provider_key>(),
            delete_provider_key,
        ),
        routes.route(
            Account,
            Doc::of::<__path_list_provider_keys>(),
            list_provider_keys,
        ),
        routes.route(Account, Doc::of::<__path_usage_summary>(), usage_summary),
        routes.route(Account, Doc::of::<__path_usage_calls>(), usage_calls),
    ]
}

// ------------------------------------------------------------- the gateway

/// Create a chat completion (OpenAI-compatible)
///
/// OpenAI's chat completions, streaming or not, for a model of the catalog,
/// charged to the customer key's account: the call's worst case is held
/// before it goes upstream, and the hold is settled from the usage the
/// upstream reports. Errors are written as OpenAI writes them.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "gateway",
    operation_id = "createChatCompletion",
    request_body(content = ChatCall, description = "OpenAI's chat completion request."),
    responses(
        (status = 200, description = "OpenAI's chat completion, or its event stream."),
        (status = 400, description = "`malformed_json`, `invalid_request`, `model_not_priced`, \
            `model_not_supported`, or the upstream's own refusal."),
        (status = 401, description = "`unauthorized`."),
        (status = 402, description = "`insufficient_credits`: the account cannot cover the \
            call's worst case; the upstream was not called."),
        (status = 502, description = "`upstream_unavailable`: every upstream failed; nothing \
            was charged."),
        (status = 503, description = "`upstream_not_configured`."),
    ),
)]
async fn chat_completions(State(gateway): GatewayState, request: Request) -> Response {
    proxy::serve(gateway, Endpoint::Chat, request).await
}

/// Create embeddings (OpenAI-compatible)
///
/// OpenAI's embeddings for an embedding model of the catalog, charged as a
/// chat completion is.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "gateway",
    operation_id = "createEmbeddings",
    request_body(content = EmbeddingCall, description = "OpenAI's embeddings request."),
    responses(
        (status = 200, description = "OpenAI's embeddings."),
        (status = 400, description = "`malformed_json`, `invalid_request`, `model_not_priced`, \
            `model_not_supported`, or the upstream's own refusal."),
        (status = 401, description = "`unauthorized`."),
        (status = 402, description = "`insufficient_credits`."),
        (status = 502, description = "`upstream_unavailable`."),
        (status = 503, description = "`upstream_not_configured`."),
    ),
)]
async fn embeddings(State(gateway): GatewayState, request: Request) -> Response {
    proxy::serve(gateway, Endpoint::Embeddings, request).await
}

/// Create a message (Anthropic-compatible)
///
/// Anthropic's messages, streaming or not, charged as a chat completion is.
/// The key goes in `x-api-key`, as Anthropic's clients send it; errors are
/// written as Anthropic writes them.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "gateway",
    operation_id = "createMessage",
    request_body(content = MessageCall, description = "Anthropic's messages request."),
    responses(
        (status = 200, description = "Anthropic's message, or its event stream."),
        (status = 400, description = "`malformed_json`, `invalid_request`, `model_not_priced`, \
            `model_not_supported`, or the upstream's own refusal."),
        (status = 401, description = "`unauthorized`."),
        (status = 402, description = "`insufficient_credits`."),
        (status = 502, description = "`upstream_unavailable`."),
        (status = 503, description = "`upstream_not_configured`."),
    ),
)]
async fn messages(State(gateway): GatewayState, request: Request) -> Response {
    proxy::serve(gateway, Endpoint::Messages, request).await
}

/// A model as OpenAI's model list writes it.
#[derive(Serialize, ToSchema)]
struct ModelView {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: String,
}

/// OpenAI's model list.
#[derive(Serialize, ToSchema)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelView>,
}

/// List the models (OpenAI-compatible)
///
/// The models of the catalog the caller can call: priced, with an upstream
/// configured for them.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "gateway",
    operation_id = "listModels",
    responses(
        (status = 200, description = "OpenAI's model list.", body = ModelList),
        (status = 401, description = "`unauthorized`."),
    ),
)]
async fn models(State(gateway): GatewayState) -> Response {
    match model_list(&gateway).await {
        Ok(response) => response,
        Err(error) => openai_error(&error),
    }
}

async fn model_list(gateway: &Gateway) -> Result<Response, ApiError> {
    let prices = catalog::all(gateway.store.as_ref(), None).await?;
    let data = prices
        .iter()
        .filter(|doc| {
            !gateway
                .config
                .route_of(&doc.body.upstreams, doc.body.wire())
                .is_empty()
        })
        .map(|doc| ModelView {
            id: doc.id.clone(),
            object: "model",
            created: doc.created_at.micros() / ledger::MICROS_PER_SECOND,
            owned_by: doc.body.provider.clone(),
        })
        .collect();
    Ok(render::json(
        StatusCode::OK,
        &ModelList {
            object: "list",
            data,
        },
    ))
}

// ---------------------------------------------------------------- prices

/// `{model}`
enum ModelPath {}

impl IntoParams for ModelPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("model")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "The model, as callers name it: 1 to 200 printable ASCII characters without \
                     spaces, not only dots (a `/` is written `%2F`).",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(crate::catalog::plain_name_pattern(
                            crate::catalog::MODEL_LEN_MAX,
                        )))
                        .examples(["gpt-4o-mini"]),
                ))
                .build(),
        ]
    }
}

/// A call to a model, as the description states it: the provider's own
/// request, of which creditd reads the model (and the output bound), and
/// the fields the provider requires for `endpoint`; everything else is
/// passed on as sent.
fn call_schema(endpoint: Endpoint) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
    let objects = || {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::Object))
            .min_items(Some(1))
    };
    let call = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("model", <ModelName as utoipa::PartialSchema>::schema())
        .required("model");
    let (call, description) = match endpoint {
        Endpoint::Chat => (
            call.property("messages", objects()).required("messages"),
            "OpenAI's chat completion request, passed on; creditd reads `model` (a chat model of \
             the price catalog) and the output bound (`max_completion_tokens`, `max_tokens`).",
        ),
        Endpoint::Embeddings => (
            call.property(
                "input",
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::String))
                    .item(ArrayBuilder::new().min_items(Some(1))),
            )
            .required("input"),
            "OpenAI's embeddings request, passed on; creditd reads `model` (an embedding model \
             of the price catalog).",
        ),
        Endpoint::Messages => (
            call.property("messages", objects())
                .required("messages")
                .property(
                    "max_tokens",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .required("max_tokens"),
            "Anthropic's messages request, passed on; creditd reads `model` (a model of the \
             price catalog served in Anthropic's format) and `max_tokens`.",
        ),
    };
    call.description(Some(description)).into()
}

/// OpenAI's chat completion request, for the description.
enum ChatCall {}

impl utoipa::PartialSchema for ChatCall {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        call_schema(Endpoint::Chat)
    }
}

impl ToSchema for ChatCall {}

/// OpenAI's embeddings request, for the description.
enum EmbeddingCall {}

impl utoipa::PartialSchema for EmbeddingCall {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        call_schema(Endpoint::Embeddings)
    }
}

impl ToSchema for EmbeddingCall {}

/// Anthropic's messages request, for the description.
enum MessageCall {}

impl utoipa::PartialSchema for MessageCall {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        call_schema(Endpoint::Messages)
    }
}

impl ToSchema for MessageCall {}

/// A price in USD per million tokens as a request writes it.
enum PriceInput {}

impl utoipa::PartialSchema for PriceInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        decimal_input(
            "^((0|[1-9][0-9]{0,5})(\\.[0-9]{1,12}0*)?|1000000(\\.0+)?)$",
            1_000_000.0,
            1e-12,
            "USD per million tokens: a decimal string such as \"2.5\" (plain notation) or a \
             JSON number, from 0 to 1,000,000 with at most 12 fractional digits that are not \
             zero.",
        )
    }
}

impl ToSchema for PriceInput {}

/// A markup in percent as a request writes it.
enum PercentInput {}

impl utoipa::PartialSchema for PercentInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        decimal_input(
            "^((0|[1-9][0-9]{0,2})(\\.[0-9]{1,4}0*)?|1000(\\.0+)?)$",
            1_000.0,
            0.0001,
            "A percentage: a decimal string such as \"12.5\" (plain notation) or a JSON number, \
             from 0 to 1,000 with at most 4 fractional digits that are not zero.",
        )
    }
}

impl ToSchema for PercentInput {}

/// A decimal as a string of `pattern`, or a number from 0 to `max` in steps
/// of `step`.
fn decimal_input(
    pattern: &str,
    max: f64,
    step: f64,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0.0))
                .maximum(Some(max))
                .multiple_of(Some(step)),
        )
        .description(Some(description))
        .into()
}

/// A model's name.
enum ModelName {}

impl utoipa::PartialSchema for ModelName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::catalog::plain_name_pattern(
                crate::catalog::MODEL_LEN_MAX,
            )))
            .into()
    }
}

impl ToSchema for ModelName {}

/// An upstream's name.
enum PlainName {}

impl utoipa::PartialSchema for PlainName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::catalog::plain_name_pattern(64)))
            .into()
    }
}

impl ToSchema for PlainName {}

/// A catalog entry as written: prices in USD per million tokens, as decimal
/// strings or numbers (read exactly, never through a float).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    /// Who serves it: `openai`, `anthropic`, or another provider of
    /// OpenAI's wire format; 1 to 64 printable ASCII characters.
    #[schema(pattern = "^(?!\\.+$)[!-~]{1,64}$")]
    provider: String,
    /// `chat` (the default) or `embedding`.
    #[serde(default)]
    mode: Mode,
    /// Named upstreams to try in order; the provider's default when absent.
    #[serde(default)]
    #[schema(max_items = 8, value_type = Vec<PlainName>)]
    upstreams: Vec<String>,
    /// The model's name upstream, when it differs.
    #[schema(value_type = Option<ModelName>)]
    upstream_model: Option<String>,
    /// USD per million fresh input tokens.
    #[schema(value_type = PriceInput, example = "0.15")]
    input: UsdPerMtok,
    /// USD per million input tokens read from the prompt cache; the input
    /// price when absent.
    #[schema(value_type = Option<PriceInput>, example = "0.075")]
    cached_input: Option<UsdPerMtok>,
    /// USD per million input tokens written to the prompt cache; the input
    /// price when absent.
    #[schema(value_type = Option<PriceInput>)]
    cache_write: Option<UsdPerMtok>,
    /// USD per million output tokens.
    #[schema(value_type = PriceInput, example = "0.6")]
    output: UsdPerMtok,
    /// USD per million reasoning tokens, when priced apart from output.
    #[schema(value_type = Option<PriceInput>)]
    reasoning: Option<UsdPerMtok>,
    /// Tokens the model reads at most.
    #[serde(default, deserialize_with = "server::extract::whole_opt")]
    context_window: Option<u64>,
    /// Tokens the model writes at most in one call: what a call that sets
    /// no `max_tokens` is held for.
    #[serde(default, deserialize_with = "server::extract::whole_opt")]
    max_output_tokens: Option<u64>,
    /// This model's markup in percent, instead of the default.
    #[schema(value_type = Option<PercentInput>, example = "10")]
    markup_percent: Option<Percent>,
}

/// A catalog entry.
#[derive(Serialize, ToSchema)]
struct PriceView {
    model: String,
    provider: String,
    mode: Mode,
    upstreams: Vec<String>,
    upstream_model: Option<String>,
    /// USD per million tokens.
    #[schema(value_type = String)]
    input: UsdPerMtok,
    #[schema(value_type = Option<String>)]
    cached_input: Option<UsdPerMtok>,
    #[schema(value_type = Option<String>)]
    cache_write: Option<UsdPerMtok>,
    #[schema(value_type = String)]
    output: UsdPerMtok,
    #[schema(value_type = Option<String>)]
    reasoning: Option<UsdPerMtok>,
    context_window: Option<u64>,
    max_output_tokens: Option<u64>,
    #[schema(value_type = Option<String>)]
    markup_percent: Option<Percent>,
    created_at: Instant,
    updated_at: Instant,
}

impl PriceView {
    fn new(doc: &Record<ModelPrice>) -> PriceView {
        let p = &doc.body;
        PriceView {
            model: doc.id.clone(),
            provider: p.provider.clone(),
            mode: p.mode,
            upstreams: p.upstreams.clone(),
            upstream_model: p.upstream_model.clone(),
            input: p.input,
            cached_input: p.cached_input,
            cache_write: p.cache_write,
            output: p.output,
            reasoning: p.reasoning,
            context_window: p.context_window,
            max_output_tokens: p.max_output_tokens,
            markup_percent: p.markup_percent,
            created_at: Instant(doc.created_at),
            updated_at: Instant(doc.updated_at),
        }
    }
}

/// A page of catalog entries.
#[derive(Serialize, ToSchema)]
struct PricePage {
    data: Vec<PriceView>,
    /// The model to pass as `cursor` for the next page, when this one is full.
    next_cursor: Option<String>,
}

/// `?limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PriceQuery {
    /// The page size, 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// Set a model's price
///
/// Creates or replaces the model's entry in the catalog. Calls read it
/// within a second on every node.
#[utoipa::path(
    put,
    path = "/v1/prices/{model}",
    tag = "gateway",
    operation_id = "putPrice",
    params(ModelPath),
    request_body = PriceBody,
    responses(
        (status = 200, description = "The entry as stored.", body = PriceView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_model_price`."),
    ),
)]
async fn put_price(
    State(gateway): GatewayState,
    PathParam(model): PathParam,
    extract::ReadBody(body): extract::ReadBody,
) -> Result<Response, ApiError> {
    check_model(&model)?;
    let body: PriceBody = extract::read_json(&body).map_err(|e| {
        let not_json = || serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err();
        if e.is_syntax() || e.is_eof() || not_json() {
            ApiError::MalformedJson(format!("the body is not JSON: {e}"))
        } else {
            ApiError::from(GatewayError::InvalidPrice(e.to_string()))
        }
    })?;
    let price = ModelPrice {
        provider: body.provider,
        mode: body.mode,
        upstreams: body.upstreams,
        upstream_model: body.upstream_model,
        input: body.input,
        cached_input: body.cached_input,
        cache_write: body.cache_write,
        output: body.output,
        reasoning: body.reasoning,
        context_window: body.context_window,
        max_output_tokens: body.max_output_tokens,
        markup_percent: body.markup_percent,
    };
    check_price(&price)?;
    let write = records::put(&model, &price, Expect::Any);
    match records::write::<ModelPrice>(gateway.store.as_ref(), write).await? {
        Written::Stored(doc) => {
            gateway
                .catalog
                .note(&model, Some(Arc::new(doc.body.clone())));
            Ok(render::json(StatusCode::OK, &PriceView::new(&doc)))
        }
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a price put answered deleted".into())),
    }
}

/// Get a model's price
#[utoipa::path(
    get,
    path = "/v1/prices/{model}",
    tag = "gateway",
    operation_id = "getPrice",
    params(ModelPath),
    responses(
        (status = 200, description = "The entry.", body = PriceView),
        (status = 404, description = "`price_not_found`."),
    ),
)]
async fn get_price(
    State(gateway): GatewayState,
    PathParam(model): PathParam,
) -> Result<Response, ApiError> {
    let doc = records::get::<ModelPrice>(gateway.store.as_ref(), &model)
        .await?
        .ok_or(GatewayError::PriceNotFound)?;
    Ok(render::json(StatusCode::OK, &PriceView::new(&doc)))
}

/// Remove a model's price
///
/// The model is no longer served in credits: its calls answer
/// `model_not_priced` within a second on every node.
#[utoipa::path(
    delete,
    path = "/v1/prices/{model}",
    tag = "gateway",
    operation_id = "deletePrice",
    params(ModelPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`price_not_found`."),
    ),
)]
async fn delete_price(
    State(gateway): GatewayState,
    PathParam(model): PathParam,
) -> Result<Response, ApiError> {
    let store = gateway.store.as_ref();
    let doc = records::get::<ModelPrice>(store, &model)
        .await?
        .ok_or(GatewayError::PriceNotFound)?;
    let write = records::delete::<ModelPrice>(&model, Expect::Version(doc.version));
    match records::write::<ModelPrice>(store, write).await? {
        Written::Deleted => {
            gateway.catalog.note(&model, None);
            let mut response = Response::default();
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        Written::Refused(refused) => Err(refused.into()),
        Written::Stored(_) => Err(ApiError::Internal("a price delete answered stored".into())),
    }
}

/// List the catalog
///
/// Every model's entry, in model order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/prices",
    tag = "gateway",
    operation_id = "listPrices",
    params(PriceQuery),
    responses(
        (status = 200, description = "A page of entries.", body = PricePage),
        (status = 400, description = "`invalid_request`: a bad `limit` or `cursor`."),
    ),
)]
async fn list_prices(
    State(gateway): GatewayState,
    Query(query): Query<PriceQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let after = extract::id_cursor(query.cursor)?;
    let page = records::list::<ModelPrice>(
        gateway.store.as_ref(),
        records::RecordFilter::All,
        after,
        limit,
    )
    .await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|d| d.id.clone()))
        .flatten();
    Ok(render::json(
        StatusCode::OK,
        &PricePage {
            data: page.iter().map(PriceView::new).collect(),
            next_cursor,
        },
    ))
}

/// `?source=&format=&providers=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    /// `body` (the default): the list is the request body; `starter`: the
    /// starter catalog shipped with creditd, and no body.
    #[param(pattern = "^(body|starter)$")]
    source: Option<String>,
    /// `litellm` or `models_dev`; guessed from the list's shape when absent.
    #[param(pattern = "^(litellm|models_dev)$")]
    format: Option<String>,
    /// Only models of these providers, comma-separated (`openai,anthropic`).
    providers: Option<String>,
}

/// The largest price list accepted, in bytes.
pub const PRICE_LIST_LEN_MAX: usize = 32 * 1024 * 1024;

/// Import a price list
///
/// Reads LiteLLM's `model_prices_and_context_window.json` or models.dev's
/// `api.json` from the body (or the starter catalog with
/// `?source=starter`, which takes no body) and writes the price of every
/// model it can use,
/// keeping the upstreams, upstream model and markup an operator set on an
/// existing entry. Entries it cannot use are listed with the reason, never
/// guessed.
#[utoipa::path(
    post,
    path = "/v1/prices/import",
    tag = "gateway",
    operation_id = "importPrices",
    params(ImportQuery),
    request_body(content = Object, description = "The price list, up to 32 MiB."),
    responses(
        (status = 200, description = "What was written, unchanged, filtered out and skipped.",
            body = ImportReport),
        (status = 400, description = "`invalid_request` (a bad `source` or `format`, or a \
            body with `source=starter`), `invalid_price_list`."),
        (status = 413, description = "`payload_too_large`."),
    ),
)]
async fn import_prices(
    State(gateway): GatewayState,
    Query(query): Query<ImportQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref() {
        None => None,
        Some("litellm") => Some(Format::Litellm),
        Some("models_dev") => Some(Format::ModelsDev),
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "format must be litellm or models_dev".into(),
            ));
        }
    };
    let providers: Option<BTreeSet<String>> = query.providers.map(|p| {
        p.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let text = match query.source.as_deref() {
        None | Some("body") => {
            let headers = request.headers().clone();
            let bytes = axum::body::to_bytes(request.into_body(), PRICE_LIST_LEN_MAX)
                .await
                .map_err(|_| ApiError::PayloadTooLarge {
                    limit_bytes: PRICE_LIST_LEN_MAX,
                })?;
            extract::check_content_type(&headers, &bytes)?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| GatewayError::InvalidPriceList("the list is not UTF-8".into()))?
        }
        Some("starter") => {
            // A list sent beside it would be silently ignored.
            let bytes = axum::body::to_bytes(request.into_body(), PRICE_LIST_LEN_MAX)
                .await
                .map_err(|_| ApiError::PayloadTooLarge {
                    limit_bytes: PRICE_LIST_LEN_MAX,
                })?;
            if !bytes.is_empty() {
                return Err(ApiError::InvalidRequest(
                    "source=starter imports the starter catalog and takes no body".into(),
                ));
            }
            catalog::STARTER.to_owned()
        }
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "source must be body or starter".into(),
            ));
        }
    };
    let report = catalog::import(
        gateway.store.as_ref(),
        &gateway.catalog,
        &text,
        format,
        providers.as_ref(),
    )
    .await?;
    Ok(render::json(StatusCode::OK, &report))
}

// --------------------------------------------------------- provider keys

/// `{provider}`
enum ProviderPath {}

impl IntoParams for ProviderPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("provider")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "The provider, as the catalog names it: `openai`, `anthropic`, or another \
                     (1 to 64 characters of `a-z0-9_.-`).",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^(?!\\.+$)[a-z0-9_.-]{1,64}$"))
                        .examples(["openai"]),
                ))
                .build(),
        ]
    }
}

fn provider_name(text: &str) -> Result<String, ApiError> {
    if !text.is_empty()
        && text.len() <= 64
        && !text.bytes().all(|b| b == b'.')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    {
        Ok(text.to_owned())
    } else {
        Err(ApiError::InvalidId(
            "a provider is 1 to 64 characters of a-z0-9_.-".into(),
        ))
    }
}

/// A provider key to store.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProviderKeyBody {
    /// The provider's API key: kept sealed, never shown again; 1 to 1024
    /// printable ASCII characters without spaces.
    #[schema(pattern = "^[!-~]{1,1024}$")]
    api_key: String,
    /// Where its calls go, when not the provider's own API: an OpenAI-format
    /// base including `/v1`, or an Anthropic-format base without it. An
    /// `https://` or `http://` URL of at most 2048 characters, without
    /// credentials, at a public host name (an address written as digits
    /// also works when public; private ones, single-label names and
    /// `localhost` only when the operator allows private upstreams).
    #[schema(
        pattern = "^https?://([A-Za-z0-9]+(-[A-Za-z0-9]+)*\\.)+[A-Za-z]+(-[A-Za-z0-9]+)*\\.?(:[0-9]{1,4})?([/?#][!-~]*)?$",
        max_length = 2048
    )]
    base_url: Option<String>,
}

/// A provider key as shown: never the key.
#[derive(Serialize, ToSchema)]
struct ProviderKeyView {
    provider: String,
    /// The key's last four characters.
    last4: String,
    base_url: Option<String>,
    created_at: Instant,
    updated_at: Instant,
}

impl ProviderKeyView {
    fn new(doc: &Record<crate::byok::ProviderKey>) -> ProviderKeyView {
        ProviderKeyView {
            provider: doc.body.provider.clone(),
            last4: doc.body.last4.clone(),
            base_url: doc.body.base_url.clone(),
            created_at: Instant(doc.created_at),
            updated_at: Instant(doc.updated_at),
        }
    }
}

/// The account's provider keys.
#[derive(Serialize, ToSchema)]
struct ProviderKeyList {
    data: Vec<ProviderKeyView>,
}

/// The longest provider key accepted, in bytes.
pub const PROVIDER_KEY_LEN_MAX: usize = 1024;

/// Store a provider key
///
/// Stores the account's own key for a provider, for its calls in `byok`
/// billing mode. The key is sealed with XChaCha20-Poly1305 under the
/// operator's master key, bound to this account and provider, and never
/// shown, logged or returned again. A `base_url` at a private, loopback or
/// link-local address is refused unless the operator allows it.
#[utoipa::path(
    put,
    path = "/v1/accounts/{account_id}/provider-keys/{provider}",
    tag = "gateway",
    operation_id = "putProviderKey",
    params(AccountPath, ProviderPath),
    request_body = ProviderKeyBody,
    responses(
        (status = 200, description = "The key as stored, without the key.", body = ProviderKeyView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_provider_key`."),
        (status = 404, description = "`account_not_found`."),
        (status = 503, description = "`byok_not_configured`: no master key is set."),
    ),
)]
async fn put_provider_key(
    State(gateway): GatewayState,
    ExistingAccount(account): ExistingAccount,
    axum::extract::Path((_, provider)): axum::extract::Path<(String, String)>,
    extract::ReadBody(body): extract::ReadBody,
) -> Result<Response, ApiError> {
    let provider = provider_name(&provider)?;
    let keyring = gateway.keyring()?;
    let body: ProviderKeyBody = extract::parse_json(&body)?;
    if body.api_key.is_empty()
        || body.api_key.len() > PROVIDER_KEY_LEN_MAX
        || !body.api_key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(GatewayError::InvalidProviderKey(format!(
            "api_key is 1 to {PROVIDER_KEY_LEN_MAX} printable ASCII characters without spaces"
        ))
        .into());
    }
    if let Some(url) = &body.base_url {
        crate::byok::check_base_url(url, gateway.config.allow_private_upstreams)
            .map_err(GatewayError::InvalidProviderKey)?;
    }
    let store = gateway.store.as_ref();
    let sealed = keyring.seal(&account, &provider, &body.api_key, body.base_url);
    let id = crate::byok::record_id(&account, &provider);
    match records::write::<crate::byok::ProviderKey>(store, records::put(&id, &sealed, Expect::Any))
        .await?
    {
        Written::Stored(doc) => Ok(render::json(StatusCode::OK, &ProviderKeyView::new(&doc))),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal(
            "a provider key put answered deleted".into(),
        )),
    }
}

/// Remove a provider key
#[utoipa::path(
    delete,
    path = "/v1/accounts/{account_id}/provider-keys/{provider}",
    tag = "gateway",
    operation_id = "deleteProviderKey",
    params(AccountPath, ProviderPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`provider_key_not_found`."),
    ),
)]
async fn delete_provider_key(
    State(gateway): GatewayState,
    PathAccount(account): PathAccount,
    axum::extract::Path((_, provider)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    let provider = provider_name(&provider)?;
    let id = crate::byok::record_id(&account, &provider);
    let store = gateway.store.as_ref();
    let doc = records::get::<crate::byok::ProviderKey>(store, &id)
        .await?
        .ok_or(GatewayError::ProviderKeyNotFound)?;
    let write = records::delete::<crate::byok::ProviderKey>(&id, Expect::Version(doc.version));
    match records::write::<crate::byok::ProviderKey>(store, write).await? {
        Written::Deleted => {
            let mut response = Response::default();
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        Written::Refused(refused) => Err(refused.into()),
        Written::Stored(_) => Err(ApiError::Internal("a delete answered stored".into())),
    }
}

/// List an account's provider keys
///
/// The providers the account has a key for, with each key's last four
/// characters and base URL; never the keys.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/provider-keys",
    tag = "gateway",
    operation_id = "listProviderKeys",
    params(AccountPath),
    responses(
        (status = 200, description = "The keys, by provider.", body = ProviderKeyList),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn list_provider_keys(
    State(gateway): GatewayState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = gateway.store.as_ref();
    let filter = records::RecordFilter::Equals {
        name: "account".into(),
        value: account.as_str().to_owned(),
    };
    let keys = records::list::<crate::byok::ProviderKey>(store, filter, None, 100).await?;
    let mut data: Vec<ProviderKeyView> = keys.iter().map(ProviderKeyView::new).collect();
    data.sort_by(|a, b| a.provider.cmp(&b.provider));
    Ok(render::json(StatusCode::OK, &ProviderKeyList { data }))
}

// ----------------------------------------------------------------- usage

/// `?from=&to=&group_by=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// Calls settled at or after this instant; 30 days before `to` when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    from: Option<String>,
    /// Calls settled before this instant; through now when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    to: Option<String>,
    /// `model` (the default), `day` (UTC), `key` or `project` for gateway
    /// calls; `feature` for the account's consumes by feature (`quantity`
    /// units, `cost` credits), free features included.
    #[param(pattern = "^(model|day|key|project|feature)$")]
    group_by: Option<String>,
}

/// What a group of calls adds up to.
#[derive(Serialize, ToSchema, Default)]
struct UsageGroup {
    /// The model, the day (`2027-01-15`), the key id or the project; null
    /// for calls without a project.
    key: Option<String>,
    calls: i64,
    input_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: i64,
    output_tokens: i64,
    reasoning_tokens: i64,
    /// Credits charged.
    #[schema(value_type = Decimal)]
    cost: DecimalOf,
    /// What the tokens cost at list price without markup, in credits.
    #[schema(value_type = Decimal)]
    list_cost: DecimalOf,
    /// Units consumed, when grouped by `feature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Decimal>)]
    quantity: Option<DecimalOf>,
}

/// An amount that starts at zero and adds up.
#[derive(Default, Clone, Copy)]
struct DecimalOf(i64);

impl Serialize for DecimalOf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Decimal(ledger::Amount::from_micros(self.0)).serialize(s)
    }
}

impl UsageGroup {
    fn of(g: &usage::Group) -> UsageGroup {
        UsageGroup {
            key: g.key.clone(),
            calls: g.calls,
            input_tokens: g.tokens.input,
            cached_tokens: g.tokens.cached,
            cache_write_tokens: g.tokens.cache_write,
            output_tokens: g.tokens.output,
            reasoning_tokens: g.tokens.reasoning,
            cost: DecimalOf(g.cost_micros),
            list_cost: DecimalOf(g.list_cost_micros),
            quantity: None,
        }
    }

    fn of_feature(f: &store::usage::FeatureUse) -> UsageGroup {
        UsageGroup {
            key: Some(f.feature.clone()),
            calls: f.uses,
            cost: DecimalOf(f.credits.micros()),
            quantity: Some(DecimalOf(f.quantity.micros())),
            ..UsageGroup::default()
        }
    }
}

/// Features' uses per feature, and their total.
fn feature_groups(uses: &[store::usage::FeatureUse]) -> (Vec<UsageGroup>, UsageGroup) {
    let mut total = UsageGroup {
        quantity: Some(DecimalOf(0)),
        ..UsageGroup::default()
    };
    for f in uses {
        total.calls = total.calls.saturating_add(f.uses);
        total.cost.0 = total.cost.0.saturating_add(f.credits.micros());
        if let Some(q) = &mut total.quantity {
            q.0 = q.0.saturating_add(f.quantity.micros());
        }
    }
    (uses.iter().map(UsageGroup::of_feature).collect(), total)
}

/// An account's usage, summed.
#[derive(Serialize, ToSchema)]
struct UsageSummary {
    from: Instant,
    to: Instant,
    group_by: &'static str,
    data: Vec<UsageGroup>,
    total: UsageGroup,
}

/// Summarize an account's gateway usage
///
/// Calls settled in [`from`, `to`), summed per model, day (UTC), key or
/// project: tokens by class, credits charged and list-price cost. Whole
/// hours are read from the hourly rollup, the hours at either end from the
/// calls themselves, so the sums are exact for any instants. With
/// `group_by=feature`, the account's consumes by feature in the window
/// instead, per feature: `calls` the consumes, `quantity` the units,
/// `cost` the credits (zero for a free feature).
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/usage",
    tag = "gateway",
    operation_id = "usageSummary",
    params(AccountPath, UsageQuery),
    responses(
        (status = 200, description = "The sums.", body = UsageSummary),
        (status = 400, description = "`invalid_id`, `invalid_timestamp`, `invalid_request`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn usage_summary(
    State(gateway): GatewayState,
    Query(query): Query<UsageQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let (from, to) = window(&gateway, query.from.as_deref(), query.to.as_deref())?;
    let group_by = match query.group_by.as_deref() {
        None => GroupBy::Model,
        Some(text) => GroupBy::parse(text).ok_or_else(|| {
            ApiError::InvalidRequest("group_by must be model, day, key, project or feature".into())
        })?,
    };
    let store = gateway.store.as_ref();
    let (data, total) = match group_by.sums() {
        Some(sums) => {
            let buckets = usage::buckets(store, &account, from, to, sums).await?;
            let (groups, total) = usage::group(&buckets, group_by);
            (
                groups.iter().map(UsageGroup::of).collect(),
                UsageGroup::of(&total),
            )
        }
        None => feature_groups(&store.feature_usage(account.clone(), from, to).await?),
    };
    Ok(render::json(
        StatusCode::OK,
        &UsageSummary {
            from: Instant(from),
            to: Instant(to),
            group_by: group_by.code(),
            data,
            total,
        },
    ))
}

/// `from`..`to` of a usage query: through now when `to` is absent, `from`
/// 30 days before `to`. A window that ends before it starts holds nothing;
/// any length is read at the cost of what it holds (the hourly rollup, and
/// the calls of the hours at its ends).
fn window(
    gateway: &Gateway,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Timestamp, Timestamp), ApiError> {
    // Absent, `to` includes what was written at this very microsecond.
    let to = extract::timestamp(to, "to")?
        .unwrap_or_else(|| Timestamp::from_micros(gateway.clock.now().micros().saturating_add(1)));
    let from = extract::timestamp(from, "from")?.unwrap_or(to.plus_secs(-30 * 86_400));
    Ok((from, to.max(from)))
}

/// One call as recorded.
#[derive(Serialize, ToSchema)]
struct CallView {
    id: String,
    key_id: Option<String>,
    project: Option<String>,
    provider: String,
    model: String,
    /// `credits` or `byok`.
    billing_mode: String,
    input_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: i64,
    output_tokens: i64,
    reasoning_tokens: i64,
    cost: Decimal,
    list_cost: Decimal,
    /// The HTTP status the caller received.
    status: u16,
    /// `ok`, `usage_estimated`, `client_closed`, `upstream_cut`,
    /// `upstream_refused` or `upstream_error`.
    outcome: String,
    latency_ms: i64,
    /// The ledger transaction that settled it.
    transaction_id: Option<String>,
    created_at: Instant,
}

impl CallView {
    fn new(c: &Call) -> CallView {
        CallView {
            id: c.id.clone(),
            key_id: c.key_id.clone(),
            project: c.project.clone(),
            provider: c.provider.clone(),
            model: c.model.clone(),
            billing_mode: c.mode.clone(),
            input_tokens: c.tokens.input,
            cached_tokens: c.tokens.cached,
            cache_write_tokens: c.tokens.cache_write,
            output_tokens: c.tokens.output,
            reasoning_tokens: c.tokens.reasoning,
            cost: Decimal(c.cost),
            list_cost: Decimal(c.list_cost),
            status: c.status,
            outcome: c.outcome.clone(),
            latency_ms: c.latency_ms,
            transaction_id: c.tx.map(|t| t.to_string()),
            created_at: Instant(c.at),
        }
    }
}

/// A page of calls.
#[derive(Serialize, ToSchema)]
struct CallPage {
    data: Vec<CallView>,
    /// Pass as `cursor` for the next (older) page, when this one is full.
    next_cursor: Option<String>,
}

/// `?from=&to=&limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CallsQuery {
    /// Calls settled at or after this instant; 30 days before `to` when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    from: Option<String>,
    /// Calls settled before this instant; through now when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    to: Option<String>,
    /// The page size, 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^-?[0-9]{1,18}:.*$")]
    cursor: Option<String>,
}

/// List an account's gateway calls
///
/// One record per call, newest first: key, project, model, tokens by
/// class, credits charged, list-price cost, status, latency, and the
/// ledger transaction that settled it.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/usage/calls",
    tag = "gateway",
    operation_id = "listUsageCalls",
    params(AccountPath, CallsQuery),
    responses(
        (status = 200, description = "A page of calls.", body = CallPage),
        (status = 400, description = "`invalid_id`, `invalid_timestamp`, `invalid_request`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn usage_calls(
    State(gateway): GatewayState,
    Query(query): Query<CallsQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let (from, to) = window(&gateway, query.from.as_deref(), query.to.as_deref())?;
    let limit = extract::limit(query.limit.as_deref())?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.split_once(':')
                .and_then(|(at, id)| {
                    Some((Timestamp::from_micros(at.parse().ok()?), id.to_owned()))
                })
                .ok_or_else(|| {
                    ApiError::InvalidRequest("cursor is not a page's next_cursor".into())
                })
        })
        .transpose()?;
    let store = gateway.store.as_ref();
    let page = store
        .calls(CallQuery {
            account,
            from,
            to,
            before,
            limit,
        })
        .await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|c| format!("{}:{}", c.at.micros(), c.id)))
        .flatten();
    Ok(render::json(
        StatusCode::OK,
        &CallPage {
            data: page.iter().map(CallView::new).collect(),
            next_cursor,
        },
    ))
}
