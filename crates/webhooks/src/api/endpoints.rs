//! `/v1/webhook-endpoints`: where operators register the URLs events go to, choose the types,
//! disable, delete, and rotate each endpoint's signing secret.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::events::EventType;
use server::extract::{self, PathParam, Write};
use server::openapi::Doc;
use server::render::{self, Instant};
use server::routes::{Idempotency, Routes};
use server::{Access, Route};
use store::records::{self, Doc as Record, Expect, RecordFilter, Written};
use utoipa::{IntoParams, ToSchema};

use super::WebhooksState;
use crate::Webhooks;
use crate::endpoint::{self, Disabled, ENDPOINTS_MAX, Endpoint, PREVIOUS_SECRET_HOURS, Previous};
use crate::error::WebhookError;

/// The endpoints' routes.
pub(super) fn routes(routes: &Routes<Arc<Webhooks>>) -> Vec<Route> {
    use Access::Admin;
    vec![
        routes
            .route(Admin, Doc::of::<__path_create>(), create)
            .with_idempotency(Idempotency::Refused),
        routes.route(Admin, Doc::of::<__path_list>(), list),
        routes.route(Admin, Doc::of::<__path_get>(), get),
        routes.route(Admin, Doc::of::<__path_update>(), update),
        routes.route(Admin, Doc::of::<__path_delete>(), delete),
        routes
            .route(Admin, Doc::of::<__path_rotate>(), rotate)
            .with_idempotency(Idempotency::Refused),
    ]
}

/// `{endpoint_id}`
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct EndpointPath {
    /// The endpoint's id.
    #[param(pattern = "^we_[0-9a-f]{16}$")]
    endpoint_id: String,
}

/// The longest description, in bytes.
const DESCRIPTION_LEN_MAX: usize = 256;

/// An endpoint to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhookEndpoint)]
struct NewEndpoint {
    /// Where events are POSTed: an `https://` (or `http://`) URL of at most
    /// 2048 characters without credentials, at a public host name (an
    /// address written as digits also works when public; private ones,
    /// names of one label and `localhost` only when the operator allows
    /// private webhooks).
    #[schema(
        max_length = 2048,
        pattern = "^https?://([A-Za-z0-9]+(-[A-Za-z0-9]+)*\\.)+[A-Za-z]+(-[A-Za-z0-9]+)*\\.?(:[0-9]{1,4})?([/?#][!-~]*)?$"
    )]
    url: String,
    /// The event types it receives, or `["*"]` for every type.
    #[schema(min_items = 1, max_items = 11, value_type = Vec<super::EventTypes<true>>)]
    events: Vec<String>,
    /// A note for operators, at most 256 characters without control characters.
    #[schema(value_type = Option<server::openapi::schema::Name>)]
    description: Option<String>,
}

/// Changes to an endpoint; what is not sent stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointPatch)]
struct EndpointPatch {
    /// A new URL.
    #[schema(
        max_length = 2048,
        pattern = "^https?://([A-Za-z0-9]+(-[A-Za-z0-9]+)*\\.)+[A-Za-z]+(-[A-Za-z0-9]+)*\\.?(:[0-9]{1,4})?([/?#][!-~]*)?$",
        nullable = false
    )]
    url: Option<String>,
    /// New event types, or `["*"]`.
    #[schema(min_items = 1, max_items = 11, nullable = false, value_type = Option<Vec<super::EventTypes<true>>>)]
    events: Option<Vec<String>>,
    /// A new note; null removes it.
    #[serde(default, deserialize_with = "extract::present")]
    #[schema(value_type = Option<server::openapi::schema::Name>)]
    description: Option<Option<String>>,
    /// `true` stops deliveries to it; `false` starts them again (and
    /// forgets its failures).
    #[schema(nullable = false)]
    disabled: Option<bool>,
}

/// A rotation of the signing secret.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookSecretRotation)]
struct Rotation {
    /// How many hours the old secret keeps signing beside the new one, 0
    /// to 168; 24 when absent.
    #[serde(default, deserialize_with = "extract::whole_opt")]
    #[schema(minimum = 0, maximum = 168)]
    previous_secret_hours: Option<u32>,
}

/// An endpoint as the API shows it: its secret only once, when it is made.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
struct EndpointView {
    #[schema(pattern = "^we_[0-9a-f]{16}$")]
    id: String,
    url: String,
    /// The types it receives; `["*"]`: every type.
    events: Vec<String>,
    description: Option<String>,
    /// `enabled`, or `disabled` (see `disabled_reason`).
    status: &'static str,
    /// Why it is disabled: `operator`, or `failing` (every delivery failed
    /// for three days).
    disabled_reason: Option<&'static str>,
    /// Since when every delivery failed, if the last one did.
    failing_since: Option<Instant>,
    /// The signing secret's last four characters.
    secret_last4: String,
    /// The signing secret (`whsec_…`): only in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// Until when the secret before the last rotation still signs.
    previous_secret_expires_at: Option<Instant>,
    created_at: Instant,
    updated_at: Instant,
}

impl EndpointView {
    fn new(doc: &Record<Endpoint>, secret: Option<String>) -> EndpointView {
        let e = &doc.body;
        let now = doc.updated_at;
        EndpointView {
            id: doc.id.clone(),
            url: e.url.clone(),
            events: if e.events.is_empty() {
                vec!["*".into()]
            } else {
                e.events.iter().map(|t| t.code().to_owned()).collect()
            },
            description: e.description.clone(),
            status: if e.disabled.is_some() {
                "disabled"
            } else {
                "enabled"
            },
            disabled_reason: e.disabled.map(|d| match d {
                Disabled::Operator => "operator",
                Disabled::Failing => "failing",
            }),
            failing_since: e
                .failing_since_micros
                .map(|m| Instant(ledger::Timestamp::from_micros(m))),
            secret_last4: e.secret_last4.clone(),
            secret,
            previous_secret_expires_at: e
                .previous
                .as_ref()
                .filter(|p| p.until_micros > now.micros())
                .map(|p| Instant(ledger::Timestamp::from_micros(p.until_micros))),
            created_at: Instant(doc.created_at),
            updated_at: Instant(doc.updated_at),
        }
    }
}

/// The webhook endpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpointList)]
struct EndpointList {
    data: Vec<EndpointView>,
}

fn event_types(codes: &[String]) -> Result<Vec<EventType>, WebhookError> {
    if codes.is_empty() || codes.len() > EventType::ALL.len() + 1 {
        return Err(WebhookError::InvalidEndpoint(format!(
            "events must name 1 to {} types, or \"*\"",
            EventType::ALL.len() + 1
        )));
    }
    let mut types = Vec::new();
    for code in codes.iter().filter(|c| *c != "*") {
        let t = EventType::parse(code).ok_or_else(|| {
            WebhookError::InvalidEndpoint(format!(
                "{code:?} is not an event type; the types are {}",
                EventType::ALL.map(EventType::code).join(", ")
            ))
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    // "*" stands for every type, whatever else is listed beside it.
    if codes.iter().any(|c| c == "*") {
        return Ok(Vec::new());
    }
    types.sort();
    Ok(types)
}

fn check_description(description: &Option<String>) -> Result<(), WebhookError> {
    if description
        .as_ref()
        .is_some_and(|d| d.len() > DESCRIPTION_LEN_MAX || ledger::has_hidden_or_control(d))
    {
        return Err(WebhookError::InvalidEndpoint(format!(
            "description is at most {DESCRIPTION_LEN_MAX} bytes without control or hidden \
             characters"
        )));
    }
    Ok(())
}

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random bytes for an id");
    format!("we_{}", server::sealing::to_hex(&bytes))
}

async fn found(webhooks: &Webhooks, id: &str) -> Result<Record<Endpoint>, ApiError> {
    if !super::is_endpoint_id(id) {
        return Err(ApiError::InvalidId(format!(
            "{id:?} is not a webhook endpoint id"
        )));
    }
    Ok(records::get::<Endpoint>(webhooks.store.as_ref(), id)
        .await?
        .ok_or(WebhookError::EndpointNotFound)?)
}

fn stored(written: Written<Endpoint>) -> Result<Record<Endpoint>, ApiError> {
    match written {
        Written::Stored(doc) => Ok(doc),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal(
            "an endpoint write answered deleted".into(),
        )),
    }
}

/// Register a webhook endpoint
///
/// Registers a URL that events of the chosen types are POSTed to, each
/// signed with the endpoint's secret (`creditd-Signature`, as Stripe signs
/// its own). The secret is in this answer only: it is kept sealed under the
/// operator's master key and never shown again (rotate it to get a new
/// one). At most 16 endpoints. Events begin with the changes after it.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    operation_id = "createWebhookEndpoint",
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "The endpoint, with its secret.", body = EndpointView),
        (status = 400, description = "`malformed_json`, `invalid_request`, \
            `invalid_webhook_endpoint` (a bad or private URL, an unknown event type, a long \
            description)."),
        (status = 409, description = "`webhook_endpoint_limit`: 16 endpoints exist."),
        (status = 503, description = "`webhooks_not_configured`: no master key is set."),
    ),
)]
async fn create(State(webhooks): WebhooksState, write: Write) -> Result<Response, ApiError> {
    let keyring = webhooks
        .keyring
        .as_ref()
        .ok_or(WebhookError::NotConfigured)?;
    let body: NewEndpoint = extract::parse_json(&write.body)?;
    crate::domain::check_url(&body.url, webhooks.config.allow_private)
        .map_err(WebhookError::InvalidEndpoint)?;
    let events = event_types(&body.events)?;
    check_description(&body.description)?;
    let store = webhooks.store.as_ref();
    let before = webhooks.endpoints().await?;
    if before.len() >= ENDPOINTS_MAX {
        return Err(WebhookError::TooManyEndpoints.into());
    }
    let id = new_id();
    let secret = endpoint::new_secret();
    let endpoint = Endpoint {
        url: body.url,
        events,
        description: body.description,
        secret: endpoint::seal(keyring, &id, &secret),
        secret_last4: endpoint::last4(&secret),
        previous: None,
        disabled: None,
        failing_since_micros: None,
        disabled_at_micros: None,
    };
    let doc = stored(
        records::write::<Endpoint>(store, records::put(&id, &endpoint, Expect::Absent)).await?,
    )?;
    // Changes from now on give events to it.
    webhooks.start_reading(&before).await?;
    Ok(render::json(
        StatusCode::CREATED,
        &EndpointView::new(&doc, Some(secret)),
    ))
}

/// List webhook endpoints
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    operation_id = "listWebhookEndpoints",
    responses((status = 200, description = "Every endpoint, in id order.", body = EndpointList)),
)]
async fn list(State(webhooks): WebhooksState) -> Result<Response, ApiError> {
    let docs = records::list::<Endpoint>(
        webhooks.store.as_ref(),
        RecordFilter::All,
        None,
        ENDPOINTS_MAX,
    )
    .await?;
    let data = docs.iter().map(|d| EndpointView::new(d, None)).collect();
    Ok(render::json(StatusCode::OK, &EndpointList { data }))
}

/// Get a webhook endpoint
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{endpoint_id}",
    tag = "webhooks",
    operation_id = "getWebhookEndpoint",
    params(EndpointPath),
    responses(
        (status = 200, description = "The endpoint, without its secret.", body = EndpointView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`webhook_endpoint_not_found`."),
    ),
)]
async fn get(
    State(webhooks): WebhooksState,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let doc = found(&webhooks, &id).await?;
    Ok(render::json(StatusCode::OK, &EndpointView::new(&doc, None)))
}

/// Change a webhook endpoint
///
/// Changes its URL, its event types or its description, or disables it
/// (`disabled: true`) or enables it again (`disabled: false`, which also
/// forgets its failures: an endpoint disabled for failing is enabled this
/// way once it is fixed). Deliveries already pending keep their schedule.
#[utoipa::path(
    patch,
    path = "/v1/webhook-endpoints/{endpoint_id}",
    tag = "webhooks",
    operation_id = "updateWebhookEndpoint",
    params(EndpointPath),
    request_body = EndpointPatch,
    responses(
        (status = 200, description = "The endpoint as changed.", body = EndpointView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_webhook_endpoint`."),
        (status = 404, description = "`webhook_endpoint_not_found`."),
        (status = 409, description = "`version_conflict`: it changed meanwhile; retry."),
    ),
)]
async fn update(
    State(webhooks): WebhooksState,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let doc = found(&webhooks, &id).await?;
    let body: EndpointPatch = extract::parse_json(&write.body)?;
    let mut next = doc.body.clone();
    if let Some(url) = body.url {
        crate::domain::check_url(&url, webhooks.config.allow_private)
            .map_err(WebhookError::InvalidEndpoint)?;
        next.url = url;
    }
    if let Some(events) = body.events {
        next.events = event_types(&events)?;
    }
    if let Some(description) = body.description {
        check_description(&description)?;
        next.description = description;
    }
    match body.disabled {
        Some(true) if next.disabled.is_none() => {
            next.disabled = Some(Disabled::Operator);
            next.disabled_at_micros = Some(webhooks.clock.now().micros());
        }
        Some(false) => {
            next.disabled = None;
            next.disabled_at_micros = None;
            next.failing_since_micros = None;
        }
        _ => {}
    }
    let before = webhooks.endpoints().await?;
    let write = records::put(&id, &next, Expect::Version(doc.version));
    let doc = stored(records::write::<Endpoint>(webhooks.store.as_ref(), write).await?)?;
    // An endpoint enabled again, or given new types, hears of changes from now on.
    webhooks.start_reading(&before).await?;
    Ok(render::json(StatusCode::OK, &EndpointView::new(&doc, None)))
}

/// Delete a webhook endpoint
///
/// Deletes it: nothing more is sent to it, and its pending deliveries are
/// given up. Its events stay in the delivery log.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{endpoint_id}",
    tag = "webhooks",
    operation_id = "deleteWebhookEndpoint",
    params(EndpointPath),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`webhook_endpoint_not_found`."),
        (status = 409, description = "`version_conflict`: it changed meanwhile; retry."),
    ),
)]
async fn delete(
    State(webhooks): WebhooksState,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let doc = found(&webhooks, &id).await?;
    let write = records::delete::<Endpoint>(&id, Expect::Version(doc.version));
    match records::write::<Endpoint>(webhooks.store.as_ref(), write).await? {
        Written::Refused(refused) => Err(refused.into()),
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Rotate a webhook endpoint's secret
///
/// Makes a new signing secret, shown in this answer only. The old one
/// keeps signing beside it (a second `v1` in `creditd-Signature`) for
/// `previous_secret_hours` (24 when absent; 0 ends it at once), so the
/// receiver can switch without missing an event.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
    tag = "webhooks",
    operation_id = "rotateWebhookEndpointSecret",
    params(EndpointPath),
    request_body(content = Option<Rotation>, description = "Optional; an empty body or `null` \
        reads as `{}`."),
    responses(
        (status = 200, description = "The endpoint, with its new secret.", body = EndpointView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`."),
        (status = 404, description = "`webhook_endpoint_not_found`."),
        (status = 409, description = "`version_conflict`: it changed meanwhile; retry."),
        (status = 503, description = "`webhooks_not_configured`: no master key is set."),
    ),
)]
async fn rotate(
    State(webhooks): WebhooksState,
    PathParam(id): PathParam,
    write: Write,
) -> Result<Response, ApiError> {
    let keyring = webhooks
        .keyring
        .as_ref()
        .ok_or(WebhookError::NotConfigured)?;
    let doc = found(&webhooks, &id).await?;
    let rotation: Rotation = extract::parse_optional_json(&write.body)?;
    let hours = rotation
        .previous_secret_hours
        .unwrap_or(PREVIOUS_SECRET_HOURS);
    if hours > 168 {
        return Err(ApiError::InvalidRequest(
            "previous_secret_hours must be a whole number from 0 to 168".into(),
        ));
    }
    let now = webhooks.clock.now();
    let secret = endpoint::new_secret();
    let mut next = doc.body.clone();
    next.previous = (hours > 0).then(|| Previous {
        secret: doc.body.secret.clone(),
        until_micros: now.micros() + i64::from(hours) * 3600 * ledger::MICROS_PER_SECOND,
    });
    next.secret = endpoint::seal(keyring, &id, &secret);
    next.secret_last4 = endpoint::last4(&secret);
    let write = records::put(&id, &next, Expect::Version(doc.version));
    let doc = stored(records::write::<Endpoint>(webhooks.store.as_ref(), write).await?)?;
    Ok(render::json(
        StatusCode::OK,
        &EndpointView::new(&doc, Some(secret)),
    ))
}
