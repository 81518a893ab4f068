//! How billing's records hold amounts and prices: as the exact decimal text the API shows
//! (`"12.5"`), read back into their types when a record is read, so a record that reads holds
//! valid amounts and one that does not is an error naming it.

use ledger::Amount;
use serde::de::Error;
use serde::{Deserialize, Deserializer, Serializer};

use crate::domain::UnitPrice;

/// An amount of credits as decimal text: `#[serde(with = "stored::amount")]`.
pub mod amount {
    use super::*;

    /// Writes the amount's shortest exact decimal.
    pub fn serialize<S: Serializer>(amount: &Amount, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(amount)
    }

    /// Reads plain decimal text into an amount, or fails naming the text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        let text = String::deserialize(deserializer)?;
        Amount::parse_decimal(&text)
            .map_err(|e| D::Error::custom(format!("{text:?} is not an amount of credits: {e}")))
    }
}

/// An optional amount of credits as decimal text:
/// `#[serde(default, with = "stored::amount_opt")]`.
pub mod amount_opt {
    use super::*;

    /// Writes the amount's shortest exact decimal, or null.
    pub fn serialize<S: Serializer>(
        amount: &Option<Amount>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match amount {
            Some(amount) => serializer.collect_str(amount),
            None => serializer.serialize_none(),
        }
    }

    /// Reads plain decimal text or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Amount>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                Amount::parse_decimal(&text).map_err(|e| {
                    D::Error::custom(format!("{text:?} is not an amount of credits: {e}"))
                })
            })
            .transpose()
    }
}

/// A unit price as decimal text: `#[serde(with = "stored::unit_price")]`.
pub mod unit_price {
    use super::*;

    /// Writes the price's shortest exact decimal.
    pub fn serialize<S: Serializer>(price: &UnitPrice, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(price)
    }

    /// Reads plain decimal text into a unit price, or fails naming the text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<UnitPrice, D::Error> {
        let text = String::deserialize(deserializer)?;
        UnitPrice::parse(&text)
            .map_err(|e| D::Error::custom(format!("{text:?} is not a unit price: {e:?}")))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Held {
        #[serde(with = "amount")]
        credits: Amount,
        #[serde(default, with = "amount_opt", skip_serializing_if = "Option::is_none")]
        cap: Option<Amount>,
        #[serde(with = "unit_price")]
        price: UnitPrice,
    }

    #[test]
    fn amounts_are_kept_as_the_text_the_api_shows() {
        let held = Held {
            credits: Amount::from_micros(12_500_000),
            cap: None,
            price: UnitPrice::parse("0.25").unwrap(),
        };
        let text = serde_json::to_string(&held).unwrap();
        assert_eq!(text, r#"{"credits":"12.5","price":"0.25"}"#);
        assert_eq!(serde_json::from_str::<Held>(&text).unwrap(), held);
        let capped: Held =
            serde_json::from_str(r#"{"credits":"1","cap":"3","price":"1"}"#).unwrap();
        assert_eq!(capped.cap, Some(Amount::credits(3)));
    }

    #[test]
    fn a_stored_amount_that_does_not_read_is_an_error_naming_it() {
        let error = serde_json::from_str::<Held>(r#"{"credits":"lots","price":"1"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"lots\" is not an amount of credits"),
            "{error}"
        );
        let error = serde_json::from_str::<Held>(r#"{"credits":"1","price":"-1"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"-1\" is not a unit price"), "{error}");
    }
}
