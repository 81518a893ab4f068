//! Why a billing rule refuses its input: one enum of rejections, each with a stable code.

use std::fmt;

/// Why the billing domain refused a value or a computation. Nothing changes
/// when one is returned.
///
/// The codes are part of the API: never rename or reuse one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// A billing interval's unit is unknown or its count is out of range.
    InvalidInterval(&'static str),
    /// A currency is not three lowercase ASCII letters.
    InvalidCurrency,
    /// A sum of money is negative where a price or a payment is meant.
    InvalidMoney(&'static str),
    /// A unit price is not plain decimal text of minor units, or is out of range.
    InvalidPrice(&'static str),
    /// An amount of credits is not allowed where it appears (negative overage).
    InvalidAmount(&'static str),
    /// A result would not fit in the integer that holds it.
    AmountOverflow,
    /// A locale tag is malformed, or two differ only in case.
    InvalidLocale(&'static str),
    /// A text shown to customers is empty, too long, holds control
    /// characters, or has no locale or too many.
    InvalidText(&'static str),
}

impl DomainError {
    /// The stable, machine-readable code.
    pub const fn code(&self) -> &'static str {
        match self {
            DomainError::InvalidInterval(_) => "invalid_interval",
            DomainError::InvalidCurrency => "invalid_currency",
            DomainError::InvalidMoney(_) => "invalid_money",
            DomainError::InvalidPrice(_) => "invalid_price",
            DomainError::InvalidAmount(_) => "invalid_amount",
            DomainError::AmountOverflow => "amount_overflow",
            DomainError::InvalidLocale(_) => "invalid_locale",
            DomainError::InvalidText(_) => "invalid_text",
        }
    }

    /// One error of every kind, so that a list of codes (an API description,
    /// a test) can be built from the enum and cannot miss one.
    pub fn every() -> Vec<DomainError> {
        vec![
            DomainError::InvalidInterval(""),
            DomainError::InvalidCurrency,
            DomainError::InvalidMoney(""),
            DomainError::InvalidPrice(""),
            DomainError::InvalidAmount(""),
            DomainError::AmountOverflow,
            DomainError::InvalidLocale(""),
            DomainError::InvalidText(""),
        ]
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::InvalidInterval(why)
            | DomainError::InvalidMoney(why)
            | DomainError::InvalidPrice(why)
            | DomainError::InvalidAmount(why)
            | DomainError::InvalidLocale(why)
            | DomainError::InvalidText(why) => f.write_str(why),
            DomainError::InvalidCurrency => {
                f.write_str("currency must be three lowercase letters, such as usd")
            }
            DomainError::AmountOverflow => f.write_str("the result is too large to represent"),
        }
    }
}

impl std::error::Error for DomainError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_error_is_listed_once() {
        // A new variant fails to compile here until it is numbered, and then
        // fails the test until `every` lists it.
        let kind = |error: &DomainError| match error {
            DomainError::InvalidInterval(_) => 0,
            DomainError::InvalidCurrency => 1,
            DomainError::InvalidMoney(_) => 2,
            DomainError::InvalidPrice(_) => 3,
            DomainError::InvalidAmount(_) => 4,
            DomainError::AmountOverflow => 5,
            DomainError::InvalidLocale(_) => 6,
            DomainError::InvalidText(_) => 7,
        };
        let mut kinds: Vec<usize> = DomainError::every().iter().map(kind).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, (0..kinds.len()).collect::<Vec<_>>());
    }

    #[test]
    fn codes_are_distinct_snake_case_words() {
        let every = DomainError::every();
        for (i, error) in every.iter().enumerate() {
            let code = error.code();
            assert!(
                !code.is_empty()
                    && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !code.starts_with('_')
                    && !code.ends_with('_'),
                "{code:?}"
            );
            assert!(
                every[..i].iter().all(|other| other.code() != code),
                "{code} is used twice"
            );
        }
    }
}
