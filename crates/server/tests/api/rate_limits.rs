//! Rate limits per key: a burst of its rate passes, the next is `429
//! rate_limited` with `Retry-After` and `RateLimit-*`, and the bucket
//! refills with time; a key's own rate wins over its kind's.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::TestApp;

async fn read(app: &TestApp, key: &str) -> crate::support::Reply {
    app.send_as(Some(key), Method::GET, "/v1/accounts/u/balance", &[], None)
        .await
}

/// Customer keys may make 2 requests a second; admin and service keys
/// have no rate unless given one.
fn customers_at_two(state: server::AppState) -> server::AppState {
    state.with_rate_limits([None, None, Some(2)])
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_key_past_its_rate_is_told_when_to_come_back_and_nothing_is_done(app) {
        app.account_with("u", "10").await;
        let key = app.create_customer_key("u").await["key"].as_str().unwrap().to_owned();
        let first = read(&app, &key).await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        assert_eq!(first.headers["ratelimit-limit"], "2");
        assert_eq!(first.headers["ratelimit-remaining"], "1");
        assert_eq!(first.headers["ratelimit-reset"], "1");
        let second = read(&app, &key).await;
        assert_eq!(second.headers["ratelimit-remaining"], "0");
        // The third within the same second is refused, a write too, and
        // nothing it asked is done.
        let refused = app
            .send_as(Some(&key), Method::POST, "/v1/accounts/u/consume", &[],
                Some(json!({"amount": "1"})))
            .await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
        assert_eq!(refused.code(), "rate_limited");
        assert_eq!(refused.headers["retry-after"], "1");
        assert_eq!(refused.headers["ratelimit-remaining"], "0");
        assert_eq!(app.available("u").await, "10");
        // Other keys are not held by this one's rate, nor are admin keys
        // without a rate of their own.
        let other = app.create_customer_key("u").await["key"].as_str().unwrap().to_owned();
        let theirs = app.send_as(Some(&other), Method::GET, "/v1/accounts/u/balance", &[], None).await;
        assert_eq!(theirs.status, StatusCode::OK);
        for _ in 0..5 {
            let admin = app.get("/v1/accounts/u/balance").await;
            assert_eq!(admin.status, StatusCode::OK);
            assert!(admin.headers.get("ratelimit-limit").is_none());
        }
        // Half a second gives back one request.
        let now = store::Clock::now(&app.clock);
        app.clock.set(ledger::Timestamp::from_micros(now.micros() + 500_000));
        assert_eq!(read(&app, &key).await.status, StatusCode::OK);
        assert_eq!(read(&app, &key).await.status, StatusCode::TOO_MANY_REQUESTS);

        // A key's own rate wins over its kind's, and null gives it back.
        let id = app.get("/v1/accounts/u/keys").await.body["data"][0]["id"].as_str().unwrap().to_owned();
        let set = app.send(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({"rate_limit": 5}))).await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        assert_eq!(set.body["rate_limit"], 5);
        for bad in [json!(0), json!(1_000_001), json!("fast"), json!(2.5)] {
            let refused = app.send(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({"rate_limit": bad}))).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}: {refused:?}");
        }
        let cleared = app.send(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({"rate_limit": null}))).await;
        assert!(cleared.body.get("rate_limit").is_none(), "{cleared:?}");
        let metrics = app.send_as(None, Method::GET, "/metrics", &[], None).await;
        assert!(metrics.text.contains("creditd_http_refused_requests_total{reason=\"rate_limited\"} 2"),
            "{}", metrics.text);
    }
    sqlite: TestApp::spawn_sqlite_with(None, customers_at_two).await,
    postgres: TestApp::spawn_postgres_with(None, customers_at_two).await,
}
