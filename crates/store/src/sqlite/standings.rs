//! Every account's standing in a few bytes, so that checks over a million
//! accounts are answered from memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;

use ledger::{AccountId, Amount, MICROS_PER_SECOND, Standing, Timestamp};

/// Instants are kept as whole seconds after this one (2020-01-01T00:00:00Z),
/// which a `u32` counts until the year 2156.
const BASE_MICROS: i64 = 1_577_836_800 * MICROS_PER_SECOND;

/// Account standings, bounded, shared by the writer and the readers.
///
/// An entry costs 40 bytes: a 128-bit keyed hash of the account id in place
/// of the id, and the span rounded inward to whole seconds (a shorter span
/// only sends more checks to the book). The hash is keyed per process, so no
/// one can pick ids that collide, and two of a million ids collide with a
/// probability near 10^-27.
///
/// Entries are never evicted: when the map is full, accounts without one
/// stay without one. That keeps [`Standings::fill`] safe with one epoch that
/// moves only when everything is cleared, however many accounts there are.
pub struct Standings {
    inner: Mutex<Inner>,
    capacity: usize,
    keys: (RandomState, RandomState),
}

struct Inner {
    map: HashMap<Key, Entry, Prehashed>,
    /// Counts clears: the moments an entry newer than the database a reader
    /// saw could have left the map.
    epoch: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(u64, u64);

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed hash: its first half is the map's hash.
        state.write_u64(self.0);
    }
}

#[derive(Clone, Copy)]
struct Entry {
    headroom_micros: i64,
    available_micros: i64,
    from_secs: u32,
    until_secs: u32,
}

impl Entry {
    /// The standing rounded inward to whole seconds, or `None` if nothing of
    /// its span is left after rounding.
    fn new(standing: &Standing) -> Option<Entry> {
        let from = standing.from.micros().saturating_sub(BASE_MICROS);
        let until = standing.until.micros().saturating_sub(BASE_MICROS);
        let from_secs =
            u32::try_from(from.max(0).saturating_add(MICROS_PER_SECOND - 1) / MICROS_PER_SECOND)
                .ok()?;
        let until_secs = u32::try_from((until / MICROS_PER_SECOND).clamp(0, i64::from(u32::MAX)))
            .expect("clamped into range");
        (from_secs < until_secs).then_some(Entry {
            headroom_micros: standing.headroom_micros,
            available_micros: standing.available.micros(),
            from_secs,
            until_secs,
        })
    }

    fn standing(&self) -> Standing {
        let instant =
            |secs: u32| Timestamp::from_micros(BASE_MICROS + i64::from(secs) * MICROS_PER_SECOND);
        Standing {
            from: instant(self.from_secs),
            until: instant(self.until_secs),
            headroom_micros: self.headroom_micros,
            available: Amount::from_micros(self.available_micros),
        }
    }
}

/// Hashes a [`Key`] to its first half.
#[derive(Clone, Copy, Default)]
struct Prehashed;

impl BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only Key is hashed with this hasher, through write_u64; fold
        // anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Standings {
    /// A map of at most `capacity` standings; zero turns it off.
    pub fn new(capacity: usize) -> Standings {
        Standings {
            inner: Mutex::new(Inner {
                map: HashMap::with_hasher(Prehashed),
                epoch: 0,
            }),
            capacity,
            keys: (RandomState::new(), RandomState::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, account: &AccountId) -> Key {
        Key(
            self.keys.0.hash_one(account.as_str()),
            self.keys.1.hash_one(account.as_str()),
        )
    }

    /// The account's standing, if one is kept and it covers `now`.
    pub fn get(&self, account: &AccountId, now: Timestamp) -> Option<Standing> {
        let key = self.key(account);
        let entry = *self.lock().map.get(&key)?;
        Some(entry.standing()).filter(|s| s.covers(now))
    }

    /// Records the standings of the accounts a batch committed. An account
    /// with an entry always gets the new one (or loses the old one); an
    /// account without one gets one if there is room.
    pub fn put<'a>(&self, standings: impl IntoIterator<Item = (&'a AccountId, Standing)>) {
        if self.capacity == 0 {
            return;
        }
        let entries: Vec<(Key, Option<Entry>)> = standings
            .into_iter()
            .map(|(account, standing)| (self.key(account), Entry::new(&standing)))
            .collect();
        let mut inner = self.lock();
        for (key, entry) in entries {
            match entry {
                Some(entry) if inner.map.len() < self.capacity || inner.map.contains_key(&key) => {
                    inner.map.insert(key, entry);
                }
                _ => {
                    inner.map.remove(&key);
                }
            }
        }
    }

    /// Where the map stands, for a reader about to load a book: take it
    /// before the read begins and hand it to [`Standings::fill`].
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Adds the standing of a book a reader loaded after it took `epoch`,
    /// if the account has no entry, nothing was cleared since, and there is
    /// room. The reasoning is [`super::cache::BookCache::fill`]'s: a commit
    /// the reader did not see is followed by the writer's
    /// [`Standings::put`], which either came first (an entry is present, or
    /// the map was full and still is) or comes later and replaces this one.
    pub fn fill(&self, epoch: u64, account: &AccountId, standing: Standing) {
        if self.capacity == 0 {
            return;
        }
        let key = self.key(account);
        let Some(entry) = Entry::new(&standing) else {
            return;
        };
        let mut inner = self.lock();
        if inner.epoch != epoch || inner.map.len() >= self.capacity || inner.map.contains_key(&key)
        {
            return;
        }
        inner.map.insert(key, entry);
    }

    /// Forgets everything: another process wrote to the database.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.epoch += 1;
    }

    /// How many standings are kept.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no account without a standing can get one.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_800_000_000 + secs)
    }

    fn standing(from: Timestamp, until: Timestamp, available: i64) -> Standing {
        Standing {
            from,
            until,
            headroom_micros: available,
            available: Amount::from_micros(available),
        }
    }

    #[test]
    fn a_standing_is_kept_for_its_span_rounded_inward_to_seconds() {
        let standings = Standings::new(10);
        let from = Timestamp::from_micros(at(0).micros() + 1);
        let until = Timestamp::from_micros(at(100).micros() + 500_000);
        standings.put([(&id("a"), standing(from, until, 7))]);
        assert_eq!(standings.get(&id("a"), from), None);
        let kept = standings.get(&id("a"), at(1)).unwrap();
        assert_eq!((kept.from, kept.until), (at(1), at(100)));
        assert_eq!(kept.available, Amount::from_micros(7));
        assert_eq!(standings.get(&id("a"), at(100)), None);
        assert_eq!(standings.get(&id("b"), at(1)), None);
    }

    #[test]
    fn open_ended_spans_are_clamped_and_past_ones_dropped() {
        let standings = Standings::new(10);
        let forever = Timestamp::from_micros(i64::MAX);
        let dawn = Timestamp::from_micros(i64::MIN);
        standings.put([(&id("a"), standing(dawn, forever, 1))]);
        let kept = standings.get(&id("a"), at(0)).unwrap();
        assert_eq!(kept.from, Timestamp::from_micros(BASE_MICROS));
        assert!(kept.until > at(100 * 365 * 86_400));
        // A span at the end of time cannot be kept (nor overflow).
        let end = Timestamp::from_micros(i64::MAX - 5);
        standings.put([(&id("b"), standing(end, forever, 1))]);
        assert_eq!(standings.get(&id("b"), end), None);
        // A span over before 2020 cannot be kept, and takes the old entry with it.
        standings.put([(&id("a"), standing(dawn, Timestamp::EPOCH, 1))]);
        assert_eq!(standings.get(&id("a"), Timestamp::EPOCH), None);
        assert_eq!(standings.len(), 0);
    }

    #[test]
    fn the_writer_replaces_entries_and_adds_only_while_there_is_room() {
        let standings = Standings::new(1);
        let (from, until) = (at(0), at(100));
        standings.put([(&id("a"), standing(from, until, 1))]);
        standings.put([(&id("b"), standing(from, until, 2))]);
        assert_eq!(standings.len(), 1);
        assert_eq!(standings.get(&id("b"), at(1)), None);
        standings.put([(&id("a"), standing(from, until, 3))]);
        assert_eq!(
            standings.get(&id("a"), at(1)).unwrap().available,
            Amount::from_micros(3)
        );
    }

    #[test]
    fn a_reader_fills_only_an_absent_entry_in_an_unchanged_epoch() {
        let (from, until) = (at(0), at(100));
        // The writer put a newer standing while the reader read: it stays.
        let standings = Standings::new(3);
        let epoch = standings.epoch();
        standings.put([(&id("a"), standing(from, until, 2))]);
        standings.fill(epoch, &id("a"), standing(from, until, 1));
        assert_eq!(
            standings.get(&id("a"), at(1)).unwrap().available,
            Amount::from_micros(2)
        );
        // Cleared meanwhile: dropped.
        let epoch = standings.epoch();
        standings.clear();
        standings.fill(epoch, &id("a"), standing(from, until, 1));
        assert_eq!(standings.get(&id("a"), at(1)), None);
        // Full: dropped.
        let standings = Standings::new(1);
        let epoch = standings.epoch();
        standings.fill(epoch, &id("a"), standing(from, until, 1));
        standings.fill(epoch, &id("b"), standing(from, until, 1));
        assert!(standings.get(&id("a"), at(1)).is_some());
        assert_eq!(standings.get(&id("b"), at(1)), None);
    }

    #[test]
    fn a_zero_capacity_map_stays_empty() {
        let standings = Standings::new(0);
        standings.put([(&id("a"), standing(at(0), at(100), 1))]);
        standings.fill(0, &id("b"), standing(at(0), at(100), 1));
        assert_eq!(standings.len(), 0);
    }
}
