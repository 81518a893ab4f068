//! The command line: migrate, admin commands, verify.

mod support;

use serde_json::Value;
use support::{KEY, Server, creditd, fresh_db, run, run_url};
use testkit::TestDatabase;

fn json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What a failed command wrote to stderr, after checking that it failed with
/// `code` and wrote nothing to stdout.
fn failure(output: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// The record `creditd verify` keeps of its last run, read from the SQLite
/// file.
fn kept_run(db: &std::path::Path) -> Value {
    let conn = rusqlite::Connection::open(db).unwrap();
    let body: String = conn
        .query_row(
            "SELECT body FROM records WHERE kind = 'verify_run' AND id = 'latest'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[test]
fn admin_commands_open_grant_and_show_a_balance() {
    let (_dir, db) = fresh_db();
    let migrated = run(&db, &["migrate"]);
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("applied 12 migration"));
    let again = run(&db, &["migrate"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("applied 0 migration"));

    let account = json(&run(
        &db,
        &["account", "create", "cli-user", "--name", "Cli"],
    ));
    assert_eq!(account["id"], "cli-user");
    let grant = json(&run(
        &db,
        &["grant", "cli-user", "42.5", "--source", "promo"],
    ));
    assert_eq!(grant["remaining"], "42.5");
    assert_eq!(grant["source"], "promo");
    let balance = json(&run(&db, &["balance", "cli-user"]));
    assert_eq!(balance["available"], "42.5");
    let past = json(&run(
        &db,
        &["balance", "cli-user", "--at", "2000-01-01T00:00:00Z"],
    ));
    assert_eq!(past["available"], "0");

    let duplicate = failure(&run(&db, &["account", "create", "cli-user"]), 1);
    assert_eq!(
        duplicate,
        "error: account_exists: an account with this id already exists\n"
    );

    let verify = run(&db, &["verify"]);
    assert!(verify.status.success());
    assert!(
        String::from_utf8_lossy(&verify.stdout)
            .contains("checked 1 accounts, 1 lots, 1 transactions")
    );
    let kept = kept_run(&db);
    assert_eq!(
        (&kept["accounts"], &kept["lots"], &kept["transactions"]),
        (&Value::from(1), &Value::from(1), &Value::from(1))
    );
    assert_eq!(kept["violations"], 0);
}

#[test]
fn verify_fails_with_a_report_when_the_journal_disagrees() {
    let (_dir, db) = fresh_db();
    json(&run(&db, &["account", "create", "victim"]));
    json(&run(&db, &["grant", "victim", "10"]));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE lots SET remaining = 9000000", [])
        .unwrap();
    drop(conn);
    let verify = run(&db, &["verify"]);
    let report = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{report}");
    assert!(
        report.contains("VIOLATION account victim: lot_1"),
        "{report}"
    );
    assert!(report.contains("FAILED: 1 violation"), "{report}");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert_eq!(
        stderr,
        "error: the journal has 1 violation(s), listed on stdout\n"
    );
    let kept = kept_run(&db);
    assert_eq!(kept["violations"], 1);
    let first = kept["first_violations"][0].as_str().unwrap();
    assert!(first.starts_with("account victim: lot_1"), "{first}");
}

#[test]
fn a_successful_command_writes_its_result_to_stdout_and_nothing_to_stderr() {
    let (_dir, db) = fresh_db();
    let created = run(&db, &["account", "create", "quiet"]);
    assert_eq!(created.status.code(), Some(0));
    assert!(
        created.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert_eq!(json(&created)["id"], "quiet");
}

#[test]
fn a_ledger_rejection_is_one_error_line_with_its_code_and_exit_1() {
    let (_dir, db) = fresh_db();
    assert!(run(&db, &["migrate"]).status.success());
    let grant = failure(&run(&db, &["grant", "nobody", "5"]), 1);
    assert_eq!(grant, "error: account_not_found: no account with this id\n");
    let balance = failure(&run(&db, &["balance", "nobody"]), 1);
    assert_eq!(
        balance,
        "error: account_not_found: no account with this id\n"
    );
    let negative = failure(
        &run(&db, &["account", "create", "owing", "--overdraft-limit=-5"]),
        1,
    );
    assert_eq!(
        negative,
        "error: invalid_amount: overdraft_limit must not be negative\n"
    );
}

#[test]
fn a_bad_argument_value_is_a_usage_error_with_exit_2() {
    let (_dir, db) = fresh_db();
    json(&run(&db, &["account", "create", "cli-user"]));
    let amount = failure(&run(&db, &["grant", "cli-user", "1.0000001"]), 2);
    assert!(
        amount.starts_with("error: invalid value '1.0000001' for '<AMOUNT>': more than 6"),
        "{amount}"
    );
    let source = failure(
        &run(&db, &["grant", "cli-user", "1", "--source", "gift"]),
        2,
    );
    assert!(
        source.starts_with("error: invalid value 'gift'"),
        "{source}"
    );
    assert!(source.contains("purchase"), "{source}");
    let account = failure(&run(&db, &["balance", "not an id"]), 2);
    assert!(
        account.starts_with("error: invalid value 'not an id' for '<ACCOUNT>'"),
        "{account}"
    );
    let at = failure(&run(&db, &["balance", "cli-user", "--at", "yesterday"]), 2);
    assert!(at.starts_with("error: invalid value 'yesterday'"), "{at}");
    // Nothing was written by the refused grants.
    let balance = json(&run(&db, &["balance", "cli-user"]));
    assert_eq!(balance["available"], "0");
}

#[test]
fn read_only_commands_refuse_a_missing_sqlite_database_and_create_none() {
    let (dir, db) = fresh_db();
    for args in [&["verify"][..], &["balance", "someone"]] {
        let stderr = failure(&run(&db, args), 1);
        assert_eq!(
            stderr,
            format!(
                "error: no database at {} (`creditd migrate` creates one)\n",
                db.display()
            ),
            "{args:?}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn read_only_commands_refuse_an_sqlite_file_without_a_ledger_and_leave_it_alone() {
    let (_dir, db) = fresh_db();
    std::fs::write(&db, b"").unwrap();
    for args in [&["verify"][..], &["balance", "someone"]] {
        let stderr = failure(&run(&db, args), 1);
        assert_eq!(
            stderr,
            format!(
                "error: {} holds no creditd ledger (`creditd migrate` creates one)\n",
                db.display()
            ),
            "{args:?}"
        );
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);

    assert!(run(&db, &["migrate"]).status.success());
    let verify = run(&db, &["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test]
async fn read_only_commands_refuse_a_postgres_database_without_a_ledger() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let url = database.url.clone();
    let (verify, balance) = tokio::task::spawn_blocking(move || {
        (
            run_url(&url, &["verify"]),
            run_url(&url, &["balance", "someone"]),
        )
    })
    .await
    .unwrap();
    let expected = "error: the PostgreSQL database holds no creditd ledger \
                    (`creditd migrate` creates one)\n";
    assert_eq!(failure(&verify, 1), expected);
    assert_eq!(failure(&balance, 1), expected);

    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a read-only command created tables");

    let url = database.url.clone();
    let verify = tokio::task::spawn_blocking(move || {
        assert!(run_url(&url, &["migrate"]).status.success());
        run_url(&url, &["verify"])
    })
    .await
    .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Leaves `db` as a crash leaves it: a lot's row behind the journal, which
/// the next process to open it brings up to date and says so at info.
fn crash_with_a_lot_row_behind(db: &std::path::Path) {
    let server = Server::start(db);
    let base = server.base.clone();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let client = reqwest::Client::new();
            for (path, body) in [
                ("/v1/accounts", serde_json::json!({"id": "crashed"})),
                (
                    "/v1/accounts/crashed/grants",
                    serde_json::json!({"amount": "100", "source": "purchase"}),
                ),
                (
                    "/v1/accounts/crashed/consume",
                    serde_json::json!({"amount": "10"}),
                ),
            ] {
                let response = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{path}");
            }
        });
    server.kill_9();
}

/// `creditd <args>` on `db` with `CREDITD_LOG` as given, or unset.
fn run_logging(db: &std::path::Path, log: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = creditd();
    command
        .args(args)
        .env("CREDITD_DATABASE_URL", format!("sqlite://{}", db.display()));
    match log {
        Some(level) => command.env("CREDITD_LOG", level),
        None => command.env_remove("CREDITD_LOG"),
    };
    command.output().unwrap()
}

#[test]
fn one_off_commands_log_only_warnings_unless_told_and_never_in_colour_to_a_pipe() {
    let (dir, db) = fresh_db();
    crash_with_a_lot_row_behind(&db);
    // The same crashed database twice over: the first command to open one
    // brings its lot rows up to date, and there is nothing left to report.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let wal = dir.path().join("creditd.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, dir.path().join("copy.db-wal")).unwrap();
    }

    let quiet = run_logging(&db, None, &["balance", "crashed"]);
    assert_eq!(json(&quiet)["available"], "90");
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );

    let told = run_logging(&copy, Some("info"), &["balance", "crashed"]);
    assert_eq!(json(&told)["available"], "90");
    let stderr = String::from_utf8_lossy(&told.stderr);
    assert!(
        stderr.contains(" INFO ") && stderr.contains("lot rows brought up to date"),
        "{stderr}"
    );
    assert!(!told.stderr.contains(&0x1b), "{stderr}");
}
