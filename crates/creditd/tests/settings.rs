//! What `creditd serve` refuses or warns of at start: a setting it does not know, an admin key
//! that could be guessed, a top-up URL that is not one, and a price catalog whose upstream has no
//! key; and the top-up URL it was given, on every answer of insufficient credits.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Server, creditd, fresh_db, post, send};

/// `creditd serve` with `env`, run until it exits (it should, refusing).
fn refused_start(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let (_dir, db) = fresh_db();
    let mut command = creditd();
    command
        .args(args)
        .arg("serve")
        .env("CREDITD_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("CREDITD_LISTEN", "127.0.0.1:0")
        .env_remove("CREDITD_ADMIN_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running creditd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn a_typo_in_a_configuration_file_stops_the_start_and_names_the_setting_meant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("creditd.env");
    std::fs::write(
        &file,
        "CREDITD_SIGNUP_BONUS_ENABLED=true\nCREDITD_SIGNUP_BONUS_AMONUT=50\n",
    )
    .unwrap();
    let (code, text) = refused_start(&[], &["--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("CREDITD_SIGNUP_BONUS_AMONUT"), "{text}");
    assert!(
        text.contains("did you mean CREDITD_SIGNUP_BONUS_AMOUNT?"),
        "{text}"
    );
    assert!(!text.contains("listening on"), "{text}");
}

#[test]
fn a_top_up_url_that_is_not_an_http_url_stops_the_start() {
    let (code, text) = refused_start(&[("CREDITD_TOP_UP_URL", "shop.example.com/buy")], &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("CREDITD_TOP_UP_URL must be an http or https URL"),
        "{text}"
    );
    assert!(text.contains("shop.example.com/buy"), "{text}");
    assert!(!text.contains("listening on"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_credits_carries_the_configured_top_up_url() {
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let top_up = "https://shop.example.com/credits?from=api";
    let server = Server::start_with(&url, &[("CREDITD_TOP_UP_URL", top_up)]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let (status, _) = post(&client, format!("{base}/v1/accounts"), json!({"id": "u"})).await;
    assert_eq!(status, 201);
    let consume = format!("{base}/v1/accounts/u/consume");
    let (status, body) = post(&client, consume, json!({"amount": "1"})).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_credits", "{body}");
    assert_eq!(body["error"]["top_up_url"], top_up, "{body}");
}

#[test]
fn an_admin_key_that_could_be_guessed_stops_the_start() {
    let (code, text) = refused_start(&[("CREDITD_ADMIN_KEY", "x")], &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("CREDITD_ADMIN_KEY is too easy to guess"),
        "{text}"
    );
    assert!(text.contains("openssl rand"), "{text}");
    assert!(!text.contains("listening on"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_routed_to_an_upstream_without_a_key_is_warned_of_and_never_called() {
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let client = reqwest::Client::new();
    // Nothing listens here: a call that went out would fail as unreachable,
    // not as unconfigured.
    let upstream = ("CREDITD_UPSTREAM_BASE_URL", "http://127.0.0.1:9/v1");
    let server = Server::start_with(&url, &[("CREDITD_LOG", "warn"), upstream]);
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{}/v1/prices/gpt-test", server.base),
        Some(json!({"provider": "openai", "input": "2", "output": "8"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.stop();

    let server = Server::start_with(&url, &[("CREDITD_LOG", "warn"), upstream]);
    let log = server.log_with("CREDITD_UPSTREAM_API_KEY", Duration::from_secs(5));
    let log = log.expect("no warning of the upstream without a key");
    assert!(log.contains("upstream openai"), "{log}");
    assert!(log.contains("CREDITD_UPSTREAM_KEYLESS=true"), "{log}");
    for (path, body) in [
        ("/v1/accounts", json!({"id": "acme"})),
        (
            "/v1/accounts/acme/grants",
            json!({"amount": "100", "source": "purchase"}),
        ),
    ] {
        let (status, reply) = support::post(&client, format!("{}{path}", server.base), body).await;
        assert_eq!(status, 201, "{reply}");
    }
    let (_, key) = send(
        &client,
        reqwest::Method::POST,
        format!("{}/v1/accounts/acme/keys", server.base),
        Some(json!({"name": "app"})),
    )
    .await;
    let reply = client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(key["key"].as_str().unwrap())
        .json(&json!({"model": "gpt-test", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 503);
    let error: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_not_configured", "{error}");
    server.stop();

    // With a key there is nothing to warn of.
    let server = Server::start_with(
        &url,
        &[
            ("CREDITD_LOG", "warn"),
            upstream,
            ("CREDITD_UPSTREAM_API_KEY", "sk-operator"),
        ],
    );
    let (status, _) = support::get(&client, format!("{}/healthz", server.base)).await;
    assert_eq!(status, 200);
    assert!(
        !server.log().contains("CREDITD_UPSTREAM_API_KEY"),
        "{}",
        server.log()
    );
    server.stop();
}
