//! Calls to models: OpenAI's chat completions and embeddings, and Anthropic's messages.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use server::openapi::Doc;
use server::routes::{Idempotency, Routes};
use server::{Access, Route};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoResponses, ToSchema};

use crate::Gateway;
use crate::error::{anthropic_error, openai_error};
use crate::proxy::{self, Endpoint};

use super::{GatewayState, ModelName};

/// The calls' routes, for customer keys: each passes an upstream's refusal
/// on, and writes its errors as its callers' API does.
pub(super) fn routes(routes: &Routes<Arc<Gateway>>) -> Vec<Route> {
    use Access::Customer;
    // A call to a model is metered once per call by its own request id and
    // may stream its answer, which is not kept: the OpenAI and Anthropic
    // SDKs send a key on every request, which is checked and let through.
    // A model may think for minutes before its answer begins.
    let calls = Idempotency::NotKept("a model's answer is streamed and metered per call");
    vec![
        routes
            .route(
                Customer,
                Doc::of::<__path_chat_completions>().passing_upstream_errors(),
                chat_completions,
            )
            .with_dialect(openai_error)
            .with_idempotency(calls)
            .waiting_on_upstream(),
        routes
            .route(
                Customer,
                Doc::of::<__path_embeddings>().passing_upstream_errors(),
                embeddings,
            )
            .with_dialect(openai_error)
            .with_idempotency(calls)
            .waiting_on_upstream(),
        routes
            .route(
                Customer,
                Doc::of::<__path_messages>().passing_upstream_errors(),
                messages,
            )
            .with_dialect(anthropic_error)
            .with_idempotency(calls)
            .waiting_on_upstream(),
    ]
}

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
        (status = 402, description = "`insufficient_credits`: the account cannot cover the \
            call's worst case; the upstream was not called. With `CREDITD_TOP_UP_URL` set, the \
            `error` object carries it as `top_up_url`."),
        (status = 502, description = "`upstream_unavailable`: every upstream failed; nothing \
            was charged."),
        CallRefusals,
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
        (status = 402, description = "`insufficient_credits`."),
        (status = 502, description = "`upstream_unavailable`."),
        CallRefusals,
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
        (status = 402, description = "`insufficient_credits`."),
        (status = 502, description = "`upstream_unavailable`."),
        CallRefusals,
    ),
)]
async fn messages(State(gateway): GatewayState, request: Request) -> Response {
    proxy::serve(gateway, Endpoint::Messages, request).await
}

/// The refusals every call route documents alike: a request that is not
/// one, a missing key, and no upstream for the model.
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "only its description is used; no value of it is made"
)]
enum CallRefusals {
    #[response(
        status = 400,
        description = "`malformed_json`, `invalid_request`, `model_not_priced`, \
            `model_not_supported`, or the upstream's own refusal."
    )]
    Invalid,
    #[response(status = 401, description = "`unauthorized`.")]
    Unauthorized,
    #[response(status = 503, description = "`upstream_not_configured`.")]
    NotConfigured,
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
