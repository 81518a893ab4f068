//! Links, sessions and embed tokens: records kept under the hash of their
//! secret, so that the database alone opens nothing, and pruned once they
//! have expired.

use std::sync::Arc;

use ledger::{AccountId, Timestamp};
use serde::{Deserialize, Serialize};
use store::records::{self, Expect, Kind, Lookup, RecordFilter, Written};
use store::{Command, Executed, Op, Outcome, Store, StoreError};

use crate::Dashboard;
use crate::domain::session::{self as rules, LinkState};
use crate::domain::token;

/// The prefix of a dashboard link's token.
pub const LINK_PREFIX: &str = "cdl_";
/// The prefix of a session cookie's token.
pub const SESSION_PREFIX: &str = "cds_";
/// The prefix of an embed token.
pub const EMBED_PREFIX: &str = "cde_";
/// The prefix of a form's CSRF token.
pub const CSRF_PREFIX: &str = "csrf_";

/// A link to an account's Credits page that opens one session, once,
/// within ten minutes: a record of kind `dashboard_link` under the hash of
/// its token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DashboardLink {
    /// The account it opens.
    pub account: String,
    /// The session's language, as the operator asked.
    pub locale: Option<String>,
    /// Where the page's "back" link leads.
    pub return_url: Option<String>,
    /// When it was made, in micros.
    pub created_at_micros: i64,
    /// Whether it has opened its session.
    pub used: bool,
}

impl Kind for DashboardLink {
    const KIND: &'static str = "dashboard_link";

    fn lookups(&self) -> Vec<Lookup> {
        let expires =
            Timestamp::from_micros(self.created_at_micros).plus_secs(rules::LINK_TTL_SECS);
        vec![Lookup::instant("expires", expires)]
    }
}

/// Who a session speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Who {
    /// A customer, on the Credits page of their account.
    Customer {
        /// The account.
        account: String,
    },
    /// An operator, signed in to the admin panel with an admin key, kept
    /// as the key's hash so that revoking the key ends the session.
    Admin {
        /// The hex SHA-256 of the admin key.
        key_hash: String,
    },
}

/// A signed-in browser: a record of kind `dashboard_session` under the hash
/// of its cookie.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DashboardSession {
    /// Who it speaks for.
    pub who: Who,
    /// The language it was opened in, if one was asked for.
    pub locale: Option<String>,
    /// Where the page's "back" link leads.
    pub return_url: Option<String>,
    /// The token every form of the session carries.
    pub csrf: String,
    /// When it ends, in micros.
    pub expires_at_micros: i64,
}

impl Kind for DashboardSession {
    const KIND: &'static str = "dashboard_session";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::instant(
            "expires",
            Timestamp::from_micros(self.expires_at_micros),
        )]
    }
}

impl DashboardSession {
    /// The customer's account, for a customer's session.
    pub fn account(&self) -> Option<AccountId> {
        match &self.who {
            Who::Customer { account } => AccountId::parse(account).ok(),
            Who::Admin { .. } => None,
        }
    }
}

/// A token that reads one account's balance and nothing else, for an
/// hour: a record of kind `embed_token` under the hash of the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmbedToken {
    /// The account whose balance it reads.
    pub account: String,
    /// When it stops working, in micros.
    pub expires_at_micros: i64,
}

impl Kind for EmbedToken {
    const KIND: &'static str = "embed_token";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::instant(
            "expires",
            Timestamp::from_micros(self.expires_at_micros),
        )]
    }
}

/// A new secret token of `prefix`, from the system's randomness.
pub fn new_token(prefix: &str) -> Result<String, StoreError> {
    let mut random = [0u8; token::TOKEN_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Internal(format!("no randomness for a token: {e}")))?;
    Ok(token::text(prefix, &random))
}

/// Makes a link to `account`'s Credits page; answers its token, shown once.
pub async fn new_link(
    store: &dyn Store,
    account: &AccountId,
    locale: Option<String>,
    return_url: Option<String>,
    now: Timestamp,
) -> Result<String, StoreError> {
    let secret = new_token(LINK_PREFIX)?;
    let link = DashboardLink {
        account: account.to_string(),
        locale,
        return_url,
        created_at_micros: now.micros(),
        used: false,
    };
    let write = records::put(&token::hashed(&secret), &link, Expect::Absent);
    match records::write::<DashboardLink>(store, write).await? {
        Written::Stored(_) => Ok(secret),
        other => Err(StoreError::Internal(format!(
            "a new link answered {other:?}"
        ))),
    }
}

/// What opening a link came to.
pub enum Opened {
    /// A new session: its cookie's token and the session.
    Session(String, DashboardSession),
    /// The link opens nothing: it is unknown, used or expired.
    Refused(LinkState),
}

/// Opens the link of token `secret`: when it may open (never opened, not
/// expired), it is marked used and its session is made in one write, so
/// that two browsers racing on one link get one session between them.
pub async fn open_link(
    store: &dyn Store,
    secret: &str,
    now: Timestamp,
) -> Result<Opened, StoreError> {
    if !token::is_shaped(LINK_PREFIX, secret) {
        return Ok(Opened::Refused(LinkState::Used));
    }
    let id = token::hashed(secret);
    let Some(doc) = records::get::<DashboardLink>(store, &id).await? else {
        return Ok(Opened::Refused(LinkState::Used));
    };
    let link = doc.body;
    let created = Timestamp::from_micros(link.created_at_micros);
    match rules::open_link(created, link.used, now) {
        LinkState::Opens => {}
        refused => return Ok(Opened::Refused(refused)),
    }
    let cookie = new_token(SESSION_PREFIX)?;
    let session = DashboardSession {
        who: Who::Customer {
            account: link.account.clone(),
        },
        locale: link.locale.clone(),
        return_url: link.return_url.clone(),
        csrf: new_token(CSRF_PREFIX)?,
        expires_at_micros: now.plus_secs(rules::CUSTOMER_SESSION_TTL_SECS).micros(),
    };
    let used = DashboardLink { used: true, ..link };
    let command = Command::new(Op::Record(records::put(
        &id,
        &used,
        Expect::Version(doc.version),
    )))
    .with_records(vec![records::put(
        &token::hashed(&cookie),
        &session,
        Expect::Absent,
    )]);
    match store.execute(command).await? {
        Executed::Fresh(Ok(Outcome::RecordPut(_))) => Ok(Opened::Session(cookie, session)),
        // Another browser opened it first.
        Executed::Fresh(Err(_)) => Ok(Opened::Refused(LinkState::Used)),
        other => Err(StoreError::Internal(format!(
            "opening a link answered {other:?}"
        ))),
    }
}

/// Starts an operator's session for the admin key of hash `key_hash`;
/// answers its cookie's token.
pub async fn sign_in_admin(
    store: &dyn Store,
    key_hash: String,
    now: Timestamp,
) -> Result<(String, DashboardSession), StoreError> {
    let cookie = new_token(SESSION_PREFIX)?;
    let session = DashboardSession {
        who: Who::Admin { key_hash },
        locale: None,
        return_url: None,
        csrf: new_token(CSRF_PREFIX)?,
        expires_at_micros: now.plus_secs(rules::ADMIN_SESSION_TTL_SECS).micros(),
    };
    let write = records::put(&token::hashed(&cookie), &session, Expect::Absent);
    match records::write::<DashboardSession>(store, write).await? {
        Written::Stored(_) => Ok((cookie, session)),
        other => Err(StoreError::Internal(format!(
            "a new session answered {other:?}"
        ))),
    }
}

/// The live session of cookie token `cookie`, if there is one.
pub async fn session_of(
    store: &dyn Store,
    cookie: &str,
    now: Timestamp,
) -> Result<Option<DashboardSession>, StoreError> {
    if !token::is_shaped(SESSION_PREFIX, cookie) {
        return Ok(None);
    }
    let found = records::get::<DashboardSession>(store, &token::hashed(cookie)).await?;
    Ok(found
        .map(|doc| doc.body)
        .filter(|s| rules::is_live(Timestamp::from_micros(s.expires_at_micros), now)))
}

/// Ends the session of cookie token `cookie` (signing out).
pub async fn end(store: &dyn Store, cookie: &str) -> Result<(), StoreError> {
    if !token::is_shaped(SESSION_PREFIX, cookie) {
        return Ok(());
    }
    let write = records::delete::<DashboardSession>(&token::hashed(cookie), Expect::Any);
    records::write::<DashboardSession>(store, write).await?;
    Ok(())
}

/// Makes an embed token for `account`'s balance; answers it, shown once,
/// and when it expires.
pub async fn new_embed_token(
    store: &dyn Store,
    account: &AccountId,
    now: Timestamp,
) -> Result<(String, Timestamp), StoreError> {
    let secret = new_token(EMBED_PREFIX)?;
    let expires = now.plus_secs(rules::EMBED_TOKEN_TTL_SECS);
    let body = EmbedToken {
        account: account.to_string(),
        expires_at_micros: expires.micros(),
    };
    let write = records::put(&token::hashed(&secret), &body, Expect::Absent);
    match records::write::<EmbedToken>(store, write).await? {
        Written::Stored(_) => Ok((secret, expires)),
        other => Err(StoreError::Internal(format!(
            "a new embed token answered {other:?}"
        ))),
    }
}

/// The account an embed token reads, while it is good.
pub async fn embed_account(
    store: &dyn Store,
    secret: &str,
    now: Timestamp,
) -> Result<Option<AccountId>, StoreError> {
    if !token::is_shaped(EMBED_PREFIX, secret) {
        return Ok(None);
    }
    let found = records::get::<EmbedToken>(store, &token::hashed(secret)).await?;
    Ok(found
        .filter(|doc| rules::is_live(Timestamp::from_micros(doc.body.expires_at_micros), now))
        .and_then(|doc| AccountId::parse(&doc.body.account).ok()))
}

/// The most expired records one round of pruning deletes per kind.
const PRUNE_PAGE: usize = 500;

/// Deletes the links, sessions and embed tokens of kind `T` that expired
/// before `now`; answers how many.
async fn prune<T: Kind>(store: &dyn Store, now: Timestamp) -> Result<usize, StoreError> {
    let filter = RecordFilter::Range {
        name: "expires".into(),
        from: None,
        to: Some(records::sortable_instant(now)),
    };
    let expired = records::list::<T>(store, filter, None, PRUNE_PAGE).await?;
    for doc in &expired {
        let write = records::delete::<T>(&doc.id, Expect::Version(doc.version));
        // A record written again meanwhile is left for its own expiry.
        records::write::<T>(store, write).await?;
    }
    Ok(expired.len())
}

/// The job that deletes what has expired, every ten minutes on every
/// node: deleting at the version read makes two nodes' rounds harmless.
pub fn pruning(dashboard: &Arc<Dashboard>) -> server::Job {
    let dashboard = dashboard.clone();
    server::Job::new(
        "dashboard_prune",
        std::time::Duration::from_secs(600),
        move || {
            let dashboard = dashboard.clone();
            async move {
                let store = dashboard.store.as_ref();
                let now = dashboard.clock.now();
                let pruned = async {
                    Ok::<_, StoreError>(
                        prune::<DashboardLink>(store, now).await?
                            + prune::<DashboardSession>(store, now).await?
                            + prune::<EmbedToken>(store, now).await?,
                    )
                };
                match pruned.await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(pruned = n, "pruned expired dashboard records"),
                    Err(error) => tracing::warn!(%error, "pruning dashboard records failed"),
                }
            }
        },
    )
}
