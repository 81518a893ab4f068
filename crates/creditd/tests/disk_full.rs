//! The disk filling up under the SQLite store: the binary on a size-limited file system (a tmpfs
//! this test mounts) keeps serving reads, refuses writes with a clear `503` and applies none of
//! them, loses no write it acknowledged, and takes writes again by itself once space is freed;
//! `verify` is clean after.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::{KEY, Server};

/// A tmpfs of `mib` MiB mounted at a fresh folder, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts one, or says why it cannot: mounting needs the privilege to.
    fn mount(mib: u32) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(SmallDisk { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Fills the file system `file` is on until a write fails for want of space.
fn fill(file: &Path) {
    let mut out = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while out.write_all(&chunk).is_ok() {}
    let _ = out.sync_all();
}

async fn consume(client: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
    let response = client
        .post(format!("{base}/v1/accounts/acme/consume"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", key)
        .json(&json!({"amount": "1"}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_503_loses_nothing_and_recovers_by_itself() {
    let disk = match SmallDisk::mount(48) {
        Ok(disk) => disk,
        Err(why) if !testkit::in_ci() => {
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: the full-disk test, because a tmpfs cannot be mounted here ({why}); \
                 it needs to run as root.\n"
            );
            return;
        }
        Err(why) => panic!("the full-disk test must mount a tmpfs under CI and cannot: {why}"),
    };
    let db = disk.path.join("creditd.db");
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[("CREDITD_SQLITE_AUTOCHECKPOINT_PAGES", "100")],
    );
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let (status, body) = support::post(
        &client,
        format!("{base}/v1/accounts"),
        json!({"id": "acme"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = support::post(
        &client,
        format!("{base}/v1/accounts/acme/grants"),
        json!({"amount": "100000", "source": "purchase"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut acked = Vec::new();
    for n in 0..50 {
        let (status, body) = consume(&client, &base, &format!("before-{n}")).await;
        assert_eq!(status, 200, "{body}");
        acked.push(body["transaction"]["id"].as_str().unwrap().to_owned());
    }

    // The disk fills up: writes are refused, clearly, and reads still answer.
    let filler = disk.path.join("filler");
    fill(&filler);
    let mut refused = 0;
    let mut during = 0;
    for n in 0..200 {
        let (status, body) = consume(&client, &base, &format!("full-{n}")).await;
        match status {
            200 => {
                during += 1;
                acked.push(body["transaction"]["id"].as_str().unwrap().to_owned());
            }
            503 => {
                assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
                refused += 1;
            }
            other => panic!("a write on a full disk answered {other}: {body}"),
        }
    }
    assert!(
        refused > 0,
        "no write was refused on a full disk ({during} applied)"
    );
    let (status, balance) = support::get(&client, format!("{base}/v1/accounts/acme/balance")).await;
    assert_eq!(status, 200, "reads answer on a full disk: {balance}");

    // Space comes back: writes are taken again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let recovered = support::until("writes taken again", Duration::from_secs(20), || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let (status, body) = consume(&client, &base, "after").await;
            (status == 200).then_some(body)
        }
    })
    .await;
    acked.push(recovered["transaction"]["id"].as_str().unwrap().to_owned());

    // Nothing acknowledged is lost; nothing refused was applied.
    for tx in &acked {
        let (status, _) = support::get(&client, format!("{base}/v1/transactions/{tx}")).await;
        assert_eq!(status, 200, "{tx} lost");
    }
    let (_, balance) = support::get(&client, format!("{base}/v1/accounts/acme/balance")).await;
    let expected = 100_000 - acked.len() as i64;
    assert_eq!(balance["available"], expected.to_string(), "{balance}");
    eprintln!(
        "full disk: {} writes before, {refused} refused with 503 and {during} applied while full, \
         writes taken again after space came back",
        50
    );
    server.stop();
    support::assert_verified(&format!("sqlite://{}", db.display()));
}
