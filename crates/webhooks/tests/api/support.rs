//! The app with billing and the webhooks plugged in, and short ways to drive it.

use std::sync::Arc;

use billing::{Billing, EnvSettings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::sealing::{Keyring, MasterKey};
use store::{Clock, Store};
pub use testkit::app::{Plugged, TestApp};
pub use testkit::receiver::Receiver;
use webhooks::{WebhookConfig, Webhooks};

/// The master keys the tests seal secrets under.
pub fn keyring() -> Keyring {
    Keyring {
        current: MasterKey::parse(&"42".repeat(32)).unwrap(),
        retired: Vec::new(),
    }
}

/// The webhooks as the tests run them: endpoints on this machine allowed
/// (the receiver listens on loopback), a master key set.
pub fn config() -> WebhookConfig {
    WebhookConfig {
        allow_private: true,
        keyring: Some(keyring()),
        ..WebhookConfig::default()
    }
}

/// Billing and the webhooks with `config`.
pub fn plugged(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: WebhookConfig) -> Plugged {
    let billing = Arc::new(Billing::new(
        store.clone(),
        clock.clone(),
        EnvSettings::default(),
    ));
    let webhooks = Arc::new(Webhooks::new(store, clock, billing.clone(), config));
    Plugged {
        capabilities: vec![billing.capability(), webhooks.capability()],
        handle: Some(webhooks),
    }
}

/// The webhooks alone, over billing's state but without its routes: the
/// route walks see only the webhooks' own.
pub fn alone(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Plugged {
    let mut plugged = plain(store, clock);
    plugged.capabilities.remove(0);
    plugged
}

/// Billing and the webhooks as the tests run them.
pub fn plain(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Plugged {
    plugged(store, clock, config())
}

/// Declares a test that runs once on each store, as `name::sqlite` and
/// `name::postgres`, with `app` a fresh [`TestApp`] with the webhooks
/// plugged in by `$plugins` (by default [`plain`]).
macro_rules! webhooks_test {
    ($(#[$attr:meta])* async fn $name:ident($app:ident) $body:block) => {
        webhooks_test!($(#[$attr])* async fn $name($app) with $crate::support::plain $body);
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

/// The webhooks' state in the app.
pub fn webhooks(app: &TestApp) -> Arc<Webhooks> {
    app.plugin::<Webhooks>()
}

/// Runs the webhooks' work as the job does each interval, until it has read
/// every change committed before it began: on PostgreSQL the journal is read
/// only below the oldest transaction running, which another test's database
/// on the same server may hold back a moment. Answers what it did in all.
pub async fn run(app: &TestApp) -> webhooks::dispatch::Round {
    use webhooks::dispatch::{CURSOR_ID, Cursor};
    let store = app.state.store.as_ref();
    let head = store.journal_head().await.unwrap();
    let mut total = webhooks::dispatch::Round::default();
    for _ in 0..2000 {
        let round = webhooks(app).run_once().await.unwrap();
        total.read += round.read;
        total.written += round.written;
        total.dispatched += round.dispatched;
        total.attempts += round.attempts;
        total.pruned += round.pruned;
        let cursor = store::records::get::<Cursor>(store, CURSOR_ID)
            .await
            .unwrap();
        if cursor.is_some_and(|c| c.body.position >= head) {
            // Once more: what the last page wrote is delivered.
            let round = webhooks(app).run_once().await.unwrap();
            total.dispatched += round.dispatched;
            total.attempts += round.attempts;
            return total;
        }
        // Another database's transaction is still open: let it end.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the journal's reading never reached {head:?}");
}

/// Registers an endpoint at `url` for `events`; answers it, with its secret.
pub async fn endpoint(app: &TestApp, url: &str, events: &[&str]) -> Value {
    let reply = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body
}

/// Registers an endpoint for every type at `receiver`: changes from now
/// on give it events.
pub async fn listening(app: &TestApp, receiver: &Receiver) -> Value {
    endpoint(app, &receiver.url("/hooks"), &["*"]).await
}

/// Changes an account.
pub async fn patch_account(app: &TestApp, account: &str, body: Value) -> Value {
    let reply = app
        .send(
            Method::PATCH,
            &format!("/v1/accounts/{account}"),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

/// Consumes `amount` credits from `account`.
pub async fn consume(app: &TestApp, account: &str, amount: &str) {
    let reply = app
        .post(
            &format!("/v1/accounts/{account}/consume"),
            json!({"amount": amount}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

/// Grants `amount` credits to `account`.
pub async fn grant(app: &TestApp, account: &str, body: Value) -> Value {
    let reply = app
        .post(&format!("/v1/accounts/{account}/grants"), body)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body
}
