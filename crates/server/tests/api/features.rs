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
            json!("0"),
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
