//! `/v1/webhook-events`: the delivery log — every event of the last 30 days with each
//! endpoint's attempts — and sending an event again.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::events::{Delivery, DeliveryStatus, Event, EventState, EventType, listed_value};
use server::extract::{self, PathParam, Query, Write};
use server::openapi::Doc;
use server::render::{self, Instant, Page};
use server::routes::Routes;
use server::{Access, Route};
use store::records::{self, Doc as Record, Expect, RecordCursor, RecordFilter, Written};
use utoipa::{IntoParams, ToSchema};

use super::WebhooksState;
use crate::Webhooks;
use crate::error::WebhookError;

/// The events' routes.
pub(super) fn routes(routes: &Routes<Arc<Webhooks>>) -> Vec<Route> {
    use Access::Admin;
    vec![
        routes.route(Admin, Doc::of::<__path_list>(), list),
        routes.route(Admin, Doc::of::<__path_get>(), get),
        routes.route(Admin, Doc::of::<__path_resend>(), resend),
    ]
}

/// `{event_id}`
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct EventPath {
    /// The event's id.
    #[param(pattern = "^evt_[0-9a-f]{24}$")]
    event_id: String,
}

/// `?endpoint_id=&account_id=&type=&limit=&cursor=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// Only events delivered (or to be delivered) to this endpoint.
    #[param(pattern = "^we_[0-9a-f]{16}$")]
    endpoint_id: Option<String>,
    /// Only events about this account.
    #[param(value_type = Option<server::openapi::schema::AccountId>)]
    account_id: Option<String>,
    /// Only events of this type.
    #[param(rename = "type", inline, value_type = Option<super::EventTypes<false>>)]
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The page size, a whole number from 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page, an event id.
    #[param(pattern = "^evt_[0-9a-f]{24}$")]
    cursor: Option<String>,
}

/// One attempt to deliver an event.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
struct AttemptView {
    at: Instant,
    /// The endpoint's HTTP status, if it answered.
    status_code: Option<u16>,
    /// Why it failed without an answer.
    error: Option<String>,
    duration_ms: u64,
}

/// An event's delivery to one endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
struct DeliveryView {
    endpoint_id: String,
    /// `pending`, `succeeded` or `failed` (given up).
    status: &'static str,
    /// When it is tried next, while pending.
    next_attempt_at: Option<Instant>,
    /// Every attempt, oldest first (the last 30).
    attempts: Vec<AttemptView>,
}

/// An event, with its deliveries.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEvent)]
struct EventView {
    #[schema(pattern = "^evt_[0-9a-f]{24}$")]
    id: String,
    /// `balance.low`, `balance.depleted`, `credits.granted`, `topup.succeeded`,
    /// `topup.failed`, `grant.expiring`, `hold.expired`, `subscription.renewed`,
    /// `subscription.past_due` or `overage.charged`.
    #[serde(rename = "type")]
    event_type: &'static str,
    created_at: Instant,
    account_id: String,
    /// The body's `data`: the account id and the figures of the type.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// `scheduled` (not yet due: an expiry's warning), `pending`,
    /// `delivered` (every endpoint took it), `failed` (some endpoint was
    /// given up on) or `canceled` (no longer true when it came due).
    status: &'static str,
    deliveries: Vec<DeliveryView>,
}

fn delivery_status(d: &Delivery) -> &'static str {
    match d.status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Succeeded => "succeeded",
        DeliveryStatus::Failed => "failed",
    }
}

impl EventView {
    fn new(doc: &Record<Event>) -> EventView {
        let e = &doc.body;
        let status = match e.state {
            EventState::New => "scheduled",
            EventState::Canceled => "canceled",
            EventState::Dispatched => {
                if e.deliveries
                    .iter()
                    .any(|d| d.status == DeliveryStatus::Pending)
                {
                    "pending"
                } else if e
                    .deliveries
                    .iter()
                    .any(|d| d.status == DeliveryStatus::Failed)
                {
                    "failed"
                } else {
                    "delivered"
                }
            }
        };
        let at = |m: i64| Instant(Timestamp::from_micros(m));
        EventView {
            id: doc.id.clone(),
            event_type: e.event_type.code(),
            created_at: at(e.created_at_micros),
            account_id: e.account.clone(),
            data: e.data.clone(),
            status,
            deliveries: e
                .deliveries
                .iter()
                .map(|d| DeliveryView {
                    endpoint_id: d.endpoint.clone(),
                    status: delivery_status(d),
                    next_attempt_at: d
                        .next_at_micros
                        .filter(|_| d.status == DeliveryStatus::Pending)
                        .map(at),
                    attempts: d
                        .attempts
                        .iter()
                        .map(|a| AttemptView {
                            at: at(a.at_micros),
                            status_code: a.status_code,
                            error: a.error.clone(),
                            duration_ms: a.duration_ms,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A page of events, newest first.
type EventPage = Page<EventView>;

/// The page schema's name in the description.
#[derive(ToSchema)]
#[allow(dead_code)]
struct WebhookEventPage {
    data: Vec<EventView>,
    /// Where the next page starts (an event id), when this one is full.
    next_cursor: Option<String>,
}

fn is_event_id(text: &str) -> bool {
    server::extract::is_hex_id(text, "evt_", 24)
}

async fn found(webhooks: &Webhooks, id: &str) -> Result<Record<Event>, ApiError> {
    if !is_event_id(id) {
        return Err(ApiError::InvalidId(format!(
            "{id:?} is not a webhook event id"
        )));
    }
    Ok(records::get::<Event>(webhooks.store.as_ref(), id)
        .await?
        .ok_or(WebhookError::EventNotFound)?)
}

/// List webhook events
///
/// The delivery log: events of the last 30 days, newest first, each with
/// every endpoint's attempts (their time, the endpoint's status or why
/// there was none, how long they took). Narrowed to one endpoint, one
/// account or one type.
#[utoipa::path(
    get,
    path = "/v1/webhook-events",
    tag = "webhooks",
    operation_id = "listWebhookEvents",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events; `next_cursor` is an event id.",
            body = WebhookEventPage),
        (status = 400, description = "`invalid_request`: a bad filter, `limit` or `cursor`."),
        (status = 404, description = "`webhook_event_not_found`: the cursor names no event \
            (older than 30 days, or never made)."),
    ),
)]
async fn list(
    State(webhooks): WebhooksState,
    Query(query): Query<EventQuery>,
) -> Result<Response, ApiError> {
    let limit = extract::limit(query.limit.as_deref())?;
    let bad = |what: &str| ApiError::InvalidRequest(what.to_owned());
    let event_type = query
        .event_type
        .as_deref()
        .map(|t| EventType::parse(t).ok_or_else(|| bad("type is not an event type")))
        .transpose()?;
    if let Some(account) = &query.account_id {
        ledger::AccountId::parse(account).map_err(|_| bad("account_id is not an account id"))?;
    }
    // Read by endpoint, else by account, else all; what the read does not
    // narrow is filtered.
    let (name, prefix) = match (&query.endpoint_id, &query.account_id) {
        (Some(endpoint), _) if crate::api::is_endpoint_id(endpoint) => {
            ("endpoint", format!("{endpoint}/"))
        }
        (Some(_), _) => return Err(bad("endpoint_id is not a webhook endpoint id")),
        (None, Some(account)) => ("account", format!("{account}/")),
        (None, None) => ("listed", String::new()),
    };
    let account = query.account_id.as_deref();
    // Past the prefix's last value: '/' + 1 is '0'.
    let to = (!prefix.is_empty()).then(|| format!("{}0", &prefix[..prefix.len() - 1]));
    let filter = RecordFilter::Range {
        name: name.into(),
        from: Some(prefix.clone()),
        to,
    };
    let after = match query.cursor.as_deref() {
        None => None,
        Some(id) if is_event_id(id) => {
            // An event gone (or never made) has no place in the list.
            let doc = records::get::<Event>(webhooks.store.as_ref(), id)
                .await?
                .ok_or(WebhookError::EventNotFound)?;
            Some(RecordCursor {
                key: format!("{prefix}{}", listed_value(doc.body.created_at_micros)),
                id: doc.id,
            })
        }
        Some(_) => return Err(bad("cursor is not an event id")),
    };
    // Pages of a type are read from the wider list and filtered: a few reads.
    let key_of =
        |doc: &Record<Event>| format!("{prefix}{}", listed_value(doc.body.created_at_micros));
    let keep = |doc: &Record<Event>| {
        event_type.is_none_or(|t| t == doc.body.event_type)
            && account.is_none_or(|a| a == doc.body.account)
    };
    let events =
        records::collect(webhooks.store.as_ref(), &filter, after, limit, key_of, keep).await?;
    let page: EventPage = Page::new(&events, limit, |d| d.id.clone(), EventView::new);
    Ok(render::json(StatusCode::OK, &page))
}

/// Get a webhook event
#[utoipa::path(
    get,
    path = "/v1/webhook-events/{event_id}",
    tag = "webhooks",
    operation_id = "getWebhookEvent",
    params(EventPath),
    responses(
        (status = 200, description = "The event, with its deliveries.", body = EventView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`webhook_event_not_found`."),
    ),
)]
async fn get(
    State(webhooks): WebhooksState,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let doc = found(&webhooks, &id).await?;
    Ok(render::json(StatusCode::OK, &EventView::new(&doc)))
}

/// Which endpoint to send an event to again.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookResend)]
struct Resend {
    /// The endpoint; absent: every endpoint it was delivered to (or, if
    /// none, every endpoint that receives its type now).
    #[schema(pattern = "^we_[0-9a-f]{16}$")]
    endpoint_id: Option<String>,
}

/// Send a webhook event again
///
/// Sends the event again, at once, to one endpoint or to every endpoint it
/// was for: each delivery is pending again, with its earlier attempts kept.
/// The answer is the event as it is queued; its attempts follow within
/// about a second.
#[utoipa::path(
    post,
    path = "/v1/webhook-events/{event_id}/resend",
    tag = "webhooks",
    operation_id = "resendWebhookEvent",
    params(EventPath),
    request_body(content = Option<Resend>, description = "Optional; an empty body or `null` \
        reads as `{}`."),
    responses(
        (status = 200, description = "The event, its deliveries pending.", body = EventView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`."),
        (status = 404, description = "`webhook_event_not_found`, `webhook_endpoint_not_found`."),
        (status = 409, description = "`version_conflict`: it changed meanwhile; retry."),
    ),
)]
async fn resend(
    State(webhooks): WebhooksState,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let doc = found(&webhooks, &id).await?;
    let body: Resend = extract::parse_optional_json(&write.body)?;
    let store = webhooks.store.as_ref();
    let endpoints = webhooks.endpoints().await?;
    let targets: Vec<String> = match body.endpoint_id {
        Some(endpoint) => {
            if !endpoints.contains_key(&endpoint) {
                return Err(WebhookError::EndpointNotFound.into());
            }
            vec![endpoint]
        }
        None if !doc.body.deliveries.is_empty() => doc
            .body
            .deliveries
            .iter()
            .map(|d| d.endpoint.clone())
            .collect(),
        None => {
            let mut ids: Vec<String> = endpoints
                .iter()
                .filter(|(_, e)| e.body.receives(doc.body.event_type))
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort();
            ids
        }
    };
    let now = webhooks.clock.now().micros();
    let mut next = doc.body.clone();
    next.state = EventState::Dispatched;
    for target in targets {
        match next.deliveries.iter_mut().find(|d| d.endpoint == target) {
            Some(delivery) => {
                delivery.status = DeliveryStatus::Pending;
                delivery.next_at_micros = Some(now);
            }
            None => next.deliveries.push(Delivery {
                endpoint: target,
                status: DeliveryStatus::Pending,
                next_at_micros: Some(now),
                attempts: Vec::new(),
            }),
        }
    }
    let write = records::put(&id, &next, Expect::Version(doc.version));
    match records::write::<Event>(store, write).await? {
        Written::Stored(doc) => Ok(render::json(StatusCode::OK, &EventView::new(&doc))),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("an event write answered deleted".into())),
    }
}
