//! The rough edges a new user hit, each held in place.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::KEY;

store_test! {
    /// PostgreSQL cannot hold a NUL in text; neither store is asked to.
    #[tokio::test]
    async fn a_control_character_in_a_name_is_refused_on_either_store(app) {
        for name in ["a\u{0}b", "line\nbreak", "bell\u{7}"] {
            let reply = app.post("/v1/accounts", json!({"id": "u", "name": name})).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name:?}: {reply:?}");
            assert_eq!(reply.code(), "invalid_request");
        }
        assert_eq!(app.get("/v1/accounts/u").await.code(), "account_not_found");
        let fine = app.post("/v1/accounts", json!({"id": "u", "name": "Zoë 🚀"})).await;
        assert_eq!(fine.status, StatusCode::CREATED);
    }
}

store_test! {
    /// An expired hold reads as resolved at its expiry, before and after the
    /// sweep writes the release.
    #[tokio::test]
    async fn an_expired_holds_resolution_does_not_move_when_the_sweep_writes_it(app) {
        app.account_with("u", "10").await;
        let held = app
            .post("/v1/accounts/u/holds", json!({"amount": "4", "ttl_seconds": 60}))
            .await;
        let id = held.body["hold"]["id"].as_str().unwrap().to_owned();
        app.clock.advance_secs(90);
        let before = app.get(&format!("/v1/holds/{id}")).await;
        assert_eq!(before.body["status"], "expired");
        assert_eq!(before.body["resolved_at"], "2027-01-15T08:01:00.000000Z");
        app.clock.advance_secs(30);
        assert!(server::jobs::sweep(&app.state).await.unwrap() >= 1);
        let after = app.get(&format!("/v1/holds/{id}")).await;
        assert_eq!(after.body["status"], "expired");
        assert_eq!(after.body["resolved_at"], before.body["resolved_at"]);
        assert_eq!(app.available("u").await, "10");
    }
}

store_test! {
    /// `.` and `..` are path segments every HTTP client resolves away.
    #[tokio::test]
    async fn an_account_id_of_dots_is_refused(app) {
        for id in [".", "..", "..."] {
            let reply = app.post("/v1/accounts", json!({"id": id})).await;
            assert_eq!(reply.code(), "invalid_id", "{id}");
        }
        let dotted = app.post("/v1/accounts", json!({"id": "a.b"})).await;
        assert_eq!(dotted.status, StatusCode::CREATED);
    }
}

store_test! {
    #[tokio::test]
    async fn a_header_sent_twice_is_refused_and_nothing_applies(app) {
        app.account_with("u", "10").await;
        let request = app
            .client
            .post(format!("{}/v1/accounts/u/consume", app.base))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "one")
            .header("Idempotency-Key", "two")
            .json(&json!({"amount": "1"}));
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(app.available("u").await, "10");
    }
}

store_test! {
    #[tokio::test]
    async fn errors_speak_json_not_rust_and_401_names_the_scheme(app) {
        app.account_with("u", "10").await;
        let wrong = app.post("/v1/accounts/u/consume", json!("one credit")).await;
        assert_eq!(wrong.code(), "invalid_request");
        let message = wrong.body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("struct") && !message.contains("Body"), "{message}");
        let anonymous = app.send_as(None, Method::GET, "/v1/accounts", &[], None).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.headers["www-authenticate"], "Bearer realm=\"creditd\"");
    }
}

store_test! {
    #[tokio::test]
    async fn money_as_text_is_plain_decimal_and_metadata_is_shallow(app) {
        app.account_with("u", "10").await;
        let exponent = app.post("/v1/accounts/u/consume", json!({"amount": "1e0"})).await;
        assert_eq!(exponent.code(), "invalid_amount");
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!([deep]);
        }
        let nested = app
            .post("/v1/accounts/u/consume", json!({"amount": "1", "metadata": {"a": deep}}))
            .await;
        assert_eq!(nested.code(), "invalid_metadata");
        assert_eq!(app.available("u").await, "10");
    }
}
