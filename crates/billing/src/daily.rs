//! The daily reward: claimed once a UTC day, granted once however often it is claimed.

use ledger::{Civil, ExternalId, MICROS_PER_DAY, Metadata, NewGrant, Source, Timestamp};

use crate::settings::CreditSettings;

/// The UTC day an instant falls in: its first instant, and its date.
pub fn day_of(now: Timestamp) -> (Timestamp, String) {
    let civil = now.civil();
    let start = Timestamp::from_civil(Civil {
        micros_of_day: 0,
        ..civil
    })
    .expect("the start of an instant's own day");
    (
        start,
        format!("{:04}-{:02}-{:02}", civil.year, civil.month, civil.day),
    )
}

/// The external id of the reward of the day `date` (`YYYY-MM-DD`).
pub fn external_id(date: &str) -> ExternalId {
    ExternalId::parse(&format!("daily:{date}")).expect("a day's external id")
}

/// The reward for the day of `now`, as the settings give it; its credits
/// expire `expire_days` after the day's start (never when unset).
pub fn grant(settings: &CreditSettings, now: Timestamp) -> NewGrant {
    let (start, date) = day_of(now);
    let reward = settings.daily_reward;
    NewGrant {
        amount: reward.amount,
        source: Source::DailyReward,
        priority: Some(settings.priority(Source::DailyReward)),
        effective_at: None,
        expires_at: reward
            .expire_days
            .map(|days| Timestamp::from_micros(start.micros() + i64::from(days) * MICROS_PER_DAY)),
        metadata: Metadata::empty(),
        external_id: Some(external_id(&date)),
        reason: None,
        actor: None,
    }
}

/// When the next reward can be claimed: the start of the next UTC day.
pub fn next_claim(now: Timestamp) -> Timestamp {
    Timestamp::from_micros(day_of(now).0.micros() + MICROS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_runs_from_midnight_utc_and_names_its_date() {
        let late = Timestamp::parse_rfc3339("2027-03-31T23:59:59.999999Z").unwrap();
        let (start, date) = day_of(late);
        assert_eq!(start.to_string(), "2027-03-31T00:00:00.000000Z");
        assert_eq!(date, "2027-03-31");
        assert_eq!(next_claim(late).to_string(), "2027-04-01T00:00:00.000000Z");
        assert_eq!(external_id(&date).as_str(), "daily:2027-03-31");
    }
}
