//! The OpenAPI description matches the core server: the routes it answers,
//! the statuses and codes it can answer with, and the keys each route
//! admits; and what it says of a few behaviours holds.

use reqwest::StatusCode;
use serde_json::json;
use testkit::openapi::{self, words};

store_test! {
    #[tokio::test]
    async fn the_description_lists_exactly_the_routes_and_each_answers(app) {
        openapi::assert_routes_documented(&app).await;
    }
}

store_test! {
    #[tokio::test]
    async fn the_error_codes_are_exactly_those_the_server_can_answer(app) {
        openapi::assert_error_codes(&app, &[]).await;
    }
}

store_test! {
    #[tokio::test]
    async fn each_route_documents_who_may_call_it_and_the_server_agrees(app) {
        openapi::assert_access_documented(&app).await;
    }
}

store_test! {
    #[tokio::test]
    async fn a_release_into_an_expired_lot_is_negative_as_described(app) {
        app.account_with("u", "0").await;
        let grant = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "5", "source": "promo", "expires_at": "2027-01-15T08:01:00Z"}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{grant:?}");
        let hold = app
            .post("/v1/accounts/u/holds", json!({"amount": "2"}))
            .await;
        assert_eq!(hold.status, StatusCode::CREATED, "{hold:?}");
        app.clock.advance_secs(120);
        let id = hold.body["hold"]["id"].as_str().unwrap();
        let release = app
            .post(&format!("/v1/holds/{id}/release"), json!({}))
            .await;
        assert_eq!(release.status, StatusCode::OK, "{release:?}");
        assert_eq!(release.body["transaction"]["type"], "hold_release");
        assert_eq!(release.body["transaction"]["amount"], "-2");

        // The description says as much, rather than "zero for hold_release".
        let spec = app.get("/openapi.json").await.body;
        let amount = &spec["components"]["schemas"]["Transaction"]["properties"]["amount"];
        let text = words(amount["description"].as_str().unwrap());
        assert!(text.contains("such a release is negative"), "{text}");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn listed_grants_show_an_unwritten_expiry_as_described(app) {
        app.account_with("u", "0").await;
        let grant = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "5", "source": "promo", "expires_at": "2027-01-15T08:01:00Z"}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{grant:?}");
        app.clock.advance_secs(120);
        // No sweep runs in these tests, so the expiry is not written yet.
        let listed = app.get("/v1/accounts/u/grants").await;
        assert_eq!(listed.body["data"][0]["status"], "expired", "{listed:?}");
        assert_eq!(listed.body["data"][0]["remaining"], "0");
        let transactions = app
            .get("/v1/accounts/u/transactions?type=expire")
            .await;
        assert_eq!(transactions.body["data"], json!([]), "{transactions:?}");

        let spec = app.get("/openapi.json").await.body;
        let list = &spec["paths"]["/v1/accounts/{account_id}/grants"]["get"];
        let text = words(list["description"].as_str().unwrap());
        assert!(text.contains("even before the background sweep writes its expiry"), "{text}");
    }
}

store_test! {
    #[tokio::test]
    async fn a_check_takes_no_idempotency_key_as_described(app) {
        app.account_with("u", "10").await;
        for amount in ["1", "20"] {
            let check = app
                .post_keyed("/v1/accounts/u/check", "same-key", json!({ "amount": amount }))
                .await;
            assert_eq!(check.status, StatusCode::OK, "{check:?}");
            assert_eq!(check.body["required"], amount);
            assert!(check.headers.get("idempotent-replayed").is_none());
        }
        let malformed = app
            .post_keyed("/v1/accounts/u/check", "", json!({ "amount": "1" }))
            .await;
        assert_eq!(malformed.status, StatusCode::OK, "{malformed:?}");

        let spec = app.get("/openapi.json").await.body;
        let check = &spec["paths"]["/v1/accounts/{account_id}/check"]["post"];
        let parameters = check["parameters"].as_array().unwrap();
        assert!(parameters.iter().all(|p| p["name"] != "Idempotency-Key"));
        assert!(check["responses"]["200"]["headers"].is_null());
        let consume = &spec["paths"]["/v1/accounts/{account_id}/consume"]["post"];
        let parameters = consume["parameters"].as_array().unwrap();
        assert!(parameters.iter().any(|p| p["name"] == "Idempotency-Key"));
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
