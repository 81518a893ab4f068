//! kill -9 under load loses no acknowledged write.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{KEY, Server, fresh_db, run};

const CLIENTS: usize = 24;

/// An acknowledged consume: its idempotency key, transaction id and response body.
struct Acked {
    key: String,
    tx: String,
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let (_dir, db) = fresh_db();
    let server = Server::start(&db);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let post = |path: String, key: Option<String>, body: Value| {
        let mut request = client
            .post(format!("{base}{path}"))
            .bearer_auth(KEY)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.timeout(Duration::from_secs(10)).send()
    };
    for i in 0..4 {
        let created = post(
            "/v1/accounts".into(),
            None,
            json!({"id": format!("acct{i}")}),
        )
        .await
        .unwrap();
        assert_eq!(created.status(), 201);
        let granted = post(
            format!("/v1/accounts/acct{i}/grants"),
            None,
            json!({"amount": "1000000", "source": "purchase"}),
        )
        .await
        .unwrap();
        assert_eq!(granted.status(), 201);
    }

    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let acked = acked.clone();
        let client = client.clone();
        let base = server.base.clone();
        clients.push(tokio::spawn(async move {
            for n in 0.. {
                let key = format!("c{c}-n{n}");
                let sent = client
                    .post(format!("{base}/v1/accounts/acct{}/consume", n % 4))
                    .bearer_auth(KEY)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"amount": "1.5"}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                // After the kill, requests fail: the client stops.
                let Ok(response) = sent else { return };
                if response.status() != 200 {
                    return;
                }
                let Ok(body) = response.text().await else {
                    return;
                };
                let parsed: Value = serde_json::from_str(&body).unwrap();
                let tx = parsed["transaction"]["id"].as_str().unwrap().to_owned();
                acked.lock().unwrap().push(Acked { key, tx, body });
            }
        }));
    }
    // Let the load run, then pull the plug while requests are in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_9();
    for task in clients {
        task.await.unwrap();
    }
    let acked = Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    eprintln!("{} consumes acknowledged before kill -9", acked.len());

    let server = Server::start(&db);
    let base = server.base.clone();
    for write in &acked {
        let read = client
            .get(format!("{base}/v1/transactions/{}", write.tx))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "{} lost", write.tx);
        // The idempotency record survived too: the retry gets the first answer.
        let replay = client
            .post(format!("{base}/v1/accounts/acct0/consume"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", &write.key)
            .json(&json!({"amount": "1.5"}))
            .send()
            .await
            .unwrap();
        let path_matches = write.body.contains("\"account_id\":\"acct0\"");
        if path_matches {
            assert_eq!(replay.headers()["idempotent-replayed"], "true");
            assert_eq!(replay.text().await.unwrap(), write.body);
        } else {
            // Same key, different account: a different request.
            assert_eq!(replay.status(), 409);
        }
    }
    // Every consume in the journal, acknowledged or not, is paid for exactly once.
    let mut consumed = 0u64;
    for i in 0..4 {
        let balance: Value = client
            .get(format!("{base}/v1/accounts/acct{i}/balance"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let available: f64 = balance["available"].as_str().unwrap().parse().unwrap();
        consumed += ((1_000_000.0 - available) / 1.5).round() as u64;
    }
    assert!(consumed >= acked.len() as u64);
    assert!(consumed <= (acked.len() + CLIENTS) as u64);
    server.stop();

    let verify = run(&db, &["verify"]);
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{report}");
    assert!(report.contains("ok:"), "{report}");
}

/// kill -9 while grants and consumes come in and their events go out:
/// after the restart every acknowledged grant is in the journal and its
/// `credits.granted` event reaches the endpoint, and no event is of a
/// change the journal does not hold: the outbox loses nothing in a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_loses_no_acknowledged_grant_nor_its_event() {
    let receiver = testkit::receiver::Receiver::start().await;
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let env = [
        ("CREDITD_MASTER_KEY", "5e".repeat(32)),
        ("CREDITD_ALLOW_PRIVATE_WEBHOOKS", "true".into()),
        ("CREDITD_SWEEP_INTERVAL_MS", "50".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(&url, &env);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let made = client
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(KEY)
        .json(&json!({"url": receiver.url("/hooks"), "events": ["credits.granted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    for i in 0..4 {
        let created = client
            .post(format!("{base}/v1/accounts"))
            .bearer_auth(KEY)
            .json(&json!({"id": format!("acct{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..8 {
        let acked = acked.clone();
        let client = client.clone();
        let base = base.clone();
        clients.push(tokio::spawn(async move {
            for n in 0.. {
                let account = format!("acct{}", (c + n) % 4);
                // Grants and consumes, interleaved.
                let (path, body) = if n % 3 == 2 {
                    ("consume", json!({"amount": "0.5"}))
                } else {
                    ("grants", json!({"amount": "1", "source": "purchase"}))
                };
                let sent = client
                    .post(format!("{base}/v1/accounts/{account}/{path}"))
                    .bearer_auth(KEY)
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if !response.status().is_success() {
                    if response.status() == 402 {
                        continue;
                    }
                    return;
                }
                let Ok(answer) = response.json::<Value>().await else {
                    return;
                };
                if path == "grants" {
                    // A grant answers its lot; its transaction is found by it.
                    acked
                        .lock()
                        .unwrap()
                        .push(answer["id"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = receiver.received().len();
    server.kill_9();
    for task in clients {
        task.await.unwrap();
    }
    let acked = Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap();
    assert!(acked.len() > 50, "only {} grants acknowledged", acked.len());

    let server = Server::start_with(&url, &env);
    let base = server.base.clone();
    // Every acknowledged grant is kept; its event arrives after the restart.
    let lots: std::collections::HashSet<String> = acked.iter().cloned().collect();
    // A delivery a node had begun when it died waits out its claim (its
    // attempt's 10 s and 5 more) before it is made again.
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let told: std::collections::HashSet<String> = receiver
            .events_of("credits.granted")
            .iter()
            .filter_map(|e| e["data"]["grant_id"].as_str().map(str::to_owned))
            .collect();
        let missing = lots.difference(&told).count();
        if missing == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} acknowledged grants never told; {} events received",
            lots.len(),
            receiver.received().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No event is of a grant the journal does not hold.
    for event in receiver.events_of("credits.granted") {
        let tx = event["data"]["transaction_id"].as_str().unwrap();
        let read = client
            .get(format!("{base}/v1/transactions/{tx}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(
            read.status(),
            200,
            "an event of {tx}, which the journal lacks"
        );
    }
    eprintln!(
        "{} grants acknowledged before kill -9; {} events before it, {} after the restart",
        acked.len(),
        before_kill,
        receiver.received().len()
    );
    server.stop();
    support::assert_verified(&url);
}
