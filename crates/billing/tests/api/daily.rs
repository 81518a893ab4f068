//! The daily reward: once a UTC day, however often and however concurrently it is claimed.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const HOUR: i64 = 3_600;
/// From the test's start (08:00 UTC) to the next midnight.
const TO_MIDNIGHT: i64 = 16 * HOUR;

async fn turn_on(app: &TestApp, amount: &str) {
    let on = app
        .send(
            Method::PATCH,
            "/v1/settings/credits",
            Some(json!({"daily_reward": {"enabled": true, "amount": amount}})),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{on:?}");
}

async fn claim(app: &TestApp, account: &str) -> Reply {
    app.post(&format!("/v1/accounts/{account}/daily-reward"), json!({}))
        .await
}

billing_test! {
    #[tokio::test]
    async fn the_reward_is_off_until_it_is_turned_on(app) {
        app.account_with("u", "0").await;
        let status = app.get("/v1/accounts/u/daily-reward").await;
        assert_eq!(status.body["enabled"], false, "{status:?}");
        let refused = claim(&app, "u").await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
        assert_eq!(refused.code(), "daily_reward_disabled");
        assert_eq!(app.available("u").await, "0");
        // On, but for nothing, is off as well.
        turn_on(&app, "0").await;
        assert_eq!(claim(&app, "u").await.code(), "daily_reward_disabled");
        let missing = claim(&app, "nobody").await;
        turn_on(&app, "5").await;
        let missing_on = claim(&app, "nobody").await;
        assert_eq!(missing.status, StatusCode::CONFLICT);
        assert_eq!(missing_on.status, StatusCode::NOT_FOUND, "{missing_on:?}");
        assert_eq!(missing_on.code(), "account_not_found");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_second_claim_the_same_day_answers_the_first_and_grants_nothing(app) {
        turn_on(&app, "5").await;
        app.account_with("u", "100").await;
        let first = claim(&app, "u").await;
        assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
        assert_eq!(first.body["granted"], true);
        assert_eq!(first.body["grant"]["amount"], "5");
        assert_eq!(first.body["grant"]["source"], "daily_reward");
        // By default a day's reward never expires: the balance accumulates.
        assert_eq!(first.body["grant"]["expires_at"], Value::Null);
        assert_eq!(first.body["next_claim_at"], at(TO_MIDNIGHT));
        assert!(first.headers.get("idempotent-replayed").is_none());

        app.clock.advance_secs(HOUR);
        let again = claim(&app, "u").await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert_eq!(again.body["granted"], false);
        assert_eq!(again.body["grant"]["id"], first.body["grant"]["id"]);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        // A new amount during the day changes tomorrow's, not today's.
        turn_on(&app, "8").await;
        let changed = claim(&app, "u").await;
        assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
        assert_eq!(changed.body["grant"]["amount"], "5");
        assert_eq!(app.available("u").await, "105");
        let status = app.get("/v1/accounts/u/daily-reward").await;
        assert_eq!(status.body["claimed"], true, "{status:?}");
        assert_eq!(status.body["claimed_at"], at(0));
        assert_eq!(status.body["amount"], "8");

        // It burns before purchased credits.
        let spent = app.post("/v1/accounts/u/consume", json!({"amount": "3"})).await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        let balance = app.balance("u").await;
        let daily = balance["lots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|lot| lot["source"] == "daily_reward")
            .unwrap()
            .clone();
        assert_eq!(daily["remaining"], "2", "{balance}");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn claims_at_once_grant_once(app) {
        turn_on(&app, "5").await;
        app.account_with("u", "0").await;
        let claims = (0..12).map(|_| claim(&app, "u"));
        let replies = futures_util::future::join_all(claims).await;
        let created = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
        let replayed = replies.iter().filter(|r| r.status == StatusCode::OK).count();
        assert_eq!((created, replayed), (1, 11), "{replies:?}");
        let lots: Vec<_> = replies.iter().map(|r| r.body["grant"]["id"].clone()).collect();
        assert!(lots.iter().all(|lot| *lot == lots[0]));
        assert_eq!(app.available("u").await, "5");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn the_next_day_brings_a_new_reward_and_unclaimed_days_do_not_pile_up(app) {
        turn_on(&app, "5").await;
        app.account_with("u", "0").await;
        assert_eq!(claim(&app, "u").await.status, StatusCode::CREATED);
        // One second before midnight it is still today's.
        app.clock.advance_secs(TO_MIDNIGHT - 1);
        assert_eq!(claim(&app, "u").await.status, StatusCode::OK);
        app.clock.advance_secs(1);
        let status = app.get("/v1/accounts/u/daily-reward").await;
        assert_eq!(status.body["claimed"], false, "{status:?}");
        assert_eq!(status.body["next_claim_at"], at(TO_MIDNIGHT));
        // Yesterday's 5 are still there: rewards accumulate.
        assert_eq!(app.available("u").await, "5");
        let next = claim(&app, "u").await;
        assert_eq!(next.status, StatusCode::CREATED, "{next:?}");
        assert_eq!(app.available("u").await, "10");
        // Three days away, then back: one more reward, not three.
        app.clock.advance_secs(3 * 24 * HOUR + 2 * HOUR);
        assert_eq!(claim(&app, "u").await.status, StatusCode::CREATED);
        assert_eq!(claim(&app, "u").await.status, StatusCode::OK);
        assert_eq!(app.available("u").await, "15");
        let grants = app
            .get("/v1/accounts/u/transactions?type=grant&limit=10")
            .await;
        assert_eq!(grants.body["data"].as_array().unwrap().len(), 3);
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_reward_set_to_expire_after_a_day_is_gone_at_midnight(app) {
        let set = app
            .send(
                Method::PATCH,
                "/v1/settings/credits",
                Some(json!({"daily_reward": {"enabled": true, "amount": "5", "expire_days": 1}})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        app.account_with("u", "0").await;
        let first = claim(&app, "u").await;
        assert_eq!(first.body["grant"]["expires_at"], at(TO_MIDNIGHT));
        app.clock.advance_secs(TO_MIDNIGHT - 1);
        assert_eq!(app.available("u").await, "5");
        app.clock.advance_secs(1);
        assert_eq!(app.available("u").await, "0");
        assert_eq!(claim(&app, "u").await.status, StatusCode::CREATED);
        assert_eq!(app.available("u").await, "5");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_reward_may_last_longer_than_its_day(app) {
        let set = app
            .send(
                Method::PATCH,
                "/v1/settings/credits",
                Some(json!({"daily_reward": {"enabled": true, "amount": "2.5", "expire_days": 7}})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        app.account_with("u", "0").await;
        let first = claim(&app, "u").await;
        assert_eq!(first.body["grant"]["expires_at"], at(TO_MIDNIGHT + 6 * 24 * HOUR));
        app.clock.advance_secs(TO_MIDNIGHT);
        claim(&app, "u").await;
        assert_eq!(app.available("u").await, "5");
    }
}
