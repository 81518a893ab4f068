//! Credit settings: defaults, the environment's values, the API's over them; and the sign-up
//! bonus they describe.

use std::sync::Arc;

use billing::EnvSettings;
use ledger::Amount;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::{Clock, Store};

use crate::support::*;

/// Billing as a server started with `CREDITD_SIGNUP_BONUS_ENABLED=true`,
/// `CREDITD_SIGNUP_BONUS_AMOUNT=50`, `CREDITD_SIGNUP_BONUS_EXPIRE_DAYS=30`,
/// `CREDITD_DAILY_EXPIRE_DAYS=2` and `CREDITD_ALLOW_FREE_USER_PURCHASE=true`.
fn bonus_env(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Plugged {
    with_env(
        store,
        clock,
        EnvSettings {
            signup_bonus_enabled: Some(true),
            signup_bonus_amount: Some(Amount::credits(50)),
            signup_bonus_expire_days: Some(30),
            daily_expire_days: Some(2),
            allow_free_user_purchase: Some(true),
            ..EnvSettings::default()
        },
    )
}

async fn patch(app: &TestApp, body: Value) -> Reply {
    app.send(Method::PATCH, "/v1/settings/credits", Some(body))
        .await
}

const DAY: i64 = 86_400;

billing_test! {
    #[tokio::test]
    async fn with_nothing_set_every_setting_is_its_default(app) {
        let got = app.get("/v1/settings/credits").await;
        assert_eq!(got.status, StatusCode::OK, "{got:?}");
        let body = got.body;
        assert_eq!(body["signup_bonus"], json!({"enabled": false, "amount": "0", "expire_days": null}));
        assert_eq!(body["daily_reward"], json!({"enabled": false, "amount": "0", "expire_days": null}));
        assert_eq!(body["allow_free_user_purchase"], false);
        assert_eq!(body["default_plan"], Value::Null);
        assert_eq!(body["priorities"]["daily_reward"], 10);
        assert_eq!(body["priorities"]["purchase"], 90);
        assert_eq!(body["priorities"]["auto_topup"], 90);
        assert_eq!(body["priorities"]["admin"], 50);
        let sources = body["sources"].as_object().unwrap();
        assert!(sources.values().all(|s| s == "default"), "{sources:?}");
        // No bonus: a new account opens empty.
        let opened = app.post("/v1/accounts", json!({"id": "u"})).await;
        assert_eq!(opened.body["grants"], json!([]));
    }
}

billing_test! {
    #[tokio::test]
    async fn the_environment_sets_the_bonus_and_the_api_wins_over_it(app) with bonus_env {
        let got = app.get("/v1/settings/credits").await.body;
        assert_eq!(got["signup_bonus"], json!({"enabled": true, "amount": "50", "expire_days": 30}));
        assert_eq!(got["allow_free_user_purchase"], true);
        assert_eq!(got["sources"]["signup_bonus.amount"], "env");
        assert_eq!(got["sources"]["signup_bonus.expire_days"], "env");
        assert_eq!(got["sources"]["daily_reward.amount"], "default");
        assert_eq!(got["daily_reward"]["expire_days"], 2);
        assert_eq!(got["sources"]["daily_reward.expire_days"], "env");

        let opened = app.post("/v1/accounts", json!({"id": "first"})).await;
        assert_eq!(opened.status, StatusCode::CREATED, "{opened:?}");
        let bonus = &opened.body["grants"][0];
        assert_eq!(bonus["amount"], "50");
        assert_eq!(bonus["source"], "signup_bonus");
        assert_eq!(bonus["expires_at"], at(30 * DAY));
        assert_eq!(app.available("first").await, "50");

        let set = patch(&app, json!({"signup_bonus": {"amount": "75", "expire_days": null}})).await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        assert_eq!(set.body["signup_bonus"]["amount"], "75");
        assert_eq!(set.body["sources"]["signup_bonus.amount"], "api");
        assert_eq!(set.body["sources"]["signup_bonus.expire_days"], "api");
        assert_eq!(set.body["sources"]["signup_bonus.enabled"], "env");
        assert_eq!(app.get("/v1/settings/credits").await.body, set.body);

        let opened = app.post("/v1/accounts", json!({"id": "second"})).await;
        let bonus = &opened.body["grants"][0];
        assert_eq!((&bonus["amount"], &bonus["expires_at"]), (&json!("75"), &Value::Null));
        // The first account's bonus is its own: not granted again, not changed.
        assert_eq!(app.available("first").await, "50");
        let again = app.post("/v1/accounts", json!({"id": "first"})).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
        assert_eq!(app.available("first").await, "50");

        // It expires after its 30 days.
        app.clock.advance_secs(30 * DAY);
        assert_eq!(app.available("first").await, "0");
        assert_eq!(app.available("second").await, "75");

        // Turned off through the API, over the environment.
        patch(&app, json!({"signup_bonus": {"enabled": false}})).await;
        let opened = app.post("/v1/accounts", json!({"id": "third"})).await;
        assert_eq!(opened.body["grants"], json!([]));
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_bad_setting_is_refused_and_nothing_changes(app) {
        patch(&app, json!({"daily_reward": {"enabled": true, "amount": "3"}})).await;
        let before = app.get("/v1/settings/credits").await.body;
        for bad in [
            json!({"signup_bonus": {"amount": "-1"}}),
            json!({"signup_bonus": {"amount": "0.00000001"}}),
            json!({"daily_reward": {"amount": "4", "expire_days": 0}}),
            json!({"priorities": {"purchase": 101}}),
            json!({"priorities": {"nonsense": 1}}),
            json!({"allow_free_user_purchase": "yes"}),
            json!({"daily_reward": {"enabled": true, "colour": "red"}}),
            json!({"surprise": true}),
            json!({"signup_bonus": 5}),
            json!([]),
        ] {
            let refused = patch(&app, bad.clone()).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}: {refused:?}");
            assert_eq!(refused.code(), "invalid_settings", "{bad}");
        }
        let malformed = app
            .raw(
                Method::PATCH,
                "/v1/settings/credits",
                &[("authorization", &format!("Bearer {}", testkit::app::KEY)),
                  ("content-type", "application/json")],
                "{",
            )
            .await;
        assert_eq!(malformed.code(), "malformed_json", "{malformed:?}");
        let missing = patch(&app, json!({"default_plan": "ghost"})).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
        assert_eq!(missing.code(), "plan_not_found");
        assert_eq!(app.get("/v1/settings/credits").await.body, before);
    }
}

billing_test! {
    #[tokio::test]
    async fn a_grant_without_a_priority_takes_its_sources(app) {
        let set = patch(&app, json!({"priorities": {"promo": 5, "purchase": 90}})).await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        assert_eq!(set.body["sources"]["priorities.purchase"], "api");
        app.account_with("u", "0").await;
        let mut lots = Vec::new();
        for (source, priority) in [("purchase", None), ("promo", None), ("purchase", Some(1))] {
            let mut body = json!({"amount": "10", "source": source});
            if let Some(priority) = priority {
                body["priority"] = json!(priority);
            }
            let granted = app.post("/v1/accounts/u/grants", body).await;
            assert_eq!(granted.status, StatusCode::CREATED, "{granted:?}");
            lots.push(granted.body["priority"].clone());
        }
        assert_eq!(lots, [json!(90), json!(5), json!(1)]);
        // Lower burns first: the explicit 1, then the promo 5.
        app.post("/v1/accounts/u/consume", json!({"amount": "15"})).await;
        let balance = app.balance("u").await;
        let left: Vec<_> = balance["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|lot| (lot["priority"].clone(), lot["remaining"].clone()))
            .collect();
        assert!(left.contains(&(json!(90), json!("10"))), "{left:?}");
        assert!(left.contains(&(json!(5), json!("5"))), "{left:?}");
    }
}

billing_test! {
    #[tokio::test]
    async fn settings_written_at_once_keep_every_change(app) {
        let writes = [
            json!({"signup_bonus": {"amount": "1"}}),
            json!({"daily_reward": {"amount": "2"}}),
            json!({"priorities": {"purchase": 3}}),
            json!({"allow_free_user_purchase": true}),
        ];
        let replies =
            futures_util::future::join_all(writes.iter().map(|w| patch(&app, w.clone()))).await;
        assert!(replies.iter().all(|r| r.status == StatusCode::OK), "{replies:?}");
        let got = app.get("/v1/settings/credits").await.body;
        assert_eq!(got["signup_bonus"]["amount"], "1");
        assert_eq!(got["daily_reward"]["amount"], "2");
        assert_eq!(got["priorities"]["purchase"], 3);
        assert_eq!(got["allow_free_user_purchase"], true);
    }
}

billing_test! {
    /// Daily rewards first, then what expires soonest, then what never
    /// expires, whatever the source, with no priority set anywhere.
    #[tokio::test]
    async fn by_default_expiry_decides_the_burn_order_and_purchases_burn_last(app) with bonus_env {
        plan(&app, "weekly", json!({"name": "Weekly", "credits": "10", "interval": "week",
                                    "credits_expire_at_period_end": true})).await;
        patch(&app, json!({"daily_reward": {"enabled": true, "amount": "10"}})).await;
        let opened = app.post("/v1/accounts", json!({"id": "u"})).await;
        assert_eq!(opened.body["grants"][0]["amount"], "50", "{opened:?}");
        // The week began two days ago: its credits expire in five.
        let anchor = START.plus_secs(-2 * DAY).to_string();
        let sub = app
            .send(Method::PUT, "/v1/accounts/u/subscription",
                  Some(json!({"plan_id": "weekly", "anchor": anchor})))
            .await;
        assert_eq!(sub.body["current_period"]["end"], at(5 * DAY), "{sub:?}");
        for body in [
            json!({"amount": "10", "source": "admin", "reason": "support"}),
            json!({"amount": "10", "source": "purchase", "expires_at": at(60 * DAY)}),
        ] {
            let granted = app.post("/v1/accounts/u/grants", body).await;
            assert_eq!(granted.status, StatusCode::CREATED, "{granted:?}");
        }
        let claimed = app.post("/v1/accounts/u/daily-reward", json!({})).await;
        assert_eq!(claimed.status, StatusCode::CREATED, "{claimed:?}");

        let remaining = |balance: Value| {
            let mut by_source: Vec<(String, String)> = balance["lots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|lot| (lot["source"].as_str().unwrap().to_owned(),
                            lot["remaining"].as_str().unwrap().to_owned()))
                .collect();
            by_source.sort();
            by_source
        };
        let steps = [
            ("5", [("admin", "10"), ("daily_reward", "5"), ("purchase", "10"), ("signup_bonus", "50"), ("subscription", "10")]),
            ("10", [("admin", "10"), ("daily_reward", "0"), ("purchase", "10"), ("signup_bonus", "50"), ("subscription", "5")]),
            ("45", [("admin", "10"), ("daily_reward", "0"), ("purchase", "10"), ("signup_bonus", "10"), ("subscription", "0")]),
            // The purchase expires, the admin credits never do; the
            // purchase, the customer's own money, burns last all the same.
            ("15", [("admin", "5"), ("daily_reward", "0"), ("purchase", "10"), ("signup_bonus", "0"), ("subscription", "0")]),
            ("10", [("admin", "0"), ("daily_reward", "0"), ("purchase", "5"), ("signup_bonus", "0"), ("subscription", "0")]),
        ];
        for (amount, expected) in steps {
            let spent = app.post("/v1/accounts/u/consume", json!({"amount": amount})).await;
            assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
            // Spent lots leave the balance.
            let expected: Vec<(String, String)> = expected
                .iter()
                .filter(|(_, r)| *r != "0")
                .map(|(s, r)| (s.to_string(), r.to_string()))
                .collect();
            assert_eq!(remaining(app.balance("u").await), expected, "after {amount}");
        }
        let admin = app.get("/v1/accounts/u/transactions?type=grant&limit=10").await;
        let admin = admin.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|tx| tx["reason"] == "support")
            .cloned()
            .expect("the admin grant keeps its reason");
        assert!(admin["actor"].as_str().is_some_and(|a| a.starts_with("key_")), "{admin}");
        app.assert_verified().await;
    }
}

billing_test! {
    /// Sent at once under one key, a change runs once: every other answer
    /// is the first one replayed, or says the first still runs.
    #[tokio::test]
    async fn one_change_sent_at_once_under_one_key_runs_once(app) {
        let sends = (0..8).map(|_| {
            app.send_as(
                Some(testkit::app::KEY),
                Method::PATCH,
                "/v1/settings/credits",
                &[("idempotency-key", "bonus-on")],
                Some(json!({"signup_bonus": {"enabled": true, "amount": "5"}})),
            )
        });
        let replies = futures_util::future::join_all(sends).await;
        let fresh = replies
            .iter()
            .filter(|r| r.status == StatusCode::OK && r.headers.get("idempotent-replayed").is_none())
            .count();
        assert_eq!(fresh, 1, "{replies:?}");
        for reply in &replies {
            let replayed = reply.headers.get("idempotent-replayed").is_some();
            let running = reply.code() == "idempotency_in_progress";
            assert!(
                reply.status == StatusCode::OK || (running && reply.status == StatusCode::CONFLICT),
                "{reply:?}"
            );
            assert!(!(replayed && running));
        }
        let again = app
            .send_as(Some(testkit::app::KEY), Method::PATCH, "/v1/settings/credits",
                     &[("idempotency-key", "bonus-on")],
                     Some(json!({"signup_bonus": {"enabled": true, "amount": "5"}})))
            .await;
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
}
