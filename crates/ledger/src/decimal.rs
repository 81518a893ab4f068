//! Exact decimals read from text into a whole count of a fixed unit — the one parser behind
//! credits, money, model prices and percentages — and written back without trailing zeros.

use std::fmt;

/// Why a piece of text is not a decimal that can be held exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecimalError {
    /// Not a decimal number in the form the caller reads (`abc`, `1.2.3`,
    /// `--1`, an exponent where none is read).
    Syntax,
    /// Below zero where only zero or more is read.
    Negative,
    /// More fractional digits than the unit holds, not all zero (or more
    /// than the form allows at all).
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

/// The written forms a caller reads: how strict the text must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Form {
    /// A leading `-` is read (a negative value is refused later by callers
    /// of [`parse_scaled`]); otherwise it is a syntax error.
    pub minus: bool,
    /// A leading `+` is read.
    pub plus: bool,
    /// An exponent as JSON writes it (`1e3`, `2.5E-1`) is read.
    pub exponent: bool,
    /// The most digits an exponent may have: more is [`DecimalError::TooLarge`].
    pub exponent_digits_max: usize,
    /// Leading zeros (`007`) and empty parts (`.5`, `5.`) are read.
    pub loose: bool,
    /// Whitespace around the text is ignored.
    pub trim: bool,
    /// The most fractional digits written, zero or not: more is
    /// [`DecimalError::TooPrecise`].
    pub fraction_digits_max: usize,
}

impl Form {
    /// Plain decimal text only: digits, then optionally `.` and digits; no
    /// sign, no exponent, no leading zeros, no empty parts, no whitespace.
    /// Money written as text takes this form.
    pub const PLAIN: Form = Form {
        minus: false,
        plus: false,
        exponent: false,
        exponent_digits_max: 0,
        loose: false,
        trim: false,
        fraction_digits_max: usize::MAX,
    };

    /// An amount of credits: plain decimal text with an optional leading
    /// `-`, and JSON's exponent forms when the value is exact.
    pub const CREDITS: Form = Form {
        minus: true,
        exponent: true,
        exponent_digits_max: 4,
        ..Form::PLAIN
    };

    /// A number as JSON or a price list writes it: a sign, an exponent,
    /// leading zeros, empty parts and surrounding whitespace are all read.
    pub const JSON: Form = Form {
        minus: true,
        plus: true,
        exponent: true,
        exponent_digits_max: usize::MAX,
        loose: true,
        trim: true,
        fraction_digits_max: usize::MAX,
    };
}

/// A decimal as written, read into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written<'a> {
    negative: bool,
    whole: &'a str,
    fraction: &'a str,
    exponent: i64,
}

/// Reads `text` in `form` into its parts.
fn read(text: &str, form: Form) -> Result<Written<'_>, DecimalError> {
    let text = if form.trim { text.trim() } else { text };
    let (text, negative) = match text.as_bytes().first() {
        Some(b'-') if form.minus => (&text[1..], true),
        Some(b'+') if form.plus => (&text[1..], false),
        _ => (text, false),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) if form.exponent => (&text[..at], Some(&text[at + 1..])),
        Some(_) => return Err(DecimalError::Syntax),
        None => (text, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let empty_part = whole.is_empty() || fraction.is_some_and(str::is_empty);
    if !digits(whole)
        || !fraction.is_none_or(digits)
        || (whole.is_empty() && fraction.is_none_or(str::is_empty))
        || (!form.loose && (empty_part || (whole.len() > 1 && whole.starts_with('0'))))
    {
        return Err(DecimalError::Syntax);
    }
    let fraction = fraction.unwrap_or("");
    let exponent = match exponent {
        None => 0,
        Some(written) => {
            let unsigned = written.strip_prefix(['+', '-']).unwrap_or(written);
            if unsigned.is_empty() || !digits(unsigned) {
                return Err(DecimalError::Syntax);
            }
            if unsigned.len() > form.exponent_digits_max {
                return Err(DecimalError::TooLarge);
            }
            // Beyond eighteen digits every value is zero or too large.
            let magnitude: i64 = unsigned[unsigned.len().saturating_sub(18)..]
                .parse()
                .map_err(|_| DecimalError::Syntax)?;
            let magnitude = if unsigned.len() > 18 {
                i64::MAX / 4
            } else {
                magnitude
            };
            if written.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    if fraction.len() > form.fraction_digits_max {
        return Err(DecimalError::TooPrecise);
    }
    Ok(Written {
        negative,
        whole,
        fraction,
        exponent,
    })
}

/// Reads decimal `text` in `form`, multiplies it by `10^shift`, and returns
/// whether it is below zero and its magnitude as a whole count of
/// `10^-scale` units, exactly. A value that would need more than `scale`
/// fractional digits is [`DecimalError::TooPrecise`], never rounded; one
/// whose magnitude does not fit 128 bits is [`DecimalError::TooLarge`].
pub fn parse_signed(
    text: &str,
    form: Form,
    scale: u32,
    shift: i32,
) -> Result<(bool, u128), DecimalError> {
    let written = read(text, form)?;
    let digits: Vec<u8> = written
        .whole
        .bytes()
        .chain(written.fraction.bytes())
        .map(|b| b - b'0')
        .collect();
    // The value is digits × 10^(exponent + shift − fraction digits); in
    // units of 10^-scale that is digits × 10^power.
    let power = written
        .exponent
        .saturating_add(i64::from(shift))
        .saturating_sub(i64::try_from(written.fraction.len()).unwrap_or(i64::MAX))
        .saturating_add(i64::from(scale));
    // Digits below the unit must all be zero: that is decided before any
    // magnitude, so an inexact value is refused as such however large.
    let kept = if power >= 0 {
        digits.len()
    } else {
        let below = usize::try_from(power.unsigned_abs()).unwrap_or(usize::MAX);
        let kept = digits.len().saturating_sub(below);
        if digits[kept..].iter().any(|d| *d != 0) {
            return Err(DecimalError::TooPrecise);
        }
        kept
    };
    let mut value: u128 = 0;
    for d in &digits[..kept] {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(*d)))
            .ok_or(DecimalError::TooLarge)?;
    }
    if value != 0 && power > 0 {
        // 10^39 is past what 128 bits hold.
        let times = u32::try_from(power).ok().filter(|p| *p < 39);
        value = times
            .and_then(|p| value.checked_mul(10u128.pow(p)))
            .ok_or(DecimalError::TooLarge)?;
    }
    Ok((written.negative && value != 0, value))
}

/// Reads non-negative decimal `text` in `form` (zero written `-0` is zero),
/// multiplied by `10^shift`, as a whole count of `10^-scale` units, exactly.
///
/// `parse_scaled("1.5e-07", Form::JSON, 12, 6)` reads a price per token as
/// picodollars per million tokens: `150_000_000_000`.
pub fn parse_scaled(text: &str, form: Form, scale: u32, shift: i32) -> Result<u128, DecimalError> {
    match parse_signed(text, form, scale, shift)? {
        (true, _) => Err(DecimalError::Negative),
        (false, value) => Ok(value),
    }
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

    fn json(text: &str, scale: u32, shift: i32) -> Result<u128, DecimalError> {
        parse_scaled(text, Form::JSON, scale, shift)
    }

    #[test]
    fn exponent_forms_are_read_exactly() {
        assert_eq!(json("1.5e-07", 12, 6), Ok(150_000_000_000));
        assert_eq!(json("2.5e-06", 12, 6), Ok(2_500_000_000_000));
        assert_eq!(json("1e-05", 12, 6), Ok(10_000_000_000_000));
        assert_eq!(json("3.125e-07", 12, 6), Ok(312_500_000_000));
        assert_eq!(json("1E+2", 0, 0), Ok(100));
        assert_eq!(json("0.0", 12, 6), Ok(0));
        assert_eq!(json("0", 12, 6), Ok(0));
        assert_eq!(json("-0", 12, 0), Ok(0));
    }

    #[test]
    fn plain_decimals_are_read_at_their_scale() {
        assert_eq!(json("3", 12, 0), Ok(3_000_000_000_000));
        assert_eq!(json("0.075", 12, 0), Ok(75_000_000_000));
        assert_eq!(json("12.5", 4, 0), Ok(125_000));
        assert_eq!(json("1.10", 2, 0), Ok(110));
        assert_eq!(json(".5", 1, 0), Ok(5));
        assert_eq!(json("5.", 1, 0), Ok(50));
        assert_eq!(json(" 007 ", 0, 0), Ok(7));
    }

    #[test]
    fn what_cannot_be_held_exactly_is_refused_not_rounded() {
        assert_eq!(json("1.23456", 4, 0), Err(DecimalError::TooPrecise));
        assert_eq!(json("1e-13", 12, 0), Err(DecimalError::TooPrecise));
        assert_eq!(json("1e40", 12, 0), Err(DecimalError::TooLarge));
        assert_eq!(json("1e999999", 12, 0), Err(DecimalError::TooLarge));
        assert_eq!(json("0e999999", 12, 0), Ok(0));
        assert_eq!(json("1e-999999", 12, 0), Err(DecimalError::TooPrecise));
        assert_eq!(json("-1", 12, 0), Err(DecimalError::Negative));
        for bad in [
            "", ".", "abc", "1.2.3", "--1", "1e", "1e1.5", "0x10", "1 2", "NaN", "+-1",
        ] {
            assert_eq!(json(bad, 12, 0), Err(DecimalError::Syntax), "{bad}");
        }
    }

    #[test]
    fn an_inexact_value_is_too_precise_however_large() {
        let huge = format!("{}.1234567", "9".repeat(50));
        assert_eq!(json(&huge, 6, 0), Err(DecimalError::TooPrecise));
        assert_eq!(json(&"9".repeat(50), 6, 0), Err(DecimalError::TooLarge));
    }

    #[test]
    fn trailing_zeros_beyond_the_scale_are_exact() {
        assert_eq!(json("1.500000000000000", 2, 0), Ok(150));
    }

    #[test]
    fn the_plain_form_reads_digits_and_a_point_only() {
        let plain = |text| parse_scaled(text, Form::PLAIN, 6, 0);
        assert_eq!(plain("0.25"), Ok(250_000));
        assert_eq!(plain("1"), Ok(1_000_000));
        for bad in ["-1", "+1", "1e3", "01", ".5", "5.", " 1", "1 ", ""] {
            assert_eq!(plain(bad), Err(DecimalError::Syntax), "{bad}");
        }
        let at_most_six = Form {
            fraction_digits_max: 6,
            ..Form::PLAIN
        };
        assert_eq!(
            parse_scaled("1.0000000", at_most_six, 6, 0),
            Err(DecimalError::TooPrecise)
        );
    }

    #[test]
    fn the_credits_form_reads_a_minus_and_short_exponents() {
        let credits = |text| parse_signed(text, Form::CREDITS, 6, 0);
        assert_eq!(credits("-3"), Ok((true, 3_000_000)));
        assert_eq!(credits("-0"), Ok((false, 0)));
        assert_eq!(credits("2.5E-1"), Ok((false, 250_000)));
        assert_eq!(credits("1e+3"), Ok((false, 1_000_000_000)));
        assert_eq!(credits("1e99999"), Err(DecimalError::TooLarge));
        assert_eq!(credits("1e-99999"), Err(DecimalError::TooLarge));
        for bad in ["+1", "01", ".5", "1e", "1e+", " 1"] {
            assert_eq!(credits(bad), Err(DecimalError::Syntax), "{bad}");
        }
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
            proptest::prop_assert_eq!(json(&format_scaled(units, 12), 12, 0), Ok(units));
        }
    }
}
