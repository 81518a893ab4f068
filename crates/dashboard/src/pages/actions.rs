//! What the Credits page's forms do: each a POST that passes the CSRF
//! check, asks the API for one change on the session's own account, and
//! answers where the browser goes next.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::customer::{self, Viewer, error_notice};
use super::{Notice, see_other, views};
use crate::Dashboard;
use crate::client::{self, Refusal};
use crate::domain::format;
use crate::domain::text::Texts;
use crate::security::{self, CUSTOMER_COOKIE};
use crate::session;

/// Every field any of the page's forms sends.
#[derive(Default, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    /// A token made with the form, sent as the Idempotency-Key of what it
    /// starts: sending the form twice starts one checkout.
    nonce: Option<String>,
    package_id: Option<String>,
    usd: Option<String>,
    plan_id: Option<String>,
    enabled: Option<String>,
    threshold: Option<String>,
    amount: Option<String>,
    monthly_cap: Option<String>,
    key_id: Option<String>,
    name: Option<String>,
    project: Option<String>,
    daily_limit: Option<String>,
    provider: Option<String>,
    api_key: Option<String>,
}

/// `POST /dashboard/actions/{action}`.
pub async fn act(
    State(dashboard): State<Arc<Dashboard>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let viewer = match customer::viewer(&dashboard, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let own_origin = security::origin_of(&dashboard.public_url);
    if !security::form_is_genuine(&headers, form.csrf.as_deref(), &viewer.csrf, &own_origin) {
        return forbidden(&viewer);
    }
    let outcome = match action.as_str() {
        "checkout" => checkout(&dashboard, &viewer, &form).await,
        "payment-method" => payment_method(&dashboard, &viewer, &form).await,
        "auto-topup" => auto_topup(&dashboard, &viewer, &form).await,
        "plan" => plan(&dashboard, &viewer, &form).await,
        "cancel-plan" => cancel_plan(&dashboard, &viewer).await,
        "daily-reward" => daily_reward(&dashboard, &viewer).await,
        "create-key" => return create_key(&dashboard, &viewer, &form).await,
        "revoke-key" => return revoke_key(&dashboard, &viewer, &form).await,
        "provider-key" => return provider_key(&dashboard, &viewer, &form, false).await,
        "remove-provider-key" => return provider_key(&dashboard, &viewer, &form, true).await,
        _ => return super::message(StatusCode::NOT_FOUND, viewer.locale, "404", "404"),
    };
    match outcome {
        Ok(location) => see_other_to(&location, &dashboard),
        Err(refusal) => see_other(&format!("/dashboard?error={}", refusal.code)),
    }
}

/// `POST /dashboard/sign-out`: ends the session and forgets its cookie.
pub async fn sign_out(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let viewer = match customer::viewer(&dashboard, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let own_origin = security::origin_of(&dashboard.public_url);
    if !security::form_is_genuine(&headers, form.csrf.as_deref(), &viewer.csrf, &own_origin) {
        return forbidden(&viewer);
    }
    if let Some(cookie) = security::cookie(&headers, CUSTOMER_COOKIE)
        && let Err(error) = session::end(dashboard.store.as_ref(), cookie).await
    {
        tracing::warn!(%error, "ending a dashboard session failed");
    }
    let t = Texts::of(viewer.locale);
    let mut response = super::message(StatusCode::OK, viewer.locale, t.brand, t.session_ended);
    let cleared = security::cleared_cookie(CUSTOMER_COOKIE, "/dashboard", dashboard.secure());
    if let Ok(value) = cleared.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A forged or stale form: nothing changed.
fn forbidden(viewer: &Viewer) -> Response {
    let t = Texts::of(viewer.locale);
    super::message(
        StatusCode::FORBIDDEN,
        viewer.locale,
        t.brand,
        &error_notice(t, "forbidden").text,
    )
}

/// A 303 to a page of the dashboard or to the provider's hosted page,
/// allowed as a form's destination by the pages' policy.
fn see_other_to(location: &str, dashboard: &Dashboard) -> Response {
    let mut response = see_other(location);
    crate::security::page_headers(&mut response, &dashboard.checkout_origins);
    response
}

/// The nonce of a form, when it has the shape of one.
fn nonce(form: &ActionForm) -> Option<&str> {
    form.nonce
        .as_deref()
        .filter(|n| crate::domain::token::is_shaped("form_", n))
}

/// Where the provider sends the customer back: the Credits page, which
/// says what became of the checkout.
fn returns(dashboard: &Dashboard) -> (String, String) {
    (
        format!(
            "{}/dashboard?checkout={{CHECKOUT_SESSION_ID}}",
            dashboard.public_url
        ),
        format!("{}/dashboard?canceled=1", dashboard.public_url),
    )
}

fn refused(code: &str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        code: code.into(),
        message: code.into(),
    }
}

/// A checkout for a package, a custom amount in dollars, or a paid plan.
async fn checkout(
    dashboard: &Dashboard,
    viewer: &Viewer,
    form: &ActionForm,
) -> Result<String, Refusal> {
    let (success_url, cancel_url) = returns(dashboard);
    let mut body = json!({
        "locale": viewer.locale.code(),
        "success_url": success_url,
        "cancel_url": cancel_url,
    });
    if let Some(package) = &form.package_id {
        body["package_id"] = json!(package);
    } else if let Some(plan) = &form.plan_id {
        body["plan_id"] = json!(plan);
    } else {
        let cents = form
            .usd
            .as_deref()
            .and_then(format::cents_of)
            .ok_or_else(|| refused("invalid_money"))?;
        body["amount"] = json!({"amount": cents, "currency": "usd"});
    }
    let path = format!("/v1/accounts/{}/checkout", viewer.account);
    let session: views::Checkout = dashboard
        .api
        .send(
            &viewer.principal(),
            Method::POST,
            &path,
            Some(&body),
            nonce(form),
        )
        .await?;
    Ok(session.checkout_url)
}

/// A checkout in setup mode, to add or replace the card.
async fn payment_method(
    dashboard: &Dashboard,
    viewer: &Viewer,
    form: &ActionForm,
) -> Result<String, Refusal> {
    let (success_url, cancel_url) = returns(dashboard);
    let body = json!({
        "locale": viewer.locale.code(),
        "success_url": success_url,
        "cancel_url": cancel_url,
    });
    let path = format!("/v1/accounts/{}/payment-method/setup", viewer.account);
    let session: views::Checkout = dashboard
        .api
        .send(
            &viewer.principal(),
            Method::POST,
            &path,
            Some(&body),
            nonce(form),
        )
        .await?;
    Ok(session.checkout_url)
}

/// The auto top-up's settings.
async fn auto_topup(
    dashboard: &Dashboard,
    viewer: &Viewer,
    form: &ActionForm,
) -> Result<String, Refusal> {
    let dollars = |field: Option<&str>| field.and_then(format::cents_of);
    let amount = dollars(form.amount.as_deref()).ok_or_else(|| refused("invalid_auto_topup"))?;
    let threshold = form
        .threshold
        .as_deref()
        .map(str::trim)
        .filter(|t| ledger::Amount::parse_decimal(t).is_ok())
        .ok_or_else(|| refused("invalid_auto_topup"))?;
    let cap = match form
        .monthly_cap
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        Some(cap) => Some(format::cents_of(cap).ok_or_else(|| refused("invalid_auto_topup"))?),
        None => None,
    };
    let body = json!({
        "enabled": form.enabled.is_some(),
        "threshold": threshold,
        "amount": {"amount": amount, "currency": "usd"},
        "monthly_cap": cap.map(|cap| json!({"amount": cap, "currency": "usd"})),
    });
    let path = format!("/v1/accounts/{}/auto-topup", viewer.account);
    dashboard
        .api
        .send::<serde_json::Value, _>(&viewer.principal(), Method::PUT, &path, Some(&body), None)
        .await?;
    Ok("/dashboard?done=saved".into())
}

/// Moves the account onto a free plan, or starts the checkout of a paid one.
async fn plan(
    dashboard: &Dashboard,
    viewer: &Viewer,
    form: &ActionForm,
) -> Result<String, Refusal> {
    let plan_id = form
        .plan_id
        .as_deref()
        .ok_or_else(|| refused("invalid_request"))?;
    let plans: views::Plans = dashboard.api.get(&viewer.principal(), "/v1/plans").await?;
    let plan = plans
        .data
        .iter()
        .find(|p| p.id == plan_id)
        .ok_or_else(|| refused("plan_not_found"))?;
    if plan.price.is_some() {
        return checkout(dashboard, viewer, form).await;
    }
    #[derive(Serialize)]
    struct Move<'a> {
        plan_id: &'a str,
    }
    let path = format!("/v1/accounts/{}/subscription", viewer.account);
    dashboard
        .api
        .send::<serde_json::Value, _>(
            &client::operator(),
            Method::PUT,
            &path,
            Some(&Move { plan_id }),
            nonce(form),
        )
        .await?;
    Ok("/dashboard?done=saved".into())
}

/// Cancels the plan at the end of its period.
async fn cancel_plan(dashboard: &Dashboard, viewer: &Viewer) -> Result<String, Refusal> {
    let path = format!("/v1/accounts/{}/subscription", viewer.account);
    dashboard
        .api
        .send::<serde_json::Value, ()>(&client::operator(), Method::DELETE, &path, None, None)
        .await?;
    Ok("/dashboard?done=saved".into())
}

/// Claims today's daily reward.
async fn daily_reward(dashboard: &Dashboard, viewer: &Viewer) -> Result<String, Refusal> {
    let path = format!("/v1/accounts/{}/daily-reward", viewer.account);
    dashboard
        .api
        .send::<serde_json::Value, ()>(&viewer.principal(), Method::POST, &path, None, None)
        .await?;
    Ok("/dashboard?done=claimed".into())
}

/// Creates a gateway key for the account and shows it once.
async fn create_key(dashboard: &Dashboard, viewer: &Viewer, form: &ActionForm) -> Response {
    let t = Texts::of(viewer.locale);
    let mut body = json!({"name": form.name.as_deref().unwrap_or("").trim()});
    if let Some(project) = form
        .project
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        body["project"] = json!(project);
    }
    if let Some(limit) = form
        .daily_limit
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        body["spend_limit"] = json!({"amount": limit, "period": "day"});
    }
    let path = format!("/v1/accounts/{}/keys", viewer.account);
    let made = dashboard
        .api
        .send::<views::NewKey, _>(&client::operator(), Method::POST, &path, Some(&body), None)
        .await;
    match made {
        Ok(key) => customer::keys_page(dashboard, viewer, Some(key.key), None).await,
        Err(refusal) => {
            customer::keys_page(
                dashboard,
                viewer,
                None,
                Some(error_notice(t, &refusal.code)),
            )
            .await
        }
    }
}

/// Revokes one of the account's keys; a key of another account is not
/// found among them, and nothing happens to it.
async fn revoke_key(dashboard: &Dashboard, viewer: &Viewer, form: &ActionForm) -> Response {
    let t = Texts::of(viewer.locale);
    let id = form.key_id.clone().unwrap_or_default();
    let notice = match customer::key_ids(dashboard, &viewer.account).await {
        Ok(ids) if ids.contains(&id) => {
            let path = format!("/v1/keys/{id}");
            match dashboard
                .api
                .send::<serde_json::Value, ()>(
                    &client::operator(),
                    Method::DELETE,
                    &path,
                    None,
                    None,
                )
                .await
            {
                Ok(_) => notice_ok(t.revoked),
                Err(refusal) => error_notice(t, &refusal.code),
            }
        }
        Ok(_) => error_notice(t, "key_not_found"),
        Err(refusal) => error_notice(t, &refusal.code),
    };
    customer::keys_page(dashboard, viewer, None, Some(notice)).await
}

fn notice_ok(text: &str) -> Notice {
    Notice {
        kind: "ok",
        text: text.to_owned(),
    }
}

/// Saves or removes the account's own key of a provider.
async fn provider_key(
    dashboard: &Dashboard,
    viewer: &Viewer,
    form: &ActionForm,
    remove: bool,
) -> Response {
    let t = Texts::of(viewer.locale);
    let provider = form.provider.as_deref().unwrap_or("");
    if !["openai", "anthropic"].contains(&provider) {
        return customer::keys_page(
            dashboard,
            viewer,
            None,
            Some(error_notice(t, "invalid_request")),
        )
        .await;
    }
    let path = format!("/v1/accounts/{}/provider-keys/{provider}", viewer.account);
    let who = viewer.principal();
    let done = if remove {
        dashboard
            .api
            .send::<serde_json::Value, ()>(&who, Method::DELETE, &path, None, None)
            .await
    } else {
        let body = json!({"api_key": form.api_key.as_deref().unwrap_or("").trim()});
        dashboard
            .api
            .send::<serde_json::Value, _>(&who, Method::PUT, &path, Some(&body), None)
            .await
    };
    let notice = match done {
        Ok(_) => notice_ok(t.saved),
        Err(refusal) => error_notice(t, &refusal.code),
    };
    customer::keys_page(dashboard, viewer, None, Some(notice)).await
}
