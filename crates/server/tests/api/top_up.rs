//! The top-up link on every `402 insufficient_credits` answer, when one is configured.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestApp;

const TOP_UP_URL: &str = "https://shop.example.com/credits";

fn with_top_up_url(state: server::AppState) -> server::AppState {
    state.with_top_up_url(Some(server::top_up::TopUpUrl::parse(TOP_UP_URL).unwrap()))
}

testkit::each_store_test! {
    #[tokio::test]
    async fn insufficient_credits_carries_the_top_up_url_and_changes_nothing(app) {
        app.account_with("u", "5").await;
        for (path, body) in [
            ("/v1/accounts/u/consume", json!({"amount": "6"})),
            ("/v1/accounts/u/holds", json!({"amount": "6"})),
        ] {
            let reply = app.post(path, body).await;
            assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{path}: {reply:?}");
            assert_eq!(reply.code(), "insufficient_credits", "{path}");
            let error = &reply.body["error"];
            assert_eq!(error["top_up_url"], TOP_UP_URL, "{path}");
            assert_eq!((error["required"].as_str(), error["available"].as_str()), (Some("6"), Some("5")));
        }
        assert_eq!(app.available("u").await, "5");
        // A replayed answer carries it too.
        let first = app.post_keyed("/v1/accounts/u/consume", "k1", json!({"amount": "9"})).await;
        let again = app.post_keyed("/v1/accounts/u/consume", "k1", json!({"amount": "9"})).await;
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(first.body, again.body);
        assert_eq!(again.body["error"]["top_up_url"], TOP_UP_URL);
        // Other errors carry no link.
        let missing = app.post("/v1/accounts/ghost/consume", json!({"amount": "1"})).await;
        assert_eq!(missing.code(), "account_not_found");
        assert!(missing.body["error"].get("top_up_url").is_none(), "{missing:?}");
    }
    sqlite: TestApp::spawn_sqlite_with(None, with_top_up_url).await,
    postgres: TestApp::spawn_postgres_with(None, with_top_up_url).await,
}

store_test! {
    #[tokio::test]
    async fn without_a_top_up_url_insufficient_credits_has_none(app) {
        app.account_with("u", "5").await;
        let reply = app.post("/v1/accounts/u/consume", json!({"amount": "6"})).await;
        assert_eq!(reply.code(), "insufficient_credits");
        assert!(reply.body["error"].get("top_up_url").is_none(), "{reply:?}");
    }
}
