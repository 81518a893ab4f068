//! Plans and subscriptions: what is stored, what is refused, and the default plan.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

async fn put_plan(app: &TestApp, id: &str, body: Value) -> Reply {
    app.send(Method::PUT, &format!("/v1/plans/{id}"), Some(body))
        .await
}

billing_test! {
    #[tokio::test]
    async fn a_plan_is_stored_whole_and_read_back(app) {
        let stored = plan(
            &app,
            "pro",
            json!({
                "name": "Pro", "credits": "10000.5", "interval": "month", "interval_count": 3,
                "allocation": "rollover", "rollover_cap": 20000,
                "price": {"amount": 2000, "currency": "usd"},
                "provider_price_id": "price_123",
                "overage": {"unit_price": "0.25", "currency": "usd", "cap": "5000"}
            }),
        )
        .await;
        assert_eq!(stored["id"], "pro");
        assert_eq!(stored["credits"], "10000.5");
        assert_eq!(stored["interval_count"], 3);
        assert_eq!(stored["rollover_cap"], "20000");
        assert_eq!(stored["overage"]["cap"], "5000");
        assert_eq!(stored["default"], false);
        assert_eq!(stored["created_at"], at(0));
        let got = app.get("/v1/plans/pro").await;
        assert_eq!(got.body, stored);

        // PUT replaces it whole: what is not sent is gone.
        app.clock.advance_secs(60);
        let replaced = plan(&app, "pro", json!({"name": "Pro", "credits": "1", "interval": "day"})).await;
        assert_eq!(replaced["allocation"], "reset");
        assert_eq!(replaced["overage"], Value::Null);
        assert_eq!(replaced["price"], Value::Null);
        assert_eq!(replaced["created_at"], at(0));
        assert_eq!(replaced["updated_at"], at(60));
        plan(&app, "basic", json!({"name": "Basic", "credits": "0", "interval": "year"})).await;
        let list = app.get("/v1/plans").await;
        let ids: Vec<_> = list.body["data"].as_array().unwrap().iter().map(|p| p["id"].clone()).collect();
        assert_eq!(ids, [json!("basic"), json!("pro")]);
    }
}

billing_test! {
    #[tokio::test]
    async fn a_bad_plan_is_refused_with_its_reason_and_nothing_is_stored(app) {
        let base = json!({"name": "P", "credits": "10", "interval": "month"});
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            body
        };
        let cases = [
            (with("credits", json!("-1")), "invalid_amount"),
            (with("credits", json!("ten")), "invalid_amount"),
            (with("interval", json!("fortnight")), "invalid_interval"),
            (with("interval_count", json!(0)), "invalid_interval"),
            (with("interval_count", json!(121)), "invalid_interval"),
            (with("name", json!(" ")), "invalid_plan"),
            (with("rollover_cap", json!("5")), "invalid_plan"),
            (json!({"name": "P", "credits": "10", "interval": "month", "allocation": "rollover",
                    "credits_expire_at_period_end": true}), "invalid_plan"),
            (with("price", json!({"amount": -1, "currency": "usd"})), "invalid_money"),
            (with("price", json!({"amount": 100, "currency": "dollars"})), "invalid_request"),
            (with("overage", json!({"unit_price": "-1", "currency": "usd"})), "invalid_price"),
            (with("overage", json!({"unit_price": "1", "currency": "usd", "cap": "-5"})), "invalid_amount"),
            (with("allocation", json!("keep")), "invalid_request"),
            (with("colour", json!("red")), "invalid_request"),
            (json!({"name": "P", "interval": "month"}), "invalid_request"),
        ];
        for (body, code) in cases {
            let refused = put_plan(&app, "p", body.clone()).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {refused:?}");
            assert_eq!(refused.code(), code, "{body}: {refused:?}");
        }
        let bad_id = put_plan(&app, "no%20spaces", base.clone()).await;
        assert_eq!(bad_id.code(), "invalid_id", "{bad_id:?}");
        let missing = app.get("/v1/plans/p").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.code(), "plan_not_found");
        assert_eq!(app.get("/v1/plans").await.body["data"], json!([]));
    }
}

billing_test! {
    #[tokio::test]
    async fn one_plan_at_most_is_the_default(app) {
        let free = plan(&app, "free", json!({"name": "Free", "credits": "5", "interval": "month",
                                              "default": true})).await;
        assert_eq!(free["default"], true);
        let settings = app.get("/v1/settings/credits").await.body;
        assert_eq!((&settings["default_plan"], &settings["sources"]["default_plan"]), (&json!("free"), &json!("api")));
        let second = put_plan(&app, "trial", json!({"name": "Trial", "credits": "1",
                                                    "interval": "day", "default": true})).await;
        assert_eq!(second.status, StatusCode::CONFLICT, "{second:?}");
        assert_eq!(second.code(), "default_plan_exists");
        assert!(second.text.contains("free"), "{second:?}");
        assert_eq!(app.get("/v1/plans/trial").await.status, StatusCode::NOT_FOUND);

        // The default opens every new account on it.
        let opened = app.post("/v1/accounts", json!({"id": "u"})).await;
        assert_eq!(opened.body["grants"][0]["amount"], "5");
        let sub = app.get("/v1/accounts/u/subscription").await;
        assert_eq!(sub.body["plan_id"], "free", "{sub:?}");
        assert_eq!(sub.body["current_period"]["start"], at(0));

        // Taken away from it, another may be the default.
        let off = plan(&app, "free", json!({"name": "Free", "credits": "5", "interval": "month",
                                             "default": false})).await;
        assert_eq!(off["default"], false);
        plan(&app, "trial", json!({"name": "Trial", "credits": "1", "interval": "day",
                                   "default": true})).await;
        let opened = app.post("/v1/accounts", json!({"id": "v"})).await;
        assert_eq!(opened.body["grants"][0]["amount"], "1");
        // Or none at all, through the settings.
        let none = app
            .send(Method::PATCH, "/v1/settings/credits", Some(json!({"default_plan": null})))
            .await;
        assert_eq!(none.body["default_plan"], Value::Null, "{none:?}");
        let opened = app.post("/v1/accounts", json!({"id": "w"})).await;
        assert_eq!(opened.body["grants"], json!([]));
        let sub = app.get("/v1/accounts/w/subscription").await;
        assert_eq!(sub.status, StatusCode::NOT_FOUND);
        assert_eq!(sub.code(), "subscription_not_found");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn subscribing_needs_an_account_and_a_plan(app) {
        plan(&app, "basic", json!({"name": "Basic", "credits": "10", "interval": "month"})).await;
        app.account_with("u", "0").await;
        let put = |account: &str, body: Value| {
            let path = format!("/v1/accounts/{account}/subscription");
            let app = &app;
            async move { app.send(Method::PUT, &path, Some(body)).await }
        };
        let no_plan = put("u", json!({"plan_id": "ghost"})).await;
        assert_eq!((no_plan.status, no_plan.code()), (StatusCode::NOT_FOUND, "plan_not_found"));
        let no_account = put("ghost", json!({"plan_id": "basic"})).await;
        assert_eq!((no_account.status, no_account.code()), (StatusCode::NOT_FOUND, "account_not_found"));
        let future = put("u", json!({"plan_id": "basic", "anchor": at(60)})).await;
        assert_eq!(future.status, StatusCode::BAD_REQUEST, "{future:?}");
        let unknown = put("u", json!({"plan_id": "basic", "trial": true})).await;
        assert_eq!(unknown.code(), "invalid_request", "{unknown:?}");
        let cancel = app.send(Method::DELETE, "/v1/accounts/u/subscription", None).await;
        assert_eq!(cancel.code(), "subscription_not_found", "{cancel:?}");
        assert_eq!(app.available("u").await, "0");

        // Anchored in the past: the period it is in now, granted once.
        let anchored = put("u", json!({"plan_id": "basic", "anchor": START.plus_secs(-40 * 86_400).to_string()})).await;
        assert_eq!(anchored.status, StatusCode::OK, "{anchored:?}");
        assert_eq!(anchored.body["status"], "active");
        let start = anchored.body["current_period"]["start"].as_str().unwrap().to_owned();
        assert!(start.as_str() <= at(0).as_str() && start.as_str() > at(-31 * 86_400).as_str(), "{start}");
        assert_eq!(app.available("u").await, "10");
        let again = put("u", json!({"plan_id": "basic"})).await;
        assert_eq!(again.body["current_period"]["start"], start.as_str());
        assert_eq!(app.available("u").await, "10");
        app.assert_verified().await;
    }
}

billing_test! {
    /// The fuzzer's find: one key, `free` then `other` then `free` again,
    /// applied all three and granted the free plan twice.
    #[tokio::test]
    async fn a_subscription_change_under_one_idempotency_key_happens_once(app) {
        plan(&app, "free", json!({"name": "Free", "credits": "100", "interval": "month"})).await;
        plan(&app, "other", json!({"name": "Other", "credits": "300", "interval": "month"})).await;
        app.account_with("u", "0").await;
        let put = |plan: &'static str, key: &'static str| {
            let app = &app;
            async move {
                app.send_as(Some(testkit::app::KEY), Method::PUT, "/v1/accounts/u/subscription",
                            &[("idempotency-key", key)], Some(json!({"plan_id": plan})))
                    .await
            }
        };
        let first = put("free", "change-1").await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        assert_eq!(app.available("u").await, "100");
        app.clock.advance_secs(60);
        let other = put("other", "change-1").await;
        assert_eq!((other.status, other.code()), (StatusCode::CONFLICT, "idempotency_conflict"), "{other:?}");
        let again = put("free", "change-1").await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body, first.body);
        // Nothing moved: still on free, its credits granted once.
        assert_eq!(app.get("/v1/accounts/u/subscription").await.body["plan_id"], "free");
        assert_eq!(app.available("u").await, "100");

        let cancel = |key: &'static str| {
            let app = &app;
            async move {
                app.send_as(Some(testkit::app::KEY), Method::DELETE, "/v1/accounts/u/subscription",
                            &[("idempotency-key", key)], None)
                    .await
            }
        };
        let malformed = cancel("two words").await;
        assert_eq!(malformed.code(), "invalid_request", "{malformed:?}");
        assert_eq!(app.get("/v1/accounts/u/subscription").await.body["cancel_at_period_end"], false);
        let canceled = cancel("cancel-1").await;
        assert_eq!(canceled.body["cancel_at_period_end"], true, "{canceled:?}");
        // Taken back, then the same cancel retried: the first answer, nothing done.
        put("free", "keep-1").await;
        let retried = cancel("cancel-1").await;
        assert_eq!(retried.headers["idempotent-replayed"], "true");
        assert_eq!(app.get("/v1/accounts/u/subscription").await.body["cancel_at_period_end"], false);
        app.assert_verified().await;
    }
}
