//! What the dashboard's HTTP tests share: the app with billing, the
//! gateway and the dashboard plugged in, and a browser's ways of fetching
//! pages, posting forms and signing in.

#![allow(dead_code)]

use std::sync::Arc;

use dashboard::Dashboard;
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{StatusCode, redirect};
use testkit::app::{KEY, Plugged, TestApp};

/// Where the dashboard believes it is reached; forms must come from here.
pub const PUBLIC: &str = "http://credits.test";

pub fn plugins() -> testkit::app::Plugins {
    Arc::new(|store, clock| {
        let billing = Arc::new(billing::Billing::new(
            store.clone(),
            clock.clone(),
            billing::EnvSettings::default(),
        ));
        let gateway = Arc::new(gateway::Gateway::new(
            store.clone(),
            clock.clone(),
            gateway::GatewayConfig::default(),
        ));
        let webhooks = Arc::new(webhooks::Webhooks::new(
            store.clone(),
            clock.clone(),
            billing.clone(),
            webhooks::WebhookConfig {
                keyring: Some(server::sealing::Keyring {
                    current: server::sealing::MasterKey::parse(&"42".repeat(32)).unwrap(),
                    retired: Vec::new(),
                }),
                ..webhooks::WebhookConfig::default()
            },
        ));
        let dashboard = Arc::new(Dashboard::new(store, clock, PUBLIC));
        Plugged {
            capabilities: vec![
                billing.capability(),
                gateway.capability(),
                dashboard.capability(),
                webhooks.capability(),
            ],
            handle: Some(dashboard),
        }
    })
}

/// The dashboard alone, for the checks that walk its own routes.
pub fn dashboard_alone() -> testkit::app::Plugins {
    Arc::new(|store, clock| {
        let dashboard = Arc::new(Dashboard::new(store, clock, PUBLIC));
        Plugged {
            capabilities: vec![dashboard.capability()],
            handle: Some(dashboard),
        }
    })
}

/// A browser: no redirect followed, so that each step is seen.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub html: String,
}

/// Sends `request` and reads its answer whole.
async fn page_of(request: reqwest::RequestBuilder) -> Page {
    let response = request.send().await.unwrap();
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        html: response.text().await.unwrap(),
    }
}

pub async fn fetch(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Page {
    let mut request = browser().get(format!("{}{path}", app.base));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    page_of(request).await
}

pub async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> Page {
    let mut request = browser()
        .post(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .form(form);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    page_of(request).await
}

/// Posts `fields` as `multipart/form-data`, as a browser sends a form with
/// a file input; a field named `file` goes as a file of that content.
pub async fn post_multipart(
    app: &TestApp,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    fields: &[(&str, &str)],
) -> Page {
    let boundary = "----creditd-test-boundary-7d1f";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!("--{boundary}\r\n"));
        if *name == "file" {
            body.push_str(
                "Content-Disposition: form-data; name=\"file\"; filename=\"prices.json\"\r\n\
                 Content-Type: application/json\r\n\r\n",
            );
        } else {
            body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            ));
        }
        body.push_str(value);
        body.push_str("\r\n");
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let mut request = browser()
        .post(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    page_of(request).await
}

/// The `name=value` of the cookie a response sets.
pub fn cookie_of(page: &Page) -> String {
    let set = page
        .headers
        .get(SET_COOKIE)
        .expect("a cookie")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in to the admin panel; answers the session's cookie.
pub async fn admin_session(app: &TestApp) -> String {
    let response = browser()
        .post(format!("{}/admin/login", app.base))
        .form(&[("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.contains("Path=/admin") && set.contains("HttpOnly"));
    set.split(';').next().unwrap().to_owned()
}
