//! Packages: store one whole, read one, list them, and grant one paid for elsewhere.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{Metadata, NewGrant, Source};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use server::error::ApiError;
use server::extract::{self, ExistingAccount, PathParam, Query, ReadBody, Write};
use server::openapi::Doc;
use server::openapi::schema::{AccountPath, IdempotencyKey};
use server::render::{self, GrantView, Instant};
use server::routes::{Idempotency, Routes};
use server::{Access, Principal, Route};
use store::Op;
use store::records::{self, Doc as Record, Expect, RecordFilter, Written};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use crate::Billing;
use crate::error::BillingError;
use crate::package::{Package, TextJson};
use crate::plan::MoneyJson;

use super::{BillingState, Reader, id_parameter, plain_amount, record_id, refused};

/// The packages' routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::{Admin, Catalog, Service};
    vec![
        routes.route(Admin, Doc::of::<__path_put>(), put),
        routes.route(Catalog, Doc::of::<__path_get>(), get),
        routes.route(Catalog, Doc::of::<__path_list>(), list),
        // The grant is a ledger write, which keeps its answer itself.
        routes
            .route(Service, Doc::of::<__path_grant>(), grant)
            .with_idempotency(Idempotency::Ledger),
    ]
}

/// `{package_id}`
enum PackagePath {}

impl IntoParams for PackagePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_parameter("package_id", "package", "credits-100")]
    }
}

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
            credits: package.credits.to_string(),
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
async fn put(
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
async fn get(
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
async fn list(
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
async fn grant(
    State(billing): BillingState,
    Extension(principal): Extension<Principal>,
    ExistingAccount(account): ExistingAccount,
    axum::extract::Path((_, package)): axum::extract::Path<(String, String)>,
    write: Write,
) -> Result<Response, ApiError> {
    let package_id = record_id(&package, "package")?;
    let body: PackageGrantBody = extract::parse_optional_json(&write.body)?;
    let (package, settings) =
        crate::payments::checkout::buyable_package(&billing, &account, &package_id).await?;
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
    server::handlers::execute(billing.store.as_ref(), write, Op::Grant { account, grant }).await
}
