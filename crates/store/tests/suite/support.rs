//! Opens a fresh store of either kind for one case, and reaches its database behind its back.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use store::postgres::{PostgresOptions, PostgresStore};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{ManualClock, Store};
use testkit::TestDatabase;

use crate::common::{Handle, START};

/// Declares a case that runs once on each store, as `name::sqlite` and
/// `name::postgres`, with `store` a fresh [`TestStore`] of that kind. The
/// PostgreSQL run is skipped with a notice when PostgreSQL cannot be
/// reached, unless under `CI=true`, where that fails it.
///
/// ```text
/// store_test! {
///     #[tokio::test]
///     async fn a_grant_adds_to_the_balance(store) {
///         open_account(&store, "a", 10).await;
///         assert_eq!(available(&store, "a", START).await, c(10));
///     }
/// }
/// ```
macro_rules! store_test {
    ($(#[$attr:meta])* async fn $name:ident($store:ident) $body:block) => {
        testkit::each_store_test! {
            $(#[$attr])*
            async fn $name(mut $store) $body
            sqlite: $crate::support::TestStore::sqlite().await,
            postgres: $crate::support::TestStore::postgres().await,
        }
    };
}

/// A store on a database of its own, with the clock it reads.
///
/// It dereferences to the [`Store`], so a case calls the trait's methods on
/// it directly, and it is a [`Handle`], so a case passes `&store` to the
/// shared helpers.
pub struct TestStore {
    /// The store's clock; a case moves it, never sleeps.
    pub clock: ManualClock,
    /// `None` only while the store is being reopened.
    open: Option<Open>,
    // Dropped last: the database outlives the store on it.
    database: Database,
}

/// The store itself, of its kind, so that it can be closed as its kind closes.
enum Open {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

/// What keeps a case's database alive.
enum Database {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres(TestDatabase),
}

impl TestStore {
    /// A store on a fresh SQLite file.
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let clock = ManualClock::new(START);
        let database = Database::Sqlite { _dir: dir, path };
        let open = Some(database.open(&clock).await);
        TestStore {
            clock,
            open,
            database,
        }
    }

    /// A store on a fresh PostgreSQL database, or `None` when PostgreSQL is
    /// unreachable outside CI.
    pub async fn postgres() -> Option<TestStore> {
        let database = Database::Postgres(TestDatabase::create().await?);
        let clock = ManualClock::new(START);
        let open = Some(database.open(&clock).await);
        Some(TestStore {
            clock,
            open,
            database,
        })
    }

    /// The store, to hand to tasks that run beside the case.
    pub fn shared(&self) -> Arc<dyn Store> {
        match self.open() {
            Open::Sqlite(store) => store.clone(),
            Open::Postgres(store) => store.clone(),
        }
    }

    /// Closes the store, letting it finish what it has, and opens a new one
    /// on the same database, as a restart does. No task may still hold the
    /// store.
    pub async fn reopen(&mut self) {
        self.close().await;
        self.open = Some(self.database.open(&self.clock).await);
    }

    /// Runs `sql` on the database while the store is open, as another
    /// program would. The statement must read the same in both dialects.
    pub async fn sql_while_open(&self, sql: &str) {
        self.database.execute(sql).await;
    }

    /// Closes the store, runs `sql` on its database, and opens it again, so
    /// that nothing the store kept in memory or had yet to write can hide or
    /// undo the change. The statement must read the same in both dialects.
    pub async fn sql_while_closed(&mut self, sql: &str) {
        self.close().await;
        self.database.execute(sql).await;
        self.open = Some(self.database.open(&self.clock).await);
    }

    /// The one integer that `sql` selects, read from the database directly.
    /// The query must read the same in both dialects.
    pub async fn select_int(&self, sql: &str) -> i64 {
        match &self.database {
            Database::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |row| row.get(0))
                .unwrap(),
            Database::Postgres(database) => {
                let client = connect(database).await;
                client.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }

    fn open(&self) -> &Open {
        self.open.as_ref().expect("the store is open")
    }

    async fn close(&mut self) {
        match self.open.take().expect("the store is open") {
            Open::Sqlite(store) => Arc::into_inner(store)
                .expect("no task still holds the store")
                .close(),
            Open::Postgres(store) => {
                Arc::into_inner(store)
                    .expect("no task still holds the store")
                    .close()
                    .await
            }
        }
    }
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        match self.open() {
            Open::Sqlite(store) => &**store,
            Open::Postgres(store) => &**store,
        }
    }
}

impl Handle for TestStore {
    fn store(&self) -> &dyn Store {
        &**self
    }
}

impl Database {
    async fn open(&self, clock: &ManualClock) -> Open {
        match self {
            Database::Sqlite { path, .. } => Open::Sqlite(Arc::new(
                SqliteStore::open(SqliteOptions::new(path), Arc::new(clock.clone())).unwrap(),
            )),
            Database::Postgres(database) => Open::Postgres(Arc::new(
                PostgresStore::open(PostgresOptions::new(&database.url), Arc::new(clock.clone()))
                    .await
                    .unwrap(),
            )),
        }
    }

    async fn execute(&self, sql: &str) {
        match self {
            Database::Sqlite { path, .. } => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            Database::Postgres(database) => {
                connect(database).await.batch_execute(sql).await.unwrap();
            }
        }
    }
}

async fn connect(database: &TestDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}
