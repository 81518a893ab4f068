//! The dashboard through the real binary, in Debian's Chromium: a customer opens the Credits
//! page from a one-time link, buys credits on the fake Stripe's checkout page and comes back to
//! the new balance, reads the history, is refused auto top-up without a card and turns it on
//! with one, makes and revokes a key, claims the daily reward, reads the usage chart, sees the
//! page in Chinese; another site's forged POST changes nothing; the balance is embedded on a page
//! of another origin; and an operator signs in, finds the account and grants credits the
//! customer then sees. Every page passes axe at 1280 and 375 px.
//!
//! With `CREDITD_UPDATE_SCREENSHOTS=1`, the screenshots of each page at both widths are written
//! to docs/dashboard/ for docs/dashboard.md.

mod support;

use support::browser::{Browser, free_port};
use support::{KEY, Server, fresh_db};
use testkit::stripe::FakeStripe;

/// The webhook endpoint's signing secret, shared by the server and the fake.
const WEBHOOK_SECRET: &str = "whsec_test_creditd_dashboard";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_and_an_operator_use_the_dashboard_in_chromium() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let stripe = FakeStripe::start().await;
    let (_dir, db) = fresh_db();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[
            ("CREDITD_LOG", "warn"),
            ("CREDITD_LISTEN", &format!("127.0.0.1:{port}")),
            ("CREDITD_PUBLIC_URL", &base),
            ("CREDITD_TEST_CLOCK", "true"),
            ("CREDITD_DAILY_ENABLED", "true"),
            ("CREDITD_DAILY_AMOUNT", "5"),
            ("CREDITD_ALLOW_FREE_USER_PURCHASE", "true"),
            ("STRIPE_SECRET_KEY", "sk_test_creditd_dashboard"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("STRIPE_API_BASE", &stripe.base_url()),
        ],
    );
    assert_eq!(server.base, base);
    stripe.send_webhooks_to(format!("{base}/webhooks/stripe"), WEBHOOK_SECRET.to_owned());
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dashboard");
    let mut env = vec![("CREDITD_BASE", base.as_str()), ("CREDITD_ADMIN_KEY", KEY)];
    if std::env::var_os("CREDITD_UPDATE_SCREENSHOTS").is_some() {
        env.push(("CREDITD_SCREENSHOTS", screenshots));
    }
    browser.run("dashboard.py", &env).await;
}
