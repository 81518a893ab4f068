//! A fake Stripe API on port 0 that speaks Stripe's form-encoded REST dialect and keeps the objects it creates.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

mod hosted;

pub use hosted::signature;

/// Stripe's sample objects, `resources` keyed by object type.
static FIXTURES: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../data/stripe_fixtures.json"))
        .expect("Stripe's sample objects are JSON")
});

/// How long a new Checkout Session stays open, as Stripe's default.
const CHECKOUT_TTL_S: u64 = 24 * 60 * 60;

/// The id prefixes the fake issues or accepts in [`FakeStripe::set`], with
/// the object type each one names.
const ID_PREFIXES: [(&str, &str); 12] = [
    ("cus_", "customer"),
    ("cs_", "checkout.session"),
    ("pi_", "payment_intent"),
    ("ii_", "invoiceitem"),
    ("in_", "invoice"),
    ("pm_", "payment_method"),
    ("seti_", "setup_intent"),
    ("ch_", "charge"),
    ("evt_", "event"),
    ("sub_", "subscription"),
    ("price_", "price"),
    ("prod_", "product"),
];

/// A fake Stripe API serving customers, Checkout Sessions, PaymentIntents,
/// invoice items, PaymentMethods and SetupIntents under `/v1` on
/// `127.0.0.1`, with Stripe's authentication, idempotency and error bodies,
/// and each Checkout Session's hosted page at its `url` (`/c/pay/{id}`);
/// dropping it stops it.
pub struct FakeStripe {
    base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// How the next request fails, queued with [`FakeStripe::push_failure`].
///
/// Each request takes the next queued failure; an empty queue answers
/// normally. A request that takes a failure creates nothing, except a
/// payment intent creation taking a card failure. A card failure does not
/// hide a refusal that comes first (no test key, a body that is not a
/// form): that request answers the refusal and uses the failure up.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Answers this status with an `api_error` body before the request is
    /// looked at. Nothing is kept for its `Idempotency-Key`, so a retry with
    /// the same key is answered normally.
    Status(u16),
    /// Answers `402` with a `card_error` of code `card_declined` and decline
    /// code `insufficient_funds`. A payment intent creation still creates
    /// the intent, in `requires_payment_method`, and the error carries it;
    /// that answer is kept for its `Idempotency-Key`, as Stripe keeps it.
    /// Any other request answers the error alone.
    Decline,
    /// Answers `402` with a `card_error` of code `authentication_required`.
    /// A payment intent creation still creates the intent and the error
    /// carries it: in `requires_payment_method` when it was confirmed
    /// `off_session` (as Stripe leaves it), otherwise in `requires_action`.
    /// Any other request answers the error alone.
    AuthenticationRequired,
    /// Closes the connection without answering.
    Drop,
    /// Answers this status with this body as it is, as a JSON answer,
    /// before the request is looked at: a body the client may not be able
    /// to read.
    Raw(u16, &'static str),
}

/// A request as the fake received it.
#[derive(Clone, Debug)]
pub struct StripeRequest {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The path without the query, e.g. `/v1/checkout/sessions`.
    pub path: String,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The `Stripe-Version` header.
    pub stripe_version: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `X-Request-Id` header: the id of the request creditd was
    /// answering when it called.
    pub request_id: Option<String>,
    /// The decoded pairs of a form-encoded body, in order, with bracketed
    /// keys as written (`metadata[creditd_account]`); empty when the body is
    /// not form-encoded.
    pub form: Vec<(String, String)>,
    /// The decoded pairs of the query string, in order.
    pub query: Vec<(String, String)>,
}

impl StripeRequest {
    /// The first value of the form key `key`, e.g. `metadata[creditd_account]`.
    pub fn get(&self, key: &str) -> Option<&str> {
        get(&self.form, key)
    }
}

struct Shared {
    // A `std::sync::Mutex`, not a Tokio one, because nothing awaits while it is held.
    inner: Mutex<Inner>,
    closed: AtomicBool,
}

struct Inner {
    requests: Vec<StripeRequest>,
    failures: VecDeque<Failure>,
    /// Declines the next payment made (a payment intent confirmed, an
    /// invoice paid), whatever requests come before it.
    decline_next_payment: bool,
    objects: HashMap<String, Value>,
    idempotency: HashMap<String, Kept>,
    ids_issued: u64,
    /// `http://127.0.0.1:<port>`, where a session's page is served.
    base_url: String,
    /// What each Checkout Session sells, by the session's id, for its page.
    sales: HashMap<String, hosted::Sale>,
    /// Where a completed session's event is sent, once set.
    webhook: Option<hosted::Webhook>,
}

/// The first answer to an idempotency key, and what it answered.
struct Kept {
    method: String,
    path: String,
    /// The form pairs sorted, so that the order of keys does not count.
    params: Vec<(String, String)>,
    answer: Answer,
}

/// A status and its JSON body.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    body: Value,
}

/// The card failures a payment intent creation turns into a failed intent.
#[derive(Clone, Copy)]
enum CardFailure {
    Declined,
    AuthenticationRequired,
}

impl FakeStripe {
    /// Starts the fake on a free port of `127.0.0.1`.
    pub async fn start() -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake Stripe API");
        let port = listener.local_addr().expect("a local address").port();
        let base_url = format!("http://127.0.0.1:{port}");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                requests: Vec::new(),
                failures: VecDeque::new(),
                decline_next_payment: false,
                objects: HashMap::new(),
                idempotency: HashMap::new(),
                ids_issued: 0,
                base_url: base_url.clone(),
                sales: HashMap::new(),
                webhook: None,
            }),
            closed: AtomicBool::new(false),
        });
        let router = hosted::routes().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeStripe {
            base_url,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash or `/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Sends the events of each Checkout Session completed on its hosted
    /// page (`checkout.session.completed`; for a subscription also
    /// `customer.subscription.created` and `invoice.paid`) to `url`, in
    /// turn, signed with `secret` as Stripe signs (`Stripe-Signature:
    /// t=…,v1=…`), and waits for each answer before sending the customer on
    /// to the session's `success_url`.
    pub fn send_webhooks_to(&self, url: String, secret: String) {
        self.shared.lock().webhook = Some(hosted::Webhook { url, secret });
    }

    /// Every API request received so far, in order of arrival, refused and
    /// failed ones included (the hosted pages' requests are not kept).
    pub fn requests(&self) -> Vec<StripeRequest> {
        self.shared.lock().requests.clone()
    }

    /// Queues a failure for a later request: each request takes the next
    /// one, and an empty queue answers normally.
    pub fn push_failure(&self, failure: Failure) {
        self.shared.lock().failures.push_back(failure);
    }

    /// Declines the next payment made — a payment intent created, or an
    /// invoice paid — as [`Failure::Decline`] does, letting the requests
    /// before it (a customer, an invoice, its line) through.
    pub fn decline_next_payment(&self) {
        self.shared.lock().decline_next_payment = true;
    }

    /// The object with this id as the fake holds it now, if it holds one.
    pub fn object(&self, id: &str) -> Option<Value> {
        self.shared.lock().objects.get(id).cloned()
    }

    /// Merges `patch` into the object with this id, as a test moves it into
    /// the state it needs (a session `complete` and `paid`, an intent
    /// `succeeded`). Fields of `patch` replace the object's, except that an
    /// object merges into an object field key by key, so
    /// `{"invoice_settings": {"default_payment_method": "pm_1"}}` keeps the
    /// other invoice settings.
    ///
    /// An id the fake does not hold yet is first created from Stripe's
    /// sample of the type its prefix names (`pm_` a `payment_method`,
    /// `seti_` a `setup_intent`, …), which is how a test provides the objects
    /// the fake has no endpoint to create. Panics on an id with no known
    /// prefix.
    pub fn set(&self, id: &str, patch: Value) {
        let mut inner = self.shared.lock();
        let object = inner.objects.entry(id.to_owned()).or_insert_with(|| {
            let kind = ID_PREFIXES
                .iter()
                .find(|(prefix, _)| id.starts_with(prefix))
                .map(|(_, kind)| *kind)
                .unwrap_or_else(|| panic!("no Stripe object type has ids like {id:?}"));
            let mut object = FakeStripe::fixture(kind);
            object["id"] = json!(id);
            object
        });
        merge(object, patch);
    }

    /// Stripe's sample object of the type `kind` (`customer`,
    /// `checkout.session`, `invoice`, `event`, …), from Stripe's own sample
    /// set. Panics when Stripe has no sample of that type.
    pub fn fixture(kind: &str) -> Value {
        FIXTURES["resources"]
            .get(kind)
            .cloned()
            .unwrap_or_else(|| panic!("Stripe has no sample object of type {kind:?}"))
    }
}

impl Drop for FakeStripe {
    /// Stops accepting, and drops without an answer the requests that still
    /// arrive on kept-alive connections.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let form = if is_form(content_type.as_deref()) {
        decode(&body)
    } else {
        Vec::new()
    };
    let request = StripeRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
        authorization: header("authorization"),
        request_id: header("x-request-id"),
        content_type,
        form,
        query: decode(uri.query().unwrap_or("").as_bytes()),
    };
    // One lock for recording, taking a failure and answering, so requests
    // and failures pair up in arrival order and two requests with the same
    // idempotency key never both create.
    let mut inner = shared.lock();
    inner.requests.push(request.clone());
    let request_id = format!("req_{}", inner.requests.len());
    if shared.closed.load(Ordering::SeqCst) {
        return aborted();
    }
    let (answer, replayed) = match inner.failures.pop_front() {
        Some(Failure::Drop) => return aborted(),
        Some(Failure::Raw(status, body)) => {
            drop(inner);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, [(CONTENT_TYPE, "application/json")], body).into_response();
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("request-id", value);
            }
            return response;
        }
        Some(Failure::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = format!("A failure of status {} was pushed.", status.as_u16());
            (error(status, "api_error", &message), false)
        }
        Some(Failure::Decline) => inner.answer(&request, Some(CardFailure::Declined)),
        Some(Failure::AuthenticationRequired) => {
            inner.answer(&request, Some(CardFailure::AuthenticationRequired))
        }
        None => {
            let pays = request.method == "POST"
                && (request.path == "/v1/payment_intents"
                    || (request.path.starts_with("/v1/invoices/")
                        && request.path.ends_with("/pay")));
            let card = (pays && std::mem::take(&mut inner.decline_next_payment))
                .then_some(CardFailure::Declined);
            inner.answer(&request, card)
        }
    };
    drop(inner);
    respond(answer, &request_id, replayed)
}

impl Inner {
    /// The answer to `request`, and whether it replays a kept one.
    fn answer(&mut self, request: &StripeRequest, card: Option<CardFailure>) -> (Answer, bool) {
        if !is_test_secret_key(request.authorization.as_deref()) {
            let message = "Invalid API Key provided";
            return (
                error(StatusCode::UNAUTHORIZED, "invalid_request_error", message),
                false,
            );
        }
        let post = request.method == "POST";
        if post && !is_form(request.content_type.as_deref()) {
            let message = "POST bodies must be application/x-www-form-urlencoded.";
            return (
                error(StatusCode::BAD_REQUEST, "invalid_request_error", message),
                false,
            );
        }
        // Creating a payment intent, or paying an invoice (which makes one),
        // takes a card failure as a failed payment.
        let creates_intent = post
            && (request.path == "/v1/payment_intents"
                || (request.path.starts_with("/v1/invoices/") && request.path.ends_with("/pay")));
        if let Some(card) = card
            && !creates_intent
        {
            return (card_error(card, None), false);
        }
        // Stripe ignores the key on GET and DELETE.
        let key = request.idempotency_key.as_ref().filter(|_| post);
        let mut params = request.form.clone();
        params.sort();
        if let Some(kept) = key.and_then(|key| self.idempotency.get(key)) {
            if kept.method == request.method && kept.path == request.path && kept.params == params {
                return (kept.answer.clone(), true);
            }
            let message = "Keys for idempotent requests can only be used with the same \
                           parameters they were first used with.";
            return (
                error(StatusCode::BAD_REQUEST, "idempotency_error", message),
                false,
            );
        }
        match self.route(request, card) {
            // Only an answer from an endpoint that ran is kept; a request
            // refused before it ran may be retried with the same key.
            Ok(answer) => {
                if let Some(key) = key {
                    let kept = Kept {
                        method: request.method.clone(),
                        path: request.path.clone(),
                        params,
                        answer: answer.clone(),
                    };
                    self.idempotency.insert(key.clone(), kept);
                }
                (answer, false)
            }
            Err(refused) => (refused, false),
        }
    }

    /// The endpoint's answer, or the refusal of a request it cannot serve.
    fn route(
        &mut self,
        request: &StripeRequest,
        card: Option<CardFailure>,
    ) -> Result<Answer, Answer> {
        let form = &request.form;
        let segments: Vec<&str> = match request.path.strip_prefix("/v1/") {
            Some(rest) => rest.split('/').collect(),
            None => Vec::new(),
        };
        let body = match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["customers"]) => self.create_customer(form),
            ("POST", ["customers", id]) => self.update_customer(id, form)?,
            ("GET", ["customers", id]) => self.held(id, "customer")?,
            ("POST", ["checkout", "sessions"]) => self.create_checkout_session(form)?,
            ("GET", ["checkout", "sessions"]) => self.list_checkout_sessions(&request.query),
            ("GET", ["checkout", "sessions", id]) => self.held(id, "checkout.session")?,
            ("GET", ["subscriptions", id]) => self.held(id, "subscription")?,
            ("POST", ["subscriptions", id]) => self.update_subscription(id, form)?,
            ("POST", ["payment_intents"]) => return self.create_payment_intent(form, card),
            ("GET", ["payment_intents", id]) => self.held(id, "payment_intent")?,
            ("GET", ["invoices", id]) => self.held(id, "invoice")?,
            ("POST", ["invoices"]) => self.create_invoice(form)?,
            ("POST", ["invoices", id, "pay"]) => return self.pay_invoice(id, form, card),
            ("POST", ["invoices", id, "void"]) => self.void_invoice(id)?,
            ("GET", ["charges", id]) => self.held(id, "charge")?,
            ("POST", ["invoiceitems"]) => self.create_invoice_item(form)?,
            ("GET", ["payment_methods", id]) => self.held(id, "payment_method")?,
            ("GET", ["setup_intents", id]) => self.held(id, "setup_intent")?,
            _ => {
                let message = format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs \
                     or we can help at https://support.stripe.com/.",
                    request.method, request.path
                );
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    &message,
                ));
            }
        };
        Ok(Answer {
            status: StatusCode::OK,
            body,
        })
    }

    /// A held object of type `kind`, or Stripe's `resource_missing`.
    fn held(&self, id: &str, kind: &str) -> Result<Value, Answer> {
        match self.objects.get(id) {
            Some(object) if object["object"] == kind => Ok(object.clone()),
            _ => {
                let message = format!("No such {kind}: '{id}'");
                let mut answer = error(StatusCode::NOT_FOUND, "invalid_request_error", &message);
                answer.body["error"]["code"] = json!("resource_missing");
                answer.body["error"]["param"] = json!("id");
                Err(answer)
            }
        }
    }

    /// A fresh object of type `kind` with the next id after `prefix`,
    /// started from Stripe's sample and not yet held.
    fn new_object(&mut self, kind: &str, prefix: &str) -> (String, Value) {
        self.ids_issued += 1;
        let id = format!("{prefix}{}", self.ids_issued);
        let mut object = FakeStripe::fixture(kind);
        object["id"] = json!(id);
        object["created"] = json!(unix_now());
        object["livemode"] = json!(false);
        object["metadata"] = json!({});
        (id, object)
    }

    fn hold(&mut self, id: String, object: &Value) {
        self.objects.insert(id, object.clone());
    }

    fn create_customer(&mut self, form: &[(String, String)]) -> Value {
        let (id, mut customer) = self.new_object("customer", "cus_");
        for field in ["email", "name", "description", "phone"] {
            customer[field] = optional(form, field);
        }
        customer["discount"] = Value::Null;
        customer["invoice_settings"]["default_payment_method"] =
            optional(form, "invoice_settings[default_payment_method]");
        apply_metadata(&mut customer, form);
        self.hold(id, &customer);
        customer
    }

    fn update_customer(&mut self, id: &str, form: &[(String, String)]) -> Result<Value, Answer> {
        let mut customer = self.held(id, "customer")?;
        for field in ["email", "name", "description", "phone"] {
            if get(form, field).is_some() {
                customer[field] = optional(form, field);
            }
        }
        let default_key = "invoice_settings[default_payment_method]";
        if get(form, default_key).is_some() {
            customer["invoice_settings"]["default_payment_method"] = optional(form, default_key);
        }
        apply_metadata(&mut customer, form);
        self.hold(id.to_owned(), &customer);
        Ok(customer)
    }

    fn create_checkout_session(&mut self, form: &[(String, String)]) -> Result<Value, Answer> {
        let mode = required(form, "mode")?;
        if !matches!(mode, "payment" | "subscription" | "setup") {
            let message = "Invalid mode: must be one of payment, setup, or subscription";
            return Err(invalid_param("parameter_invalid_string", "mode", message));
        }
        let mut amount_total: i64 = 0;
        let mut price_currency = None;
        let mut lines = Vec::new();
        for index in line_item_indexes(form) {
            let unit_amount_key = format!("line_items[{index}][price_data][unit_amount]");
            let price_key = format!("line_items[{index}][price]");
            let (unit_amount, name, price, recurring) = match get(form, &price_key) {
                // A Price made at Stripe beforehand: its amount and currency.
                Some(price) => {
                    let held = self.held(price, "price").map_err(|_| {
                        let message = format!("No such price: '{price}'");
                        invalid_param("resource_missing", &price_key, &message)
                    })?;
                    price_currency = held["currency"].as_str().map(str::to_owned);
                    let name = held["nickname"].as_str().unwrap_or(price).to_owned();
                    let recurring = held["recurring"]["interval"].as_str().map(|interval| {
                        let count = held["recurring"]["interval_count"].as_i64().unwrap_or(1);
                        (interval.to_owned(), count)
                    });
                    let unit_amount = held["unit_amount"].as_i64().unwrap_or(0);
                    (unit_amount, name, Some(price.to_owned()), recurring)
                }
                None => {
                    let data =
                        |field: &str| get(form, &format!("line_items[{index}][price_data]{field}"));
                    let name = data("[product_data][name]").unwrap_or("Item").to_owned();
                    let count = integer(
                        form,
                        &format!("line_items[{index}][price_data][recurring][interval_count]"),
                    )?
                    .unwrap_or(1);
                    let recurring = data("[recurring][interval]").map(|i| (i.to_owned(), count));
                    let unit_amount = integer(form, &unit_amount_key)?.unwrap_or(0);
                    (unit_amount, name, None, recurring)
                }
            };
            let quantity = integer(form, &format!("line_items[{index}][quantity]"))?.unwrap_or(1);
            lines.push(hosted::Line {
                name,
                quantity,
                unit_amount,
                price,
                recurring,
            });
            amount_total = unit_amount
                .checked_mul(quantity)
                .and_then(|amount| amount_total.checked_add(amount))
                .ok_or_else(|| {
                    let message = "The line items' total amount is too large.";
                    invalid_param("amount_too_large", &unit_amount_key, message)
                })?;
        }
        let currency = get(form, "currency")
            .or_else(|| get(form, "line_items[0][price_data][currency]"))
            .or(price_currency.as_deref())
            .map_or(Value::Null, |c| json!(c.to_ascii_lowercase()));

        let (id, mut session) = self.new_object("checkout.session", "cs_test_");
        let fields = json!({
            "url": format!("{}/c/pay/{id}", self.base_url),
            "mode": mode,
            "customer": optional(form, "customer"),
            "customer_email": optional(form, "customer_email"),
            "customer_details": null,
            "client_reference_id": optional(form, "client_reference_id"),
            "amount_subtotal": amount_total,
            "amount_total": amount_total,
            "currency": currency,
            "status": "open",
            "payment_status": if mode == "setup" { "no_payment_required" } else { "unpaid" },
            "locale": optional(form, "locale"),
            "success_url": optional(form, "success_url"),
            "cancel_url": optional(form, "cancel_url"),
            "expires_at": unix_now() + CHECKOUT_TTL_S,
            "invoice": null,
            "payment_intent": null,
            "setup_intent": null,
            "subscription": null,
        });
        merge(&mut session, fields);
        apply_metadata(&mut session, form);
        let sale = hosted::Sale {
            lines,
            invoice: get(form, "invoice_creation[enabled]") == Some("true"),
            intent_metadata: prefixed(form, "payment_intent_data[metadata]"),
            setup_metadata: prefixed(form, "setup_intent_data[metadata]"),
            subscription_metadata: prefixed(form, "subscription_data[metadata]"),
        };
        self.sales.insert(id.clone(), sale);
        self.hold(id, &session);
        Ok(session)
    }

    /// Checkout Sessions, newest first, filtered as Stripe filters them by
    /// `subscription`, `payment_intent` and `customer`, at most `limit`.
    fn list_checkout_sessions(&self, query: &[(String, String)]) -> Value {
        let limit = get(query, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(10);
        let filters: Vec<(&str, &str)> = ["subscription", "payment_intent", "customer"]
            .into_iter()
            .filter_map(|field| get(query, field).map(|value| (field, value)))
            .collect();
        let mut sessions: Vec<&Value> = self
            .objects
            .values()
            .filter(|o| o["object"] == "checkout.session")
            .filter(|o| filters.iter().all(|(field, value)| o[*field] == *value))
            .collect();
        sessions.sort_by(|a, b| b["created"].as_u64().cmp(&a["created"].as_u64()));
        let has_more = sessions.len() > limit;
        json!({
            "object": "list",
            "url": "/v1/checkout/sessions",
            "has_more": has_more,
            "data": sessions.into_iter().take(limit).cloned().collect::<Vec<_>>(),
        })
    }

    /// Updates a subscription as Stripe does for a plan change
    /// (`items[0][id]` with `items[0][price]`), `cancel_at_period_end` and
    /// `metadata`.
    fn update_subscription(
        &mut self,
        id: &str,
        form: &[(String, String)],
    ) -> Result<Value, Answer> {
        let mut subscription = self.held(id, "subscription")?;
        if let Some(price) = get(form, "items[0][price]") {
            let item = get(form, "items[0][id]");
            let current = subscription["items"]["data"][0]["id"].as_str();
            if item.is_some() && item != current {
                let message = format!("No such subscription item: '{}'", item.unwrap_or(""));
                return Err(invalid_param("resource_missing", "items[0][id]", &message));
            }
            subscription["items"]["data"][0]["price"]["id"] = json!(price);
            if let Some(held) = self.objects.get(price)
                && held["object"] == "price"
            {
                subscription["items"]["data"][0]["price"] = held.clone();
            }
        }
        match get(form, "cancel_at_period_end") {
            Some("true") => subscription["cancel_at_period_end"] = json!(true),
            Some("false") => subscription["cancel_at_period_end"] = json!(false),
            Some(other) => {
                let message = format!("Invalid boolean: {other}");
                return Err(invalid_param(
                    "parameter_invalid_boolean",
                    "cancel_at_period_end",
                    &message,
                ));
            }
            None => {}
        }
        apply_metadata(&mut subscription, form);
        self.hold(id.to_owned(), &subscription);
        Ok(subscription)
    }

    fn create_payment_intent(
        &mut self,
        form: &[(String, String)],
        card: Option<CardFailure>,
    ) -> Result<Answer, Answer> {
        let amount = integer(form, "amount")?.ok_or_else(|| missing("amount"))?;
        let currency = required(form, "currency")?.to_ascii_lowercase();
        let confirm = get(form, "confirm") == Some("true");
        let off_session = get(form, "off_session").is_some_and(|v| v != "false");

        let (id, mut intent) = self.new_object("payment_intent", "pi_");
        let payment_method = optional(form, "payment_method");
        let fields = json!({
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "customer": optional(form, "customer"),
            "description": optional(form, "description"),
            "payment_method": payment_method,
            "client_secret": format!("{id}_secret_fake"),
            "canceled_at": null,
            "last_payment_error": null,
            "latest_charge": null,
            "next_action": null,
            "processing": null,
            "transfer_data": null,
        });
        merge(&mut intent, fields);
        apply_metadata(&mut intent, form);
        let status = match card {
            None if confirm => {
                intent["amount_received"] = json!(amount);
                "succeeded"
            }
            None if payment_method.is_null() => "requires_payment_method",
            None => "requires_confirmation",
            Some(CardFailure::AuthenticationRequired) if !off_session => {
                intent["next_action"] = json!({"type": "use_stripe_sdk", "use_stripe_sdk": {}});
                "requires_action"
            }
            // A failed attempt detaches the payment method from the intent;
            // the error keeps what went wrong.
            Some(card) => {
                intent["last_payment_error"] = card_error(card, None).body["error"].take();
                intent["payment_method"] = Value::Null;
                "requires_payment_method"
            }
        };
        intent["status"] = json!(status);
        self.hold(id, &intent);
        Ok(match card {
            Some(card) => card_error(card, Some(intent)),
            None => Answer {
                status: StatusCode::OK,
                body: intent,
            },
        })
    }

    /// A draft invoice for a customer, as Stripe makes one for a one-off
    /// charge: `pending_invoice_items_behavior=exclude` leaves the
    /// customer's pending items for their own invoices.
    fn create_invoice(&mut self, form: &[(String, String)]) -> Result<Value, Answer> {
        let customer = required(form, "customer")?.to_owned();
        self.held(&customer, "customer").map_err(|_| {
            let message = format!("No such customer: '{customer}'");
            invalid_param("resource_missing", "customer", &message)
        })?;
        let (id, mut invoice) = self.new_object("invoice", "in_");
        let fields = json!({
            "customer": customer,
            "status": "draft",
            "collection_method": get(form, "collection_method").unwrap_or("charge_automatically"),
            "auto_advance": get(form, "auto_advance") != Some("false"),
            "default_payment_method": optional(form, "default_payment_method"),
            "description": optional(form, "description"),
            "currency": get(form, "currency").unwrap_or("usd"),
            "billing_reason": "manual",
            "subscription": null,
            "parent": null,
            "amount_due": 0, "amount_paid": 0, "amount_remaining": 0,
            "subtotal": 0, "total": 0, "subtotal_excluding_tax": 0, "total_excluding_tax": 0,
            "attempted": false, "attempt_count": 0,
            "hosted_invoice_url": null, "invoice_pdf": null, "number": null,
            "payment_intent": null, "charge": null, "paid": false,
        });
        merge(&mut invoice, fields);
        invoice["lines"] = json!({"object": "list", "data": [], "has_more": false,
                                  "url": format!("/v1/invoices/{id}/lines")});
        apply_metadata(&mut invoice, form);
        self.hold(id, &invoice);
        Ok(invoice)
    }

    /// Pays an invoice off-session as Stripe does: a draft is finalized
    /// first; a payment intent and its charge are made for what is due; a
    /// card failure leaves it open and answers the failed intent.
    fn pay_invoice(
        &mut self,
        id: &str,
        form: &[(String, String)],
        card: Option<CardFailure>,
    ) -> Result<Answer, Answer> {
        let mut invoice = self.held(id, "invoice")?;
        match invoice["status"].as_str() {
            Some("paid") => {
                let message = "Invoice is already paid";
                return Err(invalid_param("invoice_already_paid", "invoice", message));
            }
            Some("void" | "uncollectible") => {
                let message = "This invoice can no longer be paid";
                return Err(invalid_param("invoice_not_payable", "invoice", message));
            }
            _ => {}
        }
        let due = invoice["amount_due"].as_i64().unwrap_or(0);
        if invoice["status"] == "draft" {
            invoice["status"] = json!("open");
            invoice["number"] = json!(format!("CD-{:04}", self.ids_issued));
            invoice["hosted_invoice_url"] =
                json!(format!("https://invoice.stripe.com/i/acct_test/{id}"));
            invoice["invoice_pdf"] =
                json!(format!("https://pay.stripe.com/invoice/acct_test/{id}/pdf"));
        }
        invoice["attempted"] = json!(true);
        invoice["attempt_count"] = json!(invoice["attempt_count"].as_i64().unwrap_or(0) + 1);
        let (intent_id, mut intent) = self.new_object("payment_intent", "pi_");
        merge(
            &mut intent,
            json!({"amount": due, "amount_received": 0, "currency": invoice["currency"],
                   "customer": invoice["customer"], "invoice": id,
                   "payment_method": get(form, "payment_method")
                       .map_or(invoice["default_payment_method"].clone(), |m| json!(m)),
                   "last_payment_error": null, "latest_charge": null}),
        );
        invoice["payment_intent"] = json!(intent_id);
        if let Some(card) = card {
            intent["status"] = json!("requires_payment_method");
            intent["last_payment_error"] = card_error(card, None).body["error"].take();
            intent["payment_method"] = Value::Null;
            self.hold(intent_id, &intent);
            self.hold(id.to_owned(), &invoice);
            return Ok(card_error(card, Some(intent)));
        }
        let (charge_id, mut charge) = self.new_object("charge", "ch_");
        merge(
            &mut charge,
            json!({"amount": due, "amount_captured": due, "amount_refunded": 0,
                   "currency": invoice["currency"], "customer": invoice["customer"],
                   "payment_intent": intent_id, "paid": true, "status": "succeeded",
                   "refunded": false,
                   "receipt_url": format!("https://pay.stripe.com/receipts/acct_test/{charge_id}")}),
        );
        self.hold(charge_id.clone(), &charge);
        merge(
            &mut intent,
            json!({"status": "succeeded", "amount_received": due, "latest_charge": charge_id}),
        );
        self.hold(intent_id, &intent);
        merge(
            &mut invoice,
            json!({"status": "paid", "paid": true, "amount_paid": due, "amount_remaining": 0,
                   "charge": charge_id, "status_transitions": {"paid_at": unix_now()}}),
        );
        self.hold(id.to_owned(), &invoice);
        Ok(Answer {
            status: StatusCode::OK,
            body: invoice,
        })
    }

    /// Voids an open invoice, as Stripe does; a draft, paid or void one
    /// cannot be.
    fn void_invoice(&mut self, id: &str) -> Result<Value, Answer> {
        let mut invoice = self.held(id, "invoice")?;
        if invoice["status"] != "open" {
            let message = format!(
                "You can only void an open invoice; this one is {}.",
                invoice["status"].as_str().unwrap_or("unknown")
            );
            return Err(invalid_param("invoice_not_open", "invoice", &message));
        }
        invoice["status"] = json!("void");
        invoice["amount_remaining"] = json!(0);
        self.hold(id.to_owned(), &invoice);
        Ok(invoice)
    }

    fn create_invoice_item(&mut self, form: &[(String, String)]) -> Result<Value, Answer> {
        let customer = required(form, "customer")?;
        let amount = integer(form, "amount")?.unwrap_or(0);
        let currency = get(form, "currency").unwrap_or("usd").to_ascii_lowercase();
        let subscription = optional(form, "subscription");
        let parent = match &subscription {
            Value::Null => Value::Null,
            subscription => json!({
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription},
            }),
        };
        let now = unix_now();
        let (id, mut item) = self.new_object("invoiceitem", "ii_");
        let fields = json!({
            "customer": customer,
            "amount": amount,
            "net_amount": amount,
            "currency": currency,
            "description": optional(form, "description"),
            "invoice": optional(form, "invoice"),
            "subscription": subscription,
            "date": now,
            "period": {"start": now, "end": now},
            "quantity": 1,
            "quantity_decimal": "1",
            "pricing": {"unit_amount_decimal": amount.to_string()},
            "discounts": [],
            "tax_rates": [],
        });
        merge(&mut item, fields);
        item["parent"] = parent;
        apply_metadata(&mut item, form);
        // An item made for a draft invoice is one of its lines at once.
        if let Some(invoice_id) = get(form, "invoice") {
            let mut invoice = self.held(invoice_id, "invoice").map_err(|_| {
                let message = format!("No such invoice: '{invoice_id}'");
                invalid_param("resource_missing", "invoice", &message)
            })?;
            if invoice["status"] != "draft" {
                let message = "You can only add invoice items to draft invoices.";
                return Err(invalid_param("invoice_not_editable", "invoice", message));
            }
            let line = json!({
                "id": format!("il_{}", id.trim_start_matches("ii_")), "object": "line_item",
                "amount": amount, "currency": item["currency"], "description": item["description"],
                "invoice": invoice_id, "quantity": 1, "type": "invoiceitem", "proration": false,
                "invoice_item": id, "metadata": item["metadata"], "subscription": null,
                "period": {"start": now, "end": now},
            });
            if let Some(lines) = invoice["lines"]["data"].as_array_mut() {
                lines.push(line);
            }
            for field in [
                "amount_due",
                "amount_remaining",
                "subtotal",
                "total",
                "subtotal_excluding_tax",
                "total_excluding_tax",
            ] {
                invoice[field] = json!(invoice[field].as_i64().unwrap_or(0) + amount);
            }
            self.hold(invoice_id.to_owned(), &invoice);
        }
        self.hold(id, &item);
        Ok(item)
    }
}

/// Merges `patch` into `target`: an object into an object key by key,
/// anything else by replacing.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(&key) {
                    Some(field) if field.is_object() && value.is_object() => merge(field, value),
                    _ => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

fn get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The value of `key` as a JSON string, or `null` when it is absent or
/// empty (Stripe's way of unsetting a field).
fn optional(form: &[(String, String)], key: &str) -> Value {
    get(form, key)
        .filter(|v| !v.is_empty())
        .map_or(Value::Null, |v| json!(v))
}

fn required<'a>(form: &'a [(String, String)], key: &str) -> Result<&'a str, Answer> {
    get(form, key).ok_or_else(|| missing(key))
}

/// The value of `key` as an integer, as Stripe parses amounts.
fn integer(form: &[(String, String)], key: &str) -> Result<Option<i64>, Answer> {
    get(form, key)
        .map(|v| {
            v.parse().map_err(|_| {
                let message = format!("Invalid integer: {v}");
                invalid_param("parameter_invalid_integer", key, &message)
            })
        })
        .transpose()
}

/// The indexes `i` of the `line_items[i][...]` keys, in ascending order.
fn line_item_indexes(form: &[(String, String)]) -> BTreeSet<u64> {
    form.iter()
        .filter_map(|(key, _)| key.strip_prefix("line_items[")?.split_once(']'))
        .filter_map(|(index, _)| index.parse().ok())
        .collect()
}

/// The `{prefix}[name]` keys of `form` as an object of names and values,
/// e.g. the `payment_intent_data[metadata][…]` a session passes on.
fn prefixed(form: &[(String, String)], prefix: &str) -> Value {
    let pairs = form.iter().filter_map(|(key, value)| {
        let name = key
            .strip_prefix(prefix)?
            .strip_prefix('[')?
            .strip_suffix(']')?;
        Some((name.to_owned(), json!(value)))
    });
    Value::Object(pairs.collect())
}

/// Sets the `metadata[...]` keys of `form` in the object's `metadata`; an
/// empty value removes the key, as Stripe does.
fn apply_metadata(object: &mut Value, form: &[(String, String)]) {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let Value::Object(metadata) = &mut object["metadata"] else {
        return;
    };
    for (key, value) in form {
        let Some(name) = key
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        else {
            continue;
        };
        if value.is_empty() {
            metadata.remove(name);
        } else {
            metadata.insert(name.to_owned(), json!(value));
        }
    }
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn is_test_secret_key(authorization: Option<&str>) -> bool {
    authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|key| key.strip_prefix("sk_test_"))
        .is_some_and(|rest| !rest.is_empty())
}

/// Form-encoded pairs, or none when `bytes` do not decode.
fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

/// Stripe's error body: `{"error": {"type": ..., "message": ...}}`.
fn error(status: StatusCode, kind: &str, message: &str) -> Answer {
    Answer {
        status,
        body: json!({"error": {"type": kind, "message": message}}),
    }
}

fn missing(key: &str) -> Answer {
    let message = format!("Missing required param: {key}.");
    invalid_param("parameter_missing", key, &message)
}

fn invalid_param(code: &str, param: &str, message: &str) -> Answer {
    let mut answer = error(StatusCode::BAD_REQUEST, "invalid_request_error", message);
    answer.body["error"]["code"] = json!(code);
    answer.body["error"]["param"] = json!(param);
    answer
}

/// Stripe's `402` for a card failure, carrying the intent when there is one.
fn card_error(card: CardFailure, intent: Option<Value>) -> Answer {
    let (code, decline_code, message) = match card {
        CardFailure::Declined => (
            "card_declined",
            "insufficient_funds",
            "Your card was declined.",
        ),
        CardFailure::AuthenticationRequired => (
            "authentication_required",
            "authentication_required",
            "Your card was declined. This transaction requires authentication.",
        ),
    };
    let mut answer = error(StatusCode::PAYMENT_REQUIRED, "card_error", message);
    answer.body["error"]["code"] = json!(code);
    answer.body["error"]["decline_code"] = json!(decline_code);
    if let Some(intent) = intent {
        answer.body["error"]["payment_intent"] = intent;
    }
    answer
}

fn respond(answer: Answer, request_id: &str, replayed: bool) -> Response {
    let mut response = (
        answer.status,
        [(CONTENT_TYPE, "application/json")],
        answer.body.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", value);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// A response that fails before its head is written, so the connection is
/// closed without an answer.
fn aborted() -> Response {
    let failure = io::Error::other("the fake Stripe API dropped the connection");
    Body::from_stream(futures_util::stream::once(async {
        Err::<Bytes, _>(failure)
    }))
    .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch on the machine's clock, which a webhook's
/// signature check reads too.
pub fn now_secs() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

/// An event of `kind` about `object`, as Stripe wraps one, created now.
pub fn event(id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": now_secs(),
        "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind, "data": {"object": object}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;

    const KEY: &str = "sk_test_creditd";

    async fn post(
        stripe: &FakeStripe,
        path: &str,
        idempotency_key: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", stripe.base_url()))
            .bearer_auth(KEY)
            .header("stripe-version", "2025-03-31.basil")
            .header("idempotency-key", idempotency_key)
            .form(form)
            .send()
            .await
            .expect("a response")
    }

    async fn get_path(stripe: &FakeStripe, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}{path}", stripe.base_url()))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("a response")
    }

    async fn json_of(response: reqwest::Response) -> Value {
        response.json().await.expect("a JSON body")
    }

    const SESSION_FORM: [(&str, &str); 11] = [
        ("mode", "payment"),
        ("customer", "cus_1"),
        ("client_reference_id", "acme"),
        ("success_url", "https://creditd.test/ok"),
        ("cancel_url", "https://creditd.test/cancel"),
        ("metadata[creditd_account]", "acme"),
        ("metadata[creditd_package]", "starter"),
        ("line_items[0][price_data][currency]", "USD"),
        ("line_items[0][price_data][unit_amount]", "500"),
        ("line_items[0][quantity]", "3"),
        ("line_items[1][price_data][unit_amount]", "250"),
    ];

    #[tokio::test]
    async fn a_customer_and_a_checkout_session_are_built_from_bracketed_form_keys() {
        let stripe = FakeStripe::start().await;
        let response = post(
            &stripe,
            "/v1/customers",
            "k-customer",
            &[
                ("email", "ops@acme.test"),
                ("name", "Acme"),
                ("metadata[creditd_account]", "acme"),
            ],
        )
        .await;
        assert_eq!(response.status(), 200);
        let customer = json_of(response).await;
        assert_eq!(customer["id"], "cus_1");
        assert_eq!(customer["object"], "customer");
        assert_eq!(customer["email"], "ops@acme.test");
        assert_eq!(customer["name"], "Acme");
        assert_eq!(customer["metadata"], json!({"creditd_account": "acme"}));
        assert_eq!(
            customer["invoice_settings"]["default_payment_method"],
            Value::Null
        );

        let response = post(&stripe, "/v1/checkout/sessions", "k-session", &SESSION_FORM).await;
        assert_eq!(response.status(), 200);
        let session = json_of(response).await;
        let id = session["id"].as_str().expect("an id");
        assert!(id.starts_with("cs_test_"), "{id}");
        assert_eq!(session["object"], "checkout.session");
        assert_eq!(session["url"], format!("{}/c/pay/{id}", stripe.base_url()));
        assert_eq!(session["mode"], "payment");
        assert_eq!(session["customer"], "cus_1");
        assert_eq!(session["client_reference_id"], "acme");
        assert_eq!(
            session["metadata"],
            json!({"creditd_account": "acme", "creditd_package": "starter"})
        );
        assert_eq!(session["amount_total"], 500 * 3 + 250);
        assert_eq!(session["currency"], "usd");
        assert_eq!(session["status"], "open");
        assert_eq!(session["payment_status"], "unpaid");
        assert_eq!(session["success_url"], "https://creditd.test/ok");
        assert_eq!(session["cancel_url"], "https://creditd.test/cancel");
        for field in ["invoice", "payment_intent", "setup_intent", "subscription"] {
            assert_eq!(session[field], Value::Null, "{field}");
        }
        // Fields the request does not determine come from Stripe's sample.
        assert_eq!(session["payment_method_types"], json!(["card"]));
        assert_eq!(stripe.object(id), Some(session));

        let seen = stripe.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].path, "/v1/checkout/sessions");
        assert_eq!(seen[1].get("metadata[creditd_account]"), Some("acme"));
        assert_eq!(
            seen[1].form[9],
            ("line_items[0][quantity]".to_owned(), "3".to_owned())
        );
        assert_eq!(seen[1].idempotency_key.as_deref(), Some("k-session"));
        assert_eq!(seen[1].stripe_version.as_deref(), Some("2025-03-31.basil"));
        assert_eq!(
            seen[1].authorization.as_deref(),
            Some("Bearer sk_test_creditd")
        );
        assert_eq!(
            seen[1].content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
    }

    #[tokio::test]
    async fn a_setup_session_needs_no_payment() {
        let stripe = FakeStripe::start().await;
        let form = [
            ("mode", "setup"),
            ("currency", "eur"),
            ("customer", "cus_9"),
        ];
        let session = json_of(post(&stripe, "/v1/checkout/sessions", "k", &form).await).await;
        assert_eq!(session["payment_status"], "no_payment_required");
        assert_eq!(session["amount_total"], 0);
        assert_eq!(session["currency"], "eur");
    }

    #[tokio::test]
    async fn the_same_idempotency_key_replays_the_first_object_and_creates_nothing() {
        let stripe = FakeStripe::start().await;
        let first = post(&stripe, "/v1/checkout/sessions", "k-1", &SESSION_FORM).await;
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first = json_of(first).await;
        stripe.set(
            first["id"].as_str().expect("an id"),
            json!({"status": "complete"}),
        );
        let again = post(&stripe, "/v1/checkout/sessions", "k-1", &SESSION_FORM).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        // The replay is the first answer, not the object as it is now.
        assert_eq!(json_of(again).await, first);

        let other =
            json_of(post(&stripe, "/v1/checkout/sessions", "k-2", &SESSION_FORM).await).await;
        assert_ne!(other["id"], first["id"]);
        assert_eq!(stripe.requests().len(), 3);
        let held = stripe.shared.lock().objects.len();
        assert_eq!(held, 2);
    }

    #[tokio::test]
    async fn an_idempotency_key_reused_with_a_different_body_is_refused() {
        let stripe = FakeStripe::start().await;
        let first = post(&stripe, "/v1/customers", "k-1", &[("email", "a@acme.test")]).await;
        assert_eq!(first.status(), 200);
        let reused = post(&stripe, "/v1/customers", "k-1", &[("email", "b@acme.test")]).await;
        assert_eq!(reused.status(), 400);
        assert_eq!(
            json_of(reused).await,
            json!({"error": {
                "type": "idempotency_error",
                "message": "Keys for idempotent requests can only be used with the same \
                            parameters they were first used with.",
            }})
        );
        assert!(stripe.object("cus_2").is_none());
    }

    #[tokio::test]
    async fn a_pushed_500_answers_once_then_requests_succeed_again() {
        let stripe = FakeStripe::start().await;
        stripe.push_failure(Failure::Status(500));
        let failed = post(&stripe, "/v1/customers", "k-1", &[("name", "Acme")]).await;
        assert_eq!(failed.status(), 500);
        let body = json_of(failed).await;
        assert_eq!(body["error"]["type"], "api_error");
        assert!(body["error"]["message"].is_string());
        // Nothing was created and the key was not spent, so the retry creates.
        let retried = post(&stripe, "/v1/customers", "k-1", &[("name", "Acme")]).await;
        assert_eq!(retried.status(), 200);
        assert!(retried.headers().get("idempotent-replayed").is_none());
        assert_eq!(json_of(retried).await["id"], "cus_1");
        assert_eq!(stripe.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_confirmed_payment_intent_succeeds_with_the_whole_amount_received() {
        let stripe = FakeStripe::start().await;
        let form = [
            ("amount", "2000"),
            ("currency", "usd"),
            ("customer", "cus_1"),
            ("payment_method", "pm_card"),
            ("off_session", "true"),
            ("confirm", "true"),
            ("metadata[creditd_account]", "acme"),
        ];
        let response = post(&stripe, "/v1/payment_intents", "k-pi", &form).await;
        assert_eq!(response.status(), 200);
        let intent = json_of(response).await;
        assert_eq!(intent["object"], "payment_intent");
        assert_eq!(intent["status"], "succeeded");
        assert_eq!(intent["amount"], 2000);
        assert_eq!(intent["amount_received"], 2000);
        assert_eq!(intent["payment_method"], "pm_card");
        assert_eq!(intent["metadata"]["creditd_account"], "acme");
        let id = intent["id"].as_str().expect("an id");
        let fetched = json_of(get_path(&stripe, &format!("/v1/payment_intents/{id}")).await).await;
        assert_eq!(fetched, intent);
    }

    #[tokio::test]
    async fn a_decline_on_a_confirmed_payment_intent_answers_402_card_declined() {
        let stripe = FakeStripe::start().await;
        stripe.push_failure(Failure::Decline);
        let form = [
            ("amount", "2000"),
            ("currency", "usd"),
            ("customer", "cus_1"),
            ("payment_method", "pm_card"),
            ("off_session", "true"),
            ("confirm", "true"),
        ];
        let response = post(&stripe, "/v1/payment_intents", "k-pi", &form).await;
        assert_eq!(response.status(), 402);
        let body = json_of(response).await;
        let error = &body["error"];
        assert_eq!(error["type"], "card_error");
        assert_eq!(error["code"], "card_declined");
        assert_eq!(error["decline_code"], "insufficient_funds");
        assert_eq!(error["message"], "Your card was declined.");
        let intent = &error["payment_intent"];
        assert_eq!(intent["status"], "requires_payment_method");
        assert_eq!(intent["amount_received"], 0);
        assert_eq!(intent["last_payment_error"]["code"], "card_declined");
        let id = intent["id"].as_str().expect("an id");
        assert_eq!(stripe.object(id).as_ref(), Some(intent));

        // A retry with the same key gets the same decline, as from Stripe.
        let again = post(&stripe, "/v1/payment_intents", "k-pi", &form).await;
        assert_eq!(again.status(), 402);
        assert_eq!(json_of(again).await, body);
    }

    #[tokio::test]
    async fn authentication_required_off_session_leaves_the_intent_needing_a_payment_method() {
        let stripe = FakeStripe::start().await;
        let mut form = vec![
            ("amount", "700"),
            ("currency", "usd"),
            ("payment_method", "pm_card"),
            ("confirm", "true"),
        ];
        stripe.push_failure(Failure::AuthenticationRequired);
        let on_session = json_of(post(&stripe, "/v1/payment_intents", "k-1", &form).await).await;
        assert_eq!(on_session["error"]["code"], "authentication_required");
        assert_eq!(
            on_session["error"]["payment_intent"]["status"],
            "requires_action"
        );

        form.push(("off_session", "true"));
        stripe.push_failure(Failure::AuthenticationRequired);
        let response = post(&stripe, "/v1/payment_intents", "k-2", &form).await;
        assert_eq!(response.status(), 402);
        let off_session = json_of(response).await;
        assert_eq!(off_session["error"]["type"], "card_error");
        assert_eq!(off_session["error"]["code"], "authentication_required");
        let intent = &off_session["error"]["payment_intent"];
        assert_eq!(intent["status"], "requires_payment_method");
        assert_eq!(
            intent["last_payment_error"]["code"],
            "authentication_required"
        );
    }

    #[tokio::test]
    async fn a_request_without_a_secret_test_key_answers_401() {
        let stripe = FakeStripe::start().await;
        let url = format!("{}/v1/customers", stripe.base_url());
        let client = reqwest::Client::new();
        let missing = client
            .post(&url)
            .form(&[("name", "Acme")])
            .send()
            .await
            .expect("a response");
        let live = client
            .post(&url)
            .bearer_auth("sk_live_creditd")
            .form(&[("name", "Acme")])
            .send()
            .await
            .expect("a response");
        for response in [missing, live] {
            assert_eq!(response.status(), 401);
            assert_eq!(
                json_of(response).await,
                json!({"error": {
                    "type": "invalid_request_error", "message": "Invalid API Key provided",
                }})
            );
        }
        assert_eq!(stripe.requests().len(), 2);
        assert!(stripe.object("cus_1").is_none());
    }

    #[tokio::test]
    async fn a_body_that_is_not_form_encoded_is_refused() {
        let stripe = FakeStripe::start().await;
        let response = reqwest::Client::new()
            .post(format!("{}/v1/customers", stripe.base_url()))
            .bearer_auth(KEY)
            .json(&json!({"name": "Acme"}))
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 400);
        assert_eq!(
            json_of(response).await["error"]["type"],
            "invalid_request_error"
        );
        assert_eq!(stripe.requests()[0].form, Vec::new());
    }

    #[tokio::test]
    async fn a_get_reflects_what_set_changed() {
        let stripe = FakeStripe::start().await;
        let session =
            json_of(post(&stripe, "/v1/checkout/sessions", "k", &SESSION_FORM).await).await;
        let id = session["id"].as_str().expect("an id");
        stripe.set(
            id,
            json!({"status": "complete", "payment_status": "paid", "payment_intent": "pi_9"}),
        );
        let fetched =
            json_of(get_path(&stripe, &format!("/v1/checkout/sessions/{id}")).await).await;
        assert_eq!(fetched["status"], "complete");
        assert_eq!(fetched["payment_status"], "paid");
        assert_eq!(fetched["payment_intent"], "pi_9");
        assert_eq!(fetched["amount_total"], session["amount_total"]);

        let customer = json_of(post(&stripe, "/v1/customers", "k-c", &[]).await).await;
        let id = customer["id"].as_str().expect("an id");
        stripe.set(
            id,
            json!({"invoice_settings": {"default_payment_method": "pm_1"}}),
        );
        let fetched = json_of(get_path(&stripe, &format!("/v1/customers/{id}")).await).await;
        assert_eq!(
            fetched["invoice_settings"]["default_payment_method"],
            "pm_1"
        );
        assert_eq!(
            fetched["invoice_settings"]["rendering_options"],
            customer["invoice_settings"]["rendering_options"]
        );
    }

    #[tokio::test]
    async fn a_customer_update_merges_metadata_and_sets_the_default_payment_method() {
        let stripe = FakeStripe::start().await;
        let form = [("metadata[a]", "1"), ("metadata[b]", "2")];
        post(&stripe, "/v1/customers", "k-1", &form).await;
        let form = [
            ("metadata[a]", ""),
            ("metadata[c]", "3"),
            ("invoice_settings[default_payment_method]", "pm_7"),
        ];
        let updated = json_of(post(&stripe, "/v1/customers/cus_1", "k-2", &form).await).await;
        assert_eq!(updated["metadata"], json!({"b": "2", "c": "3"}));
        assert_eq!(
            updated["invoice_settings"]["default_payment_method"],
            "pm_7"
        );
        assert_eq!(stripe.object("cus_1"), Some(updated));
    }

    #[tokio::test]
    async fn objects_set_by_a_test_are_served_from_stripe_samples() {
        let stripe = FakeStripe::start().await;
        stripe.set("pm_card", json!({"customer": "cus_1"}));
        stripe.set(
            "seti_1",
            json!({"status": "succeeded", "payment_method": "pm_card"}),
        );
        let method = json_of(get_path(&stripe, "/v1/payment_methods/pm_card").await).await;
        assert_eq!(method["id"], "pm_card");
        assert_eq!(method["object"], "payment_method");
        assert_eq!(method["customer"], "cus_1");
        assert_eq!(method["card"]["last4"], "4242");
        let setup = json_of(get_path(&stripe, "/v1/setup_intents/seti_1").await).await;
        assert_eq!(setup["status"], "succeeded");
        // A held object is only found under its own type's path.
        let wrong = get_path(&stripe, "/v1/customers/pm_card").await;
        assert_eq!(wrong.status(), 404);
        assert_eq!(json_of(wrong).await["error"]["code"], "resource_missing");
    }

    #[tokio::test]
    async fn an_invoice_item_carries_its_customer_amount_and_subscription() {
        let stripe = FakeStripe::start().await;
        let form = [
            ("customer", "cus_1"),
            ("amount", "1234"),
            ("currency", "usd"),
            ("description", "Overage"),
            ("subscription", "sub_1"),
            ("metadata[creditd_period]", "2025-06"),
        ];
        let item = json_of(post(&stripe, "/v1/invoiceitems", "k", &form).await).await;
        assert_eq!(item["id"], "ii_1");
        assert_eq!(item["object"], "invoiceitem");
        assert_eq!(item["customer"], "cus_1");
        assert_eq!(item["amount"], 1234);
        assert_eq!(item["description"], "Overage");
        assert_eq!(item["subscription"], "sub_1");
        assert_eq!(item["metadata"], json!({"creditd_period": "2025-06"}));
    }

    #[tokio::test]
    async fn missing_and_malformed_parameters_are_refused_like_stripe() {
        let stripe = FakeStripe::start().await;
        let missing = post(
            &stripe,
            "/v1/payment_intents",
            "k-1",
            &[("currency", "usd")],
        )
        .await;
        assert_eq!(missing.status(), 400);
        let body = json_of(missing).await;
        assert_eq!(body["error"]["code"], "parameter_missing");
        assert_eq!(body["error"]["param"], "amount");
        let form = [("amount", "5.00"), ("currency", "usd")];
        let malformed = json_of(post(&stripe, "/v1/payment_intents", "k-2", &form).await).await;
        assert_eq!(malformed["error"]["code"], "parameter_invalid_integer");
        // A refused request keeps nothing for its key.
        let form = [("amount", "500"), ("currency", "usd")];
        let fixed = post(&stripe, "/v1/payment_intents", "k-1", &form).await;
        assert_eq!(fixed.status(), 200);
    }

    #[tokio::test]
    async fn an_unknown_path_or_object_answers_404() {
        let stripe = FakeStripe::start().await;
        let unknown = get_path(&stripe, "/v1/balance_transactions").await;
        assert_eq!(unknown.status(), 404);
        assert_eq!(
            json_of(unknown).await["error"]["type"],
            "invalid_request_error"
        );
        let missing = get_path(&stripe, "/v1/checkout/sessions/cs_test_404").await;
        assert_eq!(missing.status(), 404);
        assert_eq!(json_of(missing).await["error"]["code"], "resource_missing");
    }

    #[tokio::test]
    async fn a_dropped_connection_fails_the_request_then_the_next_one_answers() {
        let stripe = FakeStripe::start().await;
        stripe.push_failure(Failure::Drop);
        let url = format!("{}/v1/customers/cus_1", stripe.base_url());
        let dropped = reqwest::Client::new()
            .get(&url)
            .bearer_auth(KEY)
            .send()
            .await;
        assert!(dropped.is_err(), "an answer came: {dropped:?}");
        let next = get_path(&stripe, "/v1/customers/cus_1").await;
        assert_eq!(next.status(), 404);
        assert_eq!(stripe.requests().len(), 2);
    }

    /// A webhook endpoint on port 0 that keeps each delivery's
    /// `Stripe-Signature` header and body, and answers `status`.
    async fn webhook_endpoint(status: u16) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
        let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let kept = received.clone();
        let router = Router::new().route(
            "/webhooks/stripe",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    let signature = headers
                        .get("stripe-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    kept.lock().expect("the deliveries").push((signature, body));
                    StatusCode::from_u16(status).expect("a status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the endpoint");
        let port = listener.local_addr().expect("an address").port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (format!("http://127.0.0.1:{port}/webhooks/stripe"), received)
    }

    /// A client that shows redirects rather than following them.
    fn browser() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client")
    }

    async fn open_session(stripe: &FakeStripe, form: &[(&str, &str)]) -> Value {
        post(stripe, "/v1/customers", "k-customer", &[]).await;
        json_of(post(stripe, "/v1/checkout/sessions", "k-session", form).await).await
    }

    const PACKAGE_FORM: [(&str, &str); 10] = [
        ("mode", "payment"),
        ("customer", "cus_1"),
        (
            "success_url",
            "https://creditd.test/ok?session_id={CHECKOUT_SESSION_ID}",
        ),
        ("cancel_url", "https://creditd.test/cancel"),
        ("invoice_creation[enabled]", "true"),
        ("payment_intent_data[metadata][creditd_account]", "acme"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "500"),
        (
            "line_items[0][price_data][product_data][name]",
            "100 <Credits>",
        ),
        ("line_items[0][quantity]", "1"),
    ];

    #[tokio::test]
    async fn a_sessions_url_serves_a_page_of_what_it_sells() {
        let stripe = FakeStripe::start().await;
        let session = open_session(&stripe, &PACKAGE_FORM).await;
        let url = session["url"].as_str().expect("a url");
        let page = browser().get(url).send().await.expect("the page");
        assert_eq!(page.status(), 200);
        assert!(
            page.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = page.text().await.expect("a body");
        for part in [
            "<html lang=\"en\">",
            "<title>Pay · Test checkout</title>",
            "name=\"viewport\"",
            "100 &lt;Credits&gt; × 1",
            "5.00 USD",
            "<button type=\"submit\">Pay</button>",
            "<a href=\"https://creditd.test/cancel\">",
        ] {
            assert!(html.contains(part), "{part} is not in {html}");
        }
        // Only the API's requests are recorded.
        assert_eq!(stripe.requests().len(), 2);

        let missing = browser()
            .get(format!("{}/c/pay/cs_test_404", stripe.base_url()))
            .send()
            .await
            .expect("an answer");
        assert_eq!(missing.status(), 404);
    }

    #[tokio::test]
    async fn paying_on_the_page_completes_the_session_and_sends_its_signed_event() {
        let stripe = FakeStripe::start().await;
        let (endpoint, received) = webhook_endpoint(200).await;
        stripe.send_webhooks_to(endpoint, "whsec_fake".to_owned());
        let session = open_session(&stripe, &PACKAGE_FORM).await;
        let id = session["id"].as_str().expect("an id");
        let url = session["url"].as_str().expect("a url");

        let paid = browser().post(url).send().await.expect("an answer");
        assert_eq!(paid.status(), 303);
        assert_eq!(
            paid.headers()["location"],
            format!("https://creditd.test/ok?session_id={id}").as_str()
        );

        let session = stripe.object(id).expect("the session");
        assert_eq!(session["status"], "complete");
        assert_eq!(session["payment_status"], "paid");
        let intent = stripe
            .object(session["payment_intent"].as_str().expect("an intent"))
            .expect("the intent");
        assert_eq!(intent["status"], "succeeded");
        assert_eq!(intent["amount_received"], 500);
        assert_eq!(intent["customer"], "cus_1");
        assert_eq!(intent["metadata"], json!({"creditd_account": "acme"}));
        let charge = stripe
            .object(intent["latest_charge"].as_str().expect("a charge"))
            .expect("the charge");
        assert_eq!(
            (charge["paid"].clone(), charge["amount"].clone()),
            (json!(true), json!(500))
        );
        let method = stripe
            .object(intent["payment_method"].as_str().expect("a card"))
            .expect("the card");
        assert_eq!(method["customer"], "cus_1");
        assert_eq!(method["card"]["brand"], "visa");
        assert_eq!(method["card"]["last4"], "4242");
        assert_eq!(
            (
                method["card"]["exp_month"].clone(),
                method["card"]["exp_year"].clone()
            ),
            (json!(12), json!(2030))
        );
        let invoice = stripe
            .object(session["invoice"].as_str().expect("an invoice"))
            .expect("the invoice");
        assert_eq!(invoice["status"], "paid");
        assert_eq!(invoice["amount_paid"], 500);

        let deliveries = received.lock().expect("the deliveries").clone();
        assert_eq!(deliveries.len(), 1);
        let (header, body) = &deliveries[0];
        let event: Value = serde_json::from_str(body).expect("a JSON event");
        assert_eq!(event["object"], "event");
        assert_eq!(event["type"], "checkout.session.completed");
        assert_eq!(event["data"]["object"], session);
        let timestamp: u64 = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split(',').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a timestamp in {header}"));
        assert_eq!(*header, signature(body.as_bytes(), "whsec_fake", timestamp));

        // A session is paid once.
        let again = browser().post(url).send().await.expect("an answer");
        assert_eq!(again.status(), 409);
        let closed = browser().get(url).send().await.expect("the page");
        assert!(!closed.text().await.expect("a body").contains("<button"));
    }

    #[tokio::test]
    async fn saving_a_card_on_the_page_succeeds_a_setup_intent_with_the_test_visa() {
        let stripe = FakeStripe::start().await;
        let form = [
            ("mode", "setup"),
            ("customer", "cus_1"),
            ("currency", "usd"),
            ("setup_intent_data[metadata][creditd_account]", "acme"),
            ("success_url", "https://creditd.test/saved"),
        ];
        let session = open_session(&stripe, &form).await;
        let url = session["url"].as_str().expect("a url");
        let html = browser()
            .get(url)
            .send()
            .await
            .expect("the page")
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("<button type=\"submit\">Save card</button>"),
            "{html}"
        );
        // Without a webhook endpoint set, the customer goes straight on.
        let saved = browser().post(url).send().await.expect("an answer");
        assert_eq!(saved.status(), 303);
        assert_eq!(saved.headers()["location"], "https://creditd.test/saved");

        let session = stripe
            .object(session["id"].as_str().unwrap())
            .expect("the session");
        assert_eq!(session["status"], "complete");
        assert_eq!(session["payment_status"], "no_payment_required");
        let intent = stripe
            .object(session["setup_intent"].as_str().expect("a setup intent"))
            .expect("the setup intent");
        assert_eq!(intent["status"], "succeeded");
        assert_eq!(intent["customer"], "cus_1");
        assert_eq!(intent["metadata"], json!({"creditd_account": "acme"}));
        let fetched = json_of(
            get_path(
                &stripe,
                &format!(
                    "/v1/payment_methods/{}",
                    intent["payment_method"].as_str().unwrap()
                ),
            )
            .await,
        )
        .await;
        assert_eq!(fetched["type"], "card");
        assert_eq!(fetched["customer"], "cus_1");
        assert_eq!(fetched["card"]["last4"], "4242");
    }

    #[tokio::test]
    async fn subscribing_on_the_page_starts_a_subscription_with_its_first_invoice_paid() {
        let stripe = FakeStripe::start().await;
        let (endpoint, received) = webhook_endpoint(200).await;
        stripe.send_webhooks_to(endpoint, "whsec_fake".to_owned());
        let form = [
            ("mode", "subscription"),
            ("customer", "cus_1"),
            ("success_url", "https://creditd.test/ok"),
            ("subscription_data[metadata][creditd_plan]", "basic"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "2000"),
            ("line_items[0][price_data][product_data][name]", "Basic"),
            ("line_items[0][price_data][recurring][interval]", "month"),
            ("line_items[0][quantity]", "1"),
        ];
        let session = open_session(&stripe, &form).await;
        let url = session["url"].as_str().expect("a url");
        let html = browser()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("20.00 USD every month"), "{html}");
        assert!(
            html.contains("<button type=\"submit\">Subscribe</button>"),
            "{html}"
        );
        let subscribed = browser().post(url).send().await.expect("an answer");
        assert_eq!(subscribed.status(), 303);

        let session = stripe.object(session["id"].as_str().unwrap()).unwrap();
        assert_eq!(session["status"], "complete");
        assert_eq!(session["payment_status"], "paid");
        let id = session["subscription"].as_str().expect("a subscription");
        let subscription =
            json_of(get_path(&stripe, &format!("/v1/subscriptions/{id}")).await).await;
        assert_eq!(subscription["status"], "active");
        assert_eq!(subscription["customer"], "cus_1");
        assert_eq!(subscription["metadata"], json!({"creditd_plan": "basic"}));
        let items = subscription["items"]["data"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["price"]["unit_amount"], 2000);
        assert_eq!(items[0]["price"]["recurring"]["interval"], "month");
        let (start, end) = (
            subscription["current_period_start"].as_u64().unwrap(),
            subscription["current_period_end"].as_u64().unwrap(),
        );
        assert_eq!(end - start, 30 * 24 * 60 * 60);
        let invoice = stripe.object(session["invoice"].as_str().unwrap()).unwrap();
        assert_eq!(subscription["latest_invoice"], invoice["id"]);
        assert_eq!(invoice["status"], "paid");
        assert_eq!(invoice["billing_reason"], "subscription_create");
        assert_eq!(invoice["amount_paid"], 2000);
        assert_eq!(invoice["subscription"], id);
        let line = &invoice["lines"]["data"][0];
        assert_eq!(line["period"], json!({"start": start, "end": end}));
        assert_eq!(line["price"]["id"], items[0]["price"]["id"]);

        let kinds: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| serde_json::from_str::<Value>(body).unwrap()["type"].to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "\"checkout.session.completed\"",
                "\"customer.subscription.created\"",
                "\"invoice.paid\""
            ]
        );
    }

    #[tokio::test]
    async fn a_webhook_endpoint_that_refuses_the_event_is_shown_on_the_page() {
        let stripe = FakeStripe::start().await;
        let (endpoint, received) = webhook_endpoint(400).await;
        stripe.send_webhooks_to(endpoint, "whsec_fake".to_owned());
        let session = open_session(&stripe, &PACKAGE_FORM).await;
        let answer = browser()
            .post(session["url"].as_str().unwrap())
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 502);
        assert!(answer.text().await.unwrap().contains("400 Bad Request"));
        assert_eq!(received.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_fixture_is_stripes_sample_of_that_type() {
        let session = FakeStripe::fixture("checkout.session");
        assert_eq!(session["object"], "checkout.session");
        let event = FakeStripe::fixture("event");
        assert_eq!(event["object"], "event");
    }
}
