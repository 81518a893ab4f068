//! Calls in credits mode: each wire format, streaming and not, charged exactly the priced usage.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Micro-credits of a decimal amount as the API writes it.
fn micros(text: &Value) -> i64 {
    ledger::Amount::parse_decimal(text.as_str().unwrap())
        .unwrap()
        .micros()
}

/// OpenAI's usage of the tests: 1,000 prompt tokens of which 200 cached,
/// 100 completion tokens. At 2 / 0.5 / 8 USD per million tokens that is
/// (800 × 2 + 200 × 0.5 + 100 × 8) / 10⁶ = 0.0025 USD, 0.25 credits, 0.275
/// with the 10 % markup: 275,000 micro-credits.
const OPENAI_COST: i64 = 275_000;

fn openai_usage() -> FakeUsage {
    FakeUsage {
        prompt_tokens: 1000,
        cached_tokens: 200,
        completion_tokens: 100,
        ..FakeUsage::default()
    }
}

/// Anthropic's usage of the tests: 100 fresh input tokens, 1,000 read
/// from the cache, 200 written to it, 50 output tokens:
/// 100 × 2 + 1,000 × 0.5 + 200 × 2.5 + 50 × 8 = 1,600 → 0.16 credits,
/// 0.176 with the markup.
const ANTHROPIC_COST: i64 = 176_000;

fn anthropic_usage() -> FakeUsage {
    FakeUsage {
        input_tokens: 100,
        cache_read_input_tokens: 1000,
        cache_creation_input_tokens: 200,
        output_tokens: 50,
        ..FakeUsage::default()
    }
}

fn chat(stream: bool, include_usage: Option<bool>) -> Value {
    let mut body = json!({
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 200,
        "stream": stream,
    });
    if let Some(include) = include_usage {
        body["stream_options"] = json!({"include_usage": include});
    }
    body
}

gateway_test! {
    #[tokio::test]
    async fn a_chat_completion_is_charged_its_priced_usage_to_the_micro_credit(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "100").await;
        upstream.set_usage(openai_usage());
        let (status, body) = call(&app, &key, "/v1/chat/completions", chat(false, None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], testkit::upstream::REPLY_TEXT);
        assert_eq!(answer["usage"]["prompt_tokens"], 1000);
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 100_000_000 - OPENAI_COST);

        // The upstream got the operator's key, never the customer's.
        let seen = upstream.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
        assert_eq!(seen[0].path, "/v1/chat/completions");

        // One record, settled by the transaction that charged it.
        let recorded = until_calls(&app, "acme", 1).await;
        let call = &recorded[0];
        assert_eq!(call["model"], "gpt-test");
        assert_eq!((call["input_tokens"].as_i64(), call["cached_tokens"].as_i64()), (Some(800), Some(200)));
        assert_eq!(call["output_tokens"], 100);
        assert_eq!(micros(&call["cost"]), OPENAI_COST);
        assert_eq!(micros(&call["list_cost"]), 250_000);
        assert_eq!((call["status"].as_u64(), call["outcome"].as_str()), (Some(200), Some("ok")));
        assert_eq!(call["billing_mode"], "credits");
        let tx = app
            .get(&format!("/v1/transactions/{}", call["transaction_id"].as_str().unwrap()))
            .await;
        assert_eq!(tx.status, StatusCode::OK, "{tx:?}");
        assert_eq!(tx.body["type"], "hold_commit");
        app.assert_verified().await;
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_stream_passes_the_usage_chunk_on_only_when_the_caller_asked(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "100").await;
        upstream.set_usage(openai_usage());
        let mut spent = 0;
        for include in [None, Some(false), Some(true)] {
            let (status, body) = call(&app, &key, "/v1/chat/completions", chat(true, include)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
            let usage_chunk = body.contains("\"choices\":[]");
            assert_eq!(usage_chunk, include == Some(true), "{include:?}: {body}");
            let text: String = body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
                .collect();
            assert_eq!(text, testkit::upstream::REPLY_TEXT);
            spent += OPENAI_COST;
            let balance = settled(&app, "acme").await;
            assert_eq!(micros(&balance["available"]), 100_000_000 - spent, "{include:?}");
        }
        // Upstream was always asked for the usage chunk.
        for seen in upstream.requests() {
            assert_eq!(seen.body["stream_options"]["include_usage"], true);
        }
        let recorded = until_calls(&app, "acme", 3).await;
        assert!(recorded.iter().all(|c| c["outcome"] == "ok" && micros(&c["cost"]) == OPENAI_COST));
    }
}

gateway_test! {
    #[tokio::test]
    async fn anthropic_messages_bill_cache_reads_and_writes_at_their_prices(app, upstream) {
        price(&app, "claude-test", "anthropic").await;
        let key = customer(&app, "acme", "100").await;
        upstream.set_usage(anthropic_usage());
        let body = json!({
            "model": "claude-test", "max_tokens": 300,
            "messages": [{"role": "user", "content": "Say hello"}]
        });
        let (status, text) = call(&app, &key, "/v1/messages", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["content"][0]["text"], testkit::upstream::REPLY_TEXT);
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 100_000_000 - ANTHROPIC_COST);

        let mut streamed = body;
        streamed["stream"] = json!(true);
        let (status, text) = call(&app, &key, "/v1/messages", streamed).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(events.first(), Some(&"message_start"));
        assert_eq!(events.last(), Some(&"message_stop"));
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 100_000_000 - 2 * ANTHROPIC_COST);

        let seen = upstream.requests();
        assert_eq!(seen[0].path, "/v1/messages");
        assert_eq!(seen[0].x_api_key.as_deref(), Some(UPSTREAM_KEY));
        assert_eq!(seen[0].anthropic_version.as_deref(), Some("2023-06-01"));
        let recorded = until_calls(&app, "acme", 2).await;
        for call in &recorded {
            assert_eq!(call["input_tokens"], 100);
            assert_eq!(call["cached_tokens"], 1000);
            assert_eq!(call["cache_write_tokens"], 200);
            assert_eq!(call["output_tokens"], 50);
            assert_eq!(call["provider"], "anthropic");
        }
    }
}

gateway_test! {
    #[tokio::test]
    async fn embeddings_are_charged_their_input_tokens(app, upstream) {
        let reply = app
            .send(
                reqwest::Method::PUT,
                "/v1/prices/embed-test",
                Some(json!({"provider": "openai", "mode": "embedding", "input": "0.02", "output": "0"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let key = customer(&app, "acme", "1").await;
        upstream.set_usage(openai_usage());
        let body = json!({"model": "embed-test", "input": ["one", "two"], "encoding_format": "float"});
        let (status, text) = call(&app, &key, "/v1/embeddings", body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
        // 1,000 tokens at 0.02 USD per million: 0.00002 USD = 0.002 credits,
        // 0.0022 with the markup.
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 1_000_000 - 2_200);

        // A chat model is not an embedding model, nor the other way round.
        let (status, text) = call(&app, &key, "/v1/chat/completions", json!({
            "model": "embed-test", "messages": [{"role": "user", "content": "hi"}]
        })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "model_not_supported");
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_model_of_the_other_wire_format_is_pointed_to_its_endpoint(app, upstream) {
        price(&app, "claude-test", "anthropic").await;
        let key = customer(&app, "acme", "1").await;
        let (status, text) = call(&app, &key, "/v1/chat/completions", json!({
            "model": "claude-test", "messages": [{"role": "user", "content": "hi"}]
        })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "model_not_supported");
        assert!(error["error"]["message"].as_str().unwrap().contains("/v1/messages"));
        assert!(upstream.requests().is_empty());
    }
}

gateway_test! {
    #[tokio::test]
    async fn the_model_list_holds_the_priced_models(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        price(&app, "claude-test", "anthropic").await;
        let key = customer(&app, "acme", "1").await;
        let reply = app.send_as(Some(&key), reqwest::Method::GET, "/v1/models", &[], None).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["object"], "list");
        let ids: Vec<&str> = reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["claude-test", "gpt-test"]);
        assert!(upstream.requests().is_empty());
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_call_answered_or_streamed_to_its_end_is_already_billed_and_recorded(app, upstream) {
        // The settle is written before the answer goes, or before the
        // event that ends the stream: a caller that has either finds its
        // call recorded and its credits gone at once, with no waiting, and
        // a node killed the next instant has billed it.
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        for n in 1..=12 {
            let stream = n % 2 == 0;
            let (status, text) = call(&app, &key, "/v1/chat/completions", chat(stream, None)).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            if stream {
                assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
            }
            let recorded = calls(&app, "acme").await;
            assert_eq!(recorded.len(), n, "call {n} answered but not yet recorded");
            assert_eq!(recorded[0]["outcome"], "ok");
            assert_eq!(app.balance("acme").await["held"], "0", "call {n} not yet settled");
        }
        assert_eq!(upstream.requests().len(), 12);
    }
}
