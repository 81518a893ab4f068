//! Plans: store one whole, read one, list them all.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use server::error::ApiError;
use server::extract::{self, PathParam, ReadBody, Sign};
use server::openapi::Doc;
use server::render::{self, Instant};
use server::routes::Routes;
use server::{Access, Principal, Route};
use store::records::{self, Doc as Record, Expect, Modified, RecordFilter, Step};
use store::{Command, Executed, Op, Outcome};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use crate::Billing;
use crate::domain::UnitPrice;
use crate::error::BillingError;
use crate::plan::{Allocation, CurrencyJson, MoneyJson, Overage, Plan};
use crate::settings;

use super::{BillingState, Reader, id_parameter, plain_amount, record_id, refused};

/// The plans' routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::{Admin, Catalog};
    vec![
        routes.route(Admin, Doc::of::<__path_put>(), put),
        routes.route(Catalog, Doc::of::<__path_get>(), get),
        routes.route(Catalog, Doc::of::<__path_list>(), list),
    ]
}

/// `{plan_id}`
enum PlanPath {}

impl IntoParams for PlanPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_parameter("plan_id", "plan", "pro")]
    }
}

/// A plan as `PUT` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PlanBody<'a> {
    /// A display name.
    #[schema(value_type = server::openapi::schema::RequiredName)]
    name: String,
    /// Credits granted each period; zero or more.
    #[serde(borrow, deserialize_with = "extract::raw", default)]
    #[schema(value_type = server::openapi::schema::NonNegativeAmount, required = true)]
    credits: Option<&'a RawValue>,
    /// `day`, `week`, `month` or `year`.
    #[schema(pattern = "^(day|week|month|year)$")]
    interval: String,
    /// How many of them a period lasts; 1 when absent; at most ten years
    /// (3650 days, 520 weeks, 120 months or 10 years).
    #[serde(default, deserialize_with = "extract::whole_opt")]
    #[schema(minimum = 1, maximum = 3650)]
    interval_count: Option<u32>,
    /// `reset` (default): the new period's credits replace what is left of
    /// the last period's; `rollover`: what is left carries into rollover
    /// credits, which hold at most `rollover_cap` in all.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(reset|rollover)$")]
    allocation: Option<Allocation>,
    /// With `rollover`: the most rollover credits an account may hold;
    /// unlimited when absent.
    #[serde(borrow, deserialize_with = "extract::raw", default)]
    #[schema(value_type = Option<server::openapi::schema::NonNegativeAmount>)]
    rollover_cap: Option<&'a RawValue>,
    /// Whether each period's credits expire at the period's end (not with
    /// `rollover`).
    #[serde(default)]
    credits_expire_at_period_end: bool,
    /// The price of a period, as Stripe writes money; a free plan has none.
    #[serde(default)]
    #[schema(value_type = Option<crate::plan::MoneyInput>)]
    price: Option<MoneyJson>,
    /// The payment provider's price for the plan.
    #[serde(default)]
    #[schema(value_type = Option<server::openapi::schema::RequiredName>)]
    provider_price_id: Option<String>,
    /// Usage beyond the credits: `{"unit_price": "1", "currency": "usd",
    /// "cap"?: credits}`: consumes may take the balance below zero down to
    /// the cap (no cap: unlimited), and each period's overage is billed at
    /// its end; null for none.
    #[serde(default)]
    overage: Option<OverageBody>,
    /// Makes it the plan every new account is subscribed to (at most one);
    /// false takes that away from it.
    #[serde(default)]
    default: Option<bool>,
}

/// Overage as `PUT` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OverageBody {
    /// Minor units per credit, a plain decimal (`"1"`, `"0.25"`).
    #[schema(pattern = "^(0|[1-9][0-9]*)(\\.[0-9]+)?$")]
    unit_price: String,
    /// Three lowercase letters.
    #[schema(value_type = String, pattern = "^[a-z]{3}$")]
    currency: CurrencyJson,
    /// The most overage credits a period may run into; unlimited when
    /// absent or null.
    #[serde(default)]
    #[schema(value_type = Option<server::openapi::schema::NonNegativeAmount>)]
    cap: Option<Value>,
}

/// A plan as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Plan)]
struct PlanView {
    id: String,
    name: String,
    #[schema(value_type = String)]
    credits: String,
    interval: String,
    interval_count: u32,
    #[schema(value_type = String)]
    allocation: Allocation,
    #[schema(value_type = Option<String>)]
    rollover_cap: Option<String>,
    credits_expire_at_period_end: bool,
    #[schema(value_type = Option<Object>)]
    price: Option<MoneyJson>,
    provider_price_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    overage: Option<Overage>,
    /// Whether new accounts are subscribed to it.
    default: bool,
    created_at: Instant,
    updated_at: Instant,
}

impl PlanView {
    fn new(doc: &Record<Plan>, default: Option<&str>) -> PlanView {
        let plan = doc.body.clone();
        PlanView {
            default: default == Some(doc.id.as_str()),
            id: doc.id.clone(),
            name: plan.name,
            credits: plan.credits.to_string(),
            interval: plan.interval,
            interval_count: plan.interval_count,
            allocation: plan.allocation,
            rollover_cap: plan.rollover_cap.map(|cap| cap.to_string()),
            credits_expire_at_period_end: plan.credits_expire_at_period_end,
            price: plan.price,
            provider_price_id: plan.provider_price_id,
            overage: plan.overage,
            created_at: Instant(doc.created_at),
            updated_at: Instant(doc.updated_at),
        }
    }
}

/// Create or replace a plan
///
/// Stores a plan whole. Accounts already on it keep their current period;
/// their next periods follow the plan as it stands then.
#[utoipa::path(
    put,
    path = "/v1/plans/{plan_id}",
    tag = "billing",
    operation_id = "putPlan",
    params(PlanPath),
    request_body = PlanBody,
    responses(
        (status = 200, description = "The plan as stored.", body = PlanView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_amount`, `invalid_plan` (fields that do not go together), \
            `invalid_interval`, `invalid_currency`, `invalid_money`, `invalid_price`."),
        (status = 409, description = "`default_plan_exists`: another plan is the default."),
    ),
)]
async fn put(
    State(billing): BillingState,
    PathParam(id): PathParam,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let id = record_id(&id, "plan")?;
    let body: PlanBody = extract::parse_json(&body)?;
    let overage = match body.overage {
        None => None,
        Some(overage) => Some(Overage {
            unit_price: UnitPrice::parse(&overage.unit_price).map_err(BillingError::from)?,
            currency: overage.currency,
            cap: match overage.cap {
                None | Some(Value::Null) => None,
                Some(cap) => {
                    let raw = serde_json::value::to_raw_value(&cap)
                        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
                    Some(extract::amount(&raw, "overage.cap", Sign::NotNegative)?)
                }
            },
        }),
    };
    let plan = Plan {
        name: body.name,
        credits: plain_amount(body.credits, "credits")?
            .ok_or_else(|| ApiError::InvalidRequest("missing field `credits`".into()))?,
        interval: body.interval,
        interval_count: body.interval_count.unwrap_or(1),
        allocation: body.allocation.unwrap_or(Allocation::Reset),
        rollover_cap: plain_amount(body.rollover_cap, "rollover_cap")?,
        credits_expire_at_period_end: body.credits_expire_at_period_end,
        price: body.price,
        provider_price_id: body.provider_price_id,
        overage,
    };
    plan.check()?;
    let store = billing.store.as_ref();
    let (plan, env) = (&plan, &billing.env);
    let modified =
        records::modify::<settings::Stored, _, ApiError>(store, settings::RECORD_ID, |stored| {
            let step = settings::resolved(env, stored)
                .map_err(ApiError::from)
                .and_then(|settings| put_with_default(&id, plan, body.default, &settings));
            Box::pin(std::future::ready(step))
        })
        .await?;
    match modified {
        Modified::Written(Executed::Fresh(Ok(Outcome::RecordPut(record))), default) => {
            let doc = Record::<Plan>::from_record(record)?;
            Ok(render::json(
                StatusCode::OK,
                &PlanView::new(&doc, default.as_deref()),
            ))
        }
        Modified::Written(Executed::Fresh(Err(other)), _) => Err(refused(other)),
        other => Err(ApiError::Internal(format!("a plan put answered {other:?}"))),
    }
}

/// The plan's put, with the settings' write joined when it becomes or stops
/// being the default plan, so that the default holds exactly when the put
/// does; answers the default plan once it applies.
fn put_with_default(
    id: &str,
    plan: &Plan,
    default: Option<bool>,
    settings: &settings::CreditSettings,
) -> Result<Step<Option<String>>, ApiError> {
    let mut joined = Vec::new();
    let mut after = settings.default_plan.clone();
    match (default, settings.default_plan.as_deref()) {
        (Some(true), Some(other)) if other != id => {
            return Err(BillingError::DefaultPlanExists(other.to_owned()).into());
        }
        (Some(true), None) => {
            joined.push(settings.write_with(&BTreeMap::from([(
                "default_plan".to_owned(),
                Value::String(id.to_owned()),
            )])));
            after = Some(id.to_owned());
        }
        (Some(false), Some(current)) if current == id => {
            joined.push(
                settings.write_with(&BTreeMap::from([("default_plan".to_owned(), Value::Null)])),
            );
            after = None;
        }
        _ => {}
    }
    let command =
        Command::new(Op::Record(records::put(id, plan, Expect::Any))).with_records(joined);
    Ok(Step::Write(command, after))
}

/// Get a plan
///
/// Any key may read the plans; a customer key sees them without the
/// payment provider's price id.
#[utoipa::path(
    get,
    path = "/v1/plans/{plan_id}",
    tag = "billing",
    operation_id = "getPlan",
    params(PlanPath),
    responses(
        (status = 200, description = "The plan.", body = PlanView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`plan_not_found`."),
    ),
)]
async fn get(
    State(billing): BillingState,
    Extension(principal): Extension<Principal>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = record_id(&id, "plan")?;
    let store = billing.store.as_ref();
    let doc = records::get::<Plan>(store, &id)
        .await?
        .ok_or(BillingError::PlanNotFound)?;
    let settings = settings::read(store, &billing.env).await?;
    let view = PlanView::new(&doc, settings.default_plan.as_deref());
    Ok(render::json(
        StatusCode::OK,
        &Reader::of(&principal).shown(&view)?,
    ))
}

/// A list of plans.
#[derive(Serialize, ToSchema)]
struct PlanList {
    data: Vec<PlanView>,
}

/// List plans
///
/// Every plan, in id order: what a pricing page lists. Any key may read
/// them; a customer key sees them without the payment provider's price id.
#[utoipa::path(
    get,
    path = "/v1/plans",
    tag = "billing",
    operation_id = "listPlans",
    responses((status = 200, description = "Every plan.", body = PlanList)),
)]
async fn list(
    State(billing): BillingState,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let reader = Reader::of(&principal);
    let settings = settings::read(store, &billing.env).await?;
    let plans = records::list_all::<Plan>(store, RecordFilter::All).await?;
    let data = plans
        .iter()
        .map(|doc| reader.shown(&PlanView::new(doc, settings.default_plan.as_deref())))
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(render::json(
        StatusCode::OK,
        &serde_json::json!({ "data": data }),
    ))
}
