//! Spawns the app on a fresh database and talks to it like a client would.

#[allow(unused_imports)]
pub use testkit::app::{KEY, Reply, START, TestApp};

/// Declares a test that runs once on each store, as `name::sqlite` and
/// `name::postgres`, with `app` a fresh [`TestApp`] on that store.
macro_rules! store_test {
    ($(#[$attr:meta])* async fn $name:ident($app:ident) $body:block) => {
        testkit::each_store_test! {
            $(#[$attr])*
            async fn $name($app) $body
            sqlite: $crate::support::TestApp::spawn_sqlite(None).await,
            postgres: $crate::support::TestApp::spawn_postgres(None).await,
        }
    };
}
