//! What every store must do, whatever its database: each case runs on SQLite and on PostgreSQL.
//!
//! A case is one `store_test!` function in the file of its topic (a new
//! topic is a new module below). Its `store` is a fresh
//! [`support::TestStore`]: call the `Store` methods on it, pass `&store` to
//! the helpers in `common`, move its `clock`, `reopen` it, or reach its
//! database with `select_int` and `sql_while_open` / `sql_while_closed`.
//! What only one store does is tested in `sqlite.rs` or `postgres.rs`.

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod support;

mod audit;
mod calls;
mod claw_backs;
mod concurrency;
mod external;
mod filters;
mod history;
mod idempotency;
mod periods;
mod reads;
mod records;
mod writes;
