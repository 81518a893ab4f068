//! Billing periods: an interval (a count of days, weeks, months or years) stepped from an anchor instant, as Stripe steps them.

use std::fmt;
use std::iter::FusedIterator;

use ledger::{Civil, MICROS_PER_DAY, Timestamp, days_in_month};

use super::DomainError;

/// The longest interval, in years: every unit's largest count is this many
/// years' worth of it.
pub const INTERVAL_YEARS_MAX: u32 = 10;

/// The unit an interval counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Exact days of 24 hours (UTC has no daylight saving).
    Day,
    /// Exact weeks of seven days.
    Week,
    /// Calendar months, keeping the anchor's day of the month where the month has it.
    Month,
    /// Calendar years, that is twelve calendar months.
    Year,
}

impl Unit {
    /// Every unit, shortest first.
    pub const ALL: [Unit; 4] = [Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    /// The stable text code, as used in the API: `day`, `week`, `month`, `year`.
    pub const fn code(self) -> &'static str {
        match self {
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// The unit with this code; codes are lowercase and singular.
    pub fn parse(text: &str) -> Result<Unit, DomainError> {
        Unit::ALL
            .into_iter()
            .find(|unit| unit.code() == text)
            .ok_or(DomainError::InvalidInterval(
                "interval must be one of day, week, month, year",
            ))
    }

    /// The largest count of this unit in one interval: ten years' worth,
    /// that is 3650 days, 520 weeks, 120 months or 10 years.
    pub const fn count_max(self) -> u32 {
        match self {
            Unit::Day => INTERVAL_YEARS_MAX * 365,
            Unit::Week => INTERVAL_YEARS_MAX * 52,
            Unit::Month => INTERVAL_YEARS_MAX * 12,
            Unit::Year => INTERVAL_YEARS_MAX,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// How long one period lasts: `count` times a unit, with `count` from 1 to
/// the unit's [`Unit::count_max`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interval {
    unit: Unit,
    count: u32,
}

/// What an interval adds per period: exact days, or calendar months.
#[derive(Clone, Copy)]
enum Step {
    Days(i64),
    Months(i64),
}

impl Interval {
    /// An interval of `count` units, refused when `count` is zero or more
    /// than ten years' worth of the unit.
    pub fn new(unit: Unit, count: u32) -> Result<Interval, DomainError> {
        if count == 0 {
            return Err(DomainError::InvalidInterval(
                "interval_count must be at least 1",
            ));
        }
        if count > unit.count_max() {
            return Err(DomainError::InvalidInterval(
                "interval_count must make a period of at most 10 years \
                 (3650 days, 520 weeks, 120 months or 10 years)",
            ));
        }
        Ok(Interval { unit, count })
    }

    /// The unit counted.
    pub const fn unit(self) -> Unit {
        self.unit
    }

    /// How many units one period lasts, at least 1.
    pub const fn count(self) -> u32 {
        self.count
    }

    fn step(self) -> Step {
        let count = i64::from(self.count);
        match self.unit {
            Unit::Day => Step::Days(count),
            Unit::Week => Step::Days(7 * count),
            Unit::Month => Step::Months(count),
            Unit::Year => Step::Months(12 * count),
        }
    }
}

/// One billing period: `[start, end)`, the `index`-th after the anchor.
///
/// Periods of one anchor and interval are contiguous: a period's `end` is
/// the next period's `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    /// 0 for the period that starts at the anchor, then 1, 2, …
    pub index: u32,
    /// The first instant of the period.
    pub start: Timestamp,
    /// The first instant after the period, where the next one starts.
    pub end: Timestamp,
}

impl Period {
    /// True when `t` falls in `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// The start of period `index`: the anchor plus `index` intervals.
///
/// Days and weeks add exact days. Months and years add calendar months to
/// the anchor's year and month, keep the anchor's time of day, and take the
/// anchor's day of the month clamped to the last day of the month reached.
/// Each start is computed from the anchor, never from the previous start, so
/// a January 31 anchor gives February 28 and then March 31 again.
fn period_start(anchor: Timestamp, interval: Interval, index: u32) -> Option<Timestamp> {
    match interval.step() {
        Step::Days(days) => {
            let micros = i64::from(index)
                .checked_mul(days)?
                .checked_mul(MICROS_PER_DAY)?;
            anchor.checked_add_micros(micros)
        }
        Step::Months(months) => {
            let a = anchor.civil();
            let month_number =
                (a.year * 12 + a.month - 1).checked_add(i64::from(index) * months)?;
            let year = month_number.div_euclid(12);
            let month = month_number.rem_euclid(12) + 1;
            Timestamp::from_civil(Civil {
                year,
                month,
                day: a.day.min(days_in_month(year, month)),
                micros_of_day: a.micros_of_day,
            })
        }
    }
}

/// Period `index` of `anchor` and `interval`, or `None` when its start or
/// its end lies past the range of instants (years 1 to 9999).
pub fn period(anchor: Timestamp, interval: Interval, index: u32) -> Option<Period> {
    Some(Period {
        index,
        start: period_start(anchor, interval, index)?,
        end: period_start(anchor, interval, index.checked_add(1)?)?,
    })
}

/// The period that contains `t`, or `None` when `t` is before the anchor or
/// that period lies past the range of instants.
///
/// Costs the same for the ten-thousandth period as for the first: the index
/// is computed, not walked to.
pub fn period_at(anchor: Timestamp, interval: Interval, t: Timestamp) -> Option<Period> {
    if t < anchor {
        return None;
    }
    let estimate = match interval.step() {
        // Exact days divide exactly: this is the index.
        Step::Days(days) => {
            let elapsed = i128::from(t.micros()) - i128::from(anchor.micros());
            elapsed / (i128::from(days) * i128::from(MICROS_PER_DAY))
        }
        // Whole calendar months between the two dates, divided by the step.
        // Period `estimate` starts in the same month as `t` or an earlier
        // one, and period `estimate + 1` in a later one; so `t` is in period
        // `estimate` unless that period starts later in `t`'s own month.
        Step::Months(months) => {
            let (a, c) = (anchor.civil(), t.civil());
            let elapsed = (c.year - a.year) * 12 + (c.month - a.month);
            i128::from(elapsed / months)
        }
    };
    let mut index = u32::try_from(estimate).ok()?;
    if period_start(anchor, interval, index)? > t {
        index = index.checked_sub(1)?;
    }
    let found = period(anchor, interval, index)?;
    debug_assert!(found.contains(t), "{found:?} does not contain {t}");
    Some(found)
}

/// The periods that start in `[from, to)`, in order: what a renewal job that
/// last ran at `from` has to catch up on at `to`.
///
/// Lazy, and each step costs the same however far the first period is from
/// the anchor; a caller that wants a bound takes as many as it allows.
pub fn periods_between(
    anchor: Timestamp,
    interval: Interval,
    from: Timestamp,
    to: Timestamp,
) -> Periods {
    let next = if from <= anchor {
        Some(0)
    } else {
        // A period that contains `from` but starts before it is not one of
        // these; the one after it is the first.
        period_at(anchor, interval, from).and_then(|p| {
            if p.start == from {
                Some(p.index)
            } else {
                p.index.checked_add(1)
            }
        })
    };
    Periods {
        anchor,
        interval,
        next,
        to,
    }
}

/// The iterator [`periods_between`] returns.
#[derive(Clone, Debug)]
pub struct Periods {
    anchor: Timestamp,
    interval: Interval,
    next: Option<u32>,
    to: Timestamp,
}

impl Iterator for Periods {
    type Item = Period;

    fn next(&mut self) -> Option<Period> {
        let index = self.next.take()?;
        let found = period(self.anchor, self.interval, index).filter(|p| p.start < self.to)?;
        self.next = index.checked_add(1);
        Some(found)
    }
}

impl FusedIterator for Periods {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn every(unit: Unit, count: u32) -> Interval {
        Interval::new(unit, count).unwrap()
    }

    fn starts(anchor: &str, interval: Interval, n: u32) -> Vec<String> {
        (0..n)
            .map(|k| period(at(anchor), interval, k).unwrap().start.to_string())
            .collect()
    }

    #[test]
    fn a_monthly_period_from_january_31_ends_on_the_last_day_of_shorter_months() {
        assert_eq!(
            starts("2025-01-31T10:00:00Z", every(Unit::Month, 1), 5),
            [
                "2025-01-31T10:00:00.000000Z",
                "2025-02-28T10:00:00.000000Z",
                "2025-03-31T10:00:00.000000Z",
                "2025-04-30T10:00:00.000000Z",
                "2025-05-31T10:00:00.000000Z",
            ]
        );
        assert_eq!(
            starts("2028-01-31T00:00:00Z", every(Unit::Month, 1), 3)[1],
            "2028-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn a_yearly_period_from_february_29_falls_on_february_28_in_common_years() {
        assert_eq!(
            starts("2024-02-29T12:00:00Z", every(Unit::Year, 1), 5),
            [
                "2024-02-29T12:00:00.000000Z",
                "2025-02-28T12:00:00.000000Z",
                "2026-02-28T12:00:00.000000Z",
                "2027-02-28T12:00:00.000000Z",
                "2028-02-29T12:00:00.000000Z",
            ]
        );
    }

    #[test]
    fn weekly_periods_are_seven_days_apart() {
        assert_eq!(
            starts("2026-03-02T09:30:00.5Z", every(Unit::Week, 2), 3),
            [
                "2026-03-02T09:30:00.500000Z",
                "2026-03-16T09:30:00.500000Z",
                "2026-03-30T09:30:00.500000Z",
            ]
        );
    }

    #[test]
    fn quarterly_periods_keep_the_anchor_day_where_the_month_has_it() {
        assert_eq!(
            starts("2025-11-30T00:00:00Z", every(Unit::Month, 3), 4),
            [
                "2025-11-30T00:00:00.000000Z",
                "2026-02-28T00:00:00.000000Z",
                "2026-05-30T00:00:00.000000Z",
                "2026-08-30T00:00:00.000000Z",
            ]
        );
    }

    #[test]
    fn the_ten_thousandth_daily_period_is_found_from_an_instant_inside_it() {
        let anchor = at("2000-01-01T06:00:00Z");
        let daily = every(Unit::Day, 1);
        let p = period(anchor, daily, 10_000).unwrap();
        assert_eq!(p.start, at("2027-05-19T06:00:00Z"));
        assert_eq!(p.end, at("2027-05-20T06:00:00Z"));
        assert_eq!(
            period_at(anchor, daily, at("2027-05-20T05:59:59.999999Z")),
            Some(p)
        );
        assert_eq!(
            period_at(anchor, daily, at("2027-05-20T06:00:00Z")).map(|p| p.index),
            Some(10_001)
        );
    }

    #[test]
    fn an_instant_early_in_a_month_belongs_to_the_period_that_began_the_month_before() {
        let anchor = at("2025-01-31T10:00:00Z");
        let monthly = every(Unit::Month, 1);
        // Same calendar month as period 2's start (March 31), but before it.
        let p = period_at(anchor, monthly, at("2025-03-31T09:59:59Z")).unwrap();
        assert_eq!((p.index, p.start), (1, at("2025-02-28T10:00:00Z")));
        let p = period_at(anchor, monthly, at("2025-03-31T10:00:00Z")).unwrap();
        assert_eq!((p.index, p.end), (2, at("2025-04-30T10:00:00Z")));
    }

    #[test]
    fn no_period_contains_an_instant_before_the_anchor() {
        let anchor = at("2025-01-31T10:00:00Z");
        let monthly = every(Unit::Month, 1);
        assert_eq!(
            period_at(anchor, monthly, at("2025-01-31T09:59:59.999999Z")),
            None
        );
        assert_eq!(period_at(anchor, monthly, anchor).map(|p| p.index), Some(0));
    }

    #[test]
    fn a_period_past_the_year_9999_does_not_exist() {
        let anchor = at("9990-06-15T00:00:00Z");
        let yearly = every(Unit::Year, 1);
        assert!(period(anchor, yearly, 8).is_some());
        // Period 9 would end in 10000.
        assert_eq!(period(anchor, yearly, 9), None);
        assert_eq!(period(anchor, every(Unit::Day, 1), u32::MAX), None);
        assert_eq!(period_at(anchor, yearly, at("9999-12-31T23:59:59Z")), None);
    }

    #[test]
    fn a_renewal_catching_up_walks_the_periods_that_started_while_it_was_away() {
        let anchor = at("2025-01-31T10:00:00Z");
        let monthly = every(Unit::Month, 1);
        let caught_up: Vec<(u32, Timestamp)> = periods_between(
            anchor,
            monthly,
            at("2025-02-28T10:00:00Z"),
            at("2025-05-31T10:00:00Z"),
        )
        .map(|p| (p.index, p.start))
        .collect();
        // `from` is included, `to` is not.
        assert_eq!(
            caught_up,
            [
                (1, at("2025-02-28T10:00:00Z")),
                (2, at("2025-03-31T10:00:00Z")),
                (3, at("2025-04-30T10:00:00Z")),
            ]
        );
        let mid_period = periods_between(
            anchor,
            monthly,
            at("2025-03-01T00:00:00Z"),
            at("2025-03-31T10:00:00Z"),
        );
        assert_eq!(mid_period.count(), 0);
        let from_before_anchor = periods_between(anchor, monthly, Timestamp::EPOCH, anchor);
        assert_eq!(from_before_anchor.count(), 0);
    }

    #[test]
    fn units_are_read_from_their_lowercase_singular_codes_only() {
        for unit in Unit::ALL {
            assert_eq!(Unit::parse(unit.code()), Ok(unit));
        }
        for text in ["", "Month", "months", "MONTH", " day", "quarter"] {
            assert_eq!(
                Unit::parse(text).map_err(|e| e.code()),
                Err("invalid_interval"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn an_interval_is_one_unit_to_ten_years() {
        for unit in Unit::ALL {
            assert!(Interval::new(unit, 0).is_err());
            assert!(Interval::new(unit, 1).is_ok());
            assert!(Interval::new(unit, unit.count_max()).is_ok());
            assert!(Interval::new(unit, unit.count_max() + 1).is_err());
        }
        assert_eq!(Unit::Month.count_max(), 120);
    }

    /// Anchors between 1970 and 2100, so that a few thousand periods of any
    /// interval stay below the year 9999.
    fn anchors() -> impl Strategy<Value = Timestamp> {
        (0..4_102_444_800_000_000i64).prop_map(Timestamp::from_micros)
    }

    fn intervals() -> impl Strategy<Value = Interval> {
        (
            prop::sample::select(Unit::ALL.to_vec()),
            prop_oneof![1..=3u32, 1..=12u32, 1..=u32::MAX],
        )
            .prop_map(|(unit, count)| every(unit, 1 + (count - 1) % unit.count_max()))
    }

    proptest! {
        #[test]
        fn each_period_ends_where_the_next_starts_and_after_it_starts(
            anchor in anchors(),
            interval in intervals(),
            index in 0..600u32,
        ) {
            let this = period(anchor, interval, index).unwrap();
            let next = period(anchor, interval, index + 1).unwrap();
            prop_assert!(this.start < this.end);
            prop_assert_eq!(this.end, next.start);
            prop_assert_eq!(this.index, index);
            prop_assert_eq!(period(anchor, interval, 0).unwrap().start, anchor);
        }

        #[test]
        fn the_period_at_an_instant_contains_it(
            anchor in anchors(),
            interval in intervals(),
            after_micros in 0..200 * 366 * MICROS_PER_DAY,
        ) {
            let t = Timestamp::from_micros(anchor.micros() + after_micros);
            let found = period_at(anchor, interval, t).unwrap();
            prop_assert!(found.contains(t), "{:?} does not contain {}", found, t);
            prop_assert_eq!(period(anchor, interval, found.index), Some(found));
        }

        #[test]
        fn a_period_starts_at_the_anchors_time_of_day(
            anchor in anchors(),
            interval in intervals(),
            index in 0..600u32,
        ) {
            let start = period(anchor, interval, index).unwrap().start;
            prop_assert_eq!(start.civil().micros_of_day, anchor.civil().micros_of_day);
        }

        #[test]
        fn a_calendar_period_starts_on_the_anchors_day_or_the_months_last(
            anchor in anchors(),
            count in 1..=120u32,
            yearly in any::<bool>(),
            index in 0..600u32,
        ) {
            let interval = if yearly {
                every(Unit::Year, 1 + (count - 1) % 10)
            } else {
                every(Unit::Month, count)
            };
            let start = period(anchor, interval, index).unwrap().start.civil();
            let months = i64::from(index) * i64::from(interval.count())
                * if yearly { 12 } else { 1 };
            let a = anchor.civil();
            let month_number = a.year * 12 + a.month - 1 + months;
            prop_assert_eq!((start.year, start.month), (month_number / 12, month_number % 12 + 1));
            prop_assert_eq!(start.day, a.day.min(days_in_month(start.year, start.month)));
        }

        #[test]
        fn periods_between_are_exactly_those_starting_in_the_range(
            anchor in anchors(),
            interval in intervals(),
            from_after in -100 * MICROS_PER_DAY..3000 * MICROS_PER_DAY,
            length in 0..3000 * MICROS_PER_DAY,
        ) {
            let from = Timestamp::from_micros(anchor.micros() + from_after);
            let to = Timestamp::from_micros(from.micros() + length);
            let walked: Vec<Period> = periods_between(anchor, interval, from, to).collect();
            let expected: Vec<Period> = (0..)
                .map_while(|k| period(anchor, interval, k).filter(|p| p.start < to))
                .filter(|p| p.start >= from)
                .collect();
            prop_assert_eq!(walked, expected);
        }
    }
}
