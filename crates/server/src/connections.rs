//! Connections: how long a client may take to send a request's head or
//! leave its connection idle, how many connections are served at once,
//! and how serving ends.
//!
//! Each connection is served by hyper's HTTP/1 machinery over a stream
//! that keeps its own deadlines: while no request is in flight, the
//! connection waits at most [`Limits::idle_timeout`] for the next request
//! to begin, and from its first byte at most [`Limits::header_read_timeout`]
//! for its head to be complete. Once a request is handed to the router, the
//! request's own time limit applies (see [`crate::shed`]); a response being
//! streamed counts as a request in flight until its last byte is sent.
//! Beyond [`Limits::max_connections`] a connection is answered `503
//! overloaded` at once and closed. On shutdown the listener closes, idle
//! connections close, requests in flight get [`Limits::shutdown_grace`] to
//! finish, and whatever is left is then closed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How the server treats connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From a request's first byte, how long its head (request line and
    /// headers) may take to arrive in full.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight may wait for the
    /// next one to begin.
    pub idle_timeout: Duration,
    /// The most connections served at once; more are refused.
    pub max_connections: usize,
    /// After shutdown begins, how long requests in flight have to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The file descriptors kept for everything but client connections: the
/// database's files and connections, upstream and Stripe calls, logs.
const DESCRIPTORS_KEPT: u64 = 256;

/// The default cap on connections: 10,000, or fewer when the process may
/// not open that many files, so that the cap is met before the process's
/// own limit and a connection beyond it gets a clear refusal rather than
/// a listener that cannot accept.
pub fn default_max_connections() -> usize {
    const CAP: u64 = 10_000;
    let files = open_files_limit().unwrap_or(CAP + DESCRIPTORS_KEPT);
    let room = if files > 2 * DESCRIPTORS_KEPT {
        files - DESCRIPTORS_KEPT
    } else {
        files / 2
    };
    room.clamp(1, CAP) as usize
}

/// The process's soft limit on open files, if it has one.
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct it is given,
    // which lives for the call.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// What a connection is doing, shared by its stream and its requests.
struct Activity {
    state: Mutex<State>,
}

struct State {
    /// Requests handed to the router whose response has not been sent in
    /// full.
    in_flight: usize,
    /// When the connection last had nothing in flight.
    idle_since: Instant,
    /// When the first byte of the next request's head arrived, while
    /// nothing was in flight.
    head_since: Option<Instant>,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: None,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain numbers behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's head was read and it goes to the router.
    fn begin(self: &Arc<Activity>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.head_since = None;
        InFlight(self.clone())
    }
}

/// A request in flight on its connection, until dropped with its response.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// A client's stream with the connection's deadlines: reading fails with
/// `TimedOut` when the client took too long to begin or to finish a
/// request's head.
struct Timed {
    stream: TcpStream,
    activity: Arc<Activity>,
    limits: Limits,
    sleep: Pin<Box<Sleep>>,
}

impl Timed {
    /// The instant reading gives up, when nothing is in flight.
    fn deadline(&self) -> Option<Instant> {
        let state = self.activity.state();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_since {
            Some(since) => since + self.limits.header_read_timeout,
            None => state.idle_since + self.limits.idle_timeout,
        })
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if let Poll::Ready(read) = Pin::new(&mut self.stream).poll_read(cx, buf) {
            if buf.filled().len() > before {
                let mut state = self.activity.state();
                if state.in_flight == 0 && state.head_since.is_none() {
                    state.head_since = Some(Instant::now());
                }
            }
            return Poll::Ready(read);
        }
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client sent no complete request head in time",
        )))
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight until it is dropped:
/// when it was sent in full, or the connection ended.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The answer to a connection beyond the cap, written before closing it.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 89\r\n\
\r\n\
{\"error\":{\"code\":\"overloaded\",\"message\":\"too many connections are open; retry shortly\"}}\n";

/// Writes [`REFUSAL`] and closes, giving a client that does not read at
/// most a second.
async fn refuse(mut stream: TcpStream) {
    let write = async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Serves `app` on `listener` until `shutdown` resolves, within `limits`,
/// then ends as the module says. Each request carries its client's address
/// as [`ConnectInfo`] of its `SocketAddr`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The stream keeps the deadlines; hyper's own would also cut idle
    // connections at the head's limit.
    http.timer(TokioTimer::new()).header_read_timeout(None);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, small responses on a kept-alive connection
        // can wait for the peer's delayed acknowledgement.
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open");
            connections.spawn(refuse(stream));
            continue;
        };
        let activity = Activity::new();
        let io = TokioIo::new(Timed {
            stream,
            activity: activity.clone(),
            limits,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        });
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let in_flight = activity.begin();
            request.extensions_mut().insert(ConnectInfo(peer));
            let answer = app.clone().oneshot(request.map(Body::new));
            async move {
                let response: Response<Body> = answer.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _in_flight: in_flight,
                    })
                }))
            }
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = connections.len();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = limits.shutdown_grace.as_secs_f64(),
            "closing the connections still open after the shutdown grace"
        );
    } else if open > 0 {
        tracing::debug!(open, "every connection ended within the shutdown grace");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Waits out a failed accept: a connection reset before it was accepted
/// is nothing; running out of descriptors or memory is, and accepting
/// again at once would spin.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_says_its_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["error"]["code"], "overloaded");
    }

    #[test]
    fn the_default_cap_leaves_room_below_the_open_files_limit() {
        let cap = default_max_connections() as u64;
        assert!((1..=10_000).contains(&cap));
        if let Some(files) = open_files_limit() {
            assert!(cap < files, "{cap} connections with {files} files");
        }
    }
}
