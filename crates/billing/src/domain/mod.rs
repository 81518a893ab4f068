//! The pure rules of billing: periods and anchors, money and overage
//! arithmetic, localized text. No IO, no clock: time is passed in.

mod error;
mod period;

pub use error::DomainError;
pub use period::{
    INTERVAL_YEARS_MAX, Interval, Period, Periods, Unit, period, period_at, periods_between,
};
