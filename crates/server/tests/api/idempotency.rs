//! Idempotency keys: replay, conflict, and rejections that are replayed too.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn same_key_and_request_replays_the_first_response() {
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn same_key_with_a_different_request_is_a_conflict() {
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn a_refusal_is_replayed_even_after_things_change() {
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn every_write_honours_the_key() {
    let app = TestApp::spawn().await;
    let writes = [
        ("/v1/accounts", json!({"id": "u"})),
        (
            "/v1/accounts/u/grants",
            json!({"amount": "100", "source": "admin"}),
        ),
        ("/v1/accounts/u/consume", json!({"amount": "1"})),
        ("/v1/accounts/u/holds", json!({"amount": "5"})),
        ("/v1/holds/hold_1/commit", json!({"amount": "2"})),
        ("/v1/accounts/u/holds", json!({"amount": "3"})),
        ("/v1/holds/hold_2/release", json!({})),
        ("/v1/transactions/tx_2/refund", json!({"amount": "1"})),
        ("/v1/grants/lot_1/void", json!({})),
    ];
    for (i, (path, body)) in writes.iter().enumerate() {
        let key = format!("key-{i}");
        let first = app.post_keyed(path, &key, body.clone()).await;
        assert!(first.status.is_success(), "{path}: {first:?}");
        let before = app.snapshot("u").await;
        let again = app.post_keyed(path, &key, body.clone()).await;
        assert_eq!(
            (again.status, &again.text),
            (first.status, &first.text),
            "{path}"
        );
        assert_eq!(
            app.snapshot("u").await,
            before,
            "{path} changed something on replay"
        );
    }
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

#[tokio::test]
async fn bad_keys_are_refused() {
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn idempotent_account_creation_replays_201() {
    let app = TestApp::spawn().await;
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
