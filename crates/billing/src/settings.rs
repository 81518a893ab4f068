//! Credit settings: the sign-up bonus, the daily reward, whether free accounts may buy packages,
//! burn priorities per source, and the default plan; set through the API over the environment's
//! initial values, stored in one record all nodes share.

use std::collections::BTreeMap;

use ledger::{Amount, PRIORITY_MAX, Source};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::records::{self, Expect, Kind, Modified, Step};
use store::{Command, Executed, Op, Outcome, Store};
use utoipa::ToSchema;

use crate::error::BillingError;

/// Initial values from the environment; the binary reads it, billing only
/// receives them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSettings {
    /// `CREDITD_SIGNUP_BONUS_ENABLED`.
    pub signup_bonus_enabled: Option<bool>,
    /// `CREDITD_SIGNUP_BONUS_AMOUNT`.
    pub signup_bonus_amount: Option<Amount>,
    /// `CREDITD_SIGNUP_BONUS_EXPIRE_DAYS`.
    pub signup_bonus_expire_days: Option<u32>,
    /// `CREDITD_DAILY_ENABLED`.
    pub daily_enabled: Option<bool>,
    /// `CREDITD_DAILY_AMOUNT`.
    pub daily_amount: Option<Amount>,
    /// `CREDITD_DAILY_EXPIRE_DAYS`.
    pub daily_expire_days: Option<u32>,
    /// `CREDITD_ALLOW_FREE_USER_PURCHASE`.
    pub allow_free_user_purchase: Option<bool>,
}

impl EnvSettings {
    /// The values the environment gives, by setting path.
    fn values(&self) -> BTreeMap<&'static str, Value> {
        let mut values = BTreeMap::new();
        let mut put = |path, value: Option<Value>| {
            if let Some(value) = value {
                values.insert(path, value);
            }
        };
        put(
            "signup_bonus.enabled",
            self.signup_bonus_enabled.map(Value::Bool),
        );
        put(
            "signup_bonus.amount",
            self.signup_bonus_amount
                .map(|a| Value::String(a.to_string())),
        );
        put(
            "signup_bonus.expire_days",
            self.signup_bonus_expire_days.map(|d| json!(d)),
        );
        put("daily_reward.enabled", self.daily_enabled.map(Value::Bool));
        put(
            "daily_reward.amount",
            self.daily_amount.map(|a| Value::String(a.to_string())),
        );
        put(
            "daily_reward.expire_days",
            self.daily_expire_days.map(|d| json!(d)),
        );
        put(
            "allow_free_user_purchase",
            self.allow_free_user_purchase.map(Value::Bool),
        );
        values
    }
}

/// The values set through the API, by setting path: a record of kind
/// `setting`, id `credits`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Each value set, by its path (`signup_bonus.amount`).
    pub values: BTreeMap<String, Value>,
}

impl Kind for Stored {
    const KIND: &'static str = "setting";
}

/// The id of the credit settings' record.
/// The id of the one settings record.
pub const RECORD_ID: &str = "credits";

/// Where a setting's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it.
    Default,
    /// The environment, at start.
    Env,
    /// `PATCH /v1/settings/credits`.
    Api,
}

impl Origin {
    fn code(self) -> &'static str {
        match self {
            Origin::Default => "default",
            Origin::Env => "env",
            Origin::Api => "api",
        }
    }
}

/// A credit grant a setting makes (the sign-up bonus, the daily reward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reward {
    /// Whether it is granted.
    pub enabled: bool,
    /// Credits granted.
    pub amount: Amount,
    /// Days after which the credits expire; never when `None`.
    pub expire_days: Option<u32>,
}

/// The credit settings in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditSettings {
    /// Granted with every new account, in the transaction that opens it.
    pub signup_bonus: Reward,
    /// Claimed once a UTC day.
    pub daily_reward: Reward,
    /// Whether accounts without a paid plan may buy packages.
    pub allow_free_user_purchase: bool,
    /// Burn priorities set per source.
    pub priorities: BTreeMap<&'static str, u8>,
    /// The plan every new account is subscribed to.
    pub default_plan: Option<String>,
    /// The available balance at or below which `balance.low` is sent for
    /// an account that sets no threshold of its own; none: not sent.
    pub low_balance_threshold: Option<Amount>,
    /// How many days before a grant expires `grant.expiring` is sent.
    pub grant_expiring_days: u32,
    /// Where each value comes from, by path.
    pub origins: BTreeMap<String, Origin>,
    /// The version of the stored record (0: none stored).
    version: u64,
    /// The values set through the API.
    stored: Stored,
}

/// The longest plan id, in bytes.
const ID_LEN_MAX: usize = 128;

/// How many days before a grant's expiry `grant.expiring` is sent, unless
/// set otherwise.
pub const GRANT_EXPIRING_DAYS: u32 = 3;

/// Every setting path with its default value.
fn defaults() -> Vec<(String, Value)> {
    let mut all = vec![
        ("signup_bonus.enabled".to_owned(), json!(false)),
        ("signup_bonus.amount".to_owned(), json!("0")),
        ("signup_bonus.expire_days".to_owned(), Value::Null),
        ("daily_reward.enabled".to_owned(), json!(false)),
        ("daily_reward.amount".to_owned(), json!("0")),
        ("daily_reward.expire_days".to_owned(), Value::Null),
        ("allow_free_user_purchase".to_owned(), json!(false)),
        ("default_plan".to_owned(), Value::Null),
        ("low_balance_threshold".to_owned(), Value::Null),
        ("grant_expiring_days".to_owned(), json!(GRANT_EXPIRING_DAYS)),
    ];
    for source in Source::ALL {
        all.push((
            format!("priorities.{}", source.code()),
            json!(source.default_priority()),
        ));
    }
    all
}

/// Checks one value for one setting path.
fn check(path: &str, value: &Value) -> Result<(), BillingError> {
    let bad = |what: &str| Err(BillingError::InvalidSettings(format!("{path} {what}")));
    match path {
        "signup_bonus.enabled" | "daily_reward.enabled" | "allow_free_user_purchase" => {
            if !value.is_boolean() {
                return bad("must be true or false");
            }
        }
        "low_balance_threshold" if value.is_null() => {}
        "signup_bonus.amount" | "daily_reward.amount" | "low_balance_threshold" => {
            let parsed = match value {
                Value::String(text) => Amount::parse_decimal(text).ok(),
                Value::Number(n) => Amount::parse(&n.to_string()).ok(),
                _ => None,
            };
            if parsed.is_none_or(|a| a.is_negative()) {
                return bad("must be a decimal amount of credits, zero or more");
            }
        }
        "signup_bonus.expire_days" | "daily_reward.expire_days" => {
            if !(value.is_null() || value.as_u64().is_some_and(|d| (1..=36_500).contains(&d))) {
                return bad("must be a whole number of days from 1 to 36500, or null for never");
            }
        }
        "grant_expiring_days" => {
            if !value.as_u64().is_some_and(|d| (1..=365).contains(&d)) {
                return bad("must be a whole number of days from 1 to 365");
            }
        }
        "default_plan" => {
            let ok = value.is_null()
                || value.as_str().is_some_and(|id| {
                    !id.is_empty() && id.len() <= ID_LEN_MAX && ledger::FeatureId::parse(id).is_ok()
                });
            if !ok {
                return bad("must be a plan id or null");
            }
        }
        _ => match path.strip_prefix("priorities.") {
            Some(source) if Source::parse(source).is_some() => {
                if value.as_u64().is_none_or(|p| p > u64::from(PRIORITY_MAX)) {
                    return bad("must be a whole number from 0 to 100");
                }
            }
            _ => {
                return Err(BillingError::InvalidSettings(format!(
                    "{path} is not a credit setting"
                )));
            }
        },
    }
    Ok(())
}

impl CreditSettings {
    /// The settings in force: the defaults, over them the environment's
    /// values, over those the values set through the API.
    /// A stored value that is not a valid setting is an error naming the
    /// record and the setting: the settings are never guessed at.
    pub fn resolve(
        env: &EnvSettings,
        stored: Stored,
        version: u64,
    ) -> Result<CreditSettings, store::StoreError> {
        let unreadable = |path: &str, why: &dyn std::fmt::Display| {
            store::StoreError::Corrupt(format!(
                "record {}/{RECORD_ID}: {path} does not read: {why}",
                Stored::KIND
            ))
        };
        let env_values = env.values();
        let mut values: BTreeMap<String, (Value, Origin)> = BTreeMap::new();
        for (path, value) in defaults() {
            let (value, origin) = match (stored.values.get(&path), env_values.get(path.as_str())) {
                (Some(api), _) => {
                    check(&path, api).map_err(|e| unreadable(&path, &format!("{e:?}")))?;
                    (api.clone(), Origin::Api)
                }
                (_, Some(env)) => (env.clone(), Origin::Env),
                _ => (value, Origin::Default),
            };
            values.insert(path, (value, origin));
        }
        let get = |path: &str| &values[path].0;
        let amount = |path: &str| match get(path) {
            Value::String(text) => Amount::parse_decimal(text).map_err(|e| unreadable(path, &e)),
            Value::Number(n) => Amount::parse(&n.to_string()).map_err(|e| unreadable(path, &e)),
            other => Err(unreadable(path, other)),
        };
        let days = |path: &str| get(path).as_u64().and_then(|d| u32::try_from(d).ok());
        let reward = |prefix: &str| -> Result<Reward, store::StoreError> {
            Ok(Reward {
                enabled: get(&format!("{prefix}.enabled")).as_bool().unwrap_or(false),
                amount: amount(&format!("{prefix}.amount"))?,
                expire_days: days(&format!("{prefix}.expire_days")),
            })
        };
        Ok(CreditSettings {
            signup_bonus: reward("signup_bonus")?,
            daily_reward: reward("daily_reward")?,
            allow_free_user_purchase: get("allow_free_user_purchase").as_bool().unwrap_or(false),
            priorities: Source::ALL
                .iter()
                .map(|s| {
                    let path = format!("priorities.{}", s.code());
                    let priority = get(&path)
                        .as_u64()
                        .and_then(|p| u8::try_from(p).ok())
                        .unwrap_or(s.default_priority());
                    (s.code(), priority)
                })
                .collect(),
            default_plan: get("default_plan").as_str().map(str::to_owned),
            low_balance_threshold: match get("low_balance_threshold") {
                Value::Null => None,
                _ => Some(amount("low_balance_threshold")?),
            },
            grant_expiring_days: days("grant_expiring_days").unwrap_or(GRANT_EXPIRING_DAYS),
            origins: values.iter().map(|(p, (_, o))| (p.clone(), *o)).collect(),
            version,
            stored,
        })
    }

    /// The burn priority a grant of `source` gets when it names none.
    pub fn priority(&self, source: Source) -> u8 {
        self.priorities
            .get(source.code())
            .copied()
            .unwrap_or(source.default_priority())
    }

    /// The settings as the API shows them, with where each value comes from.
    pub fn view(&self) -> Value {
        let reward = |r: &Reward| {
            json!({
                "enabled": r.enabled,
                "amount": r.amount.to_string(),
                "expire_days": r.expire_days,
            })
        };
        json!({
            "signup_bonus": reward(&self.signup_bonus),
            "daily_reward": reward(&self.daily_reward),
            "allow_free_user_purchase": self.allow_free_user_purchase,
            "priorities": self.priorities,
            "default_plan": self.default_plan,
            "low_balance_threshold": self.low_balance_threshold.map(|a| a.to_string()),
            "grant_expiring_days": self.grant_expiring_days,
            "sources": self
                .origins
                .iter()
                .map(|(path, origin)| (path.clone(), Value::String(origin.code().to_owned())))
                .collect::<serde_json::Map<_, _>>(),
        })
    }

    /// The write that stores `changes` over the values already set, at the
    /// version read: a setting changed meanwhile makes it a conflict, so no
    /// change is lost.
    pub fn write_with(&self, changes: &BTreeMap<String, Value>) -> records::RecordWrite {
        let mut stored = self.stored.clone();
        for (path, value) in changes {
            stored.values.insert(path.clone(), value.clone());
        }
        let expect = match self.version {
            0 => Expect::Absent,
            version => Expect::Version(version),
        };
        records::put(RECORD_ID, &stored, expect)
    }
}

/// Reads the settings in force.
pub async fn read(
    store: &dyn Store,
    env: &EnvSettings,
) -> Result<CreditSettings, store::StoreError> {
    resolved(env, records::get::<Stored>(store, RECORD_ID).await?)
}

/// A change to the credit settings, as `PATCH /v1/settings/credits` takes
/// it: any of the settings, nested as `GET` shows them. Values not sent stay
/// as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettingsPatch {
    /// The sign-up bonus.
    #[schema(nullable = false)]
    signup_bonus: Option<RewardPatch>,
    /// The daily reward.
    #[schema(nullable = false)]
    daily_reward: Option<RewardPatch>,
    /// Whether accounts without a paid plan may buy packages.
    #[schema(nullable = false)]
    allow_free_user_purchase: Option<bool>,
    /// Burn priorities by source, 0 to 100: grants that name no priority
    /// take their source's.
    #[schema(nullable = false)]
    priorities: Option<PrioritiesPatch>,
    /// The plan new accounts are subscribed to; null for none.
    #[schema(pattern = "^(?!\\.+$)[A-Za-z0-9_.:-]{1,128}$")]
    default_plan: Option<String>,
    /// The available balance at or below which `balance.low` is sent for
    /// accounts that set no threshold of their own; null: not sent.
    #[schema(value_type = Option<server::openapi::schema::NonNegativeAmount>)]
    low_balance_threshold: Option<String>,
    /// How many days before a grant's expiry `grant.expiring` is sent, 1 to 365.
    #[schema(minimum = 1, maximum = 365, nullable = false)]
    grant_expiring_days: Option<u32>,
}

/// A reward's settings to change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RewardPatch {
    /// Whether it is granted.
    #[schema(nullable = false)]
    enabled: Option<bool>,
    /// Its credits, zero or more.
    #[schema(value_type = Option<server::openapi::schema::NonNegativeAmount>, nullable = false)]
    amount: Option<String>,
    /// Days until its credits expire, 1 to 36500; null: never.
    #[schema(minimum = 1, maximum = 36500)]
    expire_days: Option<u32>,
}

/// Burn priorities to change, by source.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PrioritiesPatch {
    #[schema(maximum = 100, nullable = false)]
    signup_bonus: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    daily_reward: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    subscription: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    purchase: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    auto_topup: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    admin: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    promo: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    rollover: Option<u8>,
    #[schema(maximum = 100, nullable = false)]
    refund: Option<u8>,
}

/// A JSON number written whole with a zero fraction (`8.0`) as the whole
/// number it is; anything else as it is.
fn whole_number(value: &Value) -> Value {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            server::extract::whole_of(n).map_or_else(|| value.clone(), Value::from)
        }
        _ => value.clone(),
    }
}

/// Flattens a patch into setting paths, checking each value.
pub fn parse_patch(body: &Value) -> Result<BTreeMap<String, Value>, BillingError> {
    let Value::Object(top) = body else {
        return Err(BillingError::InvalidSettings(
            "send the settings to change as a JSON object".into(),
        ));
    };
    let mut changes = BTreeMap::new();
    for (key, value) in top {
        match (key.as_str(), value) {
            ("signup_bonus" | "daily_reward" | "priorities", Value::Object(inner)) => {
                for (name, value) in inner {
                    changes.insert(format!("{key}.{name}"), whole_number(value));
                }
            }
            ("signup_bonus" | "daily_reward" | "priorities", _) => {
                return Err(BillingError::InvalidSettings(format!(
                    "{key} must be an object"
                )));
            }
            _ => {
                changes.insert(key.clone(), whole_number(value));
            }
        }
    }
    for (path, value) in &changes {
        check(path, value)?;
    }
    Ok(changes)
}

/// Resolves the settings record as read (absent: none stored yet).
pub fn resolved(
    env: &EnvSettings,
    doc: Option<records::Doc<Stored>>,
) -> Result<CreditSettings, store::StoreError> {
    match doc {
        Some(doc) => CreditSettings::resolve(env, doc.body, doc.version),
        None => CreditSettings::resolve(env, Stored::default(), 0),
    }
}

/// Stores `changes` at the version read, read again when another write
/// moved the settings meanwhile; answers the settings now in force.
pub async fn patch(
    store: &dyn Store,
    env: &EnvSettings,
    changes: &BTreeMap<String, Value>,
) -> Result<Result<CreditSettings, BillingError>, store::StoreError> {
    let modified = records::modify::<Stored, _, store::StoreError>(store, RECORD_ID, |doc| {
        let step = resolved(env, doc).map(|settings| {
            Step::Write(Command::new(Op::Record(settings.write_with(changes))), ())
        });
        Box::pin(std::future::ready(step))
    })
    .await?;
    match modified {
        Modified::Written(Executed::Fresh(Ok(Outcome::RecordPut(record))), ()) => {
            let doc = records::Doc::<Stored>::from_record(record)?;
            CreditSettings::resolve(env, doc.body, doc.version).map(Ok)
        }
        Modified::Written(Executed::Fresh(Err(refused)), ()) => Err(store::StoreError::Internal(
            format!("the settings' write was refused: {refused:?}"),
        )),
        other => Err(store::StoreError::Internal(format!(
            "the settings' write answered {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_wins_over_the_environment_which_wins_over_the_defaults() {
        let env = EnvSettings {
            signup_bonus_enabled: Some(true),
            signup_bonus_amount: Some(Amount::credits(50)),
            ..EnvSettings::default()
        };
        let mut stored = Stored::default();
        stored
            .values
            .insert("signup_bonus.amount".into(), json!("75"));
        let settings = CreditSettings::resolve(&env, stored, 3).unwrap();
        assert!(settings.signup_bonus.enabled);
        assert_eq!(settings.signup_bonus.amount, Amount::credits(75));
        assert_eq!(settings.signup_bonus.expire_days, None);
        // Daily rewards accumulate unless set to expire.
        assert_eq!(settings.daily_reward.expire_days, None);
        assert_eq!(settings.origins["signup_bonus.enabled"], Origin::Env);
        assert_eq!(settings.origins["signup_bonus.amount"], Origin::Api);
        assert_eq!(settings.origins["daily_reward.amount"], Origin::Default);
        assert_eq!(settings.priority(Source::DailyReward), 10);
        let env = EnvSettings {
            daily_expire_days: Some(2),
            ..EnvSettings::default()
        };
        let settings = CreditSettings::resolve(&env, Stored::default(), 0).unwrap();
        assert_eq!(settings.daily_reward.expire_days, Some(2));
        assert_eq!(settings.origins["daily_reward.expire_days"], Origin::Env);
    }

    #[test]
    fn a_patch_is_flattened_and_each_value_checked() {
        let changes = parse_patch(&json!({
            "signup_bonus": {"amount": "10", "expire_days": 30},
            "priorities": {"purchase": 90},
            "allow_free_user_purchase": true
        }))
        .unwrap();
        assert_eq!(changes["signup_bonus.amount"], json!("10"));
        assert_eq!(changes["priorities.purchase"], json!(90));
        for bad in [
            json!({"signup_bonus": {"amount": "-1"}}),
            json!({"signup_bonus": {"amount": "1e3"}}),
            json!({"daily_reward": {"expire_days": 0}}),
            json!({"priorities": {"purchase": 101}}),
            json!({"priorities": {"gift": 1}}),
            json!({"allow_free_user_purchase": "yes"}),
            json!({"surprise": true}),
            json!({"signup_bonus": 5}),
            json!([1]),
        ] {
            assert!(
                matches!(parse_patch(&bad), Err(BillingError::InvalidSettings(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_stored_setting_that_does_not_read_is_an_error_naming_the_record() {
        let mut stored = Stored::default();
        stored
            .values
            .insert("signup_bonus.amount".into(), json!("a lot"));
        let error = CreditSettings::resolve(&EnvSettings::default(), stored, 2).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("setting/credits") && text.contains("signup_bonus.amount"),
            "{text}"
        );
    }
}
