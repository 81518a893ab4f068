//! Clocks: where the store, the server and the background jobs get the
//! current instant; the system's, one moved by hand in tests, and the test
//! clock that runs ahead of the system's.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ledger::{MICROS_PER_DAY, Timestamp};

/// A source of the current instant. Passed in, so tests decide what time it is.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_micros(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
    }
}

/// A clock that stands still until it is moved; for tests.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start.micros())))
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, now: Timestamp) {
        self.0.store(now.micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }
}

/// The furthest an [`OffsetClock`] may run ahead of the clock under it:
/// 36,600 days, a hundred years of 366 days.
pub const OFFSET_MAX_MICROS: i64 = 36_600 * MICROS_PER_DAY;

/// Why an [`OffsetClock`] refused to move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdvanceError {
    /// A step of zero or less: the clock only moves forward.
    #[error("the clock only moves forward: a step must be greater than zero")]
    NotForward,
    /// The offset would pass [`OFFSET_MAX_MICROS`].
    #[error("the clock may run at most 36600 days ahead")]
    TooFar,
}

/// The offset after moving `offset_micros` forward by `step_micros`: the
/// rule every advance of an [`OffsetClock`] follows, wherever the offset is
/// kept.
pub fn next_offset(offset_micros: i64, step_micros: i64) -> Result<i64, AdvanceError> {
    if step_micros <= 0 {
        return Err(AdvanceError::NotForward);
    }
    offset_micros
        .checked_add(step_micros)
        .filter(|next| *next <= OFFSET_MAX_MICROS)
        .ok_or(AdvanceError::TooFar)
}

/// A clock that runs ahead of another by an offset that only grows: the
/// test clock, with which operators rehearse months of expiries and
/// renewals in minutes.
///
/// Reading it costs two atomic operations. It never goes backwards: not when
/// the offset moves (it only grows), and not when the clock under it does
/// (a system clock stepped back by NTP), because it never answers less than
/// it last answered.
pub struct OffsetClock {
    base: Arc<dyn Clock>,
    offset_micros: AtomicI64,
    last_micros: AtomicI64,
}

impl OffsetClock {
    /// A clock showing what `base` shows, until it is advanced.
    pub fn new(base: Arc<dyn Clock>) -> OffsetClock {
        OffsetClock {
            base,
            offset_micros: AtomicI64::new(0),
            last_micros: AtomicI64::new(i64::MIN),
        }
    }

    /// A clock on the system's time, until it is advanced.
    pub fn system() -> OffsetClock {
        OffsetClock::new(Arc::new(SystemClock))
    }

    /// How far ahead of the clock under it this one runs, in microseconds.
    pub fn offset_micros(&self) -> i64 {
        self.offset_micros.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `step_micros`; answers the new offset. A
    /// step of zero or less, or one that would take the offset past
    /// [`OFFSET_MAX_MICROS`], is refused and changes nothing.
    pub fn advance(&self, step_micros: i64) -> Result<i64, AdvanceError> {
        // The closure may run again when another thread moved the offset
        // in between; what it last decided is the answer.
        let mut decided = Err(AdvanceError::NotForward);
        let _ = self
            .offset_micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |offset| {
                decided = next_offset(offset, step_micros);
                decided.ok()
            });
        decided
    }

    /// Moves the offset up to `offset_micros`, unless it is there or beyond
    /// already: how a process follows an offset kept elsewhere (in the
    /// store, moved by another node). An offset past [`OFFSET_MAX_MICROS`]
    /// is followed only that far. Answers true when the clock moved.
    pub fn follow(&self, offset_micros: i64) -> bool {
        let offset_micros = offset_micros.min(OFFSET_MAX_MICROS);
        self.offset_micros
            .fetch_max(offset_micros, Ordering::SeqCst)
            < offset_micros
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let shown = self
            .base
            .now()
            .micros()
            .saturating_add(self.offset_micros.load(Ordering::SeqCst));
        let last = self.last_micros.fetch_max(shown, Ordering::SeqCst);
        Timestamp::from_micros(shown.max(last))
    }
}

impl std::fmt::Debug for OffsetClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetClock")
            .field("offset_micros", &self.offset_micros())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use ledger::MICROS_PER_SECOND;

    use super::*;

    const START: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn on_manual() -> (ManualClock, OffsetClock) {
        let base = ManualClock::new(START);
        let clock = OffsetClock::new(Arc::new(base.clone()));
        (base, clock)
    }

    #[test]
    fn an_offset_clock_shows_the_clock_under_it_until_advanced() {
        let (base, clock) = on_manual();
        assert_eq!(clock.now(), START);
        base.advance_secs(5);
        assert_eq!(clock.now(), START.plus_secs(5));
        assert_eq!(clock.offset_micros(), 0);
    }

    #[test]
    fn advancing_moves_now_by_the_step_and_keeps_following_the_clock_under_it() {
        let (base, clock) = on_manual();
        assert_eq!(
            clock.advance(2 * 86_400 * MICROS_PER_SECOND),
            Ok(2 * 86_400 * MICROS_PER_SECOND)
        );
        assert_eq!(clock.now(), START.plus_secs(2 * 86_400));
        assert_eq!(
            clock.advance(MICROS_PER_SECOND),
            Ok((2 * 86_400 + 1) * MICROS_PER_SECOND)
        );
        base.advance_secs(10);
        assert_eq!(clock.now(), START.plus_secs(2 * 86_400 + 11));
    }

    #[test]
    fn a_step_of_zero_or_less_is_refused_and_changes_nothing() {
        let (_base, clock) = on_manual();
        clock.advance(60 * MICROS_PER_SECOND).unwrap();
        for step in [0, -1, -60 * MICROS_PER_SECOND, i64::MIN] {
            assert_eq!(clock.advance(step), Err(AdvanceError::NotForward), "{step}");
        }
        assert_eq!(clock.offset_micros(), 60 * MICROS_PER_SECOND);
        assert_eq!(clock.now(), START.plus_secs(60));
    }

    #[test]
    fn an_offset_past_the_maximum_is_refused_and_changes_nothing() {
        let (_base, clock) = on_manual();
        assert_eq!(clock.advance(OFFSET_MAX_MICROS), Ok(OFFSET_MAX_MICROS));
        assert_eq!(clock.advance(1), Err(AdvanceError::TooFar));
        assert_eq!(clock.offset_micros(), OFFSET_MAX_MICROS);
        let (_base, clock) = on_manual();
        clock.advance(1).unwrap();
        assert_eq!(clock.advance(i64::MAX), Err(AdvanceError::TooFar));
        assert_eq!(clock.offset_micros(), 1);
    }

    #[test]
    fn following_an_offset_only_ever_raises_it() {
        let (_base, clock) = on_manual();
        assert!(clock.follow(3_600 * MICROS_PER_SECOND));
        assert_eq!(clock.now(), START.plus_secs(3_600));
        assert!(!clock.follow(60 * MICROS_PER_SECOND));
        assert!(!clock.follow(3_600 * MICROS_PER_SECOND));
        assert_eq!(clock.offset_micros(), 3_600 * MICROS_PER_SECOND);
        assert_eq!(clock.now(), START.plus_secs(3_600));
        assert!(clock.follow(i64::MAX));
        assert_eq!(clock.offset_micros(), OFFSET_MAX_MICROS);
    }

    #[test]
    fn now_never_goes_backwards_when_the_clock_under_it_does() {
        let (base, clock) = on_manual();
        base.advance_secs(100);
        assert_eq!(clock.now(), START.plus_secs(100));
        base.set(START);
        assert_eq!(clock.now(), START.plus_secs(100));
        base.set(START.plus_secs(101));
        assert_eq!(clock.now(), START.plus_secs(101));
    }

    #[test]
    fn concurrent_advances_each_count_once() {
        let (_base, clock) = on_manual();
        let clock = Arc::new(clock);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        clock.advance(MICROS_PER_SECOND).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(clock.offset_micros(), 4000 * MICROS_PER_SECOND);
        assert_eq!(clock.now(), START.plus_secs(4000));
    }
}
