//! Stripe's own sample objects read as creditd reads them: every object creditd reads from Stripe
//! parses from Stripe's shape, and an event about each reads its object by its type.

use billing::payments::objects::{
    Charge, CheckoutSession, Created, Event, Happened, Invoice, PaymentIntent, PaymentMethod,
    SetupIntent, Subscription,
};
use serde::de::DeserializeOwned;
use serde_json::json;
use testkit::stripe::FakeStripe;

fn read<T: DeserializeOwned>(kind: &str) -> T {
    serde_json::from_value(FakeStripe::fixture(kind))
        .unwrap_or_else(|e| panic!("Stripe's sample {kind} does not read: {e}"))
}

#[test]
fn every_object_creditd_reads_parses_from_stripes_own_sample() {
    let session: CheckoutSession = read("checkout.session");
    assert!(session.id.starts_with("cs_"), "{session:?}");
    let invoice: Invoice = read("invoice");
    assert!(invoice.id.starts_with("in_"), "{invoice:?}");
    let subscription: Subscription = read("subscription");
    assert!(subscription.id.starts_with("sub_"), "{subscription:?}");
    assert!(subscription.item().is_some(), "a subscription has its item");
    let intent: PaymentIntent = read("payment_intent");
    assert!(intent.id.starts_with("pi_"), "{intent:?}");
    let setup: SetupIntent = read("setup_intent");
    assert!(setup.id.starts_with("seti_"), "{setup:?}");
    let charge: Charge = read("charge");
    assert!(charge.id.starts_with("ch_"), "{charge:?}");
    let method: PaymentMethod = read("payment_method");
    assert!(method.card.is_some(), "{method:?}");
    let customer: Created = read("customer");
    assert!(customer.id.starts_with("cus_"), "{customer:?}");
    let item: Created = read("invoiceitem");
    assert!(item.id.starts_with("ii_"), "{item:?}");
}

#[test]
fn an_event_about_each_sample_reads_its_object_by_its_type() {
    for (kind, object) in [
        ("checkout.session.completed", "checkout.session"),
        ("checkout.session.async_payment_failed", "checkout.session"),
        ("invoice.paid", "invoice"),
        ("invoice.payment_failed", "invoice"),
        ("payment_intent.succeeded", "payment_intent"),
        ("payment_intent.payment_failed", "payment_intent"),
        ("charge.refunded", "charge"),
        ("customer.subscription.updated", "subscription"),
        ("customer.created", "customer"),
    ] {
        let object = FakeStripe::fixture(object);
        let body = json!({"id": "evt_1", "object": "event", "type": kind,
            "data": {"object": object}});
        let event =
            Event::parse(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(event.object_id.as_deref(), object["id"].as_str(), "{kind}");
        let handled = !matches!(event.happened, Happened::Other);
        assert_eq!(handled, kind != "customer.created", "{kind}");
    }
}
