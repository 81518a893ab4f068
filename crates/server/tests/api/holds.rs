//! Holds: reserve, commit, release, expire.

use reqwest::StatusCode;
use serde_json::json;

store_test! {
    #[tokio::test]
    async fn hold_then_commit_less_returns_the_rest(app) {
        app.account_with("u", "100").await;
        let hold = app
            .post(
                "/v1/accounts/u/holds",
                json!({"amount": "30", "ttl_seconds": 120, "metadata": {"model": "m"}}),
            )
            .await;
        assert_eq!(hold.status, StatusCode::CREATED, "{hold:?}");
        assert_eq!(hold.body["hold"]["status"], "pending");
        assert_eq!(hold.body["hold"]["amount"], "30");
        assert_eq!(hold.body["hold"]["expires_at"], "2027-01-15T08:02:00.000000Z");
        assert_eq!(hold.body["transaction"]["type"], "hold");
        assert_eq!(hold.body["balance"]["held"], "30");
        let id = hold.body["hold"]["id"].as_str().unwrap().to_owned();
        let balance = app.balance("u").await;
        assert_eq!(
            (balance["available"].as_str(), balance["held"].as_str()),
            (Some("70"), Some("30"))
        );

        let read = app.get(&format!("/v1/holds/{id}")).await;
        assert_eq!(read.body["status"], "pending");
        assert_eq!(read.body["metadata"], json!({"model": "m"}));

        let commit = app
            .post(
                &format!("/v1/holds/{id}/commit"),
                json!({"amount": "12.25"}),
            )
            .await;
        assert_eq!(commit.status, StatusCode::OK, "{commit:?}");
        assert_eq!(commit.body["hold"]["status"], "committed");
        assert_eq!(commit.body["hold"]["committed_amount"], "12.25");
        assert_eq!(commit.body["transaction"]["type"], "hold_commit");
        assert_eq!(commit.body["transaction"]["amount"], "-12.25");
        assert_eq!(app.available("u").await, "87.75");
        assert_eq!(app.balance("u").await["held"], "0");

        let twice = app
            .post(&format!("/v1/holds/{id}/commit"), json!({"amount": "1"}))
            .await;
        assert_eq!(twice.status, StatusCode::CONFLICT);
        assert_eq!(twice.code(), "hold_not_pending");
        let release = app
            .post(&format!("/v1/holds/{id}/release"), json!({}))
            .await;
        assert_eq!(release.status, StatusCode::CONFLICT);
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn commit_of_more_than_held_charges_the_excess_and_records_debt(app) {
        app.account_with("u", "50").await;
        let hold = app
            .post("/v1/accounts/u/holds", json!({"amount": "30"}))
            .await;
        let id = hold.body["hold"]["id"].as_str().unwrap();
        let commit = app
            .post(&format!("/v1/holds/{id}/commit"), json!({"amount": "80"}))
            .await;
        assert_eq!(commit.status, StatusCode::OK, "{commit:?}");
        assert_eq!(commit.body["balance"]["debt"], "30");
        assert_eq!(commit.body["balance"]["available"], "-30");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn release_returns_the_credits(app) {
        app.account_with("u", "50").await;
        let hold = app
            .post("/v1/accounts/u/holds", json!({"amount": "30"}))
            .await;
        let id = hold.body["hold"]["id"].as_str().unwrap();
        let released = app
            .post(&format!("/v1/holds/{id}/release"), json!({}))
            .await;
        assert_eq!(released.status, StatusCode::OK, "{released:?}");
        assert_eq!(released.body["hold"]["status"], "released");
        assert_eq!(released.body["transaction"]["type"], "hold_release");
        assert_eq!(released.body["balance"]["available"], "50");
        assert_eq!(app.available("u").await, "50");
        let again = app
            .post(&format!("/v1/holds/{id}/release"), json!({}))
            .await;
        assert_eq!(again.code(), "hold_not_pending");
    }
}

store_test! {
    #[tokio::test]
    async fn hold_expires_by_itself(app) {
        app.account_with("u", "50").await;
        let hold = app
            .post(
                "/v1/accounts/u/holds",
                json!({"amount": "20", "ttl_seconds": 60}),
            )
            .await;
        let id = hold.body["hold"]["id"].as_str().unwrap();
        app.clock.advance_secs(60);
        // Before any job runs, it already reads as expired and released.
        let read = app.get(&format!("/v1/holds/{id}")).await;
        assert_eq!(read.body["status"], "expired");
        assert_eq!(read.body["resolved_at"], read.body["expires_at"]);
        assert_eq!(app.available("u").await, "50");
        let commit = app
            .post(&format!("/v1/holds/{id}/commit"), json!({"amount": "1"}))
            .await;
        assert_eq!(commit.status, StatusCode::CONFLICT);
        assert_eq!(commit.code(), "hold_not_pending");
        // The commit attempt settled the account: the release is in the journal.
        let releases = app
            .get("/v1/accounts/u/transactions?type=hold_release")
            .await;
        assert_eq!(releases.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(server::jobs::sweep(&app.state).await.unwrap(), 0);
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn hold_beyond_the_balance_and_bad_ttls_are_refused(app) {
        app.account_with("u", "10").await;
        let big = app
            .post("/v1/accounts/u/holds", json!({"amount": "11"}))
            .await;
        assert_eq!(big.status, StatusCode::PAYMENT_REQUIRED);
        for ttl in [0, -1, 86_401] {
            let bad = app
                .post(
                    "/v1/accounts/u/holds",
                    json!({"amount": "1", "ttl_seconds": ttl}),
                )
                .await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{ttl}");
            assert_eq!(bad.code(), "invalid_request");
        }
        let max = app
            .post(
                "/v1/accounts/u/holds",
                json!({"amount": "1", "ttl_seconds": 86_400}),
            )
            .await;
        assert_eq!(max.status, StatusCode::CREATED);
        assert_eq!(max.body["hold"]["expires_at"], "2027-01-16T08:00:00.000000Z");
        let default = app
            .post("/v1/accounts/u/holds", json!({"amount": "1"}))
            .await;
        assert_eq!(default.body["hold"]["expires_at"], "2027-01-15T08:15:00.000000Z");
    }
}

store_test! {
    #[tokio::test]
    async fn unknown_and_malformed_hold_ids(app) {
        let missing = app.get("/v1/holds/hold_404").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.code(), "hold_not_found");
        let commit = app
            .post("/v1/holds/hold_404/commit", json!({"amount": "1"}))
            .await;
        assert_eq!(commit.code(), "hold_not_found");
        let bad = app.get("/v1/holds/lot_1").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.code(), "invalid_id");
    }
}

store_test! {
    #[tokio::test]
    async fn an_accounts_holds_are_listed_newest_first_and_by_status(app) {
        app.account_with("u", "100").await;
        app.account_with("other", "100").await;
        let mut ids = Vec::new();
        for (amount, ttl) in [("10", 60), ("20", 600), ("30", 600), ("5", 600)] {
            let hold = app
                .post(
                    "/v1/accounts/u/holds",
                    json!({"amount": amount, "ttl_seconds": ttl}),
                )
                .await;
            assert_eq!(hold.status, StatusCode::CREATED, "{hold:?}");
            ids.push(hold.body["hold"]["id"].as_str().unwrap().to_owned());
        }
        app.post("/v1/accounts/other/holds", json!({"amount": "1"}))
            .await;
        let commit = app
            .post(&format!("/v1/holds/{}/commit", ids[1]), json!({"amount": "2"}))
            .await;
        assert_eq!(commit.status, StatusCode::OK);
        let release = app
            .post(&format!("/v1/holds/{}/release", ids[2]), json!({}))
            .await;
        assert_eq!(release.status, StatusCode::OK);
        // The first hold's time runs out; no sweep has written it yet.
        app.clock.advance_secs(60);

        let listed = |path: &str| {
            let app = &app;
            let path = path.to_owned();
            async move {
                let page = app.get(&path).await;
                assert_eq!(page.status, StatusCode::OK, "{page:?}");
                page.body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h["id"].as_str().unwrap().to_owned(),
                            h["status"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let all = listed("/v1/accounts/u/holds").await;
        let statuses: Vec<&str> = all.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(statuses, ["pending", "released", "committed", "expired"]);
        assert_eq!(all[0].0, ids[3]);
        assert_eq!(
            listed("/v1/accounts/u/holds?status=pending").await,
            [(ids[3].clone(), "pending".to_owned())]
        );
        assert_eq!(
            listed("/v1/accounts/u/holds?status=expired").await,
            [(ids[0].clone(), "expired".to_owned())]
        );
        assert_eq!(
            listed("/v1/accounts/u/holds?status=committed").await,
            [(ids[1].clone(), "committed".to_owned())]
        );

        let first = app.get("/v1/accounts/u/holds?limit=3").await;
        assert_eq!(first.body["data"].as_array().unwrap().len(), 3);
        let cursor = first.body["next_cursor"].as_str().unwrap();
        assert_eq!(cursor, ids[1]);
        let rest = listed(&format!("/v1/accounts/u/holds?limit=3&cursor={cursor}")).await;
        assert_eq!(rest, [(ids[0].clone(), "expired".to_owned())]);

        let bad = app.get("/v1/accounts/u/holds?status=open").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.code(), "invalid_request");
        let missing = app.get("/v1/accounts/nobody/holds").await;
        assert_eq!(missing.code(), "account_not_found");
    }
}
