//! The PostgreSQL store: many stateless creditd nodes on one database.
//!
//! Each node batches its writes like the SQLite store does, but a batch here
//! locks the accounts it touches (advisory locks, always in one order, after
//! its idempotency keys, also in order), so batches from different nodes
//! serialize per account and never deadlock. A batch that
//! still meets a serialization failure, a deadlock or a racing insert is
//! rolled back and run again from the start; nothing of it was applied.

mod read;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ledger::{
    Account, AccountId, Book, Feature, FeatureId, Hold, HoldId, Lot, LotId, Timestamp, Transaction,
    TxId,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::records::{Record, RecordQuery};
use crate::{
    AuditReport, BoxFuture, Clock, Command, DueAccounts, Executed, HoldFilter, Store, StoreError,
    StoreStats, TxFilter,
};
use writer::{Job, Writer};

/// Migrations, in order; each runs once, under an advisory lock so that
/// nodes starting together do not race.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_ledger.sql")),
    (
        2,
        include_str!("migrations/0002_records_and_external_ids.sql"),
    ),
    (
        3,
        include_str!("migrations/0003_grant_reason_and_actor.sql"),
    ),
    (4, include_str!("migrations/0004_gateway_calls.sql")),
    (5, include_str!("migrations/0005_free_features.sql")),
    (6, include_str!("migrations/0006_history_filters.sql")),
    (7, include_str!("migrations/0007_account_search.sql")),
    (8, include_str!("migrations/0008_journal_commit_order.sql")),
];

/// The advisory lock key that serializes migrations across nodes.
const MIGRATION_LOCK: i64 = 0x0063_7265_6469_7464; // "creditd" in ASCII

/// How the PostgreSQL store is set up.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A `postgres://` URL.
    pub url: String,
    /// The most connections this node opens.
    pub pool_size: usize,
    /// Batches this node runs at once, each on its own connection.
    pub writers: usize,
    /// The most commands one batch applies.
    pub batch_size_max: usize,
    /// The most commands waiting for a batch.
    pub queue_len_max: usize,
    /// How long to wait for a connection before answering `store_unavailable`.
    pub connect_timeout: Duration,
}

impl PostgresOptions {
    /// Defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            pool_size: 16,
            writers: 2,
            batch_size_max: 1024,
            queue_len_max: 16_384,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Turns a driver error into a store error: lost connections and a server
/// that is starting or stopping are `Unavailable`, the rest `Internal`.
pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    let unavailable = match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::READ_ONLY_SQL_TRANSACTION,
                    SqlState::DISK_FULL,
                ]
                .contains(code)
        }
        // No SQLSTATE: the connection broke, or the driver refused the
        // request before sending it (a bug, not an outage).
        None => {
            error.is_closed()
                || std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>())
        }
    };
    // The driver's own text is terse ("db error"); the server's message or
    // the underlying cause says what happened.
    let detail = match (error.as_db_error(), std::error::Error::source(&error)) {
        (Some(db), _) => format!("{}: {}", db.code().code(), db.message()),
        (None, Some(cause)) => format!("{error}: {cause}"),
        (None, None) => error.to_string(),
    };
    if unavailable {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Internal(detail)
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl crate::rows::Columns for tokio_postgres::Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.try_get(i)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
    fn int_opt(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.try_get(i)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.try_get(i)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
    fn text_opt(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.try_get(i)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// Session settings of the writers' connections. The writers' statements
/// take arrays of ids, and PostgreSQL plans such a prepared statement afresh
/// for each execution as long as a plan for the given arrays looks cheaper
/// than the generic one, which it always does: planning then costs more than
/// running them. So the writers use generic plans, planned once per
/// connection; and since such a plan is kept while a table grows, it must
/// never be a scan of a whole table or index, a hash or a merge join, which
/// only look cheaper while a table is small. Every statement of the writers
/// is a lookup by key or an append, and `writer_statements_only_look_up_by_key`
/// checks their plans.
pub(crate) const WRITER_SETTINGS: &str = "SET plan_cache_mode = force_generic_plan; \
     SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

/// Who a pool's connections serve.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Readers,
    Writers,
}

fn build_pool(options: &PostgresOptions, role: Role, size: usize) -> Result<Pool, StoreError> {
    let mut config: tokio_postgres::Config =
        options.url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::Internal(format!("bad database URL: {e}"))
        })?;
    config.connect_timeout(options.connect_timeout);
    config.application_name("creditd");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if role == Role::Writers {
        // Set by a statement rather than in the startup packet, which
        // connection poolers in front of PostgreSQL may refuse.
        builder = builder.post_create(Hook::async_fn(|client, _| {
            Box::pin(async move {
                client
                    .batch_execute(WRITER_SETTINGS)
                    .await
                    .map_err(HookError::Backend)
            })
        }));
    }
    builder
        .max_size(size.max(1))
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// Applies the migrations not yet applied; returns how many ran. Safe to
/// run from several nodes at once.
pub async fn migrate(url: &str) -> Result<usize, StoreError> {
    let pool = build_pool(&PostgresOptions::new(url), Role::Readers, 1)?;
    migrate_pool(&pool).await
}

async fn migrate_pool(pool: &Pool) -> Result<usize, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )
    .await
    .map_err(pg_error)?;
    let applied: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    let mut ran = 0;
    for (version, sql) in MIGRATIONS {
        if *version > applied {
            tx.batch_execute(sql).await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &crate::SystemClock.now().micros()],
            )
            .await
            .map_err(pg_error)?;
            ran += 1;
        }
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(ran)
}

/// The PostgreSQL store of one node.
pub struct PostgresStore {
    /// One queue per writer; a command goes to the writer its account maps to.
    jobs: Vec<mpsc::Sender<Job>>,
    pool: Pool,
    stats: Arc<StoreStats>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl PostgresStore {
    /// Connects, migrates, and starts this node's batch writers. Must run
    /// inside a Tokio runtime.
    pub async fn open(
        options: PostgresOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<PostgresStore, StoreError> {
        // Each writer holds one connection while its batch runs; reads share
        // the rest of the node's connections.
        let count = options.writers.max(1);
        let readers = options.pool_size.max(count + 1) - count;
        let pool = build_pool(&options, Role::Readers, readers)?;
        let writer_pool = build_pool(&options, Role::Writers, count)?;
        migrate_pool(&pool).await?;
        let stats = Arc::new(StoreStats::default());
        let mut jobs = Vec::with_capacity(count);
        let mut writers = Vec::with_capacity(count);
        for _ in 0..count {
            let (sender, receiver) = mpsc::channel(options.queue_len_max.max(1) / count + 1);
            let writer = Writer::new(
                writer_pool.clone(),
                clock.clone(),
                options.batch_size_max.max(1),
                stats.clone(),
            );
            jobs.push(sender);
            writers.push(tokio::spawn(writer.run(receiver)));
        }
        Ok(PostgresStore {
            jobs,
            pool,
            stats,
            writers,
        })
    }

    /// Stops taking commands and waits for the writers to finish what they have.
    pub async fn close(self) {
        let PostgresStore { jobs, writers, .. } = self;
        drop(jobs);
        for writer in writers {
            let _ = writer.await;
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

impl Store for PostgresStore {
    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok(())
        })
    }

    fn migrations(&self) -> BoxFuture<'_, Result<crate::Migrations, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let applied: i64 = c
                .query_one(
                    "SELECT coalesce(max(version), 0)::BIGINT FROM schema_migrations",
                    &[],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            Ok(crate::Migrations {
                applied,
                known: MIGRATIONS.last().map_or(0, |(version, _)| *version),
            })
        })
    }

    fn execute(&self, command: Command) -> BoxFuture<'_, Result<Executed, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            // Commands on one account go to one writer: it batches them
            // together instead of two writers taking turns at its lock.
            let writer = writer::route(&command.op) as usize % self.jobs.len();
            self.jobs[writer]
                .send(Job { command, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn account(&self, id: AccountId) -> BoxFuture<'_, Result<Option<Account>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::account(&c, &id).await
        })
    }

    fn accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Account>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::accounts(&c, after.as_ref(), limit).await
        })
    }

    fn search_accounts(
        &self,
        text: String,
        after: Option<AccountId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Account>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::search_accounts(&c, &text, after.as_ref(), limit).await
        })
    }

    fn book(
        &self,
        id: AccountId,
        at: Option<Timestamp>,
    ) -> BoxFuture<'_, Result<Option<Book>, StoreError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            read::book_snapshot(&mut client, &id, at).await
        })
    }

    fn lots(
        &self,
        id: AccountId,
        before: Option<LotId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Lot>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::lots(&c, &id, before, limit).await
        })
    }

    fn lot(&self, id: LotId) -> BoxFuture<'_, Result<Option<Lot>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::lot(&c, id).await
        })
    }

    fn hold(&self, id: HoldId) -> BoxFuture<'_, Result<Option<Hold>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::hold(&c, id).await
        })
    }

    fn holds(&self, filter: HoldFilter) -> BoxFuture<'_, Result<Vec<Hold>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::holds(&c, &filter).await
        })
    }

    fn transaction(&self, id: TxId) -> BoxFuture<'_, Result<Option<Transaction>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::transaction(&c, id).await
        })
    }

    fn transactions(
        &self,
        filter: TxFilter,
    ) -> BoxFuture<'_, Result<Vec<Transaction>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::transactions(&c, &filter).await
        })
    }

    fn journal_head(&self) -> BoxFuture<'_, Result<crate::JournalPosition, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::journal_head(&c).await
        })
    }

    fn journal_after(
        &self,
        after: crate::JournalPosition,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<Transaction>, crate::JournalPosition), StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::journal_after(&c, after, limit).await
        })
    }

    fn feature(&self, id: FeatureId) -> BoxFuture<'_, Result<Option<Feature>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::feature(&c, &id).await
        })
    }

    fn features(&self) -> BoxFuture<'_, Result<Vec<Feature>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::features(&c).await
        })
    }

    fn due_accounts(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<DueAccounts, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::due_accounts(&c, now, limit).await
        })
    }

    fn pending_holds(&self) -> BoxFuture<'_, Result<crate::PendingHolds, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::pending_holds(&c).await
        })
    }

    fn prune_idempotency(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::prune_idempotency(&c, before).await
        })
    }

    fn totals(
        &self,
        id: AccountId,
        at: Option<Timestamp>,
    ) -> BoxFuture<'_, Result<Option<(Book, ledger::Totals)>, StoreError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = read::snapshot(&mut client).await?;
            let totals = read::totals(&tx, &id, at).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(totals)
        })
    }

    fn usage_between(
        &self,
        id: AccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> BoxFuture<'_, Result<ledger::Amount, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::usage_between(&c, &id, from, to).await
        })
    }

    fn feature_usage(
        &self,
        id: AccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::FeatureUse>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::feature_usage(&c, &id, from, to).await
        })
    }

    fn calls(
        &self,
        query: crate::usage::CallQuery,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::Call>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::calls(&c, &query).await
        })
    }

    fn usage_buckets(
        &self,
        id: AccountId,
        from_hour: i64,
        to_hour: i64,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::Bucket>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::usage_buckets(&c, &id, from_hour, to_hour).await
        })
    }

    fn usage_sums(
        &self,
        id: AccountId,
        from_hour: i64,
        to_hour: i64,
        by: crate::usage::SumBy,
    ) -> BoxFuture<'_, Result<Vec<crate::usage::Bucket>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::usage_sums(&c, &id, from_hour, to_hour, by).await
        })
    }

    fn external(
        &self,
        id: AccountId,
        external: ledger::ExternalId,
    ) -> BoxFuture<'_, Result<Option<Transaction>, StoreError>> {
        Box::pin(async move {
            let c = self.client().await?;
            read::external(&c, &id, &external).await
        })
    }

    fn record(
        &self,
        kind: String,
        id: String,
    ) -> BoxFuture<'_, Result<Option<Record>, StoreError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            // The record and its lookups from one snapshot.
            let tx = read::snapshot(&mut client).await?;
            let record = read::record(&tx, &kind, &id).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(record)
        })
    }

    fn records(&self, query: RecordQuery) -> BoxFuture<'_, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = read::snapshot(&mut client).await?;
            let records = read::records(&tx, &query).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(records)
        })
    }

    fn audit(&self) -> BoxFuture<'_, Result<AuditReport, StoreError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            read::audit(&mut client).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plan does that only looks cheap while a table is small: a
    /// whole-table scan, a hash or merge join, or an index scan with no
    /// condition, which reads the whole index.
    fn scans_a_whole_table(plan: &str) -> Option<String> {
        let lines: Vec<&str> = plan.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if ["Seq Scan", "Hash Join", "Merge Join"]
                .iter()
                .any(|bad| line.contains(bad))
            {
                return Some(line.trim().to_owned());
            }
            if line.contains("Index Scan") || line.contains("Index Only Scan") {
                let has_condition = lines[i + 1..]
                    .iter()
                    .take_while(|l| !l.contains("->"))
                    .any(|l| l.contains("Index Cond"));
                if !has_condition {
                    return Some(line.trim().to_owned());
                }
            }
        }
        None
    }

    #[test]
    fn a_whole_table_scan_is_found_in_a_plan() {
        let index = "Nested Loop\n  ->  Function Scan on u\n  ->  Index Scan using lots_pkey on lots l\n        Index Cond: (id = u.i)";
        assert_eq!(scans_a_whole_table(index), None);
        let full_index =
            "Index Scan using holds_expiring on holds\n  Filter: (account_id = ANY ($1))";
        assert!(scans_a_whole_table(full_index).is_some());
        assert!(scans_a_whole_table("Seq Scan on accounts\n  Filter: (id = ANY ($1))").is_some());
        assert!(scans_a_whole_table("Hash Join\n  Hash Cond: (a = b)").is_some());
    }

    /// A database that kept a generated admin key's hash as a setting
    /// keeps it as an admin key record, found by its hash.
    #[tokio::test]
    async fn the_admin_key_setting_becomes_an_api_key_record() {
        let Some(database) = testkit::TestDatabase::create().await else {
            return;
        };
        let pool = build_pool(&PostgresOptions::new(&database.url), Role::Readers, 1).unwrap();
        let client = pool.get().await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await
            .unwrap();
        client.batch_execute(MIGRATIONS[0].1).await.unwrap();
        client
            .batch_execute("INSERT INTO schema_migrations VALUES (1, 0)")
            .await
            .unwrap();
        let hash = "cd".repeat(32);
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ('admin_key_sha256', $1)",
                &[&hash],
            )
            .await
            .unwrap();
        drop(client);
        assert_eq!(migrate_pool(&pool).await.unwrap(), MIGRATIONS.len() - 1);
        let client = pool.get().await.unwrap();
        let record = read::record(&client, "api_key", "key_initial")
            .await
            .unwrap()
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&record.body).unwrap();
        assert_eq!(body["kind"], "admin");
        assert_eq!(body["hash"], hash);
        let names: Vec<String> = record.lookups.iter().map(|l| l.name.clone()).collect();
        assert_eq!(names, ["hash", "kind", "scope"]);
        let settings: Option<String> = client
            .query_one("SELECT to_regclass('settings')::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(settings, None);
    }

    /// On empty tables, where a scan of the whole table looks cheapest, every
    /// writer statement's generic plan still looks rows up by key.
    #[tokio::test]
    async fn writer_statements_only_look_up_by_key() {
        let Some(database) = testkit::TestDatabase::create().await else {
            return;
        };
        migrate(&database.url).await.unwrap();
        // A connection as the writers get it.
        let pool = build_pool(&PostgresOptions::new(&database.url), Role::Writers, 1).unwrap();
        let client = pool.get().await.unwrap();
        let mode: String = client
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "force_generic_plan");
        for (name, sql) in writer::named_sql() {
            let params = client.prepare(sql).await.unwrap().params().len();
            client
                .batch_execute(&format!("PREPARE {name} AS {sql}"))
                .await
                .unwrap();
            let nulls = vec!["NULL"; params].join(", ");
            let args = if params == 0 {
                String::new()
            } else {
                format!("({nulls})")
            };
            let plan: String = client
                .simple_query(&format!("EXPLAIN EXECUTE {name}{args}"))
                .await
                .unwrap()
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!plan.is_empty(), "no plan for {name}: {sql}");
            if let Some(bad) = scans_a_whole_table(&plan) {
                panic!("{bad}\nin the plan of {name}: {sql}\n{plan}");
            }
        }
    }
    /// The plan PostgreSQL picks for `sql` run with `args` (SQL literals).
    async fn plan(client: &tokio_postgres::Client, name: &str, sql: &str, args: &str) -> String {
        client
            .batch_execute(&format!("PREPARE {name} AS {sql}"))
            .await
            .unwrap();
        client
            .simple_query(&format!("EXPLAIN EXECUTE {name}({args})"))
            .await
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Over an account's 10,000 transactions, few of them grants, a page of
    /// grants by source and the spending of a week are read from their
    /// indexes, not from the account's whole journal.
    #[tokio::test]
    async fn history_filters_read_their_indexes() {
        let Some(database) = testkit::TestDatabase::create().await else {
            return;
        };
        migrate(&database.url).await.unwrap();
        let pool = build_pool(&PostgresOptions::new(&database.url), Role::Readers, 1).unwrap();
        let client = pool.get().await.unwrap();
        client
            .batch_execute(
                "INSERT INTO transactions (id, account_id, kind, amount, usage, balance_after, \
                     postings, sources, created_at, metadata, grant_source) \
                 SELECT i, 'a', CASE WHEN i % 500 = 0 THEN 'grant' ELSE 'consume' END, 1, \
                        CASE WHEN i % 500 = 0 THEN 0 ELSE 1 END, 0, '', '', i::int8 * 1000000, '{}', \
                        CASE WHEN i % 500 = 0 THEN 'purchase' END \
                 FROM generate_series(1, 10000) AS i; \
                 ANALYZE transactions",
            )
            .await
            .unwrap();
        let page = plan(
            &client,
            "by_source",
            &read::transactions_sql(true),
            "'a', 9223372036854775807, '{grant}', 0, 9223372036854775807, 20, '{purchase}'",
        )
        .await;
        assert!(page.contains("transactions_grants_by_source"), "{page}");
        assert_eq!(scans_a_whole_table(&page), None, "{page}");
        let week = "'a', 9000000000, 9604800000";
        let spent = plan(&client, "spent", read::USAGE_BETWEEN_SQL, week).await;
        assert!(spent.contains("transactions_usage_by_time"), "{spent}");
        assert_eq!(scans_a_whole_table(&spent), None, "{spent}");
    }

    /// Among 100,000 accounts, a search for a name is read from the
    /// trigram index, not from every account. (Over a few tens of thousands
    /// PostgreSQL finds a scan of them all cheaper, and it is.)
    #[tokio::test]
    async fn an_account_search_reads_the_trigram_index() {
        let Some(database) = testkit::TestDatabase::create().await else {
            return;
        };
        migrate(&database.url).await.unwrap();
        let pool = build_pool(&PostgresOptions::new(&database.url), Role::Readers, 1).unwrap();
        let client = pool.get().await.unwrap();
        client
            .batch_execute(
                "INSERT INTO accounts (id, name, metadata, overdraft_limit, debt, created_at) \
                 SELECT 'user_' || i, 'Customer ' || md5(i::text), \
                        '{\"email\": \"' || md5(i::text) || '@example.com\"}', 0, 0, 0 \
                 FROM generate_series(1, 100000) AS i; \
                 ANALYZE accounts",
            )
            .await
            .unwrap();
        let sql = read::search_accounts_sql();
        let found = plan(&client, "search", &sql, "'%lovelace%', '', 20").await;
        assert!(found.contains("accounts_search"), "{found}");
        assert_eq!(scans_a_whole_table(&found), None, "{found}");
    }
}
