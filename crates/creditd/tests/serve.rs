//! `creditd serve` as operators start it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use support::{creditd, fresh_db};

/// Starts `creditd serve` without an admin key, listening on `listen`, and
/// returns the printed lines up to "listening on", and the child.
fn start_without_key(db: &std::path::Path, listen: &str) -> (Vec<String>, std::process::Child) {
    let mut child = creditd()
        .arg("serve")
        .env("CREDITD_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("CREDITD_LISTEN", listen)
        .env_remove("CREDITD_ADMIN_KEY")
        .env("CREDITD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("exited before listening").unwrap();
        let done = line.starts_with("listening on ");
        seen.push(line);
        if done {
            break;
        }
    }
    (seen, child)
}

#[test]
fn a_generated_admin_key_is_printed_once_and_keeps_working() {
    let (_dir, db) = fresh_db();
    let (lines, mut first) = start_without_key(&db, "127.0.0.1:0");
    let key = lines
        .iter()
        .find_map(|l| l.split("it is not shown again): ").nth(1))
        .expect("the generated key is printed")
        .to_owned();
    assert!(key.starts_with("cd_admin_") && key.len() > 40, "{key}");
    first.kill().unwrap();
    first.wait().unwrap();

    // Only the hash is stored, in the key's record.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: String = conn
        .query_row(
            "SELECT body FROM records WHERE kind = 'api_key' AND id = 'key_initial'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["kind"], "admin");
    assert_eq!(stored["hash"].as_str().unwrap().len(), 64);
    let everything: String = conn
        .query_row("SELECT group_concat(body) FROM records", [], |r| r.get(0))
        .unwrap();
    assert!(!everything.contains(&key[9..]));
    drop(conn);

    let (lines, mut second) = start_without_key(&db, "127.0.0.1:0");
    assert!(lines.iter().all(|l| !l.contains("cd_admin_")), "{lines:?}");
    let addr = lines
        .last()
        .unwrap()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = |auth: String| {
        let addr = addr.clone();
        runtime.block_on(async move {
            reqwest::Client::new()
                .get(format!("http://{addr}/v1/features"))
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(status(format!("Bearer {key}")), 200);
    assert_eq!(status("Bearer cd_admin_guess".to_owned()), 401);
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn a_port_alone_listens_on_loopback() {
    let (_dir, db) = fresh_db();
    let (lines, mut child) = start_without_key(&db, ":0");
    let addr: std::net::SocketAddr = lines
        .last()
        .unwrap()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);
    let health = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            reqwest::get(format!("http://{addr}/healthz"))
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    assert_eq!(health, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_first_start_that_cannot_bind_generates_no_key_and_the_next_start_shows_one() {
    let (_dir, db) = fresh_db();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let failed = creditd()
        .arg("serve")
        .env("CREDITD_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("CREDITD_LISTEN", &addr)
        .env_remove("CREDITD_ADMIN_KEY")
        .env("CREDITD_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with(&format!("error: binding {addr}: ")),
        "{stderr}"
    );
    assert!(!stdout.contains("cd_admin_"), "{stdout}");
    assert!(!stderr.contains("cd_admin_"), "{stderr}");
    drop(taken);

    let (lines, mut child) = start_without_key(&db, "127.0.0.1:0");
    assert!(
        lines.iter().any(|l| l
            .starts_with("generated admin key (store it now, it is not shown again): cd_admin_")),
        "{lines:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn serve_logs_at_info_by_default_without_colour_codes_when_stderr_is_not_a_terminal() {
    let (_dir, db) = fresh_db();
    let mut child = creditd()
        .arg("serve")
        .env("CREDITD_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("CREDITD_LISTEN", "127.0.0.1:0")
        .env("CREDITD_ADMIN_KEY", support::KEY)
        .env_remove("CREDITD_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).split(b'\n');
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let serving = String::from_utf8_lossy(&line).contains("creditd serving");
        seen.push(line);
        if serving {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let last = String::from_utf8_lossy(seen.last().unwrap()).into_owned();
    assert!(last.contains("creditd serving"), "exited first: {seen:?}");
    assert!(last.contains(" INFO "), "{last}");
    assert!(seen.iter().all(|l| !l.contains(&0x1b)), "{seen:?}");
}
