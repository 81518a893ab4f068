//! Lot balances written behind the journal: which changes to a lot's row
//! wait, and when they are written back.
//!
//! Spending from a lot changes only its `remaining`. Written at once, that
//! dirties one page of the lots table per consume, a page no other consume
//! of the batch shares when accounts are many, and SQLite writes every dirty
//! page whole into the WAL. The journal entry of the same consume lands
//! among pages the whole batch shares, and its postings say what the lot
//! lost. So a lot's row may lag its journal:
//!
//! - A row's `remaining` reflects every transaction up to `synced_tx`, or up
//!   to the store-wide watermark `W` (table `lots_synced`) if that is later;
//!   transactions after that point that post to the lot are still to be
//!   added. Every read of a lot adds them, from the same snapshot, so reads
//!   are exact.
//! - A change that leaves the lot's `live` flag and `voided_at` as they were
//!   may wait; any other change (a new lot, a lot emptied or refilled, a
//!   void) is written at once, with `synced_tx` set, so the indexes on
//!   `live` stay true.
//! - Waiting lots are written back once they lag more than a set number of
//!   transactions, or when too many wait, together with every waiting lot
//!   of neighbouring id (lots of neighbouring id share a page).
//! - `W` is raised, in the same transaction, to just before the oldest
//!   change still waiting.
//!
//! What waits is kept in memory only: after a crash the journal still has
//! it, and the writer adds the journal after `W` to the rows when it opens
//! (and when another process has written), before it decides anything.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use ledger::{Amount, LotId};

/// Lots whose ids agree but for these low bits are written back together.
const GROUP_BITS: u32 = 6;

/// `W` is written only once it has risen by this many transactions, so that
/// most batches leave the watermark's page alone.
const WATERMARK_STEP: i64 = 4096;

/// Hashes the store's own numeric ids with one multiplication: they are
/// handed out in sequence, not chosen by anyone, so nothing can be gained
/// by choosing ids that collide, and a lookup costs one memory access
/// rather than a walk down a tree.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of lots, hashed as [`IdMap`] is.
pub type LotSet = HashSet<LotId, BuildHasherDefault<IdHasher>>;

/// The group a lot is written back with, and its place in the group.
fn group_of(id: LotId) -> (i64, u32) {
    (id.0 >> GROUP_BITS, (id.0 & ((1 << GROUP_BITS) - 1)) as u32)
}

/// A lot change of one batch, as the planner needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LotChange {
    /// The lot.
    pub id: LotId,
    /// What it holds after the batch.
    pub remaining: Amount,
    /// Whether the row may wait: the lot existed before the batch and the
    /// batch left its `live` flag and `voided_at` as they were.
    pub may_wait: bool,
}

/// What one batch writes of lots beyond its own changes, and what waits.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// This batch's changes not to write as changes: they wait, or are
    /// among `write_back`.
    pub held: LotSet,
    /// Lots to write back now, with what they hold.
    pub write_back: Vec<(LotId, Amount)>,
    /// What rows written now reflect: the batch's last transaction.
    pub synced_tx: i64,
    /// A new watermark to store, if it rose enough.
    pub watermark: Option<i64>,
    /// Changes that wait, with the point their rows reflect.
    wait: Vec<(LotId, Amount, i64)>,
    /// Lots written at once by this batch.
    written: Vec<LotId>,
}

#[derive(Clone, Copy, Debug)]
struct Waiting {
    remaining: Amount,
    /// The row reflects every transaction up to here.
    since: i64,
}

/// The writer's lots whose rows lag the journal.
#[derive(Debug)]
pub struct Deferred {
    lots: IdMap<LotId, Waiting>,
    /// Which lots of each group wait, one bit each.
    groups: IdMap<i64, u64>,
    /// Lots in the order they began waiting; entries for lots written back
    /// or begun again since are skipped when reached.
    order: VecDeque<(i64, LotId)>,
    /// The watermark as stored.
    watermark: i64,
    lag_txs: i64,
    lots_max: usize,
    watermark_step: i64,
}

impl Deferred {
    /// Nothing waiting, with the stored watermark. A lot waits for at most
    /// `lag_txs` transactions (zero writes every change at once) and at
    /// most `lots_max` lots wait.
    pub fn new(watermark: i64, lag_txs: i64, lots_max: usize) -> Deferred {
        Deferred {
            lots: IdMap::default(),
            groups: IdMap::default(),
            order: VecDeque::new(),
            watermark,
            lag_txs: lag_txs.max(0),
            lots_max,
            watermark_step: WATERMARK_STEP,
        }
    }

    /// The watermark as stored.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// How many lots wait.
    pub fn len(&self) -> usize {
        self.lots.len()
    }

    /// What the waiting lots hold, to write them all back.
    pub fn all(&self) -> Vec<(LotId, Amount)> {
        let mut all: Vec<(LotId, Amount)> =
            self.lots.iter().map(|(id, w)| (*id, w.remaining)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    /// Forgets what waits and takes `watermark` as stored: the rows were
    /// brought up to date from the journal.
    pub fn reset(&mut self, watermark: i64) {
        self.lots.clear();
        self.groups.clear();
        self.order.clear();
        self.watermark = watermark;
    }

    /// Plans a batch whose transactions run from `first_tx` to `last_tx`
    /// and whose lots changed as `changes` say. Changes nothing here: the
    /// plan applies with [`Deferred::commit`] once the batch is committed.
    pub fn plan(&self, changes: &[LotChange], first_tx: i64, last_tx: i64) -> Plan {
        let mut plan = Plan {
            synced_tx: last_tx,
            ..Plan::default()
        };
        // What would wait after this batch, before any write-back.
        let mut view: IdMap<LotId, Waiting> = IdMap::default();
        let mut view_groups: IdMap<i64, u64> = IdMap::default();
        for change in changes {
            if change.may_wait && self.lag_txs > 0 && self.lots_max > 0 {
                let since = self.lots.get(&change.id).map_or(first_tx - 1, |w| w.since);
                view.insert(
                    change.id,
                    Waiting {
                        remaining: change.remaining,
                        since,
                    },
                );
                let (group, bit) = group_of(change.id);
                *view_groups.entry(group).or_default() |= 1 << bit;
                plan.held.insert(change.id);
            } else {
                plan.written.push(change.id);
            }
        }
        let written: LotSet = plan.written.iter().copied().collect();
        let current = |id: &LotId| -> Option<Waiting> {
            if written.contains(id) {
                return None;
            }
            view.get(id).or_else(|| self.lots.get(id)).copied()
        };
        let leaving = written
            .iter()
            .filter(|id| self.lots.contains_key(id))
            .count();
        let arriving = view.keys().filter(|id| !self.lots.contains_key(id)).count();
        let mut waiting_len = self.lots.len() - leaving + arriving;
        let mut flushed = LotSet::default();
        // Oldest first: the queue, then this batch's new waits.
        let fresh = view
            .iter()
            .filter(|(id, _)| !self.lots.contains_key(id))
            .map(|(id, w)| (w.since, *id));
        let mut oldest_left = None;
        for (since, id) in self.order.iter().copied().chain(fresh) {
            let Some(entry) = current(&id) else { continue };
            if entry.since != since || flushed.contains(&id) {
                continue;
            }
            let overdue = since.saturating_add(self.lag_txs) < last_tx;
            if !overdue && waiting_len <= self.lots_max {
                oldest_left = Some(since);
                break;
            }
            // Write back the lot and its waiting neighbours.
            let (group, _) = group_of(id);
            let mut bits = self.groups.get(&group).copied().unwrap_or(0)
                | view_groups.get(&group).copied().unwrap_or(0);
            while bits != 0 {
                let member = LotId((group << GROUP_BITS) | i64::from(bits.trailing_zeros()));
                bits &= bits - 1;
                if flushed.contains(&member) {
                    continue;
                }
                if let Some(w) = current(&member) {
                    flushed.insert(member);
                    plan.write_back.push((member, w.remaining));
                    waiting_len -= 1;
                }
            }
        }
        plan.write_back.sort_unstable_by_key(|(id, _)| *id);
        // Everything before the oldest change still waiting is in the rows.
        let reflected = oldest_left.unwrap_or(last_tx);
        if reflected >= self.watermark.saturating_add(self.watermark_step) {
            plan.watermark = Some(reflected);
        }
        for (id, w) in view {
            if !flushed.contains(&id) {
                plan.wait.push((id, w.remaining, w.since));
            }
        }
        plan
    }

    /// Applies a plan whose batch committed.
    pub fn commit(&mut self, plan: Plan) {
        for id in plan
            .written
            .iter()
            .chain(plan.write_back.iter().map(|(id, _)| id))
        {
            if self.lots.remove(id).is_some() {
                let (group, bit) = group_of(*id);
                if let Some(bits) = self.groups.get_mut(&group) {
                    *bits &= !(1 << bit);
                    if *bits == 0 {
                        self.groups.remove(&group);
                    }
                }
            }
        }
        for (id, remaining, since) in plan.wait {
            match self.lots.get_mut(&id) {
                Some(w) => w.remaining = remaining,
                None => {
                    self.lots.insert(id, Waiting { remaining, since });
                    self.order.push_back((since, id));
                    let (group, bit) = group_of(id);
                    *self.groups.entry(group).or_default() |= 1 << bit;
                }
            }
        }
        // Drop the queue's head of entries no longer waiting as queued.
        while let Some((since, id)) = self.order.front() {
            match self.lots.get(id) {
                Some(w) if w.since == *since => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
        if let Some(watermark) = plan.watermark {
            self.watermark = watermark;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(id: i64, remaining: i64) -> LotChange {
        LotChange {
            id: LotId(id),
            remaining: Amount::from_micros(remaining),
            may_wait: true,
        }
    }

    fn flip(id: i64, remaining: i64) -> LotChange {
        LotChange {
            may_wait: false,
            ..spend(id, remaining)
        }
    }

    /// Plans and commits one batch of transactions `first..=last`.
    fn run(deferred: &mut Deferred, changes: &[LotChange], first: i64, last: i64) -> Plan {
        let plan = deferred.plan(changes, first, last);
        let shown = Plan {
            held: plan.held.clone(),
            write_back: plan.write_back.clone(),
            synced_tx: plan.synced_tx,
            watermark: plan.watermark,
            ..Plan::default()
        };
        deferred.commit(plan);
        shown
    }

    #[test]
    fn a_spend_waits_and_a_change_of_live_or_void_is_written_at_once() {
        let mut deferred = Deferred::new(0, 1000, 100);
        let plan = run(&mut deferred, &[spend(1, 9), flip(2, 0)], 1, 2);
        assert_eq!(plan.held, LotSet::from_iter([LotId(1)]));
        assert!(plan.write_back.is_empty());
        assert_eq!(deferred.len(), 1);
        // Emptying a waiting lot writes it at once and it no longer waits.
        let plan = run(&mut deferred, &[flip(1, 0)], 3, 3);
        assert!(plan.held.is_empty());
        assert_eq!(deferred.len(), 0);
    }

    #[test]
    fn a_lag_of_zero_writes_everything_at_once() {
        let mut deferred = Deferred::new(0, 0, 100);
        let plan = run(&mut deferred, &[spend(1, 9)], 1, 1);
        assert!(plan.held.is_empty());
        assert_eq!(deferred.len(), 0);
    }

    #[test]
    fn a_lot_is_written_back_once_it_lags_and_with_its_neighbours() {
        let mut deferred = Deferred::new(0, 10, 100);
        run(
            &mut deferred,
            &[spend(64, 5), spend(65, 5), spend(200, 5)],
            1,
            3,
        );
        // Lot 65 is spent again later: it still lags from its first wait.
        run(&mut deferred, &[spend(65, 4)], 6, 6);
        let plan = run(&mut deferred, &[spend(300, 1)], 12, 12);
        // 64 and 65 share a group; 200 lagged as long and goes too; 300 is new.
        assert_eq!(
            plan.write_back,
            vec![
                (LotId(64), Amount::from_micros(5)),
                (LotId(65), Amount::from_micros(4)),
                (LotId(200), Amount::from_micros(5)),
            ]
        );
        assert_eq!(plan.held, LotSet::from_iter([LotId(300)]));
        assert_eq!(deferred.all(), vec![(LotId(300), Amount::from_micros(1))]);
    }

    #[test]
    fn a_change_in_the_batch_that_writes_a_lot_back_is_what_is_written() {
        let mut deferred = Deferred::new(0, 10, 100);
        run(&mut deferred, &[spend(1, 5)], 1, 1);
        let plan = run(&mut deferred, &[spend(1, 3)], 20, 20);
        // Written back, not also written as a change.
        assert_eq!(plan.write_back, vec![(LotId(1), Amount::from_micros(3))]);
        assert_eq!(plan.held, LotSet::from_iter([LotId(1)]));
        assert_eq!(deferred.len(), 0);
    }

    #[test]
    fn too_many_waiting_lots_write_back_the_oldest() {
        let mut deferred = Deferred::new(0, 1_000_000, 2);
        run(&mut deferred, &[spend(1, 1)], 1, 1);
        run(&mut deferred, &[spend(100, 1)], 2, 2);
        let plan = run(&mut deferred, &[spend(200, 1)], 3, 3);
        assert_eq!(plan.write_back, vec![(LotId(1), Amount::from_micros(1))]);
        assert_eq!(deferred.len(), 2);
    }

    #[test]
    fn the_watermark_stays_before_the_oldest_waiting_change_and_rises_in_steps() {
        let step = WATERMARK_STEP;
        let mut deferred = Deferred::new(0, 10 * step, 1_000);
        // A lot waits from transaction 5: nothing after 4 may be assumed.
        run(&mut deferred, &[spend(1, 1)], 5, 5);
        let plan = run(&mut deferred, &[flip(2, 0)], 3 * step, 3 * step);
        assert_eq!(plan.watermark, None);
        assert_eq!(deferred.watermark(), 0);
        // Once it is written back, the watermark rises to the batch's end.
        let plan = run(&mut deferred, &[flip(1, 0)], 3 * step + 1, 3 * step + 1);
        assert_eq!(plan.watermark, Some(3 * step + 1));
        // A small rise is not written.
        let plan = run(&mut deferred, &[flip(3, 0)], 3 * step + 2, 3 * step + 2);
        assert_eq!(plan.watermark, None);
        // A lot that begins waiting at 5 * step + 1 holds the watermark
        // just before it, in that batch and after.
        let plan = run(&mut deferred, &[spend(4, 1)], 5 * step + 1, 5 * step + 1);
        assert_eq!(plan.watermark, Some(5 * step));
        let plan = run(&mut deferred, &[flip(5, 0)], 7 * step, 7 * step);
        assert_eq!(plan.watermark, None);
        assert_eq!(deferred.watermark(), 5 * step);
    }

    #[test]
    fn a_plan_that_is_not_committed_changes_nothing() {
        let mut deferred = Deferred::new(0, 10, 100);
        run(&mut deferred, &[spend(1, 5)], 1, 1);
        let _rolled_back = deferred.plan(&[spend(1, 2), spend(7, 1)], 2, 2);
        assert_eq!(deferred.all(), vec![(LotId(1), Amount::from_micros(5))]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A batch: some lots changed, each with whether it may wait.
        fn batch() -> impl Strategy<Value = Vec<(i64, bool)>> {
            proptest::collection::vec((0i64..300, proptest::bool::weighted(0.8)), 0..12)
        }

        proptest! {
            #[test]
            fn rows_and_waiting_lots_always_hold_the_latest_values(
                batches in proptest::collection::vec((batch(), 1i64..40), 1..80),
                lag in 0i64..200,
                lots_max in 0usize..40,
                watermark_step in 1i64..50,
            ) {
                let mut deferred = Deferred::new(0, lag, lots_max);
                deferred.watermark_step = watermark_step;
                let mut rows: HashMap<LotId, Amount> = HashMap::new();
                let mut latest: HashMap<LotId, Amount> = HashMap::new();
                let mut last_tx = 0;
                let mut value = 0;
                for (changes, txs) in batches {
                    let first_tx = last_tx + 1;
                    last_tx += txs;
                    let mut seen = HashSet::new();
                    let changes: Vec<LotChange> = changes
                        .into_iter()
                        .filter(|(id, _)| seen.insert(*id))
                        .map(|(id, may_wait)| {
                            value += 1;
                            LotChange { id: LotId(id), remaining: Amount::from_micros(value), may_wait }
                        })
                        .collect();
                    let plan = deferred.plan(&changes, first_tx, last_tx);
                    for change in &changes {
                        latest.insert(change.id, change.remaining);
                        if !plan.held.contains(&change.id) {
                            rows.insert(change.id, change.remaining);
                        }
                        prop_assert!(change.may_wait || !plan.held.contains(&change.id));
                    }
                    for (id, remaining) in &plan.write_back {
                        rows.insert(*id, *remaining);
                    }
                    deferred.commit(plan);

                    let waiting: HashMap<LotId, Amount> = deferred.all().into_iter().collect();
                    for (id, remaining) in &latest {
                        let shown = waiting.get(id).or_else(|| rows.get(id));
                        prop_assert_eq!(shown, Some(remaining), "{}", id);
                    }
                    prop_assert!(deferred.len() <= lots_max);
                    // Rows reflect everything up to the watermark: a lot
                    // waiting since a transaction is not yet reflected.
                    prop_assert!(deferred.watermark() <= last_tx);
                    for (id, w) in &deferred.lots {
                        prop_assert!(w.since >= deferred.watermark());
                        prop_assert!(w.since + lag >= last_tx, "{} lags", id);
                        let (group, bit) = group_of(*id);
                        prop_assert!(deferred.groups.get(&group).is_some_and(|b| b & (1 << bit) != 0));
                    }
                    let bits: u32 = deferred.groups.values().map(|b| b.count_ones()).sum();
                    prop_assert_eq!(bits as usize, deferred.len());
                }
            }
        }
    }
}
