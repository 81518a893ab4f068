//! The OpenAPI description matches the server: the routes it answers, the
//! statuses and codes it can answer with, the keys each route admits, and
//! the checked-in copy readers see.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::Access;
use server::error::ApiError;

use crate::support::{Reply, TestApp};

/// The methods an OpenAPI path item can hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of a description: (method, path, operation).
fn operations(spec: &Value) -> Vec<(Method, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if METHODS.contains(&method.as_str()) {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                found.push((method, path.clone(), operation));
            }
        }
    }
    found
}

/// A description's text with each run of white space as one space.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a `$ref` points to, or the value itself.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{reference} is not a schema"));
            let found = &spec["components"]["schemas"][name];
            assert!(!found.is_null(), "{reference} names no schema");
            found
        }
        None => value,
    }
}

/// The path with each parameter replaced by its schema's first example.
fn concrete(spec: &Value, path: &str, operation: &Value) -> String {
    let mut concrete = path.to_owned();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] != "path" {
            continue;
        }
        let name = parameter["name"].as_str().unwrap();
        let example = resolve(spec, &parameter["schema"])["examples"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: {{{name}}} has no example"))
            .to_owned();
        concrete = concrete.replace(&format!("{{{name}}}"), &example);
    }
    concrete
}

/// The statuses an operation documents.
fn statuses(operation: &Value) -> BTreeSet<u16> {
    operation["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(|s| s.parse().expect("a numeric status"))
        .collect()
}

/// The kinds of key an operation admits: the roles of its bearer scheme.
fn roles(operation: &Value) -> BTreeSet<String> {
    operation["security"]
        .as_array()
        .expect("every operation states its security")
        .iter()
        .filter_map(|r| r["bearer"].as_array())
        .flatten()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// Sends `method path` with `key` as a bearer key, if any, and `{}` as the
/// body of a method that takes one.
async fn probe(app: &TestApp, method: &Method, path: &str, key: Option<&str>) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    let bearer = key.map(|k| format!("Bearer {k}"));
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let body = if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        "{}"
    } else {
        ""
    };
    app.raw(method.clone(), path, &headers, body).await
}

/// A new key of `kind` (`service`, or `customer` of account `cust`).
async fn key(app: &TestApp, kind: &str) -> String {
    let reply = match kind {
        "customer" => app.post("/v1/accounts/cust/keys", json!({})).await,
        _ => app.post("/v1/keys", json!({ "kind": kind })).await,
    };
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body["key"].as_str().unwrap().to_owned()
}

store_test! {
    #[tokio::test]
    async fn the_description_lists_exactly_the_routes_and_each_answers(app) {
        let spec = app.get("/openapi.json").await.body;
        assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
        let documented: BTreeSet<(String, String)> = operations(&spec)
            .iter()
            .map(|(method, path, _)| (method.to_string(), path.clone()))
            .collect();
        let routed: BTreeSet<(String, String)> = server::routes::table(&app.state, app.capabilities())
            .into_iter()
            .map(|(method, path, _)| (method.to_string(), path.to_owned()))
            .collect();
        assert_eq!(documented, routed);

        let mut operation_ids = BTreeSet::new();
        for (method, path, operation) in operations(&spec) {
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(operation_ids.insert(id.to_owned()), "{id} is used twice");
            // Each parameter in the path is documented, and only those.
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let documented: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(in_path, documented, "{method} {path}");

            // The route exists: it answers with something other than "no
            // such route" or "method not allowed", and with a status it
            // documents.
            let reply = probe(&app, &method, &concrete(&spec, &path, operation), Some(crate::support::KEY)).await;
            assert_ne!(reply.code(), "not_found", "{method} {path}");
            assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                statuses(operation).contains(&reply.status.as_u16()),
                "{method} {path} answered {reply:?}, which it does not document"
            );
        }
    }
}

store_test! {
    #[tokio::test]
    async fn the_error_codes_are_exactly_those_the_server_can_answer(app) {
        let spec = app.get("/openapi.json").await.body;
        let schema = &spec["components"]["schemas"]["ErrorCode"];
        let listed: BTreeSet<&str> = schema["enum"]
            .as_array()
            .expect("ErrorCode lists its codes")
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let mut answered: BTreeSet<&str> = ApiError::every().iter().map(ApiError::code).collect();
        for refused in [
            store::Refused::VersionConflict {
                kind: "api_key".into(),
                id: "key_1".into(),
                current: None,
            },
            store::Refused::LookupTaken {
                kind: "api_key".into(),
                name: "hash".into(),
            },
            store::Refused::Ledger(ledger::Reject::ExternalIdConflict),
        ] {
            answered.insert(ApiError::from(refused).code());
        }
        assert_eq!(listed, answered);
        // The description tells each code's status as the server answers it.
        let description = schema["description"].as_str().unwrap();
        for (code, status) in ApiError::codes() {
            let line = description
                .split(". ")
                .find(|l| l.starts_with(&format!("{}: ", status.as_u16())))
                .unwrap_or_else(|| panic!("no line for {status}"));
            assert!(
                line.split([':', ',', ' ', '.']).any(|c| c == code),
                "{code} is not listed under {status}"
            );
        }
        // The body every error response points to is the one errors have.
        let reply = app.get("/v1/accounts/ghost").await;
        let error = resolve(&spec, &spec["components"]["schemas"]["Error"]["properties"]["error"]);
        for field in reply.body["error"].as_object().unwrap().keys() {
            assert!(error["properties"][field].is_object(), "{field}");
        }
    }
}

store_test! {
    #[tokio::test]
    async fn each_route_documents_who_may_call_it_and_the_server_agrees(app) {
        let spec = app.get("/openapi.json").await.body;
        app.account_with("cust", "0").await;
        let service = key(&app, "service").await;
        let customer = key(&app, "customer").await;
        let table: Vec<(Method, &str, Access)> = server::routes::table(&app.state, app.capabilities());
        for (method, path, operation) in operations(&spec) {
            let (_, _, access) = table
                .iter()
                .find(|(m, p, _)| *m == method && *p == path)
                .unwrap();
            let documented = statuses(operation);
            let successes: Vec<u16> = documented.iter().copied().filter(|s| (200..300).contains(s)).collect();
            assert_eq!(successes.len(), 1, "{method} {path} documents {successes:?}");
            let public = *access == Access::Public;
            assert_eq!(documented.contains(&401), !public, "{method} {path}");
            assert_eq!(
                documented.contains(&403),
                matches!(access, Access::Admin | Access::Service),
                "{method} {path}"
            );
            let roles = roles(operation);
            let expected: BTreeSet<String> = match access {
                Access::Public => BTreeSet::new(),
                Access::Admin => ["admin"].map(String::from).into(),
                Access::Service => ["admin", "service"].map(String::from).into(),
                Access::Account | Access::Own => {
                    ["admin", "service", "customer"].map(String::from).into()
                }
            };
            assert_eq!(roles, expected, "{method} {path}");

            // The server admits exactly the kinds the description names.
            let target = concrete(&spec, &path, operation);
            let anonymous = probe(&app, &method, &target, None).await;
            assert_eq!(anonymous.status == StatusCode::UNAUTHORIZED, !public, "{method} {path}: {anonymous:?}");
            if public {
                continue;
            }
            for (kind, key) in [("service", &service), ("customer", &customer)] {
                let reply = probe(&app, &method, &target, Some(key)).await;
                assert_eq!(
                    reply.code() == "forbidden",
                    !roles.contains(kind),
                    "{method} {path} with a {kind} key: {reply:?}"
                );
                assert!(
                    documented.contains(&reply.status.as_u16()),
                    "{method} {path} answered a {kind} key {reply:?}, which it does not document"
                );
            }
        }

        // The same key is accepted in `x-api-key`, and `Authorization` wins
        // over it.
        let by_header = app
            .raw(Method::GET, "/v1/accounts", &[("x-api-key", &service)], "")
            .await;
        assert_eq!(by_header.status, StatusCode::OK, "{by_header:?}");
        let bearer = format!("Bearer {customer}");
        let both = app
            .raw(
                Method::GET,
                "/v1/accounts",
                &[("x-api-key", &service), ("authorization", &bearer)],
                "",
            )
            .await;
        assert_eq!(both.code(), "forbidden", "{both:?}");
    }
}

/// The checked-in copy of the description, for readers of the repository.
const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[tokio::test]
async fn the_checked_in_copy_is_the_served_description() {
    let app = TestApp::spawn_sqlite(None).await;
    let served = app.get("/openapi.json").await.text;
    if std::env::var_os("CREDITD_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        checked_in == served,
        "docs/openapi.json is not the description the server serves; regenerate it with \
         `CREDITD_UPDATE_OPENAPI=1 cargo test -p server --test api openapi`"
    );
}

store_test! {
    #[tokio::test]
    async fn a_release_into_an_expired_lot_is_negative_as_described(app) {
        app.account_with("u", "0").await;
        let grant = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "5", "source": "promo", "expires_at": "2027-01-15T08:01:00Z"}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{grant:?}");
        let hold = app
            .post("/v1/accounts/u/holds", json!({"amount": "2"}))
            .await;
        assert_eq!(hold.status, StatusCode::CREATED, "{hold:?}");
        app.clock.advance_secs(120);
        let id = hold.body["hold"]["id"].as_str().unwrap();
        let release = app
            .post(&format!("/v1/holds/{id}/release"), json!({}))
            .await;
        assert_eq!(release.status, StatusCode::OK, "{release:?}");
        assert_eq!(release.body["transaction"]["type"], "hold_release");
        assert_eq!(release.body["transaction"]["amount"], "-2");

        // The description says as much, rather than "zero for hold_release".
        let spec = app.get("/openapi.json").await.body;
        let amount = &spec["components"]["schemas"]["Transaction"]["properties"]["amount"];
        let text = words(amount["description"].as_str().unwrap());
        assert!(text.contains("such a release is negative"), "{text}");
        app.assert_verified().await;
    }
}

store_test! {
    #[tokio::test]
    async fn listed_grants_show_an_unwritten_expiry_as_described(app) {
        app.account_with("u", "0").await;
        let grant = app
            .post(
                "/v1/accounts/u/grants",
                json!({"amount": "5", "source": "promo", "expires_at": "2027-01-15T08:01:00Z"}),
            )
            .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{grant:?}");
        app.clock.advance_secs(120);
        // No sweep runs in these tests, so the expiry is not written yet.
        let listed = app.get("/v1/accounts/u/grants").await;
        assert_eq!(listed.body["data"][0]["status"], "expired", "{listed:?}");
        assert_eq!(listed.body["data"][0]["remaining"], "0");
        let transactions = app
            .get("/v1/accounts/u/transactions?type=expire")
            .await;
        assert_eq!(transactions.body["data"], json!([]), "{transactions:?}");

        let spec = app.get("/openapi.json").await.body;
        let list = &spec["paths"]["/v1/accounts/{account_id}/grants"]["get"];
        let text = words(list["description"].as_str().unwrap());
        assert!(text.contains("even before the background sweep writes its expiry"), "{text}");
    }
}

store_test! {
    #[tokio::test]
    async fn a_check_takes_no_idempotency_key_as_described(app) {
        app.account_with("u", "10").await;
        for amount in ["1", "20"] {
            let check = app
                .post_keyed("/v1/accounts/u/check", "same-key", json!({ "amount": amount }))
                .await;
            assert_eq!(check.status, StatusCode::OK, "{check:?}");
            assert_eq!(check.body["required"], amount);
            assert!(check.headers.get("idempotent-replayed").is_none());
        }
        let malformed = app
            .post_keyed("/v1/accounts/u/check", "", json!({ "amount": "1" }))
            .await;
        assert_eq!(malformed.status, StatusCode::OK, "{malformed:?}");

        let spec = app.get("/openapi.json").await.body;
        let check = &spec["paths"]["/v1/accounts/{account_id}/check"]["post"];
        let parameters = check["parameters"].as_array().unwrap();
        assert!(parameters.iter().all(|p| p["name"] != "Idempotency-Key"));
        assert!(check["responses"]["200"]["headers"].is_null());
        let consume = &spec["paths"]["/v1/accounts/{account_id}/consume"]["post"];
        let parameters = consume["parameters"].as_array().unwrap();
        assert!(parameters.iter().any(|p| p["name"] == "Idempotency-Key"));
    }
}

store_test! {
    #[tokio::test]
    async fn metrics_count_requests_by_route_and_batches(app) {
        app.account_with("u", "10").await;
        app.post("/v1/accounts/u/consume", serde_json::json!({"amount": "1"}))
            .await;
        let metrics = app.get("/metrics").await.text;
        assert!(
            metrics.contains(
                r#"creditd_http_requests_total{method="POST",route="/v1/accounts/{account_id}/consume",status="200"} 1"#
            ),
            "{metrics}"
        );
        let batches: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("creditd_store_batches_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(batches >= 3, "{metrics}");
    }
}

#[test]
fn the_operations_guide_lists_every_error_code_under_its_status() {
    let guide = include_str!("../../../../docs/operations.md");
    let table = guide
        .split("## Errors")
        .nth(1)
        .expect("docs/operations.md has an errors section");
    let mut listed = BTreeSet::new();
    for row in table
        .lines()
        .filter(|l| l.starts_with("| 4") || l.starts_with("| 5"))
    {
        let mut cells = row.split('|').map(str::trim).skip(1);
        let status: u16 = cells.next().unwrap().parse().unwrap();
        // The codes are the quoted words outside parentheses.
        let mut outside = String::new();
        let mut depth = 0;
        for c in cells.next().unwrap().chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        for code in outside.split('`').skip(1).step_by(2) {
            listed.insert((status, code.to_owned()));
        }
    }
    let answered: BTreeSet<(u16, String)> = ApiError::codes()
        .into_iter()
        .map(|(code, status)| (status.as_u16(), code.to_owned()))
        .collect();
    assert_eq!(listed, answered);
}
