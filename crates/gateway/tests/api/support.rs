//! The app with the gateway plugged in before a fake upstream, and short ways to drive it.

use std::sync::Arc;
use std::time::Duration;

use gateway::{Gateway, GatewayConfig, Upstream};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::Secret;
pub use testkit::app::{Plugged, TestApp};
pub use testkit::upstream::{Behaviour, FakeUpstream, FakeUsage};

/// The operator's key the gateway sends upstream.
pub const UPSTREAM_KEY: &str = "sk-operator-upstream";

/// The gateway's configuration in front of `upstream`: OpenAI's format at
/// `/v1`, Anthropic's at the root, and a named `backup` upstream at `backup`
/// when given; a 10 % markup and 100 credits per USD.
pub fn config(upstream: &str, backup: Option<&str>) -> GatewayConfig {
    let mut config = GatewayConfig::default();
    config.upstreams.insert(
        "openai".into(),
        Upstream {
            wire: gateway::domain::Wire::Openai,
            base_url: format!("{upstream}/v1"),
            api_key: Some(Secret::new(UPSTREAM_KEY.into())),
            keyless: false,
        },
    );
    config.upstreams.insert(
        "anthropic".into(),
        Upstream {
            wire: gateway::domain::Wire::Anthropic,
            base_url: upstream.to_owned(),
            api_key: Some(Secret::new(UPSTREAM_KEY.into())),
            keyless: false,
        },
    );
    if let Some(backup) = backup {
        config.upstreams.insert(
            "backup".into(),
            Upstream {
                wire: gateway::domain::Wire::Openai,
                base_url: format!("{backup}/v1"),
                api_key: Some(Secret::new(UPSTREAM_KEY.into())),
                keyless: false,
            },
        );
    }
    config
}

/// The plugins of an app whose gateway has `config`.
pub fn plugins(config: GatewayConfig) -> testkit::app::Plugins {
    Arc::new(move |store, clock| {
        let gateway = Arc::new(Gateway::new(store, clock, config.clone()));
        Plugged {
            capabilities: vec![gateway.capability()],
            handle: Some(gateway),
        }
    })
}

/// Runs `test` on each store with a fresh fake upstream, the gateway's
/// configuration in front of it changed by `configure`.
pub async fn each_store(
    configure: impl Fn(&mut GatewayConfig),
    test: impl AsyncFn(TestApp, FakeUpstream),
) {
    for postgres in [false, true] {
        let upstream = FakeUpstream::start().await;
        let mut config = config(&upstream.base_url(), None);
        configure(&mut config);
        let app = if postgres {
            match TestApp::spawn_postgres(Some(plugins(config))).await {
                Some(app) => app,
                None => return,
            }
        } else {
            TestApp::spawn_sqlite(Some(plugins(config))).await
        };
        test(app, upstream).await;
    }
}

/// Declares a test that runs once on each store, as `name::sqlite` and
/// `name::postgres`, with `app` a fresh [`TestApp`] with the gateway in
/// front of `upstream`, a fresh [`FakeUpstream`].
macro_rules! gateway_test {
    ($(#[$attr:meta])* async fn $name:ident($app:ident, $upstream:ident) $body:block) => {
        testkit::each_store_test! {
            $(#[$attr])*
            async fn $name(($upstream, $app)) $body
            sqlite: {
                let upstream = $crate::support::FakeUpstream::start().await;
                let config = $crate::support::config(&upstream.base_url(), None);
                let plugins = Some($crate::support::plugins(config));
                (upstream, testkit::app::TestApp::spawn_sqlite(plugins).await)
            },
            postgres: {
                let upstream = $crate::support::FakeUpstream::start().await;
                let config = $crate::support::config(&upstream.base_url(), None);
                let plugins = Some($crate::support::plugins(config));
                testkit::app::TestApp::spawn_postgres(plugins)
                    .await
                    .map(|app| (upstream, app))
            },
        }
    };
}

/// Prices a chat model: 2 USD per million input tokens, 0.5 cached, 2.5
/// cache write, 8 output; `provider` decides its wire format.
pub async fn price(app: &TestApp, model: &str, provider: &str) {
    let reply = app
        .send(
            Method::PUT,
            &format!("/v1/prices/{model}"),
            Some(json!({
                "provider": provider, "input": "2", "cached_input": "0.5",
                "cache_write": "2.5", "output": "8", "max_output_tokens": 1000
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

/// Opens an account with `credits` and answers a customer key of it.
pub async fn customer(app: &TestApp, account: &str, credits: &str) -> String {
    app.account_with(account, credits).await;
    app.create_customer_key(account).await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends a gateway call with `key` (as a bearer key, or as `x-api-key` for
/// `/v1/messages`); answers the status and the body as text.
pub async fn call(app: &TestApp, key: &str, path: &str, body: Value) -> (StatusCode, String) {
    let response = send_call(app, key, path, body).await;
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// Sends a gateway call as [`call`] does; answers the response whole, its
/// headers with it.
pub async fn send_call(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    let request = app.client.post(format!("{}{path}", app.base)).json(&body);
    let request = if path == "/v1/messages" {
        request
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        request.bearer_auth(key)
    };
    request.send().await.unwrap()
}

/// Waits until the account's holds are all settled, and answers its balance.
pub async fn settled(app: &TestApp, account: &str) -> Value {
    for _ in 0..500 {
        let balance = app.balance(account).await;
        if balance["held"] == "0" {
            return balance;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the account's holds were never settled: {}",
        app.balance(account).await
    );
}

/// The account's calls, newest first.
pub async fn calls(app: &TestApp, account: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/v1/accounts/{account}/usage/calls?limit=100"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["data"].as_array().unwrap().clone()
}

/// Waits until the account has `n` calls recorded, and answers them.
pub async fn until_calls(app: &TestApp, account: &str, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let found = calls(app, account).await;
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "fewer than {n} calls were recorded: {:?}",
        calls(app, account).await
    );
}
