//! A call through the gateway: price it, hold its worst case, forward it to the model's
//! upstreams in turn, pass the answer on (streamed as it arrives), and settle the hold from the
//! usage the upstream reports, recording the call in the same write.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use ledger::{AccountId, Amount, ExternalId, HoldId, HoldTtl, Metadata};
use serde_json::Value;
use server::error::ApiError;
use server::{KeyKind, Principal};
use store::usage::{Call, CallTokens};
use store::{Charge, Command, Executed, Op, Outcome, Refused};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::Gateway;
use crate::config::Upstream;
use crate::domain::{self, Mode, ModelPrice, Percent, Tokens, Wire};
use crate::error::GatewayError;
use crate::limit::{Adjusted, Window};
use crate::sse::{Event, Splitter};
use server::account_billing::BillingMode;

/// The largest request body a gateway call may send: prompts are large.
pub const GATEWAY_BODY_LEN_MAX: usize = 16 * 1024 * 1024;

/// Output tokens a call is held for when neither the request nor the
/// catalog bounds them.
pub const OUTPUT_BOUND_DEFAULT: u64 = 4096;

/// Events a stream keeps between the upstream and a slow client.
const STREAM_QUEUE: usize = 64;

/// Bytes of prompt per token when a stream ends without reporting usage:
/// the usual average of English text for the providers' tokenizers.
pub const BYTES_PER_TOKEN_ESTIMATE: u64 = 4;

/// The endpoints the gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// OpenAI's `POST /v1/chat/completions`.
    Chat,
    /// OpenAI's `POST /v1/embeddings`.
    Embeddings,
    /// Anthropic's `POST /v1/messages`.
    Messages,
}

impl Endpoint {
    /// The wire format the caller speaks.
    pub fn wire(self) -> Wire {
        match self {
            Endpoint::Chat | Endpoint::Embeddings => Wire::Openai,
            Endpoint::Messages => Wire::Anthropic,
        }
    }

    /// How the caller's errors are written.
    pub fn dialect(self) -> fn(&ApiError) -> Response {
        match self.wire() {
            Wire::Openai => crate::error::openai_error,
            Wire::Anthropic => crate::error::anthropic_error,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
        }
    }

    fn mode(self) -> Mode {
        match self {
            Endpoint::Embeddings => Mode::Embedding,
            Endpoint::Chat | Endpoint::Messages => Mode::Chat,
        }
    }
}

/// How a call is paid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paid {
    /// In credits, through the operator's upstreams.
    Credits,
    /// With the account's own key; a fee of this share of the list price.
    Byok(Percent),
}

/// A call between its hold and its settle.
struct Pending {
    request_id: String,
    account: AccountId,
    key_id: String,
    project: Option<String>,
    model: String,
    provider: String,
    price: Option<Arc<ModelPrice>>,
    paid: Paid,
    /// The hold, when the call may cost credits.
    hold: Option<HoldId>,
    held: Amount,
    /// The key's spend window the hold counts in.
    window: Option<Window>,
    /// The key and the tokens a minute it is held to, when it is.
    token_rate: Option<(Arc<str>, u32)>,
    prompt_bytes: u64,
    started: std::time::Instant,
}

/// Answers one gateway call, in the caller's wire format whatever happens.
pub async fn serve(gateway: Arc<Gateway>, endpoint: Endpoint, request: Request) -> Response {
    match handle(gateway, endpoint, request).await {
        Ok(response) => response,
        Err(error) => endpoint.dialect()(&error),
    }
}

/// Where a call goes: the upstreams to try in order and the client to use.
struct Route {
    upstreams: Vec<(String, Upstream)>,
    byok: bool,
}

async fn handle(
    gateway: Arc<Gateway>,
    endpoint: Endpoint,
    request: Request,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(ApiError::Unauthorized)?;
    let account = match (principal.kind, &principal.account) {
        (KeyKind::Customer, Some(account)) => account.clone(),
        _ => {
            return Err(ApiError::Forbidden {
                scope: KeyKind::Customer.code(),
            });
        }
    };
    // Tokens a minute: a call starts only while the key's bucket holds a
    // token; its tokens are taken when it is settled.
    let token_rate = principal
        .token_rate_limit
        .or(gateway.config.tokens_per_minute)
        .map(|rate| (principal.key_id.clone(), rate));
    let mut tokens_left = None;
    if let Some((key_id, rate)) = &token_rate {
        let now = gateway.clock.now().micros();
        match gateway.token_limits.check(key_id, *rate, now) {
            domain::TokenCheck::Allowed { remaining } => tokens_left = Some((*rate, remaining, 0)),
            domain::TokenCheck::Limited { retry_after_secs } => {
                if let Some(metrics) = gateway.metrics() {
                    metrics.rate_limited();
                }
                let refusal = ApiError::RateLimited {
                    limit: *rate,
                    retry_after_secs,
                };
                let mut response = endpoint.dialect()(&refusal);
                // `RateLimit-*` count requests: a refusal for tokens says so
                // in the headers the providers use for tokens instead.
                for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
                    response.headers_mut().remove(name);
                }
                token_headers(&mut response, *rate, 0, retry_after_secs);
                return Ok(response);
            }
        }
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, GATEWAY_BODY_LEN_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit_bytes: GATEWAY_BODY_LEN_MAX,
        })?;
    server::extract::check_content_type(&parts.headers, &body)?;
    let mut json: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not JSON: {e}")))?;
    let Some(object) = json.as_object_mut() else {
        return Err(ApiError::InvalidRequest(
            "the body must be a JSON object".into(),
        ));
    };
    let model = match object.get("model") {
        Some(Value::String(model)) => model.clone(),
        _ => return Err(ApiError::InvalidRequest("`model` is required".into())),
    };
    let stream =
        endpoint != Endpoint::Embeddings && matches!(object.get("stream"), Some(Value::Bool(true)));
    let store = gateway.store.as_ref();
    let billing = gateway.billing_of(&account).await?;
    let price = gateway.catalog.price(store, &model).await?;
    let paid = match billing.billing_mode {
        BillingMode::Credits => Paid::Credits,
        BillingMode::Byok => Paid::Byok(match &billing.byok_fee_percent {
            Some(fee) => Percent::parse(fee).map_err(|_| {
                ApiError::Internal(format!("the account's BYOK fee {fee:?} cannot be read"))
            })?,
            None => gateway.config.byok_fee,
        }),
    };
    let needs_price = match paid {
        Paid::Credits => true,
        // A BYOK call with no fee costs nothing in credits: a model without
        // a price is served, and recorded at no list price.
        Paid::Byok(fee) => fee != Percent::ZERO,
    };
    if price.is_none() && needs_price {
        return Err(GatewayError::ModelNotPriced(model.clone()).into());
    }
    if let Some(price) = &price
        && price.mode != endpoint.mode()
    {
        return Err(GatewayError::ModelNotSupported(format!(
            "the model {model:?} is not {} model",
            match endpoint.mode() {
                Mode::Chat => "a chat",
                Mode::Embedding => "an embedding",
            }
        ))
        .into());
    }
    let provider = match &price {
        Some(price) => price.provider.clone(),
        None => match endpoint.wire() {
            Wire::Openai => crate::config::OPENAI_UPSTREAM.to_owned(),
            Wire::Anthropic => crate::config::ANTHROPIC_UPSTREAM.to_owned(),
        },
    };
    if Wire::of_provider(&provider) != endpoint.wire() {
        return Err(GatewayError::ModelNotSupported(format!(
            "the model {model:?} is served in {} wire format: call {}",
            match Wire::of_provider(&provider) {
                Wire::Openai => "OpenAI's",
                Wire::Anthropic => "Anthropic's",
            },
            match Wire::of_provider(&provider) {
                Wire::Openai => "/v1/chat/completions",
                Wire::Anthropic => "/v1/messages",
            }
        ))
        .into());
    }
    let route = match paid {
        Paid::Credits => {
            let price = price.as_ref().expect("credits calls are priced");
            let routed: Vec<(String, Upstream)> = gateway
                .config
                .route_of(&price.upstreams, price.wire())
                .into_iter()
                .filter(|(_, u)| u.wire == endpoint.wire())
                .map(|(name, u)| (name.to_owned(), u.clone()))
                .collect();
            if routed.is_empty() {
                return Err(GatewayError::UpstreamNotConfigured(format!(
                    "no upstream is configured for the model {model:?}"
                ))
                .into());
            }
            // An upstream without the operator's key is never called: the
            // provider would refuse it, or a keyless server answer in its place.
            let (upstreams, keyless): (Vec<_>, Vec<_>) =
                routed.into_iter().partition(|(_, u)| u.usable());
            if upstreams.is_empty() {
                let names: Vec<&str> = keyless.iter().map(|(n, _)| n.as_str()).collect();
                return Err(GatewayError::UpstreamNotConfigured(format!(
                    "the model {model:?} goes to the upstream {} which has no API key: the \
                     operator sets one ({}), or declares it keyless",
                    names.join(", "),
                    names
                        .iter()
                        .map(|n| crate::config::key_setting(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into());
            }
            Route {
                upstreams,
                byok: false,
            }
        }
        Paid::Byok(_) => Route {
            upstreams: vec![(
                provider.clone(),
                gateway.byok_upstream(&account, &provider).await?,
            )],
            byok: true,
        },
    };

    // The hold: every byte of the body a prompt token, and every output
    // token the call may write, each at the dearest price of its side.
    let prompt_bytes = body.len() as u64;
    let output_bound = match endpoint {
        Endpoint::Embeddings => 0,
        _ => ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|f| object.get(*f).and_then(Value::as_u64))
            .or(price.as_ref().and_then(|p| p.max_output_tokens))
            .unwrap_or(OUTPUT_BOUND_DEFAULT),
    };
    let too_large = |_| ApiError::InvalidRequest("the call's worst case is too large".into());
    let rate = gateway.config.rate;
    let held = match (&price, paid) {
        (Some(price), Paid::Credits) => {
            domain::worst_case(price, prompt_bytes, output_bound, rate).map_err(too_large)?
        }
        (Some(price), Paid::Byok(fee)) => {
            let list = domain::Rate {
                credits_per_usd: rate.credits_per_usd,
                markup: Percent::ZERO,
            };
            let mut list_price = (**price).clone();
            list_price.markup_percent = None;
            let worst = domain::worst_case(&list_price, prompt_bytes, output_bound, list)
                .map_err(too_large)?;
            domain::fee(worst, fee).map_err(too_large)?
        }
        (None, _) => Amount::ZERO,
    };
    let request_id = request_id();
    let window = principal
        .spend_limit
        .map(|limit| Window::of(&principal.key_id, limit, gateway.clock.now()));
    let hold = if held.is_positive() {
        let op = Op::Hold {
            account: account.clone(),
            amount: held,
            ttl: HoldTtl::from_secs(gateway.config.hold_ttl_secs).map_err(ApiError::Rejected)?,
            metadata: call_metadata(&request_id, &model),
        };
        let executed = match &window {
            None => gateway.store.execute(Command::new(op)).await?,
            Some(window) => {
                match gateway
                    .limiter
                    .adjust(store, window, held.micros(), true, || {
                        Command::new(op.clone())
                    })
                    .await?
                {
                    Adjusted::Ran(executed) => executed,
                    Adjusted::OverLimit { spent } => {
                        return Err(GatewayError::KeySpendLimit {
                            limit: Amount::from_micros(window.limit.amount_micros),
                            spent,
                        }
                        .into());
                    }
                }
            }
        };
        match executed {
            Executed::Fresh(Ok(Outcome::Held { hold, .. })) => Some(hold.id),
            Executed::Fresh(Err(refused)) => return Err(refused.into()),
            other => return Err(ApiError::Internal(format!("a hold answered {other:?}"))),
        }
    } else {
        None
    };
    let pending = Pending {
        request_id,
        account,
        key_id: principal.key_id.to_string(),
        project: principal.project.as_deref().map(str::to_owned),
        model: model.clone(),
        provider,
        price: price.clone(),
        paid,
        hold,
        held,
        window,
        token_rate,
        prompt_bytes,
        started,
    };

    // What goes upstream: the upstream's name for the model, and, for an
    // OpenAI stream, a request for the usage chunk.
    let client_wants_usage = object
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(upstream_model) = price.as_ref().and_then(|p| p.upstream_model.as_ref()) {
        object.insert("model".into(), Value::String(upstream_model.clone()));
    }
    if stream && endpoint == Endpoint::Chat {
        let options = object
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(options) = options.as_object_mut() {
            options.insert("include_usage".into(), Value::Bool(true));
        }
    }
    let forwarded = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
    // The rest runs as a task of its own: a caller that goes away while the
    // upstream works does not stop the call, which the provider bills, and
    // it is settled (or its hold released) all the same.
    let call = Forward {
        endpoint,
        headers: parts.headers,
        body: forwarded,
        route,
        stream,
        client_wants_usage,
    };
    let mut response = tokio::spawn(forward(gateway, pending, call).in_current_span())
        .await
        .map_err(|e| ApiError::Internal(format!("a gateway call's task failed: {e}")))??;
    if let Some((rate, remaining, reset_secs)) = tokens_left {
        token_headers(&mut response, rate, remaining, reset_secs);
    }
    Ok(response)
}

/// The key's tokens a minute on an answer, as the providers write them:
/// `x-ratelimit-limit-tokens`, `x-ratelimit-remaining-tokens` (when the
/// call started) and, on a refusal, `x-ratelimit-reset-tokens` (until a
/// token is back, e.g. `18s`).
fn token_headers(response: &mut Response, rate: u32, remaining: u64, reset_secs: u64) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit-tokens", rate.into());
    headers.insert("x-ratelimit-remaining-tokens", remaining.into());
    if reset_secs > 0
        && let Ok(reset) = HeaderValue::from_str(&format!("{reset_secs}s"))
    {
        headers.insert("x-ratelimit-reset-tokens", reset);
    }
}

/// What goes upstream, and how the answer comes back.
struct Forward {
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Bytes,
    route: Route,
    stream: bool,
    client_wants_usage: bool,
}

/// Tries the call's upstreams in turn and answers the caller; settles the
/// call, or releases its hold when every upstream failed.
async fn forward(
    gateway: Arc<Gateway>,
    pending: Pending,
    call: Forward,
) -> Result<Response, ApiError> {
    let Forward {
        endpoint,
        headers,
        body: forwarded,
        route,
        stream,
        client_wants_usage,
    } = call;
    let http = if route.byok {
        &gateway.byok_http
    } else {
        &gateway.http
    };

    let mut last_failure = String::new();
    for (name, upstream) in &route.upstreams {
        let sent = send(http, upstream, endpoint, &headers, forwarded.clone()).await;
        let response = match sent {
            Ok(response) if response.status().is_server_error() => {
                if let Some(metrics) = gateway.metrics() {
                    metrics.upstream_failed(name, "server_error");
                }
                last_failure = format!("{name} answered {}", response.status());
                tracing::warn!(upstream = %name, status = %response.status(), "upstream failed; trying the next");
                continue;
            }
            Ok(response) => response,
            Err(error) => {
                if let Some(metrics) = gateway.metrics() {
                    metrics.upstream_failed(name, "unreachable");
                }
                last_failure = format!("{name} could not be reached");
                tracing::warn!(upstream = %name, error = %without_url(&error), "upstream unreachable; trying the next");
                continue;
            }
        };
        let status = response.status();
        if !status.is_success() {
            // The upstream refused the request itself (a bad parameter, a
            // prompt too long, a customer's key it does not know): the
            // caller sees its answer, and pays nothing.
            let bytes = response.bytes().await.unwrap_or_default();
            release(&gateway, &pending, status.as_u16(), "upstream_refused").await;
            return Ok(passthrough(
                status,
                "application/json",
                bytes,
                &pending.request_id,
            ));
        }
        if stream {
            return Ok(stream_through(
                gateway,
                endpoint,
                pending,
                response,
                client_wants_usage,
            ));
        }
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(_) => {
                last_failure = format!("{name} broke off its answer");
                continue;
            }
        };
        let tokens = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| usage_of(endpoint, v.get("usage")?));
        let tokens = tokens.unwrap_or_else(|| estimate(&pending, 0));
        // Settled before the answer goes: a call answered is a call billed,
        // even when the process dies the next instant.
        settle(&gateway, &pending, tokens, 200, "ok").await;
        return Ok(passthrough(
            status,
            "application/json",
            bytes,
            &pending.request_id,
        ));
    }
    release(&gateway, &pending, 502, "upstream_error").await;
    Err(GatewayError::UpstreamUnavailable(last_failure).into())
}

/// A gateway call's id: `gw_` and a unique suffix (see
/// [`server::request_id::unique`]).
fn request_id() -> String {
    server::request_id::unique("gw_")
}

fn call_metadata(request_id: &str, model: &str) -> Metadata {
    let text = serde_json::json!({"gateway_request": request_id, "model": model}).to_string();
    Metadata::from_json_object(text).unwrap_or_default()
}

/// An error's text without the URL, which may name a customer's own upstream.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    kind.to_owned()
}

async fn send(
    http: &reqwest::Client,
    upstream: &Upstream,
    endpoint: Endpoint,
    incoming: &HeaderMap,
    body: Bytes,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = http
        .post(upstream.url(endpoint.path()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    // The request's id, so that the upstream's logs can be matched to ours.
    if let Some(id) = incoming.get(server::request_id::INCOMING) {
        request = request.header(server::request_id::INCOMING, id.clone());
    }
    match upstream.wire {
        Wire::Openai => {
            if let Some(key) = &upstream.api_key {
                request = request.bearer_auth(key.expose());
            }
        }
        Wire::Anthropic => {
            if let Some(key) = &upstream.api_key {
                request = request.header("x-api-key", key.expose());
            }
            let version = incoming
                .get("anthropic-version")
                .cloned()
                .unwrap_or(HeaderValue::from_static("2023-06-01"));
            request = request.header("anthropic-version", version);
            if let Some(beta) = incoming.get("anthropic-beta") {
                request = request.header("anthropic-beta", beta.clone());
            }
        }
    }
    request.send().await
}

fn passthrough(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    request_id: &str,
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", id);
    }
    response
}

/// Tokens from a `usage` object of the endpoint's wire format.
pub fn usage_of(endpoint: Endpoint, usage: &Value) -> Option<Tokens> {
    let n = |v: &Value, path: &[&str]| -> u64 {
        path.iter()
            .try_fold(v, |v, key| v.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    if !usage.is_object() {
        return None;
    }
    Some(match endpoint {
        Endpoint::Chat | Endpoint::Embeddings => Tokens::openai(
            n(usage, &["prompt_tokens"]),
            n(usage, &["prompt_tokens_details", "cached_tokens"]),
            n(usage, &["completion_tokens"]),
            n(usage, &["completion_tokens_details", "reasoning_tokens"]),
        ),
        Endpoint::Messages => Tokens::anthropic(
            n(usage, &["input_tokens"]),
            n(usage, &["cache_read_input_tokens"]),
            n(usage, &["cache_creation_input_tokens"]),
            n(usage, &["output_tokens"]),
        ),
    })
}

/// What a call is billed when the upstream reported no usage: the prompt
/// at one token per four bytes of the request body, rounded up, and one
/// output token per content event streamed.
fn estimate(pending: &Pending, content_events: u64) -> Tokens {
    Tokens {
        input: pending.prompt_bytes.div_ceil(BYTES_PER_TOKEN_ESTIMATE),
        output: content_events,
        ..Tokens::default()
    }
}

/// What the stream pump learns from the events it passes on.
#[derive(Default)]
struct Meter {
    /// Usage reported whole (OpenAI's last chunk).
    usage: Option<Tokens>,
    /// Anthropic's `message_start` usage: input, cache read, cache write, output so far.
    started: Option<(u64, u64, u64, u64)>,
    /// Anthropic's `message_delta` output tokens (cumulative).
    output: Option<u64>,
    /// Events that carried content.
    content_events: u64,
    /// Whether the stream ended as its format ends one.
    finished: bool,
}

impl Meter {
    /// Reads one event; answers whether the caller should receive it.
    fn read(&mut self, endpoint: Endpoint, event: &Event, client_wants_usage: bool) -> bool {
        if event.data == "[DONE]" {
            self.finished = true;
            return true;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return true;
        };
        match endpoint {
            Endpoint::Chat | Endpoint::Embeddings => {
                let choices = data.get("choices").and_then(Value::as_array);
                if choices.is_some_and(|c| {
                    c.iter().any(|choice| {
                        let delta = choice.get("delta");
                        delta
                            .and_then(|d| d.get("content"))
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.is_empty())
                            || delta.and_then(|d| d.get("tool_calls")).is_some()
                    })
                }) {
                    self.content_events += 1;
                }
                if let Some(usage) = data.get("usage").and_then(|u| usage_of(endpoint, u)) {
                    self.usage = Some(usage);
                    // The usage chunk the gateway asked for: passed on only
                    // when the caller asked for it too.
                    if choices.is_some_and(|c| c.is_empty()) && !client_wants_usage {
                        return false;
                    }
                }
            }
            Endpoint::Messages => match data.get("type").and_then(Value::as_str) {
                Some("message_start") => {
                    let u = data.get("message").and_then(|m| m.get("usage"));
                    let n = |k: &str| {
                        u.and_then(|u| u.get(k))
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                    };
                    self.started = Some((
                        n("input_tokens"),
                        n("cache_read_input_tokens"),
                        n("cache_creation_input_tokens"),
                        n("output_tokens"),
                    ));
                }
                Some("content_block_delta") => self.content_events += 1,
                Some("message_delta") => {
                    if let Some(output) = data
                        .get("usage")
                        .and_then(|u| u.get("output_tokens"))
                        .and_then(Value::as_u64)
                    {
                        self.output = Some(output);
                    }
                }
                Some("message_stop") => self.finished = true,
                _ => {}
            },
        }
        true
    }

    /// The tokens to bill, and whether the upstream reported them all.
    fn tokens(&self, pending: &Pending) -> (Tokens, bool) {
        if let Some(usage) = self.usage {
            return (usage, true);
        }
        match (self.started, self.output) {
            (Some((input, read, write, _)), Some(output)) => {
                (Tokens::anthropic(input, read, write, output), true)
            }
            (Some((input, read, write, so_far)), None) => (
                Tokens::anthropic(input, read, write, so_far.max(self.content_events)),
                false,
            ),
            _ => (estimate(pending, self.content_events), false),
        }
    }
}

/// Passes an upstream's event stream on as it arrives, and settles the
/// call when the upstream ends it, before the event that ends it goes on. A caller that goes away does not stop
/// the reading: the upstream still reports the usage it bills.
fn stream_through(
    gateway: Arc<Gateway>,
    endpoint: Endpoint,
    pending: Pending,
    upstream: reqwest::Response,
    client_wants_usage: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_QUEUE);
    let request_id = pending.request_id.clone();
    tokio::spawn(
        async move {
            let mut meter = Meter::default();
            let mut splitter = Splitter::default();
            let mut bytes = upstream.bytes_stream();
            let mut caller_gone = false;
            let mut broken = false;
            // The event that ends the stream (`[DONE]`, `message_stop`) and
            // anything after it wait until the call is settled: a caller
            // that saw its stream end saw a call billed, even when the
            // process dies the next instant.
            let mut ending: Vec<u8> = Vec::new();
            let deadline = tokio::time::Instant::now()
                + Duration::from_secs(gateway.config.hold_ttl_secs.max(1) as u64);
            loop {
                let next = tokio::time::timeout_at(deadline, bytes.next()).await;
                let chunk = match next {
                    Ok(Some(Ok(chunk))) => chunk,
                    Ok(None) => break,
                    Ok(Some(Err(_))) | Err(_) => {
                        broken = true;
                        break;
                    }
                };
                // The events of one read go on together: one write to the
                // caller, not one per event.
                let mut passed: Vec<u8> = Vec::new();
                for event in splitter.push(&chunk) {
                    if meter.read(endpoint, &event, client_wants_usage) {
                        let to = if meter.finished {
                            &mut ending
                        } else {
                            &mut passed
                        };
                        to.extend_from_slice(&event.raw);
                    }
                }
                if !passed.is_empty()
                    && !caller_gone
                    && tx.send(Ok(Bytes::from(passed))).await.is_err()
                {
                    caller_gone = true;
                }
            }
            if let Some(event) = splitter.finish()
                && meter.read(endpoint, &event, client_wants_usage)
            {
                if meter.finished {
                    ending.extend_from_slice(&event.raw);
                } else if !caller_gone {
                    let _ = tx.send(Ok(Bytes::from(event.raw))).await;
                }
            }
            let (tokens, reported) = meter.tokens(&pending);
            let outcome = match (caller_gone, broken || !meter.finished) {
                (true, _) => "client_closed",
                (false, true) => "upstream_cut",
                (false, false) if reported => "ok",
                (false, false) => "usage_estimated",
            };
            settle(&gateway, &pending, tokens, 200, outcome).await;
            if !ending.is_empty() && !caller_gone {
                let _ = tx.send(Ok(Bytes::from(ending))).await;
            }
            if broken && !caller_gone {
                // The caller learns the stream broke, rather than seeing it end.
                let _ = tx
                    .send(Err(std::io::Error::other(
                        "the upstream broke off the stream",
                    )))
                    .await;
            }
            drop(tx);
        }
        .in_current_span(),
    );
    let body = Body::from_stream(tokio_stream_of(rx));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", id);
    }
    response
}

/// A receiver as a stream of its items.
fn tokio_stream_of<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn record(
    pending: &Pending,
    tokens: &Tokens,
    cost: Amount,
    list_cost: Amount,
    status: u16,
    outcome: &str,
) -> Call {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Call {
        id: pending.request_id.clone(),
        account: pending.account.clone(),
        key_id: Some(pending.key_id.clone()),
        project: pending.project.clone(),
        provider: pending.provider.clone(),
        model: pending.model.clone(),
        mode: match pending.paid {
            Paid::Credits => BillingMode::Credits.code(),
            Paid::Byok(_) => BillingMode::Byok.code(),
        }
        .to_owned(),
        tokens: CallTokens {
            input: count(tokens.input),
            cached: count(tokens.cached),
            cache_write: count(tokens.cache_write),
            output: count(tokens.output),
            reasoning: count(tokens.reasoning),
        },
        cost,
        list_cost,
        status,
        outcome: outcome.to_owned(),
        latency_ms: i64::try_from(pending.started.elapsed().as_millis()).unwrap_or(i64::MAX),
        tx: None,
        at: ledger::Timestamp::from_micros(0),
    }
}

/// What `tokens` cost the account, and what they cost at list price.
fn costs(gateway: &Gateway, pending: &Pending, tokens: &Tokens) -> (Amount, Amount) {
    let rate = gateway.config.rate;
    let Some(price) = &pending.price else {
        return (Amount::ZERO, Amount::ZERO);
    };
    // A cost beyond what an amount holds cannot come from a real call; the
    // hold's worst case is charged instead.
    let list = domain::list_cost(price, tokens, rate.credits_per_usd).unwrap_or(pending.held);
    let cost = match pending.paid {
        Paid::Credits => domain::cost(price, tokens, rate).unwrap_or(pending.held),
        Paid::Byok(fee) => domain::fee(list, fee).unwrap_or(pending.held),
    };
    (cost, list)
}

/// Runs a settling command, with the key's window adjusted by `delta` in
/// the same write when the key has a limit.
async fn run_settling(
    gateway: &Gateway,
    pending: &Pending,
    delta: i64,
    command: impl Fn() -> Command,
) -> Result<Executed, store::StoreError> {
    match &pending.window {
        None => gateway.store.execute(command()).await,
        Some(window) => match gateway
            .limiter
            .adjust(gateway.store.as_ref(), window, delta, false, command)
            .await?
        {
            Adjusted::Ran(executed) => Ok(executed),
            Adjusted::OverLimit { .. } => unreachable!("a settle is never checked"),
        },
    }
}

/// Turns the hold into the call's cost, recording the call in the same
/// write. A hold that expired meanwhile is replaced by a consume under the
/// call's request id, so the call is charged once either way. A call with
/// no hold (BYOK without a fee) is recorded beside a settle of its account.
async fn settle(gateway: &Gateway, pending: &Pending, tokens: Tokens, status: u16, outcome: &str) {
    let (cost, list_cost) = costs(gateway, pending, &tokens);
    if let Some((key_id, rate)) = &pending.token_rate {
        let used = tokens.total_input().saturating_add(tokens.total_output());
        let now = gateway.clock.now().micros();
        gateway.token_limits.charge(key_id, *rate, used, now);
    }
    // Counted when the call is settled, whether its write then succeeds.
    if let Some(metrics) = gateway.metrics() {
        let classes = [
            ("input", tokens.input),
            ("cached", tokens.cached),
            ("cache_write", tokens.cache_write),
            ("output", tokens.output),
            ("reasoning", tokens.reasoning),
        ];
        metrics.gateway_call(&pending.model, &classes, cost.micros() as f64 / 1e6);
    }
    let call = record(pending, &tokens, cost, list_cost, status, outcome);
    let metadata = call_metadata(&pending.request_id, &pending.model);
    let delta = cost.micros() - pending.held.micros();
    let Some(hold) = pending.hold else {
        let op = Op::Settle {
            account: pending.account.clone(),
        };
        let result = run_settling(gateway, pending, delta, || {
            Command::new(op.clone()).with_call(call.clone())
        })
        .await;
        if !matches!(result, Ok(Executed::Fresh(Ok(_)))) {
            tracing::error!(request = %pending.request_id, ?result, "recording a gateway call failed");
        }
        return;
    };
    let commit = Op::Commit {
        hold,
        amount: cost,
        metadata: metadata.clone(),
    };
    let result = run_settling(gateway, pending, delta, || {
        Command::new(commit.clone()).with_call(call.clone())
    })
    .await;
    match result {
        Ok(Executed::Fresh(Ok(_))) => {}
        Ok(Executed::Fresh(Err(Refused::Ledger(ledger::Reject::HoldNotPending { .. })))) => {
            // The hold expired and was released: its reservation left the
            // window with it, so the window takes the whole cost.
            let consume = Op::Consume {
                account: pending.account.clone(),
                charge: Charge::Amount(cost),
                metadata,
                external_id: ExternalId::parse(&pending.request_id).ok(),
            };
            let consumed = run_settling(gateway, pending, cost.micros(), || {
                Command::new(consume.clone()).with_call(call.clone())
            })
            .await;
            if !matches!(consumed, Ok(Executed::Fresh(Ok(_)) | Executed::Existing(_))) {
                tracing::error!(request = %pending.request_id, ?consumed, "charging a call whose hold expired failed");
            }
        }
        other => {
            tracing::error!(request = %pending.request_id, ?other, "settling a gateway call failed; its hold will expire");
        }
    }
}

/// Returns the hold: the call failed and is not charged. Recorded with its
/// status, at no cost.
async fn release(gateway: &Gateway, pending: &Pending, status: u16, outcome: &str) {
    let call = record(
        pending,
        &Tokens::default(),
        Amount::ZERO,
        Amount::ZERO,
        status,
        outcome,
    );
    let op = match pending.hold {
        Some(hold) => Op::Release {
            hold,
            metadata: call_metadata(&pending.request_id, &pending.model),
        },
        None => Op::Settle {
            account: pending.account.clone(),
        },
    };
    let result = run_settling(gateway, pending, -pending.held.micros(), || {
        Command::new(op.clone()).with_call(call.clone())
    })
    .await;
    if !matches!(result, Ok(Executed::Fresh(Ok(_)))) {
        tracing::error!(request = %pending.request_id, ?result, "releasing a failed call's hold failed; it will expire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        Event {
            raw: format!("data: {data}\n\n").into_bytes(),
            name: String::new(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn the_openai_usage_chunk_is_read_and_passed_on_only_when_asked_for() {
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":6}}}"#;
        let content = r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#;
        for asked in [false, true] {
            let mut meter = Meter::default();
            assert!(meter.read(Endpoint::Chat, &event(content), asked));
            assert_eq!(meter.read(Endpoint::Chat, &event(usage), asked), asked);
            assert!(meter.read(Endpoint::Chat, &event("[DONE]"), asked));
            assert!(meter.finished);
            assert_eq!(meter.content_events, 1);
            assert_eq!(meter.usage, Some(Tokens::openai(10, 6, 4, 0)));
        }
    }

    #[test]
    fn anthropic_usage_comes_from_message_start_and_message_delta() {
        let mut meter = Meter::default();
        let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":12,"cache_read_input_tokens":100,"cache_creation_input_tokens":7,"output_tokens":1}}}"#;
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#;
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#;
        for data in [start, delta, delta, end, r#"{"type":"message_stop"}"#] {
            assert!(meter.read(Endpoint::Messages, &event(data), false));
        }
        assert!(meter.finished);
        assert_eq!(meter.output, Some(9));
        assert_eq!(meter.started, Some((12, 100, 7, 1)));
        assert_eq!(meter.content_events, 2);
    }

    #[test]
    fn usage_objects_of_each_format_become_token_classes() {
        let openai = serde_json::json!({"prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 80},
            "completion_tokens_details": {"reasoning_tokens": 5}});
        assert_eq!(
            usage_of(Endpoint::Chat, &openai),
            Some(Tokens::openai(100, 80, 20, 5))
        );
        let embeddings = serde_json::json!({"prompt_tokens": 8, "total_tokens": 8});
        assert_eq!(
            usage_of(Endpoint::Embeddings, &embeddings).unwrap().input,
            8
        );
        let anthropic = serde_json::json!({"input_tokens": 3, "cache_read_input_tokens": 50,
            "cache_creation_input_tokens": 10, "output_tokens": 7});
        assert_eq!(
            usage_of(Endpoint::Messages, &anthropic),
            Some(Tokens::anthropic(3, 50, 10, 7))
        );
        assert_eq!(usage_of(Endpoint::Chat, &Value::Null), None);
    }
}
