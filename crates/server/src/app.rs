//! The assembled server: the core API and the capabilities plugged into it,
//! their routes served together and their background jobs run from start to
//! shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::AppState;
use crate::jobs::{self, Job, JobsConfig};
use crate::policy::Policy;
use crate::routes::{self, Capability};

/// The server with every capability in place: the router of the core's
/// routes and theirs, the policy one of them brings, and the jobs of all.
pub struct App {
    state: Arc<AppState>,
    router: Router,
    jobs: Vec<Job>,
}

impl App {
    /// The server of `state`, its core jobs run as `jobs` says, with
    /// `capabilities` plugged in: their routes and error codes join the
    /// core's, their jobs follow the core's, and the policy one of them
    /// brings decides inside the core's writes.
    ///
    /// # Panics
    ///
    /// When more than one capability brings a policy, or a route's
    /// description does not match it (see [`routes::router`]).
    pub fn new(mut state: AppState, jobs: JobsConfig, mut capabilities: Vec<Capability>) -> App {
        if let Some(policy) = the_policy(&mut capabilities) {
            state.policy = policy;
        }
        let state = Arc::new(state);
        state.metrics.observe(state.store.stats());
        let mut all = jobs::core(&state, jobs);
        for capability in &mut capabilities {
            all.append(&mut capability.jobs);
        }
        for capability in &mut capabilities {
            if let Some(handle) = capability.metrics.take() {
                handle.attach(state.metrics.clone());
            }
        }
        let handles: Vec<_> = capabilities
            .iter_mut()
            .filter_map(|c| c.in_process.take())
            .collect();
        let router = routes::router(state.clone(), capabilities);
        for handle in handles {
            handle.attach(router.clone(), state.clone());
        }
        App {
            state,
            router,
            jobs: all,
        }
    }

    /// What every handler shares.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The router alone, which runs no job: for tests that do each job's
    /// work when they choose.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The background jobs [`App::serve`] runs: the core's, then each
    /// capability's.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// Starts the jobs, serves the API on `listener` within `limits` until
    /// `shutdown` resolves and the requests in flight are answered (or the
    /// shutdown grace ran out), then stops the jobs and waits for them to
    /// let go of the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        limits: crate::connections::Limits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let App {
            router,
            jobs,
            state,
        } = self;
        let running = jobs::start(jobs, &state.jobs_health);
        drop(state);
        let served = crate::connections::serve(listener, router, limits, shutdown).await;
        running.stop().await;
        served
    }
}

/// Takes the one policy the capabilities bring, if any.
///
/// # Panics
///
/// When more than one brings a policy: which would decide what an account
/// opens with is not for the order of the list to say.
fn the_policy(capabilities: &mut [Capability]) -> Option<Arc<dyn Policy>> {
    let mut policies = capabilities.iter_mut().filter_map(|c| c.policy.take());
    let policy = policies.next();
    assert!(
        policies.next().is_none(),
        "more than one capability brings a policy for the core's writes; at most one may"
    );
    policy
}

#[cfg(test)]
mod tests {
    use ledger::{AccountId, Source, Timestamp};
    use store::BoxFuture;

    use super::*;
    use crate::error::ApiError;
    use crate::policy::{NoPolicy, Opening};

    /// A policy that gives every grant the priority it holds.
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

    fn with_policy(priority: u8) -> Capability {
        Capability::new(Vec::new(), Vec::new()).with_policy(Arc::new(Priority(priority)))
    }

    #[tokio::test]
    async fn the_one_policy_a_capability_brings_is_taken() {
        let mut capabilities = vec![Capability::new(Vec::new(), Vec::new()), with_policy(7)];
        let policy = the_policy(&mut capabilities).expect("a policy");
        assert_eq!(policy.priority(Source::Purchase).await.unwrap(), Some(7));
        assert!(capabilities.iter().all(|c| c.policy.is_none()));
    }

    #[test]
    fn no_policy_is_taken_when_no_capability_brings_one() {
        let mut capabilities = vec![Capability::new(Vec::new(), Vec::new())];
        assert!(the_policy(&mut capabilities).is_none());
    }

    #[test]
    #[should_panic(expected = "more than one capability brings a policy")]
    fn two_capabilities_with_a_policy_are_refused() {
        the_policy(&mut [with_policy(1), with_policy(2)]);
    }
}
