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

gateway_test! {
    #[tokio::test]
    async fn a_key_over_its_tokens_a_minute_is_refused_until_the_minute_gives_them_back(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        app.account_with("acme", "100").await;
        let created = key_with(&app, "acme", json!({"name": "web"})).await;
        let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
        let set = app
            .send(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({"token_rate_limit": 40})))
            .await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        assert_eq!(set.body["token_rate_limit"], 40);
        // Each call uses 17 tokens (12 in, 5 out): 40, 23, 6 left, and the
        // third, starting with 6, takes the bucket 11 below zero.
        for left in ["40", "23", "6"] {
            let answered = send_call(&app, key, "/v1/chat/completions", chat()).await;
            assert_eq!(answered.status(), StatusCode::OK);
            assert_eq!(answered.headers()["x-ratelimit-limit-tokens"], "40");
            assert_eq!(answered.headers()["x-ratelimit-remaining-tokens"], left);
        }
        let refused = send_call(&app, key, "/v1/chat/completions", chat()).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // 12 tokens short at 40 a minute: 18 seconds.
        assert_eq!(refused.headers()["retry-after"], "18");
        assert_eq!(refused.headers()["x-ratelimit-limit-tokens"], "40");
        assert_eq!(refused.headers()["x-ratelimit-remaining-tokens"], "0");
        assert_eq!(refused.headers()["x-ratelimit-reset-tokens"], "18s");
        assert!(refused.headers().get("ratelimit-limit").is_none());
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["code"], "rate_limited");
        assert_eq!(error["error"]["type"], "rate_limit_error");
        assert_eq!(upstream.requests().len(), 3, "a refused call never goes upstream");

        app.clock.advance_secs(17);
        let (status, _) = call(&app, key, "/v1/chat/completions", chat()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        app.clock.advance_secs(1);
        let (status, _) = call(&app, key, "/v1/chat/completions", chat()).await;
        assert_eq!(status, StatusCode::OK);

        // Back to the default (none): no limit.
        let unset = app
            .send(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({"token_rate_limit": null})))
            .await;
        assert_eq!(unset.status, StatusCode::OK, "{unset:?}");
        assert!(unset.body.get("token_rate_limit").is_none());
        for _ in 0..4 {
            let (status, _) = call(&app, key, "/v1/chat/completions", chat()).await;
            assert_eq!(status, StatusCode::OK);
        }

        // Out of range, or on a key that makes no gateway calls: refused.
        let zero = app
            .send(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({"token_rate_limit": 0})))
            .await;
        assert_eq!((zero.status, zero.code()), (StatusCode::BAD_REQUEST, "invalid_request"));
        let service = app.create_key("service", "backend").await;
        let on_service = app
            .send(
                Method::PATCH,
                &format!("/v1/keys/{}", service["id"].as_str().unwrap()),
                Some(json!({"token_rate_limit": 100})),
            )
            .await;
        assert_eq!(on_service.status, StatusCode::BAD_REQUEST, "{on_service:?}");
    }
}

#[tokio::test]
async fn the_gateways_default_tokens_a_minute_holds_every_customer_key_without_its_own() {
    each_store(
        |config| config.tokens_per_minute = Some(20),
        async |app, upstream| {
            price(&app, "gpt-test", "openai").await;
            let key = customer(&app, "acme", "100").await;
            // 17 tokens, then 3 left: a second call starts, a third is refused.
            for _ in 0..2 {
                let (status, text) = call(&app, &key, "/v1/chat/completions", chat()).await;
                assert_eq!(status, StatusCode::OK, "{text}");
            }
            let (status, text) = call(&app, &key, "/v1/chat/completions", chat()).await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
            assert_eq!(upstream.requests().len(), 2);
            // Another key has a bucket of its own.
            let other = customer(&app, "globex", "100").await;
            let (status, _) = call(&app, &other, "/v1/chat/completions", chat()).await;
            assert_eq!(status, StatusCode::OK);
        },
    )
    .await;
}
