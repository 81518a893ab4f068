//! Periods: reset and rollover, expiry at the period's end, month-end anchors, catching up after
//! downtime, moving between plans, and cancelling back to the default plan.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

const DAY: i64 = 86_400;

/// Lots of one source with credits left, summed.
async fn held_by(app: &testkit::app::TestApp, account: &str, source: &str) -> String {
    let balance = app.balance(account).await;
    let total: f64 = 0.0;
    let _ = total;
    let lots: Vec<String> = balance["lots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["source"] == source)
        .map(|l| l["remaining"].as_str().unwrap().to_owned())
        .collect();
    let micros: i64 = lots
        .iter()
        .map(|r| ledger::Amount::parse_decimal(r).unwrap().micros())
        .sum();
    ledger::Amount::from_micros(micros).to_string()
}

billing_test! {
    #[tokio::test]
    async fn reset_replaces_the_plan_credits_and_leaves_purchased_ones_alone(app) {
        plan(&app, "basic", json!({"name": "Basic", "credits": "100", "interval": "month"})).await;
        app.account_with("u", "0").await;
        subscribe(&app, "u", "basic").await;
        app.clock.advance_secs(60);
        app.post("/v1/accounts/u/grants", json!({"amount": "30", "source": "purchase"})).await;
        // Plan credits burn before the purchase: both permanent, the plan's older.
        app.post("/v1/accounts/u/consume", json!({"amount": "40"})).await;
        for period in 1..=3 {
            app.clock.advance_secs(31 * DAY);
            assert_eq!(renew(&app).await, 1, "period {period}");
            assert_eq!(held_by(&app, "u", "subscription").await, "100");
            assert_eq!(held_by(&app, "u", "purchase").await, "30");
        }
        assert_eq!(app.available("u").await, "130");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn rollover_carries_up_to_the_cap_over_three_periods(app) {
        plan(
            &app,
            "roll",
            json!({"name": "Roll", "credits": "100", "interval": "month",
                   "allocation": "rollover", "rollover_cap": "150"}),
        )
        .await;
        app.account_with("u", "0").await;
        subscribe(&app, "u", "roll").await;
        app.clock.advance_secs(60);
        app.post("/v1/accounts/u/grants", json!({"amount": "25", "source": "purchase"})).await;
        app.post("/v1/accounts/u/consume", json!({"amount": "20"})).await;
        // Period 1 ends with 80 left: all carried. Period 2 ends with 100
        // left: 70 more fit under the cap of 150. Period 3: nothing fits.
        let mut expected = ["80", "150", "150"].into_iter();
        for period in 1..=3 {
            app.clock.advance_secs(31 * DAY);
            assert_eq!(renew(&app).await, 1, "period {period}");
            assert_eq!(held_by(&app, "u", "rollover").await, expected.next().unwrap());
            assert_eq!(held_by(&app, "u", "subscription").await, "100");
            assert_eq!(held_by(&app, "u", "purchase").await, "25");
        }
        let totals = app.get("/v1/accounts/u/balance?include=totals").await;
        // Expired: 30 in period 2 and 100 in period 3.
        assert_eq!(totals.body["totals"]["expired"], "130");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn credits_that_expire_at_the_period_end_stop_there_before_the_renewal_runs(app) {
        plan(
            &app,
            "strict",
            json!({"name": "Strict", "credits": "100", "interval": "week",
                   "credits_expire_at_period_end": true}),
        )
        .await;
        app.account_with("u", "0").await;
        subscribe(&app, "u", "strict").await;
        let balance = app.balance("u").await;
        assert_eq!(balance["lots"][0]["expires_at"], at(7 * DAY));
        app.clock.advance_secs(7 * DAY);
        // The renewal has not run yet: the credits are gone all the same.
        assert_eq!(app.available("u").await, "0");
        assert_eq!(renew(&app).await, 1);
        assert_eq!(app.available("u").await, "100");
        let lots = app.balance("u").await["lots"].clone();
        assert_eq!(lots[0]["expires_at"], at(14 * DAY));
    }
}

billing_test! {
    #[tokio::test]
    async fn monthly_periods_keep_the_anchors_day_clamped_to_each_month(app) {
        plan(&app, "m", json!({"name": "M", "credits": "10", "interval": "month"})).await;
        app.account_with("u", "0").await;
        // Anchored on January 31st, 08:00.
        let moved = app
            .send(
                Method::PUT,
                "/v1/accounts/u/subscription",
                Some(json!({"plan_id": "m", "anchor": "2027-01-31T08:00:00Z"})),
            )
            .await;
        assert_eq!(moved.status, StatusCode::BAD_REQUEST, "an anchor in the future: {moved:?}");
        app.clock.set(ledger::Timestamp::parse_rfc3339("2027-01-31T09:00:00Z").unwrap());
        let moved = app
            .send(
                Method::PUT,
                "/v1/accounts/u/subscription",
                Some(json!({"plan_id": "m", "anchor": "2027-01-31T08:00:00Z"})),
            )
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
        assert_eq!(moved.body["current_period"]["end"], "2027-02-28T08:00:00.000000Z");
        let mut ends = Vec::new();
        for _ in 0..3 {
            let end = app.get("/v1/accounts/u/subscription").await.body["current_period"]["end"]
                .as_str()
                .unwrap()
                .to_owned();
            app.clock.set(ledger::Timestamp::parse_rfc3339(&end).unwrap());
            assert_eq!(renew(&app).await, 1);
            ends.push(
                app.get("/v1/accounts/u/subscription").await.body["current_period"]["end"].clone(),
            );
        }
        assert_eq!(
            ends,
            [
                json!("2027-03-31T08:00:00.000000Z"),
                json!("2027-04-30T08:00:00.000000Z"),
                json!("2027-05-31T08:00:00.000000Z")
            ]
        );
    }
}

billing_test! {
    #[tokio::test]
    async fn after_two_periods_down_the_renewal_catches_up_period_by_period(app) {
        plan(
            &app,
            "weekly",
            json!({"name": "Weekly", "credits": "10", "interval": "week",
                   "allocation": "rollover", "rollover_cap": "15"}),
        )
        .await;
        plan(
            &app,
            "weekly_strict",
            json!({"name": "Weekly strict", "credits": "10", "interval": "week",
                   "credits_expire_at_period_end": true}),
        )
        .await;
        app.account_with("roll", "0").await;
        app.account_with("strict", "0").await;
        subscribe(&app, "roll", "weekly").await;
        subscribe(&app, "strict", "weekly_strict").await;
        // Down for two and a half weeks: the boundaries at days 7 and 14
        // passed, two renewals for each subscription.
        app.clock.advance_secs(17 * DAY + 12 * 3_600);
        assert_eq!(renew(&app).await, 4);
        // As if each renewal had run on time: 10 carried at day 7 (20 held),
        // 15 (the cap) at day 14; and the strict plan's past weeks expired.
        assert_eq!(held_by(&app, "roll", "rollover").await, "15");
        assert_eq!(app.available("roll").await, "25");
        assert_eq!(app.available("strict").await, "10");
        let sub = app.get("/v1/accounts/strict/subscription").await;
        assert_eq!(sub.body["current_period"]["start"], at(14 * DAY));
        let grants = app.get("/v1/accounts/strict/transactions?type=grant&limit=10").await;
        let grants = grants.body["data"].as_array().unwrap().clone();
        assert_eq!(grants.len(), 3);
        let expired = app.get("/v1/accounts/strict/transactions?type=expire&limit=10").await;
        assert_eq!(expired.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(renew(&app).await, 0);
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_plan_change_mid_period_closes_the_old_plan_and_starts_the_new_one_full(app) {
        plan(&app, "small", json!({"name": "Small", "credits": "100", "interval": "month"})).await;
        plan(
            &app,
            "big",
            json!({"name": "Big", "credits": "1000", "interval": "month",
                   "price": {"amount": 5000, "currency": "usd"}}),
        )
        .await;
        app.account_with("u", "7").await;
        subscribe(&app, "u", "small").await;
        app.clock.advance_secs(10 * DAY);
        app.post("/v1/accounts/u/consume", json!({"amount": "30"})).await;
        app.clock.advance_secs(1);
        let moved = subscribe(&app, "u", "big").await;
        assert_eq!(moved["current_period"]["start"], at(10 * DAY + 1));
        assert_eq!(moved["current_period"]["granted"], "1000");
        // What was spent on the small plan is not the big plan's usage.
        assert_eq!(moved["current_period"]["used"], "0");
        assert_eq!(held_by(&app, "u", "subscription").await, "1000");
        // The 30 came from the small plan's credits; the purchase of 7, older,
        // burns after the plan's and is still there.
        assert_eq!(held_by(&app, "u", "purchase").await, "7");
        // Subscribing again to the same plan changes nothing.
        let again = subscribe(&app, "u", "big").await;
        assert_eq!(again, moved);
        assert_eq!(app.available("u").await, "1007");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_cancelled_subscription_moves_to_the_default_plan_at_the_period_end(app) {
        plan(&app, "free", json!({"name": "Free", "credits": "5", "interval": "month", "default": true})).await;
        plan(&app, "pro", json!({"name": "Pro", "credits": "100", "interval": "month"})).await;
        app.account_with("u", "0").await;
        assert_eq!(app.get("/v1/accounts/u/subscription").await.body["plan_id"], "free");
        subscribe(&app, "u", "pro").await;
        let canceled = app.send(Method::DELETE, "/v1/accounts/u/subscription", None).await;
        assert_eq!(canceled.status, StatusCode::OK, "{canceled:?}");
        assert_eq!(canceled.body["status"], "canceling");
        assert_eq!(app.available("u").await, "100");
        app.clock.advance_secs(31 * DAY);
        assert_eq!(renew(&app).await, 1);
        let sub = app.get("/v1/accounts/u/subscription").await;
        assert_eq!(sub.body["plan_id"], "free");
        assert_eq!(sub.body["status"], "active");
        assert_eq!(app.available("u").await, "5");
        // With no default plan, a cancelled subscription simply ends.
        app.send(Method::PATCH, "/v1/settings/credits", Some(json!({"default_plan": null}))).await;
        app.send(Method::DELETE, "/v1/accounts/u/subscription", None).await;
        app.clock.advance_secs(31 * DAY);
        assert_eq!(renew(&app).await, 1);
        assert_eq!(
            app.get("/v1/accounts/u/subscription").await.code(),
            "subscription_not_found"
        );
        assert_eq!(app.available("u").await, "0");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_move_onto_a_plan_counts_only_what_is_spent_after_it(app) {
        plan(&app, "free", json!({"name": "Free", "credits": "1000", "interval": "month"})).await;
        plan(
            &app,
            "pro",
            json!({"name": "Pro", "credits": "5000", "interval": "month",
                   "price": {"amount": 2000, "currency": "usd"},
                   "overage": {"unit_price": "1", "currency": "usd"}}),
        )
        .await;
        app.account_with("u", "0").await;
        subscribe(&app, "u", "free").await;
        app.clock.advance_secs(10 * DAY);
        let spent = app.post("/v1/accounts/u/consume", json!({"amount": "500"})).await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        app.clock.advance_secs(60);
        // Pro, keeping the billing day the account opened with: its period
        // began ten days ago, but the account moved onto it only now.
        let moved = app
            .send(
                Method::PUT,
                "/v1/accounts/u/subscription",
                Some(json!({"plan_id": "pro", "anchor": at(0)})),
            )
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
        let period = &moved.body["current_period"];
        assert_eq!(period["start"], at(0));
        assert_eq!(period["used"], "0", "{period}");
        assert_eq!(period["overage_credits"], "0", "{period}");
        assert_eq!(period["overage_due"], json!({"amount": 0, "currency": "usd"}));

        // What it spends now is Pro's.
        app.clock.advance_secs(60);
        app.post("/v1/accounts/u/consume", json!({"amount": "5200"})).await;
        let sub = app.get("/v1/accounts/u/subscription").await;
        let period = &sub.body["current_period"];
        assert_eq!(period["used"], "5200", "{period}");
        assert_eq!(period["overage_credits"], "200", "{period}");
        assert_eq!(period["overage_due"], json!({"amount": 200, "currency": "usd"}));
        app.assert_verified().await;
    }
}

billing_test! {
    /// Bought credits are the customer's own money: a plan's credits burn
    /// before them, so nothing bought is spent while a plan's credits wait
    /// to expire or to pass a rollover cap.
    #[tokio::test]
    async fn purchased_credits_burn_after_the_plans_on_rollover_and_reset(app) {
        plan(
            &app,
            "daily_rollover",
            json!({"name": "Rollover", "credits": "100", "interval": "day",
                   "allocation": "rollover", "rollover_cap": "150"}),
        )
        .await;
        plan(&app, "daily_reset", json!({"name": "Reset", "credits": "100", "interval": "day"}))
            .await;
        for (account, plan_id, due) in [("r", "daily_rollover", "290"), ("s", "daily_reset", "150")] {
            // 50 bought before the plan, then 30 spent a day.
            app.account_with(account, "50").await;
            app.clock.advance_secs(1);
            subscribe(&app, account, plan_id).await;
            for day in 0..2 {
                let spent = app
                    .post(&format!("/v1/accounts/{account}/consume"), json!({"amount": "30"}))
                    .await;
                assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
                assert_eq!(held_by(&app, account, "purchase").await, "50", "day {day}");
                app.clock.advance_secs(DAY);
                assert!(renew(&app).await >= 1, "day {day}");
            }
            assert_eq!(held_by(&app, account, "purchase").await, "50", "{plan_id}");
            assert_eq!(app.available(account).await, due, "{plan_id}");
        }
        app.assert_verified().await;
    }
}
