//! Books as last committed, kept in memory: the writer loads from it instead
//! of the database and refreshes it after every commit; reads of a current
//! balance are served from it without touching the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ledger::{AccountId, Book, Timestamp};

use super::standings::Standings;

/// A bounded map of account to book, shared by the writer and the readers.
///
/// The writer puts books in right after the commit that produced them and
/// before it answers, so a client that got its answer reads what it wrote.
/// A reader that loaded a book from the database may add it too, through
/// [`BookCache::fill`], under rules that keep every entry at least as new as
/// the last commit that touched its account: the writer decides from these
/// books, so a stale one would spend credits twice. When the map is full,
/// arbitrary entries make room.
///
/// Beside the books it keeps every account's [`ledger::Standing`], far
/// smaller, for checks; the writer records both, and clearing clears both.
pub struct BookCache {
    // A std Mutex: nothing awaits while it is held, and each hold is one
    // map lookup or a batch of inserts.
    inner: Mutex<Inner>,
    capacity: usize,
    standings: Standings,
}

struct Inner {
    books: HashMap<AccountId, Arc<Book>>,
    /// Counts evictions and clears: the moments an entry newer than the
    /// database a reader saw could have left the map.
    epoch: u64,
}

impl BookCache {
    /// A cache of at most `capacity` books and `standings` standings; zero
    /// turns either off.
    pub fn new(capacity: usize, standings: usize) -> BookCache {
        BookCache {
            inner: Mutex::new(Inner {
                books: HashMap::new(),
                epoch: 0,
            }),
            capacity,
            standings: Standings::new(standings),
        }
    }

    /// The standings kept beside the books.
    pub fn standings(&self) -> &Standings {
        &self.standings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The committed book of an account, if cached.
    pub fn get(&self, account: &AccountId) -> Option<Arc<Book>> {
        self.lock().books.get(account).cloned()
    }

    /// Replaces the cached books and standings of the accounts a batch
    /// committed at `now`.
    pub fn put(&self, books: impl IntoIterator<Item = Book>, now: Timestamp) {
        let mut books: Vec<(AccountId, Arc<Book>)> = books
            .into_iter()
            .map(|b| (b.account.id.clone(), Arc::new(b)))
            .collect();
        self.standings
            .put(books.iter().map(|(id, b)| (id, b.standing(now))));
        if self.capacity == 0 {
            return;
        }
        books.truncate(self.capacity);
        let mut inner = self.lock();
        let map = &mut inner.books;
        let added = books.iter().filter(|(id, _)| !map.contains_key(id)).count();
        let overflow = (map.len() + added).saturating_sub(self.capacity);
        if overflow > 0 {
            let incoming: std::collections::HashSet<&AccountId> =
                books.iter().map(|(id, _)| id).collect();
            let victims: Vec<AccountId> = map
                .keys()
                .filter(|id| !incoming.contains(id))
                .take(overflow)
                .cloned()
                .collect();
            for victim in victims {
                map.remove(&victim);
            }
            inner.epoch += 1;
        }
        inner.books.extend(books);
    }

    /// Where the cache stands, for a reader about to load a book: take it
    /// before the read transaction begins and hand it to [`BookCache::fill`].
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Adds a book a reader loaded from a snapshot that began after it took
    /// `epoch`, if that is still safe: the account has no entry, nothing was
    /// evicted or cleared since, and there is room.
    ///
    /// Why that is enough: if a commit touching the account came before the
    /// snapshot, the reader saw it. If it came after, the writer puts its
    /// book after the commit: either before this fill, so an entry is
    /// present (or was evicted, which moved the epoch) and the fill is
    /// dropped, or after it, so the writer's newer book replaces this one
    /// before the writer answers or decides anything else. Writes by another
    /// process clear the cache before the writer next decides.
    pub fn fill(&self, epoch: u64, book: Book) {
        let mut inner = self.lock();
        if inner.epoch != epoch
            || inner.books.len() >= self.capacity
            || inner.books.contains_key(&book.account.id)
        {
            return;
        }
        inner.books.insert(book.account.id.clone(), Arc::new(book));
    }

    /// Forgets everything: another process wrote to the database.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.books.clear();
        inner.epoch += 1;
        self.standings.clear();
    }

    /// How many books are cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().books.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{Amount, Metadata, NewAccount, Timestamp};

    fn book(id: &str) -> Book {
        let account = NewAccount::new(
            AccountId::parse(id).unwrap(),
            None,
            Metadata::empty(),
            Amount::ZERO,
        )
        .unwrap()
        .open(Timestamp::EPOCH);
        Book::new(account, Vec::new(), Vec::new()).unwrap()
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = BookCache::new(3, 0);
        cache.put((0..5).map(|i| book(&format!("a{i}"))), Timestamp::EPOCH);
        assert!(cache.len() <= 3);
        cache.put([book("b")], Timestamp::EPOCH);
        assert!(cache.len() <= 3);
        assert!(cache.get(&AccountId::parse("b").unwrap()).is_some());
    }

    #[test]
    fn a_zero_capacity_cache_stays_empty() {
        let cache = BookCache::new(0, 0);
        cache.put([book("a")], Timestamp::EPOCH);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_reader_fills_only_an_absent_entry_in_an_unchanged_epoch() {
        let id = AccountId::parse("a").unwrap();
        let mut newer = book("a");
        newer.account.debt = Amount::credits(1);

        // The writer put a newer book while the reader read: it stays.
        let cache = BookCache::new(3, 0);
        let epoch = cache.epoch();
        cache.put([newer.clone()], Timestamp::EPOCH);
        cache.fill(epoch, book("a"));
        assert_eq!(cache.get(&id).unwrap().account.debt, Amount::credits(1));

        // ... and it was evicted again before the fill: still no stale entry.
        let cache = BookCache::new(1, 0);
        let epoch = cache.epoch();
        cache.put([newer], Timestamp::EPOCH);
        cache.put([book("b")], Timestamp::EPOCH);
        cache.fill(epoch, book("a"));
        assert!(cache.get(&id).is_none());

        // Cleared meanwhile (another process wrote): dropped.
        let cache = BookCache::new(3, 0);
        let epoch = cache.epoch();
        cache.clear();
        cache.fill(epoch, book("a"));
        assert!(cache.get(&id).is_none());

        // Nothing happened: kept, within capacity.
        let cache = BookCache::new(1, 0);
        let epoch = cache.epoch();
        cache.fill(epoch, book("a"));
        cache.fill(epoch, book("b"));
        assert!(cache.get(&id).is_some());
        assert_eq!(cache.len(), 1);
    }
}
