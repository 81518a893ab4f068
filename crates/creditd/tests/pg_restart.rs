//! PostgreSQL restarted in the middle of load: nodes answer 503 while it is
//! gone, recover by themselves, and clients retrying with the same
//! Idempotency-Key are charged exactly once.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{KEY, Server, run_url};
use testkit::{TestDatabase, in_ci};

const CLIENTS: usize = 16;
const CREDITS: u64 = 1_000_000;

/// Restarts the local PostgreSQL cluster, or says why it cannot.
fn restart_postgres() -> Result<(), String> {
    let versions = std::fs::read_dir("/etc/postgresql").map_err(|e| e.to_string())?;
    let version = versions
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or("no cluster in /etc/postgresql")?;
    let status = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "restart",
            "-m",
            "fast",
        ])
        .status()
        .map_err(|e| format!("pg_ctlcluster: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("pg_ctlcluster exited with {status}"))
}

/// How each idempotency key finally ended, after retries.
#[derive(Default)]
struct Tally {
    charged: Vec<String>,
    unavailable_answers: u64,
    slowest_unavailable: Duration,
    charged_after_restart: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_loses_nothing_and_charges_once() {
    let can_restart = std::path::Path::new("/etc/postgresql").exists()
        && Command::new("pg_ctlcluster").arg("--help").output().is_ok();
    if !can_restart {
        assert!(
            !in_ci(),
            "CI needs a local PostgreSQL cluster it can restart"
        );
        eprintln!("skipped: no local PostgreSQL cluster to restart");
        return;
    }
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let servers = [
        Server::start_url(&database.url),
        Server::start_url(&database.url),
    ];
    let nodes: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let created = client
        .post(format!("{}/v1/accounts", nodes[0]))
        .bearer_auth(KEY)
        .json(&json!({"id": "load"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let granted = client
        .post(format!("{}/v1/accounts/load/grants", nodes[0]))
        .bearer_auth(KEY)
        .json(&json!({"amount": CREDITS.to_string(), "source": "purchase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 201);

    let tally = Arc::new(Mutex::new(Tally::default()));
    let restarted_at = Arc::new(Mutex::new(None::<Instant>));
    let stop_at = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, nodes, tally, restarted_at) = (
            client.clone(),
            nodes.clone(),
            tally.clone(),
            restarted_at.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop_at {
                let key = format!("client{c}-{n}");
                n += 1;
                // Retry this key until it gets a definitive answer.
                let give_up = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(Instant::now() < give_up, "{key} never got an answer");
                    let node = &nodes[(c + n) % nodes.len()];
                    let sent = Instant::now();
                    let answer = client
                        .post(format!("{node}/v1/accounts/load/consume"))
                        .bearer_auth(KEY)
                        .header("Idempotency-Key", &key)
                        .json(&json!({"amount": "1"}))
                        .send()
                        .await;
                    let status = answer.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                    if status == 200 {
                        let body: Value = answer.unwrap().json().await.unwrap();
                        let mut t = tally.lock().unwrap();
                        t.charged
                            .push(body["transaction"]["id"].as_str().unwrap().to_owned());
                        if restarted_at.lock().unwrap().is_some_and(|r| sent > r) {
                            t.charged_after_restart += 1;
                        }
                        break;
                    }
                    assert!(status == 503 || status == 0, "{key}: unexpected {status}");
                    if status == 503 {
                        let mut t = tally.lock().unwrap();
                        t.unavailable_answers += 1;
                        t.slowest_unavailable = t.slowest_unavailable.max(sent.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    *restarted_at.lock().unwrap() = Some(Instant::now());
    tokio::task::spawn_blocking(restart_postgres)
        .await
        .unwrap()
        .expect("restarting PostgreSQL");
    *restarted_at.lock().unwrap() = Some(Instant::now());
    for task in tasks {
        task.await.unwrap();
    }

    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    assert!(
        tally.unavailable_answers > 0,
        "the restart was never noticed"
    );
    assert!(
        tally.slowest_unavailable < Duration::from_secs(5),
        "503 took {:?}: not failing fast",
        tally.slowest_unavailable
    );
    assert!(tally.charged_after_restart > 0, "the nodes did not recover");
    eprintln!(
        "{} consumes charged, {} answered 503 during the restart, slowest 503 in {:?}",
        tally.charged.len(),
        tally.unavailable_answers,
        tally.slowest_unavailable
    );

    // Every acknowledged consume is in the journal...
    for tx in &tally.charged {
        let read = client
            .get(format!("{}/v1/transactions/{tx}", nodes[1]))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "{tx} was acknowledged and lost");
    }
    // ...and nothing was charged twice: the balance fell by exactly one
    // credit per key that was answered 200.
    let balance: Value = client
        .get(format!("{}/v1/accounts/load/balance", nodes[0]))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let available: u64 = balance["available"].as_str().unwrap().parse().unwrap();
    assert_eq!(CREDITS - available, tally.charged.len() as u64);

    drop(servers);
    let verify = run_url(&database.url, &["verify"]);
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{report}");
}
