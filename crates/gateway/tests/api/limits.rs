//! Customer keys' projects and spend limits: usage attributed to the key's project, and a
//! key's window never spends past its limit, however many calls run at once.

use std::sync::Arc;

use gateway::Gateway;
use gateway::limit::KeySpend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::records;

use crate::support::*;

fn chat() -> Value {
    json!({"model": "gpt-test", "max_tokens": 200, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// A customer key of `account` made with `body`.
async fn key_with(app: &TestApp, account: &str, body: Value) -> Value {
    let reply = app
        .post(&format!("/v1/accounts/{account}/keys"), body)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body
}

/// What the key's window of today holds, in micro-credits.
async fn window_spent(app: &TestApp, key_id: &str) -> i64 {
    let gateway = app.plugin::<Gateway>();
    let day = server::SpendPeriod::Day.window(app.test_clock.clock().now());
    records::get::<KeySpend>(gateway.store.as_ref(), &format!("{key_id}:{day}"))
        .await
        .unwrap()
        .map_or(0, |d| d.body.spent_micros)
}

/// The default fake usage's cost with the markup.
const SMALL_CALL: i64 = 7_040;

gateway_test! {
    #[tokio::test]
    async fn usage_is_attributed_to_the_keys_project(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        app.account_with("acme", "10").await;
        let web = key_with(&app, "acme", json!({"name": "web", "project": "web"})).await;
        assert_eq!(web["project"], "web");
        let batch = key_with(&app, "acme", json!({"name": "batch", "project": "batch"})).await;
        for key in [&web, &web, &batch] {
            let (status, _) = call(&app, key["key"].as_str().unwrap(), "/v1/chat/completions", chat()).await;
            assert_eq!(status, StatusCode::OK);
        }
        until_calls(&app, "acme", 3).await;
        let summary = app.get("/v1/accounts/acme/usage?group_by=project").await;
        assert_eq!(summary.status, StatusCode::OK, "{summary:?}");
        let groups: Vec<(String, i64)> = summary.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["key"].as_str().unwrap().to_owned(), g["calls"].as_i64().unwrap()))
            .collect();
        assert_eq!(groups, [("batch".to_owned(), 1), ("web".to_owned(), 2)]);
        assert_eq!(upstream.requests().len(), 3);

        // The project moves with a PATCH, and later calls follow it.
        let moved = app
            .send(Method::PATCH, &format!("/v1/keys/{}", batch["id"].as_str().unwrap()), Some(json!({"project": null})))
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
        assert!(moved.body.get("project").is_none());
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_key_over_its_spend_limit_is_refused_and_the_window_resets_on_time(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        app.account_with("acme", "100").await;
        // The call's worst case (about 0.21 credits) does not fit in 0.1.
        let created = key_with(&app, "acme", json!({"spend_limit": {"amount": "0.1", "period": "day"}})).await;
        assert_eq!(created["spend_limit"], json!({"amount": "0.1", "period": "day"}));
        let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
        let (status, text) = call(&app, key, "/v1/chat/completions", chat()).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "key_spend_limit");
        assert!(upstream.requests().is_empty());

        let raised = app
            .send(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({"spend_limit": {"amount": "0.25", "period": "day"}})))
            .await;
        assert_eq!(raised.status, StatusCode::OK, "{raised:?}");
        let (status, _) = call(&app, key, "/v1/chat/completions", chat()).await;
        assert_eq!(status, StatusCode::OK);
        settled(&app, "acme").await;
        assert_eq!(window_spent(&app, id).await, SMALL_CALL);
        // 0.25 − 0.00704 left: the worst case fits once more, then the day
        // has spent too much for another.
        let mut served = 1;
        loop {
            let (status, _) = call(&app, key, "/v1/chat/completions", chat()).await;
            if status != StatusCode::OK {
                assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
                break;
            }
            served += 1;
            settled(&app, "acme").await;
            assert!(served < 40, "the limit never bit");
        }
        let spent = window_spent(&app, id).await;
        assert!(spent <= 250_000);
        assert_eq!(spent, served * SMALL_CALL);

        // The next day is a new window.
        app.clock.advance_secs(86_400);
        let (status, _) = call(&app, key, "/v1/chat/completions", chat()).await;
        assert_eq!(status, StatusCode::OK);
    }
}

gateway_test! {
    #[tokio::test]
    async fn concurrent_calls_never_take_a_key_past_its_limit(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        app.account_with("acme", "100").await;
        // About four worst cases fit in one credit at once.
        let created = key_with(&app, "acme", json!({"spend_limit": {"amount": "1", "period": "total"}})).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let key = Arc::new(created["key"].as_str().unwrap().to_owned());
        let app = Arc::new(app);
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let (app, key) = (app.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                call(&app, &key, "/v1/chat/completions", chat()).await.0
            }));
        }
        let mut served = 0;
        for task in tasks {
            match task.await.unwrap() {
                StatusCode::OK => served += 1,
                StatusCode::PAYMENT_REQUIRED => {}
                other => panic!("{other}"),
            }
        }
        assert!(served >= 4, "only {served} served");
        assert_eq!(upstream.requests().len(), served as usize);
        settled(&app, "acme").await;
        let gateway = app.plugin::<Gateway>();
        let spent = records::get::<KeySpend>(gateway.store.as_ref(), &format!("{id}:total"))
            .await
            .unwrap()
            .unwrap()
            .body
            .spent_micros;
        // Every hold came back: the window holds exactly what was charged.
        assert_eq!(spent, served * SMALL_CALL);
        let balance = app.balance("acme").await;
        assert_eq!(
            ledger::Amount::parse_decimal(balance["available"].as_str().unwrap()).unwrap().micros(),
            100_000_000 - served * SMALL_CALL
        );
    }
}
