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
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{self, ApiKey, KeyKind, Principal, Secret};
use crate::error::ApiError;
use crate::extract::{self, PageQuery, PathParam, Query, Write};
use crate::openapi::schema::{self, AccountPath, KeyPath};
use crate::render::{self, Instant, Page};

/// A page of keys.
pub type KeyPage<'a> = Page<KeyView<'a>>;

/// The longest key name accepted, in bytes.
pub const KEY_NAME_LEN_MAX: usize = 256;

/// A key as the API shows it: never the key itself, except once, at creation.
#[derive(Serialize, ToSchema)]
#[schema(as = Key)]
pub struct KeyView<'a> {
    #[schema(value_type = schema::KeyId)]
    id: &'a str,
    #[schema(value_type = KeyKind)]
    kind: &'static str,
    /// The operator's label for it.
    name: &'a str,
    /// The account a customer key speaks for; absent on other keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::AccountId>, nullable = false)]
    account_id: Option<&'a str>,
    /// The key's last four characters, to tell keys apart in a list.
    #[schema(required = true)]
    last4: Option<&'a str>,
    /// When the key was created.
    created_at: Instant,
    /// About when the key was last used (written every minute or so); null
    /// if it never was.
    #[schema(required = true)]
    last_used_at: Option<Instant>,
    /// When the key was revoked; absent while it is usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    revoked_at: Option<Instant>,
    /// The key itself: only in the answer that created it, and never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
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

/// An admin or service key to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    /// `admin` or `service`; customer keys are created under their account.
    #[schema(pattern = "^(admin|service)$")]
    kind: String,
    /// A label for the key: at most 256 bytes without control characters;
    /// empty when absent.
    #[serde(default)]
    #[schema(max_length = 256)]
    name: Option<String>,
}

/// A customer key to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCustomerKey {
    /// A label for the key: at most 256 bytes without control characters;
    /// empty when absent.
    #[serde(default)]
    #[schema(max_length = 256)]
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

/// The 400 of a key's creation.
const CREATE_400: &str = "`malformed_json`, `invalid_request` (an Idempotency-Key, which key \
    creation refuses because the key is shown only once; a `kind` other than `admin` or \
    `service`; a `name` over 256 bytes or with control characters; an unknown or mistyped \
    field).";

/// Create an admin or service key
///
/// Creates a key and answers it once, in `key`; only its hash is kept, so
/// it cannot be shown again. Takes no Idempotency-Key: a replay would have
/// to show the key again.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "createKey",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The new key, with the key itself.", body = KeyView),
        (status = 400, description = CREATE_400),
    ),
)]
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

/// Create a customer key
///
/// Creates a key that speaks for one account and answers it once, in
/// `key`; only its hash is kept. Takes no Idempotency-Key: a replay would
/// have to show the key again.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/keys",
    tag = "keys",
    operation_id = "createCustomerKey",
    params(AccountPath),
    request_body(content = CreateCustomerKey, description = "Optional; an empty body reads \
        as `{}`."),
    responses(
        (status = 201, description = "The new key, with the key itself.", body = KeyView),
        (status = 400, description = CREATE_400),
        (status = 404, description = "`account_not_found`."),
    ),
)]
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

/// List admin and service keys
///
/// Lists the admin and service keys that are not revoked, in id order. The
/// key from `CREDITD_ADMIN_KEY` is configured, not stored, and is not
/// listed.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "listKeys",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of keys; `next_cursor` is a key id.",
            body = KeyPage),
        (status = 400, description = "`invalid_request`: a bad `limit`, or an unknown query \
            parameter."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    list_by(&state, "scope", "operator", query).await
}

/// List an account's customer keys
///
/// Lists the account's customer keys that are not revoked, in id order.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/keys",
    tag = "keys",
    operation_id = "listCustomerKeys",
    params(AccountPath, PageQuery),
    responses(
        (status = 200, description = "A page of keys; `next_cursor` is a key id.",
            body = KeyPage),
        (status = 400, description = "`invalid_id`, `invalid_request` (a bad `limit`, or an \
            unknown query parameter)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn list_for_account(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let account = extract::account_id(&id)?;
    super::require_account(state.store.as_ref(), &account).await?;
    list_by(&state, "account", account.as_str(), query).await
}

/// Revoke a key
///
/// Revokes a key at once on this node, and within about a second on
/// others. A service key may revoke customer keys only; the last admin key
/// cannot be revoked. Revoking a revoked key changes nothing and answers it
/// again.
#[utoipa::path(
    delete,
    path = "/v1/keys/{key_id}",
    tag = "keys",
    operation_id = "revokeKey",
    params(KeyPath),
    responses(
        (status = 200, description = "The key, revoked.", body = KeyView),
        (status = 403, description = "`forbidden`: a service key revoking an admin or \
            service key."),
        (status = 404, description = "`key_not_found`: no stored key has this id (the key \
            from `CREDITD_ADMIN_KEY` is not stored and cannot be revoked)."),
        (status = 409, description = "`last_admin_key`: it is the last admin key that is not \
            revoked; create another first. Or `version_conflict`: the key changed while it \
            was being revoked; retry."),
    ),
)]
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
