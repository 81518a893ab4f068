//! The customer's Credits page: opening a link, and its four sections
//! (overview, history, usage, keys), each built from the API's answers for
//! the session's account alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger::{AccountId, Amount, MICROS_PER_DAY, Timestamp};
use serde::Deserialize;
use server::Principal;

use super::views;
use super::{Frame, Notice, accept_language, message, render, session_ended};
use crate::Dashboard;
use crate::client::{self, Refusal};
use crate::domain::chart::{self, Series};
use crate::domain::format;
use crate::domain::history::HistoryKind;
use crate::domain::locale::Locale;
use crate::domain::session::{CUSTOMER_SESSION_TTL_SECS, LinkState};
use crate::domain::text::Texts;
use crate::security::{self, CUSTOMER_COOKIE};
use crate::session::{self, Opened};

/// Who is looking at an account's pages, and how: a customer in their own
/// session, or an operator's read-only view.
pub struct Viewer {
    /// The account.
    pub account: AccountId,
    /// The pages' language.
    pub locale: Locale,
    /// The token the session's forms carry (none for a read-only view).
    pub csrf: String,
    /// Whether nothing may be changed.
    pub read_only: bool,
    /// Where the sections are.
    pub base: String,
    /// Where "Back to the app" leads.
    pub return_url: Option<String>,
}

impl Viewer {
    /// The principal the API is called as: the account's customer key,
    /// read-only for an operator's view.
    pub fn principal(&self) -> Principal {
        client::customer(&self.account, self.read_only)
    }

    fn frame(&self, title: &str, section: &'static str, notice: Option<Notice>) -> Frame {
        Frame {
            t: Texts::of(self.locale),
            lang: self.locale.code(),
            title: title.to_owned(),
            csrf: self.csrf.clone(),
            read_only: self.read_only,
            base: self.base.clone(),
            return_url: self.return_url.clone(),
            notice,
            section,
            refresh: false,
        }
    }
}

/// The customer of the session the request's cookie names, or the page
/// that says the session has ended.
pub async fn viewer(dashboard: &Dashboard, headers: &HeaderMap) -> Result<Viewer, Response> {
    let Some(cookie) = security::cookie(headers, CUSTOMER_COOKIE) else {
        return Err(session_ended(headers));
    };
    let now = dashboard.clock.now();
    let found = match session::session_of(dashboard.store.as_ref(), cookie, now).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "reading a dashboard session failed");
            return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
        }
    };
    let Some((session, account)) = found.and_then(|s| s.account().map(|a| (s, a))) else {
        return Err(session_ended(headers));
    };
    Ok(Viewer {
        account,
        locale: Locale::choose(session.locale.as_deref(), accept_language(headers)),
        csrf: session.csrf,
        read_only: false,
        base: "/dashboard".into(),
        return_url: session.return_url,
    })
}

/// `GET /dashboard/link/{token}`: opens the link's session once, and sends
/// the browser on to the Credits page with its cookie; a link used before
/// or expired shows nothing of the account.
pub async fn open(
    State(dashboard): State<Arc<Dashboard>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = dashboard.clock.now();
    let locale = Locale::choose(None, accept_language(&headers));
    let t = Texts::of(locale);
    match session::open_link(dashboard.store.as_ref(), &token, now).await {
        Ok(Opened::Session(cookie, _)) => {
            let mut response = super::see_other("/dashboard");
            let value = security::session_cookie(
                CUSTOMER_COOKIE,
                &cookie,
                "/dashboard",
                CUSTOMER_SESSION_TTL_SECS,
                dashboard.secure(),
            );
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(Opened::Refused(LinkState::Used | LinkState::Expired | LinkState::Opens)) => {
            message(StatusCode::GONE, locale, t.link_title, t.link_used)
        }
        Err(error) => {
            tracing::warn!(%error, "opening a dashboard link failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The overview's query: a checkout coming back, or the outcome of an
/// action.
#[derive(Default, Deserialize)]
pub struct OverviewQuery {
    /// The checkout session the provider sent the customer back from.
    checkout: Option<String>,
    /// Set when the customer gave up a checkout.
    canceled: Option<String>,
    /// What an action did (`saved`, `claimed`, …).
    done: Option<String>,
    /// The code an action was refused with.
    error: Option<String>,
}

/// `GET /dashboard`.
pub async fn overview(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<OverviewQuery>,
    headers: HeaderMap,
) -> Response {
    match viewer(&dashboard, &headers).await {
        Ok(viewer) => overview_page(&dashboard, &viewer, query).await,
        Err(response) => response,
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    frame: Frame,
    available: String,
    held: Option<String>,
    debt: Option<String>,
    plan: Option<PlanLine>,
    forecast: String,
    lots: Vec<LotRow>,
    payments: bool,
    packages: Vec<PackageCard>,
    offers: Vec<PlanOffer>,
    card: Option<String>,
    topup: TopupForm,
    daily: Option<DailyLine>,
    nonce: String,
}

struct PlanLine {
    name: String,
    ends: String,
    past_due: bool,
    canceling: bool,
    paid: bool,
}

struct LotRow {
    source: String,
    remaining: String,
    expires: String,
}

struct PackageCard {
    id: String,
    name: String,
    description: Option<String>,
    credits: String,
    price: String,
}

struct PlanOffer {
    id: String,
    name: String,
    credits: String,
    price: String,
    paid: bool,
}

struct TopupForm {
    enabled: bool,
    threshold: String,
    amount: String,
    cap: String,
    failure: Option<String>,
}

struct DailyLine {
    claimed: bool,
    amount: String,
    next: String,
}

/// Builds the overview of `viewer`'s account.
pub async fn overview_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    query: OverviewQuery,
) -> Response {
    let who = viewer.principal();
    let account = viewer.account.as_str();
    let api = &dashboard.api;
    let t = Texts::of(viewer.locale);
    let balance_path = format!("/v1/accounts/{account}/balance?include=forecast");
    let subscription_path = format!("/v1/accounts/{account}/subscription");
    let packages_path = format!("/v1/packages?locale={}", viewer.locale.code());
    let card_path = format!("/v1/accounts/{account}/payment-method");
    let topup_path = format!("/v1/accounts/{account}/auto-topup");
    let daily_path = format!("/v1/accounts/{account}/daily-reward");
    let (balance, subscription, plans, packages, card, topup, daily) = tokio::join!(
        api.get::<views::Balance>(&who, &balance_path),
        api.get::<views::Subscription>(&who, &subscription_path),
        api.get::<views::Plans>(&who, "/v1/plans"),
        api.get::<views::Packages>(&who, &packages_path),
        api.get::<views::PaymentMethod>(&who, &card_path),
        api.get::<views::AutoTopup>(&who, &topup_path),
        api.get::<views::DailyReward>(&who, &daily_path),
    );
    let balance = match balance {
        Ok(balance) => balance,
        Err(refusal) => return failed(viewer, &refusal),
    };
    let plans = plans.map(|p| p.data).unwrap_or_default();
    let subscription = subscription.ok();
    let plan = subscription.as_ref().map(|sub| {
        let known = plans.iter().find(|p| p.id == sub.plan_id);
        PlanLine {
            name: known.map_or_else(|| sub.plan_id.clone(), |p| p.name.clone()),
            ends: format::instant(sub.current_period.end),
            past_due: sub.status == "past_due",
            canceling: sub.cancel_at_period_end,
            paid: known.is_some_and(|p| p.price.is_some()),
        }
    });
    let current = subscription.as_ref().map(|s| s.plan_id.as_str());
    let offers = plans
        .iter()
        .filter(|p| Some(p.id.as_str()) != current)
        .filter(|p| dashboard.payments || p.price.is_none())
        .map(|p| PlanOffer {
            id: p.id.clone(),
            name: p.name.clone(),
            credits: format::credits(p.credits),
            price: match &p.price {
                Some(price) => format!(
                    "{}{}{}",
                    format::money(price.amount, &price.currency),
                    t.per,
                    t.interval(&p.interval)
                ),
                None => t.free.to_owned(),
            },
            paid: p.price.is_some(),
        })
        .collect();
    let mut lots: Vec<&views::Lot> = balance.lots.iter().collect();
    // Soonest-expiring first; what never expires last.
    lots.sort_by_key(|lot| lot.expires_at.map_or(i64::MAX, Timestamp::micros));
    let lots = lots
        .into_iter()
        .map(|lot| LotRow {
            source: t.source(&lot.source).to_owned(),
            remaining: format::credits(lot.remaining),
            expires: lot
                .expires_at
                .map_or_else(|| t.never.to_owned(), format::instant),
        })
        .collect();
    let topup = topup.ok();
    let mut frame = viewer.frame(t.available, "overview", None);
    let (notice, refresh) = checkout_notice(dashboard, viewer, &query).await;
    frame.notice = notice.or_else(|| action_notice(t, &query));
    frame.refresh = refresh;
    frame.title = t.brand.to_owned();
    let page = OverviewPage {
        frame,
        available: format::credits(balance.available),
        held: balance
            .held
            .is_positive()
            .then(|| format::credits(balance.held)),
        debt: balance
            .debt
            .is_positive()
            .then(|| format::credits(balance.debt)),
        plan,
        forecast: forecast_line(t, balance.forecast.as_ref()),
        lots,
        payments: dashboard.payments,
        packages: packages
            .map(|p| p.data)
            .unwrap_or_default()
            .into_iter()
            .map(|p| PackageCard {
                id: p.id,
                name: p.name,
                description: p.description,
                credits: format::credits(p.credits),
                price: format::money(p.price.amount, &p.price.currency),
            })
            .collect(),
        offers,
        card: card.ok().and_then(|c| c.card).map(|c| {
            format!(
                "{} •••• {}, {} {:02}/{}",
                capitalized(&c.brand),
                c.last4,
                t.card_expires,
                c.exp_month,
                c.exp_year
            )
        }),
        topup: TopupForm {
            enabled: topup.as_ref().is_some_and(|t| t.enabled),
            threshold: topup
                .as_ref()
                .map(|t| t.threshold_credits.to_string())
                .unwrap_or_default(),
            // A top-up never set has no amount: the form offers 20 USD.
            amount: topup
                .as_ref()
                .filter(|t| t.amount.amount > 0)
                .map_or_else(|| "20.00".into(), |t| dollars(t.amount.amount)),
            cap: topup
                .as_ref()
                .and_then(|t| t.monthly_cap.as_ref())
                .map(|cap| dollars(cap.amount))
                .unwrap_or_default(),
            failure: topup
                .as_ref()
                .filter(|t| t.state == "backing_off")
                .and_then(|t| t.last_failure.clone()),
        },
        daily: daily.ok().filter(|d| d.enabled).map(|d| DailyLine {
            claimed: d.claimed,
            amount: format::credits(d.amount),
            next: format::instant(d.next_claim_at),
        }),
        nonce: session::new_token("form_").unwrap_or_default(),
    };
    render(StatusCode::OK, &page, &dashboard.checkout_origins)
}

/// Cents as a figure of dollars for a form's field (`2000` → `20.00`).
fn dollars(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The forecast's sentence.
fn forecast_line(t: &Texts, forecast: Option<&views::Forecast>) -> String {
    match forecast {
        Some(views::Forecast {
            daily_rate,
            runs_out_at: Some(at),
        }) => format!(
            "{} {} ({} {}).",
            t.forecast_until,
            format::date(*at),
            format::credits(*daily_rate),
            t.forecast_rate
        ),
        _ => t.forecast_none.to_owned(),
    }
}

/// The notice of a checkout the customer came back from, and whether the
/// page should reload until its credits land.
async fn checkout_notice(
    dashboard: &Dashboard,
    viewer: &Viewer,
    query: &OverviewQuery,
) -> (Option<Notice>, bool) {
    let t = Texts::of(viewer.locale);
    if query.canceled.is_some() {
        return (Some(notice("", t.checkout_canceled)), false);
    }
    let Some(id) = query.checkout.as_deref() else {
        return (None, false);
    };
    if id.is_empty()
        || id.len() > 255
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return (None, false);
    }
    let path = format!("/v1/accounts/{}/checkout/{id}", viewer.account);
    match dashboard
        .api
        .get::<views::CheckoutStatus>(&viewer.principal(), &path)
        .await
    {
        Ok(status) => match status.status.as_str() {
            "granted" | "card_saved" => (Some(notice("ok", t.checkout_done)), false),
            "paid_pending" | "processing" => (Some(notice("", t.checkout_pending)), true),
            "payment_failed" | "expired" => (Some(notice("error", t.checkout_failed)), false),
            _ => (None, false),
        },
        Err(_) => (None, false),
    }
}

fn notice(kind: &'static str, text: &str) -> Notice {
    Notice {
        kind,
        text: text.to_owned(),
    }
}

/// The notice of an action's outcome, named in the query.
fn action_notice(t: &Texts, query: &OverviewQuery) -> Option<Notice> {
    if let Some(code) = query.error.as_deref() {
        return Some(error_notice(t, code));
    }
    let text = match query.done.as_deref()? {
        "saved" => t.saved,
        "claimed" => t.claimed_now,
        "revoked" => t.revoked,
        _ => t.saved,
    };
    Some(notice("ok", text))
}

/// The notice of a refusal's code: its own words for the ones a customer
/// can act on, else the code, which support can look up. Only a code's
/// shape is shown, so that a crafted link cannot put words on the page.
pub fn error_notice(t: &Texts, code: &str) -> Notice {
    let text = match code {
        "payment_method_required" => t.at_needs_card.to_owned(),
        code if !code.is_empty()
            && code.len() <= 64
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            format!("{} {code}", t.error)
        }
        _ => t.error.to_owned(),
    };
    notice("error", &text)
}

/// A page saying the API refused what a page needed.
fn failed(viewer: &Viewer, refusal: &Refusal) -> Response {
    let t = Texts::of(viewer.locale);
    let status = if refusal.status.is_server_error() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        refusal.status
    };
    message(
        status,
        viewer.locale,
        t.brand,
        &error_notice(t, &refusal.code).text,
    )
}

/// The history's query.
#[derive(Default, Deserialize)]
pub struct HistoryQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    frame: Frame,
    filters: Vec<FilterLink>,
    rows: Vec<HistoryRow>,
    kind: &'static str,
    next: Option<String>,
    paged: bool,
}

struct FilterLink {
    code: &'static str,
    label: &'static str,
    current: bool,
}

struct HistoryRow {
    at: String,
    kind: String,
    amount: String,
    balance_after: String,
    details: String,
    paid: Option<String>,
    invoice_url: Option<String>,
    receipt_url: Option<String>,
}

/// The entries of one page of history.
const HISTORY_PAGE: usize = 25;

/// `GET /dashboard/history`.
pub async fn history(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    match viewer(&dashboard, &headers).await {
        Ok(viewer) => history_page(&dashboard, &viewer, query).await,
        Err(response) => response,
    }
}

/// Builds a page of `viewer`'s history.
pub async fn history_page(dashboard: &Dashboard, viewer: &Viewer, query: HistoryQuery) -> Response {
    let t = Texts::of(viewer.locale);
    let kind = HistoryKind::parse(query.kind.as_deref());
    let mut path = format!(
        "/v1/accounts/{}/transactions?limit={HISTORY_PAGE}",
        viewer.account
    );
    let (types, sources) = kind.query();
    if let Some(types) = types {
        path.push_str(&format!("&type={types}"));
    }
    if let Some(sources) = sources {
        path.push_str(&format!("&source={sources}"));
    }
    let cursor = query
        .cursor
        .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if let Some(cursor) = &cursor {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let page = match dashboard
        .api
        .get::<views::Transactions>(&viewer.principal(), &path)
        .await
    {
        Ok(page) => page,
        Err(refusal) => return failed(viewer, &refusal),
    };
    let rows = page.data.into_iter().map(|tx| history_row(t, tx)).collect();
    let page = HistoryPage {
        frame: viewer.frame(t.history_title, "history", None),
        filters: HistoryKind::ALL
            .into_iter()
            .map(|k| FilterLink {
                code: k.code(),
                label: t.history_kind(k),
                current: k == kind,
            })
            .collect(),
        rows,
        kind: kind.code(),
        next: page.next_cursor,
        paged: cursor.is_some(),
    };
    render(StatusCode::OK, &page, &[])
}

fn history_row(t: &Texts, tx: views::Transaction) -> HistoryRow {
    let kind = match (tx.kind.as_str(), tx.source.as_deref()) {
        ("grant", Some(source)) => t.source(source).to_owned(),
        (kind, _) => t.tx_type(kind).to_owned(),
    };
    let details = tx
        .feature
        .clone()
        .or_else(|| tx.reason.clone())
        .unwrap_or_default();
    let (paid, invoice_url, receipt_url) = match tx.payment {
        Some(payment) => (
            Some(format::money(payment.amount_paid, &payment.currency)),
            payment.invoice_url,
            payment.receipt_url,
        ),
        None => (None, None, None),
    };
    HistoryRow {
        at: format::instant(tx.created_at),
        kind,
        amount: format::signed_credits(tx.amount),
        balance_after: format::credits(tx.balance_after),
        details,
        paid,
        invoice_url,
        receipt_url,
    }
}

/// The usage page's query.
#[derive(Default, Deserialize)]
pub struct UsageQuery {
    by: Option<String>,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    frame: Frame,
    splits: Vec<FilterLink>,
    chart: String,
    legend: Vec<LegendEntry>,
    table: Vec<UsageRow>,
    total: String,
    calls: Vec<CallRow>,
}

struct LegendEntry {
    colour: usize,
    name: String,
}

struct UsageRow {
    day: String,
    group: String,
    spent: String,
}

struct CallRow {
    at: String,
    model: String,
    input: i64,
    output: i64,
    cost: String,
}

/// The days the usage chart covers.
const USAGE_DAYS: i64 = 30;

/// `GET /dashboard/usage`.
pub async fn usage(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<UsageQuery>,
    headers: HeaderMap,
) -> Response {
    match viewer(&dashboard, &headers).await {
        Ok(viewer) => usage_page(&dashboard, &viewer, query).await,
        Err(response) => response,
    }
}

/// Builds `viewer`'s usage page: the last 30 days' spend per day, split
/// by model, feature or project.
pub async fn usage_page(dashboard: &Dashboard, viewer: &Viewer, query: UsageQuery) -> Response {
    let t = Texts::of(viewer.locale);
    let by = match query.by.as_deref() {
        Some("feature") => "feature",
        Some("project") => "project",
        _ => "model",
    };
    let now = dashboard.clock.now();
    let today = Timestamp::from_micros(now.micros().div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY);
    let days: Vec<Timestamp> = (0..USAGE_DAYS)
        .map(|d| today.plus_secs(-(USAGE_DAYS - 1 - d) * 86_400))
        .collect();
    let who = viewer.principal();
    let account = &viewer.account;
    let per_day = days.iter().map(|day| {
        let path = format!(
            "/v1/accounts/{account}/usage?group_by={by}&from={}&to={}",
            day,
            day.plus_secs(86_400)
        );
        let who = who.clone();
        async move { dashboard.api.get::<views::Usage>(&who, &path).await }
    });
    let calls_path = format!("/v1/accounts/{account}/usage/calls?limit=20");
    let (per_day, calls) = tokio::join!(
        futures_util::future::join_all(per_day),
        dashboard.api.get::<views::Calls>(&who, &calls_path)
    );
    let mut groups: BTreeMap<String, Vec<Amount>> = BTreeMap::new();
    for (at, day) in per_day.into_iter().enumerate() {
        let day = match day {
            Ok(day) => day,
            Err(refusal) => return failed(viewer, &refusal),
        };
        for group in day.data {
            let name = group.key.unwrap_or_else(|| t.none_label.to_owned());
            let series = groups
                .entry(name)
                .or_insert_with(|| vec![Amount::ZERO; days.len()]);
            series[at] = series[at].checked_add(group.cost).unwrap_or(series[at]);
        }
    }
    let mut series: Vec<Series> = groups
        .into_iter()
        .map(|(name, per_day)| Series { name, per_day })
        .collect();
    // The biggest groups get their own colour; the rest fold into "other".
    series.sort_by_key(|s| std::cmp::Reverse(s.per_day.iter().map(|a| a.micros()).sum::<i64>()));
    let series = chart::fold(series, t.other);
    let mut table = Vec::new();
    let mut total = Amount::ZERO;
    for (at, day) in days.iter().enumerate().rev() {
        for group in &series {
            let spent = group.per_day[at];
            if spent.is_zero() {
                continue;
            }
            total = total.checked_add(spent).unwrap_or(total);
            table.push(UsageRow {
                day: format::date(*day),
                group: group.name.clone(),
                spent: format::credits(spent),
            });
        }
    }
    let page = UsagePage {
        frame: viewer.frame(t.usage_title, "usage", None),
        splits: [
            ("model", t.by_model),
            ("feature", t.by_feature),
            ("project", t.by_project),
        ]
        .into_iter()
        .map(|(code, label)| FilterLink {
            code,
            label,
            current: code == by,
        })
        .collect(),
        chart: chart::draw(&days, &series, t.chart_label),
        legend: series
            .iter()
            .enumerate()
            .map(|(colour, s)| LegendEntry {
                colour,
                name: s.name.clone(),
            })
            .collect(),
        table,
        total: format::credits(total),
        calls: calls
            .map(|c| c.data)
            .unwrap_or_default()
            .into_iter()
            .map(|c| CallRow {
                at: format::instant(c.created_at),
                model: c.model,
                input: c.input_tokens,
                output: c.output_tokens,
                cost: if c.billing_mode == "byok" {
                    "BYOK".into()
                } else {
                    format::credits(c.cost)
                },
            })
            .collect(),
    };
    render(StatusCode::OK, &page, &[])
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    frame: Frame,
    new_key: Option<String>,
    keys: Vec<KeyRow>,
    byok: bool,
    provider_keys: Vec<views::ProviderKey>,
    providers: Vec<&'static str>,
}

struct KeyRow {
    id: String,
    name: String,
    last4: String,
    project: String,
    limit: String,
    created: String,
    last_used: String,
}

/// `GET /dashboard/keys`.
pub async fn keys(State(dashboard): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    match viewer(&dashboard, &headers).await {
        Ok(viewer) => keys_page(&dashboard, &viewer, None, None).await,
        Err(response) => response,
    }
}

/// The providers a customer may bring their own key for.
const PROVIDERS: [&str; 2] = ["openai", "anthropic"];

/// Builds `viewer`'s keys page, with a new key shown once when one was
/// just made.
pub async fn keys_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    new_key: Option<String>,
    notice: Option<Notice>,
) -> Response {
    let t = Texts::of(viewer.locale);
    let account = &viewer.account;
    let keys_path = format!("/v1/accounts/{account}/keys?limit=100");
    let account_path = format!("/v1/accounts/{account}");
    let provider_path = format!("/v1/accounts/{account}/provider-keys");
    let who = viewer.principal();
    let operator = client::operator();
    let (keys, account_view, provider_keys) = tokio::join!(
        dashboard.api.get::<views::Keys>(&operator, &keys_path),
        dashboard.api.get::<AccountMode>(&who, &account_path),
        dashboard
            .api
            .get::<views::ProviderKeys>(&who, &provider_path),
    );
    let keys = match keys {
        Ok(keys) => keys.data,
        Err(refusal) => return failed(viewer, &refusal),
    };
    let page = KeysPage {
        frame: viewer.frame(t.keys_title, "keys", notice),
        new_key,
        keys: keys
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| KeyRow {
                id: k.id,
                name: k.name,
                last4: k.last4.unwrap_or_default(),
                project: k.project.unwrap_or_default(),
                limit: k
                    .spend_limit
                    .map(|l| format!("{} / {}", format::credits(l.amount), l.period))
                    .unwrap_or_default(),
                created: format::instant(k.created_at),
                last_used: k.last_used_at.map(format::instant).unwrap_or_default(),
            })
            .collect(),
        byok: account_view.is_ok_and(|a| a.billing_mode == "byok"),
        provider_keys: provider_keys.map(|p| p.data).unwrap_or_default(),
        providers: PROVIDERS.to_vec(),
    };
    render(StatusCode::OK, &page, &[])
}

/// The account's billing mode, from `GET /v1/accounts/{id}`.
#[derive(Deserialize)]
struct AccountMode {
    billing_mode: String,
}

/// The ids of the account's usable keys, for an action on one of them.
pub async fn key_ids(
    dashboard: &Dashboard,
    account: &AccountId,
) -> Result<BTreeSet<String>, Refusal> {
    let path = format!("/v1/accounts/{account}/keys?limit=100");
    let keys = dashboard
        .api
        .get::<views::Keys>(&client::operator(), &path)
        .await?;
    Ok(keys
        .data
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| k.id)
        .collect())
}
