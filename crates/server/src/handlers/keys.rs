//! API keys: create admin, service and customer keys (each shown once),
//! list them, revoke them.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use store::records::{self, Doc, Expect, RecordCursor, RecordFilter, Written};

use crate::AppState;
use crate::auth::{self, ApiKey, KeyKind, Principal, Secret};
use crate::error::ApiError;
use crate::extract::{self, PageQuery, PathParam, Query, Write};
use crate::render::{self, Instant, Page};

/// The longest key name accepted, in bytes.
pub const KEY_NAME_LEN_MAX: usize = 256;

/// A key as the API shows it: never the key itself, except once, at creation.
#[derive(Serialize)]
pub struct KeyView<'a> {
    id: &'a str,
    kind: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    last4: Option<&'a str>,
    created_at: Instant,
    last_used_at: Option<Instant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<Instant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

impl<'a> KeyView<'a> {
    fn new(doc: &'a Doc<ApiKey>, key: Option<&'a Secret>) -> KeyView<'a> {
        let at = |micros: Option<i64>| micros.map(|m| Instant(Timestamp::from_micros(m)));
        KeyView {
            id: &doc.id,
            kind: doc.body.kind.code(),
            name: &doc.body.name,
            account_id: doc.body.account.as_deref(),
            last4: doc.body.last4.as_deref(),
            created_at: Instant(doc.created_at),
            last_used_at: at(doc.body.last_used_at_micros),
            revoked_at: at(doc.body.revoked_at_micros),
            key: key.map(Secret::expose),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCustomerKey {
    #[serde(default)]
    name: Option<String>,
}

/// A key is shown once: a replay of its creation would have to show it
/// again, so creation takes no idempotency key.
fn refuse_idempotency(write: &Write) -> Result<(), ApiError> {
    if write.idempotency.is_some() {
        return Err(ApiError::InvalidRequest(
            "keys are shown only once, so creating one takes no Idempotency-Key".into(),
        ));
    }
    Ok(())
}

fn key_name(name: Option<String>) -> Result<String, ApiError> {
    extract::text(name.unwrap_or_default(), "name", KEY_NAME_LEN_MAX)
}

/// Stores a new key and answers it, with the key itself, once.
async fn store_new(
    state: &AppState,
    kind: KeyKind,
    name: String,
    account: Option<&ledger::AccountId>,
) -> Result<Response, ApiError> {
    let (id, secret) = auth::generate(kind)?;
    let record = auth::new_key(kind, name, account, &secret);
    let write = records::put(&id, &record, Expect::Absent);
    match records::write::<ApiKey>(state.store.as_ref(), write).await? {
        Written::Stored(doc) => {
            state.keys.apply(&doc);
            Ok(render::json(
                StatusCode::CREATED,
                &KeyView::new(&doc, Some(&secret)),
            ))
        }
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a key put answered deleted".into())),
    }
}

/// `POST /v1/keys`: an admin or service key.
pub async fn create(
    State(state): State<Arc<AppState>>,
    write: Write,
) -> Result<Response, ApiError> {
    refuse_idempotency(&write)?;
    let body: CreateKey = extract::parse_json(&write.body)?;
    let kind = match body.kind.as_str() {
        "admin" => KeyKind::Admin,
        "service" => KeyKind::Service,
        _ => {
            return Err(ApiError::InvalidRequest(
                "kind must be admin or service; customer keys are created under \
                 /v1/accounts/{account_id}/keys"
                    .into(),
            ));
        }
    };
    store_new(&state, kind, key_name(body.name)?, None).await
}

/// `POST /v1/accounts/{account_id}/keys`: a customer key of one account.
pub async fn create_for_account(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    refuse_idempotency(&write)?;
    let account = extract::account_id(&id)?;
    let body: CreateCustomerKey = extract::parse_optional_json(&write.body)?;
    let name = key_name(body.name)?;
    super::require_account(state.store.as_ref(), &account).await?;
    store_new(&state, KeyKind::Customer, name, Some(&account)).await
}

/// A page of usable keys holding `value` under lookup `name`, in id order.
async fn list_by(
    state: &AppState,
    name: &str,
    value: &str,
    query: PageQuery,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let mut after = query.cursor.map(|c| RecordCursor {
        key: c.clone(),
        id: c,
    });
    let filter = RecordFilter::Equals {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    // Revoked keys are skipped, so a page may take more than one read.
    let mut keys = Vec::with_capacity(limit);
    let mut more = true;
    while keys.len() < limit && more {
        let page = records::list::<ApiKey>(
            state.store.as_ref(),
            filter.clone(),
            after.clone(),
            store::PAGE_LIMIT_MAX,
        )
        .await?;
        more = page.len() == store::PAGE_LIMIT_MAX;
        for doc in page {
            after = Some(RecordCursor {
                key: doc.id.clone(),
                id: doc.id.clone(),
            });
            if doc.body.revoked_at_micros.is_none() {
                keys.push(doc);
                if keys.len() == limit {
                    break;
                }
            }
        }
    }
    let page = Page::new(&keys, limit, |d| d.id.clone(), |d| KeyView::new(d, None));
    Ok(render::json(StatusCode::OK, &page))
}

/// `GET /v1/keys`: admin and service keys not revoked.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    list_by(&state, "scope", "operator", query).await
}

/// `GET /v1/accounts/{account_id}/keys`: the account's customer keys not revoked.
pub async fn list_for_account(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
    super::require_account(state.store.as_ref(), &account).await?;
    list_by(&state, "account", account.as_str(), query).await
}

/// `DELETE /v1/keys/{key_id}`: revokes a key. A service key may revoke
/// customer keys only; the last admin key cannot be revoked.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let store = state.store.as_ref();
    let Some(mut doc) = records::get::<ApiKey>(store, &id).await? else {
        return Err(ApiError::KeyNotFound);
    };
    if principal.kind != KeyKind::Admin && doc.body.kind != KeyKind::Customer {
        return Err(ApiError::Forbidden {
            scope: KeyKind::Admin.code(),
        });
    }
    if doc.body.revoked_at_micros.is_some() {
        return Ok(render::json(StatusCode::OK, &KeyView::new(&doc, None)));
    }
    if doc.body.kind == KeyKind::Admin {
        let active = auth::active_admin_keys(store).await?;
        if active.iter().all(|d| d.id == doc.id) {
            return Err(ApiError::LastAdminKey);
        }
    }
    doc.body.revoked_at_micros = Some(state.clock.now().micros());
    let write = records::put(&doc.id, &doc.body, Expect::Version(doc.version));
    match records::write::<ApiKey>(store, write).await? {
        Written::Stored(stored) => {
            state.keys.apply(&stored);
            Ok(render::json(StatusCode::OK, &KeyView::new(&stored, None)))
        }
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a key put answered deleted".into())),
    }
}
