//! The worked example of a monetary credit system, from a free plan into billed overage.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

billing_test! {
    #[tokio::test]
    async fn a_free_plan_runs_out_and_pro_bills_its_overage_once_at_the_period_end(app) {
        for (feature, price) in [("small", "0.1"), ("medium", "1"), ("large", "5")] {
            let put = app
                .send(
                    Method::PUT,
                    &format!("/v1/features/{feature}"),
                    Some(json!({ "credits_per_unit": price })),
                )
                .await;
            assert_eq!(put.status, StatusCode::OK, "{put:?}");
        }
        plan(
            &app,
            "free",
            json!({"name": "Free", "credits": "500", "interval": "month", "default": true}),
        )
        .await;

        // A new account is on the free plan, with its 500 credits.
        let opened = app.post("/v1/accounts", json!({"id": "u"})).await;
        assert_eq!(opened.status, StatusCode::CREATED, "{opened:?}");
        assert_eq!(opened.body["grants"][0]["amount"], "500");
        assert_eq!(opened.body["grants"][0]["source"], "subscription");
        assert_eq!(app.available("u").await, "500");

        // 2,000 small and 60 large tokens use exactly 500.
        assert_eq!(use_feature(&app, "u", "small", 2_000).await.status, StatusCode::OK);
        assert_eq!(use_feature(&app, "u", "large", 60).await.status, StatusCode::OK);
        assert_eq!(app.available("u").await, "0");
        let check = app
            .post("/v1/accounts/u/check", json!({"feature": "small", "quantity": "1"}))
            .await;
        assert_eq!(check.body["allowed"], false, "{check:?}");

        // Pro: 10,000 credits a month, overage at one cent a credit.
        plan(
            &app,
            "pro",
            json!({
                "name": "Pro", "credits": "10000", "interval": "month",
                "price": {"amount": 2000, "currency": "usd"},
                "overage": {"unit_price": "1", "currency": "usd"}
            }),
        )
        .await;
        app.clock.advance_secs(3_600);
        let moved = subscribe(&app, "u", "pro").await;
        assert_eq!(moved["plan_id"], "pro");
        assert_eq!(moved["current_period"]["granted"], "10000");
        let check = app
            .post("/v1/accounts/u/check", json!({"feature": "large", "quantity": "10000"}))
            .await;
        assert_eq!(check.body["allowed"], true, "{check:?}");
        assert_eq!(check.body["overage"], "40000");

        for (feature, quantity) in [("small", 50_000), ("medium", 10_000), ("large", 1_000)] {
            let used = use_feature(&app, "u", feature, quantity).await;
            assert_eq!(used.status, StatusCode::OK, "{used:?}");
        }
        let balance = app.balance("u").await;
        assert_eq!((&balance["available"], &balance["debt"]), (&json!("-10000"), &json!("10000")));
        let sub = app.get("/v1/accounts/u/subscription").await;
        assert_eq!(sub.body["current_period"]["used"], "20000");
        assert_eq!(sub.body["current_period"]["overage_credits"], "10000");
        assert_eq!(
            sub.body["current_period"]["overage_due"],
            json!({"amount": 10_000, "currency": "usd"})
        );

        // The period closes: the renewal runs twice, and twice at once.
        app.clock.advance_secs(31 * 86_400);
        let (a, b) = tokio::join!(renew(&app), renew(&app));
        assert_eq!(a + b, 1);
        assert_eq!(renew(&app).await, 0);
        let charges = app.get("/v1/accounts/u/overage-charges").await;
        assert_eq!(charges.status, StatusCode::OK, "{charges:?}");
        let data = charges.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "{charges:?}");
        assert_eq!(data[0]["credits"], "10000");
        assert_eq!(data[0]["amount_due"], json!({"amount": 10_000, "currency": "usd"}));
        assert_eq!(data[0]["plan_id"], "pro");
        let balance = app.balance("u").await;
        assert_eq!((&balance["available"], &balance["debt"]), (&json!("10000"), &json!("0")));
        let sub = app.get("/v1/accounts/u/subscription").await;
        assert_eq!(sub.body["current_period"]["start"], "2027-02-15T09:00:00.000000Z");
        assert_eq!(sub.body["current_period"]["granted"], "10000");
        let totals = app.get("/v1/accounts/u/balance?include=totals").await;
        assert_eq!(totals.body["totals"]["settled"], "10000");
        app.assert_verified().await;
    }
}
