//! What one request may take: a place among the requests being worked on,
//! and a time until its answer begins.
//!
//! Beyond [`RequestLimits::max_in_flight`] requests being worked on at
//! once, a request is refused at once with `503 overloaded` and
//! `Retry-After`, rather than queued behind the others past its client's
//! own timeout: the requests accepted keep their latency, the rest learn at
//! once to come back. A request counts from its access check until its
//! answer's head is ready; a streamed body that follows does not hold a
//! place (it waits on its upstream, not on this node).
//!
//! A request whose answer has not begun within its route's time limit is
//! answered `503 request_timeout`; what it had sent to the store may still
//! be applied, so a client retries a write with the same `Idempotency-Key`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Which time limit a route's requests are held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeLimit {
    /// [`RequestLimits::timeout`]: the API's own work, and the payment
    /// provider's calls it makes.
    Request,
    /// [`RequestLimits::upstream_timeout`]: a model's answer, which may
    /// take minutes before its first byte.
    Upstream,
}

/// The limits every request is held to, shared by the node's routes.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// The time a request may take until its answer begins
    /// (`CREDITD_REQUEST_TIMEOUT`, 30 s by default).
    pub timeout: Duration,
    /// The same for requests that wait on a model
    /// (`CREDITD_UPSTREAM_TIMEOUT`, 600 s by default).
    pub upstream_timeout: Duration,
    gate: Arc<Gate>,
}

impl Default for RequestLimits {
    fn default() -> RequestLimits {
        RequestLimits::new(Duration::from_secs(30), Duration::from_secs(600), 1024)
    }
}

impl RequestLimits {
    /// Limits of `timeout`, `upstream_timeout`, and at most `max_in_flight`
    /// requests being worked on at once (at least one).
    pub fn new(timeout: Duration, upstream_timeout: Duration, max_in_flight: usize) -> Self {
        RequestLimits {
            timeout,
            upstream_timeout,
            gate: Arc::new(Gate {
                max: max_in_flight.max(1),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// The most requests worked on at once (`CREDITD_MAX_IN_FLIGHT`).
    pub fn max_in_flight(&self) -> usize {
        self.gate.max
    }

    /// The requests being worked on now.
    pub fn in_flight(&self) -> usize {
        self.gate.in_flight.load(Ordering::Relaxed)
    }

    /// A place for one request, held until dropped; none when every place
    /// is taken.
    pub fn enter(&self) -> Option<Place> {
        let gate = &self.gate;
        let before = gate.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= gate.max {
            gate.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Place(gate.clone()))
    }

    /// The time limit of a route held to `limit`.
    pub fn of(&self, limit: TimeLimit) -> Duration {
        match limit {
            TimeLimit::Request => self.timeout,
            TimeLimit::Upstream => self.upstream_timeout,
        }
    }
}

#[derive(Debug)]
struct Gate {
    max: usize,
    in_flight: AtomicUsize,
}

/// One request's place among those being worked on.
#[derive(Debug)]
pub struct Place(Arc<Gate>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_given_up_to_the_cap_and_back_when_dropped() {
        let limits = RequestLimits::new(Duration::from_secs(1), Duration::from_secs(2), 2);
        let first = limits.enter().expect("a first place");
        let second = limits.enter().expect("a second place");
        assert!(limits.enter().is_none(), "the cap is two");
        assert_eq!(limits.in_flight(), 2);
        drop(first);
        let third = limits.enter().expect("a place given back is given again");
        assert!(limits.enter().is_none());
        drop((second, third));
        assert_eq!(limits.in_flight(), 0);
    }

    #[test]
    fn a_cap_of_zero_still_serves_one() {
        let limits = RequestLimits::new(Duration::from_secs(1), Duration::from_secs(1), 0);
        assert_eq!(limits.max_in_flight(), 1);
        let only = limits.enter();
        assert!(only.is_some() && limits.enter().is_none());
    }

    #[test]
    fn routes_that_wait_on_a_model_get_the_longer_limit() {
        let limits = RequestLimits::new(Duration::from_secs(30), Duration::from_secs(600), 8);
        assert_eq!(limits.of(TimeLimit::Request), Duration::from_secs(30));
        assert_eq!(limits.of(TimeLimit::Upstream), Duration::from_secs(600));
    }
}
