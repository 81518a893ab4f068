//! Consume and check.

use reqwest::StatusCode;
use serde_json::json;

store_test! {
    #[tokio::test]
    async fn consume_returns_the_transaction_and_the_balance(app) {
        app.account_with("u", "30").await;
        let purchase = app.get("/v1/accounts/u/grants").await.body["data"][0]["id"].clone();
        let promo = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "30", "source": "promo"}),
            )
            .await
            .body["id"]
            .clone();
        let spent = app
            .post(
                "/v1/accounts/u/consume",
                json!({"amount": "50", "metadata": {"request": "r1"}}),
            )
            .await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        let tx = &spent.body["transaction"];
        assert_eq!(tx["type"], "consume");
        assert_eq!(tx["amount"], "-50");
        assert_eq!(tx["balance_after"], "10");
        assert_eq!(tx["metadata"], json!({"request": "r1"}));
        // The promo burns first though it is newer: purchased credits, the
        // customer's own money, burn last.
        assert_eq!(
            tx["lots"],
            json!([{"lot_id": promo, "amount": "-30"}, {"lot_id": purchase, "amount": "-20"}])
        );
        assert_eq!(
            spent.body["balance"],
            json!({"available": "10", "held": "0", "debt": "0"})
        );
    }
}

store_test! {
    #[tokio::test]
    async fn consume_beyond_the_balance_is_402_and_changes_nothing(app) {
        app.account_with("u", "10").await;
        let before = app.snapshot("u").await;
        let refused = app
            .post("/v1/accounts/u/consume", json!({"amount": "10.000001"}))
            .await;
        assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(refused.code(), "insufficient_credits");
        assert_eq!(refused.body["error"]["required"], "10.000001");
        assert_eq!(refused.body["error"]["available"], "10");
        assert_eq!(app.snapshot("u").await, before);
    }
}

store_test! {
    #[tokio::test]
    async fn consume_by_feature_prices_the_quantity(app) {
        app.account_with("u", "1000").await;
        app.send(
            reqwest::Method::PUT,
            "/v1/features/small-model-tokens",
            Some(json!({"credits_per_unit": "0.1"})),
        )
        .await;
        let spent = app
            .post(
                "/v1/accounts/u/consume",
                json!({"feature": "small-model-tokens", "quantity": 1500}),
            )
            .await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        assert_eq!(spent.body["transaction"]["amount"], "-150");
        assert_eq!(spent.body["transaction"]["feature"], "small-model-tokens");
        assert_eq!(spent.body["transaction"]["quantity"], "1500");
        let unknown = app
            .post(
                "/v1/accounts/u/consume",
                json!({"feature": "nope", "quantity": 1}),
            )
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.code(), "feature_not_found");
        let check = app
            .post(
                "/v1/accounts/u/check",
                json!({"feature": "small-model-tokens", "quantity": "8500.000001"}),
            )
            .await;
        assert_eq!(
            check.body,
            json!({"allowed": false, "required": "850.000001", "available": "850", "overage": "0"})
        );
    }
}

store_test! {
    #[tokio::test]
    async fn check_answers_and_changes_nothing(app) {
        app.account_with("u", "10").await;
        let before = app.snapshot("u").await;
        let yes = app
            .post("/v1/accounts/u/check", json!({"amount": "10"}))
            .await;
        assert_eq!(yes.status, StatusCode::OK);
        assert_eq!(
            yes.body,
            json!({"allowed": true, "required": "10", "available": "10", "overage": "0"})
        );
        let no = app
            .post("/v1/accounts/u/check", json!({"amount": "11"}))
            .await;
        assert_eq!(
            no.body,
            json!({"allowed": false, "required": "11", "available": "10", "overage": "0"})
        );
        assert_eq!(app.snapshot("u").await, before);
    }
}

store_test! {
    #[tokio::test]
    async fn overdraft_lets_consumes_run_into_debt_up_to_the_limit(app) {
        app.post("/v1/accounts", json!({"id": "u", "overdraft_limit": "5"}))
            .await;
        app.post("/v1/accounts/u/grants", json!({"amount": "2", "source": "admin"})).await;
        // A check says how much of a consume would run into the overdraft.
        let check = app.post("/v1/accounts/u/check", json!({"amount": "4"})).await;
        assert_eq!(
            check.body,
            json!({"allowed": true, "required": "4", "available": "2", "overage": "2"})
        );
        let within = app.post("/v1/accounts/u/check", json!({"amount": "1"})).await;
        assert_eq!(within.body["overage"], "0");
        let beyond = app.post("/v1/accounts/u/check", json!({"amount": "8"})).await;
        assert_eq!((&beyond.body["allowed"], &beyond.body["overage"]), (&json!(false), &json!("0")));
        app.post("/v1/accounts/u/consume", json!({"amount": "2"})).await;
        let ok = app
            .post("/v1/accounts/u/consume", json!({"amount": "5"}))
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
        assert_eq!(
            ok.body["transaction"]["sources"],
            json!([{"from": "debt", "amount": "5"}])
        );
        let refused = app
            .post("/v1/accounts/u/consume", json!({"amount": "0.000001"}))
            .await;
        assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(app.balance("u").await["debt"], "5");
    }
}
