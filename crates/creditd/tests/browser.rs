//! The browser harness through the real binary: a customer saves a card, buys a package and
//! subscribes to a plan on the fake Stripe's hosted checkout pages in Debian's Chromium, the pages
//! pass axe, and creditd, told by the fake's signed webhooks, shows the card, the credits and the
//! subscription.
//!
//! The scenarios are Python files in tests/python driving Chromium through Playwright, run in
//! the Python given by `CREDITD_TEST_PYTHON` (default `python3`). Without Playwright, axe-core
//! or Chromium the tests are skipped with a notice, except under `CI=true`, where that fails them.

mod support;

use serde_json::json;
use support::browser::{Browser, free_port};
use support::{KEY, Server, fresh_db, post, send};
use testkit::stripe::FakeStripe;

/// The webhook endpoint's signing secret, shared by the server and the fake.
const WEBHOOK_SECRET: &str = "whsec_test_creditd_browser";

const ACCOUNT: &str = "acme";

/// The package bought: 100 credits for 5 USD.
const PACKAGE: &str = "p100";
const PACKAGE_CREDITS: &str = "100";

/// The plan subscribed to: 1000 credits a month for 20 USD.
const PLAN: &str = "basic";
const PLAN_CREDITS: &str = "1000";

/// `creditd serve` on a fresh SQLite database, paid through `stripe`, on a
/// port chosen first so that its public URL (where the checkout pages send
/// the customer back to) is its own.
fn start(db: &std::path::Path, stripe: &FakeStripe) -> Server {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[
            ("CREDITD_LOG", "warn"),
            ("CREDITD_LISTEN", &format!("127.0.0.1:{port}")),
            ("CREDITD_PUBLIC_URL", &base),
            ("STRIPE_SECRET_KEY", "sk_test_creditd_browser"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("STRIPE_API_BASE", &stripe.base_url()),
            ("CREDITD_ALLOW_FREE_USER_PURCHASE", "true"),
        ],
    );
    assert_eq!(server.base, base);
    stripe.send_webhooks_to(format!("{base}/webhooks/stripe"), WEBHOOK_SECRET.to_owned());
    server
}

/// Posts `body` to `path` with the admin key; answers the session's page
/// and id.
async fn checkout(
    client: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> (String, String) {
    let (status, answer) = post(client, url, body).await;
    assert_eq!(status, 200, "{answer}");
    let page = answer["checkout_url"].as_str().expect("a checkout url");
    let id = answer["session_id"].as_str().expect("a session id");
    (page.to_owned(), id.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_is_saved_a_package_bought_and_a_plan_subscribed_to_in_chromium() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let stripe = FakeStripe::start().await;
    let (_dir, db) = fresh_db();
    let server = start(&db, &stripe);
    let base = &server.base;
    let client = reqwest::Client::new();

    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/packages/{PACKAGE}"),
        Some(json!({"name": "100 Credits", "credits": PACKAGE_CREDITS,
                    "price": {"amount": 500, "currency": "usd"}, "active": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts"),
        json!({"id": ACCOUNT}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (setup_url, setup_session) = checkout(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/payment-method/setup"),
        json!({}),
    )
    .await;
    let (package_url, package_session) = checkout(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/checkout"),
        json!({"package_id": PACKAGE}),
    )
    .await;
    assert!(package_url.starts_with(&stripe.base_url()), "{package_url}");
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/plans/{PLAN}"),
        Some(
            json!({"name": "Basic", "credits": PLAN_CREDITS, "interval": "month",
                    "price": {"amount": 2000, "currency": "usd"}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (plan_url, plan_session) = checkout(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/checkout"),
        json!({"plan_id": PLAN}),
    )
    .await;

    browser
        .run(
            "browser_checkout.py",
            &[
                ("CREDITD_BASE", base),
                ("CREDITD_ADMIN_KEY", KEY),
                ("ACCOUNT", ACCOUNT),
                ("SETUP_URL", &setup_url),
                ("SETUP_SESSION", &setup_session),
                ("PACKAGE_URL", &package_url),
                ("PACKAGE_SESSION", &package_session),
                ("PACKAGE_CREDITS", PACKAGE_CREDITS),
                ("PLAN", PLAN),
                ("PLAN_URL", &plan_url),
                ("PLAN_SESSION", &plan_session),
                ("PLAN_CREDITS", PLAN_CREDITS),
            ],
        )
        .await;
    assert!(
        !server.log().contains("ERROR"),
        "the server logged an error:\n{}",
        server.log()
    );
}
