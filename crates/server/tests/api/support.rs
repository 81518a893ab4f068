//! Spawns the app on a fresh database and talks to it like a client would.

#[allow(unused_imports)]
pub use testkit::app::{KEY, Reply, START, TestApp};

/// Declares a test that runs once on each store, as `name::sqlite` and
/// `name::postgres`, with `app` a fresh [`TestApp`] on that store.
macro_rules! store_test {
    ($(#[$attr:meta])* async fn $name:ident($app:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                let $app = $crate::support::TestApp::spawn_sqlite(None).await;
                $body
            }

            $(#[$attr])*
            async fn postgres() {
                let Some($app) = $crate::support::TestApp::spawn_postgres(None).await else {
                    return;
                };
                $body
            }
        }
    };
}
