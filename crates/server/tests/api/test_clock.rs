//! The test clock: moved forward by an admin, for everything that reads the
//! time; kept in the store; never backwards; absent unless the server adds it.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use server::test_clock::{ADVANCE_SECONDS_MAX, TestClock};
use store::ManualClock;

use crate::support::{KEY, START};

const DAY: i64 = 86_400;

store_test! {
    #[tokio::test]
    async fn an_advance_moves_expiries_holds_and_writes_forward_for_good(app) {
        let shown = app.get("/v1/test-clock").await;
        assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
        assert_eq!(
            shown.body,
            json!({"enabled": true, "now": "2027-01-15T08:00:00.000000Z", "offset_seconds": 0})
        );

        app.account_with("u", "0").await;
        let grant = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "10", "source": "promo", "expires_at": "2027-01-16T08:00:00Z"}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{grant:?}");
        let hold = app
            .post("/v1/accounts/u/holds", json!({"amount": "4", "ttl_seconds": 60}))
            .await;
        assert_eq!(hold.status, StatusCode::CREATED, "{hold:?}");
        let hold_id = hold.body["hold"]["id"].as_str().unwrap().to_owned();
        assert_eq!(app.balance("u").await["held"], "4");

        let advanced = app
            .post("/v1/test-clock/advance", json!({"seconds": 2 * DAY}))
            .await;
        assert_eq!(advanced.status, StatusCode::OK, "{advanced:?}");
        assert_eq!(
            advanced.body,
            json!({"enabled": true, "now": "2027-01-17T08:00:00.000000Z", "offset_seconds": 2 * DAY})
        );
        assert_eq!(app.get("/v1/test-clock").await.body, advanced.body);

        // Reads are at the new time at once: the lot has expired and the
        // hold's time ran out.
        let balance = app.balance("u").await;
        assert_eq!((balance["available"].as_str(), balance["held"].as_str()), (Some("0"), Some("0")));
        assert_eq!(app.get(&format!("/v1/holds/{hold_id}")).await.body["status"], "expired");

        // The sweep, on the same clock, writes the release and the expiry.
        assert_eq!(server::jobs::sweep(&app.state).await.unwrap(), 1);
        let journal = app.get("/v1/accounts/u/transactions").await.body;
        let kinds: Vec<(&str, &str, &str)> = journal["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["type"].as_str().unwrap(),
                    t["amount"].as_str().unwrap(),
                    t["created_at"].as_str().unwrap(),
                )
            })
            .collect();
        let after = "2027-01-17T08:00:00.000000Z";
        // The release returns the hold's 4 to a lot already past its
        // expiry, so they leave again with it; the expiry takes the other 6.
        assert_eq!(
            kinds,
            [
                ("expire", "-6", after),
                ("hold_release", "-4", after),
                ("hold", "0", "2027-01-15T08:00:00.000000Z"),
                ("grant", "10", "2027-01-15T08:00:00.000000Z"),
            ]
        );
        assert_eq!(server::jobs::sweep(&app.state).await.unwrap(), 0);

        // Writes are stamped with the new time too.
        let later = app
            .post("/v1/accounts/u/grants", json!({"amount": "1", "source": "purchase"}))
            .await;
        assert_eq!(later.body["created_at"], after, "{later:?}");
        assert_eq!(app.available("u").await, "1");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn the_offset_is_kept_in_the_store_and_a_starting_node_takes_it_up(app) {
        app.post("/v1/test-clock/advance", json!({"seconds": 3_600})).await;
        app.post("/v1/test-clock/advance", json!({"seconds": 60})).await;
        let kept = app.state.store.record("test_clock".into(), "offset".into()).await.unwrap().unwrap();
        assert_eq!(kept.version, 2);
        let body: Value = serde_json::from_str(&kept.body).unwrap();
        assert_eq!(body, json!({"offset_micros": 3_660_000_000_i64}));

        // A node starting on the same store, as after a restart, runs at the
        // kept offset once it has read it.
        let restarted = TestClock::new(Arc::new(ManualClock::new(START)));
        assert_eq!(restarted.offset_micros(), 0);
        assert_eq!(restarted.refresh(app.state.store.as_ref()).await.unwrap(), 3_660_000_000);
        assert_eq!(restarted.clock().now(), START.plus_secs(3_660));
    }
}

store_test! {
    #[tokio::test]
    async fn two_nodes_advancing_at_once_lose_no_step(app) {
        let other = TestClock::new(Arc::new(ManualClock::new(START)));
        let store = app.state.store.clone();
        let mut advances = tokio::task::JoinSet::new();
        for i in 0..8_i64 {
            let clock = if i % 2 == 0 { app.test_clock.clone() } else { other.clone() };
            let store = store.clone();
            advances.spawn(async move { clock.advance(store.as_ref(), i + 1).await });
        }
        while let Some(advanced) = advances.join_next().await {
            advanced.unwrap().unwrap();
        }
        // 1 + 2 + ... + 8 seconds, each step once.
        let total = 36 * 1_000_000;
        for clock in [&app.test_clock, &other] {
            assert_eq!(clock.refresh(store.as_ref()).await.unwrap(), total);
        }
        assert_eq!(app.get("/v1/test-clock").await.body["offset_seconds"], 36);
    }
}

store_test! {
    #[tokio::test]
    async fn a_node_follows_an_advance_made_on_another_when_it_reads_the_offset(app) {
        let other = TestClock::new(Arc::new(ManualClock::new(START)));
        other.advance(app.state.store.as_ref(), DAY).await.unwrap();
        assert_eq!(other.clock().now(), START.plus_secs(DAY));
        // Until its next refresh this node runs on.
        assert_eq!(app.state.clock.now(), START);
        assert_eq!(app.test_clock.refresh(app.state.store.as_ref()).await.unwrap(), DAY * 1_000_000);
        assert_eq!(app.state.clock.now(), START.plus_secs(DAY));
        // Reading the clock through the API refreshes it too.
        other.advance(app.state.store.as_ref(), 60).await.unwrap();
        assert_eq!(app.get("/v1/test-clock").await.body["offset_seconds"], DAY + 60);
        assert_eq!(app.state.clock.now(), START.plus_secs(DAY + 60));
    }
}

store_test! {
    #[tokio::test]
    async fn a_step_that_is_not_a_positive_whole_number_of_seconds_within_bounds_is_refused(app) {
        for body in [
            json!({"seconds": -60}),
            json!({"seconds": 0}),
            json!({"seconds": ADVANCE_SECONDS_MAX + 1}),
            json!({"seconds": 1.5}),
            json!({"seconds": 60.0}),
            json!({"seconds": "60"}),
            json!({"seconds": 1e20}),
            json!({"seconds": null}),
            json!({}),
            json!({"seconds": 60, "until": "2030-01-01T00:00:00Z"}),
        ] {
            let refused = app.post("/v1/test-clock/advance", body.clone()).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {refused:?}");
            assert_eq!(refused.code(), "invalid_request", "{body}: {refused:?}");
        }
        let malformed = app
            .raw(
                reqwest::Method::POST,
                "/v1/test-clock/advance",
                &[("authorization", &format!("Bearer {KEY}")), ("content-type", "application/json")],
                "{\"seconds\": ",
            )
            .await;
        assert_eq!(malformed.code(), "malformed_json", "{malformed:?}");
        assert_eq!(app.get("/v1/test-clock").await.body["offset_seconds"], 0);
        assert_eq!(app.state.clock.now(), START);
        assert!(app.state.store.record("test_clock".into(), "offset".into()).await.unwrap().is_none());

        // The largest step is taken; the clock runs at most 36600 days
        // ahead, ten of them, and a step past that is refused.
        for _ in 0..10 {
            let advanced = app
                .post("/v1/test-clock/advance", json!({"seconds": ADVANCE_SECONDS_MAX}))
                .await;
            assert_eq!(advanced.status, StatusCode::OK, "{advanced:?}");
        }
        let shown = app.get("/v1/test-clock").await.body;
        assert_eq!(shown["offset_seconds"], 36_600 * DAY);
        assert_eq!(shown["now"], "2127-04-01T08:00:00.000000Z");
        let too_far = app.post("/v1/test-clock/advance", json!({"seconds": 1})).await;
        assert_eq!(too_far.status, StatusCode::BAD_REQUEST, "{too_far:?}");
        assert_eq!(too_far.code(), "invalid_request");
        assert_eq!(app.get("/v1/test-clock").await.body, shown);

        // The description states the same bound the server holds to.
        let spec = app.get("/openapi.json").await.body;
        let seconds = &spec["components"]["schemas"]["AdvanceTestClock"]["properties"]["seconds"];
        assert_eq!(seconds["maximum"], ADVANCE_SECONDS_MAX, "{seconds}");
        assert_eq!(seconds["minimum"], 1, "{seconds}");
    }
}

store_test! {
    #[tokio::test]
    async fn only_an_admin_key_sees_or_moves_the_clock(app) {
        app.account_with("u", "0").await;
        let service = app.create_key("service", "backend").await["key"].as_str().unwrap().to_owned();
        let customer = app.create_customer_key("u").await["key"].as_str().unwrap().to_owned();
        for key in [&service, &customer] {
            for (method, body) in [
                (reqwest::Method::GET, None),
                (reqwest::Method::POST, Some(json!({"seconds": 60}))),
            ] {
                let path = if body.is_some() { "/v1/test-clock/advance" } else { "/v1/test-clock" };
                let refused = app.send_as(Some(key), method, path, &[], body).await;
                assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}: {refused:?}");
                assert_eq!(refused.body["error"]["required_scope"], "admin");
            }
        }
        let anonymous = app
            .send_as(None, reqwest::Method::POST, "/v1/test-clock/advance", &[], Some(json!({"seconds": 60})))
            .await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/v1/test-clock").await.body["offset_seconds"], 0);
    }
}

store_test! {
    #[tokio::test]
    async fn without_the_test_clock_its_routes_do_not_exist(app) {
        // The same state served without the test clock's routes, as
        // `creditd serve` does unless CREDITD_TEST_CLOCK is true.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(server::serve(
            listener,
            server::router(app.state.clone(), Vec::new()),
            std::future::pending(),
        ));
        let client = reqwest::Client::new();
        for (method, path) in [
            (reqwest::Method::GET, "/v1/test-clock"),
            (reqwest::Method::POST, "/v1/test-clock/advance"),
        ] {
            let reply = client
                .request(method, format!("{base}{path}"))
                .bearer_auth(KEY)
                .json(&json!({"seconds": 60}))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), StatusCode::NOT_FOUND, "{path}");
            let body: Value = reply.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found", "{path}");
        }
        let spec: Value = client.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert!(spec["paths"]["/v1/test-clock"].is_null());
        assert!(spec["paths"]["/v1/test-clock/advance"].is_null());
        server.abort();
        assert_eq!(app.state.clock.now(), START);
    }
}
