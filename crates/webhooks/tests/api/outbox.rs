//! The outbox: every change gives its events once, however many dispatchers (nodes) read the
//! journal at once while writes commit out of the order of their ids, and a change refused gives
//! none.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

webhooks_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn each_change_gives_its_event_once_with_two_dispatchers_racing(app) {
        let receiver = Receiver::start().await;
        listening(&app, &receiver).await;
        for a in 0..8 {
            app.account_with(&format!("a{a}"), "0").await;
        }
        // A second node's webhooks over the same store.
        let first = webhooks(&app);
        let second = Arc::new(webhooks::Webhooks::new(
            app.state.store.clone(),
            first.clock.clone(),
            first.billing.clone(),
            config(),
        ));
        let done = Arc::new(AtomicBool::new(false));
        let mut dispatchers = Vec::new();
        for node in [first.clone(), second] {
            let done = done.clone();
            dispatchers.push(tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    node.run_once().await.unwrap();
                }
                for _ in 0..3 {
                    node.run_once().await.unwrap();
                }
            }));
        }
        let mut writers = Vec::new();
        for a in 0..8 {
            let client = app.client.clone();
            let base = app.base.clone();
            writers.push(tokio::spawn(async move {
                for _ in 0..25 {
                    let reply = client
                        .post(format!("{base}/v1/accounts/a{a}/grants"))
                        .bearer_auth(testkit::app::KEY)
                        .json(&json!({"amount": "1", "source": "purchase"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(reply.status(), StatusCode::CREATED);
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        for dispatcher in dispatchers {
            dispatcher.await.unwrap();
        }
        let granted = receiver.events_of("credits.granted");
        let mut by_tx: HashMap<String, usize> = HashMap::new();
        for event in &granted {
            *by_tx.entry(event["data"]["transaction_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        assert_eq!(by_tx.len(), 200, "every grant gave its event");
        assert!(by_tx.values().all(|n| *n == 1), "none was sent twice: {by_tx:?}");
        // A refused change gives none.
        let refused = app.post("/v1/accounts/a0/consume", json!({"amount": "1000"})).await;
        assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
        let bad = app.post("/v1/accounts/a0/grants", json!({"amount": "-1", "source": "purchase"})).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        run(&app).await;
        assert_eq!(receiver.received().len(), 200);
        app.assert_verified().await;
    }
}
