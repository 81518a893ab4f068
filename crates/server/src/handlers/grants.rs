//! Grants: give credits to an account, list its lots, void one.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{LotId, NewGrant, PRIORITY_MAX, Source};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::Op;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{self, ExistingAccount, PathAccount, PathParam, Query, Sign, Write};
use crate::openapi::schema::{self, AccountPath, GrantPath, IdempotencyKey};
use crate::render::{self, GrantPage, GrantView, Page};
use crate::{AppState, Principal};

/// Credits to grant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateGrant<'a> {
    /// Credits to grant; greater than zero.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::PositiveAmount, required = true)]
    amount: Option<&'a RawValue>,
    #[schema(value_type = schema::GrantSource)]
    source: String,
    /// The burn priority; the source's default when absent.
    #[serde(default, deserialize_with = "extract::whole_opt")]
    #[schema(value_type = Option<schema::Priority>)]
    priority: Option<i64>,
    /// When the credits become spendable; now when absent. May be in the future.
    #[serde(default)]
    #[schema(value_type = Option<schema::TimestampInput>)]
    effective_at: Option<String>,
    /// The first instant at which the credits can no longer be spent; must be
    /// after both now and `effective_at`. Never expires when absent.
    #[serde(default)]
    #[schema(value_type = Option<schema::TimestampInput>)]
    expires_at: Option<String>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    #[schema(value_type = Option<schema::ExternalId>)]
    external_id: Option<String>,
    /// Why the credits are granted (an admin or promo grant's reason), at
    /// most 500 characters; kept on the grant's transaction, with the id of
    /// the key that made it.
    #[serde(default)]
    #[schema(value_type = Option<schema::Reason>)]
    reason: Option<String>,
}

/// Grant credits
///
/// Adds credits to an account as a new lot with a source, a burn priority,
/// an optional start and an optional expiry. If the account owes debt,
/// spendable credits repay it first, so the returned lot's `remaining` can
/// be below its `amount`.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/grants",
    tag = "grants",
    operation_id = "createGrant",
    params(AccountPath, IdempotencyKey),
    request_body = CreateGrant,
    responses(
        (status = 201, description = "The lot the grant created, as it stands after any debt \
            repayment; for an `external_id` already used with the same request, the lot the \
            first grant created, as it stands now.", body = GrantView),
        (status = 400, description = "`malformed_json`, `invalid_request` (missing field, \
            unknown `source`, `priority` outside 0-100, unknown or mistyped field), \
            `invalid_id` (account id or `external_id`), `invalid_amount`, `invalid_timestamp` \
            (not RFC 3339, or `expires_at` not after now and `effective_at`), \
            `invalid_metadata`, `amount_overflow` (the account would hold more credits than \
            the ledger allows)."),
        (status = 404, description = "`account_not_found`."),
        (status = 409, description = "`external_id_conflict`: the account already used this \
            `external_id` for a different write."),
    ),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    PathAccount(account): PathAccount,
    write: Write,
) -> Result<Response, ApiError> {
    let body: CreateGrant = extract::parse_json(&write.body)?;
    let source = Source::parse(&body.source).ok_or_else(|| {
        let known: Vec<&str> = Source::ALL.iter().map(|s| s.code()).collect();
        ApiError::InvalidRequest(format!("source must be one of {}", known.join(", ")))
    })?;
    let priority = body
        .priority
        .map(|p| {
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= PRIORITY_MAX)
                .ok_or_else(|| ApiError::InvalidRequest("priority must be from 0 to 100".into()))
        })
        .transpose()?;
    let priority = match priority {
        Some(priority) => Some(priority),
        None => state.policy.priority(source).await?,
    };
    let reason = body
        .reason
        .map(|r| extract::text(r, "reason", ledger::REASON_LEN_MAX))
        .transpose()?;
    let grant = NewGrant {
        amount: extract::required_amount(body.amount, "amount", Sign::Positive)?,
        source,
        priority,
        effective_at: extract::timestamp(body.effective_at.as_deref(), "effective_at")?,
        expires_at: extract::timestamp(body.expires_at.as_deref(), "expires_at")?,
        metadata: extract::metadata(body.metadata)?,
        external_id: extract::external_id(body.external_id)?,
        reason,
        actor: Some(principal.key_id.to_string()),
    };
    super::execute(state.store.as_ref(), write, Op::Grant { account, grant }).await
}

/// `?source=&limit=&cursor=`, the query of a page of grants.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GrantQuery {
    /// Only grants of these sources, comma-separated (`purchase,auto_topup`:
    /// what customers paid for, as a Credits page lists it).
    #[param(
        pattern = "^(signup_bonus|daily_reward|subscription|purchase|auto_topup|admin|promo|rollover|refund)(,(signup_bonus|daily_reward|subscription|purchase|auto_topup|admin|promo|rollover|refund))*$"
    )]
    source: Option<String>,
    /// The page size, a whole number from 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page; older grants follow.
    #[param(value_type = Option<schema::GrantId>)]
    cursor: Option<String>,
}

/// List an account's grants
///
/// Lists the lots created by grants (and refund lots) of an account, newest
/// first, including spent, expired and voided ones, optionally only those of
/// some sources. Each lot reads as it stands now: one past its expiry is
/// `expired` with 0 `remaining` even before the background sweep writes its
/// expiry. Purchases and auto top-ups carry what was paid (`amount_paid`,
/// `currency`) and the provider's invoice or receipt in their metadata.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/grants",
    tag = "grants",
    operation_id = "listGrants",
    params(AccountPath, GrantQuery),
    responses(
        (status = 200, description = "A page of grants; `next_cursor` is a grant id, and \
            older grants follow it.", body = GrantPage),
        (status = 400, description = "`invalid_id`, `invalid_request` (a bad `limit`, \
            `cursor` or `source`, or an unknown query parameter)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<GrantQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let mut before = extract::cursor(query.cursor.as_deref(), LotId::parse)?;
    let sources = query
        .source
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(|code| {
                    ledger::Source::parse(code).ok_or_else(|| {
                        ApiError::InvalidRequest(format!("source {code:?} is not a source"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let lots = match sources {
        None => state.store.lots(account, before, limit).await?,
        Some(sources) => {
            // Read a store page at a time until the page is full or the
            // account has no older lots.
            let mut found = Vec::with_capacity(limit);
            loop {
                let page = state
                    .store
                    .lots(account.clone(), before, store::PAGE_LIMIT_MAX)
                    .await?;
                let more = page.len() == store::PAGE_LIMIT_MAX;
                for lot in page {
                    before = Some(lot.id);
                    if sources.contains(&lot.source) {
                        found.push(lot);
                        if found.len() == limit {
                            break;
                        }
                    }
                }
                if found.len() == limit || !more {
                    break found;
                }
            }
        }
    };
    let now = state.clock.now();
    let page = Page::new(&lots, limit, |l| l.id, |l| GrantView::new(l, now));
    Ok(render::json(StatusCode::OK, &page))
}

/// Get a grant
///
/// Returns one lot as it stands now: its status, amount, remaining credits,
/// source, priority and validity window.
#[utoipa::path(
    get,
    path = "/v1/grants/{grant_id}",
    tag = "grants",
    operation_id = "getGrant",
    params(GrantPath),
    responses(
        (status = 200, description = "The grant.", body = GrantView),
        (status = 400, description = "`invalid_id`: not an id of the form `lot_<n>`."),
        (status = 404, description = "`grant_not_found`."),
    ),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = extract::numbered_id(&id, LotId::parse, "grant")?;
    let lot = state
        .store
        .lot(id)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::GrantNotFound))?;
    super::require_visible(&principal, &lot.account, ledger::Reject::GrantNotFound)?;
    Ok(render::json(
        StatusCode::OK,
        &GrantView::new(&lot, state.clock.now()),
    ))
}

/// A void's optional body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VoidGrant)]
struct Annotate<'a> {
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
}

/// Void a grant
///
/// Removes the credits left in a lot (posted to the `void` ledger account)
/// and marks it voided; credits already spent stay spent, and credits that
/// later come back to the lot (a refund, a released hold) are voided at
/// once.
#[utoipa::path(
    post,
    path = "/v1/grants/{grant_id}/void",
    tag = "grants",
    operation_id = "voidGrant",
    params(GrantPath, IdempotencyKey),
    request_body(content = Option<Annotate>, description = "Optional; an empty body, or `null`, reads as `{}`. \
        The metadata is attached to the `void` transaction."),
    responses(
        (status = 200, description = "The lot, now voided.", body = GrantView),
        (status = 400, description = "`malformed_json`, `invalid_request` (unknown or \
            mistyped field), `invalid_id`, `invalid_metadata`."),
        (status = 404, description = "`grant_not_found`."),
        (status = 409, description = "`grant_voided`: the lot was already voided."),
    ),
)]
pub async fn void(
    State(state): State<Arc<AppState>>,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let lot = extract::numbered_id(&id, LotId::parse, "grant")?;
    let body: Annotate = extract::parse_optional_json(&write.body)?;
    let metadata = extract::metadata(body.metadata)?;
    super::execute(state.store.as_ref(), write, Op::Void { lot, metadata }).await
}
