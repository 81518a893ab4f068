//! Features: prices in credits per unit.

use reqwest::{Method, StatusCode};
use serde_json::json;

store_test! {
    #[tokio::test]
    async fn features_are_set_read_and_listed(app) {
        let put = app
            .send(
                Method::PUT,
                "/v1/features/image-gen",
                Some(json!({"credits_per_unit": "2.5"})),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{put:?}");
        assert_eq!(put.body["id"], "image-gen");
        assert_eq!(put.body["credits_per_unit"], "2.5");
        app.send(
            Method::PUT,
            "/v1/features/audio",
            Some(json!({"credits_per_unit": 0.01})),
        )
        .await;
        let changed = app
            .send(
                Method::PUT,
                "/v1/features/image-gen",
                Some(json!({"credits_per_unit": "3"})),
            )
            .await;
        assert_eq!(changed.body["credits_per_unit"], "3");
        let list = app.get("/v1/features").await;
        let ids: Vec<_> = list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["audio", "image-gen"]);
        assert_eq!(app.get("/v1/features/image-gen").await.body, changed.body);
        assert_eq!(
            app.get("/v1/features/none").await.code(),
            "feature_not_found"
        );
    }
}

store_test! {
    #[tokio::test]
    async fn bad_prices_are_refused(app) {
        for price in [
            json!("-0.5"),
            json!("-1"),
            json!("x"),
            json!(true),
            json!("0.0000001"),
        ] {
            let reply = app
                .send(
                    Method::PUT,
                    "/v1/features/f",
                    Some(json!({"credits_per_unit": price})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{price}");
            assert_eq!(reply.code(), "invalid_amount", "{price}");
        }
        let missing = app
            .send(Method::PUT, "/v1/features/f", Some(json!({})))
            .await;
        assert_eq!(missing.code(), "invalid_request");
        let bad_id = app
            .send(
                Method::PUT,
                "/v1/features/a%20b",
                Some(json!({"credits_per_unit": "1"})),
            )
            .await;
        assert_eq!(bad_id.code(), "invalid_id");
        assert_eq!(app.get("/v1/features").await.body["data"], json!([]));
    }
}

store_test! {
    /// A feature that costs nothing, tracked to see its usage: its consumes
    /// record the use and move no credits, even on an empty account.
    #[tokio::test]
    async fn a_free_feature_records_its_use_and_moves_no_credits(app) {
        let put = app
            .send(Method::PUT, "/v1/features/search", Some(json!({"credits_per_unit": "0"})))
            .await;
        assert_eq!(put.status, StatusCode::OK, "{put:?}");
        assert_eq!(put.body["credits_per_unit"], "0");
        app.account_with("u", "0").await;
        let check = app
            .post("/v1/accounts/u/check", json!({"feature": "search", "quantity": "3"}))
            .await;
        assert_eq!(check.status, StatusCode::OK, "{check:?}");
        assert_eq!(check.body["allowed"], true);
        assert_eq!(check.body["required"], "0");
        let used = app
            .post(
                "/v1/accounts/u/consume",
                json!({"feature": "search", "quantity": "3", "external_id": "search-1"}),
            )
            .await;
        assert_eq!(used.status, StatusCode::OK, "{used:?}");
        let tx = &used.body["transaction"];
        assert_eq!(tx["type"], "consume");
        assert_eq!(tx["amount"], "0");
        assert_eq!(tx["feature"], "search", "{tx}");
        assert_eq!(tx["quantity"], "3", "{tx}");
        assert_eq!(tx["lots"], json!([]));
        assert_eq!(
            used.body["balance"],
            json!({"available": "0", "held": "0", "debt": "0"})
        );
        // Sent again, it is the same use.
        let again = app
            .post(
                "/v1/accounts/u/consume",
                json!({"feature": "search", "quantity": "3", "external_id": "search-1"}),
            )
            .await;
        assert_eq!(again.body["transaction"]["id"], tx["id"]);
        let history = app.get("/v1/accounts/u/transactions?type=consume").await;
        assert_eq!(history.body["data"].as_array().unwrap().len(), 1, "{history:?}");
        // An amount of zero is still refused: only a feature may be free.
        let zero = app.post("/v1/accounts/u/consume", json!({"amount": "0"})).await;
        assert_eq!(zero.code(), "invalid_amount", "{zero:?}");
        app.assert_verified().await;
    }
}
