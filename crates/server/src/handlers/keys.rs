//! API keys: create admin, service and customer keys (each shown once),
//! list them, revoke them.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use store::records::{self, Doc, Expect, RecordFilter, Written};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{self, ApiKey, KeyKind, Principal, Secret, SpendLimit, SpendPeriod};
use crate::error::ApiError;
use crate::extract::{self, ExistingAccount, KeyPageQuery, PathParam, Query, Sign, Write};
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
    /// The project a customer key's gateway usage is attributed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    project: Option<&'a str>,
    /// What a customer key may spend through the gateway in a window.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    spend_limit: Option<SpendLimitView>,
    /// A customer key's access: `full`, or `read` (only the routes that
    /// change nothing); absent on other keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<auth::KeyAccess>, nullable = false)]
    access: Option<&'static str>,
    /// Requests a second the key may make (a burst of as many passes),
    /// over its kind's rate; absent when it has none of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1, maximum = 1000000)]
    rate_limit: Option<u32>,
    /// Tokens a minute a customer key's gateway calls may use, over the
    /// gateway's default; absent when it has none of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1, maximum = 1000000000)]
    token_rate_limit: Option<u32>,
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
            project: doc.body.project.as_deref(),
            spend_limit: doc.body.spend_limit.map(|l| SpendLimitView {
                amount: render::Decimal(ledger::Amount::from_micros(l.amount_micros)),
                period: l.period,
            }),
            access: (doc.body.kind == KeyKind::Customer).then(|| doc.body.access.code()),
            rate_limit: doc.body.rate_limit,
            token_rate_limit: doc.body.token_rate_limit,
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
    /// A label for the key: at most 256 characters without control
    /// characters; empty when absent.
    #[serde(default)]
    #[schema(value_type = Option<schema::Name>)]
    name: Option<String>,
}

/// A key's spend limit as shown.
#[derive(Serialize, ToSchema)]
#[schema(as = SpendLimit)]
pub struct SpendLimitView {
    /// Credits the key may spend in each window.
    amount: render::Decimal,
    /// `day` (UTC), `month` (UTC calendar month) or `total`.
    period: SpendPeriod,
}

/// A key's spend limit as written.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SpendLimitInput<'a> {
    /// Credits the key may spend in each window, above zero.
    #[serde(borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::PositiveAmount)]
    amount: Option<&'a RawValue>,
    /// `day` (UTC), `month` (UTC calendar month) or `total`.
    period: SpendPeriod,
}

impl SpendLimitInput<'_> {
    fn parse(&self) -> Result<SpendLimit, ApiError> {
        let raw = self
            .amount
            .ok_or_else(|| ApiError::InvalidRequest("spend_limit needs an amount".into()))?;
        let amount = extract::amount(raw, "spend_limit.amount", Sign::Positive)?;
        Ok(SpendLimit {
            amount_micros: amount.micros(),
            period: self.period,
        })
    }
}

/// The longest project name accepted, in bytes.
pub const PROJECT_LEN_MAX: usize = 128;

fn project(text: String) -> Result<String, ApiError> {
    let text = extract::text(text, "project", PROJECT_LEN_MAX)?;
    if text.is_empty() {
        return Err(ApiError::InvalidRequest("project must not be empty".into()));
    }
    Ok(text)
}

/// A customer key to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCustomerKey<'a> {
    /// A label for the key: at most 256 characters without control
    /// characters; empty when absent.
    #[serde(default)]
    #[schema(value_type = Option<schema::Name>)]
    name: Option<String>,
    /// The project the key's gateway usage is attributed to (1 to 128
    /// characters): an account's balance is shared by all its projects, and
    /// its usage can be summed per project.
    #[serde(default)]
    #[schema(value_type = Option<schema::Project>)]
    project: Option<String>,
    /// The most the key may spend through the gateway in each window.
    #[serde(default, borrow)]
    spend_limit: Option<SpendLimitInput<'a>>,
    /// `full` (the default): everything a customer may do with its account;
    /// `read`: only the routes that change nothing — the balance, history,
    /// usage and catalogue; nothing that spends, pays or changes settings.
    #[serde(default)]
    #[schema(value_type = Option<auth::KeyAccess>)]
    access: Option<auth::KeyAccess>,
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
    customer: (Option<String>, Option<SpendLimit>, auth::KeyAccess),
) -> Result<Response, ApiError> {
    let (id, secret) = auth::generate(kind)?;
    let mut record = auth::new_key(kind, name, account, &secret);
    (record.project, record.spend_limit, record.access) = customer;
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
    `service`; a `name` over 256 bytes or with control characters; a bad `project`; an unknown \
    or mistyped field), `invalid_amount` (`spend_limit.amount`).";

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
    store_new(
        &state,
        kind,
        key_name(body.name)?,
        None,
        (None, None, auth::KeyAccess::Full),
    )
    .await
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
    request_body(content = Option<CreateCustomerKey>, description = "Optional; an empty body, or `null`, reads \
        as `{}`."),
    responses(
        (status = 201, description = "The new key, with the key itself.", body = KeyView),
        (status = 400, description = CREATE_400),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn create_for_account(
    State(state): State<Arc<AppState>>,
    ExistingAccount(account): ExistingAccount,
    write: Write,
) -> Result<Response, ApiError> {
    refuse_idempotency(&write)?;
    let body: CreateCustomerKey = extract::parse_optional_json(&write.body)?;
    let name = key_name(body.name)?;
    let project = body.project.map(project).transpose()?;
    let spend_limit = body.spend_limit.map(|l| l.parse()).transpose()?;
    let access = body.access.unwrap_or_default();
    if access == auth::KeyAccess::Read && spend_limit.is_some() {
        return Err(ApiError::InvalidRequest(
            "a read-only key spends nothing, so it takes no spend_limit".into(),
        ));
    }
    store_new(
        &state,
        KeyKind::Customer,
        name,
        Some(&account),
        (project, spend_limit, access),
    )
    .await
}

/// Whether `text` has the shape of a key id: `key_` and then lower-case
/// letters, digits and underscores, as [`KeyId`](crate::openapi::schema::KeyId) says.
pub(crate) fn is_key_id(text: &str) -> bool {
    text.strip_prefix("key_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_')
    })
}

/// A page of usable keys holding `value` under lookup `name`, in id order.
async fn list_by(
    state: &AppState,
    name: &str,
    value: &str,
    query: KeyPageQuery,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    if query
        .cursor
        .as_deref()
        .is_some_and(|c| !c.is_empty() && !is_key_id(c))
    {
        return Err(ApiError::InvalidRequest(
            "cursor is not a key id, the next_cursor of a page of keys".into(),
        ));
    }
    let after = extract::id_cursor(query.cursor)?;
    let filter = RecordFilter::Equals {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    // Revoked keys are skipped, so a page may take more than one read.
    let keys = records::collect(
        state.store.as_ref(),
        &filter,
        after,
        limit,
        |doc: &records::Doc<ApiKey>| doc.id.clone(),
        |doc| doc.body.revoked_at_micros.is_none(),
    )
    .await?;
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
    params(KeyPageQuery),
    responses(
        (status = 200, description = "A page of keys; `next_cursor` is a key id.",
            body = KeyPage),
        (status = 400, description = "`invalid_request`: a bad `limit` or `cursor`, or an unknown query \
            parameter."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<KeyPageQuery>,
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
    params(AccountPath, KeyPageQuery),
    responses(
        (status = 200, description = "A page of keys; `next_cursor` is a key id.",
            body = KeyPage),
        (status = 400, description = "`invalid_id`, `invalid_request` (a bad `limit` or `cursor`, or an \
            unknown query parameter)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn list_for_account(
    State(state): State<Arc<AppState>>,
    Query(query): Query<KeyPageQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    list_by(&state, "account", account.as_str(), query).await
}

/// Revoke a key
///
/// Revokes a key at once on this node, and within about a second on
/// others. A service key may revoke customer keys only; the last admin key
/// cannot be revoked. A revoked key is gone: revoking it again changes
/// nothing and answers 404, as every other route that names it does.
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
        (status = 404, description = "`key_not_found`: no stored key has this id, or it \
            is revoked already (the key from `CREDITD_ADMIN_KEY` is not stored and cannot be \
            revoked)."),
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
    let mut doc = live_key(store, &id).await?;
    if principal.kind != KeyKind::Admin && doc.body.kind != KeyKind::Customer {
        return Err(ApiError::Forbidden {
            scope: KeyKind::Admin.code(),
        });
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
        // Revoked by a request at the same moment: gone now, as for a
        // second DELETE; changed otherwise, for the caller to retry.
        Written::Refused(refused @ store::Refused::VersionConflict { .. }) => {
            live_key(store, &id).await?;
            Err(refused.into())
        }
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a key put answered deleted".into())),
    }
}

/// The stored key `id`, unless it is revoked: a revoked key is 404 to
/// every route that names it.
async fn live_key(store: &dyn store::Store, id: &str) -> Result<records::Doc<ApiKey>, ApiError> {
    match records::get::<ApiKey>(store, id).await? {
        Some(doc) if doc.body.revoked_at_micros.is_none() => Ok(doc),
        _ => Err(ApiError::KeyNotFound),
    }
}

/// The highest rate a key may be given, in requests a second.
const RATE_LIMIT_MAX: u32 = 1_000_000;

/// The most tokens a minute a key may be held to (as the gateway's
/// `TOKENS_PER_MINUTE_MAX`).
const TOKEN_RATE_LIMIT_MAX: u32 = 1_000_000_000;

/// Changes to a key; what is not sent stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateKey<'a> {
    /// A new label: at most 256 characters without control characters.
    #[schema(value_type = Option<schema::Name>)]
    name: Option<String>,
    /// A customer key's project, or null to remove it.
    #[serde(default, deserialize_with = "extract::present")]
    #[schema(value_type = Option<schema::Project>)]
    project: Option<Option<String>>,
    /// A customer key's spend limit, or null to remove it.
    #[serde(default, borrow, deserialize_with = "extract::present")]
    #[schema(value_type = Option<SpendLimitInput>)]
    spend_limit: Option<Option<SpendLimitInput<'a>>>,
    /// Requests a second the key may make, 1 to 1,000,000 (a burst of as
    /// many passes), over its kind's rate; null to take its kind's again.
    #[serde(default, deserialize_with = "extract::present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000)]
    rate_limit: Option<Option<u32>>,
    /// Tokens a minute a customer key's gateway calls may use, 1 to
    /// 1,000,000,000: a call starts while the last minute's calls left any,
    /// and its tokens (input and output, every class) count once it is
    /// over; null to take the gateway's default again.
    #[serde(default, deserialize_with = "extract::present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000000)]
    token_rate_limit: Option<Option<u32>>,
}

/// Change a key
///
/// Changes a key's name and rate limit, and a customer key's project,
/// spend limit and token rate limit (`null` removes them). A service key may change customer
/// keys only. The change takes effect at once on this node, and within
/// about a second on others; a key's rate is counted on each node.
#[utoipa::path(
    patch,
    path = "/v1/keys/{key_id}",
    tag = "keys",
    operation_id = "updateKey",
    params(KeyPath),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The key as changed.", body = KeyView),
        (status = 400, description = "`malformed_json`, `invalid_request` (a bad `name` or \
            `project`, a project, spend limit or token rate limit on an admin or service key, \
            a `rate_limit` outside 1 to 1,000,000 or a `token_rate_limit` outside 1 to \
            1,000,000,000, an unknown or mistyped field), `invalid_amount` \
            (`spend_limit.amount`)."),
        (status = 403, description = "`forbidden`: a service key changing an admin or \
            service key."),
        (status = 404, description = "`key_not_found`: no stored key has this id, or it is \
            revoked."),
        (status = 409, description = "`version_conflict`: the key changed meanwhile; retry."),
    ),
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let body: UpdateKey = extract::parse_json(&write.body)?;
    let store = state.store.as_ref();
    let mut doc = live_key(store, &id).await?;
    if principal.kind != KeyKind::Admin && doc.body.kind != KeyKind::Customer {
        return Err(ApiError::Forbidden {
            scope: KeyKind::Admin.code(),
        });
    }
    let gateway_fields =
        body.project.is_some() || body.spend_limit.is_some() || body.token_rate_limit.is_some();
    if gateway_fields && doc.body.kind != KeyKind::Customer {
        return Err(ApiError::InvalidRequest(
            "only customer keys have a project, a spend limit and a token rate limit".into(),
        ));
    }
    if matches!(body.spend_limit, Some(Some(_))) && doc.body.access == auth::KeyAccess::Read {
        return Err(ApiError::InvalidRequest(
            "a read-only key spends nothing, so it takes no spend_limit".into(),
        ));
    }
    if let Some(name) = body.name {
        doc.body.name = key_name(Some(name))?;
    }
    if let Some(project_name) = body.project {
        doc.body.project = project_name.map(project).transpose()?;
    }
    if let Some(limit) = body.spend_limit {
        doc.body.spend_limit = limit.map(|l| l.parse()).transpose()?;
    }
    if let Some(rate) = body.rate_limit {
        if rate.is_some_and(|r| !(1..=RATE_LIMIT_MAX).contains(&r)) {
            return Err(ApiError::InvalidRequest(format!(
                "rate_limit must be a whole number of requests a second from 1 to {RATE_LIMIT_MAX}"
            )));
        }
        doc.body.rate_limit = rate;
    }
    if let Some(rate) = body.token_rate_limit {
        if rate.is_some_and(|r| !(1..=TOKEN_RATE_LIMIT_MAX).contains(&r)) {
            return Err(ApiError::InvalidRequest(format!(
                "token_rate_limit must be a whole number of tokens a minute from 1 to \
                 {TOKEN_RATE_LIMIT_MAX}"
            )));
        }
        doc.body.token_rate_limit = rate;
    }
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
