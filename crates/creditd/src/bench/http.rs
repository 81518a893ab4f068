//! A lean HTTP/1.1 client: one kept-alive connection per benchmark client,
//! one write and (usually) one read per request, in the client's own task.
//!
//! The load generator shares the machine with the server it measures, so
//! every cycle it spends is a cycle the server does not get. A general
//! client (connection task, header maps, body streams) costs about as much
//! per request as the server's own work; this one writes the request bytes
//! and reads a response framed by `Content-Length` or, for the gateway's
//! event streams, by chunked transfer coding.

use std::io::Write as _;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on a response head; creditd's are a few hundred bytes.
const HEAD_MAX: usize = 16 * 1024;

/// Upper bound on a response body; the bench's are a few kilobytes.
const BODY_MAX: usize = 16 * 1024 * 1024;

/// Upper bound on a chunk's size line (hex digits and extensions).
const CHUNK_LINE_MAX: usize = 1024;

/// One connection to an HTTP server.
pub struct Conn {
    stream: TcpStream,
    /// `Host` and `Authorization` lines, sent with every request.
    fixed_headers: Vec<u8>,
    request: Vec<u8>,
    /// Bytes read and not yet consumed.
    buffer: Vec<u8>,
}

/// An answer: its status and body, and when the first byte of a chunked
/// body arrived.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// When the first data byte of a chunked body was read; `None` for a
    /// body framed by `Content-Length`.
    pub first_byte: Option<Instant>,
}

/// How a response body is framed.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// Status, length of the head (through the blank line), and the body's framing.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    len: usize,
    body: Framing,
}

/// What the front of a chunked body holds.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    /// Not a whole chunk yet; `data_seen` when its size line is complete and
    /// at least one of its data bytes has arrived.
    Partial { data_seen: bool },
    /// A whole data chunk: its data at `start..end`, the next chunk at `next`.
    Data {
        start: usize,
        end: usize,
        next: usize,
    },
    /// The last chunk and its trailers, `next` bytes in all.
    Last { next: usize },
}

impl Conn {
    /// Connects to `base` (`http://host:port`), sending `key` as the bearer token.
    pub async fn connect(base: &str, key: &str) -> anyhow::Result<Conn> {
        let authority = base
            .strip_prefix("http://")
            .context("only http:// targets are supported")?
            .trim_end_matches('/');
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        let mut fixed_headers = Vec::new();
        write!(
            fixed_headers,
            "Host: {authority}\r\nAuthorization: Bearer {key}\r\n"
        )?;
        Ok(Conn {
            stream,
            fixed_headers,
            request: Vec::with_capacity(512),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and reads its whole answer.
    pub async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<Answer> {
        self.request.clear();
        write!(self.request, "{method} {path} HTTP/1.1\r\n")?;
        self.request.extend_from_slice(&self.fixed_headers);
        match body {
            Some(body) => {
                write!(
                    self.request,
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )?;
                self.request.extend_from_slice(body.as_bytes());
            }
            None => self.request.extend_from_slice(b"\r\n"),
        }
        self.stream.write_all(&self.request).await?;

        let head = loop {
            if let Some(head) = parse_head(&self.buffer)? {
                break head;
            }
            if self.buffer.len() >= HEAD_MAX {
                bail!("response head longer than {HEAD_MAX} bytes");
            }
            self.fill().await?;
        };
        self.buffer.drain(..head.len);
        match head.body {
            Framing::Length(len) => {
                if len > BODY_MAX {
                    bail!("response body of {len} bytes, more than {BODY_MAX}");
                }
                while self.buffer.len() < len {
                    self.fill().await?;
                }
                let body = self.buffer[..len].to_vec();
                self.buffer.drain(..len);
                Ok(Answer {
                    status: head.status,
                    body,
                    first_byte: None,
                })
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                let mut first_byte = None;
                loop {
                    match parse_chunk(&self.buffer)? {
                        Chunk::Data { start, end, next } => {
                            first_byte.get_or_insert_with(Instant::now);
                            if body.len() + (end - start) > BODY_MAX {
                                bail!("response body longer than {BODY_MAX} bytes");
                            }
                            body.extend_from_slice(&self.buffer[start..end]);
                            self.buffer.drain(..next);
                        }
                        Chunk::Last { next } => {
                            self.buffer.drain(..next);
                            break;
                        }
                        Chunk::Partial { data_seen } => {
                            if data_seen {
                                first_byte.get_or_insert_with(Instant::now);
                            }
                            self.fill().await?;
                            // The instant the read returned is when the
                            // bytes arrived, before they are parsed.
                            if first_byte.is_none() && chunk_data_seen(&self.buffer) {
                                first_byte = Some(Instant::now());
                            }
                        }
                    }
                }
                Ok(Answer {
                    status: head.status,
                    body,
                    first_byte,
                })
            }
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.buffer.len() >= BODY_MAX + HEAD_MAX {
            bail!("the server sent more than {BODY_MAX} bytes unread");
        }
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    /// POSTs a JSON body.
    pub async fn post(&mut self, path: &str, body: String) -> anyhow::Result<(u16, Vec<u8>)> {
        let answer = self.exchange("POST", path, Some(&body)).await?;
        Ok((answer.status, answer.body))
    }

    /// PUTs a JSON body.
    pub async fn put(&mut self, path: &str, body: String) -> anyhow::Result<(u16, Vec<u8>)> {
        let answer = self.exchange("PUT", path, Some(&body)).await?;
        Ok((answer.status, answer.body))
    }

    /// GETs a path.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let answer = self.exchange("GET", path, None).await?;
        Ok((answer.status, answer.body))
    }
}

/// Parses a response head if `bytes` holds a whole one. Bodies must be framed
/// by `Content-Length` or chunked transfer coding (or be empty by status);
/// anything else is an error.
fn parse_head(bytes: &[u8]) -> anyhow::Result<Option<Head>> {
    let Some(blank) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes[..blank]).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut body_len = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = Some(value.parse().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                bail!("the bench client does not read {value} bodies");
            }
            chunked = true;
        }
    }
    let body = match (chunked, body_len, status) {
        // Transfer coding overrides a length (RFC 9112, section 6.3).
        (true, _, _) => Framing::Chunked,
        (false, Some(len), _) => Framing::Length(len),
        (false, None, 204 | 304) | (false, None, 100..=199) => Framing::Length(0),
        (false, None, _) => bail!("response without Content-Length"),
    };
    Ok(Some(Head {
        status,
        len: blank + 4,
        body,
    }))
}

/// Parses the chunk at the front of a chunked body.
fn parse_chunk(bytes: &[u8]) -> anyhow::Result<Chunk> {
    let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        if bytes.len() > CHUNK_LINE_MAX {
            bail!("chunk size line longer than {CHUNK_LINE_MAX} bytes");
        }
        return Ok(Chunk::Partial { data_seen: false });
    };
    let line = std::str::from_utf8(&bytes[..line_end]).context("chunk size is not UTF-8")?;
    // Chunk extensions (`;name=value`) carry nothing the bench reads.
    let digits = line.split(';').next().unwrap_or_default().trim();
    let size = usize::from_str_radix(digits, 16)
        .with_context(|| format!("bad chunk size line {line:?}"))?;
    let start = line_end + 2;
    if size == 0 {
        // The last chunk: trailer lines, then a blank line.
        let rest = &bytes[start..];
        if rest.starts_with(b"\r\n") {
            return Ok(Chunk::Last { next: start + 2 });
        }
        return Ok(match rest.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(blank) => Chunk::Last {
                next: start + blank + 4,
            },
            None => Chunk::Partial { data_seen: false },
        });
    }
    if size > BODY_MAX {
        bail!("chunk of {size} bytes, more than {BODY_MAX}");
    }
    let end = start + size;
    if bytes.len() < end + 2 {
        return Ok(Chunk::Partial {
            data_seen: bytes.len() > start,
        });
    }
    if &bytes[end..end + 2] != b"\r\n" {
        bail!("chunk data not followed by CRLF");
    }
    Ok(Chunk::Data {
        start,
        end,
        next: end + 2,
    })
}

/// Whether the front of a chunked body holds at least one data byte.
fn chunk_data_seen(bytes: &[u8]) -> bool {
    matches!(
        parse_chunk(bytes),
        Ok(Chunk::Data { .. } | Chunk::Partial { data_seen: true })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_head_and_waits_for_a_partial_one() {
        let response = b"HTTP/1.1 402 Payment Required\r\ncontent-type: application/json\r\n\
                         CONTENT-LENGTH: 7\r\n\r\n{\"a\":1}";
        let head = parse_head(response).unwrap().unwrap();
        assert_eq!(
            head,
            Head {
                status: 402,
                len: response.len() - 7,
                body: Framing::Length(7)
            }
        );
        assert_eq!(parse_head(&response[..20]).unwrap(), None);
    }

    #[test]
    fn refuses_bodies_it_cannot_frame() {
        let gzip = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
        assert!(parse_head(gzip).is_err());
        let unframed = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n";
        assert!(parse_head(unframed).is_err());
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_head(empty).unwrap().unwrap().body, Framing::Length(0));
        assert!(parse_head(b"HTTP/1.1 2x\r\n\r\n").is_err());
    }

    #[test]
    fn a_chunked_head_is_framed_by_its_chunks_even_with_a_length() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     Transfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n";
        let head = parse_head(head).unwrap().unwrap();
        assert_eq!(head.body, Framing::Chunked);
        assert_eq!(head.status, 200);
    }

    #[test]
    fn reads_a_data_chunk_and_sees_its_first_byte_before_the_rest() {
        let body = b"d\r\ndata: hello\n\n\r\n0\r\n\r\n";
        assert_eq!(
            parse_chunk(body).unwrap(),
            Chunk::Data {
                start: 3,
                end: 16,
                next: 18
            }
        );
        assert_eq!(&body[3..16], b"data: hello\n\n");
        assert_eq!(parse_chunk(&body[18..]).unwrap(), Chunk::Last { next: 5 });
        // The size line alone: no data yet; one byte of it: data seen.
        assert_eq!(
            parse_chunk(&body[..3]).unwrap(),
            Chunk::Partial { data_seen: false }
        );
        assert_eq!(
            parse_chunk(&body[..4]).unwrap(),
            Chunk::Partial { data_seen: true }
        );
        assert!(chunk_data_seen(&body[..4]));
        assert!(!chunk_data_seen(&body[..2]));
        // All the data but not its CRLF is still partial.
        assert_eq!(
            parse_chunk(&body[..17]).unwrap(),
            Chunk::Partial { data_seen: true }
        );
    }

    #[test]
    fn reads_extensions_trailers_and_upper_case_sizes() {
        let body = b"A;name=value\r\n0123456789\r\n";
        assert_eq!(
            parse_chunk(body).unwrap(),
            Chunk::Data {
                start: 14,
                end: 24,
                next: 26
            }
        );
        let last = b"0\r\nx-trailer: 1\r\n\r\nHTTP/1.1";
        assert_eq!(parse_chunk(last).unwrap(), Chunk::Last { next: 19 });
        assert_eq!(
            parse_chunk(&last[..10]).unwrap(),
            Chunk::Partial { data_seen: false }
        );
        assert_eq!(
            parse_chunk(b"0\r\n").unwrap(),
            Chunk::Partial { data_seen: false }
        );
    }

    #[test]
    fn refuses_malformed_chunks() {
        assert!(parse_chunk(b"zz\r\nab\r\n").is_err());
        assert!(parse_chunk(b"2\r\nabcd\r\n").is_err());
        assert!(parse_chunk(&[b'1'; CHUNK_LINE_MAX + 1]).is_err());
        assert!(parse_chunk(b"ffffffffffffffff\r\n").is_err());
    }
}
