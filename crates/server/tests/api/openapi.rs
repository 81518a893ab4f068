//! The OpenAPI description matches the routes that exist.

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Every route the server has, as `METHOD path`.
const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /metrics",
    "GET /openapi.json",
    "GET /v1/accounts",
    "POST /v1/accounts",
    "GET /v1/accounts/{id}",
    "GET /v1/accounts/{id}/balance",
    "GET /v1/accounts/{id}/grants",
    "POST /v1/accounts/{id}/grants",
    "POST /v1/accounts/{id}/consume",
    "POST /v1/accounts/{id}/check",
    "POST /v1/accounts/{id}/holds",
    "GET /v1/accounts/{id}/transactions",
    "GET /v1/grants/{grant_id}",
    "POST /v1/grants/{grant_id}/void",
    "GET /v1/holds/{hold_id}",
    "POST /v1/holds/{hold_id}/commit",
    "POST /v1/holds/{hold_id}/release",
    "GET /v1/transactions/{tx_id}",
    "POST /v1/transactions/{tx_id}/refund",
    "GET /v1/features",
    "GET /v1/features/{feature_id}",
    "PUT /v1/features/{feature_id}",
];

store_test! {
    #[tokio::test]
    async fn the_description_lists_exactly_the_routes(app) {
        let reply = app.get("/openapi.json").await;
        assert_eq!(reply.status, StatusCode::OK);
        let spec = reply.body;
        assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
        let mut documented = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.push(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        documented.sort();
        let mut expected: Vec<String> = ROUTES.iter().map(|r| r.to_string()).collect();
        expected.sort();
        assert_eq!(documented, expected);

        // Each documented route exists: it answers with something other than
        // "no such route" or "method not allowed".
        for route in ROUTES {
            let (method, path) = route.split_once(' ').unwrap();
            let concrete = path
                .replace("{id}", "acct")
                .replace("{grant_id}", "lot_1")
                .replace("{hold_id}", "hold_1")
                .replace("{tx_id}", "tx_1")
                .replace("{feature_id}", "f");
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let reply = app
                .send(method, &concrete, Some(serde_json::json!({})))
                .await;
            assert_ne!(reply.code(), "not_found", "{route}");
            assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        }
    }
}

store_test! {
    #[tokio::test]
    async fn every_error_code_the_server_uses_is_documented(app) {
        let spec: Value = app.get("/openapi.json").await.body;
        let codes: Vec<&str> =
            spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
                .as_array()
                .expect("the Error schema lists its codes")
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
        for code in [
            "unauthorized",
            "malformed_json",
            "invalid_request",
            "invalid_amount",
            "invalid_timestamp",
            "invalid_id",
            "invalid_metadata",
            "payload_too_large",
            "unsupported_media_type",
            "not_found",
            "method_not_allowed",
            "store_unavailable",
            "internal_error",
            "amount_overflow",
            "insufficient_credits",
            "account_exists",
            "account_not_found",
            "grant_not_found",
            "hold_not_found",
            "transaction_not_found",
            "feature_not_found",
            "hold_not_pending",
            "grant_voided",
            "not_refundable",
            "refund_too_large",
            "idempotency_conflict",
        ] {
            assert!(codes.contains(&code), "{code} is not in the Error schema");
        }
    }
}

store_test! {
    #[tokio::test]
    async fn metrics_count_requests_by_route_and_batches(app) {
        app.account_with("u", "10").await;
        app.post("/v1/accounts/u/consume", serde_json::json!({"amount": "1"}))
            .await;
        let metrics = app.get("/metrics").await.text;
        assert!(
            metrics.contains(
                r#"creditd_http_requests_total{method="POST",route="/v1/accounts/{account_id}/consume",status="200"} 1"#
            ),
            "{metrics}"
        );
        let batches: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("creditd_store_batches_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(batches >= 3, "{metrics}");
    }
}
