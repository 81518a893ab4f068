//! Payments through a fake Stripe: checkout sessions made as Stripe's libraries make them, and
//! signed webhooks that grant what was paid exactly once, however they are delivered.

use std::sync::Arc;

use billing::payments::{Payments, PaymentsConfig};
use billing::{Billing, EnvSettings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::Secret;
use testkit::stripe::FakeStripe;

use crate::support::*;

const WEBHOOK_SECRET: &str = "whsec_test_creditd";

/// Billing taking payments through the fake Stripe at `base`, and allowing
/// free accounts to buy.
pub(crate) fn with_stripe(base: String) -> testkit::app::Plugins {
    Arc::new(move |store, clock| {
        let env = EnvSettings {
            allow_free_user_purchase: Some(true),
            ..EnvSettings::default()
        };
        let payments = Payments::stripe(PaymentsConfig {
            secret_key: Secret::new("sk_test_creditd".into()),
            webhook_secret: Secret::new(WEBHOOK_SECRET.into()),
            public_url: "https://app.example.com".into(),
            api_base: base.clone(),
            return_origins: vec!["https://shop.example.org".into()],
        });
        let billing = Arc::new(
            Billing::new(store, clock, env)
                .with_payments(Some(payments), ledger::Amount::credits(100)),
        );
        Plugged {
            capabilities: vec![billing.capability()],
            handle: Some(billing),
        }
    })
}

/// Runs `test` on each store, with a fresh fake Stripe.
pub(crate) async fn each_store(test: impl AsyncFn(TestApp, FakeStripe)) {
    for postgres in [false, true] {
        let stripe = FakeStripe::start().await;
        let plugins = with_stripe(stripe.base_url());
        let app = if postgres {
            match TestApp::spawn_postgres(Some(plugins)).await {
                Some(app) => app,
                None => return,
            }
        } else {
            TestApp::spawn_sqlite(Some(plugins)).await
        };
        test(app, stripe).await;
    }
}

pub(crate) async fn package(app: &TestApp) {
    let reply = app
        .send(
            Method::PUT,
            "/v1/packages/p100",
            Some(json!({"name": "100 Credits", "credits": "100",
                        "price": {"amount": 500, "currency": "usd"}, "active": true})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

pub(crate) async fn checkout(app: &TestApp, account: &str, body: Value) -> Value {
    let reply = app
        .send(
            Method::POST,
            &format!("/v1/accounts/{account}/checkout"),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

pub(crate) use testkit::stripe::{event, now_secs};

/// Delivers `body` signed with the endpoint's secret at `at` (or now).
pub(crate) async fn deliver(
    app: &TestApp,
    body: &str,
    signature: Option<String>,
) -> (StatusCode, Value) {
    let signature = signature.unwrap_or_else(|| {
        billing::domain::signature::sign(body.as_bytes(), WEBHOOK_SECRET.as_bytes(), now_secs())
    });
    let reply = app
        .raw(
            Method::POST,
            "/webhooks/stripe",
            &[
                ("stripe-signature", &signature),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await;
    (reply.status, reply.body)
}

/// The session as Stripe holds it once paid.
pub(crate) fn paid(stripe: &FakeStripe, session: &str) -> Value {
    stripe.set(
        "in_test_1",
        json!({"hosted_invoice_url": "https://invoice.stripe.com/i/acct_test/in_test_1"}),
    );
    stripe.set(
        session,
        json!({"status": "complete", "payment_status": "paid", "invoice": "in_test_1"}),
    );
    stripe.object(session).expect("the session")
}

/// The account's grants of `source`, as the history lists them.
async fn grants_from(app: &TestApp, account: &str, source: &str) -> Vec<Value> {
    let grants = app
        .get(&format!(
            "/v1/accounts/{account}/grants?source={source}&limit=100"
        ))
        .await;
    grants.body["data"].as_array().unwrap().clone()
}

pub(crate) async fn purchases(app: &TestApp, account: &str) -> Vec<Value> {
    grants_from(app, account, "purchase").await
}

#[tokio::test]
async fn a_package_checkout_is_made_as_stripes_libraries_make_it() {
    each_store(async |app, stripe| {
        package(&app).await;
        app.account_with("acme", "0").await;
        let first = checkout(&app, "acme", json!({"package_id": "p100"})).await;
        let session = first["session_id"].as_str().unwrap();
        let page = format!("{}/c/pay/{session}", stripe.base_url());
        assert_eq!(first["checkout_url"], page.as_str());
        let second = checkout(&app, "acme", json!({"package_id": "p100"})).await;
        assert_ne!(second["session_id"], first["session_id"]);

        let requests = stripe.requests();
        let customers: Vec<_> = requests
            .iter()
            .filter(|r| r.path == "/v1/customers")
            .collect();
        assert_eq!(customers.len(), 1, "one customer per account, reused");
        let created = requests
            .iter()
            .find(|r| r.path == "/v1/checkout/sessions")
            .unwrap();
        for request in &requests {
            assert_eq!(
                request.stripe_version.as_deref(),
                Some(billing::payments::stripe::STRIPE_VERSION)
            );
            assert_eq!(
                request.authorization.as_deref(),
                Some("Bearer sk_test_creditd")
            );
            if request.method == "POST" {
                assert!(request.idempotency_key.is_some(), "{request:?}");
                assert_eq!(
                    request.content_type.as_deref(),
                    Some("application/x-www-form-urlencoded")
                );
            }
        }
        assert_eq!(created.get("mode"), Some("payment"));
        assert_eq!(created.get("client_reference_id"), Some("acme"));
        assert_eq!(created.get("metadata[creditd_account]"), Some("acme"));
        assert_eq!(created.get("metadata[creditd_kind]"), Some("package"));
        assert_eq!(created.get("metadata[creditd_package]"), Some("p100"));
        assert_eq!(
            created.get("line_items[0][price_data][unit_amount]"),
            Some("500")
        );
        assert_eq!(created.get("invoice_creation[enabled]"), Some("true"));
        assert_eq!(created.get("tax_id_collection[enabled]"), Some("true"));
        assert_eq!(
            created.get("payment_intent_data[setup_future_usage]"),
            Some("off_session")
        );
        let held = stripe.object(session).unwrap();
        assert_eq!(held["amount_total"], 500);
        assert_eq!(
            held["customer"],
            stripe.object(held["customer"].as_str().unwrap()).unwrap()["id"]
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_first_checkouts_make_one_customer() {
    each_store(async |app, stripe| {
        package(&app).await;
        app.account_with("acme", "0").await;
        let app = Arc::new(app);
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                checkout(&app, "acme", json!({"package_id": "p100"})).await
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let sessions: Vec<Value> = stripe
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/checkout/sessions")
            .map(|r| json!(r.get("customer")))
            .collect();
        assert_eq!(sessions.len(), 5);
        assert!(sessions.iter().all(|c| *c == sessions[0]), "{sessions:?}");
    })
    .await;
}

#[tokio::test]
async fn a_paid_session_grants_once_however_often_its_events_arrive() {
    each_store(async |app, stripe| {
        package(&app).await;
        app.account_with("acme", "0").await;
        let session = checkout(&app, "acme", json!({"package_id": "p100"})).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let object = paid(&stripe, &session);
        let body = event("evt_1", "checkout.session.completed", object.clone());
        // Three times in a row, then three at once.
        for expected in ["granted", "duplicate", "duplicate"] {
            let (status, answer) = deliver(&app, &body, None).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["outcome"], expected);
        }
        let app = Arc::new(app);
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (app, body) = (
                app.clone(),
                event(
                    &format!("evt_again_{i}"),
                    "checkout.session.completed",
                    object.clone(),
                ),
            );
            tasks.push(tokio::spawn(
                async move { deliver(&app, &body, None).await },
            ));
        }
        for task in tasks {
            let (status, answer) = task.await.unwrap();
            assert_eq!(
                (status, answer["outcome"].as_str()),
                (StatusCode::OK, Some("duplicate"))
            );
        }
        let bought = purchases(&app, "acme").await;
        assert_eq!(bought.len(), 1, "{bought:?}");
        assert_eq!(bought[0]["amount"], "100");
        assert_eq!(bought[0]["metadata"]["amount_paid"], 500);
        assert_eq!(bought[0]["metadata"]["currency"], "usd");
        assert_eq!(bought[0]["metadata"]["invoice"], "in_test_1");
        assert_eq!(
            bought[0]["metadata"]["invoice_url"],
            "https://invoice.stripe.com/i/acct_test/in_test_1"
        );
        assert_eq!(app.available("acme").await, "100");

        let events = app.get("/v1/payments/events?account=acme").await;
        assert_eq!(events.status, StatusCode::OK, "{events:?}");
        let outcomes: Vec<&str> = events.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == "granted").count(),
            1,
            "{outcomes:?}"
        );
        assert_eq!(outcomes.len(), 4, "{outcomes:?}");
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn a_session_creditd_never_created_grants_nothing() {
    each_store(async |app, _stripe| {
        app.account_with("acme", "0").await;
        let mut forged = FakeStripe::fixture("checkout.session");
        forged["id"] = json!("cs_test_forged");
        forged["payment_status"] = json!("paid");
        forged["client_reference_id"] = json!("acme");
        forged["metadata"] = json!({"creditd_account": "acme", "creditd_kind": "topup", "creditd_credits": "1000000"});
        let (status, answer) = deliver(&app, &event("evt_forged", "checkout.session.completed", forged), None).await;
        assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("unknown_session")));
        assert!(purchases(&app, "acme").await.is_empty());
        assert_eq!(app.available("acme").await, "0");
    })
    .await;
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_changes_nothing() {
    each_store(async |app, stripe| {
        package(&app).await;
        app.account_with("acme", "0").await;
        let session = checkout(&app, "acme", json!({"package_id": "p100"})).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = event(
            "evt_1",
            "checkout.session.completed",
            paid(&stripe, &session),
        );
        let good = billing::domain::signature::sign(
            body.as_bytes(),
            WEBHOOK_SECRET.as_bytes(),
            now_secs(),
        );
        let v1 = good.split_once(",v1=").unwrap().1.to_owned();
        let changed = body.replacen("evt_1", "evt_2", 1);
        for (what, body, header) in [
            ("no header", body.clone(), String::new()),
            (
                "wrong v1",
                body.clone(),
                format!("t={},v1={}", now_secs(), "0".repeat(64)),
            ),
            ("body changed", changed, good.clone()),
            (
                "too old",
                body.clone(),
                billing::domain::signature::sign(
                    body.as_bytes(),
                    WEBHOOK_SECRET.as_bytes(),
                    now_secs() - 400,
                ),
            ),
            (
                "future",
                body.clone(),
                billing::domain::signature::sign(
                    body.as_bytes(),
                    WEBHOOK_SECRET.as_bytes(),
                    now_secs() + 400,
                ),
            ),
            ("only v0", body.clone(), format!("t={},v0={v1}", now_secs())),
        ] {
            let mut request = app
                .client
                .post(format!("{}/webhooks/stripe", app.base))
                .body(body);
            if !header.is_empty() {
                request = request.header("stripe-signature", header);
            }
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status(), StatusCode::BAD_REQUEST, "{what}");
            let answer: Value = reply.json().await.unwrap();
            assert_eq!(answer["error"]["code"], "invalid_signature", "{what}");
        }
        assert!(purchases(&app, "acme").await.is_empty());
        let events = app.get("/v1/payments/events").await;
        assert_eq!(events.body["data"], json!([]));
        // One good v1 among bad ones is accepted.
        let among = format!(
            "t={},v1={},v1={v1}",
            good.split_once(',').unwrap().0.trim_start_matches("t="),
            "1".repeat(64)
        );
        let (status, answer) = deliver(&app, &body, Some(among)).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (StatusCode::OK, Some("granted"))
        );
    })
    .await;
}

#[tokio::test]
async fn an_async_payment_grants_when_it_succeeds() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        let created = checkout(
            &app,
            "acme",
            json!({"amount": {"amount": 1250, "currency": "usd"}}),
        )
        .await;
        let session = created["session_id"].as_str().unwrap();
        stripe.set(
            session,
            json!({"status": "complete", "payment_status": "unpaid"}),
        );
        let unpaid = stripe.object(session).unwrap();
        let (_, answer) = deliver(
            &app,
            &event("evt_1", "checkout.session.completed", unpaid),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "awaiting_payment");
        assert!(purchases(&app, "acme").await.is_empty());
        let (_, answer) = deliver(
            &app,
            &event(
                "evt_2",
                "checkout.session.async_payment_succeeded",
                paid(&stripe, session),
            ),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "granted");
        // 12.50 USD at 100 credits a dollar.
        assert_eq!(app.available("acme").await, "1250");
    })
    .await;
}

#[tokio::test]
async fn a_setup_session_saves_the_card_for_later_payments() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        let none = app.get("/v1/accounts/acme/payment-method").await;
        assert_eq!(none.body, json!({"card": null}));
        let reply = app
            .send(Method::POST, "/v1/accounts/acme/payment-method/setup", None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let session = reply.body["session_id"].as_str().unwrap().to_owned();
        let created = stripe
            .requests()
            .into_iter()
            .find(|r| r.path == "/v1/checkout/sessions")
            .unwrap();
        assert_eq!(created.get("mode"), Some("setup"));
        stripe.set(
            "pm_test_saved",
            json!({"card": {"brand": "visa", "last4": "4242",
                                                    "exp_month": 8, "exp_year": 2030}}),
        );
        stripe.set(
            "seti_test_saved",
            json!({"payment_method": "pm_test_saved", "status": "succeeded"}),
        );
        stripe.set(
            &session,
            json!({"status": "complete", "setup_intent": "seti_test_saved"}),
        );
        let object = stripe.object(&session).unwrap();
        let (status, answer) = deliver(
            &app,
            &event("evt_setup", "checkout.session.completed", object),
            None,
        )
        .await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (StatusCode::OK, Some("card_saved")),
            "{answer}"
        );
        let card = app.get("/v1/accounts/acme/payment-method").await;
        assert_eq!(
            card.body,
            json!({"card": {"brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2030}})
        );
        let default = stripe
            .requests()
            .into_iter()
            .find(|r| r.path.starts_with("/v1/customers/cus_"))
            .expect("the card made the customer's default");
        assert_eq!(
            default.get("invoice_settings[default_payment_method]"),
            Some("pm_test_saved")
        );
        assert!(purchases(&app, "acme").await.is_empty());
    })
    .await;
}

/// Saves a visa card for `account` through a setup session.
pub(crate) async fn save_card(app: &TestApp, stripe: &FakeStripe, account: &str) {
    let reply = app
        .send(
            Method::POST,
            &format!("/v1/accounts/{account}/payment-method/setup"),
            None,
        )
        .await;
    let session = reply.body["session_id"].as_str().unwrap().to_owned();
    complete_setup(app, stripe, account, &session).await;
}

/// Completes the setup `session` at Stripe with a visa card, and delivers
/// its event.
pub(crate) async fn complete_setup(
    app: &TestApp,
    stripe: &FakeStripe,
    account: &str,
    session: &str,
) {
    stripe.set(
        "pm_test_topup",
        json!({"card": {"brand": "visa", "last4": "4242",
                                                 "exp_month": 8, "exp_year": 2030}}),
    );
    stripe.set(
        "seti_test_topup",
        json!({"payment_method": "pm_test_topup", "status": "succeeded"}),
    );
    stripe.set(
        session,
        json!({"status": "complete", "setup_intent": "seti_test_topup"}),
    );
    let object = stripe.object(session).unwrap();
    let (_, answer) = deliver(
        app,
        &event(
            &format!("evt_setup_{account}"),
            "checkout.session.completed",
            object,
        ),
        None,
    )
    .await;
    assert_eq!(answer["outcome"], "card_saved");
}

/// Auto top-up of 20 USD below 50 credits, at most 50 USD a month.
pub(crate) async fn enable_topup(app: &TestApp, account: &str) -> reqwest::StatusCode {
    let reply = app
        .send(
            Method::PUT,
            &format!("/v1/accounts/{account}/auto-topup"),
            Some(json!({"enabled": true, "threshold": "50",
                        "amount": {"amount": 2000, "currency": "usd"},
                        "monthly_cap": {"amount": 5000, "currency": "usd"}})),
        )
        .await;
    reply.status
}

pub(crate) async fn run_topups(app: &TestApp) {
    billing::payments::topup::run_due(&billing(app))
        .await
        .unwrap();
}

/// The top-up payments creditd asked Stripe for: each an invoice paid.
fn pays(stripe: &FakeStripe) -> Vec<testkit::stripe::StripeRequest> {
    stripe
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST" && r.path.starts_with("/v1/invoices/") && r.path.ends_with("/pay")
        })
        .collect()
}

/// The requests creditd made to create top-up invoices, and their lines.
fn posts_to(stripe: &FakeStripe, path: &str) -> Vec<testkit::stripe::StripeRequest> {
    stripe
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .collect()
}

pub(crate) async fn topups(app: &TestApp, account: &str) -> Vec<Value> {
    grants_from(app, account, "auto_topup").await
}

#[tokio::test]
async fn an_account_below_its_threshold_is_topped_up_once() {
    each_store(async |app, stripe| {
        app.account_with("acme", "10").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::CONFLICT);
        save_card(&app, &stripe, "acme").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::OK);
        // Several nodes' jobs at once start one payment.
        let app = Arc::new(app);
        let mut jobs = Vec::new();
        for _ in 0..5 {
            let app = app.clone();
            jobs.push(tokio::spawn(async move { run_topups(&app).await }));
        }
        for job in jobs {
            job.await.unwrap();
        }
        // Every credit purchase has an invoice: one for the customer with
        // the top-up as its only line, paid off-session with the saved card.
        let invoices = posts_to(&stripe, "/v1/invoices");
        assert_eq!(invoices.len(), 1, "{invoices:?}");
        let created = &invoices[0];
        assert!(
            created
                .get("customer")
                .is_some_and(|c| c.starts_with("cus_")),
            "{created:?}"
        );
        assert_eq!(
            created.get("pending_invoice_items_behavior"),
            Some("exclude")
        );
        assert_eq!(
            created.get("collection_method"),
            Some("charge_automatically")
        );
        assert_eq!(created.get("metadata[creditd_kind]"), Some("auto_topup"));
        assert_eq!(created.get("metadata[creditd_attempt]"), Some("1"));
        assert_eq!(
            created.idempotency_key.as_deref(),
            Some("creditd:auto_topup:acme:1:invoice")
        );
        let items = posts_to(&stripe, "/v1/invoiceitems");
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].get("amount"), Some("2000"));
        assert!(
            items[0]
                .get("invoice")
                .is_some_and(|i| i.starts_with("in_"))
        );
        assert_eq!(
            items[0].idempotency_key.as_deref(),
            Some("creditd:auto_topup:acme:1:item")
        );
        let made = pays(&stripe);
        assert_eq!(made.len(), 1, "{made:?}");
        assert_eq!(made[0].get("off_session"), Some("true"));
        assert_eq!(made[0].get("payment_method"), Some("pm_test_topup"));
        assert_eq!(
            made[0].idempotency_key.as_deref(),
            Some("creditd:auto_topup:acme:1:pay")
        );
        let invoice_id = items[0].get("invoice").unwrap().to_owned();
        let granted = topups(&app, "acme").await;
        assert_eq!(granted.len(), 1);
        // 20 USD at 100 credits a dollar, with its invoice linked.
        assert_eq!(granted[0]["amount"], "2000");
        assert_eq!(granted[0]["metadata"]["amount_paid"], 2000);
        assert_eq!(granted[0]["metadata"]["invoice"], invoice_id.as_str());
        assert_eq!(
            granted[0]["metadata"]["invoice_url"],
            format!("https://invoice.stripe.com/i/acct_test/{invoice_id}")
        );
        assert_eq!(app.available("acme").await, "2010");
        // Above the threshold now: nothing more.
        run_topups(&app).await;
        assert_eq!(pays(&stripe).len(), 1);
        let state = app.get("/v1/accounts/acme/auto-topup").await.body;
        assert_eq!(
            (
                state["state"].as_str(),
                state["charged_this_month"].as_i64()
            ),
            (Some("idle"), Some(2000))
        );
        // A Credits page lists what was paid for: the opening purchase and the top-up.
        let paid_for = app
            .get("/v1/accounts/acme/grants?source=purchase,auto_topup")
            .await;
        let sources: Vec<&str> = paid_for.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["source"].as_str().unwrap())
            .collect();
        assert_eq!(sources, ["auto_topup", "purchase"]);
        let none = app.get("/v1/accounts/acme/grants?source=admin").await;
        assert_eq!(none.body["data"], json!([]));
        let bad = app.get("/v1/accounts/acme/grants?source=gift").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);

        // The invoice's webhook, arriving after the answer, grants nothing
        // more; its payment intent's, which names no attempt, grants nothing.
        let paid = stripe.object(&invoice_id).unwrap();
        assert_eq!(paid["status"], "paid");
        let (_, answer) = deliver(&app, &event("evt_in", "invoice.paid", paid.clone()), None).await;
        assert_eq!(answer["outcome"], "duplicate");
        let intent = stripe
            .object(paid["payment_intent"].as_str().unwrap())
            .unwrap();
        let (_, answer) = deliver(
            &app,
            &event("evt_pi", "payment_intent.succeeded", intent),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "unknown_payment");
        assert_eq!(topups(&app, "acme").await.len(), 1);
        // A top-up's invoice is never mistaken for a plan's: its failure
        // changes no subscription.
        let (_, answer) = deliver(
            &app,
            &event("evt_fail", "invoice.payment_failed", paid),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "payment_failed");
        assert!(app.get("/v1/accounts/acme/subscription").await.status == StatusCode::NOT_FOUND);
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn twenty_concurrent_consumes_crossing_the_threshold_start_one_top_up() {
    each_store(async |app, stripe| {
        app.account_with("acme", "100").await;
        save_card(&app, &stripe, "acme").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::OK);
        let app = Arc::new(app);
        // 20 consumes of 4 credits take 100 down to 20, past the threshold
        // of 50, while every node's job looks at the account.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let spent = app
                    .post("/v1/accounts/acme/consume", json!({"amount": "4"}))
                    .await;
                assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
                if i % 4 == 0 {
                    run_topups(&app).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        run_topups(&app).await;
        run_topups(&app).await;
        assert_eq!(pays(&stripe).len(), 1);
        assert_eq!(topups(&app, "acme").await.len(), 1);
        assert_eq!(app.available("acme").await, "2020");
    })
    .await;
}

#[tokio::test]
async fn a_decline_backs_off_and_the_monthly_cap_holds() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        save_card(&app, &stripe, "acme").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::OK);
        stripe.decline_next_payment();
        run_topups(&app).await;
        assert!(topups(&app, "acme").await.is_empty());
        // The declined attempt's invoice is voided: no unpaid invoice is left.
        let declined = posts_to(&stripe, "/v1/invoiceitems")[0]
            .get("invoice")
            .unwrap()
            .to_owned();
        assert_eq!(stripe.object(&declined).unwrap()["status"], "void");
        let state = app.get("/v1/accounts/acme/auto-topup").await.body;
        assert_eq!(state["state"], "backing_off");
        assert_eq!(state["last_failure"], "card_declined");
        // Not again in a loop: only after the hour's wait.
        run_topups(&app).await;
        assert_eq!(pays(&stripe).len(), 1);
        app.clock.advance_secs(3601);
        run_topups(&app).await;
        assert_eq!(pays(&stripe).len(), 2);
        assert_eq!(topups(&app, "acme").await.len(), 1);
        // Spent down twice more: the second would pass the 50 USD cap.
        for _ in 0..2 {
            let spent = app
                .post("/v1/accounts/acme/consume", json!({"amount": "1990"}))
                .await;
            assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
            run_topups(&app).await;
        }
        assert_eq!(
            topups(&app, "acme").await.len(),
            2,
            "20 + 20 USD; a third would make 60"
        );
        let state = app.get("/v1/accounts/acme/auto-topup").await.body;
        assert_eq!(state["charged_this_month"], 4000);
    })
    .await;
}

/// Opens `account` with no credits, a saved card and auto top-up, and runs
/// the top-up job with its payment declined.
async fn decline_a_top_up(app: &TestApp, stripe: &FakeStripe, account: &str) {
    app.account_with(account, "0").await;
    save_card(app, stripe, account).await;
    assert_eq!(enable_topup(app, account).await, StatusCode::OK);
    stripe.decline_next_payment();
    run_topups(app).await;
}

#[tokio::test]
async fn operators_list_the_auto_top_ups_backing_off_page_by_page() {
    each_store(async |app, stripe| {
        decline_a_top_up(&app, &stripe, "acme").await;
        decline_a_top_up(&app, &stripe, "zeta").await;
        // Enabled and above its threshold: idle, so not listed.
        app.account_with("beta", "1000").await;
        save_card(&app, &stripe, "beta").await;
        assert_eq!(enable_topup(&app, "beta").await, StatusCode::OK);
        run_topups(&app).await;
        assert_eq!(pays(&stripe).len(), 2);

        let list = app.get("/v1/payments/auto-topups?state=backing_off").await;
        assert_eq!(list.status, StatusCode::OK, "{list:?}");
        let accounts: Vec<&str> = list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["account_id"].as_str().unwrap())
            .collect();
        assert_eq!(accounts, ["acme", "zeta"]);
        assert_eq!(list.body["next_cursor"], Value::Null);
        let acme = &list.body["data"][0];
        assert_eq!(acme["reason"], "card_declined");
        assert_eq!(acme["failures"], 1);
        let own = app.get("/v1/accounts/acme/auto-topup").await.body;
        assert_eq!(acme["retry_at"], own["retry_at"]);

        let first = app
            .get("/v1/payments/auto-topups?state=backing_off&limit=1")
            .await;
        assert_eq!(first.body["data"][0]["account_id"], "acme");
        assert_eq!(first.body["next_cursor"], "acme");
        let second = app
            .get("/v1/payments/auto-topups?state=backing_off&limit=1&cursor=acme")
            .await;
        assert_eq!(second.body["data"][0]["account_id"], "zeta");
        let rest = app
            .get("/v1/payments/auto-topups?state=backing_off&cursor=zeta")
            .await;
        assert_eq!(rest.body, json!({"data": [], "next_cursor": null}));

        for refused in [
            "/v1/payments/auto-topups?state=idle",
            "/v1/payments/auto-topups",
            "/v1/payments/auto-topups?state=backing_off&limit=101",
        ] {
            let reply = app.get(refused).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{refused}: {reply:?}"
            );
            assert_eq!(reply.code(), "invalid_request", "{refused}");
        }
    })
    .await;
}

/// Opens `acme` with a saved card and auto top-up, and runs the top-up job
/// while Stripe drops every connection: the attempt is left pending.
async fn top_up_while_stripe_is_unreachable(app: &TestApp, stripe: &FakeStripe) {
    app.account_with("acme", "0").await;
    save_card(app, stripe, "acme").await;
    assert_eq!(enable_topup(app, "acme").await, StatusCode::OK);
    for _ in 0..4 {
        stripe.push_failure(testkit::stripe::Failure::Drop);
    }
    run_topups(app).await;
}

#[tokio::test]
async fn stripe_unreachable_then_back_makes_one_payment_and_one_grant() {
    each_store(async |app, stripe| {
        top_up_while_stripe_is_unreachable(&app, &stripe).await;
        assert!(topups(&app, "acme").await.is_empty());
        assert_eq!(
            app.get("/v1/accounts/acme/auto-topup").await.body["state"],
            "pending"
        );
        // Asked about again after a minute, under the same key.
        app.clock.advance_secs(61);
        run_topups(&app).await;
        assert_eq!(topups(&app, "acme").await.len(), 1);
        // Each step was asked under one key, however often it was sent.
        for path in ["/v1/invoices", "/v1/invoiceitems"] {
            let keys: std::collections::BTreeSet<_> = posts_to(&stripe, path)
                .into_iter()
                .map(|r| r.idempotency_key.unwrap())
                .collect();
            assert_eq!(keys.len(), 1, "{path}: {keys:?}");
        }
        assert_eq!(pays(&stripe).len(), 1);
        assert_eq!(app.available("acme").await, "2000");
    })
    .await;
}

#[tokio::test]
async fn a_pending_top_up_is_asked_about_with_the_amount_it_started_with() {
    each_store(async |app, stripe| {
        top_up_while_stripe_is_unreachable(&app, &stripe).await;
        // The customer changes the amount while the attempt is pending: the
        // attempt is asked about with what it started with, so Stripe finds
        // it under its key instead of refusing a changed request.
        let changed = app
            .send(
                Method::PUT,
                "/v1/accounts/acme/auto-topup",
                Some(json!({"enabled": true, "threshold": "50",
                            "amount": {"amount": 9900, "currency": "usd"},
                            "monthly_cap": {"amount": 50000, "currency": "usd"}})),
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
        app.clock.advance_secs(61);
        run_topups(&app).await;
        let granted = topups(&app, "acme").await;
        assert_eq!(granted.len(), 1, "{granted:?}");
        assert_eq!(granted[0]["metadata"]["amount_paid"], 2000);
        assert_eq!(app.available("acme").await, "2000");
        let amounts: std::collections::BTreeSet<_> = posts_to(&stripe, "/v1/invoiceitems")
            .iter()
            .map(|r| r.get("amount").unwrap().to_owned())
            .collect();
        assert_eq!(amounts, ["2000".to_owned()].into(), "{amounts:?}");
        let state = app.get("/v1/accounts/acme/auto-topup").await.body;
        assert_eq!(state["charged_this_month"], 2000);
    })
    .await;
}

#[tokio::test]
async fn a_paid_checkout_keeps_its_card_for_auto_top_up() {
    each_store(async |app, stripe| {
        package(&app).await;
        app.account_with("acme", "0").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::CONFLICT);
        let session = checkout(&app, "acme", json!({"package_id": "p100"})).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        stripe.set(
            "pm_bought_with",
            json!({"card": {"brand": "mastercard", "last4": "4444",
                            "exp_month": 1, "exp_year": 2031}}),
        );
        stripe.set("pi_bought", json!({"payment_method": "pm_bought_with"}));
        stripe.set(&session, json!({"payment_intent": "pi_bought"}));
        let object = paid(&stripe, &session);
        let (_, answer) = deliver(
            &app,
            &event("evt_bought", "checkout.session.completed", object),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "granted");
        let card = app.get("/v1/accounts/acme/payment-method").await;
        assert_eq!(card.body["card"]["last4"], "4444", "{card:?}");
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn a_conflict_from_stripe_is_sent_again_under_the_same_key() {
    each_store(async |app, stripe| {
        package(&app).await;
        app.account_with("acme", "0").await;
        // Stripe answers 409 to a request while another under the same key
        // is in flight; sent again, it is answered.
        stripe.push_failure(testkit::stripe::Failure::Status(409));
        let session = checkout(&app, "acme", json!({"package_id": "p100"})).await;
        assert!(session["session_id"].is_string(), "{session}");
        let customers: Vec<_> = stripe
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/customers")
            .collect();
        assert_eq!(customers.len(), 2, "{customers:?}");
        assert_eq!(customers[0].idempotency_key, customers[1].idempotency_key);
    })
    .await;
}

#[tokio::test]
async fn a_pending_top_up_disabled_before_any_answer_makes_no_new_payment() {
    each_store(async |app, stripe| {
        top_up_while_stripe_is_unreachable(&app, &stripe).await;
        let before = pays(&stripe).len();
        let disabled = app
            .send(
                Method::PUT,
                "/v1/accounts/acme/auto-topup",
                Some(json!({"enabled": false, "threshold": "50",
                            "amount": {"amount": 2000, "currency": "usd"},
                            "monthly_cap": {"amount": 5000, "currency": "usd"}})),
            )
            .await;
        assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
        app.clock.advance_secs(61);
        run_topups(&app).await;
        assert_eq!(
            pays(&stripe).len(),
            before,
            "no payment made after disabling"
        );
        let state = app.get("/v1/accounts/acme/auto-topup").await.body;
        assert_ne!(state["state"], "pending", "{state}");
        assert!(topups(&app, "acme").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_top_up_intent_creditd_did_not_make_grants_nothing() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        save_card(&app, &stripe, "acme").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::OK);
        run_topups(&app).await;
        assert_eq!(topups(&app, "acme").await.len(), 1);
        // A payment made elsewhere in the Stripe account, with metadata
        // copied from creditd's, for an attempt the account reached, but
        // not the account's customer.
        stripe.set(
            "pi_forged",
            json!({"status": "succeeded", "amount": 2000, "amount_received": 2000,
                   "currency": "usd", "customer": "cus_someone_else",
                   "metadata": {"creditd_kind": "auto_topup", "creditd_account": "acme",
                                "creditd_attempt": "1"}}),
        );
        let forged = stripe.object("pi_forged").unwrap();
        let (status, answer) = deliver(
            &app,
            &event("evt_forged", "payment_intent.succeeded", forged),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["outcome"], "unknown_payment");
        assert_eq!(topups(&app, "acme").await.len(), 1);
        assert_eq!(app.available("acme").await, "2000");
        // An event of a type creditd does not handle is kept too.
        let (_, answer) = deliver(
            &app,
            &event("evt_other", "customer.created", json!({"id": "cus_x"})),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "ignored");
        let events = app.get("/v1/payments/events").await;
        assert!(
            events.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == "evt_other" && e["outcome"] == "ignored"),
            "{events:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_overage_charge_becomes_one_invoice_item() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        let billing = billing(&app);
        let charge = billing::subscription::OverageCharge {
            account: "acme".into(),
            plan_id: "pro".into(),
            period_start_micros: 1_800_000_000_000_000,
            period_end_micros: 1_802_592_000_000_000,
            credits: ledger::Amount::credits(1250),
            unit_price: billing::domain::UnitPrice::parse("0.2").unwrap(),
            currency: serde_json::from_value(json!("usd")).unwrap(),
            amount_due: 250,
            invoice_item: None,
        };
        let id = "acme:overage:1";
        let write = store::records::put(id, &charge, store::records::Expect::Absent);
        store::records::write::<billing::subscription::OverageCharge>(
            billing.store.as_ref(),
            write,
        )
        .await
        .unwrap();
        // Run on two nodes at once, then again: one item.
        let (a, b) = tokio::join!(
            billing::payments::overage::invoice_due(&billing),
            billing::payments::overage::invoice_due(&billing)
        );
        assert_eq!(a.unwrap() + b.unwrap(), 1);
        assert_eq!(
            billing::payments::overage::invoice_due(&billing)
                .await
                .unwrap(),
            0
        );
        let items: Vec<_> = stripe
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/invoiceitems")
            .collect();
        assert!(!items.is_empty());
        let keys: std::collections::BTreeSet<_> = items
            .iter()
            .map(|r| r.idempotency_key.clone().unwrap())
            .collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(items[0].get("amount"), Some("250"));
        assert_eq!(items[0].get("currency"), Some("usd"));
        assert_eq!(items[0].get("metadata[creditd_overage]"), Some(id));
        let stored =
            store::records::get::<billing::subscription::OverageCharge>(billing.store.as_ref(), id)
                .await
                .unwrap()
                .unwrap();
        assert!(
            stored
                .body
                .invoice_item
                .as_deref()
                .is_some_and(|i| i.starts_with("ii_"))
        );
    })
    .await;
}

#[tokio::test]
async fn a_custom_amount_is_at_least_five_dollars() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        for body in [
            json!({"amount": {"amount": 499, "currency": "usd"}}),
            json!({"amount": {"amount": 5000, "currency": "eur"}}),
            json!({}),
            json!({"package_id": "p100", "amount": {"amount": 500, "currency": "usd"}}),
        ] {
            let reply = app
                .send(
                    Method::POST,
                    "/v1/accounts/acme/checkout",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
            assert_eq!(reply.code(), "invalid_checkout", "{body}");
        }
        assert!(stripe.requests().is_empty());
    })
    .await;
}

billing_test! {
    #[tokio::test]
    async fn without_stripe_configured_payments_answer_503_and_the_rest_works(app) {
        app.account_with("acme", "5").await;
        let reply = app
            .send(Method::POST, "/v1/accounts/acme/checkout", Some(json!({"package_id": "p100"})))
            .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert_eq!(reply.code(), "payments_not_configured");
        let hook = app.raw(Method::POST, "/webhooks/stripe", &[], "{}").await;
        assert_eq!(hook.code(), "payments_not_configured");
        assert_eq!(app.available("acme").await, "5");
    }
}

#[tokio::test]
async fn a_threshold_in_money_and_no_monthly_cap_are_taken_as_a_credits_page_sets_them() {
    each_store(async |app, stripe| {
        app.account_with("acme", "10").await;
        save_card(&app, &stripe, "acme").await;
        // "Top up $200 when below $50", no monthly cap.
        let set = app
            .send(
                Method::PUT,
                "/v1/accounts/acme/auto-topup",
                Some(json!({"enabled": true,
                            "threshold": {"amount": 5000, "currency": "usd"},
                            "amount": {"amount": 20000, "currency": "usd"}})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        assert_eq!(set.body["threshold"], json!({"amount": 5000, "currency": "usd"}));
        // 50 USD at 100 credits a dollar.
        assert_eq!(set.body["threshold_credits"], "5000");
        assert_eq!(set.body["monthly_cap"], Value::Null);
        assert_eq!(app.get("/v1/accounts/acme/auto-topup").await.body, set.body);
        // Below 5000 credits: a top-up of 20000 credits, then, spent below
        // again, another, with no cap to stop them.
        run_topups(&app).await;
        assert_eq!(app.available("acme").await, "20010");
        let spent = app.post("/v1/accounts/acme/consume", json!({"amount": "15020"})).await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        run_topups(&app).await;
        assert_eq!(app.available("acme").await, "24990");
        assert_eq!(topups(&app, "acme").await.len(), 2);
        // The same settings in credits, with a cap given as null.
        let set = app
            .send(
                Method::PUT,
                "/v1/accounts/acme/auto-topup",
                Some(json!({"enabled": true, "threshold": "50",
                            "amount": {"amount": 2000, "currency": "usd"}, "monthly_cap": null})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        assert_eq!((set.body["threshold"].as_str(), set.body["threshold_credits"].as_str()),
                   (Some("50"), Some("50")));
        for bad in [
            json!({"enabled": true, "threshold": {"amount": 5000, "currency": "eur"},
                   "amount": {"amount": 2000, "currency": "usd"}}),
            json!({"enabled": true, "threshold": {"amount": -1, "currency": "usd"},
                   "amount": {"amount": 2000, "currency": "usd"}}),
            json!({"enabled": true, "threshold": "-5",
                   "amount": {"amount": 2000, "currency": "usd"}}),
            json!({"enabled": true, "threshold": [50],
                   "amount": {"amount": 2000, "currency": "usd"}}),
            json!({"enabled": true, "threshold": "50", "amount": {"amount": 2000, "currency": "usd"},
                   "monthly_cap": {"amount": 1000, "currency": "usd"}}),
        ] {
            let refused = app.send(Method::PUT, "/v1/accounts/acme/auto-topup", Some(bad.clone())).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}: {refused:?}");
        }
        assert_eq!(app.get("/v1/accounts/acme/auto-topup").await.body, set.body);
    })
    .await;
}

#[tokio::test]
async fn an_invoiced_top_up_refunded_is_taken_back_and_a_forged_invoice_grants_nothing() {
    each_store(async |app, stripe| {
        app.account_with("acme", "10").await;
        save_card(&app, &stripe, "acme").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::OK);
        run_topups(&app).await;
        assert_eq!(app.available("acme").await, "2010");
        let grant = &topups(&app, "acme").await[0];
        let invoice = stripe
            .object(grant["metadata"]["invoice"].as_str().unwrap())
            .unwrap();
        // An invoice made elsewhere with creditd's metadata, of another
        // customer, grants nothing, paid or failed.
        let mut forged = invoice.clone();
        forged["id"] = json!("in_forged");
        forged["customer"] = json!("cus_someone_else");
        for kind in ["invoice.paid", "invoice.payment_failed"] {
            let (_, answer) = deliver(
                &app,
                &event(&format!("evt_{kind}"), kind, forged.clone()),
                None,
            )
            .await;
            assert_eq!(answer["outcome"], "unknown_payment", "{kind}");
        }
        assert_eq!(app.available("acme").await, "2010");
        // Its charge refunded in full: the top-up's credits are taken back.
        let mut charge = stripe.object(invoice["charge"].as_str().unwrap()).unwrap();
        charge["amount_refunded"] = json!(2000);
        charge["refunded"] = json!(true);
        let (_, answer) = deliver(
            &app,
            &event("evt_refund", "charge.refunded", charge.clone()),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "refunded", "{answer}");
        assert_eq!(app.available("acme").await, "10");
        let (_, answer) = deliver(
            &app,
            &event("evt_refund_again", "charge.refunded", charge),
            None,
        )
        .await;
        assert_eq!(answer["outcome"], "duplicate", "{answer}");
        assert_eq!(app.available("acme").await, "10");
        app.assert_verified().await;
    })
    .await;
}
