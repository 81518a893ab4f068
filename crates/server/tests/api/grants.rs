//! Grants: create, list, read, void, and the burn-down scenarios.

use reqwest::StatusCode;
use serde_json::json;

store_test! {
    #[tokio::test]
    async fn grant_creates_a_lot_with_its_defaults(app) {
        app.account_with("u", "0").await;
        let grant = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": 12.5, "source": "signup_bonus", "metadata": {"campaign": "launch"}}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{grant:?}");
        assert!(grant.body["id"].as_str().unwrap().starts_with("lot_"));
        assert_eq!(grant.body["amount"], "12.5");
        assert_eq!(grant.body["remaining"], "12.5");
        assert_eq!(grant.body["source"], "signup_bonus");
        assert_eq!(grant.body["priority"], 50);
        assert_eq!(grant.body["expires_at"], json!(null));
        assert_eq!(grant.body["effective_at"], grant.body["created_at"]);
        assert_eq!(grant.body["metadata"], json!({"campaign": "launch"}));
        let read = app
            .get(&format!("/v1/grants/{}", grant.body["id"].as_str().unwrap()))
            .await;
        assert_eq!(read.body, grant.body);
        assert_eq!(app.available("u").await, "12.5");
    }
}

store_test! {
    #[tokio::test]
    async fn grants_list_newest_first_in_pages(app) {
        app.account_with("u", "0").await;
        let mut created = Vec::new();
        for amount in ["1", "2", "3"] {
            let grant = app
                .post(
                    "/v1/accounts/u/grants",
                    json!({"amount": amount, "source": "admin"}),
                )
                .await;
            created.push(grant.body["id"].clone());
        }
        let first = app.get("/v1/accounts/u/grants?limit=2").await;
        let ids: Vec<_> = first.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].clone())
            .collect();
        assert_eq!(ids, [created[2].clone(), created[1].clone()]);
        let cursor = first.body["next_cursor"].as_str().unwrap();
        let second = app
            .get(&format!("/v1/accounts/u/grants?limit=2&cursor={cursor}"))
            .await;
        assert_eq!(second.body["data"][0]["id"], created[0]);
        assert_eq!(second.body["next_cursor"], json!(null));
    }
}

store_test! {
    #[tokio::test]
    async fn lower_priority_lot_burns_first(app) {
        app.account_with("u", "0").await;
        let a = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "100", "source": "admin", "priority": 1}),
            )
            .await;
        let b = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "100", "source": "admin", "priority": 2}),
            )
            .await;
        let spent = app
            .post("/v1/accounts/u/consume", json!({"amount": "120"}))
            .await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        let a = app
            .get(&format!("/v1/grants/{}", a.body["id"].as_str().unwrap()))
            .await;
        let b = app
            .get(&format!("/v1/grants/{}", b.body["id"].as_str().unwrap()))
            .await;
        assert_eq!(a.body["remaining"], "0");
        assert_eq!(b.body["remaining"], "80");
    }
}

store_test! {
    #[tokio::test]
    async fn at_equal_priority_the_sooner_expiry_burns_first(app) {
        app.account_with("u", "0").await;
        // B expires in 100 years, A in 30 days; B is granted first.
        let b = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "100", "source": "admin", "priority": 5, "expires_at": "2127-01-15T08:00:00Z"}),
            )
            .await;
        let a = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "100", "source": "admin", "priority": 5, "expires_at": "2027-02-14T08:00:00Z"}),
            )
            .await;
        app.post("/v1/accounts/u/consume", json!({"amount": "120"}))
            .await;
        let a = app
            .get(&format!("/v1/grants/{}", a.body["id"].as_str().unwrap()))
            .await;
        let b = app
            .get(&format!("/v1/grants/{}", b.body["id"].as_str().unwrap()))
            .await;
        assert_eq!(a.body["remaining"], "0");
        assert_eq!(b.body["remaining"], "80");
    }
}

store_test! {
    #[tokio::test]
    async fn future_grant_is_not_spendable_until_effective(app) {
        app.account_with("u", "0").await;
        let grant = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "50", "source": "subscription", "effective_at": "2027-02-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{grant:?}");
        let refused = app
            .post("/v1/accounts/u/consume", json!({"amount": "1"}))
            .await;
        assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(refused.code(), "insufficient_credits");
        let balance = app.balance("u").await;
        assert_eq!(balance["available"], "0");
        // Shown as a lot that is not yet effective.
        assert_eq!(
            balance["lots"][0]["effective_at"],
            "2027-02-01T00:00:00.000000Z"
        );
        app.clock.advance_secs(17 * 86_400);
        let spent = app
            .post("/v1/accounts/u/consume", json!({"amount": "1"}))
            .await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        assert_eq!(app.available("u").await, "49");
    }
}

store_test! {
    #[tokio::test]
    async fn void_then_overdraft_then_grant_repays_debt(app) {
        // Without an overdraft limit.
        app.account_with("plain", "0").await;
        let lot = app
            .post(
                "/v1/accounts/plain/grants",
                json!({"amount": "100", "source": "purchase"}),
            )
            .await;
        let lot = lot.body["id"].as_str().unwrap().to_owned();
        app.post("/v1/accounts/plain/consume", json!({"amount": "50"}))
            .await;
        let voided = app.post(&format!("/v1/grants/{lot}/void"), json!({})).await;
        assert_eq!(voided.status, StatusCode::OK, "{voided:?}");
        assert_eq!(voided.body["remaining"], "0");
        assert!(voided.body["voided_at"].is_string());
        let refused = app
            .post("/v1/accounts/plain/consume", json!({"amount": "50"}))
            .await;
        assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(refused.body["error"]["available"], "0");
        assert_eq!(refused.body["error"]["required"], "50");

        // With an overdraft limit of 50.
        let created = app
            .post("/v1/accounts", json!({"id": "od", "overdraft_limit": "50"}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let lot = app
            .post(
                "/v1/accounts/od/grants",
                json!({"amount": "100", "source": "purchase"}),
            )
            .await;
        let lot = lot.body["id"].as_str().unwrap().to_owned();
        app.post("/v1/accounts/od/consume", json!({"amount": "50"}))
            .await;
        app.post(&format!("/v1/grants/{lot}/void"), json!({})).await;
        let into_debt = app
            .post("/v1/accounts/od/consume", json!({"amount": "50"}))
            .await;
        assert_eq!(into_debt.status, StatusCode::OK, "{into_debt:?}");
        assert_eq!(into_debt.body["balance"]["debt"], "50");
        assert_eq!(into_debt.body["balance"]["available"], "-50");
        app.post(
            "/v1/accounts/od/grants",
            json!({"amount": "100", "source": "purchase"}),
        )
        .await;
        let balance = app.balance("od").await;
        assert_eq!(balance["debt"], "0");
        assert_eq!(balance["available"], "50");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn void_twice_or_of_nothing_is_refused(app) {
        app.account_with("u", "10").await;
        let grants = app.get("/v1/accounts/u/grants").await;
        let lot = grants.body["data"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(
            app.post(&format!("/v1/grants/{lot}/void"), json!({}))
                .await
                .status,
            StatusCode::OK
        );
        let again = app.post(&format!("/v1/grants/{lot}/void"), json!({})).await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert_eq!(again.code(), "grant_voided");
        let missing = app
            .post("/v1/grants/lot_999999999/void", json!({}))
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.code(), "grant_not_found");
        let bad = app.post("/v1/grants/99/void", json!({})).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.code(), "invalid_id");
        // The body is optional.
        let other = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "1", "source": "admin"}),
            )
            .await;
        let other = other.body["id"].as_str().unwrap();
        let empty = app
            .raw(
                reqwest::Method::POST,
                &format!("/v1/grants/{other}/void"),
                &[("authorization", "Bearer test-admin-key")],
                "",
            )
            .await;
        assert_eq!(empty.status, StatusCode::OK, "{empty:?}");
    }
}

store_test! {
    #[tokio::test]
    async fn expired_lot_stops_counting_and_the_sweep_writes_its_expiry(app) {
        app.account_with("u", "0").await;
        let lot = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "10", "source": "daily_reward", "expires_at": "2027-01-16T00:00:00Z"}),
            )
            .await
            .body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(app.available("u").await, "10");
        assert_eq!(
            app.get(&format!("/v1/grants/{lot}")).await.body["status"],
            "active"
        );
        app.clock
            .set(ledger::Timestamp::parse_rfc3339("2027-01-16T00:00:00Z").unwrap());
        assert_eq!(app.available("u").await, "0");
        // Before the sweep writes anything, the grant already reads as expired.
        let grant = app.get(&format!("/v1/grants/{lot}")).await;
        assert_eq!(
            (
                grant.body["status"].as_str(),
                grant.body["remaining"].as_str()
            ),
            (Some("expired"), Some("0"))
        );
        let settled = server::jobs::sweep(&app.state).await.unwrap();
        assert_eq!(settled, 1);
        let expiries = app.get("/v1/accounts/u/transactions?type=expire").await;
        let data = expiries.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["amount"], "-10");
        assert_eq!(data[0]["grant_id"], lot.as_str());
        // Running the sweep again writes nothing more.
        assert_eq!(server::jobs::sweep(&app.state).await.unwrap(), 0);
        app.assert_verified().await;
    }
}
