//! How figures and instants are shown on the pages.

use ledger::{Amount, MICROS_PER_CREDIT, Timestamp};

/// Credits with thousands separators and at most two decimals, rounded
/// toward zero (`1,234.5`, `-12`, `0.01`); the exact figure is in the API.
pub fn credits(amount: Amount) -> String {
    let micros = amount.micros();
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    let per = MICROS_PER_CREDIT.unsigned_abs();
    let whole = micros / per;
    let cents = (micros % per) / (per / 100);
    let mut text = format!("{sign}{}", grouped(whole));
    if cents > 0 {
        let decimals = format!("{cents:02}");
        text.push('.');
        text.push_str(decimals.trim_end_matches('0'));
    }
    text
}

/// Credits with a `+` before a positive figure, for a change of balance.
pub fn signed_credits(amount: Amount) -> String {
    if amount.is_positive() {
        format!("+{}", credits(amount))
    } else {
        credits(amount)
    }
}

/// Money in minor units of `currency` (`usd` 500 → `$5.00`, `eur` 500 →
/// `5.00 EUR`).
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    let figure = format!("{}.{:02}", grouped(minor / 100), minor % 100);
    if currency.eq_ignore_ascii_case("usd") {
        format!("{sign}${figure}")
    } else {
        format!("{sign}{figure} {}", currency.to_ascii_uppercase())
    }
}

/// A date and time in UTC to the minute: `2026-12-07 14:03`.
pub fn instant(at: Timestamp) -> String {
    let civil = at.civil();
    let minutes = civil.micros_of_day / 60_000_000;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        civil.year,
        civil.month,
        civil.day,
        minutes / 60,
        minutes % 60
    )
}

/// A date in UTC: `2026-12-07`.
pub fn date(at: Timestamp) -> String {
    let civil = at.civil();
    format!("{:04}-{:02}-{:02}", civil.year, civil.month, civil.day)
}

/// A figure of credits as the API writes it (`-12.5`, `0.000001`) in
/// micro-credits. Unlike a request's amount it has no upper bound but
/// i64's: a balance sums many lots and may exceed what one grant holds.
pub fn micros_of(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || fraction.len() > 6 || !is_digits(whole) || !is_digits(fraction) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    let micros = whole
        .checked_mul(ledger::MICROS_PER_CREDIT)?
        .checked_add(fraction)?;
    Some(if negative { -micros } else { micros })
}

/// Dollars written in a form (`12`, `12.5`, `12.50`) as cents; none for
/// anything else, more than two decimals, or a figure too large.
pub fn cents_of(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 12
        || fraction.len() > 2
        || !digits(whole)
        || !digits(fraction)
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(fraction)
}

/// Digits in groups of three, separated by commas.
fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_are_grouped_by_thousands_with_at_most_two_decimals() {
        assert_eq!(credits(Amount::credits(1_234_567)), "1,234,567");
        assert_eq!(credits(Amount::from_micros(12_500_000)), "12.5");
        assert_eq!(credits(Amount::from_micros(10_000)), "0.01");
        assert_eq!(credits(Amount::from_micros(9_999)), "0");
        assert_eq!(credits(Amount::credits(-1500)), "-1,500");
        assert_eq!(credits(Amount::ZERO), "0");
    }

    #[test]
    fn a_change_of_balance_shows_its_sign() {
        assert_eq!(signed_credits(Amount::credits(5)), "+5");
        assert_eq!(signed_credits(Amount::credits(-5)), "-5");
        assert_eq!(signed_credits(Amount::ZERO), "0");
    }

    #[test]
    fn dollars_have_a_sign_and_other_currencies_their_code() {
        assert_eq!(money(500, "usd"), "$5.00");
        assert_eq!(money(123_456, "usd"), "$1,234.56");
        assert_eq!(money(5, "eur"), "0.05 EUR");
    }

    #[test]
    fn the_apis_figures_read_as_micro_credits_beyond_one_grants_bound() {
        assert_eq!(micros_of("12.5"), Some(12_500_000));
        assert_eq!(micros_of("-0.000001"), Some(-1));
        assert_eq!(micros_of("2000000000000"), Some(2_000_000_000_000_000_000));
        assert_eq!(micros_of("10000000000000"), None);
        assert_eq!(micros_of("1.0000001"), None);
        assert_eq!(micros_of("1e3"), None);
        assert_eq!(micros_of(""), None);
    }

    #[test]
    fn dollars_in_a_form_read_as_cents() {
        assert_eq!(cents_of("12"), Some(1200));
        assert_eq!(cents_of("12.5"), Some(1250));
        assert_eq!(cents_of(" 0.05 "), Some(5));
        assert_eq!(cents_of("12.345"), None);
        assert_eq!(cents_of("-5"), None);
        assert_eq!(cents_of("1e3"), None);
        assert_eq!(cents_of(""), None);
        assert_eq!(cents_of(".5"), None);
    }

    #[test]
    fn instants_are_shown_to_the_minute_in_utc() {
        let at = Timestamp::parse_rfc3339("2026-12-07T14:03:59Z").unwrap();
        assert_eq!(instant(at), "2026-12-07 14:03");
        assert_eq!(date(at), "2026-12-07");
    }
}
