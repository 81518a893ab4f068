//! Jepsen's bank workload on creditd: credits move between accounts and the system accounts
//! (granted from issuance, spent to usage, escrowed by holds and committed or released, refunded
//! back, voided) from many clients at once on several `creditd serve` nodes, while readers on
//! every node read balances with their totals. Every read must see a consistent account (its
//! available and held credits are exactly what its totals leave), never older than a write
//! acknowledged before the read began, nor older than what the same reader saw before; at the
//! end the totals are exactly the acknowledged writes on every node, and `verify` is clean.
//!
//! On PostgreSQL with three nodes, and on SQLite with one (whose balances are answered from
//! memory and whose totals from the file).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::{Server, fresh_db, get, post};
use testkit::TestDatabase;
use testkit::rng::Rng;

const ACCOUNTS: usize = 8;
const WRITERS: usize = 24;
const OPS_PER_WRITER: usize = 100;
const READERS: usize = 6;
/// Credits each account is granted before the load.
const OPENING: i64 = 10_000 * MICROS;
const MICROS: i64 = 1_000_000;

/// What was acknowledged to the writers, per account, in micros: each
/// counter is raised once the write's answer arrived, so a read begun
/// after it must see at least as much.
#[derive(Default)]
struct Acked {
    granted: AtomicI64,
    spent: AtomicI64,
    refunded: AtomicI64,
}

/// What one account's writers share: what was acknowledged, the consumes
/// still refundable (transaction, micros) and the grants still voidable.
#[derive(Default)]
struct Shared {
    acked: Acked,
    consumes: Mutex<Vec<(String, i64)>>,
    grants: Mutex<Vec<String>>,
}

/// One read of a balance with its totals, in micros.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    available: i64,
    held: i64,
    granted: i64,
    spent: i64,
    refunded: i64,
    expired: i64,
    voided: i64,
}

impl Seen {
    fn of(balance: &Value) -> Seen {
        let totals = &balance["totals"];
        let granted = totals["granted"]
            .as_object()
            .expect("totals by source")
            .values()
            .map(micros)
            .sum();
        assert_eq!(micros(&balance["debt"]), 0, "{balance}");
        Seen {
            available: micros(&balance["available"]),
            held: micros(&balance["held"]),
            granted,
            spent: micros(&totals["spent"]),
            refunded: micros(&totals["refunded"]),
            expired: micros(&totals["expired"]),
            voided: micros(&totals["voided"]),
        }
    }

    /// The bank's invariant: what the account holds is what its grants
    /// brought less what left it for the system accounts.
    fn is_consistent(&self) -> bool {
        self.available + self.held
            == self.granted - self.spent + self.refunded - self.expired - self.voided
    }

    /// Whether every total of `self` is at least that of `earlier`: the
    /// totals only grow.
    fn is_not_older_than(&self, earlier: &Seen) -> bool {
        self.granted >= earlier.granted
            && self.spent >= earlier.spent
            && self.refunded >= earlier.refunded
            && self.voided >= earlier.voided
    }
}

/// An amount as the API writes it, in micros.
fn micros(amount: &Value) -> i64 {
    let text = amount.as_str().expect("an amount is a string");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let negative = whole.starts_with('-');
    let whole: i64 = whole.trim_start_matches('-').parse().unwrap();
    let fraction: i64 = format!("{fraction:0<6}").parse().unwrap();
    let value = whole * MICROS + fraction;
    if negative { -value } else { value }
}

/// Micros as the API reads an amount.
fn amount(micros: i64) -> String {
    format!("{}.{:06}", micros / MICROS, micros % MICROS)
}

fn account(i: usize) -> String {
    format!("bank-{i}")
}

/// What the workload did, for the figures.
#[derive(Debug, Default)]
struct Counts {
    writes: AtomicU64,
    refused: AtomicU64,
    reads: AtomicU64,
}

/// One writer's operations, on accounts and nodes chosen by its seed.
async fn write(
    client: reqwest::Client,
    nodes: Arc<Vec<String>>,
    accounts: Arc<Vec<Shared>>,
    counts: Arc<Counts>,
    seed: u64,
) {
    let mut rng = Rng::seeded(seed);
    for n in 0..OPS_PER_WRITER {
        let node = &nodes[(seed as usize + n) % nodes.len()];
        let a = rng.below(ACCOUNTS as u64) as usize;
        let shared = &accounts[a];
        let id = account(a);
        let roll = rng.below(100);
        let done = if roll < 40 {
            let spend = (1 + rng.below(500) as i64) * 10_000;
            let (status, body) = post(
                &client,
                format!("{node}/v1/accounts/{id}/consume"),
                json!({"amount": amount(spend)}),
            )
            .await;
            match status {
                200 => {
                    shared.acked.spent.fetch_add(spend, Ordering::SeqCst);
                    let tx = body["transaction"]["id"].as_str().unwrap().to_owned();
                    shared.consumes.lock().unwrap().push((tx, spend));
                    true
                }
                402 => false,
                other => panic!("consume answered {other}: {body}"),
            }
        } else if roll < 60 {
            let held = (1 + rng.below(300) as i64) * 10_000;
            let (status, body) = post(
                &client,
                format!("{node}/v1/accounts/{id}/holds"),
                json!({"amount": amount(held), "ttl_seconds": 3600}),
            )
            .await;
            match status {
                201 => {}
                402 => continue,
                other => panic!("hold answered {other}: {body}"),
            }
            let hold = body["hold"]["id"].as_str().unwrap().to_owned();
            // Settled on another node than the one it was placed on.
            let other = &nodes[(seed as usize + n + 1) % nodes.len()];
            if rng.chance(60) {
                let charge = 1 + rng.below(held as u64) as i64;
                let (status, body) = post(
                    &client,
                    format!("{other}/v1/holds/{hold}/commit"),
                    json!({"amount": amount(charge)}),
                )
                .await;
                assert_eq!(status, 200, "commit: {body}");
                shared.acked.spent.fetch_add(charge, Ordering::SeqCst);
            } else {
                let (status, body) = post(
                    &client,
                    format!("{other}/v1/holds/{hold}/release"),
                    json!({}),
                )
                .await;
                assert_eq!(status, 200, "release: {body}");
            }
            true
        } else if roll < 75 {
            let picked = {
                let mut consumes = shared.consumes.lock().unwrap();
                if consumes.is_empty() {
                    None
                } else {
                    let i = rng.below(consumes.len() as u64) as usize;
                    Some(consumes.swap_remove(i))
                }
            };
            let Some((tx, left)) = picked else { continue };
            let back = 1 + rng.below(left as u64) as i64;
            let (status, body) = post(
                &client,
                format!("{node}/v1/transactions/{tx}/refund"),
                json!({"amount": amount(back)}),
            )
            .await;
            assert_eq!(status, 201, "refund: {body}");
            shared.acked.refunded.fetch_add(back, Ordering::SeqCst);
            if back < left {
                shared.consumes.lock().unwrap().push((tx, left - back));
            }
            true
        } else if roll < 90 {
            let granted = (1 + rng.below(10) as i64) * MICROS;
            let (status, body) = post(
                &client,
                format!("{node}/v1/accounts/{id}/grants"),
                json!({"amount": amount(granted), "source": "promo"}),
            )
            .await;
            assert_eq!(status, 201, "grant: {body}");
            shared.acked.granted.fetch_add(granted, Ordering::SeqCst);
            shared
                .grants
                .lock()
                .unwrap()
                .push(body["id"].as_str().unwrap().to_owned());
            true
        } else {
            let picked = shared.grants.lock().unwrap().pop();
            let Some(grant) = picked else { continue };
            let (status, body) =
                post(&client, format!("{node}/v1/grants/{grant}/void"), json!({})).await;
            match status {
                200 => true,
                // A grant already spent, or whose credits are escrowed.
                400..500 => false,
                other => panic!("void answered {other}: {body}"),
            }
        };
        let counter = if done {
            &counts.writes
        } else {
            &counts.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads balances with their totals on every node in turn until `stop`,
/// checking each read; answers how many it checked.
async fn read(
    client: reqwest::Client,
    nodes: Arc<Vec<String>>,
    accounts: Arc<Vec<Shared>>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng::seeded(seed);
    let mut last: HashMap<usize, Seen> = HashMap::new();
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let node = &nodes[n % nodes.len()];
        n += 1;
        let a = rng.below(ACCOUNTS as u64) as usize;
        let acked = &accounts[a].acked;
        // Taken before the read is sent: it must see at least this.
        let floor = Seen {
            granted: OPENING + acked.granted.load(Ordering::SeqCst),
            spent: acked.spent.load(Ordering::SeqCst),
            refunded: acked.refunded.load(Ordering::SeqCst),
            ..Seen::default()
        };
        let (status, balance) = get(
            &client,
            format!("{node}/v1/accounts/{}/balance?include=totals", account(a)),
        )
        .await;
        assert_eq!(status, 200, "{balance}");
        let seen = Seen::of(&balance);
        assert!(
            seen.is_consistent(),
            "{node}: {} read torn: {seen:?}",
            account(a)
        );
        assert!(
            seen.is_not_older_than(&floor),
            "{node}: {} read older than acknowledged writes: {seen:?} < {floor:?}",
            account(a)
        );
        if let Some(before) = last.get(&a) {
            assert!(
                seen.is_not_older_than(before),
                "{node}: {} went back in time: {seen:?} after {before:?}",
                account(a)
            );
        }
        last.insert(a, seen);
        counts.reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the workload against `nodes` and checks the end state; answers
/// the counts for the figures.
async fn bank(nodes: Vec<String>) -> Counts {
    let client = reqwest::Client::new();
    for i in 0..ACCOUNTS {
        let opening = amount(OPENING);
        let node = &nodes[i % nodes.len()];
        support::open_account(&client, node, &account(i), Some(&opening)).await;
    }
    let nodes = Arc::new(nodes);
    let accounts: Arc<Vec<Shared>> = Arc::new((0..ACCOUNTS).map(|_| Shared::default()).collect());
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            tokio::spawn(read(
                client.clone(),
                nodes.clone(),
                accounts.clone(),
                counts.clone(),
                stop.clone(),
                1_000 + r as u64,
            ))
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(write(
                client.clone(),
                nodes.clone(),
                accounts.clone(),
                counts.clone(),
                w as u64,
            ))
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }

    // At rest, every node sees exactly what was acknowledged, and the
    // credits in the accounts are what the grants brought less what left.
    let mut in_accounts = 0i64;
    for node in nodes.iter() {
        let (mut held_by_accounts, mut brought, mut left) = (0i64, 0i64, 0i64);
        for (a, shared) in accounts.iter().enumerate() {
            let (status, balance) = get(
                &client,
                format!("{node}/v1/accounts/{}/balance?include=totals", account(a)),
            )
            .await;
            assert_eq!(status, 200, "{balance}");
            let seen = Seen::of(&balance);
            assert!(seen.is_consistent(), "{seen:?}");
            assert_eq!(
                (seen.granted, seen.spent, seen.refunded, seen.held),
                (
                    OPENING + shared.acked.granted.load(Ordering::SeqCst),
                    shared.acked.spent.load(Ordering::SeqCst),
                    shared.acked.refunded.load(Ordering::SeqCst),
                    0
                ),
                "{node}: {}",
                account(a)
            );
            held_by_accounts += seen.available;
            brought += seen.granted + seen.refunded;
            left += seen.spent + seen.expired + seen.voided;
        }
        assert_eq!(held_by_accounts, brought - left);
        in_accounts = held_by_accounts;
    }
    eprintln!(
        "bank on {} node(s): {:?}; {} credits in the accounts at the end",
        nodes.len(),
        counts,
        amount(in_accounts)
    );
    Arc::try_unwrap(counts).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_postgres_keep_every_read_consistent_and_every_credit_accounted_for() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let servers: Vec<Server> = (0..3).map(|_| Server::start_url(&database.url)).collect();
    let counts = bank(servers.iter().map(|s| s.base.clone()).collect()).await;
    assert!(counts.reads.load(Ordering::Relaxed) > 100, "{counts:?}");
    assert!(counts.writes.load(Ordering::Relaxed) > 1_000, "{counts:?}");
    drop(servers);
    support::assert_verified(&database.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_sqlite_node_keeps_every_read_consistent_and_every_credit_accounted_for() {
    let (_dir, db) = fresh_db();
    let server = Server::start(&db);
    let counts = bank(vec![server.base.clone()]).await;
    assert!(counts.reads.load(Ordering::Relaxed) > 100, "{counts:?}");
    assert!(counts.writes.load(Ordering::Relaxed) > 1_000, "{counts:?}");
    server.stop();
    support::assert_verified(&format!("sqlite://{}", db.display()));
}
