//! Outbound webhooks end to end over HTTP: a real server on port 0 with billing and the
//! webhooks plugged in, a receiver on port 0 standing for an operator's endpoint, on SQLite and
//! on PostgreSQL.

#[macro_use]
mod support;

mod billing;
mod deliveries;
mod endpoints;
mod outbox;
