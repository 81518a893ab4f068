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
    /// Two credentials are a guess at which one counts: an admin key first
    /// and a customer key second must not make the request an admin's.
    #[tokio::test]
    async fn a_credential_sent_twice_or_two_different_ones_are_refused(app) {
        app.account_with("u", "10").await;
        let customer = app.create_customer_key("u").await["key"].as_str().unwrap().to_owned();
        let path = "/v1/accounts";
        for headers in [
            vec![("x-api-key", KEY), ("x-api-key", customer.as_str())],
            vec![("x-api-key", customer.as_str()), ("x-api-key", KEY)],
            vec![("x-api-key", KEY), ("x-api-key", KEY)],
        ] {
            let reply = app.send_as(None, Method::GET, path, &headers, None).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{headers:?}: {reply:?}");
            assert_eq!(reply.code(), "invalid_request");
            assert!(reply.body["error"]["message"].as_str().unwrap().contains("x-api-key"));
        }
        let bearer = format!("Bearer {customer}");
        let mixed = app
            .send_as(None, Method::GET, path, &[("authorization", &bearer), ("x-api-key", KEY)], None)
            .await;
        assert_eq!(mixed.status, StatusCode::BAD_REQUEST, "{mixed:?}");
        // The same key in both is one credential.
        let admin = format!("Bearer {KEY}");
        let same = app
            .send_as(None, Method::GET, path, &[("authorization", &admin), ("x-api-key", KEY)], None)
            .await;
        assert_eq!(same.status, StatusCode::OK, "{same:?}");
        let once = app.send_as(None, Method::GET, path, &[("x-api-key", KEY)], None).await;
        assert_eq!(once.status, StatusCode::OK, "{once:?}");
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

store_test! {
    /// One rule for every JSON route: `application/json`, in UTF-8 or with
    /// no charset; anything else is 415 and nothing applies.
    #[tokio::test]
    async fn a_body_that_is_not_application_json_in_utf_8_is_415(app) {
        app.account_with("u", "10").await;
        let auth = format!("Bearer {KEY}");
        let body = r#"{"amount": "1"}"#;
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/json; charset=utf-16"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut headers = vec![("authorization", auth.as_str())];
            if let Some(value) = content_type {
                headers.push(("content-type", value));
            }
            let reply = app.raw(Method::POST, "/v1/accounts/u/consume", &headers, body).await;
            assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}: {reply:?}");
            assert_eq!(reply.code(), "unsupported_media_type");
        }
        assert_eq!(app.available("u").await, "10");
        let utf8 = app
            .raw(
                Method::POST,
                "/v1/accounts/u/consume",
                &[("authorization", &auth), ("content-type", "application/json; charset=UTF-8")],
                body,
            )
            .await;
        assert_eq!(utf8.status, StatusCode::OK, "{utf8:?}");
        // A write without a body needs no content type.
        let hold = app.post("/v1/accounts/u/holds", json!({"amount": "1"})).await;
        let hold_id = hold.body["hold"]["id"].as_str().unwrap().to_owned();
        let released = app
            .raw(Method::POST, &format!("/v1/holds/{hold_id}/release"), &[("authorization", &auth)], "")
            .await;
        assert_eq!(released.status, StatusCode::OK, "{released:?}");
    }
}

store_test! {
    /// What an admin panel shows must read as what it is: a bidirectional
    /// override or a zero-width character in a name is refused.
    #[tokio::test]
    async fn names_with_bidi_controls_or_zero_width_characters_are_refused(app) {
        app.account_with("u", "1").await;
        for name in ["rtl \u{202e} gnp.exe", "ad\u{200b}min", "\u{2066}isolate\u{2069}", "bom\u{feff}"] {
            let opened = app.post("/v1/accounts", json!({"id": "v", "name": name})).await;
            assert_eq!((opened.status, opened.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{name:?}");
            let renamed = app.send(Method::PATCH, "/v1/accounts/u", Some(json!({"name": name}))).await;
            assert_eq!(renamed.code(), "invalid_request", "{name:?}");
            let key = app.post("/v1/accounts/u/keys", json!({"name": name})).await;
            assert_eq!(key.code(), "invalid_request", "{name:?}");
            let project = app.post("/v1/accounts/u/keys", json!({"project": name})).await;
            assert_eq!(project.code(), "invalid_request", "{name:?}");
        }
        assert_eq!(app.get("/v1/accounts/v").await.status, StatusCode::NOT_FOUND);
        // Any script is welcome.
        let named = app.post("/v1/accounts", json!({"id": "w", "name": "李小龙 — Créditos"})).await;
        assert_eq!(named.status, StatusCode::CREATED, "{named:?}");
    }
}
