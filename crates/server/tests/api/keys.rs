//! API keys and scopes: every route against every kind of key, and a key's life.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::Keys;

use crate::support::{KEY, TestApp};

/// An account with one object of each kind, and their ids by path parameter.
async fn objects_of(app: &TestApp, account: &str) -> Vec<(&'static str, String)> {
    app.account_with(account, "100").await;
    let grants = app.get(&format!("/v1/accounts/{account}/grants")).await;
    let grant = grants.body["data"][0]["id"].as_str().unwrap().to_owned();
    let spent = app
        .post(
            &format!("/v1/accounts/{account}/consume"),
            json!({"amount": "1"}),
        )
        .await;
    let tx = spent.body["transaction"]["id"].as_str().unwrap().to_owned();
    let held = app
        .post(
            &format!("/v1/accounts/{account}/holds"),
            json!({"amount": "1"}),
        )
        .await;
    let hold = held.body["hold"]["id"].as_str().unwrap().to_owned();
    vec![
        ("account_id", account.to_owned()),
        ("grant_id", grant),
        ("tx_id", tx),
        ("hold_id", hold),
        ("feature_id", "tokens".to_owned()),
        ("key_id", "key_0000000000000000".to_owned()),
    ]
}

store_test! {
    /// Built from the route table, so that a new route cannot be left out.
    #[tokio::test]
    async fn every_route_admits_exactly_the_keys_its_access_names(app) {
        let feature = app
            .send(Method::PUT, "/v1/features/tokens", Some(json!({"credits_per_unit": "1"})))
            .await;
        assert_eq!(feature.status, StatusCode::OK);
        let mine = objects_of(&app, "mine").await;
        let theirs = objects_of(&app, "theirs").await;

        let table = server::routes::table(&app.state, app.capabilities());
        // Each route once, so the walk covers as many routes as the table holds.
        assert_eq!(testkit::app::distinct_routes(&table), table.len());
        // The capabilities' routes are walked too.
        assert!(table.iter().any(|(_, path, _)| *path == "/v1/test-clock/advance"));
        app.assert_route_access(table, &mine, &theirs).await;
    }
}

store_test! {
    #[tokio::test]
    async fn a_key_is_shown_once_listed_by_its_last_four_and_revoked(app) {
        let created = app.create_key("service", "backend").await;
        let key = created["key"].as_str().unwrap().to_owned();
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(key.starts_with("cd_svc_") && key.len() >= 7 + 32, "{key}");
        assert!(id.starts_with("key_"), "{id}");
        assert_eq!(created["kind"], "service");
        assert_eq!(created["name"], "backend");
        assert_eq!(created["last4"], &key[key.len() - 4..]);
        assert_eq!(created["created_at"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(created["last_used_at"], Value::Null);

        let listed = app.get("/v1/keys").await;
        assert_eq!(listed.status, StatusCode::OK);
        let entry = &listed.body["data"][0];
        assert_eq!(entry["id"], id.as_str());
        assert!(entry.get("key").is_none(), "{entry}");
        assert!(!listed.text.contains(&key[7..]), "{}", listed.text);
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

        // The service key works: it opens an account and gives it a key.
        let opened = app
            .send_as(Some(&key), Method::POST, "/v1/accounts", &[], Some(json!({"id": "u"})))
            .await;
        assert_eq!(opened.status, StatusCode::CREATED);
        let customer = app
            .send_as(Some(&key), Method::POST, "/v1/accounts/u/keys", &[], Some(json!({"name": "web"})))
            .await;
        assert_eq!(customer.status, StatusCode::CREATED, "{customer:?}");
        let customer_key = customer.body["key"].as_str().unwrap().to_owned();
        assert!(customer_key.starts_with("cd_cust_"));
        assert_eq!(customer.body["account_id"], "u");
        let of_account = app.get("/v1/accounts/u/keys").await;
        assert_eq!(of_account.body["data"][0]["id"], customer.body["id"]);
        // Customer keys are not among the operator's keys.
        assert_eq!(app.get("/v1/keys").await.body["data"].as_array().unwrap().len(), 1);

        // A customer key reads its own account, with Anthropic's header too.
        let own = app.send_as(Some(&customer_key), Method::GET, "/v1/accounts/u/balance", &[], None).await;
        assert_eq!(own.status, StatusCode::OK);
        let by_header = app
            .send_as(None, Method::GET, "/v1/accounts/u", &[("x-api-key", &customer_key)], None)
            .await;
        assert_eq!(by_header.status, StatusCode::OK, "{by_header:?}");

        // Revoked by the service key, it stops working at once.
        let revoked = app
            .send_as(Some(&key), Method::DELETE, &format!("/v1/keys/{}", customer.body["id"].as_str().unwrap()), &[], None)
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
        assert!(revoked.body["revoked_at"].is_string());
        let after = app.send_as(Some(&customer_key), Method::GET, "/v1/accounts/u/balance", &[], None).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
        assert!(app.get("/v1/accounts/u/keys").await.body["data"].as_array().unwrap().is_empty());
        // A revoked key is gone: revoking it again and changing it are 404,
        // and nothing about it changes.
        let revoked_path = format!("/v1/keys/{}", customer.body["id"].as_str().unwrap());
        let again = app.send_as(Some(&key), Method::DELETE, &revoked_path, &[], None).await;
        assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, "key_not_found"), "{again:?}");
        let renamed = app
            .send(Method::PATCH, &revoked_path, Some(json!({"name": "back again", "project": "p"})))
            .await;
        assert_eq!((renamed.status, renamed.code()), (StatusCode::NOT_FOUND, "key_not_found"), "{renamed:?}");
        let after = app.send_as(Some(&customer_key), Method::GET, "/v1/accounts/u/balance", &[], None).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);

        // A service key may not revoke an operator key.
        let admin = app.create_key("admin", "ops").await;
        let refused = app
            .send_as(Some(&key), Method::DELETE, &format!("/v1/keys/{}", admin["id"].as_str().unwrap()), &[], None)
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.body["error"]["required_scope"], "admin");
        let missing = app.send(Method::DELETE, "/v1/keys/key_0000000000000000", None).await;
        assert_eq!(missing.code(), "key_not_found");
    }
}

store_test! {
    #[tokio::test]
    async fn the_last_admin_key_cannot_be_revoked(app) {
        let first = app.create_key("admin", "first").await;
        let first_id = first["id"].as_str().unwrap();
        let refused = app.send(Method::DELETE, &format!("/v1/keys/{first_id}"), None).await;
        assert_eq!(refused.status, StatusCode::CONFLICT);
        assert_eq!(refused.code(), "last_admin_key");
        let second = app.create_key("admin", "second").await;
        let second_key = second["key"].as_str().unwrap();
        let revoked = app
            .send_as(Some(second_key), Method::DELETE, &format!("/v1/keys/{first_id}"), &[], None)
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
        let first_key = first["key"].as_str().unwrap();
        let gone = app.send_as(Some(first_key), Method::GET, "/v1/keys", &[], None).await;
        assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    }
}

store_test! {
    #[tokio::test]
    async fn keys_are_created_without_idempotency_keys_and_with_clean_names(app) {
        let keyed = app
            .send_as(Some(KEY), Method::POST, "/v1/keys", &[("Idempotency-Key", "k1")], Some(json!({"kind": "service"})))
            .await;
        assert_eq!(keyed.code(), "invalid_request");
        let customer = app.post("/v1/keys", json!({"kind": "customer"})).await;
        assert_eq!(customer.code(), "invalid_request");
        let control = app.post("/v1/keys", json!({"kind": "service", "name": "a\u{0}b"})).await;
        assert_eq!(control.code(), "invalid_request");
        let missing = app.post("/v1/accounts/nobody/keys", json!({})).await;
        assert_eq!(missing.code(), "account_not_found");
        assert!(app.get("/v1/keys").await.body["data"].as_array().unwrap().is_empty());
        // A body is an object, and so is each object in it: the fields in
        // order as an array are refused, at the top and inside.
        app.account_with("u", "0").await;
        let auth = format!("Bearer {KEY}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        for body in ["[null, null]", r#"{"spend_limit": ["1", "day"]}"#] {
            let reply = app.raw(Method::POST, "/v1/accounts/u/keys", &headers, body).await;
            assert_eq!(reply.code(), "invalid_request", "{body}: {reply:?}");
            assert!(
                reply.body["error"]["message"].as_str().unwrap().contains("expected a JSON object"),
                "{reply:?}"
            );
        }
        assert!(app.get("/v1/accounts/u/keys").await.body["data"].as_array().unwrap().is_empty());
        let cursors = [("", "is empty"), ("acct_1", "not a key id"), ("key_", "not a key id")];
        for (cursor, message) in cursors {
            let reply = app.get(&format!("/v1/keys?cursor={cursor}")).await;
            assert_eq!(reply.code(), "invalid_request", "{cursor}");
            assert!(reply.body["error"]["message"].as_str().unwrap().contains(message), "{reply:?}");
        }
    }
}

store_test! {
    #[tokio::test]
    async fn when_a_key_was_last_used_is_written_now_and_then(app) {
        let created = app.create_key("service", "backend").await;
        let key = created["key"].as_str().unwrap();
        app.clock.advance_secs(30);
        let used = app.send_as(Some(key), Method::GET, "/v1/accounts", &[], None).await;
        assert_eq!(used.status, StatusCode::OK);
        let store = app.state.store.as_ref();
        // Never written before: written now, once.
        assert_eq!(app.state.keys.write_usage(store, 60).await.unwrap(), 1);
        assert_eq!(app.state.keys.write_usage(store, 60).await.unwrap(), 0);
        let listed = app.get("/v1/keys").await;
        assert_eq!(listed.body["data"][0]["last_used_at"], "2027-01-15T08:00:30.000000Z");
        // A use less than a minute newer waits; one a minute newer is written.
        app.clock.advance_secs(30);
        app.send_as(Some(key), Method::GET, "/v1/accounts", &[], None).await;
        assert_eq!(app.state.keys.write_usage(store, 60).await.unwrap(), 0);
        app.clock.advance_secs(30);
        app.send_as(Some(key), Method::GET, "/v1/accounts", &[], None).await;
        assert_eq!(app.state.keys.write_usage(store, 60).await.unwrap(), 1);
        let listed = app.get("/v1/keys").await;
        assert_eq!(listed.body["data"][0]["last_used_at"], "2027-01-15T08:01:30.000000Z");
    }
}

store_test! {
    #[tokio::test]
    async fn a_revocation_reaches_every_node_through_its_refresh(app) {
        let created = app.create_key("service", "backend").await;
        let key = created["key"].as_str().unwrap();
        let id = created["id"].as_str().unwrap();
        // Another node, with its own keys in memory, on the same database.
        let other = Keys::new(None);
        other.refresh(app.state.store.as_ref()).await.unwrap();
        let now = ledger::Timestamp::from_secs(1_800_000_000);
        assert!(other.resolve(key, now).is_some());
        app.send(Method::DELETE, &format!("/v1/keys/{id}"), None).await;
        assert!(other.resolve(key, now).is_some());
        other.refresh(app.state.store.as_ref()).await.unwrap();
        assert!(other.resolve(key, now).is_none());
    }
}

store_test! {
    #[tokio::test]
    async fn idempotency_keys_are_kept_per_api_key(app) {
        app.account_with("u", "10").await;
        let service = app.create_key("service", "backend").await;
        let service = service["key"].as_str().unwrap();
        let headers = [("Idempotency-Key", "same")];
        let by_admin = app
            .send_as(Some(KEY), Method::POST, "/v1/accounts/u/consume", &headers, Some(json!({"amount": "1"})))
            .await;
        let by_service = app
            .send_as(Some(service), Method::POST, "/v1/accounts/u/consume", &headers, Some(json!({"amount": "2"})))
            .await;
        assert_eq!(by_admin.status, StatusCode::OK);
        assert_eq!(by_service.status, StatusCode::OK, "{by_service:?}");
        assert!(by_service.headers.get("idempotent-replayed").is_none());
        assert_eq!(app.available("u").await, "7");
    }
}

store_test! {
    /// Built from the route table: every write route honours an
    /// Idempotency-Key as its entry says.
    #[tokio::test]
    async fn every_write_route_honours_an_idempotency_key_as_the_table_says(app) {
        let feature = app
            .send(Method::PUT, "/v1/features/tokens", Some(json!({"credits_per_unit": "1"})))
            .await;
        assert_eq!(feature.status, StatusCode::OK);
        let mine = objects_of(&app, "mine").await;
        let table = server::routes::idempotency_table(&app.state, app.capabilities());
        app.assert_idempotency(table, &mine).await;
    }
}
