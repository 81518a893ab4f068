//! Accounts: open, read, list, and the balance now or at a past instant.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::forecast::{FORECAST_WINDOW_DAYS, Forecast};
use ledger::{AccountId, AccountPatch, Amount, NewAccount, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::{Op, Store};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::account_billing::{self, BillingMode};
use crate::error::ApiError;
use crate::extract::{self, PathAccount, Query, Sign, Write};
use crate::openapi::schema::{self, AccountPath, IdempotencyKey};
use crate::render::{self, AccountPage, AccountView, BalanceView, Page};
use store::records::{self, Expect};

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateAccount<'a> {
    #[schema(value_type = schema::AccountId)]
    id: String,
    /// The display name: at most 256 characters without control characters.
    #[serde(default)]
    #[schema(value_type = Option<schema::Name>)]
    name: Option<String>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
    /// How far below zero consumes and holds may take the available
    /// balance; the shortfall becomes debt. Zero or more; 0 when absent.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = Option<schema::NonNegativeAmount>)]
    overdraft_limit: Option<&'a RawValue>,
}

/// Open an account
///
/// Opens an account under an id chosen by the caller (for example the
/// product's own user or organisation id). It starts with no credits and no
/// debt.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    operation_id = "createAccount",
    params(IdempotencyKey),
    request_body = CreateAccount,
    responses(
        (status = 201, description = "The account was opened, with the lots it opened with.", body = render::AccountOpened),
        (status = 400, description = "`malformed_json`, `invalid_request` (missing `id`, \
            unknown or mistyped field, `name` over 256 bytes or with control characters), \
            `invalid_id`, `invalid_amount` (`overdraft_limit`), `invalid_metadata`."),
        (status = 409, description = "`account_exists`: an account with this id already exists."),
    ),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    write: Write,
) -> Result<Response, ApiError> {
    let body: CreateAccount = extract::parse_json(&write.body)?;
    let overdraft_limit = match body.overdraft_limit {
        Some(raw) => extract::amount(raw, "overdraft_limit", Sign::NotNegative)?,
        None => ledger::Amount::ZERO,
    };
    let id = extract::account_id(&body.id)?;
    let opening = state.policy.opening(&id, state.clock.now()).await?;
    let new = NewAccount::new(
        id,
        body.name,
        extract::metadata(body.metadata)?,
        opening.overdraft_limit.unwrap_or(overdraft_limit),
    )?;
    let op = Op::CreateAccount {
        account: new,
        grants: opening.grants,
    };
    super::execute_with(state.store.as_ref(), write, op, opening.records).await
}

/// Changes to an account; what is not sent stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateAccount<'a> {
    /// A new display name (at most 256 characters without control
    /// characters), or null to remove it.
    #[serde(default, deserialize_with = "extract::present")]
    #[schema(value_type = Option<schema::Name>)]
    name: Option<Option<String>>,
    /// New metadata, replacing the old whole.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
    /// A new overdraft limit, zero or more. Lowering it below what the
    /// account owes is allowed: the debt stays, and consumes are refused
    /// until it is repaid.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = Option<schema::NonNegativeAmount>)]
    overdraft_limit: Option<&'a RawValue>,
    /// How the account's gateway calls are paid for: `credits` (through
    /// the operator's upstreams) or `byok` (its own provider keys).
    billing_mode: Option<BillingMode>,
    /// The account's own BYOK platform fee in percent (a decimal string
    /// from 0 to 100 with at most 4 fractional digits), or null for the
    /// operator's default.
    #[serde(default, deserialize_with = "extract::present")]
    #[schema(value_type = Option<String>, pattern = "^(100(\\.0{1,4})?|(0|[1-9][0-9]?)(\\.[0-9]{1,4})?)$")]
    byok_fee_percent: Option<Option<String>>,
    /// The available balance at or below which the `balance.low` webhook
    /// event is sent (zero or more), or null for the operator's default.
    #[serde(default, borrow, deserialize_with = "extract::raw_or_null")]
    #[schema(value_type = Option<schema::NonNegativeAmount>)]
    low_balance_threshold: Option<Option<&'a RawValue>>,
}

/// Change an account
///
/// Changes the name (`null` removes it), the metadata (replaced whole),
/// the overdraft limit, how its gateway calls are paid for
/// (`billing_mode`, `byok_fee_percent`), or the balance at which
/// `balance.low` is sent (`low_balance_threshold`); what is not sent stays
/// as it is.
#[utoipa::path(
    patch,
    path = "/v1/accounts/{account_id}",
    tag = "accounts",
    operation_id = "updateAccount",
    params(AccountPath, IdempotencyKey),
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "The account as changed.", body = AccountView),
        (status = 400, description = "`malformed_json`, `invalid_request` (unknown or \
            mistyped field, `name` over 256 bytes or with control characters), `invalid_id`, \
            `invalid_amount` (`overdraft_limit`, `low_balance_threshold`), `invalid_metadata`; `invalid_request` for a \
            bad `billing_mode` or `byok_fee_percent`."),
        (status = 404, description = "`account_not_found`."),
        (status = 409, description = "`version_conflict`: its billing changed meanwhile; \
            retry."),
    ),
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    PathAccount(account): PathAccount,
    write: Write,
) -> Result<Response, ApiError> {
    let body: UpdateAccount = extract::parse_json(&write.body)?;
    let overdraft_limit = body
        .overdraft_limit
        .map(|raw| extract::amount(raw, "overdraft_limit", Sign::NotNegative))
        .transpose()?;
    let metadata = body
        .metadata
        .map(|raw| extract::metadata(Some(raw)))
        .transpose()?;
    let threshold = body
        .low_balance_threshold
        .map(|raw| {
            raw.map(|raw| extract::amount(raw, "low_balance_threshold", Sign::NotNegative))
                .transpose()
        })
        .transpose()?;
    let patch = AccountPatch::new(body.name, metadata, overdraft_limit)?;
    let store = state.store.as_ref();
    let mut records = Vec::new();
    if body.billing_mode.is_some() || body.byok_fee_percent.is_some() || threshold.is_some() {
        let (mut billing, version) = account_billing::read(store, &account).await?;
        if let Some(mode) = body.billing_mode {
            billing.billing_mode = mode;
        }
        if let Some(fee) = body.byok_fee_percent {
            if fee
                .as_deref()
                .is_some_and(|f| !account_billing::is_fee_percent(f))
            {
                return Err(ApiError::InvalidRequest(
                    "byok_fee_percent must be a decimal string from 0 to 100 with at most 4 \
                     fractional digits"
                        .into(),
                ));
            }
            billing.byok_fee_percent = fee;
        }
        if let Some(threshold) = threshold {
            billing.low_balance_threshold_micros = threshold.map(ledger::Amount::micros);
        }
        let expect = version.map_or(Expect::Absent, Expect::Version);
        records.push(records::put(account.as_str(), &billing, expect));
    }
    let response = super::execute_with(
        store,
        write,
        Op::UpdateAccount {
            account: account.clone(),
            patch,
        },
        records,
    )
    .await?;
    with_billing(store, &account, response).await
}

/// An account's answer with its billing mode and fee beside its fields.
async fn with_billing(
    store: &dyn store::Store,
    account: &ledger::AccountId,
    response: Response,
) -> Result<Response, ApiError> {
    if response.status() != StatusCode::OK {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, extract::BODY_LEN_MAX)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut view: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (billing, _) = account_billing::read(store, account).await?;
    if let Some(object) = view.as_object_mut() {
        object.insert("billing_mode".into(), billing.billing_mode.code().into());
        object.insert(
            "byok_fee_percent".into(),
            billing
                .byok_fee_percent
                .map_or(serde_json::Value::Null, Into::into),
        );
        object.insert(
            "low_balance_threshold".into(),
            billing
                .low_balance_threshold_micros
                .map_or(serde_json::Value::Null, |m| {
                    ledger::Amount::from_micros(m).to_string().into()
                }),
        );
    }
    let body = serde_json::to_vec(&view).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Response::from_parts(parts, axum::body::Body::from(body)))
}

/// Get an account
///
/// Returns one account's settings. Its balance is served by
/// `GET /v1/accounts/{account_id}/balance`.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}",
    tag = "accounts",
    operation_id = "getAccount",
    params(AccountPath),
    responses(
        (status = 200, description = "The account.", body = AccountView),
        (status = 400, description = "`invalid_id`: not a well-formed account id."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    PathAccount(id): PathAccount,
) -> Result<Response, ApiError> {
    let account = state
        .store
        .account(id)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
    let (billing, _) = account_billing::read(state.store.as_ref(), &account.id).await?;
    Ok(render::json(
        StatusCode::OK,
        &AccountView::new(&account).with_billing(&billing),
    ))
}

/// The longest text an account search takes, in characters.
const SEARCH_LEN_MAX: usize = 200;

/// `?search=&limit=&cursor=`, the query of the account list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountListQuery {
    /// Only accounts whose id, name or metadata (its JSON text, keys and
    /// values) holds this text, whatever its case; 3 to 200 characters,
    /// none of them a control character.
    #[param(
        min_length = 3,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    search: Option<String>,
    /// The page size, a whole number from 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page, an account id; the accounts
    /// after it follow.
    #[param(value_type = Option<schema::AccountId>)]
    cursor: Option<String>,
}

/// List accounts
///
/// Lists accounts in ascending id order, one page at a time, optionally
/// only those whose id, name or metadata holds `search` (read through a
/// trigram index, so a search costs what it finds, not the number of
/// accounts). `next_cursor` is set whenever the page is full; pass it as
/// `cursor`, with the same `search`, to get the accounts that sort after it.
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "accounts",
    operation_id = "listAccounts",
    params(AccountListQuery),
    responses(
        (status = 200, description = "A page of accounts.", body = AccountPage),
        (status = 400, description = "`invalid_request`: a bad `limit` or `cursor`, a \
            `search` shorter than 3 or longer than 200 characters or holding a control \
            character, or an unknown query parameter."),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AccountListQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let after = extract::cursor(query.cursor.as_deref(), ledger::AccountId::parse)?;
    let accounts = match query.search {
        None => state.store.accounts(after, limit).await?,
        Some(search) => {
            let length = search.chars().count();
            if !(store::SEARCH_LEN_MIN..=SEARCH_LEN_MAX).contains(&length) {
                return Err(ApiError::InvalidRequest(format!(
                    "search must be {} to {SEARCH_LEN_MAX} characters long",
                    store::SEARCH_LEN_MIN
                )));
            }
            if search.chars().any(char::is_control) {
                return Err(ApiError::InvalidRequest(
                    "search must not hold control characters".into(),
                ));
            }
            state.store.search_accounts(search, after, limit).await?
        }
    };
    let page = Page::new(&accounts, limit, |a| a.id.clone(), AccountView::new);
    Ok(render::json(StatusCode::OK, &page))
}

/// `?at=&include=`, the query of a balance.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// An instant to compute the balance at; now when absent.
    #[param(value_type = Option<schema::TimestampInput>)]
    at: Option<String>,
    /// What to add, comma-separated: `totals`, the account's lifetime
    /// totals (up to `at` when given), added up from its whole journal in
    /// the same snapshot as the balance, so that the two always agree (a
    /// read of every transaction of the account, where the balance alone
    /// is answered from memory);
    /// `forecast`, the daily spending of the last 7 days and when the
    /// available credits run out at that rate.
    #[param(pattern = "^(totals|forecast)(,(totals|forecast))*$")]
    include: Option<String>,
}

/// What `?include=` asks a balance to add.
#[derive(Default)]
struct Includes {
    totals: bool,
    forecast: bool,
}

impl Includes {
    fn parse(list: Option<&str>) -> Result<Includes, ApiError> {
        let mut includes = Includes::default();
        for item in list.into_iter().flat_map(|l| l.split(',')) {
            match item {
                "totals" => includes.totals = true,
                "forecast" => includes.forecast = true,
                _ => {
                    return Err(ApiError::InvalidRequest(format!(
                        "include {item:?} is not known; include takes totals, forecast or both, \
                         comma-separated"
                    )));
                }
            }
        }
        Ok(includes)
    }
}

/// The spending forecast of `account` at `now`: its available credits at
/// `now`, and what it spent (consumes and committed holds, less refunds)
/// in the [`FORECAST_WINDOW_DAYS`] up to and including `now`, read from the
/// index of usage by time. What `GET /v1/accounts/{account_id}/balance?include=forecast`
/// adds, for a caller in the same process (a dashboard page, say).
///
/// `404 account_not_found` when the account does not exist.
pub async fn forecast(
    store: &dyn Store,
    account: AccountId,
    now: Timestamp,
) -> Result<Forecast, ApiError> {
    let standing = store
        .standing(account.clone(), now)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
    forecast_with(store, account, standing.available, now).await
}

/// The forecast of `account` at `now` with `available` credits, already read.
async fn forecast_with(
    store: &dyn Store,
    account: AccountId,
    available: Amount,
    now: Timestamp,
) -> Result<Forecast, ApiError> {
    let window_secs = i64::from(FORECAST_WINDOW_DAYS.get()) * 86_400;
    // The window ends just after `now`, so that what was spent at `now`
    // itself counts.
    let until = now.checked_add_micros(1).unwrap_or(now);
    let spent = store
        .usage_between(account, now.plus_secs(-window_secs), until)
        .await?;
    Ok(Forecast::of(available, spent, FORECAST_WINDOW_DAYS, now))
}

/// Get the balance
///
/// Returns the balance now, with hold expiries, lot expiries and debt
/// repayment that are due applied even if the background sweep has not
/// written them yet. With `?at=` the balance is rebuilt from the journal as
/// it stood at that instant (transactions, lots and holds created at or
/// before it), then settled at that instant. `?include=totals,forecast`
/// adds the lifetime totals and the spending forecast at that instant.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/balance",
    tag = "accounts",
    operation_id = "getBalance",
    params(AccountPath, BalanceQuery),
    responses(
        (status = 200, description = "The balance and the lots that still hold credits, in \
            burn-down order.", body = BalanceView),
        (status = 400, description = "`invalid_id`, `invalid_timestamp` (`at`), \
            `invalid_request` (an unknown `include` value or query parameter)."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
pub async fn balance(
    State(state): State<Arc<AppState>>,
    Query(query): Query<BalanceQuery>,
    PathAccount(id): PathAccount,
) -> Result<Response, ApiError> {
    let at = extract::timestamp(query.at.as_deref(), "at")?;
    let includes = Includes::parse(query.include.as_deref())?;
    // With the totals, the book is read in their snapshot, so that the
    // balance is what they add up to however many writes come meanwhile.
    let (book, totals) = if includes.totals {
        let (book, totals) = state
            .store
            .totals(id, at)
            .await?
            .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
        (book, Some(totals))
    } else {
        let book = state
            .store
            .book(id, at)
            .await?
            .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
        (book, None)
    };
    // "Now" is taken once the book is read: every write it holds was
    // stamped before, so a grant committed an instant before the read is
    // counted as taking effect, as its transaction in the totals is.
    let when = at.unwrap_or_else(|| state.clock.now());
    // What the settlement applies and the sweep has not yet written
    // (expiries, expired holds' releases) is added to the totals too.
    let (settled, pending) = book.settlement(when);
    let balance = settled.balance(when);
    let account = settled.account.id.clone();
    let mut view = BalanceView::new(account.as_str(), balance, settled.lots(), when);
    if let Some(mut totals) = totals {
        totals
            .add_settlement(&pending)
            .map_err(|reject| ApiError::Internal(reject.to_string()))?;
        view = view.with_totals(&totals);
    }
    if includes.forecast {
        let store = state.store.as_ref();
        let forecast = forecast_with(store, account.clone(), balance.available, when).await?;
        view = view.with_forecast(&forecast);
    }
    Ok(render::json(StatusCode::OK, &view))
}
