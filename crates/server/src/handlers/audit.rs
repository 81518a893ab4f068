//! `GET /v1/audit-events`: the audit trail, newest first.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use store::records::{self, RecordCursor, RecordFilter};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::audit::{AuditEvent, listed_value};
use crate::error::ApiError;
use crate::extract::{self, Query};
use crate::render::{self, Instant, Page};

/// `?key_id=&account_id=&limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only changes made with this key.
    #[param(value_type = Option<crate::openapi::schema::KeyId>)]
    key_id: Option<String>,
    /// Only changes to this account (its path named it).
    #[param(value_type = Option<crate::openapi::schema::AccountId>)]
    account_id: Option<String>,
    /// The page size, a whole number from 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page, an audit event's id.
    #[param(pattern = "^aud_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

/// One change an admin or service key made.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditView {
    #[schema(pattern = "^aud_[0-9a-f]{32}$")]
    id: String,
    /// When it was answered.
    at: Instant,
    /// Who: the key's id, name and kind (`admin` or `service`).
    key_id: String,
    key_name: Option<String>,
    key_kind: String,
    /// What: the method, the route's template and the path asked for.
    method: String,
    route: String,
    path: String,
    /// The status answered (always a success: refused requests change nothing).
    status: u16,
    /// The account the path names, if any.
    account_id: Option<String>,
    /// The request's id (`Request-Id`), to find its log lines.
    request_id: Option<String>,
    /// From where: the client's address as this node saw it.
    client_address: Option<String>,
}

impl AuditView {
    fn new(doc: &records::Doc<AuditEvent>) -> AuditView {
        let e = &doc.body;
        AuditView {
            id: doc.id.clone(),
            at: Instant(ledger::Timestamp::from_micros(e.at_micros)),
            key_id: e.key_id.clone(),
            key_name: e.key_name.clone(),
            key_kind: e.key_kind.clone(),
            method: e.method.clone(),
            route: e.route.clone(),
            path: e.path.clone(),
            status: e.status,
            account_id: e.account.clone(),
            request_id: e.request_id.clone(),
            client_address: e.client_address.clone(),
        }
    }
}

/// A page of the audit trail.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditPage {
    data: Vec<AuditView>,
    /// Where the next page starts (an audit event's id), when this one is full.
    next_cursor: Option<String>,
}

fn is_audit_id(text: &str) -> bool {
    extract::is_hex_id(text, "aud_", 32)
}

/// List the audit trail
///
/// Every change an admin or service key made to configuration or credits
/// (accounts, grants and voids, refunds, keys, features, plans, packages,
/// settings, prices, subscriptions, webhook endpoints, …), newest first:
/// who (the key's id, name and kind), what (the method, the route and the
/// path), when, the request's id, and from where. Usage (consumes and
/// holds) is in the journal instead, and what customers do through the
/// operator's backend (checkouts, session links) is not kept. Narrowed to
/// one key or one account.
#[utoipa::path(
    get,
    path = "/v1/audit-events",
    tag = "system",
    operation_id = "listAuditEvents",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of changes; `next_cursor` is an event id.",
            body = AuditPage),
        (status = 400, description = "`invalid_request`: a bad filter, `limit` or `cursor`."),
        (status = 404, description = "`not_found`: the cursor names no audit event."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let bad = |what: &str| ApiError::InvalidRequest(what.to_owned());
    if let Some(account) = &query.account_id {
        ledger::AccountId::parse(account).map_err(|_| bad("account_id is not an account id"))?;
    }
    if let Some(key) = &query.key_id
        && (key.len() > 128 || !super::keys::is_key_id(key))
    {
        return Err(bad("key_id is not a key id"));
    }
    let (name, prefix) = match (&query.key_id, &query.account_id) {
        (Some(key), _) => ("key", format!("{key}/")),
        (None, Some(account)) => ("account", format!("{account}/")),
        (None, None) => ("listed", String::new()),
    };
    let account = query.account_id.as_deref();
    // Past the prefix's last value: '/' + 1 is '0'.
    let to = (!prefix.is_empty()).then(|| format!("{}0", &prefix[..prefix.len() - 1]));
    let filter = RecordFilter::Range {
        name: name.into(),
        from: Some(prefix.clone()),
        to,
    };
    let store = state.store.as_ref();
    let after = match query.cursor.as_deref() {
        None => None,
        Some(id) if is_audit_id(id) => {
            let doc = records::get::<AuditEvent>(store, id)
                .await?
                .ok_or(ApiError::RouteNotFound)?;
            Some(RecordCursor {
                key: format!("{prefix}{}", listed_value(doc.body.at_micros)),
                id: doc.id,
            })
        }
        Some(_) => return Err(bad("cursor is not an audit event id")),
    };
    let key_of =
        |doc: &records::Doc<AuditEvent>| format!("{prefix}{}", listed_value(doc.body.at_micros));
    let keep = |doc: &records::Doc<AuditEvent>| {
        account.is_none_or(|a| doc.body.account.as_deref() == Some(a))
    };
    let events = records::collect(store, &filter, after, limit, key_of, keep).await?;
    let page: Page<AuditView> = Page::new(&events, limit, |d| d.id.clone(), AuditView::new);
    Ok(render::json(StatusCode::OK, &page))
}
