//! The command line: migrate, admin commands, verify.

mod support;

use serde_json::Value;
use support::{fresh_db, run};

fn json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn admin_commands_open_grant_and_show_a_balance() {
    let (_dir, db) = fresh_db();
    let migrated = run(&db, &["migrate"]);
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("applied 4 migration"));
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

    let duplicate = run(&db, &["account", "create", "cli-user"]);
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&duplicate.stdout).contains("account_exists"));
    let bad = run(&db, &["grant", "cli-user", "1.0000001"]);
    assert_eq!(bad.status.code(), Some(2));

    let verify = run(&db, &["verify"]);
    assert!(verify.status.success());
    assert!(
        String::from_utf8_lossy(&verify.stdout)
            .contains("checked 1 accounts, 1 lots, 1 transactions")
    );
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
}
