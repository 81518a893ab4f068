//! The journal: list, filter, page, read, refund.

use reqwest::StatusCode;
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

store_test! {
    #[tokio::test]
    async fn transactions_list_newest_first_with_filters_and_pages(app) {
        app.account_with("u", "100").await;
        let grants = app.get("/v1/accounts/u/transactions?type=grant").await;
        let grant = ids(&grants.body);
        assert_eq!(grant.len(), 1);
        app.clock.advance_secs(10);
        let mut spent = Vec::new();
        for _ in 0..3 {
            let reply = app.post("/v1/accounts/u/consume", json!({"amount": "1"})).await;
            spent.push(reply.body["transaction"]["id"].as_str().unwrap().to_owned());
            app.clock.advance_secs(10);
        }
        let newest_first = [
            spent[2].clone(),
            spent[1].clone(),
            spent[0].clone(),
            grant[0].clone(),
        ];
        let all = app.get("/v1/accounts/u/transactions").await;
        assert_eq!(ids(&all.body), newest_first);
        let first = &all.body["data"][0];
        for field in [
            "id",
            "type",
            "amount",
            "balance_after",
            "metadata",
            "created_at",
            "lots",
            "postings",
        ] {
            assert!(!first[field].is_null(), "{field} missing from {first}");
        }
        assert_eq!(first["balance_after"], "97");

        let consumes = app.get("/v1/accounts/u/transactions?type=consume").await;
        assert_eq!(ids(&consumes.body), newest_first[..3]);

        // The consumes happened at 08:00:10, 08:00:20 and 08:00:30.
        let window = app
            .get("/v1/accounts/u/transactions?from=2027-01-15T08:00:15Z&to=2027-01-15T08:00:30Z")
            .await;
        assert_eq!(ids(&window.body), [spent[1].clone()]);

        let page = app.get("/v1/accounts/u/transactions?limit=3").await;
        assert_eq!(ids(&page.body), newest_first[..3]);
        let cursor = page.body["next_cursor"].as_str().unwrap();
        let next = app
            .get(&format!(
                "/v1/accounts/u/transactions?limit=3&cursor={cursor}"
            ))
            .await;
        assert_eq!(ids(&next.body), [grant[0].clone()]);
        assert_eq!(next.body["next_cursor"], json!(null));

        let one = app.get(&format!("/v1/transactions/{}", spent[1])).await;
        assert_eq!(one.body, all.body["data"][1]);
    }
}

/// Grants `credits` to `account` from `source`; answers the grant's transaction id.
async fn grant_from(
    app: &crate::support::TestApp,
    account: &str,
    credits: &str,
    source: &str,
) -> String {
    let reply = app
        .post(
            &format!("/v1/accounts/{account}/grants"),
            json!({"amount": credits, "source": source}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    // A grant answers its lot; its transaction is the account's newest grant.
    let newest = app
        .get(&format!(
            "/v1/accounts/{account}/transactions?type=grant&limit=1"
        ))
        .await;
    ids(&newest.body).remove(0)
}

store_test! {
    #[tokio::test]
    async fn transactions_are_filtered_by_several_types_and_by_grant_source(app) {
        app.post("/v1/accounts", json!({"id": "u"})).await;
        let bought = grant_from(&app, "u", "50", "purchase").await;
        let promo = grant_from(&app, "u", "5", "promo").await;
        let spent = app.post("/v1/accounts/u/consume", json!({"amount": "2"})).await;
        let spent = spent.body["transaction"]["id"].as_str().unwrap().to_owned();
        let hold = app.post("/v1/accounts/u/holds", json!({"amount": "3"})).await;
        let hold = hold.body["hold"]["id"].as_str().unwrap().to_owned();
        let commit = app
            .post(&format!("/v1/holds/{hold}/commit"), json!({"amount": "1"}))
            .await;
        let committed = commit.body["transaction"]["id"].as_str().unwrap().to_owned();
        let bought_again = grant_from(&app, "u", "20", "purchase").await;

        let used = app
            .get("/v1/accounts/u/transactions?type=consume,hold_commit")
            .await;
        assert_eq!(ids(&used.body), [committed.clone(), spent.clone()]);

        let purchases = app.get("/v1/accounts/u/transactions?type=grant&source=purchase").await;
        assert_eq!(ids(&purchases.body), [bought_again.clone(), bought.clone()]);
        let alone = app.get("/v1/accounts/u/transactions?source=promo,admin").await;
        assert_eq!(ids(&alone.body), std::slice::from_ref(&promo));
        let mixed = app
            .get("/v1/accounts/u/transactions?type=consume,grant&source=promo,purchase")
            .await;
        assert_eq!(ids(&mixed.body), [bought_again.clone(), promo, bought.clone()]);

        // Paged, the filter holds from one page to the next.
        let first = app
            .get("/v1/accounts/u/transactions?source=purchase&limit=1")
            .await;
        assert_eq!(ids(&first.body), [bought_again]);
        let cursor = first.body["next_cursor"].as_str().unwrap();
        let second = app
            .get(&format!(
                "/v1/accounts/u/transactions?source=purchase&limit=1&cursor={cursor}"
            ))
            .await;
        assert_eq!(ids(&second.body), [bought]);
    }
}

store_test! {
    #[tokio::test]
    async fn a_source_with_types_that_leave_out_grants_is_refused_by_name(app) {
        app.account_with("u", "1").await;
        for (query, words) in [
            ("type=consume&source=purchase", "grant"),
            ("source=purchase,gift", "signup_bonus, daily_reward"),
            ("type=consume,gift", "hold_commit"),
            ("type=consume,", "consume"),
            ("source=", "purchase"),
        ] {
            let reply = app
                .get(&format!("/v1/accounts/u/transactions?{query}"))
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(reply.code(), "invalid_request", "{query}");
            let message = reply.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(words), "{query}: {message}");
        }
    }
}

store_test! {
    #[tokio::test]
    async fn bad_list_parameters_are_refused(app) {
        app.account_with("u", "1").await;
        for (query, code) in [
            ("type=gift", "invalid_request"),
            ("limit=0", "invalid_request"),
            ("limit=101", "invalid_request"),
            ("limit=ten", "invalid_request"),
            ("cursor=lot_1", "invalid_request"),
            ("from=monday", "invalid_timestamp"),
            ("colour=red", "invalid_request"),
        ] {
            let reply = app
                .get(&format!("/v1/accounts/u/transactions?{query}"))
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(reply.code(), code, "{query}");
        }
        let missing = app.get("/v1/transactions/tx_999999999").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.code(), "transaction_not_found");
    }
}

store_test! {
    #[tokio::test]
    async fn refund_returns_credits_in_part_or_whole(app) {
        app.account_with("u", "100").await;
        let spent = app
            .post("/v1/accounts/u/consume", json!({"amount": "40"}))
            .await;
        let tx = spent.body["transaction"]["id"].as_str().unwrap();
        let part = app
            .post(
                &format!("/v1/transactions/{tx}/refund"),
                json!({"amount": "15"}),
            )
            .await;
        assert_eq!(part.status, StatusCode::CREATED, "{part:?}");
        assert_eq!(part.body["type"], "refund");
        assert_eq!(part.body["amount"], "15");
        assert_eq!(part.body["refund_of"], tx);
        assert_eq!(app.available("u").await, "75");
        let too_much = app
            .post(
                &format!("/v1/transactions/{tx}/refund"),
                json!({"amount": "26"}),
            )
            .await;
        assert_eq!(too_much.status, StatusCode::CONFLICT);
        assert_eq!(too_much.code(), "refund_too_large");
        assert_eq!(too_much.body["error"]["refundable"], "25");
        let rest = app
            .post(&format!("/v1/transactions/{tx}/refund"), json!({}))
            .await;
        assert_eq!(rest.status, StatusCode::CREATED);
        assert_eq!(rest.body["amount"], "25");
        assert_eq!(app.available("u").await, "100");
        let nothing_left = app
            .post(&format!("/v1/transactions/{tx}/refund"), json!({}))
            .await;
        assert_eq!(nothing_left.code(), "refund_too_large");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn refund_into_an_expired_lot_expires_again(app) {
        app.account_with("u", "0").await;
        app.post(
            "/v1/accounts/u/grants",
            json!({"amount": "10", "source": "daily_reward", "expires_at": "2027-01-16T00:00:00Z"}),
        )
        .await;
        let spent = app
            .post("/v1/accounts/u/consume", json!({"amount": "10"}))
            .await;
        let tx = spent.body["transaction"]["id"].as_str().unwrap();
        app.clock.advance_secs(86_400);
        let refund = app
            .post(&format!("/v1/transactions/{tx}/refund"), json!({}))
            .await;
        assert_eq!(refund.status, StatusCode::CREATED, "{refund:?}");
        assert_eq!(refund.body["amount"], "0");
        assert!(
            refund.body["postings"]
                .as_array()
                .unwrap()
                .contains(&json!({"account": "expiry", "amount": "10"}))
        );
        assert_eq!(app.available("u").await, "0");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn only_usage_is_refundable(app) {
        app.account_with("u", "10").await;
        let grants = app.get("/v1/accounts/u/transactions?type=grant").await;
        let grant_tx = ids(&grants.body).remove(0);
        let grant = app
            .post(&format!("/v1/transactions/{grant_tx}/refund"), json!({}))
            .await;
        assert_eq!(grant.status, StatusCode::CONFLICT);
        assert_eq!(grant.code(), "not_refundable");
        let missing = app.post("/v1/transactions/tx_999999999/refund", json!({})).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.code(), "transaction_not_found");
    }
}
