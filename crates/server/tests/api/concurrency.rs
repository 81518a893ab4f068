//! Many clients at once on one account: never an overspend.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

store_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_hundred_consumes_of_one_on_a_hundred(app) {
        let app = Arc::new(app);
        app.account_with("hot", "100").await;
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.post("/v1/accounts/hot/consume", json!({"amount": "1"}))
                        .await
                        .status
                })
            })
            .collect();
        let mut ok = 0;
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                StatusCode::OK => ok += 1,
                StatusCode::PAYMENT_REQUIRED => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!((ok, refused), (100, 100));
        let balance = app.balance("hot").await;
        assert_eq!(balance["available"], "0");
        assert_eq!(balance["debt"], "0");
        let consumes = app
            .get("/v1/accounts/hot/transactions?type=consume&limit=100")
            .await;
        assert_eq!(consumes.body["data"].as_array().unwrap().len(), 100);
        // The page is full, and nothing older is a consume.
        let cursor = consumes.body["next_cursor"].as_str().unwrap();
        let older = app
            .get(&format!("/v1/accounts/hot/transactions?type=consume&cursor={cursor}"))
            .await;
        assert_eq!(older.body["data"], json!([]));
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_holds_of_ten_on_a_hundred(app) {
        let app = Arc::new(app);
        app.account_with("hot", "100").await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.post("/v1/accounts/hot/holds", json!({"amount": "10"}))
                        .await
                })
            })
            .collect();
        let mut pending = Vec::new();
        let mut refused = 0;
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                StatusCode::CREATED => {
                    assert_eq!(reply.body["hold"]["status"], "pending");
                    pending.push(reply.body["hold"]["id"].as_str().unwrap().to_owned());
                }
                StatusCode::PAYMENT_REQUIRED => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!((pending.len(), refused), (10, 40));
        let balance = app.balance("hot").await;
        assert_eq!(
            (balance["available"].as_str(), balance["held"].as_str()),
            (Some("0"), Some("100"))
        );
        for id in &pending {
            assert_eq!(
                app.get(&format!("/v1/holds/{id}")).await.body["status"],
                "pending"
            );
        }
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mixed_writes_on_many_accounts_keep_the_journal_sound(app) {
        let app = Arc::new(app);
        for i in 0..10 {
            app.account_with(&format!("a{i}"), "50").await;
        }
        let tasks: Vec<_> = (0..300)
            .map(|n| {
                let app = app.clone();
                tokio::spawn(async move {
                    let account = format!("a{}", n % 10);
                    match n % 5 {
                        0 => {
                            let hold = app
                                .post(
                                    &format!("/v1/accounts/{account}/holds"),
                                    json!({"amount": "3"}),
                                )
                                .await;
                            if let Some(id) = hold.body["hold"]["id"].as_str() {
                                app.post(&format!("/v1/holds/{id}/commit"), json!({"amount": "4"}))
                                    .await;
                            }
                        }
                        1 => {
                            app.post(
                                &format!("/v1/accounts/{account}/grants"),
                                json!({"amount": "2", "source": "promo"}),
                            )
                            .await;
                        }
                        _ => {
                            let spent = app
                                .post(
                                    &format!("/v1/accounts/{account}/consume"),
                                    json!({"amount": "1.5"}),
                                )
                                .await;
                            if n % 7 == 0
                                && let Some(tx) = spent.body["transaction"]["id"].as_str()
                            {
                                app.post(&format!("/v1/transactions/{tx}/refund"), json!({}))
                                    .await;
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        app.assert_verified().await;
    }
}
