//! The audit trail: every change an admin or service key makes to configuration or credits —
//! who (the key's id, name and kind), what (the route and the concrete path), when, from where
//! (the client's address) and its request id — kept as a record after the change succeeded, and
//! listed by `GET /v1/audit-events`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use store::records::{self, Expect, Kind, Lookup};

use crate::AppState;
use crate::auth::{ApiKey, CONFIGURED_KEY_ID, KeyKind, Principal};

/// Whether a route's successful writes are kept in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audit {
    /// Kept, when an admin or service key made them: every write route but
    /// those that say why not.
    Kept,
    /// Not kept, for the reason given: usage (consumes and holds, at the
    /// rate of the product's traffic, already in the journal with their
    /// key), or what a customer does through the operator's backend (a
    /// checkout, a session link).
    NotKept(&'static str),
}

/// One change made by an admin or service key, as a record of kind
/// `audit_event`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the change was answered, in micros.
    pub at_micros: i64,
    /// The key's id.
    pub key_id: String,
    /// The key's name when it was used (`CREDITD_ADMIN_KEY` for the
    /// configured key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// `admin` or `service`.
    pub key_kind: String,
    /// The method.
    pub method: String,
    /// The route's template (`/v1/accounts/{account_id}/grants`).
    pub route: String,
    /// The path asked for.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The account the path names, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client's address, as this node saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
}

/// The `listed` lookup's value of an event made at `at_micros`: values sort
/// newest first.
pub fn listed_value(at_micros: i64) -> String {
    format!("{:020}", u64::MAX - ((at_micros as u64) ^ (1 << 63)))
}

impl Kind for AuditEvent {
    const KIND: &'static str = "audit_event";

    fn lookups(&self) -> Vec<Lookup> {
        let order = listed_value(self.at_micros);
        let mut lookups = vec![
            Lookup::ordered("listed", order.clone()),
            Lookup::ordered("key", format!("{}/{order}", self.key_id)),
        ];
        if let Some(account) = &self.account {
            lookups.push(Lookup::ordered("account", format!("{account}/{order}")));
        }
        lookups
    }
}

/// What an audited request is, read before it is handed on.
#[derive(Clone, Debug)]
pub struct Pending {
    principal: Principal,
    method: String,
    route: String,
    path: String,
    request_id: Option<String>,
    client_address: Option<String>,
}

impl Pending {
    /// The audit of `request`, if its principal's changes are kept: an
    /// admin or service key's.
    pub fn of(request: &Request) -> Option<Pending> {
        let principal = request.extensions().get::<Principal>()?;
        if !matches!(principal.kind, KeyKind::Admin | KeyKind::Service) {
            return None;
        }
        let path = request.uri().path().to_owned();
        Some(Pending {
            principal: principal.clone(),
            method: request.method().as_str().to_owned(),
            route: request
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| path.clone(), |m| m.as_str().to_owned()),
            path,
            request_id: request
                .headers()
                .get(crate::request_id::INCOMING)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            client_address: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip().to_string()),
        })
    }
}

/// The account a path names where its route has `{account_id}`.
pub fn account_of(route: &str, path: &str) -> Option<String> {
    let at = route.split('/').position(|s| s == "{account_id}")?;
    let segment = path.split('/').nth(at)?;
    let decoded = percent_decode(segment)?;
    ledger::AccountId::parse(&decoded)
        .ok()
        .map(|a| a.as_str().to_owned())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Keeps the audit of a change answered `status`. A failure is logged: the
/// change is made and answered whatever becomes of its audit.
pub async fn keep(state: &AppState, pending: Pending, status: u16) {
    let key_name = if &*pending.principal.key_id == CONFIGURED_KEY_ID {
        Some("CREDITD_ADMIN_KEY".to_owned())
    } else {
        match records::get::<ApiKey>(state.store.as_ref(), &pending.principal.key_id).await {
            Ok(doc) => doc.map(|d| d.body.name),
            Err(_) => None,
        }
    };
    let now: Timestamp = state.clock.now();
    let event = AuditEvent {
        at_micros: now.micros(),
        key_id: pending.principal.key_id.to_string(),
        key_name,
        key_kind: pending.principal.kind.code().to_owned(),
        account: account_of(&pending.route, &pending.path),
        method: pending.method,
        route: pending.route,
        path: pending.path,
        status,
        request_id: pending.request_id,
        client_address: pending.client_address,
    };
    let id = new_id();
    let write = records::put(&id, &event, Expect::Absent);
    if let Err(error) = records::write::<AuditEvent>(state.store.as_ref(), write).await {
        tracing::error!(%error, route = %event.route, key = %event.key_id, "an audit event was not kept");
    }
}

/// A new event's id: `aud_` and 32 hex digits, of which the last 16 fall as
/// events are made, so that events of one instant list newest first too.
fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the ids still differ within this process.
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let next = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("aud_{process:016x}{:016x}", u64::MAX - next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_read_from_the_path_where_the_route_names_it() {
        assert_eq!(
            account_of(
                "/v1/accounts/{account_id}/grants",
                "/v1/accounts/org%3Aacme/grants"
            ),
            Some("org:acme".into())
        );
        assert_eq!(account_of("/v1/plans/{plan_id}", "/v1/plans/pro"), None);
        assert_eq!(
            account_of("/v1/accounts/{account_id}", "/v1/accounts/%zz"),
            None
        );
    }

    #[test]
    fn newer_events_list_first() {
        assert!(listed_value(2) < listed_value(1));
        // Of one instant too: by id.
        let (a, b) = (new_id(), new_id());
        assert!(b < a && a.len() == 36, "{a} {b}");
    }
}
