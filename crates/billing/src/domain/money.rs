//! Money as Stripe writes it (integer minor units of a lowercase currency), prices per credit, and what overage costs.

use std::fmt;

use ledger::decimal::{self, DecimalError, Form};
use ledger::{Amount, MICROS_PER_CREDIT};

use super::DomainError;

/// Stripe's zero-decimal currencies: their minor unit is the whole unit, so
/// 500 `jpy` is ¥500.
pub const ZERO_DECIMAL_CURRENCIES: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Stripe's three-decimal currencies: their minor unit is a thousandth, so
/// 1250 `kwd` is 1.250 dinars.
pub const THREE_DECIMAL_CURRENCIES: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];

/// A currency as Stripe writes it: three lowercase ASCII letters, such as `usd`.
///
/// Any three letters are accepted; whether the payment provider takes the
/// currency is the provider's to say.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Accepts exactly three lowercase ASCII letters.
    pub fn parse(text: &str) -> Result<Currency, DomainError> {
        match *text.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(u8::is_ascii_lowercase) => Ok(Currency([a, b, c])),
            _ => Err(DomainError::InvalidCurrency),
        }
    }

    /// The three letters.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).expect("a currency is ASCII")
    }

    /// How many decimal digits the minor unit has, as Stripe counts amounts:
    /// 0 for zero-decimal currencies, 3 for three-decimal ones, 2 for the rest.
    pub fn exponent(self) -> u32 {
        if ZERO_DECIMAL_CURRENCIES.contains(&self.as_str()) {
            0
        } else if THREE_DECIMAL_CURRENCIES.contains(&self.as_str()) {
            3
        } else {
            2
        }
    }

    /// An amount of minor units as a decimal in whole units, with exactly
    /// [`exponent`](Currency::exponent) fractional digits: 10000 `usd` is
    /// `100.00`, 500 `jpy` is `500`.
    pub fn format_minor(self, amount_minor: i64) -> String {
        let exponent = self.exponent();
        let scale = 10u64.pow(exponent);
        let magnitude = amount_minor.unsigned_abs();
        let sign = if amount_minor < 0 { "-" } else { "" };
        let whole = magnitude / scale;
        if exponent == 0 {
            format!("{sign}{whole}")
        } else {
            let fraction = magnitude % scale;
            let width = exponent as usize;
            format!("{sign}{whole}.{fraction:0width$}")
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// A price or a sum to pay: a count of the currency's minor units (cents for
/// `usd`), never negative, as Stripe writes `{"amount": 1000, "currency": "usd"}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    /// Money of `amount_minor` minor units, refused when negative.
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Money, DomainError> {
        if amount_minor < 0 {
            return Err(DomainError::InvalidMoney(
                "amount must be zero or more minor units",
            ));
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    /// The amount in minor units, zero or more.
    pub const fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    /// The currency.
    pub const fn currency(self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    /// Writes whole units and the currency: `100.00 usd`, `500 jpy`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.currency.format_minor(self.amount_minor),
            self.currency
        )
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

/// Millionths of a minor unit in one minor unit: a unit price carries six
/// fractional digits.
pub const MICROS_PER_MINOR: i64 = 1_000_000;

/// The highest unit price: a billion minor units per credit
/// (10,000,000.00 `usd`), far above any real price and far below overflow.
pub const UNIT_PRICE_MAX_MICROS: i64 = 1_000_000_000 * MICROS_PER_MINOR;

/// What one credit costs, in minor units of a currency, to six fractional
/// digits: `"1"` is a cent a credit in `usd`, `"0.25"` a quarter of a cent.
/// Held as an integer count of millionths of a minor unit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnitPrice(i64);

impl UnitPrice {
    /// Parses plain decimal text: digits, then optionally `.` and one to six
    /// digits (`"1"`, `"0.25"`, `"0.0001"`). Refuses signs, exponents,
    /// leading zeros, empty parts, whitespace, a seventh fractional digit and
    /// prices above [`UNIT_PRICE_MAX_MICROS`].
    pub fn parse(text: &str) -> Result<UnitPrice, DomainError> {
        let form = Form {
            fraction_digits_max: 6,
            ..Form::PLAIN
        };
        let too_large = DomainError::InvalidPrice("unit_price is at most 1000000000 minor units");
        let micros = decimal::parse_scaled(text, form, 6, 0).map_err(|e| match e {
            DecimalError::Syntax | DecimalError::Negative => DomainError::InvalidPrice(
                "unit_price must be a decimal string of minor units such as \"1\" or \"0.25\"",
            ),
            DecimalError::TooPrecise => {
                DomainError::InvalidPrice("unit_price has at most 6 fractional digits")
            }
            DecimalError::TooLarge => too_large.clone(),
        })?;
        i64::try_from(micros)
            .ok()
            .filter(|m| *m <= UNIT_PRICE_MAX_MICROS)
            .map(UnitPrice)
            .ok_or(too_large)
    }

    /// A price of `micros` millionths of a minor unit per credit, refused
    /// when negative or above [`UNIT_PRICE_MAX_MICROS`].
    pub fn from_micros(micros: i64) -> Result<UnitPrice, DomainError> {
        if !(0..=UNIT_PRICE_MAX_MICROS).contains(&micros) {
            return Err(DomainError::InvalidPrice(
                "unit_price must be from 0 to 1000000000 minor units",
            ));
        }
        Ok(UnitPrice(micros))
    }

    /// The price in millionths of a minor unit per credit.
    pub const fn micros(self) -> i64 {
        self.0
    }
}

impl fmt::Display for UnitPrice {
    /// Writes the shortest exact decimal: `1`, `0.25`, `0.0001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MICROS_PER_MINOR;
        let fraction = self.0 % MICROS_PER_MINOR;
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let fraction = format!("{fraction:06}");
            write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for UnitPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitPrice({self})")
    }
}

/// What `credits` of overage cost at `price`, in whole minor units, rounded
/// half up: 0.5 credit at one minor unit a credit is 1, 0.49 credit is 0.
///
/// Refuses negative credits, and a result that does not fit in an `i64`
/// (an overflow is an error, never a wrap).
pub fn overage_due(credits: Amount, price: UnitPrice) -> Result<i64, DomainError> {
    if credits.is_negative() {
        return Err(DomainError::InvalidAmount(
            "credits to bill must not be negative",
        ));
    }
    // Micro-credits times millionths of a minor unit per credit is in
    // 10^-12 minor units. Both factors fit in 63 bits, so the product fits in
    // an i128 with room to add the half used for rounding.
    let scale = i128::from(MICROS_PER_CREDIT) * i128::from(MICROS_PER_MINOR);
    let product = i128::from(credits.micros()) * i128::from(price.micros());
    let due = (product + scale / 2) / scale;
    i64::try_from(due).map_err(|_| DomainError::AmountOverflow)
}

/// The overage of a period: what the account owes beyond its balance,
/// but never more than it spent in the period, so that debt from before
/// the period (another plan's) is not billed as this one's.
pub fn period_overage(debt: Amount, used_in_period: Amount) -> Amount {
    if debt.is_positive() {
        debt.min(used_in_period.max(Amount::ZERO))
    } else {
        Amount::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periods_overage_is_its_debt_up_to_what_it_spent() {
        let c = Amount::credits;
        assert_eq!(period_overage(c(50), c(150)), c(50));
        assert_eq!(period_overage(c(50), c(20)), c(20));
        assert_eq!(period_overage(c(50), Amount::ZERO), Amount::ZERO);
        assert_eq!(period_overage(Amount::ZERO, c(150)), Amount::ZERO);
        assert_eq!(period_overage(c(50), c(-5)), Amount::ZERO);
    }
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("usd").unwrap()
    }

    fn price(text: &str) -> UnitPrice {
        UnitPrice::parse(text).unwrap()
    }

    fn credits(text: &str) -> Amount {
        Amount::parse_decimal(text).unwrap()
    }

    #[test]
    fn a_currency_is_three_lowercase_letters() {
        assert_eq!(usd().as_str(), "usd");
        assert_eq!(usd().to_string(), "usd");
        for text in [
            "", "us", "usdd", "USD", "Usd", "u$d", "us1", " usd", "üs", "ü",
        ] {
            assert_eq!(
                Currency::parse(text),
                Err(DomainError::InvalidCurrency),
                "{text:?}"
            );
        }
    }

    #[test]
    fn zero_and_three_decimal_currencies_have_their_own_exponent() {
        for code in ZERO_DECIMAL_CURRENCIES {
            assert_eq!(Currency::parse(code).unwrap().exponent(), 0, "{code}");
        }
        for code in THREE_DECIMAL_CURRENCIES {
            assert_eq!(Currency::parse(code).unwrap().exponent(), 3, "{code}");
        }
        for code in ["usd", "eur", "gbp", "cny", "isk", "huf", "twd"] {
            assert_eq!(Currency::parse(code).unwrap().exponent(), 2, "{code}");
        }
    }

    #[test]
    fn money_is_written_in_whole_units_with_the_currencys_digits() {
        let money = |amount, code| Money::new(amount, Currency::parse(code).unwrap()).unwrap();
        assert_eq!(money(10_000, "usd").to_string(), "100.00 usd");
        assert_eq!(money(5, "usd").to_string(), "0.05 usd");
        assert_eq!(money(0, "eur").to_string(), "0.00 eur");
        assert_eq!(money(500, "jpy").to_string(), "500 jpy");
        assert_eq!(money(1_250, "kwd").to_string(), "1.250 kwd");
        assert_eq!(usd().format_minor(-1_999), "-19.99");
        assert_eq!(usd().format_minor(i64::MIN), "-92233720368547758.08");
    }

    #[test]
    fn negative_money_is_refused() {
        assert_eq!(
            Money::new(-1, usd()).map_err(|e| e.code()),
            Err("invalid_money")
        );
        assert_eq!(Money::new(0, usd()).map(Money::amount_minor), Ok(0));
    }

    #[test]
    fn unit_prices_parse_from_plain_decimals_into_millionths() {
        assert_eq!(price("1").micros(), 1_000_000);
        assert_eq!(price("0.25").micros(), 250_000);
        assert_eq!(price("0.0001").micros(), 100);
        assert_eq!(price("0.000001").micros(), 1);
        assert_eq!(price("0").micros(), 0);
        assert_eq!(price("2.500000").micros(), 2_500_000);
        assert_eq!(price("1000000000").micros(), UNIT_PRICE_MAX_MICROS);
    }

    #[test]
    fn malformed_negative_too_precise_or_too_large_prices_are_refused() {
        for text in [
            "",
            "-1",
            "+1",
            "1e2",
            "1E-2",
            ".5",
            "1.",
            "01",
            "00.5",
            "1..2",
            "1.2.3",
            " 1",
            "1 ",
            "1,5",
            "0x1",
            "NaN",
            "inf",
            "½",
            "1.0000001",
            "0.0000001",
            "1000000000.000001",
            "1000000001",
            "99999999999999999999999",
        ] {
            assert_eq!(
                UnitPrice::parse(text).map_err(|e| e.code()),
                Err("invalid_price"),
                "{text:?}"
            );
        }
        assert!(UnitPrice::from_micros(-1).is_err());
        assert!(UnitPrice::from_micros(UNIT_PRICE_MAX_MICROS + 1).is_err());
    }

    #[test]
    fn a_unit_price_is_written_as_its_shortest_decimal() {
        assert_eq!(price("1").to_string(), "1");
        assert_eq!(price("0.25").to_string(), "0.25");
        assert_eq!(price("0.000100").to_string(), "0.0001");
        assert_eq!(price("12.000000").to_string(), "12");
        assert_eq!(price("0").to_string(), "0");
    }

    #[test]
    fn ten_thousand_credits_at_one_cent_each_cost_one_hundred_dollars() {
        let due = overage_due(credits("10000"), price("1")).unwrap();
        assert_eq!(due, 10_000);
        assert_eq!(Money::new(due, usd()).unwrap().to_string(), "100.00 usd");
    }

    #[test]
    fn overage_rounds_half_a_minor_unit_up_and_less_than_half_down() {
        assert_eq!(overage_due(credits("0.5"), price("1")), Ok(1));
        assert_eq!(overage_due(credits("0.49"), price("1")), Ok(0));
        assert_eq!(overage_due(credits("0.499999"), price("1")), Ok(0));
        assert_eq!(overage_due(credits("3"), price("0.25")), Ok(1));
        assert_eq!(overage_due(credits("2"), price("0.25")), Ok(1));
        assert_eq!(overage_due(credits("1"), price("0.25")), Ok(0));
        assert_eq!(
            overage_due(credits("0.000001"), price("1000000000")),
            Ok(1_000)
        );
        assert_eq!(overage_due(Amount::ZERO, price("1000000000")), Ok(0));
        let millionth = UnitPrice::from_micros(1).unwrap();
        let half = Amount::from_micros(500_000_000_000);
        assert_eq!(overage_due(half, millionth), Ok(1));
        let below_half = Amount::from_micros(499_999_999_999);
        assert_eq!(overage_due(below_half, millionth), Ok(0));
    }

    #[test]
    fn negative_credits_cannot_be_billed() {
        assert_eq!(
            overage_due(credits("-1"), price("1")).map_err(|e| e.code()),
            Err("invalid_amount")
        );
    }

    #[test]
    fn an_overage_too_large_for_an_i64_is_an_overflow_not_a_wrap() {
        let most = Amount::from_micros(i64::MAX);
        let max_price = UnitPrice::from_micros(UNIT_PRICE_MAX_MICROS).unwrap();
        assert_eq!(
            overage_due(most, max_price),
            Err(DomainError::AmountOverflow)
        );
        // The largest amount the ledger allows, 10^12 credits, still fits at
        // up to about 9.2 million minor units a credit.
        let ledger_max = Amount::from_micros(ledger::AMOUNT_MAX_MICROS);
        assert_eq!(overage_due(ledger_max, price("1")), Ok(1_000_000_000_000));
        assert_eq!(overage_due(most, UnitPrice::default()), Ok(0));
    }

    /// A billion credits: at the highest price their cost still fits in an i64.
    const CREDITS_MAX_MICROS: i64 = 1_000_000_000 * MICROS_PER_CREDIT;

    proptest! {
        #[test]
        fn a_unit_price_written_then_parsed_is_the_same_price(micros in 0..=UNIT_PRICE_MAX_MICROS) {
            let p = UnitPrice::from_micros(micros).unwrap();
            prop_assert_eq!(UnitPrice::parse(&p.to_string()), Ok(p));
        }

        #[test]
        fn overage_is_the_exact_product_rounded_half_up(
            // Many cases land on a half minor unit or just below one, at a
            // price of one minor unit or one millionth of one a credit,
            // where rounding decides.
            credit_micros in prop_oneof![
                0..=1_000_000_000_000i64,
                (0..1_000_000i64).prop_map(|n| n * 1_000_000 + 500_000),
                (0..1_000_000i64).prop_map(|n| n * 1_000_000 + 499_999),
                (0..1_000_000i64).prop_map(|n| n * 1_000_000_000_000 + 500_000_000_000),
                (0..1_000_000i64).prop_map(|n| n * 1_000_000_000_000 + 499_999_999_999),
            ],
            price_micros in prop_oneof![0..=1_000_000_000i64, Just(1_000_000), Just(1)],
        ) {
            // The exact cost in 10^-12 minor units, split into whole minor
            // units and the rest, then rounded by comparing the rest with a half.
            let exact = u128::try_from(credit_micros).unwrap() * u128::try_from(price_micros).unwrap();
            let (whole, rest) = (exact / 1_000_000_000_000, exact % 1_000_000_000_000);
            let expected = whole + u128::from(2 * rest >= 1_000_000_000_000);
            let due = overage_due(
                Amount::from_micros(credit_micros),
                UnitPrice::from_micros(price_micros).unwrap(),
            )
            .unwrap();
            prop_assert_eq!(u128::try_from(due).unwrap(), expected);
        }

        #[test]
        fn more_credits_or_a_higher_price_never_cost_less(
            a in 0..=CREDITS_MAX_MICROS,
            b in 0..=CREDITS_MAX_MICROS,
            p in 0..=UNIT_PRICE_MAX_MICROS,
            q in 0..=UNIT_PRICE_MAX_MICROS,
        ) {
            let due = |credits: i64, micros: i64| {
                overage_due(Amount::from_micros(credits), UnitPrice::from_micros(micros).unwrap())
            };
            let (low, high) = (a.min(b), a.max(b));
            let (cheap, dear) = (p.min(q), p.max(q));
            prop_assert!(due(low, cheap)? <= due(high, cheap)?);
            prop_assert!(due(low, cheap)? <= due(low, dear)?);
        }
    }
}
