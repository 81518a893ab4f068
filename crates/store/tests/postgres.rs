//! What only the PostgreSQL store does, against a real server: several nodes
//! on one database, and a server that cannot be reached. What every store
//! does is in the suite.

mod common;

use std::sync::Arc;

use common::*;
use ledger::{Metadata, NewGrant, Reject, Source};
use store::postgres::{PostgresOptions, PostgresStore};
use store::{Command, Executed, ManualClock, Op, Store};
use testkit::TestDatabase;

async fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::open(
        PostgresOptions::new(&database.url),
        Arc::new(ManualClock::new(START)),
    )
    .await
    .unwrap()
}

/// Two nodes on one database.
async fn two_nodes(database: &TestDatabase) -> (Arc<PostgresStore>, Arc<PostgresStore>) {
    (
        Arc::new(open(database).await),
        Arc::new(open(database).await),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_to_two_nodes_applies_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&database).await;
    run(&a, create("u")).await.unwrap();
    run(&a, grant("u", 100)).await.unwrap();
    let keyed = || Command {
        op: consume("u", 7),
        records: Vec::new(),
        call: None,
        idempotency: Some(store::IdempotencyKey {
            key: "pay-1".into(),
            fingerprint: b"same".to_vec(),
            render,
        }),
    };
    let mut tasks = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let command = keyed();
        tasks.push(tokio::spawn(
            async move { node.execute(command).await.unwrap() },
        ));
    }
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            Executed::Fresh(result) => {
                result.unwrap();
                fresh += 1;
            }
            Executed::Replayed(response) => assert_eq!(response.status, 200),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fresh, 1);
    let book = a.book(id("u"), None).await.unwrap().unwrap();
    assert_eq!(book.balance(START).available, c(93));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_opening_one_account_at_once_open_it_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&database).await;
    for round in 0..20 {
        let name = format!("race-{round}");
        let (x, y) = tokio::join!(run(&a, create(&name)), run(&b, create(&name)));
        let outcomes = [x, y];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes.contains(&Err(Reject::AccountExists)),
            "{outcomes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_overspend_one_account() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&database).await;
    run(&a, create("hot")).await.unwrap();
    run(&a, grant("hot", 100)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(
            async move { run(&node, consume("hot", 1)).await },
        ));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Reject::InsufficientCredits { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 100);
    assert!(a.audit().await.unwrap().is_clean());
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_as_unavailable() {
    let started = std::time::Instant::now();
    let mut options = PostgresOptions::new("postgres://postgres@127.0.0.1:1/none");
    options.connect_timeout = std::time::Duration::from_millis(500);
    let opened = PostgresStore::open(options, Arc::new(ManualClock::new(START))).await;
    assert!(matches!(opened, Err(store::StoreError::Unavailable(_))));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiries_swept_by_several_nodes_are_written_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let clock = ManualClock::new(START);
    let node = || async {
        Arc::new(
            PostgresStore::open(PostgresOptions::new(&database.url), Arc::new(clock.clone()))
                .await
                .unwrap(),
        )
    };
    let nodes = [node().await, node().await, node().await];
    run(&nodes[0], create("u")).await.unwrap();
    for _ in 0..5 {
        run(
            &nodes[0],
            Op::Grant {
                account: id("u"),
                grant: NewGrant {
                    amount: c(2),
                    source: Source::DailyReward,
                    priority: None,
                    effective_at: None,
                    expires_at: Some(START.plus_secs(60)),
                    metadata: Metadata::empty(),
                    external_id: None,
                    actor: None,
                    reason: None,
                },
            },
        )
        .await
        .unwrap();
    }
    clock.advance_secs(60);
    // Every node's sweep finds the account due and settles it at once.
    let mut tasks = Vec::new();
    for round in 0..30 {
        let node = nodes[round % 3].clone();
        tasks.push(tokio::spawn(async move {
            let due = node.due_accounts(START.plus_secs(60), 10).await.unwrap();
            for account in due {
                run(&node, Op::Settle { account }).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let expiries = nodes[1]
        .transactions(store::TxFilter {
            account: id("u"),
            kinds: vec![ledger::TxKind::Expire],
            sources: Vec::new(),
            from: None,
            to: None,
            before: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(expiries.len(), 5, "one expiry per lot, whoever swept");
    assert!(nodes[2].audit().await.unwrap().is_clean());
}
