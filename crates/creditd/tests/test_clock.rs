//! The test clock through the real binary: a rehearsal of days in seconds,
//! a clock that survives a restart, nodes that follow one another, and no
//! test clock at all without the setting.

mod support;

use std::time::Duration;

use ledger::Timestamp;
use serde_json::{Value, json};
use support::{Server, creditd, fresh_db, get, post, run, send, until};
use testkit::TestDatabase;

const DAY: i64 = 86_400;

/// The settings of a server on the test clock whose sweep runs often.
const TEST_CLOCK: [(&str, &str); 2] = [
    ("CREDITD_TEST_CLOCK", "true"),
    ("CREDITD_SWEEP_INTERVAL_MS", "100"),
];

fn instant(value: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(value.as_str().expect("an instant")).expect("an RFC 3339 instant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_days_of_expiries_pass_in_seconds_and_the_clock_survives_a_restart() {
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let client = reqwest::Client::new();
    let server = Server::start_with(&url, &TEST_CLOCK);
    let base = server.base.clone();

    let (status, clock) = get(&client, format!("{base}/v1/test-clock")).await;
    assert_eq!(status, 200, "{clock}");
    assert_eq!(
        (&clock["enabled"], &clock["offset_seconds"]),
        (&json!(true), &json!(0))
    );
    let start = instant(&clock["now"]);

    let (status, _) = post(&client, format!("{base}/v1/accounts"), json!({"id": "u"})).await;
    assert_eq!(status, 201);
    let expires_at = start.plus_secs(DAY).to_string();
    let (status, grant) = post(
        &client,
        format!("{base}/v1/accounts/u/grants"),
        json!({"amount": "10", "source": "promo", "expires_at": expires_at}),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    let (status, hold) = post(
        &client,
        format!("{base}/v1/accounts/u/holds"),
        json!({"amount": "4", "ttl_seconds": 60}),
    )
    .await;
    assert_eq!(status, 201, "{hold}");
    let hold_id = hold["hold"]["id"].as_str().unwrap().to_owned();
    let (_, balance) = get(&client, format!("{base}/v1/accounts/u/balance")).await;
    assert_eq!(
        (&balance["available"], &balance["held"]),
        (&json!("6"), &json!("4"))
    );

    let (status, advanced) = post(
        &client,
        format!("{base}/v1/test-clock/advance"),
        json!({"seconds": 2 * DAY}),
    )
    .await;
    assert_eq!(status, 200, "{advanced}");
    assert_eq!(advanced["offset_seconds"], 2 * DAY);
    let advanced_to = instant(&advanced["now"]);
    assert!(advanced_to >= start.plus_secs(2 * DAY), "{advanced}");

    // The sweep, on the same clock, writes the release and the expiry.
    let written = until(
        "the sweep to write the expiry and the release",
        Duration::from_secs(10),
        || async {
            let (_, journal) = get(&client, format!("{base}/v1/accounts/u/transactions")).await;
            let written: Vec<(String, String, Timestamp)> = journal["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["type"] == "expire" || t["type"] == "hold_release")
                .map(|t| {
                    (
                        t["type"].as_str().unwrap().to_owned(),
                        t["amount"].as_str().unwrap().to_owned(),
                        instant(&t["created_at"]),
                    )
                })
                .collect();
            (written.len() == 2).then_some(written)
        },
    )
    .await;
    let mut amounts: Vec<(&str, &str)> = written
        .iter()
        .map(|(kind, amount, _)| (kind.as_str(), amount.as_str()))
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [("expire", "-6"), ("hold_release", "-4")]);
    assert!(
        written.iter().all(|(_, _, at)| *at >= advanced_to),
        "{written:?}"
    );
    let (_, balance) = get(&client, format!("{base}/v1/accounts/u/balance")).await;
    assert_eq!(
        (&balance["available"], &balance["held"]),
        (&json!("0"), &json!("0"))
    );
    let (_, hold) = get(&client, format!("{base}/v1/holds/{hold_id}")).await;
    assert_eq!(hold["status"], "expired", "{hold}");
    let (_, grant) = get(
        &client,
        format!("{base}/v1/grants/{}", grant["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(grant["status"], "expired", "{grant}");

    let (_, before) = get(&client, format!("{base}/v1/test-clock")).await;
    let before = instant(&before["now"]);
    server.stop();

    // Started again, it runs at the offset it kept from its first write
    // on: its time did not go back.
    let server = Server::start_with(&url, &TEST_CLOCK);
    let base = server.base.clone();
    let (status, later) = post(
        &client,
        format!("{base}/v1/accounts/u/grants"),
        json!({"amount": "1", "source": "purchase"}),
    )
    .await;
    assert_eq!(status, 201, "{later}");
    assert!(instant(&later["created_at"]) >= before, "{later}");
    let (status, clock) = get(&client, format!("{base}/v1/test-clock")).await;
    assert_eq!(status, 200, "{clock}");
    assert_eq!(clock["offset_seconds"], 2 * DAY);
    assert!(instant(&clock["now"]) >= before, "{clock}");
    server.stop();

    // The commands run on the test clock too when the setting says so.
    let granted = creditd()
        .args(["grant", "u", "2", "--source", "purchase"])
        .env("CREDITD_DATABASE_URL", &url)
        .env("CREDITD_TEST_CLOCK", "true")
        .env("CREDITD_LOG", "warn")
        .output()
        .unwrap();
    assert!(granted.status.success(), "{granted:?}");
    let granted: Value = serde_json::from_slice(&granted.stdout).unwrap();
    assert!(instant(&granted["created_at"]) >= before, "{granted}");

    let verified = run(&db, &["verify"]);
    assert!(verified.status.success(), "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_of_the_test_clock_and_without_the_setting_there_is_none() {
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let client = reqwest::Client::new();

    // A new ledger without the setting: no test clock, and no word of one.
    let server = Server::start_with(&url, &[("CREDITD_LOG", "info")]);
    let log = server
        .log_with("creditd serving", Duration::from_secs(5))
        .expect("serve logs that it serves");
    assert!(!log.to_lowercase().contains("test clock"), "{log}");
    for (method, path) in [
        (reqwest::Method::GET, "/v1/test-clock"),
        (reqwest::Method::POST, "/v1/test-clock/advance"),
    ] {
        let (status, body) = send(
            &client,
            method,
            format!("{}{path}", server.base),
            Some(json!({"seconds": 60})),
        )
        .await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (_, spec) = get(&client, format!("{}/openapi.json", server.base)).await;
    let paths = spec["paths"].as_object().unwrap();
    assert!(!paths.is_empty());
    assert!(
        paths.keys().all(|p| !p.starts_with("/v1/test-clock")),
        "{paths:?}"
    );
    server.stop();

    // With it, serve says so loudly before it listens.
    let server = Server::start_with(
        &url,
        &[("CREDITD_TEST_CLOCK", "true"), ("CREDITD_LOG", "warn")],
    );
    let log = server.log_with("TEST CLOCK ON", Duration::from_secs(5));
    assert!(log.is_ok(), "no warning: {log:?}");
    let (status, advanced) = post(
        &client,
        format!("{}/v1/test-clock/advance", server.base),
        json!({"seconds": 3_600}),
    )
    .await;
    assert_eq!(status, 200, "{advanced}");
    server.stop();

    // Started on the same ledger without it, the routes are gone again and
    // serve warns that its time is now behind the ledger's.
    let server = Server::start_with(&url, &[("CREDITD_LOG", "warn")]);
    let log = server.log_with("ran on a test clock", Duration::from_secs(5));
    assert!(log.is_ok(), "no warning: {log:?}");
    let (status, body) = get(&client, format!("{}/v1/test-clock", server.base)).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    assert!(!server.log().contains("TEST CLOCK ON"));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_follows_an_advance_made_on_another_within_about_a_second() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    // No sweep writes anything during the test: what a node shows comes
    // from its own clock alone.
    let env = [
        ("CREDITD_TEST_CLOCK", "true"),
        ("CREDITD_SWEEP_INTERVAL_MS", "3600000"),
    ];
    let (a, b) = (
        Server::start_with(&database.url, &env),
        Server::start_with(&database.url, &env),
    );
    let client = reqwest::Client::new();
    let (_, clock) = get(&client, format!("{}/v1/test-clock", a.base)).await;
    let expires_at = instant(&clock["now"]).plus_secs(3_600).to_string();
    let (status, _) = post(
        &client,
        format!("{}/v1/accounts", a.base),
        json!({"id": "u"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, grant) = post(
        &client,
        format!("{}/v1/accounts/u/grants", a.base),
        json!({"amount": "10", "source": "promo", "expires_at": expires_at}),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    let available = |node: String| {
        let client = client.clone();
        async move {
            let (_, balance) = get(&client, format!("{node}/v1/accounts/u/balance")).await;
            balance["available"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(available(b.base.clone()).await, "10");

    let (status, advanced) = post(
        &client,
        format!("{}/v1/test-clock/advance", a.base),
        json!({"seconds": 7_200}),
    )
    .await;
    assert_eq!(status, 200, "{advanced}");
    assert_eq!(available(a.base.clone()).await, "0");

    until(
        "the other node to follow the advance",
        Duration::from_secs(3),
        || async { (available(b.base.clone()).await == "0").then_some(()) },
    )
    .await;
    let (_, clock) = get(&client, format!("{}/v1/test-clock", b.base)).await;
    assert_eq!(clock["offset_seconds"], 7_200);
}
