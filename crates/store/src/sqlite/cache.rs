//! Books as last committed, kept in memory: the writer loads from it instead
//! of the database and refreshes it after every commit; reads of a current
//! balance are served from it without touching the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ledger::{AccountId, Book};

/// A bounded map of account to book, shared by the writer and the readers.
///
/// Only the writer puts books in, right after the commit that produced them
/// and before it answers, so an entry is never older than the last commit
/// that touched its account, and a client that got its answer reads what it
/// wrote. When the map is full, arbitrary entries make room.
pub struct BookCache {
    // A std Mutex: nothing awaits while it is held, and each hold is one
    // map lookup or a batch of inserts.
    books: Mutex<HashMap<AccountId, Arc<Book>>>,
    capacity: usize,
}

impl BookCache {
    /// A cache of at most `capacity` books; zero turns it off.
    pub fn new(capacity: usize) -> BookCache {
        BookCache {
            books: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, Arc<Book>>> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The committed book of an account, if cached.
    pub fn get(&self, account: &AccountId) -> Option<Arc<Book>> {
        self.lock().get(account).cloned()
    }

    /// Replaces the cached books of the accounts a batch committed.
    pub fn put(&self, books: impl IntoIterator<Item = Book>) {
        if self.capacity == 0 {
            return;
        }
        let mut books: Vec<(AccountId, Arc<Book>)> = books
            .into_iter()
            .map(|b| (b.account.id.clone(), Arc::new(b)))
            .collect();
        books.truncate(self.capacity);
        let mut map = self.lock();
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
        }
        map.extend(books);
    }

    /// Forgets everything: another process wrote to the database.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many books are cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
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
        let cache = BookCache::new(3);
        cache.put((0..5).map(|i| book(&format!("a{i}"))));
        assert!(cache.len() <= 3);
        cache.put([book("b")]);
        assert!(cache.len() <= 3);
        assert!(cache.get(&AccountId::parse("b").unwrap()).is_some());
    }

    #[test]
    fn a_zero_capacity_cache_stays_empty() {
        let cache = BookCache::new(0);
        cache.put([book("a")]);
        assert_eq!(cache.len(), 0);
    }
}
