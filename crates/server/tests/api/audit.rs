//! The audit trail: each change an admin or service key makes, with who, what, when, from where
//! and the request's id; usage, refusals, replays and customers' requests left out.

use reqwest::{Method, StatusCode};
use serde_json::json;

store_test! {
    #[tokio::test]
    async fn each_change_by_an_operator_key_is_kept_with_who_what_when_and_where(app) {
        app.account_with("acme", "0").await;
        let service = app.create_key("service", "billing backend").await;
        let service_key = service["key"].as_str().unwrap();
        let service_id = service["id"].as_str().unwrap();
        let granted = app
            .send_as(
                Some(service_key),
                Method::POST,
                "/v1/accounts/acme/grants",
                &[("x-request-id", "grant-1")],
                Some(json!({"amount": "10", "source": "promo"})),
            )
            .await;
        assert_eq!(granted.status, StatusCode::CREATED, "{granted:?}");
        // Usage, a refusal, a replay and a customer's change are not kept.
        let consumed = app
            .send_as(Some(service_key), Method::POST, "/v1/accounts/acme/consume", &[],
                     Some(json!({"amount": "1"})))
            .await;
        assert_eq!(consumed.status, StatusCode::OK, "{consumed:?}");
        let refused = app
            .send_as(Some(service_key), Method::POST, "/v1/accounts/acme/grants", &[],
                     Some(json!({"amount": "-1", "source": "promo"})))
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        for _ in 0..2 {
            let kept = app.post_keyed("/v1/accounts/acme/grants", "once", json!({"amount": "1", "source": "admin"})).await;
            assert_eq!(kept.status, StatusCode::CREATED, "{kept:?}");
        }
        let customer = app.create_customer_key("acme").await;
        let own = app
            .send_as(Some(customer["key"].as_str().unwrap()), Method::POST,
                     "/v1/accounts/acme/keys", &[], Some(json!({"name": "mine"})))
            .await;
        assert_ne!(own.status, StatusCode::CREATED, "customers may not: {own:?}");
        let changed = app
            .send(Method::PATCH, "/v1/accounts/acme", Some(json!({"name": "Acme Inc"})))
            .await;
        assert_eq!(changed.status, StatusCode::OK);

        let trail = app.get("/v1/audit-events").await;
        assert_eq!(trail.status, StatusCode::OK, "{trail:?}");
        let events = trail.body["data"].as_array().unwrap();
        let routes: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e["method"].as_str().unwrap(), e["route"].as_str().unwrap()))
            .collect();
        // Newest first: the rename, the customer key, the kept grant once,
        // the service's grant, the service key, the account.
        assert_eq!(
            routes,
            [
                ("PATCH", "/v1/accounts/{account_id}"),
                ("POST", "/v1/accounts/{account_id}/keys"),
                ("POST", "/v1/accounts/{account_id}/grants"),
                ("POST", "/v1/accounts/{account_id}/grants"),
                ("POST", "/v1/keys"),
                ("POST", "/v1/accounts"),
            ],
            "{trail:?}"
        );
        let by_service = &events[3];
        assert_eq!(by_service["key_id"], service_id);
        assert_eq!(by_service["key_name"], "billing backend");
        assert_eq!(by_service["key_kind"], "service");
        assert_eq!(by_service["path"], "/v1/accounts/acme/grants");
        assert_eq!(by_service["account_id"], "acme");
        assert_eq!(by_service["status"], 201);
        assert_eq!(by_service["request_id"], "grant-1");
        assert_eq!(by_service["client_address"], "127.0.0.1");
        assert!(by_service["at"].is_string());
        assert_eq!(events[0]["key_name"], "CREDITD_ADMIN_KEY");
        // Narrowed to a key, to an account; paged.
        let mine = app.get(&format!("/v1/audit-events?key_id={service_id}")).await;
        assert_eq!(mine.body["data"].as_array().unwrap().len(), 1);
        let acme = app.get("/v1/audit-events?account_id=acme&limit=2").await;
        assert_eq!(acme.body["data"].as_array().unwrap().len(), 2);
        let cursor = acme.body["next_cursor"].as_str().unwrap();
        let rest = app.get(&format!("/v1/audit-events?account_id=acme&cursor={cursor}")).await;
        let rest_routes: Vec<&str> = rest.body["data"].as_array().unwrap().iter().map(|e| e["route"].as_str().unwrap()).collect();
        // Opening it named the account in its body, not its path.
        assert_eq!(rest_routes, ["/v1/accounts/{account_id}/grants", "/v1/accounts/{account_id}/grants"]);
        let bad = app.get("/v1/audit-events?cursor=nope").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        // Operators only.
        let as_service = app
            .send_as(Some(service_key), Method::GET, "/v1/audit-events", &[], None)
            .await;
        assert_eq!(as_service.status, StatusCode::FORBIDDEN);
    }
}
