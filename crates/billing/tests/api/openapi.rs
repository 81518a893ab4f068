//! The OpenAPI description with billing plugged in matches the server: billing's routes are
//! documented beside the core's, each answers with a status it documents, its error codes are
//! listed under their statuses, and each route admits exactly the keys it says.

use billing::error::BillingError;

billing_test! {
    #[tokio::test]
    async fn the_description_lists_billings_routes_and_each_answers(app) {
        let spec = app.get("/openapi.json").await.body;
        assert!(spec["paths"]["/v1/plans/{plan_id}"]["put"].is_object());
        testkit::openapi::assert_routes_documented(&app).await;
    }
}

billing_test! {
    #[tokio::test]
    async fn billings_error_codes_are_listed_under_their_statuses(app) {
        testkit::openapi::assert_error_codes(&app, &BillingError::codes()).await;
    }
}

billing_test! {
    #[tokio::test]
    async fn each_billing_route_documents_who_may_call_it(app) {
        testkit::openapi::assert_access_documented(&app).await;
    }
}
