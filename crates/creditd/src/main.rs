//! The `creditd` binary: serve the API, migrate, verify the journal, and
//! administer accounts from the command line.

mod bench;
mod config;

/// mimalloc rather than the system allocator: the writer allocates what the
/// request threads free, and glibc's arenas serialize that on a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use config::{Database, Settings};
use ledger::{
    AccountId, Amount, ExternalId, Metadata, NewAccount, NewGrant, Reject, Source, Timestamp,
};
use server::test_clock::TestClock;
use server::{AppState, JobsConfig, KeyHash, Keys};
use store::postgres::{PostgresOptions, PostgresStore};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{Clock, Command, Executed, Op, Refused, Store, SystemClock};

#[derive(Parser)]
#[command(
    name = "creditd",
    version,
    about = "A credit ledger and billing engine for AI products"
)]
struct Cli {
    /// A settings file of `CREDITD_NAME=value` lines; the environment wins over it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API (applies migrations first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check the whole journal against every balance; exit 1 on any violation.
    Verify,
    /// Write a consistent copy of the SQLite database to FILE, a new file,
    /// while the server may be serving it.
    Backup {
        /// Where the copy goes.
        file: PathBuf,
    },
    /// Write the backup FILE over the SQLite database once it passes
    /// `verify`'s audit. Stop the server first.
    Restore {
        /// The backup to restore.
        file: PathBuf,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCmd,
    },
    /// Grant credits to an account.
    Grant {
        /// The account id.
        #[arg(value_parser = parse_account)]
        account: AccountId,
        /// Credits, as a decimal such as 100 or 12.5.
        #[arg(value_parser = parse_amount)]
        amount: Amount,
        /// Where the credits come from.
        #[arg(long, default_value = "admin", value_parser = parse_source)]
        source: Source,
        /// Burn priority, 0 to 100 (lower burns first).
        #[arg(long)]
        priority: Option<u8>,
        /// When the credits become spendable (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        effective_at: Option<Timestamp>,
        /// When the credits expire (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<Timestamp>,
        /// What caused the grant, unique per account: granting again with
        /// the same id applies nothing and prints the first grant.
        #[arg(long, value_parser = parse_external_id)]
        external_id: Option<ExternalId>,
    },
    /// Manage the gateway's price catalog.
    Prices {
        #[command(subcommand)]
        command: PricesCmd,
    },
    /// Manage the master key that seals customers' provider keys.
    Keys {
        #[command(subcommand)]
        command: KeysCmd,
    },
    /// Measure throughput and latency, against the usual design if asked.
    Bench(Box<bench::Options>),
    /// Print an account's balance.
    Balance {
        /// The account id.
        #[arg(value_parser = parse_account)]
        account: AccountId,
        /// The instant to show the balance at (RFC 3339); now when absent.
        #[arg(long, value_parser = parse_time)]
        at: Option<Timestamp>,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Reseal every provider key under the current master key
    /// (`CREDITD_MASTER_KEY`), opening old ones with the retired keys
    /// (`CREDITD_MASTER_KEYS_RETIRED`); afterwards the retired keys can go.
    RotateMaster,
}

#[derive(Subcommand)]
enum PricesCmd {
    /// Import a price list: LiteLLM's `model_prices_and_context_window.json`
    /// or models.dev's `api.json` (`-` reads standard input, `starter` the
    /// starter catalog shipped with creditd).
    Import {
        /// The list's file.
        file: String,
        /// `litellm` or `models_dev`; guessed from the list's shape when absent.
        #[arg(long)]
        format: Option<String>,
        /// Only models of these providers, comma-separated (`openai,anthropic`).
        #[arg(long)]
        providers: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Open an account.
    Create {
        /// The account id: 1 to 128 characters of A-Za-z0-9_.:-
        #[arg(value_parser = parse_account)]
        id: AccountId,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
        /// How far below zero consumes may go.
        #[arg(long, default_value = "0", value_parser = parse_amount)]
        overdraft_limit: Amount,
    },
}

/// Results go to stdout and nothing else does. A failure of the command is
/// one line on stderr starting `error: ` and exit status 1; a usage error
/// (an unknown option, a missing or malformed argument) is clap's message on
/// stderr and exit status 2.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // On one line even when a cause's own text spans several, so
            // that a script can take the line as the whole error.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// SQLite allocates through the C library's `malloc`, not mimalloc, and
/// glibc hands freed memory back to the kernel as soon as the top of its
/// heap is free: every write batch would then fault its pages in again and
/// interrupt the other cores. Freed memory is kept up to 64 MiB instead.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt changes a tuning parameter of glibc's allocator and
    // nothing else; it runs once, before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn run(cli: Cli) -> anyhow::Result<()> {
    keep_freed_memory();
    let settings = Settings::load(cli.config.as_deref())?;
    // The server reports its life at info; a command run once keeps its
    // stderr for warnings and its error.
    let serving = matches!(cli.command, Cmd::Serve);
    let level = settings.log.unwrap_or(if serving {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    });
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    if settings.log_json {
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        // Colour codes only for a terminal: in a file or a pipe they are noise.
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking threads run database reads, and a handful of reader
        // connections serve them: more threads would only wait, each holding
        // its own stack and allocator caches.
        .max_blocking_threads(16)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Cmd::Serve => serve(settings).await,
            Cmd::Migrate => {
                let ran = match &settings.database {
                    Database::Sqlite(path) => store::sqlite::migrate(path)?,
                    Database::Postgres(url) => store::postgres::migrate(url).await?,
                };
                println!("applied {ran} migration(s)");
                Ok(())
            }
            Cmd::Verify => verify(&settings).await,
            Cmd::Backup { file } => backup(&settings, &file, true),
            Cmd::Restore { file } => backup(&settings, &file, false),
            Cmd::Account { command } => admin_account(&settings, command).await,
            Cmd::Grant {
                account,
                amount,
                source,
                priority,
                effective_at,
                expires_at,
                external_id,
            } => {
                let grant = NewGrant {
                    amount,
                    source,
                    priority,
                    effective_at,
                    expires_at,
                    metadata: Metadata::empty(),
                    external_id,
                    actor: None,
                    reason: None,
                };
                admin_write(&settings, Op::Grant { account, grant }).await
            }
            Cmd::Balance { account, at } => balance(&settings, &account, at).await,
            Cmd::Prices { command } => prices(&settings, command).await,
            Cmd::Keys {
                command: KeysCmd::RotateMaster,
            } => rotate_master(&settings).await,
            Cmd::Bench(options) => bench::run(*options).await.map(drop),
        }
    })
}

/// An opened store, of either kind.
enum Opened {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(store) => store.clone(),
            Opened::Postgres(store) => store.clone(),
        }
    }

    /// Lets the writer finish what it has, once nothing else holds the store.
    async fn close(self) {
        match self {
            Opened::Sqlite(store) => {
                if let Ok(store) = Arc::try_unwrap(store) {
                    store.close();
                }
            }
            Opened::Postgres(store) => {
                if let Ok(store) = Arc::try_unwrap(store) {
                    store.close().await;
                }
            }
        }
    }
}

/// The clock a process runs on: the system's, or with `CREDITD_TEST_CLOCK`
/// the test clock, which [`open_store`] sets to the offset the store keeps.
struct Time {
    clock: Arc<dyn Clock>,
    test: Option<Arc<TestClock>>,
}

impl Time {
    /// The system's clock.
    fn system() -> Time {
        Time {
            clock: Arc::new(SystemClock),
            test: None,
        }
    }

    /// The clock the settings choose.
    fn of(settings: &Settings) -> Time {
        if !settings.test_clock {
            return Time::system();
        }
        let test = TestClock::new(Arc::new(SystemClock));
        Time {
            clock: test.clock(),
            test: Some(test),
        }
    }
}

/// Opens the configured store on `time`'s clock; `serving` for a process
/// that answers requests (the server, the bench), not for a one-off command.
async fn open_store(settings: &Settings, serving: bool, time: &Time) -> anyhow::Result<Opened> {
    let opened = open_store_on(settings, serving, time.clock.clone()).await?;
    if let Some(test) = &time.test {
        // Before anything reads the clock, so that no write is stamped
        // before the time the ledger has already reached.
        test.refresh(opened.store().as_ref())
            .await
            .context("reading the test clock's offset")?;
    }
    Ok(opened)
}

async fn open_store_on(
    settings: &Settings,
    serving: bool,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Opened> {
    Ok(match &settings.database {
        Database::Sqlite(path) => {
            let options = SqliteOptions {
                readers: settings.sqlite_readers,
                books_budget_bytes: settings.sqlite_books_mib << 20,
                preload_books: serving,
                batch_size_max: settings.batch_size_max,
                wal_autocheckpoint_pages: settings.sqlite_autocheckpoint_pages,
                checkpoint_interval: (settings.sqlite_checkpoint_ms > 0)
                    .then(|| std::time::Duration::from_millis(settings.sqlite_checkpoint_ms)),
                ..SqliteOptions::new(path)
            };
            Opened::Sqlite(Arc::new(
                SqliteStore::open(options, clock)
                    .with_context(|| format!("opening {}", path.display()))?,
            ))
        }
        Database::Postgres(url) => {
            let options = PostgresOptions {
                pool_size: settings.pg_pool_size,
                writers: settings.pg_writers,
                batch_size_max: settings.batch_size_max,
                ..PostgresOptions::new(url)
            };
            Opened::Postgres(Arc::new(
                PostgresStore::open(options, clock)
                    .await
                    .context("opening the PostgreSQL database")?,
            ))
        }
    })
}

/// Refuses a database that holds no ledger, for the commands that only
/// read, and creates or changes nothing: opening the store would create the
/// database and migrate it, and the command would then report on an empty
/// ledger as if it were the one meant.
async fn ensure_ledger(database: &Database) -> anyhow::Result<()> {
    match database {
        Database::Sqlite(path) => ensure_sqlite_ledger(path),
        Database::Postgres(url) => ensure_postgres_ledger(url).await,
    }
}

fn ensure_sqlite_ledger(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    if !path
        .try_exists()
        .with_context(|| format!("looking for {shown}"))?
    {
        bail!("no database at {shown} (`creditd migrate` creates one)");
    }
    // Without SQLITE_OPEN_CREATE; and not read-only, because a write-ahead
    // log left by a crash is recovered only by a connection that may write.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {shown}"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let migrated: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master \
             WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |row| row.get(0),
        )
        .with_context(|| format!("reading {shown}"))?;
    if !migrated {
        bail!("{shown} holds no creditd ledger (`creditd migrate` creates one)");
    }
    Ok(())
}

async fn ensure_postgres_ledger(url: &str) -> anyhow::Result<()> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .context("CREDITD_DATABASE_URL is not a PostgreSQL URL")?;
    config.connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the PostgreSQL database")?;
    // The connection's task ends when the client is dropped.
    tokio::spawn(connection);
    let migrated: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .context("reading the PostgreSQL database")?
        .get(0);
    if !migrated {
        bail!("the PostgreSQL database holds no creditd ledger (`creditd migrate` creates one)");
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Bound before the admin key is read: a first start that generated the
    // key and then failed to bind would have kept its hash and shown the key
    // only beside the error, so no later start would show it again.
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let time = Time::of(&settings);
    if time.test.is_some() {
        tracing::warn!(
            "TEST CLOCK ON (CREDITD_TEST_CLOCK=true): any admin key can move this server's time \
             forward for good, expiring credits and holds and renewing plans ahead of time; \
             never run a ledger of real customers like this"
        );
    }
    let opened = open_store(&settings, true, &time).await?;
    let store = opened.store();
    if time.test.is_none() {
        warn_of_a_past_test_clock(store.as_ref()).await;
    }
    let generated = server::auth::bootstrap(store.as_ref(), settings.admin_key.as_ref()).await?;
    if let Some(key) = &generated {
        // Shown once: only its hash is kept.
        println!(
            "generated admin key (store it now, it is not shown again): {}",
            key.expose()
        );
    }
    let keys = Keys::new(
        settings
            .admin_key
            .as_ref()
            .map(|key| KeyHash::of(key.expose())),
    );
    keys.refresh(store.as_ref())
        .await
        .context("reading the API keys")?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| {
        format!(
            "http://{}",
            listener.local_addr().unwrap_or(settings.listen)
        )
    });
    let app = assemble(&settings, store, &time, keys, &public_url).await;
    // Tests and scripts read the bound address from this line.
    println!("listening on {}", listener.local_addr()?);
    tracing::info!(addr = %listener.local_addr()?, "creditd serving");
    app.serve(listener, settings.connections, shutdown_signal())
        .await?;
    // Serving gave up the last holders of the store, so that closing it can
    // wait for its writer.
    opened.close().await;
    Ok(())
}

/// The server on `store` and `time`'s clock, authenticating `keys`, with
/// every capability plugged in.
async fn assemble(
    settings: &Settings,
    store: Arc<dyn Store>,
    time: &Time,
    keys: Keys,
    public_url: &str,
) -> server::App {
    let clock = time.clock.clone();
    let billing = Arc::new(
        billing::Billing::new(store.clone(), clock.clone(), settings.credits.clone())
            .with_payments(
                settings
                    .payments
                    .clone()
                    .map(billing::payments::Payments::stripe),
                Amount::from_micros(settings.gateway.rate.credits_per_usd.units() as i64),
            )
            // Billing's jobs run as often as the sweep: an account that fell
            // below its auto top-up threshold starts its top-up within that
            // interval, as a lot expires within it.
            .with_jobs_interval(settings.sweep_interval),
    );
    let gateway = Arc::new(gateway::Gateway::new(
        store.clone(),
        clock.clone(),
        settings.gateway.clone(),
    ));
    warn_of_upstreams_without_a_key(&gateway).await;
    let dashboard = Arc::new(dashboard(settings, &store, &clock, public_url));
    let webhooks = Arc::new(webhooks::Webhooks::new(
        store.clone(),
        clock.clone(),
        billing.clone(),
        webhooks::WebhookConfig {
            allow_private: settings.allow_private_webhooks,
            keyring: settings.gateway.keyring.clone(),
            // Events go out as often as the sweep runs.
            interval: settings.sweep_interval,
            ..webhooks::WebhookConfig::default()
        },
    ));
    let capabilities = capabilities(&billing, &gateway, &dashboard, &webhooks, time, &store);
    let state = AppState::new(store, clock, keys)
        .with_cors(server::cors::CorsOrigins::new(
            settings.cors_origins.clone(),
        ))
        .with_top_up_url(settings.top_up_url.clone())
        .with_limits(settings.requests.clone())
        .with_rate_limits(settings.rate_limits);
    let jobs = JobsConfig {
        sweep_interval: settings.sweep_interval,
        ..JobsConfig::default()
    };
    server::App::new(state, jobs, capabilities)
}

/// The dashboard, reached at `public_url`, offering purchases when
/// payments are configured: its forms may then lead to Stripe's hosted
/// pages (and to the API base's origin when it is not Stripe's, as in
/// tests against a local server).
fn dashboard(
    settings: &Settings,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    public_url: &str,
) -> dashboard::Dashboard {
    let dashboard = dashboard::Dashboard::new(store.clone(), clock.clone(), public_url);
    match &settings.payments {
        Some(payments) => {
            let mut origins = vec![dashboard::STRIPE_CHECKOUT_ORIGIN.to_owned()];
            if payments.api_base != billing::payments::STRIPE_API_BASE {
                origins.push(dashboard::security::origin_of(&payments.api_base));
            }
            dashboard.with_payments(origins)
        }
        None => dashboard,
    }
}

/// Warns of each upstream the price catalog routes models to that has no
/// key and is not declared keyless: its calls answer `503
/// upstream_not_configured` rather than going out without a key.
async fn warn_of_upstreams_without_a_key(gateway: &gateway::Gateway) {
    let prices = match gateway::catalog::all(gateway.store.as_ref(), None).await {
        Ok(prices) => prices,
        Err(error) => {
            tracing::warn!(%error, "reading the price catalog to check the upstreams failed");
            return;
        }
    };
    let config = &gateway.config;
    let routes = prices
        .iter()
        .map(|doc| (doc.body.upstreams.as_slice(), doc.body.wire()));
    for name in config.keyless_in_use(routes) {
        tracing::warn!(
            upstream = name,
            "the price catalog routes models to the upstream {name}, which has no API key: \
             their calls answer 503 upstream_not_configured until {} is set, or {}=true \
             declares it keyless",
            gateway::config::key_setting(name),
            gateway::config::keyless_setting(name),
        );
    }
}

/// Every capability beyond the ledger: its routes with the access each
/// needs, its error codes, its background jobs and its policy. A new
/// capability (the gateway) is one more entry here.
fn capabilities(
    billing: &Arc<billing::Billing>,
    gateway: &Arc<gateway::Gateway>,
    dashboard: &Arc<dashboard::Dashboard>,
    webhooks: &Arc<webhooks::Webhooks>,
    time: &Time,
    store: &Arc<dyn Store>,
) -> Vec<server::Capability> {
    let mut capabilities = vec![
        billing.capability(),
        gateway.capability(),
        dashboard.capability(),
        webhooks.capability(),
    ];
    // Only a server on the test clock can move it, and follows its offset.
    capabilities.extend(
        time.test
            .as_ref()
            .map(|test| test.capability(store.clone())),
    );
    capabilities
}

/// Warns when the ledger was run on a test clock that this start leaves
/// off: its time goes back by the offset, to before writes already made.
async fn warn_of_a_past_test_clock(store: &dyn Store) {
    match server::test_clock::stored_offset_micros(store).await {
        Ok(0) => {}
        Ok(offset) => tracing::warn!(
            offset_seconds = offset / ledger::MICROS_PER_SECOND,
            "this ledger ran on a test clock that far ahead, and CREDITD_TEST_CLOCK is off: \
             time here is now behind the time of its latest writes"
        ),
        Err(error) => tracing::warn!(%error, "reading the test clock's offset failed"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// Prints the audit's report; any violation fails the command.
/// `creditd backup FILE` (`out`) or `creditd restore FILE`.
fn backup(settings: &Settings, file: &Path, out: bool) -> anyhow::Result<()> {
    let Database::Sqlite(database) = &settings.database else {
        bail!(
            "backup and restore copy a SQLite database; for PostgreSQL use pg_dump and \
             pg_restore, or a base backup (docs/postgres.md)"
        );
    };
    let copied = if out {
        store::sqlite::backup::backup(database, file)
    } else {
        store::sqlite::backup::restore(file, database)
    }
    .with_context(|| {
        format!(
            "copying {}",
            if out { "the database" } else { "the backup" }
        )
    })?;
    let last = copied.last_transaction.map_or_else(
        || "no transaction".to_owned(),
        |id| format!("transactions up to {id}"),
    );
    let (from, to) = if out {
        (database.as_path(), file)
    } else {
        (file, database.as_path())
    };
    println!(
        "copied {} to {}: {} pages, {} bytes, {last}",
        from.display(),
        to.display(),
        copied.pages,
        copied.bytes
    );
    Ok(())
}

async fn verify(settings: &Settings) -> anyhow::Result<()> {
    ensure_ledger(&settings.database).await?;
    let time = Time::of(settings);
    let opened = open_store(settings, false, &time).await?;
    let report = opened.store().audit().await?;
    // Kept for the admin panel's health page; a failure to keep it does not
    // change what the run found, so it is only reported.
    let run = server::verify_run::VerifyRun::of(&report, time.clock.now());
    if let Err(error) = server::verify_run::keep(opened.store().as_ref(), &run).await {
        eprintln!("warning: this run could not be kept for the health page: {error}");
    }
    println!(
        "checked {} accounts, {} lots, {} transactions",
        report.accounts, report.lots, report.transactions
    );
    for (account, violation) in &report.violations {
        println!("VIOLATION account {account}: {violation}");
    }
    for orphan in &report.orphans {
        println!("VIOLATION {orphan}");
    }
    opened.close().await;
    if report.is_clean() {
        println!("ok: every transaction sums to zero and every balance matches the journal");
        Ok(())
    } else {
        let count = report.violations.len() + report.orphans.len();
        println!("FAILED: {count} violation(s)");
        bail!("the journal has {count} violation(s), listed on stdout")
    }
}

async fn admin_account(settings: &Settings, command: AccountCmd) -> anyhow::Result<()> {
    match command {
        AccountCmd::Create {
            id,
            name,
            overdraft_limit,
        } => {
            let new = NewAccount::new(id, name, Metadata::empty(), overdraft_limit)
                .map_err(|reject| rejected(&reject))?;
            admin_write(
                settings,
                Op::CreateAccount {
                    account: new,
                    grants: Vec::new(),
                },
            )
            .await
        }
    }
}

/// Applies one write and prints the same JSON the API would answer; a
/// rejection fails the command with its code.
async fn admin_write(settings: &Settings, op: Op) -> anyhow::Result<()> {
    let opened = open_store(settings, false, &Time::of(settings)).await?;
    let executed = opened.store().execute(Command::new(op)).await?;
    opened.close().await;
    let result = match executed {
        Executed::Fresh(Err(Refused::Ledger(reject))) => return Err(rejected(&reject)),
        Executed::Fresh(Err(refused)) => bail!("refused: {refused:?}"),
        Executed::Fresh(Ok(outcome)) | Executed::Existing(outcome) => Ok(outcome),
        Executed::Replayed(_) => bail!("unexpected replay"),
    };
    let response = server::render::outcome(&result);
    println!("{}", String::from_utf8_lossy(&response.body));
    Ok(())
}

async fn balance(
    settings: &Settings,
    account: &AccountId,
    at: Option<Timestamp>,
) -> anyhow::Result<()> {
    ensure_ledger(&settings.database).await?;
    let time = Time::of(settings);
    let opened = open_store(settings, false, &time).await?;
    let when = at.unwrap_or_else(|| time.clock.now());
    let book = opened.store().book(account.clone(), at).await?;
    opened.close().await;
    let book = book.ok_or_else(|| rejected(&Reject::AccountNotFound))?;
    let settled = book.settled(when);
    let balance = settled.balance(when);
    let view = server::render::BalanceView::new(account.as_str(), balance, settled.lots(), when);
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}

/// `creditd keys rotate-master`: reseals provider keys under the current
/// master key; fails when any could not be opened.
async fn rotate_master(settings: &Settings) -> anyhow::Result<()> {
    let keyring = settings
        .gateway
        .keyring
        .clone()
        .context("set CREDITD_MASTER_KEY to the new master key, and the old ones in CREDITD_MASTER_KEYS_RETIRED")?;
    ensure_ledger(&settings.database).await?;
    let time = Time::of(settings);
    let opened = open_store(settings, false, &time).await?;
    let rotated = gateway::byok::rotate(opened.store().as_ref(), &keyring).await;
    let resealed = webhooks::endpoint::reseal(opened.store().as_ref(), &keyring).await;
    opened.close().await;
    let (rotated, resealed) = (rotated?, resealed?);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "resealed": rotated.resealed,
            "current": rotated.current,
            "failed": rotated.failed,
            "webhook_endpoints": resealed,
        }))?
    );
    if !rotated.failed.is_empty() || !resealed.failed.is_empty() {
        anyhow::bail!(
            "{} provider key(s) and {} webhook endpoint secret(s) could not be opened with the \
             keys given",
            rotated.failed.len(),
            resealed.failed.len()
        );
    }
    Ok(())
}

/// `creditd prices import`: writes a price list's prices, and prints what
/// was written and what was left out.
async fn prices(settings: &Settings, command: PricesCmd) -> anyhow::Result<()> {
    let PricesCmd::Import {
        file,
        format,
        providers,
    } = command;
    let text = match file.as_str() {
        "starter" => gateway::catalog::STARTER.to_owned(),
        "-" => std::io::read_to_string(std::io::stdin()).context("reading standard input")?,
        path => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
    };
    let format = match format.as_deref() {
        None => None,
        Some("litellm") => Some(gateway::domain::import::Format::Litellm),
        Some("models_dev") => Some(gateway::domain::import::Format::ModelsDev),
        Some(other) => anyhow::bail!("--format must be litellm or models_dev, got {other:?}"),
    };
    let providers: Option<std::collections::BTreeSet<String>> = providers.map(|p| {
        p.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    ensure_ledger(&settings.database).await?;
    let time = Time::of(settings);
    let opened = open_store(settings, false, &time).await?;
    let catalog = gateway::catalog::Catalog::default();
    let report = gateway::catalog::import(
        opened.store().as_ref(),
        &catalog,
        &text,
        format,
        providers.as_ref(),
    )
    .await;
    opened.close().await;
    let report = report.map_err(|e| {
        let e = server::error::ApiError::from(e);
        anyhow::anyhow!("{}: {}", e.code(), e.message())
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// A ledger rejection as a command's error: its stable code, then what it means.
fn rejected(reject: &Reject) -> anyhow::Error {
    anyhow::anyhow!("{}: {reject}", reject.code())
}

fn parse_account(text: &str) -> Result<AccountId, String> {
    AccountId::parse(text)
        .map_err(|_| "an account id is 1 to 128 characters of A-Za-z0-9_.:-".to_owned())
}

fn parse_amount(text: &str) -> Result<Amount, String> {
    Amount::parse_decimal(text).map_err(|e| e.to_string())
}

fn parse_external_id(text: &str) -> Result<ExternalId, String> {
    ExternalId::parse(text).map_err(|_| {
        format!(
            "an external id is 1 to {} printable ASCII characters without spaces",
            ledger::EXTERNAL_ID_LEN_MAX
        )
    })
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).map_err(|e| e.to_string())
}

fn parse_source(text: &str) -> Result<Source, String> {
    Source::parse(text).ok_or_else(|| {
        let known: Vec<&str> = Source::ALL.iter().map(|s| s.code()).collect();
        format!("not a source; one of {}", known.join(", "))
    })
}
