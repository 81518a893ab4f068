//! The ledger's health: the last verify run and the holds pending.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::verify_run::{self, VerifyRun};

store_test! {
    #[tokio::test]
    async fn the_ledger_health_counts_pending_holds_and_shows_the_last_verify(app) {
        let empty = app.get("/v1/health/ledger").await;
        assert_eq!(empty.status, StatusCode::OK, "{empty:?}");
        assert_eq!(
            empty.body,
            json!({"last_verify": null, "holds_pending": {"count": 0, "amount": "0"}})
        );

        app.account_with("a", "100").await;
        app.account_with("b", "100").await;
        for (account, amount) in [("a", "30"), ("b", "2.5"), ("b", "1")] {
            let held = app
                .post(&format!("/v1/accounts/{account}/holds"), json!({"amount": amount}))
                .await;
            assert_eq!(held.status, StatusCode::CREATED, "{held:?}");
        }
        let last = app.post("/v1/accounts/b/holds", json!({"amount": "4"})).await;
        let id = last.body["hold"]["id"].as_str().unwrap().to_owned();
        let released = app.post(&format!("/v1/holds/{id}/release"), json!({})).await;
        assert_eq!(released.status, StatusCode::OK, "{released:?}");

        // What `creditd verify` keeps after checking the ledger.
        let report = app.state.store.audit().await.unwrap();
        let run = VerifyRun::of(&report, app.state.clock.now());
        verify_run::keep(app.state.store.as_ref(), &run).await.unwrap();

        let health = app.get("/v1/health/ledger").await;
        assert_eq!(health.status, StatusCode::OK, "{health:?}");
        assert_eq!(health.body["holds_pending"], json!({"count": 3, "amount": "33.5"}));
        let verified = &health.body["last_verify"];
        assert_eq!(verified["ran_at"], "2027-01-15T08:00:00.000000Z");
        assert_eq!((&verified["accounts"], &verified["violations"]), (&Value::from(2), &Value::from(0)));
        assert_eq!(verified["first_violations"], json!([]));
        assert_eq!(verified["transactions"], Value::from(report.transactions));

        let service = app.create_key("service", "not an operator").await;
        let key = service["key"].as_str().unwrap();
        let refused = app
            .send_as(Some(key), Method::GET, "/v1/health/ledger", &[], None)
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    }
}

store_test! {
    #[tokio::test]
    async fn a_node_that_runs_no_jobs_is_alive_but_not_ready(app) {
        // The test app serves the router alone, without the jobs.
        let alive = app.send_as(None, reqwest::Method::GET, "/healthz", &[], None).await;
        assert_eq!(alive.status, reqwest::StatusCode::OK);
        let ready = app.send_as(None, reqwest::Method::GET, "/readyz", &[], None).await;
        assert_eq!(ready.status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
        assert_eq!(ready.body["status"], "not_ready");
        assert_eq!(ready.body["store"], "ok");
        assert_eq!(ready.body["jobs"], "not_started");
        let migrations = &ready.body["migrations"];
        assert!(migrations["applied"].as_i64().unwrap() > 0);
        assert_eq!(migrations["applied"], migrations["known"]);
    }
}
