//! The dashboard's API routes: links to the Credits page for an operator's
//! backend, embed tokens, and the balance an embed reads.

mod embed;
mod sessions;

use std::sync::Arc;

use server::limits::Rate;
use server::openapi::Doc;
use server::routes::{Idempotency, Routes};
use server::{Access, Route};

use crate::Dashboard;

/// The dashboard's routes. A link and an embed token are secrets shown
/// once, so their creation takes no Idempotency-Key; the embedded balance
/// needs no API key: its path holds the token, which reads that balance
/// alone. Each client address is held to a rate on the links (10 a second,
/// over any key's) and on the embedded balance (120 a minute).
/// Why a session's link or token is not in the audit trail: a customer
/// opens one each visit, through the operator's backend.
const CUSTOMER_SESSION: &str = "a customer's session, opened through the operator's backend";

pub fn routes(routes: &Routes<Arc<Dashboard>>) -> Vec<Route> {
    vec![
        routes
            .route(
                Access::Service,
                Doc::of::<sessions::__path_create>(),
                sessions::create,
            )
            .with_idempotency(Idempotency::Refused)
            .limited_by_address("dashboard_sessions", Rate::per_second(10))
            .not_audited(CUSTOMER_SESSION),
        routes
            .route(
                Access::Account,
                Doc::of::<embed::__path_create>(),
                embed::create,
            )
            .with_idempotency(Idempotency::Refused)
            .not_audited(CUSTOMER_SESSION),
        routes
            .route(
                Access::Public,
                Doc::of::<embed::__path_balance>(),
                embed::balance,
            )
            .limited_by_address("embed_balance", Rate::per_minute(120)),
    ]
}
