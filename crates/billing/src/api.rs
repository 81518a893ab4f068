//! Billing's routes: credit settings, plans, packages, subscriptions, the daily reward and
//! overage charges, each with its description and the access it needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use ledger::{AccountId, Amount, Metadata, NewGrant, Source, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use server::error::ApiError;
use server::extract::{
    self, ExistingAccount, PathAccount, PathParam, Query, ReadBody, Sign, Write,
};
use server::openapi::Doc;
use server::openapi::schema::{AccountPath, IdempotencyKey};
use server::render::{self, Decimal, GrantView, Instant};
use server::routes::{Idempotency, Routes};
use server::{Access, Principal, Route};
use store::records::{self, Doc as Record, Expect, RecordFilter, Written};
use store::{Command, Executed, Op, Outcome, Refused};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::Billing;
use crate::daily;
use crate::domain::{Money, overage_due, period_overage};
use crate::error::BillingError;
use crate::package::{Package, TextJson};
use crate::payments::subscriptions as provider_subscriptions;
use crate::plan::{Allocation, CurrencyJson, MoneyJson, Overage, Plan, is_id};
use crate::settings::{self, SettingsPatch};
use crate::subscription::{self, Changed, OverageCharge, Subscription};

type BillingState = State<Arc<Billing>>;

/// Billing's routes, answered with its state.
pub fn routes(billing: &Arc<Billing>) -> Vec<Route> {
    use Access::{Account, Admin, Catalog, Service};
    let routes = Routes::with(billing.clone());
    vec![
        routes.route(Admin, Doc::of::<__path_get_settings>(), get_settings),
        routes.route(Admin, Doc::of::<__path_patch_settings>(), patch_settings),
        routes.route(Admin, Doc::of::<__path_put_plan>(), put_plan),
        routes.route(Catalog, Doc::of::<__path_get_plan>(), get_plan),
        routes.route(Catalog, Doc::of::<__path_list_plans>(), list_plans),
        routes.route(Admin, Doc::of::<__path_put_package>(), put_package),
        routes.route(Catalog, Doc::of::<__path_get_package>(), get_package),
        routes.route(Catalog, Doc::of::<__path_list_packages>(), list_packages),
        routes
            .route(Service, Doc::of::<__path_grant_package>(), grant_package)
            .with_idempotency(Idempotency::Ledger),
        routes.route(
            Service,
            Doc::of::<__path_put_subscription>(),
            put_subscription,
        ),
        routes.route(
            Account,
            Doc::of::<__path_get_subscription>(),
            get_subscription,
        ),
        routes.route(
            Service,
            Doc::of::<__path_cancel_subscription>(),
            cancel_subscription,
        ),
        routes.route(
            Account,
            Doc::of::<__path_claim_daily_reward>(),
            claim_daily_reward,
        ),
        routes.route(
            Account,
            Doc::of::<__path_get_daily_reward>(),
            get_daily_reward,
        ),
        routes.route(
            Service,
            Doc::of::<__path_list_overage_charges>(),
            list_overage_charges,
        ),
    ]
}

/// A path parameter naming a plan or a package.
fn id_parameter(name: &str, what: &str, example: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(format!(
            "The {what}'s id: 1 to 128 characters of `A-Za-z0-9_.:-`, not only dots."
        )))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(?!\\.+$)[A-Za-z0-9_.:-]{1,128}$"))
                .examples([example]),
        ))
        .build()
}

/// `{plan_id}`
enum PlanPath {}

impl IntoParams for PlanPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_parameter("plan_id", "plan", "pro")]
    }
}

/// `{package_id}`
enum PackagePath {}

impl IntoParams for PackagePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_parameter("package_id", "package", "credits-100")]
    }
}

pub(crate) fn record_id(text: &str, what: &str) -> Result<String, ApiError> {
    if is_id(text) {
        Ok(text.to_owned())
    } else {
        Err(ApiError::InvalidId(format!(
            "{what} ids are 1 to 128 characters of A-Za-z0-9_.:-, not only dots"
        )))
    }
}

fn refused(refused: Refused) -> ApiError {
    ApiError::from(refused)
}

// ---------------------------------------------------------------- settings

/// Get the credit settings
///
/// The sign-up bonus, the daily reward, whether free accounts may buy
/// packages, burn priorities per source and the default plan, each with
/// where its value comes from in `sources` (`default`, `env`: the server's
/// environment at start, `api`: set here, which wins).
#[utoipa::path(
    get,
    path = "/v1/settings/credits",
    tag = "billing",
    operation_id = "getCreditSettings",
    responses((status = 200, description = "The settings in force.", body = Object)),
)]
async fn get_settings(State(billing): BillingState) -> Result<Response, ApiError> {
    let settings = settings::read(billing.store.as_ref(), &billing.env).await?;
    Ok(render::json(StatusCode::OK, &settings.view()))
}

/// Change the credit settings
///
/// Changes the settings sent, nested as `GET` shows them; the others stay.
/// Stored once for every node, and over the environment's values.
#[utoipa::path(
    patch,
    path = "/v1/settings/credits",
    tag = "billing",
    operation_id = "patchCreditSettings",
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The settings now in force.", body = Object),
        (status = 400, description = "`malformed_json`, `invalid_settings` (an unknown \
            setting or a bad value)."),
        (status = 404, description = "`plan_not_found`: `default_plan` names no plan."),
    ),
)]
async fn patch_settings(
    State(billing): BillingState,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let body: Value = extract::parse_json(&body)?;
    let changes = settings::parse_patch(&body)?;
    if let Some(Value::String(plan)) = changes.get("default_plan")
        && records::get::<Plan>(billing.store.as_ref(), plan)
            .await?
            .is_none()
    {
        return Err(BillingError::PlanNotFound.into());
    }
    let settings = settings::patch(billing.store.as_ref(), &billing.env, &changes).await??;
    Ok(render::json(StatusCode::OK, &settings.view()))
}

/// What a key may read of the catalogue: admin keys everything; service
/// and customer keys what is for sale; customer keys without the fields
/// that are the operator's (the payment provider's price ids).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Admin,
    Service,
    Customer,
}

impl Reader {
    fn of(principal: &Principal) -> Reader {
        match principal.kind {
            server::KeyKind::Admin => Reader::Admin,
            server::KeyKind::Service => Reader::Service,
            server::KeyKind::Customer => Reader::Customer,
        }
    }

    /// Whether it sees packages not for sale.
    fn sees_inactive(self) -> bool {
        self == Reader::Admin
    }

    /// `view` as this reader may see it.
    fn shown<T: Serialize>(self, view: &T) -> Result<Value, ApiError> {
        let mut value =
            serde_json::to_value(view).map_err(|e| ApiError::Internal(e.to_string()))?;
        if self == Reader::Customer
            && let Some(object) = value.as_object_mut()
        {
            object.remove("provider_price_id");
        }
        Ok(value)
    }
}

// ------------------------------------------------------------------ plans

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

fn plain_amount(raw: Option<&RawValue>, field: &str) -> Result<Option<String>, ApiError> {
    raw.map(|raw| extract::amount(raw, field, Sign::NotNegative).map(|a| a.to_string()))
        .transpose()
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
            credits: plan.credits,
            interval: plan.interval,
            interval_count: plan.interval_count,
            allocation: plan.allocation,
            rollover_cap: plan.rollover_cap,
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
async fn put_plan(
    State(billing): BillingState,
    PathParam(id): PathParam,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let id = record_id(&id, "plan")?;
    let body: PlanBody = extract::parse_json(&body)?;
    let overage = match body.overage {
        None => None,
        Some(overage) => Some(Overage {
            unit_price: overage.unit_price,
            currency: overage.currency,
            cap: match overage.cap {
                None | Some(Value::Null) => None,
                Some(cap) => {
                    let raw = serde_json::value::to_raw_value(&cap)
                        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
                    Some(extract::amount(&raw, "overage.cap", Sign::NotNegative)?.to_string())
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
    for _ in 0..5 {
        let settings = settings::read(store, &billing.env).await?;
        let mut joined = Vec::new();
        // The default plan once the put applies: the settings' write joins
        // the put, so it holds exactly when the put does.
        let mut default = settings.default_plan.clone();
        match (body.default, settings.default_plan.as_deref()) {
            (Some(true), Some(other)) if other != id => {
                return Err(BillingError::DefaultPlanExists(other.to_owned()).into());
            }
            (Some(true), None) => {
                joined.push(settings.write_with(&BTreeMap::from([(
                    "default_plan".to_owned(),
                    Value::String(id.clone()),
                )])));
                default = Some(id.clone());
            }
            (Some(false), Some(current)) if current == id => {
                joined.push(
                    settings
                        .write_with(&BTreeMap::from([("default_plan".to_owned(), Value::Null)])),
                );
                default = None;
            }
            _ => {}
        }
        let command =
            Command::new(Op::Record(records::put(&id, &plan, Expect::Any))).with_records(joined);
        match store.execute(command).await? {
            Executed::Fresh(Ok(Outcome::RecordPut(record))) => {
                let doc = Record::<Plan>::from_record(record)?;
                return Ok(render::json(
                    StatusCode::OK,
                    &PlanView::new(&doc, default.as_deref()),
                ));
            }
            // The settings moved meanwhile: look again.
            Executed::Fresh(Err(Refused::VersionConflict { .. })) => continue,
            Executed::Fresh(Err(other)) => return Err(refused(other)),
            other => return Err(ApiError::Internal(format!("a plan put answered {other:?}"))),
        }
    }
    Err(ApiError::StoreUnavailable(
        "the settings kept changing; retry".into(),
    ))
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
async fn get_plan(
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
async fn list_plans(
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

// --------------------------------------------------------------- packages

/// A package as `PUT` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PackageBody<'a> {
    /// A name, or names by locale (`{"en": "100 Credits", "zh": "100 积分"}`).
    #[schema(value_type = crate::plan::TextInput)]
    name: TextJson,
    /// A description, one or by locale.
    #[serde(default)]
    #[schema(value_type = Option<crate::plan::TextInput>)]
    description: Option<TextJson>,
    /// Credits it grants; above zero.
    #[serde(borrow, deserialize_with = "extract::raw", default)]
    #[schema(value_type = server::openapi::schema::PositiveAmount, required = true)]
    credits: Option<&'a RawValue>,
    /// Its price, as Stripe writes money.
    #[schema(value_type = crate::plan::MoneyInput)]
    price: MoneyJson,
    /// The payment provider's price for it.
    #[serde(default)]
    #[schema(value_type = Option<server::openapi::schema::RequiredName>)]
    provider_price_id: Option<String>,
    /// Whether it is for sale; true when absent.
    #[serde(default)]
    active: Option<bool>,
}

/// A package as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Package)]
struct PackageView {
    id: String,
    /// The name; picked for `?locale=` (falling back to `en`), else as stored.
    #[schema(value_type = crate::plan::TextInput)]
    name: Value,
    /// The description, picked like the name.
    #[schema(value_type = Option<crate::plan::TextInput>)]
    description: Option<Value>,
    #[schema(value_type = String)]
    credits: String,
    #[schema(value_type = crate::plan::MoneyInput)]
    price: MoneyJson,
    provider_price_id: Option<String>,
    active: bool,
    created_at: Instant,
    updated_at: Instant,
}

fn text_view(text: &TextJson, locale: Option<&str>) -> Value {
    match (locale, text.localized()) {
        (Some(locale), Ok(localized)) => Value::String(localized.pick(Some(locale)).to_owned()),
        _ => serde_json::to_value(text).unwrap_or(Value::Null),
    }
}

impl PackageView {
    fn new(doc: &Record<Package>, locale: Option<&str>) -> PackageView {
        let package = &doc.body;
        PackageView {
            id: doc.id.clone(),
            name: text_view(&package.name, locale),
            description: package.description.as_ref().map(|d| text_view(d, locale)),
            credits: package.credits.clone(),
            price: package.price,
            provider_price_id: package.provider_price_id.clone(),
            active: package.active,
            created_at: Instant(doc.created_at),
            updated_at: Instant(doc.updated_at),
        }
    }
}

/// Create or replace a package
#[utoipa::path(
    put,
    path = "/v1/packages/{package_id}",
    tag = "billing",
    operation_id = "putPackage",
    params(PackagePath),
    request_body = PackageBody,
    responses(
        (status = 200, description = "The package as stored.", body = PackageView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_amount`, `invalid_package`, `invalid_currency`, `invalid_money`, \
            `invalid_locale`, `invalid_text`."),
    ),
)]
async fn put_package(
    State(billing): BillingState,
    PathParam(id): PathParam,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let id = record_id(&id, "package")?;
    let body: PackageBody = extract::parse_json(&body)?;
    let package = Package {
        name: body.name,
        description: body.description,
        credits: plain_amount(body.credits, "credits")?
            .ok_or_else(|| ApiError::InvalidRequest("missing field `credits`".into()))?,
        price: body.price,
        provider_price_id: body.provider_price_id,
        active: body.active.unwrap_or(true),
    };
    package.check()?;
    let write = records::put(&id, &package, Expect::Any);
    match records::write::<Package>(billing.store.as_ref(), write).await? {
        Written::Stored(doc) => Ok(render::json(StatusCode::OK, &PackageView::new(&doc, None))),
        Written::Refused(other) => Err(refused(other)),
        Written::Deleted => Err(ApiError::Internal("a package put answered deleted".into())),
    }
}

/// The locale a reader asks for, checked (`zh`, `pt-BR`; any case).
fn reader_locale(locale: Option<&str>) -> Result<Option<&str>, ApiError> {
    match locale {
        Some(tag) if !crate::domain::is_locale(&tag.to_ascii_lowercase()) => Err(
            BillingError::from(crate::domain::DomainError::InvalidLocale(
                "locale must be a tag such as en, zh or pt-BR",
            ))
            .into(),
        ),
        other => Ok(other),
    }
}

/// `?locale=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LocaleQuery {
    /// A locale tag (`zh`): names and descriptions in it, falling back to `en`.
    #[param(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    locale: Option<String>,
}

/// Get a package
///
/// Any key may read a package for sale; only admin keys one that is not
/// (404 `package_not_found` for the others). A customer key sees it
/// without the payment provider's price id.
#[utoipa::path(
    get,
    path = "/v1/packages/{package_id}",
    tag = "billing",
    operation_id = "getPackage",
    params(PackagePath, LocaleQuery),
    responses(
        (status = 200, description = "The package.", body = PackageView),
        (status = 400, description = "`invalid_id`, `invalid_request`, `invalid_locale`."),
        (status = 404, description = "`package_not_found`."),
    ),
)]
async fn get_package(
    State(billing): BillingState,
    Extension(principal): Extension<Principal>,
    PathParam(id): PathParam,
    Query(query): Query<LocaleQuery>,
) -> Result<Response, ApiError> {
    let id = record_id(&id, "package")?;
    let reader = Reader::of(&principal);
    let locale = reader_locale(query.locale.as_deref())?;
    let doc = records::get::<Package>(billing.store.as_ref(), &id)
        .await?
        .filter(|doc| doc.body.active || reader.sees_inactive())
        .ok_or(BillingError::PackageNotFound)?;
    Ok(render::json(
        StatusCode::OK,
        &reader.shown(&PackageView::new(&doc, locale))?,
    ))
}

/// `?active=&locale=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PackageQuery {
    /// `true` or `false`: only packages that are, or are not, for sale.
    #[param(pattern = "^(true|false)$")]
    active: Option<String>,
    /// A locale tag (`zh`): names and descriptions in it, falling back to `en`.
    #[param(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    locale: Option<String>,
}

/// A list of packages.
#[derive(Serialize, ToSchema)]
struct PackageList {
    data: Vec<PackageView>,
}

/// List packages
///
/// Every package, in id order; `?active=true` only those for sale. Service
/// and customer keys see only those for sale, whatever `active` says; a
/// customer key sees them without the payment provider's price id: what a
/// store page lists, with `?locale=` for its language.
#[utoipa::path(
    get,
    path = "/v1/packages",
    tag = "billing",
    operation_id = "listPackages",
    params(PackageQuery),
    responses(
        (status = 200, description = "The packages.", body = PackageList),
        (status = 400, description = "`invalid_request`, `invalid_locale`."),
    ),
)]
async fn list_packages(
    State(billing): BillingState,
    Extension(principal): Extension<Principal>,
    Query(query): Query<PackageQuery>,
) -> Result<Response, ApiError> {
    let reader = Reader::of(&principal);
    let locale = reader_locale(query.locale.as_deref())?;
    let active = match query.active.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "active must be true or false".into(),
            ));
        }
    };
    // Only admin keys see what is not for sale.
    let active = if reader.sees_inactive() {
        active
    } else if active == Some(false) {
        return Ok(render::json(
            StatusCode::OK,
            &serde_json::json!({ "data": [] }),
        ));
    } else {
        Some(true)
    };
    let filter = match active {
        None => RecordFilter::All,
        Some(active) => RecordFilter::Equals {
            name: "active".to_owned(),
            value: active.to_string(),
        },
    };
    let packages = records::list_all::<Package>(billing.store.as_ref(), filter).await?;
    let data = packages
        .iter()
        .map(|doc| reader.shown(&PackageView::new(doc, locale)))
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(render::json(
        StatusCode::OK,
        &serde_json::json!({ "data": data }),
    ))
}

/// A package grant's optional body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PackageGrantBody {
    /// What paid for it (an order id), unique per account: sending it again
    /// grants nothing more.
    #[serde(default)]
    #[schema(value_type = Option<server::openapi::schema::ExternalId>)]
    external_id: Option<String>,
}

/// Grant a package paid for elsewhere
///
/// Grants a package's credits as a `purchase` lot, for a package paid for
/// outside creditd. Refuses a package not for sale, and an account without a
/// paid plan unless free accounts may buy (`allow_free_user_purchase`).
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/packages/{package_id}/grant",
    tag = "billing",
    operation_id = "grantPackage",
    params(AccountPath, PackagePath, IdempotencyKey),
    request_body(content = Option<PackageGrantBody>, description = "Optional; an empty body or \n        `null` reads as `{}`."),
    responses(
        (status = 201, description = "The grant's lot.", body = GrantView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`."),
        (status = 404, description = "`account_not_found`, `package_not_found`."),
        (status = 409, description = "`package_inactive`, `purchase_not_allowed`, \
            `external_id_conflict`."),
    ),
)]
async fn grant_package(
    State(billing): BillingState,
    Extension(principal): Extension<Principal>,
    ExistingAccount(account): ExistingAccount,
    axum::extract::Path((_, package)): axum::extract::Path<(String, String)>,
    write: Write,
) -> Result<Response, ApiError> {
    let package_id = record_id(&package, "package")?;
    let body: PackageGrantBody = extract::parse_optional_json(&write.body)?;
    let store = billing.store.as_ref();
    let package = records::get::<Package>(store, &package_id)
        .await?
        .ok_or(BillingError::PackageNotFound)?
        .body;
    if !package.active {
        return Err(BillingError::PackageInactive.into());
    }
    let settings = settings::read(store, &billing.env).await?;
    if !settings.allow_free_user_purchase && !billing.has_paid_plan(&account).await? {
        return Err(BillingError::PurchaseNotAllowed.into());
    }
    let metadata = serde_json::json!({ "package_id": package_id }).to_string();
    let grant = NewGrant {
        amount: package.credits(),
        source: Source::Purchase,
        priority: Some(settings.priority(Source::Purchase)),
        effective_at: None,
        expires_at: None,
        metadata: Metadata::from_json_object(metadata).unwrap_or_default(),
        external_id: extract::external_id(body.external_id)?,
        reason: None,
        actor: Some(principal.key_id.to_string()),
    };
    server::handlers::execute(store, write, Op::Grant { account, grant }).await
}

// ----------------------------------------------------------- subscription

/// Moving an account to a plan.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionBody {
    /// The plan.
    #[schema(pattern = "^(?!\\.+$)[A-Za-z0-9_.:-]{1,128}$")]
    plan_id: String,
    /// The instant periods are counted from (monthly periods keep its day,
    /// clamped to each month's last); now when absent; not in the future.
    #[serde(default)]
    #[schema(value_type = Option<server::openapi::schema::TimestampInput>)]
    anchor: Option<String>,
}

/// A subscription's current period.
#[derive(Serialize, ToSchema)]
struct PeriodView {
    start: Instant,
    end: Instant,
    /// The plan's credits granted for it.
    granted: Decimal,
    /// Credits spent in it so far (all sources, less refunds), from its
    /// start or, when the account moved onto the plan later, from the move.
    used: Decimal,
    /// Credits owed beyond the balance so far, billed at the period's end:
    /// the debt, but never more than `used` (what was spent before the
    /// period is not its overage).
    overage_credits: Decimal,
    /// What that overage costs so far; null on a plan without overage.
    #[schema(value_type = Option<Object>)]
    overage_due: Option<Value>,
}

/// An account's subscription.
#[derive(Serialize, ToSchema)]
#[schema(as = Subscription)]
struct SubscriptionView {
    account_id: String,
    plan_id: String,
    /// `active`; `canceling`: it ends at the period's end; `past_due`: the
    /// payment provider could not collect its last invoice.
    status: &'static str,
    cancel_at_period_end: bool,
    /// The payment provider's subscription that bills it and whose paid
    /// invoices renew it; null for a plan creditd renews itself.
    provider_subscription: Option<String>,
    anchor: Instant,
    current_period: PeriodView,
}

fn money_view(money: Money) -> Value {
    serde_json::json!({ "amount": money.amount_minor(), "currency": money.currency().as_str() })
}

async fn subscription_view(
    billing: &Billing,
    account: &AccountId,
    doc: &Record<Subscription>,
) -> Result<SubscriptionView, ApiError> {
    let store = billing.store.as_ref();
    let now = billing.clock.now();
    let sub = &doc.body;
    let period = sub.period();
    let plan = subscription::plan(store, &sub.plan_id).await?.ok();
    let granted = match store
        .external(
            account.clone(),
            subscription::period_external_id(&sub.plan_id, sub.grant_start()),
        )
        .await?
    {
        Some(tx) => tx.amount,
        None => Amount::ZERO,
    };
    // Up to and including now: what was spent at this very instant counts;
    // what was spent before the account moved onto the plan does not.
    let from = sub.usage_start();
    let until = Timestamp::from_micros(now.micros().saturating_add(1))
        .min(period.end)
        .max(from);
    let used = store.usage_between(account.clone(), from, until).await?;
    let (overage_credits, overage_due_view) = match plan.as_ref().and_then(|p| p.overage.clone()) {
        Some(overage) => {
            let debt = store
                .book(account.clone(), None)
                .await?
                .map(|b| b.settled(now).account.debt)
                .unwrap_or(Amount::ZERO);
            let debt = period_overage(debt, used);
            let due = overage_due(debt, overage.unit_price())?;
            (debt, Some(money_view(Money::new(due, overage.currency.0)?)))
        }
        None => (Amount::ZERO, None),
    };
    Ok(SubscriptionView {
        account_id: account.to_string(),
        plan_id: sub.plan_id.clone(),
        status: match &sub.provider {
            Some(link) if matches!(link.status.as_str(), "past_due" | "unpaid") => "past_due",
            _ if sub.cancel_at_period_end => "canceling",
            _ => "active",
        },
        cancel_at_period_end: sub.cancel_at_period_end,
        provider_subscription: sub.provider.as_ref().map(|p| p.subscription.clone()),
        anchor: Instant(sub.anchor()),
        current_period: PeriodView {
            start: Instant(period.start),
            end: Instant(period.end),
            granted: Decimal(granted),
            used: Decimal(used),
            overage_credits: Decimal(overage_credits),
            overage_due: overage_due_view,
        },
    })
}

/// The account's subscription when the payment provider bills it, with the
/// payments that reach the provider (503 without them).
async fn provider_billed<'a>(
    billing: &'a Billing,
    account: &AccountId,
) -> Result<Option<(Record<Subscription>, &'a crate::payments::Payments)>, ApiError> {
    let Some(doc) = records::get::<Subscription>(billing.store.as_ref(), account.as_str()).await?
    else {
        return Ok(None);
    };
    if doc.body.provider.is_none() {
        return Ok(None);
    }
    let payments = billing
        .payments
        .as_ref()
        .ok_or(BillingError::PaymentsNotConfigured)?;
    Ok(Some((doc, payments)))
}

/// Move an account to a plan
///
/// Moves the account to the plan now: what is left of the old plan's credits
/// expires (`reset`) or rolls over (`rollover`), its overage so far is billed
/// as a charge, and the new plan's first period starts with its full grant,
/// all in one transaction. Purchased, bonus and admin credits are never
/// touched. Subscribing again to the plan the account is on changes nothing,
/// or takes back a cancellation. On a plan the payment provider bills, the
/// change is made there first (to the new plan's `provider_price_id`, the
/// prorated difference paid at once) and the account follows from now to
/// the period's end.
#[utoipa::path(
    put,
    path = "/v1/accounts/{account_id}/subscription",
    tag = "billing",
    operation_id = "putSubscription",
    params(AccountPath, server::openapi::schema::IdempotencyKey),
    request_body = SubscriptionBody,
    responses(
        (status = 200, description = "The subscription now.", body = SubscriptionView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_timestamp`, `invalid_plan` (an anchor in the future)."),
        (status = 404, description = "`account_not_found`, `plan_not_found`."),
        (status = 502, description = "`payment_provider_error` (a plan the provider bills)."),
        (status = 503, description = "`payments_not_configured` (a plan the provider bills)."),
    ),
)]
async fn put_subscription(
    State(billing): BillingState,
    kept: Option<Extension<server::idempotency::KeptKey>>,
    PathAccount(account): PathAccount,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let body: SubscriptionBody = extract::parse_json(&body)?;
    let plan_id = record_id(&body.plan_id, "plan")?;
    let anchor = extract::timestamp(body.anchor.as_deref(), "anchor")?;
    let store = billing.store.as_ref();
    if let Some((doc, payments)) = provider_billed(&billing, &account).await? {
        // The provider bills this plan: the change is made there, and the
        // account's subscription follows it.
        if anchor.is_some() {
            return Err(BillingError::InvalidPlan(
                "the payment provider sets the periods of the plan it bills: no anchor".into(),
            )
            .into());
        }
        if doc.body.plan_id == plan_id {
            if doc.body.cancel_at_period_end {
                let key = crate::payments::api::request_key(kept.as_ref().map(|k| &k.0))?;
                provider_subscriptions::cancel_at_period_end(&billing, payments, &doc, false, &key)
                    .await?;
            }
        } else {
            let key = crate::payments::api::request_key(kept.as_ref().map(|k| &k.0))?;
            provider_subscriptions::change_plan(&billing, payments, &doc, &plan_id, &key).await?;
        }
        let doc = records::get::<Subscription>(store, account.as_str())
            .await?
            .ok_or(BillingError::SubscriptionNotFound)?;
        return Ok(render::json(
            StatusCode::OK,
            &subscription_view(&billing, &account, &doc).await?,
        ));
    }
    match subscription::change(&billing, &account, &plan_id, anchor).await? {
        Changed::Done(doc) => Ok(render::json(
            StatusCode::OK,
            &subscription_view(&billing, &account, &doc).await?,
        )),
        Changed::Refused(error) => Err(error.into()),
        Changed::Rejected(reject) => Err(ApiError::Rejected(reject)),
    }
}

/// Get an account's subscription
///
/// The plan, whether it ends at the period's end, and the current period:
/// its credits, what was spent, and the overage so far.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/subscription",
    tag = "billing",
    operation_id = "getSubscription",
    params(AccountPath),
    responses(
        (status = 200, description = "The subscription.", body = SubscriptionView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`subscription_not_found`."),
    ),
)]
async fn get_subscription(
    State(billing): BillingState,
    PathAccount(account): PathAccount,
) -> Result<Response, ApiError> {
    let doc = records::get::<Subscription>(billing.store.as_ref(), account.as_str())
        .await?
        .ok_or(BillingError::SubscriptionNotFound)?;
    Ok(render::json(
        StatusCode::OK,
        &subscription_view(&billing, &account, &doc).await?,
    ))
}

/// Cancel a subscription at the period's end
///
/// The account stays on the plan until the current period ends, then moves
/// to the default plan (or to none). On a plan the payment provider bills,
/// the provider's subscription is set to cancel at its period's end, and
/// ends the plan when it says it ended.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{account_id}/subscription",
    tag = "billing",
    operation_id = "cancelSubscription",
    params(AccountPath, server::openapi::schema::IdempotencyKey),
    responses(
        (status = 200, description = "The subscription, canceling.", body = SubscriptionView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`subscription_not_found`."),
        (status = 502, description = "`payment_provider_error` (a plan the provider bills)."),
        (status = 503, description = "`payments_not_configured` (a plan the provider bills)."),
    ),
)]
async fn cancel_subscription(
    State(billing): BillingState,
    kept: Option<Extension<server::idempotency::KeptKey>>,
    PathAccount(account): PathAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    if let Some((doc, payments)) = provider_billed(&billing, &account).await? {
        let key = crate::payments::api::request_key(kept.as_ref().map(|k| &k.0))?;
        provider_subscriptions::cancel_at_period_end(&billing, payments, &doc, true, &key).await?;
    }
    let doc = subscription::cancel(store, &account).await??;
    Ok(render::json(
        StatusCode::OK,
        &subscription_view(&billing, &account, &doc).await?,
    ))
}

// ----------------------------------------------------------- daily reward

/// A daily reward claim's answer.
#[derive(Serialize, ToSchema)]
struct DailyRewardView<'a> {
    /// True when this request granted it; false when it was claimed before today.
    granted: bool,
    /// The reward's lot.
    grant: GrantView<'a>,
    /// When the next reward can be claimed: the start of the next UTC day.
    next_claim_at: Instant,
}

/// Claim today's daily reward
///
/// Grants today's reward (the UTC day) once: a second claim the same day
/// answers 200 with the first claim and grants nothing. Days not claimed do
/// not pile up.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/daily-reward",
    tag = "billing",
    operation_id = "claimDailyReward",
    params(AccountPath),
    responses(
        (status = 201, description = "Granted now.", body = DailyRewardView),
        (status = 200, description = "Already claimed today: the first claim.", body = DailyRewardView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
        (status = 409, description = "`daily_reward_disabled`."),
    ),
)]
async fn claim_daily_reward(
    State(billing): BillingState,
    PathAccount(account): PathAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let settings = settings::read(store, &billing.env).await?;
    if !settings.daily_reward.enabled || !settings.daily_reward.amount.is_positive() {
        return Err(BillingError::DailyRewardDisabled.into());
    }
    let now = billing.clock.now();
    let (_, date) = daily::day_of(now);
    let claimed = |tx: Option<ledger::Transaction>| async move {
        let Some(tx) = tx else {
            return Ok::<_, ApiError>(None);
        };
        let lot = match tx.lot {
            Some(id) => store.lot(id).await?,
            None => None,
        };
        let lot = lot
            .ok_or_else(|| ApiError::Internal(format!("the daily reward {} has no lot", tx.id)))?;
        Ok(Some((lot, tx.created_at)))
    };
    // Today's claim, when there is one, whatever the settings say now: a
    // change to the amount during the day does not grant it again.
    let first = claimed(
        store
            .external(account.clone(), daily::external_id(&date))
            .await?,
    )
    .await?;
    let (status, granted, lot, at) = match first {
        Some((lot, at)) => (StatusCode::OK, false, lot, at),
        None => {
            let executed = store
                .execute(Command::new(Op::Grant {
                    account: account.clone(),
                    grant: daily::grant(&settings, now),
                }))
                .await?;
            match executed {
                Executed::Fresh(Ok(Outcome::Granted { lot, tx })) => {
                    (StatusCode::CREATED, true, lot, tx.created_at)
                }
                Executed::Existing(Outcome::Granted { lot, tx }) => {
                    (StatusCode::OK, false, lot, tx.created_at)
                }
                // A claim made meanwhile under other settings won.
                Executed::Fresh(Err(Refused::Ledger(ledger::Reject::ExternalIdConflict))) => {
                    let won = store
                        .external(account.clone(), daily::external_id(&date))
                        .await?;
                    let (lot, at) = claimed(won).await?.ok_or_else(|| {
                        ApiError::Internal("a daily reward conflicted with none".into())
                    })?;
                    (StatusCode::OK, false, lot, at)
                }
                Executed::Fresh(Err(other)) => return Err(refused(other)),
                other => {
                    return Err(ApiError::Internal(format!(
                        "a daily reward answered {other:?}"
                    )));
                }
            }
        }
    };
    let mut response = render::json(
        status,
        &DailyRewardView {
            granted,
            grant: GrantView::new(&lot, at),
            next_claim_at: Instant(daily::next_claim(now)),
        },
    );
    if !granted {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Whether today's daily reward is claimed.
#[derive(Serialize, ToSchema)]
struct DailyRewardStatus {
    /// Whether it is on.
    enabled: bool,
    /// Whether today's (UTC) is claimed.
    claimed: bool,
    /// When it was claimed, if it was.
    claimed_at: Option<Instant>,
    /// What a claim grants now.
    amount: Decimal,
    /// When the next reward can be claimed: now if today's is not, else the
    /// start of the next UTC day.
    next_claim_at: Instant,
}

/// Get the daily reward's status
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/daily-reward",
    tag = "billing",
    operation_id = "getDailyReward",
    params(AccountPath),
    responses(
        (status = 200, description = "Whether today's reward is claimed.", body = DailyRewardStatus),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn get_daily_reward(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let settings = settings::read(store, &billing.env).await?;
    let now = billing.clock.now();
    let (_, date) = daily::day_of(now);
    let claim = store
        .external(account.clone(), daily::external_id(&date))
        .await?;
    Ok(render::json(
        StatusCode::OK,
        &DailyRewardStatus {
            enabled: settings.daily_reward.enabled,
            claimed: claim.is_some(),
            claimed_at: claim.as_ref().map(|tx| Instant(tx.created_at)),
            amount: Decimal(settings.daily_reward.amount),
            next_claim_at: Instant(if claim.is_some() {
                daily::next_claim(now)
            } else {
                now
            }),
        },
    ))
}

// --------------------------------------------------------- overage charges

/// An overage billed at a period's end.
#[derive(Serialize, ToSchema)]
#[schema(as = OverageCharge)]
struct ChargeView {
    id: String,
    account_id: String,
    plan_id: String,
    period_start: Instant,
    period_end: Instant,
    /// Credits used beyond the period's.
    credits: Decimal,
    /// Minor units per credit.
    unit_price: String,
    /// What is due: credits × unit price, rounded half up to a minor unit.
    #[schema(value_type = Object)]
    amount_due: Value,
    /// The payment provider's invoice item it became; null until it is
    /// invoiced (with Stripe configured, within a second or so).
    invoice_item: Option<String>,
    created_at: Instant,
}

/// A list of overage charges.
#[derive(Serialize, ToSchema)]
struct ChargeList {
    data: Vec<ChargeView>,
}

/// List an account's overage charges
///
/// Each period's overage, billed once when the period closed, oldest first.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/overage-charges",
    tag = "billing",
    operation_id = "listOverageCharges",
    params(AccountPath),
    responses(
        (status = 200, description = "The charges.", body = ChargeList),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn list_overage_charges(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let filter = RecordFilter::Equals {
        name: "account".to_owned(),
        value: account.to_string(),
    };
    let charges = records::list_all::<OverageCharge>(store, filter).await?;
    let mut data = Vec::with_capacity(charges.len());
    for doc in charges {
        let charge = &doc.body;
        data.push(ChargeView {
            id: doc.id.clone(),
            account_id: charge.account.clone(),
            plan_id: charge.plan_id.clone(),
            period_start: Instant(Timestamp::from_micros(charge.period_start_micros)),
            period_end: Instant(Timestamp::from_micros(charge.period_end_micros)),
            credits: Decimal(
                Amount::parse_decimal(&charge.credits)
                    .map_err(|_| ApiError::Internal("a stored charge's credits".into()))?,
            ),
            unit_price: charge.unit_price.clone(),
            amount_due: money_view(Money::new(charge.amount_due, charge.currency.0)?),
            invoice_item: charge.invoice_item.clone(),
            created_at: Instant(doc.created_at),
        });
    }
    Ok(render::json(StatusCode::OK, &ChargeList { data }))
}
