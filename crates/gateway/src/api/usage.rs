//! An account's gateway usage: sums over a window, and the calls one by one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::extract::{self, ExistingAccount, Query};
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Decimal, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::usage::{Call, CallQuery};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::usage::{self, GroupBy};

use super::GatewayState;

/// The usage's routes.
pub(super) fn routes(routes: &Routes<Arc<Gateway>>) -> Vec<Route> {
    use Access::Account;
    vec![
        routes.route(Account, Doc::of::<__path_summary>(), summary),
        routes.route(Account, Doc::of::<__path_calls>(), calls),
    ]
}

/// `?from=&to=&group_by=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// Calls settled at or after this instant; 30 days before `to` when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    from: Option<String>,
    /// Calls settled before this instant; through now when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    to: Option<String>,
    /// `model` (the default), `day` (UTC), `key` or `project` for gateway
    /// calls; `feature` for the account's consumes by feature (`quantity`
    /// units, `cost` credits), free features included.
    #[param(pattern = "^(model|day|key|project|feature)$")]
    group_by: Option<String>,
}

/// What a group of calls adds up to.
#[derive(Serialize, ToSchema, Default)]
struct UsageGroup {
    /// The model, the day (`2027-01-15`), the key id or the project; null
    /// for calls without a project.
    key: Option<String>,
    calls: i64,
    input_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: i64,
    output_tokens: i64,
    reasoning_tokens: i64,
    /// Credits charged.
    #[schema(value_type = Decimal)]
    cost: DecimalOf,
    /// What the tokens cost at list price without markup, in credits.
    #[schema(value_type = Decimal)]
    list_cost: DecimalOf,
    /// Units consumed, when grouped by `feature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Decimal>)]
    quantity: Option<DecimalOf>,
}

/// An amount that starts at zero and adds up.
#[derive(Default, Clone, Copy)]
struct DecimalOf(i64);

impl Serialize for DecimalOf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Decimal(ledger::Amount::from_micros(self.0)).serialize(s)
    }
}

impl UsageGroup {
    fn of(g: &usage::Group) -> UsageGroup {
        UsageGroup {
            key: g.key.clone(),
            calls: g.calls,
            input_tokens: g.tokens.input,
            cached_tokens: g.tokens.cached,
            cache_write_tokens: g.tokens.cache_write,
            output_tokens: g.tokens.output,
            reasoning_tokens: g.tokens.reasoning,
            cost: DecimalOf(g.cost_micros),
            list_cost: DecimalOf(g.list_cost_micros),
            quantity: None,
        }
    }

    fn of_feature(f: &store::usage::FeatureUse) -> UsageGroup {
        UsageGroup {
            key: Some(f.feature.clone()),
            calls: f.uses,
            cost: DecimalOf(f.credits.micros()),
            quantity: Some(DecimalOf(f.quantity.micros())),
            ..UsageGroup::default()
        }
    }
}

/// Features' uses per feature, and their total.
fn feature_groups(uses: &[store::usage::FeatureUse]) -> (Vec<UsageGroup>, UsageGroup) {
    let mut total = UsageGroup {
        quantity: Some(DecimalOf(0)),
        ..UsageGroup::default()
    };
    for f in uses {
        total.calls = total.calls.saturating_add(f.uses);
        total.cost.0 = total.cost.0.saturating_add(f.credits.micros());
        if let Some(q) = &mut total.quantity {
            q.0 = q.0.saturating_add(f.quantity.micros());
        }
    }
    (uses.iter().map(UsageGroup::of_feature).collect(), total)
}

/// An account's usage, summed.
#[derive(Serialize, ToSchema)]
struct UsageSummary {
    from: Instant,
    to: Instant,
    group_by: &'static str,
    data: Vec<UsageGroup>,
    total: UsageGroup,
}

/// Summarize an account's gateway usage
///
/// Calls settled in [`from`, `to`), summed per model, day (UTC), key or
/// project: tokens by class, credits charged and list-price cost. Whole
/// hours are read from the hourly rollup, the hours at either end from the
/// calls themselves, so the sums are exact for any instants. With
/// `group_by=feature`, the account's consumes by feature in the window
/// instead, per feature: `calls` the consumes, `quantity` the units,
/// `cost` the credits (zero for a free feature).
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/usage",
    tag = "gateway",
    operation_id = "usageSummary",
    params(AccountPath, UsageQuery),
    responses(
        (status = 200, description = "The sums.", body = UsageSummary),
        (status = 400, description = "`invalid_id`, `invalid_timestamp`, `invalid_request`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn summary(
    State(gateway): GatewayState,
    Query(query): Query<UsageQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let (from, to) = window(&gateway, query.from.as_deref(), query.to.as_deref())?;
    let group_by = match query.group_by.as_deref() {
        None => GroupBy::Model,
        Some(text) => GroupBy::parse(text).ok_or_else(|| {
            ApiError::InvalidRequest("group_by must be model, day, key, project or feature".into())
        })?,
    };
    let store = gateway.store.as_ref();
    let (data, total) = match group_by.sums() {
        Some(sums) => {
            let buckets = usage::buckets(store, &account, from, to, sums).await?;
            let (groups, total) = usage::group(&buckets, group_by);
            (
                groups.iter().map(UsageGroup::of).collect(),
                UsageGroup::of(&total),
            )
        }
        None => feature_groups(&store.feature_usage(account.clone(), from, to).await?),
    };
    Ok(render::json(
        StatusCode::OK,
        &UsageSummary {
            from: Instant(from),
            to: Instant(to),
            group_by: group_by.code(),
            data,
            total,
        },
    ))
}

/// `from`..`to` of a usage query: through now when `to` is absent, `from`
/// 30 days before `to`. A window that ends before it starts holds nothing;
/// any length is read at the cost of what it holds (the hourly rollup, and
/// the calls of the hours at its ends).
fn window(
    gateway: &Gateway,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Timestamp, Timestamp), ApiError> {
    // Absent, `to` includes what was written at this very microsecond.
    let to = extract::timestamp(to, "to")?
        .unwrap_or_else(|| Timestamp::from_micros(gateway.clock.now().micros().saturating_add(1)));
    let from = extract::timestamp(from, "from")?.unwrap_or(to.plus_secs(-30 * 86_400));
    Ok((from, to.max(from)))
}

/// One call as recorded.
#[derive(Serialize, ToSchema)]
struct CallView {
    id: String,
    key_id: Option<String>,
    project: Option<String>,
    provider: String,
    model: String,
    /// `credits` or `byok`.
    billing_mode: String,
    input_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: i64,
    output_tokens: i64,
    reasoning_tokens: i64,
    cost: Decimal,
    list_cost: Decimal,
    /// The HTTP status the caller received.
    status: u16,
    /// `ok`, `usage_estimated`, `client_closed`, `upstream_cut`,
    /// `upstream_refused` or `upstream_error`.
    outcome: String,
    latency_ms: i64,
    /// The ledger transaction that settled it.
    transaction_id: Option<String>,
    created_at: Instant,
}

impl CallView {
    fn new(c: &Call) -> CallView {
        CallView {
            id: c.id.clone(),
            key_id: c.key_id.clone(),
            project: c.project.clone(),
            provider: c.provider.clone(),
            model: c.model.clone(),
            billing_mode: c.mode.clone(),
            input_tokens: c.tokens.input,
            cached_tokens: c.tokens.cached,
            cache_write_tokens: c.tokens.cache_write,
            output_tokens: c.tokens.output,
            reasoning_tokens: c.tokens.reasoning,
            cost: Decimal(c.cost),
            list_cost: Decimal(c.list_cost),
            status: c.status,
            outcome: c.outcome.clone(),
            latency_ms: c.latency_ms,
            transaction_id: c.tx.map(|t| t.to_string()),
            created_at: Instant(c.at),
        }
    }
}

/// A page of calls.
#[derive(Serialize, ToSchema)]
struct CallPage {
    data: Vec<CallView>,
    /// Pass as `cursor` for the next (older) page, when this one is full.
    next_cursor: Option<String>,
}

/// `?from=&to=&limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CallsQuery {
    /// Calls settled at or after this instant; 30 days before `to` when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    from: Option<String>,
    /// Calls settled before this instant; through now when absent.
    #[param(value_type = Option<server::openapi::schema::TimestampInput>)]
    to: Option<String>,
    /// The page size, 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^-?[0-9]{1,18}:.*$")]
    cursor: Option<String>,
}

/// List an account's gateway calls
///
/// One record per call, newest first: key, project, model, tokens by
/// class, credits charged, list-price cost, status, latency, and the
/// ledger transaction that settled it.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/usage/calls",
    tag = "gateway",
    operation_id = "listUsageCalls",
    params(AccountPath, CallsQuery),
    responses(
        (status = 200, description = "A page of calls.", body = CallPage),
        (status = 400, description = "`invalid_id`, `invalid_timestamp`, `invalid_request`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn calls(
    State(gateway): GatewayState,
    Query(query): Query<CallsQuery>,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let (from, to) = window(&gateway, query.from.as_deref(), query.to.as_deref())?;
    let limit = extract::limit(query.limit.as_deref())?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.split_once(':')
                .and_then(|(at, id)| {
                    Some((Timestamp::from_micros(at.parse().ok()?), id.to_owned()))
                })
                .ok_or_else(|| {
                    ApiError::InvalidRequest("cursor is not a page's next_cursor".into())
                })
        })
        .transpose()?;
    let store = gateway.store.as_ref();
    let page = store
        .calls(CallQuery {
            account,
            from,
            to,
            before,
            limit,
        })
        .await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|c| format!("{}:{}", c.at.micros(), c.id)))
        .flatten();
    Ok(render::json(
        StatusCode::OK,
        &CallPage {
            data: page.iter().map(CallView::new).collect(),
            next_cursor,
        },
    ))
}
