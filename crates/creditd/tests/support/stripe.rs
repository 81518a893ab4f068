//! Stripe's side of the binary's tests: events as Stripe wraps them, signed deliveries to
//! `/webhooks/stripe`, and a card saved the way a customer saves one.

use serde_json::{Value, json};
use testkit::stripe::FakeStripe;
pub use testkit::stripe::{event, now_secs};

use super::post;

/// Posts `body` to the server's webhook with `header` as its signature;
/// answers the status and the body.
pub async fn deliver(
    client: &reqwest::Client,
    base: &str,
    body: &str,
    header: &str,
) -> (u16, Value) {
    let response = client
        .post(format!("{base}/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Posts `body` to the server's webhook signed now under `secret`.
pub async fn deliver_signed(
    client: &reqwest::Client,
    base: &str,
    body: &str,
    secret: &str,
) -> (u16, Value) {
    let header = billing::domain::signature::sign(body.as_bytes(), secret.as_bytes(), now_secs());
    deliver(client, base, body, &header).await
}

/// Saves a card for `account` as a customer does: a setup session through
/// the server at `base`, completed in the fake, and its
/// `checkout.session.completed` delivered signed under `secret`. `tag`
/// names the fake's objects, distinct per test.
pub async fn save_card(
    client: &reqwest::Client,
    base: &str,
    stripe: &FakeStripe,
    account: &str,
    secret: &str,
    tag: &str,
) {
    let (status, body) = post(
        client,
        format!("{base}/v1/accounts/{account}/payment-method/setup"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session = body["session_id"].as_str().unwrap().to_owned();
    let (card, intent) = (format!("pm_{tag}"), format!("seti_{tag}"));
    stripe.set(
        &card,
        json!({"card": {"brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2030}}),
    );
    stripe.set(
        &intent,
        json!({"payment_method": card, "status": "succeeded"}),
    );
    stripe.set(
        &session,
        json!({"status": "complete", "setup_intent": intent}),
    );
    let body = event(
        &format!("evt_setup_{tag}"),
        "checkout.session.completed",
        stripe.object(&session).unwrap(),
    );
    let (status, answer) = deliver_signed(client, base, &body, secret).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("card_saved")),
        "{answer}"
    );
}
