//! Prices: the gateway's model catalog page by page, a model's price set
//! by hand, a price list imported (LiteLLM's or models.dev's), and the
//! starter catalog imported.

use std::sync::Arc;

use askama::Template;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::super::{Notice, render, see_other};
use super::{CsrfForm, Operator, filled, invalid, operator, operator_of_form};
use crate::Dashboard;

/// The largest import form the panel reads, in bytes: a price list sent
/// whole, as the API takes it (LiteLLM's list is a few MiB).
const IMPORT_FORM_LEN_MAX: usize = 32 * 1024 * 1024;

/// The catalog entries shown on a page.
const PAGE_LEN: usize = 50;

/// The skipped entries an import's notice names at most.
const SKIPPED_SHOWN_MAX: usize = 5;

/// The prices' routes.
pub(super) fn router() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/admin/prices", get(prices).post(save))
        .route(
            "/admin/prices/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_FORM_LEN_MAX)),
        )
        .route("/admin/prices/starter", post(starter))
}

#[derive(Template)]
#[template(path = "admin_prices.html")]
struct PricesPage {
    title: &'static str,
    csrf: String,
    section: &'static str,
    notice: Option<Notice>,
    prices: Vec<PriceRow>,
    next: Option<String>,
    form: PriceForm,
    modes: Vec<super::Choice>,
    editing: bool,
}

struct PriceRow {
    model: String,
    provider: String,
    mode: String,
    input: String,
    output: String,
    markup: String,
    edit_href: String,
}

#[derive(Deserialize)]
struct PricePage {
    data: Vec<Price>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// A catalog entry, with the fields the form shows.
#[derive(Deserialize)]
struct Price {
    model: String,
    provider: String,
    mode: String,
    #[serde(default)]
    upstreams: Vec<String>,
    #[serde(default)]
    upstream_model: Option<String>,
    input: String,
    #[serde(default)]
    cached_input: Option<String>,
    #[serde(default)]
    cache_write: Option<String>,
    output: String,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    context_window: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    markup_percent: Option<String>,
}

/// The price form, as sent and as shown.
#[derive(Default, Deserialize)]
struct PriceForm {
    csrf: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    mode: Option<String>,
    input: Option<String>,
    output: Option<String>,
    cached_input: Option<String>,
    cache_write: Option<String>,
    reasoning: Option<String>,
    markup_percent: Option<String>,
    upstreams: Option<String>,
    upstream_model: Option<String>,
    context_window: Option<String>,
    max_output_tokens: Option<String>,
}

/// Whether `model` is shaped as the API's model names are: printable
/// ASCII, no space.
fn is_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 200
        && !model.bytes().all(|b| b == b'.')
        && model.bytes().all(|b| b.is_ascii_graphic())
}

/// `text` as one segment of a path: every byte but the unreserved ones
/// percent-encoded.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl PriceForm {
    fn of(price: Price) -> PriceForm {
        PriceForm {
            csrf: None,
            model: Some(price.model),
            provider: Some(price.provider),
            mode: Some(price.mode),
            input: Some(price.input),
            output: Some(price.output),
            cached_input: price.cached_input,
            cache_write: price.cache_write,
            reasoning: price.reasoning,
            markup_percent: price.markup_percent,
            upstreams: Some(price.upstreams.join(", ")),
            upstream_model: price.upstream_model,
            context_window: price.context_window.map(|n| n.to_string()),
            max_output_tokens: price.max_output_tokens.map(|n| n.to_string()),
        }
    }

    /// The model and the body of its `PUT`, or what is wrong.
    fn body(&self) -> Result<(String, Value), &'static str> {
        let model = filled(&self.model)
            .filter(|m| is_model(m))
            .ok_or("the model is printable ASCII without spaces, at most 200 characters")?;
        let upstreams: Vec<&str> = filled(&self.upstreams)
            .map(|u| {
                u.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut body = json!({
            "provider": filled(&self.provider).ok_or("give the provider")?,
            "mode": filled(&self.mode).unwrap_or("chat"),
            "input": filled(&self.input).ok_or("give the input price")?,
            "output": filled(&self.output).ok_or("give the output price")?,
            "upstreams": upstreams,
        });
        let optional = [
            ("cached_input", &self.cached_input),
            ("cache_write", &self.cache_write),
            ("reasoning", &self.reasoning),
            ("markup_percent", &self.markup_percent),
            ("upstream_model", &self.upstream_model),
        ];
        for (name, field) in optional {
            if let Some(value) = filled(field) {
                body[name] = json!(value);
            }
        }
        for (name, field) in [
            ("context_window", &self.context_window),
            ("max_output_tokens", &self.max_output_tokens),
        ] {
            if let Some(value) = filled(field) {
                let tokens: u64 = value
                    .parse()
                    .map_err(|_| "token counts are whole numbers")?;
                body[name] = json!(tokens);
            }
        }
        Ok((model.to_owned(), body))
    }
}

#[derive(Default, Deserialize)]
struct PricesQuery {
    cursor: Option<String>,
    edit: Option<String>,
    done: Option<String>,
}

/// `GET /admin/prices`: a page of the catalog, and the form (filled with
/// the model `?edit=` names).
async fn prices(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<PricesQuery>,
    headers: HeaderMap,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let notice = (query.done.as_deref() == Some("saved")).then(|| Notice {
        kind: "ok",
        text: "Price saved.".into(),
    });
    let mut form = None;
    if let Some(model) = query.edit.as_deref().filter(|m| is_model(m)) {
        let path = format!("/v1/prices/{}", segment(model));
        if let Ok(price) = dashboard.api.get::<Price>(&operator.principal, &path).await {
            form = Some(PriceForm::of(price));
        }
    }
    let editing = form.is_some();
    let page = page(
        &dashboard,
        operator,
        notice,
        query.cursor.as_deref(),
        form.unwrap_or_default(),
        editing,
    )
    .await;
    render(StatusCode::OK, &page, &[])
}

/// The prices page: the catalog from `cursor`, the form as given.
async fn page(
    dashboard: &Dashboard,
    operator: Operator,
    notice: Option<Notice>,
    cursor: Option<&str>,
    form: PriceForm,
    editing: bool,
) -> PricesPage {
    let mut path = format!("/v1/prices?limit={PAGE_LEN}");
    if let Some(cursor) = cursor.filter(|c| is_model(c)) {
        path.push_str(&format!("&cursor={}", segment(cursor)));
    }
    let (rows, next) = match dashboard
        .api
        .get::<PricePage>(&operator.principal, &path)
        .await
    {
        Ok(page) => (
            page.data.into_iter().map(row).collect(),
            page.next_cursor.map(|c| segment(&c)),
        ),
        Err(refusal) => {
            tracing::warn!(%refusal, "listing prices failed");
            (Vec::new(), None)
        }
    };
    PricesPage {
        title: "Prices",
        csrf: operator.csrf,
        section: "prices",
        notice,
        prices: rows,
        next,
        modes: super::choices(&["chat", "embedding"], form.mode.as_deref()),
        form,
        editing,
    }
}

fn row(price: Price) -> PriceRow {
    PriceRow {
        edit_href: format!("/admin/prices?edit={}#form-h", segment(&price.model)),
        model: price.model,
        provider: price.provider,
        mode: price.mode,
        input: price.input,
        output: price.output,
        markup: price.markup_percent.unwrap_or_default(),
    }
}

/// `POST /admin/prices`: sets a model's price; a refusal shows the form
/// again as sent, with the API's word.
async fn save(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<PriceForm>,
) -> Response {
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let notice = match form.body() {
        Err(wrong) => invalid(wrong),
        Ok((model, body)) => {
            let path = format!("/v1/prices/{}", segment(&model));
            let put = dashboard
                .api
                .send::<Value, _>(&operator.principal, Method::PUT, &path, Some(&body), None)
                .await;
            match put {
                Ok(_) => return see_other("/admin/prices?done=saved"),
                Err(refusal) => super::refused(&refusal),
            }
        }
    };
    let page = page(&dashboard, operator, Some(notice), None, form, true).await;
    render(StatusCode::BAD_REQUEST, &page, &[])
}

/// `POST /v1/prices/import`'s answer.
#[derive(Deserialize)]
struct ImportReport {
    written: u64,
    unchanged: u64,
    filtered: u64,
    skipped: Vec<Skipped>,
}

#[derive(Deserialize)]
struct Skipped {
    model: String,
    reason: String,
}

impl ImportReport {
    fn notice(&self) -> Notice {
        let mut text = format!(
            "Imported: {} written, {} unchanged, {} filtered out, {} skipped.",
            self.written,
            self.unchanged,
            self.filtered,
            self.skipped.len()
        );
        for skipped in self.skipped.iter().take(SKIPPED_SHOWN_MAX) {
            text.push_str(&format!(" {}: {}.", skipped.model, skipped.reason));
        }
        Notice { kind: "ok", text }
    }
}

/// The import form: the list chosen as a file (sent as multipart) or
/// pasted (either encoding); a file chosen wins over the text pasted.
#[derive(Default, Deserialize)]
struct ImportForm {
    csrf: Option<String>,
    #[serde(skip)]
    file: Option<String>,
    list: Option<String>,
    format: Option<String>,
    providers: Option<String>,
}

impl ImportForm {
    /// Reads the form as its content type says it was sent; a body that is
    /// neither form is answered with 400 and changes nothing.
    async fn read(request: Request) -> Result<ImportForm, Response> {
        let multipart = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("multipart/form-data"));
        if !multipart {
            return Form::<ImportForm>::from_request(request, &())
                .await
                .map(|Form(form)| form)
                .map_err(IntoResponse::into_response);
        }
        let unreadable = |_| not_a_form();
        let mut parts = Multipart::from_request(request, &())
            .await
            .map_err(IntoResponse::into_response)?;
        let mut form = ImportForm::default();
        while let Some(field) = parts.next_field().await.map_err(unreadable)? {
            let name = field.name().unwrap_or_default().to_owned();
            let text = field.text().await.map_err(unreadable)?;
            let slot = match name.as_str() {
                "csrf" => &mut form.csrf,
                "file" => &mut form.file,
                "list" => &mut form.list,
                "format" => &mut form.format,
                "providers" => &mut form.providers,
                _ => continue,
            };
            *slot = Some(text);
        }
        Ok(form)
    }

    /// The price list sent: the file's when one was chosen, else the text.
    fn list(&self) -> Option<&str> {
        filled(&self.file).or_else(|| filled(&self.list))
    }
}

fn not_a_form() -> Response {
    super::super::message(
        StatusCode::BAD_REQUEST,
        crate::domain::locale::Locale::En,
        "Not imported",
        "The form could not be read; nothing changed.",
    )
}

/// `POST /admin/prices/import`: imports the price list chosen as a file or
/// pasted in the form.
async fn import(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let form = match ImportForm::read(request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    // Sent as written: read into numbers and written again, a price could
    // lose digits.
    let list = form
        .list()
        .and_then(|l| serde_json::from_str::<Box<RawValue>>(l).ok());
    let Some(list) = list else {
        let notice = invalid("the price list is not JSON");
        let page = page(
            &dashboard,
            operator,
            Some(notice),
            None,
            PriceForm::default(),
            false,
        )
        .await;
        return render(StatusCode::BAD_REQUEST, &page, &[]);
    };
    let mut query = vec![("source", "body")];
    if let Some(format) = filled(&form.format).filter(|f| matches!(*f, "litellm" | "models_dev")) {
        query.push(("format", format));
    }
    if let Some(providers) = filled(&form.providers) {
        query.push(("providers", providers));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    let path = format!("/v1/prices/import?{query}");
    let sent = dashboard
        .api
        .send::<ImportReport, _>(&operator.principal, Method::POST, &path, Some(&list), None)
        .await;
    imported(&dashboard, operator, sent).await
}

/// `POST /admin/prices/starter`: imports the starter catalog shipped with
/// creditd.
async fn starter(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let path = "/v1/prices/import?source=starter";
    let sent = dashboard
        .api
        .send::<ImportReport, ()>(&operator.principal, Method::POST, path, None, None)
        .await;
    imported(&dashboard, operator, sent).await
}

/// The prices page after an import, with its report or the API's word.
async fn imported(
    dashboard: &Dashboard,
    operator: Operator,
    sent: Result<ImportReport, crate::client::Refusal>,
) -> Response {
    let (status, notice) = match sent {
        Ok(report) => (StatusCode::OK, report.notice()),
        Err(refusal) => (StatusCode::BAD_REQUEST, super::refused(&refusal)),
    };
    let page = page(
        dashboard,
        operator,
        Some(notice),
        None,
        PriceForm::default(),
        false,
    )
    .await;
    render(status, &page, &[])
}
