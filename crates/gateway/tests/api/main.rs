//! The gateway end to end over HTTP: a real server on port 0 with the gateway plugged in, in
//! front of a fake upstream speaking OpenAI's and Anthropic's wire formats, over a fresh
//! database per test, on SQLite and on PostgreSQL.

#[macro_use]
mod support;

mod access;
mod byok;
mod calls;
mod failures;
mod limits;
mod prices;
mod usage;
