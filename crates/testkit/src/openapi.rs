//! Checks that an OpenAPI description matches the server that serves it:
//! the routes it answers, the statuses and codes it can answer with, and
//! the keys each route admits. Every capability runs them with its own
//! routes plugged in.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::Access;
use server::error::ApiError;

use crate::app::{KEY, Reply, TestApp};

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
pub fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a `$ref` points to, or the value itself.
pub fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
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

/// The statuses an operation documents one by one (not its ranges, such
/// as `4XX`).
fn statuses(operation: &Value) -> BTreeSet<u16> {
    let responses = operation["responses"].as_object().expect("responses");
    for status in responses.keys() {
        assert!(
            status.parse::<u16>().is_ok() || matches!(status.as_str(), "4XX" | "5XX"),
            "{status} is not a status"
        );
    }
    responses.keys().filter_map(|s| s.parse().ok()).collect()
}

/// Whether an operation documents `status`, by itself or in its range.
fn documents(operation: &Value, status: StatusCode) -> bool {
    statuses(operation).contains(&status.as_u16())
        || operation["responses"]
            .get(format!("{}XX", status.as_u16() / 100))
            .is_some()
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

/// The description lists exactly the routes of the app's table, each with
/// its path parameters, and each route answers with a status it documents.
pub async fn assert_routes_documented(app: &TestApp) {
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
        let reply = probe(app, &method, &concrete(&spec, &path, operation), Some(KEY)).await;
        assert_ne!(reply.code(), "not_found", "{method} {path}");
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            documents(operation, reply.status),
            "{method} {path} answered {reply:?}, which it does not document"
        );
    }
}

/// The description's error codes are exactly those the server can answer:
/// the core's, and `extra` (the capabilities'), each listed under its status.
pub async fn assert_error_codes(app: &TestApp, extra: &[(&'static str, StatusCode)]) {
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
    answered.extend(extra.iter().map(|(code, _)| *code));
    assert_eq!(listed, answered);
    // The description tells each code's status as the server answers it.
    let description = schema["description"].as_str().unwrap();
    for (code, status) in ApiError::codes().into_iter().chain(extra.iter().copied()) {
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
    let error = resolve(
        &spec,
        &spec["components"]["schemas"]["Error"]["properties"]["error"],
    );
    for field in reply.body["error"].as_object().unwrap().keys() {
        assert!(error["properties"][field].is_object(), "{field}");
    }
}

/// Each route documents the keys it admits and the statuses a refusal has,
/// and the server admits exactly those.
pub async fn assert_access_documented(app: &TestApp) {
    let spec = app.get("/openapi.json").await.body;
    app.account_with("cust", "0").await;
    let service = key(app, "service").await;
    let customer = key(app, "customer").await;
    let table: Vec<(Method, &str, Access)> = server::routes::table(&app.state, app.capabilities());
    for (method, path, operation) in operations(&spec) {
        let (_, _, access) = table
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .unwrap();
        let documented = statuses(operation);
        let successes: Vec<u16> = documented
            .iter()
            .copied()
            .filter(|s| (200..300).contains(s))
            .collect();
        // One success, or 201 beside 200 for a write that may find its
        // effect already made (today's daily reward).
        assert!(
            successes.len() == 1 || successes == [200, 201],
            "{method} {path} documents {successes:?}"
        );
        let public = *access == Access::Public;
        assert_eq!(documented.contains(&401), !public, "{method} {path}");
        assert_eq!(
            documented.contains(&403),
            matches!(access, Access::Admin | Access::Service | Access::Customer),
            "{method} {path}"
        );
        let roles = roles(operation);
        let expected: BTreeSet<String> = match access {
            Access::Public => BTreeSet::new(),
            Access::Admin => ["admin"].map(String::from).into(),
            Access::Service => ["admin", "service"].map(String::from).into(),
            Access::Account | Access::Own | Access::Catalog => {
                ["admin", "service", "customer"].map(String::from).into()
            }
            Access::Customer => ["customer"].map(String::from).into(),
        };
        assert_eq!(roles, expected, "{method} {path}");

        // The server admits exactly the kinds the description names.
        let target = concrete(&spec, &path, operation);
        let anonymous = probe(app, &method, &target, None).await;
        assert_eq!(
            anonymous.status == StatusCode::UNAUTHORIZED,
            !public,
            "{method} {path}: {anonymous:?}"
        );
        if public {
            continue;
        }
        for (kind, key) in [("service", &service), ("customer", &customer)] {
            let reply = probe(app, &method, &target, Some(key)).await;
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

    // The same key is accepted in `x-api-key`; two different keys, one in
    // each header, are a guess at which counts, and refused.
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
    assert_eq!(
        (both.status, both.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{both:?}"
    );
}
