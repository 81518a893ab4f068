//! An account's own provider keys (BYOK): store one sealed, remove one, list them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use server::extract::{self, ExistingAccount, PathAccount};
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::records::{self, Doc as Record, Expect, Written};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::byok::ProviderKeys;
use crate::error::GatewayError;

use super::GatewayState;

/// The provider keys' routes.
pub(super) fn routes(routes: &Routes<Arc<Gateway>>) -> Vec<Route> {
    use Access::Account;
    vec![
        routes.route(Account, Doc::of::<__path_put>(), put),
        routes.route(Account, Doc::of::<__path_delete>(), delete),
        routes.route(Account, Doc::of::<__path_list>(), list),
    ]
}

/// `{provider}`
enum ProviderPath {}

impl IntoParams for ProviderPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("provider")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "The provider, as the catalog names it: `openai`, `anthropic`, or another \
                     (1 to 64 characters of `a-z0-9_.-`).",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^(?!\\.+$)[a-z0-9_.-]{1,64}$"))
                        .examples(["openai"]),
                ))
                .build(),
        ]
    }
}

fn provider_name(text: &str) -> Result<String, ApiError> {
    if !text.is_empty()
        && text.len() <= 64
        && !text.bytes().all(|b| b == b'.')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    {
        Ok(text.to_owned())
    } else {
        Err(ApiError::InvalidId(
            "a provider is 1 to 64 characters of a-z0-9_.-".into(),
        ))
    }
}

/// A provider key to store.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProviderKeyBody {
    /// The provider's API key: kept sealed, never shown again; 1 to 1024
    /// printable ASCII characters without spaces.
    #[schema(pattern = "^[!-~]{1,1024}$")]
    api_key: String,
    /// Where its calls go, when not the provider's own API: an OpenAI-format
    /// base including `/v1`, or an Anthropic-format base without it. An
    /// `https://` or `http://` URL of at most 2048 characters, without
    /// credentials, at a public host name (an address written as digits
    /// also works when public; private ones, single-label names and
    /// `localhost` only when the operator allows private upstreams).
    #[schema(
        pattern = "^https?://([A-Za-z0-9]+(-[A-Za-z0-9]+)*\\.)+[A-Za-z]+(-[A-Za-z0-9]+)*\\.?(:[0-9]{1,4})?([/?#][!-~]*)?$",
        max_length = 2048
    )]
    base_url: Option<String>,
}

/// A provider key as shown: never the key.
#[derive(Serialize, ToSchema)]
struct ProviderKeyView {
    provider: String,
    /// The key's last four characters.
    last4: String,
    base_url: Option<String>,
    created_at: Instant,
    updated_at: Instant,
}

impl ProviderKeyView {
    fn new(doc: &Record<crate::byok::ProviderKey>) -> ProviderKeyView {
        ProviderKeyView {
            provider: doc.body.provider.clone(),
            last4: doc.body.last4.clone(),
            base_url: doc.body.base_url.clone(),
            created_at: Instant(doc.created_at),
            updated_at: Instant(doc.updated_at),
        }
    }
}

/// The account's provider keys.
#[derive(Serialize, ToSchema)]
struct ProviderKeyList {
    data: Vec<ProviderKeyView>,
}

/// The longest provider key accepted, in bytes.
pub const PROVIDER_KEY_LEN_MAX: usize = 1024;

/// Store a provider key
///
/// Stores the account's own key for a provider, for its calls in `byok`
/// billing mode. The key is sealed with XChaCha20-Poly1305 under the
/// operator's master key, bound to this account and provider, and never
/// shown, logged or returned again. A `base_url` at a private, loopback or
/// link-local address is refused unless the operator allows it.
#[utoipa::path(
    put,
    path = "/v1/accounts/{account_id}/provider-keys/{provider}",
    tag = "gateway",
    operation_id = "putProviderKey",
    params(AccountPath, ProviderPath),
    request_body = ProviderKeyBody,
    responses(
        (status = 200, description = "The key as stored, without the key.", body = ProviderKeyView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_id`, \
            `invalid_provider_key`."),
        (status = 404, description = "`account_not_found`."),
        (status = 503, description = "`byok_not_configured`: no master key is set."),
    ),
)]
async fn put(
    State(gateway): GatewayState,
    ExistingAccount(account): ExistingAccount,
    axum::extract::Path((_, provider)): axum::extract::Path<(String, String)>,
    extract::ReadBody(body): extract::ReadBody,
) -> Result<Response, ApiError> {
    let provider = provider_name(&provider)?;
    let keyring = gateway.keyring()?;
    let body: ProviderKeyBody = extract::parse_json(&body)?;
    if body.api_key.is_empty()
        || body.api_key.len() > PROVIDER_KEY_LEN_MAX
        || !body.api_key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(GatewayError::InvalidProviderKey(format!(
            "api_key is 1 to {PROVIDER_KEY_LEN_MAX} printable ASCII characters without spaces"
        ))
        .into());
    }
    if let Some(url) = &body.base_url {
        crate::byok::check_base_url(url, gateway.config.allow_private_upstreams)
            .map_err(GatewayError::InvalidProviderKey)?;
    }
    let store = gateway.store.as_ref();
    let sealed = keyring.seal_key(&account, &provider, &body.api_key, body.base_url);
    let id = crate::byok::record_id(&account, &provider);
    match records::write::<crate::byok::ProviderKey>(store, records::put(&id, &sealed, Expect::Any))
        .await?
    {
        Written::Stored(doc) => Ok(render::json(StatusCode::OK, &ProviderKeyView::new(&doc))),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal(
            "a provider key put answered deleted".into(),
        )),
    }
}

/// Remove a provider key
#[utoipa::path(
    delete,
    path = "/v1/accounts/{account_id}/provider-keys/{provider}",
    tag = "gateway",
    operation_id = "deleteProviderKey",
    params(AccountPath, ProviderPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`provider_key_not_found`."),
    ),
)]
async fn delete(
    State(gateway): GatewayState,
    PathAccount(account): PathAccount,
    axum::extract::Path((_, provider)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    let provider = provider_name(&provider)?;
    let id = crate::byok::record_id(&account, &provider);
    let store = gateway.store.as_ref();
    let doc = records::get::<crate::byok::ProviderKey>(store, &id)
        .await?
        .ok_or(GatewayError::ProviderKeyNotFound)?;
    let write = records::delete::<crate::byok::ProviderKey>(&id, Expect::Version(doc.version));
    match records::write::<crate::byok::ProviderKey>(store, write).await? {
        Written::Deleted => {
            let mut response = Response::default();
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        Written::Refused(refused) => Err(refused.into()),
        Written::Stored(_) => Err(ApiError::Internal("a delete answered stored".into())),
    }
}

/// List an account's provider keys
///
/// The providers the account has a key for, with each key's last four
/// characters and base URL; never the keys.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/provider-keys",
    tag = "gateway",
    operation_id = "listProviderKeys",
    params(AccountPath),
    responses(
        (status = 200, description = "The keys, by provider.", body = ProviderKeyList),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn list(
    State(gateway): GatewayState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = gateway.store.as_ref();
    let filter = records::RecordFilter::Equals {
        name: "account".into(),
        value: account.as_str().to_owned(),
    };
    let keys = records::list::<crate::byok::ProviderKey>(store, filter, None, 100).await?;
    let mut data: Vec<ProviderKeyView> = keys.iter().map(ProviderKeyView::new).collect();
    data.sort_by(|a, b| a.provider.cmp(&b.provider));
    Ok(render::json(StatusCode::OK, &ProviderKeyList { data }))
}
