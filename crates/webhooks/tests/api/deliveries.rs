//! What endpoints receive: each type with its figures, signed; the low balance once per
//! crossing; retries with backoff, giving up and disabling after three days; the delivery log
//! and sending again.

use reqwest::{Method, StatusCode};
use serde_json::json;

use store::Clock;

use crate::support::*;

/// Whether every request the receiver got is signed with `secret`.
fn all_signed(app: &TestApp, receiver: &Receiver, secret: &str) {
    let now = app.clock.now().micros() / 1_000_000;
    for received in receiver.received() {
        assert!(
            webhooks::domain::verify(
                &received.signature(),
                &received.body,
                secret,
                now,
                24 * 3600
            ),
            "{received:?}"
        );
    }
}

webhooks_test! {
    #[tokio::test]
    async fn a_grant_is_sent_signed_with_its_figures(app) {
        let receiver = Receiver::start().await;
        let made = listening(&app, &receiver).await;
        app.account_with("u", "0").await;
        grant(&app, "u", json!({"amount": "25", "source": "purchase"})).await;
        let round = run(&app).await;
        assert_eq!(round.written, 1, "{round:?}");
        let granted = receiver.events_of("credits.granted");
        assert_eq!(granted.len(), 1, "{:?}", receiver.received());
        let event = &granted[0];
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert!(event["created_at"].is_string());
        assert_eq!(event["data"]["account_id"], "u");
        assert_eq!(event["data"]["amount"], "25");
        assert_eq!(event["data"]["source"], "purchase");
        assert_eq!(event["data"]["available"], "25");
        let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["created_at", "data", "id", "type"]);
        all_signed(&app, &receiver, made["secret"].as_str().unwrap());
        // Run again: nothing is sent twice.
        run(&app).await;
        assert_eq!(receiver.received().len(), 1);
        // The log shows the delivery and its attempt.
        let log = app.get("/v1/webhook-events?type=credits.granted").await;
        assert_eq!(log.status, StatusCode::OK, "{log:?}");
        let logged = &log.body["data"][0];
        assert_eq!(logged["id"], event["id"]);
        assert_eq!(logged["status"], "delivered");
        assert_eq!(logged["deliveries"][0]["status"], "succeeded");
        assert_eq!(logged["deliveries"][0]["attempts"][0]["status_code"], 200);
    }
}

webhooks_test! {
    #[tokio::test]
    async fn a_low_balance_is_sent_once_per_crossing_and_depletion_at_zero(app) {
        let receiver = Receiver::start().await;
        listening(&app, &receiver).await;
        app.account_with("u", "100").await;
        let patched = patch_account(&app, "u", json!({"low_balance_threshold": "20"})).await;
        assert_eq!(patched["low_balance_threshold"], "20");
        consume(&app, "u", "70").await; // 30: above
        consume(&app, "u", "15").await; // 15: crossed
        consume(&app, "u", "5").await; // 10: still below, nothing more
        run(&app).await;
        let low = receiver.events_of("balance.low");
        assert_eq!(low.len(), 1, "{:?}", receiver.received());
        assert_eq!(low[0]["data"]["available"], "15");
        assert_eq!(low[0]["data"]["threshold"], "20");
        // Back above, then below again: a second crossing.
        grant(&app, "u", json!({"amount": "50", "source": "purchase"})).await; // 60
        consume(&app, "u", "45").await; // 15
        consume(&app, "u", "15").await; // 0: depleted
        run(&app).await;
        assert_eq!(receiver.events_of("balance.low").len(), 2);
        let depleted = receiver.events_of("balance.depleted");
        assert_eq!(depleted.len(), 1);
        assert_eq!(depleted[0]["data"]["available"], "0");
        // Without a threshold of its own, the settings' default applies.
        let cleared = patch_account(&app, "u", json!({"low_balance_threshold": null})).await;
        assert_eq!(cleared["low_balance_threshold"], json!(null));
        let settings = app
            .send(Method::PATCH, "/v1/settings/credits", Some(json!({"low_balance_threshold": "5"})))
            .await;
        assert_eq!(settings.status, StatusCode::OK, "{settings:?}");
        grant(&app, "u", json!({"amount": "10", "source": "purchase"})).await;
        consume(&app, "u", "6").await; // 4
        run(&app).await;
        let low = receiver.events_of("balance.low");
        assert_eq!(low.len(), 3);
        assert_eq!(low[2]["data"]["threshold"], "5");
    }
}

webhooks_test! {
    #[tokio::test]
    async fn an_expiring_grant_is_warned_of_days_ahead_and_an_expired_hold_is_told(app) {
        let receiver = Receiver::start().await;
        listening(&app, &receiver).await;
        app.account_with("u", "0").await;
        let expires = ledger::Timestamp::from_micros(app.clock.now().micros() + 10 * 86_400_000_000);
        grant(&app, "u", json!({"amount": "30", "source": "promo", "expires_at": expires.to_string()})).await;
        let used = grant(&app, "u", json!({"amount": "1", "source": "promo", "expires_at": expires.to_string(), "priority": 0})).await;
        let _ = used;
        run(&app).await;
        assert_eq!(receiver.events_of("grant.expiring").len(), 0);
        let scheduled = app.get("/v1/webhook-events?type=grant.expiring").await;
        assert_eq!(scheduled.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(scheduled.body["data"][0]["status"], "scheduled");
        // Spend the small grant whole: its warning no longer holds.
        consume(&app, "u", "1").await;
        app.clock.advance_secs(7 * 86_400 + 60);
        run(&app).await;
        let expiring = receiver.events_of("grant.expiring");
        assert_eq!(expiring.len(), 1, "{:?}", receiver.received());
        assert_eq!(expiring[0]["data"]["amount"], "30");
        assert_eq!(expiring[0]["data"]["expires_at"], expires.to_string());
        let log = app.get("/v1/webhook-events?type=grant.expiring").await;
        let statuses: Vec<&str> = log.body["data"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
        assert!(statuses.contains(&"canceled") && statuses.contains(&"delivered"), "{statuses:?}");
        // A hold left to expire.
        let hold = app.post("/v1/accounts/u/holds", json!({"amount": "5", "ttl_seconds": 60})).await;
        assert_eq!(hold.status, StatusCode::CREATED, "{hold:?}");
        app.clock.advance_secs(120);
        server::jobs::sweep(&app.state).await.unwrap();
        run(&app).await;
        let expired = receiver.events_of("hold.expired");
        assert_eq!(expired.len(), 1, "{:?}", receiver.received());
        assert_eq!(expired[0]["data"]["hold_id"], hold.body["hold"]["id"]);
    }
}

webhooks_test! {
    #[tokio::test]
    async fn a_failing_endpoint_is_retried_with_backoff_then_given_up_and_disabled(app) {
        let receiver = Receiver::start().await;
        let made = listening(&app, &receiver).await;
        let endpoint_path = format!("/v1/webhook-endpoints/{}", made["id"].as_str().unwrap());
        receiver.answer(500);
        app.account_with("u", "5").await;
        run(&app).await;
        assert_eq!(receiver.received().len(), 1);
        let log = app.get("/v1/webhook-events").await;
        let delivery = &log.body["data"][0]["deliveries"][0];
        assert_eq!(delivery["status"], "pending");
        assert_eq!(delivery["attempts"][0]["status_code"], 500);
        let failing = app.get(&endpoint_path).await;
        assert!(failing.body["failing_since"].is_string(), "{failing:?}");
        // Nothing before its time; then the retry, which succeeds.
        app.clock.advance_secs(10);
        run(&app).await;
        assert_eq!(receiver.received().len(), 1);
        receiver.answer(200);
        app.clock.advance_secs(30);
        run(&app).await;
        assert_eq!(receiver.received().len(), 2);
        let log = app.get("/v1/webhook-events").await;
        assert_eq!(log.body["data"][0]["status"], "delivered");
        assert_eq!(app.get(&endpoint_path).await.body["failing_since"], json!(null));
        // Now it fails for good: tried with waits doubling, for three days.
        receiver.answer(503);
        grant(&app, "u", json!({"amount": "1", "source": "purchase"})).await;
        let start = app.clock.now().micros();
        let mut rounds = 0;
        loop {
            run(&app).await;
            rounds += 1;
            let event = &app.get("/v1/webhook-events?limit=1").await.body["data"][0];
            let delivery = &event["deliveries"][0];
            if delivery["status"] != "pending" {
                assert_eq!(delivery["status"], "failed");
                assert_eq!(event["status"], "failed");
                break;
            }
            let next = ledger::Timestamp::parse_rfc3339(delivery["next_attempt_at"].as_str().unwrap()).unwrap();
            app.clock.set(ledger::Timestamp::from_micros(next.micros() + 1));
            assert!(rounds < 100, "still pending after {rounds} rounds");
        }
        let spent = app.clock.now().micros() - start;
        assert!(spent > 2 * 86_400_000_000 && spent <= 3 * 86_400_000_000 + 60_000_000, "{spent}");
        let attempts = receiver.received().len() - 2;
        assert!((15..=30).contains(&attempts), "{attempts} attempts");
        let disabled = app.get(&endpoint_path).await;
        assert_eq!(disabled.body["status"], "disabled", "{disabled:?}");
        assert_eq!(disabled.body["disabled_reason"], "failing");
        // Disabled, it receives nothing more.
        grant(&app, "u", json!({"amount": "1", "source": "purchase"})).await;
        run(&app).await;
        assert_eq!(receiver.received().len() - 2, attempts);
    }
}

webhooks_test! {
    #[tokio::test]
    async fn an_event_is_sent_again_on_request(app) {
        let receiver = Receiver::start().await;
        let made = listening(&app, &receiver).await;
        app.account_with("u", "5").await;
        run(&app).await;
        let first = receiver.received()[0].json();
        let id = first["id"].as_str().unwrap();
        let resent = app.post(&format!("/v1/webhook-events/{id}/resend"), json!({})).await;
        assert_eq!(resent.status, StatusCode::OK, "{resent:?}");
        assert_eq!(resent.body["status"], "pending");
        run(&app).await;
        let received = receiver.received();
        assert_eq!(received.len(), 2);
        assert_eq!(received[1].json(), first);
        let again = app
            .post(
                &format!("/v1/webhook-events/{id}/resend"),
                json!({"endpoint_id": made["id"]}),
            )
            .await;
        assert_eq!(again.status, StatusCode::OK);
        let missing = app
            .post("/v1/webhook-events/evt_000000000000000000000000/resend", json!({}))
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.code(), "webhook_event_not_found");
        let log = app.get(&format!("/v1/webhook-events/{id}")).await;
        assert_eq!(log.body["deliveries"][0]["attempts"].as_array().unwrap().len(), 2);
        // The log narrows to an endpoint, an account, a type.
        let by_endpoint = app
            .get(&format!("/v1/webhook-events?endpoint_id={}", made["id"].as_str().unwrap()))
            .await;
        assert_eq!(by_endpoint.body["data"].as_array().unwrap().len(), 1);
        let other = app.get("/v1/webhook-events?account_id=nobody").await;
        assert_eq!(other.body["data"].as_array().unwrap().len(), 0);
        let bad = app.get("/v1/webhook-events?type=nope").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }
}

webhooks_test! {
    #[tokio::test]
    async fn only_the_types_an_endpoint_chose_reach_it(app) {
        let receiver = Receiver::start().await;
        endpoint(&app, &receiver.url("/low"), &["balance.depleted"]).await;
        run(&app).await;
        app.account_with("u", "5").await;
        consume(&app, "u", "5").await;
        run(&app).await;
        let types: Vec<String> = receiver.received().iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(types, ["balance.depleted"]);
        // No grant event was even written: nobody listens for them.
        let log = app.get("/v1/webhook-events").await;
        assert_eq!(log.body["data"].as_array().unwrap().len(), 1);
    }
}
