//! An app on a fresh database, driven over HTTP as a client would: the
//! core API, and the capabilities a test plugs in beside it.

use std::any::Any;
use std::sync::Arc;

use ledger::Timestamp;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use server::test_clock::TestClock;
use server::{AppState, Capability, JobsConfig, KeyHash, Keys};
use store::postgres::{PostgresOptions, PostgresStore};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{Clock, ManualClock, Store};

use crate::TestDatabase;

/// What a test plugs in beside the core API, made from the app's store and
/// clock: capabilities (with the policy one of them may bring), and a
/// handle the test may reach again through [`TestApp::plugin`].
pub struct Plugged {
    /// The capabilities beside the core API; at most one brings a policy
    /// for the core's writes.
    pub capabilities: Vec<Capability>,
    /// What the test reaches again.
    pub handle: Option<Arc<dyn Any + Send + Sync>>,
}

/// Makes what a test plugs in: a function, or a closure holding what the
/// test set up first (a fake upstream's address).
pub type Plugins = Arc<dyn Fn(Arc<dyn Store>, Arc<dyn Clock>) -> Plugged + Send + Sync>;

pub const KEY: &str = "test-admin-key";

/// 2027-01-15T08:00:00Z: a fixed start, so tests control time.
pub const START: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A running server with its own database, clock and client. It runs as
/// `creditd serve` does with `CREDITD_TEST_CLOCK=true`: everything reads the
/// test clock, which stands on `clock` (so tests move time with either),
/// and the test clock's routes are in the table. It runs no background job:
/// a test does a job's work when it chooses.
pub struct TestApp {
    /// The server's address, `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client to it.
    pub client: Client,
    /// The clock the test clock stands on; tests move it.
    pub clock: ManualClock,
    /// The test clock everything reads.
    pub test_clock: Arc<TestClock>,
    plugins: Option<Plugins>,
    /// The server's state.
    pub state: Arc<AppState>,
    handle: Option<Arc<dyn Any + Send + Sync>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    // Dropped last: the database outlives the server using it.
    _database: Database,
}

/// What keeps a test's database alive.
enum Database {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

/// Sets up a test server's state before it is shared, as the binary does
/// from its settings.
pub type Tune = fn(AppState) -> AppState;

/// A response: status, body as JSON (or null), and headers.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl TestApp {
    /// A server on a fresh SQLite file.
    pub async fn spawn_sqlite(plugins: Option<Plugins>) -> TestApp {
        TestApp::spawn_sqlite_with(plugins, |state| state).await
    }

    /// A server on a fresh PostgreSQL database, or `None` when PostgreSQL
    /// is unreachable outside CI.
    pub async fn spawn_postgres(plugins: Option<Plugins>) -> Option<TestApp> {
        TestApp::spawn_postgres_with(plugins, |state| state).await
    }

    /// [`TestApp::spawn_sqlite`], with the server's state set up by `tune`
    /// (a setting the binary would give it, such as the top-up URL).
    pub async fn spawn_sqlite_with(plugins: Option<Plugins>, tune: Tune) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let test_clock = TestClock::new(Arc::new(clock.clone()));
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(
                SqliteOptions::new(dir.path().join("creditd.db")),
                test_clock.clock(),
            )
            .unwrap(),
        );
        let database = Database::Sqlite(dir);
        TestApp::serve(store, clock, test_clock, database, plugins, tune).await
    }

    /// [`TestApp::spawn_postgres`], with the server's state set up by `tune`.
    pub async fn spawn_postgres_with(plugins: Option<Plugins>, tune: Tune) -> Option<TestApp> {
        let database = TestDatabase::create().await?;
        let clock = ManualClock::new(START);
        let test_clock = TestClock::new(Arc::new(clock.clone()));
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::open(PostgresOptions::new(&database.url), test_clock.clock())
                .await
                .unwrap(),
        );
        Some(
            TestApp::serve(
                store,
                clock,
                test_clock,
                Database::Postgres(database),
                plugins,
                tune,
            )
            .await,
        )
    }

    async fn serve(
        store: Arc<dyn Store>,
        clock: ManualClock,
        test_clock: Arc<TestClock>,
        database: Database,
        plugins: Option<Plugins>,
        tune: Tune,
    ) -> TestApp {
        let shared: Arc<dyn Clock> = test_clock.clock();
        let plugged = match &plugins {
            Some(plugins) => plugins(store.clone(), shared.clone()),
            None => Plugged {
                capabilities: Vec::new(),
                handle: None,
            },
        };
        let test_clock_capability = test_clock.capability(store.clone());
        let app = server::App::new(
            tune(AppState::new(
                store,
                shared,
                Keys::new(Some(KeyHash::of(KEY))),
            )),
            JobsConfig::default(),
            plugged
                .capabilities
                .into_iter()
                .chain([test_clock_capability])
                .collect(),
        );
        let state = app.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(server::serve(
            listener,
            app.router(),
            std::future::pending(),
        ));
        TestApp {
            base,
            client: Client::new(),
            clock,
            test_clock,
            plugins,
            state,
            handle: plugged.handle,
            server,
            _database: database,
        }
    }

    /// The capabilities this server serves beyond the core API (the test
    /// clock's routes and the plugins'), for tests that walk the route table.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut capabilities = match &self.plugins {
            Some(plugins) => {
                plugins(self.state.store.clone(), self.test_clock.clock()).capabilities
            }
            None => Vec::new(),
        };
        capabilities.push(self.test_clock.capability(self.state.store.clone()));
        capabilities
    }

    /// Asserts that `routes`, the routes the plugins add, are each in the
    /// app's table once and beside every other route: the app's table holds
    /// as many distinct routes as it would without the plugins, plus one for
    /// each of `routes`. So a walk of `routes` covers every route the
    /// plugins serve, a count taken from the table rather than written down.
    pub fn assert_plugin_routes(&self, routes: &[(Method, &'static str, server::Access)]) {
        let all = server::routes::table(&self.state, self.capabilities());
        for route in routes {
            assert!(all.contains(route), "{route:?} is not in the app's table");
        }
        let without = server::routes::table(
            &self.state,
            vec![self.test_clock.capability(self.state.store.clone())],
        );
        assert_eq!(
            distinct_routes(&all),
            distinct_routes(&without) + routes.len(),
            "the plugins' routes are not each in the app's table once"
        );
    }

    /// What the test's plugins handed back, as `T`.
    pub fn plugin<T: Any + Send + Sync>(&self) -> Arc<T> {
        self.handle
            .clone()
            .and_then(|h| h.downcast::<T>().ok())
            .expect("the app was spawned with a plugin of this type")
    }

    /// Sends a request with the admin key; `body` is sent as JSON when given.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.unwrap()).await
    }

    /// Sends a request with `key` as the bearer key (none when `None`), and
    /// `headers`; `body` is sent as JSON when given.
    pub async fn send_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.unwrap()).await
    }

    /// Creates an admin or service key with the admin key; answers the key.
    pub async fn create_key(&self, kind: &str, name: &str) -> Value {
        let created = self
            .post("/v1/keys", json!({ "kind": kind, "name": name }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        created.body
    }

    /// Creates a customer key of `account` with the admin key; answers the key.
    pub async fn create_customer_key(&self, account: &str) -> Value {
        let created = self
            .post(
                &format!("/v1/accounts/{account}/keys"),
                json!({ "name": "app" }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        created.body
    }

    /// Sends raw bytes with the given headers and the admin key.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        reply(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    /// A POST with an Idempotency-Key.
    pub async fn post_keyed(&self, path: &str, key: &str, body: Value) -> Reply {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .header("Idempotency-Key", key)
            .json(&body);
        reply(request.send().await.unwrap()).await
    }

    /// Opens an account and grants it `credits` (as a purchase) if positive.
    pub async fn account_with(&self, id: &str, credits: &str) {
        let created = self.post("/v1/accounts", json!({ "id": id })).await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        if credits != "0" {
            let granted = self
                .post(
                    &format!("/v1/accounts/{id}/grants"),
                    json!({ "amount": credits, "source": "purchase" }),
                )
                .await;
            assert_eq!(granted.status, StatusCode::CREATED, "{granted:?}");
        }
    }

    pub async fn balance(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/accounts/{id}/balance")).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    pub async fn available(&self, id: &str) -> String {
        self.balance(id).await["available"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Everything observable about an account: balance and every transaction.
    pub async fn snapshot(&self, id: &str) -> (Value, Value) {
        let balance = self.balance(id).await;
        let txs = self
            .get(&format!("/v1/accounts/{id}/transactions?limit=100"))
            .await
            .body;
        (
            json!({ "available": balance["available"], "held": balance["held"], "debt": balance["debt"], "lots": balance["lots"] }),
            txs,
        )
    }

    /// Calls every route of `table` with no key, a wrong key, the admin key,
    /// a new service key and a new customer key of the account in `mine`,
    /// on the objects of `mine` and of `theirs` (another
    /// account's, named by the same path parameters); asserts that each is
    /// let through exactly when the route's access admits the key, and that
    /// another account's objects are not found, without naming them.
    pub async fn assert_route_access(
        &self,
        table: Vec<(Method, &'static str, server::Access)>,
        mine: &[(&str, String)],
        theirs: &[(&str, String)],
    ) {
        use server::Access;
        let account_of = |ids: &[(&str, String)]| {
            ids.iter()
                .find(|(name, _)| *name == "account_id")
                .expect("the objects name an account_id")
                .1
                .clone()
        };
        let their_account = account_of(theirs);
        let service = self.create_key("service", "backend").await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let customer = self.create_customer_key(&account_of(mine)).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let reader = self
            .post(
                &format!("/v1/accounts/{}/keys", account_of(mine)),
                json!({"name": "browser", "access": "read"}),
            )
            .await;
        assert_eq!(reader.status, StatusCode::CREATED, "{reader:?}");
        let reader = reader.body["key"].as_str().unwrap().to_owned();
        let (service, customer, reader) = (service.as_str(), customer.as_str(), reader.as_str());
        for (method, template, access) in table {
            let path = concrete(template, mine);
            let other = concrete(template, theirs);
            let call = |key: Option<&str>, path: &str| {
                let (method, path, key) = (method.clone(), path.to_owned(), key.map(str::to_owned));
                let app = self;
                async move {
                    let body =
                        (method != Method::GET && method != Method::DELETE).then(|| json!({}));
                    app.send_as(key.as_deref(), method, &path, &[], body).await
                }
            };
            let what = |who: &str| format!("{method} {template} as {who}");

            let none = call(None, &path).await;
            let bad = call(Some("cd_admin_not_a_key"), &path).await;
            if access == Access::Public {
                assert_let_through(&none, &what("nobody"));
                continue;
            }
            for reply in [&none, &bad] {
                assert_eq!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{}: {reply:?}",
                    what("nobody")
                );
                assert_eq!(reply.code(), "unauthorized");
                assert!(
                    reply.headers.get("www-authenticate").is_some(),
                    "{}",
                    what("nobody")
                );
            }

            let as_admin = call(Some(KEY), &path).await;
            match access {
                Access::Customer => assert_forbidden(&as_admin, access, &what("admin")),
                _ => assert_let_through(&as_admin, &what("admin")),
            }

            let as_service = call(Some(service), &path).await;
            match access {
                Access::Admin | Access::Customer => {
                    assert_forbidden(&as_service, access, &what("service"))
                }
                _ => assert_let_through(&as_service, &what("service")),
            }

            // A read-only customer key is a customer key on the routes
            // that change nothing, and refused on every other; it is asked
            // first, so a write it was wrongly let through would show.
            if matches!(
                access,
                Access::Account | Access::Own | Access::Customer | Access::Catalog
            ) {
                let as_reader = call(Some(reader), &path).await;
                if server::routes::writes(&method) {
                    assert_eq!(
                        (as_reader.status, as_reader.code()),
                        (StatusCode::FORBIDDEN, "forbidden"),
                        "{}: {as_reader:?}",
                        what("read-only customer")
                    );
                    assert_eq!(as_reader.body["error"]["required_scope"], "write");
                } else {
                    assert_let_through(&as_reader, &what("read-only customer"));
                }
            }

            let as_customer = call(Some(customer), &path).await;
            let at_others = call(Some(customer), &other).await;
            match access {
                Access::Admin | Access::Service => {
                    assert_forbidden(&as_customer, access, &what("customer"));
                    assert_forbidden(&at_others, access, &what("customer elsewhere"));
                }
                Access::Account | Access::Own => {
                    // Let through to its own account: answered, or refused
                    // for the empty body, or the object already removed by
                    // an earlier key's DELETE, but never its account not found.
                    assert_let_through(&as_customer, &what("customer"));
                    assert_ne!(
                        as_customer.code(),
                        "account_not_found",
                        "{}: {as_customer:?}",
                        what("customer")
                    );
                    if method != Method::DELETE {
                        assert_ne!(
                            as_customer.status,
                            StatusCode::NOT_FOUND,
                            "{}: {as_customer:?}",
                            what("customer")
                        );
                    }
                    assert_eq!(
                        at_others.status,
                        StatusCode::NOT_FOUND,
                        "{}: {at_others:?}",
                        what("customer elsewhere")
                    );
                    assert!(at_others.code().ends_with("_not_found"), "{at_others:?}");
                    assert!(
                        !at_others.text.contains(their_account.as_str()),
                        "{at_others:?}"
                    );
                }
                // The route names no account: the key's own is the one acted for.
                Access::Customer => assert_let_through(&as_customer, &what("customer")),
                // The catalogue is every key's.
                Access::Catalog => assert_let_through(&as_customer, &what("customer")),
                Access::Public => unreachable!(),
            }
        }
    }

    /// Walks every write route of the server's table with an
    /// `Idempotency-Key`, as `mine` names its objects, asserting what its
    /// declared [`server::routes::Idempotency`] promises: a malformed key
    /// is 400 wherever one is read; a route that shows a secret once
    /// refuses any key; a route that keeps its answers replays the first
    /// (below 500) and refuses the key with another request; the ledger's
    /// writes answer a retry as they answered the first.
    pub async fn assert_idempotency(
        &self,
        table: Vec<(
            Method,
            &'static str,
            server::Access,
            server::routes::Idempotency,
        )>,
        mine: &[(&str, String)],
    ) {
        use server::routes::Idempotency;
        let account = mine
            .iter()
            .find(|(name, _)| *name == "account_id")
            .map(|(_, id)| id.clone())
            .expect("the objects name an account_id");
        let customer = self.create_customer_key(&account).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        for (n, (method, template, access, mode)) in table.into_iter().enumerate() {
            if mode == Idempotency::NotRead {
                continue;
            }
            let path = concrete(template, mine);
            let what = format!("{method} {template}");
            // Each route is asked with a key it admits.
            let key_of_caller = if access == server::Access::Customer {
                customer.clone()
            } else {
                KEY.to_owned()
            };
            let send = |key: String, body: Option<Value>| {
                let (method, path, caller) = (method.clone(), path.clone(), key_of_caller.clone());
                async move {
                    let headers = [("idempotency-key", key.as_str())];
                    self.send_as(Some(&caller), method, &path, &headers, body)
                        .await
                }
            };
            let body = (method != Method::DELETE).then(|| json!({}));
            let malformed = send("x".repeat(300), body.clone()).await;
            assert_eq!(
                (malformed.status, malformed.code()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{what} with a malformed key: {malformed:?}"
            );
            let key = format!("walk-{n}");
            match mode {
                Idempotency::NotRead => unreachable!(),
                Idempotency::Refused => {
                    let refused = send(key, body).await;
                    assert_eq!(refused.code(), "invalid_request", "{what}: {refused:?}");
                }
                Idempotency::NotKept(_) => {
                    let reply = send(key, body).await;
                    assert!(reply.headers.get("idempotent-replayed").is_none(), "{what}");
                }
                Idempotency::Ledger => {
                    let first = send(key.clone(), body.clone()).await;
                    let again = send(key, body).await;
                    assert_eq!(
                        first.status, again.status,
                        "{what}: {first:?} then {again:?}"
                    );
                }
                Idempotency::Kept => {
                    let first = send(key.clone(), body.clone()).await;
                    let again = send(key.clone(), body).await;
                    if first.status.is_server_error() {
                        assert!(again.headers.get("idempotent-replayed").is_none(), "{what}");
                        continue;
                    }
                    assert_eq!(
                        again
                            .headers
                            .get("idempotent-replayed")
                            .map(|v| v.as_bytes()),
                        Some(&b"true"[..]),
                        "{what}: {first:?} then {again:?}"
                    );
                    assert_eq!(
                        (again.status, &again.text),
                        (first.status, &first.text),
                        "{what}"
                    );
                    let other = send(key, Some(json!({"another": "request"}))).await;
                    assert_eq!(
                        (other.status, other.code()),
                        (StatusCode::CONFLICT, "idempotency_conflict"),
                        "{what} with another request: {other:?}"
                    );
                }
            }
        }
    }

    /// Runs the full journal audit; panics on any violation.
    pub async fn assert_verified(&self) {
        let report = self.state.store.audit().await.unwrap();
        assert!(report.is_clean(), "{report:?}");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The concrete path of a route template: each `{name}` replaced by its
/// value in `ids`; panics on a parameter it has no value for, so that a table
/// test over every route cannot skip a new one.
fn concrete(template: &str, ids: &[(&str, String)]) -> String {
    let mut path = template.to_owned();
    while let Some(start) = path.find('{') {
        let end = path[start..].find('}').unwrap() + start;
        let name = &path[start + 1..end];
        let value = ids
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("the table test has no value for {{{name}}}: add one"))
            .1
            .clone();
        path.replace_range(start..=end, &value);
    }
    path
}

/// Asserts that `reply` refuses a key without the scope `access` needs.
fn assert_forbidden(reply: &Reply, access: server::Access, what: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}: {reply:?}");
    assert_eq!(reply.code(), "forbidden", "{what}");
    assert_eq!(
        reply.body["error"]["required_scope"],
        access.scope(),
        "{what}"
    );
}

/// Asserts that `reply` went past authentication and scopes to a route
/// that exists.
fn assert_let_through(reply: &Reply, what: &str) {
    assert!(
        ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&reply.status),
        "{what}: {reply:?}"
    );
    assert_ne!(reply.code(), "not_found", "{what}: the route must exist");
    assert_ne!(reply.code(), "method_not_allowed", "{what}");
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        body,
        text,
        headers,
    }
}

/// How many distinct (method, path) a route table holds.
pub fn distinct_routes(table: &[(Method, &'static str, server::Access)]) -> usize {
    table
        .iter()
        .map(|(method, path, _)| (method, path))
        .collect::<std::collections::HashSet<_>>()
        .len()
}
