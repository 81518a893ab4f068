//! `Idempotency-Key` on every write route, as a property of the route table: each route says how
//! a key is honoured, and the guard the router puts on each route ([`crate::auth::authorize`], once
//! the key is admitted) keeps and replays the answers of the routes whose handlers do not keep them
//! themselves.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use ledger::{Reject, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::records::{self, Expect, Kind, Lookup, RecordFilter, Written};
use store::{Refused, Store, StoreError};

use crate::AppState;
use crate::error::ApiError;

/// How a route honours an `Idempotency-Key`. A malformed key is 400 on
/// every route that reads one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// The route changes nothing (a `GET`, a check): the header is not read.
    NotRead,
    /// The handler's ledger write carries the key: its answer is kept in
    /// the write's own transaction and replayed; the same key with another
    /// request is 409 `idempotency_conflict`.
    Ledger,
    /// The route keeps its first answer (any below 500) under the key and
    /// replays it, with `Idempotent-Replayed: true`; the same key with
    /// another request is 409 `idempotency_conflict`, and while the first
    /// request runs, 409 `idempotency_in_progress`.
    Kept,
    /// The answer shows a secret once (a new API key), which a replay would
    /// show again: a key is 400.
    Refused,
    /// Checked and let through, not replayed, for the reason given.
    NotKept(&'static str),
}

impl Idempotency {
    /// What a route of `method` does unless the table says otherwise: a
    /// `GET` or `HEAD` reads nothing, every other method keeps its answer.
    pub fn of(method: &axum::http::Method) -> Idempotency {
        if crate::routes::writes(method) {
            Idempotency::Kept
        } else {
            Idempotency::NotRead
        }
    }
}

/// The key of a request the layer keeps, for the handler to name what it
/// asks of others by it (a payment provider's own idempotency key).
#[derive(Clone, Debug)]
pub struct KeptKey(pub String);

/// A route's first answer under a key: a record of kind
/// `idempotent_answer` under the SHA-256 of the API key's id and the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptAnswer {
    /// The request's fingerprint (method, path and query, body), as hex.
    pub fingerprint: String,
    /// The answer's status; none while the first request runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The answer's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// When the first request began, in micros.
    pub started_at_micros: i64,
}

impl Kind for KeptAnswer {
    const KIND: &'static str = "idempotent_answer";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::instant(
            "started",
            Timestamp::from_micros(self.started_at_micros),
        )]
    }
}

/// How long a first request may run before a retry under its key takes
/// over: one that a crash interrupted must not block its key for days.
pub const RUNNING_TAKEOVER_SECS: i64 = 60;

/// The largest body the layer reads to fingerprint a request: the largest
/// any route it is on takes (a price list); each handler applies its own.
pub const BODY_LEN_MAX: usize = 32 * 1024 * 1024;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Honours the request's `Idempotency-Key` as the route's [`Idempotency`]
/// says, once its key is admitted ([`crate::auth::authorize`] calls it).
pub async fn honour(
    state: &Arc<AppState>,
    mode: Idempotency,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if mode == Idempotency::NotRead {
        return Ok(next.run(request).await);
    }
    let key = crate::extract::idempotency_header(request.headers())?;
    let Some(key) = key else {
        return Ok(next.run(request).await);
    };
    match mode {
        Idempotency::NotRead | Idempotency::Ledger | Idempotency::NotKept(_) => {
            Ok(next.run(request).await)
        }
        Idempotency::Refused => Err(ApiError::InvalidRequest(
            "this answer shows a secret once, so the request takes no Idempotency-Key".into(),
        )),
        Idempotency::Kept => {
            request.headers_mut().remove("idempotency-key");
            kept(state, key, request, next).await
        }
    }
}

/// Runs the request once under `key`, keeping its answer, or answers what
/// the first request under it answered.
async fn kept(
    state: &Arc<AppState>,
    key: String,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let store = state.store.as_ref();
    let scope = request
        .extensions()
        .get::<crate::Principal>()
        .map_or_else(|| "anonymous".into(), |p| p.key_id.clone());
    let method = request.method().clone();
    let target = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let (mut parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, BODY_LEN_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit_bytes: BODY_LEN_MAX,
        })?;
    let mut digest = Sha256::new();
    for piece in [method.as_str().as_bytes(), target.as_bytes(), &body] {
        digest.update(piece);
        digest.update([0]);
    }
    let fingerprint = hex(&digest.finalize());
    let id = hex(&Sha256::digest(format!("{scope}\0{key}").as_bytes()));
    let now = state.clock.now().micros();
    let claim = KeptAnswer {
        fingerprint: fingerprint.clone(),
        status: None,
        body: None,
        started_at_micros: now,
    };
    let mut expect = Expect::Absent;
    let claimed = loop {
        match records::write::<KeptAnswer>(store, records::put(&id, &claim, expect)).await? {
            Written::Stored(doc) => break doc.version,
            Written::Refused(Refused::VersionConflict { .. }) => {}
            Written::Refused(refused) => return Err(refused.into()),
            Written::Deleted => return Err(ApiError::Internal("a claim answered deleted".into())),
        }
        let Some(first) = records::get::<KeptAnswer>(store, &id).await? else {
            // Given up by a request that failed meanwhile: claim it anew.
            expect = Expect::Absent;
            continue;
        };
        if first.body.fingerprint != fingerprint {
            return Err(ApiError::Rejected(Reject::IdempotencyConflict));
        }
        if let (Some(status), Some(body)) = (first.body.status, first.body.body) {
            return Ok(replay(status, body));
        }
        let running_for = now - first.body.started_at_micros;
        if running_for < RUNNING_TAKEOVER_SECS * ledger::MICROS_PER_SECOND {
            return Err(ApiError::IdempotencyInProgress);
        }
        // The first request never finished (its node stopped): this one
        // runs in its place, if no other took over first.
        expect = Expect::Version(first.version);
    };
    parts.extensions.insert(KeptKey(key));
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status();
    if status.is_server_error() {
        // Not an answer worth keeping: a retry runs again.
        let forget = records::delete::<KeptAnswer>(&id, Expect::Version(claimed));
        if let Err(error) = records::write::<KeptAnswer>(store, forget).await {
            tracing::warn!(%error, "an idempotency key's claim was not given up");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LEN_MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer to keep: {e}")))?;
    let answer = KeptAnswer {
        status: Some(status.as_u16()),
        body: Some(String::from_utf8_lossy(&bytes).into_owned()),
        ..claim
    };
    let keep = records::put(&id, &answer, Expect::Version(claimed));
    match records::write::<KeptAnswer>(store, keep).await {
        Ok(Written::Stored(_)) => {}
        Ok(other) => tracing::warn!(?other, "an idempotency key's answer was not kept"),
        Err(error) => tracing::warn!(%error, "an idempotency key's answer was not kept"),
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The first answer again, marked as a replay.
fn replay(status: u16, body: String) -> Response {
    let mut response = Response::new(Body::from(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Forgets the answers kept before `before`; returns how many.
pub async fn prune(store: &dyn Store, before: Timestamp) -> Result<usize, StoreError> {
    let filter = RecordFilter::Range {
        name: "started".into(),
        from: None,
        to: Some(records::sortable_instant(before)),
    };
    let mut forgotten = 0;
    for doc in records::list_all::<KeptAnswer>(store, filter).await? {
        let forget = records::delete::<KeptAnswer>(&doc.id, Expect::Version(doc.version));
        if let Written::Deleted = records::write::<KeptAnswer>(store, forget).await? {
            forgotten += 1;
        }
    }
    Ok(forgotten)
}
