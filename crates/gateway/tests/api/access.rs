//! The gateway's routes against every kind of key, and its OpenAPI description.

use gateway::Gateway;
use gateway::byok::{Keyring, MasterKey};
use gateway::error::GatewayError;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

/// An account with a price, a provider key and a call, and its ids by path parameter.
async fn objects_of(app: &TestApp, account: &str) -> Vec<(&'static str, String)> {
    app.account_with(account, "10").await;
    let stored = app
        .send(
            Method::PUT,
            &format!("/v1/accounts/{account}/provider-keys/openai"),
            Some(json!({"api_key": "sk-test-1234"})),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{stored:?}");
    vec![
        ("account_id", account.to_owned()),
        ("model", "gpt-test".to_owned()),
        ("provider", "openai".to_owned()),
    ]
}

#[tokio::test]
async fn every_gateway_route_admits_exactly_the_keys_its_access_names() {
    each_store(
        |config| {
            config.keyring = Some(Keyring {
                current: MasterKey::parse(&"11".repeat(32)).unwrap(),
                retired: Vec::new(),
            })
        },
        async |app, _upstream| {
            price(&app, "gpt-test", "openai").await;
            let mine = objects_of(&app, "mine").await;
            let theirs = objects_of(&app, "theirs").await;
            let table: Vec<_> = app
                .plugin::<Gateway>()
                .capability()
                .routes
                .iter()
                .map(|route| (route.method.clone(), route.path, route.access))
                .collect();
            app.assert_plugin_routes(&table);
            app.assert_route_access(table, &mine, &theirs).await;
        },
    )
    .await;
}

#[tokio::test]
async fn every_gateway_write_route_honours_an_idempotency_key_as_the_table_says() {
    each_store(
        |config| {
            config.keyring = Some(Keyring {
                current: MasterKey::parse(&"11".repeat(32)).unwrap(),
                retired: Vec::new(),
            })
        },
        async |app, _upstream| {
            price(&app, "gpt-test", "openai").await;
            let mine = objects_of(&app, "mine").await;
            let table = app
                .plugin::<Gateway>()
                .capability()
                .routes
                .into_iter()
                .map(|route| (route.method, route.path, route.access, route.idempotency))
                .collect();
            app.assert_idempotency(table, &mine).await;
        },
    )
    .await;
}

gateway_test! {
    #[tokio::test]
    async fn the_description_lists_the_gateways_routes_and_each_answers(app, upstream) {
        let spec = app.get("/openapi.json").await.body;
        assert!(spec["paths"]["/v1/prices/{model}"]["put"].is_object());
        assert!(spec["paths"]["/v1/chat/completions"]["post"].is_object());
        testkit::openapi::assert_routes_documented(&app).await;
        assert!(upstream.requests().is_empty());
    }
}

gateway_test! {
    #[tokio::test]
    async fn the_gateways_error_codes_are_listed_under_their_statuses(app, upstream) {
        testkit::openapi::assert_error_codes(&app, &GatewayError::codes()).await;
        let _ = &upstream;
    }
}

gateway_test! {
    #[tokio::test]
    async fn each_gateway_route_documents_who_may_call_it(app, upstream) {
        testkit::openapi::assert_access_documented(&app).await;
        let _ = &upstream;
    }
}
