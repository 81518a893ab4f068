//! The dashboard over HTTP: a real server on port 0 with billing, the
//! gateway and the dashboard plugged in, on a fresh database per test, on
//! SQLite and on PostgreSQL; pages fetched as a browser would (cookies, no
//! redirects followed, forms posted).

mod support;

use dashboard::Dashboard;
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;
use testkit::app::{KEY, TestApp};

/// A dashboard link for `account`, as the operator's backend asks for it;
/// answers its path.
async fn link(app: &TestApp, account: &str, body: serde_json::Value) -> String {
    let made = app
        .post(&format!("/v1/accounts/{account}/dashboard-sessions"), body)
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let url = made.body["url"].as_str().unwrap();
    url.strip_prefix(PUBLIC)
        .expect("a link under the public URL")
        .to_owned()
}

/// Opens a session of `account`'s Credits page; answers its cookie.
async fn session(app: &TestApp, account: &str) -> String {
    let path = link(app, account, json!({})).await;
    let opened = fetch(app, &path, None, &[]).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    cookie_of(&opened)
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_link_opens_its_account_once_and_shows_the_balance(app) {
        app.account_with("ada", "1234.5").await;
        let path = link(&app, "ada", json!({"return_url": "https://app.example.com/home"})).await;
        let opened = fetch(&app, &path, None, &[]).await;
        assert_eq!(opened.status, StatusCode::SEE_OTHER);
        assert_eq!(opened.headers[LOCATION], "/dashboard");
        let set = opened.headers[SET_COOKIE].to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
        let cookie = cookie_of(&opened);
        let page = fetch(&app, "/dashboard", Some(&cookie), &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        assert!(page.html.contains("1,234.5"), "{}", page.html);
        assert!(page.html.contains("<html lang=\"en\">"));
        assert!(page.html.contains("https://app.example.com/home"));
        let history = fetch(&app, "/dashboard/history?type=purchase", Some(&cookie), &[]).await;
        assert!(history.html.contains("<td>Purchase</td>"), "{}", history.html);
        let policy = page.headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
        // The link a second time opens nothing and shows nothing of the account.
        let again = fetch(&app, &path, None, &[]).await;
        assert_eq!(again.status, StatusCode::GONE);
        assert!(again.headers.get(SET_COOKIE).is_none());
        assert!(!again.html.contains("1,234.5"));
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_link_expires_after_ten_minutes(app) {
        app.account_with("ada", "10").await;
        let path = link(&app, "ada", json!({})).await;
        app.clock.advance_secs(600);
        let opened = fetch(&app, &path, None, &[]).await;
        assert_eq!(opened.status, StatusCode::GONE);
        assert!(opened.headers.get(SET_COOKIE).is_none());
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_session_shows_its_own_account_whatever_it_is_asked(app) {
        app.account_with("ada", "111").await;
        app.account_with("bob", "999").await;
        let bobs_key = app.create_customer_key("bob").await;
        let cookie = session(&app, "ada").await;
        for path in [
            "/dashboard?account=bob",
            "/dashboard/history?account_id=bob",
            "/dashboard/keys?account=bob",
        ] {
            let page = fetch(&app, path, Some(&cookie), &[]).await;
            assert_eq!(page.status, StatusCode::OK, "{path}");
            assert!(!page.html.contains("999"), "{path} shows bob's balance");
            assert!(!page.html.contains(bobs_key["id"].as_str().unwrap()));
        }
        // Revoking bob's key from ada's session finds no such key of hers.
        let page = fetch(&app, "/dashboard/keys", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let revoked = post_form(&app, "/dashboard/actions/revoke-key", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("key_id", bobs_key["id"].as_str().unwrap())]).await;
        assert_eq!(revoked.status, StatusCode::OK);
        let bob = app.send_as(Some(bobs_key["key"].as_str().unwrap()), Method::GET,
            "/v1/accounts/bob/balance", &[], None).await;
        assert_eq!(bob.status, StatusCode::OK, "bob's key still works");
        // Ada's session opens no operator page.
        let admin = fetch(&app, "/admin/accounts/bob", Some(&cookie), &[]).await;
        assert_eq!(admin.status, StatusCode::SEE_OTHER);
        assert_eq!(admin.headers[LOCATION], "/admin/login");
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_forged_form_changes_nothing(app) {
        app.account_with("ada", "10").await;
        app.send(Method::PATCH, "/v1/settings/credits",
            Some(json!({"daily_reward": {"enabled": true, "amount": "5"}}))).await;
        let cookie = session(&app, "ada").await;
        let page = fetch(&app, "/dashboard", Some(&cookie), &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        let csrf = csrf_of(&page.html);
        let from_elsewhere = post_form(&app, "/dashboard/actions/daily-reward", &cookie,
            Some("https://evil.example"), &[("csrf", &csrf)]).await;
        assert_eq!(from_elsewhere.status, StatusCode::FORBIDDEN);
        let without_token = post_form(&app, "/dashboard/actions/daily-reward", &cookie,
            Some(PUBLIC), &[]).await;
        assert_eq!(without_token.status, StatusCode::FORBIDDEN);
        assert_eq!(app.available("ada").await, "10");
        let genuine = post_form(&app, "/dashboard/actions/daily-reward", &cookie,
            Some(PUBLIC), &[("csrf", &csrf)]).await;
        assert_eq!(genuine.status, StatusCode::SEE_OTHER);
        assert_eq!(app.available("ada").await, "15");
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn signing_out_ends_the_session(app) {
        app.account_with("ada", "10").await;
        let cookie = session(&app, "ada").await;
        let page = fetch(&app, "/dashboard", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let out = post_form(&app, "/dashboard/sign-out", &cookie, Some(PUBLIC), &[("csrf", &csrf)]).await;
        assert_eq!(out.status, StatusCode::OK);
        assert!(out.headers[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
        let after = fetch(&app, "/dashboard", Some(&cookie), &[]).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_session_expires_after_two_hours(app) {
        app.account_with("ada", "10").await;
        let cookie = session(&app, "ada").await;
        app.clock.advance_secs(2 * 3600);
        let after = fetch(&app, "/dashboard", Some(&cookie), &[]).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn the_page_speaks_the_sessions_language_then_the_browsers(app) {
        app.account_with("ada", "10").await;
        let path = link(&app, "ada", json!({"locale": "zh"})).await;
        let cookie = cookie_of(&fetch(&app, &path, None, &[]).await);
        let page = fetch(&app, "/dashboard", Some(&cookie), &[("accept-language", "en")]).await;
        assert!(page.html.contains("<html lang=\"zh\">"));
        assert!(page.html.contains("可用积分"));
        let cookie = session(&app, "ada").await;
        let page = fetch(&app, "/dashboard/history", Some(&cookie), &[("accept-language", "zh-CN,zh;q=0.9")]).await;
        assert!(page.html.contains("积分记录"), "{}", page.html);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn a_key_made_on_the_page_is_shown_once_and_can_be_revoked(app) {
        app.account_with("ada", "10").await;
        let cookie = session(&app, "ada").await;
        let page = fetch(&app, "/dashboard/keys", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let made = post_form(&app, "/dashboard/actions/create-key", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("name", "laptop"), ("project", "cli"), ("daily_limit", "50")]).await;
        assert_eq!(made.status, StatusCode::OK);
        let at = made.html.find("data-testid=\"new-key\">").unwrap();
        let key = made.html[at + "data-testid=\"new-key\">".len()..].split('<').next().unwrap().to_owned();
        let used = app.send_as(Some(&key), Method::GET, "/v1/accounts/ada/balance", &[], None).await;
        assert_eq!(used.status, StatusCode::OK);
        let listed = fetch(&app, "/dashboard/keys", Some(&cookie), &[]).await;
        assert!(listed.html.contains("laptop") && !listed.html.contains(&key));
        let keys = app.get("/v1/accounts/ada/keys").await;
        let id = keys.body["data"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(keys.body["data"][0]["spend_limit"]["amount"], "50");
        let revoked = post_form(&app, "/dashboard/actions/revoke-key", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("key_id", &id)]).await;
        assert_eq!(revoked.status, StatusCode::OK);
        let refused = app.send_as(Some(&key), Method::GET, "/v1/accounts/ada/balance", &[], None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn an_embed_token_reads_the_balance_alone_from_any_origin_for_an_hour(app) {
        app.account_with("ada", "42").await;
        let customer = app.create_customer_key("ada").await;
        let made = app.send_as(Some(customer["key"].as_str().unwrap()), Method::POST,
            "/v1/accounts/ada/embed-tokens", &[], None).await;
        assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
        let token = made.body["token"].as_str().unwrap().to_owned();
        let path = format!("/v1/embed/balance/{token}");
        let read = app.send_as(None, Method::GET, &path,
            &[("origin", "https://shop.example")], None).await;
        assert_eq!(read.status, StatusCode::OK, "{read:?}");
        assert_eq!(read.body["available"], "42");
        assert_eq!(read.headers["access-control-allow-origin"], "*");
        // The token is no API key: it reads nothing else.
        let other = app.send_as(Some(&token), Method::GET, "/v1/accounts/ada/balance", &[], None).await;
        assert_eq!(other.status, StatusCode::UNAUTHORIZED);
        app.clock.advance_secs(3600);
        let expired = app.send_as(None, Method::GET, &path, &[], None).await;
        assert_eq!(expired.status, StatusCode::NOT_FOUND);
        assert_eq!(expired.body["error"]["code"], "embed_token_not_found");
        assert_eq!(expired.headers["access-control-allow-origin"], "*");
        let script = app.send_as(None, Method::GET, "/embed/creditd.js", &[], None).await;
        assert_eq!(script.status, StatusCode::OK);
        assert!(script.text.contains("customElements.define(\"creditd-balance\""));
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn an_operator_finds_an_account_and_grants_credits_with_a_reason(app) {
        app.account_with("ada", "10").await;
        app.send(Method::PATCH, "/v1/accounts/ada", Some(json!({"name": "Ada Lovelace"}))).await;
        app.account_with("bob", "10").await;
        let cookie = admin_session(&app).await;
        let found = fetch(&app, "/admin?q=lovelace", Some(&cookie), &[]).await;
        assert_eq!(found.status, StatusCode::OK);
        assert!(found.html.contains("/admin/accounts/ada") && !found.html.contains("/admin/accounts/bob"));
        // Pages of a search keep it; a search too short for the index
        // finds the account of exactly that id.
        for n in 0..60 {
            app.send(Method::POST, "/v1/accounts", Some(json!({"id": format!("team_{n:02}"),
                "metadata": {"org": "Analytical Engines"}}))).await;
        }
        let first = fetch(&app, "/admin?q=analytical+engines", Some(&cookie), &[]).await;
        assert!(first.html.contains("/admin/accounts/team_00") && !first.html.contains("/admin/accounts/ada"));
        assert!(first.html.contains("href=\"/admin?q=analytical+engines&#38;cursor=team_49\""), "{}", first.html);
        let second = fetch(&app, "/admin?q=analytical+engines&cursor=team_49", Some(&cookie), &[]).await;
        assert!(second.html.contains("/admin/accounts/team_59") && !second.html.contains("/admin/accounts/team_00"));
        let exact = fetch(&app, "/admin?q=ad", Some(&cookie), &[]).await;
        assert!(exact.html.contains("No accounts found.") && exact.html.contains("from 3 characters on"));
        app.account_with("jo", "1").await;
        let exact = fetch(&app, "/admin?q=jo", Some(&cookie), &[]).await;
        assert!(exact.html.contains("/admin/accounts/jo"), "{}", exact.html);
        let page = fetch(&app, "/admin/accounts/ada", Some(&cookie), &[]).await;
        let csrf = csrf_of(&page.html);
        let granted = post_form(&app, "/admin/accounts/ada/grant", &cookie, Some(PUBLIC),
            &[("csrf", &csrf), ("amount", "25"), ("reason", "support ticket 7")]).await;
        assert_eq!(granted.status, StatusCode::SEE_OTHER);
        assert_eq!(app.available("ada").await, "35");
        let txs = app.get("/v1/accounts/ada/transactions?limit=1").await;
        assert_eq!(txs.body["data"][0]["reason"], "support ticket 7");
        assert_eq!(txs.body["data"][0]["actor"], server::auth::CONFIGURED_KEY_ID);
        // The customer's Credits page, read-only: its figures, no live form.
        let view = fetch(&app, "/admin/accounts/ada/credits", Some(&cookie), &[]).await;
        assert_eq!(view.status, StatusCode::OK, "{}", view.html);
        assert!(view.html.contains("35"));
        assert!(!view.html.contains("/dashboard/sign-out"));
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn admin_sign_in_refuses_other_keys_and_slows_guessing(app) {
        app.account_with("ada", "10").await;
        let customer = app.create_customer_key("ada").await;
        let attempt = |key: String| {
            let base = app.base.clone();
            async move {
                browser().post(format!("{base}/admin/login")).form(&[("key", key)]).send().await.unwrap().status()
            }
        };
        assert_eq!(attempt(customer["key"].as_str().unwrap().to_owned()).await, StatusCode::UNAUTHORIZED);
        for _ in 0..9 {
            assert_eq!(attempt("guess".into()).await, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(attempt(KEY.into()).await, StatusCode::TOO_MANY_REQUESTS);
        // Guessing from one address does not lock out the operator elsewhere.
        let elsewhere = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        let signed_in = elsewhere.post(format!("{}/admin/login", app.base))
            .form(&[("key", KEY)]).send().await.unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        let cross_site = browser().post(format!("{}/admin/login", app.base))
            .header("origin", "https://evil.example").form(&[("key", KEY)]).send().await.unwrap();
        assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn the_dashboards_routes_admit_exactly_the_keys_their_access_names(app) {
        app.account_with("mine", "10").await;
        app.account_with("theirs", "10").await;
        let table: Vec<_> = app
            .plugin::<Dashboard>()
            .capability()
            .routes
            .iter()
            .map(|route| (route.method.clone(), route.path, route.access))
            .collect();
        app.assert_plugin_routes(&table);
        let token = |account: &'static str| {
            let app = &app;
            async move {
                let made = app.post(&format!("/v1/accounts/{account}/embed-tokens"), json!({})).await;
                made.body["token"].as_str().unwrap().to_owned()
            }
        };
        app.assert_route_access(
            table,
            &[("account_id", "mine".to_owned()), ("token", token("mine").await)],
            &[("account_id", "theirs".to_owned()), ("token", token("theirs").await)],
        )
        .await;
    }
    sqlite: TestApp::spawn_sqlite(Some(dashboard_alone())).await,
    postgres: TestApp::spawn_postgres(Some(dashboard_alone())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn the_dashboards_write_routes_honour_an_idempotency_key_as_the_table_says(app) {
        app.account_with("mine", "10").await;
        let table = app
            .plugin::<Dashboard>()
            .capability()
            .routes
            .into_iter()
            .map(|route| (route.method, route.path, route.access, route.idempotency))
            .collect();
        app.assert_idempotency(table, &[("account_id", "mine".to_owned()), ("token", "cde_0".to_owned())]).await;
    }
    sqlite: TestApp::spawn_sqlite(Some(dashboard_alone())).await,
    postgres: TestApp::spawn_postgres(Some(dashboard_alone())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn the_description_lists_the_dashboards_routes_its_errors_and_access(app) {
        let spec = app.get("/openapi.json").await.body;
        assert!(spec["paths"]["/v1/accounts/{account_id}/dashboard-sessions"]["post"].is_object());
        assert!(spec["paths"]["/v1/embed/balance/{token}"]["get"].is_object());
        assert!(spec["paths"].get("/dashboard").is_none(), "pages are not API routes");
        testkit::openapi::assert_routes_documented(&app).await;
        testkit::openapi::assert_error_codes(&app, &dashboard::error::DashboardError::codes()).await;
        testkit::openapi::assert_access_documented(&app).await;
    }
    sqlite: TestApp::spawn_sqlite(Some(dashboard_alone())).await,
    postgres: TestApp::spawn_postgres(Some(dashboard_alone())).await,
}

testkit::each_store_test! {
    #[tokio::test]
    async fn links_are_limited_per_client_address_whatever_the_key(app) {
        app.account_with("ada", "10").await;
        // The clock stands still: no token comes back meanwhile.
        for _ in 0..10 {
            let link = app.post("/v1/accounts/ada/dashboard-sessions", json!({})).await;
            assert_eq!(link.status, StatusCode::CREATED, "{link:?}");
        }
        let refused = app.post("/v1/accounts/ada/dashboard-sessions", json!({})).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
        assert_eq!(refused.code(), "rate_limited");
        assert_eq!(refused.headers["retry-after"], "1");
        // Another address has its own bucket.
        let elsewhere = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
            .build()
            .unwrap();
        let theirs = elsewhere
            .post(format!("{}/v1/accounts/ada/dashboard-sessions", app.base))
            .bearer_auth(KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(theirs.status(), StatusCode::CREATED);
    }
    sqlite: TestApp::spawn_sqlite(Some(plugins())).await,
    postgres: TestApp::spawn_postgres(Some(plugins())).await,
}
