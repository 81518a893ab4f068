//! Instants as microseconds since the Unix epoch, with exact RFC 3339 text.

use std::fmt;

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// An instant in UTC with microsecond precision.
///
/// The core never reads a clock: every operation is handed the instant it
/// happens at, so tests decide what time it is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// Why a piece of text is not an RFC 3339 instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampError;

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an RFC 3339 timestamp such as 2026-01-31T12:00:00Z")
    }
}

/// The first instant of year 1 and the last of year 9999, the range RFC 3339 can write.
const MIN_MICROS: i64 = -62_135_596_800 * MICROS_PER_SECOND;
const MAX_MICROS: i64 = 253_402_300_799 * MICROS_PER_SECOND + 999_999;

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Wraps microseconds since the epoch.
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// Whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs * MICROS_PER_SECOND)
    }

    /// Microseconds since the epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// This instant plus `micros`, or `None` past the representable range.
    pub fn checked_add_micros(self, micros: i64) -> Option<Timestamp> {
        self.0
            .checked_add(micros)
            .filter(|m| (MIN_MICROS..=MAX_MICROS).contains(m))
            .map(Timestamp)
    }

    /// This instant plus whole seconds, saturating at the range RFC 3339 can write.
    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(secs.saturating_mul(MICROS_PER_SECOND))
                .clamp(MIN_MICROS, MAX_MICROS),
        )
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    ///
    /// Fractions past microseconds are truncated; a leap second (`:60`) and
    /// dates that do not exist are rejected.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimestampError> {
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(TimestampError);
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let part = &b[range];
            if part.iter().all(u8::is_ascii_digit) {
                Ok(part
                    .iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
            } else {
                Err(TimestampError)
            }
        };
        let year = num(0..4)?;
        let month = num(5..7)?;
        let day = num(8..10)?;
        let hour = num(11..13)?;
        let minute = num(14..16)?;
        let second = num(17..19)?;
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return Err(TimestampError);
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(TimestampError);
        }
        if year < 1
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(TimestampError);
        }
        let mut i = 19;
        let mut fraction_micros = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &b[start..i];
            if digits.is_empty() {
                return Err(TimestampError);
            }
            for position in 0..6 {
                fraction_micros =
                    fraction_micros * 10 + digits.get(position).map_or(0, |d| i64::from(d - b'0'));
            }
        }
        let offset_secs = match &b[i..] {
            [b'Z'] | [b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(TimestampError);
                }
                let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                if hours > 23 || minutes > 59 {
                    return Err(TimestampError);
                }
                let offset = hours * 3600 + minutes * 60;
                if *sign == b'-' { -offset } else { offset }
            }
            _ => return Err(TimestampError),
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        let micros = secs * MICROS_PER_SECOND + fraction_micros;
        if !(MIN_MICROS..=MAX_MICROS).contains(&micros) {
            return Err(TimestampError);
        }
        Ok(Timestamp(micros))
    }
}

impl fmt::Display for Timestamp {
    /// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always with six fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(MICROS_PER_SECOND);
        let micros = self.0.rem_euclid(MICROS_PER_SECOND);
        let days = secs.div_euclid(86_400);
        let secs_of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            secs_of_day / 3600,
            secs_of_day % 3600 / 60,
            secs_of_day % 60
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// An instant as a calendar date and a time of day, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Civil {
    /// The year, 1 to 9999 for instants RFC 3339 can write.
    pub year: i64,
    /// The month, 1 to 12.
    pub month: i64,
    /// The day of the month, 1 to 31.
    pub day: i64,
    /// Microseconds since midnight.
    pub micros_of_day: i64,
}

/// Microseconds in one day.
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

impl Timestamp {
    /// This instant's date and time of day in UTC.
    pub fn civil(self) -> Civil {
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            micros_of_day: self.0.rem_euclid(MICROS_PER_DAY),
        }
    }

    /// The instant of a date and time of day in UTC, or `None` for a date
    /// that does not exist or an instant past the range RFC 3339 can write.
    pub fn from_civil(civil: Civil) -> Option<Timestamp> {
        let Civil {
            year,
            month,
            day,
            micros_of_day,
        } = civil;
        if !(1..=12).contains(&month)
            || !(1..=days_in_month(year, month)).contains(&day)
            || !(0..MICROS_PER_DAY).contains(&micros_of_day)
            || !(1..=9999).contains(&year)
        {
            return None;
        }
        days_from_civil(year, month, day)
            .checked_mul(MICROS_PER_DAY)?
            .checked_add(micros_of_day)
            .map(Timestamp)
            .filter(|t| (MIN_MICROS..=MAX_MICROS).contains(&t.0))
    }
}

/// The days in a month of a year (proleptic Gregorian).
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01; the inverse of `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_instant_splits_into_its_date_and_time_of_day_and_back() {
        let t = Timestamp::parse_rfc3339("2028-02-29T23:59:59.000001Z").unwrap();
        let civil = t.civil();
        assert_eq!((civil.year, civil.month, civil.day), (2028, 2, 29));
        assert_eq!(civil.micros_of_day, MICROS_PER_DAY - 999_999);
        assert_eq!(Timestamp::from_civil(civil), Some(t));
        let mut missing = civil;
        missing.year = 2027;
        assert_eq!(Timestamp::from_civil(missing), None);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
    }

    #[test]
    fn utc_text_parses_to_epoch_micros() {
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00Z"),
            Ok(Timestamp::EPOCH)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-22T03:13:54.5Z"),
            Ok(Timestamp::from_micros(1_795_317_234_500_000))
        );
    }

    #[test]
    fn offsets_are_applied() {
        let utc = Timestamp::parse_rfc3339("2026-01-01T10:00:00Z").unwrap();
        let plus = Timestamp::parse_rfc3339("2026-01-01T12:30:00+02:30").unwrap();
        let minus = Timestamp::parse_rfc3339("2026-01-01T05:00:00-05:00").unwrap();
        assert_eq!(utc, plus);
        assert_eq!(utc, minus);
    }

    #[test]
    fn fraction_past_micros_is_truncated() {
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00.123456789Z"),
            Ok(Timestamp::from_micros(123_456))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00.000001999999999Z"),
            Ok(Timestamp::from_micros(1))
        );
    }

    #[test]
    fn impossible_dates_and_garbage_are_rejected() {
        for text in [
            "",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:59:60Z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "yesterday",
            "0000-01-01T00:00:00Z",
            "2026-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(
                Timestamp::parse_rfc3339(text),
                Err(TimestampError),
                "{text:?}"
            );
        }
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn display_always_has_six_fractional_digits() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp::from_micros(-1).to_string(),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(micros in MIN_MICROS..=MAX_MICROS) {
            let t = Timestamp::from_micros(micros);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        }

        #[test]
        fn civil_then_back_is_identity(micros in MIN_MICROS..=MAX_MICROS) {
            let t = Timestamp::from_micros(micros);
            prop_assert_eq!(Timestamp::from_civil(t.civil()), Some(t));
        }
    }
}
