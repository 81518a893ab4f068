//! The test clock: with `CREDITD_TEST_CLOCK=true`, an admin moves the server's time forward, so
//! that a month of expiries, holds, renewals and daily rewards can be rehearsed in a minute.
//!
//! The offset is kept in the store, as the record `test_clock/offset`: an advance is written there
//! at the version it was read at before it takes effect, so it survives a restart and two nodes
//! advancing at once never lose a step, and every node follows what the record says.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::MICROS_PER_SECOND;
use serde::{Deserialize, Serialize};
use store::clock::{AdvanceError, OFFSET_MAX_MICROS, OffsetClock, next_offset};
use store::records::{self, Expect, Kind, Modified, Step};
use store::{Clock, Command, Executed, Op, Outcome, Store, StoreError};
use utoipa::ToSchema;

use crate::auth::Access;
use crate::error::ApiError;
use crate::extract::{self, ReadBody};
use crate::jobs::Job;
use crate::openapi::Doc;
use crate::render::{self, Instant};
use crate::routes::{Capability, Route, Routes};

/// The largest step of one advance, in seconds: ten years of 366 days.
pub const ADVANCE_SECONDS_MAX: i64 = 3_660 * 86_400;

/// How often each node reads the offset the store keeps, to follow an
/// advance made on another node.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The id of the one record of kind [`Offset`].
const OFFSET_ID: &str = "offset";

/// How far the test clock runs ahead of the system's time, as stored: a
/// record of kind `test_clock`, id `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Offset {
    /// Microseconds ahead; never negative, never more than
    /// [`OFFSET_MAX_MICROS`], and never smaller than in an earlier version.
    offset_micros: i64,
}

impl Kind for Offset {
    const KIND: &'static str = "test_clock";
}

/// The offset the store keeps and the version it was read at; 0 and
/// [`Expect::Absent`] before the first advance.
async fn stored(store: &dyn Store) -> Result<(i64, Expect), StoreError> {
    let Some(doc) = records::get::<Offset>(store, OFFSET_ID).await? else {
        return Ok((0, Expect::Absent));
    };
    Ok((checked(&doc)?, Expect::Version(doc.version)))
}

/// The offset a record holds, when it is in range.
fn checked(doc: &records::Doc<Offset>) -> Result<i64, StoreError> {
    let offset = doc.body.offset_micros;
    if !(0..=OFFSET_MAX_MICROS).contains(&offset) {
        return Err(StoreError::Corrupt(format!(
            "record {}/{OFFSET_ID}: offset {offset} is out of range",
            Offset::KIND
        )));
    }
    Ok(offset)
}

/// The write that moves the offset read (`doc`, absent before the first
/// advance) forward by `step` micros, at the version read.
fn advanced(doc: Option<records::Doc<Offset>>, step: i64) -> Result<Step<()>, ApiError> {
    let (offset, expect) = match doc {
        Some(doc) => (checked(&doc)?, Expect::Version(doc.version)),
        None => (0, Expect::Absent),
    };
    let next = next_offset(offset, step).map_err(|error| match error {
        AdvanceError::NotForward => {
            ApiError::InvalidRequest("seconds must be greater than zero".to_owned())
        }
        AdvanceError::TooFar => ApiError::InvalidRequest(format!(
            "the test clock may run at most {} days ahead; it runs {} seconds ahead",
            OFFSET_MAX_MICROS / ledger::MICROS_PER_DAY,
            offset / MICROS_PER_SECOND
        )),
    })?;
    let write = records::put(
        OFFSET_ID,
        &Offset {
            offset_micros: next,
        },
        expect,
    );
    Ok(Step::Write(Command::new(Op::Record(write)), ()))
}

/// The offset the store keeps, in microseconds; 0 before the first advance.
/// A server started without the test clock reads it to warn that its time
/// is behind the time the ledger was run at.
pub async fn stored_offset_micros(store: &dyn Store) -> Result<i64, StoreError> {
    Ok(stored(store).await?.0)
}

/// The test clock of one node: an [`OffsetClock`] on the system's time that
/// follows the offset the store keeps. The store, the server and the
/// background jobs must all read [`TestClock::clock`].
#[derive(Debug)]
pub struct TestClock {
    clock: Arc<OffsetClock>,
}

impl TestClock {
    /// A test clock on `base` (the system's clock; a manual one in tests),
    /// at offset 0 until [`TestClock::refresh`] reads the stored one.
    pub fn new(base: Arc<dyn Clock>) -> Arc<TestClock> {
        Arc::new(TestClock {
            clock: Arc::new(OffsetClock::new(base)),
        })
    }

    /// The clock to run everything on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// How far ahead of the system's time this node's clock runs, in
    /// microseconds.
    pub fn offset_micros(&self) -> i64 {
        self.clock.offset_micros()
    }

    /// Reads the offset the store keeps and moves this node's clock up to
    /// it; answers the offset now in effect. Called once when the store is
    /// opened, before anything else reads the clock, then every
    /// [`REFRESH_INTERVAL`], and by `GET /v1/test-clock`.
    pub async fn refresh(&self, store: &dyn Store) -> Result<i64, StoreError> {
        let (offset, _) = stored(store).await?;
        if self.clock.follow(offset) {
            tracing::warn!(
                offset_seconds = offset / MICROS_PER_SECOND,
                now = %self.clock.now(),
                "TEST CLOCK follows the offset the store keeps"
            );
        }
        Ok(self.clock.offset_micros())
    }

    /// Moves the clock forward by `seconds` (at least 1): writes the new
    /// offset to the store at the version it read, and only once that is
    /// stored moves this node's clock. When another node advanced in
    /// between, reads again and adds the step to what it wrote, so no step
    /// is lost. Answers the offset now in effect.
    pub async fn advance(&self, store: &dyn Store, seconds: i64) -> Result<i64, ApiError> {
        let step = seconds.saturating_mul(MICROS_PER_SECOND);
        let modified = records::modify::<Offset, _, ApiError>(store, OFFSET_ID, |doc| {
            Box::pin(std::future::ready(advanced(doc, step)))
        })
        .await?;
        match modified {
            Modified::Written(Executed::Fresh(Ok(Outcome::RecordPut(record))), ()) => {
                let next = records::Doc::<Offset>::from_record(record)?
                    .body
                    .offset_micros;
                self.clock.follow(next);
                tracing::warn!(
                    seconds,
                    offset_seconds = next / MICROS_PER_SECOND,
                    now = %self.clock.now(),
                    "TEST CLOCK advanced"
                );
                Ok(self.clock.offset_micros())
            }
            other => Err(ApiError::Internal(format!(
                "writing the test clock's offset answered {other:?}"
            ))),
        }
    }

    /// The test clock as a capability of the server that runs on it: its
    /// routes (reading the clock and advancing it, both for admin keys) and
    /// a job that follows the offset `store` keeps every
    /// [`REFRESH_INTERVAL`], so that an advance made on another node
    /// reaches this one within about that long.
    pub fn capability(self: &Arc<Self>, store: Arc<dyn Store>) -> Capability {
        let clock = self.clone();
        let follows = store.clone();
        Capability::new(routes(store, self), Vec::new()).with_job(Job::new(
            "test clock",
            REFRESH_INTERVAL,
            move || {
                let clock = clock.clone();
                let store = follows.clone();
                async move {
                    if let Err(error) = clock.refresh(store.as_ref()).await {
                        tracing::warn!(%error, "reading the test clock's offset failed");
                    }
                }
            },
        ))
    }

    /// The clock's state as the routes answer it.
    fn view(&self) -> TestClockView {
        TestClockView {
            enabled: true,
            now: Instant(self.clock.now()),
            offset_seconds: self.clock.offset_micros() / MICROS_PER_SECOND,
        }
    }
}

/// What the test clock's routes share.
#[derive(Clone)]
struct Shared {
    clock: Arc<TestClock>,
    store: Arc<dyn Store>,
}

/// The test clock's routes: reading it and advancing it, both for admin
/// keys.
fn routes(store: Arc<dyn Store>, clock: &Arc<TestClock>) -> Vec<Route> {
    let shared = Shared {
        clock: clock.clone(),
        store,
    };
    let routes = Routes::with(shared);
    vec![
        routes.route(Access::Admin, Doc::of::<__path_show>(), show),
        routes.route(Access::Admin, Doc::of::<__path_advance>(), advance),
    ]
}

/// The test clock.
#[derive(Serialize, ToSchema)]
#[schema(as = TestClock)]
struct TestClockView {
    /// Always true: without `CREDITD_TEST_CLOCK=true` the test clock's
    /// routes do not exist.
    enabled: bool,
    /// The server's time: the system's time plus the offset. Expiries,
    /// holds and everything else due happen by this time.
    now: Instant,
    /// How far ahead of the system's time the server runs, in seconds;
    /// 0 until the first advance, and never smaller than before.
    #[schema(minimum = 0)]
    offset_seconds: i64,
}

/// How far to move the test clock.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AdvanceTestClock {
    /// Seconds to move forward: a whole number from 1 to 316224000 (ten
    /// years of 366 days).
    #[serde(default)]
    #[schema(value_type = i64, minimum = 1, maximum = 316_224_000, required = true)]
    seconds: Option<i64>,
}

/// Show the test clock
///
/// The server's time and how far ahead of the system's time it runs, as
/// the store keeps it (this node catches up with an advance made on another
/// node here at the latest). The test clock exists only on a server
/// started with `CREDITD_TEST_CLOCK=true`; on any other this route answers
/// 404 `not_found`.
#[utoipa::path(
    get,
    path = "/v1/test-clock",
    tag = "test-clock",
    operation_id = "getTestClock",
    responses(
        (status = 200, description = "The test clock.", body = TestClockView),
    ),
)]
async fn show(State(shared): State<Shared>) -> Result<Response, ApiError> {
    shared.clock.refresh(shared.store.as_ref()).await?;
    Ok(render::json(StatusCode::OK, &shared.clock.view()))
}

/// Advance the test clock
///
/// Moves the server's time forward by `seconds`, for good: the clock never
/// moves back, and keeps its offset across restarts. The new offset is
/// stored before the clock moves; every node follows it within about a
/// second. Whatever falls due meanwhile happens as if the time had passed:
/// reads show lots and holds expired at once, and the background sweep
/// writes their expiries and releases within `CREDITD_SWEEP_INTERVAL_MS`.
/// Not idempotent: each call moves the clock again, and an
/// `Idempotency-Key` is ignored. The test clock exists only on a server
/// started with `CREDITD_TEST_CLOCK=true`; on any other this route answers
/// 404 `not_found`.
#[utoipa::path(
    post,
    path = "/v1/test-clock/advance",
    tag = "test-clock",
    operation_id = "advanceTestClock",
    request_body = AdvanceTestClock,
    responses(
        (status = 200, description = "The test clock, moved.", body = TestClockView),
        (status = 400, description = "`malformed_json`, `invalid_request` (missing \
            `seconds`, not a whole number, below 1 or above 316224000, an offset that \
            would pass 36600 days, unknown field)."),
        (status = 409, description = "`version_conflict`: other nodes kept advancing the \
            clock while this advance was tried again and again; nothing changed, retry."),
    ),
)]
async fn advance(
    State(shared): State<Shared>,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let body: AdvanceTestClock = extract::parse_json(&body)?;
    let seconds = body
        .seconds
        .ok_or_else(|| ApiError::InvalidRequest("missing field `seconds`".to_owned()))?;
    if !(1..=ADVANCE_SECONDS_MAX).contains(&seconds) {
        return Err(ApiError::InvalidRequest(format!(
            "seconds must be a whole number from 1 to {ADVANCE_SECONDS_MAX}"
        )));
    }
    shared.clock.advance(shared.store.as_ref(), seconds).await?;
    Ok(render::json(StatusCode::OK, &shared.clock.view()))
}
