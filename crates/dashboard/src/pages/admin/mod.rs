//! The operator's admin panel: sign in with an admin key, find an account
//! and act on it, keep the packages, plans, prices and credit settings, and
//! see the service's health. Every call goes through the API as the admin
//! key the session signed in with.

mod accounts;
mod health;
mod packages;
mod plans;
mod prices;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use server::{KeyHash, KeyKind, Principal};

use super::{Notice, render, see_other};
use crate::Dashboard;
use crate::client::Refusal;
use crate::domain::locale::Locale;
use crate::domain::session::ADMIN_SESSION_TTL_SECS;
use crate::security::{self, ADMIN_COOKIE};
use crate::session::{self, Who};

/// The admin panel's routes.
pub fn router() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/sign-out", post(sign_out))
        .merge(accounts::router())
        .merge(packages::router())
        .merge(plans::router())
        .merge(prices::router())
        .merge(settings::router())
        .merge(health::router())
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
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let address = client.map(|Extension(ConnectInfo(peer))| peer.ip());
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
    if !dashboard.sign_ins.allows(address) {
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
        dashboard.sign_ins.failed(address);
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
    if let Err(response) = operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        return response;
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

/// The operator of a form's POST, when the form is genuine: their session,
/// its CSRF token, and this origin. Otherwise the page to answer: the
/// sign-in page, or a refusal that changed nothing.
async fn operator_of_form(
    dashboard: &Dashboard,
    headers: &HeaderMap,
    sent: Option<&str>,
) -> Result<Operator, Response> {
    let operator = operator(dashboard, headers).await?;
    let own_origin = security::origin_of(&dashboard.public_url);
    if security::form_is_genuine(headers, sent, &operator.csrf, &own_origin) {
        Ok(operator)
    } else {
        Err(forbidden())
    }
}

fn forbidden() -> Response {
    super::message(
        StatusCode::FORBIDDEN,
        Locale::En,
        "Refused",
        "This form did not come from this panel; nothing changed.",
    )
}

/// A page's query: after a change, `done` names what was done and `error`
/// the API's code when it refused; `edit` names the record whose form to
/// fill.
#[derive(Default, Deserialize)]
struct Notified {
    done: Option<String>,
    error: Option<String>,
    edit: Option<String>,
}

impl Notified {
    /// The notice to show, from the texts of the `done` codes a page knows.
    fn notice(&self, done: &[(&str, &str)]) -> Option<Notice> {
        if let Some(code) = self.error.as_deref() {
            return Some(super::customer::error_notice(
                &crate::domain::text::EN,
                code,
            ));
        }
        let code = self.done.as_deref()?;
        done.iter()
            .find(|(known, _)| *known == code)
            .map(|(_, text)| Notice {
                kind: "ok",
                text: (*text).to_owned(),
            })
    }
}

/// The notice for a change the API refused, with its message: the operator
/// sees what to correct.
fn refused(refusal: &Refusal) -> Notice {
    Notice {
        kind: "error",
        text: format!("Not saved: {} ({})", refusal.message, refusal.code),
    }
}

/// The notice for a form the panel could not read before asking the API.
fn invalid(text: &str) -> Notice {
    Notice {
        kind: "error",
        text: format!("Not saved: {text}"),
    }
}

/// A form's text field, trimmed; none when empty.
fn filled(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Whether `id` is shaped as the API's record ids are (`credits-100`,
/// `pro`): safe to put in a path.
fn is_record_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.bytes().all(|b| b == b'.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// An option of a select, and whether it is the one chosen.
struct Choice {
    value: &'static str,
    selected: bool,
}

/// The options of a select of `values`, `chosen` (or the first) selected.
fn choices(values: &[&'static str], chosen: Option<&str>) -> Vec<Choice> {
    let chosen = chosen.unwrap_or(values[0]);
    values
        .iter()
        .map(|value| Choice {
            value,
            selected: *value == chosen,
        })
        .collect()
}
