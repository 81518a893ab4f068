//! Every account's book as last committed, packed, in memory: the writer
//! decides from here instead of reading the database, and balances and
//! checks are answered from here.

use std::collections::HashSet;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ledger::{AccountId, Book, Standing, Timestamp};

use super::packed::Packed;

/// The packed books, within a budget of bytes, shared by the writer and the
/// readers.
///
/// The writer puts the books of a batch right after its commit and before it
/// answers, so a client that got its answer reads what it wrote. A reader
/// that loaded a book from the database may add it through [`Books::fill`],
/// under rules that keep every entry as new as the last commit that touched
/// its account: the writer decides from these books, so a stale one would
/// spend credits twice.
///
/// Entries are not evicted to make room: when the budget is spent, accounts
/// without an entry stay without one (their books are read from the
/// database). Whenever the writer drops an entry or declines to store a book
/// it committed, the epoch moves, so that no reader can put back a book
/// older than that commit.
pub struct Books {
    // A std RwLock: nothing awaits while it is held. Reads (one lookup and
    // unpacking) share it, so that readers on different cores do not queue
    // behind one another's cache misses; writes (the inserts of one batch,
    // a fill) hold it alone.
    inner: RwLock<Inner>,
    budget_bytes: usize,
}

struct Inner {
    set: HashSet<Packed>,
    /// The packed books' own bytes, as the allocator rounds them.
    packed_bytes: usize,
    /// Counts the moments an entry newer than the database a reader saw
    /// could have gone missing: clears, drops, declined books.
    epoch: u64,
}

/// What the hash table itself takes for `len` entries: a pointer and a
/// length per slot, and a control byte, at most 7 of 8 slots used, slots a
/// power of two.
fn table_bytes(len: usize) -> usize {
    let slots = (len.saturating_mul(8) / 7).max(1).next_power_of_two();
    slots * (std::mem::size_of::<Packed>() + 1)
}

impl Inner {
    fn fits(&self, budget: usize, len: usize, packed_bytes: usize) -> bool {
        table_bytes(len).saturating_add(packed_bytes) <= budget
    }
}

impl Books {
    /// Packed books in at most about `budget_bytes` of memory; zero keeps none.
    pub fn new(budget_bytes: usize) -> Books {
        Books {
            inner: RwLock::new(Inner {
                set: HashSet::new(),
                packed_bytes: 0,
                epoch: 0,
            }),
            budget_bytes,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The committed book of an account, if kept.
    pub fn get(&self, account: &AccountId) -> Option<Book> {
        self.read().set.get(account.as_str()).map(Packed::book)
    }

    /// The account's standing at `now`, if its book is kept: from the packed
    /// header when it covers `now`, else from the book.
    pub fn standing(&self, account: &AccountId, now: Timestamp) -> Option<Standing> {
        let book = {
            let inner = self.read();
            let packed = inner.set.get(account.as_str())?;
            if let Some(standing) = packed.standing(now) {
                return Some(standing);
            }
            packed.book()
        };
        Some(book.standing(now))
    }

    /// Stores the books a batch committed at `now`. A kept book is replaced;
    /// an account without one gets one if the budget allows. A book that
    /// cannot be kept takes any older entry with it and moves the epoch.
    pub fn put(&self, books: impl IntoIterator<Item = Book>, now: Timestamp) {
        let packed: Vec<Packed> = books
            .into_iter()
            .map(|book| Packed::new(&book, now))
            .collect();
        if packed.is_empty() {
            return;
        }
        let mut inner = self.write();
        for packed in packed {
            let footprint = packed.footprint();
            // With room for it even as a new entry, replace at once: one
            // lookup in a table of a million accounts instead of two.
            let len = inner.set.len() + 1;
            let bytes = inner.packed_bytes + footprint;
            if inner.fits(self.budget_bytes, len, bytes) {
                let old = inner.set.replace(packed).map_or(0, |old| old.footprint());
                inner.packed_bytes = bytes - old;
                continue;
            }
            let old = inner.set.get(packed.id()).map(Packed::footprint);
            let len = inner.set.len() + usize::from(old.is_none());
            let bytes = inner.packed_bytes - old.unwrap_or(0) + footprint;
            if inner.fits(self.budget_bytes, len, bytes) {
                inner.packed_bytes = bytes;
                inner.set.replace(packed);
            } else {
                if old.is_some() {
                    inner.set.remove(packed.id());
                    inner.packed_bytes -= old.unwrap_or(0);
                }
                inner.epoch += 1;
            }
        }
    }

    /// Where the books stand, for a reader about to load a book: take it
    /// before the read transaction begins and hand it to [`Books::fill`].
    pub fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// Adds a book a reader loaded from a snapshot that began after it took
    /// `epoch`, if that is still safe: the account has no entry, the epoch
    /// has not moved, and the budget allows.
    ///
    /// Why that is enough: if a commit touching the account came before the
    /// snapshot, the reader saw it. If it came after, the writer puts its
    /// book after the commit: either before this fill, so an entry is
    /// present (or the writer dropped or declined it, which moved the epoch)
    /// and the fill is dropped, or after it, so the writer's newer book
    /// replaces this one before the writer answers or decides anything else.
    /// Writes by another process clear the books before the writer next
    /// decides.
    pub fn fill(&self, epoch: u64, book: &Book, now: Timestamp) {
        if self.budget_bytes == 0 {
            return;
        }
        let packed = Packed::new(book, now);
        let mut inner = self.write();
        let len = inner.set.len() + 1;
        let bytes = inner.packed_bytes + packed.footprint();
        if inner.epoch != epoch
            || inner.set.contains(packed.id())
            || !inner.fits(self.budget_bytes, len, bytes)
        {
            return;
        }
        inner.packed_bytes = bytes;
        inner.set.insert(packed);
    }

    /// Forgets everything: another process wrote to the database.
    pub fn clear(&self) {
        let mut inner = self.write();
        inner.set = HashSet::new();
        inner.packed_bytes = 0;
        inner.epoch += 1;
    }

    /// How many books are kept.
    pub fn len(&self) -> usize {
        self.read().set.len()
    }

    /// About how many bytes the kept books take.
    pub fn bytes(&self) -> usize {
        let inner = self.read();
        table_bytes(inner.set.len()) + inner.packed_bytes
    }

    /// True when no account without a book kept could get one of `typical`
    /// bytes packed.
    pub fn is_full(&self, typical: usize) -> bool {
        let inner = self.read();
        !inner.fits(
            self.budget_bytes,
            inner.set.len() + 1,
            inner.packed_bytes + typical,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::packed::tests::{account, lot, typical};
    use ledger::Amount;

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_secs(1_800_000_100)
    }

    fn with_debt(text: &str, debt: i64) -> Book {
        let mut book = typical(text);
        book.account.debt = Amount::credits(debt);
        book
    }

    /// A budget with room for the table and `books` typical books.
    fn budget_for(books: usize) -> usize {
        table_bytes(books) + books * Packed::new(&typical("a"), now()).footprint()
    }

    #[test]
    fn a_kept_book_is_the_book_that_was_put() {
        let books = Books::new(1 << 20);
        books.put([typical("a")], now());
        assert_eq!(books.get(&id("a")), Some(typical("a")));
        assert_eq!(books.get(&id("b")), None);
        books.put([with_debt("a", 3)], now());
        assert_eq!(
            books.get(&id("a")).unwrap().account.debt,
            Amount::credits(3)
        );
        assert_eq!(books.len(), 1);
    }

    #[test]
    fn a_standing_is_answered_from_the_header_or_else_from_the_book() {
        let books = Books::new(1 << 20);
        let account = account("a");
        let start = account.created_at;
        let mut expiring = lot(&account, 1, 5);
        expiring.expires_at = Some(start.plus_secs(100));
        let mut lasting = lot(&account, 2, 7);
        lasting.priority = 90;
        books.put(
            [Book::new(account, vec![expiring, lasting], Vec::new()).unwrap()],
            start,
        );
        assert_eq!(
            books
                .standing(&id("a"), start.plus_secs(10))
                .unwrap()
                .available,
            Amount::credits(12)
        );
        // Past the span the header covers: the book answers, without the
        // expired lot.
        assert_eq!(
            books
                .standing(&id("a"), start.plus_secs(100))
                .unwrap()
                .available,
            Amount::credits(7)
        );
        assert_eq!(books.standing(&id("b"), start), None);
    }

    #[test]
    fn the_budget_bounds_what_is_kept_and_the_writer_replaces_within_it() {
        // Room for two books and a few bytes more, so that one may grow a little.
        let budget = budget_for(2) + 16;
        let books = Books::new(budget);
        books.put([typical("a"), typical("b"), typical("c")], now());
        assert_eq!(books.len(), 2);
        assert!(books.bytes() <= budget);
        assert!(books.is_full(Packed::new(&typical("d"), now()).footprint()));
        assert_eq!(books.get(&id("c")), None);
        // A kept account's new book replaces the old one.
        books.put([with_debt("a", 1)], now());
        assert_eq!(
            books.get(&id("a")).unwrap().account.debt,
            Amount::credits(1)
        );
    }

    #[test]
    fn a_book_that_no_longer_fits_takes_its_entry_with_it_and_moves_the_epoch() {
        let books = Books::new(budget_for(1));
        books.put([typical("a")], now());
        let epoch = books.epoch();
        let mut grown = typical("a");
        grown.account.name = Some("x".repeat(500));
        books.put([grown], now());
        assert_eq!(books.get(&id("a")), None);
        assert_ne!(books.epoch(), epoch);
        assert_eq!(books.bytes(), table_bytes(0));
    }

    #[test]
    fn a_declined_book_moves_the_epoch_so_an_older_read_cannot_fill_it() {
        let books = Books::new(budget_for(2));
        books.put([typical("a")], now());
        // A reader begins; the writer commits "b" with a book too large to
        // keep; the reader then fills the older, smaller "b", which would fit.
        let epoch = books.epoch();
        let mut grown = typical("b");
        grown.account.name = Some("x".repeat(500));
        books.put([grown], now());
        books.fill(epoch, &typical("b"), now());
        assert_eq!(books.get(&id("b")), None);
        // A reader that began after the decline may fill it.
        books.fill(books.epoch(), &typical("b"), now());
        assert_eq!(books.get(&id("b")), Some(typical("b")));
    }

    #[test]
    fn a_reader_fills_only_an_absent_entry_in_an_unchanged_epoch() {
        // The writer put a newer book while the reader read: it stays.
        let books = Books::new(1 << 20);
        let epoch = books.epoch();
        books.put([with_debt("a", 1)], now());
        books.fill(epoch, &typical("a"), now());
        assert_eq!(
            books.get(&id("a")).unwrap().account.debt,
            Amount::credits(1)
        );

        // Cleared meanwhile (another process wrote): dropped.
        let epoch = books.epoch();
        books.clear();
        books.fill(epoch, &typical("a"), now());
        assert_eq!(books.get(&id("a")), None);

        // Nothing happened: kept, within the budget.
        let books = Books::new(budget_for(1));
        let epoch = books.epoch();
        books.fill(epoch, &typical("a"), now());
        books.fill(epoch, &typical("b"), now());
        assert_eq!(books.get(&id("a")), Some(typical("a")));
        assert_eq!(books.len(), 1);
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let books = Books::new(0);
        books.put([typical("a")], now());
        books.fill(books.epoch(), &typical("b"), now());
        assert_eq!(books.len(), 0);
    }

    #[test]
    fn a_million_typical_books_fit_in_about_a_hundred_and_forty_megabytes() {
        let per_book = Packed::new(&typical("scale-s123456"), now()).footprint();
        let total = table_bytes(1_000_001) + 1_000_001 * per_book;
        assert!(total < 140 << 20, "{total} bytes");
    }
}
