//! Checkout as a store page needs it: a package's own Stripe Price, names in the buyer's
//! locale, return URLs per request, and what became of a session without polling grants.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::stripe::{Failure, FakeStripe};

use crate::payments::{checkout, deliver, each_store, event, paid};
use crate::support::*;

/// The last checkout session creditd asked Stripe for.
fn last_session_request(stripe: &FakeStripe) -> testkit::stripe::StripeRequest {
    stripe
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path == "/v1/checkout/sessions")
        .expect("a checkout session was created")
}

async fn put_package(app: &TestApp, id: &str, body: Value) {
    let reply = app
        .send(Method::PUT, &format!("/v1/packages/{id}"), Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

async fn checkout_with(
    app: &TestApp,
    account: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Reply {
    let auth = format!("Bearer {}", testkit::app::KEY);
    let mut all = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    app.raw(
        Method::POST,
        &format!("/v1/accounts/{account}/checkout"),
        &all,
        body.to_string(),
    )
    .await
}

#[tokio::test]
async fn a_package_with_a_stripe_price_is_sold_as_that_price() {
    each_store(async |app, stripe| {
        stripe.set(
            "price_credits_1000",
            json!({"unit_amount": 900, "currency": "usd", "type": "one_time", "recurring": null}),
        );
        put_package(
            &app,
            "p1000",
            json!({"name": {"en": "1000 Credits", "zh": "1000 积分"}, "credits": "1000",
                   "price": {"amount": 900, "currency": "usd"},
                   "provider_price_id": "price_credits_1000"}),
        )
        .await;
        app.account_with("acme", "0").await;
        let session = checkout(&app, "acme", json!({"package_id": "p1000"})).await;
        let created = last_session_request(&stripe);
        assert_eq!(
            created.get("line_items[0][price]"),
            Some("price_credits_1000")
        );
        assert_eq!(created.get("line_items[0][quantity]"), Some("1"));
        assert!(
            created
                .form
                .iter()
                .all(|(key, _)| !key.contains("price_data")),
            "{created:?}"
        );
        let held = stripe
            .object(session["session_id"].as_str().unwrap())
            .unwrap();
        assert_eq!(held["amount_total"], 900);
        // Stripe is sent the id of the request creditd answers.
        let named = checkout_with(
            &app,
            "acme",
            &[("x-request-id", "checkout-7")],
            json!({"package_id": "p1000"}),
        )
        .await;
        assert_eq!(named.status, StatusCode::OK, "{named:?}");
        assert_eq!(
            last_session_request(&stripe).request_id.as_deref(),
            Some("checkout-7")
        );

        // A Price that Stripe does not have is Stripe's refusal, passed on.
        put_package(
            &app,
            "ghost",
            json!({"name": "Ghost", "credits": "1", "price": {"amount": 500, "currency": "usd"},
                   "provider_price_id": "price_missing"}),
        )
        .await;
        let refused = app
            .post("/v1/accounts/acme/checkout", json!({"package_id": "ghost"}))
            .await;
        assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{refused:?}");
        assert_eq!(refused.code(), "payment_provider_error");
    })
    .await;
}

#[tokio::test]
async fn a_package_without_a_price_is_named_in_the_checkouts_locale() {
    each_store(async |app, stripe| {
        put_package(
            &app,
            "p100",
            json!({"name": {"en": "100 Credits", "zh": "100 积分"},
                   "description": {"en": "For light use", "zh": "轻度使用"},
                   "credits": "100", "price": {"amount": 500, "currency": "usd"}}),
        )
        .await;
        app.account_with("acme", "0").await;
        let name = "line_items[0][price_data][product_data][name]";
        let description = "line_items[0][price_data][product_data][description]";

        // The body's locale first.
        let reply = checkout_with(
            &app,
            "acme",
            &[("accept-language", "en-US,en;q=0.9")],
            json!({"package_id": "p100", "locale": "zh"}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let created = last_session_request(&stripe);
        assert_eq!(created.get(name), Some("100 积分"));
        assert_eq!(created.get(description), Some("轻度使用"));
        assert_eq!(created.get("locale"), Some("zh"));

        // Then Accept-Language.
        let reply = checkout_with(
            &app,
            "acme",
            &[("accept-language", "zh-CN,zh;q=0.9,en;q=0.8")],
            json!({"package_id": "p100"}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let created = last_session_request(&stripe);
        assert_eq!(created.get(name), Some("100 积分"));
        assert_eq!(created.get("locale"), Some("zh"));

        // Else English.
        checkout(&app, "acme", json!({"package_id": "p100"})).await;
        let created = last_session_request(&stripe);
        assert_eq!(created.get(name), Some("100 Credits"));
        assert_eq!(created.get(description), Some("For light use"));
        assert_eq!(created.get("locale"), Some("en"));

        let bad = app
            .post(
                "/v1/accounts/acme/checkout",
                json!({"package_id": "p100", "locale": "chinese"}),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(bad.code(), "invalid_locale");
    })
    .await;
}

#[tokio::test]
async fn return_urls_may_be_sent_under_the_public_url_or_a_listed_origin() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        let amount = json!({"amount": 500, "currency": "usd"});
        let reply = app
            .post(
                "/v1/accounts/acme/checkout",
                json!({"amount": amount,
                       "success_url": "https://app.example.com/credits?paid={CHECKOUT_SESSION_ID}",
                       "cancel_url": "https://shop.example.org/cart"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let created = last_session_request(&stripe);
        assert_eq!(
            created.get("success_url"),
            Some("https://app.example.com/credits?paid={CHECKOUT_SESSION_ID}")
        );
        assert_eq!(
            created.get("cancel_url"),
            Some("https://shop.example.org/cart")
        );

        // Left out, they are the public URL's.
        checkout(&app, "acme", json!({"amount": amount})).await;
        let created = last_session_request(&stripe);
        assert_eq!(
            created.get("success_url"),
            Some("https://app.example.com/checkout/success?session_id={CHECKOUT_SESSION_ID}")
        );
        assert_eq!(
            created.get("cancel_url"),
            Some("https://app.example.com/checkout/cancel")
        );

        // Setup sessions take them too.
        let setup = app
            .post(
                "/v1/accounts/acme/payment-method/setup",
                json!({"success_url": "https://app.example.com/billing/card"}),
            )
            .await;
        assert_eq!(setup.status, StatusCode::OK, "{setup:?}");
        let created = last_session_request(&stripe);
        assert_eq!(created.get("mode"), Some("setup"));
        assert_eq!(
            created.get("success_url"),
            Some("https://app.example.com/billing/card")
        );

        let sessions_before = stripe.requests().len();
        for (field, url) in [
            ("success_url", "https://evil.example.net/phish"),
            ("cancel_url", "http://app.example.com/"),
            ("success_url", "https://app.example.com@evil.example.net/"),
            ("success_url", "javascript:alert(1)"),
            ("cancel_url", "/relative"),
        ] {
            let refused = app
                .post(
                    "/v1/accounts/acme/checkout",
                    json!({"amount": amount, field: url}),
                )
                .await;
            assert_eq!(
                refused.status,
                StatusCode::BAD_REQUEST,
                "{url}: {refused:?}"
            );
            assert_eq!(refused.code(), "invalid_return_url", "{url}");
            let refused = app
                .post(
                    "/v1/accounts/acme/payment-method/setup",
                    json!({field: url}),
                )
                .await;
            assert_eq!(refused.code(), "invalid_return_url", "{url}");
        }
        assert_eq!(
            stripe.requests().len(),
            sessions_before,
            "nothing reached Stripe"
        );
    })
    .await;
}

async fn status_of(app: &TestApp, account: &str, session: &str) -> Reply {
    app.get(&format!("/v1/accounts/{account}/checkout/{session}"))
        .await
}

#[tokio::test]
async fn a_sessions_status_goes_from_open_to_paid_pending_to_granted() {
    each_store(async |app, stripe| {
        crate::payments::package(&app).await;
        app.account_with("acme", "0").await;
        app.account_with("other", "0").await;
        let session = checkout(&app, "acme", json!({"package_id": "p100"})).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let open = status_of(&app, "acme", &session).await;
        assert_eq!(open.status, StatusCode::OK, "{open:?}");
        assert_eq!(open.body["status"], "open");
        assert_eq!(open.body["purchase"], "package");
        assert_eq!(open.body["package_id"], "p100");
        assert_eq!(open.body["credits"], "100");
        assert_eq!(open.body["transaction"], Value::Null);

        // Paid at Stripe, its webhook not yet here.
        let object = paid(&stripe, &session);
        assert_eq!(
            status_of(&app, "acme", &session).await.body["status"],
            "paid_pending"
        );

        let (_, answer) = deliver(
            &app,
            &event("evt_paid", "checkout.session.completed", object),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "granted");
        let asked_before = stripe.requests().len();
        let granted = status_of(&app, "acme", &session).await;
        assert_eq!(granted.body["status"], "granted", "{granted:?}");
        assert_eq!(granted.body["transaction"]["type"], "grant");
        assert_eq!(granted.body["transaction"]["amount"], "100");
        assert_eq!(
            stripe.requests().len(),
            asked_before,
            "a granted session is answered without asking Stripe"
        );

        // Another account's session, or none at all, is not found.
        for (account, id) in [("other", session.as_str()), ("acme", "cs_test_nothing")] {
            let missing = status_of(&app, account, id).await;
            assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
            assert_eq!(missing.code(), "checkout_session_not_found");
        }
        let bad = status_of(&app, "acme", "cs..x").await;
        assert_eq!(bad.code(), "invalid_id", "{bad:?}");

        // A customer key reads its own account's sessions only.
        let key = app.create_customer_key("acme").await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let own = app
            .send_as(
                Some(&key),
                Method::GET,
                &format!("/v1/accounts/acme/checkout/{session}"),
                &[],
                None,
            )
            .await;
        assert_eq!(own.body["status"], "granted", "{own:?}");
        let others = app
            .send_as(
                Some(&key),
                Method::GET,
                &format!("/v1/accounts/other/checkout/{session}"),
                &[],
                None,
            )
            .await;
        assert_eq!(others.status, StatusCode::NOT_FOUND, "{others:?}");
    })
    .await;
}

#[tokio::test]
async fn an_expired_a_processing_and_a_failed_session_say_so() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        let amount = json!({"amount": {"amount": 700, "currency": "usd"}});
        let expired = checkout(&app, "acme", amount.clone()).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        stripe.set(&expired, json!({"status": "expired"}));
        assert_eq!(
            status_of(&app, "acme", &expired).await.body["status"],
            "expired"
        );

        let delayed = checkout(&app, "acme", amount).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        stripe.set(
            &delayed,
            json!({"status": "complete", "payment_status": "unpaid"}),
        );
        assert_eq!(
            status_of(&app, "acme", &delayed).await.body["status"],
            "processing"
        );
        let object = stripe.object(&delayed).unwrap();
        let (_, answer) = deliver(
            &app,
            &event(
                "evt_failed",
                "checkout.session.async_payment_failed",
                object,
            ),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "payment_failed");
        assert_eq!(
            status_of(&app, "acme", &delayed).await.body["status"],
            "payment_failed"
        );
    })
    .await;
}

#[tokio::test]
async fn a_setup_sessions_status_says_when_the_card_is_saved() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        let reply = app
            .send(Method::POST, "/v1/accounts/acme/payment-method/setup", None)
            .await;
        let session = reply.body["session_id"].as_str().unwrap().to_owned();
        let open = status_of(&app, "acme", &session).await;
        assert_eq!(
            (open.body["status"].as_str(), open.body["purchase"].as_str()),
            (Some("open"), Some("setup")),
            "{open:?}"
        );
        crate::payments::complete_setup(&app, &stripe, "acme", &session).await;
        assert_eq!(
            status_of(&app, "acme", &session).await.body["status"],
            "card_saved"
        );
    })
    .await;
}

#[tokio::test]
async fn a_success_from_stripe_that_cannot_be_read_is_a_provider_error() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        // Made once, so that the customer exists and the next call is the session's.
        checkout(
            &app,
            "acme",
            json!({"amount": {"amount": 500, "currency": "usd"}}),
        )
        .await;
        for body in [r#"{"object": "checkout.session"}"#, "[]", "<html>ok</html>"] {
            stripe.push_failure(Failure::Raw(200, body));
            let reply = app
                .post(
                    "/v1/accounts/acme/checkout",
                    json!({"amount": {"amount": 500, "currency": "usd"}}),
                )
                .await;
            assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{body}: {reply:?}");
            assert_eq!(reply.code(), "payment_provider_error", "{body}");
        }
    })
    .await;
}
