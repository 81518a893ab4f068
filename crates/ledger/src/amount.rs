//! Credit amounts: signed integer micro-credits with checked arithmetic and exact decimal text.

use std::fmt;

use crate::decimal::{self, DecimalError, Form};

/// Micro-credits in one credit: amounts carry six fractional digits.
pub const MICROS_PER_CREDIT: i64 = 1_000_000;

/// The largest magnitude any single amount may have: 10^12 credits.
pub const AMOUNT_MAX_MICROS: i64 = 1_000_000_000_000 * MICROS_PER_CREDIT;

/// A number of credits, held as signed micro-credits.
///
/// Arithmetic is checked: every operation that could overflow returns `None`
/// instead of wrapping, so a caller turns it into a rejection.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

/// Why a piece of text is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a decimal number at all.
    Syntax,
    /// More than six fractional digits that are not zero.
    TooPrecise,
    /// Larger in magnitude than 10^12 credits.
    TooLarge,
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmountError::Syntax => "not a decimal number",
            AmountError::TooPrecise => "more than 6 fractional digits",
            AmountError::TooLarge => "larger than 10^12 credits",
        })
    }
}

impl Amount {
    /// No credits.
    pub const ZERO: Amount = Amount(0);

    /// Wraps a count of micro-credits.
    pub const fn from_micros(micros: i64) -> Amount {
        Amount(micros)
    }

    /// Whole credits, for tests and constants.
    pub const fn credits(credits: i64) -> Amount {
        Amount(credits * MICROS_PER_CREDIT)
    }

    /// The amount in micro-credits.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// True when strictly above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// True when strictly below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// True when zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `-self`, or `None` for the one value without a negation.
    pub fn checked_neg(self) -> Option<Amount> {
        self.0.checked_neg().map(Amount)
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Amount) -> Amount {
        Amount(self.0.min(other.0))
    }

    /// Sums amounts, or `None` on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(items: I) -> Option<Amount> {
        items
            .into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }

    /// Parses plain decimal notation only: `12.5`, `-3`, `0.000001`, never an
    /// exponent. Money written as text takes this form.
    pub fn parse_decimal(text: &str) -> Result<Amount, AmountError> {
        Amount::parse_in(
            text,
            Form {
                exponent: false,
                ..Form::CREDITS
            },
        )
    }

    /// Parses exact decimal text: `12.5`, `-3`, `0.000001`, and JSON exponent
    /// forms such as `1e3` or `2.5E-1` when the value is exact in micro-credits.
    ///
    /// Rejects signs other than a leading `-`, leading zeros, empty parts,
    /// whitespace, more than six significant fractional digits, and magnitudes
    /// above 10^12 credits.
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        Amount::parse_in(text, Form::CREDITS)
    }

    /// Parses `text` written in `form`, in micro-credits.
    fn parse_in(text: &str, form: Form) -> Result<Amount, AmountError> {
        let (negative, micros) = decimal::parse_signed(text, form, 6, 0).map_err(|e| match e {
            DecimalError::Syntax | DecimalError::Negative => AmountError::Syntax,
            DecimalError::TooPrecise => AmountError::TooPrecise,
            DecimalError::TooLarge => AmountError::TooLarge,
        })?;
        let micros = i64::try_from(micros)
            .ok()
            .filter(|m| *m <= AMOUNT_MAX_MICROS)
            .ok_or(AmountError::TooLarge)?;
        Ok(Amount(if negative { -micros } else { micros }))
    }
}

impl fmt::Display for Amount {
    /// Writes the shortest exact decimal: `12.5`, `-3`, `0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.unsigned_abs();
        let whole = magnitude / MICROS_PER_CREDIT as u64;
        let frac = magnitude % MICROS_PER_CREDIT as u64;
        if self.0 < 0 {
            f.write_str("-")?;
        }
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let frac = format!("{frac:06}");
            write!(f, "{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_text_parses_to_micros() {
        assert_eq!(Amount::parse("12.5"), Ok(Amount::from_micros(12_500_000)));
        assert_eq!(Amount::parse("0.000001"), Ok(Amount::from_micros(1)));
        assert_eq!(Amount::parse("0"), Ok(Amount::ZERO));
        assert_eq!(Amount::parse("-3"), Ok(Amount::credits(-3)));
        assert_eq!(Amount::parse("100.000000"), Ok(Amount::credits(100)));
        assert_eq!(Amount::parse("0.1"), Ok(Amount::from_micros(100_000)));
    }

    #[test]
    fn plain_decimal_refuses_exponents_that_parse_accepts() {
        assert_eq!(Amount::parse("1e3"), Ok(Amount::credits(1000)));
        assert_eq!(Amount::parse_decimal("1e3"), Err(AmountError::Syntax));
        assert_eq!(Amount::parse_decimal("2.5E-1"), Err(AmountError::Syntax));
        assert_eq!(
            Amount::parse_decimal("12.5"),
            Ok(Amount::from_micros(12_500_000))
        );
    }

    #[test]
    fn exponent_forms_parse_when_exact() {
        assert_eq!(Amount::parse("1e3"), Ok(Amount::credits(1000)));
        assert_eq!(Amount::parse("2.5E-1"), Ok(Amount::from_micros(250_000)));
        assert_eq!(Amount::parse("1e-6"), Ok(Amount::from_micros(1)));
        assert_eq!(Amount::parse("1.5e+2"), Ok(Amount::credits(150)));
        assert_eq!(Amount::parse("1000e-9"), Ok(Amount::from_micros(1)));
        assert_eq!(Amount::parse("1e-7"), Err(AmountError::TooPrecise));
    }

    #[test]
    fn garbage_is_a_syntax_error() {
        for text in [
            "", "-", "abc", "1.", ".5", "01", "1..2", " 1", "1 ", "+1", "1e", "1e+", "0x10", "1,5",
            "NaN", "inf", "--1", "1.2.3",
        ] {
            assert_eq!(Amount::parse(text), Err(AmountError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn seventh_fractional_digit_is_too_precise() {
        assert_eq!(Amount::parse("0.0000001"), Err(AmountError::TooPrecise));
        assert_eq!(Amount::parse("1.1234567"), Err(AmountError::TooPrecise));
        // Trailing zeros past the sixth digit change nothing, so they are exact.
        assert_eq!(
            Amount::parse("1.1234560"),
            Ok(Amount::from_micros(1_123_456))
        );
    }

    #[test]
    fn more_than_a_trillion_credits_is_too_large() {
        assert_eq!(
            Amount::parse("1000000000000"),
            Ok(Amount::from_micros(AMOUNT_MAX_MICROS))
        );
        assert_eq!(
            Amount::parse("1000000000000.000001"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(Amount::parse("1e13"), Err(AmountError::TooLarge));
        assert_eq!(
            Amount::parse("99999999999999999999999999"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(Amount::parse("1e99999"), Err(AmountError::TooLarge));
    }

    #[test]
    fn display_is_the_shortest_exact_decimal() {
        assert_eq!(Amount::from_micros(12_500_000).to_string(), "12.5");
        assert_eq!(Amount::from_micros(1).to_string(), "0.000001");
        assert_eq!(Amount::credits(-3).to_string(), "-3");
        assert_eq!(Amount::from_micros(-1_500_000).to_string(), "-1.5");
        assert_eq!(Amount::ZERO.to_string(), "0");
    }

    #[test]
    fn overflow_is_none_not_a_wrap() {
        let big = Amount::from_micros(i64::MAX);
        assert_eq!(big.checked_add(Amount::from_micros(1)), None);
        assert_eq!(
            Amount::from_micros(i64::MIN).checked_sub(Amount::from_micros(1)),
            None
        );
        assert_eq!(Amount::from_micros(i64::MIN).checked_neg(), None);
        assert_eq!(Amount::checked_sum([big, big]), None);
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(micros in -AMOUNT_MAX_MICROS..=AMOUNT_MAX_MICROS) {
            let amount = Amount::from_micros(micros);
            prop_assert_eq!(Amount::parse(&amount.to_string()), Ok(amount));
        }

        /// Fuzzing of amount parsing: any text is an amount within the
        /// bounds, whose own text reads back the same, or refused; never a
        /// panic, a wrap or a rounding. `PROPTEST_CASES=100000 cargo test -p
        /// ledger fuzz_` runs it longer.
        #[test]
        fn fuzz_any_text_is_an_exact_amount_or_refused(
            text in prop_oneof![
                "[-+]?[0-9]{0,22}(\\.[0-9]{0,9})?([eE][-+]?[0-9]{0,4})?",
                "[-+0-9.eE_, ]{0,30}",
                ".{0,30}",
            ]
        ) {
            let parsed = [Amount::parse(&text), Amount::parse_decimal(&text)];
            for amount in parsed.into_iter().flatten() {
                prop_assert!(amount.micros().abs() <= AMOUNT_MAX_MICROS, "{}", text);
                prop_assert_eq!(Amount::parse(&amount.to_string()), Ok(amount));
                prop_assert_eq!(Amount::parse_decimal(&amount.to_string()), Ok(amount));
            }
            // A plain decimal is read exactly: as many micros as its digits say.
            if let Ok(amount) = Amount::parse_decimal(&text) {
                let (whole, fraction) = text.trim_start_matches(['-', '+']).split_once('.').unwrap_or((text.trim_start_matches(['-', '+']), ""));
                // Digits past the sixth are zeros, or it would have been refused.
                let fraction: String = format!("{fraction:0<6}").chars().take(6).collect();
                let micros = whole.parse::<i128>().unwrap_or(0) * 1_000_000
                    + fraction.parse::<i128>().unwrap_or(0);
                let sign = if text.starts_with('-') { -1 } else { 1 };
                prop_assert_eq!(i128::from(amount.micros()), sign * micros, "{}", text);
            }
        }
    }
}
