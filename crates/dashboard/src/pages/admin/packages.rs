//! Packages: list every one, for sale or not, create or edit one with its
//! names and descriptions in English and Chinese, and take one off sale or
//! put it back.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::super::{Notice, render, see_other};
use super::{Notified, Operator, filled, invalid, is_record_id, operator, operator_of_form};
use crate::Dashboard;
use crate::domain::format;

/// The packages' routes.
pub(super) fn router() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/admin/packages", get(packages).post(save))
        .route("/admin/packages/{id}/active", post(set_active))
}

#[derive(Template)]
#[template(path = "admin_packages.html")]
struct PackagesPage {
    title: &'static str,
    csrf: String,
    section: &'static str,
    notice: Option<Notice>,
    packages: Vec<PackageRow>,
    form: PackageForm,
    editing: bool,
}

struct PackageRow {
    id: String,
    name: String,
    credits: String,
    price: String,
    active: bool,
}

/// `GET /v1/packages`, as an admin key reads it: every package, its texts
/// as stored.
#[derive(Deserialize)]
struct Packages {
    data: Vec<Package>,
}

/// A package as stored: what the form shows and a change sends back.
#[derive(Deserialize)]
struct Package {
    id: String,
    name: Value,
    #[serde(default)]
    description: Option<Value>,
    credits: String,
    price: Value,
    #[serde(default)]
    provider_price_id: Option<String>,
    active: bool,
}

/// The package form, as sent and as shown.
#[derive(Default, Deserialize)]
struct PackageForm {
    csrf: Option<String>,
    id: Option<String>,
    name_en: Option<String>,
    name_zh: Option<String>,
    description_en: Option<String>,
    description_zh: Option<String>,
    credits: Option<String>,
    price_usd: Option<String>,
    provider_price_id: Option<String>,
    active: Option<String>,
}

/// The text of `text` (one string, or strings by locale) in `locale`; a
/// single string counts as English.
fn text_in(text: Option<&Value>, locale: &str) -> Option<String> {
    match text? {
        Value::String(one) if locale == "en" => Some(one.clone()),
        Value::Object(by_locale) => by_locale.get(locale)?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Texts by locale from the form's English and Chinese fields; none when
/// both are empty.
fn texts(en: &Option<String>, zh: &Option<String>) -> Option<Value> {
    let mut by_locale = Map::new();
    for (locale, text) in [("en", en), ("zh", zh)] {
        if let Some(text) = filled(text) {
            by_locale.insert(locale.into(), Value::String(text.into()));
        }
    }
    (!by_locale.is_empty()).then_some(Value::Object(by_locale))
}

impl PackageForm {
    fn of(package: &Package) -> PackageForm {
        let price_usd = (package.price["currency"] == "usd")
            .then(|| package.price["amount"].as_i64())
            .flatten()
            .map(|cents| format!("{}.{:02}", cents / 100, cents % 100));
        PackageForm {
            csrf: None,
            id: Some(package.id.clone()),
            name_en: text_in(Some(&package.name), "en"),
            name_zh: text_in(Some(&package.name), "zh"),
            description_en: text_in(package.description.as_ref(), "en"),
            description_zh: text_in(package.description.as_ref(), "zh"),
            credits: Some(package.credits.clone()),
            price_usd,
            provider_price_id: package.provider_price_id.clone(),
            active: package.active.then(|| "on".into()),
        }
    }

    /// The package's id and the body of its `PUT`, or what is wrong.
    fn body(&self) -> Result<(String, Value), &'static str> {
        let id = filled(&self.id)
            .filter(|id| is_record_id(id))
            .ok_or("the id is letters, digits and _ . : - only, at most 128 of them")?;
        let name = texts(&self.name_en, &self.name_zh).ok_or("give a name")?;
        let credits = filled(&self.credits).ok_or("give the credits")?;
        let cents = filled(&self.price_usd)
            .and_then(format::cents_of)
            .ok_or("give the price in USD, such as 9.99")?;
        let mut body = json!({
            "name": name,
            "credits": credits,
            "price": {"amount": cents, "currency": "usd"},
            "active": self.active.is_some(),
        });
        if let Some(description) = texts(&self.description_en, &self.description_zh) {
            body["description"] = description;
        }
        if let Some(price_id) = filled(&self.provider_price_id) {
            body["provider_price_id"] = json!(price_id);
        }
        Ok((id.to_owned(), body))
    }
}

/// `GET /admin/packages`: every package, and the form (filled with the
/// package `?edit=` names).
async fn packages(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<Notified>,
    headers: HeaderMap,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let notice = query.notice(&[("saved", "Package saved."), ("changed", "Package changed.")]);
    let list = read_packages(&dashboard, &operator).await;
    let form = query
        .edit
        .as_deref()
        .and_then(|id| list.iter().find(|p| p.id == id))
        .map(PackageForm::of);
    let editing = form.is_some();
    let page = page(operator, notice, list, form.unwrap_or_default(), editing);
    render(StatusCode::OK, &page, &[])
}

async fn read_packages(dashboard: &Dashboard, operator: &Operator) -> Vec<Package> {
    match dashboard
        .api
        .get::<Packages>(&operator.principal, "/v1/packages")
        .await
    {
        Ok(list) => list.data,
        Err(refusal) => {
            tracing::warn!(%refusal, "listing packages failed");
            Vec::new()
        }
    }
}

fn page(
    operator: Operator,
    notice: Option<Notice>,
    list: Vec<Package>,
    form: PackageForm,
    editing: bool,
) -> PackagesPage {
    let packages = list
        .into_iter()
        .map(|p| PackageRow {
            name: text_in(Some(&p.name), "en")
                .or_else(|| {
                    p.name
                        .as_object()
                        .and_then(|m| m.values().next()?.as_str().map(str::to_owned))
                })
                .unwrap_or_default(),
            price: match (p.price["amount"].as_i64(), p.price["currency"].as_str()) {
                (Some(amount), Some(currency)) => format::money(amount, currency),
                _ => String::new(),
            },
            credits: p.credits,
            active: p.active,
            id: p.id,
        })
        .collect();
    PackagesPage {
        title: "Packages",
        csrf: operator.csrf,
        section: "packages",
        notice,
        packages,
        form,
        editing,
    }
}

/// `POST /admin/packages`: creates or replaces a package; a refusal shows
/// the form again as sent, with the API's word.
async fn save(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<PackageForm>,
) -> Response {
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let notice = match form.body() {
        Err(wrong) => invalid(wrong),
        Ok((id, body)) => {
            let path = format!("/v1/packages/{id}");
            let put = dashboard
                .api
                .send::<Value, _>(&operator.principal, Method::PUT, &path, Some(&body), None)
                .await;
            match put {
                Ok(_) => return see_other("/admin/packages?done=saved"),
                Err(refusal) => super::refused(&refusal),
            }
        }
    };
    let list = read_packages(&dashboard, &operator).await;
    let page = page(operator, Some(notice), list, form, true);
    render(StatusCode::BAD_REQUEST, &page, &[])
}

#[derive(Deserialize)]
struct ActiveForm {
    csrf: Option<String>,
    active: Option<String>,
}

/// `POST /admin/packages/{id}/active`: takes a package off sale
/// (`active=false`) or puts it back, every other field as stored.
async fn set_active(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActiveForm>,
) -> Response {
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    if !is_record_id(&id) {
        return see_other("/admin/packages?error=invalid_id");
    }
    let path = format!("/v1/packages/{id}");
    let who = &operator.principal;
    let stored = match dashboard.api.get::<Package>(who, &path).await {
        Ok(stored) => stored,
        Err(refusal) => return see_other(&format!("/admin/packages?error={}", refusal.code)),
    };
    let mut body = json!({
        "name": stored.name,
        "credits": stored.credits,
        "price": stored.price,
        "active": form.active.as_deref() == Some("true"),
    });
    if let Some(description) = stored.description {
        body["description"] = description;
    }
    if let Some(price_id) = stored.provider_price_id {
        body["provider_price_id"] = json!(price_id);
    }
    let put = dashboard
        .api
        .send::<Value, _>(who, Method::PUT, &path, Some(&body), None)
        .await;
    match put {
        Ok(_) => see_other("/admin/packages?done=changed"),
        Err(refusal) => see_other(&format!("/admin/packages?error={}", refusal.code)),
    }
}
