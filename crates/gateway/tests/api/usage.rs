//! An account's usage: sums per model, day, key and project over any window, exact at its
//! edges, agreeing with the calls recorded one by one.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})
}

/// Every call of the account in `[from, to)`, read page by page.
async fn all_calls(app: &TestApp, from: &str, to: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let reply = app
            .get(&format!(
                "/v1/accounts/acme/usage/calls?from={from}&to={to}&limit=7{cursor}"
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        out.extend(reply.body["data"].as_array().unwrap().iter().cloned());
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
}

fn micros(text: &Value) -> i64 {
    ledger::Amount::parse_decimal(text.as_str().unwrap())
        .unwrap()
        .micros()
}

gateway_test! {
    #[tokio::test]
    async fn sums_over_any_window_agree_with_the_calls_one_by_one(app, upstream) {
        price(&app, "gpt-a", "openai").await;
        price(&app, "gpt-b", "openai").await;
        app.account_with("acme", "100").await;
        let web = app.post("/v1/accounts/acme/keys", json!({"project": "web"})).await.body;
        let api = app.post("/v1/accounts/acme/keys", json!({})).await.body;
        // 30 calls, 25 minutes apart: they span 12.5 hours, two UTC days
        // (the test clock starts at 08:00), and two models and keys.
        for i in 0..30 {
            let key = if i % 3 == 0 { &api } else { &web };
            let model = if i % 2 == 0 { "gpt-a" } else { "gpt-b" };
            let (status, _) = call(&app, key["key"].as_str().unwrap(), "/v1/chat/completions", chat(model)).await;
            assert_eq!(status, StatusCode::OK);
            settled(&app, "acme").await;
            app.clock.advance_secs(25 * 60);
        }
        assert_eq!(upstream.requests().len(), 30);
        // Windows that start and end inside hours.
        for (from, to) in [
            ("2027-01-15T08:00:00Z", "2027-01-16T08:00:00Z"),
            ("2027-01-15T09:10:00Z", "2027-01-15T17:35:30Z"),
            ("2027-01-15T10:05:00Z", "2027-01-15T10:40:00Z"),
            ("2027-01-15T23:59:00Z", "2027-01-16T00:30:00Z"),
        ] {
            let calls = all_calls(&app, from, to).await;
            let mut by_model: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
            for call in &calls {
                let entry = by_model.entry(call["model"].as_str().unwrap().to_owned()).or_default();
                entry.0 += 1;
                entry.1 += micros(&call["cost"]);
                entry.2 += call["input_tokens"].as_i64().unwrap();
            }
            let summary = app
                .get(&format!("/v1/accounts/acme/usage?from={from}&to={to}&group_by=model"))
                .await;
            assert_eq!(summary.status, StatusCode::OK, "{summary:?}");
            let summed: BTreeMap<String, (i64, i64, i64)> = summary.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| (
                    g["key"].as_str().unwrap().to_owned(),
                    (g["calls"].as_i64().unwrap(), micros(&g["cost"]), g["input_tokens"].as_i64().unwrap()),
                ))
                .collect();
            assert_eq!(summed, by_model, "{from}..{to}");
            assert_eq!(summary.body["total"]["calls"].as_u64(), Some(calls.len() as u64));
        }

        let days = app
            .get("/v1/accounts/acme/usage?from=2027-01-15T00:00:00Z&to=2027-01-17T00:00:00Z&group_by=day")
            .await;
        let days: Vec<(String, i64)> = days.body["data"].as_array().unwrap().iter()
            .map(|g| (g["key"].as_str().unwrap().to_owned(), g["calls"].as_i64().unwrap()))
            .collect();
        // 08:00 + 25 min × i: i = 0..=38 fall on the 15th, so all 30.
        assert_eq!(days, [("2027-01-15".to_owned(), 30)]);
        let keys = app.get("/v1/accounts/acme/usage?from=2027-01-15T00:00:00Z&to=2027-01-17T00:00:00Z&group_by=key").await;
        let keys: BTreeMap<String, i64> = keys.body["data"].as_array().unwrap().iter()
            .map(|g| (g["key"].as_str().unwrap().to_owned(), g["calls"].as_i64().unwrap()))
            .collect();
        assert_eq!(keys[web["id"].as_str().unwrap()], 20);
        assert_eq!(keys[api["id"].as_str().unwrap()], 10);

        for bad in ["group_by=colour", "from=yesterday"] {
            let reply = app.get(&format!("/v1/accounts/acme/usage?{bad}")).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {reply:?}");
        }
        // A window that ends before it starts holds nothing; one of years is read as any.
        let backwards = app
            .get("/v1/accounts/acme/usage?from=2027-01-16T00:00:00Z&to=2027-01-15T00:00:00Z")
            .await;
        assert_eq!(backwards.status, StatusCode::OK, "{backwards:?}");
        assert_eq!((backwards.body["data"].clone(), backwards.body["total"]["calls"].clone()),
                   (json!([]), json!(0)));
        let long = app.get("/v1/accounts/acme/usage?from=2000-01-01T00:00:00Z").await;
        assert_eq!(long.body["total"]["calls"], 30, "{long:?}");
        let ghost = app.send(Method::GET, "/v1/accounts/ghost/usage", None).await;
        assert_eq!(ghost.code(), "account_not_found");
    }
}

gateway_test! {
    /// Autumn's users track features that cost nothing to see their usage:
    /// `group_by=feature` sums the account's consumes per feature, free or not.
    #[tokio::test]
    async fn usage_is_grouped_by_feature_free_ones_included(app, _upstream) {
        for (feature, price) in [("search", "0"), ("export", "2.5")] {
            let put = app
                .send(Method::PUT, &format!("/v1/features/{feature}"),
                      Some(json!({"credits_per_unit": price})))
                .await;
            assert_eq!(put.status, StatusCode::OK, "{put:?}");
        }
        app.account_with("acme", "10").await;
        for (feature, quantity) in [("search", "5"), ("export", "2"), ("search", "5"), ("search", "1.5")] {
            let used = app
                .post("/v1/accounts/acme/consume", json!({"feature": feature, "quantity": quantity}))
                .await;
            assert_eq!(used.status, StatusCode::OK, "{used:?}");
            app.clock.advance_secs(60);
        }
        assert_eq!(app.available("acme").await, "5");
        let summary = app.get("/v1/accounts/acme/usage?group_by=feature").await;
        assert_eq!(summary.status, StatusCode::OK, "{summary:?}");
        assert_eq!(summary.body["group_by"], "feature");
        let groups: Vec<(String, i64, String, String)> = summary.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (
                g["key"].as_str().unwrap().to_owned(),
                g["calls"].as_i64().unwrap(),
                g["quantity"].as_str().unwrap().to_owned(),
                g["cost"].as_str().unwrap().to_owned(),
            ))
            .collect();
        assert_eq!(groups, vec![
            ("export".to_owned(), 1, "2".to_owned(), "5".to_owned()),
            ("search".to_owned(), 3, "11.5".to_owned(), "0".to_owned()),
        ]);
        let total = &summary.body["total"];
        assert_eq!((total["calls"].as_i64(), total["cost"].as_str(), total["quantity"].as_str()),
                   (Some(4), Some("5"), Some("13.5")), "{total}");
        // A window before the uses holds none.
        let before = app
            .get(&format!(
                "/v1/accounts/acme/usage?group_by=feature&to={}",
                testkit::app::START.to_string().replace('+', "%2B")
            ))
            .await;
        assert_eq!(before.body["data"], json!([]), "{before:?}");
        let bad = app.get("/v1/accounts/acme/usage?group_by=colour").await;
        assert_eq!(bad.code(), "invalid_request", "{bad:?}");
    }
}
