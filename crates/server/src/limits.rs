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
//!
//! A key may be held to a rate ([`RateLimits`]): a token bucket per key, as
//! many tokens as requests a second and refilled at that rate, so a burst
//! of one second's worth passes and then the rate; a request finding the
//! bucket empty is answered `429 rate_limited`. Buckets live in this node's
//! memory: with several nodes behind a balancer a key gets the rate on each.

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

/// A micro-token: a bucket counts in millionths of a request, so that it
/// refills by whole numbers every microsecond.
const MICRO: u64 = 1_000_000;

/// One key's token bucket: how full it was when last looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Micro-tokens in it then.
    level: u64,
    /// When, in microseconds since the epoch.
    at_micros: i64,
}

/// What a bucket answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Let through.
    Allowed {
        /// Whole requests left in the bucket now.
        remaining: u64,
        /// Seconds until the bucket is full again (rounded up).
        reset_secs: u64,
    },
    /// Refused: the bucket holds less than one request.
    Limited {
        /// Seconds until it holds one (rounded up, at least 1).
        retry_after_secs: u64,
    },
}

impl Bucket {
    /// A full bucket for `rate`, at `now_micros`.
    pub fn full_per(rate: Rate, now_micros: i64) -> Bucket {
        Bucket {
            level: rate.capacity(),
            at_micros: now_micros,
        }
    }

    /// Takes one request out at `now_micros`, for `rate`, the bucket
    /// holding a period's worth at most. Time that seems to run backwards
    /// refills nothing.
    pub fn take_per(&mut self, rate: Rate, now_micros: i64) -> Take {
        // One request costs `per_secs` seconds of micro-units; each
        // microsecond adds `requests` of them.
        let refill = u64::from(rate.requests.max(1));
        let cost = rate.cost();
        let capacity = rate.capacity();
        let elapsed = u64::try_from(now_micros.saturating_sub(self.at_micros)).unwrap_or(0);
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(refill))
            .min(capacity);
        self.at_micros = self.at_micros.max(now_micros);
        if self.level < cost {
            let missing_micros = (cost - self.level).div_ceil(refill);
            return Take::Limited {
                retry_after_secs: missing_micros.div_ceil(MICRO).max(1),
            };
        }
        self.level -= cost;
        Take::Allowed {
            remaining: self.level / cost,
            reset_secs: (capacity - self.level).div_ceil(refill).div_ceil(MICRO),
        }
    }
}

/// A rate: `requests` every `per_secs` seconds, a burst of `requests`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests a period, and the burst.
    pub requests: u32,
    /// The period, in seconds.
    pub per_secs: u32,
}

impl Rate {
    /// `requests` a second.
    pub const fn per_second(requests: u32) -> Rate {
        Rate {
            requests,
            per_secs: 1,
        }
    }

    /// `requests` a minute.
    pub const fn per_minute(requests: u32) -> Rate {
        Rate {
            requests,
            per_secs: 60,
        }
    }

    fn cost(self) -> u64 {
        u64::from(self.per_secs.max(1)) * MICRO
    }

    fn capacity(self) -> u64 {
        u64::from(self.requests.max(1)) * self.cost()
    }
}

/// Buckets by client address, for the routes that take no key or that a
/// stolen key could hammer (sign-ins, links, webhooks): each address gets
/// the route's rate on this node.
#[derive(Debug, Default)]
pub struct AddressLimits {
    buckets: std::sync::Mutex<std::collections::HashMap<(std::net::IpAddr, &'static str), Bucket>>,
}

/// The addresses remembered at most; past it, those whose bucket has had
/// an hour to refill are forgotten.
const ADDRESSES_KEPT: usize = 100_000;

impl AddressLimits {
    /// Takes one request of `address` out of its bucket for `what` (a
    /// route's name), held to `rate`, at `now_micros`.
    pub fn take(
        &self,
        address: std::net::IpAddr,
        what: &'static str,
        rate: Rate,
        now_micros: i64,
    ) -> Take {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= ADDRESSES_KEPT {
            let hour_ago = now_micros.saturating_sub(3_600 * 1_000_000);
            buckets.retain(|_, bucket| bucket.at_micros > hour_ago);
        }
        buckets
            .entry((address, what))
            .or_insert_with(|| Bucket::full_per(rate, now_micros))
            .take_per(rate, now_micros)
    }
}

/// The rates keys are held to, and their buckets on this node.
#[derive(Debug, Default)]
pub struct RateLimits {
    /// Requests a second for each kind of key without a rate of its own:
    /// admin, service, customer (`CREDITD_RATE_LIMIT_ADMIN`, `_SERVICE`,
    /// `_CUSTOMER`); none when unset.
    pub by_kind: [Option<u32>; 3],
    shards: [std::sync::Mutex<std::collections::HashMap<Arc<str>, Bucket>>; 16],
}

impl RateLimits {
    /// Limits of these rates by kind of key: admin, service, customer.
    pub fn new(by_kind: [Option<u32>; 3]) -> RateLimits {
        RateLimits {
            by_kind,
            shards: Default::default(),
        }
    }

    /// The rate key `key_id` is held to: its own, else its kind's.
    pub fn rate_of(&self, own: Option<u32>, kind: usize) -> Option<u32> {
        own.or(self.by_kind.get(kind).copied().flatten())
    }

    /// Takes one request out of the bucket of `key_id`, held to `rate`, at
    /// `now_micros`.
    pub fn take(&self, key_id: &Arc<str>, rate: u32, now_micros: i64) -> Take {
        use std::hash::{Hash, Hasher};
        // The shard only spreads the lock: a hasher of fixed keys keeps a
        // key on one shard.
        let mut hasher = std::hash::DefaultHasher::new();
        key_id.hash(&mut hasher);
        let shard = &self.shards[(hasher.finish() % 16) as usize];
        let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        buckets
            .entry(key_id.clone())
            .or_insert_with(|| Bucket::full_per(Rate::per_second(rate), now_micros))
            .take_per(Rate::per_second(rate), now_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn a_full_bucket_lets_a_seconds_worth_through_then_refuses_until_it_refills() {
        let mut bucket = Bucket::full_per(Rate::per_second(3), 0);
        assert_eq!(
            bucket.take_per(Rate::per_second(3), 0),
            Take::Allowed {
                remaining: 2,
                reset_secs: 1
            }
        );
        assert_eq!(
            bucket.take_per(Rate::per_second(3), 0),
            Take::Allowed {
                remaining: 1,
                reset_secs: 1
            }
        );
        assert_eq!(
            bucket.take_per(Rate::per_second(3), 0),
            Take::Allowed {
                remaining: 0,
                reset_secs: 1
            }
        );
        assert_eq!(
            bucket.take_per(Rate::per_second(3), 0),
            Take::Limited {
                retry_after_secs: 1
            }
        );
        // A third of a second later it holds one request again.
        assert_eq!(
            bucket.take_per(Rate::per_second(3), SECOND / 3),
            Take::Limited {
                retry_after_secs: 1
            }
        );
        assert!(matches!(
            bucket.take_per(Rate::per_second(3), SECOND / 3 + 1),
            Take::Allowed { remaining: 0, .. }
        ));
        // Idle long, it is full, never fuller.
        assert_eq!(
            bucket.take_per(Rate::per_second(3), 100 * SECOND),
            Take::Allowed {
                remaining: 2,
                reset_secs: 1
            }
        );
    }

    #[test]
    fn a_slow_rate_says_how_long_to_wait() {
        let mut bucket = Bucket::full_per(Rate::per_second(1), 0);
        assert!(matches!(
            bucket.take_per(Rate::per_second(1), 0),
            Take::Allowed {
                remaining: 0,
                reset_secs: 1
            }
        ));
        assert_eq!(
            bucket.take_per(Rate::per_second(1), SECOND / 10),
            Take::Limited {
                retry_after_secs: 1
            }
        );
        let mut big = Bucket::full_per(Rate::per_second(1000), 0);
        for _ in 0..1000 {
            assert!(matches!(
                big.take_per(Rate::per_second(1000), 0),
                Take::Allowed { .. }
            ));
        }
        assert_eq!(
            big.take_per(Rate::per_second(1000), 0),
            Take::Limited {
                retry_after_secs: 1
            }
        );
        assert!(matches!(
            big.take_per(Rate::per_second(1000), 1000),
            Take::Allowed { remaining: 0, .. }
        ));
    }

    #[test]
    fn a_rate_a_minute_lets_its_burst_through_and_refills_over_the_minute() {
        let rate = Rate::per_minute(10);
        let mut bucket = Bucket::full_per(rate, 0);
        for left in (0..10).rev() {
            assert!(
                matches!(bucket.take_per(rate, 0), Take::Allowed { remaining, .. } if remaining == left)
            );
        }
        assert_eq!(
            bucket.take_per(rate, 0),
            Take::Limited {
                retry_after_secs: 6
            }
        );
        assert!(matches!(
            bucket.take_per(rate, 6 * SECOND),
            Take::Allowed { remaining: 0, .. }
        ));
        assert_eq!(
            bucket.take_per(rate, 6 * SECOND),
            Take::Limited {
                retry_after_secs: 6
            }
        );
    }

    #[test]
    fn addresses_have_their_own_buckets_per_route() {
        let limits = AddressLimits::default();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let rate = Rate::per_minute(1);
        assert!(matches!(
            limits.take(a, "login", rate, 0),
            Take::Allowed { .. }
        ));
        assert!(matches!(
            limits.take(a, "login", rate, 0),
            Take::Limited { .. }
        ));
        assert!(matches!(
            limits.take(a, "webhook", rate, 0),
            Take::Allowed { .. }
        ));
        assert!(matches!(
            limits.take(b, "login", rate, 0),
            Take::Allowed { .. }
        ));
    }

    #[test]
    fn time_running_backwards_refills_nothing() {
        let mut bucket = Bucket::full_per(Rate::per_second(2), 10 * SECOND);
        bucket.take_per(Rate::per_second(2), 10 * SECOND);
        bucket.take_per(Rate::per_second(2), 10 * SECOND);
        assert_eq!(
            bucket.take_per(Rate::per_second(2), 5 * SECOND),
            Take::Limited {
                retry_after_secs: 1
            }
        );
        // Nor does the bucket forget the later instant it saw.
        assert_eq!(
            bucket.take_per(Rate::per_second(2), 10 * SECOND),
            Take::Limited {
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn each_key_has_its_own_bucket_and_its_own_rate_wins_over_its_kinds() {
        let limits = RateLimits::new([None, Some(1), Some(5)]);
        assert_eq!(limits.rate_of(None, 0), None);
        assert_eq!(limits.rate_of(None, 1), Some(1));
        assert_eq!(limits.rate_of(Some(9), 1), Some(9));
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("key_a"), Arc::from("key_b"));
        assert!(matches!(limits.take(&a, 1, 0), Take::Allowed { .. }));
        assert!(matches!(limits.take(&a, 1, 0), Take::Limited { .. }));
        assert!(matches!(limits.take(&b, 1, 0), Take::Allowed { .. }));
    }

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
