//! The embedded SQLite store: one writer thread doing group commit, a small
//! pool of reader connections, WAL with full sync so that an acknowledged
//! write survives `kill -9` and power loss.

pub mod backup;
mod books;
mod deferred;
mod packed;
mod read;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ledger::{
    Account, AccountId, Book, Feature, FeatureId, Hold, HoldId, Lot, LotId, Timestamp, Transaction,
    TxId,
};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::records::{Record, RecordQuery};
use crate::{
    AuditReport, BoxFuture, Clock, Command, DueAccounts, Executed, HoldFilter, Store, StoreError,
    StoreStats, TxFilter,
};
use books::Books;
use writer::{Job, Writer};

/// Migrations, in order; each runs once, inside a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_ledger.sql")),
    (2, include_str!("migrations/0002_lots_live.sql")),
    (3, include_str!("migrations/0003_journal_by_block.sql")),
    (4, include_str!("migrations/0004_lots_synced.sql")),
    (
        5,
        include_str!("migrations/0005_records_and_external_ids.sql"),
    ),
    (
        6,
        include_str!("migrations/0006_grant_reason_and_actor.sql"),
    ),
    (7, include_str!("migrations/0007_gateway_calls.sql")),
    (8, include_str!("migrations/0008_holds_status_check.sql")),
    (9, include_str!("migrations/0009_free_features.sql")),
    (10, include_str!("migrations/0010_history_filters.sql")),
    (11, include_str!("migrations/0011_account_search.sql")),
    (12, include_str!("migrations/0012_usage_read_by_block.sql")),
];

/// How the SQLite store is set up.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The database file.
    pub path: PathBuf,
    /// Reader connections.
    pub readers: usize,
    /// The most commands one batch applies.
    pub batch_size_max: usize,
    /// The most commands waiting for a batch; more wait to be queued.
    pub queue_len_max: usize,
    /// How long to wait for a lock held by another process before
    /// answering `store_unavailable`.
    pub busy_timeout: std::time::Duration,
    /// Memory for accounts' books, packed (about 110 bytes an account with
    /// one lot, the table included); zero keeps none.
    pub books_budget_bytes: usize,
    /// Whether a background thread reads every account's book into memory
    /// at open, for a store that serves requests (a one-off command has no
    /// use for them).
    pub preload_books: bool,
    /// WAL pages after which the writer checkpoints at commit.
    pub wal_autocheckpoint_pages: i64,
    /// How often a separate thread checkpoints the WAL, if at all.
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Transactions a spent lot's row may lag the journal before it is
    /// written back; zero writes every change at once.
    pub lot_lag_txs: i64,
    /// Lots whose rows may lag at once.
    pub lots_lagging_max: usize,
}

impl SqliteOptions {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            readers: 4,
            batch_size_max: 1024,
            queue_len_max: 16_384,
            busy_timeout: std::time::Duration::from_secs(5),
            books_budget_bytes: 160 << 20,
            preload_books: true,
            wal_autocheckpoint_pages: 30_000,
            checkpoint_interval: Some(std::time::Duration::from_millis(200)),
            // Four blocks of the journal: a read of a lot looks in at most
            // five blocks for what its row does not reflect yet.
            lot_lag_txs: 4 << 16,
            lots_lagging_max: 524_288,
        }
    }
}

/// Opens a connection with the durability settings every connection shares.
fn connect(path: &Path, busy_timeout: std::time::Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    // WAL lets readers run beside the writer; synchronous=FULL syncs the WAL
    // at every commit, so a commit that returned is on disk.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(conn)
}

/// Applies the migrations not yet applied; returns how many ran.
pub fn migrate(path: &Path) -> Result<usize, StoreError> {
    let mut conn = connect(path, std::time::Duration::from_secs(5))?;
    migrate_conn(&mut conn)
}

fn migrate_conn(conn: &mut Connection) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let applied: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let mut ran = 0;
    for (version, sql) in MIGRATIONS {
        if *version > applied {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                rusqlite::params![version, crate::SystemClock.now().micros()],
            )?;
            ran += 1;
        }
    }
    tx.commit()?;
    Ok(ran)
}

/// Runs several queries against one snapshot: in WAL mode each statement
/// outside a transaction sees the latest commit, so a book read in parts
/// could otherwise see half of a batch.
fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Prepared once per connection: BEGIN and COMMIT as text would be
    // parsed again on every read.
    if !conn.is_autocommit() {
        // A read that failed and could not even roll back left its
        // transaction open; end it rather than lose the connection.
        conn.prepare_cached("ROLLBACK")?.execute([])?;
    }
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = f(conn);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.prepare_cached(end).and_then(|mut s| s.execute([]));
    match (result, ended) {
        (Ok(value), Ok(_)) => Ok(value),
        (Err(error), _) => Err(error),
        (Ok(_), Err(error)) => Err(error.into()),
    }
}

/// Reads an account's current book and keeps it in memory if that is still
/// safe (see [`Books::fill`]).
fn current_book(
    conn: &Connection,
    books: &Books,
    id: &AccountId,
    now: Timestamp,
) -> Result<Option<Book>, StoreError> {
    // Taken before the snapshot begins; see Books::fill.
    let epoch = books.epoch();
    let book = snapshot(conn, |conn| read::book(conn, id))?;
    if let Some(book) = &book {
        books.fill(epoch, book, now);
    }
    Ok(book)
}

/// Sets a flag while a thread runs: raised when made, lowered when dropped,
/// however the thread ends.
struct Running(Arc<std::sync::atomic::AtomicBool>);

impl Running {
    fn new(flag: Arc<std::sync::atomic::AtomicBool>) -> Running {
        flag.store(true, std::sync::atomic::Ordering::Release);
        Running(flag)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Accounts whose books one step of [`preload_books`] reads.
const PRELOAD_CHUNK: usize = 500;

/// Reads every account's book once, in id order, and keeps it, so that after
/// a restart writes and reads find books in memory without waiting for
/// traffic to bring them. Between chunks it sleeps three times as long as
/// the chunk took, so it takes at most a quarter of a core. Stops when done,
/// when the budget is spent, or when the store is dropped.
fn preload_books(
    conn: Connection,
    books: Arc<Books>,
    clock: Arc<dyn Clock>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let began = std::time::Instant::now();
    let mut after: Option<AccountId> = None;
    let mut typical = 0;
    loop {
        let started = std::time::Instant::now();
        // Taken before the snapshot begins; see Books::fill.
        let epoch = books.epoch();
        let chunk = snapshot(&conn, |conn| {
            let accounts = read::accounts(conn, after.as_ref(), PRELOAD_CHUNK)?;
            let mut books = Vec::with_capacity(accounts.len());
            for account in &accounts {
                books.extend(read::book(conn, &account.id)?);
            }
            Ok((accounts.last().map(|a| a.id.clone()), books))
        });
        let (last, read) = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::warn!(%error, "preloading books failed");
                return;
            }
        };
        let now = clock.now();
        for book in &read {
            books.fill(epoch, book, now);
        }
        if let Some(book) = read.first() {
            typical = packed::Packed::new(book, now).footprint();
        }
        if last.is_none() || books.is_full(typical) {
            tracing::info!(
                kept = books.len(),
                megabytes = books.bytes() >> 20,
                seconds = began.elapsed().as_secs_f64(),
                "books preloaded"
            );
            return;
        }
        after = last;
        if !matches!(
            stop.recv_timeout(started.elapsed() * 3),
            Err(RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

/// Copies the WAL into the database now and then, without blocking the
/// writer or the readers (a passive checkpoint), until the store is dropped.
fn checkpoint_until(
    conn: Connection,
    every: std::time::Duration,
    stop: std::sync::mpsc::Receiver<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "checkpoint failed");
        }
    }
}

/// A pool of reader connections; a caller waits when all are busy.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl Readers {
    /// Runs `f` now, on this thread, if a connection is idle; hands `f`
    /// back otherwise.
    fn try_with<T, F>(&self, f: F) -> Result<Result<T, StoreError>, F>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        let Some(conn) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            return Err(f);
        };
        Ok(self.run_and_return(conn, f))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(conn) = idle.pop() {
                    break conn;
                }
                idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
            }
        };
        self.run_and_return(conn, f)
    }

    /// Runs `f` on a connection taken from the idle ones, then gives it back.
    fn run_and_return<T>(
        &self,
        conn: Connection,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = f(&conn);
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        self.returned.notify_one();
        result
    }
}

/// The SQLite store.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    books: Arc<Books>,
    clock: Arc<dyn Clock>,
    /// Dropping it stops the checkpoint thread.
    _checkpoints: std::sync::mpsc::Sender<()>,
    /// Dropping it stops the thread preloading books.
    _preloads: std::sync::mpsc::Sender<()>,
    /// True while that thread runs.
    preloading: Arc<std::sync::atomic::AtomicBool>,
    stats: Arc<StoreStats>,
    readers: Arc<Readers>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database, and starts the writer.
    pub fn open(options: SqliteOptions, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        let mut conn = connect(&options.path, options.busy_timeout)?;
        migrate_conn(&mut conn)?;
        // The writer keeps more pages cached than a reader: it loads every
        // book a batch touches.
        conn.pragma_update(None, "cache_size", -32_768)?;
        // With a checkpoint thread (below), the writer checkpoints only as a
        // backstop, so that copying the WAL into the database seldom stalls
        // a batch.
        conn.pragma_update(None, "wal_autocheckpoint", options.wal_autocheckpoint_pages)?;
        let readers = (0..options.readers.max(1))
            .map(|_| {
                let conn = connect(&options.path, options.busy_timeout)?;
                conn.pragma_update(None, "cache_size", -8_192)?;
                Ok(conn)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (jobs, jobs_rx) = mpsc::channel(options.queue_len_max.max(1));
        let stats = Arc::new(StoreStats::default());
        let books = Arc::new(Books::new(options.books_budget_bytes));
        let writer = Writer::new(
            conn,
            books.clone(),
            clock.clone(),
            options.batch_size_max.max(1),
            stats.clone(),
            writer::Lag {
                txs: options.lot_lag_txs,
                lots_max: options.lots_lagging_max,
            },
        )?;
        let handle = std::thread::Builder::new()
            .name("creditd-writer".into())
            .spawn(move || writer.run(jobs_rx))
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let (preloads, stop_preload) = std::sync::mpsc::channel::<()>();
        let preloading = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if options.preload_books && options.books_budget_bytes > 0 {
            let reader = connect(&options.path, options.busy_timeout)?;
            let (books, clock) = (books.clone(), clock.clone());
            let running = Running::new(preloading.clone());
            std::thread::Builder::new()
                .name("creditd-preload".into())
                .spawn(move || {
                    let _running = running;
                    preload_books(reader, books, clock, stop_preload)
                })
                .map_err(|e| StoreError::Internal(e.to_string()))?;
        }
        let (checkpoints, stop) = std::sync::mpsc::channel::<()>();
        if let Some(every) = options.checkpoint_interval {
            let checkpointer = connect(&options.path, options.busy_timeout)?;
            std::thread::Builder::new()
                .name("creditd-checkpoint".into())
                .spawn(move || checkpoint_until(checkpointer, every, stop))
                .map_err(|e| StoreError::Internal(e.to_string()))?;
        }
        Ok(SqliteStore {
            jobs,
            books,
            clock,
            _checkpoints: checkpoints,
            _preloads: preloads,
            preloading,
            stats,
            readers: Arc::new(Readers {
                idle: Mutex::new(readers),
                returned: Condvar::new(),
            }),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// How many accounts' books are kept in memory.
    pub fn books_kept(&self) -> usize {
        self.books.len()
    }

    /// Whether the thread that reads every account's book after opening is
    /// still at it; a benchmark waits for it, so that it measures the
    /// steady state rather than the start.
    pub fn preloading(&self) -> bool {
        self.preloading.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops taking commands, lets the writer finish what it has, and waits for it.
    pub fn close(self) {
        let SqliteStore { jobs, writer, .. } = self;
        drop(jobs);
        if let Some(handle) = writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }

    /// A read of a few rows by key: run on the calling thread when a reader
    /// connection is idle, as it takes about as long as handing it to another
    /// thread would (tens of microseconds, from pages the operating system
    /// has cached); on the blocking pool otherwise.
    fn read_point<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        match self.readers.try_with(f) {
            Ok(result) => Box::pin(std::future::ready(result)),
            Err(f) => self.read(f),
        }
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let readers = self.readers.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || readers.with(f))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?
        })
    }
}

impl Store for SqliteStore {
    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    fn migrations(&self) -> BoxFuture<'_, Result<crate::Migrations, StoreError>> {
        self.read(|conn| {
            let applied: i64 = conn.query_row(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?;
            Ok(crate::Migrations {
                applied,
                known: MIGRATIONS.last().map_or(0, |(version, _)| *version),
            })
        })
    }

    fn execute(&self, command: Command) -> BoxFuture<'_, Result<Executed, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.jobs
                .send(Job::Command { command, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn account(&self, id: AccountId) -> BoxFuture<'_, Result<Option<Account>, StoreError>> {
        self.read_point(move |conn| read::account(conn, &id))
    }

    fn accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Account>, StoreError>> {
        self.read(move |conn| read::accounts(conn, after.as_ref(), limit))
    }

    fn search_accounts(
        &self,
        text: String,
        after: Option<AccountId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Account>, StoreError>> {
        self.read(move |conn| read::search_accounts(conn, &text, after.as_ref(), limit))
    }

    fn book(
        &self,
        id: AccountId,
        at: Option<Timestamp>,
    ) -> BoxFuture<'_, Result<Option<Book>, StoreError>> {
        if at.is_none()
            && let Some(book) = self.books.get(&id)
        {
            return Box::pin(std::future::ready(Ok(Some(book))));
        }
        match at {
            None => {
                let (books, now) = (self.books.clone(), self.clock.now());
                self.read_point(move |conn| current_book(conn, &books, &id, now))
            }
            // Replays the account's journal: no point read.
            Some(at) => self.read(move |conn| snapshot(conn, |conn| read::book_at(conn, &id, at))),
        }
    }

    fn standing(
        &self,
        id: AccountId,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<ledger::Standing>, StoreError>> {
        if let Some(standing) = self.books.standing(&id, now) {
            return Box::pin(std::future::ready(Ok(Some(standing))));
        }
        let books = self.books.clone();
        self.read_point(move |conn| {
            Ok(current_book(conn, &books, &id, now)?.map(|book| book.standing(now)))
        })
    }

    fn lots(
        &self,
        id: AccountId,
        before: Option<LotId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Lot>, StoreError>> {
        self.read(move |conn| read::lots(conn, &id, before, limit))
    }

    fn lot(&self, id: LotId) -> BoxFuture<'_, Result<Option<Lot>, StoreError>> {
        self.read_point(move |conn| read::lot(conn, id))
    }

    fn hold(&self, id: HoldId) -> BoxFuture<'_, Result<Option<Hold>, StoreError>> {
        self.read_point(move |conn| read::hold(conn, id))
    }

    fn holds(&self, filter: HoldFilter) -> BoxFuture<'_, Result<Vec<Hold>, StoreError>> {
        self.read(move |conn| read::holds(conn, &filter))
    }

    fn transaction(&self, id: TxId) -> BoxFuture<'_, Result<Option<Transaction>, StoreError>> {
        self.read_point(move |conn| read::transaction(conn, id))
    }

    fn transactions(
        &self,
        filter: TxFilter,
    ) -> BoxFuture<'_, Result<Vec<Transaction>, StoreError>> {
        self.read(move |conn| read::transactions(conn, &filter))
    }

    fn journal_head(&self) -> BoxFuture<'_, Result<crate::JournalPosition, StoreError>> {
        self.read_point(read::journal_head)
    }

    fn journal_after(
        &self,
        after: crate::JournalPosition,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<Transaction>, crate::JournalPosition), StoreError>> {
        self.read(move |conn| read::journal_after(conn, after, limit))
    }

    fn feature(&self, id: FeatureId) -> BoxFuture<'_, Result<Option<Feature>, StoreError>> {
        self.read_point(move |conn| read::feature(conn, &id))
    }

    fn features(&self) -> BoxFuture<'_, Result<Vec<Feature>, StoreError>> {
        self.read(read::features)
    }

    fn due_accounts(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<DueAccounts, StoreError>> {
        self.read(move |conn| read::due_accounts(conn, now, limit))
    }

    fn pending_holds(&self) -> BoxFuture<'_, Result<crate::PendingHolds, StoreError>> {
        self.read(read::pending_holds)
    }

    fn prune_idempotency(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        // In small chunks through the writer, so that batches never wait
        // long behind a prune.
        const CHUNK: usize = 1000;
        Box::pin(async move {
            let mut total = 0u64;
            loop {
                let (reply, answer) = oneshot::channel();
                self.jobs
                    .send(Job::Prune {
                        before,
                        limit: CHUNK,
                        reply,
                    })
                    .await
                    .map_err(|_| StoreError::Closed)?;
                let deleted = answer.await.map_err(|_| StoreError::Closed)??;
                total += deleted;
                if deleted < CHUNK as u64 {
                    return Ok(total);
                }
            }
        })
    }

    fn totals(
        &self,
        id: AccountId,
        at: Option<Timestamp>,
    ) -> BoxFuture<'_, Result<Option<(Book, ledger::Totals)>, StoreError>> {
        self.read(move |conn| snapshot(conn, |conn| read::totals(conn, &id, at)))
    }

    fn usage_between(
        &self,
        id: AccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> BoxFuture<'_, Result<ledger::Amount, StoreError>> {
        self.read(move |conn| snapshot(conn, |conn| read::usage_between(conn, &id, from, to)))
    }

    fn feature_usage(
        &self,
        id: AccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::FeatureUse>, StoreError>> {
        self.read(move |conn| snapshot(conn, |conn| read::feature_usage(conn, &id, from, to)))
    }

    fn calls(
        &self,
        query: crate::usage::CallQuery,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::Call>, StoreError>> {
        self.read(move |conn| snapshot(conn, |conn| read::calls(conn, &query)))
    }

    fn usage_buckets(
        &self,
        id: AccountId,
        from_hour: i64,
        to_hour: i64,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::Bucket>, StoreError>> {
        self.read(move |conn| {
            snapshot(conn, |conn| {
                read::usage_buckets(conn, &id, from_hour, to_hour)
            })
        })
    }

    fn usage_sums(
        &self,
        id: AccountId,
        from_hour: i64,
        to_hour: i64,
        by: crate::usage::SumBy,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::Bucket>, StoreError>> {
        self.read(move |conn| {
            snapshot(conn, |conn| {
                read::usage_sums(conn, &id, from_hour, to_hour, by)
            })
        })
    }

    fn external(
        &self,
        id: AccountId,
        external: ledger::ExternalId,
    ) -> BoxFuture<'_, Result<Option<Transaction>, StoreError>> {
        self.read_point(move |conn| Ok(read::external(conn, &id, &external)?.map(|(tx, _)| tx)))
    }

    fn record(
        &self,
        kind: String,
        id: String,
    ) -> BoxFuture<'_, Result<Option<Record>, StoreError>> {
        self.read_point(move |conn| snapshot(conn, |conn| read::record(conn, &kind, &id)))
    }

    fn records(&self, query: RecordQuery) -> BoxFuture<'_, Result<Vec<Record>, StoreError>> {
        self.read(move |conn| snapshot(conn, |conn| read::records(conn, &query)))
    }

    fn audit(&self) -> BoxFuture<'_, Result<AuditReport, StoreError>> {
        self.read(|conn| snapshot(conn, read::audit))
    }
}

impl crate::rows::Columns for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn int_opt(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn text_opt(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    /// The build settings in `.cargo/config.toml` reach the bundled SQLite:
    /// without them every connection shares one page cache behind one mutex.
    #[test]
    fn sqlite_is_built_with_a_page_cache_per_connection() {
        let conn = Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    /// A database that kept a generated admin key's hash as a setting
    /// keeps it as an admin key record, found by its hash.
    #[test]
    fn the_admin_key_setting_becomes_an_api_key_record() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for (version, sql) in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [version])
                .unwrap();
        }
        let hash = "ab".repeat(32);
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ('admin_key_sha256', ?1)",
            [&hash],
        )
        .unwrap();
        assert_eq!(migrate_conn(&mut conn).unwrap(), MIGRATIONS.len() - 4);
        let record = read::record(&conn, "api_key", "key_initial")
            .unwrap()
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&record.body).unwrap();
        assert_eq!(body["kind"], "admin");
        assert_eq!(body["hash"], hash);
        assert_eq!(record.version, 1);
        let owner = read::lookup_owner(&conn, "api_key", "hash", &hash).unwrap();
        assert_eq!(owner.as_deref(), Some("key_initial"));
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'settings'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn a_snapshot_ends_its_transaction_whether_or_not_the_read_failed() {
        let conn = Connection::open_in_memory().unwrap();
        let one = |conn: &Connection| -> Result<i64, StoreError> {
            Ok(conn.query_row("SELECT 1", [], |row| row.get(0))?)
        };
        assert_eq!(snapshot(&conn, one).unwrap(), 1);
        assert!(conn.is_autocommit());
        let failed: Result<(), StoreError> =
            snapshot(&conn, |_| Err(StoreError::Internal("read failed".into())));
        assert!(matches!(failed, Err(StoreError::Internal(_))));
        assert!(conn.is_autocommit());
        // A transaction left open is ended before the next snapshot begins.
        conn.execute_batch("BEGIN").unwrap();
        assert_eq!(snapshot(&conn, one).unwrap(), 1);
        assert!(conn.is_autocommit());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_point_read_answers_at_once_when_a_reader_is_idle_and_waits_for_one_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            readers: 1,
            preload_books: false,
            ..SqliteOptions::new(dir.path().join("reads.db"))
        };
        let store = SqliteStore::open(options, Arc::new(crate::SystemClock)).unwrap();

        // The one reader is idle: the read runs on this thread, so its
        // answer is there at the first poll.
        assert!(matches!(store.lot(LotId(1)).now_or_never(), Some(Ok(None))));

        // No reader is idle: the read goes to the blocking pool and waits
        // there for a connection instead of failing.
        let taken = store.readers.idle.lock().unwrap().pop().unwrap();
        let mut waiting = store.lot(LotId(1));
        assert!((&mut waiting).now_or_never().is_none());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!((&mut waiting).now_or_never().is_none());
        store.readers.idle.lock().unwrap().push(taken);
        store.readers.returned.notify_one();
        assert!(matches!(waiting.await, Ok(None)));
    }
}
