//! Plans: credits granted every period, how a period's leftovers are treated, a price, and
//! whether usage may run into billed overage.

use ledger::{ACCOUNT_CREDITS_MAX, Amount, Carry};
use serde::{Deserialize, Serialize};
use store::records::Kind;

use crate::domain::{Currency, Interval, Money, Unit, UnitPrice};
use crate::error::BillingError;

/// The longest plan, package or price id accepted, in bytes.
pub const ID_LEN_MAX: usize = 128;
/// The longest name or provider price id accepted, in bytes.
pub const NAME_LEN_MAX: usize = 256;

/// True for an id of a plan or package: 1 to 128 characters of
/// `A-Za-z0-9_.:-`, not only dots.
pub fn is_id(text: &str) -> bool {
    ledger::FeatureId::parse(text).is_ok() && text.len() <= ID_LEN_MAX
}

/// Money as Stripe writes it: `{"amount": <minor units>, "currency": "usd"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyJson {
    /// Minor units (cents), zero or more.
    #[serde(deserialize_with = "server::extract::whole")]
    pub amount: i64,
    /// Three lowercase letters.
    pub currency: CurrencyJson,
}

/// Money as a request writes it, for the description: minor units and a
/// currency.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct MoneyInput {
    /// Minor units (cents), zero or more.
    #[schema(minimum = 0)]
    amount: i64,
    /// Three lowercase letters (`usd`).
    #[schema(pattern = "^[a-z]{3}$", example = "usd")]
    currency: String,
}

/// Text shown to customers, for the description: one text, or texts by
/// locale (`{"en": "100 Credits", "zh": "100 积分"}`).
pub enum TextInput {}

impl utoipa::PartialSchema for TextInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use server::openapi::schema::shown_text;
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let text = || shown_text(1, crate::domain::TEXT_LEN_MAX);
        OneOfBuilder::new()
            .item(text())
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property_names(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")),
                    ))
                    .additional_properties(Some(AdditionalProperties::RefOr(
                        utoipa::openapi::RefOr::T(text().build().into()),
                    )))
                    .min_properties(Some(1))
                    .max_properties(Some(crate::domain::LOCALES_MAX)),
            )
            .description(Some(
                "One text, or texts by locale tag (`en`, `zh`, `pt-BR`; two tags may not differ \
                 only in case): each 1 to 1024 characters, none a control, bidirectional or \
                 zero-width character.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for TextInput {}

/// A currency code, kept as text in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CurrencyJson(pub Currency);

impl TryFrom<String> for CurrencyJson {
    type Error = crate::domain::DomainError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Currency::parse(&text).map(CurrencyJson)
    }
}

impl From<CurrencyJson> for String {
    fn from(c: CurrencyJson) -> String {
        c.0.as_str().to_owned()
    }
}

impl MoneyJson {
    /// Checks the amount.
    pub fn money(self) -> Result<Money, BillingError> {
        Ok(Money::new(self.amount, self.currency.0)?)
    }
}

/// What usage beyond the credits costs: a price per credit, and how far it
/// may go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overage {
    /// Minor units per credit, kept as a plain decimal (`"1"`, `"0.25"`).
    #[serde(with = "crate::stored::unit_price")]
    pub unit_price: UnitPrice,
    /// The currency of the price.
    pub currency: CurrencyJson,
    /// The most overage credits a period may run into; unlimited when absent.
    #[serde(
        default,
        with = "crate::stored::amount_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cap: Option<Amount>,
}

/// How a period's leftover plan credits are treated at its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// The new period's credits replace them.
    Reset,
    /// They carry into rollover credits, up to `rollover_cap` in all.
    Rollover,
}

/// A plan, as stored: a record of kind `plan`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// A display name.
    pub name: String,
    /// Credits granted every period, kept as a plain decimal.
    #[serde(with = "crate::stored::amount")]
    pub credits: Amount,
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// How many of them a period lasts.
    pub interval_count: u32,
    /// What a period's leftover plan credits become.
    pub allocation: Allocation,
    /// The most rollover credits an account may hold; unlimited when absent.
    #[serde(
        default,
        with = "crate::stored::amount_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub rollover_cap: Option<Amount>,
    /// Whether each period's credits expire at the period's end.
    pub credits_expire_at_period_end: bool,
    /// The price of a period; a free plan has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<MoneyJson>,
    /// The payment provider's price for it (Stripe's `price_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_price_id: Option<String>,
    /// Usage beyond the credits, billed; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage: Option<Overage>,
}

impl Kind for Plan {
    const KIND: &'static str = "plan";
}

impl Plan {
    /// Checks the fields together, as a plan is stored only when they hold.
    pub fn check(&self) -> Result<(), BillingError> {
        let bad = |why: &str| Err(BillingError::InvalidPlan(why.to_owned()));
        if self.name.trim().is_empty()
            || self.name.chars().count() > NAME_LEN_MAX
            || ledger::has_hidden_or_control(&self.name)
        {
            return bad(
                "name must be 1 to 256 bytes with no control, bidirectional or zero-width \
                 characters",
            );
        }
        if self.credits.is_negative() {
            return bad("credits must be a decimal amount of credits, zero or more");
        }
        Interval::new(Unit::parse(&self.interval)?, self.interval_count)?;
        match (self.allocation, &self.rollover_cap) {
            (Allocation::Reset, Some(_)) => return bad("rollover_cap needs allocation rollover"),
            (Allocation::Rollover, Some(cap)) if cap.is_negative() => {
                return bad("rollover_cap must be a decimal amount of credits, zero or more");
            }
            _ => {}
        }
        if self.allocation == Allocation::Rollover && self.credits_expire_at_period_end {
            return bad(
                "credits_expire_at_period_end cannot go with rollover, which carries the \
                 credits past the period's end",
            );
        }
        if let Some(price) = self.price {
            price.money()?;
        }
        if let Some(id) = &self.provider_price_id
            && (id.is_empty()
                || id.chars().count() > NAME_LEN_MAX
                || ledger::has_hidden_or_control(id))
        {
            return bad("provider_price_id must be 1 to 256 bytes with no control characters");
        }
        if let Some(overage) = &self.overage
            && overage.cap.is_some_and(|cap| cap.is_negative())
        {
            return bad("overage.cap must be a decimal amount of credits, zero or more");
        }
        Ok(())
    }

    /// Credits granted every period.
    pub fn credits(&self) -> Amount {
        self.credits
    }

    /// How long a period lasts.
    pub fn interval(&self) -> Interval {
        Interval::new(
            Unit::parse(&self.interval).expect("a stored plan's interval"),
            self.interval_count,
        )
        .expect("a stored plan's interval")
    }

    /// What the ledger does with a period's leftovers.
    pub fn carry(&self) -> Carry {
        match self.allocation {
            Allocation::Reset => Carry::Reset,
            Allocation::Rollover => Carry::Rollover {
                cap: self.rollover_cap.unwrap_or(ACCOUNT_CREDITS_MAX),
            },
        }
    }

    /// How far below zero an account on this plan may go: the overage cap,
    /// unlimited overage as far as the ledger allows, or nothing.
    pub fn overdraft_limit(&self) -> Amount {
        match &self.overage {
            None => Amount::ZERO,
            Some(overage) => overage.cap.unwrap_or(ACCOUNT_CREDITS_MAX),
        }
    }

    /// A plan that costs money.
    pub fn is_paid(&self) -> bool {
        self.price.is_some_and(|p| p.amount > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            name: "Pro".into(),
            credits: Amount::credits(10_000),
            interval: "month".into(),
            interval_count: 1,
            allocation: Allocation::Reset,
            rollover_cap: None,
            credits_expire_at_period_end: true,
            price: Some(MoneyJson {
                amount: 2000,
                currency: CurrencyJson(Currency::parse("usd").unwrap()),
            }),
            provider_price_id: None,
            overage: Some(Overage {
                unit_price: UnitPrice::parse("1").unwrap(),
                currency: CurrencyJson(Currency::parse("usd").unwrap()),
                cap: None,
            }),
        }
    }

    #[test]
    fn a_good_plan_passes_and_its_parts_read_back() {
        let plan = plan();
        plan.check().unwrap();
        assert_eq!(plan.credits(), Amount::credits(10_000));
        assert_eq!(plan.carry(), Carry::Reset);
        assert_eq!(plan.overdraft_limit(), ACCOUNT_CREDITS_MAX);
        assert!(plan.is_paid());
    }

    #[test]
    fn fields_that_do_not_go_together_are_refused() {
        let mut rollover = plan();
        rollover.allocation = Allocation::Rollover;
        assert!(matches!(
            rollover.check(),
            Err(BillingError::InvalidPlan(_))
        ));
        rollover.credits_expire_at_period_end = false;
        rollover.rollover_cap = Some(Amount::credits(5000));
        rollover.check().unwrap();
        assert_eq!(
            rollover.carry(),
            Carry::Rollover {
                cap: Amount::credits(5000)
            }
        );
        let mut reset_cap = plan();
        reset_cap.rollover_cap = Some(Amount::credits(1));
        assert!(reset_cap.check().is_err());
        let mut negative = plan();
        negative.credits = Amount::credits(-1);
        assert!(negative.check().is_err());
        let mut interval = plan();
        interval.interval = "fortnight".into();
        assert!(matches!(interval.check(), Err(BillingError::Domain(_))));
        let mut count = plan();
        count.interval_count = 0;
        assert!(matches!(count.check(), Err(BillingError::Domain(_))));
        let mut cap = plan();
        cap.overage.as_mut().unwrap().cap = Some(Amount::credits(-1));
        assert!(matches!(cap.check(), Err(BillingError::InvalidPlan(_))));
    }

    #[test]
    fn a_stored_plan_whose_amounts_do_not_read_is_an_error_naming_it() {
        let mut body = serde_json::to_value(plan()).unwrap();
        assert_eq!(body["credits"], "10000", "kept as the text the API shows");
        assert_eq!(body["overage"]["unit_price"], "1");
        body["credits"] = "ten thousand".into();
        let record = store::records::Record {
            kind: Plan::KIND.into(),
            id: "pro".into(),
            version: 1,
            body: body.to_string(),
            lookups: Vec::new(),
            created_at: ledger::Timestamp::from_secs(0),
            updated_at: ledger::Timestamp::from_secs(0),
        };
        let error = store::records::Doc::<Plan>::from_record(record).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("plan/pro") && text.contains("ten thousand"),
            "{text}"
        );
    }
}
