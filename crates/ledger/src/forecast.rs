//! When an account's credits run out at the rate it spent them lately.

use std::num::NonZeroU32;

use crate::{Amount, Timestamp};

/// The window a forecast measures spending over, in days: a week, so that
/// weekday and weekend use both count.
pub const FORECAST_WINDOW_DAYS: NonZeroU32 = NonZeroU32::new(7).unwrap();

const MICROS_PER_DAY: i128 = 86_400 * 1_000_000;

/// How fast an account spent its credits over a recent window, and when its
/// available credits run out if it goes on at that rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forecast {
    /// The days the spending was measured over.
    pub window_days: NonZeroU32,
    /// The credits spent a day on average over the window (net of refunds),
    /// rounded down to the micro-credit; zero when the window's refunds
    /// handed back at least as much as was spent in it.
    pub daily_rate: Amount,
    /// When the available credits run out at `daily_rate`, rounded down to
    /// the microsecond: `now` when nothing is available any more; `None`
    /// when nothing was spent (they never run out at that rate) or when the
    /// instant is past the range of a timestamp.
    pub runs_out_at: Option<Timestamp>,
}

impl Forecast {
    /// The forecast at `now` for an account with `available` credits that
    /// spent `spent_in_window` (usage net of refunds) over the last
    /// `window_days`. Integer arithmetic only: the run-out instant is
    /// computed from the exact spend, not from the rounded daily rate.
    pub fn of(
        available: Amount,
        spent_in_window: Amount,
        window_days: NonZeroU32,
        now: Timestamp,
    ) -> Forecast {
        let spent = spent_in_window.micros().max(0);
        let days = i64::from(window_days.get());
        let daily_rate = Amount::from_micros(spent / days);
        let runs_out_at = if spent == 0 {
            None
        } else if !available.is_positive() {
            Some(now)
        } else {
            // available / (spent / window) in microseconds. Every factor
            // fits an i64, so their product fits an i128 without overflow.
            let window_micros = i128::from(days) * MICROS_PER_DAY;
            let left_micros = i128::from(available.micros()) * window_micros / i128::from(spent);
            i64::try_from(left_micros)
                .ok()
                .and_then(|left| now.checked_add_micros(left))
        };
        Forecast {
            window_days,
            daily_rate,
            runs_out_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
    const DAY_SECS: i64 = 86_400;

    fn week(available: i64, spent: i64) -> Forecast {
        Forecast::of(
            Amount::credits(available),
            Amount::credits(spent),
            FORECAST_WINDOW_DAYS,
            NOW,
        )
    }

    #[test]
    fn nothing_spent_means_no_run_out() {
        let forecast = week(100, 0);
        assert_eq!(forecast.daily_rate, Amount::ZERO);
        assert_eq!(forecast.runs_out_at, None);
    }

    #[test]
    fn credits_run_out_after_available_divided_by_the_daily_rate() {
        let forecast = week(30, 70);
        assert_eq!(forecast.daily_rate, Amount::credits(10));
        assert_eq!(forecast.runs_out_at, Some(NOW.plus_secs(3 * DAY_SECS)));
    }

    #[test]
    fn the_daily_rate_is_rounded_down_but_the_run_out_uses_the_exact_spend() {
        let forecast = Forecast::of(
            Amount::from_micros(1),
            Amount::from_micros(10),
            FORECAST_WINDOW_DAYS,
            NOW,
        );
        assert_eq!(forecast.daily_rate, Amount::from_micros(1));
        // 1/10 of a week: 60,480 seconds.
        assert_eq!(forecast.runs_out_at, Some(NOW.plus_secs(60_480)));
    }

    #[test]
    fn an_account_with_nothing_available_has_run_out_now() {
        assert_eq!(week(0, 7).runs_out_at, Some(NOW));
        assert_eq!(week(-5, 7).runs_out_at, Some(NOW));
    }

    #[test]
    fn more_refunded_than_spent_counts_as_nothing_spent() {
        let forecast = week(10, -3);
        assert_eq!(forecast.daily_rate, Amount::ZERO);
        assert_eq!(forecast.runs_out_at, None);
    }

    #[test]
    fn a_run_out_past_the_last_timestamp_is_none_not_an_overflow() {
        let forecast = Forecast::of(
            Amount::from_micros(crate::AMOUNT_MAX_MICROS),
            Amount::from_micros(1),
            FORECAST_WINDOW_DAYS,
            NOW,
        );
        assert_eq!(forecast.daily_rate, Amount::ZERO);
        assert_eq!(forecast.runs_out_at, None);
    }
}
