//! API keys and who they speak for: admin, service and customer keys, kept
//! as records under their SHA-256 hash, resolved from memory on every
//! request and refreshed from the store every second.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use ledger::{AccountId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::records::{self, Doc, Expect, Kind, Lookup, RecordFilter, Written};
use store::{Store, StoreError};

use crate::AppState;
use crate::error::ApiError;
use crate::limits::Take;

/// An API key as the operator holds it. Never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: String) -> Secret {
        Secret(key)
    }

    /// The key itself, for showing it once to the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The SHA-256 of an API key. Keys are long and random, so a plain hash is
/// enough to make a leaked database useless for authenticating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Hashes a key.
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// The hash as 64 lowercase hex digits, as records keep it.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hash that [`KeyHash::to_hex`] wrote, if `text` is one.
    pub fn from_hex(text: &str) -> Option<KeyHash> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(KeyHash(out))
    }
}

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Everything.
    Admin,
    /// The operator's backend: accounts, grants, usage, holds, refunds and
    /// customer keys; not settings, prices or other admin and service keys.
    Service,
    /// One customer: reads of its own account, and what later capabilities
    /// give customers.
    Customer,
}

impl KeyKind {
    /// The kind's place in lists by kind: admin, service, customer.
    pub const fn index(self) -> usize {
        match self {
            KeyKind::Admin => 0,
            KeyKind::Service => 1,
            KeyKind::Customer => 2,
        }
    }

    /// The name of the scope, as errors and the API write it.
    pub const fn code(self) -> &'static str {
        match self {
            KeyKind::Admin => "admin",
            KeyKind::Service => "service",
            KeyKind::Customer => "customer",
        }
    }

    /// The prefix of keys of this kind.
    pub const fn prefix(self) -> &'static str {
        match self {
            KeyKind::Admin => "cd_admin_",
            KeyKind::Service => "cd_svc_",
            KeyKind::Customer => "cd_cust_",
        }
    }
}

/// An API key as stored: a record of kind `api_key`, found by its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// What it may do.
    pub kind: KeyKind,
    /// The operator's label for it.
    pub name: String,
    /// The account a customer key speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The SHA-256 of the key, as hex.
    pub hash: String,
    /// The key's last four characters, to tell keys apart in a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
    /// When it was revoked; a revoked key authenticates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_micros: Option<i64>,
    /// About when it was last used (written every minute or so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at_micros: Option<i64>,
    /// The project a customer key's gateway usage is attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The most a customer key may spend through the gateway in a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_limit: Option<SpendLimit>,
    /// What a customer key may do with its account: everything a customer
    /// may (the default), or only read it.
    #[serde(default, skip_serializing_if = "KeyAccess::is_full")]
    pub access: KeyAccess,
    /// Requests a second the key may make, over its kind's rate
    /// (`CREDITD_RATE_LIMIT_<KIND>`); a burst of as many passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Tokens a minute a customer key's gateway calls may use, over the
    /// gateway's default (`CREDITD_GATEWAY_TOKENS_PER_MINUTE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_rate_limit: Option<u32>,
}

/// What a customer key may do with its account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyAccess {
    /// Everything a customer may: spend through the gateway, buy, claim,
    /// change its auto top-up and provider keys.
    #[default]
    Full,
    /// Only reads: the balance, the history, usage, the catalogue; nothing
    /// that spends, pays or changes settings. For a browser that only
    /// shows the balance.
    Read,
}

impl KeyAccess {
    /// The name the API writes.
    pub const fn code(self) -> &'static str {
        match self {
            KeyAccess::Full => "full",
            KeyAccess::Read => "read",
        }
    }

    fn is_full(&self) -> bool {
        *self == KeyAccess::Full
    }
}

/// The window a key's spend limit counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpendPeriod {
    /// A UTC day.
    Day,
    /// A UTC calendar month.
    Month,
    /// The key's whole life.
    Total,
}

impl SpendPeriod {
    /// The name of the window `at` falls in: `2027-01-15`, `2027-01` or
    /// `total`. A new window starts from nothing spent.
    pub fn window(self, at: Timestamp) -> String {
        let date = at.to_string();
        match self {
            SpendPeriod::Day => date.chars().take(10).collect(),
            SpendPeriod::Month => date.chars().take(7).collect(),
            SpendPeriod::Total => "total".to_owned(),
        }
    }
}

/// A cap on what one key may spend in a window, in credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendLimit {
    /// Micro-credits.
    pub amount_micros: i64,
    /// The window.
    pub period: SpendPeriod,
}

impl Kind for ApiKey {
    const KIND: &'static str = "api_key";

    fn lookups(&self) -> Vec<Lookup> {
        let mut lookups = vec![
            Lookup::unique("hash", self.hash.clone()),
            Lookup::ordered("kind", self.kind.code()),
        ];
        match &self.account {
            Some(account) => lookups.push(Lookup::ordered("account", account.clone())),
            None => lookups.push(Lookup::ordered("scope", "operator")),
        }
        lookups
    }
}

/// Who a request speaks for: the key that authenticated it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The key's id; idempotency keys are kept per key id.
    pub key_id: Arc<str>,
    /// What the key may do.
    pub kind: KeyKind,
    /// The account of a customer key.
    pub account: Option<AccountId>,
    /// The project a customer key's usage is attributed to.
    pub project: Option<Arc<str>>,
    /// What a customer key may spend through the gateway in a window.
    pub spend_limit: Option<SpendLimit>,
    /// Whether the key may only read ([`KeyAccess::Read`]).
    pub read_only: bool,
    /// The key's own rate, requests a second, over its kind's.
    pub rate_limit: Option<u32>,
    /// A customer key's own tokens a minute through the gateway.
    pub token_rate_limit: Option<u32>,
}

impl Principal {
    /// True when the principal may see or act on `account`'s objects:
    /// admin and service keys see every account, a customer key its own.
    pub fn may_see(&self, account: &AccountId) -> bool {
        match self.kind {
            KeyKind::Admin | KeyKind::Service => true,
            KeyKind::Customer => self.account.as_ref() == Some(account),
        }
    }
}

/// The id under which the key from the configuration authenticates.
pub const CONFIGURED_KEY_ID: &str = "key_configured";

/// The id of the admin key generated on first start.
pub const INITIAL_KEY_ID: &str = "key_initial";

/// A key in memory: who it speaks for, and when it was last used.
struct Entry {
    principal: Principal,
    /// Micros of the last use seen by this node; 0 when none.
    used_micros: AtomicI64,
    /// Micros of the last use written to the store.
    written_micros: AtomicI64,
}

/// The version of a key record taken in, and the hash it is usable under.
type Known = (u64, Option<KeyHash>);

/// Every usable key, by hash, kept in memory so that authenticating a
/// request reads nothing from the database. [`Keys::refresh`] brings in what
/// other nodes wrote; this node's own writes are applied at once.
pub struct Keys {
    /// The key from the configuration, and who it speaks for.
    configured: Option<(KeyHash, Principal)>,
    by_hash: RwLock<HashMap<KeyHash, Arc<Entry>>>,
    /// Every key record seen, by id: the version taken in, and the hash it
    /// is in `by_hash` under while usable. An older version read late by a
    /// refresh is ignored.
    known: RwLock<HashMap<Arc<str>, Known>>,
    /// The latest `updated_at` seen among key records.
    seen_through: std::sync::Mutex<Timestamp>,
}

/// How far back a refresh looks before the latest change it has seen: a
/// write committed late, or stamped by a node whose clock runs behind, is
/// still found.
const REFRESH_OVERLAP_SECS: i64 = 10;

/// How many `last_used_at` writes are in flight at once.
const USAGE_WRITES_AT_ONCE: usize = 32;

/// The most records one page of a refresh reads.
const REFRESH_PAGE: usize = 1000;

impl Keys {
    /// Keys with the configured admin key, if any, and nothing else yet.
    pub fn new(configured: Option<KeyHash>) -> Keys {
        Keys {
            configured: configured.map(|hash| {
                let principal = Principal {
                    key_id: Arc::from(CONFIGURED_KEY_ID),
                    kind: KeyKind::Admin,
                    account: None,
                    project: None,
                    spend_limit: None,
                    read_only: false,
                    rate_limit: None,
                    token_rate_limit: None,
                };
                (hash, principal)
            }),
            by_hash: RwLock::new(HashMap::new()),
            known: RwLock::new(HashMap::new()),
            seen_through: std::sync::Mutex::new(Timestamp::from_micros(i64::MIN)),
        }
    }

    /// The principal of a presented key, if it is known and not revoked.
    /// Notes the use, for `last_used_at`.
    pub fn resolve(&self, presented: &str, now: Timestamp) -> Option<Principal> {
        self.resolve_hash(KeyHash::of(presented), now)
    }

    /// The principal of the key whose hash is `hash`, if it is known and not
    /// revoked: for a session that keeps the hash of the key it signed in
    /// with, so that revoking the key ends the session.
    pub fn resolve_hash(&self, hash: KeyHash, now: Timestamp) -> Option<Principal> {
        if let Some((configured, principal)) = &self.configured
            && *configured == hash
        {
            return Some(principal.clone());
        }
        let by_hash = self.by_hash.read().unwrap_or_else(|e| e.into_inner());
        let entry = by_hash.get(&hash)?;
        entry.used_micros.fetch_max(now.micros(), Ordering::Relaxed);
        Some(entry.principal.clone())
    }

    /// Takes in one key record as it now stands.
    pub fn apply(&self, doc: &Doc<ApiKey>) {
        let id: Arc<str> = Arc::from(doc.id.as_str());
        let mut by_hash = self.by_hash.write().unwrap_or_else(|e| e.into_inner());
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        {
            let mut seen = self.seen_through.lock().unwrap_or_else(|e| e.into_inner());
            *seen = (*seen).max(doc.updated_at);
        }
        let previous = match known.get(&id) {
            Some((version, _)) if *version >= doc.version => return,
            Some((_, hash)) => hash.and_then(|hash| by_hash.remove(&hash)),
            None => None,
        };
        known.insert(id.clone(), (doc.version, None));
        let key = &doc.body;
        let Some(hash) = KeyHash::from_hex(&key.hash) else {
            tracing::warn!(key = %doc.id, "an API key record with a bad hash is ignored");
            return;
        };
        let account = match &key.account {
            Some(account) => match AccountId::parse(account) {
                Ok(account) => Some(account),
                Err(_) => {
                    tracing::warn!(key = %doc.id, "an API key record with a bad account is ignored");
                    return;
                }
            },
            None => None,
        };
        if key.revoked_at_micros.is_some() || (key.kind == KeyKind::Customer) != account.is_some() {
            return;
        }
        let written = key.last_used_at_micros.unwrap_or(0);
        let used = previous
            .as_ref()
            .map_or(0, |p| p.used_micros.load(Ordering::Relaxed));
        by_hash.insert(
            hash,
            Arc::new(Entry {
                principal: Principal {
                    key_id: id.clone(),
                    kind: key.kind,
                    account,
                    project: key.project.as_deref().map(Arc::from),
                    spend_limit: key.spend_limit,
                    read_only: key.kind == KeyKind::Customer && key.access == KeyAccess::Read,
                    rate_limit: key.rate_limit,
                    token_rate_limit: key.token_rate_limit,
                },
                used_micros: AtomicI64::new(used.max(written)),
                written_micros: AtomicI64::new(written),
            }),
        );
        known.insert(id, (doc.version, Some(hash)));
    }

    /// Reads every key record changed since the last look (all of them the
    /// first time); returns how many it read.
    pub async fn refresh(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let since = {
            let seen = *self.seen_through.lock().unwrap_or_else(|e| e.into_inner());
            Timestamp::from_micros(
                seen.micros()
                    .saturating_sub(REFRESH_OVERLAP_SECS * ledger::MICROS_PER_SECOND),
            )
        };
        let filter = RecordFilter::ChangedSince(since);
        let mut after = None;
        let mut read = 0;
        loop {
            let page = store
                .records(store::RecordQuery {
                    kind: ApiKey::KIND.to_owned(),
                    filter: filter.clone(),
                    after,
                    limit: REFRESH_PAGE,
                })
                .await?;
            read += page.len();
            after = page.last().map(|r| r.cursor(&filter));
            let full = page.len() == REFRESH_PAGE;
            for record in page {
                self.apply(&Doc::from_record(record)?);
            }
            if !full {
                return Ok(read);
            }
        }
    }

    /// Writes `last_used_at` of every key used since it was last written,
    /// when the use is at least `granularity_secs` newer; returns how many.
    /// A key changed meanwhile (revoked, say) is left for the next round.
    pub async fn write_usage(
        &self,
        store: &dyn Store,
        granularity_secs: i64,
    ) -> Result<usize, StoreError> {
        let due: Vec<(Arc<str>, i64)> = {
            let by_hash = self.by_hash.read().unwrap_or_else(|e| e.into_inner());
            by_hash
                .values()
                .filter_map(|e| {
                    let used = e.used_micros.load(Ordering::Relaxed);
                    let written = e.written_micros.load(Ordering::Relaxed);
                    (used - written >= granularity_secs * ledger::MICROS_PER_SECOND)
                        .then(|| (e.principal.key_id.clone(), used))
                })
                .collect()
        };
        // Written a few at a time, so that they share the writer's batches.
        let writes = due.into_iter().map(|(id, used)| async move {
            let Some(mut doc) = records::get::<ApiKey>(store, &id).await? else {
                return Ok(false);
            };
            if doc.body.revoked_at_micros.is_some()
                || doc.body.last_used_at_micros.is_some_and(|u| u >= used)
            {
                return Ok(false);
            }
            doc.body.last_used_at_micros = Some(used);
            let write = records::put(&doc.id, &doc.body, Expect::Version(doc.version));
            match records::write::<ApiKey>(store, write).await? {
                Written::Stored(stored) => {
                    self.apply(&stored);
                    Ok(true)
                }
                _ => Ok(false),
            }
        });
        let written: Vec<Result<bool, StoreError>> = futures_util::stream::iter(writes)
            .buffer_unordered(USAGE_WRITES_AT_ONCE)
            .collect()
            .await;
        let mut wrote = 0;
        for result in written {
            wrote += usize::from(result?);
        }
        Ok(wrote)
    }
}

/// A new random key of `kind` and a new key id: 192 random bits for the
/// key, 64 for the id.
pub fn generate(kind: KeyKind) -> Result<(String, Secret), StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Internal(e.to_string()))?;
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let id = format!("key_{}", hex(&bytes[..8]));
    let key = format!("{}{}", kind.prefix(), hex(&bytes[8..]));
    Ok((id, Secret::new(key)))
}

/// The record of a new key.
pub fn new_key(kind: KeyKind, name: String, account: Option<&AccountId>, key: &Secret) -> ApiKey {
    let text = key.expose();
    ApiKey {
        kind,
        name,
        account: account.map(|a| a.to_string()),
        hash: KeyHash::of(text).to_hex(),
        last4: Some(text[text.len().saturating_sub(4)..].to_owned()),
        revoked_at_micros: None,
        last_used_at_micros: None,
        project: None,
        spend_limit: None,
        access: KeyAccess::Full,
        rate_limit: None,
        token_rate_limit: None,
    }
}

/// Makes sure the store can be administered: with no key configured and no
/// admin key stored, generates one and stores it (hashed). Returns the key
/// when it was generated now, to be shown to the operator once.
pub async fn bootstrap(
    store: &dyn Store,
    configured: Option<&Secret>,
) -> Result<Option<Secret>, StoreError> {
    if configured.is_some() || has_admin_key(store).await? {
        return Ok(None);
    }
    let (_, key) = generate(KeyKind::Admin)?;
    let record = new_key(
        KeyKind::Admin,
        "generated at first start".to_owned(),
        None,
        &key,
    );
    // Another node starting at the same moment may store its own first;
    // then that one is the initial key, and this one is never shown.
    let write = records::put(INITIAL_KEY_ID, &record, Expect::Absent);
    match records::write::<ApiKey>(store, write).await? {
        Written::Stored(_) => Ok(Some(key)),
        _ if has_admin_key(store).await? => Ok(None),
        _ => Err(StoreError::Internal(
            "every admin key is revoked: set CREDITD_ADMIN_KEY to regain access".to_owned(),
        )),
    }
}

/// Whether a usable admin key is stored.
pub async fn has_admin_key(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(active_admin_keys(store).await?.into_iter().next().is_some())
}

/// Stored admin keys that are not revoked (at most two, enough to tell
/// whether one may be revoked).
pub async fn active_admin_keys(store: &dyn Store) -> Result<Vec<Doc<ApiKey>>, StoreError> {
    let filter = RecordFilter::Equals {
        name: "kind".to_owned(),
        value: KeyKind::Admin.code().to_owned(),
    };
    let mut active = Vec::new();
    let mut after = None;
    loop {
        let page = records::list::<ApiKey>(store, filter.clone(), after, REFRESH_PAGE).await?;
        let full = page.len() == REFRESH_PAGE;
        after = page.last().map(|d| store::records::RecordCursor {
            key: d.id.clone(),
            id: d.id.clone(),
        });
        active.extend(
            page.into_iter()
                .filter(|d| d.body.revoked_at_micros.is_none()),
        );
        if active.len() >= 2 || !full {
            return Ok(active);
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with no key.
    Public,
    /// Admin keys only.
    Admin,
    /// Admin and service keys.
    Service,
    /// Admin and service keys, and the customer key of the account the
    /// path names as `{account_id}`; another account answers 404.
    Account,
    /// Admin and service keys, and customer keys, which the handler lets
    /// see only their own account's objects (404 for any other).
    Own,
    /// Customer keys only: the route acts for the key's own account (a
    /// gateway call, charged to it); admin and service keys name no account.
    Customer,
    /// Every key: the catalogue (packages and plans), which the handler
    /// shows customer keys only what is for sale, without operator-only
    /// fields.
    Catalog,
}

impl Access {
    /// Whether a key of `kind` passes, before any account is compared.
    pub fn admits(self, kind: KeyKind) -> bool {
        match self {
            Access::Public | Access::Account | Access::Own | Access::Catalog => true,
            Access::Service => kind != KeyKind::Customer,
            Access::Admin => kind == KeyKind::Admin,
            Access::Customer => kind == KeyKind::Customer,
        }
    }

    /// Whether customer keys may call a route of this access: the routes a
    /// browser may be let call (`CREDITD_CORS_ORIGINS`).
    pub fn admits_customers(self) -> bool {
        matches!(
            self,
            Access::Account | Access::Own | Access::Customer | Access::Catalog
        )
    }

    /// The scope a refused key lacks.
    pub fn scope(self) -> &'static str {
        match self {
            Access::Admin => KeyKind::Admin.code(),
            Access::Customer => KeyKind::Customer.code(),
            _ => KeyKind::Service.code(),
        }
    }
}

/// The presented bearer key: `Authorization: Bearer <key>`, or `x-api-key`
/// as Anthropic's clients send it.
fn presented(request: &Request) -> Option<&str> {
    let headers = request.headers();
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// What the access check of one route knows of it: the shared state, who
/// may call it, whether it changes anything (read-only keys may call only
/// routes that do not), the wire format of its errors, how it honours an
/// `Idempotency-Key` and its time limit.
#[derive(Clone)]
pub struct Guard {
    /// What every handler shares.
    pub state: Arc<AppState>,
    /// Who may call the route.
    pub access: Access,
    /// Whether it changes anything.
    pub writes: bool,
    /// How its errors are written.
    pub dialect: Option<crate::routes::Dialect>,
    /// How it honours an `Idempotency-Key`.
    pub idempotency: crate::idempotency::Idempotency,
    /// Which time limit it is held to.
    pub time_limit: crate::limits::TimeLimit,
    /// Whether it is answered even when every place for a request is taken.
    pub always_answered: bool,
    /// The rate each client address is held to on it, and its name.
    pub by_address: Option<(&'static str, crate::limits::Rate)>,
    /// Whether its successful changes by admin and service keys are kept
    /// in the audit trail.
    pub audited: bool,
}

/// The scope a read-only key lacks on a route that changes something.
pub const WRITE_SCOPE: &str = "write";

/// Lets a request through when its key may call the route, with the
/// [`Principal`] in the request's extensions, and then honours its
/// `Idempotency-Key` as the route says ([`crate::idempotency::honour`]):
/// one layer per route, not two.
pub async fn authorize(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Guard {
        state,
        access,
        writes,
        dialect,
        idempotency,
        time_limit,
        always_answered,
        by_address,
        audited,
    } = guard;
    // A browser on an allowed origin may call the routes customer keys may,
    // and read their answers, errors included; no other route is opened to it.
    let origin = access
        .admits_customers()
        .then(|| state.cors.allowed(request.headers()).cloned())
        .flatten();
    let place = state.limits.enter();
    let answer = match place {
        None if !always_answered => {
            state.metrics.shed();
            Err(ApiError::Overloaded)
        }
        _ => {
            let limit = state.limits.of(time_limit);
            let work = async {
                if let Some((name, rate)) = by_address {
                    address_allowed(&state, &request, name, rate)?;
                }
                let (request, left) =
                    admit(&state, access, writes, origin.is_some(), request).await?;
                let audit = audited
                    .then(|| crate::audit::Pending::of(&request))
                    .flatten();
                let mut response =
                    crate::idempotency::honour(&state, idempotency, request, next).await?;
                // Kept once the change is made, before it is answered; a
                // replayed answer is not a change.
                if let Some(pending) = audit
                    && response.status().is_success()
                    && !response.headers().contains_key("idempotent-replayed")
                {
                    crate::audit::keep(&state, pending, response.status().as_u16()).await;
                }
                if let Some(left) = left {
                    left.write(&mut response);
                }
                Ok(response)
            };
            match tokio::time::timeout(limit, work).await {
                Ok(answer) => answer,
                Err(_) => {
                    state.metrics.timed_out();
                    Err(ApiError::RequestTimeout { limit })
                }
            }
        }
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(error) => {
            let retry_after = error.retry_after_secs();
            let rate = error.rate_left();
            let mut response = match dialect {
                Some(dialect) => dialect(&error),
                None => axum::response::IntoResponse::into_response(error),
            };
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            if let Some(rate) = rate {
                rate.write(&mut response);
            }
            response
        }
    };
    if let Some(origin) = origin {
        crate::cors::allow(&mut response, origin);
    }
    response
}

/// The principal of the key a request presents, or 401.
async fn presented_principal(
    state: &Arc<AppState>,
    key: Option<&str>,
    now: Timestamp,
) -> Result<Principal, ApiError> {
    let key = key.ok_or(ApiError::Unauthorized)?;
    if let Some(principal) = state.keys.resolve(key, now) {
        return Ok(principal);
    }
    state
        .keys_refreshed_for_unknown_key()
        .await
        .then(|| state.keys.resolve(key, now))
        .flatten()
        .ok_or(ApiError::Unauthorized)
}

/// A principal that code in this process acts as when it calls the API
/// (the dashboard, on behalf of a signed-in session), in place of a key.
/// It travels as a request extension, which no client can send; the route's
/// access check then holds it to the route's rules like any key.
#[derive(Clone)]
pub struct Delegated(Principal);

impl Delegated {
    /// Acting as `principal`.
    pub fn new(principal: Principal) -> Delegated {
        Delegated(principal)
    }
}

/// The request with its [`Principal`], when its key may call the route.
async fn admit(
    state: &Arc<AppState>,
    access: Access,
    writes: bool,
    from_browser: bool,
    request: Request,
) -> Result<(Request, Option<RateLeft>), ApiError> {
    if access == Access::Public {
        return Ok((request, None));
    }
    let now = state.clock.now();
    let delegated = request.extensions().get::<Delegated>().map(|d| d.0.clone());
    let mut left = None;
    let principal = match delegated {
        // This process's own calls (the dashboard's) are held by its
        // sessions, not by a key's rate.
        Some(principal) => principal,
        None => {
            let key = presented(&request).map(str::to_owned);
            let principal = presented_principal(state, key.as_deref(), now).await?;
            left = rate_left(state, &principal, now)?;
            principal
        }
    };
    if !access.admits(principal.kind) {
        return Err(ApiError::Forbidden {
            scope: access.scope(),
        });
    }
    if writes && principal.read_only {
        return Err(ApiError::Forbidden { scope: WRITE_SCOPE });
    }
    // An operator's key has no business in a browser on another origin.
    if from_browser && principal.kind != KeyKind::Customer {
        return Err(ApiError::Forbidden {
            scope: KeyKind::Customer.code(),
        });
    }
    let (mut parts, body) = request.into_parts();
    if access == Access::Account && principal.kind == KeyKind::Customer {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| ApiError::InvalidId(e.body_text()))?;
        let named = params.get("account_id").map(String::as_str);
        if named != principal.account.as_ref().map(AccountId::as_str) {
            return Err(ApiError::Rejected(ledger::Reject::AccountNotFound));
        }
    }
    parts.extensions.insert(principal);
    Ok((Request::from_parts(parts, body), left))
}

/// Takes one request of the client's address out of its bucket for the
/// route `name`; `429 rate_limited` when it is empty. A request without a
/// client address (this process's own) is not counted.
fn address_allowed(
    state: &AppState,
    request: &Request,
    name: &'static str,
    rate: crate::limits::Rate,
) -> Result<(), ApiError> {
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Ok(());
    };
    let now = state.clock.now().micros();
    match state.address_limits.take(peer.ip(), name, rate, now) {
        Take::Allowed { .. } => Ok(()),
        Take::Limited { retry_after_secs } => {
            state.metrics.rate_limited();
            Err(ApiError::RateLimited {
                limit: rate.requests,
                retry_after_secs,
            })
        }
    }
}

/// What a key's rate leaves it after this request, for the answer's
/// `RateLimit-*` headers: none when the key has no rate; `429
/// rate_limited` when its bucket is empty.
fn rate_left(
    state: &AppState,
    principal: &Principal,
    now: Timestamp,
) -> Result<Option<RateLeft>, ApiError> {
    let limits = &state.rate_limits;
    let Some(rate) = limits.rate_of(principal.rate_limit, principal.kind.index()) else {
        return Ok(None);
    };
    match limits.take(&principal.key_id, rate, now.micros()) {
        Take::Allowed {
            remaining,
            reset_secs,
        } => Ok(Some(RateLeft {
            limit: rate,
            remaining,
            reset_secs,
        })),
        Take::Limited { retry_after_secs } => {
            state.metrics.rate_limited();
            Err(ApiError::RateLimited {
                limit: rate,
                retry_after_secs,
            })
        }
    }
}

/// What a key's rate leaves it: sent as `RateLimit-Limit`,
/// `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the bucket
/// is full).
#[derive(Clone, Copy, Debug)]
pub struct RateLeft {
    /// Requests a second, and the burst.
    pub limit: u32,
    /// Requests left now.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl RateLeft {
    /// Writes the three headers on `response`.
    pub fn write(&self, response: &mut Response) {
        let headers = response.headers_mut();
        headers.insert("ratelimit-limit", self.limit.into());
        headers.insert("ratelimit-remaining", self.remaining.into());
        headers.insert("ratelimit-reset", self.reset_secs.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_round_trips_through_hex() {
        let hash = KeyHash::of("secret");
        assert!(KeyHash::from_hex(&hash.to_hex()) == Some(hash));
        assert!(KeyHash::of("Secret") != hash);
        assert!(KeyHash::from_hex("zz").is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("k".into())), "Secret(***)");
    }

    #[test]
    fn generated_keys_are_long_prefixed_and_distinct() {
        let (id, key) = generate(KeyKind::Service).unwrap();
        let (other_id, other) = generate(KeyKind::Service).unwrap();
        assert!(key.expose().starts_with("cd_svc_"));
        assert_eq!(key.expose().len(), "cd_svc_".len() + 48);
        assert!(id.starts_with("key_"));
        assert_ne!(key.expose(), other.expose());
        assert_ne!(id, other_id);
    }

    fn doc(id: &str, key: ApiKey, at: i64) -> Doc<ApiKey> {
        Doc {
            id: id.into(),
            version: at as u64,
            created_at: Timestamp::from_secs(at),
            updated_at: Timestamp::from_secs(at),
            body: key,
        }
    }

    #[test]
    fn a_revoked_key_stops_resolving_and_a_customer_key_carries_its_account() {
        let keys = Keys::new(Some(KeyHash::of("configured")));
        let now = Timestamp::from_secs(100);
        assert_eq!(
            keys.resolve("configured", now).unwrap().kind,
            KeyKind::Admin
        );
        let account = AccountId::parse("acme").unwrap();
        let secret = Secret::new("cd_cust_1234".into());
        let mut record = new_key(KeyKind::Customer, "app".into(), Some(&account), &secret);
        assert_eq!(record.last4.as_deref(), Some("1234"));
        keys.apply(&doc("key_1", record.clone(), 1));
        let principal = keys.resolve("cd_cust_1234", now).unwrap();
        assert_eq!(principal.account, Some(account.clone()));
        assert!(principal.may_see(&account));
        assert!(!principal.may_see(&AccountId::parse("other").unwrap()));
        record.revoked_at_micros = Some(2);
        keys.apply(&doc("key_1", record.clone(), 2));
        assert!(keys.resolve("cd_cust_1234", now).is_none());
        // The version before the revocation, read late, changes nothing.
        record.revoked_at_micros = None;
        keys.apply(&doc("key_1", record, 1));
        assert!(keys.resolve("cd_cust_1234", now).is_none());
        assert!(keys.resolve("unknown", now).is_none());
    }

    #[test]
    fn access_admits_kinds_by_scope() {
        assert!(Access::Admin.admits(KeyKind::Admin));
        assert!(!Access::Admin.admits(KeyKind::Service));
        assert!(Access::Service.admits(KeyKind::Service));
        assert!(!Access::Service.admits(KeyKind::Customer));
        assert!(Access::Account.admits(KeyKind::Customer));
        assert_eq!(Access::Admin.scope(), "admin");
        assert_eq!(Access::Service.scope(), "service");
    }
}
