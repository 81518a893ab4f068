//! The API's answers as the pages read them: only the fields a page
//! shows, amounts and instants parsed once, here.

use ledger::{Amount, Timestamp};
use serde::{Deserialize, Deserializer};

fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
    let text = String::deserialize(d)?;
    crate::domain::format::micros_of(&text)
        .map(Amount::from_micros)
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is no figure of credits")))
}

fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let text = String::deserialize(d)?;
    Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

fn maybe_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| Timestamp::parse_rfc3339(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// `GET …/balance?include=totals,forecast`.
#[derive(Deserialize)]
pub struct Balance {
    #[serde(deserialize_with = "amount")]
    pub available: Amount,
    #[serde(deserialize_with = "amount")]
    pub held: Amount,
    #[serde(deserialize_with = "amount")]
    pub debt: Amount,
    pub lots: Vec<Lot>,
    #[serde(default)]
    pub forecast: Option<Forecast>,
}

/// A lot behind the balance.
#[derive(Deserialize)]
pub struct Lot {
    pub source: String,
    #[serde(deserialize_with = "amount")]
    pub remaining: Amount,
    #[serde(default, deserialize_with = "maybe_instant")]
    pub expires_at: Option<Timestamp>,
}

/// The run-out forecast.
#[derive(Deserialize)]
pub struct Forecast {
    #[serde(deserialize_with = "amount")]
    pub daily_rate: Amount,
    #[serde(default, deserialize_with = "maybe_instant")]
    pub runs_out_at: Option<Timestamp>,
}

/// `GET …/subscription`.
#[derive(Deserialize)]
pub struct Subscription {
    pub plan_id: String,
    pub status: String,
    pub cancel_at_period_end: bool,
    pub current_period: Period,
}

/// A subscription's current period.
#[derive(Deserialize)]
pub struct Period {
    #[serde(deserialize_with = "instant")]
    pub end: Timestamp,
}

/// Money as the API writes it.
#[derive(Clone, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

/// `GET /v1/plans`.
#[derive(Deserialize)]
pub struct Plans {
    pub data: Vec<Plan>,
}

/// A plan.
#[derive(Deserialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    #[serde(deserialize_with = "amount")]
    pub credits: Amount,
    pub interval: String,
    #[serde(default)]
    pub price: Option<Money>,
}

/// `GET /v1/packages?locale=…`.
#[derive(Deserialize)]
pub struct Packages {
    pub data: Vec<Package>,
}

/// A package for sale, its texts in the asked locale.
#[derive(Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(deserialize_with = "amount")]
    pub credits: Amount,
    pub price: Money,
}

/// `GET …/payment-method`.
#[derive(Deserialize)]
pub struct PaymentMethod {
    pub card: Option<Card>,
}

/// A saved card.
#[derive(Deserialize)]
pub struct Card {
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

/// `GET …/auto-topup`.
#[derive(Deserialize)]
pub struct AutoTopup {
    pub enabled: bool,
    #[serde(deserialize_with = "amount")]
    pub threshold_credits: Amount,
    pub amount: Money,
    pub monthly_cap: Option<Money>,
    pub state: String,
    pub last_failure: Option<String>,
}

/// `GET …/daily-reward`.
#[derive(Deserialize)]
pub struct DailyReward {
    pub enabled: bool,
    pub claimed: bool,
    #[serde(deserialize_with = "amount")]
    pub amount: Amount,
    #[serde(deserialize_with = "instant")]
    pub next_claim_at: Timestamp,
}

/// A page of the journal.
#[derive(Deserialize)]
pub struct Transactions {
    pub data: Vec<Transaction>,
    pub next_cursor: Option<String>,
}

/// A journal entry.
#[derive(Deserialize)]
pub struct Transaction {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "amount")]
    pub amount: Amount,
    #[serde(deserialize_with = "amount")]
    pub balance_after: Amount,
    #[serde(deserialize_with = "instant")]
    pub created_at: Timestamp,
    /// A payment's figures, read from the metadata its grant carries.
    #[serde(default, rename = "metadata", deserialize_with = "payment")]
    pub payment: Option<Payment>,
    /// A grant's source.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub feature: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a payment's grant says of the payment: what was paid and where
/// its invoice or receipt is.
pub struct Payment {
    pub amount_paid: i64,
    pub currency: String,
    pub invoice_url: Option<String>,
    pub receipt_url: Option<String>,
}

/// The payment in a transaction's metadata, when it holds one: metadata is
/// free-form, so anything else reads as none rather than failing the page.
fn payment<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Payment>, D::Error> {
    let metadata = serde_json::Value::deserialize(d)?;
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
            .map(str::to_owned)
    };
    let paid = metadata.get("amount_paid").and_then(|v| v.as_i64());
    let currency = metadata.get("currency").and_then(|v| v.as_str());
    Ok(match (paid, currency) {
        (Some(amount_paid), Some(currency)) => Some(Payment {
            amount_paid,
            currency: currency.to_owned(),
            invoice_url: text("invoice_url"),
            receipt_url: text("receipt_url"),
        }),
        _ => None,
    })
}

/// A page of an account's keys.
#[derive(Deserialize)]
pub struct Keys {
    pub data: Vec<Key>,
}

/// A customer key, without the key.
#[derive(Deserialize)]
pub struct Key {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub last4: Option<String>,
    #[serde(deserialize_with = "instant")]
    pub created_at: Timestamp,
    #[serde(default, deserialize_with = "maybe_instant")]
    pub last_used_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "maybe_instant")]
    pub revoked_at: Option<Timestamp>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub spend_limit: Option<SpendLimit>,
}

/// A key's spend limit.
#[derive(Deserialize)]
pub struct SpendLimit {
    #[serde(deserialize_with = "amount")]
    pub amount: Amount,
    pub period: String,
}

/// A new key, shown once.
#[derive(Deserialize)]
pub struct NewKey {
    pub key: String,
}

/// `GET …/provider-keys`.
#[derive(Deserialize)]
pub struct ProviderKeys {
    pub data: Vec<ProviderKey>,
}

/// A provider key, by its last four characters.
#[derive(Deserialize)]
pub struct ProviderKey {
    pub provider: String,
    pub last4: String,
}

/// `GET …/usage`.
#[derive(Deserialize)]
pub struct Usage {
    pub data: Vec<UsageGroup>,
}

/// One group of usage.
#[derive(Deserialize)]
pub struct UsageGroup {
    pub key: Option<String>,
    #[serde(deserialize_with = "amount")]
    pub cost: Amount,
}

/// `GET …/usage/calls`.
#[derive(Deserialize)]
pub struct Calls {
    pub data: Vec<Call>,
}

/// A gateway call.
#[derive(Deserialize)]
pub struct Call {
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    #[serde(deserialize_with = "amount")]
    pub cost: Amount,
    #[serde(deserialize_with = "instant")]
    pub created_at: Timestamp,
    pub billing_mode: String,
}

/// `POST …/checkout` and `POST …/payment-method/setup`.
#[derive(Deserialize)]
pub struct Checkout {
    pub checkout_url: String,
}

/// `GET …/checkout/{session_id}`.
#[derive(Deserialize)]
pub struct CheckoutStatus {
    pub status: String,
}

/// `GET /v1/accounts/{id}` (admin).
#[derive(Deserialize)]
pub struct Account {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}
