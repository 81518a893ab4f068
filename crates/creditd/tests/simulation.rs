//! A deterministic simulation of the engine, in the spirit of TigerBeetle's simulator: each seed
//! drives a fresh server (the API, the store's group commit on SQLite, billing and the outbound
//! webhooks, on the test clock) through a random sequence of grants of every source with and
//! without expiry, consumes, holds committed, released or left to expire, voids, refunds, requests
//! sent again under their idempotency keys, clock jumps, the sweep and webhook rounds, and checks
//! after every step that the account's balance is what a simple reference model of lots and holds
//! says, and every few steps and at the end that `verify`'s audit is clean and the webhooks sent
//! each grant and each expired hold once.
//!
//! `CREDITD_SIM_SEEDS` (default 2000) seeds run, from `CREDITD_SIM_FIRST_SEED` (default 1); a
//! failure names its seed, and `CREDITD_SIM_SEEDS=1 CREDITD_SIM_FIRST_SEED=<seed> cargo test -p
//! creditd --test simulation` runs that seed alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use store::Clock;
use testkit::app::{Plugged, TestApp};
use testkit::receiver::Receiver;

/// SplitMix64: the simulation's one source of chance, so a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const MICROS: i64 = 1_000_000;

/// A lot as the model keeps it.
#[derive(Clone, Debug)]
struct Lot {
    id: String,
    remaining: i64,
    priority: u8,
    expires_at: Option<i64>,
    voided: bool,
}

/// A hold as the model keeps it: its legs (lot index, credits) in the
/// order drawn.
#[derive(Clone, Debug)]
struct Hold {
    id: String,
    account: usize,
    legs: Vec<(usize, i64)>,
    expires_at: i64,
    pending: bool,
    expired: bool,
}

/// A consume the model remembers, for refunds.
#[derive(Clone, Debug)]
struct Consumed {
    tx: String,
}

/// The reference model: per account its lots in grant order, and the holds.
#[derive(Default)]
struct Model {
    lots: Vec<Vec<Lot>>,
    holds: Vec<Hold>,
    consumes: Vec<Consumed>,
    grants: usize,
}

impl Model {
    /// What time has made due by `now`: expired holds give their legs back,
    /// then expired and voided lots hold nothing.
    fn settle(&mut self, now: i64) {
        for hold in &mut self.holds {
            if hold.pending && hold.expires_at <= now {
                hold.pending = false;
                hold.expired = true;
                for (lot, amount) in &hold.legs {
                    self.lots[hold.account][*lot].remaining += amount;
                }
            }
        }
        for lots in &mut self.lots {
            for lot in lots.iter_mut() {
                if lot.voided || lot.expires_at.is_some_and(|at| at <= now) {
                    lot.remaining = 0;
                }
            }
        }
    }

    fn available(&self, account: usize) -> i64 {
        self.lots[account].iter().map(|l| l.remaining).sum()
    }

    fn held(&self, account: usize) -> i64 {
        self.holds
            .iter()
            .filter(|h| h.account == account && h.pending)
            .flat_map(|h| h.legs.iter().map(|(_, a)| a))
            .sum()
    }

    /// Draws `amount` from the account's lots in burn-down order: priority,
    /// then soonest expiry (none last), then the oldest; the legs drawn.
    fn draw(&mut self, account: usize, mut amount: i64) -> Vec<(usize, i64)> {
        let mut order: Vec<usize> = (0..self.lots[account].len()).collect();
        order.sort_by_key(|&i| {
            let lot = &self.lots[account][i];
            (lot.priority, lot.expires_at.unwrap_or(i64::MAX), i)
        });
        let mut legs = Vec::new();
        for i in order {
            let lot = &mut self.lots[account][i];
            let take = lot.remaining.min(amount);
            if take > 0 {
                lot.remaining -= take;
                amount -= take;
                legs.push((i, take));
            }
        }
        assert_eq!(amount, 0, "drawn beyond what was available");
        legs
    }
}

fn credits(micros: i64) -> String {
    ledger::Amount::from_micros(micros).to_string()
}

fn micros_of(value: &Value) -> i64 {
    ledger::Amount::parse(value.as_str().unwrap_or("x"))
        .unwrap_or_else(|_| panic!("not an amount: {value}"))
        .micros()
}

const SOURCES: [(&str, u8); 8] = [
    ("purchase", 90),
    ("auto_topup", 90),
    ("admin", 50),
    ("promo", 50),
    ("signup_bonus", 50),
    ("subscription", 50),
    ("rollover", 50),
    ("daily_reward", 10),
];

const ACCOUNTS: usize = 3;

fn plugins() -> testkit::app::Plugins {
    Arc::new(|store, clock| {
        let billing = Arc::new(billing::Billing::new(
            store.clone(),
            clock.clone(),
            billing::EnvSettings::default(),
        ));
        let webhooks = Arc::new(webhooks::Webhooks::new(
            store,
            clock,
            billing.clone(),
            webhooks::WebhookConfig {
                allow_private: true,
                keyring: Some(server::sealing::Keyring {
                    current: server::sealing::MasterKey::parse(&"3c".repeat(32)).unwrap(),
                    retired: Vec::new(),
                }),
                ..webhooks::WebhookConfig::default()
            },
        ));
        Plugged {
            capabilities: vec![billing.capability(), webhooks.capability()],
            handle: Some(webhooks),
        }
    })
}

/// One seed: a fresh server, `steps` random steps, every check.
async fn simulate(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let app = TestApp::spawn_sqlite(Some(plugins())).await;
    let receiver = Receiver::start().await;
    let hooks = app.plugin::<webhooks::Webhooks>();
    let made = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": receiver.url("/sim"), "events": ["credits.granted", "hold.expired"]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "seed {seed}: {made:?}");
    let mut model = Model::default();
    for a in 0..ACCOUNTS {
        let opened = app
            .post("/v1/accounts", json!({"id": format!("a{a}")}))
            .await;
        assert_eq!(
            opened.status,
            StatusCode::CREATED,
            "seed {seed}: {opened:?}"
        );
        model.lots.push(Vec::new());
    }
    // The last write and its answer, to send again under its key.
    let mut last: Option<(String, Value, String, Value)> = None;
    for step in 0..steps {
        let now = app.clock.now().micros();
        model.settle(now);
        let a = rng.below(ACCOUNTS as u64) as usize;
        let account = format!("a{a}");
        let key = format!("k{seed}-{step}");
        let context = |what: &str| format!("seed {seed} step {step} ({what})");
        match rng.below(100) {
            // A grant of any source, expiring or not, priority its source's or its own.
            0..=24 => {
                let amount = 1 + rng.below(40 * MICROS as u64) as i64;
                let (source, default) = SOURCES[rng.below(SOURCES.len() as u64) as usize];
                let priority = if rng.chance(30) {
                    rng.below(101) as u8
                } else {
                    default
                };
                let expires_at = rng
                    .chance(40)
                    .then(|| now + (1 + rng.below(3 * 86_400) as i64) * MICROS);
                let mut body =
                    json!({"amount": credits(amount), "source": source, "priority": priority});
                if let Some(at) = expires_at {
                    body["expires_at"] = ledger::Timestamp::from_micros(at).to_string().into();
                }
                let path = format!("/v1/accounts/{account}/grants");
                let reply = app.post_keyed(&path, &key, body.clone()).await;
                assert_eq!(
                    reply.status,
                    StatusCode::CREATED,
                    "{}: {reply:?}",
                    context("grant")
                );
                model.lots[a].push(Lot {
                    id: reply.body["id"].as_str().unwrap().to_owned(),
                    remaining: amount,
                    priority,
                    expires_at,
                    voided: false,
                });
                model.grants += 1;
                last = Some((path, body, key, reply.body));
            }
            // A consume: applied when the credits are there, 402 otherwise.
            25..=49 => {
                let available = model.available(a);
                let amount = 1 + rng.below((available.max(MICROS) * 5 / 4) as u64) as i64;
                let path = format!("/v1/accounts/{account}/consume");
                let body = json!({"amount": credits(amount)});
                let reply = app.post_keyed(&path, &key, body.clone()).await;
                if amount <= available {
                    assert_eq!(
                        reply.status,
                        StatusCode::OK,
                        "{}: {reply:?}",
                        context("consume")
                    );
                    model.draw(a, amount);
                    let tx = reply.body["transaction"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    model.consumes.push(Consumed { tx });
                    last = Some((path, body, key, reply.body));
                } else {
                    assert_eq!(
                        reply.status,
                        StatusCode::PAYMENT_REQUIRED,
                        "{}: {reply:?}",
                        context("consume refused")
                    );
                }
            }
            // A hold, for a while.
            50..=61 => {
                let available = model.available(a);
                if available == 0 {
                    continue;
                }
                let amount = 1 + rng.below(available as u64) as i64;
                let ttl = 1 + rng.below(600) as i64;
                let path = format!("/v1/accounts/{account}/holds");
                let reply = app
                    .post_keyed(
                        &path,
                        &key,
                        json!({"amount": credits(amount), "ttl_seconds": ttl}),
                    )
                    .await;
                assert_eq!(
                    reply.status,
                    StatusCode::CREATED,
                    "{}: {reply:?}",
                    context("hold")
                );
                let legs = model.draw(a, amount);
                model.holds.push(Hold {
                    id: reply.body["hold"]["id"].as_str().unwrap().to_owned(),
                    account: a,
                    legs,
                    expires_at: now + ttl * MICROS,
                    pending: true,
                    expired: false,
                });
            }
            // A pending hold committed at some part of it, or released.
            62..=73 => {
                let pending: Vec<usize> = (0..model.holds.len())
                    .filter(|&h| model.holds[h].pending)
                    .collect();
                if pending.is_empty() {
                    continue;
                }
                let h = pending[rng.below(pending.len() as u64) as usize];
                let hold = model.holds[h].clone();
                let total: i64 = hold.legs.iter().map(|(_, x)| x).sum();
                if rng.chance(70) {
                    let amount = rng.below(total as u64 + 1) as i64;
                    let reply = app
                        .post(
                            &format!("/v1/holds/{}/commit", hold.id),
                            json!({"amount": credits(amount)}),
                        )
                        .await;
                    assert_eq!(
                        reply.status,
                        StatusCode::OK,
                        "{}: {reply:?}",
                        context("commit")
                    );
                    // The escrow pays leg by leg; the rest goes back.
                    let mut left = amount;
                    for (lot, x) in &hold.legs {
                        let pays = left.min(*x);
                        left -= pays;
                        model.lots[hold.account][*lot].remaining += x - pays;
                    }
                } else {
                    let reply = app
                        .post(&format!("/v1/holds/{}/release", hold.id), json!({}))
                        .await;
                    assert_eq!(
                        reply.status,
                        StatusCode::OK,
                        "{}: {reply:?}",
                        context("release")
                    );
                    for (lot, x) in &hold.legs {
                        model.lots[hold.account][*lot].remaining += x;
                    }
                }
                model.holds[h].pending = false;
                model.settle(now);
            }
            // A live grant voided.
            74..=78 => {
                let live: Vec<usize> = (0..model.lots[a].len())
                    .filter(|&i| {
                        let lot = &model.lots[a][i];
                        !lot.voided && lot.expires_at.is_none_or(|at| at > now)
                    })
                    .collect();
                if live.is_empty() {
                    continue;
                }
                let i = live[rng.below(live.len() as u64) as usize];
                let id = model.lots[a][i].id.clone();
                let reply = app.post(&format!("/v1/grants/{id}/void"), json!({})).await;
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{}: {reply:?}",
                    context("void")
                );
                model.lots[a][i].voided = true;
                model.settle(now);
            }
            // The last write sent again under its key: the same answer, nothing changes.
            79..=86 => {
                let Some((path, body, key, answer)) = &last else {
                    continue;
                };
                let reply = app.post_keyed(path, key, body.clone()).await;
                assert!(
                    reply.status.is_success(),
                    "{}: {reply:?}",
                    context("replay")
                );
                assert_eq!(
                    &reply.body,
                    answer,
                    "{}",
                    context("replay answers the first")
                );
                assert_eq!(
                    reply
                        .headers
                        .get("idempotent-replayed")
                        .and_then(|v| v.to_str().ok()),
                    Some("true"),
                    "{}",
                    context("replay")
                );
            }
            // A refund beyond what a consume took: refused, and nothing changes.
            87..=89 => {
                if model.consumes.is_empty() {
                    continue;
                }
                let c = model.consumes[rng.below(model.consumes.len() as u64) as usize].clone();
                let reply = app
                    .post(
                        &format!("/v1/transactions/{}/refund", c.tx),
                        json!({"amount": credits(1_000_000 * MICROS)}),
                    )
                    .await;
                assert!(
                    reply.status.is_client_error(),
                    "{}: {reply:?}",
                    context("refund beyond")
                );
            }
            // Time passes: seconds to a day; the sweep sometimes writes what is due.
            90..=97 => {
                let secs = [1, 30, 300, 3_600, 86_400][rng.below(5) as usize];
                app.clock.advance_secs(secs);
                if rng.chance(50) {
                    server::jobs::sweep(&app.state).await.unwrap();
                }
            }
            // A webhooks round.
            _ => {
                hooks.run_once().await.unwrap();
            }
        }
        // The account's balance as the model says, at this instant.
        let now = app.clock.now().micros();
        model.settle(now);
        let balance = app.balance(&account).await;
        assert_eq!(
            (
                micros_of(&balance["available"]),
                micros_of(&balance["held"])
            ),
            (model.available(a), model.held(a)),
            "seed {seed} step {step}: the balance of {account} differs from the model: {balance}"
        );
        if step % 25 == 24 {
            app.assert_verified().await;
        }
    }
    // Everything due written; every event out.
    server::jobs::sweep(&app.state).await.unwrap();
    for a in 0..ACCOUNTS {
        let balance = app.balance(&format!("a{a}")).await;
        assert_eq!(
            micros_of(&balance["available"]),
            model.available(a),
            "seed {seed}: a{a} at the end"
        );
    }
    app.assert_verified().await;
    let head = app.state.store.journal_head().await.unwrap();
    for _ in 0..100 {
        hooks.run_once().await.unwrap();
        let cursor = store::records::get::<webhooks::dispatch::Cursor>(
            app.state.store.as_ref(),
            webhooks::dispatch::CURSOR_ID,
        )
        .await
        .unwrap();
        if cursor.is_some_and(|c| c.body.position >= head) {
            break;
        }
    }
    hooks.run_once().await.unwrap();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for received in receiver.received() {
        *by_id
            .entry(received.json()["id"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    assert!(
        by_id.values().all(|n| *n == 1),
        "seed {seed}: an event sent twice: {by_id:?}"
    );
    if receiver.events_of("credits.granted").len() != model.grants {
        let log = app.get("/v1/webhook-events?limit=100").await;
        panic!(
            "seed {seed}: {} grants, {} told; the delivery log: {}",
            model.grants,
            receiver.events_of("credits.granted").len(),
            log.text
        );
    }
    let expired = model.holds.iter().filter(|h| h.expired).count();
    assert_eq!(
        receiver.events_of("hold.expired").len(),
        expired,
        "seed {seed}: expired holds told"
    );
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_of_random_operations_agree_with_the_reference_model() {
    let seeds = setting("CREDITD_SIM_SEEDS", 2000);
    let first = setting("CREDITD_SIM_FIRST_SEED", 1);
    let started = std::time::Instant::now();
    // Seeds run a few at once, each on its own server: what one seed does
    // is decided by its seed alone, whatever runs beside it.
    use futures_util::StreamExt;
    let runs: Vec<()> = futures_util::stream::iter(first..first + seeds)
        .map(|seed| tokio::spawn(simulate(seed, 60)))
        .buffer_unordered(4)
        .map(|joined| joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())))
        .collect()
        .await;
    assert_eq!(runs.len() as u64, seeds);
    let elapsed = started.elapsed().as_secs_f64();
    // Written to the terminal directly: the harness captures print macros.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "\nsimulation: {seeds} seeds of 60 steps in {elapsed:.1} s ({:.1} seeds/s)\n",
            seeds as f64 / elapsed
        ),
    );
}
