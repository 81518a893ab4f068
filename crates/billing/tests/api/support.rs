//! The app with billing plugged in, and short ways to drive it.

use std::sync::Arc;

use billing::{Billing, EnvSettings};
use serde_json::{Value, json};
use store::{Clock, Store};
pub use testkit::app::{Plugged, Reply, START, TestApp};

/// Billing with no settings from the environment.
pub fn plain(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Plugged {
    with_env(store, clock, EnvSettings::default())
}

/// Billing with the given settings from the environment.
pub fn with_env(store: Arc<dyn Store>, clock: Arc<dyn Clock>, env: EnvSettings) -> Plugged {
    let billing = Arc::new(Billing::new(store, clock, env));
    Plugged {
        capabilities: vec![billing.capability()],
        handle: Some(billing),
    }
}

/// Declares a test that runs once on each store, as `name::sqlite` and
/// `name::postgres`, with `app` a fresh [`TestApp`] with billing plugged in
/// by `$plugins` (by default with no settings from the environment).
macro_rules! billing_test {
    ($(#[$attr:meta])* async fn $name:ident($app:ident) $body:block) => {
        billing_test!($(#[$attr])* async fn $name($app) with $crate::support::plain $body);
    };
    ($(#[$attr:meta])* async fn $name:ident($app:ident) with $plugins:path $body:block) => {
        testkit::each_store_test! {
            $(#[$attr])*
            async fn $name($app) $body
            sqlite: testkit::app::TestApp::spawn_sqlite(Some(std::sync::Arc::new($plugins))).await,
            postgres: testkit::app::TestApp::spawn_postgres(Some(std::sync::Arc::new($plugins)))
                .await,
        }
    };
}

/// Billing's state in the app.
pub fn billing(app: &TestApp) -> Arc<Billing> {
    app.plugin::<Billing>()
}

/// Runs the renewal job once; answers how many periods it renewed.
pub async fn renew(app: &TestApp) -> usize {
    billing::subscription::renew_due(&billing(app))
        .await
        .unwrap()
}

/// Stores a plan; panics unless it is stored.
pub async fn plan(app: &TestApp, id: &str, body: Value) -> Value {
    let reply = app
        .send(reqwest::Method::PUT, &format!("/v1/plans/{id}"), Some(body))
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::OK, "{reply:?}");
    reply.body
}

/// Moves an account to a plan; panics unless it moves.
pub async fn subscribe(app: &TestApp, account: &str, plan: &str) -> Value {
    let reply = app
        .send(
            reqwest::Method::PUT,
            &format!("/v1/accounts/{account}/subscription"),
            Some(json!({ "plan_id": plan })),
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::OK, "{reply:?}");
    reply.body
}

/// Consumes `quantity` units of a feature; answers the reply.
pub async fn use_feature(app: &TestApp, account: &str, feature: &str, quantity: u64) -> Reply {
    app.post(
        &format!("/v1/accounts/{account}/consume"),
        json!({ "feature": feature, "quantity": quantity.to_string() }),
    )
    .await
}

/// The instant `secs` seconds after the test's start, as RFC 3339.
pub fn at(secs: i64) -> String {
    START.plus_secs(secs).to_string()
}
