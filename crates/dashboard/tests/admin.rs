//! The admin panel over HTTP: a real server on port 0 with billing, the
//! gateway and the dashboard plugged in, on a fresh database per test, on
//! SQLite and on PostgreSQL; forms posted as a browser would, and what they
//! changed read back through the API.

mod support;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::json;
use support::*;
use testkit::app::TestApp;

/// Every page of the panel.
const PAGES: [(&str, &str); 7] = [
    ("/admin", "/admin"),
    ("/admin/accounts/ada", "/admin"),
    ("/admin/packages", "/admin/packages"),
    ("/admin/plans", "/admin/plans"),
    ("/admin/prices", "/admin/prices"),
    ("/admin/settings", "/admin/settings"),
    ("/admin/health", "/admin/health"),
];

testkit::each_store_test! {
    #[tokio::test]
    async fn every_page_answers_an_operator_and_sends_anyone_else_to_sign_in(app) {
        app.account_with("ada", "10").await;
        app.account_with("bob", "10").await;
        let key = app.create_customer_key("ada").await;
        app.send(reqwest::Method::PUT, "/v1/plans/free", Some(json!({"name": "Free",
            "credits": "100", "interval": "month"}))).await;
        let moved = app.send(reqwest::Method::PUT, "/v1/accounts/bob/subscription",
            Some(json!({"plan_id": "free"}))).await;
        assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
        let cookie = admin_session(&app).await;
        for (path, current) in PAGES {
            let page = fetch(&app, path, Some(&cookie), &[]).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.html);
            assert!(page.html.contains("<html lang=\"en\">"), "{path}");
            let marked = format!("<a href=\"{current}\" aria-current=\"page\">");
            assert!(page.html.contains(&marked), "{path} marks {current}");
            let anonymous = fetch(&app, path, None, &[]).await;
            assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(anonymous.headers[LOCATION], "/admin/login", "{path}");
        }
        let account = fetch(&app, "/admin/accounts/ada", Some(&cookie), &[]).await;
        assert!(account.html.contains(key["id"].as_str().unwrap()), "{}", account.html);
        // Each part of the account was read, not left out as unreadable.
        for read in ["No subscription.", "No gateway usage in the last 30 days.", "No payment events.",
            "No credits are held."] {
            assert!(account.html.contains(read), "{read}: {}", account.html);
        }
        let subscribed = fetch(&app, "/admin/accounts/bob", Some(&cookie), &[]).await;
        assert!(subscribed.html.contains("<dt>Plan</dt><dd>free</dd>"), "{}", subscribed.html);
        assert!(subscribed.html.contains("<span class=\"badge ok\">active</span>"));
        let health = fetch(&app, "/admin/health", Some(&cookie), &[]).await;
        assert!(health.html.contains("HTTP requests answered"), "{}", health.html);
        assert!(health.html.contains("Never run on this database"), "{}", health.html);
        let holds = |html: &str, count: &str, credits: &str| {
            html.contains(&format!("<dt>Holds pending</dt><dd>{count}</dd>"))
                && html.contains(&format!("<dt>Credits they hold</dt><dd>{credits}</dd>"))
        };
        assert!(holds(&health.html, "0", "0"), "{}", health.html);
        assert!(health.html.contains("No auto top-up is backing off."), "{}", health.html);
        // An endpoint disabled for failing is the operator's to fix: told at the top.
        assert!(health.html.contains("No webhook endpoint is failing."), "{}", health.html);
        let endpoint = app
            .post("/v1/webhook-endpoints", json!({"url": "https://hooks.example.com/x", "events": ["*"]}))
            .await;
        assert_eq!(endpoint.status, StatusCode::CREATED, "{endpoint:?}");
        let id = endpoint.body["id"].as_str().unwrap();
        store::records::update::<webhooks::endpoint::Endpoint>(app.state.store.as_ref(), id, |e| {
            let mut e = e.clone();
            e.disabled = Some(webhooks::endpoint::Disabled::Failing);
            Some(e)
        })
        .await
        .unwrap();
        let health = fetch(&app, "/admin/health", Some(&cookie), &[]).await;
        assert!(health.html.contains("1 webhook endpoint is disabled after failing every delivery"), "{}", health.html);
        assert!(health.html.contains("<code>https://hooks.example.com/x</code>"), "{}", health.html);
        let disabled = app
            .send(reqwest::Method::PATCH, &format!("/v1/webhook-endpoints/{id}"), Some(json!({"disabled": false})))
            .await;
        assert_eq!(disabled.status, StatusCode::OK);
        let health = fetch(&app, "/admin/health", Some(&cookie), &[]).await;
        assert!(health.html.contains("No webhook endpoint is failing."), "{}", health.html);
        let held = app.post("/v1/accounts/ada/holds", json!({"amount": "2.5"})).await;
        assert_eq!(held.status, StatusCode::CREATED, "{held:?}");
        let health = fetch(&app, "/admin/health", Some(&cookie), &[]).await;
        assert!(holds(&health.html, "1", "2.5"), "{}", health.html);
        // The account's page lists its pending hold, and only while it is pending.
        let hold_id = held.body["hold"]["id"].as_str().unwrap().to_owned();
        let account = fetch(&app, "/admin/accounts/ada", Some(&cookie), &[]).await;
        let row = format!("<tr><td>{hold_id}</td><td class=\"num\">2.5</td>");
        assert!(account.html.contains(&row), "{}", account.html);
        let released = app.post(&format!("/v1/holds/{hold_id}/release"), json!({})).await;
        assert_eq!(released.status, StatusCode::OK, "{released:?}");
        let account = fetch(&app, "/admin/accounts/ada", Some(&cookie), &[]).await;
        assert!(!account.html.contains(&row) && account.html.contains("No credits are held."));
        // What `creditd verify` keeps of a run that found violations.
        let run = server::verify_run::VerifyRun {
            ran_at_micros: 1_800_000_000_000_000,
            accounts: 2,
            lots: 2,
            transactions: 3,
            violations: 12,
            first_violations: vec!["account ada: lot_1: remaining disagrees".into()],
        };
        server::verify_run::keep(app.state.store.as_ref(), &run).await.unwrap();
        let health = fetch(&app, "/admin/health", Some(&cookie), &[]).await;
        assert!(!health.html.contains("Never run"), "{}", health.html);
        for shown in ["2 accounts, 2 lots, 3 transactions", "12 violations",
                      "<code>account ada: lot_1: remaining disagrees</code>"] {
            assert!(health.html.contains(shown), "{shown}: {}", health.html);
        }
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_package_made_through_the_form_is_in_the_api_and_can_be_taken_off_sale(app) {
        let cookie = admin_session(&app).await;
        let page = fetch(&app, "/admin/packages", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let saved = post_form(&app, "/admin/packages", &cookie, Some(PUBLIC), &[
            ("csrf", &csrf), ("id", "credits-500"), ("name_en", "500 Credits"),
            ("name_zh", "500 积分"), ("description_en", "For a month of use"),
            ("credits", "500"), ("price_usd", "4.50"), ("active", "on"),
        ]).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
        assert_eq!(saved.headers[LOCATION], "/admin/packages?done=saved");
        let package = app.get("/v1/packages/credits-500").await;
        assert_eq!(package.body["name"], json!({"en": "500 Credits", "zh": "500 积分"}));
        assert_eq!(package.body["description"], json!({"en": "For a month of use"}));
        assert_eq!(package.body["price"], json!({"amount": 450, "currency": "usd"}));
        assert_eq!(package.body["credits"], "500");
        assert_eq!(package.body["active"], true);
        let edit = fetch(&app, "/admin/packages?edit=credits-500", Some(&cookie), &[]).await;
        assert!(edit.html.contains("value=\"500 积分\"") && edit.html.contains("value=\"4.50\""));
        let off = post_form(&app, "/admin/packages/credits-500/active", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("active", "false")]).await;
        assert_eq!(off.status, StatusCode::SEE_OTHER);
        let inactive = app.get("/v1/packages?active=false").await;
        assert_eq!(inactive.body["data"][0]["id"], "credits-500");
        assert_eq!(inactive.body["data"][0]["name"]["zh"], "500 积分");
        let listed = fetch(&app, "/admin/packages", Some(&cookie), &[]).await;
        assert!(listed.html.contains("credits-500") && listed.html.contains("inactive"));
        // What the API refuses is shown, and nothing is stored.
        let refused = post_form(&app, "/admin/packages", &cookie, Some(PUBLIC), &[
            ("csrf", &csrf), ("id", "free"), ("name_en", "Free"), ("credits", "0"),
            ("price_usd", "1"),
        ]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.html.contains("Not saved"), "{}", refused.html);
        assert_eq!(app.get("/v1/packages/free").await.status, StatusCode::NOT_FOUND);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_plan_made_through_the_form_is_in_the_api(app) {
        let cookie = admin_session(&app).await;
        let page = fetch(&app, "/admin/plans", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let saved = post_form(&app, "/admin/plans", &cookie, Some(PUBLIC), &[
            ("csrf", &csrf), ("id", "pro"), ("name", "Pro"), ("credits", "1000"),
            ("interval", "month"), ("allocation", "reset"), ("price_usd", "19"),
        ]).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
        let plan = app.get("/v1/plans/pro").await;
        assert_eq!(plan.body["name"], "Pro");
        assert_eq!(plan.body["credits"], "1000");
        assert_eq!(plan.body["interval"], "month");
        assert_eq!(plan.body["price"], json!({"amount": 1900, "currency": "usd"}));
        assert_eq!(plan.body["default"], false);
        let listed = fetch(&app, "/admin/plans?edit=pro", Some(&cookie), &[]).await;
        assert!(listed.html.contains("$19.00") && listed.html.contains("value=\"19.00\""));
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn settings_changed_through_the_form_are_in_the_api(app) {
        let cookie = admin_session(&app).await;
        let page = fetch(&app, "/admin/settings", Some(&cookie), &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        let csrf = csrf_of(&page.html);
        let before = app.get("/v1/settings/credits").await;
        let priorities = before.body["priorities"].as_object().unwrap().clone();
        let mut fields: Vec<(String, String)> = vec![
            ("csrf".into(), csrf),
            ("signup_bonus_enabled".into(), "on".into()),
            ("signup_bonus_amount".into(), "25".into()),
            ("signup_bonus_expire_days".into(), "30".into()),
            ("daily_reward_amount".into(), "2".into()),
            ("daily_reward_expire_days".into(), "".into()),
            ("allow_free_user_purchase".into(), "on".into()),
        ];
        for (source, priority) in &priorities {
            let priority = if source == "purchase" { "7".to_owned() } else { priority.to_string() };
            fields.push((format!("priority_{source}"), priority));
        }
        let form: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let saved = post_form(&app, "/admin/settings", &cookie, Some(PUBLIC), &form).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
        let after = app.get("/v1/settings/credits").await;
        assert_eq!(after.body["signup_bonus"], json!({"enabled": true, "amount": "25", "expire_days": 30}));
        assert_eq!(after.body["daily_reward"]["enabled"], false);
        assert_eq!(after.body["daily_reward"]["amount"], "2");
        assert_eq!(after.body["daily_reward"]["expire_days"], json!(null));
        assert_eq!(after.body["allow_free_user_purchase"], true);
        assert_eq!(after.body["priorities"]["purchase"], 7);
        assert_eq!(after.body["sources"]["signup_bonus.amount"], "api");
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_price_set_or_imported_through_the_forms_is_in_the_catalog(app) {
        let cookie = admin_session(&app).await;
        let page = fetch(&app, "/admin/prices", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let saved = post_form(&app, "/admin/prices", &cookie, Some(PUBLIC), &[
            ("csrf", &csrf), ("model", "house-model"), ("provider", "openai"),
            ("mode", "chat"), ("input", "1.5"), ("output", "6"), ("markup_percent", "10"),
        ]).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
        let price = app.get("/v1/prices/house-model").await;
        assert_eq!(price.body["input"], "1.5");
        assert_eq!(price.body["output"], "6");
        assert_eq!(price.body["markup_percent"], "10");
        let edited = post_form(&app, "/admin/prices", &cookie, Some(PUBLIC), &[
            ("csrf", &csrf), ("model", "house-model"), ("provider", "openai"),
            ("mode", "chat"), ("input", "2"), ("output", "8"),
        ]).await;
        assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.html);
        assert_eq!(app.get("/v1/prices/house-model").await.body["input"], "2");
        let edit = fetch(&app, "/admin/prices?edit=house-model", Some(&cookie), &[]).await;
        assert!(edit.html.contains("value=\"house-model\"") && edit.html.contains("value=\"8\""));
        let starter = post_form(&app, "/admin/prices/starter", &cookie, Some(PUBLIC),
            &[("csrf", &csrf)]).await;
        assert_eq!(starter.status, StatusCode::OK, "{}", starter.html);
        assert!(starter.html.contains("Imported:"), "{}", starter.html);
        let list = r#"{"pasted-model": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 1.23456e-06, "output_cost_per_token": 4e-06}}"#;
        let pasted = post_form(&app, "/admin/prices/import", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("list", list), ("format", "litellm")]).await;
        assert_eq!(pasted.status, StatusCode::OK, "{}", pasted.html);
        assert!(pasted.html.contains("Imported: 1 written"), "{}", pasted.html);
        let imported = app.get("/v1/prices/pasted-model").await;
        assert_eq!(imported.body["input"], "1.23456");
        let not_json = post_form(&app, "/admin/prices/import", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("list", "model,price")]).await;
        assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
        // A list chosen as a file, as the form sends it; the file wins over
        // whatever was pasted beside it.
        let file = r#"{"uploaded-model": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05}}"#;
        let uploaded = post_multipart(&app, "/admin/prices/import", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("file", file), ("list", "not json"), ("format", "litellm"),
              ("providers", "openai")]).await;
        assert_eq!(uploaded.status, StatusCode::OK, "{}", uploaded.html);
        assert!(uploaded.html.contains("Imported: 1 written"), "{}", uploaded.html);
        assert_eq!(app.get("/v1/prices/uploaded-model").await.body["output"], "15");
        let empty = post_multipart(&app, "/admin/prices/import", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("file", ""), ("list", "")]).await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
        let other = file.replace("uploaded-model", "forged-model");
        let forged = post_multipart(&app, "/admin/prices/import", &cookie,
            Some("https://evil.example"), &[("csrf", &csrf), ("file", &other)]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let untokened = post_multipart(&app, "/admin/prices/import", &cookie, Some(PUBLIC),
            &[("file", &other)]).await;
        assert_eq!(untokened.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get("/v1/prices/forged-model").await.status, StatusCode::NOT_FOUND);
        let listed = app.get("/v1/prices?limit=100").await;
        assert!(listed.body["data"].as_array().unwrap().len() > 1);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_forged_form_changes_nothing(app) {
        let cookie = admin_session(&app).await;
        let page = fetch(&app, "/admin/settings", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let before = app.get("/v1/settings/credits").await.body;
        app.send(reqwest::Method::PUT, "/v1/packages/kept", Some(json!({"name": "Kept",
            "credits": "10", "price": {"amount": 100, "currency": "usd"}}))).await;
        let forms: [(&str, Vec<(&str, &str)>); 7] = [
            ("/admin/packages/kept/active", vec![("active", "false")]),
            ("/admin/prices/import", vec![("list", "{}")]),
            ("/admin/packages", vec![("id", "forged"), ("name_en", "Forged"),
                ("credits", "1"), ("price_usd", "1"), ("active", "on")]),
            ("/admin/plans", vec![("id", "forged"), ("name", "Forged"), ("credits", "1"),
                ("interval", "month")]),
            ("/admin/prices", vec![("model", "forged"), ("provider", "openai"),
                ("input", "1"), ("output", "1")]),
            ("/admin/settings", vec![("signup_bonus_enabled", "on"),
                ("signup_bonus_amount", "999")]),
            ("/admin/prices/starter", vec![]),
        ];
        for (path, fields) in &forms {
            let mut with_token = fields.clone();
            with_token.push(("csrf", &csrf));
            let elsewhere = post_form(&app, path, &cookie, Some("https://evil.example"), &with_token).await;
            assert_eq!(elsewhere.status, StatusCode::FORBIDDEN, "{path}");
            let without_token = post_form(&app, path, &cookie, Some(PUBLIC), fields).await;
            assert_eq!(without_token.status, StatusCode::FORBIDDEN, "{path}");
        }
        assert_eq!(app.get("/v1/packages/forged").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/v1/packages/kept").await.body["active"], true);
        assert_eq!(app.get("/v1/plans/forged").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/v1/prices/forged").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/v1/prices?limit=1").await.body["data"], json!([]));
        assert_eq!(app.get("/v1/settings/credits").await.body, before);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}
