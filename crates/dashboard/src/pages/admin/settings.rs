//! Credit settings: the sign-up bonus, the daily reward, whether free
//! accounts may buy, and the burn priority of each source, read and changed
//! through `/v1/settings/credits`.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::super::{Notice, render, see_other};
use super::{Notified, operator, operator_of_form};
use crate::Dashboard;

/// The settings' routes.
pub(super) fn router() -> Router<Arc<Dashboard>> {
    Router::new().route("/admin/settings", get(settings).post(save))
}

#[derive(Template)]
#[template(path = "admin_settings.html")]
struct SettingsPage {
    title: &'static str,
    csrf: String,
    section: &'static str,
    notice: Option<Notice>,
    settings: Option<Settings>,
}

/// `GET /v1/settings/credits`.
#[derive(Deserialize)]
struct Settings {
    signup_bonus: Reward,
    daily_reward: Reward,
    allow_free_user_purchase: bool,
    priorities: BTreeMap<String, u8>,
    #[serde(default)]
    default_plan: Option<String>,
    #[serde(default)]
    sources: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Reward {
    enabled: bool,
    amount: String,
    #[serde(default)]
    expire_days: Option<u32>,
}

impl Reward {
    fn expire_days_text(&self) -> String {
        self.expire_days.map(|d| d.to_string()).unwrap_or_default()
    }
}

/// `GET /admin/settings`.
async fn settings(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<Notified>,
    headers: HeaderMap,
) -> Response {
    let operator = match operator(&dashboard, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let notice = query.notice(&[("saved", "Settings saved.")]);
    show(&dashboard, operator, notice, StatusCode::OK).await
}

/// The settings page as the settings are now, with `notice`.
async fn show(
    dashboard: &Dashboard,
    operator: super::Operator,
    mut notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let read = dashboard
        .api
        .get::<Settings>(&operator.principal, "/v1/settings/credits")
        .await;
    let settings = match read {
        Ok(settings) => Some(settings),
        Err(refusal) => {
            notice = Some(Notice {
                kind: "error",
                text: format!("The settings could not be read: {refusal}"),
            });
            None
        }
    };
    let page = SettingsPage {
        title: "Settings",
        csrf: operator.csrf,
        section: "settings",
        notice,
        settings,
    };
    render(status, &page, &[])
}

/// The form's fields by name; a checkbox is present when ticked.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
    }

    fn reward(&self, prefix: &str) -> Result<Value, String> {
        let amount = self.get(&format!("{prefix}_amount")).unwrap_or("0");
        let days = match self.get(&format!("{prefix}_expire_days")) {
            None | Some("") => Value::Null,
            Some(days) => json!(
                days.parse::<u32>()
                    .map_err(|_| format!("{prefix} expiry is a whole number of days"))?
            ),
        };
        Ok(json!({
            "enabled": self.get(&format!("{prefix}_enabled")).is_some(),
            "amount": if amount.is_empty() { "0" } else { amount },
            "expire_days": days,
        }))
    }

    /// The `PATCH` body: every setting the form shows.
    fn patch(&self) -> Result<Value, String> {
        let mut priorities = Map::new();
        for (name, value) in &self.0 {
            if let Some(source) = name.strip_prefix("priority_") {
                let priority: u8 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("the priority of {source} is a whole number"))?;
                priorities.insert(source.to_owned(), json!(priority));
            }
        }
        Ok(json!({
            "signup_bonus": self.reward("signup_bonus")?,
            "daily_reward": self.reward("daily_reward")?,
            "allow_free_user_purchase": self.get("allow_free_user_purchase").is_some(),
            "priorities": priorities,
        }))
    }
}

/// `POST /admin/settings`: changes every setting the form shows.
async fn save(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(fields);
    let operator = match operator_of_form(&dashboard, &headers, fields.get("csrf")).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let body = match fields.patch() {
        Ok(body) => body,
        Err(wrong) => return error_page(&dashboard, operator, &wrong).await,
    };
    let sent = dashboard
        .api
        .send::<Value, _>(
            &operator.principal,
            Method::PATCH,
            "/v1/settings/credits",
            Some(&body),
            None,
        )
        .await;
    match sent {
        Ok(_) => see_other("/admin/settings?done=saved"),
        Err(refusal) => {
            let wrong = format!("{} ({})", refusal.message, refusal.code);
            error_page(&dashboard, operator, &wrong).await
        }
    }
}

/// The settings as they are, saying what was wrong with a change that was
/// not made.
async fn error_page(dashboard: &Dashboard, operator: super::Operator, wrong: &str) -> Response {
    let notice = Notice {
        kind: "error",
        text: format!("Not saved: {wrong}"),
    };
    show(dashboard, operator, Some(notice), StatusCode::BAD_REQUEST).await
}
