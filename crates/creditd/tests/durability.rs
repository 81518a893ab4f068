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
