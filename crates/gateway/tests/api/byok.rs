//! Bring your own key: calls go to the provider with the account's own key, cost no credits
//! but an optional fee, and the key is never shown again.

use gateway::byok::{Keyring, MasterKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const CUSTOMER_KEY: &str = "sk-customer-own-key-9876";

fn micros(text: &Value) -> i64 {
    ledger::Amount::parse_decimal(text.as_str().unwrap())
        .unwrap()
        .micros()
}

fn keyring() -> Keyring {
    Keyring {
        current: MasterKey::parse(&"5a".repeat(32)).unwrap(),
        retired: Vec::new(),
    }
}

/// Both stores' apps before `upstream`, with a master key, and customers'
/// upstreams at loopback addresses allowed (the fake upstream is one).
async fn with_byok(allow_private: bool, test: impl AsyncFn(TestApp, FakeUpstream)) {
    each_store(
        |config| {
            config.keyring = Some(keyring());
            config.allow_private_upstreams = allow_private;
        },
        test,
    )
    .await;
}

async fn byok_account(app: &TestApp, account: &str, upstream: &FakeUpstream) -> String {
    let key = customer(app, account, "10").await;
    let reply = app
        .send(
            Method::PATCH,
            &format!("/v1/accounts/{account}"),
            Some(json!({"billing_mode": "byok"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["billing_mode"], "byok");
    // The customer stores its own key, with its own key to the API.
    let reply = app
        .send_as(
            Some(&key),
            Method::PUT,
            &format!("/v1/accounts/{account}/provider-keys/openai"),
            &[],
            Some(
                json!({"api_key": CUSTOMER_KEY, "base_url": format!("{}/v1", upstream.base_url())}),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["last4"], "9876");
    assert!(!reply.body.to_string().contains(CUSTOMER_KEY));
    key
}

fn chat() -> Value {
    json!({"model": "gpt-test", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_byok_call_goes_with_the_accounts_key_and_costs_no_credits() {
    with_byok(true, async |app, upstream| {
        price(&app, "gpt-test", "openai").await;
        let key = byok_account(&app, "acme", &upstream).await;
        let (status, text) = call(&app, &key, "/v1/chat/completions", chat()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (status, text) = call(
            &app,
            &key,
            "/v1/chat/completions",
            json!({
                "model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]
            }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let seen = upstream.requests();
        assert_eq!(seen.len(), 2);
        for request in &seen {
            assert_eq!(
                request.authorization.as_deref(),
                Some(format!("Bearer {CUSTOMER_KEY}").as_str())
            );
        }
        let recorded = until_calls(&app, "acme", 2).await;
        for call in &recorded {
            assert_eq!(call["billing_mode"], "byok");
            assert_eq!(call["cost"], "0");
            // 12 × 2 + 5 × 8 USD per million at 100 credits per USD, no markup.
            assert_eq!(micros(&call["list_cost"]), 6_400);
        }
        let balance = settled(&app, "acme").await;
        assert_eq!(balance["available"], "10");

        // The key is listed by its last four characters only, and never
        // shown again.
        let listed = app.get("/v1/accounts/acme/provider-keys").await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.body["data"][0]["provider"], "openai");
        assert!(!listed.body.to_string().contains(CUSTOMER_KEY));
    })
    .await;
}

#[tokio::test]
async fn a_byok_fee_is_charged_in_credits_on_the_list_price() {
    with_byok(true, async |app, upstream| {
        price(&app, "gpt-test", "openai").await;
        let key = byok_account(&app, "acme", &upstream).await;
        let reply = app
            .send(
                Method::PATCH,
                "/v1/accounts/acme",
                Some(json!({"byok_fee_percent": "5"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["byok_fee_percent"], "5");
        let (status, text) = call(&app, &key, "/v1/chat/completions", chat()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        // 5 % of 6,400 micro-credits.
        let balance = settled(&app, "acme").await;
        assert_eq!(micros(&balance["available"]), 10_000_000 - 320);
        let recorded = until_calls(&app, "acme", 1).await;
        assert_eq!(micros(&recorded[0]["cost"]), 320);
        let bad = app
            .send(
                Method::PATCH,
                "/v1/accounts/acme",
                Some(json!({"byok_fee_percent": "101"})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let read = app.get("/v1/accounts/acme").await;
        assert_eq!(
            (
                read.body["billing_mode"].as_str(),
                read.body["byok_fee_percent"].as_str()
            ),
            (Some("byok"), Some("5"))
        );
    })
    .await;
}

#[tokio::test]
async fn a_byok_account_without_a_key_for_the_provider_is_told_so() {
    with_byok(true, async |app, upstream| {
        price(&app, "claude-test", "anthropic").await;
        let key = byok_account(&app, "acme", &upstream).await;
        let (status, text) = call(&app, &key, "/v1/messages", json!({
            "model": "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]
        })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("provider_key_missing"), "{text}");
        let gone = app.send(Method::DELETE, "/v1/accounts/acme/provider-keys/openai", None).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        let again = app.send(Method::DELETE, "/v1/accounts/acme/provider-keys/openai", None).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        assert_eq!(again.body["error"]["code"], "provider_key_not_found");
        assert!(upstream.requests().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_base_url_at_a_private_address_is_refused_unless_allowed() {
    with_byok(false, async |app, upstream| {
        let _ = customer(&app, "acme", "1").await;
        for url in [
            format!("{}/v1", upstream.base_url()),
            "http://169.254.169.254/v1".to_owned(),
            "http://localhost:9/v1".to_owned(),
        ] {
            let reply = app
                .send(
                    Method::PUT,
                    "/v1/accounts/acme/provider-keys/openai",
                    Some(json!({"api_key": CUSTOMER_KEY, "base_url": url})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {reply:?}");
            assert_eq!(reply.body["error"]["code"], "invalid_provider_key");
        }
    })
    .await;
}

gateway_test! {
    #[tokio::test]
    async fn without_a_master_key_byok_answers_503_saying_how_to_set_one(app, upstream) {
        let _ = customer(&app, "acme", "1").await;
        let reply = app
            .send(
                Method::PUT,
                "/v1/accounts/acme/provider-keys/openai",
                Some(json!({"api_key": CUSTOMER_KEY})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert_eq!(reply.body["error"]["code"], "byok_not_configured");
        assert!(reply.body["error"]["message"].as_str().unwrap().contains("CREDITD_MASTER_KEY"));
        assert!(upstream.requests().is_empty());
    }
}
