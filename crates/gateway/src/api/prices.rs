//! The price catalog: a model's price, the whole list, and the import of a price list.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::extract::{self, PathParam, Query};
use server::openapi::Doc;
use server::render::{self, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::records::{self, Doc as Record, Expect, Written};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::catalog::{self, ImportReport, check_model, check_price};
use crate::domain::import::Format;
use crate::domain::{Mode, ModelPrice, Percent, UsdPerMtok};
use crate::error::GatewayError;

use super::{GatewayState, ModelName};

/// The catalog's routes.
pub(super) fn routes(routes: &Routes<Arc<Gateway>>) -> Vec<Route> {
    use Access::Admin;
    vec![
        routes.route(Admin, Doc::of::<__path_list>(), list),
        routes.route(Admin, Doc::of::<__path_import>(), import),
        routes.route(Admin, Doc::of::<__path_get>(), get),
        routes.route(Admin, Doc::of::<__path_put>(), put),
        routes.route(Admin, Doc::of::<__path_delete>(), delete),
    ]
}

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
async fn put(
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
async fn get(
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
async fn delete(
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
async fn list(
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
async fn import(
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
