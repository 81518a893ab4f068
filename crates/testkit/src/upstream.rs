//! A fake LLM provider on port 0 that speaks OpenAI's and Anthropic's wire formats.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The assistant's reply to every chat completion and message.
pub const REPLY_TEXT: &str = "Hello from the fake upstream.";

/// The vector returned for every embedding input.
pub const FAKE_EMBEDDING: [f32; 8] = [0.5, -0.25, 0.125, 1.0, -1.0, 0.75, 0.0, 0.0625];

/// A fake provider serving `/v1/chat/completions`, `/v1/embeddings`,
/// `/v1/models` and `/v1/messages` on `127.0.0.1`; dropping it stops it.
pub struct FakeUpstream {
    base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// What the next request does, queued with [`FakeUpstream::push`].
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answers normally.
    Ok,
    /// Answers this status with the error body of the path's wire format.
    Fail(u16),
    /// Sends nothing until [`FakeUpstream::release_stalled`], then answers
    /// normally; a client that goes away first just goes away.
    Stall,
    /// Sends this many content chunks of a stream, then drops the connection
    /// so the client's read fails; a non-streaming answer sends its status
    /// and headers, then fails the same way.
    Cut {
        /// Content chunks sent before the cut.
        after_chunks: usize,
    },
    /// Waits this long between the chunks of a stream.
    SlowChunks {
        /// The pause between two chunks.
        delay_ms: u64,
    },
}

/// The usage the fake reports, in each provider's own terms.
#[derive(Clone, Copy, Debug)]
pub struct FakeUsage {
    /// OpenAI's prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// OpenAI's cached prompt tokens.
    pub cached_tokens: u64,
    /// OpenAI's completion tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// OpenAI's reasoning tokens.
    pub reasoning_tokens: u64,
    /// Anthropic's uncached input tokens.
    pub input_tokens: u64,
    /// Anthropic's input tokens read from the cache.
    pub cache_read_input_tokens: u64,
    /// Anthropic's input tokens written to the cache.
    pub cache_creation_input_tokens: u64,
    /// Anthropic's output tokens.
    pub output_tokens: u64,
}

impl Default for FakeUsage {
    /// Twelve tokens in and five out, nothing cached, no reasoning.
    fn default() -> Self {
        FakeUsage {
            prompt_tokens: 12,
            cached_tokens: 0,
            completion_tokens: 5,
            reasoning_tokens: 0,
            input_tokens: 12,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
            output_tokens: 5,
        }
    }
}

/// A request as the fake received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `x-api-key` header.
    pub x_api_key: Option<String>,
    /// The `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// The `x-request-id` header.
    pub request_id: Option<String>,
    /// The body as JSON, or `Null` when it is not JSON.
    pub body: Value,
}

struct Shared {
    // A `std::sync::Mutex`, not a Tokio one, because nothing awaits while it is held.
    inner: Mutex<Inner>,
    signal: watch::Sender<Signal>,
}

struct Inner {
    queue: VecDeque<Behaviour>,
    usage: FakeUsage,
    seen: Vec<Seen>,
}

/// What stalled requests and running streams watch for.
#[derive(Clone, Copy, Default)]
struct Signal {
    releases: u64,
    closed: bool,
}

#[derive(Clone, Copy)]
enum Format {
    OpenAi,
    Anthropic,
}

/// A successful answer before the behaviour shapes its delivery.
enum Reply {
    Json(Value),
    /// The frames before, of and after the content.
    Stream(Vec<String>, Vec<String>, Vec<String>),
}

impl FakeUpstream {
    /// Starts the fake on a free port of `127.0.0.1`.
    pub async fn start() -> FakeUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake upstream");
        let port = listener.local_addr().expect("a local address").port();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                usage: FakeUsage::default(),
                seen: Vec::new(),
            }),
            signal: watch::Sender::new(Signal::default()),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeUpstream {
            base_url: format!("http://127.0.0.1:{port}"),
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash or `/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Queues what a later request does; each request takes the next one,
    /// and an empty queue answers normally.
    pub fn push(&self, behaviour: Behaviour) {
        self.shared.lock().queue.push_back(behaviour);
    }

    /// Sets the usage reported by the requests that arrive from now on.
    pub fn set_usage(&self, usage: FakeUsage) {
        self.shared.lock().usage = usage;
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// Lets every request stalled so far answer normally; later stalls wait
    /// for the next release.
    pub fn release_stalled(&self) {
        self.shared.signal.send_modify(|s| s.releases += 1);
    }
}

impl Drop for FakeUpstream {
    /// Stops accepting, and cuts the requests still open on kept-alive
    /// connections, stalled ones and streams included.
    fn drop(&mut self) {
        self.server.abort();
        self.shared.signal.send_modify(|s| s.closed = true);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // Watched from before the request is recorded: a release that follows
    // the moment a test sees the request is never missed.
    let mut signal = shared.signal.subscribe();
    let start = *signal.borrow_and_update();
    // One lock for recording and popping, so attempts and behaviours pair
    // up in arrival order even under concurrent requests.
    let (behaviour, usage, n) = {
        let mut inner = shared.lock();
        inner.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            authorization: header("authorization"),
            x_api_key: header("x-api-key"),
            anthropic_version: header("anthropic-version"),
            request_id: header("x-request-id"),
            body: request.clone().unwrap_or(Value::Null),
        });
        let behaviour = inner.queue.pop_front().unwrap_or(Behaviour::Ok);
        (behaviour, inner.usage, inner.seen.len())
    };
    let format = if path.starts_with("/v1/messages") {
        Format::Anthropic
    } else {
        Format::OpenAi
    };

    if start.closed {
        return aborted();
    }
    if let Behaviour::Stall = behaviour {
        let released = signal
            .wait_for(|s| s.closed || s.releases != start.releases)
            .await
            .is_ok_and(|s| !s.closed);
        if !released {
            return aborted();
        }
    }
    if let Behaviour::Fail(status) = behaviour {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(format, status, "fake failure");
    }

    let reply = match (method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => Reply::Json(json!({
            "object": "list",
            "data": [{
                "id": "fake-model", "object": "model", "created": 1_700_000_000, "owned_by": "fake",
            }],
        })),
        ("POST", "/v1/chat/completions" | "/v1/embeddings" | "/v1/messages") => {
            let Some(request) = request else {
                let message = "We could not parse the JSON body of your request.";
                return error(format, StatusCode::BAD_REQUEST, message);
            };
            match path.as_str() {
                "/v1/chat/completions" => chat(&request, n, &usage),
                "/v1/messages" => messages(&request, n, &usage),
                _ => match embeddings(&request, &usage) {
                    Some(body) => Reply::Json(body),
                    None => {
                        let message = "'input' must be a string or an array.";
                        return error(format, StatusCode::BAD_REQUEST, message);
                    }
                },
            }
        }
        _ => {
            let message = format!("Invalid URL ({method} {path})");
            return error(format, StatusCode::NOT_FOUND, &message);
        }
    };

    match (reply, behaviour) {
        (Reply::Json(_), Behaviour::Cut { .. }) => cut(Vec::new(), signal, "application/json"),
        (Reply::Json(body), _) => json_response(StatusCode::OK, &body),
        (Reply::Stream(head, content, _), Behaviour::Cut { after_chunks }) => {
            let frames = head
                .into_iter()
                .chain(content.into_iter().take(after_chunks));
            cut(frames.collect(), signal, "text/event-stream")
        }
        (Reply::Stream(head, content, tail), behaviour) => {
            let delay = match behaviour {
                Behaviour::SlowChunks { delay_ms } => Duration::from_millis(delay_ms),
                _ => Duration::ZERO,
            };
            let frames = [head, content, tail].concat().into_iter().map(Ok).collect();
            streamed(frames, delay, signal, "text/event-stream")
        }
    }
}

/// A response that fails before its head is written, as a dropped
/// connection does.
fn aborted() -> Response {
    let failure = io::Error::other("the fake upstream was dropped");
    Body::from_stream(futures_util::stream::once(async {
        Err::<Bytes, _>(failure)
    }))
    .into_response()
}

/// A body that sends `frames` and then fails, so the connection is dropped
/// before the body completes.
fn cut(frames: Vec<String>, signal: watch::Receiver<Signal>, content_type: &str) -> Response {
    let mut frames: VecDeque<_> = frames.into_iter().map(Ok).collect();
    frames.push_back(Err(io::Error::other("cut by the fake upstream")));
    streamed(frames, Duration::ZERO, signal, content_type)
}

/// A body that sends each frame as it comes, pausing `delay` between two,
/// and fails as soon as the fake is dropped.
fn streamed(
    frames: VecDeque<io::Result<String>>,
    delay: Duration,
    signal: watch::Receiver<Signal>,
    content_type: &str,
) -> Response {
    let stream = futures_util::stream::unfold(
        (frames, signal, true),
        move |(mut frames, signal, first)| async move {
            let frame = frames.pop_front()?;
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if frame.is_err() {
                // The server drops what it has not yet written when a body
                // fails, so pause first to let the frames before the cut
                // reach the client.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let frame = if signal.borrow().closed {
                frames.clear();
                Err(io::Error::other("the fake upstream was dropped"))
            } else {
                frame
            };
            Some((frame, (frames, signal, false)))
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type.parse().expect("a header value"));
    headers.insert(CACHE_CONTROL, "no-cache".parse().expect("a header value"));
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The error body each provider sends for `status`.
fn error(format: Format, status: StatusCode, message: &str) -> Response {
    let code = status.as_u16();
    let body = match format {
        Format::OpenAi => {
            let (kind, code) = match code {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("requests", json!("rate_limit_exceeded")),
                400..=499 => ("invalid_request_error", Value::Null),
                _ => ("server_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Format::Anthropic => {
            let kind = match code {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                400..=499 => "invalid_request_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    json_response(status, &body)
}

fn model_of(request: &Value) -> String {
    request["model"].as_str().unwrap_or("fake-model").to_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`REPLY_TEXT`] in five pieces, one a word with the space after it.
fn pieces() -> Vec<String> {
    REPLY_TEXT.split_inclusive(' ').map(str::to_owned).collect()
}

fn openai_usage(usage: &FakeUsage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

fn chat(request: &Value, n: usize, usage: &FakeUsage) -> Reply {
    let (id, model, created) = (format!("chatcmpl-{n}"), model_of(request), unix_now());
    if request["stream"] != true {
        return Reply::Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant", "content": REPLY_TEXT, "refusal": null, "annotations": [],
                },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": openai_usage(usage),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }));
    }
    let include_usage = request["stream_options"]["include_usage"] == true;
    let data = |chunk: &Value| format!("data: {chunk}\n\n");
    let envelope = |choices: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fake", "choices": choices,
        })
    };
    let chunk = |delta: Value, finish_reason: Value| {
        let mut chunk = envelope(json!([
            {"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}
        ]));
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        data(&chunk)
    };
    let head = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    let content = pieces()
        .into_iter()
        .map(|piece| chunk(json!({"content": piece}), Value::Null))
        .collect();
    let mut tail = vec![chunk(json!({}), json!("stop"))];
    if include_usage {
        let mut last = envelope(json!([]));
        last["usage"] = openai_usage(usage);
        tail.push(data(&last));
    }
    tail.push("data: [DONE]\n\n".to_owned());
    Reply::Stream(head, content, tail)
}

fn embeddings(request: &Value, usage: &FakeUsage) -> Option<Value> {
    let count = match &request["input"] {
        Value::String(_) => 1,
        // One array of token ids is a single input.
        Value::Array(items) if items.first().is_some_and(Value::is_number) => 1,
        Value::Array(items) if !items.is_empty() => items.len(),
        _ => return None,
    };
    let embedding = if request["encoding_format"] == "base64" {
        let bytes: Vec<u8> = FAKE_EMBEDDING
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        json!(base64(&bytes))
    } else {
        json!(FAKE_EMBEDDING)
    };
    let data: Vec<Value> = (0..count)
        .map(|index| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    Some(json!({
        "object": "list",
        "data": data,
        "model": model_of(request),
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }))
}

fn messages(request: &Value, n: usize, usage: &FakeUsage) -> Reply {
    let (id, model) = (format!("msg_{n}"), model_of(request));
    let usage_with = |output_tokens: u64| {
        json!({
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": output_tokens,
        })
    };
    if request["stream"] != true {
        return Reply::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": REPLY_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": usage_with(usage.output_tokens),
        }));
    }
    let event = |value: Value| {
        format!(
            "event: {}\ndata: {value}\n\n",
            value["type"].as_str().unwrap_or("")
        )
    };
    let head = vec![
        event(json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage_with(1),
        }})),
        event(json!({
            "type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""},
        })),
        event(json!({"type": "ping"})),
    ];
    let content = pieces()
        .into_iter()
        .map(|text| {
            event(json!({
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }))
        })
        .collect();
    let tail = vec![
        event(json!({"type": "content_block_stop", "index": 0})),
        event(json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": usage.output_tokens},
        })),
        event(json!({"type": "message_stop"})),
    ];
    Reply::Stream(head, content, tail)
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as OpenAI encodes embeddings.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(
                    BASE64_ALPHABET[((n >> (18 - 6 * i)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(upstream: &FakeUpstream, path: &str, body: Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", upstream.base_url()))
            .header("authorization", "Bearer sk-test")
            .json(&body)
            .send()
            .await
            .expect("a response")
    }

    /// The body read chunk by chunk, and the error that ended it, if any.
    async fn read(mut response: reqwest::Response) -> (String, Option<reqwest::Error>) {
        let mut text = String::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => text.push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                Ok(None) => return (text, None),
                Err(error) => return (text, Some(error)),
            }
        }
    }

    /// The `data:` payloads of an OpenAI stream.
    fn data_lines(text: &str) -> Vec<&str> {
        text.split("\n\n")
            .filter_map(|frame| frame.strip_prefix("data: "))
            .collect()
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for quad in text.as_bytes().chunks(4) {
            let digits: Vec<u32> = quad
                .iter()
                .filter(|&&c| c != b'=')
                .map(|c| BASE64_ALPHABET.iter().position(|a| a == c).expect("base64") as u32)
                .collect();
            let n = digits
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
            for i in 0..digits.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }

    fn stream_request(include_usage: bool) -> Value {
        let mut body = json!({"model": "gpt-test", "stream": true, "messages": []});
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    #[tokio::test]
    async fn a_stream_with_include_usage_ends_with_the_usage_chunk() {
        let upstream = FakeUpstream::start().await;
        upstream.set_usage(FakeUsage {
            prompt_tokens: 40,
            cached_tokens: 30,
            completion_tokens: 9,
            reasoning_tokens: 4,
            ..FakeUsage::default()
        });
        let response = post(&upstream, "/v1/chat/completions", stream_request(true)).await;
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        let (text, error) = read(response).await;
        assert!(error.is_none());
        let lines = data_lines(&text);
        assert_eq!(lines.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = lines[..lines.len() - 1]
            .iter()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        let (last, rest) = chunks.split_last().expect("chunks");
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 40);
        assert_eq!(last["usage"]["total_tokens"], 49);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 30);
        assert_eq!(
            last["usage"]["completion_tokens_details"]["reasoning_tokens"],
            4
        );
        assert!(
            rest.iter()
                .all(|chunk| chunk["usage"].is_null() && chunk.get("usage").is_some())
        );
        let content: String = rest
            .iter()
            .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, REPLY_TEXT);
        assert_eq!(
            rest.last().expect("a finish chunk")["choices"][0]["finish_reason"],
            "stop"
        );
        let seen = upstream.requests();
        assert_eq!(seen[0].body["stream_options"]["include_usage"], true);
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test"));
    }

    #[tokio::test]
    async fn a_stream_without_include_usage_has_no_usage_key() {
        let upstream = FakeUpstream::start().await;
        let response = post(&upstream, "/v1/chat/completions", stream_request(false)).await;
        let (text, error) = read(response).await;
        assert!(error.is_none());
        let lines = data_lines(&text);
        assert_eq!(lines.last(), Some(&"[DONE]"));
        assert_eq!(lines.len(), 1 + 5 + 1 + 1);
        for line in &lines[..lines.len() - 1] {
            let chunk: Value = serde_json::from_str(line).expect("JSON");
            assert!(chunk.get("usage").is_none(), "{chunk}");
        }
    }

    #[tokio::test]
    async fn base64_embeddings_decode_to_the_fixed_vector() {
        let upstream = FakeUpstream::start().await;
        let request =
            json!({"model": "embed-test", "input": ["a", "b"], "encoding_format": "base64"});
        let body: Value = post(&upstream, "/v1/embeddings", request)
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(body["data"][1]["index"], 1);
        let bytes = decode_base64(body["data"][0]["embedding"].as_str().expect("base64 text"));
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("four bytes")))
            .collect();
        assert_eq!(floats, FAKE_EMBEDDING);
        assert_eq!(body["usage"]["prompt_tokens"], 12);

        let request = json!({"model": "text-embedding-test", "input": "a"});
        let body: Value = post(&upstream, "/v1/embeddings", request)
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(body["data"][0]["embedding"], json!(FAKE_EMBEDDING));
    }

    #[tokio::test]
    async fn a_failure_then_success_answers_500_then_200_and_records_both() {
        let upstream = FakeUpstream::start().await;
        upstream.push(Behaviour::Fail(500));
        let request = json!({"model": "gpt-test", "messages": []});
        let failed = post(&upstream, "/v1/chat/completions", request.clone()).await;
        assert_eq!(failed.status(), 500);
        let body: Value = failed.json().await.expect("JSON");
        assert_eq!(
            body,
            json!({"error": {
                "message": "fake failure", "type": "server_error", "param": null, "code": null,
            }})
        );
        let ok = post(&upstream, "/v1/chat/completions", request).await;
        assert_eq!(ok.status(), 200);
        let body: Value = ok.json().await.expect("JSON");
        assert_eq!(body["choices"][0]["message"]["content"], REPLY_TEXT);
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["usage"]["total_tokens"], 17);
        let seen = upstream.requests();
        assert_eq!(seen.len(), 2);
        assert!(
            seen.iter()
                .all(|s| s.method == "POST" && s.path == "/v1/chat/completions")
        );
    }

    #[tokio::test]
    async fn a_cut_stream_fails_to_read_after_some_chunks() {
        let upstream = FakeUpstream::start().await;
        upstream.push(Behaviour::Cut { after_chunks: 2 });
        let response = post(&upstream, "/v1/chat/completions", stream_request(true)).await;
        assert_eq!(response.status(), 200);
        let (text, error) = read(response).await;
        assert!(error.is_some(), "the body ended cleanly: {text}");
        let lines = data_lines(&text);
        assert_eq!(lines.len(), 1 + 2);
        assert!(!text.contains("[DONE]"));
    }

    #[tokio::test]
    async fn slow_chunks_reach_the_client_before_the_stream_ends() {
        let upstream = FakeUpstream::start().await;
        upstream.push(Behaviour::SlowChunks { delay_ms: 300 });
        let request = json!({"model": "claude-test", "stream": true, "messages": []});
        let mut response = post(&upstream, "/v1/messages", request).await;
        let first = tokio::time::timeout(Duration::from_millis(250), response.chunk()).await;
        let first = first.expect("a chunk before the first pause ends");
        let first = first.expect("a readable body").expect("a chunk");
        assert!(first.starts_with(b"event: message_start\n"));
    }

    #[tokio::test]
    async fn a_stalled_request_answers_once_released() {
        let upstream = FakeUpstream::start().await;
        upstream.push(Behaviour::Stall);
        let url = format!("{}/v1/models", upstream.base_url());
        let mut pending = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
        let early = tokio::time::timeout(Duration::from_millis(200), &mut pending).await;
        assert!(early.is_err(), "a stalled request answered");
        upstream.release_stalled();
        let status = pending.await.expect("the task").expect("a response");
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn anthropic_stream_events_come_in_the_documented_order() {
        let upstream = FakeUpstream::start().await;
        upstream.set_usage(FakeUsage {
            input_tokens: 7,
            cache_read_input_tokens: 100,
            cache_creation_input_tokens: 20,
            output_tokens: 3,
            ..FakeUsage::default()
        });
        let request =
            json!({"model": "claude-test", "max_tokens": 16, "stream": true, "messages": []});
        let (text, error) = read(post(&upstream, "/v1/messages", request).await).await;
        assert!(error.is_none());
        let events: Vec<(&str, Value)> = text
            .split("\n\n")
            .filter(|frame| !frame.is_empty())
            .map(|frame| {
                let (event, data) = frame.split_once('\n').expect("two lines");
                let name = event.strip_prefix("event: ").expect("an event line");
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").expect("data")).expect("JSON");
                assert_eq!(data["type"], name);
                (name, data)
            })
            .collect();
        let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
        let mut expected = vec!["message_start", "content_block_start", "ping"];
        expected.extend(["content_block_delta"; 5]);
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(names, expected);
        let start = &events[0].1["message"]["usage"];
        assert_eq!(
            *start,
            json!({
                "input_tokens": 7, "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 100, "output_tokens": 1,
            })
        );
        assert_eq!(events[9].1["usage"], json!({"output_tokens": 3}));
        assert_eq!(events[9].1["delta"]["stop_reason"], "end_turn");
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_refused_in_the_wire_format_of_the_path() {
        let upstream = FakeUpstream::start().await;
        let response = reqwest::Client::new()
            .post(format!("{}/v1/messages", upstream.base_url()))
            .body("{not json")
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(upstream.requests()[0].body, Value::Null);
    }
}
