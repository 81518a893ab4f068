//! Gateway calls: one row per call, written in the batch that settles its hold, and an hourly
//! rollup of them per account, model, key, project and billing mode that keeps summaries fast.

use std::collections::BTreeMap;

use ledger::{AccountId, Amount, Timestamp, TxId};

use crate::StoreError;
use crate::rows::Columns;

/// What an account's consumes of one feature add up to over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureUse {
    /// The feature's id.
    pub feature: String,
    /// How many consumes named it.
    pub uses: i64,
    /// The units they consumed.
    pub quantity: Amount,
    /// The credits they were charged (zero for a free feature).
    pub credits: Amount,
}

/// Adds `part` to the uses of its feature in `into`, kept in feature order:
/// the SQLite store sums block by block.
pub fn add_feature_use(
    into: &mut BTreeMap<String, FeatureUse>,
    part: FeatureUse,
) -> Result<(), StoreError> {
    let overflow = || StoreError::Corrupt("feature usage overflows".into());
    let entry = into
        .entry(part.feature.clone())
        .or_insert_with(|| FeatureUse {
            feature: part.feature.clone(),
            ..FeatureUse::default()
        });
    entry.uses = entry.uses.checked_add(part.uses).ok_or_else(overflow)?;
    entry.quantity = entry
        .quantity
        .checked_add(part.quantity)
        .ok_or_else(overflow)?;
    entry.credits = entry
        .credits
        .checked_add(part.credits)
        .ok_or_else(overflow)?;
    Ok(())
}

/// Seconds in one rollup bucket.
pub const BUCKET_SECS: i64 = 3600;

/// The longest text of any call field (model, project, key id, outcome), in bytes.
pub const CALL_TEXT_LEN_MAX: usize = 255;

/// Token counts of one call, by class, each token in one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallTokens {
    /// Input tokens neither read from nor written to a prompt cache.
    pub input: i64,
    /// Input tokens read from the prompt cache.
    pub cached: i64,
    /// Input tokens written to the prompt cache.
    pub cache_write: i64,
    /// Output tokens other than reasoning.
    pub output: i64,
    /// Reasoning tokens counted apart.
    pub reasoning: i64,
}

impl CallTokens {
    fn add(&mut self, other: &CallTokens) {
        self.input = self.input.saturating_add(other.input);
        self.cached = self.cached.saturating_add(other.cached);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.output = self.output.saturating_add(other.output);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
    }
}

/// One gateway call as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The request id, unique per call.
    pub id: String,
    /// The account charged.
    pub account: AccountId,
    /// The API key that made the call.
    pub key_id: Option<String>,
    /// The key's project.
    pub project: Option<String>,
    /// Who served it.
    pub provider: String,
    /// The model, as the catalog names it.
    pub model: String,
    /// `credits` or `byok`.
    pub mode: String,
    /// Tokens by class.
    pub tokens: CallTokens,
    /// Credits charged.
    pub cost: Amount,
    /// What the tokens cost at the list price, without markup.
    pub list_cost: Amount,
    /// The HTTP status the client received.
    pub status: u16,
    /// How it ended: `ok`, `upstream_error`, `client_closed`, …
    pub outcome: String,
    /// From the request to the last byte, in milliseconds.
    pub latency_ms: i64,
    /// The ledger transaction that settled it; set by the store.
    pub tx: Option<TxId>,
    /// When it was settled; set by the store to the batch's instant.
    pub at: Timestamp,
}

/// Which calls of one account to list, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallQuery {
    /// The account.
    pub account: AccountId,
    /// Settled at or after.
    pub from: Timestamp,
    /// Settled before.
    pub to: Timestamp,
    /// Only calls older than this (instant, id): the page cursor.
    pub before: Option<(Timestamp, String)>,
    /// At most this many.
    pub limit: usize,
}

/// What the calls of one hour, model, key, project and mode add up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The hour: seconds since the epoch / 3600.
    pub hour: i64,
    /// The model.
    pub model: String,
    /// The key id; empty for none.
    pub key_id: String,
    /// The project; empty for none.
    pub project: String,
    /// `credits` or `byok`.
    pub mode: String,
    /// How many calls.
    pub calls: i64,
    /// Their tokens.
    pub tokens: CallTokens,
    /// Credits charged.
    pub cost: Amount,
    /// At list price.
    pub list_cost: Amount,
}

/// The hour an instant falls in.
pub fn hour_of(at: Timestamp) -> i64 {
    at.micros()
        .div_euclid(BUCKET_SECS * ledger::MICROS_PER_SECOND)
}

/// What a bucket is keyed by: account, hour, model, key, project, mode.
type BucketKey = (String, i64, String, String, String, String);

/// The buckets calls add to, one per (account, hour, model, key, project,
/// mode), in that order, so that writers touch rows in one order.
pub fn rollup<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Vec<(AccountId, Bucket)> {
    let mut sums: BTreeMap<BucketKey, (AccountId, Bucket)> = BTreeMap::new();
    for call in calls {
        let hour = hour_of(call.at);
        let key_id = call.key_id.clone().unwrap_or_default();
        let project = call.project.clone().unwrap_or_default();
        let key = (
            call.account.to_string(),
            hour,
            call.model.clone(),
            key_id.clone(),
            project.clone(),
            call.mode.clone(),
        );
        let (_, bucket) = sums.entry(key).or_insert_with(|| {
            (
                call.account.clone(),
                Bucket {
                    hour,
                    model: call.model.clone(),
                    key_id,
                    project,
                    mode: call.mode.clone(),
                    calls: 0,
                    tokens: CallTokens::default(),
                    cost: Amount::ZERO,
                    list_cost: Amount::ZERO,
                },
            )
        });
        bucket.add_call(call);
    }
    sums.into_values().collect()
}

impl Bucket {
    /// Adds one call to the sums.
    pub fn add_call(&mut self, call: &Call) {
        self.calls += 1;
        self.tokens.add(&call.tokens);
        self.cost = Amount::from_micros(self.cost.micros().saturating_add(call.cost.micros()));
        self.list_cost = Amount::from_micros(
            self.list_cost
                .micros()
                .saturating_add(call.list_cost.micros()),
        );
    }
}

/// Column list matching [`call_from_row`].
pub const CALL_COLUMNS: &str = "id, account_id, key_id, project, provider, model, mode, input, \
     cached, cache_write, output, reasoning, cost, list_cost, status, outcome, latency_ms, tx_id, at";

/// A call from a row of [`CALL_COLUMNS`].
pub fn call_from_row(row: &impl Columns) -> Result<Call, StoreError> {
    let account = row.text(1)?;
    Ok(Call {
        id: row.text(0)?,
        account: AccountId::parse(&account)
            .map_err(|_| StoreError::Corrupt(format!("call account {account}")))?,
        key_id: row.text_opt(2)?,
        project: row.text_opt(3)?,
        provider: row.text(4)?,
        model: row.text(5)?,
        mode: row.text(6)?,
        tokens: CallTokens {
            input: row.int(7)?,
            cached: row.int(8)?,
            cache_write: row.int(9)?,
            output: row.int(10)?,
            reasoning: row.int(11)?,
        },
        cost: Amount::from_micros(row.int(12)?),
        list_cost: Amount::from_micros(row.int(13)?),
        status: u16::try_from(row.int(14)?).unwrap_or(0),
        outcome: row.text(15)?,
        latency_ms: row.int(16)?,
        tx: row.int_opt(17)?.map(TxId),
        at: Timestamp::from_micros(row.int(18)?),
    })
}

/// What the rollup's buckets are summed by in the database, so that a
/// summary reads a row per group rather than per hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumBy {
    /// The model.
    Model,
    /// The UTC day: the buckets' `hour` is the day's first hour.
    Day,
    /// The API key.
    Key,
    /// The key's project.
    Project,
}

impl SumBy {
    /// The SQL of the sums, the same in both dialects: `$1`/`?1` the account,
    /// then the first and the end hour; columns as [`BUCKET_COLUMNS`].
    pub fn sql(self, placeholders: [&str; 3]) -> String {
        let (select, group) = match self {
            SumBy::Model => ("CAST(0 AS BIGINT), model, '', '', ''", "model"),
            SumBy::Day => ("hour - hour % 24, '', '', '', ''", "hour - hour % 24"),
            SumBy::Key => ("CAST(0 AS BIGINT), '', key_id, '', ''", "key_id"),
            SumBy::Project => ("CAST(0 AS BIGINT), '', '', project, ''", "project"),
        };
        let [account, from, to] = placeholders;
        format!(
            "SELECT {select}, CAST(sum(calls) AS BIGINT), CAST(sum(input) AS BIGINT), \
                    CAST(sum(cached) AS BIGINT), CAST(sum(cache_write) AS BIGINT), \
                    CAST(sum(output) AS BIGINT), CAST(sum(reasoning) AS BIGINT), \
                    CAST(sum(cost) AS BIGINT), CAST(sum(list_cost) AS BIGINT) \
             FROM gateway_usage_hourly \
             WHERE account_id = {account} AND hour >= {from} AND hour < {to} \
             GROUP BY {group}"
        )
    }
}

/// Column list matching [`bucket_from_row`].
pub const BUCKET_COLUMNS: &str = "hour, model, key_id, project, mode, calls, input, cached, \
     cache_write, output, reasoning, cost, list_cost";

/// A bucket from a row of [`BUCKET_COLUMNS`].
pub fn bucket_from_row(row: &impl Columns) -> Result<Bucket, StoreError> {
    Ok(Bucket {
        hour: row.int(0)?,
        model: row.text(1)?,
        key_id: row.text(2)?,
        project: row.text(3)?,
        mode: row.text(4)?,
        calls: row.int(5)?,
        tokens: CallTokens {
            input: row.int(6)?,
            cached: row.int(7)?,
            cache_write: row.int(8)?,
            output: row.int(9)?,
            reasoning: row.int(10)?,
        },
        cost: Amount::from_micros(row.int(11)?),
        list_cost: Amount::from_micros(row.int(12)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, at_secs: i64, model: &str, cost: i64) -> Call {
        Call {
            id: id.into(),
            account: AccountId::parse("acme").unwrap(),
            key_id: Some("key_1".into()),
            project: None,
            provider: "openai".into(),
            model: model.into(),
            mode: "credits".into(),
            tokens: CallTokens {
                input: 10,
                output: 2,
                ..CallTokens::default()
            },
            cost: Amount::from_micros(cost),
            list_cost: Amount::from_micros(cost / 2),
            status: 200,
            outcome: "ok".into(),
            latency_ms: 5,
            tx: None,
            at: Timestamp::from_secs(at_secs),
        }
    }

    #[test]
    fn calls_of_one_hour_and_model_add_to_one_bucket() {
        let calls = [
            call("a", 7200, "m1", 10),
            call("b", 7200 + 3599, "m1", 20),
            call("c", 7200 + 3600, "m1", 40),
            call("d", 7200, "m2", 80),
        ];
        let buckets = rollup(&calls);
        assert_eq!(buckets.len(), 3);
        let (_, first) = &buckets[0];
        assert_eq!(
            (first.hour, first.model.as_str(), first.calls),
            (2, "m1", 2)
        );
        assert_eq!(first.cost, Amount::from_micros(30));
        assert_eq!(first.tokens.input, 20);
        assert_eq!(first.key_id, "key_1");
        assert_eq!(first.project, "");
        let (_, other_model) = &buckets[1];
        assert_eq!((other_model.hour, other_model.model.as_str()), (2, "m2"));
        assert_eq!(buckets[2].1.hour, 3);
    }

    #[test]
    fn instants_before_the_epoch_fall_in_the_hour_below() {
        assert_eq!(hour_of(Timestamp::from_secs(-1)), -1);
        assert_eq!(hour_of(Timestamp::from_secs(3600)), 1);
    }
}
