//! Billing end to end over HTTP: a real server on port 0, with billing plugged in, over a fresh
//! database per test, on SQLite and on PostgreSQL.

#[macro_use]
mod support;

mod access;
mod capability;
mod checkout;
mod daily;
mod objects;
mod openapi;
mod packages;
mod payments;
mod plans;
mod provider_plans;
mod renewals;
mod settings;
mod worked_example;
