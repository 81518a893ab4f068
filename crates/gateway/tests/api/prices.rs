//! The price catalog: entries written by hand and by importing the community price lists.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const LITELLM: &str = include_str!("../data/litellm_model_prices.json");

async fn import(app: &TestApp, query: &str, body: &str) -> Value {
    let reply = app
        .raw(
            Method::POST,
            &format!("/v1/prices/import{query}"),
            &[
                ("authorization", &format!("Bearer {}", testkit::app::KEY)),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

gateway_test! {
    #[tokio::test]
    async fn a_price_is_written_read_listed_and_removed_exactly(app, upstream) {
        let put = app
            .send(
                Method::PUT,
                "/v1/prices/openrouter%2Fvendor%2Fmodel-1",
                Some(json!({"provider": "openrouter", "input": 0.1, "cached_input": "0.025",
                            "output": "0.4", "markup_percent": "12.5", "upstreams": ["openai"]})),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{put:?}");
        assert_eq!(put.body["model"], "openrouter/vendor/model-1");
        // 0.1 is read from its text: no float rounds it.
        assert_eq!(put.body["input"], "0.1");
        assert_eq!(put.body["markup_percent"], "12.5");
        let read = app.get("/v1/prices/openrouter%2Fvendor%2Fmodel-1").await;
        assert_eq!(read.body, put.body);

        for bad in [json!({"provider": "x", "input": "-1", "output": "1"}),
                    json!({"provider": "x", "input": "1e-20", "output": "1"}),
                    json!({"provider": "x", "input": "1"}),
                    json!({"provider": "x", "input": "1", "output": "1", "colour": "red"})] {
            let reply = app.send(Method::PUT, "/v1/prices/bad", Some(bad.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {reply:?}");
            assert_eq!(reply.code(), "invalid_model_price", "{bad}");
        }
        assert_eq!(app.get("/v1/prices/bad").await.code(), "price_not_found");

        let listed = app.get("/v1/prices").await;
        assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(1));
        let gone = app.send(Method::DELETE, "/v1/prices/openrouter%2Fvendor%2Fmodel-1", None).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        let again = app.send(Method::DELETE, "/v1/prices/openrouter%2Fvendor%2Fmodel-1", None).await;
        assert_eq!(again.code(), "price_not_found");
        assert!(upstream.requests().is_empty());
    }
}

gateway_test! {
    #[tokio::test]
    async fn litellms_whole_list_imports_once_and_keeps_what_the_operator_set(app, upstream) {
        // An operator's routing of one model survives the import.
        let set = app
            .send(
                Method::PUT,
                "/v1/prices/gpt-4o",
                Some(json!({"provider": "openai", "input": "9", "output": "9",
                            "upstreams": ["backup"], "markup_percent": "0"})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        let first = import(&app, "?providers=openai,anthropic", LITELLM).await;
        let written = first["written"].as_u64().unwrap();
        assert!(written > 100, "{}", first["written"]);
        assert!(first["filtered"].as_u64().unwrap() > 3_000, "{}", first["filtered"]);
        let skipped = first["skipped"].as_array().unwrap();
        assert!(skipped.iter().all(|s| s["reason"].as_str().is_some_and(|r| !r.is_empty())));
        assert!(skipped.iter().any(|s| s["reason"].as_str().unwrap().contains("image_generation")));

        let gpt = app.get("/v1/prices/gpt-4o").await.body;
        assert_eq!((gpt["input"].as_str(), gpt["output"].as_str()), (Some("2.5"), Some("10")));
        assert_eq!(gpt["cached_input"], "1.25");
        assert_eq!(gpt["upstreams"], json!(["backup"]));
        assert_eq!(gpt["markup_percent"], "0");

        // The same list again changes nothing.
        let second = import(&app, "?providers=openai,anthropic", LITELLM).await;
        assert_eq!(second["written"], 0, "{second}");
        assert_eq!(second["unchanged"].as_u64(), Some(written));

        let bad = app
            .raw(Method::POST, "/v1/prices/import",
                 &[("authorization", &format!("Bearer {}", testkit::app::KEY)),
                   ("content-type", "application/json")], "[1, 2]")
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.code(), "invalid_price_list");
        assert!(upstream.requests().is_empty());
    }
}

gateway_test! {
    #[tokio::test]
    async fn models_dev_lists_and_the_starter_catalog_import(app, upstream) {
        let list = r#"{"groq": {"id": "groq", "models": {"llama-3.1-8b-instant":
            {"id": "llama-3.1-8b-instant", "cost": {"input": 0.05, "output": 0.08},
             "limit": {"context": 131072, "output": 8192}}}}}"#;
        let report = import(&app, "?format=models_dev", list).await;
        assert_eq!(report["written"], 1);
        let entry = app.get("/v1/prices/groq%2Fllama-3.1-8b-instant").await.body;
        assert_eq!(entry["upstream_model"], "llama-3.1-8b-instant");
        assert_eq!(entry["max_output_tokens"], 8192);

        let beside = app
            .raw(Method::POST, "/v1/prices/import?source=starter",
                 &[("authorization", &format!("Bearer {}", testkit::app::KEY)),
                   ("content-type", "application/json")], list)
            .await;
        assert_eq!(beside.code(), "invalid_request", "{beside:?}");
        let starter = import(&app, "?source=starter", "").await;
        assert!(starter["written"].as_u64().unwrap() >= 10, "{starter}");
        assert_eq!(starter["skipped"], json!([]));
        let key = customer(&app, "acme", "1").await;
        let models = app.send_as(Some(&key), Method::GET, "/v1/models", &[], None).await;
        let ids: Vec<&str> = models.body["data"].as_array().unwrap().iter()
            .map(|m| m["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"gpt-4o-mini") && ids.contains(&"claude-sonnet-4-5"), "{ids:?}");
        assert!(upstream.requests().is_empty());
    }
}
