//! What is never charged, and what is charged once: refusals before the upstream, failed and
//! retried attempts, fallbacks, streams the caller or the upstream breaks off, and concurrency.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "stream": stream, "max_tokens": 200,
        "messages": [{"role": "user", "content": "Say hello"}]
    })
}

fn micros(text: &Value) -> i64 {
    ledger::Amount::parse_decimal(text.as_str().unwrap())
        .unwrap()
        .micros()
}

/// The default fake usage (12 prompt, 5 completion tokens) at 2 and 8 USD
/// per million tokens with the markup: (24 + 40) × 110 micro-credits.
const SMALL_CALL: i64 = 7_040;

gateway_test! {
    #[tokio::test]
    async fn refusals_come_in_the_callers_wire_format_and_charge_nothing(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        price(&app, "claude-test", "anthropic").await;
        let key = customer(&app, "acme", "0.01").await;

        let (status, text) = call(&app, &key, "/v1/chat/completions", chat("unknown", false)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "model_not_priced");
        assert_eq!(error["error"]["type"], "invalid_request_error");

        // 0.01 credits cannot cover 200 output tokens at 8 USD per million.
        let (status, text) = call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "insufficient_credits");
        let anthropic = json!({"model": "claude-test", "max_tokens": 200,
            "messages": [{"role": "user", "content": "hi"}]});
        let (status, text) = call(&app, &key, "/v1/messages", anthropic.clone()).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((error["type"].as_str(), error["error"]["type"].as_str()), (Some("error"), Some("billing_error")));

        let (status, text) = call(&app, "cd_cust_wrong", "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "unauthorized");
        let (status, text) = call(&app, "cd_cust_wrong", "/v1/messages", anthropic).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["type"], "authentication_error");

        // The operator's keys name no account to charge.
        let (status, text) = call(&app, testkit::app::KEY, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "forbidden");
        assert_eq!(error["error"]["required_scope"], "customer");

        let (status, _) = call(&app, &key, "/v1/chat/completions", json!({"messages": []})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        assert!(upstream.requests().is_empty(), "the upstream was called");
        let balance = app.balance("acme").await;
        assert_eq!((balance["available"].as_str(), balance["held"].as_str()), (Some("0.01"), Some("0")));
        assert!(calls(&app, "acme").await.is_empty());
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_failed_attempt_is_not_charged_and_its_retry_is_charged_once(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        upstream.push(Behaviour::Fail(500));
        let (status, text) = call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "upstream_unavailable");
        let balance = settled(&app, "acme").await;
        assert_eq!(balance["available"], "10");

        let (status, _) = call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::OK);
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 10_000_000 - SMALL_CALL);
        // Both calls are recorded at the same instant of the test clock, so
        // they are found by their outcome, not their order.
        let recorded = until_calls(&app, "acme", 2).await;
        let failed = recorded.iter().find(|c| c["outcome"] == "upstream_error").unwrap();
        assert_eq!((failed["cost"].as_str(), failed["status"].as_u64()), (Some("0"), Some(502)));
        assert!(recorded.iter().any(|c| c["outcome"] == "ok"));

        // An upstream's refusal of the request itself is passed on, uncharged.
        upstream.push(Behaviour::Fail(400));
        let (status, text) = call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 10_000_000 - SMALL_CALL);
        app.assert_verified().await;
    }
}

/// Both stores' test apps before two upstreams: `openai` and `backup`.
async fn with_backup(test: impl AsyncFn(TestApp, FakeUpstream, FakeUpstream)) {
    for postgres in [false, true] {
        let primary = FakeUpstream::start().await;
        let backup = FakeUpstream::start().await;
        let config = config(&primary.base_url(), Some(&backup.base_url()));
        let app = if postgres {
            match TestApp::spawn_postgres(Some(plugins(config))).await {
                Some(app) => app,
                None => return,
            }
        } else {
            TestApp::spawn_sqlite(Some(plugins(config))).await
        };
        test(app, primary, backup).await;
    }
}

#[tokio::test]
async fn a_model_falls_back_to_its_next_upstream_and_is_charged_once() {
    with_backup(async |app, primary, backup| {
        let reply = app
            .send(
                reqwest::Method::PUT,
                "/v1/prices/gpt-test",
                Some(json!({"provider": "openai", "input": "2", "output": "8",
                    "upstreams": ["openai", "backup"]})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let key = customer(&app, "acme", "10").await;
        primary.push(Behaviour::Fail(503));
        let (status, text) =
            call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        primary.push(Behaviour::Fail(502));
        let (status, text) = call(&app, &key, "/v1/chat/completions", chat("gpt-test", true)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!((primary.requests().len(), backup.requests().len()), (2, 2));
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 10_000_000 - 2 * SMALL_CALL);
        assert_eq!(until_calls(&app, "acme", 2).await.len(), 2);
        // The operator sees the failures by upstream, the tokens and the cost by model.
        let metrics = app.get("/metrics").await.text;
        for line in [
            "creditd_gateway_upstream_errors_total{upstream=\"openai\",kind=\"server_error\"} 2",
            "creditd_gateway_tokens_total{model=\"gpt-test\",class=\"input\"} 24",
            "creditd_gateway_tokens_total{model=\"gpt-test\",class=\"output\"} 10",
            &format!(
                "creditd_gateway_cost_credits_total{{model=\"gpt-test\"}} {}",
                (2 * SMALL_CALL) as f64 / 1e6
            ),
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_upstream_falls_back_too() {
    with_backup(async |app, primary, backup| {
        let reply = app
            .send(
                reqwest::Method::PUT,
                "/v1/prices/gpt-test",
                Some(json!({"provider": "openai", "input": "2", "output": "8",
                    "upstreams": ["openai", "backup"]})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let key = customer(&app, "acme", "10").await;
        // The primary goes away: its port refuses connections.
        drop(primary);
        let (status, text) =
            call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(backup.requests().len(), 1);
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 10_000_000 - SMALL_CALL);
    })
    .await;
}

gateway_test! {
    #[tokio::test]
    async fn a_caller_that_leaves_mid_stream_is_charged_what_the_upstream_reports(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        upstream.push(Behaviour::SlowChunks { delay_ms: 30 });
        let response = app
            .client
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth(&key)
            .json(&chat("gpt-test", true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut response = response;
        let first = response.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"data: "));
        drop(response);
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 10_000_000 - SMALL_CALL);
        let recorded = until_calls(&app, "acme", 1).await;
        assert_eq!(recorded[0]["outcome"], "client_closed");
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_stream_the_upstream_breaks_off_is_settled_from_what_was_streamed(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        upstream.push(Behaviour::Cut { after_chunks: 2 });
        let response = app
            .client
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth(&key)
            .json(&chat("gpt-test", true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.is_err(), "the caller must see the stream break");
        let balance = settled(&app, "acme").await;
        let recorded = until_calls(&app, "acme", 1).await;
        let call = &recorded[0];
        assert_eq!(call["outcome"], "upstream_cut");
        // No usage arrived: the prompt at a token per four bytes of the
        // request, and one output token per content chunk streamed.
        assert!(call["input_tokens"].as_i64().unwrap() > 0);
        assert!(call["output_tokens"].as_i64().unwrap() >= 1);
        assert_eq!(micros(&balance["available"]), 10_000_000 - micros(&call["cost"]));
        assert!(micros(&call["cost"]) > 0);
    }
}

gateway_test! {
    #[tokio::test]
    async fn concurrent_calls_never_spend_more_than_the_account_holds(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        // Each call holds its worst case: about 150 bytes of request at 2
        // USD per million and 200 output tokens at 8, with the markup about
        // 0.21 credits. Two credits cover about ten at once.
        let key = Arc::new(customer(&app, "acme", "2").await);
        let app = Arc::new(app);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (app, key) = (app.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await.0
            }));
        }
        let mut served = 0;
        for task in tasks {
            match task.await.unwrap() {
                StatusCode::OK => served += 1,
                StatusCode::PAYMENT_REQUIRED => {}
                other => panic!("{other}"),
            }
        }
        assert!(served >= 9, "only {served} served");
        assert_eq!(upstream.requests().len(), served as usize);
        let balance = settled(&app, "acme").await;
        assert_eq!(balance["debt"], "0");
        assert_eq!(micros(&balance["available"]), 2_000_000 - served * SMALL_CALL);
        app.assert_verified().await;
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_caller_that_gives_up_on_a_slow_upstream_is_still_settled(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        upstream.push(Behaviour::Stall);
        let impatient = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(300))
            .build()
            .unwrap();
        let gave_up = impatient
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth(&key)
            .json(&chat("gpt-test", false))
            .send()
            .await;
        assert!(gave_up.is_err(), "the caller was meant to time out");
        // The upstream got the call and answers it after the caller left:
        // the provider bills it, so the account is charged, and no hold is
        // left pending.
        for _ in 0..500 {
            if !upstream.requests().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(upstream.requests().len(), 1);
        upstream.release_stalled();
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 10_000_000 - SMALL_CALL);
        let recorded = until_calls(&app, "acme", 1).await;
        assert_eq!(recorded[0]["outcome"], "ok");
    }
}

#[tokio::test]
async fn an_upstream_without_a_key_is_never_called_unless_declared_keyless() {
    let without_keys = |config: &mut gateway::GatewayConfig| {
        for upstream in config.upstreams.values_mut() {
            upstream.api_key = None;
        }
    };
    each_store(without_keys, async |app, upstream| {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        let (status, text) =
            call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "upstream_not_configured");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("CREDITD_UPSTREAM_API_KEY"), "{message}");
        assert!(
            upstream.requests().is_empty(),
            "the upstream was called without a key"
        );
        assert_eq!(app.available("acme").await, "10");
        assert!(calls(&app, "acme").await.is_empty());
    })
    .await;
    // A local model server needs none: declared keyless, it is called without one.
    let keyless = |config: &mut gateway::GatewayConfig| {
        without_keys(config);
        config.upstreams.get_mut("openai").unwrap().keyless = true;
    };
    each_store(keyless, async |app, upstream| {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        let (status, text) =
            call(&app, &key, "/v1/chat/completions", chat("gpt-test", false)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let seen = upstream.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].authorization, None);
    })
    .await;
}

gateway_test! {
    /// Each 413 names the limit of its own route: a chat body may be far
    /// larger than a ledger write.
    #[tokio::test]
    async fn a_body_too_large_is_refused_with_its_routes_limit(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "1000").await;
        let huge = "x".repeat(17 * 1024 * 1024);
        let (status, text) = call(
            &app,
            &key,
            "/v1/chat/completions",
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": huge}]}),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &text[..text.len().min(300)]);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "payload_too_large");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("16 MiB"), "{message}");
        // A chat body of 100 KiB is well within its route's limit.
        let (status, _) = call(
            &app,
            &key,
            "/v1/chat/completions",
            json!({"model": "gpt-test", "max_tokens": 10,
                   "messages": [{"role": "user", "content": "y".repeat(100 * 1024)}]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // A ledger write's limit is 64 KiB.
        let grant = app
            .post(
                "/v1/accounts/acme/grants",
                json!({"amount": "1", "source": "admin", "reason": "z".repeat(70 * 1024)}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::PAYLOAD_TOO_LARGE, "{grant:?}");
        assert!(grant.body["error"]["message"].as_str().unwrap().contains("64 KiB"), "{grant:?}");
        assert_eq!(upstream.requests().len(), 1);
    }
}

gateway_test! {
    #[tokio::test]
    async fn a_call_not_sent_as_application_json_is_415_in_the_callers_format(app, upstream) {
        price(&app, "gpt-test", "openai").await;
        let key = customer(&app, "acme", "10").await;
        let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}).to_string();
        for content_type in [None, Some("text/plain")] {
            let mut request = app
                .client
                .post(format!("{}/v1/chat/completions", app.base))
                .bearer_auth(&key)
                .body(body.clone());
            if let Some(value) = content_type {
                request = request.header("content-type", value);
            }
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
            let error: Value = reply.json().await.unwrap();
            assert_eq!(error["error"]["code"], "unsupported_media_type", "{error}");
            assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        }
        assert!(upstream.requests().is_empty());
        assert_eq!(app.available("acme").await, "10");
    }
}

/// The top-up link every `insufficient_credits` answer carries in these tests.
const TOP_UP_URL: &str = "https://shop.example.com/credits";

fn with_top_up_url(state: server::AppState) -> server::AppState {
    state.with_top_up_url(Some(server::top_up::TopUpUrl::parse(TOP_UP_URL).unwrap()))
}

testkit::each_store_test! {
    #[tokio::test]
    async fn the_top_up_url_comes_with_insufficient_credits_in_both_wire_formats((upstream, app)) {
        price(&app, "gpt-test", "openai").await;
        price(&app, "claude-test", "anthropic").await;
        let key = customer(&app, "acme", "0.01").await;
        for stream in [false, true] {
            let (status, text) =
                call(&app, &key, "/v1/chat/completions", chat("gpt-test", stream)).await;
            assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{text}");
            let error: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(error["error"]["code"], "insufficient_credits");
            assert_eq!(error["error"]["type"], "insufficient_credits");
            assert_eq!(error["error"]["top_up_url"], TOP_UP_URL, "stream: {stream}");
        }
        let anthropic = json!({"model": "claude-test", "max_tokens": 200, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]});
        let (status, text) = call(&app, &key, "/v1/messages", anthropic).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "billing_error");
        assert_eq!(error["error"]["top_up_url"], TOP_UP_URL);

        // Other refusals carry no link.
        let (status, text) = call(&app, &key, "/v1/chat/completions", chat("unknown", false)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert!(error["error"].get("top_up_url").is_none(), "{text}");
        assert!(upstream.requests().is_empty(), "the upstream was called");
    }
    sqlite: {
        let upstream = FakeUpstream::start().await;
        let plugins = Some(plugins(config(&upstream.base_url(), None)));
        (upstream, TestApp::spawn_sqlite_with(plugins, with_top_up_url).await)
    },
    postgres: {
        let upstream = FakeUpstream::start().await;
        let plugins = Some(plugins(config(&upstream.base_url(), None)));
        TestApp::spawn_postgres_with(plugins, with_top_up_url)
            .await
            .map(|app| (upstream, app))
    },
}
