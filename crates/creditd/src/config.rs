//! Settings: one struct, read in one place from an optional file and `CREDITD_*` variables.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use server::Secret;

/// Where the ledger is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

/// Everything the binary can be told.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `CREDITD_DATABASE_URL`, default `sqlite://creditd.db`.
    pub database: Database,
    /// `CREDITD_LISTEN`, default `127.0.0.1:8080`; `:PORT` is `127.0.0.1:PORT`.
    pub listen: SocketAddr,
    /// `CREDITD_ADMIN_KEY`; when unset, a key is generated on first start.
    pub admin_key: Option<Secret>,
    /// `CREDITD_LOG`: error, warn, info, debug or trace; `None` when unset,
    /// for each command to choose its own default.
    pub log: Option<tracing::Level>,
    /// `CREDITD_LOG_FORMAT`: `text` (the default) or `json`, one object a
    /// line with the request's span (its id) on each line of a request.
    pub log_json: bool,
    /// `CREDITD_SWEEP_INTERVAL_MS`, default 1000: how often expiries are written.
    pub sweep_interval: Duration,
    /// `CREDITD_BATCH_SIZE_MAX`, default 1024: the most writes one batch commits.
    pub batch_size_max: usize,
    /// `CREDITD_SQLITE_READERS`, default 4: reader connections.
    pub sqlite_readers: usize,
    /// `CREDITD_SQLITE_BOOKS_MIB`, default 160: memory for accounts' books
    /// kept in memory, packed (about 110 bytes an account with one lot).
    pub sqlite_books_mib: usize,
    /// `CREDITD_SQLITE_CHECKPOINT_MS`, default 200: how often a separate
    /// thread checkpoints the WAL; 0 leaves it to the writer alone.
    pub sqlite_checkpoint_ms: u64,
    /// `CREDITD_SQLITE_AUTOCHECKPOINT_PAGES`, default 30000: WAL pages after
    /// which the writer checkpoints itself.
    pub sqlite_autocheckpoint_pages: i64,
    /// `CREDITD_PG_POOL_SIZE`, default 16: the most PostgreSQL connections per node.
    pub pg_pool_size: usize,
    /// `CREDITD_PG_WRITERS`, default 2: write batches one node runs at once.
    pub pg_writers: usize,
    /// The credit settings' initial values: `CREDITD_SIGNUP_BONUS_ENABLED`,
    /// `CREDITD_SIGNUP_BONUS_AMOUNT`, `CREDITD_SIGNUP_BONUS_EXPIRE_DAYS`,
    /// `CREDITD_DAILY_ENABLED`, `CREDITD_DAILY_AMOUNT`, `CREDITD_DAILY_EXPIRE_DAYS`,
    /// `CREDITD_ALLOW_FREE_USER_PURCHASE`; the API's values win over them.
    pub credits: billing::EnvSettings,
    /// `CREDITD_TEST_CLOCK`, default false: run on the test clock, which an
    /// admin key can move forward (`POST /v1/test-clock/advance`). Never on
    /// a ledger of real customers.
    pub test_clock: bool,
    /// The gateway: `CREDITD_CREDITS_PER_USD` (default 100),
    /// `CREDITD_MARKUP_PERCENT` (default 10), the upstreams
    /// (`CREDITD_UPSTREAM_BASE_URL` / `CREDITD_UPSTREAM_API_KEY` for OpenAI's
    /// format, `CREDITD_ANTHROPIC_BASE_URL` / `CREDITD_ANTHROPIC_API_KEY`,
    /// and `CREDITD_UPSTREAM_<NAME>_BASE_URL` / `_API_KEY` / `_WIRE` for a
    /// named one; `CREDITD_UPSTREAM_KEYLESS`, `CREDITD_ANTHROPIC_KEYLESS`
    /// and `CREDITD_UPSTREAM_<NAME>_KEYLESS` declare one that needs no key),
    /// `CREDITD_GATEWAY_HOLD_TTL_SECS` (default 900),
    /// `CREDITD_GATEWAY_TOKENS_PER_MINUTE` (each customer key's tokens a
    /// minute without a `token_rate_limit` of its own; none by default), and BYOK:
    /// `CREDITD_MASTER_KEY`, `CREDITD_MASTER_KEYS_RETIRED`,
    /// `CREDITD_BYOK_FEE_PERCENT` (default 0), `CREDITD_ALLOW_PRIVATE_UPSTREAMS`.
    pub gateway: gateway::GatewayConfig,
    /// `CREDITD_CORS_ORIGINS`: origins (`https://app.example.com`,
    /// comma-separated) whose browsers may call the routes customer keys
    /// may; none by default.
    pub cors_origins: Vec<String>,
    /// `CREDITD_TOP_UP_URL`: where customers buy credits (an `http` or
    /// `https` URL), added as `top_up_url` to every `402
    /// insufficient_credits` answer; none by default.
    pub top_up_url: Option<server::top_up::TopUpUrl>,
    /// Payments through Stripe, when `STRIPE_SECRET_KEY` and
    /// `STRIPE_WEBHOOK_SECRET` are set (with `CREDITD_PUBLIC_URL`, and
    /// `STRIPE_API_BASE` to point at another server).
    pub payments: Option<billing::payments::PaymentsConfig>,
    /// `CREDITD_PUBLIC_URL`: where customers reach this server
    /// (`https://credits.example.com`); dashboard links are made under it,
    /// and its cookies are `Secure` when it is https. When unset, the
    /// address the server listens on.
    pub public_url: Option<String>,
    /// How connections are served: `CREDITD_HEADER_READ_TIMEOUT` (seconds a
    /// request's head may take from its first byte, default 10),
    /// `CREDITD_IDLE_TIMEOUT` (seconds a connection may wait for its next
    /// request, default 60), `CREDITD_MAX_CONNECTIONS` (default 10,000 or
    /// fewer, below the open-files limit), `CREDITD_SHUTDOWN_GRACE` (seconds
    /// requests in flight get on SIGTERM, default 10).
    pub connections: server::connections::Limits,
    /// What one request may take: `CREDITD_REQUEST_TIMEOUT` (seconds until
    /// its answer begins, default 30), `CREDITD_UPSTREAM_TIMEOUT` (the same
    /// for the gateway's model calls, default 600), `CREDITD_MAX_IN_FLIGHT`
    /// (requests worked on at once before more are refused `503
    /// overloaded`, default 1024).
    pub requests: server::limits::RequestLimits,
    /// Requests a second for each kind of key without a rate of its own
    /// (`CREDITD_RATE_LIMIT_ADMIN`, `_SERVICE`, `_CUSTOMER`), in that
    /// order; none when unset.
    pub rate_limits: [Option<u32>; 3],
    /// `CREDITD_ALLOW_PRIVATE_WEBHOOKS`, default false: whether webhook
    /// endpoints may be at private, loopback or link-local addresses.
    pub allow_private_webhooks: bool,
}

impl Settings {
    /// Reads `file` (lines of `CREDITD_NAME=value`, `#` comments) if given,
    /// then the environment, which wins.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut values = HashMap::new();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (key, value) = line.split_once('=').with_context(|| {
                    format!("{}:{}: expected NAME=value", file.display(), number + 1)
                })?;
                let key = key.trim();
                if !is_known(key) {
                    bail!(
                        "{}:{}: {key} is not a setting creditd knows (did you mean {}?)",
                        file.display(),
                        number + 1,
                        nearest_known(key)
                    );
                }
                values.insert(key.to_owned(), value.trim().to_owned());
            }
        }
        for (key, value) in std::env::vars() {
            if key.starts_with("CREDITD_") || key.starts_with("STRIPE_") {
                values.insert(key, value);
            }
        }
        Settings::from_values(&values)
    }

    fn from_values(values: &HashMap<String, String>) -> anyhow::Result<Settings> {
        let get = |key: &str| {
            values
                .get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let flag = |key: &str| -> anyhow::Result<bool> {
            match get(key) {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => bail!("{key} must be true or false, got {other:?}"),
            }
        };
        let number = |key: &str, default: u64| -> anyhow::Result<u64> {
            get(key).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{key} must be a whole number"))
            })
        };
        let seconds = |key: &str, default: Duration| -> anyhow::Result<Duration> {
            get(key).map_or(Ok(default), |v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .with_context(|| {
                        format!("{key} must be a number of seconds above 0, got {v:?}")
                    })
            })
        };
        let connection_defaults = server::connections::Limits::default();
        let request_defaults = server::limits::RequestLimits::default();
        let connections = server::connections::Limits {
            header_read_timeout: seconds(
                "CREDITD_HEADER_READ_TIMEOUT",
                connection_defaults.header_read_timeout,
            )?,
            idle_timeout: seconds("CREDITD_IDLE_TIMEOUT", connection_defaults.idle_timeout)?,
            max_connections: number(
                "CREDITD_MAX_CONNECTIONS",
                connection_defaults.max_connections as u64,
            )?
            .clamp(1, 1_000_000) as usize,
            shutdown_grace: seconds("CREDITD_SHUTDOWN_GRACE", connection_defaults.shutdown_grace)?,
        };
        let requests = server::limits::RequestLimits::new(
            seconds("CREDITD_REQUEST_TIMEOUT", request_defaults.timeout)?,
            seconds(
                "CREDITD_UPSTREAM_TIMEOUT",
                request_defaults.upstream_timeout,
            )?,
            number(
                "CREDITD_MAX_IN_FLIGHT",
                request_defaults.max_in_flight() as u64,
            )?
            .clamp(1, 1_000_000) as usize,
        );
        let rate = |key: &str| -> anyhow::Result<Option<u32>> {
            get(key)
                .map(|v| {
                    v.parse::<u32>()
                        .ok()
                        .filter(|r| (1..=1_000_000).contains(r))
                        .with_context(|| {
                            format!("{key} must be a whole number of requests a second from 1 to 1000000, got {v:?}")
                        })
                })
                .transpose()
        };
        let rate_limits = [
            rate("CREDITD_RATE_LIMIT_ADMIN")?,
            rate("CREDITD_RATE_LIMIT_SERVICE")?,
            rate("CREDITD_RATE_LIMIT_CUSTOMER")?,
        ];
        let log_json = match get("CREDITD_LOG_FORMAT") {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("CREDITD_LOG_FORMAT must be text or json, got {other:?}"),
        };
        let allow_private_webhooks = match get("CREDITD_ALLOW_PRIVATE_WEBHOOKS") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                bail!("CREDITD_ALLOW_PRIVATE_WEBHOOKS must be true or false, got {other:?}")
            }
        };
        Ok(Settings {
            allow_private_webhooks,
            log_json,
            connections,
            requests,
            rate_limits,
            database: parse_database_url(
                get("CREDITD_DATABASE_URL").unwrap_or("sqlite://creditd.db"),
            )?,
            listen: parse_listen(get("CREDITD_LISTEN").unwrap_or("127.0.0.1:8080"))?,
            admin_key: get("CREDITD_ADMIN_KEY")
                .map(|key| check_admin_key(key).map(|()| Secret::new(key.to_owned())))
                .transpose()?,
            log: get("CREDITD_LOG")
                .map(|level| {
                    level.parse().with_context(|| {
                        format!(
                            "CREDITD_LOG must be error, warn, info, debug or trace, got {level:?}"
                        )
                    })
                })
                .transpose()?,
            sweep_interval: Duration::from_millis(
                number("CREDITD_SWEEP_INTERVAL_MS", 1000)?.max(10),
            ),
            batch_size_max: number("CREDITD_BATCH_SIZE_MAX", 1024)?.clamp(1, 65_536) as usize,
            sqlite_readers: number("CREDITD_SQLITE_READERS", 4)?.clamp(1, 64) as usize,
            sqlite_books_mib: number("CREDITD_SQLITE_BOOKS_MIB", 160)?.min(1 << 20) as usize,
            sqlite_checkpoint_ms: number("CREDITD_SQLITE_CHECKPOINT_MS", 200)?,
            sqlite_autocheckpoint_pages: number("CREDITD_SQLITE_AUTOCHECKPOINT_PAGES", 30_000)?
                .clamp(100, 1_000_000) as i64,
            pg_pool_size: number("CREDITD_PG_POOL_SIZE", 16)?.clamp(2, 1024) as usize,
            pg_writers: number("CREDITD_PG_WRITERS", 2)?.clamp(1, 64) as usize,
            credits: credit_settings(&get)?,
            test_clock: flag("CREDITD_TEST_CLOCK")?,
            gateway: gateway_settings(values, &get)?,
            cors_origins: origins(&get, "CREDITD_CORS_ORIGINS")?,
            top_up_url: top_up_url(&get)?,
            payments: payment_settings(&get)?,
            public_url: get("CREDITD_PUBLIC_URL")
                .map(|url| {
                    let url = url.trim_end_matches('/');
                    if billing::domain::returns::is_origin(url)
                        || url.starts_with("https://")
                        || url.starts_with("http://")
                    {
                        Ok(url.to_owned())
                    } else {
                        bail!("CREDITD_PUBLIC_URL must be an https:// or http:// URL, got {url:?}")
                    }
                })
                .transpose()?,
        })
    }
}

/// Every setting the binary reads, so that a configuration file naming
/// another (a typo) is refused rather than silently ignored.
const KNOWN: &[&str] = &[
    "CREDITD_DATABASE_URL",
    "CREDITD_LISTEN",
    "CREDITD_ADMIN_KEY",
    "CREDITD_LOG",
    "CREDITD_LOG_FORMAT",
    "CREDITD_SWEEP_INTERVAL_MS",
    "CREDITD_BATCH_SIZE_MAX",
    "CREDITD_SQLITE_READERS",
    "CREDITD_SQLITE_BOOKS_MIB",
    "CREDITD_SQLITE_CHECKPOINT_MS",
    "CREDITD_SQLITE_AUTOCHECKPOINT_PAGES",
    "CREDITD_PG_POOL_SIZE",
    "CREDITD_PG_WRITERS",
    "CREDITD_SIGNUP_BONUS_ENABLED",
    "CREDITD_SIGNUP_BONUS_AMOUNT",
    "CREDITD_SIGNUP_BONUS_EXPIRE_DAYS",
    "CREDITD_DAILY_ENABLED",
    "CREDITD_DAILY_AMOUNT",
    "CREDITD_DAILY_EXPIRE_DAYS",
    "CREDITD_ALLOW_FREE_USER_PURCHASE",
    "CREDITD_TEST_CLOCK",
    "CREDITD_CREDITS_PER_USD",
    "CREDITD_MARKUP_PERCENT",
    "CREDITD_GATEWAY_HOLD_TTL_SECS",
    "CREDITD_GATEWAY_TOKENS_PER_MINUTE",
    "CREDITD_BYOK_FEE_PERCENT",
    "CREDITD_ALLOW_PRIVATE_UPSTREAMS",
    "CREDITD_ALLOW_PRIVATE_WEBHOOKS",
    "CREDITD_MASTER_KEY",
    "CREDITD_MASTER_KEYS_RETIRED",
    "CREDITD_UPSTREAM_BASE_URL",
    "CREDITD_UPSTREAM_API_KEY",
    "CREDITD_ANTHROPIC_BASE_URL",
    "CREDITD_ANTHROPIC_API_KEY",
    "CREDITD_UPSTREAM_KEYLESS",
    "CREDITD_ANTHROPIC_KEYLESS",
    "CREDITD_PUBLIC_URL",
    "CREDITD_CHECKOUT_RETURN_ORIGINS",
    "CREDITD_CORS_ORIGINS",
    "CREDITD_TOP_UP_URL",
    "CREDITD_HEADER_READ_TIMEOUT",
    "CREDITD_IDLE_TIMEOUT",
    "CREDITD_MAX_CONNECTIONS",
    "CREDITD_SHUTDOWN_GRACE",
    "CREDITD_REQUEST_TIMEOUT",
    "CREDITD_UPSTREAM_TIMEOUT",
    "CREDITD_MAX_IN_FLIGHT",
    "CREDITD_RATE_LIMIT_ADMIN",
    "CREDITD_RATE_LIMIT_SERVICE",
    "CREDITD_RATE_LIMIT_CUSTOMER",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
];

/// What follows `CREDITD_UPSTREAM_<NAME>` in a named upstream's settings.
const UPSTREAM_SUFFIXES: [&str; 4] = ["_BASE_URL", "_API_KEY", "_WIRE", "_KEYLESS"];

/// Whether the binary reads a setting of this name.
fn is_known(key: &str) -> bool {
    KNOWN.contains(&key)
        || key.strip_prefix("CREDITD_UPSTREAM_").is_some_and(|rest| {
            UPSTREAM_SUFFIXES.iter().any(|suffix| {
                rest.strip_suffix(suffix)
                    .is_some_and(|name| !name.is_empty())
            })
        })
}

/// The known setting nearest to `key` in edits (insertions, deletions,
/// substitutions of one character), for the message refusing it.
fn nearest_known(key: &str) -> &'static str {
    let distance = |a: &str, b: &str| -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let above = row[j + 1];
                row[j + 1] = (above + 1)
                    .min(row[j] + 1)
                    .min(diagonal + usize::from(ca != *cb));
                diagonal = above;
            }
        }
        row[b.len()]
    };
    KNOWN
        .iter()
        .min_by_key(|known| distance(key, known))
        .copied()
        .unwrap_or("CREDITD_LISTEN")
}

/// The fewest characters after `cd_admin_` an admin key set by the
/// operator has: 32 hex digits hold 128 random bits.
const ADMIN_KEY_LEN_MIN: usize = 32;

/// Refuses an admin key a guess could find: fewer than 32 characters after
/// the optional `cd_admin_` prefix, or as few different characters as a
/// word or a repeated one has. The key itself is never part of the error.
fn check_admin_key(key: &str) -> anyhow::Result<()> {
    let secret = key.strip_prefix("cd_admin_").unwrap_or(key);
    let mut distinct: Vec<char> = secret.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let printable = secret.chars().all(|c| c.is_ascii_graphic());
    if secret.chars().count() < ADMIN_KEY_LEN_MIN || distinct.len() < 8 || !printable {
        bail!(
            "CREDITD_ADMIN_KEY is too easy to guess: it needs at least {ADMIN_KEY_LEN_MIN} random \
             printable characters after the optional cd_admin_ prefix (128 bits); make one with \
             `echo cd_admin_$(openssl rand -hex 24)`, or leave it unset and the first start \
             generates one"
        );
    }
    Ok(())
}

/// The credit settings the environment gives.
fn credit_settings<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> anyhow::Result<billing::EnvSettings> {
    let flag = |key: &str| -> anyhow::Result<Option<bool>> {
        get(key)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => bail!("{key} must be true or false, got {v:?}"),
            })
            .transpose()
    };
    let amount = |key: &str| -> anyhow::Result<Option<ledger::Amount>> {
        get(key)
            .map(|v| {
                ledger::Amount::parse_decimal(v)
                    .ok()
                    .filter(|a| !a.is_negative())
                    .with_context(|| {
                        format!("{key} must be a decimal amount of credits, got {v:?}")
                    })
            })
            .transpose()
    };
    let days = |key: &str| -> anyhow::Result<Option<u32>> {
        get(key)
            .map(|v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|d| (1..=36_500).contains(d))
                    .with_context(|| format!("{key} must be 1 to 36500, got {v:?}"))
            })
            .transpose()
    };
    Ok(billing::EnvSettings {
        signup_bonus_enabled: flag("CREDITD_SIGNUP_BONUS_ENABLED")?,
        signup_bonus_amount: amount("CREDITD_SIGNUP_BONUS_AMOUNT")?,
        signup_bonus_expire_days: days("CREDITD_SIGNUP_BONUS_EXPIRE_DAYS")?,
        daily_enabled: flag("CREDITD_DAILY_ENABLED")?,
        daily_amount: amount("CREDITD_DAILY_AMOUNT")?,
        daily_expire_days: days("CREDITD_DAILY_EXPIRE_DAYS")?,
        allow_free_user_purchase: flag("CREDITD_ALLOW_FREE_USER_PURCHASE")?,
    })
}

/// A comma-separated list of origins (`https://shop.example.com`), each
/// checked.
fn origins<'a>(get: &impl Fn(&str) -> Option<&'a str>, key: &str) -> anyhow::Result<Vec<String>> {
    get(key)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            if billing::domain::returns::is_origin(origin) {
                Ok(origin.trim_end_matches('/').to_owned())
            } else {
                bail!(
                    "{key} holds {origin:?}: each origin is scheme://host[:port], such as \
                     https://shop.example.com"
                )
            }
        })
        .collect()
}

/// The top-up link, checked, when `CREDITD_TOP_UP_URL` is set.
fn top_up_url<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> anyhow::Result<Option<server::top_up::TopUpUrl>> {
    get("CREDITD_TOP_UP_URL")
        .map(|text| {
            server::top_up::TopUpUrl::parse(text).map_err(|why| {
                anyhow::anyhow!(
                    "CREDITD_TOP_UP_URL must be an http or https URL where customers buy \
                     credits, such as https://shop.example.com/credits; {text:?} is not: {why}"
                )
            })
        })
        .transpose()
}

/// Stripe's configuration from the environment, when it is there.
fn payment_settings<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> anyhow::Result<Option<billing::payments::PaymentsConfig>> {
    let (secret, webhook) = match (get("STRIPE_SECRET_KEY"), get("STRIPE_WEBHOOK_SECRET")) {
        (None, None) => return Ok(None),
        (Some(secret), Some(webhook)) => (secret, webhook),
        _ => bail!("payments need both STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET"),
    };
    let public_url = get("CREDITD_PUBLIC_URL")
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .context(
            "payments need CREDITD_PUBLIC_URL, the address customers return to after a checkout \
             (https://…)",
        )?;
    let return_origins = origins(get, "CREDITD_CHECKOUT_RETURN_ORIGINS")?;
    Ok(Some(billing::payments::PaymentsConfig {
        secret_key: Secret::new(secret.to_owned()),
        webhook_secret: Secret::new(webhook.to_owned()),
        public_url: public_url.to_owned(),
        api_base: get("STRIPE_API_BASE")
            .unwrap_or(billing::payments::STRIPE_API_BASE)
            .to_owned(),
        return_origins,
    }))
}

/// The gateway's configuration from the environment.
fn gateway_settings<'a>(
    values: &'a HashMap<String, String>,
    get: &impl Fn(&str) -> Option<&'a str>,
) -> anyhow::Result<gateway::GatewayConfig> {
    use gateway::domain::{CreditsPerUsd, Percent, Wire};
    let mut config = gateway::GatewayConfig::default();
    if let Some(rate) = get("CREDITD_CREDITS_PER_USD") {
        config.rate.credits_per_usd = CreditsPerUsd::parse(rate).ok().with_context(|| {
            format!("CREDITD_CREDITS_PER_USD must be a decimal above 0, got {rate:?}")
        })?;
    }
    if let Some(markup) = get("CREDITD_MARKUP_PERCENT") {
        config.rate.markup = Percent::parse(markup).ok().with_context(|| {
            format!(
                "CREDITD_MARKUP_PERCENT must be a percentage from 0 to 1000 with at most 4 \
                 decimals, got {markup:?}"
            )
        })?;
    }
    if let Some(ttl) = get("CREDITD_GATEWAY_HOLD_TTL_SECS") {
        config.hold_ttl_secs = ttl
            .parse::<i64>()
            .ok()
            .filter(|t| (10..=86_400).contains(t))
            .with_context(|| {
                format!("CREDITD_GATEWAY_HOLD_TTL_SECS must be 10 to 86400, got {ttl:?}")
            })?;
    }
    if let Some(rate) = get("CREDITD_GATEWAY_TOKENS_PER_MINUTE") {
        config.tokens_per_minute = Some(
            rate.parse::<u32>()
                .ok()
                .filter(|r| (1..=gateway::TOKENS_PER_MINUTE_MAX).contains(r))
                .with_context(|| {
                    format!(
                        "CREDITD_GATEWAY_TOKENS_PER_MINUTE must be a whole number of tokens from                          1 to {}, got {rate:?}",
                        gateway::TOKENS_PER_MINUTE_MAX
                    )
                })?,
        );
    }
    if let Some(fee) = get("CREDITD_BYOK_FEE_PERCENT") {
        config.byok_fee = Percent::parse(fee)
            .ok()
            .filter(|f| *f <= Percent::whole(100))
            .with_context(|| {
                format!("CREDITD_BYOK_FEE_PERCENT must be a percentage from 0 to 100, got {fee:?}")
            })?;
    }
    config.allow_private_upstreams = match get("CREDITD_ALLOW_PRIVATE_UPSTREAMS") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            bail!("CREDITD_ALLOW_PRIVATE_UPSTREAMS must be true or false, got {other:?}")
        }
    };
    if let Some(current) = get("CREDITD_MASTER_KEY") {
        // The key's text is never part of an error: only what is wrong with it.
        let current = gateway::byok::MasterKey::parse(current)
            .map_err(|e| anyhow::anyhow!("CREDITD_MASTER_KEY: {e}"))?;
        let retired = get("CREDITD_MASTER_KEYS_RETIRED")
            .unwrap_or("")
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| {
                gateway::byok::MasterKey::parse(k)
                    .map_err(|e| anyhow::anyhow!("CREDITD_MASTER_KEYS_RETIRED: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if retired.iter().any(|k| k.version == current.version) {
            bail!("CREDITD_MASTER_KEYS_RETIRED holds a key of the current key's version");
        }
        config.keyring = Some(gateway::byok::Keyring { current, retired });
    }
    let mut set = |name: &str, wire: Wire, base: Option<&str>, key: Option<&str>| {
        let upstream =
            config
                .upstreams
                .entry(name.to_owned())
                .or_insert_with(|| gateway::Upstream {
                    wire,
                    base_url: String::new(),
                    api_key: None,
                    keyless: false,
                });
        upstream.wire = wire;
        if let Some(base) = base {
            upstream.base_url = base.to_owned();
        }
        if let Some(key) = key {
            upstream.api_key = Some(Secret::new(key.to_owned()));
        }
    };
    set(
        gateway::config::OPENAI_UPSTREAM,
        Wire::Openai,
        get("CREDITD_UPSTREAM_BASE_URL"),
        get("CREDITD_UPSTREAM_API_KEY"),
    );
    set(
        gateway::config::ANTHROPIC_UPSTREAM,
        Wire::Anthropic,
        get("CREDITD_ANTHROPIC_BASE_URL"),
        get("CREDITD_ANTHROPIC_API_KEY"),
    );
    let mut named: Vec<&str> = values
        .keys()
        .filter_map(|k| {
            k.strip_prefix("CREDITD_UPSTREAM_")?
                .strip_suffix("_BASE_URL")
        })
        .filter(|name| !name.is_empty())
        .collect();
    named.sort_unstable();
    for name in named {
        let wire = match get(&format!("CREDITD_UPSTREAM_{name}_WIRE")) {
            None | Some("openai") => Wire::Openai,
            Some("anthropic") => Wire::Anthropic,
            Some(other) => {
                bail!("CREDITD_UPSTREAM_{name}_WIRE must be openai or anthropic, got {other:?}")
            }
        };
        set(
            &name.to_ascii_lowercase(),
            wire,
            get(&format!("CREDITD_UPSTREAM_{name}_BASE_URL")),
            get(&format!("CREDITD_UPSTREAM_{name}_API_KEY")),
        );
    }
    for (name, upstream) in config.upstreams.iter_mut() {
        if !(upstream.base_url.starts_with("http://") || upstream.base_url.starts_with("https://"))
        {
            bail!("the upstream {name} needs a base URL starting with http:// or https://");
        }
        let setting = gateway::config::keyless_setting(name);
        upstream.keyless = match get(&setting) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => bail!("{setting} must be true or false, got {other:?}"),
        };
    }
    Ok(config)
}

/// `HOST:PORT` with HOST an IP address (`[::1]:8080` for IPv6), or `:PORT`
/// for `127.0.0.1:PORT`: loopback, as the default is, so that leaving out
/// the host never exposes the server beyond this machine.
pub fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let parsed = match text.strip_prefix(':') {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
        None => text.parse().ok(),
    };
    parsed.with_context(|| {
        format!(
            "CREDITD_LISTEN must be an address such as 127.0.0.1:8080, [::1]:8080 or :8080, \
             got {text:?}"
        )
    })
}

/// `sqlite://relative/path.db`, `sqlite:///absolute/path.db`, `sqlite:path.db`,
/// or a `postgres://` / `postgresql://` URL.
pub fn parse_database_url(url: &str) -> anyhow::Result<Database> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            bail!("CREDITD_DATABASE_URL {url:?} names no file");
        }
        return Ok(Database::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Database::Postgres(url.to_owned()));
    }
    bail!("CREDITD_DATABASE_URL must start with sqlite:// or postgres://, got {url:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            parse_database_url("sqlite://creditd.db").unwrap(),
            Database::Sqlite("creditd.db".into())
        );
        assert_eq!(
            parse_database_url("sqlite:///var/lib/creditd.db").unwrap(),
            Database::Sqlite("/var/lib/creditd.db".into())
        );
        assert_eq!(
            parse_database_url("sqlite:data.db").unwrap(),
            Database::Sqlite("data.db".into())
        );
        assert_eq!(
            parse_database_url("postgres://u@db:5432/ledger").unwrap(),
            Database::Postgres("postgres://u@db:5432/ledger".into())
        );
        assert!(parse_database_url("sqlite://").is_err());
        assert!(parse_database_url("mysql://x").is_err());
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = Settings::from_values(&HashMap::new()).unwrap();
        assert_eq!(s.database, Database::Sqlite("creditd.db".into()));
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(s.admin_key.is_none());
        assert_eq!(s.log, None);
        assert_eq!(s.sweep_interval, Duration::from_secs(1));
        assert_eq!(s.sqlite_books_mib, 160);
        assert_eq!(s.sqlite_autocheckpoint_pages, 30_000);
        assert_eq!(s.sqlite_checkpoint_ms, 200);
        assert!(!s.test_clock);
        assert_eq!(s.connections.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.connections.shutdown_grace, Duration::from_secs(10));
        assert_eq!(s.requests.timeout, Duration::from_secs(30));
        assert_eq!(s.requests.upstream_timeout, Duration::from_secs(600));
        assert_eq!(s.requests.max_in_flight(), 1024);
        assert_eq!(s.rate_limits, [None, None, None]);
    }

    fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let values = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_values(&values)
    }

    #[test]
    fn limits_are_read_in_seconds_and_refused_when_not_above_zero() {
        let s = settings(&[
            ("CREDITD_SHUTDOWN_GRACE", "2.5"),
            ("CREDITD_HEADER_READ_TIMEOUT", "0.2"),
            ("CREDITD_MAX_CONNECTIONS", "64"),
            ("CREDITD_MAX_IN_FLIGHT", "32"),
        ])
        .unwrap();
        assert_eq!(s.connections.shutdown_grace, Duration::from_millis(2500));
        assert_eq!(
            s.connections.header_read_timeout,
            Duration::from_millis(200)
        );
        assert_eq!(s.connections.max_connections, 64);
        assert_eq!(s.requests.max_in_flight(), 32);
        for bad in ["0", "-1", "soon", "NaN"] {
            let refused = settings(&[("CREDITD_SHUTDOWN_GRACE", bad)]).err().unwrap();
            assert!(
                refused.to_string().contains("CREDITD_SHUTDOWN_GRACE"),
                "{refused}"
            );
        }
        let rated = settings(&[("CREDITD_RATE_LIMIT_SERVICE", "50")]).unwrap();
        assert_eq!(rated.rate_limits, [None, Some(50), None]);
        for bad in ["0", "1.5", "lots", "1000001"] {
            let refused = settings(&[("CREDITD_RATE_LIMIT_CUSTOMER", bad)])
                .err()
                .unwrap();
            assert!(
                refused.to_string().contains("CREDITD_RATE_LIMIT_CUSTOMER"),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_test_clock_is_on_only_when_set_to_true() {
        let set = |value: &str| {
            Settings::from_values(&HashMap::from([(
                "CREDITD_TEST_CLOCK".to_owned(),
                value.to_owned(),
            )]))
        };
        assert!(set("true").unwrap().test_clock);
        assert!(!set("false").unwrap().test_clock);
        assert!(!set("").unwrap().test_clock);
        for bad in ["yes", "1", "TRUE", "on"] {
            let error = set(bad).unwrap_err().to_string();
            assert!(
                error.contains("CREDITD_TEST_CLOCK") && error.contains(&format!("{bad:?}")),
                "{error}"
            );
        }
    }

    #[test]
    fn credit_settings_come_from_the_environment_and_bad_ones_are_refused() {
        let values = HashMap::from([
            ("CREDITD_SIGNUP_BONUS_ENABLED".to_owned(), "true".to_owned()),
            ("CREDITD_SIGNUP_BONUS_AMOUNT".to_owned(), "50".to_owned()),
            ("CREDITD_DAILY_AMOUNT".to_owned(), "2.5".to_owned()),
            ("CREDITD_DAILY_EXPIRE_DAYS".to_owned(), "3".to_owned()),
        ]);
        let s = Settings::from_values(&values).unwrap();
        assert_eq!(s.credits.signup_bonus_enabled, Some(true));
        assert_eq!(
            s.credits.signup_bonus_amount,
            Some(ledger::Amount::credits(50))
        );
        assert_eq!(
            s.credits.daily_amount,
            Some(ledger::Amount::from_micros(2_500_000))
        );
        assert_eq!(s.credits.daily_enabled, None);
        assert_eq!(s.credits.daily_expire_days, Some(3));
        assert_eq!(s.credits.signup_bonus_expire_days, None);
        for (key, bad) in [
            ("CREDITD_SIGNUP_BONUS_ENABLED", "maybe"),
            ("CREDITD_DAILY_AMOUNT", "-1"),
            ("CREDITD_DAILY_AMOUNT", "1e3"),
            ("CREDITD_SIGNUP_BONUS_EXPIRE_DAYS", "0"),
            ("CREDITD_DAILY_EXPIRE_DAYS", "0"),
            ("CREDITD_DAILY_EXPIRE_DAYS", "36501"),
        ] {
            let values = HashMap::from([(key.to_owned(), bad.to_owned())]);
            assert!(Settings::from_values(&values).is_err(), "{key}={bad}");
        }
    }

    #[test]
    fn checkout_return_origins_are_origins_or_the_start_is_refused() {
        let with = |origins: &str| {
            Settings::from_values(&HashMap::from([
                ("STRIPE_SECRET_KEY".to_owned(), "sk_test_x".to_owned()),
                ("STRIPE_WEBHOOK_SECRET".to_owned(), "whsec_x".to_owned()),
                (
                    "CREDITD_PUBLIC_URL".to_owned(),
                    "https://app.example.com".to_owned(),
                ),
                (
                    "CREDITD_CHECKOUT_RETURN_ORIGINS".to_owned(),
                    origins.to_owned(),
                ),
            ]))
        };
        let payments = with("https://shop.example.com, http://localhost:3000/")
            .unwrap()
            .payments
            .unwrap();
        assert_eq!(
            payments.return_origins,
            vec!["https://shop.example.com", "http://localhost:3000"]
        );
        for bad in [
            "shop.example.com",
            "https://shop.example.com/path",
            "ftp://x.org",
        ] {
            let error = with(bad).unwrap_err().to_string();
            assert!(
                error.contains("CREDITD_CHECKOUT_RETURN_ORIGINS") && error.contains(bad),
                "{error}"
            );
        }
    }

    #[test]
    fn an_unknown_setting_in_a_file_is_refused_with_the_nearest_known_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creditd.env");
        std::fs::write(
            &file,
            "# settings\nCREDITD_LISTEN=:0\nCREDITD_TYPO_SETTING=1\n",
        )
        .unwrap();
        let error = Settings::load(Some(&file)).unwrap_err().to_string();
        assert!(error.contains("CREDITD_TYPO_SETTING"), "{error}");
        assert!(error.contains(":3:"), "{error}");
        std::fs::write(&file, "CREDITD_SIGNUP_BONUS_AMUONT=5\n").unwrap();
        let error = Settings::load(Some(&file)).unwrap_err().to_string();
        assert!(
            error.contains("did you mean CREDITD_SIGNUP_BONUS_AMOUNT?"),
            "{error}"
        );
        std::fs::write(
            &file,
            "CREDITD_UPSTREAM_GROQ_BASE_URL=https://api.groq.com/openai/v1\n\
             CREDITD_UPSTREAM_GROQ_API_KEY=gsk\nCREDITD_DAILY_EXPIRE_DAYS=3\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        assert!(settings.gateway.upstreams.contains_key("groq"));
    }

    #[test]
    fn every_setting_read_here_is_known() {
        let source = include_str!("config.rs");
        for piece in source.split('"').skip(1).step_by(2) {
            let named = piece.starts_with("CREDITD_") || piece.starts_with("STRIPE_");
            if named && piece.ends_with(|c: char| c.is_ascii_uppercase()) && !piece.contains('{') {
                assert!(
                    is_known(piece)
                        || piece.ends_with("_UPSTREAM_")
                        || piece == "CREDITD_TYPO_SETTING",
                    "{piece} is read but not in KNOWN"
                );
            }
        }
    }

    #[test]
    fn an_upstream_is_declared_keyless_or_has_a_key() {
        let values = HashMap::from([
            (
                "CREDITD_UPSTREAM_LOCAL_BASE_URL".to_owned(),
                "http://127.0.0.1:11434/v1".to_owned(),
            ),
            (
                "CREDITD_UPSTREAM_LOCAL_KEYLESS".to_owned(),
                "true".to_owned(),
            ),
            ("CREDITD_UPSTREAM_API_KEY".to_owned(), "sk-x".to_owned()),
        ]);
        let s = Settings::from_values(&values).unwrap();
        let local = &s.gateway.upstreams["local"];
        assert!(local.keyless && local.usable());
        assert!(s.gateway.upstreams["openai"].usable());
        assert!(!s.gateway.upstreams["anthropic"].usable());
        let values = HashMap::from([("CREDITD_ANTHROPIC_KEYLESS".to_owned(), "yes".to_owned())]);
        let error = Settings::from_values(&values).unwrap_err().to_string();
        assert!(error.contains("CREDITD_ANTHROPIC_KEYLESS"), "{error}");
    }

    #[test]
    fn a_weak_admin_key_is_refused_without_being_quoted() {
        let with = |key: &str| {
            Settings::from_values(&HashMap::from([(
                "CREDITD_ADMIN_KEY".to_owned(),
                key.to_owned(),
            )]))
        };
        for weak in [
            "x",
            "cd_admin_short",
            "hunter2hunter2hunter2hunter2hunter2",
            "cd_admin_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "cd_admin_0123456789abcdef0123456789abcde",
            "cd_admin_0123456789abcdef 0123456789abcdef",
        ] {
            let error = with(weak).unwrap_err().to_string();
            assert!(error.contains("CREDITD_ADMIN_KEY"), "{error}");
            assert!(error.contains("openssl rand"), "{error}");
            assert!(
                weak.len() < 8 || !error.contains(weak),
                "the key was quoted: {error}"
            );
        }
        for strong in [
            "cd_admin_0123456789abcdef0123456789abcdef",
            "3f9a1c0d5e7b2a64c8e1f0b2d4a6c8e0",
        ] {
            let settings = with(strong).unwrap();
            assert_eq!(settings.admin_key.unwrap().expose(), strong);
        }
    }

    #[test]
    fn cors_origins_are_origins_or_the_start_is_refused() {
        let with = |origins: &str| {
            Settings::from_values(&HashMap::from([(
                "CREDITD_CORS_ORIGINS".to_owned(),
                origins.to_owned(),
            )]))
        };
        assert_eq!(
            with("https://app.example.com/, http://localhost:3000")
                .unwrap()
                .cors_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
        assert!(with("").unwrap().cors_origins.is_empty());
        let error = with("*").unwrap_err().to_string();
        assert!(error.contains("CREDITD_CORS_ORIGINS"), "{error}");
    }

    #[test]
    fn a_top_up_url_is_an_http_url_or_the_start_is_refused() {
        let with = |url: &str| {
            Settings::from_values(&HashMap::from([(
                "CREDITD_TOP_UP_URL".to_owned(),
                url.to_owned(),
            )]))
        };
        let url = "https://shop.example.com/credits";
        assert_eq!(with(url).unwrap().top_up_url.unwrap().as_str(), url);
        assert!(with("").unwrap().top_up_url.is_none());
        for bad in ["shop.example.com/credits", "ftp://shop.example.com"] {
            let error = with(bad).unwrap_err().to_string();
            assert!(error.contains("CREDITD_TOP_UP_URL"), "{error}");
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn the_books_kept_in_memory_can_be_sized_or_turned_off() {
        let values = HashMap::from([("CREDITD_SQLITE_BOOKS_MIB".to_owned(), "0".to_owned())]);
        assert_eq!(Settings::from_values(&values).unwrap().sqlite_books_mib, 0);
        let values = HashMap::from([("CREDITD_SQLITE_BOOKS_MIB".to_owned(), "64".to_owned())]);
        assert_eq!(Settings::from_values(&values).unwrap().sqlite_books_mib, 64);
        let values = HashMap::from([("CREDITD_SQLITE_BOOKS_MIB".to_owned(), "-1".to_owned())]);
        let error = Settings::from_values(&values).unwrap_err().to_string();
        assert!(error.contains("CREDITD_SQLITE_BOOKS_MIB"), "{error}");
    }

    #[test]
    fn a_listen_address_of_only_a_port_is_on_loopback() {
        assert_eq!(parse_listen(":0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            parse_listen(":8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:9000").unwrap(),
            "0.0.0.0:9000".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:8080").unwrap(),
            "[::1]:8080".parse().unwrap()
        );
        let values = HashMap::from([("CREDITD_LISTEN".to_owned(), ":0".to_owned())]);
        assert_eq!(
            Settings::from_values(&values).unwrap().listen,
            "127.0.0.1:0".parse().unwrap()
        );
    }

    #[test]
    fn a_listen_address_that_is_not_one_is_refused_and_quoted() {
        for bad in [
            "nowhere",
            ":",
            ":http",
            ":65536",
            ":-1",
            "8080",
            "localhost:8080",
            "127.0.0.1",
            " :8080",
        ] {
            let error = parse_listen(bad).unwrap_err().to_string();
            assert!(error.starts_with("CREDITD_LISTEN must be"), "{error}");
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn a_log_level_set_is_kept_and_a_bad_one_refused() {
        let values = HashMap::from([("CREDITD_LOG".to_owned(), "debug".to_owned())]);
        assert_eq!(
            Settings::from_values(&values).unwrap().log,
            Some(tracing::Level::DEBUG)
        );
        let values = HashMap::from([("CREDITD_LOG".to_owned(), "loud".to_owned())]);
        let error = Settings::from_values(&values).unwrap_err().to_string();
        assert!(
            error.contains("CREDITD_LOG") && error.contains("\"loud\""),
            "{error}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let values = HashMap::from([("CREDITD_LISTEN".to_owned(), "nowhere".to_owned())]);
        let error = Settings::from_values(&values).unwrap_err().to_string();
        assert!(error.contains("CREDITD_LISTEN"), "{error}");
    }
}
