//! Bad input of every kind gets a clear 4xx with a stable code, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{KEY, TestApp};

const AUTH: (&str, &str) = ("authorization", "Bearer test-admin-key");
const JSON: (&str, &str) = ("content-type", "application/json");

/// Sends each raw body to `path` and expects `code` for it, with nothing changed.
async fn refused(app: &TestApp, method: Method, path: &str, cases: &[(&str, &str)]) {
    let before = app.snapshot("u").await;
    for (body, code) in cases {
        let reply = app
            .raw(method.clone(), path, &[AUTH, JSON], body.to_string())
            .await;
        assert!(
            reply.status.is_client_error(),
            "{path} {body}: expected a 4xx, got {reply:?}"
        );
        assert_eq!(reply.code(), *code, "{path} {body}: {reply:?}");
        assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.snapshot("u").await, before, "{path} changed something");
}

store_test! {
    #[tokio::test]
    async fn bad_account_bodies(app) {
        app.account_with("u", "10").await;
        refused(
            &app,
            Method::POST,
            "/v1/accounts",
            &[
                ("", "malformed_json"),
                ("{", "malformed_json"),
                ("not json", "malformed_json"),
                ("[]", "invalid_request"),
                // The fields in order as an array, which serde would read.
                (r#"["x"]"#, "invalid_request"),
                ("[", "malformed_json"),
                ("{}", "invalid_request"),
                (r#"{"id": 5}"#, "invalid_request"),
                (r#"{"id": "x", "nmae": "typo"}"#, "invalid_request"),
                (r#"{"id": "x", "name": 3}"#, "invalid_request"),
                (r#"{"id": ""}"#, "invalid_id"),
                (r#"{"id": "has space"}"#, "invalid_id"),
                (r#"{"id": "ü"}"#, "invalid_id"),
                (&format!(r#"{{"id": "{}"}}"#, "a".repeat(129)), "invalid_id"),
                (r#"{"id": "x", "metadata": [1]}"#, "invalid_metadata"),
                (r#"{"id": "x", "metadata": "m"}"#, "invalid_metadata"),
                (r#"{"id": "x", "overdraft_limit": "-1"}"#, "invalid_amount"),
                (
                    r#"{"id": "x", "overdraft_limit": "lots"}"#,
                    "invalid_amount",
                ),
                (r#"{"id": "u"}"#, "account_exists"),
            ],
        )
        .await;
        let long_name = json!({"id": "x", "name": "n".repeat(300)}).to_string();
        refused(
            &app,
            Method::POST,
            "/v1/accounts",
            &[(&long_name, "invalid_request")],
        )
        .await;
        let big_meta = json!({"id": "x", "metadata": {"k": "v".repeat(5000)}}).to_string();
        refused(
            &app,
            Method::POST,
            "/v1/accounts",
            &[(&big_meta, "invalid_metadata")],
        )
        .await;
        assert_eq!(app.get("/v1/accounts/x").await.code(), "account_not_found");
    }
}

store_test! {
    #[tokio::test]
    async fn bad_grant_bodies(app) {
        app.account_with("u", "10").await;
        refused(
            &app,
            Method::POST,
            "/v1/accounts/u/grants",
            &[
                ("{}", "invalid_request"),
                (r#"{"amount": "1"}"#, "invalid_request"),
                (r#"{"source": "admin"}"#, "invalid_request"),
                (r#"{"amount": "1", "source": "gift"}"#, "invalid_request"),
                (r#"{"amount": "1", "source": "admin", "priority": 101}"#, "invalid_request"),
                (r#"{"amount": "1", "source": "admin", "priority": -1}"#, "invalid_request"),
                (r#"{"amount": "1", "source": "admin", "priority": 1.5}"#, "invalid_request"),
                (r#"{"amount": "1", "source": "admin", "priority": "1"}"#, "invalid_request"),
                (r#"{"amount": "0", "source": "admin"}"#, "invalid_amount"),
                (r#"{"amount": "-5", "source": "admin"}"#, "invalid_amount"),
                (r#"{"amount": 0.0000001, "source": "admin"}"#, "invalid_amount"),
                (r#"{"amount": "1000000000000.000001", "source": "admin"}"#, "invalid_amount"),
                (r#"{"amount": 1e400, "source": "admin"}"#, "invalid_amount"),
                (r#"{"amount": "1,5", "source": "admin"}"#, "invalid_amount"),
                (r#"{"amount": [1], "source": "admin"}"#, "invalid_amount"),
                (r#"{"amount": null, "source": "admin"}"#, "invalid_request"),
                (r#"{"amount": "1", "source": "admin", "expires_at": "tomorrow"}"#, "invalid_timestamp"),
                (r#"{"amount": "1", "source": "admin", "expires_at": "2026-01-01T00:00:00Z"}"#, "invalid_timestamp"),
                (
                    r#"{"amount": "1", "source": "admin", "effective_at": "2027-03-01T00:00:00Z", "expires_at": "2027-02-01T00:00:00Z"}"#,
                    "invalid_timestamp",
                ),
                (r#"{"amount": "1", "source": "admin", "expires_at": 5}"#, "invalid_request"),
                (r#"{"amount": "1", "source": "admin", "extra": true}"#, "invalid_request"),
            ],
        )
        .await;
        refused(
            &app,
            Method::POST,
            "/v1/accounts/bad%20id/grants",
            &[(r#"{"amount": "1", "source": "admin"}"#, "invalid_id")],
        )
        .await;
    }
}

store_test! {
    #[tokio::test]
    async fn bad_usage_bodies(app) {
        app.account_with("u", "10").await;
        for path in ["/v1/accounts/u/consume", "/v1/accounts/u/check"] {
            refused(
                &app,
                Method::POST,
                path,
                &[
                    ("{}", "invalid_request"),
                    (
                        r#"{"amount": "1", "feature": "f", "quantity": 1}"#,
                        "invalid_request",
                    ),
                    (r#"{"feature": "f"}"#, "invalid_request"),
                    (r#"{"quantity": 1}"#, "invalid_request"),
                    (r#"{"amount": 0}"#, "invalid_amount"),
                    (r#"{"amount": "-1"}"#, "invalid_amount"),
                    (r#"{"amount": "1.1234567"}"#, "invalid_amount"),
                    (r#"{"amount": "1e13"}"#, "invalid_amount"),
                    (r#"{"amount": "abc"}"#, "invalid_amount"),
                    (r#"{"amount": true}"#, "invalid_amount"),
                    (r#"{"amount": {"value": 1}}"#, "invalid_amount"),
                    (r#"{"feature": "bad id", "quantity": 1}"#, "invalid_id"),
                    (r#"{"feature": "f", "quantity": "0"}"#, "invalid_amount"),
                    (r#"{"amount": "1", "metadata": 7}"#, "invalid_metadata"),
                    (r#"{"amount": "1", "colour": "red"}"#, "invalid_request"),
                    (r#"{"amount": "1""#, "malformed_json"),
                ],
            )
            .await;
        }
        refused(
            &app,
            Method::POST,
            "/v1/accounts/u/consume",
            &[(r#"{"amount": "11"}"#, "insufficient_credits")],
        )
        .await;
    }
}

store_test! {
    #[tokio::test]
    async fn bad_hold_bodies(app) {
        app.account_with("u", "10").await;
        refused(
            &app,
            Method::POST,
            "/v1/accounts/u/holds",
            &[
                ("{}", "invalid_request"),
                (r#"{"amount": "0"}"#, "invalid_amount"),
                (r#"{"amount": "1", "ttl_seconds": "60"}"#, "invalid_request"),
                (r#"{"amount": "1", "ttl_seconds": 1.5}"#, "invalid_request"),
                (r#"{"amount": "1", "ttl": 60}"#, "invalid_request"),
                (r#"{"amount": "20"}"#, "insufficient_credits"),
            ],
        )
        .await;
        let hold = app
            .post("/v1/accounts/u/holds", json!({"amount": "2"}))
            .await;
        let id = hold.body["hold"]["id"].as_str().unwrap();
        refused(
            &app,
            Method::POST,
            &format!("/v1/holds/{id}/commit"),
            &[
                ("{}", "invalid_request"),
                (r#"{"amount": "-1"}"#, "invalid_amount"),
                (r#"{"amount": "x"}"#, "invalid_amount"),
                (r#"{"amount": "1", "final": true}"#, "invalid_request"),
            ],
        )
        .await;
        refused(
            &app,
            Method::POST,
            &format!("/v1/holds/{id}/release"),
            &[(r#"{"why": 1}"#, "invalid_request")],
        )
        .await;
        refused(
            &app,
            Method::POST,
            "/v1/holds/hold_x/commit",
            &[(r#"{"amount": "1"}"#, "invalid_id")],
        )
        .await;
    }
}

store_test! {
    #[tokio::test]
    async fn bad_refund_bodies(app) {
        app.account_with("u", "10").await;
        let spent = app
            .post("/v1/accounts/u/consume", json!({"amount": "4"}))
            .await;
        let tx = spent.body["transaction"]["id"].as_str().unwrap();
        refused(
            &app,
            Method::POST,
            &format!("/v1/transactions/{tx}/refund"),
            &[
                (r#"{"amount": "0"}"#, "invalid_amount"),
                (r#"{"amount": "4.5"}"#, "refund_too_large"),
                (r#"{"amount": "1", "reason": "x"}"#, "invalid_request"),
                ("[", "malformed_json"),
            ],
        )
        .await;
        refused(
            &app,
            Method::POST,
            "/v1/transactions/tx_0/refund",
            &[("{}", "invalid_id")],
        )
        .await;
    }
}

store_test! {
    #[tokio::test]
    async fn missing_or_wrong_key_is_401_and_open_routes_need_none(app) {
        app.account_with("u", "10").await;
        let before = app.snapshot("u").await;
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic dGVzdA=="),
            Some(KEY),
            Some("Bearer "),
        ] {
            let mut headers = vec![JSON];
            if let Some(auth) = auth {
                headers.push(("authorization", auth));
            }
            for (method, path) in [
                (Method::GET, "/v1/accounts/u"),
                (Method::POST, "/v1/accounts/u/consume"),
                (Method::GET, "/v1/features"),
            ] {
                let reply = app.raw(method, path, &headers, r#"{"amount": "1"}"#).await;
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?} {path}");
                assert_eq!(reply.code(), "unauthorized");
            }
        }
        assert_eq!(app.snapshot("u").await, before);
        // The scheme name is case-insensitive.
        let lower = app
            .raw(
                Method::GET,
                "/v1/accounts/u",
                &[("authorization", "bearer test-admin-key")],
                "",
            )
            .await;
        assert_eq!(lower.status, StatusCode::OK);
        for path in ["/healthz", "/metrics", "/openapi.json"] {
            let reply = app.raw(Method::GET, path, &[], "").await;
            assert_eq!(reply.status, StatusCode::OK, "{path}");
        }
    }
}

store_test! {
    #[tokio::test]
    async fn wrong_media_type_and_oversized_bodies_are_refused(app) {
        app.account_with("u", "10").await;
        let before = app.snapshot("u").await;
        let form = app
            .raw(
                Method::POST,
                "/v1/accounts/u/consume",
                &[AUTH, ("content-type", "application/x-www-form-urlencoded")],
                "amount=1",
            )
            .await;
        assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(form.code(), "unsupported_media_type");
        let huge = format!(
            r#"{{"amount": "1", "metadata": {{"k": "{}"}}}}"#,
            "x".repeat(70_000)
        );
        let big = app
            .raw(Method::POST, "/v1/accounts/u/consume", &[AUTH, JSON], huge)
            .await;
        assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.code(), "payload_too_large");
        assert_eq!(app.snapshot("u").await, before);
    }
}

store_test! {
    #[tokio::test]
    async fn unknown_routes_and_methods(app) {
        let nowhere = app.get("/v1/nowhere").await;
        assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
        assert_eq!(nowhere.code(), "not_found");
        let delete = app.send(Method::DELETE, "/v1/accounts", None).await;
        assert_eq!(delete.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(delete.code(), "method_not_allowed");
    }
}

store_test! {
    #[tokio::test]
    async fn bad_path_ids_are_invalid_not_missing(app) {
        for path in [
            "/v1/accounts/a%20b",
            "/v1/accounts/%C3%BC/balance",
            "/v1/grants/12",
            "/v1/grants/lot_abc",
            "/v1/holds/hold_-1",
            "/v1/transactions/tx_01",
            "/v1/features/a%2Fb",
        ] {
            let reply = app.get(path).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {reply:?}");
            assert_eq!(reply.code(), "invalid_id", "{path}");
        }
    }
}
