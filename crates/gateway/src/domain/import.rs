//! Reading the community price lists: LiteLLM's `model_prices_and_context_window.json` and models.dev's `api.json`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::decimal::DecimalError;
use super::price::{Mode, ModelPrice, UsdPerMtok};

/// The list formats read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// LiteLLM's: an object keyed by model, USD per token.
    Litellm,
    /// models.dev's: providers, each with models, USD per million tokens.
    ModelsDev,
}

/// An entry that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Skipped {
    /// The entry's name in the list.
    pub model: String,
    /// Why it cannot be used.
    pub reason: String,
}

/// What a list held: the prices read, and what was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Each model and its price, by catalog name.
    pub prices: BTreeMap<String, ModelPrice>,
    /// Entries left out, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Why a list could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListError(pub String);

/// The most entries one list may hold.
pub const LIST_ENTRIES_MAX: usize = 100_000;

/// Guesses a list's format from its shape: models.dev's top-level values
/// have `models`.
pub fn detect(text: &str) -> Result<Format, ListError> {
    let top: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(text).map_err(|e| ListError(format!("not a JSON object: {e}")))?;
    let models_dev = top.values().any(|v| {
        serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(v.get())
            .is_ok_and(|m| m.contains_key("models"))
    });
    Ok(if models_dev {
        Format::ModelsDev
    } else {
        Format::Litellm
    })
}

/// Reads a list in `format`.
pub fn read(text: &str, format: Format) -> Result<Imported, ListError> {
    match format {
        Format::Litellm => litellm(text),
        Format::ModelsDev => models_dev(text),
    }
}

/// One of LiteLLM's entries, with prices kept as the text they are written in.
#[derive(Deserialize)]
struct LitellmEntry {
    litellm_provider: Option<Box<RawValue>>,
    mode: Option<Box<RawValue>>,
    input_cost_per_token: Option<Box<RawValue>>,
    output_cost_per_token: Option<Box<RawValue>>,
    cache_read_input_token_cost: Option<Box<RawValue>>,
    cache_creation_input_token_cost: Option<Box<RawValue>>,
    output_cost_per_reasoning_token: Option<Box<RawValue>>,
    max_input_tokens: Option<Box<RawValue>>,
    max_output_tokens: Option<Box<RawValue>>,
}

/// A JSON string's value, or none.
fn string(raw: &Option<Box<RawValue>>) -> Option<String> {
    raw.as_ref()
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

/// A JSON number's exact text, or none when absent or null; an error when
/// it is something else.
fn number(raw: &Option<Box<RawValue>>) -> Result<Option<&str>, DecimalError> {
    match raw.as_ref().map(|r| r.get()) {
        None | Some("null") => Ok(None),
        Some(text) if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => Ok(Some(text)),
        Some(_) => Err(DecimalError::Syntax),
    }
}

/// A token limit, when it is a whole number.
fn limit(raw: &Option<Box<RawValue>>) -> Option<u64> {
    number(raw).ok().flatten().and_then(|t| t.parse().ok())
}

fn price_of(
    field: &str,
    raw: &Option<Box<RawValue>>,
    read: fn(&str) -> Result<UsdPerMtok, DecimalError>,
) -> Result<Option<UsdPerMtok>, String> {
    match number(raw) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => read(text)
            .map(Some)
            .map_err(|e| format!("{field} {text} is {e}")),
        Err(e) => Err(format!("{field} is {e}")),
    }
}

fn litellm(text: &str) -> Result<Imported, ListError> {
    let entries: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(text).map_err(|e| ListError(format!("not a JSON object: {e}")))?;
    if entries.len() > LIST_ENTRIES_MAX {
        return Err(ListError(format!("more than {LIST_ENTRIES_MAX} entries")));
    }
    let mut out = Imported::default();
    for (model, raw) in entries {
        if model == "sample_spec" {
            continue;
        }
        let entry: LitellmEntry = match serde_json::from_str(raw.get()) {
            Ok(entry) => entry,
            Err(e) => {
                out.skipped.push(Skipped {
                    model,
                    reason: format!("not an entry: {e}"),
                });
                continue;
            }
        };
        match litellm_price(&entry) {
            Ok(price) => {
                out.prices.insert(model, price);
            }
            Err(reason) => out.skipped.push(Skipped { model, reason }),
        }
    }
    Ok(out)
}

fn litellm_price(entry: &LitellmEntry) -> Result<ModelPrice, String> {
    let mode = match string(&entry.mode).as_deref() {
        Some("chat") | Some("completion") => Mode::Chat,
        Some("embedding") => Mode::Embedding,
        Some(other) => return Err(format!("mode {other} is not served by the gateway")),
        None => return Err("no mode".to_owned()),
    };
    let provider = string(&entry.litellm_provider).ok_or("no litellm_provider")?;
    let input = price_of(
        "input_cost_per_token",
        &entry.input_cost_per_token,
        UsdPerMtok::per_token,
    )?
    .ok_or("no input_cost_per_token")?;
    let output = price_of(
        "output_cost_per_token",
        &entry.output_cost_per_token,
        UsdPerMtok::per_token,
    )?;
    let output = match (output, mode) {
        (Some(output), _) => output,
        (None, Mode::Embedding) => UsdPerMtok::ZERO,
        (None, Mode::Chat) => return Err("no output_cost_per_token".to_owned()),
    };
    Ok(ModelPrice {
        provider,
        mode,
        upstreams: Vec::new(),
        upstream_model: None,
        input,
        cached_input: price_of(
            "cache_read_input_token_cost",
            &entry.cache_read_input_token_cost,
            UsdPerMtok::per_token,
        )?,
        cache_write: price_of(
            "cache_creation_input_token_cost",
            &entry.cache_creation_input_token_cost,
            UsdPerMtok::per_token,
        )?,
        output,
        reasoning: price_of(
            "output_cost_per_reasoning_token",
            &entry.output_cost_per_reasoning_token,
            UsdPerMtok::per_token,
        )?,
        context_window: limit(&entry.max_input_tokens),
        max_output_tokens: limit(&entry.max_output_tokens),
        markup_percent: None,
    })
}

#[derive(Deserialize)]
struct DevProvider {
    #[serde(default)]
    models: BTreeMap<String, Box<RawValue>>,
}

#[derive(Deserialize)]
struct DevModel {
    cost: Option<DevCost>,
    limit: Option<DevLimit>,
}

#[derive(Deserialize)]
struct DevCost {
    input: Option<Box<RawValue>>,
    output: Option<Box<RawValue>>,
    cache_read: Option<Box<RawValue>>,
    cache_write: Option<Box<RawValue>>,
    reasoning: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct DevLimit {
    context: Option<Box<RawValue>>,
    output: Option<Box<RawValue>>,
}

/// The catalog name of a models.dev model: its own id for OpenAI's and
/// Anthropic's models, as their SDKs name them, `provider/model` for the rest.
fn dev_name(provider: &str, model: &str) -> String {
    if matches!(provider, "openai" | "anthropic") {
        model.to_owned()
    } else {
        format!("{provider}/{model}")
    }
}

fn models_dev(text: &str) -> Result<Imported, ListError> {
    let providers: BTreeMap<String, DevProvider> = serde_json::from_str(text)
        .map_err(|e| ListError(format!("not models.dev's api.json: {e}")))?;
    let total: usize = providers.values().map(|p| p.models.len()).sum();
    if total > LIST_ENTRIES_MAX {
        return Err(ListError(format!("more than {LIST_ENTRIES_MAX} entries")));
    }
    let mut out = Imported::default();
    for (provider, entry) in providers {
        for (model, raw) in entry.models {
            let name = dev_name(&provider, &model);
            let price = serde_json::from_str::<DevModel>(raw.get())
                .map_err(|e| format!("not a model: {e}"))
                .and_then(|m| dev_price(&provider, &model, &m));
            match price {
                Ok(price) => {
                    out.prices.insert(name, price);
                }
                Err(reason) => out.skipped.push(Skipped {
                    model: name,
                    reason,
                }),
            }
        }
    }
    Ok(out)
}

fn dev_price(provider: &str, model: &str, entry: &DevModel) -> Result<ModelPrice, String> {
    let cost = entry.cost.as_ref().ok_or("no cost")?;
    let input = price_of("cost.input", &cost.input, UsdPerMtok::parse)?.ok_or("no cost.input")?;
    let mode = if model.contains("embed") {
        Mode::Embedding
    } else {
        Mode::Chat
    };
    let output = match price_of("cost.output", &cost.output, UsdPerMtok::parse)? {
        Some(output) => output,
        None if mode == Mode::Embedding => UsdPerMtok::ZERO,
        None => return Err("no cost.output".to_owned()),
    };
    let limits = entry.limit.as_ref();
    Ok(ModelPrice {
        provider: provider.to_owned(),
        mode,
        upstreams: Vec::new(),
        // Models of other providers are named `provider/model` in the
        // catalog and by their own id upstream.
        upstream_model: (dev_name(provider, model) != model).then(|| model.to_owned()),
        input,
        cached_input: price_of("cost.cache_read", &cost.cache_read, UsdPerMtok::parse)?,
        cache_write: price_of("cost.cache_write", &cost.cache_write, UsdPerMtok::parse)?,
        output,
        reasoning: price_of("cost.reasoning", &cost.reasoning, UsdPerMtok::parse)?,
        context_window: limits.and_then(|l| limit(&l.context)),
        max_output_tokens: limits.and_then(|l| limit(&l.output)),
        markup_percent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LITELLM: &str = r#"{
        "sample_spec": {"input_cost_per_token": 0.0, "max_output_tokens": "max output tokens", "mode": "one of: chat"},
        "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
                   "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06,
                   "max_input_tokens": 128000, "max_output_tokens": 16384},
        "claude-x": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06,
                     "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
                     "cache_creation_input_token_cost": 3.75e-06, "max_output_tokens": 64000},
        "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08},
        "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
        "odd": {"litellm_provider": "x", "mode": "chat", "input_cost_per_token": "cheap", "output_cost_per_token": 1e-06},
        "tiny": {"litellm_provider": "x", "mode": "chat", "input_cost_per_token": 1e-20, "output_cost_per_token": 1e-06},
        "nomode": {"litellm_provider": "x", "input_cost_per_token": 1e-06}
    }"#;

    #[test]
    fn litellm_prices_are_read_exactly_per_million_tokens() {
        assert_eq!(detect(LITELLM), Ok(Format::Litellm));
        let imported = read(LITELLM, Format::Litellm).unwrap();
        let gpt = &imported.prices["gpt-4o"];
        assert_eq!(gpt.input, UsdPerMtok::parse("2.5").unwrap());
        assert_eq!(gpt.output, UsdPerMtok::parse("10").unwrap());
        assert_eq!(gpt.cached_input, Some(UsdPerMtok::parse("1.25").unwrap()));
        assert_eq!(
            (gpt.context_window, gpt.max_output_tokens),
            (Some(128_000), Some(16_384))
        );
        let claude = &imported.prices["claude-x"];
        assert_eq!(claude.cache_write, Some(UsdPerMtok::parse("3.75").unwrap()));
        assert_eq!(claude.provider, "anthropic");
        let embedding = &imported.prices["text-embedding-3-small"];
        assert_eq!(
            (embedding.mode, embedding.output),
            (Mode::Embedding, UsdPerMtok::ZERO)
        );
        assert_eq!(embedding.input, UsdPerMtok::parse("0.02").unwrap());
    }

    #[test]
    fn litellm_entries_that_cannot_be_used_are_listed_with_a_reason() {
        let imported = read(LITELLM, Format::Litellm).unwrap();
        let reasons: BTreeMap<&str, &str> = imported
            .skipped
            .iter()
            .map(|s| (s.model.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons["dall-e-3"].contains("image_generation"));
        assert!(reasons["odd"].contains("input_cost_per_token"));
        assert!(reasons["tiny"].contains("fractional digits"));
        assert_eq!(reasons["nomode"], "no mode");
        assert!(!imported.prices.contains_key("sample_spec"));
    }

    const MODELS_DEV: &str = r#"{
        "openai": {"id": "openai", "name": "OpenAI", "models": {
            "gpt-4.1": {"id": "gpt-4.1", "cost": {"input": 2, "output": 8, "cache_read": 0.5},
                        "limit": {"context": 1047576, "output": 32768}}}},
        "anthropic": {"id": "anthropic", "models": {
            "claude-sonnet-4": {"id": "claude-sonnet-4", "cost": {"input": 3, "output": 15,
                                "cache_read": 0.3, "cache_write": 3.75}, "limit": {"context": 200000, "output": 64000}}}},
        "groq": {"id": "groq", "models": {
            "llama-3.1-8b": {"id": "llama-3.1-8b", "cost": {"input": 0.05, "output": 0.08, "reasoning": 0.1}},
            "free-thing": {"id": "free-thing"}}}
    }"#;

    #[test]
    fn models_dev_prices_are_read_per_million_tokens() {
        assert_eq!(detect(MODELS_DEV), Ok(Format::ModelsDev));
        let imported = read(MODELS_DEV, Format::ModelsDev).unwrap();
        let gpt = &imported.prices["gpt-4.1"];
        assert_eq!(gpt.input, UsdPerMtok::parse("2").unwrap());
        assert_eq!(gpt.max_output_tokens, Some(32_768));
        assert_eq!(gpt.upstream_model, None);
        let llama = &imported.prices["groq/llama-3.1-8b"];
        assert_eq!(llama.upstream_model.as_deref(), Some("llama-3.1-8b"));
        assert_eq!(llama.reasoning, Some(UsdPerMtok::parse("0.1").unwrap()));
        assert_eq!(
            imported.prices["claude-sonnet-4"].cache_write,
            Some(UsdPerMtok::parse("3.75").unwrap())
        );
        assert_eq!(
            imported.skipped,
            vec![Skipped {
                model: "groq/free-thing".into(),
                reason: "no cost".into()
            }]
        );
    }

    #[test]
    fn what_is_not_a_list_is_an_error() {
        assert!(detect("[1, 2]").is_err());
        assert!(read("{\"a\": 1}", Format::ModelsDev).is_err());
    }

    #[test]
    fn the_shipped_litellm_list_is_read_in_full() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/litellm_model_prices.json"
        );
        let text = std::fs::read_to_string(path).expect("the list in the test data");
        let imported = read(&text, detect(&text).unwrap()).unwrap();
        assert_eq!(imported.prices.len() + imported.skipped.len(), 4_878 - 1);
        assert!(imported.prices.len() > 3_000, "{}", imported.prices.len());
        assert_eq!(
            imported.prices["gpt-4o"].input,
            UsdPerMtok::parse("2.5").unwrap()
        );
    }

    /// Fuzzing of the price-list import: lists shaped as LiteLLM's and
    /// models.dev's with any values in their fields, and any text, are read
    /// into prices or refused with a reason, never panicked on.
    /// `PROPTEST_CASES=100000 cargo test -p gateway fuzz_` runs it longer.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{Value, json};

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(
                    |f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                ),
                "[0-9eE.+-]{0,12}".prop_map(Value::String),
                ".{0,10}".prop_map(Value::String),
                Just(json!([])),
                Just(json!({})),
            ]
        }

        fn fields() -> impl Strategy<Value = serde_json::Map<String, Value>> {
            let names = prop_oneof![
                Just("input_cost_per_token".to_owned()),
                Just("output_cost_per_token".to_owned()),
                Just("cache_read_input_token_cost".to_owned()),
                Just("cache_creation_input_token_cost".to_owned()),
                Just("litellm_provider".to_owned()),
                Just("mode".to_owned()),
                Just("max_tokens".to_owned()),
                Just("input".to_owned()),
                Just("output".to_owned()),
                Just("cache_read".to_owned()),
                Just("cache_write".to_owned()),
                Just("cost".to_owned()),
                "[a-z_]{1,8}",
            ];
            prop::collection::btree_map(names, value(), 0..8).prop_map(|m| m.into_iter().collect())
        }

        proptest! {
            #[test]
            fn fuzz_litellm_shaped_lists_are_read_or_refused(
                models in prop::collection::btree_map(".{1,12}", fields(), 0..5),
            ) {
                let text = Value::Object(models.into_iter().map(|(k, v)| (k, Value::Object(v))).collect()).to_string();
                let _ = read(&text, Format::Litellm);
            }

            #[test]
            fn fuzz_models_dev_shaped_lists_are_read_or_refused(
                providers in prop::collection::btree_map("[a-z]{1,6}", prop::collection::btree_map(".{1,8}", fields(), 0..4), 0..3),
            ) {
                let text = Value::Object(providers.into_iter().map(|(p, models)| {
                    let models: serde_json::Map<String, Value> = models.into_iter().map(|(id, f)| {
                        let mut f = f;
                        let cost = f.remove("cost").unwrap_or_else(|| json!({"input": 1, "output": 2}));
                        f.insert("cost".into(), cost);
                        (id, Value::Object(f))
                    }).collect();
                    (p.clone(), json!({"id": p, "models": models}))
                }).collect()).to_string();
                let _ = read(&text, Format::ModelsDev);
            }

            #[test]
            fn fuzz_any_text_is_read_or_refused(text in ".{0,200}") {
                let _ = read(&text, Format::Litellm);
                let _ = read(&text, Format::ModelsDev);
            }
        }
    }
}
