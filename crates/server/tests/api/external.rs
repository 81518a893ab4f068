//! External ids over HTTP: the same cause applies once, long after idempotency keys are gone.

use reqwest::{Method, StatusCode};
use serde_json::json;

store_test! {
    #[tokio::test]
    async fn a_grant_sent_again_days_later_is_answered_with_the_first(app) {
        app.account_with("u", "0").await;
        let body = json!({"amount": "50", "source": "purchase", "external_id": "cs_test_1"});
        let first = app.post_keyed("/v1/accounts/u/grants", "k1", body.clone()).await;
        assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
        assert_eq!(first.body["external_id"], "cs_test_1");

        // Three days on, Stripe retries: the idempotency key has been
        // forgotten, and the external id still holds.
        app.clock.advance_secs(3 * 86_400);
        let forgotten = app
            .state
            .store
            .prune_idempotency(ledger::Timestamp::from_secs(1_800_000_000 + 2 * 86_400))
            .await
            .unwrap();
        assert!(forgotten >= 1);
        let again = app.post_keyed("/v1/accounts/u/grants", "k1", body.clone()).await;
        assert_eq!(again.status, StatusCode::CREATED, "{again:?}");
        assert_eq!(again.body["id"], first.body["id"]);
        assert_eq!(again.body["created_at"], first.body["created_at"]);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        let without_key = app.post("/v1/accounts/u/grants", body).await;
        assert_eq!(without_key.body["id"], first.body["id"]);
        assert_eq!(app.available("u").await, "50");

        // The same external id for something else is a conflict.
        let other = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "60", "source": "purchase", "external_id": "cs_test_1"}),
            )
            .await;
        assert_eq!(other.status, StatusCode::CONFLICT);
        assert_eq!(other.code(), "external_id_conflict");
        assert_eq!(app.available("u").await, "50");

        let listed = app.get("/v1/accounts/u/transactions").await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(listed.body["data"][0]["external_id"], "cs_test_1");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn a_consume_with_an_external_id_spends_once(app) {
        app.account_with("u", "10").await;
        let body = json!({"amount": "3", "external_id": "call-7f3a"});
        let first = app.post("/v1/accounts/u/consume", body.clone()).await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(first.body["transaction"]["external_id"], "call-7f3a");
        let again = app.post("/v1/accounts/u/consume", body).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body["transaction"]["id"], first.body["transaction"]["id"]);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(app.available("u").await, "7");
        let read = app
            .send(
                Method::GET,
                &format!("/v1/transactions/{}", first.body["transaction"]["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(read.body["external_id"], "call-7f3a");
    }
}

store_test! {
    #[tokio::test]
    async fn a_bad_external_id_is_refused(app) {
        app.account_with("u", "10").await;
        for bad in [json!(""), json!("has space"), json!("x".repeat(256)), json!(7)] {
            let reply = app
                .post("/v1/accounts/u/consume", json!({"amount": "1", "external_id": bad}))
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {reply:?}");
        }
        let check = app
            .post("/v1/accounts/u/check", json!({"amount": "1", "external_id": "x"}))
            .await;
        assert_eq!(check.code(), "invalid_request");
        assert_eq!(app.available("u").await, "10");
    }
}
