//! Plans: list them, and create or edit one with the fields the API takes
//! (credits per period, interval, allocation, price, overage, default).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::{Notice, render, see_other};
use super::{
    Choice, Notified, Operator, choices, filled, invalid, is_record_id, operator, operator_of_form,
};
use crate::Dashboard;
use crate::domain::format;

/// The plans' routes.
pub(super) fn router() -> Router<Arc<Dashboard>> {
    Router::new().route("/admin/plans", get(plans).post(save))
}

#[derive(Template)]
#[template(path = "admin_plans.html")]
struct PlansPage {
    title: &'static str,
    csrf: String,
    section: &'static str,
    notice: Option<Notice>,
    plans: Vec<PlanRow>,
    form: PlanForm,
    intervals: Vec<Choice>,
    allocations: Vec<Choice>,
    editing: bool,
}

struct PlanRow {
    id: String,
    name: String,
    credits: String,
    every: String,
    price: String,
    default: bool,
}

#[derive(Deserialize)]
struct Plans {
    data: Vec<Plan>,
}

/// A plan, with the fields the form shows.
#[derive(Deserialize)]
struct Plan {
    id: String,
    name: String,
    credits: String,
    interval: String,
    interval_count: u32,
    allocation: String,
    #[serde(default)]
    rollover_cap: Option<String>,
    credits_expire_at_period_end: bool,
    #[serde(default)]
    price: Option<Money>,
    #[serde(default)]
    provider_price_id: Option<String>,
    #[serde(default)]
    overage: Option<Overage>,
    default: bool,
}

#[derive(Deserialize)]
struct Money {
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
struct Overage {
    unit_price: String,
    #[serde(default)]
    cap: Option<String>,
}

/// The plan form, as sent and as shown.
#[derive(Default, Deserialize)]
struct PlanForm {
    csrf: Option<String>,
    id: Option<String>,
    name: Option<String>,
    credits: Option<String>,
    interval: Option<String>,
    interval_count: Option<String>,
    allocation: Option<String>,
    rollover_cap: Option<String>,
    expire: Option<String>,
    price_usd: Option<String>,
    provider_price_id: Option<String>,
    overage_cents: Option<String>,
    overage_cap: Option<String>,
    default: Option<String>,
}

impl PlanForm {
    fn of(plan: &Plan) -> PlanForm {
        let price_usd = plan
            .price
            .as_ref()
            .filter(|p| p.currency == "usd")
            .map(|p| format!("{}.{:02}", p.amount / 100, p.amount % 100));
        PlanForm {
            csrf: None,
            id: Some(plan.id.clone()),
            name: Some(plan.name.clone()),
            credits: Some(plan.credits.clone()),
            interval: Some(plan.interval.clone()),
            interval_count: Some(plan.interval_count.to_string()),
            allocation: Some(plan.allocation.clone()),
            rollover_cap: plan.rollover_cap.clone(),
            expire: plan.credits_expire_at_period_end.then(|| "on".into()),
            price_usd,
            provider_price_id: plan.provider_price_id.clone(),
            overage_cents: plan.overage.as_ref().map(|o| o.unit_price.clone()),
            overage_cap: plan.overage.as_ref().and_then(|o| o.cap.clone()),
            default: plan.default.then(|| "on".into()),
        }
    }

    /// The plan's id and the body of its `PUT`, or what is wrong.
    fn body(&self) -> Result<(String, Value), &'static str> {
        let id = filled(&self.id)
            .filter(|id| is_record_id(id))
            .ok_or("the id is letters, digits and _ . : - only, at most 128 of them")?;
        let mut body = json!({
            "name": filled(&self.name).ok_or("give a name")?,
            "credits": filled(&self.credits).ok_or("give the credits per period")?,
            "interval": filled(&self.interval).unwrap_or("month"),
            "allocation": filled(&self.allocation).unwrap_or("reset"),
            "credits_expire_at_period_end": self.expire.is_some(),
            "default": self.default.is_some(),
        });
        if let Some(count) = filled(&self.interval_count) {
            let count: u32 = count
                .parse()
                .map_err(|_| "the interval count is a whole number")?;
            body["interval_count"] = json!(count);
        }
        if let Some(cap) = filled(&self.rollover_cap) {
            body["rollover_cap"] = json!(cap);
        }
        if let Some(price) = filled(&self.price_usd) {
            let cents = format::cents_of(price).ok_or("give the price in USD, such as 19.00")?;
            body["price"] = json!({"amount": cents, "currency": "usd"});
        }
        if let Some(price_id) = filled(&self.provider_price_id) {
            body["provider_price_id"] = json!(price_id);
        }
        if let Some(unit_price) = filled(&self.overage_cents) {
            let mut overage = json!({"unit_price": unit_price, "currency": "usd"});
            if let Some(cap) = filled(&self.overage_cap) {
                overage["cap"] = json!(cap);
            }
            body["overage"] = overage;
        }
        Ok((id.to_owned(), body))
    }
}

/// `GET /admin/plans`: the plans, and the form (filled with the plan
/// `?edit=` names).
async fn plans(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<Notified>,
    headers: HeaderMap,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let notice = query.notice(&[("saved", "Plan saved.")]);
    let list = read_plans(&dashboard, &operator).await;
    let form = query
        .edit
        .as_deref()
        .and_then(|id| list.iter().find(|p| p.id == id))
        .map(PlanForm::of);
    let editing = form.is_some();
    let page = page(operator, notice, list, form.unwrap_or_default(), editing);
    render(StatusCode::OK, &page, &[])
}

async fn read_plans(dashboard: &Dashboard, operator: &Operator) -> Vec<Plan> {
    match dashboard
        .api
        .get::<Plans>(&operator.principal, "/v1/plans")
        .await
    {
        Ok(list) => list.data,
        Err(refusal) => {
            tracing::warn!(%refusal, "listing plans failed");
            Vec::new()
        }
    }
}

fn page(
    operator: Operator,
    notice: Option<Notice>,
    list: Vec<Plan>,
    form: PlanForm,
    editing: bool,
) -> PlansPage {
    let plans = list
        .into_iter()
        .map(|p| PlanRow {
            every: match p.interval_count {
                1 => p.interval,
                n => format!("{n} {}s", p.interval),
            },
            price: p
                .price
                .map(|m| format::money(m.amount, &m.currency))
                .unwrap_or_else(|| "free".into()),
            id: p.id,
            name: p.name,
            credits: p.credits,
            default: p.default,
        })
        .collect();
    PlansPage {
        title: "Plans",
        csrf: operator.csrf,
        section: "plans",
        notice,
        plans,
        intervals: choices(&["month", "year", "week", "day"], form.interval.as_deref()),
        allocations: choices(&["reset", "rollover"], form.allocation.as_deref()),
        form,
        editing,
    }
}

/// `POST /admin/plans`: creates or replaces a plan; a refusal shows the
/// form again as sent, with the API's word.
async fn save(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<PlanForm>,
) -> Response {
    let operator = match operator_of_form(&dashboard, &headers, form.csrf.as_deref()).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let notice = match form.body() {
        Err(wrong) => invalid(wrong),
        Ok((id, body)) => {
            let path = format!("/v1/plans/{id}");
            let put = dashboard
                .api
                .send::<Value, _>(&operator.principal, Method::PUT, &path, Some(&body), None)
                .await;
            match put {
                Ok(_) => return see_other("/admin/plans?done=saved"),
                Err(refusal) => super::refused(&refusal),
            }
        }
    };
    let list = read_plans(&dashboard, &operator).await;
    let page = page(operator, Some(notice), list, form, true);
    render(StatusCode::BAD_REQUEST, &page, &[])
}
