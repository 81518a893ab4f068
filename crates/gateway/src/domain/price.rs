//! A model's price: USD per million tokens for each class of token, held as exact decimals.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::decimal::{DecimalError, format_scaled, parse_scaled};

/// Fractional digits of a price: picodollars per million tokens.
pub const PRICE_SCALE: u32 = 12;

/// The highest price held: 1,000,000 USD per million tokens.
pub const PRICE_MAX_USD: u128 = 1_000_000;

/// USD per million tokens, held exactly as picodollars per million tokens
/// (so a price per token keeps 18 fractional digits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsdPerMtok(u128);

impl UsdPerMtok {
    /// Nothing per token.
    pub const ZERO: UsdPerMtok = UsdPerMtok(0);

    /// Reads a price written in USD per million tokens (`"2.5"`).
    pub fn parse(text: &str) -> Result<UsdPerMtok, DecimalError> {
        Self::checked(parse_scaled(text, PRICE_SCALE, 0)?)
    }

    /// Reads a price written in USD per token (`"2.5e-06"`), as LiteLLM's
    /// list writes them.
    pub fn per_token(text: &str) -> Result<UsdPerMtok, DecimalError> {
        Self::checked(parse_scaled(text, PRICE_SCALE, 6)?)
    }

    /// Picodollars per million tokens.
    pub const fn picos(self) -> u128 {
        self.0
    }

    /// A price of `picos` picodollars per million tokens, for tests.
    pub const fn from_picos(picos: u128) -> UsdPerMtok {
        UsdPerMtok(picos)
    }

    fn checked(picos: u128) -> Result<UsdPerMtok, DecimalError> {
        if picos > PRICE_MAX_USD * 10u128.pow(PRICE_SCALE) {
            return Err(DecimalError::TooLarge);
        }
        Ok(UsdPerMtok(picos))
    }
}

impl fmt::Display for UsdPerMtok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(self.0, PRICE_SCALE))
    }
}

impl Serialize for UsdPerMtok {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UsdPerMtok {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = exact_text(deserializer)?;
        UsdPerMtok::parse(&text).map_err(|e| D::Error::custom(format!("a price {e}")))
    }
}

/// The text of a JSON number or string, as written: a number is read from
/// its raw text, so no float ever holds it. A string is plain decimal
/// notation (`12.5`: no sign, exponent, whitespace or leading zeros), as
/// the API's description says.
pub fn exact_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
    let text = raw.get();
    if text.starts_with('"') {
        let text = serde_json::from_str::<String>(text).map_err(D::Error::custom)?;
        if !is_plain_decimal(&text) {
            return Err(D::Error::custom(
                "expected plain decimal notation such as \"12.5\"",
            ));
        }
        Ok(text)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(D::Error::custom("expected a decimal number or string"))
    }
}

/// Digits without leading zeros, then optionally `.` and digits.
pub fn is_plain_decimal(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && (whole == "0" || !whole.starts_with('0')) && fraction.is_none_or(digits)
}

/// Fractional digits of a percentage.
pub const PERCENT_SCALE: u32 = 4;

/// The highest markup: 1,000 %.
pub const PERCENT_MAX: u64 = 1_000;

/// A percentage with four fractional digits (`12.5` %).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u64);

impl Percent {
    /// No markup.
    pub const ZERO: Percent = Percent(0);

    /// Whole percent, for constants and tests.
    pub const fn whole(percent: u64) -> Percent {
        Percent(percent * 10u64.pow(PERCENT_SCALE))
    }

    /// Reads a percentage (`"10"`, `"12.5"`); at most 1,000.
    pub fn parse(text: &str) -> Result<Percent, DecimalError> {
        let units = parse_scaled(text, PERCENT_SCALE, 0)?;
        if units > u128::from(PERCENT_MAX * 10u64.pow(PERCENT_SCALE)) {
            return Err(DecimalError::TooLarge);
        }
        Ok(Percent(units as u64))
    }

    /// Ten-thousandths of a percent.
    pub const fn units(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(u128::from(self.0), PERCENT_SCALE))
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = exact_text(deserializer)?;
        Percent::parse(&text).map_err(|e| D::Error::custom(format!("a percentage {e}")))
    }
}

/// Fractional digits of the credit rate.
pub const RATE_SCALE: u32 = 6;

/// Credits one US dollar buys (100 by default: a credit is a cent), with
/// six fractional digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditsPerUsd(u64);

impl CreditsPerUsd {
    /// Reads a rate (`"100"`); above zero, at most 10^9.
    pub fn parse(text: &str) -> Result<CreditsPerUsd, DecimalError> {
        let units = parse_scaled(text, RATE_SCALE, 0)?;
        if units == 0 {
            return Err(DecimalError::Syntax);
        }
        if units > 1_000_000_000 * 10u128.pow(RATE_SCALE) {
            return Err(DecimalError::TooLarge);
        }
        Ok(CreditsPerUsd(units as u64))
    }

    /// Whole credits per USD.
    pub const fn whole(credits: u64) -> CreditsPerUsd {
        CreditsPerUsd(credits * 10u64.pow(RATE_SCALE))
    }

    /// Millionths of a credit per USD.
    pub const fn units(self) -> u64 {
        self.0
    }
}

impl Default for CreditsPerUsd {
    fn default() -> Self {
        CreditsPerUsd::whole(100)
    }
}

impl fmt::Display for CreditsPerUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(u128::from(self.0), RATE_SCALE))
    }
}

/// What a model is called for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Chat completions and messages.
    #[default]
    Chat,
    /// Embeddings.
    Embedding,
}

/// The wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    /// OpenAI's: `/v1/chat/completions`, `/v1/embeddings`.
    Openai,
    /// Anthropic's: `/v1/messages`.
    Anthropic,
}

impl Wire {
    /// The wire format of a provider named as LiteLLM and models.dev name
    /// them: Anthropic's for `anthropic`, OpenAI's (which most providers
    /// offer) for the rest.
    pub fn of_provider(provider: &str) -> Wire {
        if provider == "anthropic" {
            Wire::Anthropic
        } else {
            Wire::Openai
        }
    }
}

/// A model's entry in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Who serves it (`openai`, `anthropic`, …).
    pub provider: String,
    /// What it is called for.
    #[serde(default)]
    pub mode: Mode,
    /// The named upstreams to try in order; empty: the provider's default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// The model's name upstream, when it differs from the catalog's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    /// Fresh input tokens.
    pub input: UsdPerMtok,
    /// Input tokens read from the provider's prompt cache; the input price
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<UsdPerMtok>,
    /// Input tokens written to the prompt cache; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<UsdPerMtok>,
    /// Output tokens.
    pub output: UsdPerMtok,
    /// Reasoning tokens, when priced apart from output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<UsdPerMtok>,
    /// Tokens the model reads at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Tokens the model writes at most in one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// This model's markup, instead of the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markup_percent: Option<Percent>,
}

impl ModelPrice {
    /// The price of cached input tokens.
    pub fn cached_input_price(&self) -> UsdPerMtok {
        self.cached_input.unwrap_or(self.input)
    }

    /// The price of cache-write tokens.
    pub fn cache_write_price(&self) -> UsdPerMtok {
        self.cache_write.unwrap_or(self.input)
    }

    /// The price of reasoning tokens.
    pub fn reasoning_price(&self) -> UsdPerMtok {
        self.reasoning.unwrap_or(self.output)
    }

    /// The wire format its provider speaks.
    pub fn wire(&self) -> Wire {
        Wire::of_provider(&self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_written_as_text_is_plain_decimal() {
        for good in ["0", "2.5", "10", "0.000001"] {
            assert!(is_plain_decimal(good), "{good}");
        }
        for bad in ["", " 1", "+1", "01", "1.", ".5", "1e3", "-1", "1,5"] {
            assert!(!is_plain_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn prices_read_per_token_and_per_million_agree() {
        assert_eq!(UsdPerMtok::per_token("2.5e-06"), UsdPerMtok::parse("2.5"));
        assert_eq!(UsdPerMtok::per_token("1e-08"), UsdPerMtok::parse("0.01"));
        assert_eq!(UsdPerMtok::parse("2.5").unwrap().to_string(), "2.5");
    }

    #[test]
    fn prices_deserialize_from_numbers_and_strings_without_floats() {
        let price: UsdPerMtok = serde_json::from_str("0.1").unwrap();
        assert_eq!(price.picos(), 100_000_000_000);
        // 0.1 + 0.2 as floats is 0.30000000000000004; as text it is exact.
        let sum = serde_json::from_str::<UsdPerMtok>("0.1").unwrap().picos()
            + serde_json::from_str::<UsdPerMtok>("\"0.2\"")
                .unwrap()
                .picos();
        assert_eq!(sum, UsdPerMtok::parse("0.3").unwrap().picos());
        assert!(serde_json::from_str::<UsdPerMtok>("-1").is_err());
        assert!(serde_json::from_str::<UsdPerMtok>("true").is_err());
        assert!(serde_json::from_str::<UsdPerMtok>("2000000").is_err());
        assert_eq!(serde_json::to_string(&price).unwrap(), "\"0.1\"");
    }

    #[test]
    fn absent_class_prices_fall_back_to_input_and_output() {
        let price = ModelPrice {
            provider: "openai".into(),
            mode: Mode::Chat,
            upstreams: vec![],
            upstream_model: None,
            input: UsdPerMtok::parse("2").unwrap(),
            cached_input: None,
            cache_write: None,
            output: UsdPerMtok::parse("8").unwrap(),
            reasoning: None,
            context_window: None,
            max_output_tokens: None,
            markup_percent: None,
        };
        assert_eq!(price.cached_input_price(), price.input);
        assert_eq!(price.cache_write_price(), price.input);
        assert_eq!(price.reasoning_price(), price.output);
        assert_eq!(price.wire(), Wire::Openai);
    }

    #[test]
    fn percentages_and_rates_are_bounded() {
        assert_eq!(Percent::parse("12.5").unwrap().units(), 125_000);
        assert!(Percent::parse("1000.0001").is_err());
        assert!(Percent::parse("0.00001").is_err());
        assert_eq!(
            CreditsPerUsd::parse("100").unwrap(),
            CreditsPerUsd::whole(100)
        );
        assert!(CreditsPerUsd::parse("0").is_err());
        assert_eq!(CreditsPerUsd::default().to_string(), "100");
    }
}
