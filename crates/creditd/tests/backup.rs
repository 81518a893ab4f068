//! `creditd backup` and `creditd restore`, through the real binary and
//! under load: the copy made while the server writes passes `verify` and
//! holds every write acknowledged before the backup began; a restore gives
//! a server that serves exactly that; a backup that fails the audit is
//! not restored.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::*;

/// The external ids of the consumes a copy holds.
fn consumes_in(db: &std::path::Path) -> HashSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT external_id FROM transactions WHERE kind = 'consume'")
        .unwrap();
    stmt.query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_holds_every_acknowledged_write_and_restores() {
    let (dir, db) = fresh_db();
    let server = Server::start(&db);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        format!("{base}/v1/accounts"),
        json!({"id": "bank"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = post(
        &client,
        format!("{base}/v1/accounts/bank/grants"),
        json!({"amount": "1000000", "source": "purchase"}),
    )
    .await;
    assert_eq!(status, 201);

    // Eight clients consume 1 credit at a time, each consume named by its
    // external id, and note each one acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (client, base) = (client.clone(), base.clone());
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("use-{c}-{n}");
                    let (status, body) = post(
                        &client,
                        format!("{base}/v1/accounts/bank/consume"),
                        json!({"amount": "1", "external_id": id}),
                    )
                    .await;
                    assert_eq!(status, 200, "{body}");
                    acknowledged.lock().unwrap().push(id);
                    n += 1;
                }
            })
        })
        .collect();
    until(
        "some writes",
        std::time::Duration::from_secs(10),
        || async { (acknowledged.lock().unwrap().len() >= 300).then_some(()) },
    )
    .await;

    // What was acknowledged before the backup began must be in it.
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let copy = dir.path().join("copy.db");
    let url = format!("sqlite://{}", db.display());
    let copy_arg = copy.to_str().unwrap().to_owned();
    let backed_up = tokio::task::spawn_blocking(move || run_url(&url, &["backup", &copy_arg]))
        .await
        .unwrap();
    assert!(
        backed_up.status.success(),
        "{}",
        String::from_utf8_lossy(&backed_up.stderr)
    );
    let printed = String::from_utf8_lossy(&backed_up.stdout);
    assert!(
        printed.contains("pages") && printed.contains("transactions up to"),
        "{printed}"
    );
    // The load went on during the backup, and a while after.
    let during = acknowledged.lock().unwrap().len();
    until(
        "writes after the backup",
        std::time::Duration::from_secs(10),
        || async { (acknowledged.lock().unwrap().len() >= during + 100).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let held = consumes_in(&copy);
    let missing: Vec<&String> = before.iter().filter(|id| !held.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, not in it: {missing:?}"
    );
    let all = acknowledged.lock().unwrap().len();
    assert!(held.len() < all, "the copy is of a moment, not of the end");
    let verified = run(&copy, &["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // A second backup to the same file is refused: it never overwrites.
    let again = run_url(
        &format!("sqlite://{}", db.display()),
        &["backup", copy.to_str().unwrap()],
    );
    assert!(!again.status.success());
    server.stop();

    // Restored into a database of its own, the copy serves its balance.
    let restored = dir.path().join("restored.db");
    let put_back = run(&restored, &["restore", copy.to_str().unwrap()]);
    assert!(
        put_back.status.success(),
        "{}",
        String::from_utf8_lossy(&put_back.stderr)
    );
    let server = Server::start(&restored);
    let (status, balance) = get(&client, format!("{}/v1/accounts/bank/balance", server.base)).await;
    assert_eq!(status, 200);
    let expected = 1_000_000 - held.len() as u64;
    assert_eq!(balance["available"], expected.to_string());
    server.stop();

    // A backup that fails the audit is not restored, and the target is
    // left as it was.
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute("UPDATE lots SET remaining = remaining + 7000000", [])
        .unwrap();
    drop(conn);
    let refused = run(&restored, &["restore", copy.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("fails the audit"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let server = Server::start(&restored);
    let (_, balance) = get(&client, format!("{}/v1/accounts/bank/balance", server.base)).await;
    assert_eq!(balance["available"], expected.to_string());
}
