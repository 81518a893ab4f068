//! Features: things sold by the unit at a price in credits.

use crate::{AMOUNT_MAX_MICROS, Amount, FeatureId, MICROS_PER_CREDIT, Reject, Timestamp};

/// A priced feature, such as `small-model-tokens` at 0.1 credits per unit,
/// or a free one (0 per unit) whose use is recorded and costs nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    /// The feature's id.
    pub id: FeatureId,
    /// Credits per unit; zero or more.
    pub credits_per_unit: Amount,
    /// When the price was last set.
    pub updated_at: Timestamp,
}

impl Feature {
    /// Checks the price: it must not be negative. Zero makes a free
    /// feature, tracked without moving credits.
    pub fn new(
        id: FeatureId,
        credits_per_unit: Amount,
        updated_at: Timestamp,
    ) -> Result<Feature, Reject> {
        if credits_per_unit.is_negative() {
            return Err(Reject::InvalidAmount(
                "credits_per_unit must not be negative",
            ));
        }
        Ok(Feature {
            id,
            credits_per_unit,
            updated_at,
        })
    }

    /// The price of `quantity` units, rounded up to the next micro-credit so
    /// that usage is never given away by rounding.
    pub fn price(&self, quantity: Amount) -> Result<Amount, Reject> {
        if !quantity.is_positive() {
            return Err(Reject::InvalidAmount("quantity must be positive"));
        }
        // quantity and price are both in millionths, so their product is in
        // millionths of a micro-credit.
        let product = i128::from(quantity.micros()) * i128::from(self.credits_per_unit.micros());
        let scale = i128::from(MICROS_PER_CREDIT);
        let micros = (product + scale - 1) / scale;
        if micros > i128::from(AMOUNT_MAX_MICROS) {
            return Err(Reject::Overflow);
        }
        Ok(Amount::from_micros(micros as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(price: &str) -> Feature {
        Feature::new(
            FeatureId::parse("tokens").unwrap(),
            Amount::parse(price).unwrap(),
            Timestamp::EPOCH,
        )
        .unwrap()
    }

    #[test]
    fn price_is_quantity_times_unit_price() {
        let f = feature("0.1");
        assert_eq!(f.price(Amount::credits(1500)), Ok(Amount::credits(150)));
        assert_eq!(
            f.price(Amount::parse("2.5").unwrap()),
            Ok(Amount::parse("0.25").unwrap())
        );
    }

    #[test]
    fn fractions_of_a_micro_credit_round_up() {
        let f = feature("0.000001");
        assert_eq!(
            f.price(Amount::parse("0.5").unwrap()),
            Ok(Amount::from_micros(1))
        );
        let f = feature("0.3");
        assert_eq!(
            f.price(Amount::parse("0.000001").unwrap()),
            Ok(Amount::from_micros(1))
        );
    }

    #[test]
    fn a_negative_price_and_a_zero_or_negative_quantity_are_rejected() {
        let id = FeatureId::parse("x").unwrap();
        assert!(Feature::new(id, Amount::credits(-1), Timestamp::EPOCH).is_err());
        assert!(feature("1").price(Amount::ZERO).is_err());
        assert!(feature("1").price(Amount::credits(-2)).is_err());
    }

    #[test]
    fn a_free_feature_prices_any_quantity_at_zero() {
        let free = feature("0");
        assert_eq!(free.price(Amount::credits(1_000_000)), Ok(Amount::ZERO));
        assert!(free.price(Amount::ZERO).is_err());
    }

    #[test]
    fn price_beyond_the_amount_range_is_an_overflow() {
        let f = feature("1000000");
        assert_eq!(f.price(Amount::credits(10_000_000)), Err(Reject::Overflow));
    }
}
