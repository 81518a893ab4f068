//! The pages: the customer's Credits page, the admin panel, their
//! stylesheet and the embed's script, each page rendered from a template
//! checked at compile time with the pages' security headers.

pub mod actions;
pub mod admin;
pub mod assets;
pub mod customer;
pub mod views;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Dashboard;
use crate::domain::locale::Locale;
use crate::domain::text::Texts;
use crate::security;

/// Every page's routes, answered with the dashboard's state.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/dashboard/link/{token}", get(customer::open))
        .route("/dashboard", get(customer::overview))
        .route("/dashboard/history", get(customer::history))
        .route("/dashboard/usage", get(customer::usage))
        .route("/dashboard/keys", get(customer::keys))
        .route("/dashboard/actions/{action}", post(actions::act))
        .route("/dashboard/sign-out", post(actions::sign_out))
        .route("/assets/creditd.css", get(assets::stylesheet))
        .route("/embed/creditd.js", get(assets::embed_script))
        .merge(admin::router())
        .with_state(dashboard)
}

/// A line shown above a page's content after an action.
pub struct Notice {
    /// `ok`, `error`, or empty for a neutral one: its CSS class.
    pub kind: &'static str,
    /// What it says.
    pub text: String,
}

/// What every customer page shares: its language, title and navigation,
/// the session's CSRF token, and whether it may change anything.
pub struct Frame {
    /// The texts in the page's language.
    pub t: &'static Texts,
    /// The page's `lang`.
    pub lang: &'static str,
    /// The page's title.
    pub title: String,
    /// The token every form carries.
    pub csrf: String,
    /// An operator's read-only view: no form is sent.
    pub read_only: bool,
    /// Where the page's sections are: `/dashboard`, or the operator's
    /// read-only view of the account.
    pub base: String,
    /// Where "Back to the app" leads.
    pub return_url: Option<String>,
    /// A notice after an action.
    pub notice: Option<Notice>,
    /// The section shown, for the navigation.
    pub section: &'static str,
    /// Whether the page reloads itself (waiting for a payment to land).
    pub refresh: bool,
}

/// A page of message alone: a link that opens nothing, a session ended.
#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    lang: &'a str,
    title: &'a str,
    text: &'a str,
}

/// A page rendered with the pages' headers.
pub fn page(status: StatusCode, html: String, form_origins: &[String]) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    security::page_headers(&mut response, form_origins);
    response
}

/// Renders `template` as a page, or a plain 500 when it cannot be.
pub fn render(status: StatusCode, template: &impl Template, form_origins: &[String]) -> Response {
    match template.render() {
        Ok(html) => page(status, html, form_origins),
        Err(error) => {
            tracing::error!(%error, "rendering a page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".into(),
                &[],
            )
        }
    }
}

/// A page that says only `text`, in `locale`.
pub fn message(status: StatusCode, locale: Locale, title: &str, text: &str) -> Response {
    render(
        status,
        &Message {
            lang: locale.code(),
            title,
            text,
        },
        &[],
    )
}

/// The session's ended page, in the browser's language.
pub fn session_ended(headers: &HeaderMap) -> Response {
    let locale = Locale::choose(None, accept_language(headers));
    let t = Texts::of(locale);
    message(StatusCode::UNAUTHORIZED, locale, t.brand, t.session_ended)
}

/// The request's `Accept-Language`.
pub fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

/// A 303 to `location`, with the pages' headers.
pub fn see_other(location: &str) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    security::page_headers(&mut response, &[]);
    response
}
