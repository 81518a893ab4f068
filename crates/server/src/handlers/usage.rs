//! Usage: consume credits by amount or by feature, or check whether a consume would succeed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{Amount, FeatureId, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use store::{Charge, Op};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, PathAccount, ReadBody, Sign, Write};
use crate::openapi::schema::{self, AccountPath, IdempotencyKey};
use crate::render::{self, Consumed, Decimal};

/// What to charge: either `amount`, or `feature` together with `quantity`;
/// never both forms.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Usage)]
struct UsageBody<'a> {
    /// Credits to charge; greater than zero.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = Option<schema::PositiveAmount>)]
    amount: Option<&'a RawValue>,
    /// A priced feature; the charge is `quantity` times its
    /// `credits_per_unit`, rounded up to the next 0.000001 credit.
    #[serde(default)]
    #[schema(value_type = Option<schema::FeatureId>)]
    feature: Option<String>,
    /// Units of `feature`; greater than zero.
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = Option<schema::PositiveAmount>)]
    quantity: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "extract::raw")]
    #[schema(value_type = schema::MetadataInput)]
    metadata: Option<&'a RawValue>,
    /// Only on a consume: a check takes none.
    #[serde(default)]
    #[schema(value_type = Option<schema::ExternalId>)]
    external_id: Option<String>,
}

/// The body of a consume or a check as the description states it: an
/// amount, or a feature with a quantity, never both; a check takes no
/// `external_id`.
fn usage_schema(consume: bool) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder};
    use utoipa::openapi::{Ref, RefOr};
    let shape = |charge: &[(&str, &str, &str)]| {
        let mut object = ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::Object)
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::<
                utoipa::openapi::schema::Schema,
            >::FreeForm(false)));
        for (name, schema, description) in charge {
            let mut reference = Ref::from_schema_name(*schema);
            reference.description = (*description).to_owned();
            object = object
                .property(*name, RefOr::Ref(reference))
                .required(*name);
        }
        object = object.property(
            "metadata",
            RefOr::Ref(Ref::from_schema_name("MetadataInput")),
        );
        if consume {
            object = object.property(
                "external_id",
                utoipa::openapi::schema::OneOfBuilder::new()
                    .item(Ref::from_schema_name("ExternalId"))
                    .item(ObjectBuilder::new().schema_type(utoipa::openapi::Type::Null)),
            );
        }
        object
    };
    OneOfBuilder::new()
        .item(shape(&[(
            "amount",
            "PositiveAmount",
            "Credits to charge; greater than zero.",
        )]))
        .item(shape(&[
            (
                "feature",
                "FeatureId",
                "A priced feature; the charge is `quantity` times its `credits_per_unit`, \
                 rounded up to the next 0.000001 credit (a free feature's is zero).",
            ),
            (
                "quantity",
                "PositiveAmount",
                "Units of `feature`; greater than zero.",
            ),
        ]))
        .description(Some(if consume {
            "What to charge: `amount`, or `feature` with `quantity`; never both forms."
        } else {
            "The body a consume would send, without `external_id`."
        }))
        .into()
}

/// A consume's body, as the description states it.
pub enum ConsumeBody {}

impl utoipa::PartialSchema for ConsumeBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        usage_schema(true)
    }
}

impl ToSchema for ConsumeBody {}

/// A check's body, as the description states it.
pub enum CheckBody {}

impl utoipa::PartialSchema for CheckBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        usage_schema(false)
    }
}

impl ToSchema for CheckBody {}

/// Reads `{"amount"}` or `{"feature", "quantity"}`, never both.
fn charge(body: &UsageBody<'_>) -> Result<(Charge, Metadata), ApiError> {
    let charge = match (body.amount, &body.feature, body.quantity) {
        (Some(amount), None, None) => {
            Charge::Amount(extract::amount(amount, "amount", Sign::Positive)?)
        }
        (None, Some(feature), Some(quantity)) => Charge::Feature {
            feature: FeatureId::parse(feature).map_err(|_| {
                ApiError::InvalidId("feature ids are 1 to 128 characters of A-Za-z0-9_.:-".into())
            })?,
            quantity: extract::amount(quantity, "quantity", Sign::Positive)?,
        },
        _ => {
            return Err(ApiError::InvalidRequest(
                "send either `amount`, or `feature` with `quantity`".into(),
            ));
        }
    };
    Ok((charge, extract::metadata(body.metadata)?))
}

/// Consume credits
///
/// Spends credits lot by lot in burn-down order: lowest priority number
/// first, then earliest expiry (lots without expiry last), then oldest
/// grant. Only lots that are effective, unexpired and not voided are spent,
/// and what they cannot cover becomes debt, provided the amount stays
/// within the available balance plus the account's overdraft limit; beyond
/// that the consume is refused with 402 and nothing changes.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/consume",
    tag = "usage",
    operation_id = "consume",
    params(AccountPath, IdempotencyKey),
    request_body = ConsumeBody,
    responses(
        (status = 200, description = "The usage transaction and the balance right after it; \
            for an `external_id` already used with the same request, the first consume's \
            transaction and the balance now.", body = Consumed),
        (status = 400, description = "`malformed_json`, `invalid_request` (neither or both of \
            `amount` and `feature`/`quantity`, unknown or mistyped field), `invalid_id` \
            (account id, feature id or `external_id`), `invalid_amount`, `invalid_metadata`, \
            `amount_overflow` (the priced amount or the debt would exceed the ledger's range)."),
        (status = 402, description = "`insufficient_credits`: the amount is more than the \
            available balance plus the overdraft limit; the body carries `required` and \
            `available`."),
        (status = 404, description = "`feature_not_found` or `account_not_found`."),
        (status = 409, description = "`external_id_conflict`: the account already used this \
            `external_id` for a different write."),
    ),
)]
pub async fn consume(
    State(state): State<Arc<AppState>>,
    PathAccount(account): PathAccount,
    write: Write,
) -> Result<Response, ApiError> {
    let body: UsageBody = extract::parse_json(&write.body)?;
    let (charge, metadata) = charge(&body)?;
    let op = Op::Consume {
        account,
        charge,
        metadata,
        external_id: extract::external_id(body.external_id)?,
    };
    super::execute(state.store.as_ref(), write, op).await
}

/// Whether a consume would succeed now.
#[derive(Serialize, ToSchema)]
#[schema(as = Check)]
struct CheckView {
    /// Whether a consume of `required` would succeed now (it may use the
    /// overdraft limit).
    allowed: bool,
    /// The amount asked about; for a feature, the priced amount.
    required: Decimal,
    /// The available balance, without the overdraft limit.
    available: Decimal,
    /// What of `required` the consume would take beyond the available
    /// balance: overage on a plan that allows it (the overdraft limit),
    /// owed as debt until the period's end bills it; zero when the
    /// balance covers it or when it is not allowed.
    overage: Decimal,
}

/// Check whether a consume would succeed
///
/// Answers whether a consume with the same body would succeed now, without
/// writing anything. `allowed` accounts for the overdraft limit, while
/// `available` is the available balance alone.
///
/// A check writes nothing, so it takes no `external_id` (refused as
/// `invalid_request`) and no Idempotency-Key (the header is not read).
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/check",
    tag = "usage",
    operation_id = "checkConsume",
    params(AccountPath),
    request_body(content = CheckBody, description = "The body a consume would send, without \
        `external_id`."),
    responses(
        (status = 200, description = "The answer.", body = CheckView),
        (status = 400, description = "`malformed_json`, `invalid_request` (neither or both \
            forms, an `external_id`, unknown or mistyped field), `invalid_id`, \
            `invalid_amount`, `invalid_metadata`, `amount_overflow`."),
        (status = 404, description = "`feature_not_found` or `account_not_found`."),
    ),
)]
pub async fn check(
    State(state): State<Arc<AppState>>,
    PathAccount(account): PathAccount,
    ReadBody(body): ReadBody,
) -> Result<Response, ApiError> {
    let body: UsageBody = extract::parse_json(&body)?;
    if body.external_id.is_some() {
        return Err(ApiError::InvalidRequest(
            "a check changes nothing, so it takes no external_id".into(),
        ));
    }
    let (charge, _) = charge(&body)?;
    let amount: Amount = match charge {
        Charge::Amount(amount) => amount,
        Charge::Feature { feature, quantity } => state
            .store
            .feature(feature)
            .await?
            .ok_or(ApiError::Rejected(ledger::Reject::FeatureNotFound))?
            .price(quantity)?,
    };
    let now = state.clock.now();
    let standing = state
        .store
        .standing(account, now)
        .await?
        .ok_or(ApiError::Rejected(ledger::Reject::AccountNotFound))?;
    let check = standing
        .check(amount, now)
        .ok_or_else(|| ApiError::Internal("a standing that does not cover its instant".into()))??;
    Ok(render::json(
        StatusCode::OK,
        &CheckView {
            allowed: check.allowed,
            required: Decimal(check.required),
            available: Decimal(check.available),
            overage: Decimal(if check.allowed {
                let covered = check.available.max(Amount::ZERO).min(check.required);
                Amount::from_micros(check.required.micros() - covered.micros())
            } else {
                Amount::ZERO
            }),
        },
    ))
}
