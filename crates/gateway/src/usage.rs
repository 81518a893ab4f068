//! An account's usage summed over a window: whole hours from the hourly rollup, the hours at
//! either end from the calls themselves, grouped by model, day, key or project.

use std::collections::BTreeMap;

use ledger::{AccountId, Timestamp};
use store::usage::{Bucket, CallQuery, CallTokens};
use store::{Store, StoreError};

const HOUR_MICROS: i64 = store::usage::BUCKET_SECS * ledger::MICROS_PER_SECOND;

/// What calls are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The model.
    Model,
    /// The UTC day.
    Day,
    /// The API key.
    Key,
    /// The key's project.
    Project,
    /// The priced (or free) feature a consume named: not gateway calls, but
    /// the account's `consume`s by `feature` and `quantity`.
    Feature,
}

impl GroupBy {
    /// How the database sums the rollup of gateway calls for this grouping;
    /// none for features, which are summed from the journal.
    pub fn sums(self) -> Option<store::usage::SumBy> {
        match self {
            GroupBy::Model => Some(store::usage::SumBy::Model),
            GroupBy::Day => Some(store::usage::SumBy::Day),
            GroupBy::Key => Some(store::usage::SumBy::Key),
            GroupBy::Project => Some(store::usage::SumBy::Project),
            GroupBy::Feature => None,
        }
    }

    /// Reads `model`, `day`, `key`, `project` or `feature`.
    pub fn parse(text: &str) -> Option<GroupBy> {
        Some(match text {
            "model" => GroupBy::Model,
            "day" => GroupBy::Day,
            "key" => GroupBy::Key,
            "project" => GroupBy::Project,
            "feature" => GroupBy::Feature,
            _ => return None,
        })
    }

    /// The name as the API writes it.
    pub fn code(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Day => "day",
            GroupBy::Key => "key",
            GroupBy::Project => "project",
            GroupBy::Feature => "feature",
        }
    }
}

/// What a group of calls adds up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// The model, day, key id or project; none for calls without a key or project.
    pub key: Option<String>,
    /// How many calls.
    pub calls: i64,
    /// Their tokens by class.
    pub tokens: CallTokens,
    /// Micro-credits charged.
    pub cost_micros: i64,
    /// Micro-credits at list price.
    pub list_cost_micros: i64,
}

impl Group {
    fn add(&mut self, b: &Bucket) {
        self.calls += b.calls;
        let t = &mut self.tokens;
        t.input = t.input.saturating_add(b.tokens.input);
        t.cached = t.cached.saturating_add(b.tokens.cached);
        t.cache_write = t.cache_write.saturating_add(b.tokens.cache_write);
        t.output = t.output.saturating_add(b.tokens.output);
        t.reasoning = t.reasoning.saturating_add(b.tokens.reasoning);
        self.cost_micros = self.cost_micros.saturating_add(b.cost.micros());
        self.list_cost_micros = self.list_cost_micros.saturating_add(b.list_cost.micros());
    }
}

/// The day (UTC) of an hour since the epoch: `2027-01-15`.
pub fn day_of(hour: i64) -> String {
    let at = Timestamp::from_secs(hour.div_euclid(24) * 86_400);
    at.to_string().chars().take(10).collect()
}

/// Sums `buckets` per group, in the groups' order; and the total.
pub fn group(buckets: &[Bucket], by: GroupBy) -> (Vec<Group>, Group) {
    let mut groups: BTreeMap<Option<String>, Group> = BTreeMap::new();
    let mut total = Group::default();
    for bucket in buckets {
        let key = match by {
            GroupBy::Model => Some(bucket.model.clone()),
            GroupBy::Day => Some(day_of(bucket.hour)),
            GroupBy::Key => Some(bucket.key_id.clone()).filter(|k| !k.is_empty()),
            GroupBy::Project => Some(bucket.project.clone()).filter(|p| !p.is_empty()),
            GroupBy::Feature => None,
        };
        groups
            .entry(key.clone())
            .or_insert_with(|| Group {
                key,
                ..Group::default()
            })
            .add(bucket);
        total.add(bucket);
    }
    (groups.into_values().collect(), total)
}

/// The buckets of the account's calls settled in `from..to`, for grouping
/// by `by`: the rollup's for every whole hour inside it, summed per group
/// by the database, and the calls of the part-hours at either end added up
/// as buckets of their own.
pub async fn buckets(
    store: &dyn Store,
    account: &AccountId,
    from: Timestamp,
    to: Timestamp,
    by: store::usage::SumBy,
) -> Result<Vec<Bucket>, StoreError> {
    let first_whole = (from.micros() + HOUR_MICROS - 1).div_euclid(HOUR_MICROS);
    let end_whole = to.micros().div_euclid(HOUR_MICROS);
    let mut out = Vec::new();
    if first_whole < end_whole {
        out.extend(
            store
                .usage_sums(account.clone(), first_whole, end_whole, by)
                .await?,
        );
        let head_end = Timestamp::from_micros(first_whole * HOUR_MICROS);
        let tail_start = Timestamp::from_micros(end_whole * HOUR_MICROS);
        out.extend(calls_as_buckets(store, account, from, head_end).await?);
        out.extend(calls_as_buckets(store, account, tail_start, to).await?);
    } else {
        out.extend(calls_as_buckets(store, account, from, to).await?);
    }
    Ok(out)
}

/// The calls of `from..to` (within an hour or so), as buckets.
async fn calls_as_buckets(
    store: &dyn Store,
    account: &AccountId,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Bucket>, StoreError> {
    let mut out = Vec::new();
    if from >= to {
        return Ok(out);
    }
    let mut before = None;
    loop {
        let page = store
            .calls(CallQuery {
                account: account.clone(),
                from,
                to,
                before,
                limit: store::PAGE_LIMIT_MAX,
            })
            .await?;
        let full = page.len() == store::PAGE_LIMIT_MAX;
        before = page.last().map(|c| (c.at, c.id.clone()));
        out.extend(store::usage::rollup(&page).into_iter().map(|(_, b)| b));
        if !full {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::Amount;

    fn bucket(hour: i64, model: &str, key: &str, project: &str, calls: i64) -> Bucket {
        Bucket {
            hour,
            model: model.into(),
            key_id: key.into(),
            project: project.into(),
            mode: "credits".into(),
            calls,
            tokens: CallTokens {
                input: calls * 10,
                ..CallTokens::default()
            },
            cost: Amount::from_micros(calls * 7),
            list_cost: Amount::from_micros(calls * 5),
        }
    }

    #[test]
    fn buckets_are_summed_per_group_and_in_total() {
        let day = store::usage::hour_of(Timestamp::from_secs(1_800_000_000));
        let buckets = [
            bucket(day, "a", "key_1", "", 2),
            bucket(day + 1, "a", "key_2", "web", 3),
            bucket(day + 24, "b", "key_1", "web", 5),
        ];
        let (models, total) = group(&buckets, GroupBy::Model);
        assert_eq!(
            models
                .iter()
                .map(|g| (g.key.clone().unwrap(), g.calls))
                .collect::<Vec<_>>(),
            [("a".to_owned(), 5), ("b".to_owned(), 5)]
        );
        assert_eq!(
            (total.calls, total.tokens.input, total.cost_micros),
            (10, 100, 70)
        );
        let (days, _) = group(&buckets, GroupBy::Day);
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].key.as_deref(), Some("2027-01-15"));
        let (projects, _) = group(&buckets, GroupBy::Project);
        assert_eq!(projects[0].key, None);
        assert_eq!(projects[0].calls, 2);
        assert_eq!(projects[1].key.as_deref(), Some("web"));
    }

    #[test]
    fn hours_fall_on_their_utc_day() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(23), "1970-01-01");
        assert_eq!(day_of(24), "1970-01-02");
        assert_eq!(day_of(-1), "1969-12-31");
    }
}
