//! Registering, listing, changing, disabling, deleting endpoints and rotating their secrets; the
//! refusals; every route's access and its description.

use reqwest::{Method, StatusCode};
use serde_json::json;

use store::Clock;

use crate::support::*;

webhooks_test! {
    #[tokio::test]
    async fn an_endpoint_shows_its_secret_once_and_keeps_it_sealed(app) {
        let made = endpoint(&app, "https://hooks.example.com/creditd", &["balance.low", "credits.granted"]).await;
        let id = made["id"].as_str().unwrap().to_owned();
        let secret = made["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_") && secret.len() == 70, "{secret}");
        assert_eq!(made["secret_last4"], secret[secret.len() - 4..]);
        assert_eq!(made["status"], "enabled");
        assert_eq!(made["events"], json!(["balance.low", "credits.granted"]));
        let read = app.get(&format!("/v1/webhook-endpoints/{id}")).await;
        assert_eq!(read.status, StatusCode::OK);
        assert!(read.body.get("secret").is_none(), "{read:?}");
        assert!(!read.text.contains(&secret[6..]));
        let listed = app.get("/v1/webhook-endpoints").await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        assert!(!listed.text.contains(&secret[6..]));
        // The store holds it sealed, not in the clear.
        let stored = store::records::get::<webhooks::endpoint::Endpoint>(
            app.state.store.as_ref(),
            &id,
        )
        .await
        .unwrap()
        .unwrap();
        let text = serde_json::to_string(&stored.body).unwrap();
        assert!(!text.contains(&secret[6..]), "{text}");
    }
}

webhooks_test! {
    #[tokio::test]
    async fn an_endpoint_changes_disables_and_is_deleted(app) {
        let made = endpoint(&app, "https://hooks.example.com/a", &["*"]).await;
        let path = format!("/v1/webhook-endpoints/{}", made["id"].as_str().unwrap());
        assert_eq!(made["events"], json!(["*"]));
        let changed = app
            .send(Method::PATCH, &path, Some(json!({
                "url": "https://hooks.example.com/b",
                "events": ["topup.failed"],
                "description": "ops",
                "disabled": true
            })))
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
        assert_eq!(changed.body["url"], "https://hooks.example.com/b");
        assert_eq!(changed.body["events"], json!(["topup.failed"]));
        assert_eq!(changed.body["status"], "disabled");
        assert_eq!(changed.body["disabled_reason"], "operator");
        let enabled = app
            .send(Method::PATCH, &path, Some(json!({"disabled": false, "description": null})))
            .await;
        assert_eq!(enabled.body["status"], "enabled");
        assert_eq!(enabled.body["description"], json!(null));
        let deleted = app.send(Method::DELETE, &path, None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let gone = app.get(&path).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(gone.code(), "webhook_endpoint_not_found");
    }
}

webhooks_test! {
    #[tokio::test]
    async fn a_rotated_secret_signs_beside_the_old_one_until_it_lapses(app) {
        let receiver = Receiver::start().await;
        let made = listening(&app, &receiver).await;
        let old = made["secret"].as_str().unwrap().to_owned();
        let path = format!("/v1/webhook-endpoints/{}/rotate-secret", made["id"].as_str().unwrap());
        let rotated = app.post(&path, json!({"previous_secret_hours": 1})).await;
        assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
        let new = rotated.body["secret"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        assert!(rotated.body["previous_secret_expires_at"].is_string());
        app.account_with("u", "5").await;
        run(&app).await;
        let now = app.clock.now().micros() / 1_000_000;
        let first = receiver.received().pop().unwrap();
        for secret in [&new, &old] {
            assert!(webhooks::domain::verify(&first.signature(), &first.body, secret, now, 300));
        }
        // An hour later only the new secret signs.
        app.clock.advance_secs(3601);
        app.post("/v1/accounts/u/grants", json!({"amount": "1", "source": "purchase"})).await;
        run(&app).await;
        let now = app.clock.now().micros() / 1_000_000;
        let second = receiver.received().pop().unwrap();
        assert!(webhooks::domain::verify(&second.signature(), &second.body, &new, now, 300));
        assert!(!webhooks::domain::verify(&second.signature(), &second.body, &old, now, 300));
    }
}

webhooks_test! {
    #[tokio::test]
    async fn bad_endpoints_are_refused_and_nothing_is_stored(app) {
        for (body, code) in [
            (json!({"url": "ftp://x.example.com", "events": ["*"]}), "invalid_webhook_endpoint"),
            (json!({"url": "https://x.example.com", "events": ["balance.lo"]}), "invalid_webhook_endpoint"),
            (json!({"url": "https://x.example.com", "events": []}), "invalid_webhook_endpoint"),
            (json!({"url": "https://x.example.com", "events": vec!["*"; 12]}), "invalid_webhook_endpoint"),
            (json!({"url": "https://x.example.com", "events": ["*", "nope"]}), "invalid_webhook_endpoint"),
            (json!({"url": "https://x.example.com"}), "invalid_request"),
            (json!({"url": "https://x.example.com", "events": ["*"], "extra": 1}), "invalid_request"),
        ] {
            let reply = app.post("/v1/webhook-endpoints", body.clone()).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
            assert_eq!(reply.code(), code, "{body}");
        }
        for i in 0..16 {
            endpoint(&app, &format!("https://hooks.example.com/{i}"), &["*"]).await;
        }
        let over = app
            .post("/v1/webhook-endpoints", json!({"url": "https://hooks.example.com/x", "events": ["*"]}))
            .await;
        assert_eq!(over.status, StatusCode::CONFLICT);
        assert_eq!(over.code(), "webhook_endpoint_limit");
        assert_eq!(app.get("/v1/webhook-endpoints").await.body["data"].as_array().unwrap().len(), 16);
        let bad_id = app.get("/v1/webhook-endpoints/nope").await;
        assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    }
}

/// Billing and the webhooks as an operator runs them by default: private
/// addresses refused, and no master key.
fn strict(
    store: std::sync::Arc<dyn store::Store>,
    clock: std::sync::Arc<dyn store::Clock>,
) -> Plugged {
    plugged(store, clock, webhooks::WebhookConfig::default())
}

webhooks_test! {
    #[tokio::test]
    async fn private_addresses_and_a_missing_master_key_are_refused(app) with strict {
        let reply = app
            .post("/v1/webhook-endpoints", json!({"url": "https://hooks.example.com", "events": ["*"]}))
            .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.code(), "webhooks_not_configured");
    }
}

fn strict_with_key(
    store: std::sync::Arc<dyn store::Store>,
    clock: std::sync::Arc<dyn store::Clock>,
) -> Plugged {
    plugged(
        store,
        clock,
        webhooks::WebhookConfig {
            keyring: Some(keyring()),
            ..webhooks::WebhookConfig::default()
        },
    )
}

webhooks_test! {
    #[tokio::test]
    async fn endpoints_in_the_operators_network_are_refused_unless_allowed(app) with strict_with_key {
        for url in [
            "http://127.0.0.1:9000/hooks",
            "http://localhost/hooks",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.8/",
            "http://[::1]/",
        ] {
            let reply = app
                .post("/v1/webhook-endpoints", json!({"url": url, "events": ["*"]}))
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}");
            assert_eq!(reply.code(), "invalid_webhook_endpoint", "{url}");
        }
        endpoint(&app, "https://hooks.example.com/creditd", &["*"]).await;
    }
}

webhooks_test! {
    #[tokio::test]
    async fn every_webhook_route_admits_exactly_the_keys_its_access_names(app) with alone {
        let made = endpoint(&app, "https://hooks.example.com/a", &["*"]).await;
        let receiver = Receiver::start().await;
        listening(&app, &receiver).await;
        app.account_with("mine", "1").await;
        app.account_with("theirs", "1").await;
        run(&app).await;
        let event = app.get("/v1/webhook-events?account_id=mine").await.body["data"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ids = |account: &str| {
            vec![
                ("account_id", account.to_owned()),
                ("endpoint_id", made["id"].as_str().unwrap().to_owned()),
                ("event_id", event.clone()),
            ]
        };
        let table: Vec<_> = webhooks(&app)
            .capability()
            .routes
            .iter()
            .map(|route| (route.method.clone(), route.path, route.access))
            .collect();
        app.assert_plugin_routes(&table);
        app.assert_route_access(table, &ids("mine"), &ids("theirs")).await;
    }
}
