//! Exact decimals read from text: JSON number text (`1.5e-07`) or decimal strings, never a float.

use std::fmt;

/// Why a piece of text is not a decimal this module can hold exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecimalError {
    /// Not a decimal number (`abc`, `1.2.3`, `--1`).
    Syntax,
    /// Below zero.
    Negative,
    /// More fractional digits than the unit holds, not all zero.
    TooPrecise,
    /// Larger than the unit holds.
    TooLarge,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::Syntax => "not a decimal number",
            DecimalError::Negative => "below zero",
            DecimalError::TooPrecise => "more fractional digits than can be held exactly",
            DecimalError::TooLarge => "too large",
        })
    }
}

/// The largest exponent shift worth trying: beyond it every value is zero
/// or too large.
const EXPONENT_MAX: i32 = 64;

/// Parses non-negative decimal `text` (digits, an optional fraction, an
/// optional exponent as JSON writes it), multiplies it by `10^shift`, and
/// returns it as an integer count of `10^-scale` units, exactly.
///
/// `parse_scaled("1.5e-07", 12, 6)` reads a price per token as picodollars
/// per million tokens: `150_000_000_000`. A value that would need more than
/// `scale` fractional digits is [`DecimalError::TooPrecise`], never rounded.
pub fn parse_scaled(text: &str, scale: u32, shift: i32) -> Result<u128, DecimalError> {
    let text = text.trim();
    let (text, negative) = match text.strip_prefix('-') {
        Some(rest) => (rest, true),
        None => (text.strip_prefix('+').unwrap_or(text), false),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => {
            let exponent: i32 = text[at + 1..].parse().map_err(|_| DecimalError::Syntax)?;
            (&text[..at], exponent)
        }
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(DecimalError::Syntax);
    }
    // The value is digits × 10^(exponent + shift − fraction digits); in
    // units of 10^-scale that is digits × 10^power.
    let digits = whole.bytes().chain(fraction.bytes());
    let fraction_len = i32::try_from(fraction.len()).map_err(|_| DecimalError::TooPrecise)?;
    let power = i64::from(exponent) + i64::from(shift) - i64::from(fraction_len) + i64::from(scale);
    let mut value: u128 = 0;
    let mut dropped_nonzero = false;
    let significant: Vec<u8> = digits.map(|b| b - b'0').collect();
    if power >= 0 {
        if power > i64::from(EXPONENT_MAX) && significant.iter().any(|d| *d != 0) {
            return Err(DecimalError::TooLarge);
        }
        for d in &significant {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(*d)))
                .ok_or(DecimalError::TooLarge)?;
        }
        for _ in 0..power.min(i64::from(EXPONENT_MAX)) {
            if value == 0 {
                break;
            }
            value = value.checked_mul(10).ok_or(DecimalError::TooLarge)?;
        }
    } else {
        // The last `-power` digits fall below the unit: they must all be zero.
        let keep = significant.len() as i64 + power;
        for (i, d) in significant.iter().enumerate() {
            if (i as i64) < keep {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u128::from(*d)))
                    .ok_or(DecimalError::TooLarge)?;
            } else if *d != 0 {
                dropped_nonzero = true;
            }
        }
    }
    if dropped_nonzero {
        return Err(DecimalError::TooPrecise);
    }
    if negative && value != 0 {
        return Err(DecimalError::Negative);
    }
    Ok(value)
}

/// Writes `units` of `10^-scale` as a decimal, with no trailing zeros
/// after the point: `format_scaled(1_250_000, 6)` is `1.25`.
pub fn format_scaled(units: u128, scale: u32) -> String {
    let divisor = 10u128.pow(scale);
    let whole = units / divisor;
    let fraction = units % divisor;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = scale as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponent_forms_are_read_exactly() {
        assert_eq!(parse_scaled("1.5e-07", 12, 6), Ok(150_000_000_000));
        assert_eq!(parse_scaled("2.5e-06", 12, 6), Ok(2_500_000_000_000));
        assert_eq!(parse_scaled("1e-05", 12, 6), Ok(10_000_000_000_000));
        assert_eq!(parse_scaled("3.125e-07", 12, 6), Ok(312_500_000_000));
        assert_eq!(parse_scaled("1E+2", 0, 0), Ok(100));
        assert_eq!(parse_scaled("0.0", 12, 6), Ok(0));
        assert_eq!(parse_scaled("0", 12, 6), Ok(0));
        assert_eq!(parse_scaled("-0", 12, 0), Ok(0));
    }

    #[test]
    fn plain_decimals_are_read_at_their_scale() {
        assert_eq!(parse_scaled("3", 12, 0), Ok(3_000_000_000_000));
        assert_eq!(parse_scaled("0.075", 12, 0), Ok(75_000_000_000));
        assert_eq!(parse_scaled("12.5", 4, 0), Ok(125_000));
        assert_eq!(parse_scaled("1.10", 2, 0), Ok(110));
        assert_eq!(parse_scaled(".5", 1, 0), Ok(5));
        assert_eq!(parse_scaled("5.", 1, 0), Ok(50));
    }

    #[test]
    fn what_cannot_be_held_exactly_is_refused_not_rounded() {
        assert_eq!(parse_scaled("1.23456", 4, 0), Err(DecimalError::TooPrecise));
        assert_eq!(parse_scaled("1e-13", 12, 0), Err(DecimalError::TooPrecise));
        assert_eq!(parse_scaled("1e40", 12, 0), Err(DecimalError::TooLarge));
        assert_eq!(parse_scaled("1e999999", 12, 0), Err(DecimalError::TooLarge));
        assert_eq!(parse_scaled("0e999999", 12, 0), Ok(0));
        assert_eq!(
            parse_scaled("1e-999999", 12, 0),
            Err(DecimalError::TooPrecise)
        );
        assert_eq!(parse_scaled("-1", 12, 0), Err(DecimalError::Negative));
        for bad in [
            "", ".", "abc", "1.2.3", "--1", "1e", "1e1.5", "0x10", "1 2", "NaN",
        ] {
            assert_eq!(parse_scaled(bad, 12, 0), Err(DecimalError::Syntax), "{bad}");
        }
    }

    #[test]
    fn trailing_zeros_beyond_the_scale_are_exact() {
        assert_eq!(parse_scaled("1.500000000000000", 2, 0), Ok(150));
    }

    #[test]
    fn decimals_print_without_trailing_zeros() {
        assert_eq!(format_scaled(1_250_000, 6), "1.25");
        assert_eq!(format_scaled(3_000_000, 6), "3");
        assert_eq!(format_scaled(5, 6), "0.000005");
        assert_eq!(format_scaled(0, 12), "0");
    }

    proptest::proptest! {
        #[test]
        fn printing_then_reading_gives_the_same_units(units in 0u128..10u128.pow(24)) {
            proptest::prop_assert_eq!(parse_scaled(&format_scaled(units, 12), 12, 0), Ok(units));
        }
    }
}
