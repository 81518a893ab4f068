//! A lean HTTP/1.1 client: one kept-alive connection per benchmark client,
//! one write and (usually) one read per request, in the client's own task.
//!
//! The load generator shares the machine with the server it measures, so
//! every cycle it spends is a cycle the server does not get. A general
//! client (connection task, header maps, body streams) costs about as much
//! per request as the server's own work; this one writes the request bytes
//! and reads a response framed by `Content-Length`, which is all creditd
//! sends.

use std::io::Write as _;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on a response head; creditd's are a few hundred bytes.
const HEAD_MAX: usize = 16 * 1024;

/// One connection to a creditd.
pub struct Conn {
    stream: TcpStream,
    /// `Host` and `Authorization` lines, sent with every request.
    fixed_headers: Vec<u8>,
    request: Vec<u8>,
    /// Bytes read and not yet consumed.
    buffer: Vec<u8>,
}

/// Status, length of the head (through the blank line), and body length.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    len: usize,
    body_len: usize,
}

impl Conn {
    /// Connects to `base` (`http://host:port`) with the admin key.
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

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
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
            self.fill().await?;
        };
        let end = head
            .len
            .checked_add(head.body_len)
            .context("response body length overflows")?;
        while self.buffer.len() < end {
            self.fill().await?;
        }
        let body = self.buffer[head.len..end].to_vec();
        self.buffer.drain(..end);
        Ok((head.status, body))
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.buffer.len() >= HEAD_MAX && parse_head(&self.buffer)?.is_none() {
            bail!("response head longer than {HEAD_MAX} bytes");
        }
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    /// POSTs a JSON body.
    pub async fn post(&mut self, path: &str, body: String) -> anyhow::Result<(u16, Vec<u8>)> {
        self.send("POST", path, Some(&body)).await
    }

    /// GETs a path.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        self.send("GET", path, None).await
    }
}

/// Parses a response head if `bytes` holds a whole one. Bodies must be framed
/// by `Content-Length` (or be empty by status); anything else is an error.
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
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = Some(value.parse().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("the bench client does not read {value} bodies");
        }
    }
    let body_len = match (body_len, status) {
        (Some(len), _) => len,
        (None, 204 | 304) | (None, 100..=199) => 0,
        (None, _) => bail!("response without Content-Length"),
    };
    Ok(Some(Head {
        status,
        len: blank + 4,
        body_len,
    }))
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
                body_len: 7
            }
        );
        assert_eq!(parse_head(&response[..20]).unwrap(), None);
    }

    #[test]
    fn refuses_bodies_it_cannot_frame() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).is_err());
        let unframed = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n";
        assert!(parse_head(unframed).is_err());
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_head(empty).unwrap().unwrap().body_len, 0);
        assert!(parse_head(b"HTTP/1.1 2x\r\n\r\n").is_err());
    }
}
