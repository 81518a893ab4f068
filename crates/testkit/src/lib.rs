//! Test support: a fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is found through `CREDITD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached,
//! tests that need it are skipped with a notice, except under `CI=true`,
//! where a missing PostgreSQL fails the test.

pub mod app;
pub mod kinds;
pub mod openapi;
pub mod receiver;
pub mod rng;
pub mod stripe;
pub mod upstream;

use std::io::Write;
use std::sync::Once;

/// The URL of the database tests connect to in order to create their own.
pub fn admin_url() -> String {
    std::env::var("CREDITD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// True when running under CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

static SKIP_NOTICE: Once = Once::new();

/// Declares a test that runs once on each store, as `name::sqlite` and
/// `name::postgres`. In the first, the pattern in the signature binds what
/// `sqlite:` opens; in the second, what `postgres:` opens, an `Option` that
/// is `None` when PostgreSQL cannot be reached outside CI, which skips the
/// run. Each suite wraps it in a macro of its own that says how it opens
/// what its cases take, so that a case names only its body.
///
/// ```text
/// testkit::each_store_test! {
///     #[tokio::test]
///     async fn a_grant_adds_to_the_balance(app) { ... }
///     sqlite: TestApp::spawn_sqlite(None).await,
///     postgres: TestApp::spawn_postgres(None).await,
/// }
/// ```
#[macro_export]
macro_rules! each_store_test {
    (
        $(#[$attr:meta])*
        async fn $name:ident($subject:pat) $body:block
        sqlite: $sqlite:expr,
        postgres: $postgres:expr $(,)?
    ) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                #[allow(unused_mut)]
                let $subject = $sqlite;
                $body
            }

            $(#[$attr])*
            async fn postgres() {
                let opened = $postgres;
                #[allow(unused_mut)]
                let Some($subject) = opened else {
                    return;
                };
                $body
            }
        }
    };
}

/// A database created for one test and dropped when this is dropped.
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database with a random name. Returns `None`
    /// (after saying so, once per test binary) when PostgreSQL cannot be
    /// reached; under CI that is a failure instead.
    pub async fn create() -> Option<TestDatabase> {
        let admin = admin_url();
        let client = match connect(&admin).await {
            Ok(client) => client,
            Err(error) => {
                if in_ci() {
                    panic!("PostgreSQL is required under CI but {admin} is unreachable: {error}");
                }
                SKIP_NOTICE.call_once(|| {
                    // Written to the terminal directly: the test harness
                    // captures print macros of passing tests.
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nSKIPPED: the PostgreSQL tests, because {admin} is unreachable ({error}).\n\
                         Start PostgreSQL there, or set CREDITD_TEST_POSTGRES_URL, and run \
                         `cargo test --workspace` again.\n"
                    );
                });
                return None;
            }
        };
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        let name: String = std::iter::once("creditd_test_".to_owned())
            .chain(bytes.iter().map(|b| format!("{b:02x}")))
            .collect();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        Some(TestDatabase {
            url: with_database(&admin, &name),
            name,
        })
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(std::time::Duration::from_secs(3));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee, so use a short-lived one.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = connect(&admin_url()).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop test database {}: {error}",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_in_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t3"),
            "postgres://h:5432/t3"
        );
    }
}
