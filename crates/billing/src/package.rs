//! Credit packages: a number of credits sold at a price, named in one language or several.

use std::collections::BTreeMap;

use ledger::Amount;
use serde::{Deserialize, Serialize};
use store::records::{Kind, Lookup};

use crate::domain::LocalizedText;
use crate::error::BillingError;
use crate::plan::{MoneyJson, NAME_LEN_MAX};

/// Text in one language, or by locale (`{"en": "100 Credits", "zh": "100 积分"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TextJson {
    /// One text for everyone.
    One(String),
    /// Texts by locale tag.
    ByLocale(BTreeMap<String, String>),
}

impl TextJson {
    /// The text checked as localized text.
    pub fn localized(&self) -> Result<LocalizedText, BillingError> {
        Ok(match self {
            TextJson::One(text) => LocalizedText::one(text.clone())?,
            TextJson::ByLocale(texts) => LocalizedText::by_locale(texts.clone())?,
        })
    }
}

/// A package, as stored: a record of kind `package`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Its name.
    pub name: TextJson,
    /// What it is, if said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<TextJson>,
    /// Credits it grants, kept as a plain decimal.
    #[serde(with = "crate::stored::amount")]
    pub credits: Amount,
    /// Its price.
    pub price: MoneyJson,
    /// The payment provider's price for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_price_id: Option<String>,
    /// Whether it is for sale.
    pub active: bool,
}

impl Kind for Package {
    const KIND: &'static str = "package";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::ordered(
            "active",
            if self.active { "true" } else { "false" },
        )]
    }
}

impl Package {
    /// Checks the fields.
    pub fn check(&self) -> Result<(), BillingError> {
        self.name.localized()?;
        if let Some(description) = &self.description {
            description.localized()?;
        }
        if !self.credits.is_positive() {
            return Err(BillingError::InvalidPackage(
                "credits must be a decimal amount of credits above zero".into(),
            ));
        }
        self.price.money()?;
        if let Some(id) = &self.provider_price_id
            && (id.is_empty()
                || id.chars().count() > NAME_LEN_MAX
                || ledger::has_hidden_or_control(id))
        {
            return Err(BillingError::InvalidPackage(
                "provider_price_id must be 1 to 256 bytes with no control characters".into(),
            ));
        }
        Ok(())
    }

    /// Credits it grants.
    pub fn credits(&self) -> Amount {
        self.credits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;
    use crate::plan::CurrencyJson;

    #[test]
    fn a_package_takes_one_name_or_names_by_locale_and_checks_them() {
        let mut package = Package {
            name: TextJson::ByLocale(BTreeMap::from([
                ("en".into(), "100 Credits".into()),
                ("zh".into(), "100 积分".into()),
            ])),
            description: None,
            credits: Amount::credits(100),
            price: MoneyJson {
                amount: 500,
                currency: CurrencyJson(Currency::parse("usd").unwrap()),
            },
            provider_price_id: None,
            active: true,
        };
        package.check().unwrap();
        assert_eq!(
            package.name.localized().unwrap().pick(Some("zh")),
            "100 积分"
        );
        assert_eq!(package.lookups(), vec![Lookup::ordered("active", "true")]);
        package.credits = Amount::ZERO;
        assert!(matches!(
            package.check(),
            Err(BillingError::InvalidPackage(_))
        ));
        package.credits = Amount::credits(1);
        package.name = TextJson::One(String::new());
        assert!(matches!(package.check(), Err(BillingError::Domain(_))));
    }
}
