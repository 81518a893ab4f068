//! Idempotency keys: replay, conflict, and rejections that are replayed too.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Reply, TestApp};

store_test! {
    #[tokio::test]
    async fn same_key_and_request_replays_the_first_response(app) {
        app.account_with("u", "100").await;
        let first = app
            .post_keyed("/v1/accounts/u/consume", "order-1", json!({"amount": "10"}))
            .await;
        assert_eq!(first.status, StatusCode::OK);
        app.clock.advance_secs(5);
        let second = app
            .post_keyed("/v1/accounts/u/consume", "order-1", json!({"amount": "10"}))
            .await;
        assert_eq!(second.status, first.status);
        assert_eq!(second.text, first.text);
        assert_eq!(second.headers["idempotent-replayed"], "true");
        assert!(first.headers.get("idempotent-replayed").is_none());
        assert_eq!(app.available("u").await, "90");
    }
}

store_test! {
    #[tokio::test]
    async fn same_key_with_a_different_request_is_a_conflict(app) {
        app.account_with("u", "100").await;
        app.post_keyed("/v1/accounts/u/consume", "k", json!({"amount": "10"}))
            .await;
        let before = app.snapshot("u").await;
        for (path, body) in [
            ("/v1/accounts/u/consume", json!({"amount": "11"})),
            ("/v1/accounts/u/holds", json!({"amount": "10"})),
        ] {
            let other = app.post_keyed(path, "k", body).await;
            assert_eq!(other.status, StatusCode::CONFLICT, "{path}");
            assert_eq!(other.code(), "idempotency_conflict");
        }
        assert_eq!(app.snapshot("u").await, before);
    }
}

store_test! {
    #[tokio::test]
    async fn a_refusal_is_replayed_even_after_things_change(app) {
        app.account_with("u", "5").await;
        let refused = app
            .post_keyed("/v1/accounts/u/consume", "big", json!({"amount": "50"}))
            .await;
        assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
        app.post(
            "/v1/accounts/u/grants",
            json!({"amount": "100", "source": "purchase"}),
        )
        .await;
        let again = app
            .post_keyed("/v1/accounts/u/consume", "big", json!({"amount": "50"}))
            .await;
        assert_eq!(again.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(again.text, refused.text);
        assert_eq!(app.available("u").await, "105");
    }
}

store_test! {
    #[tokio::test]
    async fn every_write_honours_the_key(app) {
        let created = twice(&app, "/v1/accounts", "k-account", json!({"id": "u"})).await;
        assert_eq!(created.status, StatusCode::CREATED);
        let grant = twice(
            &app,
            "/v1/accounts/u/grants",
            "k-grant",
            json!({"amount": "100", "source": "admin"}),
        )
        .await;
        let lot = grant.body["id"].as_str().unwrap();
        let spent = twice(&app, "/v1/accounts/u/consume", "k-consume", json!({"amount": "1"})).await;
        let tx = spent.body["transaction"]["id"].as_str().unwrap();
        let hold = twice(&app, "/v1/accounts/u/holds", "k-hold", json!({"amount": "5"})).await;
        let hold = hold.body["hold"]["id"].as_str().unwrap();
        twice(
            &app,
            &format!("/v1/holds/{hold}/commit"),
            "k-commit",
            json!({"amount": "2"}),
        )
        .await;
        let other = twice(&app, "/v1/accounts/u/holds", "k-hold-2", json!({"amount": "3"})).await;
        let other = other.body["hold"]["id"].as_str().unwrap();
        twice(&app, &format!("/v1/holds/{other}/release"), "k-release", json!({})).await;
        twice(
            &app,
            &format!("/v1/transactions/{tx}/refund"),
            "k-refund",
            json!({"amount": "1"}),
        )
        .await;
        twice(&app, &format!("/v1/grants/{lot}/void"), "k-void", json!({})).await;
        let put = |key: &'static str, price: &'static str| {
            app.client
                .put(format!("{}/v1/features/f", app.base))
                .bearer_auth(crate::support::KEY)
                .header("Idempotency-Key", key)
                .json(&json!({"credits_per_unit": price}))
                .send()
        };
        let first = put("feature", "1").await.unwrap().text().await.unwrap();
        let again = put("feature", "1").await.unwrap();
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.text().await.unwrap(), first);
        assert_eq!(
            put("feature", "2").await.unwrap().status(),
            StatusCode::CONFLICT
        );
    }
}

/// Sends a keyed write twice: the second answer must be the first, byte for
/// byte, and must change nothing.
async fn twice(app: &TestApp, path: &str, key: &str, body: serde_json::Value) -> Reply {
    let first = app.post_keyed(path, key, body.clone()).await;
    assert!(first.status.is_success(), "{path}: {first:?}");
    let before = app.snapshot("u").await;
    let again = app.post_keyed(path, key, body).await;
    assert_eq!(
        (again.status, &again.text),
        (first.status, &first.text),
        "{path}"
    );
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        app.snapshot("u").await,
        before,
        "{path} changed something on replay"
    );
    first
}

store_test! {
    #[tokio::test]
    async fn bad_keys_are_refused(app) {
        app.account_with("u", "5").await;
        let long = "k".repeat(256);
        for key in [long.as_str(), "with space", ""] {
            let reply = app
                .post_keyed("/v1/accounts/u/consume", key, json!({"amount": "1"}))
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{key:?}");
            assert_eq!(reply.code(), "invalid_request");
        }
        assert_eq!(app.available("u").await, "5");
    }
}

store_test! {
    #[tokio::test]
    async fn idempotent_account_creation_replays_201(app) {
        let first = app
            .post_keyed("/v1/accounts", "signup-7", json!({"id": "u7"}))
            .await;
        assert_eq!(first.status, StatusCode::CREATED);
        let again = app
            .post_keyed("/v1/accounts", "signup-7", json!({"id": "u7"}))
            .await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.text, first.text);
        let unkeyed = app.post("/v1/accounts", json!({"id": "u7"})).await;
        assert_eq!(unkeyed.code(), "account_exists");
    }
}
