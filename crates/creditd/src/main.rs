//! The `creditd` binary: serve the API, migrate, verify the journal, and
//! administer accounts from the command line.

mod bench;
mod config;

/// mimalloc rather than the system allocator: the writer allocates what the
/// request threads free, and glibc's arenas serialize that on a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use config::{Database, Settings};
use ledger::{AccountId, Amount, Metadata, NewAccount, NewGrant, Source, Timestamp};
use server::{AppState, JobsConfig};
use store::postgres::{PostgresOptions, PostgresStore};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{Clock, Command, Executed, Op, Store, SystemClock};

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
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCmd,
    },
    /// Grant credits to an account.
    Grant {
        /// The account id.
        account: String,
        /// Credits, as a decimal such as 100 or 12.5.
        amount: String,
        /// Where the credits come from.
        #[arg(long, default_value = "admin")]
        source: String,
        /// Burn priority, 0 to 100 (lower burns first).
        #[arg(long)]
        priority: Option<u8>,
        /// When the credits become spendable (RFC 3339).
        #[arg(long)]
        effective_at: Option<String>,
        /// When the credits expire (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Measure throughput and latency, against the usual design if asked.
    Bench(Box<bench::Options>),
    /// Print an account's balance.
    Balance {
        /// The account id.
        account: String,
        /// The instant to show the balance at (RFC 3339); now when absent.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Open an account.
    Create {
        /// The account id: 1 to 128 characters of A-Za-z0-9_.:-
        id: String,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
        /// How far below zero consumes may go.
        #[arg(long, default_value = "0")]
        overdraft_limit: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    tracing_subscriber::fmt()
        .with_max_level(settings.log)
        .with_writer(std::io::stderr)
        .init();
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
            Cmd::Serve => serve(settings)
                .await
                .map(|()| std::process::ExitCode::SUCCESS),
            Cmd::Migrate => {
                let ran = match &settings.database {
                    Database::Sqlite(path) => store::sqlite::migrate(path)?,
                    Database::Postgres(url) => store::postgres::migrate(url).await?,
                };
                println!("applied {ran} migration(s)");
                Ok(std::process::ExitCode::SUCCESS)
            }
            Cmd::Verify => verify(&settings).await,
            Cmd::Account { command } => admin_account(&settings, command).await,
            Cmd::Grant {
                account,
                amount,
                source,
                priority,
                effective_at,
                expires_at,
            } => {
                let grant = NewGrant {
                    amount: parse_amount(&amount)?,
                    source: Source::parse(&source)
                        .with_context(|| format!("unknown source {source:?}"))?,
                    priority,
                    effective_at: effective_at.as_deref().map(parse_time).transpose()?,
                    expires_at: expires_at.as_deref().map(parse_time).transpose()?,
                    metadata: Metadata::empty(),
                };
                let account = parse_account(&account)?;
                admin_write(&settings, Op::Grant { account, grant }).await
            }
            Cmd::Balance { account, at } => balance(&settings, &account, at.as_deref()).await,
            Cmd::Bench(options) => {
                bench::run(*options).await?;
                Ok(std::process::ExitCode::SUCCESS)
            }
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

/// Opens the configured store; `serving` for a process that answers
/// requests (the server, the bench), not for a one-off command.
async fn open_store(settings: &Settings, serving: bool) -> anyhow::Result<Opened> {
    let clock = Arc::new(SystemClock);
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

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let opened = open_store(&settings, true).await?;
    let store = opened.store();
    let admin = server::auth::admin_key(store.as_ref(), settings.admin_key.as_ref()).await?;
    if let Some(key) = &admin.generated {
        // Shown once: only its hash is kept.
        println!(
            "generated admin key (store it now, it is not shown again): {}",
            key.expose()
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = Arc::new(AppState::new(store, clock, admin.hash));
    let jobs = server::jobs::spawn(
        state.clone(),
        JobsConfig {
            sweep_interval: settings.sweep_interval,
            ..JobsConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    // Tests and scripts read the bound address from this line.
    println!("listening on {}", listener.local_addr()?);
    tracing::info!(addr = %listener.local_addr()?, "creditd serving");
    server::serve(listener, state, shutdown_signal()).await?;
    jobs.abort();
    let _ = jobs.await;
    opened.close().await;
    Ok(())
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

async fn verify(settings: &Settings) -> anyhow::Result<std::process::ExitCode> {
    let opened = open_store(settings, false).await?;
    let report = opened.store().audit().await?;
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
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!(
            "FAILED: {} violation(s)",
            report.violations.len() + report.orphans.len()
        );
        Ok(std::process::ExitCode::FAILURE)
    }
}

async fn admin_account(
    settings: &Settings,
    command: AccountCmd,
) -> anyhow::Result<std::process::ExitCode> {
    match command {
        AccountCmd::Create {
            id,
            name,
            overdraft_limit,
        } => {
            let new = NewAccount::new(
                parse_account(&id)?,
                name,
                Metadata::empty(),
                parse_amount(&overdraft_limit)?,
            )
            .map_err(|r| anyhow::anyhow!("{r}"))?;
            admin_write(settings, Op::CreateAccount(new)).await
        }
    }
}

/// Applies one write and prints the same JSON the API would answer.
async fn admin_write(settings: &Settings, op: Op) -> anyhow::Result<std::process::ExitCode> {
    let opened = open_store(settings, false).await?;
    let executed = opened.store().execute(Command::new(op)).await?;
    opened.close().await;
    let Executed::Fresh(result) = executed else {
        bail!("unexpected replay");
    };
    let response = server::render::outcome(&result);
    println!("{}", String::from_utf8_lossy(&response.body));
    Ok(if result.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn balance(
    settings: &Settings,
    account: &str,
    at: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let opened = open_store(settings, false).await?;
    let at = at.map(parse_time).transpose()?;
    let when = at.unwrap_or_else(|| SystemClock.now());
    let book = opened
        .store()
        .book(parse_account(account)?, at)
        .await?
        .with_context(|| format!("no account {account:?}"))?;
    opened.close().await;
    let settled = book.settled(when);
    let balance = settled.balance(when);
    let view = server::render::BalanceView::new(account, balance, settled.lots(), when);
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(std::process::ExitCode::SUCCESS)
}

fn parse_account(text: &str) -> anyhow::Result<AccountId> {
    AccountId::parse(text).map_err(|_| anyhow::anyhow!("{text:?} is not an account id"))
}

fn parse_amount(text: &str) -> anyhow::Result<Amount> {
    Amount::parse(text).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))
}

fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(text).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))
}
