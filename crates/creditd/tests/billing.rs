//! Billing through the real binary on the test clock: a month of a plan,
//! a sign-up bonus and daily rewards rehearsed in seconds, settings that
//! survive a restart, and renewals that two nodes run once.

mod support;

use std::time::Duration;

use ledger::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Server, fresh_db, get, post, run, run_url, send, until};
use testkit::TestDatabase;

const DAY: i64 = 86_400;

/// A server on the test clock whose sweep and renewals run often, started
/// with a sign-up bonus of 50 credits for 30 days and a daily reward of 5.
const ENV: [(&str, &str); 7] = [
    ("CREDITD_TEST_CLOCK", "true"),
    ("CREDITD_SWEEP_INTERVAL_MS", "100"),
    ("CREDITD_SIGNUP_BONUS_ENABLED", "true"),
    ("CREDITD_SIGNUP_BONUS_AMOUNT", "50"),
    ("CREDITD_SIGNUP_BONUS_EXPIRE_DAYS", "30"),
    ("CREDITD_DAILY_ENABLED", "true"),
    ("CREDITD_DAILY_AMOUNT", "5"),
];

fn instant(value: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(value.as_str().expect("an instant")).expect("an RFC 3339 instant")
}

async fn available(client: &reqwest::Client, base: &str, account: &str) -> String {
    let (status, balance) = get(client, format!("{base}/v1/accounts/{account}/balance")).await;
    assert_eq!(status, 200, "{balance}");
    balance["available"].as_str().unwrap().to_owned()
}

async fn advance(client: &reqwest::Client, base: &str, seconds: i64) {
    let (status, clock) = post(
        client,
        format!("{base}/v1/test-clock/advance"),
        json!({ "seconds": seconds }),
    )
    .await;
    assert_eq!(status, 200, "{clock}");
}

/// Waits until the account's current period starts at `start`.
async fn period_starts(client: &reqwest::Client, base: &str, account: &str, start: Timestamp) {
    until(
        &format!("{account}'s period from {start}"),
        Duration::from_secs(20),
        || async {
            let (_, sub) = get(client, format!("{base}/v1/accounts/{account}/subscription")).await;
            (instant(&sub["current_period"]["start"]) == start).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_a_plan_and_rewards_passes_in_seconds_and_the_settings_survive_a_restart() {
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let client = reqwest::Client::new();
    let server = Server::start_with(&url, &ENV);
    let base = server.base.clone();

    let (status, settings) = get(&client, format!("{base}/v1/settings/credits")).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["signup_bonus"]["amount"], "50");
    assert_eq!(settings["sources"]["signup_bonus.amount"], "env");
    assert_eq!(settings["sources"]["allow_free_user_purchase"], "default");

    let (status, plan) = send(
        &client,
        Method::PUT,
        format!("{base}/v1/plans/free"),
        Some(
            json!({"name": "Free", "credits": "100", "interval": "month",
                    "allocation": "rollover", "rollover_cap": "150", "default": true}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{plan}");

    // A new account: the bonus and the plan's first month, in the one
    // transaction that opens it.
    let (status, opened) = post(&client, format!("{base}/v1/accounts"), json!({"id": "u"})).await;
    assert_eq!(status, 201, "{opened}");
    let sources: Vec<_> = opened["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["source"].clone(), g["amount"].clone()))
        .collect();
    assert_eq!(
        sources,
        [
            (json!("signup_bonus"), json!("50")),
            (json!("subscription"), json!("100"))
        ]
    );
    let (_, sub) = get(&client, format!("{base}/v1/accounts/u/subscription")).await;
    let start = instant(&sub["current_period"]["start"]);
    let end = instant(&sub["current_period"]["end"]);

    let daily = format!("{base}/v1/accounts/u/daily-reward");
    let (status, first) = post(&client, daily.clone(), json!({})).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = post(&client, daily.clone(), json!({})).await;
    assert_eq!((status, &again["granted"]), (200, &json!(false)), "{again}");
    assert_eq!(available(&client, &base, "u").await, "155");

    // The daily reward burns first, then the bonus that expires.
    let (status, spent) = post(
        &client,
        format!("{base}/v1/accounts/u/consume"),
        json!({"amount": "20"}),
    )
    .await;
    assert_eq!(status, 200, "{spent}");
    let (_, balance) = get(&client, format!("{base}/v1/accounts/u/balance")).await;
    let left: Vec<_> = balance["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lot| (lot["source"].clone(), lot["remaining"].clone()))
        .collect();
    assert!(
        left.contains(&(json!("signup_bonus"), json!("35"))),
        "{balance}"
    );
    assert!(
        left.contains(&(json!("subscription"), json!("100"))),
        "{balance}"
    );

    let (status, changed) = send(
        &client,
        Method::PATCH,
        format!("{base}/v1/settings/credits"),
        Some(json!({"daily_reward": {"amount": "7"}})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["sources"]["daily_reward.amount"], "api");

    // A month and a day later: the renewal job rolled the month's 100 over
    // and granted the next 100; the bonus and the reward expired.
    advance(&client, &base, 32 * DAY).await;
    period_starts(&client, &base, "u", end).await;
    assert!(end > start);
    assert_eq!(available(&client, &base, "u").await, "200");
    let (_, journal) = get(
        &client,
        format!("{base}/v1/accounts/u/transactions?type=rollover"),
    )
    .await;
    assert_eq!(journal["data"].as_array().unwrap().len(), 1, "{journal}");
    server.stop();

    // Started again with another amount in its environment: the API's
    // value still wins, and the clock kept its month.
    let mut env = ENV.to_vec();
    env.retain(|(name, _)| *name != "CREDITD_DAILY_AMOUNT");
    env.push(("CREDITD_DAILY_AMOUNT", "9"));
    let server = Server::start_with(&url, &env);
    let base = server.base.clone();
    let (_, settings) = get(&client, format!("{base}/v1/settings/credits")).await;
    assert_eq!(settings["daily_reward"]["amount"], "7", "{settings}");
    assert_eq!(settings["sources"]["daily_reward.amount"], "api");
    let (_, clock) = get(&client, format!("{base}/v1/test-clock")).await;
    assert_eq!(clock["offset_seconds"], 32 * DAY);
    let daily = format!("{base}/v1/accounts/u/daily-reward");
    let (status, today) = post(&client, daily.clone(), json!({})).await;
    assert_eq!(
        (status, &today["grant"]["amount"]),
        (201, &json!("7")),
        "{today}"
    );
    let (status, _) = post(&client, daily, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(available(&client, &base, "u").await, "207");
    server.stop();

    let verified = run(&db, &["verify"]);
    assert!(verified.status.success(), "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_renew_every_period_once_after_three_weeks_away() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let url = database.url.clone();
    let client = reqwest::Client::new();
    let env = &ENV[..2];
    let a = Server::start_with(&url, env);
    let b = Server::start_with(&url, env);

    let (status, plan) = send(
        &client,
        Method::PUT,
        format!("{}/v1/plans/weekly", a.base),
        Some(json!({"name": "Weekly", "credits": "10", "interval": "week"})),
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    const ACCOUNTS: usize = 100;
    let mut starts = Vec::new();
    for i in 0..ACCOUNTS {
        let (status, _) = post(
            &client,
            format!("{}/v1/accounts", a.base),
            json!({"id": format!("u{i}")}),
        )
        .await;
        assert_eq!(status, 201);
        let (status, sub) = send(
            &client,
            Method::PUT,
            format!("{}/v1/accounts/u{i}/subscription", b.base),
            Some(json!({"plan_id": "weekly"})),
        )
        .await;
        assert_eq!(status, 200, "{sub}");
        starts.push(instant(&sub["current_period"]["start"]));
    }
    // Each spends 4 of its first week's 10.
    for i in 0..ACCOUNTS {
        let (status, _) = post(
            &client,
            format!("{}/v1/accounts/u{i}/consume", a.base),
            json!({"amount": "4"}),
        )
        .await;
        assert_eq!(status, 200);
    }

    // Three weeks and an hour on, moved on one node: the other follows
    // within a second, and both renew, each period once.
    advance(&client, &a.base, 21 * DAY + 3_600).await;
    until(
        "the second node to follow the clock",
        Duration::from_secs(10),
        || async {
            let (_, clock) = get(&client, format!("{}/v1/test-clock", b.base)).await;
            (clock["offset_seconds"] == json!(21 * DAY + 3_600)).then_some(())
        },
    )
    .await;
    for (i, start) in starts.iter().enumerate() {
        period_starts(
            &client,
            &b.base,
            &format!("u{i}"),
            start.plus_secs(21 * DAY),
        )
        .await;
    }
    for (i, start) in starts.iter().enumerate() {
        let (_, grants) = get(
            &client,
            format!("{}/v1/accounts/u{i}/grants?limit=100", a.base),
        )
        .await;
        let grants = grants["data"].as_array().unwrap();
        assert_eq!(grants.len(), 4, "u{i}: {grants:?}");
        let mut effective: Vec<_> = grants.iter().map(|g| instant(&g["effective_at"])).collect();
        effective.sort_unstable();
        let weeks: Vec<_> = (0..4).map(|w| start.plus_secs(w * 7 * DAY)).collect();
        assert_eq!(effective, weeks, "u{i}");
        assert_eq!(available(&client, &b.base, &format!("u{i}")).await, "10");
    }
    a.stop();
    b.stop();
    let verified = run_url(&url, &["verify"]);
    assert!(verified.status.success(), "{verified:?}");
}
