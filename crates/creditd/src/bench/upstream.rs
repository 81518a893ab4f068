//! A fake OpenAI-format upstream for the gateway workloads: answers
//! `POST /v1/chat/completions` at once with a small fixed completion, whole
//! or as an event stream, over kept-alive HTTP/1.1 connections.
//!
//! It shares the machine with creditd and the load generator, so it is
//! written to cost as little as possible: one task per connection, one read
//! and one or two writes per call, no header maps, the answers formatted
//! into buffers the connection reuses.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Upper bound on a request head.
const HEAD_MAX: usize = 16 * 1024;

/// Upper bound on a request body; the bench sends about a hundred bytes.
const BODY_MAX: usize = 1024 * 1024;

/// The assistant's answer, whole and in the pieces a stream sends.
const CONTENT: &str = "Hello! How can I help you today?";
const PIECES: [&str; 3] = ["Hello!", " How can I help", " you today?"];

/// Token counts of the fixed answer.
const PROMPT_TOKENS: u64 = 12;
const COMPLETION_TOKENS: u64 = 9;

/// The fake upstream, serving until dropped.
pub struct FakeUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeUpstream {
    /// Listens on `listen` and serves every connection in its own task.
    pub async fn start(listen: &str) -> anyhow::Result<FakeUpstream> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening for the fake upstream on {listen}"))?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors or the like: let the
                    // connections already open finish first.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let _ = connection(stream).await;
                });
            }
        });
        Ok(FakeUpstream { addr, accept })
    }

    /// The base URL its clients use: `http://host:port`, without `/v1`.
    pub fn origin(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", self.addr.port())
    }
}

/// A request head: where its body starts and how long it is.
#[derive(Debug, PartialEq, Eq)]
struct RequestHead<'a> {
    method: &'a str,
    path: &'a str,
    len: usize,
    body_len: usize,
    close: bool,
}

/// Serves one connection until the client closes it or sends something
/// the fake upstream does not read.
async fn connection(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut first = Vec::with_capacity(2048);
    let mut rest = Vec::with_capacity(2048);
    loop {
        let (start, end, close, chat) = loop {
            match parse_request_head(&buffer) {
                Ok(Some(head)) if head.body_len > BODY_MAX => {
                    return refuse(&mut stream, "413 Content Too Large").await;
                }
                Ok(Some(head)) => {
                    let chat = head.method == "POST" && head.path == "/v1/chat/completions";
                    break (head.len, head.len + head.body_len, head.close, chat);
                }
                Ok(None) if buffer.len() >= HEAD_MAX => {
                    return refuse(&mut stream, "431 Request Header Fields Too Large").await;
                }
                Ok(None) => {}
                Err(()) => return refuse(&mut stream, "400 Bad Request").await,
            }
            if stream.read_buf(&mut buffer).await? == 0 {
                return Ok(());
            }
        };
        while buffer.len() < end {
            if stream.read_buf(&mut buffer).await? == 0 {
                return Ok(());
            }
        }
        answer(chat, &buffer[start..end], &mut first, &mut rest);
        stream.write_all(&first).await?;
        if !rest.is_empty() {
            stream.write_all(&rest).await?;
        }
        buffer.drain(..end);
        if close {
            return Ok(());
        }
    }
}

/// Answers a request the fake upstream cannot read, and closes.
async fn refuse(stream: &mut TcpStream, status: &str) -> std::io::Result<()> {
    let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(response.as_bytes()).await
}

/// Parses a request head if `bytes` holds a whole one; `Err` for one the
/// fake upstream does not read (a chunked request body, a bad line).
fn parse_request_head(bytes: &[u8]) -> Result<Option<RequestHead<'_>>, ()> {
    let Some(blank) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes[..blank]).map_err(drop)?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path), Some(version)) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(());
    };
    let mut head = RequestHead {
        method,
        path,
        len: blank + 4,
        body_len: 0,
        close: version == "HTTP/1.0",
    };
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(())?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.body_len = value.parse().map_err(drop)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(());
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(head))
}

/// The fields of a chat completion request the answer depends on.
#[derive(serde::Deserialize)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Writes the answer to a request (`chat` when it is a `POST` to
/// `/v1/chat/completions`) into `first` and, for a stream, the events after
/// the first into `rest`, so the first event leaves before the others as a
/// real upstream's would.
fn answer(chat: bool, body: &[u8], first: &mut Vec<u8>, rest: &mut Vec<u8>) {
    first.clear();
    rest.clear();
    if !chat {
        return error(first, "404 Not Found", "not_found", "Unknown path.");
    }
    let request: ChatRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(_) => {
            return error(
                first,
                "400 Bad Request",
                "invalid_request_error",
                "The body is not a chat completion request.",
            );
        }
    };
    // The model's name as a JSON string, escaped as needed.
    let model = serde_json::to_string(&request.model).expect("a string serializes");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !request.stream {
        let mut json = Vec::with_capacity(768);
        let _ = write!(
            json,
            r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":{created},"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{CONTENT}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{usage},"service_tier":"default","system_fingerprint":"fp_bench"}}"#,
            usage = usage()
        );
        let _ = write!(
            first,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            json.len()
        );
        first.extend_from_slice(&json);
        return;
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    // With the usage asked for, OpenAI writes `"usage":null` in every chunk
    // and the usage in a last chunk with no choices.
    let usage_field = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |choice: &str| {
        format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":{created},"model":{model},"service_tier":"default","system_fingerprint":"fp_bench","choices":[{choice}]{usage_field}}}"#
        )
    };
    first.extend_from_slice(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
          cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    event(
        first,
        &chunk(
            r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
        ),
    );
    for piece in PIECES {
        event(
            rest,
            &chunk(&format!(
                r#"{{"index":0,"delta":{{"content":"{piece}"}},"logprobs":null,"finish_reason":null}}"#
            )),
        );
    }
    event(
        rest,
        &chunk(r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}"#),
    );
    if include_usage {
        event(
            rest,
            &format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":{created},"model":{model},"service_tier":"default","system_fingerprint":"fp_bench","choices":[],"usage":{usage}}}"#,
                usage = usage()
            ),
        );
    }
    event(rest, "[DONE]");
    rest.extend_from_slice(b"0\r\n\r\n");
}

/// The usage object of the fixed answer, as OpenAI writes it.
fn usage() -> String {
    format!(
        r#"{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{COMPLETION_TOKENS},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}"#,
        PROMPT_TOKENS + COMPLETION_TOKENS
    )
}

/// Appends `data: {data}` and its blank line as one chunk of a chunked body.
fn event(out: &mut Vec<u8>, data: &str) {
    let len = "data: ".len() + data.len() + 2;
    let _ = write!(out, "{len:x}\r\ndata: {data}\n\n\r\n");
}

/// An error answer in OpenAI's format.
fn error(out: &mut Vec<u8>, status: &str, kind: &str, message: &str) {
    let json = format!(
        r#"{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":null}}}}"#
    );
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
        json.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of a whole answer, after its head.
    fn split(response: &[u8]) -> (&str, &[u8]) {
        let blank = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            std::str::from_utf8(&response[..blank]).unwrap(),
            &response[blank + 4..],
        )
    }

    /// The `data:` payloads of a chunked event stream.
    fn events(body: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
            if size == 0 {
                assert_eq!(&rest[line..], b"\r\n\r\n");
                return out;
            }
            let data = std::str::from_utf8(&rest[line + 2..line + 2 + size]).unwrap();
            let payload = data.strip_prefix("data: ").unwrap();
            out.push(payload.strip_suffix("\n\n").unwrap().to_owned());
            assert_eq!(&rest[line + 2 + size..line + 4 + size], b"\r\n");
            rest = &rest[line + 4 + size..];
        }
    }

    #[test]
    fn a_whole_answer_is_a_chat_completion_with_its_length_and_usage() {
        let (mut first, mut rest) = (Vec::new(), Vec::new());
        let request = br#"{"model":"bench-model","messages":[{"role":"user","content":"Hi"}]}"#;
        answer(true, request, &mut first, &mut rest);
        assert!(rest.is_empty());
        let (head, body) = split(&first);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["model"], "bench-model");
        assert_eq!(json["choices"][0]["message"]["content"], CONTENT);
        let usage = &json["usage"];
        assert_eq!(usage["prompt_tokens"], PROMPT_TOKENS);
        assert_eq!(usage["completion_tokens"], COMPLETION_TOKENS);
        assert_eq!(usage["total_tokens"], PROMPT_TOKENS + COMPLETION_TOKENS);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    }

    #[test]
    fn a_stream_ends_with_the_usage_chunk_only_when_asked_and_then_done() {
        for include_usage in [false, true] {
            let (mut first, mut rest) = (Vec::new(), Vec::new());
            let request = format!(
                r#"{{"model":"m\"x","stream":true,"stream_options":{{"include_usage":{include_usage}}},"messages":[]}}"#
            );
            answer(true, request.as_bytes(), &mut first, &mut rest);
            let (head, body) = split(&first);
            assert!(head.contains("transfer-encoding: chunked"));
            assert!(head.contains("content-type: text/event-stream"));
            let mut all = body.to_vec();
            all.extend_from_slice(&rest);
            let events = events(&all);
            assert_eq!(events.last().unwrap(), "[DONE]");
            let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
                .iter()
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            assert_eq!(chunks[0]["model"], "m\"x");
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(text, CONTENT);
            let last = chunks.last().unwrap();
            if include_usage {
                assert_eq!(last["choices"], serde_json::json!([]));
                assert_eq!(last["usage"]["completion_tokens"], COMPLETION_TOKENS);
                assert!(chunks[0]["usage"].is_null());
            } else {
                assert_eq!(last["choices"][0]["finish_reason"], "stop");
                assert!(chunks.iter().all(|c| c.get("usage").is_none()));
            }
        }
    }

    #[test]
    fn other_paths_and_bodies_get_openai_errors() {
        let (mut first, mut rest) = (Vec::new(), Vec::new());
        answer(false, b"", &mut first, &mut rest);
        assert!(first.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        answer(true, b"{", &mut first, &mut rest);
        let (head, body) = split(&first);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn request_heads_give_their_body_length_and_whether_to_close() {
        let request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
                        Content-Length: 2\r\nConnection: close\r\n\r\n{}";
        let head = parse_request_head(request).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/v1/chat/completions");
        assert_eq!(head.len, request.len() - 2);
        assert_eq!(head.body_len, 2);
        assert!(head.close);
        assert_eq!(parse_request_head(&request[..30]), Ok(None));
        let chunked = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse_request_head(chunked), Err(()));
    }
}
