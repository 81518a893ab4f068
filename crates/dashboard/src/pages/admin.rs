//! The operator's admin panel: sign in with an admin key, find an
//! account, see it, grant or void credits, and open the customer's Credits
//! page read-only. Every call goes through the API as the admin key the
//! session signed in with.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use ledger::{AccountId, Timestamp};
use serde::Deserialize;
use serde_json::json;
use server::{KeyHash, KeyKind, Principal};

use super::customer::{self, Viewer};
use super::{Notice, render, see_other, views};
use crate::Dashboard;
use crate::domain::format;
use crate::domain::locale::Locale;
use crate::domain::session::ADMIN_SESSION_TTL_SECS;
use crate::security::{self, ADMIN_COOKIE};
use crate::session::{self, Who};

/// The admin panel's routes.
pub fn router() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/sign-out", post(sign_out))
        .route("/admin", get(accounts))
        .route("/admin/accounts/{id}", get(account))
        .route("/admin/accounts/{id}/grant", post(grant))
        .route("/admin/accounts/{id}/void", post(void))
        .route("/admin/accounts/{id}/credits", get(credits))
        .route("/admin/accounts/{id}/credits/history", get(credits_history))
        .route("/admin/accounts/{id}/credits/usage", get(credits_usage))
        .route("/admin/accounts/{id}/credits/keys", get(credits_keys))
}

/// A signed-in operator: the admin key's principal and the session's CSRF
/// token.
struct Operator {
    principal: Principal,
    csrf: String,
}

/// The operator of the request's session, or a 303 to the sign-in page.
/// Revoking the key the session signed in with ends the session.
async fn operator(dashboard: &Dashboard, headers: &HeaderMap) -> Result<Operator, Response> {
    let to_login = || see_other("/admin/login");
    let cookie = security::cookie(headers, ADMIN_COOKIE).ok_or_else(to_login)?;
    let now = dashboard.clock.now();
    let session = match session::session_of(dashboard.store.as_ref(), cookie, now).await {
        Ok(Some(session)) => session,
        Ok(None) => return Err(to_login()),
        Err(error) => {
            tracing::warn!(%error, "reading an admin session failed");
            return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
        }
    };
    let Who::Admin { key_hash } = &session.who else {
        return Err(to_login());
    };
    let principal = KeyHash::from_hex(key_hash)
        .and_then(|hash| dashboard.keys()?.resolve_hash(hash, now))
        .filter(|p| p.kind == KeyKind::Admin)
        .ok_or_else(to_login)?;
    Ok(Operator {
        principal,
        csrf: session.csrf,
    })
}

#[derive(Template)]
#[template(path = "admin_login.html")]
struct LoginPage {
    error: Option<&'static str>,
}

/// `GET /admin/login`.
async fn login_form(State(dashboard): State<Arc<Dashboard>>) -> Response {
    render(
        StatusCode::OK,
        &LoginPage { error: None },
        &dashboard.checkout_origins,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

/// `POST /admin/login`: an admin key starts a session; anything else, or
/// too many failures lately, does not.
async fn login(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let refuse = |status: StatusCode, error: &'static str| {
        render(status, &LoginPage { error: Some(error) }, &[])
    };
    let own_origin = security::origin_of(&dashboard.public_url);
    let same_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|origin| origin.trim_end_matches('/') == own_origin);
    if !same_origin {
        return refuse(StatusCode::FORBIDDEN, "Sign in from this site's own page.");
    }
    if !dashboard.sign_ins.allows() {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins; wait a minute and try again.",
        );
    }
    let now = dashboard.clock.now();
    let key = form.key.trim();
    let admitted = dashboard
        .keys()
        .and_then(|keys| keys.resolve(key, now))
        .filter(|p| p.kind == KeyKind::Admin);
    if admitted.is_none() {
        dashboard.sign_ins.failed();
        return refuse(StatusCode::UNAUTHORIZED, "That is not an admin key.");
    }
    let hash = KeyHash::of(key).to_hex();
    match session::sign_in_admin(dashboard.store.as_ref(), hash, now).await {
        Ok((cookie, _)) => {
            let mut response = see_other("/admin");
            let value = security::session_cookie(
                ADMIN_COOKIE,
                &cookie,
                "/admin",
                ADMIN_SESSION_TTL_SECS,
                dashboard.secure(),
            );
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => {
            tracing::warn!(%error, "starting an admin session failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /admin/sign-out`.
async fn sign_out(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    if !genuine(&dashboard, &headers, form.csrf.as_deref(), &operator) {
        return forbidden();
    }
    if let Some(cookie) = security::cookie(&headers, ADMIN_COOKIE)
        && let Err(error) = session::end(dashboard.store.as_ref(), cookie).await
    {
        tracing::warn!(%error, "ending an admin session failed");
    }
    let mut response = see_other("/admin/login");
    let cleared = security::cleared_cookie(ADMIN_COOKIE, "/admin", dashboard.secure());
    if let Ok(value) = cleared.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn genuine(
    dashboard: &Dashboard,
    headers: &HeaderMap,
    sent: Option<&str>,
    operator: &Operator,
) -> bool {
    let own_origin = security::origin_of(&dashboard.public_url);
    security::form_is_genuine(headers, sent, &operator.csrf, &own_origin)
}

fn forbidden() -> Response {
    super::message(
        StatusCode::FORBIDDEN,
        Locale::En,
        "Refused",
        "This form did not come from this panel; nothing changed.",
    )
}

#[derive(Deserialize)]
struct AccountsQuery {
    q: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_accounts.html")]
struct AccountsPage {
    title: &'static str,
    csrf: String,
    section: &'static str,
    notice: Option<Notice>,
    query: String,
    accounts: Vec<AccountRow>,
    next: Option<String>,
    capped: bool,
    scanned: usize,
}

struct AccountRow {
    id: String,
    name: String,
    created: String,
}

#[derive(Deserialize)]
struct AccountPage {
    data: Vec<AccountItem>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct AccountItem {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: serde_json::Value,
    created_at: String,
}

impl AccountItem {
    fn matches(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.id.to_lowercase().contains(&needle)
            || self
                .name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&needle))
            || self.metadata.to_string().to_lowercase().contains(&needle)
    }

    fn row(self) -> AccountRow {
        let created = Timestamp::parse_rfc3339(&self.created_at)
            .map(format::instant)
            .unwrap_or(self.created_at);
        AccountRow {
            id: self.id,
            name: self.name.unwrap_or_default(),
            created,
        }
    }
}

/// The accounts a search reads at most, page by page.
const SEARCH_SCAN_MAX: usize = 5000;

/// `GET /admin`: the accounts, or those whose id, name or metadata holds
/// the search.
async fn accounts(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<AccountsQuery>,
    headers: HeaderMap,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let needle = query.q.unwrap_or_default().trim().to_owned();
    let mut rows = Vec::new();
    let mut next = None;
    let mut scanned = 0;
    let mut capped = false;
    if needle.is_empty() {
        let mut path = "/v1/accounts?limit=50".to_owned();
        if let Some(cursor) = query.cursor.filter(|c| AccountId::parse(c).is_ok()) {
            path.push_str(&format!("&cursor={cursor}"));
        }
        match dashboard
            .api
            .get::<AccountPage>(&operator.principal, &path)
            .await
        {
            Ok(page) => {
                next = page.next_cursor;
                rows = page.data.into_iter().map(AccountItem::row).collect();
            }
            Err(refusal) => tracing::warn!(%refusal, "listing accounts failed"),
        }
    } else {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/v1/accounts?limit=100".to_owned();
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let Ok(page) = dashboard
                .api
                .get::<AccountPage>(&operator.principal, &path)
                .await
            else {
                break;
            };
            scanned += page.data.len();
            rows.extend(
                page.data
                    .into_iter()
                    .filter(|a| a.matches(&needle))
                    .map(AccountItem::row),
            );
            cursor = page.next_cursor;
            if cursor.is_none() || rows.len() >= 100 {
                break;
            }
            if scanned >= SEARCH_SCAN_MAX {
                capped = true;
                break;
            }
        }
    }
    let page = AccountsPage {
        title: "Accounts",
        csrf: operator.csrf,
        section: "accounts",
        notice: None,
        query: needle,
        accounts: rows,
        next,
        capped,
        scanned,
    };
    render(StatusCode::OK, &page, &[])
}

#[derive(Template)]
#[template(path = "admin_account.html")]
struct AccountView {
    title: String,
    csrf: String,
    section: &'static str,
    notice: Option<Notice>,
    id: String,
    name: String,
    available: String,
    held: String,
    debt: String,
    plan: String,
    billing_mode: String,
    grants: Vec<GrantRow>,
    transactions: Vec<TxRow>,
    nonce: String,
}

struct GrantRow {
    id: String,
    source: String,
    amount: String,
    remaining: String,
    status: String,
    expires: String,
    voidable: bool,
}

struct TxRow {
    at: String,
    kind: String,
    amount: String,
    balance_after: String,
    reason: String,
}

#[derive(Deserialize)]
struct AccountDetail {
    #[serde(default)]
    name: Option<String>,
    billing_mode: String,
}

#[derive(Deserialize)]
struct Grants {
    data: Vec<Grant>,
}

#[derive(Deserialize)]
struct Grant {
    id: String,
    source: String,
    amount: String,
    remaining: String,
    status: String,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct Notified {
    done: Option<String>,
    error: Option<String>,
}

/// `GET /admin/accounts/{id}`.
async fn account(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    Query(notified): Query<Notified>,
    headers: HeaderMap,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let Ok(account) = AccountId::parse(&id) else {
        return super::message(
            StatusCode::NOT_FOUND,
            Locale::En,
            "Not found",
            "No such account.",
        );
    };
    let who = &operator.principal;
    let api = &dashboard.api;
    let paths = [
        format!("/v1/accounts/{account}"),
        format!("/v1/accounts/{account}/balance"),
        format!("/v1/accounts/{account}/subscription"),
        format!("/v1/accounts/{account}/grants?limit=50"),
        format!("/v1/accounts/{account}/transactions?limit=20"),
    ];
    let (detail, balance, subscription, grants, transactions) = tokio::join!(
        api.get::<AccountDetail>(who, &paths[0]),
        api.get::<views::Balance>(who, &paths[1]),
        api.get::<views::Subscription>(who, &paths[2]),
        api.get::<Grants>(who, &paths[3]),
        api.get::<views::Transactions>(who, &paths[4]),
    );
    let (Ok(detail), Ok(balance)) = (detail, balance) else {
        return super::message(
            StatusCode::NOT_FOUND,
            Locale::En,
            "Not found",
            "No such account.",
        );
    };
    let notice = match (notified.done.as_deref(), notified.error.as_deref()) {
        (_, Some(code)) => Some(customer::error_notice(&crate::domain::text::EN, code)),
        (Some("granted"), _) => Some(Notice {
            kind: "ok",
            text: "Credits granted.".into(),
        }),
        (Some("voided"), _) => Some(Notice {
            kind: "ok",
            text: "Grant voided.".into(),
        }),
        _ => None,
    };
    let page = AccountView {
        title: format!("Account {account}"),
        csrf: operator.csrf,
        section: "accounts",
        notice,
        id: account.to_string(),
        name: detail.name.unwrap_or_default(),
        available: format::credits(balance.available),
        held: format::credits(balance.held),
        debt: format::credits(balance.debt),
        plan: subscription.map_or_else(
            |_| "none".into(),
            |s| format!("{} ({})", s.plan_id, s.status),
        ),
        billing_mode: detail.billing_mode,
        grants: grants
            .map(|g| g.data)
            .unwrap_or_default()
            .into_iter()
            .map(|g| GrantRow {
                voidable: g.status == "active",
                id: g.id,
                source: g.source,
                amount: g.amount,
                remaining: g.remaining,
                status: g.status,
                expires: g
                    .expires_at
                    .and_then(|e| Timestamp::parse_rfc3339(&e).ok())
                    .map(format::instant)
                    .unwrap_or_default(),
            })
            .collect(),
        transactions: transactions
            .map(|t| t.data)
            .unwrap_or_default()
            .into_iter()
            .map(|tx| TxRow {
                at: format::instant(tx.created_at),
                kind: tx.kind,
                amount: format::signed_credits(tx.amount),
                balance_after: format::credits(tx.balance_after),
                reason: tx.reason.unwrap_or_default(),
            })
            .collect(),
        nonce: session::new_token("form_").unwrap_or_default(),
    };
    render(StatusCode::OK, &page, &[])
}

#[derive(Deserialize)]
struct GrantForm {
    csrf: Option<String>,
    nonce: Option<String>,
    amount: Option<String>,
    reason: Option<String>,
    expire_days: Option<String>,
    grant_id: Option<String>,
}

/// `POST /admin/accounts/{id}/grant`: an admin grant with its reason, kept
/// on the transaction with the admin key that made it.
async fn grant(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<GrantForm>,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    if !genuine(&dashboard, &headers, form.csrf.as_deref(), &operator) {
        return forbidden();
    }
    let Ok(account) = AccountId::parse(&id) else {
        return see_other("/admin");
    };
    let mut body = json!({
        "amount": form.amount.as_deref().unwrap_or("").trim(),
        "source": "admin",
        "reason": form.reason.as_deref().unwrap_or("").trim(),
    });
    if let Some(days) = form
        .expire_days
        .as_deref()
        .and_then(|d| d.trim().parse::<i64>().ok())
        .filter(|d| (1..=36_500).contains(d))
    {
        body["expires_at"] = json!(dashboard.clock.now().plus_secs(days * 86_400).to_string());
    }
    let key = form
        .nonce
        .as_deref()
        .filter(|n| crate::domain::token::is_shaped("form_", n));
    let path = format!("/v1/accounts/{account}/grants");
    let done = dashboard
        .api
        .send::<serde_json::Value, _>(&operator.principal, Method::POST, &path, Some(&body), key)
        .await;
    match done {
        Ok(_) => see_other(&format!("/admin/accounts/{account}?done=granted")),
        Err(refusal) => see_other(&format!("/admin/accounts/{account}?error={}", refusal.code)),
    }
}

/// `POST /admin/accounts/{id}/void`: voids one of the account's grants.
async fn void(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<GrantForm>,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    if !genuine(&dashboard, &headers, form.csrf.as_deref(), &operator) {
        return forbidden();
    }
    let Ok(account) = AccountId::parse(&id) else {
        return see_other("/admin");
    };
    let grant = form.grant_id.unwrap_or_default();
    let shaped = grant
        .strip_prefix("grant_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !shaped {
        return see_other(&format!("/admin/accounts/{account}?error=invalid_id"));
    }
    let path = format!("/v1/grants/{grant}/void");
    let done = dashboard
        .api
        .send::<serde_json::Value, ()>(&operator.principal, Method::POST, &path, None, None)
        .await;
    match done {
        Ok(_) => see_other(&format!("/admin/accounts/{account}?done=voided")),
        Err(refusal) => see_other(&format!("/admin/accounts/{account}?error={}", refusal.code)),
    }
}

/// The customer's pages of account `id` as the operator sees them:
/// read-only, through a read-only customer principal of that account.
async fn read_only_viewer(
    dashboard: &Dashboard,
    headers: &HeaderMap,
    id: &str,
) -> Result<Viewer, Response> {
    operator(dashboard, headers).await?;
    let account = AccountId::parse(id).map_err(|_| see_other("/admin"))?;
    Ok(Viewer {
        base: format!("/admin/accounts/{account}/credits"),
        account,
        locale: Locale::choose(None, super::accept_language(headers)),
        csrf: String::new(),
        read_only: true,
        return_url: None,
    })
}

async fn credits(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_only_viewer(&dashboard, &headers, &id).await {
        Ok(viewer) => {
            customer::overview_page(&dashboard, &viewer, customer::OverviewQuery::default()).await
        }
        Err(response) => response,
    }
}

async fn credits_history(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    Query(query): Query<customer::HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    match read_only_viewer(&dashboard, &headers, &id).await {
        Ok(viewer) => customer::history_page(&dashboard, &viewer, query).await,
        Err(response) => response,
    }
}

async fn credits_usage(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    Query(query): Query<customer::UsageQuery>,
    headers: HeaderMap,
) -> Response {
    match read_only_viewer(&dashboard, &headers, &id).await {
        Ok(viewer) => customer::usage_page(&dashboard, &viewer, query).await,
        Err(response) => response,
    }
}

async fn credits_keys(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_only_viewer(&dashboard, &headers, &id).await {
        Ok(viewer) => customer::keys_page(&dashboard, &viewer, None, None).await,
        Err(response) => response,
    }
}
