//! Billing's events, written with the change that causes them: a subscription renewed, and the
//! overage of the period it closed charged.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

webhooks_test! {
    #[tokio::test]
    async fn a_renewal_and_its_periods_overage_are_told_once(app) {
        let receiver = Receiver::start().await;
        listening(&app, &receiver).await;
        let plan = app
            .send(Method::PUT, "/v1/plans/pro", Some(json!({
                "name": "Pro", "credits": "100", "interval": "month",
                "price": {"amount": 2000, "currency": "usd"},
                "overage": {"unit_price": "1", "currency": "usd"}
            })))
            .await;
        assert_eq!(plan.status, StatusCode::OK, "{plan:?}");
        app.account_with("u", "0").await;
        let subscribed = app
            .send(Method::PUT, "/v1/accounts/u/subscription", Some(json!({"plan_id": "pro"})))
            .await;
        assert_eq!(subscribed.status, StatusCode::OK, "{subscribed:?}");
        consume(&app, "u", "130").await;
        app.clock.advance_secs(31 * 86_400);
        let billing = webhooks(&app).billing.clone();
        // Twice at once, then again: one renewal.
        let (a, b) = tokio::join!(
            billing::subscription::renew_due(&billing),
            billing::subscription::renew_due(&billing)
        );
        assert_eq!(a.unwrap() + b.unwrap(), 1);
        run(&app).await;
        let renewed = receiver.events_of("subscription.renewed");
        assert_eq!(renewed.len(), 1, "{:?}", receiver.received());
        assert_eq!(renewed[0]["data"]["plan_id"], "pro");
        assert_eq!(renewed[0]["data"]["granted"], "100");
        let charged = receiver.events_of("overage.charged");
        assert_eq!(charged.len(), 1);
        assert_eq!(charged[0]["data"]["credits"], "30");
        // A cent a credit.
        assert_eq!(charged[0]["data"]["amount_due"], 30);
        assert_eq!(charged[0]["data"]["currency"], "usd");
        let charges = app.get("/v1/accounts/u/overage-charges").await;
        assert_eq!(charged[0]["data"]["charge_id"], charges.body["data"][0]["id"]);
        // The plan's first grant and the renewal's are grants too.
        assert_eq!(receiver.events_of("credits.granted").len(), 2);
        app.assert_verified().await;
    }
}
