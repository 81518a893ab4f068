//! Accounts: find one, see it (balance, grants, pending holds, plan, usage, keys,
//! payments, recent history), grant or void credits, and open the
//! customer's Credits page read-only.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use ledger::{AccountId, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::super::customer::{self, Viewer};
use super::super::{Notice, render, see_other, views};
use super::{Notified, operator, operator_of_form};
use crate::Dashboard;
use crate::domain::format;
use crate::domain::locale::Locale;
use crate::session;

/// The accounts' routes.
pub(super) fn router() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/admin", get(accounts))
        .route("/admin/accounts/{id}", get(account))
        .route("/admin/accounts/{id}/grant", post(grant))
        .route("/admin/accounts/{id}/void", post(void))
        .route("/admin/accounts/{id}/credits", get(credits))
        .route("/admin/accounts/{id}/credits/history", get(credits_history))
        .route("/admin/accounts/{id}/credits/usage", get(credits_usage))
        .route("/admin/accounts/{id}/credits/keys", get(credits_keys))
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
    /// The link to the next page, the search kept.
    next: Option<String>,
    /// The search was too short to look in names and metadata, so only an
    /// account of exactly that id was looked for.
    too_short: bool,
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
    created_at: String,
}

impl AccountItem {
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

/// The accounts on a page of the list or of a search.
const ACCOUNTS_PAGE_LEN: usize = 50;

/// `GET /admin`: the accounts, or those whose id, name or metadata holds
/// the search (the API's indexed search); a search shorter than the index
/// can look for opens the account of exactly that id, if there is one.
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
    let too_short = !needle.is_empty() && needle.chars().count() < store::SEARCH_LEN_MIN;
    let mut rows = Vec::new();
    let mut next = None;
    if too_short {
        if let Ok(account) = AccountId::parse(&needle) {
            let path = format!("/v1/accounts/{account}");
            if let Ok(item) = dashboard
                .api
                .get::<AccountItem>(&operator.principal, &path)
                .await
            {
                rows.push(item.row());
            }
        }
    } else {
        let cursor = query.cursor.filter(|c| AccountId::parse(c).is_ok());
        let limit = ACCOUNTS_PAGE_LEN.to_string();
        let mut params = vec![("limit", limit.as_str())];
        if !needle.is_empty() {
            params.push(("search", needle.as_str()));
        }
        if let Some(cursor) = &cursor {
            params.push(("cursor", cursor.as_str()));
        }
        let path = format!(
            "/v1/accounts?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        );
        match dashboard
            .api
            .get::<AccountPage>(&operator.principal, &path)
            .await
        {
            Ok(page) => {
                next = page.next_cursor.map(|cursor| {
                    let mut link = vec![("cursor", cursor.as_str())];
                    if !needle.is_empty() {
                        link.insert(0, ("q", needle.as_str()));
                    }
                    format!(
                        "/admin?{}",
                        serde_urlencoded::to_string(&link).unwrap_or_default()
                    )
                });
                rows = page.data.into_iter().map(AccountItem::row).collect();
            }
            Err(refusal) => tracing::warn!(%refusal, "listing accounts failed"),
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
        too_short,
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
    billing_mode: String,
    subscription: Option<SubscriptionFacts>,
    auto_topup: Option<AutoTopupFacts>,
    grants: Vec<GrantRow>,
    holds: Vec<HoldRow>,
    /// Usage by model and its total; none when it could not be read.
    usage: Option<(Vec<UsageRow>, UsageRow)>,
    keys: Vec<KeyRow>,
    payments: Option<Vec<PaymentRow>>,
    transactions: Vec<TxRow>,
    nonce: String,
}

struct SubscriptionFacts {
    plan: String,
    status: String,
    period_end: String,
    cancels: bool,
}

struct AutoTopupFacts {
    enabled: bool,
    state: String,
    last_failure: String,
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

struct HoldRow {
    id: String,
    amount: String,
    created: String,
    expires: String,
    metadata: String,
}

struct UsageRow {
    model: String,
    calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost: String,
}

struct KeyRow {
    id: String,
    name: String,
    last4: String,
    project: String,
    created: String,
    last_used: String,
    revoked: bool,
}

struct PaymentRow {
    at: String,
    kind: String,
    outcome: String,
    object: String,
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

/// `GET …/holds?status=pending`.
#[derive(Deserialize)]
struct Holds {
    data: Vec<Hold>,
}

#[derive(Deserialize)]
struct Hold {
    id: String,
    amount: String,
    created_at: String,
    expires_at: String,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// `GET …/usage?group_by=model`: the groups and their total.
#[derive(Deserialize)]
struct UsageSummary {
    data: Vec<UsageGroup>,
    total: UsageGroup,
}

#[derive(Deserialize)]
struct UsageGroup {
    #[serde(default)]
    key: Option<String>,
    calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost: String,
}

impl UsageGroup {
    fn row(self) -> UsageRow {
        let cost = format::micros_of(&self.cost)
            .map(|micros| format::credits(ledger::Amount::from_micros(micros)))
            .unwrap_or(self.cost);
        UsageRow {
            model: self.key.unwrap_or_else(|| "total".into()),
            calls: self.calls,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost,
        }
    }
}

/// `GET /v1/payments/events`.
#[derive(Deserialize)]
struct PaymentEvents {
    data: Vec<PaymentEvent>,
}

#[derive(Deserialize)]
struct PaymentEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object_id: Option<String>,
    outcome: String,
    received_at: String,
}

/// How far back an account's usage summary looks.
const USAGE_DAYS: i64 = 30;

/// What an account's page reads, each part read at once.
struct AccountReads {
    detail: AccountDetail,
    balance: views::Balance,
    subscription: Option<views::Subscription>,
    auto_topup: Option<views::AutoTopup>,
    grants: Vec<Grant>,
    holds: Vec<Hold>,
    usage: Option<UsageSummary>,
    keys: Vec<views::Key>,
    payments: Option<Vec<PaymentEvent>>,
    transactions: Vec<views::Transaction>,
}

/// Reads account `account` as `who`; none when there is no such account.
async fn read_account(
    dashboard: &Dashboard,
    who: &server::Principal,
    account: &AccountId,
) -> Option<AccountReads> {
    let api = &dashboard.api;
    let now = dashboard.clock.now();
    let from = now.plus_secs(-USAGE_DAYS * 86_400);
    let paths = [
        format!("/v1/accounts/{account}"),
        format!("/v1/accounts/{account}/balance"),
        format!("/v1/accounts/{account}/subscription"),
        format!("/v1/accounts/{account}/auto-topup"),
        format!("/v1/accounts/{account}/grants?limit=50"),
        format!("/v1/accounts/{account}/usage?group_by=model&from={from}&to={now}"),
        format!("/v1/accounts/{account}/keys?limit=100"),
        format!("/v1/payments/events?account={account}&limit=20"),
        format!("/v1/accounts/{account}/transactions?limit=20"),
        format!("/v1/accounts/{account}/holds?status=pending&limit=100"),
    ];
    let (detail, balance, subscription, auto_topup, grants, usage, keys, payments, txs, holds) = tokio::join!(
        api.get::<AccountDetail>(who, &paths[0]),
        api.get::<views::Balance>(who, &paths[1]),
        api.get::<views::Subscription>(who, &paths[2]),
        api.get::<views::AutoTopup>(who, &paths[3]),
        api.get::<Grants>(who, &paths[4]),
        api.get::<UsageSummary>(who, &paths[5]),
        api.get::<views::Keys>(who, &paths[6]),
        api.get::<PaymentEvents>(who, &paths[7]),
        api.get::<views::Transactions>(who, &paths[8]),
        api.get::<Holds>(who, &paths[9]),
    );
    Some(AccountReads {
        detail: detail.ok()?,
        balance: balance.ok()?,
        subscription: subscription.ok(),
        auto_topup: auto_topup.ok(),
        grants: grants.map(|g| g.data).unwrap_or_default(),
        holds: holds.map(|h| h.data).unwrap_or_default(),
        usage: usage.ok(),
        keys: keys.map(|k| k.data).unwrap_or_default(),
        payments: payments.ok().map(|p| p.data),
        transactions: txs.map(|t| t.data).unwrap_or_default(),
    })
}

fn no_such_account() -> Response {
    super::super::message(
        StatusCode::NOT_FOUND,
        Locale::En,
        "Not found",
        "No such account.",
    )
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
        return no_such_account();
    };
    let Some(reads) = read_account(&dashboard, &operator.principal, &account).await else {
        return no_such_account();
    };
    let notice = notified.notice(&[("granted", "Credits granted."), ("voided", "Grant voided.")]);
    let mut page = account_view(reads, account.to_string());
    page.csrf = operator.csrf;
    page.notice = notice;
    render(StatusCode::OK, &page, &[])
}

/// The page of what was read of an account, without its session's token
/// or a notice.
fn account_view(reads: AccountReads, id: String) -> AccountView {
    AccountView {
        title: format!("Account {id}"),
        csrf: String::new(),
        section: "accounts",
        notice: None,
        name: reads.detail.name.unwrap_or_default(),
        available: format::credits(reads.balance.available),
        held: format::credits(reads.balance.held),
        debt: format::credits(reads.balance.debt),
        billing_mode: reads.detail.billing_mode,
        subscription: reads.subscription.map(|s| SubscriptionFacts {
            plan: s.plan_id,
            status: s.status,
            period_end: format::instant(s.current_period.end),
            cancels: s.cancel_at_period_end,
        }),
        auto_topup: reads.auto_topup.map(|a| AutoTopupFacts {
            enabled: a.enabled,
            state: a.state,
            last_failure: a.last_failure.unwrap_or_default(),
        }),
        grants: reads.grants.into_iter().map(grant_row).collect(),
        holds: reads.holds.into_iter().map(hold_row).collect(),
        usage: reads.usage.map(|summary| {
            let rows = summary.data.into_iter().map(UsageGroup::row).collect();
            (rows, summary.total.row())
        }),
        keys: reads.keys.into_iter().map(key_row).collect(),
        payments: reads
            .payments
            .map(|events| events.into_iter().map(payment_row).collect()),
        transactions: reads.transactions.into_iter().map(tx_row).collect(),
        nonce: session::new_token("form_").unwrap_or_default(),
        id,
    }
}

fn shown_instant(text: Option<String>) -> String {
    text.map(|t| {
        Timestamp::parse_rfc3339(&t)
            .map(format::instant)
            .unwrap_or(t)
    })
    .unwrap_or_default()
}

fn grant_row(g: Grant) -> GrantRow {
    GrantRow {
        voidable: g.status == "active",
        id: g.id,
        source: g.source,
        amount: g.amount,
        remaining: g.remaining,
        status: g.status,
        expires: shown_instant(g.expires_at),
    }
}

fn hold_row(h: Hold) -> HoldRow {
    HoldRow {
        id: h.id,
        amount: format::micros_of(&h.amount)
            .map(|micros| format::credits(ledger::Amount::from_micros(micros)))
            .unwrap_or(h.amount),
        created: shown_instant(Some(h.created_at)),
        expires: shown_instant(Some(h.expires_at)),
        metadata: if h.metadata.is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(h.metadata).to_string()
        },
    }
}

fn key_row(k: views::Key) -> KeyRow {
    KeyRow {
        id: k.id,
        name: k.name,
        last4: k.last4.unwrap_or_default(),
        project: k.project.unwrap_or_default(),
        created: format::instant(k.created_at),
        last_used: k.last_used_at.map(format::instant).unwrap_or_default(),
        revoked: k.revoked_at.is_some(),
    }
}

fn payment_row(e: PaymentEvent) -> PaymentRow {
    PaymentRow {
        at: shown_instant(Some(e.received_at)),
        kind: e.kind,
        outcome: e.outcome,
        object: e.object_id.unwrap_or_default(),
    }
}

fn tx_row(tx: views::Transaction) -> TxRow {
    TxRow {
        at: format::instant(tx.created_at),
        kind: tx.kind,
        amount: format::signed_credits(tx.amount),
        balance_after: format::credits(tx.balance_after),
        reason: tx.reason.unwrap_or_default(),
    }
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
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
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
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
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
        locale: Locale::choose(None, super::super::accept_language(headers)),
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
