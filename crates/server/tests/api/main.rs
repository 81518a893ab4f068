//! The HTTP API end to end: a real server on port 0 over a fresh database per test.

#[macro_use]
mod support;

mod accounts;
mod audit;
mod capabilities;
mod concurrency;
mod edges;
mod external;
mod features;
mod grants;
mod health;
mod holds;
mod idempotency;
mod input;
mod keys;
mod metrics;
mod openapi;
mod rate_limits;
mod test_clock;
mod top_up;
mod transactions;
mod usage;
