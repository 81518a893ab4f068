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
    /// `CREDITD_DAILY_ENABLED`, `CREDITD_DAILY_AMOUNT`,
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
    /// named one), `CREDITD_GATEWAY_HOLD_TTL_SECS` (default 900), and BYOK:
    /// `CREDITD_MASTER_KEY`, `CREDITD_MASTER_KEYS_RETIRED`,
    /// `CREDITD_BYOK_FEE_PERCENT` (default 0), `CREDITD_ALLOW_PRIVATE_UPSTREAMS`.
    pub gateway: gateway::GatewayConfig,
    /// Payments through Stripe, when `STRIPE_SECRET_KEY` and
    /// `STRIPE_WEBHOOK_SECRET` are set (with `CREDITD_PUBLIC_URL`, and
    /// `STRIPE_API_BASE` to point at another server).
    pub payments: Option<billing::payments::PaymentsConfig>,
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
                values.insert(key.trim().to_owned(), value.trim().to_owned());
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
        Ok(Settings {
            database: parse_database_url(
                get("CREDITD_DATABASE_URL").unwrap_or("sqlite://creditd.db"),
            )?,
            listen: parse_listen(get("CREDITD_LISTEN").unwrap_or("127.0.0.1:8080"))?,
            admin_key: get("CREDITD_ADMIN_KEY").map(|k| Secret::new(k.to_owned())),
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
            payments: payment_settings(&get)?,
        })
    }
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
    Ok(billing::EnvSettings {
        signup_bonus_enabled: flag("CREDITD_SIGNUP_BONUS_ENABLED")?,
        signup_bonus_amount: amount("CREDITD_SIGNUP_BONUS_AMOUNT")?,
        signup_bonus_expire_days: get("CREDITD_SIGNUP_BONUS_EXPIRE_DAYS")
            .map(|v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|d| (1..=36_500).contains(d))
                    .with_context(|| {
                        format!("CREDITD_SIGNUP_BONUS_EXPIRE_DAYS must be 1 to 36500, got {v:?}")
                    })
            })
            .transpose()?,
        daily_enabled: flag("CREDITD_DAILY_ENABLED")?,
        daily_amount: amount("CREDITD_DAILY_AMOUNT")?,
        allow_free_user_purchase: flag("CREDITD_ALLOW_FREE_USER_PURCHASE")?,
    })
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
    Ok(Some(billing::payments::PaymentsConfig {
        secret_key: Secret::new(secret.to_owned()),
        webhook_secret: Secret::new(webhook.to_owned()),
        public_url: public_url.to_owned(),
        api_base: get("STRIPE_API_BASE")
            .unwrap_or(billing::payments::STRIPE_API_BASE)
            .to_owned(),
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
    for (name, upstream) in &config.upstreams {
        if !(upstream.base_url.starts_with("http://") || upstream.base_url.starts_with("https://"))
        {
            bail!("the upstream {name} needs a base URL starting with http:// or https://");
        }
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
        for (key, bad) in [
            ("CREDITD_SIGNUP_BONUS_ENABLED", "maybe"),
            ("CREDITD_DAILY_AMOUNT", "-1"),
            ("CREDITD_DAILY_AMOUNT", "1e3"),
            ("CREDITD_SIGNUP_BONUS_EXPIRE_DAYS", "0"),
        ] {
            let values = HashMap::from([(key.to_owned(), bad.to_owned())]);
            assert!(Settings::from_values(&values).is_err(), "{key}={bad}");
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
