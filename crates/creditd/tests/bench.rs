//! `creditd bench` runs every workload and reports real numbers.

mod support;

use serde_json::Value;
use support::{KEY, Server, creditd, fresh_db};
use testkit::TestDatabase;

fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let run = creditd()
        .arg("bench")
        .args(args)
        .args([
            "--seconds",
            "0.4",
            "--warmup",
            "0.1",
            "--accounts",
            "50",
            "--clients",
            "4",
        ])
        .arg("--json")
        .arg(&out)
        .env("CREDITD_ADMIN_KEY", KEY)
        .env("CREDITD_LOG", "error")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(table.contains("ops/s"), "{table}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

fn assert_ran(report: &Value, target: &str, workloads: &[&str]) {
    for workload in workloads {
        let run = report["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == target && r["workload"] == *workload)
            .unwrap_or_else(|| panic!("{target} {workload} missing: {report}"));
        assert!(run["operations"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        assert!(run["p50_us"].as_u64().unwrap() <= run["p99_us"].as_u64().unwrap());
        assert!(run["p99_us"].as_u64().unwrap() <= run["max_us"].as_u64().unwrap());
        // creditd reports how it batched the writes of the measured period:
        // every write went through a batch of at least one command.
        let batches = &run["batches"];
        if target.starts_with("baseline") || ["check", "balance"].contains(workload) {
            assert!(batches.is_null(), "{run}");
        } else {
            assert!(batches["count"].as_u64().unwrap() > 0, "{run}");
            assert!(batches["mean_commands"].as_f64().unwrap() >= 1.0, "{run}");
            assert!(batches["mean_us"].as_f64().unwrap() > 0.0, "{run}");
        }
    }
}

const ALL: &[&str] = &[
    "consume-hot",
    "consume-spread",
    "hold-commit",
    "check",
    "balance",
    "mixed",
];

#[test]
fn bench_drives_the_store_in_process_and_over_http() {
    let (_dir, db) = fresh_db();
    let store = format!("sqlite://{}", db.display());
    let report = bench(&["--store", &store]);
    assert_ran(&report, "creditd sqlite in-process", ALL);
    assert!(report["memory"][0][1].as_u64().unwrap() > 0);

    let (_served_dir, served_db) = fresh_db();
    let server = Server::start(&served_db);
    let report = bench(&["--http", &server.base]);
    assert_ran(&report, "creditd over HTTP", ALL);
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_compares_with_the_baseline_on_postgres() {
    let (Some(creditd_db), Some(baseline_db)) =
        (TestDatabase::create().await, TestDatabase::create().await)
    else {
        return;
    };
    let report = tokio::task::spawn_blocking(move || {
        bench(&[
            "--store",
            &creditd_db.url,
            "--baseline",
            &baseline_db.url,
            "--workload",
            "consume-hot,check,balance",
        ])
    })
    .await
    .unwrap();
    assert_ran(
        &report,
        "creditd postgres in-process",
        &["consume-hot", "check", "balance"],
    );
    assert_ran(
        &report,
        "baseline postgres",
        &["consume-hot", "check", "balance"],
    );
    let ratios = report["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 3, "{report}");
    assert!(ratios.iter().all(|r| r["ratio"].as_f64().unwrap() > 0.0));
}
