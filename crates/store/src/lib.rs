//! Where the ledger lives: the [`Store`] trait and its SQLite and PostgreSQL implementations.
//!
//! Writes go through group commit: concurrent [`Command`]s are collected into
//! a batch, each is decided by the pure ledger core against books loaded once
//! per batch, and the whole batch is written in one database transaction with
//! one sync. A command is answered only after its batch is durable.

mod batch;
pub mod clock;
mod codec;
mod command;
mod error;
pub mod postgres;
pub mod records;
mod rows;
pub mod sqlite;
pub mod usage;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use ledger::{
    Account, AccountId, Book, Feature, FeatureId, Hold, HoldId, Lot, Source, Timestamp,
    Transaction, TxId, TxKind, Violation,
};

pub use clock::{AdvanceError, Clock, ManualClock, OffsetClock, SystemClock};
pub use command::{
    Charge, Command, Executed, IdempotencyKey, Op, Outcome, Refused, Render, StoredResponse,
};
pub use error::StoreError;
pub use records::{Record, RecordQuery};

/// Counters of the write path, for metrics.
#[derive(Default)]
pub struct StoreStats {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Commands answered by committed batches.
    pub commands: AtomicU64,
    /// Batches that failed and were rolled back.
    pub failed_batches: AtomicU64,
    /// Microseconds spent applying and committing batches.
    pub batch_micros: AtomicU64,
    /// Told of each committed batch (its commands and microseconds), once
    /// set: the server's histograms.
    observer: std::sync::OnceLock<BatchObserver>,
}

/// What is told of each committed batch: its commands and its microseconds.
pub type BatchObserver = Box<dyn Fn(usize, u64) + Send + Sync>;

impl std::fmt::Debug for StoreStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreStats")
            .field("batches", &self.batches)
            .field("commands", &self.commands)
            .field("failed_batches", &self.failed_batches)
            .field("batch_micros", &self.batch_micros)
            .finish_non_exhaustive()
    }
}

impl StoreStats {
    /// Counts one committed batch of `commands` that took `micros`.
    pub fn record_batch(&self, commands: usize, micros: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
        self.batch_micros.fetch_add(micros, Ordering::Relaxed);
        if let Some(observe) = self.observer.get() {
            observe(commands, micros);
        }
    }

    /// Tells `observer` of every batch committed from now on; only the
    /// first observer set is kept.
    pub fn observe_batches(&self, observer: BatchObserver) {
        let _ = self.observer.set(observer);
    }
}

/// A boxed future, so that [`Store`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The largest page any list returns.
pub const PAGE_LIMIT_MAX: usize = 100;

/// The fewest characters an account search looks for: the search index
/// is of character trigrams.
pub const SEARCH_LEN_MIN: usize = 3;

/// Which transactions to list: one page of an account's journal, newest
/// first. Each filter left empty keeps everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxFilter {
    /// The account.
    pub account: AccountId,
    /// Only these kinds; every kind when empty.
    pub kinds: Vec<TxKind>,
    /// Only grants whose lot came from one of these sources; every
    /// transaction when empty. With `kinds` set as well, a page holds only
    /// grants, and none when `kinds` leaves grants out.
    pub sources: Vec<Source>,
    /// Created at or after this instant.
    pub from: Option<Timestamp>,
    /// Created before this instant.
    pub to: Option<Timestamp>,
    /// Only transactions older than this one (the page cursor).
    pub before: Option<TxId>,
    /// At most this many, newest first; at most [`PAGE_LIMIT_MAX`].
    pub limit: usize,
}

impl TxFilter {
    /// The newest `limit` transactions of `account`, of every kind, at any time.
    pub fn new(account: AccountId, limit: usize) -> TxFilter {
        TxFilter {
            account,
            kinds: Vec::new(),
            sources: Vec::new(),
            from: None,
            to: None,
            before: None,
            limit,
        }
    }

    /// The cursor of the page after `page`, a page read with this filter:
    /// its last transaction's id when the page is full, none at the end.
    pub fn next_cursor(&self, page: &[Transaction]) -> Option<TxId> {
        let full = page.len() >= self.limit.min(PAGE_LIMIT_MAX);
        full.then(|| page.last().map(|t| t.id)).flatten()
    }

    /// The kinds a page may hold: `kinds`, narrowed to grants when
    /// `sources` is set; every kind when this answers `None`.
    pub(crate) fn kinds_kept(&self) -> Option<Vec<TxKind>> {
        match (self.kinds.is_empty(), self.sources.is_empty()) {
            (true, true) => None,
            (false, true) => Some(self.kinds.clone()),
            _ if self.kinds.is_empty() || self.kinds.contains(&TxKind::Grant) => {
                Some(vec![TxKind::Grant])
            }
            _ => Some(Vec::new()),
        }
    }
}

/// How far the database's schema is migrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrations {
    /// The newest migration the database has applied.
    pub applied: i64,
    /// The newest this build knows.
    pub known: i64,
}

/// Which holds to list: one page of an account's holds, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldFilter {
    /// The account.
    pub account: AccountId,
    /// Only holds that read as this status at `now`; every hold when none.
    pub status: Option<ledger::HoldStatus>,
    /// The instant statuses are read at: a pending hold past its expiry
    /// reads as expired before the sweep writes its release.
    pub now: Timestamp,
    /// Only holds older than this one (the page cursor).
    pub before: Option<HoldId>,
    /// At most this many; at most [`PAGE_LIMIT_MAX`].
    pub limit: usize,
}

impl HoldFilter {
    /// The SQL condition on a hold's stored status and expiry that keeps
    /// the holds reading as `status` at `now`, the placeholder given.
    pub(crate) fn status_sql(&self, now: &str) -> String {
        use ledger::HoldStatus::*;
        // A condition that does not compare with `now` still names it, as
        // a database that types its parameters wants each of them used.
        let unused = format!("CAST({now} AS BIGINT) IS NOT NULL");
        match self.status {
            None => unused,
            Some(Pending) => format!("status = 'pending' AND expires_at > {now}"),
            Some(Expired) => {
                format!("(status = 'expired' OR (status = 'pending' AND expires_at <= {now}))")
            }
            Some(status) => format!("status = '{}' AND {unused}", status.code()),
        }
    }
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Accounts checked.
    pub accounts: u64,
    /// Transactions checked.
    pub transactions: u64,
    /// Lots checked.
    pub lots: u64,
    /// Every violation, with the account it was found in.
    pub violations: Vec<(AccountId, Violation)>,
    /// Rows that belong to no account.
    pub orphans: Vec<String>,
}

impl AuditReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.orphans.is_empty()
    }

    /// Counts one account with its lots and journal, and notes every
    /// violation `ledger::audit_account` finds in them.
    pub(crate) fn check_account(
        &mut self,
        account: &Account,
        lots: &[Lot],
        holds: &[Hold],
        journal: &[Transaction],
    ) {
        self.accounts += 1;
        self.lots += lots.len() as u64;
        self.transactions += journal.len() as u64;
        for violation in ledger::audit_account(account, lots, holds, journal) {
            self.violations.push((account.id.clone(), violation));
        }
    }

    /// Notes the `orphans` rows of `table` that belong to no account, when
    /// there are any; `orphans_query` counts them.
    pub(crate) fn note_orphans(&mut self, table: &str, orphans: i64) {
        if orphans > 0 {
            self.orphans
                .push(format!("{orphans} rows of {table} belong to no account"));
        }
    }
}

/// The tables whose rows each belong to an account, which `verify` checks
/// for rows whose account is missing.
pub(crate) const ACCOUNT_TABLES: [&str; 3] = ["lots", "holds", "transactions"];

/// The query, the same in both dialects, that counts the rows of `table`
/// that belong to no account.
pub(crate) fn orphans_query(table: &str) -> String {
    format!(
        "SELECT count(*) FROM {table} t \
         WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.account_id)"
    )
}

/// The holds still pending across every account: how many, and the credits
/// they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingHolds {
    /// Holds whose status is pending, past their expiry or not.
    pub count: u64,
    /// The sum of their amounts.
    pub amount: ledger::Amount,
}

/// The query, the same in both dialects, that counts the pending holds and
/// sums their amounts (in micros; zero when there are none).
pub(crate) const PENDING_HOLDS_SQL: &str =
    "SELECT count(*), CAST(coalesce(sum(amount), 0) AS BIGINT) FROM holds WHERE status = 'pending'";

/// A place in the journal's order of commit: what [`Store::journal_after`]
/// reads from. On SQLite, whose one writer commits transactions in the order
/// of their ids, `commit` is unused and `id` the last transaction read; on
/// PostgreSQL, whose nodes draw ids before they commit, `commit` is the
/// database transaction that wrote it (its `xid8`), which no transaction
/// still running is below once the database's oldest running one is above it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct JournalPosition {
    /// The committing database transaction (PostgreSQL), or zero.
    pub commit: i64,
    /// The transaction's id.
    pub id: i64,
}

/// The most [`Store::journal_after`] answers at once.
pub const JOURNAL_PAGE_MAX: usize = 1000;

/// Accounts with work that time has made due: holds past expiry, lots past
/// expiry with credits left, debt that spendable lots could repay.
pub type DueAccounts = Vec<AccountId>;

/// The ledger's storage.
///
/// Every write goes through [`Store::execute`]; the reads see every write
/// that was acknowledged before they started.
pub trait Store: Send + Sync + 'static {
    /// Counters of the write path.
    fn stats(&self) -> &StoreStats;

    /// Succeeds when the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The migrations the database has applied, and how many this build
    /// knows: it serves as this build expects once the first is at least
    /// the second.
    fn migrations(&self) -> BoxFuture<'_, Result<Migrations, StoreError>>;

    /// Applies one command through group commit and answers once it is durable.
    fn execute(&self, command: Command) -> BoxFuture<'_, Result<Executed, StoreError>>;

    /// One account.
    fn account(&self, id: AccountId) -> BoxFuture<'_, Result<Option<Account>, StoreError>>;

    /// Accounts in id order, after `after`, at most `limit`.
    fn accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Account>, StoreError>>;

    /// Accounts whose id, name or metadata holds `text` (at least
    /// [`SEARCH_LEN_MIN`] characters), whatever its case, in id order,
    /// after `after`, at most `limit`; read through a trigram index.
    fn search_accounts(
        &self,
        text: String,
        after: Option<AccountId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Account>, StoreError>>;

    /// The account's book as stored now, or rebuilt from the journal as it
    /// was at `at`. Callers settle it at the instant they read it for.
    fn book(
        &self,
        id: AccountId,
        at: Option<Timestamp>,
    ) -> BoxFuture<'_, Result<Option<Book>, StoreError>>;

    /// The account's current standing, covering `now`: what a check needs.
    /// A store may answer from memory; by default it reads the book.
    fn standing(
        &self,
        id: AccountId,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<ledger::Standing>, StoreError>> {
        Box::pin(async move { Ok(self.book(id, None).await?.map(|b| b.standing(now))) })
    }

    /// Lots the account was granted, newest first, older than `before`, at most `limit`.
    fn lots(
        &self,
        id: AccountId,
        before: Option<ledger::LotId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Lot>, StoreError>>;

    /// One lot.
    fn lot(&self, id: ledger::LotId) -> BoxFuture<'_, Result<Option<Lot>, StoreError>>;

    /// One hold.
    fn hold(&self, id: HoldId) -> BoxFuture<'_, Result<Option<Hold>, StoreError>>;

    /// A page of an account's holds, newest first.
    fn holds(&self, filter: HoldFilter) -> BoxFuture<'_, Result<Vec<Hold>, StoreError>>;

    /// One transaction.
    fn transaction(&self, id: TxId) -> BoxFuture<'_, Result<Option<Transaction>, StoreError>>;

    /// Transactions of one account, newest first.
    fn transactions(&self, filter: TxFilter)
    -> BoxFuture<'_, Result<Vec<Transaction>, StoreError>>;

    /// One feature.
    fn feature(&self, id: FeatureId) -> BoxFuture<'_, Result<Option<Feature>, StoreError>>;

    /// Every feature, in id order.
    fn features(&self) -> BoxFuture<'_, Result<Vec<Feature>, StoreError>>;

    /// Up to `limit` accounts with expiries, releases or repayments due at `now`.
    fn due_accounts(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<DueAccounts, StoreError>>;

    /// The holds pending across every account, counted and summed by the
    /// database. A hold past its expiry counts until the sweep expires it.
    fn pending_holds(&self) -> BoxFuture<'_, Result<PendingHolds, StoreError>>;

    /// Forgets idempotency keys created before `before`; returns how many.
    fn prune_idempotency(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The account's book and its totals, now or as they stood at `at`,
    /// read from one snapshot so that they agree: whatever was written
    /// meanwhile, the available and held credits are what the totals'
    /// grants, spending, refunds, expiries and voids leave. The totals are
    /// added up from the account's whole journal (up to `at`).
    fn totals(
        &self,
        id: AccountId,
        at: Option<Timestamp>,
    ) -> BoxFuture<'_, Result<Option<(Book, ledger::Totals)>, StoreError>>;

    /// Credits the account spent (consumes and committed holds, less
    /// refunds) in transactions written in `from..to`.
    fn usage_between(
        &self,
        id: AccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> BoxFuture<'_, Result<ledger::Amount, StoreError>>;

    /// The account's consumes of features in transactions written in
    /// `from..to`, summed per feature, in feature order.
    fn feature_usage(
        &self,
        id: AccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<usage::FeatureUse>, StoreError>>;

    /// A page of an account's gateway calls, newest first.
    fn calls(&self, query: usage::CallQuery)
    -> BoxFuture<'_, Result<Vec<usage::Call>, StoreError>>;

    /// The account's hourly usage buckets of hours `from_hour..to_hour`
    /// (hours since the epoch).
    fn usage_buckets(
        &self,
        id: AccountId,
        from_hour: i64,
        to_hour: i64,
    ) -> BoxFuture<'_, Result<Vec<usage::Bucket>, StoreError>>;

    /// The account's hourly buckets of hours `from_hour..to_hour` summed
    /// per model, day, key or project by the database: one bucket per
    /// group, its other fields blank.
    fn usage_sums(
        &self,
        id: AccountId,
        from_hour: i64,
        to_hour: i64,
        by: usage::SumBy,
    ) -> BoxFuture<'_, Result<Vec<usage::Bucket>, StoreError>>;

    /// The account's transaction carrying an external id.
    fn external(
        &self,
        id: AccountId,
        external: ledger::ExternalId,
    ) -> BoxFuture<'_, Result<Option<Transaction>, StoreError>>;

    /// One record, with its lookups.
    fn record(&self, kind: String, id: String)
    -> BoxFuture<'_, Result<Option<Record>, StoreError>>;

    /// A page of records of one kind.
    fn records(&self, query: RecordQuery) -> BoxFuture<'_, Result<Vec<Record>, StoreError>>;

    /// Where the journal ends now: every transaction committed so far is
    /// before it, so reading after it gives only what commits from now on
    /// (and has read everything committed until now once the reading has
    /// reached it).
    fn journal_head(&self) -> BoxFuture<'_, Result<JournalPosition, StoreError>>;

    /// Transactions of every account committed after `after`, in the order
    /// they became visible, at most `limit` (up to [`JOURNAL_PAGE_MAX`]), and
    /// the position to read from next. Read again from that position, it
    /// never misses a transaction nor answers one twice, whatever commits
    /// meanwhile, on any node.
    fn journal_after(
        &self,
        after: JournalPosition,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<Transaction>, JournalPosition), StoreError>>;

    /// Checks the whole journal against every stored balance.
    fn audit(&self) -> BoxFuture<'_, Result<AuditReport, StoreError>>;
}
