//! Stripe's webhook through the real binary, a fake Stripe behind it: a delivery signed by the
//! official `stripe` Python package is accepted, a signature creditd makes passes the package's
//! own check, and one paid checkout delivered again and again — in a row on SQLite, all at once
//! to two nodes on one PostgreSQL — grants its credits once; a plan bought through Stripe renews,
//! changes and ends once however its events are delivered; a refund is taken back into debt.
//!
//! The package runs in the Python given by `CREDITD_TEST_PYTHON` (default `python3`). When it
//! cannot import `stripe` the tests that need it are skipped with a notice, except under
//! `CI=true`, where that fails them.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use billing::domain::signature;
use serde_json::{Value, json};
use support::stripe::{deliver, event, now_secs, save_card};
use support::{Server, fresh_db, get, post, send, until};
use testkit::TestDatabase;
use testkit::stripe::FakeStripe;
use tokio::sync::Barrier;

/// The scenarios: `sign` and `verify`, with the package's own code.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/stripe_signatures.py"
);

/// The webhook endpoint's signing secret the servers are started with.
const WEBHOOK_SECRET: &str = "whsec_test_creditd_binary";

/// The account that buys, and the package it buys: 100 credits for 5 USD.
const ACCOUNT: &str = "acme";
const PACKAGE: &str = "p100";

/// The invoice the fake's paid session names.
const INVOICE: &str = "in_1";

/// The id of the event that settles the checkout.
const EVENT_ID: &str = "evt_test_checkout_paid";

/// Deliveries of one event to each of two nodes, all in flight at once.
const DELIVERIES_PER_NODE: usize = 5;

/// The Python that runs the package, or `None` outside CI when there is
/// none that can import it (said once per test binary).
fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON.get_or_init(find_python).as_deref()
}

fn find_python() -> Option<PathBuf> {
    support::python_with(
        "stripe",
        "the webhook tests with the official stripe package",
        "pip install 'stripe>=16,<17'",
    )
}

/// Runs the script's `scenario` on `payload` under `secret`, with
/// `signature` as the header to verify; answers the JSON line it printed.
async fn script(
    python: &Path,
    scenario: &str,
    payload: &str,
    secret: &str,
    signature: Option<&str>,
) -> Value {
    let mut command = Command::new(python);
    command
        .arg(SCRIPT)
        .arg(scenario)
        .env("STRIPE_WEBHOOK_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match signature {
        Some(header) => command.env("STRIPE_SIGNATURE", header),
        None => command.env_remove("STRIPE_SIGNATURE"),
    };
    let payload = payload.to_owned();
    // Blocking until Python exits, so off the runtime's workers, which
    // serve the fake Stripe meanwhile.
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("running Python");
        // The payload is small enough for the pipe: written whole, then
        // closed, before the output is read.
        let mut stdin = child.stdin.take().expect("Python's stdin");
        stdin
            .write_all(payload.as_bytes())
            .expect("writing the payload");
        drop(stdin);
        child.wait_with_output().expect("Python's output")
    })
    .await
    .expect("the Python task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {scenario} scenario failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let line = stdout.lines().last().unwrap_or("");
    let observed: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the {scenario} scenario printed {stdout:?}: {e}"));
    assert_eq!(observed["scenario"], scenario);
    observed
}

/// A `Stripe-Signature` header for `body` under the servers' secret, made
/// now by creditd's own code.
fn sign_now(body: &str) -> String {
    signature::sign(body.as_bytes(), WEBHOOK_SECRET.as_bytes(), now_secs())
}

/// `creditd serve` on the database at `url`, taking payments through the
/// fake Stripe and letting accounts without a paid plan buy packages.
fn start(url: &str, stripe: &FakeStripe) -> Server {
    let api_base = stripe.base_url();
    Server::start_with(
        url,
        &[
            ("CREDITD_LOG", "warn"),
            ("STRIPE_SECRET_KEY", "sk_test_creditd_binary"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CREDITD_PUBLIC_URL", "https://app.example.com"),
            ("STRIPE_API_BASE", &api_base),
            ("CREDITD_ALLOW_FREE_USER_PURCHASE", "true"),
        ],
    )
}

fn sqlite(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

/// A checkout that was paid: the session's id and the event that says so.
struct Paid {
    session: String,
    body: String,
}

/// Opens the account through the server at `base`.
async fn open_account(client: &reqwest::Client, base: &str) {
    let (status, body) = post(
        client,
        format!("{base}/v1/accounts"),
        json!({"id": ACCOUNT}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Starts the account's checkout of `what` through the server at `base`;
/// answers the session's id.
async fn check_out(client: &reqwest::Client, base: &str, what: Value) -> String {
    let (status, body) = post(
        client,
        format!("{base}/v1/accounts/{ACCOUNT}/checkout"),
        what,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a session id in {body}"))
        .to_owned()
}

/// Puts the package `p100` on sale: 100 credits for 5 USD.
async fn sell_package(client: &reqwest::Client, base: &str) {
    let (status, body) = send(
        client,
        reqwest::Method::PUT,
        format!("{base}/v1/packages/{PACKAGE}"),
        Some(json!({"name": "100 Credits", "credits": "100",
                    "price": {"amount": 500, "currency": "usd"}, "active": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Sells the package, opens the account, starts its checkout through the
/// server at `base`, and marks the session paid in the fake; answers the
/// `checkout.session.completed` event Stripe would then send.
async fn paid_checkout(client: &reqwest::Client, base: &str, stripe: &FakeStripe) -> Paid {
    sell_package(client, base).await;
    open_account(client, base).await;
    let session = check_out(client, base, json!({"package_id": PACKAGE})).await;
    stripe.set(
        &session,
        json!({"status": "complete", "payment_status": "paid", "invoice": INVOICE}),
    );
    let object = stripe.object(&session).expect("the fake holds the session");
    Paid {
        body: event(EVENT_ID, "checkout.session.completed", object),
        session,
    }
}

/// Delivers `body` to each of two nodes `DELIVERIES_PER_NODE` times, every
/// delivery released at once, as Stripe's retries of a delivery it thinks
/// lost can overlap the first; answers each delivery's outcome, once all
/// answered 200.
async fn deliver_at_once(client: &reqwest::Client, nodes: &[Server; 2], body: &str) -> Vec<String> {
    let body = Arc::new(body.to_owned());
    let deliveries = nodes.len() * DELIVERIES_PER_NODE;
    let start_line = Arc::new(Barrier::new(deliveries));
    let mut tasks = Vec::with_capacity(deliveries);
    for i in 0..deliveries {
        let base = nodes[i % nodes.len()].base.clone();
        let (client, body, start_line) = (client.clone(), body.clone(), start_line.clone());
        tasks.push(tokio::spawn(async move {
            let header = sign_now(&body);
            start_line.wait().await;
            deliver(&client, &base, &body, &header).await
        }));
    }
    let mut outcomes = Vec::with_capacity(deliveries);
    for task in tasks {
        let (status, answer) = task.await.expect("a delivery");
        assert_eq!(
            status,
            200,
            "{answer}\nthe first node's log:\n{}\nthe second node's log:\n{}",
            nodes[0].log(),
            nodes[1].log()
        );
        outcomes.push(answer["outcome"].as_str().unwrap_or("none").to_owned());
    }
    outcomes
}

/// The account's grants of source `purchase`.
async fn purchases(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let url = format!("{base}/v1/accounts/{ACCOUNT}/grants?limit=100");
    let (status, grants) = get(client, url).await;
    assert_eq!(status, 200, "{grants}");
    grants["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of grants: {grants}"))
        .iter()
        .filter(|g| g["source"] == "purchase")
        .cloned()
        .collect()
}

async fn available(client: &reqwest::Client, base: &str) -> Value {
    let url = format!("{base}/v1/accounts/{ACCOUNT}/balance");
    let (status, balance) = get(client, url).await;
    assert_eq!(status, 200, "{balance}");
    balance["available"].clone()
}

/// Checks, through the server at `base`, that the paid checkout granted
/// its 100 credits exactly once, as a purchase that names what was paid,
/// and that its event is kept once, as the delivery that granted them.
async fn assert_granted_once(client: &reqwest::Client, base: &str, paid: &Paid) {
    let bought = purchases(client, base).await;
    assert_eq!(bought.len(), 1, "{bought:#?}");
    let grant = &bought[0];
    assert_eq!(grant["amount"], "100", "{grant}");
    assert_eq!(
        grant["metadata"]["checkout_session"], paid.session,
        "{grant}"
    );
    assert_eq!(grant["metadata"]["invoice"], INVOICE, "{grant}");
    assert_eq!(grant["metadata"]["amount_paid"], 500, "{grant}");
    assert_eq!(grant["metadata"]["currency"], "usd", "{grant}");
    assert_eq!(available(client, base).await, "100");

    let url = format!("{base}/v1/payments/events?account={ACCOUNT}");
    let (status, events) = get(client, url).await;
    assert_eq!(status, 200, "{events}");
    let kept: Vec<Value> = events["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of events: {events}"))
        .iter()
        .map(|e| json!([e["id"], e["type"], e["object_id"], e["outcome"]]))
        .collect();
    assert_eq!(
        kept,
        [json!([
            EVENT_ID,
            "checkout.session.completed",
            paid.session,
            "granted"
        ])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_signed_by_the_official_stripe_package_grants_the_purchase() {
    let Some(python) = python() else { return };
    let (_dir, db) = fresh_db();
    let stripe = FakeStripe::start().await;
    let server = start(&sqlite(&db), &stripe);
    let client = reqwest::Client::new();
    let paid = paid_checkout(&client, &server.base, &stripe).await;

    // Signed by the package under another endpoint's secret: refused, and
    // nothing granted, so the acceptance below is the secret's doing.
    let forged = script(python, "sign", &paid.body, "whsec_other_endpoint", None).await;
    let forged = forged["header"].as_str().expect("a header");
    let (status, answer) = deliver(&client, &server.base, &paid.body, forged).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_signature", "{answer}");
    assert_eq!(purchases(&client, &server.base).await, Vec::<Value>::new());

    let signed = script(python, "sign", &paid.body, WEBHOOK_SECRET, None).await;
    let header = signed["header"].as_str().expect("a header");
    let timestamp = signed["timestamp"].as_i64().expect("a timestamp");
    // Byte for byte what creditd makes for the same body, secret and time.
    assert_eq!(
        header,
        signature::sign(paid.body.as_bytes(), WEBHOOK_SECRET.as_bytes(), timestamp),
        "stripe {}",
        signed["version"]
    );
    let (status, answer) = deliver(&client, &server.base, &paid.body, header).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("granted")),
        "{answer}\nthe server's log:\n{}",
        server.log()
    );
    assert_granted_once(&client, &server.base, &paid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_stripe_package_accepts_creditds_signatures_and_refuses_a_changed_body() {
    let Some(python) = python() else { return };
    let mut session = FakeStripe::fixture("checkout.session");
    session["id"] = json!("cs_test_signed");
    session["payment_status"] = json!("paid");
    let body = event("evt_test_signed", "checkout.session.completed", session);
    let header = sign_now(&body);

    let seen = script(python, "verify", &body, WEBHOOK_SECRET, Some(&header)).await;
    assert_eq!(
        seen["error"],
        Value::Null,
        "stripe {}: {seen}",
        seen["version"]
    );
    assert_eq!(
        seen["event"],
        json!({"id": "evt_test_signed", "type": "checkout.session.completed",
               "object_id": "cs_test_signed"}),
    );

    // The package refuses what creditd refuses: the header of another
    // body, one made 400 s ago (so `t` is read as the same seconds), and
    // one made under another secret.
    let changed = body.replacen("evt_test_signed", "evt_test_signee", 1);
    assert_ne!(changed, body);
    let stale = signature::sign(body.as_bytes(), WEBHOOK_SECRET.as_bytes(), now_secs() - 400);
    let other = signature::sign(body.as_bytes(), b"whsec_other_endpoint", now_secs());
    for (what, body, header) in [
        ("a changed body", &changed, &header),
        ("a stale timestamp", &body, &stale),
        ("another secret", &body, &other),
    ] {
        let seen = script(python, "verify", body, WEBHOOK_SECRET, Some(header)).await;
        assert_eq!(seen["event"], Value::Null, "{what}: {seen}");
        assert_eq!(
            seen["error"]["class"], "SignatureVerificationError",
            "{what}: {seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_paid_checkout_delivered_to_two_nodes_at_once_on_postgres_grants_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let stripe = FakeStripe::start().await;
    let nodes = [start(&database.url, &stripe), start(&database.url, &stripe)];
    let client = reqwest::Client::new();
    let paid = paid_checkout(&client, &nodes[0].base, &stripe).await;

    let outcomes = deliver_at_once(&client, &nodes, &paid.body).await;
    let granted = outcomes.iter().filter(|o| *o == "granted").count();
    let duplicate = outcomes.iter().filter(|o| *o == "duplicate").count();
    assert_eq!(
        (granted, duplicate),
        (1, outcomes.len() - 1),
        "{outcomes:?}"
    );

    for node in &nodes {
        assert_granted_once(&client, &node.base, &paid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_paid_checkout_delivered_three_times_in_a_row_on_sqlite_grants_once() {
    let (_dir, db) = fresh_db();
    let stripe = FakeStripe::start().await;
    let server = start(&sqlite(&db), &stripe);
    let client = reqwest::Client::new();
    let paid = paid_checkout(&client, &server.base, &stripe).await;

    // Stripe signs each delivery afresh.
    for expected in ["granted", "duplicate", "duplicate"] {
        let (status, answer) =
            deliver(&client, &server.base, &paid.body, &sign_now(&paid.body)).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some(expected)),
            "{answer}\nthe server's log:\n{}",
            server.log()
        );
    }
    assert_granted_once(&client, &server.base, &paid).await;
}

/// The auto top-up job of the real binary: a consume takes the account
/// below its threshold, and within the sweep interval one off-session
/// payment is made and its credits granted once.
#[tokio::test]
async fn the_servers_own_job_tops_up_an_account_that_fell_below_its_threshold() {
    let stripe = FakeStripe::start().await;
    let (_dir, db) = fresh_db();
    let api_base = stripe.base_url();
    let server = Server::start_with(
        &sqlite(&db),
        &[
            ("CREDITD_LOG", "warn"),
            ("CREDITD_SWEEP_INTERVAL_MS", "100"),
            ("STRIPE_SECRET_KEY", "sk_test_creditd_binary"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CREDITD_PUBLIC_URL", "https://app.example.com"),
            ("STRIPE_API_BASE", &api_base),
        ],
    );
    let client = reqwest::Client::new();
    let base = server.base.clone();
    open_account(&client, &base).await;
    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/grants"),
        json!({"amount": "60", "source": "purchase"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // A card saved through a setup session and its webhook.
    save_card(
        &client,
        &base,
        &stripe,
        ACCOUNT,
        WEBHOOK_SECRET,
        "test_binary",
    )
    .await;

    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/accounts/{ACCOUNT}/auto-topup"),
        Some(json!({"enabled": true, "threshold": "50",
                    "amount": {"amount": 1000, "currency": "usd"},
                    "monthly_cap": {"amount": 3000, "currency": "usd"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Above the threshold: no payment.
    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/consume"),
        json!({"amount": "5"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/consume"),
        json!({"amount": "20"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // 35 left, below 50: the job tops up 10 USD, 1,000 credits.
    let granted = until("the auto top-up", Duration::from_secs(20), || async {
        let url = format!("{base}/v1/accounts/{ACCOUNT}/grants?source=auto_topup");
        let (_, grants) = get(&client, url).await;
        let grants = grants["data"].as_array().cloned().unwrap_or_default();
        (!grants.is_empty()).then_some(grants)
    })
    .await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["amount"], "1000");
    assert_eq!(available(&client, &base).await, "1035");
    // Paid as Stripe invoices every credit purchase: one invoice, paid once,
    // linked from the grant.
    let pays: Vec<_> = stripe
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pay"))
        .collect();
    assert_eq!(pays.len(), 1, "{pays:?}");
    let invoice = granted[0]["metadata"]["invoice"].as_str().unwrap();
    assert_eq!(pays[0].path, format!("/v1/invoices/{invoice}/pay"));
    assert!(
        granted[0]["metadata"]["invoice_url"]
            .as_str()
            .unwrap()
            .contains(invoice)
    );
    server.stop();
}

const DAY: i64 = 86_400;

/// The invoice Stripe sends when `sub` is paid for `start..end`.
fn plan_invoice(id: &str, sub: &str, reason: &str, (start, end): (i64, i64)) -> Value {
    json!({
        "id": id, "object": "invoice", "subscription": sub, "billing_reason": reason,
        "status": "paid", "amount_paid": 2000, "currency": "usd",
        "lines": {"object": "list", "data": [{
            "id": format!("il_{id}"), "object": "line_item", "type": "subscription",
            "period": {"start": start, "end": end}, "price": {"id": "price_basic"},
            "amount": 2000, "currency": "usd"
        }]}
    })
}

/// Sells the plan `basic` through the server at `base`, and has the fake
/// hold the paid session and the active subscription `sub_bin` whose first
/// period is `first`; answers the session's completion event.
async fn plan_bought(
    client: &reqwest::Client,
    base: &str,
    stripe: &FakeStripe,
    first: (i64, i64),
) -> String {
    let (status, body) = send(
        client,
        reqwest::Method::PUT,
        format!("{base}/v1/plans/basic"),
        Some(
            json!({"name": "Basic", "credits": "1000", "interval": "month",
                    "price": {"amount": 2000, "currency": "usd"},
                    "provider_price_id": "price_basic"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    stripe.set(
        "price_basic",
        json!({"unit_amount": 2000, "currency": "usd", "type": "recurring",
               "recurring": {"interval": "month", "interval_count": 1}}),
    );
    open_account(client, base).await;
    let session = check_out(client, base, json!({"plan_id": "basic"})).await;
    stripe.set(
        "sub_bin",
        json!({"status": "active", "cancel_at_period_end": false,
               "current_period_start": first.0, "current_period_end": first.1,
               "items": {"data": [{"id": "si_bin", "price": {"id": "price_basic"}}]}}),
    );
    stripe.set(
        &session,
        json!({"status": "complete", "payment_status": "paid", "subscription": "sub_bin"}),
    );
    event(
        "evt_plan_checkout",
        "checkout.session.completed",
        stripe.object(&session).expect("the session"),
    )
}

async fn subscription_of(client: &reqwest::Client, base: &str) -> Value {
    let (status, body) = get(client, format!("{base}/v1/accounts/{ACCOUNT}/subscription")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A plan bought through Stripe on two nodes of one PostgreSQL: its first
/// period granted by the checkout, a renewal's paid invoice delivered to
/// both nodes at once renews it once, an upgrade and a cancellation made
/// through the nodes reach Stripe, and Stripe's end, delivered to both at
/// once, ends it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_on_two_postgres_nodes_renews_changes_and_ends_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let stripe = FakeStripe::start().await;
    let nodes = [start(&database.url, &stripe), start(&database.url, &stripe)];
    let client = reqwest::Client::new();
    let now = now_secs();
    let first = (now - 40 * DAY, now - 10 * DAY);
    let completed = plan_bought(&client, &nodes[0].base, &stripe, first).await;
    let (status, answer) =
        deliver(&client, &nodes[1].base, &completed, &sign_now(&completed)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("subscribed")),
        "{answer}"
    );
    assert_eq!(available(&client, &nodes[0].base).await, "1000");
    let (status, body) = post(
        &client,
        format!("{}/v1/accounts/{ACCOUNT}/consume", nodes[0].base),
        json!({"amount": "250"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let second = (first.1, first.1 + 30 * DAY);
    let renewal = event(
        "evt_plan_renewal",
        "invoice.paid",
        plan_invoice("in_bin_2", "sub_bin", "subscription_cycle", second),
    );
    let outcomes = deliver_at_once(&client, &nodes, &renewal).await;
    let renewed = outcomes.iter().filter(|o| *o == "renewed").count();
    assert_eq!(renewed, 1, "{outcomes:?}");
    for node in &nodes {
        // Reset: the 750 left of the first period expired, 1000 arrived.
        assert_eq!(available(&client, &node.base).await, "1000");
        let sub = subscription_of(&client, &node.base).await;
        assert_eq!(sub["provider_subscription"], "sub_bin", "{sub}");
        assert_eq!(sub["current_period"]["granted"], "1000", "{sub}");
    }

    // An upgrade through one node is made at Stripe and followed; a cancel
    // at the period's end through the other; Stripe's end ends the plan.
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{}/v1/plans/pro", nodes[0].base),
        Some(
            json!({"name": "Pro", "credits": "5000", "interval": "month",
                    "price": {"amount": 5000, "currency": "usd"},
                    "provider_price_id": "price_pro"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{}/v1/accounts/{ACCOUNT}/subscription", nodes[0].base),
        Some(json!({"plan_id": "pro"})),
    )
    .await;
    assert_eq!(
        (status, body["plan_id"].as_str()),
        (200, Some("pro")),
        "{body}"
    );
    assert_eq!(
        stripe.object("sub_bin").expect("the subscription")["items"]["data"][0]["price"]["id"],
        "price_pro"
    );
    assert_eq!(available(&client, &nodes[1].base).await, "5000");
    let (status, body) = send(
        &client,
        reqwest::Method::DELETE,
        format!("{}/v1/accounts/{ACCOUNT}/subscription", nodes[1].base),
        None,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("canceling")),
        "{body}"
    );
    stripe.set("sub_bin", json!({"status": "canceled"}));
    let ended = event(
        "evt_plan_ended",
        "customer.subscription.deleted",
        stripe.object("sub_bin").expect("the subscription"),
    );
    let outcomes = deliver_at_once(&client, &nodes, &ended).await;
    assert_eq!(
        outcomes.iter().filter(|o| *o == "ended").count(),
        1,
        "{outcomes:?}"
    );
    let (status, body) = get(
        &client,
        format!("{}/v1/accounts/{ACCOUNT}/subscription", nodes[0].base),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

/// On SQLite: a plan's invoice arriving before its checkout's event ends
/// as in order, and a refunded package purchase is taken back into debt
/// once, through the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_paid_out_of_order_and_a_refund_into_debt_on_sqlite() {
    let (_dir, db) = fresh_db();
    let stripe = FakeStripe::start().await;
    let server = start(&sqlite(&db), &stripe);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let now = now_secs();
    let first = (now - DAY, now + 29 * DAY);
    let completed = plan_bought(&client, &base, &stripe, first).await;
    let invoice = event(
        "evt_plan_invoice",
        "invoice.paid",
        plan_invoice("in_bin_1", "sub_bin", "subscription_create", first),
    );
    for (body, expected) in [(&invoice, "subscribed"), (&completed, "duplicate")] {
        let (status, answer) = deliver(&client, &base, body, &sign_now(body)).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some(expected)),
            "{answer}\n{}",
            server.log()
        );
    }
    assert_eq!(available(&client, &base).await, "1000");

    // A package bought, 1050 spent, then refunded in full: its 100 credits
    // are taken back, all of them as debt.
    sell_package(&client, &base).await;
    let session = check_out(&client, &base, json!({"package_id": PACKAGE})).await;
    stripe.set("pi_bin", json!({"metadata": {}, "amount": 500}));
    stripe.set(
        &session,
        json!({"status": "complete", "payment_status": "paid", "payment_intent": "pi_bin"}),
    );
    let paid = event(
        "evt_package",
        "checkout.session.completed",
        stripe.object(&session).expect("the session"),
    );
    let (status, answer) = deliver(&client, &base, &paid, &sign_now(&paid)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("granted")),
        "{answer}"
    );
    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/consume"),
        json!({"amount": "1050"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refunded = event(
        "evt_refund",
        "charge.refunded",
        json!({"id": "ch_bin", "object": "charge", "amount": 500, "amount_refunded": 500,
               "currency": "usd", "refunded": true, "payment_intent": "pi_bin"}),
    );
    for expected in ["refunded", "duplicate"] {
        let (status, answer) = deliver(&client, &base, &refunded, &sign_now(&refunded)).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }
    let (status, balance) = get(&client, format!("{base}/v1/accounts/{ACCOUNT}/balance")).await;
    assert_eq!(status, 200, "{balance}");
    // 50 of the purchase were left and go back; the other 50 become debt.
    assert_eq!(
        (balance["available"].as_str(), balance["debt"].as_str()),
        (Some("-50"), Some("50")),
        "{balance}"
    );
}
