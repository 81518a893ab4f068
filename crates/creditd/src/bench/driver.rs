//! What the benchmark drives: creditd's store in-process, creditd over HTTP,
//! the baseline design on PostgreSQL, or the fake upstream the gateway
//! forwards to, behind one interface.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ledger::{AccountId, Amount, HoldTtl, Metadata, NewAccount, NewGrant, Reject, Source};
use store::{Charge, Clock, Command, Executed, Op, Outcome as StoreOutcome, Store, SystemClock};

use super::Workload;
use super::baseline::{Baseline, BaselineClient};
use super::http::Conn;
use crate::{Opened, config};

/// Credits every benchmark account starts with: enough never to run out.
const START_CREDITS: i64 = 1_000_000_000;

/// The model the gateway workloads call, priced by their setup.
pub const BENCH_MODEL: &str = "bench-model";

/// The price the gateway setup gives [`BENCH_MODEL`]: USD per million tokens.
const BENCH_PRICE: &str =
    r#"{"provider":"openai","input":"0.15","output":"0.6","max_output_tokens":1000}"#;

/// The chat completion request of the gateway workloads, sent byte for byte
/// the same to the gateway and to the upstream directly.
const CHAT_REQUEST: &str = r#"{"model":"bench-model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello."}]}"#;

/// The same request, streamed.
const CHAT_STREAM_REQUEST: &str = r#"{"model":"bench-model","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello."}]}"#;

/// The bearer token the clients of the upstream direct send; the fake
/// upstream reads none.
const UPSTREAM_KEY: &str = "bench-upstream-key";

/// The label of the fake upstream called directly.
pub const DIRECT_LABEL: &str = "upstream direct";

/// The label of creditd's gateway in front of the same upstream.
pub const GATEWAY_LABEL: &str = "creditd gateway";

/// How one operation ended.
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by the ledger (insufficient credits); counted apart from errors.
    Rejected,
    /// Failed: transport, 5xx, or anything unexpected.
    Error(String),
}

/// A snapshot of a creditd target's write batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchCounters {
    pub batches: u64,
    pub commands: u64,
    pub seconds: f64,
}

/// A target under test.
pub enum Driver {
    /// creditd's store, opened in this process.
    Store {
        opened: Opened,
        /// The database URL, when it is PostgreSQL.
        postgres: Option<String>,
        label: String,
    },
    /// A running creditd, over HTTP.
    Http { base: String, key: String },
    /// The hand-written design on PostgreSQL.
    Baseline(Baseline),
    /// The fake upstream, called directly: what the gateway adds is measured
    /// against it.
    Upstream { origin: String },
}

/// The account gateway client `index` calls for.
fn gateway_account(prefix: &str, index: usize) -> String {
    format!("{prefix}gw{index}")
}

fn account(prefix: &str, index: Option<usize>) -> String {
    match index {
        Some(i) => format!("{prefix}s{i}"),
        None => format!("{prefix}hot"),
    }
}

/// The id of the hot account (`None`) or account `index`, parsed for the store.
fn account_id(prefix: &str, index: Option<usize>) -> Result<AccountId, Outcome> {
    AccountId::parse(&account(prefix, index)).map_err(|_| Outcome::Error("bad account id".into()))
}

/// Opens account `id` over HTTP with [`START_CREDITS`] granted to it.
async fn open_funded(conn: &mut Conn, id: &str) -> anyhow::Result<()> {
    let created = conn
        .post("/v1/accounts", format!(r#"{{"id":"{id}"}}"#))
        .await?;
    anyhow::ensure!(created.0 == 201, "creating {id}: {}", created.0);
    let granted = conn
        .post(
            &format!("/v1/accounts/{id}/grants"),
            format!(r#"{{"amount":"{START_CREDITS}","source":"purchase"}}"#),
        )
        .await?;
    anyhow::ensure!(granted.0 == 201, "granting {id}: {}", granted.0);
    Ok(())
}

/// What `run` answers for the hot account (`None`) or account `index`,
/// given its id parsed for the store; or the error when it does not parse.
async fn with_account(
    prefix: &str,
    index: Option<usize>,
    run: impl AsyncFnOnce(AccountId) -> Outcome,
) -> Outcome {
    match account_id(prefix, index) {
        Ok(account) => run(account).await,
        Err(outcome) => outcome,
    }
}

/// Waits until the store has read every account's book into memory, as a
/// server that has been up for a while has: until then the preload takes
/// part of a core and the writer reads books from the database, and a run
/// would measure the start rather than the steady state.
async fn wait_for_preload(store: &store::sqlite::SqliteStore) {
    let began = std::time::Instant::now();
    if !store.preloading() {
        return;
    }
    while store.preloading() {
        eprint!(
            "\rreading every account's book into memory: {} so far, {:.0}s",
            store.books_kept(),
            began.elapsed().as_secs_f64()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eprintln!(
        "\rread {} accounts' books into memory in {:.1}s{:20}",
        store.books_kept(),
        began.elapsed().as_secs_f64(),
        ""
    );
}

impl Driver {
    /// Opens the store at `url` in this process.
    pub async fn store(url: &str) -> anyhow::Result<Driver> {
        let database = config::parse_database_url(url)?;
        let postgres = match &database {
            config::Database::Postgres(url) => Some(url.clone()),
            config::Database::Sqlite(_) => None,
        };
        let kind = match database {
            config::Database::Sqlite(_) => "sqlite",
            config::Database::Postgres(_) => "postgres",
        };
        let mut settings = config::Settings::load(None)?;
        settings.database = database;
        // The bench measures the store on the system's time, whatever the
        // settings say of the test clock.
        let opened = crate::open_store(&settings, true, &crate::Time::system()).await?;
        if let Opened::Sqlite(store) = &opened {
            wait_for_preload(store).await;
        }
        Ok(Driver::Store {
            opened,
            postgres,
            label: format!("creditd {kind} in-process"),
        })
    }

    /// A running creditd at `base`.
    pub fn http(base: &str, key: &str) -> Driver {
        Driver::Http {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// The baseline on the PostgreSQL database at `url`.
    pub async fn baseline(url: &str) -> anyhow::Result<Driver> {
        Ok(Driver::Baseline(Baseline::connect(url).await?))
    }

    /// The fake upstream at `origin` (`http://host:port`), called directly.
    pub fn upstream(origin: String) -> Driver {
        Driver::Upstream { origin }
    }

    /// A short name for tables.
    pub fn label(&self) -> String {
        match self {
            Driver::Store { label, .. } => label.clone(),
            Driver::Http { .. } => "creditd over HTTP".to_owned(),
            Driver::Baseline(_) => "baseline postgres".to_owned(),
            Driver::Upstream { .. } => DIRECT_LABEL.to_owned(),
        }
    }

    /// The name of this target in a workload's rows.
    pub fn label_for(&self, workload: Workload) -> String {
        match self {
            Driver::Http { .. } if workload.is_gateway() => GATEWAY_LABEL.to_owned(),
            _ => self.label(),
        }
    }

    /// The baseline has neither holds nor a check distinct from a read, so it
    /// runs the consume workloads and a plain balance read as its check. The
    /// gateway workloads run over HTTP and on the upstream directly; the
    /// upstream runs nothing else.
    pub fn supports(&self, workload: Workload) -> bool {
        match self {
            Driver::Baseline(_) => matches!(
                workload,
                Workload::ConsumeHot
                    | Workload::ConsumeSpread
                    | Workload::Check
                    | Workload::Balance
            ),
            Driver::Store { .. } => !workload.is_gateway(),
            Driver::Http { .. } => true,
            Driver::Upstream { .. } => workload.is_gateway(),
        }
    }

    /// Opens the hot account and `accounts` others, each with plenty of credits.
    pub async fn setup(&self, prefix: &str, accounts: usize) -> anyhow::Result<()> {
        let mut ids: Vec<String> = vec![account(prefix, None)];
        ids.extend((0..accounts).map(|i| account(prefix, Some(i))));
        match self {
            Driver::Store {
                opened, postgres, ..
            } => {
                let store = opened.store();
                for chunk in ids.chunks(512) {
                    let mut tasks = tokio::task::JoinSet::new();
                    for id in chunk {
                        let store = store.clone();
                        let id = AccountId::parse(id)
                            .map_err(|_| anyhow::anyhow!("bad account id {id}"))?;
                        tasks.spawn(async move { open_with_credits(store.as_ref(), id).await });
                    }
                    while let Some(done) = tasks.join_next().await {
                        done??;
                    }
                }
                if let Some(url) = postgres {
                    // Measure steady state: plans made with the tables' real sizes.
                    super::baseline::analyze(url).await?;
                }
                Ok(())
            }
            Driver::Http { base, key } => {
                let mut tasks = tokio::task::JoinSet::new();
                let ids = Arc::new(ids);
                let workers = 16;
                for w in 0..workers {
                    let (base, key, ids) = (base.clone(), key.clone(), ids.clone());
                    tasks.spawn(async move {
                        let mut conn = Conn::connect(&base, &key).await?;
                        for id in ids.iter().skip(w).step_by(workers) {
                            open_funded(&mut conn, id).await?;
                        }
                        anyhow::Ok(())
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done??;
                }
                Ok(())
            }
            Driver::Baseline(baseline) => baseline.setup(&ids, START_CREDITS).await,
            Driver::Upstream { .. } => Ok(()),
        }
    }

    /// Prepares the gateway workloads: prices [`BENCH_MODEL`] and opens one
    /// account per client with plenty of credits (unless `reuse`, when a
    /// run with the same prefix opened them), then makes each account a
    /// customer key. Answers the keys, client by client; the upstream
    /// directly needs none.
    pub async fn setup_gateway(
        &self,
        prefix: &str,
        clients: usize,
        reuse: bool,
    ) -> anyhow::Result<Vec<String>> {
        let Driver::Http { base, key } = self else {
            return Ok(Vec::new());
        };
        let mut conn = Conn::connect(base, key).await?;
        if !reuse {
            let (status, body) = conn
                .put(&format!("/v1/prices/{BENCH_MODEL}"), BENCH_PRICE.to_owned())
                .await?;
            anyhow::ensure!(
                status == 200,
                "pricing {BENCH_MODEL}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let mut tasks = tokio::task::JoinSet::new();
        let workers = clients.clamp(1, 16);
        for w in 0..workers {
            let (base, key, prefix) = (base.clone(), key.clone(), prefix.to_owned());
            tasks.spawn(async move {
                let mut conn = Conn::connect(&base, &key).await?;
                let mut keys = Vec::new();
                for c in (w..clients).step_by(workers) {
                    let id = gateway_account(&prefix, c);
                    if !reuse {
                        open_funded(&mut conn, &id).await?;
                    }
                    let (status, body) = conn
                        .post(&format!("/v1/accounts/{id}/keys"), "{}".to_owned())
                        .await?;
                    anyhow::ensure!(
                        status == 201,
                        "making a customer key for {id}: {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                    let answer: serde_json::Value = serde_json::from_slice(&body)?;
                    let customer_key = answer
                        .get("key")
                        .and_then(serde_json::Value::as_str)
                        .ok_or_else(|| anyhow::anyhow!("no key in the answer for {id}"))?;
                    keys.push((c, customer_key.to_owned()));
                }
                Ok::<_, anyhow::Error>(keys)
            });
        }
        let mut keys = vec![String::new(); clients];
        while let Some(done) = tasks.join_next().await {
            for (c, key) in done?? {
                keys[c] = key;
            }
        }
        Ok(keys)
    }

    /// A client: its own connection where the target has connections. Over
    /// HTTP it sends `customer_key` when given (the gateway workloads), the
    /// admin key otherwise.
    pub async fn client(&self, prefix: &str, customer_key: Option<&str>) -> anyhow::Result<Client> {
        Ok(match self {
            Driver::Store { opened, .. } => Client::Store {
                store: opened.store(),
                prefix: prefix.to_owned(),
            },
            Driver::Http { base, key } => Client::Http {
                conn: Conn::connect(base, customer_key.unwrap_or(key)).await?,
                prefix: prefix.to_owned(),
            },
            Driver::Upstream { origin } => Client::Http {
                conn: Conn::connect(origin, UPSTREAM_KEY).await?,
                prefix: prefix.to_owned(),
            },
            Driver::Baseline(baseline) => Client::Baseline {
                client: baseline.client().await?,
                prefix: prefix.to_owned(),
            },
        })
    }

    /// The write path's counters (batches, commands, seconds applying them),
    /// for creditd targets.
    pub async fn batch_counters(&self) -> Option<BatchCounters> {
        match self {
            Driver::Store { opened, .. } => {
                let store = opened.store();
                let stats = store.stats();
                Some(BatchCounters {
                    batches: stats.batches.load(Ordering::Relaxed),
                    commands: stats.commands.load(Ordering::Relaxed),
                    seconds: stats.batch_micros.load(Ordering::Relaxed) as f64 / 1e6,
                })
            }
            Driver::Http { base, key } => {
                let text = metrics(base, key).await?;
                Some(BatchCounters {
                    batches: metric(&text, "creditd_store_batches_total")? as u64,
                    commands: metric(&text, "creditd_store_commands_total")? as u64,
                    seconds: metric(&text, "creditd_store_batch_seconds_total")?,
                })
            }
            Driver::Baseline(_) | Driver::Upstream { .. } => None,
        }
    }

    /// The resident memory of the process holding creditd's state, if known.
    pub async fn resident_bytes(&self) -> Option<u64> {
        match self {
            Driver::Store { .. } => server::metrics::resident_bytes(),
            Driver::Http { base, key } => {
                let text = metrics(base, key).await?;
                metric(&text, "creditd_process_resident_bytes").map(|bytes| bytes as u64)
            }
            Driver::Baseline(_) | Driver::Upstream { .. } => None,
        }
    }

    /// Lets an in-process store finish its writes.
    pub async fn close(self) {
        if let Driver::Store { opened, .. } = self {
            opened.close().await;
        }
    }
}

/// A running creditd's `/metrics` page.
async fn metrics(base: &str, key: &str) -> Option<String> {
    let mut conn = Conn::connect(base, key).await.ok()?;
    let (_, body) = conn.get("/metrics").await.ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The value of an unlabelled metric on a `/metrics` page.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn open_with_credits(store: &dyn Store, id: AccountId) -> anyhow::Result<()> {
    let new = NewAccount::new(id.clone(), None, Metadata::empty(), Amount::ZERO)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    expect_ok(
        store
            .execute(Command::new(Op::CreateAccount {
                account: new,
                grants: Vec::new(),
            }))
            .await?,
    )?;
    let grant = NewGrant {
        amount: Amount::credits(START_CREDITS),
        source: Source::Purchase,
        priority: None,
        effective_at: None,
        expires_at: None,
        metadata: Metadata::empty(),
        external_id: None,
        actor: None,
        reason: None,
    };
    expect_ok(
        store
            .execute(Command::new(Op::Grant { account: id, grant }))
            .await?,
    )?;
    Ok(())
}

fn expect_ok(executed: Executed) -> anyhow::Result<StoreOutcome> {
    match executed {
        Executed::Fresh(Ok(outcome)) => Ok(outcome),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

/// One client of a target. The upstream's clients are HTTP clients too.
pub enum Client {
    Store {
        store: Arc<dyn Store>,
        prefix: String,
    },
    Http {
        conn: Conn,
        prefix: String,
    },
    Baseline {
        client: BaselineClient,
        prefix: String,
    },
}

fn from_store(result: Result<Executed, store::StoreError>) -> (Outcome, Option<StoreOutcome>) {
    match result {
        Ok(Executed::Fresh(Ok(outcome))) => (Outcome::Ok, Some(outcome)),
        Ok(Executed::Fresh(Err(store::Refused::Ledger(Reject::InsufficientCredits {
            ..
        })))) => (Outcome::Rejected, None),
        Ok(other) => (Outcome::Error(format!("{other:?}")), None),
        Err(error) => (Outcome::Error(error.to_string()), None),
    }
}

fn from_status(result: anyhow::Result<(u16, Vec<u8>)>, ok: u16) -> (Outcome, Option<Vec<u8>>) {
    match result {
        Ok((status, body)) if status == ok => (Outcome::Ok, Some(body)),
        Ok((402, _)) => (Outcome::Rejected, None),
        Ok((status, body)) => (
            Outcome::Error(format!("{status} {}", String::from_utf8_lossy(&body))),
            None,
        ),
        Err(error) => (Outcome::Error(error.to_string()), None),
    }
}

impl Client {
    /// Consumes 1 credit from the hot account (`None`) or account `index`.
    pub async fn consume(&mut self, index: Option<usize>) -> Outcome {
        match self {
            Client::Store { store, prefix } => {
                with_account(prefix, index, async |account| {
                    let op = Op::Consume {
                        account,
                        charge: Charge::Amount(Amount::credits(1)),
                        metadata: Metadata::empty(),
                        external_id: None,
                    };
                    from_store(store.execute(Command::new(op)).await).0
                })
                .await
            }
            Client::Http { conn, prefix } => {
                let path = format!("/v1/accounts/{}/consume", account(prefix, index));
                from_status(conn.post(&path, r#"{"amount":"1"}"#.to_owned()).await, 200).0
            }
            Client::Baseline { client, prefix } => client.consume(&account(prefix, index)).await,
        }
    }

    /// Asks whether 1 credit could be consumed from account `index`.
    pub async fn check(&mut self, index: usize) -> Outcome {
        match self {
            Client::Store { store, prefix } => {
                with_account(prefix, Some(index), async |account| {
                    let now = SystemClock.now();
                    match store.standing(account, now).await {
                        Ok(Some(standing)) => match standing.check(Amount::credits(1), now) {
                            Some(Ok(check)) if check.allowed => Outcome::Ok,
                            Some(Ok(_)) => Outcome::Rejected,
                            Some(Err(r)) => Outcome::Error(r.to_string()),
                            None => Outcome::Error("a standing that does not cover now".into()),
                        },
                        Ok(None) => Outcome::Error("no such account".into()),
                        Err(e) => Outcome::Error(e.to_string()),
                    }
                })
                .await
            }
            Client::Http { conn, prefix } => {
                let path = format!("/v1/accounts/{}/check", account(prefix, Some(index)));
                from_status(conn.post(&path, r#"{"amount":"1"}"#.to_owned()).await, 200).0
            }
            Client::Baseline { client, prefix } => {
                client.check(&account(prefix, Some(index))).await
            }
        }
    }

    /// Reads the current balance of account `index`, with its lots.
    pub async fn balance(&mut self, index: usize) -> Outcome {
        match self {
            Client::Store { store, prefix } => {
                with_account(prefix, Some(index), async |account| {
                    let now = SystemClock.now();
                    match store.book(account, None).await {
                        // What the balance endpoint does with the book.
                        Ok(Some(book)) => {
                            let settled = book.settled(now);
                            if settled.balance(now).available.is_positive() {
                                Outcome::Ok
                            } else {
                                Outcome::Rejected
                            }
                        }
                        Ok(None) => Outcome::Error("no such account".into()),
                        Err(e) => Outcome::Error(e.to_string()),
                    }
                })
                .await
            }
            Client::Http { conn, prefix } => {
                let path = format!("/v1/accounts/{}/balance", account(prefix, Some(index)));
                from_status(conn.get(&path).await, 200).0
            }
            // The usual design's balance is its one integer.
            Client::Baseline { client, prefix } => {
                client.check(&account(prefix, Some(index))).await
            }
        }
    }

    /// Holds 1 credit on account `index`, then commits it.
    pub async fn hold_commit(&mut self, index: usize) -> Outcome {
        match self {
            Client::Store { store, prefix } => {
                with_account(prefix, Some(index), async |account| {
                    let op = Op::Hold {
                        account,
                        amount: Amount::credits(1),
                        ttl: HoldTtl::default(),
                        metadata: Metadata::empty(),
                    };
                    let hold = match from_store(store.execute(Command::new(op)).await) {
                        (_, Some(StoreOutcome::Held { hold, .. })) => hold.id,
                        (outcome, _) => return outcome,
                    };
                    let commit = Op::Commit {
                        hold,
                        amount: Amount::credits(1),
                        metadata: Metadata::empty(),
                    };
                    from_store(store.execute(Command::new(commit)).await).0
                })
                .await
            }
            Client::Http { conn, prefix } => {
                let path = format!("/v1/accounts/{}/holds", account(prefix, Some(index)));
                let body = match from_status(
                    conn.post(&path, r#"{"amount":"1"}"#.to_owned()).await,
                    201,
                ) {
                    (_, Some(body)) => body,
                    (outcome, None) => return outcome,
                };
                let Some(id) = hold_id(&body) else {
                    return Outcome::Error("no hold id in the answer".into());
                };
                let path = format!("/v1/holds/{id}/commit");
                from_status(conn.post(&path, r#"{"amount":"1"}"#.to_owned()).await, 200).0
            }
            Client::Baseline { .. } => Outcome::Error("the baseline has no holds".into()),
        }
    }
}

impl Client {
    /// Makes one chat completion call, streamed or not. Answers, for a
    /// stream, when its first body byte arrived; the stream is read to its
    /// end either way.
    pub async fn chat(&mut self, stream: bool) -> (Outcome, Option<Instant>) {
        let Client::Http { conn, .. } = self else {
            return (Outcome::Error("chat calls go over HTTP".into()), None);
        };
        let body = if stream {
            CHAT_STREAM_REQUEST
        } else {
            CHAT_REQUEST
        };
        let answer = match conn
            .exchange("POST", "/v1/chat/completions", Some(body))
            .await
        {
            Ok(answer) => answer,
            Err(error) => return (Outcome::Error(error.to_string()), None),
        };
        let outcome = match answer.status {
            200 if stream && !answer.body.ends_with(b"data: [DONE]\n\n") => {
                Outcome::Error("the event stream did not end with [DONE]".into())
            }
            200 if stream && answer.first_byte.is_none() => {
                Outcome::Error("a stream answered without chunks".into())
            }
            200 => Outcome::Ok,
            402 => Outcome::Rejected,
            status => Outcome::Error(format!(
                "{status} {}",
                String::from_utf8_lossy(&answer.body)
            )),
        };
        (outcome, answer.first_byte)
    }
}

/// The first hold id in a hold write's JSON (`{"hold":{"id":"hold_7",…`).
fn hold_id(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("\"hold_")? + 1;
    let end = start + text[start..].find('"')?;
    Some(&text[start..end])
}
