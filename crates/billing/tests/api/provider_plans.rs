//! Plans paid through Stripe, and refunds: a subscription's life from its checkout to its end,
//! driven by signed webhooks in any order, and refunded payments taken back into debt.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::app::{START, TestApp};
use testkit::stripe::FakeStripe;

use crate::payments::{
    checkout, deliver, each_store, enable_topup, event, package, paid, run_topups, save_card,
    topups,
};
use crate::support::*;

const DAY: i64 = 86_400;
/// The provider's periods in these tests: 30 days from the test's start.
const PERIOD: i64 = 30 * DAY;

fn bound(n: i64) -> i64 {
    START.micros() / 1_000_000 + n * PERIOD
}

async fn plans(app: &TestApp, stripe: &FakeStripe) {
    for (price, amount) in [
        ("price_basic", 2000),
        ("price_pro", 5000),
        ("price_team", 3000),
    ] {
        stripe.set(
            price,
            json!({"unit_amount": amount, "currency": "usd", "type": "recurring",
                   "recurring": {"interval": "month", "interval_count": 1}}),
        );
    }
    plan(
        app,
        "basic",
        json!({"name": "Basic", "credits": "1000", "interval": "month",
               "price": {"amount": 2000, "currency": "usd"}, "provider_price_id": "price_basic"}),
    )
    .await;
    plan(
        app,
        "pro",
        json!({"name": "Pro", "credits": "5000", "interval": "month", "allocation": "rollover",
               "price": {"amount": 5000, "currency": "usd"}, "provider_price_id": "price_pro"}),
    )
    .await;
    plan(
        app,
        "team",
        json!({"name": "Team", "credits": "3000", "interval": "month",
               "price": {"amount": 3000, "currency": "usd"}, "provider_price_id": "price_team"}),
    )
    .await;
}

/// Checks out `plan` for `account` and has the fake hold what Stripe holds
/// once it is paid: the session complete, and an active subscription `sub`
/// in its first period.
async fn bought(app: &TestApp, stripe: &FakeStripe, account: &str, plan: &str, sub: &str) -> Value {
    let session = checkout(app, account, json!({"plan_id": plan})).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    stripe.set(
        sub,
        json!({"status": "active", "customer": null, "cancel_at_period_end": false,
               "current_period_start": bound(0), "current_period_end": bound(1),
               "items": {"data": [{"id": format!("si_{sub}"),
                                   "price": {"id": format!("price_{plan}")}}]}}),
    );
    stripe.set(
        &session,
        json!({"status": "complete", "payment_status": "paid", "subscription": sub}),
    );
    stripe.object(&session).unwrap()
}

/// The invoice Stripe sends for `sub`'s period `n` on `price`.
fn invoice(id: &str, sub: &str, reason: &str, n: i64, price: &str) -> Value {
    json!({
        "id": id, "object": "invoice", "subscription": sub, "billing_reason": reason,
        "status": "paid", "amount_paid": 2000, "currency": "usd",
        "lines": {"object": "list", "data": [{
            "id": format!("il_{id}"), "object": "line_item", "type": "subscription",
            "period": {"start": bound(n), "end": bound(n + 1)},
            "price": {"id": price}, "amount": 2000, "currency": "usd"
        }]}
    })
}

async fn outcome(app: &TestApp, id: &str, kind: &str, object: Value) -> String {
    let (status, answer) = deliver(app, &event(id, kind, object), None).await;
    assert_eq!(status, StatusCode::OK, "{kind}: {answer}");
    answer["outcome"].as_str().unwrap().to_owned()
}

async fn subscription(app: &TestApp, account: &str) -> Value {
    let reply = app
        .get(&format!("/v1/accounts/{account}/subscription"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

#[tokio::test]
async fn a_subscriptions_life_through_stripe() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        app.account_with("acme", "0").await;

        // Checkout: a subscription-mode session for the plan's price.
        let session = bought(&app, &stripe, "acme", "basic", "sub_acme").await;
        let made = stripe
            .requests()
            .into_iter()
            .rfind(|r| r.path == "/v1/checkout/sessions")
            .unwrap();
        assert_eq!(made.get("mode"), Some("subscription"));
        assert_eq!(made.get("line_items[0][price]"), Some("price_basic"));
        assert_eq!(made.get("metadata[creditd_kind]"), Some("plan"));
        assert_eq!(made.get("metadata[creditd_plan]"), Some("basic"));
        assert_eq!(
            made.get("subscription_data[metadata][creditd_account]"),
            Some("acme")
        );
        assert_eq!(made.get("invoice_creation[enabled]"), None);

        // The first period, granted once by whichever event comes.
        let completed = "checkout.session.completed";
        assert_eq!(
            outcome(&app, "evt_c", completed, session.clone()).await,
            "subscribed"
        );
        assert_eq!(
            outcome(&app, "evt_c", completed, session).await,
            "duplicate"
        );
        let first = invoice("in_1", "sub_acme", "subscription_create", 0, "price_basic");
        assert_eq!(
            outcome(&app, "evt_i1", "invoice.paid", first).await,
            "duplicate"
        );
        assert_eq!(app.available("acme").await, "1000");
        let sub = subscription(&app, "acme").await;
        assert_eq!(sub["plan_id"], "basic");
        assert_eq!(sub["provider_subscription"], "sub_acme");
        assert_eq!(sub["current_period"]["start"], at(0));
        assert_eq!(sub["current_period"]["end"], at(PERIOD));

        // creditd's own renewals leave a plan the provider bills alone.
        app.clock.advance_secs(PERIOD + 60);
        assert_eq!(renew(&app).await, 0);
        assert_eq!(app.available("acme").await, "1000");

        // First renewal, by the paid invoice (reset): 300 spent, 700 left
        // expire, the new 1000 arrive.
        app.post("/v1/accounts/acme/consume", json!({"amount": "300"}))
            .await;
        let cycle = invoice("in_2", "sub_acme", "subscription_cycle", 1, "price_basic");
        assert_eq!(
            outcome(&app, "evt_i2", "invoice.paid", cycle.clone()).await,
            "renewed"
        );
        assert_eq!(
            outcome(&app, "evt_i2b", "invoice.paid", cycle).await,
            "duplicate"
        );
        assert_eq!(app.available("acme").await, "1000");
        let sub = subscription(&app, "acme").await;
        assert_eq!(sub["current_period"]["start"], at(PERIOD));
        assert_eq!(sub["current_period"]["granted"], "1000");

        // A failed renewal: past due, nothing granted; paid on a retry.
        app.clock.advance_secs(PERIOD);
        let failed = invoice("in_3", "sub_acme", "subscription_cycle", 2, "price_basic");
        assert_eq!(
            outcome(&app, "evt_f3", "invoice.payment_failed", failed.clone()).await,
            "past_due"
        );
        assert_eq!(subscription(&app, "acme").await["status"], "past_due");
        assert_eq!(app.available("acme").await, "1000");
        assert_eq!(
            outcome(&app, "evt_i3", "invoice.paid", failed.clone()).await,
            "renewed"
        );
        let sub = subscription(&app, "acme").await;
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["current_period"]["start"], at(2 * PERIOD));
        // The failure delivered again after the retry was paid: nothing.
        assert_eq!(
            outcome(&app, "evt_f3b", "invoice.payment_failed", failed).await,
            "duplicate"
        );
        assert_eq!(subscription(&app, "acme").await["status"], "active");

        // An upgrade: made at Stripe, the account follows at once with the
        // new plan's credits for the period; Stripe's own event changes
        // nothing more.
        let upgraded = app
            .send(
                Method::PUT,
                "/v1/accounts/acme/subscription",
                Some(json!({"plan_id": "pro"})),
            )
            .await;
        assert_eq!(upgraded.status, StatusCode::OK, "{upgraded:?}");
        assert_eq!(upgraded.body["plan_id"], "pro");
        let update = stripe
            .requests()
            .into_iter()
            .rfind(|r| r.path == "/v1/subscriptions/sub_acme" && r.method == "POST")
            .unwrap();
        assert_eq!(update.get("items[0][price]"), Some("price_pro"));
        assert_eq!(update.get("proration_behavior"), Some("always_invoice"));
        assert_eq!(update.get("payment_behavior"), Some("error_if_incomplete"));
        assert_eq!(update.get("items[0][id]"), Some("si_sub_acme"));
        assert!(update.idempotency_key.is_some());
        assert_eq!(app.available("acme").await, "5000");
        let remote = stripe.object("sub_acme").unwrap();
        assert_eq!(
            outcome(&app, "evt_u1", "customer.subscription.updated", remote).await,
            "duplicate"
        );
        assert_eq!(app.available("acme").await, "5000");

        // A renewal of the rollover plan: 1200 spent, 3800 roll over.
        app.post("/v1/accounts/acme/consume", json!({"amount": "1200"}))
            .await;
        app.clock.advance_secs(PERIOD);
        let mut cycle = invoice("in_4", "sub_acme", "subscription_cycle", 3, "price_pro");
        // The upgrade's proration lines come first on the next invoice: they
        // name no period.
        let proration = json!({"id": "il_p", "object": "line_item", "type": "subscription",
            "proration": true, "period": {"start": bound(2) + DAY, "end": bound(3)},
            "price": {"id": "price_basic"}, "amount": -500, "currency": "usd"});
        cycle["lines"]["data"]
            .as_array_mut()
            .unwrap()
            .insert(0, proration);
        assert_eq!(
            outcome(&app, "evt_i4", "invoice.paid", cycle).await,
            "renewed"
        );
        assert_eq!(app.available("acme").await, "8800");

        // Cancel at the period's end: made at Stripe; the account keeps its
        // plan until Stripe ends the subscription.
        let canceled = app
            .send(Method::DELETE, "/v1/accounts/acme/subscription", None)
            .await;
        assert_eq!(canceled.status, StatusCode::OK, "{canceled:?}");
        assert_eq!(canceled.body["status"], "canceling");
        assert_eq!(
            stripe.object("sub_acme").unwrap()["cancel_at_period_end"],
            true
        );
        app.clock.advance_secs(PERIOD);
        stripe.set("sub_acme", json!({"status": "canceled"}));
        let ended = stripe.object("sub_acme").unwrap();
        assert_eq!(
            outcome(
                &app,
                "evt_d",
                "customer.subscription.deleted",
                ended.clone()
            )
            .await,
            "ended"
        );
        assert_eq!(
            outcome(&app, "evt_d2", "customer.subscription.deleted", ended).await,
            "duplicate"
        );
        let gone = app.get("/v1/accounts/acme/subscription").await;
        assert_eq!(gone.code(), "subscription_not_found", "{gone:?}");
        // The rolled-over credits stay (rollover is the customer's); the
        // plan's period credits closed with the plan.
        let events = app.get("/v1/payments/events?account=acme").await;
        assert!(events.body["data"].as_array().unwrap().len() >= 10);
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn moving_back_and_forth_within_a_period_grants_each_plan_once() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        app.account_with("acme", "0").await;
        let session = bought(&app, &stripe, "acme", "basic", "sub_acme").await;
        outcome(&app, "evt_c", "checkout.session.completed", session).await;
        // Each plan is granted once per billing period: moving back to a
        // plan granted in it grants nothing more, and the plan left closes
        // (reset: its leftovers expire).
        let moves = [("team", "3000"), ("basic", "0"), ("team", "0")];
        for (step, (plan, expected)) in moves.into_iter().enumerate() {
            app.clock.advance_secs(DAY);
            let moved = app
                .send(
                    Method::PUT,
                    "/v1/accounts/acme/subscription",
                    Some(json!({"plan_id": plan})),
                )
                .await;
            assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
            assert_eq!(moved.body["plan_id"], plan, "step {step}");
            assert_eq!(app.available("acme").await, expected, "step {step}");
            // Stripe's event for the move changes nothing more.
            let remote = stripe.object("sub_acme").unwrap();
            let id = format!("evt_u{step}");
            assert_eq!(
                outcome(&app, &id, "customer.subscription.updated", remote).await,
                "duplicate"
            );
        }
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn a_second_subscription_for_one_account_is_not_followed() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        app.account_with("acme", "0").await;
        // Two plan checkouts opened before either was paid.
        let first = bought(&app, &stripe, "acme", "basic", "sub_one").await;
        let second = bought(&app, &stripe, "acme", "pro", "sub_two").await;
        let completed = "checkout.session.completed";
        assert_eq!(outcome(&app, "evt_1", completed, first).await, "subscribed");
        assert_eq!(
            outcome(&app, "evt_2", completed, second).await,
            "conflicting_subscription"
        );
        let paid = invoice("in_two", "sub_two", "subscription_create", 0, "price_pro");
        assert_eq!(
            outcome(&app, "evt_3", "invoice.paid", paid).await,
            "conflicting_subscription"
        );
        let sub = subscription(&app, "acme").await;
        assert_eq!(sub["provider_subscription"], "sub_one");
        assert_eq!(app.available("acme").await, "1000");
        // A third checkout while one is followed is refused.
        let refused = app
            .post("/v1/accounts/acme/checkout", json!({"plan_id": "pro"}))
            .await;
        assert_eq!(refused.code(), "invalid_checkout", "{refused:?}");
    })
    .await;
}

async fn reconcile(app: &TestApp) -> usize {
    billing::payments::subscriptions::reconcile_due(&billing(app))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_late_subscription_is_asked_about_when_its_events_never_come() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        app.account_with("acme", "0").await;
        let session = bought(&app, &stripe, "acme", "basic", "sub_acme").await;
        outcome(&app, "evt_c", "checkout.session.completed", session).await;
        app.post("/v1/accounts/acme/consume", json!({"amount": "400"}))
            .await;
        // The period ends and its renewal is paid, but the webhook is lost.
        let mut renewal = invoice(
            "in_lost",
            "sub_acme",
            "subscription_cycle",
            1,
            "price_basic",
        );
        renewal["object"] = json!("invoice");
        stripe.set("in_lost", renewal);
        stripe.set(
            "sub_acme",
            json!({"latest_invoice": "in_lost", "current_period_start": bound(1),
                   "current_period_end": bound(2)}),
        );
        app.clock.advance_secs(PERIOD + 3600);
        assert_eq!(reconcile(&app).await, 0, "within the grace, nobody asks");
        app.clock.advance_secs(DAY);
        assert_eq!(reconcile(&app).await, 1);
        let sub = subscription(&app, "acme").await;
        assert_eq!(sub["current_period"]["start"], at(PERIOD));
        assert_eq!(app.available("acme").await, "1000");
        assert_eq!(
            reconcile(&app).await,
            0,
            "renewed: not due before its next end"
        );
        // The next period is never paid and Stripe ends the subscription;
        // that event is lost too.
        stripe.set("sub_acme", json!({"status": "canceled"}));
        app.clock.advance_secs(PERIOD + DAY);
        assert_eq!(reconcile(&app).await, 1);
        let gone = app.get("/v1/accounts/acme/subscription").await;
        assert_eq!(gone.code(), "subscription_not_found", "{gone:?}");
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn a_change_before_the_renewal_is_paid_and_late_events_keep_the_periods_right() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        app.account_with("acme", "0").await;
        let session = bought(&app, &stripe, "acme", "basic", "sub_acme").await;
        outcome(&app, "evt_c", "checkout.session.completed", session).await;
        // The next period has begun; its invoice is not paid yet.
        app.clock.advance_secs(PERIOD + 60);
        // A change Stripe refuses (the proration could not be paid) changes
        // nothing, and may be asked again.
        stripe.push_failure(testkit::stripe::Failure::Decline);
        let change = || {
            app.send(
                Method::PUT,
                "/v1/accounts/acme/subscription",
                Some(json!({"plan_id": "team"})),
            )
        };
        let refused = change().await;
        assert_eq!(refused.code(), "payment_provider_error", "{refused:?}");
        assert_eq!(subscription(&app, "acme").await["plan_id"], "basic");
        let moved = change().await;
        assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
        // Stripe's period has rolled over: the renewal on its way grants the
        // new plan, not the change (that would pay for one period twice).
        assert_eq!(moved.body["plan_id"], "team");
        assert_eq!(app.available("acme").await, "0");
        // The renewal drafted before the change is paid: the new period is
        // granted, on the plan the subscription is on at Stripe now.
        let renewal = invoice("in_2", "sub_acme", "subscription_cycle", 1, "price_basic");
        assert_eq!(
            outcome(&app, "evt_i2", "invoice.paid", renewal).await,
            "renewed"
        );
        let sub = subscription(&app, "acme").await;
        assert_eq!(sub["plan_id"], "team");
        assert_eq!(sub["current_period"]["start"], at(PERIOD));
        assert_eq!(sub["current_period"]["granted"], "3000");
        // Stripe ends the subscription; its first invoice delivered again
        // afterwards opens nothing.
        stripe.set("sub_acme", json!({"status": "canceled"}));
        let ended = stripe.object("sub_acme").unwrap();
        assert_eq!(
            outcome(&app, "evt_d", "customer.subscription.deleted", ended).await,
            "ended"
        );
        let first = invoice("in_1", "sub_acme", "subscription_create", 0, "price_basic");
        assert_eq!(
            outcome(&app, "evt_i1", "invoice.paid", first).await,
            "ended"
        );
        let gone = app.get("/v1/accounts/acme/subscription").await;
        assert_eq!(gone.code(), "subscription_not_found", "{gone:?}");
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn a_change_made_at_stripe_for_the_next_period_is_renewed_on_the_new_plan() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        app.account_with("acme", "0").await;
        let session = bought(&app, &stripe, "acme", "basic", "sub_acme").await;
        outcome(&app, "evt_c", "checkout.session.completed", session).await;
        // A downgrade scheduled in Stripe's portal for the period's turn: the
        // next invoice bills the new plan, and arrives before the update.
        stripe.set(
            "sub_acme",
            json!({"items": {"data": [{"id": "si_sub_acme", "price": {"id": "price_team"}}]},
                   "current_period_start": bound(1), "current_period_end": bound(2)}),
        );
        app.clock.advance_secs(PERIOD + 60);
        let renewal = invoice("in_2", "sub_acme", "subscription_cycle", 1, "price_team");
        assert_eq!(
            outcome(&app, "evt_i2", "invoice.paid", renewal).await,
            "renewed"
        );
        assert_eq!(app.available("acme").await, "3000");
        let updated = stripe.object("sub_acme").unwrap();
        assert_eq!(
            outcome(&app, "evt_u", "customer.subscription.updated", updated).await,
            "duplicate"
        );
        assert_eq!(app.available("acme").await, "3000");
        assert_eq!(subscription(&app, "acme").await["plan_id"], "team");
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn an_invoice_before_its_checkout_ends_as_in_order() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        for account in ["first", "second"] {
            app.account_with(account, "0").await;
        }
        // In order: the session, then its invoice.
        let session = bought(&app, &stripe, "first", "basic", "sub_first").await;
        let invoice_1 = invoice("in_f", "sub_first", "subscription_create", 0, "price_basic");
        outcome(&app, "evt_1", "checkout.session.completed", session).await;
        outcome(&app, "evt_2", "invoice.paid", invoice_1).await;
        // Reversed: the invoice first, matched to creditd's own session
        // through Stripe.
        let session = bought(&app, &stripe, "second", "basic", "sub_second").await;
        let invoice_2 = invoice(
            "in_s",
            "sub_second",
            "subscription_create",
            0,
            "price_basic",
        );
        assert_eq!(
            outcome(&app, "evt_3", "invoice.paid", invoice_2).await,
            "subscribed"
        );
        assert_eq!(
            outcome(&app, "evt_4", "checkout.session.completed", session).await,
            "duplicate"
        );
        let (a, b) = (
            subscription(&app, "first").await,
            subscription(&app, "second").await,
        );
        for field in ["plan_id", "status", "current_period", "anchor"] {
            assert_eq!(a[field], b[field], "{field}");
        }
        let lots = |mut balance: Value| {
            for lot in balance["lots"].as_array_mut().unwrap() {
                lot["id"] = Value::Null;
            }
            (
                balance["available"].clone(),
                balance["debt"].clone(),
                balance["lots"].clone(),
            )
        };
        assert_eq!(
            lots(app.balance("first").await),
            lots(app.balance("second").await)
        );
        assert_eq!(app.available("second").await, "1000");
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn a_subscription_creditd_never_sold_grants_nothing() {
    each_store(async |app, stripe| {
        plans(&app, &stripe).await;
        app.account_with("acme", "0").await;
        // A subscription made elsewhere, whose metadata names the account.
        stripe.set(
            "sub_other",
            json!({"status": "active", "current_period_start": bound(0),
                   "current_period_end": bound(1),
                   "metadata": {"creditd_account": "acme", "creditd_plan": "pro"},
                   "items": {"data": [{"id": "si_o", "price": {"id": "price_pro"}}]}}),
        );
        let paid = invoice("in_o", "sub_other", "subscription_create", 0, "price_pro");
        assert_eq!(
            outcome(&app, "evt_o", "invoice.paid", paid).await,
            "unknown_subscription"
        );
        let updated = stripe.object("sub_other").unwrap();
        assert_eq!(
            outcome(&app, "evt_u", "customer.subscription.updated", updated).await,
            "unknown_subscription"
        );
        assert_eq!(app.available("acme").await, "0");
        // A one-off purchase's invoice is the session's to grant.
        let one_off = json!({"id": "in_p", "object": "invoice", "subscription": null,
                             "billing_reason": "manual", "lines": {"data": []}});
        assert_eq!(
            outcome(&app, "evt_p", "invoice.paid", one_off).await,
            "ignored"
        );
    })
    .await;
}

/// Opens `acme` and checks out the package `p100` (100 credits for 5 USD),
/// its session paid by the payment intent `intent` once it is paid;
/// answers the session's id.
async fn package_checkout(app: &TestApp, stripe: &FakeStripe, intent: &str) -> String {
    package(app).await;
    app.account_with("acme", "0").await;
    let session = checkout(app, "acme", json!({"package_id": "p100"})).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    stripe.set(intent, json!({"metadata": {}, "amount": 500}));
    stripe.set(&session, json!({"payment_intent": intent}));
    session
}

#[tokio::test]
async fn a_refund_takes_back_its_share_into_debt_once() {
    each_store(async |app, stripe| {
        let session = package_checkout(&app, &stripe, "pi_acme").await;
        let charge = |refunded: i64| {
            json!({"id": "ch_acme", "object": "charge", "amount": 500, "currency": "usd",
                   "amount_refunded": refunded, "refunded": refunded == 500,
                   "payment_intent": "pi_acme"})
        };
        let object = paid(&stripe, &session);
        outcome(&app, "evt_c", "checkout.session.completed", object).await;
        app.post("/v1/accounts/acme/consume", json!({"amount": "80"}))
            .await;
        // Half refunded: 50 credits back, 20 left in the purchase, 30 as
        // debt.
        assert_eq!(
            outcome(&app, "evt_r1", "charge.refunded", charge(250)).await,
            "refunded"
        );
        assert_eq!(
            outcome(&app, "evt_r1", "charge.refunded", charge(250)).await,
            "duplicate"
        );
        let balance = app.balance("acme").await;
        assert_eq!(
            (balance["available"].as_str(), balance["debt"].as_str()),
            (Some("-30"), Some("30"))
        );
        // The rest refunded, then the first event delivered late.
        assert_eq!(
            outcome(&app, "evt_r2", "charge.refunded", charge(500)).await,
            "refunded"
        );
        assert_eq!(
            outcome(&app, "evt_r1", "charge.refunded", charge(250)).await,
            "duplicate"
        );
        let balance = app.balance("acme").await;
        assert_eq!(balance["debt"], "80", "{balance}");
        let clawed = app
            .get("/v1/accounts/acme/transactions?type=claw_back")
            .await;
        assert_eq!(clawed.status, StatusCode::OK, "{clawed:?}");
        assert_eq!(
            clawed.body["data"].as_array().unwrap().len(),
            2,
            "{clawed:?}"
        );
        // A later purchase pays the debt off first.
        app.post(
            "/v1/accounts/acme/grants",
            json!({"amount": "100", "source": "admin"}),
        )
        .await;
        assert_eq!(app.available("acme").await, "20");
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn a_refund_before_its_grant_is_taken_back_when_the_grant_lands() {
    each_store(async |app, stripe| {
        let session = package_checkout(&app, &stripe, "pi_early").await;
        let charge = |refunded: i64| {
            json!({"id": "ch_early", "object": "charge", "amount": 500, "currency": "usd",
                   "amount_refunded": refunded, "payment_intent": "pi_early"})
        };
        let settle = async || {
            billing::payments::refund::settle_pending(&billing(&app))
                .await
                .unwrap()
        };
        assert_eq!(
            outcome(&app, "evt_r1", "charge.refunded", charge(250)).await,
            "refund_pending"
        );
        assert_eq!(
            outcome(&app, "evt_r1", "charge.refunded", charge(250)).await,
            "duplicate"
        );
        assert_eq!(settle().await, 0, "nothing granted yet");
        let object = paid(&stripe, &session);
        outcome(&app, "evt_c", "checkout.session.completed", object).await;
        assert_eq!(app.available("acme").await, "100");
        assert_eq!(settle().await, 1);
        assert_eq!(settle().await, 0);
        assert_eq!(app.available("acme").await, "50");
        assert_eq!(
            outcome(&app, "evt_r2", "charge.refunded", charge(500)).await,
            "refunded"
        );
        assert_eq!(app.available("acme").await, "0");
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn concurrent_refund_events_take_back_once() {
    each_store(async |app, stripe| {
        let session = package_checkout(&app, &stripe, "pi_c").await;
        let object = paid(&stripe, &session);
        outcome(&app, "evt_c", "checkout.session.completed", object).await;
        let charge = json!({"id": "ch_c", "object": "charge", "amount": 500, "currency": "usd",
                            "amount_refunded": 500, "refunded": true, "payment_intent": "pi_c"});
        let app = std::sync::Arc::new(app);
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (app, body) = (
                app.clone(),
                event(&format!("evt_{i}"), "charge.refunded", charge.clone()),
            );
            tasks.push(tokio::spawn(
                async move { deliver(&app, &body, None).await },
            ));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            let (status, answer) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{answer}");
            outcomes.push(answer["outcome"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            outcomes.iter().filter(|o| *o == "refunded").count(),
            1,
            "{outcomes:?}"
        );
        let balance = app.balance("acme").await;
        assert_eq!(
            (balance["available"].as_str(), balance["debt"].as_str()),
            (Some("0"), Some("0"))
        );
        app.assert_verified().await;
    })
    .await;
}

#[tokio::test]
async fn a_refunded_auto_top_up_is_taken_back() {
    each_store(async |app, stripe| {
        app.account_with("acme", "0").await;
        save_card(&app, &stripe, "acme").await;
        assert_eq!(enable_topup(&app, "acme").await, StatusCode::OK);
        run_topups(&app).await;
        let granted = topups(&app, "acme").await;
        assert_eq!(granted.len(), 1, "{granted:?}");
        let intent = granted[0]["metadata"]["payment_intent"]
            .as_str()
            .unwrap()
            .to_owned();
        app.post("/v1/accounts/acme/consume", json!({"amount": "1500"}))
            .await;
        // Half of the 20 USD refunded: 1000 of its 2000 credits back, 500
        // of them left, 500 as debt.
        let charge = json!({"id": "ch_topup", "object": "charge", "amount": 2000,
                            "amount_refunded": 1000, "currency": "usd",
                            "payment_intent": intent});
        assert_eq!(
            outcome(&app, "evt_r", "charge.refunded", charge.clone()).await,
            "refunded"
        );
        assert_eq!(
            outcome(&app, "evt_r", "charge.refunded", charge).await,
            "duplicate"
        );
        let balance = app.balance("acme").await;
        assert_eq!(balance["debt"], "500", "{balance}");
        app.assert_verified().await;
    })
    .await;
}
