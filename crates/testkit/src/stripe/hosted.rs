//! The hosted page at a Checkout Session's `url`: it shows what the session sells, and submitting it completes the session as Stripe does and sends the signed `checkout.session.completed` event.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Inner, Shared, merge, unix_now};

/// The card every payment on the page is made with: Stripe's test Visa.
const CARD_BRAND: &str = "visa";
const CARD_LAST4: &str = "4242";
const CARD_EXP_MONTH: u32 = 12;
const CARD_EXP_YEAR: u32 = 2030;

/// How long the page waits for the webhook endpoint's answer.
const WEBHOOK_TIMEOUT_MS: u64 = 30_000;

/// The most characters of a webhook endpoint's refusal shown on the error
/// page.
const WEBHOOK_ANSWER_SHOWN_MAX: usize = 2_000;

/// The Stripe API version the events say they were rendered in.
const EVENT_API_VERSION: &str = "2025-03-31.basil";

/// Where completed sessions' events go, and the secret they are signed with.
#[derive(Clone)]
pub(super) struct Webhook {
    pub(super) url: String,
    pub(super) secret: String,
}

/// What a Checkout Session sells, kept when it is created: Stripe's session
/// object does not carry its line items unless expanded, but its page
/// shows them.
pub(super) struct Sale {
    pub(super) lines: Vec<Line>,
    /// `invoice_creation[enabled]`: a paid session makes a paid invoice.
    pub(super) invoice: bool,
    /// `payment_intent_data[metadata]`, given to the payment intent.
    pub(super) intent_metadata: Value,
    /// `setup_intent_data[metadata]`, given to the setup intent.
    pub(super) setup_metadata: Value,
    /// `subscription_data[metadata]`, given to the subscription.
    pub(super) subscription_metadata: Value,
}

/// One line item of a session.
#[derive(Clone)]
pub(super) struct Line {
    pub(super) name: String,
    pub(super) quantity: i64,
    /// In the currency's minor unit.
    pub(super) unit_amount: i64,
    /// The Price it sells, when the session named one (`line_items[i][price]`).
    pub(super) price: Option<String>,
    /// The interval (`day`, `week`, `month`, `year`) and interval count of
    /// a recurring price.
    pub(super) recurring: Option<(String, i64)>,
}

impl Line {
    fn amount(&self) -> i64 {
        self.unit_amount.saturating_mul(self.quantity)
    }
}

/// A `Stripe-Signature` header for `body` signed with `secret` at
/// `timestamp` (seconds since the epoch), as Stripe signs a webhook:
/// `t={timestamp},v1={hex HMAC-SHA256 of "{timestamp}.{body}"}`.
pub fn signature(body: &[u8], secret: &str, timestamp: u64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// The page's routes, beside the API's.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/c/pay/{id}", get(show).post(pay))
}

/// The session's page: what it sells and its button while open, a notice
/// once it is complete or expired.
async fn show(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let inner = shared.lock();
    let Some(session) = inner.session(&id) else {
        return not_found();
    };
    let status = session["status"].as_str().unwrap_or("open");
    if status != "open" {
        let body = format!(
            "<p>This checkout is {}; there is nothing left to pay here.</p>",
            escape(status)
        );
        return page(StatusCode::OK, "Checkout closed", &body);
    }
    let mode = session["mode"].as_str().unwrap_or("payment");
    let currency = session["currency"].as_str().unwrap_or("usd");
    let mut body = String::new();
    let (heading, button) = match mode {
        "setup" => {
            body.push_str("<p>Save a card for later payments. Nothing is charged now.</p>");
            ("Save a card", "Save card")
        }
        mode => {
            let lines = inner.sales.get(&id).map_or(&[][..], |sale| &sale.lines[..]);
            body.push_str("<h2>Order summary</h2><ul class=\"lines\">");
            for line in lines {
                let every = match &line.recurring {
                    Some((interval, 1)) => format!(" every {}", escape(interval)),
                    Some((interval, count)) => format!(" every {count} {}s", escape(interval)),
                    None => String::new(),
                };
                body.push_str(&format!(
                    "<li><span>{} × {}</span> <span>{}{every}</span></li>",
                    escape(&line.name),
                    line.quantity,
                    money(line.amount(), currency),
                ));
            }
            let total = session["amount_total"].as_i64().unwrap_or(0);
            body.push_str(&format!(
                "</ul><p class=\"total\">Total due today <strong>{}</strong></p>",
                money(total, currency)
            ));
            if mode == "subscription" {
                ("Subscribe", "Subscribe")
            } else {
                ("Pay", "Pay")
            }
        }
    };
    body.push_str(&format!(
        "<p>Card: Visa ending in {CARD_LAST4}, expires {CARD_EXP_MONTH}/{CARD_EXP_YEAR} \
         (Stripe's test card).</p>\
         <form method=\"post\" action=\"/c/pay/{}\"><button type=\"submit\">{button}</button>\
         </form>",
        escape(&id),
    ));
    if let Some(cancel) = session["cancel_url"].as_str() {
        body.push_str(&format!(
            "<p><a href=\"{}\">Cancel and go back</a></p>",
            escape(cancel)
        ));
    }
    page(StatusCode::OK, heading, &body)
}

/// Completes the session as Stripe does when its page is submitted, sends
/// its event to the webhook endpoint and waits for the answer, then sends
/// the customer to its `success_url`.
async fn pay(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let (session, events, webhook) = {
        let mut inner = shared.lock();
        let (session, mut events) = match inner.complete_checkout(&id) {
            Ok(completed) => completed,
            Err(refused) => return refused.into_response(),
        };
        events.insert(0, inner.new_event("checkout.session.completed", &session));
        (session, events, inner.webhook.clone())
    };
    if let Some(webhook) = &webhook {
        // In turn, each once the one before was taken.
        for event in &events {
            if let Err(why) = deliver(webhook, event).await {
                let body = format!(
                    "<p>The payment went through, but the webhook endpoint did not take its {} \
                     event.</p><pre>{}</pre>",
                    escape(event["type"].as_str().unwrap_or("")),
                    escape(&why)
                );
                return page(StatusCode::BAD_GATEWAY, "Webhook refused", &body);
            }
        }
    }
    let success = session["success_url"]
        .as_str()
        .map(|url| url.replace("{CHECKOUT_SESSION_ID}", &id))
        // A URL that is no header value would make `Redirect` panic.
        .filter(|url| axum::http::HeaderValue::from_str(url).is_ok());
    match success {
        Some(url) => Redirect::to(&url).into_response(),
        None => page(StatusCode::OK, "Done", "<p>Thank you.</p>"),
    }
}

/// Posts `event` to the endpoint, signed now; answers why not when it does
/// not answer 2xx.
async fn deliver(webhook: &Webhook, event: &Value) -> Result<(), String> {
    let body = event.to_string();
    let header = signature(body.as_bytes(), &webhook.secret, unix_now());
    let answer = reqwest::Client::new()
        .post(&webhook.url)
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", header)
        .timeout(Duration::from_millis(WEBHOOK_TIMEOUT_MS))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{} did not answer: {e}", webhook.url))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let text = answer.text().await.unwrap_or_default();
    let text: String = text.chars().take(WEBHOOK_ANSWER_SHOWN_MAX).collect();
    Err(format!("{} answered {status}: {text}", webhook.url))
}

impl Inner {
    /// The Checkout Session with this id, if the fake holds one.
    fn session(&self, id: &str) -> Option<&Value> {
        self.objects
            .get(id)
            .filter(|o| o["object"] == "checkout.session")
    }

    /// Completes the open session `id` as a customer paying with the test
    /// card does: a payment session is paid by a succeeded payment intent
    /// and its charge (and a paid invoice when it asked for one); a setup
    /// session's setup intent succeeds with the card, attached to the
    /// customer; a subscription session starts an active subscription whose
    /// first invoice is paid. Answers the session and the events Stripe
    /// sends besides `checkout.session.completed`, or why it cannot be
    /// completed.
    fn complete_checkout(&mut self, id: &str) -> Result<(Value, Vec<Value>), Refusal> {
        let Some(mut session) = self.session(id).cloned() else {
            return Err(Refusal::NotFound);
        };
        if session["status"] != "open" {
            return Err(Refusal::Closed);
        }
        let customer = session["customer"].clone();
        let method = self.new_card(&customer);
        let mut events = Vec::new();
        let patch = match session["mode"].as_str() {
            Some("payment") => self.paid(id, &session, &method),
            Some("subscription") => {
                let (patch, subscription, invoice) = self.subscribed(id, &session, &method);
                events.push(self.new_event("customer.subscription.created", &subscription));
                events.push(self.new_event("invoice.paid", &invoice));
                patch
            }
            Some("setup") => {
                let metadata = self
                    .sales
                    .get(id)
                    .map_or(json!({}), |s| s.setup_metadata.clone());
                let (intent_id, mut intent) = self.new_object("setup_intent", "seti_");
                merge(
                    &mut intent,
                    json!({"status": "succeeded", "customer": customer,
                           "payment_method": method, "usage": "off_session",
                           "client_secret": format!("{intent_id}_secret_fake"),
                           "metadata": metadata}),
                );
                self.hold(intent_id.clone(), &intent);
                json!({"status": "complete", "setup_intent": intent_id})
            }
            _ => return Err(Refusal::Closed),
        };
        merge(&mut session, patch);
        self.hold(id.to_owned(), &session);
        Ok((session, events))
    }

    /// A card payment method, Stripe's test Visa, attached to `customer`;
    /// answers its id.
    fn new_card(&mut self, customer: &Value) -> String {
        let (id, mut method) = self.new_object("payment_method", "pm_");
        merge(
            &mut method,
            json!({"type": "card", "customer": customer,
                   "card": {"brand": CARD_BRAND, "display_brand": CARD_BRAND,
                            "last4": CARD_LAST4, "exp_month": CARD_EXP_MONTH,
                            "exp_year": CARD_EXP_YEAR}}),
        );
        self.hold(id.clone(), &method);
        id
    }

    /// Pays the payment session `id` with the card `method`: a succeeded
    /// payment intent, its charge, and a paid invoice when the session
    /// asked for one; answers what changes on the session.
    fn paid(&mut self, id: &str, session: &Value, method: &str) -> Value {
        let amount = session["amount_total"].as_i64().unwrap_or(0);
        let (metadata, invoiced) = self.sales.get(id).map_or((json!({}), false), |s| {
            (s.intent_metadata.clone(), s.invoice)
        });
        let (intent_id, charge_id) = self.payment(session, method, amount, metadata);
        let invoice = if invoiced {
            let fields = json!({"billing_reason": "manual", "subscription": null, "parent": null});
            json!(self.paid_invoice(session, fields, amount, &intent_id, &charge_id)["id"])
        } else {
            Value::Null
        };
        json!({"status": "complete", "payment_status": "paid", "payment_intent": intent_id,
               "invoice": invoice})
    }

    /// Starts the subscription of session `id`, paid with the card
    /// `method`: its first period from now, its first invoice paid. Answers
    /// what changes on the session, the subscription and the invoice.
    fn subscribed(&mut self, id: &str, session: &Value, method: &str) -> (Value, Value, Value) {
        let (line, metadata) = self.sales.get(id).map_or((None, json!({})), |sale| {
            (
                sale.lines.first().cloned(),
                sale.subscription_metadata.clone(),
            )
        });
        let line = line.unwrap_or(Line {
            name: "Subscription".to_owned(),
            quantity: 1,
            unit_amount: 0,
            price: None,
            recurring: None,
        });
        let (interval, count) = line.recurring.clone().unwrap_or(("month".to_owned(), 1));
        let start = unix_now();
        let end = start + period_s(&interval, count);
        let price = match line.price.as_ref().and_then(|p| self.objects.get(p)) {
            Some(held) => held.clone(),
            None => {
                let (price_id, mut price) = self.new_object("price", "price_");
                merge(
                    &mut price,
                    json!({"unit_amount": line.unit_amount, "currency": session["currency"],
                           "nickname": line.name, "type": "recurring",
                           "recurring": {"interval": interval, "interval_count": count}}),
                );
                self.hold(price_id, &price);
                price
            }
        };
        let amount = line.amount();
        let (intent_id, charge_id) = self.payment(session, method, amount, json!({}));
        let (subscription_id, mut subscription) = self.new_object("subscription", "sub_");
        self.ids_issued += 1;
        let item_id = format!("si_{}", self.ids_issued);
        let period = json!({"start": start, "end": end});
        let invoice = self.paid_invoice(
            session,
            json!({"billing_reason": "subscription_create", "subscription": subscription_id,
                   "parent": {"type": "subscription_details",
                              "subscription_details": {"subscription": subscription_id,
                                                       "metadata": metadata}},
                   "period_start": start, "period_end": end,
                   "lines": {"object": "list", "has_more": false, "data": [{
                       "id": format!("il_{}", self.ids_issued), "object": "line_item",
                       "type": "subscription", "proration": false, "amount": amount,
                       "currency": session["currency"], "quantity": line.quantity,
                       "description": line.name, "period": period,
                       "price": price, "subscription": subscription_id,
                       "subscription_item": item_id,
                       "parent": {"type": "subscription_item_details",
                                  "subscription_item_details": {
                                      "proration": false, "subscription": subscription_id,
                                      "subscription_item": item_id}},
                       "pricing": {"type": "price_details",
                                   "price_details": {"price": price["id"]}}}]}}),
            amount,
            &intent_id,
            &charge_id,
        );
        merge(
            &mut subscription,
            json!({"status": "active", "customer": session["customer"],
                   "currency": session["currency"], "default_payment_method": method,
                   "current_period_start": start, "current_period_end": end,
                   "start_date": start, "billing_cycle_anchor": start,
                   "cancel_at_period_end": false, "canceled_at": null, "ended_at": null,
                   "latest_invoice": invoice["id"], "metadata": metadata,
                   "items": {"object": "list", "has_more": false, "data": [{
                       "id": item_id, "object": "subscription_item", "price": price,
                       "quantity": line.quantity, "subscription": subscription_id,
                       "current_period_start": start, "current_period_end": end}]}}),
        );
        self.hold(subscription_id.clone(), &subscription);
        let patch = json!({"status": "complete", "payment_status": "paid",
                           "subscription": subscription_id, "invoice": invoice["id"]});
        (patch, subscription, invoice)
    }

    /// A succeeded payment intent of `amount` with the card `method`, and
    /// its charge, for the session's customer; answers their ids.
    fn payment(
        &mut self,
        session: &Value,
        method: &str,
        amount: i64,
        metadata: Value,
    ) -> (String, String) {
        let (currency, customer) = (session["currency"].clone(), session["customer"].clone());
        let (intent_id, mut intent) = self.new_object("payment_intent", "pi_");
        let (charge_id, mut charge) = self.new_object("charge", "ch_");
        merge(
            &mut charge,
            json!({"amount": amount, "amount_captured": amount, "amount_refunded": 0,
                   "currency": currency, "customer": customer, "payment_intent": intent_id,
                   "payment_method": method, "paid": true, "status": "succeeded",
                   "refunded": false, "captured": true,
                   "receipt_url": format!("https://pay.stripe.com/receipts/acct_test/{charge_id}")}),
        );
        self.hold(charge_id.clone(), &charge);
        merge(
            &mut intent,
            json!({"amount": amount, "amount_received": amount, "currency": currency,
                   "customer": customer, "payment_method": method, "status": "succeeded",
                   "latest_charge": charge_id, "client_secret": format!("{intent_id}_secret_fake"),
                   "last_payment_error": null, "next_action": null, "canceled_at": null,
                   "metadata": metadata}),
        );
        self.hold(intent_id.clone(), &intent);
        (intent_id, charge_id)
    }

    /// An invoice of the session's customer paid by the intent and charge
    /// given, with `fields` over the paid invoice's; answers it.
    fn paid_invoice(
        &mut self,
        session: &Value,
        fields: Value,
        amount: i64,
        intent_id: &str,
        charge_id: &str,
    ) -> Value {
        let (invoice_id, mut invoice) = self.new_object("invoice", "in_");
        merge(
            &mut invoice,
            json!({"customer": session["customer"], "currency": session["currency"],
                   "status": "paid", "paid": true, "amount_due": amount, "amount_paid": amount,
                   "amount_remaining": 0, "subtotal": amount, "total": amount,
                   "payment_intent": intent_id, "charge": charge_id,
                   "number": format!("CD-{:04}", self.ids_issued),
                   "hosted_invoice_url":
                       format!("https://invoice.stripe.com/i/acct_test/{invoice_id}"),
                   "invoice_pdf":
                       format!("https://pay.stripe.com/invoice/acct_test/{invoice_id}/pdf"),
                   "status_transitions": {"paid_at": unix_now()}}),
        );
        merge(&mut invoice, fields);
        self.hold(invoice_id, &invoice);
        invoice
    }

    /// An event of `kind` about `object`, as Stripe wraps one, held under
    /// its `evt_` id.
    fn new_event(&mut self, kind: &str, object: &Value) -> Value {
        let (id, mut event) = self.new_object("event", "evt_");
        merge(
            &mut event,
            json!({"api_version": EVENT_API_VERSION, "type": kind, "pending_webhooks": 1,
                   "request": {"id": null, "idempotency_key": null}}),
        );
        event["data"] = json!({"object": object});
        // An event has no metadata of its own.
        if let Some(fields) = event.as_object_mut() {
            fields.remove("metadata");
        }
        self.hold(id, &event);
        event
    }
}

/// The length of `count` intervals, in seconds; a month is 30 days and a
/// year 365, which is near enough for a fake's first period.
fn period_s(interval: &str, count: i64) -> u64 {
    let day = 24 * 60 * 60;
    let one = match interval {
        "day" => day,
        "week" => 7 * day,
        "year" => 365 * day,
        _ => 30 * day,
    };
    one * u64::try_from(count.max(1)).unwrap_or(1)
}

/// A page of the fake's checkout: in English, titled, readable from 375 px,
/// with an empty icon so that the browser asks for no `/favicon.ico`.
fn page(status: StatusCode, heading: &str, body: &str) -> Response {
    let heading = escape(heading);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>{heading} · Test checkout</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><p>Test checkout · no real card is charged</p></header>\n\
         <main>\n<h1>{heading}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    );
    (status, Html(html)).into_response()
}

/// Why a session's page cannot be submitted.
enum Refusal {
    /// No session has this id.
    NotFound,
    /// The session is complete or expired.
    Closed,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotFound => not_found(),
            Refusal::Closed => {
                let body = "<p>This checkout is no longer open.</p>";
                page(StatusCode::CONFLICT, "Checkout closed", body)
            }
        }
    }
}

fn not_found() -> Response {
    let body = "<p>No checkout session has this address.</p>";
    page(StatusCode::NOT_FOUND, "Checkout not found", body)
}

/// The page's style: one column, at most 28rem wide, large tap targets.
const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff}\
header{background:#f3f4f6;padding:.5rem 1rem;font-size:.875rem}\
header p{margin:0}\
main{max-width:28rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;margin:.5rem 0 1rem}\
h2{font-size:1.125rem;margin:0 0 .5rem}\
.lines{list-style:none;margin:0;padding:0}\
.lines li{display:flex;justify-content:space-between;gap:1rem;padding:.5rem 0;\
border-bottom:1px solid #d1d5db}\
.total{display:flex;justify-content:space-between;font-size:1.125rem}\
button{width:100%;min-height:3rem;font:inherit;font-weight:600;color:#fff;\
background:#4338ca;border:0;border-radius:.375rem;cursor:pointer}\
button:focus-visible,a:focus-visible{outline:3px solid #1d4ed8;outline-offset:2px}\
a{color:#3730a3}\
pre{white-space:pre-wrap;overflow-wrap:anywhere}";

/// `minor` units of `currency` as a person reads them: `5.00 USD`.
fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        minor / 100,
        minor % 100,
        escape(&currency.to_ascii_uppercase())
    )
}

/// `text` safe inside HTML text and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
