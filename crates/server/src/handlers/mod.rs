//! Request handlers, one file per resource.

pub mod accounts;
pub mod audit;
pub mod features;
pub mod grants;
pub mod health;
pub mod holds;
pub mod keys;
pub mod system;
pub mod transactions;
pub mod usage;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use store::{Command, Executed, Op, Refused, Store, StoredResponse};

use crate::error::ApiError;
use crate::extract::Write;
use crate::render;

/// Sends a write through the store and answers with its rendered outcome;
/// with the stored first answer when the idempotency key was seen before;
/// or with the first write's outcome when its external id was. A replay is
/// marked `Idempotent-Replayed: true`.
pub async fn execute(store: &dyn Store, write: Write, op: Op) -> Result<Response, ApiError> {
    execute_with(store, write, op, Vec::new()).await
}

/// [`execute`], with record writes joined to the operation.
pub async fn execute_with(
    store: &dyn Store,
    write: Write,
    op: Op,
    records: Vec<store::records::RecordWrite>,
) -> Result<Response, ApiError> {
    let command = Command {
        op,
        records,
        call: None,
        idempotency: write.idempotency,
    };
    match store.execute(command).await? {
        Executed::Fresh(Err(Refused::Ledger(ledger::Reject::Inconsistent(detail)))) => {
            Err(ApiError::Internal(detail.to_owned()))
        }
        Executed::Fresh(result) => Ok(stored_response(render::outcome(&result))),
        Executed::Existing(outcome) => Ok(replayed(render::outcome(&Ok(outcome)))),
        Executed::Replayed(stored) => Ok(replayed(stored)),
    }
}

fn replayed(stored: StoredResponse) -> Response {
    let mut response = stored_response(stored);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Fails as `missing` unless the principal may see `account`'s objects:
/// another account's object is answered as if it did not exist.
pub fn require_visible(
    principal: &crate::Principal,
    account: &ledger::AccountId,
    missing: ledger::Reject,
) -> Result<(), ApiError> {
    if principal.may_see(account) {
        Ok(())
    } else {
        Err(ApiError::Rejected(missing))
    }
}

fn stored_response(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    render::json_response(status, stored.body)
}
