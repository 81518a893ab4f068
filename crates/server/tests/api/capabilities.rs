//! A capability plugged in as the binary plugs one in: its job runs while
//! the server serves and stops when it stops, and its policy decides inside
//! the core's writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ledger::{AccountId, Source, Timestamp};
use server::error::ApiError;
use server::policy::{NoPolicy, Opening, Policy};
use server::{App, AppState, Capability, Job, JobsConfig, KeyHash, Keys};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{BoxFuture, Clock, ManualClock, Store};

use crate::support::{KEY, START};

/// Gives every grant that names no priority the one it holds.
struct Priority(u8);

impl Policy for Priority {
    fn opening<'a>(
        &'a self,
        account: &'a AccountId,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Opening, ApiError>> {
        NoPolicy.opening(account, now)
    }

    fn priority<'a>(&'a self, _source: Source) -> BoxFuture<'a, Result<Option<u8>, ApiError>> {
        Box::pin(std::future::ready(Ok(Some(self.0))))
    }
}

/// A capability with no route, a job that counts its rounds every 10 ms,
/// and a policy.
fn counting(rounds: &Arc<AtomicUsize>) -> Capability {
    let counted = rounds.clone();
    let job = Job::new("counting", Duration::from_millis(10), move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    Capability::new(Vec::new(), Vec::new())
        .with_job(job)
        .with_policy(Arc::new(Priority(7)))
}

#[tokio::test]
async fn a_capabilitys_job_runs_while_the_app_serves_and_its_policy_decides() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(START));
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            SqliteOptions::new(dir.path().join("creditd.db")),
            clock.clone(),
        )
        .unwrap(),
    );
    let rounds = Arc::new(AtomicUsize::new(0));
    let state = AppState::new(store, clock, Keys::new(Some(KeyHash::of(KEY))));
    let app = App::new(state, JobsConfig::default(), vec![counting(&rounds)]);
    let names: Vec<&str> = app.jobs().iter().map(|job| job.name).collect();
    assert_eq!(names, ["sweep", "keys", "counting"]);
    let priority = app.state().policy.priority(Source::Purchase).await.unwrap();
    assert_eq!(priority, Some(7));
    assert_eq!(
        rounds.load(Ordering::SeqCst),
        0,
        "no job runs before serving"
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(app.serve(listener, Default::default(), async {
        let _ = stopped.await;
    }));
    let healthz = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), reqwest::StatusCode::OK);
    for _ in 0..500 {
        if rounds.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        rounds.load(Ordering::SeqCst) >= 2,
        "the job runs every interval"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let after = rounds.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rounds.load(Ordering::SeqCst),
        after,
        "the job stops with the app"
    );
}
