//! The PostgreSQL store against a real server: a fresh database per test.

use std::sync::Arc;

use ledger::{AccountId, Amount, Metadata, NewAccount, NewGrant, Reject, Source, Timestamp};
use store::postgres::{PostgresOptions, PostgresStore};
use store::{Charge, Command, Executed, ManualClock, Op, Outcome, Store};
use testkit::TestDatabase;

const START: Timestamp = Timestamp::from_secs(1_800_000_000);

fn id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

fn c(credits: i64) -> Amount {
    Amount::credits(credits)
}

async fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::open(
        PostgresOptions::new(&database.url),
        Arc::new(ManualClock::new(START)),
    )
    .await
    .unwrap()
}

async fn run(store: &PostgresStore, op: Op) -> Result<Outcome, Reject> {
    match store.execute(Command::new(op)).await.unwrap() {
        Executed::Fresh(result) => result,
        Executed::Replayed(_) => panic!("not idempotent"),
    }
}

#[tokio::test]
async fn a_grant_and_a_consume_round_trip() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let store = open(&database).await;
    run(
        &store,
        Op::CreateAccount(NewAccount::new(id("a"), None, Metadata::empty(), Amount::ZERO).unwrap()),
    )
    .await
    .unwrap();
    run(
        &store,
        Op::Grant {
            account: id("a"),
            grant: NewGrant {
                amount: c(10),
                source: Source::Purchase,
                priority: None,
                effective_at: None,
                expires_at: None,
                metadata: Metadata::empty(),
            },
        },
    )
    .await
    .unwrap();
    let Outcome::Consumed { balance, .. } = run(
        &store,
        Op::Consume {
            account: id("a"),
            charge: Charge::Amount(c(4)),
            metadata: Metadata::empty(),
        },
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(balance.available, c(6));
    assert!(store.audit().await.unwrap().is_clean());
    store.close().await;
}

fn render(result: &Result<Outcome, Reject>) -> store::StoredResponse {
    store::StoredResponse {
        status: if result.is_ok() { 200 } else { 409 },
        body: format!("{result:?}").into_bytes(),
    }
}

fn grant(account: &str, credits: i64) -> Op {
    Op::Grant {
        account: id(account),
        grant: NewGrant {
            amount: c(credits),
            source: Source::Purchase,
            priority: None,
            effective_at: None,
            expires_at: None,
            metadata: Metadata::empty(),
        },
    }
}

fn consume(account: &str, credits: i64) -> Op {
    Op::Consume {
        account: id(account),
        charge: Charge::Amount(c(credits)),
        metadata: Metadata::empty(),
    }
}

fn create(account: &str) -> Op {
    Op::CreateAccount(NewAccount::new(id(account), None, Metadata::empty(), Amount::ZERO).unwrap())
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
            kind: Some(ledger::TxKind::Expire),
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

/// A book read in one statement brings the account, every live lot and every
/// pending hold, and nothing spent, expired or resolved.
#[tokio::test]
async fn a_book_read_brings_the_live_lots_and_pending_holds() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let store = open(&database).await;
    run(&store, create("r")).await.unwrap();
    run(&store, grant("r", 10)).await.unwrap();
    run(&store, grant("r", 5)).await.unwrap();
    // Empties the first lot (burn-down is oldest first at equal priority).
    run(&store, consume("r", 10)).await.unwrap();
    let hold = |credits| Op::Hold {
        account: id("r"),
        amount: c(credits),
        ttl: ledger::HoldTtl::from_secs(60).unwrap(),
        metadata: Metadata::empty(),
    };
    run(&store, hold(2)).await.unwrap();
    let Outcome::Held { hold: released, .. } = run(&store, hold(1)).await.unwrap() else {
        panic!("not a hold");
    };
    run(
        &store,
        Op::Release {
            hold: released.id,
            metadata: Metadata::empty(),
        },
    )
    .await
    .unwrap();

    let book = store.book(id("r"), None).await.unwrap().unwrap();
    assert_eq!(book.account.id, id("r"));
    assert_eq!(book.lots().len(), 1, "{book:?}");
    assert_eq!(book.holds().len(), 1, "{book:?}");
    assert_eq!(book.holds()[0].amount, c(2));
    let balance = book.balance(START);
    assert_eq!((balance.available, balance.held), (c(3), c(2)));
    assert!(store.book(id("nobody"), None).await.unwrap().is_none());
}
