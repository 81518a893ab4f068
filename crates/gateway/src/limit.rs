//! Key limits: spend limits (what a customer key has spent in its window, kept as a record that
//! every hold and settle of the key's calls adjusts in the same write as the ledger, so
//! concurrent calls cannot overshoot it) and token rates (tokens a minute, counted in each node's
//! memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ledger::{Amount, Timestamp};
use serde::{Deserialize, Serialize};
use server::SpendLimit;
use store::records::{self, Expect, Kind, Lookup, Modified, RecordWrite, Step};
use store::{Command, Executed, Store, StoreError};

/// What a key has spent (and holds) in one window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpend {
    /// Micro-credits charged and held.
    pub spent_micros: i64,
}

impl Kind for KeySpend {
    const KIND: &'static str = "key_spend";

    fn lookups(&self) -> Vec<Lookup> {
        Vec::new()
    }
}

/// A key's limit and the record of the window a call counts in.
#[derive(Clone, Debug)]
pub struct Window {
    /// The key's limit.
    pub limit: SpendLimit,
    /// The record of the window: `key id:window`.
    pub record: String,
}

impl Window {
    /// The window `at` falls in for a key with `limit`.
    pub fn of(key_id: &str, limit: SpendLimit, at: Timestamp) -> Window {
        Window {
            limit,
            record: format!("{key_id}:{}", limit.period.window(at)),
        }
    }
}

/// What adjusting a window decided.
// Returned once per call, so the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Adjusted {
    /// The command ran; here is how.
    Ran(Executed),
    /// The key's limit does not leave room for `delta`; nothing ran.
    OverLimit {
        /// What the window has spent and holds.
        spent: Amount,
    },
}

/// Serializes the writes of each limited key on this node, so that they do
/// not race each other for the window record; other nodes are caught by
/// its version.
#[derive(Default)]
pub struct Limiter {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Limiter {
    fn lock_of(&self, record: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Locks nobody holds are dropped now and then, so the map stays
        // as large as the keys in use.
        if locks.len() > 10_000 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(record.to_owned()).or_default().clone()
    }

    /// Runs `command` with the window adjusted by `delta` micro-credits in
    /// the same write. When `check` is set and the window would go over the
    /// limit, nothing runs. A change made meanwhile on another node makes
    /// it read the window again and retry.
    pub async fn adjust(
        &self,
        store: &dyn Store,
        window: &Window,
        delta: i64,
        check: bool,
        command: impl Fn() -> Command,
    ) -> Result<Adjusted, StoreError> {
        let lock = self.lock_of(&window.record);
        let _held = lock.lock().await;
        let command = &command;
        let modified = records::modify::<KeySpend, _, StoreError>(store, &window.record, |doc| {
            let (spent, expect) = match doc {
                Some(doc) => (doc.body.spent_micros, Expect::Version(doc.version)),
                None => (0, Expect::Absent),
            };
            let after = spent.saturating_add(delta).max(0);
            let step = if check && after > window.limit.amount_micros {
                Step::Done(Amount::from_micros(spent))
            } else {
                let write: RecordWrite = records::put(
                    &window.record,
                    &KeySpend {
                        spent_micros: after,
                    },
                    expect,
                );
                let mut command = command();
                command.records.push(write);
                Step::Write(command, Amount::ZERO)
            };
            Box::pin(std::future::ready(Ok(step)))
        })
        .await?;
        Ok(match modified {
            Modified::Done(spent) => Adjusted::OverLimit { spent },
            Modified::Written(executed, _) => Adjusted::Ran(executed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use server::SpendPeriod;

    #[test]
    fn windows_are_named_by_the_period_they_fall_in() {
        let limit = |period| SpendLimit {
            amount_micros: 1,
            period,
        };
        let at = Timestamp::from_secs(1_800_000_000);
        assert_eq!(
            Window::of("key_1", limit(SpendPeriod::Day), at).record,
            "key_1:2027-01-15"
        );
        assert_eq!(
            Window::of("key_1", limit(SpendPeriod::Month), at).record,
            "key_1:2027-01"
        );
        assert_eq!(
            Window::of("key_1", limit(SpendPeriod::Total), at).record,
            "key_1:total"
        );
        let next_day = at.plus_secs(86_400);
        assert_eq!(
            Window::of("key_1", limit(SpendPeriod::Day), next_day).record,
            "key_1:2027-01-16"
        );
    }
}

/// The buckets of tokens a minute of the keys that have a rate, on this
/// node: a call starts only while its key's bucket holds a token, and its
/// tokens are taken out once it is settled.
#[derive(Debug, Default)]
pub struct TokenLimits {
    shards: [Mutex<HashMap<Arc<str>, crate::domain::TokenBucket>>; 16],
}

impl TokenLimits {
    fn shard(
        &self,
        key_id: &Arc<str>,
    ) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, crate::domain::TokenBucket>> {
        use std::hash::{Hash, Hasher};
        // The shard only spreads the lock: a hasher of fixed keys keeps a
        // key on one shard.
        let mut hasher = std::hash::DefaultHasher::new();
        key_id.hash(&mut hasher);
        self.shards[(hasher.finish() % 16) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call of `key_id`, held to `per_minute` tokens, may start
    /// at `now_micros`.
    pub fn check(
        &self,
        key_id: &Arc<str>,
        per_minute: u32,
        now_micros: i64,
    ) -> crate::domain::TokenCheck {
        self.shard(key_id)
            .entry(key_id.clone())
            .or_insert_with(|| crate::domain::TokenBucket::full(per_minute, now_micros))
            .check(per_minute, now_micros)
    }

    /// Takes a settled call's `tokens` out of the bucket of `key_id`.
    pub fn charge(&self, key_id: &Arc<str>, per_minute: u32, tokens: u64, now_micros: i64) {
        self.shard(key_id)
            .entry(key_id.clone())
            .or_insert_with(|| crate::domain::TokenBucket::full(per_minute, now_micros))
            .charge(per_minute, tokens, now_micros);
    }
}
