//! BYOK through the real binary: a provider key is sealed at rest, bound to its account, never
//! in the log, and resealed by `creditd keys rotate-master`; prices come from
//! `creditd prices import`.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::{Server, fresh_db, post, run, send, until};
use testkit::upstream::FakeUpstream;

const PLAIN_KEY: &str = "sk-live-customer-secret-ab12cd34ef56";
const MASTER_V1: &str = "v1:0101010101010101010101010101010101010101010101010101010101010101";
const MASTER_V2: &str = "v2:0202020202020202020202020202020202020202020202020202020202020202";

fn env(master: &str, retired: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CREDITD_MASTER_KEY", master.to_owned()),
        ("CREDITD_MASTER_KEYS_RETIRED", retired.to_owned()),
        ("CREDITD_ALLOW_PRIVATE_UPSTREAMS", "true".to_owned()),
        // The most the server logs: the key must not be among it.
        ("CREDITD_LOG", "trace".to_owned()),
    ]
}

fn start(db: &std::path::Path, master: &str, retired: &str) -> Server {
    let env = env(master, retired);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with(&format!("sqlite://{}", db.display()), &env)
}

/// Every byte of the SQLite database and its write-ahead log.
fn database_bytes(db: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    let wal = db.with_extension("db-wal");
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn byok_account(
    client: &reqwest::Client,
    base: &str,
    account: &str,
    upstream: &str,
) -> String {
    let (status, body) = post(
        client,
        format!("{base}/v1/accounts"),
        json!({"id": account}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        client,
        Method::PATCH,
        format!("{base}/v1/accounts/{account}"),
        Some(json!({"billing_mode": "byok"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        client,
        Method::PUT,
        format!("{base}/v1/accounts/{account}/provider-keys/openai"),
        Some(json!({"api_key": PLAIN_KEY, "base_url": format!("{upstream}/v1")})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(PLAIN_KEY));
    let (status, key) = post(
        client,
        format!("{base}/v1/accounts/{account}/keys"),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().unwrap().to_owned()
}

async fn chat(client: &reqwest::Client, base: &str, key: &str) -> (u16, String) {
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": 20,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_provider_key_is_sealed_bound_to_its_account_and_never_logged() {
    let upstream = FakeUpstream::start().await;
    let (_dir, db) = fresh_db();
    assert!(run(&db, &["migrate"]).status.success());
    let imported = run(&db, &["prices", "import", "starter"]);
    assert!(imported.status.success(), "{imported:?}");
    let report: serde_json::Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert!(report["written"].as_u64().unwrap() >= 10, "{report}");

    let server = start(&db, MASTER_V1, "");
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let key = byok_account(&client, &base, "acme", &upstream.base_url()).await;
    let (status, text) = chat(&client, &base, &key).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        upstream.requests()[0].authorization.as_deref(),
        Some(format!("Bearer {PLAIN_KEY}").as_str())
    );
    until("the call recorded", Duration::from_secs(10), || async {
        let (_, calls) =
            support::get(&client, format!("{base}/v1/accounts/acme/usage/calls")).await;
        (calls["data"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;

    // Another account's row gets acme's sealed key: it does not open there.
    let (status, _) = post(
        &client,
        format!("{base}/v1/accounts"),
        json!({"id": "other"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = send(
        &client,
        Method::PATCH,
        format!("{base}/v1/accounts/other"),
        Some(json!({"billing_mode": "byok"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, other_key) = post(&client, format!("{base}/v1/accounts/other/keys"), json!({})).await;
    let other_key = other_key["key"].as_str().unwrap().to_owned();
    server.stop();

    assert!(
        !contains(&database_bytes(&db), PLAIN_KEY),
        "the database holds the key in the clear"
    );
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let body: String = conn
            .query_row(
                "SELECT body FROM records WHERE kind = 'provider_key' AND id = 'acme/openai'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        let moved = body.replace("\"account\":\"acme\"", "\"account\":\"other\"");
        conn.execute(
            "INSERT INTO records (kind, id, version, body, created_at, updated_at) \
             VALUES ('provider_key', 'other/openai', 1, ?1, 0, 0)",
            [&moved],
        )
        .unwrap();
    }
    let server = start(&db, MASTER_V1, "");
    let base = server.base.clone();
    let (status, text) = chat(&client, &base, &other_key).await;
    assert_eq!(status, 500, "{text}");
    assert_eq!(
        upstream.requests().len(),
        1,
        "a moved key must not reach the provider"
    );
    // acme's own key still opens.
    let (status, text) = chat(&client, &base, &key).await;
    assert_eq!(status, 200, "{text}");
    let log = server.log();
    server.stop();
    assert!(
        log.contains("gateway") || log.contains("request"),
        "the log is empty: trace was off"
    );
    assert!(!log.contains(PLAIN_KEY), "the log holds the key");
    assert!(
        !log.contains("0101010101010101"),
        "the log holds the master key"
    );

    // Rotation: reseal under v2, then v1 can go.
    let rotated = support::creditd()
        .args(["keys", "rotate-master"])
        .env("CREDITD_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("CREDITD_MASTER_KEY", MASTER_V2)
        .env("CREDITD_MASTER_KEYS_RETIRED", MASTER_V1)
        .output()
        .unwrap();
    // The moved key cannot be opened anywhere, so the rotation says so.
    assert!(!rotated.status.success(), "{rotated:?}");
    let report: serde_json::Value = serde_json::from_slice(&rotated.stdout).unwrap();
    assert_eq!(report["resealed"], 1, "{report}");
    assert_eq!(report["failed"], json!(["other/openai"]));
    assert!(!String::from_utf8_lossy(&rotated.stderr).contains("0202020202"));
    let server = start(&db, MASTER_V2, "");
    let (status, text) = chat(&client, &server.base, &key).await;
    assert_eq!(status, 200, "{text}");
    server.stop();
    // Without any master key, BYOK calls are refused as not configured.
    let server = Server::start_with(&format!("sqlite://{}", db.display()), &[]);
    let (status, text) = chat(&client, &server.base, &key).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("byok_not_configured"), "{text}");
    server.stop();
}
