//! Outbound webhooks through the real binary: an operator registers an endpoint, an auto
//! top-up is declined and then paid through the fake Stripe, and the endpoint receives
//! `topup.failed`, then `topup.succeeded` and `credits.granted`, each signed so that the Python
//! verification in docs/webhooks.md accepts it, and the metrics count them.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use support::stripe::save_card;
use support::{Server, fresh_db, get, post, send, until};
use testkit::receiver::Receiver;
use testkit::stripe::FakeStripe;

const WEBHOOK_SECRET: &str = "whsec_test_creditd_binary";
const ACCOUNT: &str = "acme";

/// The Python verification of docs/webhooks.md, as the docs give it.
fn documented_python() -> String {
    let docs = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/webhooks.md"),
    )
    .unwrap();
    let start = docs.find("```python\n").expect("a Python example") + "```python\n".len();
    let end = start + docs[start..].find("```").unwrap();
    docs[start..end].to_owned()
}

/// Whether the documented Python accepts `body` signed by `header` under
/// `secret`, with a tolerance of `tolerance` seconds.
fn python_accepts(body: &[u8], header: &str, secret: &str, tolerance: i64) -> bool {
    let Some(python) = support::python_with(
        "hmac",
        "the webhook signature check of the docs' Python",
        "a Python 3",
    ) else {
        return true;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify.py");
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, body).unwrap();
    std::fs::write(
        &script,
        format!(
            "{}\nimport sys\npayload = open(sys.argv[1], 'rb').read()\n\
             print('valid' if verify(payload, sys.argv[2], sys.argv[3], int(sys.argv[4])) else 'invalid')\n",
            documented_python()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(python)
        .arg(&script)
        .arg(&body_file)
        .arg(header)
        .arg(secret)
        .arg(tolerance.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim() == "valid"
}

#[tokio::test]
async fn an_endpoint_hears_of_a_declined_then_paid_auto_top_up_signed_as_documented() {
    let stripe = FakeStripe::start().await;
    let receiver = Receiver::start().await;
    let (_dir, db) = fresh_db();
    let api_base = stripe.base_url();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[
            ("CREDITD_LOG", "warn"),
            ("CREDITD_SWEEP_INTERVAL_MS", "100"),
            ("CREDITD_TEST_CLOCK", "true"),
            ("CREDITD_MASTER_KEY", &"7a".repeat(32)),
            ("CREDITD_ALLOW_PRIVATE_WEBHOOKS", "true"),
            ("STRIPE_SECRET_KEY", "sk_test_creditd_binary"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CREDITD_PUBLIC_URL", "https://app.example.com"),
            ("STRIPE_API_BASE", &api_base),
        ],
    );
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let (status, endpoint) = post(
        &client,
        format!("{base}/v1/webhook-endpoints"),
        json!({"url": receiver.url("/creditd"), "events": ["*"]}),
    )
    .await;
    assert_eq!(status, 201, "{endpoint}");
    let secret = endpoint["secret"].as_str().unwrap().to_owned();

    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts"),
        json!({"id": ACCOUNT}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/grants"),
        json!({"amount": "60", "source": "purchase"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // A card saved through a setup session and its webhook.
    save_card(&client, &base, &stripe, ACCOUNT, WEBHOOK_SECRET, "hooks").await;
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/accounts/{ACCOUNT}/auto-topup"),
        Some(json!({"enabled": true, "threshold": "50",
                    "amount": {"amount": 1000, "currency": "usd"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The card declines: the endpoint is told.
    stripe.decline_next_payment();
    let (status, body) = post(
        &client,
        format!("{base}/v1/accounts/{ACCOUNT}/consume"),
        json!({"amount": "25"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let failed = until("topup.failed", Duration::from_secs(20), || async {
        receiver.events_of("topup.failed").pop()
    })
    .await;
    assert_eq!(failed["data"]["account_id"], ACCOUNT);
    assert_eq!(failed["data"]["reason"], "card_declined");
    assert_eq!(failed["data"]["failures"], 1);

    // An hour and more later the retry is paid: succeeded, and granted.
    let (status, clock) = post(
        &client,
        format!("{base}/v1/test-clock/advance"),
        json!({"seconds": 3700}),
    )
    .await;
    assert_eq!(status, 200, "{clock}");
    let succeeded = until("topup.succeeded", Duration::from_secs(20), || async {
        receiver.events_of("topup.succeeded").pop()
    })
    .await;
    assert_eq!(succeeded["data"]["amount"], "1000");
    assert_eq!(succeeded["data"]["source"], "auto_topup");
    let granted = receiver.events_of("credits.granted");
    let amounts: Vec<&str> = granted
        .iter()
        .map(|e| e["data"]["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["60", "1000"], "{granted:?}");

    // Every request is signed as the docs say; a changed body is not.
    let received = receiver.received();
    assert!(received.len() >= 4, "{received:?}");
    for request in &received {
        // The server's clock is the test clock, an hour ahead after the advance.
        assert!(
            python_accepts(&request.body, &request.signature(), &secret, 7200),
            "{request:?}"
        );
    }
    let mut changed = received[0].body.to_vec();
    changed.push(b' ');
    assert!(!python_accepts(
        &changed,
        &received[0].signature(),
        &secret,
        7200
    ));
    assert!(!python_accepts(
        &received[0].body,
        &received[0].signature(),
        "whsec_other",
        7200
    ));

    // The log and the metrics agree.
    let (status, log) = get(
        &client,
        format!("{base}/v1/webhook-events?type=topup.failed"),
    )
    .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["data"][0]["status"], "delivered");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delivered = received.len();
    assert!(
        metrics.contains(&format!(
            "creditd_webhook_deliveries_total{{outcome=\"succeeded\"}} {delivered}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("creditd_auto_topups_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("creditd_auto_topups_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    server.stop();
}
