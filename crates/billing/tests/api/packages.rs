//! Credit packages: names by locale, what is for sale, and who may buy.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

async fn put_package(app: &TestApp, id: &str, body: Value) -> Reply {
    app.send(Method::PUT, &format!("/v1/packages/{id}"), Some(body))
        .await
}

fn p100(active: bool) -> Value {
    json!({
        "name": {"en": "100 Credits", "zh": "100 积分"},
        "description": "A hundred credits",
        "credits": "100",
        "price": {"amount": 500, "currency": "usd"},
        "provider_price_id": "price_100",
        "active": active
    })
}

async fn buy(app: &TestApp, account: &str, package: &str, body: Value) -> Reply {
    app.post(
        &format!("/v1/accounts/{account}/packages/{package}/grant"),
        body,
    )
    .await
}

billing_test! {
    #[tokio::test]
    async fn a_package_names_itself_in_the_readers_locale(app) {
        let stored = put_package(&app, "p100", p100(true)).await;
        assert_eq!(stored.status, StatusCode::OK, "{stored:?}");
        assert_eq!(stored.body["name"], json!({"en": "100 Credits", "zh": "100 积分"}));
        let zh = app.get("/v1/packages/p100?locale=zh").await;
        assert_eq!(zh.body["name"], "100 积分", "{zh:?}");
        assert_eq!(zh.body["description"], "A hundred credits");
        let region = app.get("/v1/packages/p100?locale=zh-TW").await;
        assert_eq!(region.body["name"], "100 积分");
        let fallback = app.get("/v1/packages/p100?locale=fr").await;
        assert_eq!(fallback.body["name"], "100 Credits");
        let bad = app.get("/v1/packages/p100?locale=not%20a%20locale").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(bad.code(), "invalid_locale");
        let upper = app.get("/v1/packages/p100?locale=ZH").await;
        assert_eq!(upper.body["name"], "100 积分", "{upper:?}");

        put_package(&app, "old", p100(false)).await;
        let all = app.get("/v1/packages").await.body["data"].as_array().unwrap().len();
        let active = app.get("/v1/packages?active=true&locale=zh").await;
        let active = active.body["data"].as_array().unwrap().clone();
        let inactive = app.get("/v1/packages?active=false").await.body["data"].clone();
        assert_eq!(all, 2);
        assert_eq!(active.len(), 1);
        assert_eq!((&active[0]["id"], &active[0]["name"]), (&json!("p100"), &json!("100 积分")));
        assert_eq!(inactive[0]["id"], "old");
        let missing = app.get("/v1/packages/ghost").await;
        assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "package_not_found"));
    }
}

billing_test! {
    #[tokio::test]
    async fn a_bad_package_is_refused_and_nothing_is_stored(app) {
        let with = |field: &str, value: Value| {
            let mut body = p100(true);
            body[field] = value;
            body
        };
        for (body, code) in [
            (with("credits", json!("0")), "invalid_package"),
            (with("credits", json!("-5")), "invalid_amount"),
            (with("name", json!("")), "invalid_text"),
            (with("name", json!({})), "invalid_text"),
            (with("name", json!({"EN!": "x"})), "invalid_locale"),
            (with("price", json!({"amount": -1, "currency": "usd"})), "invalid_money"),
            (with("active", json!("yes")), "invalid_request"),
            (with("surprise", json!(1)), "invalid_request"),
        ] {
            let refused = put_package(&app, "p", body.clone()).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {refused:?}");
            assert_eq!(refused.code(), code, "{body}: {refused:?}");
        }
        assert_eq!(app.get("/v1/packages").await.body["data"], json!([]));
    }
}

billing_test! {
    #[tokio::test]
    async fn a_free_account_may_buy_only_when_the_settings_allow_it(app) {
        put_package(&app, "p100", p100(true)).await;
        put_package(&app, "old", p100(false)).await;
        plan(&app, "free", json!({"name": "Free", "credits": "5", "interval": "month"})).await;
        plan(&app, "pro", json!({"name": "Pro", "credits": "50", "interval": "month",
                                 "price": {"amount": 2000, "currency": "usd"}})).await;
        app.account_with("u", "0").await;
        subscribe(&app, "u", "free").await;

        let refused = buy(&app, "u", "p100", json!({})).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "purchase_not_allowed"));
        let inactive = buy(&app, "u", "old", json!({})).await;
        assert_eq!((inactive.status, inactive.code()), (StatusCode::CONFLICT, "package_inactive"));
        let missing = buy(&app, "u", "ghost", json!({})).await;
        assert_eq!(missing.code(), "package_not_found");
        let no_account = buy(&app, "ghost", "p100", json!({})).await;
        assert_eq!(no_account.code(), "account_not_found");
        assert_eq!(app.available("u").await, "5");

        let allowed = app
            .send(Method::PATCH, "/v1/settings/credits", Some(json!({"allow_free_user_purchase": true})))
            .await;
        assert_eq!(allowed.status, StatusCode::OK);
        let bought = buy(&app, "u", "p100", json!({"external_id": "order_1"})).await;
        assert_eq!(bought.status, StatusCode::CREATED, "{bought:?}");
        assert_eq!(bought.body["source"], "purchase");
        assert_eq!(bought.body["amount"], "100");
        assert_eq!(bought.body["metadata"]["package_id"], "p100");
        // The same order again grants nothing more.
        let again = buy(&app, "u", "p100", json!({"external_id": "order_1"})).await;
        assert_eq!(again.status, StatusCode::CREATED, "{again:?}");
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body["id"], bought.body["id"]);
        assert_eq!(app.available("u").await, "105");

        // A paid plan may always buy.
        app.send(Method::PATCH, "/v1/settings/credits", Some(json!({"allow_free_user_purchase": false})))
            .await;
        app.account_with("v", "0").await;
        subscribe(&app, "v", "pro").await;
        // With no body at all.
        let paid = app.send(Method::POST, "/v1/accounts/v/packages/p100/grant", None).await;
        assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
        assert_eq!(app.available("v").await, "150");
        app.assert_verified().await;
    }
}

billing_test! {
    #[tokio::test]
    async fn a_name_with_a_bidi_override_or_a_zero_width_character_is_refused(app) {
        for name in ["rtl \u{202e} gnp.exe", "Pro\u{200b}"] {
            let package = app
                .send(Method::PUT, "/v1/packages/p1",
                      Some(json!({"name": {"en": name}, "credits": "1",
                                  "price": {"amount": 500, "currency": "usd"}})))
                .await;
            assert_eq!(package.status, StatusCode::BAD_REQUEST, "{name:?}: {package:?}");
            assert_eq!(package.code(), "invalid_text");
            let plan = app
                .send(Method::PUT, "/v1/plans/p1",
                      Some(json!({"name": name, "credits": "1", "interval": "month"})))
                .await;
            assert_eq!(plan.code(), "invalid_plan", "{name:?}: {plan:?}");
        }
        assert_eq!(app.get("/v1/packages").await.body["data"], json!([]));
    }
}

billing_test! {
    /// A store page reads the catalogue with the keys it holds: service and
    /// customer keys see what is for sale, in the locale, and a customer key
    /// nothing of the operator's own.
    #[tokio::test]
    async fn service_and_customer_keys_read_the_packages_and_plans_for_sale(app) {
        for (id, active) in [("p100", true), ("retired", false)] {
            let put = app
                .send(Method::PUT, &format!("/v1/packages/{id}"),
                      Some(json!({"name": {"en": "100 Credits", "zh": "100 积分"}, "credits": "100",
                                  "price": {"amount": 500, "currency": "usd"},
                                  "provider_price_id": "price_secret", "active": active})))
                .await;
            assert_eq!(put.status, StatusCode::OK, "{put:?}");
        }
        plan(&app, "pro", json!({"name": "Pro", "credits": "5000", "interval": "month",
                                  "price": {"amount": 2000, "currency": "usd"},
                                  "provider_price_id": "price_pro_secret"})).await;
        app.account_with("u", "0").await;
        let service = app.create_key("service", "backend").await["key"].as_str().unwrap().to_owned();
        let customer = app.create_customer_key("u").await["key"].as_str().unwrap().to_owned();
        let read = |key: String, path: &'static str| {
            let app = &app;
            async move { app.send_as(Some(&key), Method::GET, path, &[], None).await }
        };

        for key in [service.clone(), customer.clone()] {
            let listed = read(key.clone(), "/v1/packages?active=true&locale=zh").await;
            assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
            let data = listed.body["data"].as_array().unwrap();
            assert_eq!(data.len(), 1, "{listed:?}");
            assert_eq!(data[0]["id"], "p100");
            assert_eq!(data[0]["name"], "100 积分");
            assert_eq!(data[0]["price"], json!({"amount": 500, "currency": "usd"}));
            // What is not for sale is not there, however it is asked for.
            let all = read(key.clone(), "/v1/packages").await;
            assert_eq!(all.body["data"].as_array().unwrap().len(), 1, "{all:?}");
            let inactive = read(key.clone(), "/v1/packages?active=false").await;
            assert_eq!(inactive.body["data"], json!([]));
            let retired = read(key.clone(), "/v1/packages/retired").await;
            assert_eq!(retired.code(), "package_not_found", "{retired:?}");
            let plans = read(key.clone(), "/v1/plans").await;
            assert_eq!(plans.status, StatusCode::OK, "{plans:?}");
            assert_eq!(plans.body["data"][0]["id"], "pro");
            assert_eq!(read(key, "/v1/plans/pro").await.body["price"]["amount"], 2000);
        }
        // The payment provider's price ids are the operator's.
        let by_service = read(service, "/v1/packages/p100").await;
        assert_eq!(by_service.body["provider_price_id"], "price_secret");
        let by_customer = read(customer.clone(), "/v1/packages/p100").await;
        assert!(by_customer.body.get("provider_price_id").is_none(), "{by_customer:?}");
        assert!(!by_customer.text.contains("secret"), "{by_customer:?}");
        let plans = read(customer.clone(), "/v1/plans").await;
        assert!(!plans.text.contains("secret"), "{plans:?}");
        // The admin key still sees everything.
        assert_eq!(app.get("/v1/packages").await.body["data"].as_array().unwrap().len(), 2);
        // Writing the catalogue is still the admin's.
        let write = app
            .send_as(Some(&customer), Method::PUT, "/v1/plans/free",
                     &[], Some(json!({"name": "Free", "credits": "1", "interval": "month"})))
            .await;
        assert_eq!(write.status, StatusCode::FORBIDDEN, "{write:?}");
    }
}

billing_test! {
    /// A browser that only shows the balance holds a read-only key: it
    /// reads, and nothing it sends spends, pays or changes a setting.
    #[tokio::test]
    async fn a_read_only_customer_key_reads_and_changes_nothing(app) {
        plan(&app, "free", json!({"name": "Free", "credits": "100", "interval": "month"})).await;
        app.send(Method::PATCH, "/v1/settings/credits",
                 Some(json!({"daily_reward": {"enabled": true, "amount": "5"}}))).await;
        app.account_with("u", "10").await;
        subscribe(&app, "u", "free").await;
        let created = app.post("/v1/accounts/u/keys", json!({"name": "widget", "access": "read"})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        assert_eq!(created.body["access"], "read");
        let key = created.body["key"].as_str().unwrap().to_owned();
        for path in ["/v1/accounts/u/balance", "/v1/accounts/u/transactions", "/v1/accounts/u/subscription",
                     "/v1/accounts/u/daily-reward", "/v1/packages", "/v1/plans"] {
            let reply = app.send_as(Some(&key), Method::GET, path, &[], None).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        }
        for (method, path, body) in [
            (Method::POST, "/v1/accounts/u/daily-reward", json!({})),
            (Method::PUT, "/v1/accounts/u/auto-topup", json!({"enabled": false, "threshold": "1",
                "amount": {"amount": 500, "currency": "usd"}})),
            (Method::POST, "/v1/accounts/u/checkout", json!({"amount": {"amount": 500, "currency": "usd"}})),
        ] {
            let reply = app.send_as(Some(&key), method, path, &[], Some(body)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}: {reply:?}");
            assert_eq!(reply.body["error"]["required_scope"], "write");
        }
        assert_eq!(app.available("u").await, "110");
        let with_limit = app
            .post("/v1/accounts/u/keys", json!({"access": "read",
                                                 "spend_limit": {"amount": "5", "period": "day"}}))
            .await;
        assert_eq!(with_limit.code(), "invalid_request", "{with_limit:?}");
        let bad = app.post("/v1/accounts/u/keys", json!({"access": "admin"})).await;
        assert_eq!(bad.code(), "invalid_request", "{bad:?}");
        // A full key, the default, says so.
        let full = app.post("/v1/accounts/u/keys", json!({})).await;
        assert_eq!(full.body["access"], "full");
    }
}
