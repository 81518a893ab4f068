//! kill -9 under mixed load, on SQLite and on PostgreSQL: API grants and consumes, gateway calls
//! streamed from a fake provider, Stripe's checkout webhooks and auto top-ups paid through the
//! fake Stripe, with an endpoint hearing of every grant, all at once until the process is killed.
//! After the restart nothing acknowledged is lost and nothing is applied twice: every grant and
//! consume answered is in the journal, every stream that reached its end is billed and recorded,
//! every checkout is granted once however often its event is delivered again, every top-up Stripe
//! was paid for is granted once, every grant's event reaches the endpoint, no hold is left
//! pending, and `verify` is clean.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::stripe::{event, save_card};
use support::{KEY, Server, all_pages, fresh_db, get, open_account, post, send, until};
use testkit::TestDatabase;
use testkit::receiver::Receiver;
use testkit::stripe::FakeStripe;
use testkit::upstream::FakeUpstream;

const WEBHOOK_SECRET: &str = "whsec_test_mixed_kill";
const MODEL: &str = "gpt-kill";
/// Accounts of each kind of load.
const LANES: usize = 4;
/// Checkouts paid before the load, whose events are delivered during it,
/// each twice in a row.
const CHECKOUTS: usize = 120;

/// What the clients were told succeeded before the kill.
#[derive(Default)]
struct Acked {
    grants: Vec<String>,
    consumes: Vec<String>,
    /// Gateway calls whose stream reached its end, by account.
    streams: Vec<(String, String)>,
    /// Checkout deliveries answered 200.
    checkouts: usize,
}

fn start(url: &str, stripe: &FakeStripe, upstream: &FakeUpstream) -> Server {
    let (stripe_base, openai_base) = (stripe.base_url(), format!("{}/v1", upstream.base_url()));
    let master = "4b".repeat(32);
    Server::start_with(
        url,
        &[
            ("CREDITD_LOG", "warn"),
            ("CREDITD_SWEEP_INTERVAL_MS", "50"),
            ("CREDITD_TEST_CLOCK", "true"),
            ("CREDITD_MASTER_KEY", &master),
            ("CREDITD_ALLOW_PRIVATE_WEBHOOKS", "true"),
            ("STRIPE_SECRET_KEY", "sk_test_mixed_kill"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CREDITD_PUBLIC_URL", "https://app.example.com"),
            ("STRIPE_API_BASE", &stripe_base),
            ("CREDITD_ALLOW_FREE_USER_PURCHASE", "true"),
            ("CREDITD_UPSTREAM_BASE_URL", &openai_base),
            ("CREDITD_UPSTREAM_API_KEY", "sk-upstream-kill"),
        ],
    )
}

/// Sets the server at `base` up: a priced model, a package, an endpoint,
/// the accounts with their keys, a card and an auto top-up; answers the
/// customers' gateway keys and the checkout events to deliver.
async fn set_up(
    client: &reqwest::Client,
    base: &str,
    stripe: &FakeStripe,
    receiver: &Receiver,
) -> (Vec<String>, Vec<String>) {
    let (status, body) = send(
        client,
        reqwest::Method::PUT,
        format!("{base}/v1/prices/{MODEL}"),
        Some(
            json!({"provider": "openai", "input": "0.15", "output": "0.6",
                    "max_output_tokens": 1000}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        client,
        reqwest::Method::PUT,
        format!("{base}/v1/packages/p100"),
        Some(json!({"name": "100 Credits", "credits": "100",
                    "price": {"amount": 500, "currency": "usd"}, "active": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        client,
        format!("{base}/v1/webhook-endpoints"),
        json!({"url": receiver.url("/hooks"), "events": ["credits.granted"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let mut keys = Vec::new();
    for lane in 0..LANES {
        open_account(client, base, &format!("api-{lane}"), None).await;
        let account = format!("gw-{lane}");
        open_account(client, base, &account, Some("1000")).await;
        let (status, body) = post(
            client,
            format!("{base}/v1/accounts/{account}/keys"),
            json!({"name": "app"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        keys.push(body["key"].as_str().unwrap().to_owned());
    }

    open_account(client, base, "buyer", None).await;
    let mut checkouts = Vec::new();
    for i in 0..CHECKOUTS {
        let (status, body) = post(
            client,
            format!("{base}/v1/accounts/buyer/checkout"),
            json!({"package_id": "p100"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let session = body["session_id"].as_str().unwrap();
        stripe.set(
            session,
            json!({"status": "complete", "payment_status": "paid", "invoice": format!("in_kill_{i}")}),
        );
        checkouts.push(event(
            &format!("evt_kill_{i}"),
            "checkout.session.completed",
            stripe.object(session).unwrap(),
        ));
    }

    open_account(client, base, "topper", Some("60")).await;
    save_card(client, base, stripe, "topper", WEBHOOK_SECRET, "kill").await;
    let (status, body) = send(
        client,
        reqwest::Method::PUT,
        format!("{base}/v1/accounts/topper/auto-topup"),
        Some(json!({"enabled": true, "threshold": "50",
                    "amount": {"amount": 1000, "currency": "usd"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (keys, checkouts)
}

/// Starts every kind of load against `base`, each task running until the
/// server stops answering and noting in `acked` what it was told succeeded.
async fn load(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    checkouts: Arc<Vec<String>>,
    noted: &Arc<Mutex<Acked>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (lane, key) in keys.iter().enumerate() {
        let (http, url, acked) = (client.clone(), base.to_owned(), noted.clone());
        tasks.push(tokio::spawn(async move {
            let (client, base) = (http, url);
            for n in 0.. {
                let account = format!("api-{lane}");
                let (path, body) = if n % 3 == 2 {
                    ("consume", json!({"amount": "0.5"}))
                } else {
                    ("grants", json!({"amount": "1", "source": "purchase"}))
                };
                let sent = client
                    .post(format!("{base}/v1/accounts/{account}/{path}"))
                    .bearer_auth(KEY)
                    .header("Idempotency-Key", format!("{account}-{n}"))
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                let status = response.status().as_u16();
                let Ok(answer) = response.json::<Value>().await else {
                    return;
                };
                let mut acked = acked.lock().unwrap();
                match (path, status) {
                    ("grants", 201) => acked.grants.push(answer["id"].as_str().unwrap().into()),
                    ("consume", 200) => acked
                        .consumes
                        .push(answer["transaction"]["id"].as_str().unwrap().into()),
                    ("consume", 402) => {}
                    _ => return,
                }
            }
        }));
        let (client, base, key) = (client.clone(), base.to_owned(), key.clone());
        let acked = noted.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let sent = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&json!({"model": MODEL, "stream": true, "max_tokens": 50,
                                  "messages": [{"role": "user", "content": "hello"}]}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 200 {
                    return;
                }
                let id = response.headers()["x-request-id"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let Ok(text) = response.text().await else {
                    return;
                };
                // The stream reached its end: the caller saw the call whole.
                if text.contains("data: [DONE]") {
                    acked
                        .lock()
                        .unwrap()
                        .streams
                        .push((format!("gw-{lane}"), id));
                }
            }
        }));
    }
    let (client_, base_, acked) = (client.clone(), base.to_owned(), noted.clone());
    tasks.push(tokio::spawn(async move {
        for body in checkouts.iter().flat_map(|body| [body, body]) {
            match deliver(&client_, &base_, body).await {
                Some(200) => acked.lock().unwrap().checkouts += 1,
                _ => return,
            }
        }
    }));
    let (client, base) = (client.clone(), base.to_owned());
    tasks.push(tokio::spawn(async move {
        loop {
            // Below the threshold again and again: the job tops it up.
            let sent = client
                .post(format!("{base}/v1/accounts/topper/consume"))
                .bearer_auth(KEY)
                .json(&json!({"amount": "20"}))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(response) if [200, 402].contains(&response.status().as_u16()) => {}
                _ => return,
            }
        }
    }));
    tasks
}

/// The account's gateway calls, by id.
async fn calls(client: &reqwest::Client, base: &str, account: &str) -> HashMap<String, Value> {
    let url = format!("{base}/v1/accounts/{account}/usage/calls?limit=100");
    all_pages(client, &url)
        .await
        .into_iter()
        .map(|call| (call["id"].as_str().unwrap().to_owned(), call))
        .collect()
}

/// Grants of `source` to `account`, all pages.
async fn grants_of(
    client: &reqwest::Client,
    base: &str,
    account: &str,
    source: &str,
) -> Vec<Value> {
    let url = format!("{base}/v1/accounts/{account}/grants?source={source}&limit=100");
    all_pages(client, &url).await
}

async fn kill_9_under_mixed_load(url: &str) {
    let stripe = FakeStripe::start().await;
    let upstream = FakeUpstream::start().await;
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let server = start(url, &stripe, &upstream);
    let base = server.base.clone();
    let (keys, checkouts) = set_up(&client, &base, &stripe, &receiver).await;
    let checkouts = Arc::new(checkouts);

    let acked = Arc::new(Mutex::new(Acked::default()));
    let tasks = load(&client, &base, &keys, checkouts.clone(), &acked).await;
    // Load until the auto top-up has been paid at least twice and a third
    // of the checkouts' deliveries are answered, then pull the plug.
    until("two auto top-ups", Duration::from_secs(30), || async {
        let paid = paid_invoices(&stripe).len();
        let delivered = acked.lock().unwrap().checkouts;
        (paid >= 2 && delivered >= CHECKOUTS * 2 / 3).then_some(())
    })
    .await;
    server.kill_9();
    for task in tasks {
        task.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "acknowledged before kill -9: {} grants, {} consumes, {} gateway streams, {} checkout deliveries \
         of {}, {} top-ups paid at Stripe",
        acked.grants.len(),
        acked.consumes.len(),
        acked.streams.len(),
        acked.checkouts,
        CHECKOUTS * 2,
        paid_invoices(&stripe).len()
    );
    assert!(acked.grants.len() > 20 && acked.streams.len() > 20);

    let server = start(url, &stripe, &upstream);
    let base = server.base.clone();
    // Every grant and consume answered is in the journal.
    for grant in &acked.grants {
        let (status, body) = get(&client, format!("{base}/v1/grants/{grant}")).await;
        assert_eq!(status, 200, "grant {grant} lost: {body}");
    }
    for tx in &acked.consumes {
        let (status, body) = get(&client, format!("{base}/v1/transactions/{tx}")).await;
        assert_eq!(status, 200, "consume {tx} lost: {body}");
    }
    // Every stream that reached its end is billed and recorded.
    let mut recorded: HashMap<String, HashMap<String, Value>> = HashMap::new();
    for lane in 0..LANES {
        let account = format!("gw-{lane}");
        recorded.insert(account.clone(), calls(&client, &base, &account).await);
    }
    for (account, id) in &acked.streams {
        let call = recorded[account]
            .get(id)
            .unwrap_or_else(|| panic!("the call {id} was streamed whole and is not recorded"));
        assert_eq!(call["outcome"], "ok", "{call}");
        let tx = call["transaction_id"].as_str().expect("a billed call");
        let (status, _) = get(&client, format!("{base}/v1/transactions/{tx}")).await;
        assert_eq!(status, 200, "{call}");
    }
    // Every checkout delivered again, twice: each is granted once.
    for _ in 0..2 {
        for body in checkouts.iter() {
            assert_eq!(deliver(&client, &base, body).await, Some(200));
        }
    }
    let purchases = grants_of(&client, &base, "buyer", "purchase").await;
    assert_eq!(purchases.len(), CHECKOUTS, "{purchases:?}");
    let (_, balance) = get(&client, format!("{base}/v1/accounts/buyer/balance")).await;
    assert_eq!(balance["available"], (100 * CHECKOUTS).to_string());

    // An hour later (on the test clock) an attempt the kill left pending has
    // been asked about again and the gateway holds of cut calls ran out.
    let (status, body) = post(
        &client,
        format!("{base}/v1/test-clock/advance"),
        json!({"seconds": 3700}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let settled = until(
        "every top-up paid at Stripe granted",
        Duration::from_secs(30),
        || async {
            let granted = grants_of(&client, &base, "topper", "auto_topup").await;
            let (_, topup) = get(&client, format!("{base}/v1/accounts/topper/auto-topup")).await;
            let paid = paid_invoices(&stripe);
            let idle = topup["state"] != "pending";
            (idle && granted.len() == paid.len()).then_some((granted, paid))
        },
    )
    .await;
    let (granted, paid) = settled;
    let invoices: HashSet<String> = granted
        .iter()
        .map(|g| g["metadata"]["invoice"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(invoices.len(), granted.len(), "an invoice granted twice");
    assert_eq!(invoices, paid, "grants and Stripe's payments differ");
    until("no hold pending", Duration::from_secs(30), || async {
        let (_, health) = get(&client, format!("{base}/v1/health/ledger")).await;
        (health["holds_pending"]["count"] == 0).then_some(())
    })
    .await;

    // Every acknowledged grant's event reaches the endpoint (a delivery cut
    // by the kill waits out its claim first).
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let told: HashSet<String> = receiver
            .events_of("credits.granted")
            .iter()
            .filter_map(|e| e["data"]["grant_id"].as_str().map(str::to_owned))
            .collect();
        let missing = acked.grants.iter().filter(|g| !told.contains(*g)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged grants never told"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();
    support::assert_verified(url);
}

/// Delivers a Stripe event signed now, as Stripe does: again after the
/// `Retry-After` of a `429` (the webhook holds each address to a rate).
/// Answers the status, or `None` when the server did not answer.
async fn deliver(client: &reqwest::Client, base: &str, body: &str) -> Option<u16> {
    loop {
        let header = billing::domain::signature::sign(
            body.as_bytes(),
            WEBHOOK_SECRET.as_bytes(),
            support::stripe::now_secs(),
        );
        let response = client
            .post(format!("{base}/webhooks/stripe"))
            .header("stripe-signature", header)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if response.status() != 429 {
            return Some(response.status().as_u16());
        }
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

/// The invoices the fake Stripe was asked to pay and holds as paid.
fn paid_invoices(stripe: &FakeStripe) -> HashSet<String> {
    stripe
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pay"))
        .filter_map(|r| {
            let id = r
                .path
                .trim_start_matches("/v1/invoices/")
                .trim_end_matches("/pay");
            let paid = stripe.object(id)?["status"] == "paid";
            paid.then(|| id.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_mixed_load_on_sqlite_loses_nothing_and_applies_nothing_twice() {
    let (_dir, db) = fresh_db();
    kill_9_under_mixed_load(&format!("sqlite://{}", db.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_mixed_load_on_postgres_loses_nothing_and_applies_nothing_twice() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    kill_9_under_mixed_load(&database.url).await;
}
