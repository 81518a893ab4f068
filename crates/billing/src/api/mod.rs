//! Billing's routes, one module per resource: credit settings, plans, packages,
//! subscriptions, the daily reward and overage charges, each with its handlers, views and
//! request types.

mod daily_reward;
mod overage_charges;
mod packages;
mod plans;
mod settings;
mod subscriptions;

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use server::error::ApiError;
use server::extract::{self, Sign};
use server::routes::Routes;
use server::{Principal, Route};
use store::Refused;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::Billing;
use crate::domain::Money;
use crate::plan::is_id;

type BillingState = State<Arc<Billing>>;

/// Billing's routes, answered with its state.
pub fn routes(billing: &Arc<Billing>) -> Vec<Route> {
    let routes = Routes::with(billing.clone());
    [
        settings::routes,
        plans::routes,
        packages::routes,
        subscriptions::routes,
        daily_reward::routes,
        overage_charges::routes,
    ]
    .iter()
    .flat_map(|resource| resource(&routes))
    .collect()
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

/// A plan's or a package's id as a path or a body names it: 400
/// `invalid_id` when it is not one.
pub(crate) fn record_id(text: &str, what: &str) -> Result<String, ApiError> {
    if is_id(text) {
        Ok(text.to_owned())
    } else {
        Err(ApiError::InvalidId(format!(
            "{what} ids are 1 to 128 characters of A-Za-z0-9_.:-, not only dots"
        )))
    }
}

/// A write the store refused, as the API answers it.
fn refused(refused: Refused) -> ApiError {
    ApiError::from(refused)
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

/// An optional amount of zero or more credits, as a request writes it.
fn plain_amount(raw: Option<&RawValue>, field: &str) -> Result<Option<ledger::Amount>, ApiError> {
    raw.map(|raw| extract::amount(raw, field, Sign::NotNegative))
        .transpose()
}

/// Money as the API shows it: minor units and a currency.
fn money_view(money: Money) -> Value {
    serde_json::json!({ "amount": money.amount_minor(), "currency": money.currency().as_str() })
}
