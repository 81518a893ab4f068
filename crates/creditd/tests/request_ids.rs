//! Request ids and JSON logs, through the real binary: every answer names
//! its request, the client's own id is kept, the gateway passes it to its
//! upstream, and with `CREDITD_LOG_FORMAT=json` every line a request logs
//! is a JSON object carrying its id.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use testkit::upstream::FakeUpstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_id_is_answered_passed_upstream_and_on_each_of_its_log_lines() {
    let fake = FakeUpstream::start().await;
    // The first upstream refuses connections, so the call logs that it
    // tries the next, within its request.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (_dir, db) = fresh_db();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[
            ("CREDITD_LOG", "warn"),
            ("CREDITD_LOG_FORMAT", "json"),
            (
                "CREDITD_UPSTREAM_DOWN_BASE_URL",
                &format!("http://{closed}/v1"),
            ),
            ("CREDITD_UPSTREAM_DOWN_API_KEY", "sk-down"),
            (
                "CREDITD_UPSTREAM_UP_BASE_URL",
                &format!("{}/v1", fake.base_url()),
            ),
            ("CREDITD_UPSTREAM_UP_API_KEY", "sk-up"),
        ],
    );
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // Without an id of its own, a request gets one.
    let answer = client.get(format!("{base}/healthz")).send().await.unwrap();
    let given = answer.headers()["request-id"].to_str().unwrap().to_owned();
    assert!(given.starts_with("req_"), "{given}");
    let again = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_ne!(again.headers()["request-id"].to_str().unwrap(), given);
    // A usable id of the client's is kept; one that could forge a log line is not.
    let kept = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "checkout-42")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["request-id"], "checkout-42");
    let forged = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "a b\"}")
        .send()
        .await
        .unwrap();
    assert!(
        forged.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );

    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/prices/gpt-ids"),
        Some(json!({"provider": "openai", "input": "1", "output": "1",
            "max_output_tokens": 100, "upstreams": ["down", "up"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(&client, format!("{base}/v1/accounts"), json!({"id": "ada"})).await;
    assert_eq!(status, 201);
    post(
        &client,
        format!("{base}/v1/accounts/ada/grants"),
        json!({"amount": "100", "source": "purchase"}),
    )
    .await;
    let (_, key) = post(&client, format!("{base}/v1/accounts/ada/keys"), json!({})).await;
    let call = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key["key"].as_str().unwrap())
        .header("x-request-id", "trace-7")
        .json(&json!({"model": "gpt-ids", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200, "{}", call.text().await.unwrap());
    assert_eq!(fake.requests()[0].request_id.as_deref(), Some("trace-7"));

    let log = server
        .log_with("upstream unreachable", Duration::from_secs(5))
        .expect("the call logged the upstream it could not reach");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let unreachable = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("upstream unreachable"))
        })
        .unwrap();
    assert_eq!(unreachable["level"], "WARN", "{unreachable}");
    assert_eq!(unreachable["span"]["name"], "request");
    assert_eq!(unreachable["span"]["id"], "trace-7", "{unreachable}");
}
