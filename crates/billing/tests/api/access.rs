//! Billing's routes against every kind of key.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

/// An account on the plan, and its ids by path parameter.
async fn objects_of(app: &TestApp, account: &str) -> Vec<(&'static str, String)> {
    app.account_with(account, "10").await;
    subscribe(app, account, "basic").await;
    vec![
        ("account_id", account.to_owned()),
        ("plan_id", "basic".to_owned()),
        ("package_id", "p100".to_owned()),
        ("session_id", "cs_test_none".to_owned()),
    ]
}

billing_test! {
    /// Built from billing's route table, so that a new route cannot be left out.
    #[tokio::test]
    async fn every_billing_route_admits_exactly_the_keys_its_access_names(app) {
        plan(&app, "basic", json!({"name": "Basic", "credits": "100", "interval": "month",
                                   "price": {"amount": 900, "currency": "usd"}})).await;
        let package = app
            .send(
                Method::PUT,
                "/v1/packages/p100",
                Some(json!({"name": "100 Credits", "credits": "100",
                            "price": {"amount": 500, "currency": "usd"}, "active": true})),
            )
            .await;
        assert_eq!(package.status, StatusCode::OK, "{package:?}");
        let on = app
            .send(Method::PATCH, "/v1/settings/credits",
                  Some(json!({"daily_reward": {"enabled": true, "amount": "1"}})))
            .await;
        assert_eq!(on.status, StatusCode::OK, "{on:?}");
        let mine = objects_of(&app, "mine").await;
        let theirs = objects_of(&app, "theirs").await;

        let table: Vec<_> = billing(&app)
            .capability()
            .routes
            .iter()
            .map(|route| (route.method.clone(), route.path, route.access))
            .collect();
        // Every one of them is in the app's table, once.
        app.assert_plugin_routes(&table);
        app.assert_route_access(table, &mine, &theirs).await;
    }
}

billing_test! {
    /// Built from the route table: every write route honours an
    /// Idempotency-Key as its entry says.
    #[tokio::test]
    async fn every_billing_write_route_honours_an_idempotency_key_as_the_table_says(app) {
        plan(&app, "basic", json!({"name": "Basic", "credits": "100", "interval": "month"})).await;
        let mine = objects_of(&app, "mine").await;
        let table = billing(&app)
            .capability()
            .routes
            .into_iter()
            .map(|route| (route.method, route.path, route.access, route.idempotency))
            .collect();
        app.assert_idempotency(table, &mine).await;
    }
}
