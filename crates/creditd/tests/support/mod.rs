//! Runs the real `creditd` binary.

#![allow(dead_code)]

pub mod browser;
pub mod stripe;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const KEY: &str = "cd_admin_durability0123456789abcdef0123456789";

/// The binary under test.
pub fn creditd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_creditd"))
}

/// `creditd <args>` on the SQLite file `db`, run to completion.
pub fn run(db: &Path, args: &[&str]) -> Output {
    run_url(&format!("sqlite://{}", db.display()), args)
}

/// `creditd <args>` on the database at `url`, run to completion.
pub fn run_url(url: &str, args: &[&str]) -> Output {
    creditd()
        .args(args)
        .env("CREDITD_DATABASE_URL", url)
        .env("CREDITD_LOG", "warn")
        .output()
        .expect("running creditd")
}

/// Runs `creditd verify` on the database at `url` and asserts it finds the
/// ledger clean, showing its report when not.
pub fn assert_verified(url: &str) {
    let verify = run_url(url, &["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// A `creditd serve` process and the address it listens on.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// What it has written to stderr so far, when started with
    /// [`Server::start_with`].
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `creditd serve` on the SQLite file `db`, on a free port, and
    /// waits until it listens.
    pub fn start(db: &Path) -> Server {
        Server::start_url(&format!("sqlite://{}", db.display()))
    }

    /// Starts `creditd serve` on the database at `url`.
    pub fn start_url(url: &str) -> Server {
        Server::start_command(url, &[], Stdio::inherit())
    }

    /// Starts `creditd serve` on the database at `url` with `env` set too
    /// (over the settings above, such as `CREDITD_LOG`), keeping what it
    /// writes to stderr for [`Server::log`].
    pub fn start_with(url: &str, env: &[(&str, &str)]) -> Server {
        let mut server = Server::start_command(url, env, Stdio::piped());
        let stderr = server.child.stderr.take().unwrap();
        let log = server.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        server
    }

    fn start_command(url: &str, env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut command = creditd();
        command
            .arg("serve")
            .env("CREDITD_DATABASE_URL", url)
            .env("CREDITD_LISTEN", "127.0.0.1:0")
            .env("CREDITD_ADMIN_KEY", KEY)
            .env("CREDITD_LOG", "error");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting creditd serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("creditd exited before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base: format!("http://{addr}"),
            log: Arc::default(),
        }
    }

    /// Waits until the server's stderr holds `text`, for at most `within`;
    /// answers the whole of it.
    pub fn log_with(&self, text: &str, within: Duration) -> Result<String, String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let log = self.log.lock().unwrap().clone();
            if log.contains(text) {
                return Ok(log);
            }
            if std::time::Instant::now() > deadline {
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGKILL: no shutdown code runs.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "creditd exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("creditd did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database path in a temporary directory.
pub fn fresh_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("creditd.db");
    (dir, db)
}

/// Sends a request with the admin key, `body` as JSON when given; answers
/// the status and the body (null when it is not JSON).
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = client.request(method, url).bearer_auth(KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

pub async fn get(client: &reqwest::Client, url: String) -> (u16, serde_json::Value) {
    send(client, reqwest::Method::GET, url, None).await
}

pub async fn post(
    client: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    send(client, reqwest::Method::POST, url, Some(body)).await
}

/// Opens `account` through the server at `base`, granted `grant` credits
/// as a purchase when given.
pub async fn open_account(
    client: &reqwest::Client,
    base: &str,
    account: &str,
    grant: Option<&str>,
) {
    let (status, body) = post(
        client,
        format!("{base}/v1/accounts"),
        serde_json::json!({"id": account}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    if let Some(amount) = grant {
        let (status, body) = post(
            client,
            format!("{base}/v1/accounts/{account}/grants"),
            serde_json::json!({"amount": amount, "source": "purchase"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Every item of a paged list at `url` (which has a query already), page
/// by page through `next_cursor`.
pub async fn all_pages(client: &reqwest::Client, url: &str) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_url = match &cursor {
            Some(cursor) => format!("{url}&cursor={cursor}"),
            None => url.to_owned(),
        };
        let (status, page) = get(client, page_url).await;
        assert_eq!(status, 200, "{page}");
        found.extend(page["data"].as_array().expect("a page").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return found,
        }
    }
}

/// Asks `probe` every 50 ms until it answers `Some`, for at most `within`:
/// a background job of the server is awaited this way, never by a sleep of
/// a guessed length.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited in vain for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Python the official client packages run in: `CREDITD_TEST_PYTHON`,
/// or `python3`, when it can run `import {packages}`. Without one, outside
/// CI the tests of `what` are skipped with a notice saying how to install
/// the packages (`install`); under CI that is a failure.
pub fn python_with(packages: &str, what: &str, install: &str) -> Option<PathBuf> {
    let python = std::env::var_os("CREDITD_TEST_PYTHON")
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let problem = match Command::new(&python)
        .args(["-c", &format!("import {packages}")])
        .output()
    {
        Ok(output) if output.status.success() => return Some(python),
        Ok(output) => String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("no message")
            .to_owned(),
        Err(error) => error.to_string(),
    };
    let python = python.display();
    if testkit::in_ci() {
        panic!(
            "{what} need a Python that can `import {packages}` under CI, but {python} cannot \
             ({problem}); set CREDITD_TEST_PYTHON to one that can"
        );
    }
    // Written to the terminal directly: the test harness captures print
    // macros of passing tests.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "\nSKIPPED: {what}, because {python} cannot import {packages} ({problem}).\nInstall \
             them (`{install}`), or set CREDITD_TEST_PYTHON to a Python that has them, and run \
             the tests again.\n"
        ),
    );
    None
}
