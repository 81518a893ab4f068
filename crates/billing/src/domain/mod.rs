//! The pure rules of billing: periods and anchors, money and overage
//! arithmetic, localized text, payment webhooks' signatures. No IO, no
//! clock: time is passed in.

pub mod checkout;
mod error;
mod money;
mod period;
pub mod refund;
pub mod returns;
pub mod signature;
pub mod subscription;
mod text;
pub mod topup;

pub use error::DomainError;
pub use money::{
    Currency, MICROS_PER_MINOR, Money, THREE_DECIMAL_CURRENCIES, UNIT_PRICE_MAX_MICROS, UnitPrice,
    ZERO_DECIMAL_CURRENCIES, overage_due, period_overage,
};
pub use period::{
    INTERVAL_YEARS_MAX, Interval, Period, Periods, Unit, period, period_at, periods_between,
};
pub use text::{
    FALLBACK_LOCALE, LOCALES_MAX, LocalizedText, TEXT_LEN_MAX, checkout_locale, is_locale,
    preferred_locale,
};
