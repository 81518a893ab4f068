//! How an account pays for gateway calls: in credits (the default), or with its own provider
//! keys (BYOK), with an optional platform fee of its own.

use ledger::AccountId;
use serde::{Deserialize, Serialize};
use store::records::{self, Kind, Lookup};
use store::{Store, StoreError};

/// How an account's gateway calls are paid for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    /// The operator's upstreams, charged in credits.
    #[default]
    Credits,
    /// The account's own provider keys; no credits but an optional fee.
    Byok,
}

impl BillingMode {
    /// The name as the API writes it.
    pub const fn code(self) -> &'static str {
        match self {
            BillingMode::Credits => "credits",
            BillingMode::Byok => "byok",
        }
    }
}

/// An account's billing mode, BYOK fee and low-balance threshold, as a
/// record of kind `account_billing` under the account's id. No record:
/// credits mode, the operator's default fee and threshold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBilling {
    /// How its gateway calls are paid for.
    pub billing_mode: BillingMode,
    /// Its own BYOK platform fee in percent, instead of the operator's
    /// default: a decimal from 0 to 100 with at most 4 fractional digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byok_fee_percent: Option<String>,
    /// The available balance at or below which `balance.low` is sent, in
    /// micros, instead of the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_balance_threshold_micros: Option<i64>,
}

impl Kind for AccountBilling {
    const KIND: &'static str = "account_billing";

    fn lookups(&self) -> Vec<Lookup> {
        Vec::new()
    }
}

/// The account's billing, with its record's version (none when absent).
pub async fn read(
    store: &dyn Store,
    account: &AccountId,
) -> Result<(AccountBilling, Option<u64>), StoreError> {
    Ok(
        match records::get::<AccountBilling>(store, account.as_str()).await? {
            Some(doc) => (doc.body, Some(doc.version)),
            None => (AccountBilling::default(), None),
        },
    )
}

/// Whether `text` is a fee percentage: a decimal from 0 to 100 with at most
/// 4 fractional digits.
pub fn is_fee_percent(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 3 || !digits(whole) || !digits(fraction) {
        return false;
    }
    // No leading zeros, as the description's pattern says.
    if whole.len() > 1 && whole.starts_with('0') {
        return false;
    }
    if text.contains('.') && fraction.is_empty() || fraction.len() > 4 {
        return false;
    }
    match whole.parse::<u32>() {
        Ok(100) => fraction.bytes().all(|b| b == b'0'),
        Ok(n) => n < 100,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_percentages_are_decimals_from_0_to_100() {
        for good in ["0", "2.5", "99.9999", "100", "100.0", "7"] {
            assert!(is_fee_percent(good), "{good}");
        }
        for bad in [
            "", "-1", "100.01", "101", "1.23456", "1.", ".5", "abc", "1e2",
        ] {
            assert!(!is_fee_percent(bad), "{bad}");
        }
    }
}
