//! Accounts: open, read, list, balance.

use reqwest::StatusCode;
use serde_json::json;

store_test! {
    #[tokio::test]
    async fn account_opens_once_and_reads_back(app) {
        let created = app
            .post(
                "/v1/accounts",
                json!({"id": "org:acme", "name": "Acme", "metadata": {"plan": "pro"}, "overdraft_limit": "25"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        assert_eq!(created.body["id"], "org:acme");
        assert_eq!(created.body["name"], "Acme");
        assert_eq!(created.body["metadata"], json!({"plan": "pro"}));
        assert_eq!(created.body["overdraft_limit"], "25");
        assert_eq!(created.body["created_at"], "2027-01-15T08:00:00.000000Z");

        let again = app.post("/v1/accounts", json!({"id": "org:acme"})).await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert_eq!(again.code(), "account_exists");

        // Opened with no sign-up bonus or default plan: no grants.
        assert_eq!(created.body["grants"], json!([]));
        let read = app.get("/v1/accounts/org:acme").await;
        assert_eq!(read.status, StatusCode::OK);
        let mut opened = created.body.clone();
        opened.as_object_mut().unwrap().remove("grants");
        // Reading one account shows how its gateway calls are paid for, and
        // its low-balance threshold, too.
        opened["billing_mode"] = json!("credits");
        opened["byok_fee_percent"] = json!(null);
        opened["low_balance_threshold"] = json!(null);
        assert_eq!(read.body, opened);
    }
}

store_test! {
    #[tokio::test]
    async fn unknown_account_is_not_found_everywhere(app) {
        for path in [
            "/v1/accounts/ghost",
            "/v1/accounts/ghost/balance",
            "/v1/accounts/ghost/grants",
            "/v1/accounts/ghost/transactions",
        ] {
            let reply = app.get(path).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(reply.code(), "account_not_found", "{path}");
        }
        for (path, body) in [
            (
                "/v1/accounts/ghost/grants",
                json!({"amount": "1", "source": "admin"}),
            ),
            ("/v1/accounts/ghost/consume", json!({"amount": "1"})),
            ("/v1/accounts/ghost/check", json!({"amount": "1"})),
            ("/v1/accounts/ghost/holds", json!({"amount": "1"})),
        ] {
            let reply = app.post(path, body).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(reply.code(), "account_not_found", "{path}");
        }
    }
}

store_test! {
    #[tokio::test]
    async fn accounts_list_in_pages(app) {
        for id in ["c", "a", "e", "b", "d"] {
            app.account_with(id, "0").await;
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/accounts?limit=2&cursor={c}"),
                None => "/v1/accounts?limit=2".to_owned(),
            };
            let page = app.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{page:?}");
            for account in page.body["data"].as_array().unwrap() {
                seen.push(account["id"].as_str().unwrap().to_owned());
            }
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    }
}

store_test! {
    #[tokio::test]
    async fn accounts_are_searched_by_id_name_or_metadata_in_any_case(app) {
        for (id, name, metadata) in [
            ("user_1", "Ada Lovelace", json!({"email": "ada@analytical.example"})),
            ("user_2", "Grace Hopper", json!({"email": "grace@navy.example", "team": "cobol"})),
            ("user_3", "张三丰", json!({"note": "100%_off \"vip\""})),
            ("org:lovelace-labs", "Labs", json!({})),
        ] {
            let created = app
                .post("/v1/accounts", json!({"id": id, "name": name, "metadata": metadata}))
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        }
        let found = |search: &str| {
            let app = &app;
            let path = format!("/v1/accounts?search={}", urlencode(search));
            async move {
                let page = app.get(&path).await;
                assert_eq!(page.status, StatusCode::OK, "{page:?}");
                page.body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(found("LOVELACE").await, ["org:lovelace-labs", "user_1"]);
        assert_eq!(found("navy.example").await, ["user_2"]);
        assert_eq!(found("cobol").await, ["user_2"]);
        assert_eq!(found("张三丰").await, ["user_3"]);
        // Characters that are wildcards or quotes to a database are text.
        assert_eq!(found("100%_off").await, ["user_3"]);
        assert_eq!(found("0%_o").await, ["user_3"]);
        assert_eq!(found("\"vip").await, ["user_3"]);
        assert_eq!(found("%%%").await, Vec::<String>::new());
        assert_eq!(found("user_").await, ["user_1", "user_2", "user_3"]);
        assert_eq!(found("nobody").await, Vec::<String>::new());

        // A rename is found at once, and the old name no more.
        let renamed = app
            .send(
                reqwest::Method::PATCH,
                "/v1/accounts/user_1",
                Some(json!({"name": "Augusta King", "metadata": {"email": "countess@example.org"}})),
            )
            .await;
        assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
        assert_eq!(found("lovelace").await, ["org:lovelace-labs"]);
        assert_eq!(found("augusta").await, ["user_1"]);
        assert_eq!(found("countess@").await, ["user_1"]);
        // Writes that leave the name alone keep the account found.
        app.post("/v1/accounts/user_1/grants", json!({"amount": "5", "source": "admin"}))
            .await;
        app.post("/v1/accounts/user_1/consume", json!({"amount": "9"})).await;
        assert_eq!(found("augusta").await, ["user_1"]);

        // Pages of a search, by the same cursor as the list.
        let first = app.get("/v1/accounts?search=user_&limit=2").await;
        assert_eq!(first.body["next_cursor"], "user_2");
        let rest = app
            .get("/v1/accounts?search=user_&limit=2&cursor=user_2")
            .await;
        assert_eq!(rest.body["data"][0]["id"], "user_3");
        assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);

        for short in ["ab", "三丰", "", "\0ab", "a\nbc"] {
            let refused = app
                .get(&format!("/v1/accounts?search={}", urlencode(short)))
                .await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{short:?}");
            assert_eq!(refused.code(), "invalid_request");
        }
        let long = "x".repeat(201);
        let refused = app.get(&format!("/v1/accounts?search={long}")).await;
        assert_eq!(refused.code(), "invalid_request");
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

store_test! {
    #[tokio::test]
    async fn balance_lists_lots_in_burn_order_with_held_and_debt(app) {
        app.account_with("u", "100").await;
        app.post(
            "/v1/accounts/u/grants",
            json!({"amount": "5", "source": "daily_reward", "expires_at": "2027-01-16T00:00:00Z"}),
        )
        .await;
        app.post("/v1/accounts/u/holds", json!({"amount": "10"}))
            .await;
        let balance = app.balance("u").await;
        assert_eq!(balance["account_id"], "u");
        assert_eq!(balance["available"], "95");
        assert_eq!(balance["held"], "10");
        assert_eq!(balance["debt"], "0");
        let lots = balance["lots"].as_array().unwrap();
        // The daily reward went into the hold first; the purchase lot remains.
        assert_eq!(lots.len(), 1);
        assert_eq!(lots[0]["source"], "purchase");
        assert_eq!(lots[0]["remaining"], "95");
        assert_eq!(lots[0]["priority"], 90);
    }
}

store_test! {
    #[tokio::test]
    async fn balance_at_a_past_instant(app) {
        app.account_with("u", "100").await;
        app.clock.advance_secs(3600);
        app.post("/v1/accounts/u/consume", json!({"amount": "40"}))
            .await;
        let before = app
            .get("/v1/accounts/u/balance?at=2027-01-15T08:30:00Z")
            .await;
        assert_eq!(before.status, StatusCode::OK, "{before:?}");
        assert_eq!(before.body["available"], "100");
        assert_eq!(before.body["at"], "2027-01-15T08:30:00.000000Z");
        let after = app
            .get("/v1/accounts/u/balance?at=2027-01-15T09:00:00%2B00:00")
            .await;
        assert_eq!(after.body["available"], "60");
        let earlier = app
            .get("/v1/accounts/u/balance?at=2000-01-01T00:00:00Z")
            .await;
        assert_eq!(earlier.body["available"], "0");
        let bad = app.get("/v1/accounts/u/balance?at=yesterday").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.code(), "invalid_timestamp");
    }
}

store_test! {
    #[tokio::test]
    async fn an_account_is_changed_field_by_field(app) {
        app.post(
            "/v1/accounts",
            json!({"id": "u", "name": "Ada", "metadata": {"plan": "free"}}),
        )
        .await;
        let patch = |body| app.send(reqwest::Method::PATCH, "/v1/accounts/u", Some(body));
        let renamed = patch(json!({"name": "Ada L."})).await;
        assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
        assert_eq!(renamed.body["name"], "Ada L.");
        assert_eq!(renamed.body["metadata"], json!({"plan": "free"}));
        let more = patch(json!({"metadata": {"plan": "pro"}, "overdraft_limit": "5"})).await;
        assert_eq!(more.body["metadata"], json!({"plan": "pro"}));
        assert_eq!(more.body["overdraft_limit"], "5");
        assert_eq!(more.body["name"], "Ada L.");
        let unnamed = patch(json!({"name": null})).await;
        assert_eq!(unnamed.body["name"], serde_json::Value::Null);
        let same = patch(json!({})).await;
        assert_eq!(same.status, StatusCode::OK);
        assert_eq!(app.get("/v1/accounts/u").await.body, same.body);

        // The new overdraft limit is in force at once.
        let spent = app.post("/v1/accounts/u/consume", json!({"amount": "5"})).await;
        assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
        assert_eq!(app.balance("u").await["debt"], "5");
        // Lowered below the debt: the debt stays, further spending is refused.
        let lowered = patch(json!({"overdraft_limit": "0"})).await;
        assert_eq!(lowered.status, StatusCode::OK);
        let refused = app.post("/v1/accounts/u/consume", json!({"amount": "1"})).await;
        assert_eq!(refused.code(), "insufficient_credits");
        assert_eq!(app.balance("u").await["debt"], "5");

        // Checked as on creation; nothing changes on a refusal.
        for (body, code) in [
            (json!({"overdraft_limit": "-1"}), "invalid_amount"),
            (json!({"overdraft_limit": "1e3"}), "invalid_amount"),
            (json!({"name": "x".repeat(257)}), "invalid_request"),
            (json!({"name": "a\u{0}b"}), "invalid_request"),
            (json!({"metadata": [1]}), "invalid_metadata"),
            (json!({"debt": "0"}), "invalid_request"),
            (json!({"id": "v"}), "invalid_request"),
        ] {
            let reply = patch(body.clone()).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
            assert_eq!(reply.code(), code, "{body}");
        }
        assert_eq!(app.get("/v1/accounts/u").await.body, lowered.body);
        let ghost = app
            .send(reqwest::Method::PATCH, "/v1/accounts/ghost", Some(json!({"name": "x"})))
            .await;
        assert_eq!(ghost.code(), "account_not_found");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn lifetime_totals_come_with_the_balance_when_asked(app) {
        app.account_with("u", "100").await;
        app.post(
            "/v1/accounts/u/grants",
            json!({"amount": "10", "source": "promo", "reason": "launch week"}),
        )
        .await;
        let spent = app.post("/v1/accounts/u/consume", json!({"amount": "30"})).await;
        let tx = spent.body["transaction"]["id"].as_str().unwrap().to_owned();
        app.post(&format!("/v1/transactions/{tx}/refund"), json!({"amount": "5"})).await;
        let plain = app.balance("u").await;
        assert!(plain.get("totals").is_none(), "{plain}");
        let with = app.get("/v1/accounts/u/balance?include=totals").await;
        assert_eq!(with.status, StatusCode::OK, "{with:?}");
        assert_eq!(
            with.body["totals"],
            json!({
                "granted": {"purchase": "100", "promo": "10"},
                "spent": "30",
                "refunded": "5",
                "expired": "0",
                "voided": "0",
                "settled": "0"
            })
        );
        assert_eq!(with.body["available"], "85");
        let bad = app.get("/v1/accounts/u/balance?include=everything").await;
        assert_eq!(bad.code(), "invalid_request");
        // The promo grant's transaction keeps its reason and the key that made it.
        let grants = app.get("/v1/accounts/u/transactions?type=grant").await;
        let promo = &grants.body["data"][0];
        assert_eq!(promo["reason"], "launch week");
        assert_eq!(promo["actor"], "key_configured");
    }
}

store_test! {
    #[tokio::test]
    async fn the_forecast_divides_what_is_available_by_the_last_weeks_daily_spend(app) {
        app.account_with("u", "100").await;
        app.account_with("idle", "5").await;
        // Spent eight days before the forecast: outside its window.
        app.post("/v1/accounts/u/consume", json!({"amount": "20"})).await;
        app.clock.advance_secs(2 * 86_400);
        let hold = app.post("/v1/accounts/u/holds", json!({"amount": "10"})).await;
        let hold = hold.body["hold"]["id"].as_str().unwrap().to_owned();
        app.post(&format!("/v1/holds/{hold}/commit"), json!({"amount": "7"})).await;
        let spent = app.post("/v1/accounts/u/consume", json!({"amount": "9"})).await;
        let tx = spent.body["transaction"]["id"].as_str().unwrap().to_owned();
        // A refund in the window is taken off the window's spending.
        app.post(&format!("/v1/transactions/{tx}/refund"), json!({"amount": "2"})).await;
        app.clock.advance_secs(6 * 86_400);

        let reply = app.get("/v1/accounts/u/balance?include=totals,forecast").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["available"], "66");
        assert_eq!(reply.body["totals"]["spent"], "36");
        // 14 credits over 7 days is 2 a day; 66 credits last 33 more days.
        assert_eq!(
            reply.body["forecast"],
            json!({
                "window_days": 7,
                "daily_rate": "2",
                "runs_out_at": "2027-02-25T08:00:00.000000Z"
            })
        );
        let idle = app.get("/v1/accounts/idle/balance?include=forecast").await;
        assert_eq!(
            idle.body["forecast"],
            json!({"window_days": 7, "daily_rate": "0", "runs_out_at": null})
        );
        assert!(idle.body.get("totals").is_none(), "{}", idle.body);
        let plain = app.balance("u").await;
        assert!(plain.get("forecast").is_none(), "{plain}");

        // A week later with nothing spent since, nothing runs out.
        app.clock.advance_secs(7 * 86_400);
        let later = app.get("/v1/accounts/u/balance?include=forecast").await;
        assert_eq!(later.body["forecast"]["runs_out_at"], json!(null));

        for query in ["include=forecast,everything", "include=", "include=forecast,"] {
            let bad = app.get(&format!("/v1/accounts/u/balance?{query}")).await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(bad.code(), "invalid_request", "{query}");
        }
    }
}
