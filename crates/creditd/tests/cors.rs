//! Browsers on the operator's own origins call the routes customer keys may call, through the real
//! binary: preflights answered, answers readable, credentials never; admin and service routes and
//! keys never opened to them; and with no origin set, nothing at all.

mod support;

use serde_json::json;
use support::{KEY, Server, fresh_db, post};

const APP: &str = "https://app.example.com";

async fn preflight(
    client: &reqwest::Client,
    url: String,
    origin: &str,
    method: &str,
) -> reqwest::Response {
    client
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_calls_customer_routes_with_a_customer_key_and_nothing_else() {
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let server = Server::start_with(
        &url,
        &[(
            "CREDITD_CORS_ORIGINS",
            &format!("{APP},http://localhost:3000"),
        )],
    );
    let client = reqwest::Client::new();
    let base = &server.base;
    let (status, _) = post(&client, format!("{base}/v1/accounts"), json!({"id": "u"})).await;
    assert_eq!(status, 201);
    let (_, key) = post(
        &client,
        format!("{base}/v1/accounts/u/keys"),
        json!({"name": "web"}),
    )
    .await;
    let customer = key["key"].as_str().unwrap().to_owned();

    // The preflight of a customer route from a listed origin.
    let answer = preflight(
        &client,
        format!("{base}/v1/accounts/u/daily-reward"),
        APP,
        "POST",
    )
    .await;
    assert_eq!(answer.status(), 204);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(APP));
    let methods = header(&answer, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = header(&answer, "access-control-allow-headers").unwrap();
    assert!(
        headers.contains("authorization") && headers.contains("idempotency-key"),
        "{headers}"
    );
    assert_eq!(header(&answer, "access-control-allow-credentials"), None);
    // Not from another origin, nor for a method the path has not.
    for (origin, method) in [("https://evil.example.net", "POST"), (APP, "DELETE")] {
        let refused = preflight(
            &client,
            format!("{base}/v1/accounts/u/daily-reward"),
            origin,
            method,
        )
        .await;
        assert_eq!(
            header(&refused, "access-control-allow-origin"),
            None,
            "{origin} {method}"
        );
    }
    // Admin and service routes have no preflight at all.
    for path in ["/v1/keys", "/v1/accounts", "/v1/settings/credits"] {
        let refused = preflight(&client, format!("{base}{path}"), APP, "GET").await;
        assert_eq!(refused.status(), 405, "{path}");
        assert_eq!(
            header(&refused, "access-control-allow-origin"),
            None,
            "{path}"
        );
    }

    // The call itself, with a customer key: readable by the page.
    let balance = client
        .get(format!("{base}/v1/accounts/u/balance"))
        .header("origin", APP)
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(balance.status(), 200);
    assert_eq!(header(&balance, "access-control-allow-origin"), Some(APP));
    assert!(header(&balance, "vary").is_some_and(|v| v.contains("origin")));
    // Its errors too, so the page can say what went wrong.
    let unauthorized = client
        .get(format!("{base}/v1/accounts/u/balance"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        header(&unauthorized, "access-control-allow-origin"),
        Some(APP)
    );
    // An operator's key is refused from a browser, even on a customer route.
    let admin = client
        .get(format!("{base}/v1/accounts/u/balance"))
        .header("origin", APP)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 403);
    // And an admin route sends a browser nothing it could read.
    let keys = client
        .get(format!("{base}/v1/keys"))
        .header("origin", APP)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&keys, "access-control-allow-origin"), None);
    // From an origin not listed, nothing is readable either.
    let elsewhere = client
        .get(format!("{base}/v1/accounts/u/balance"))
        .header("origin", "https://evil.example.net")
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&elsewhere, "access-control-allow-origin"), None);
    server.stop();

    // Off by default: no preflight is answered anywhere.
    let server = Server::start_url(&url);
    let answer = preflight(
        &client,
        format!("{}/v1/accounts/u/balance", server.base),
        APP,
        "GET",
    )
    .await;
    assert_eq!(answer.status(), 405);
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    server.stop();
}
