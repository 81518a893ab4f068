//! The price catalog: one record per model, kept briefly in memory for the call path, written
//! through the API or imported from a community price list.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use store::records::{self, Doc, Expect, Kind, Lookup, RecordFilter, Written};
use store::{Store, StoreError};

use crate::domain::import::{self, Format, Skipped};
use crate::domain::{Mode, ModelPrice};
use crate::error::GatewayError;

impl Kind for ModelPrice {
    const KIND: &'static str = "model_price";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::ordered("provider", self.provider.clone())]
    }
}

/// The longest model name, in bytes.
pub const MODEL_LEN_MAX: usize = 200;

/// Whether `text` is 1 to `len_max` printable ASCII characters without
/// spaces, and not only dots (a path segment of dots is resolved away):
/// what model, provider and upstream names are.
pub fn is_plain_name(text: &str, len_max: usize) -> bool {
    (1..=len_max).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_graphic())
        && !text.bytes().all(|b| b == b'.')
}

/// The description's pattern of [`is_plain_name`] for `len_max`.
pub fn plain_name_pattern(len_max: usize) -> String {
    format!("^(?!\\.+$)[!-~]{{1,{len_max}}}$")
}

/// Checks a model name: 1 to 200 printable ASCII characters without spaces.
pub fn check_model(model: &str) -> Result<(), GatewayError> {
    if !is_plain_name(model, MODEL_LEN_MAX) {
        return Err(GatewayError::InvalidPrice(format!(
            "a model name is 1 to {MODEL_LEN_MAX} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Checks what a price says beyond its numbers.
pub fn check_price(price: &ModelPrice) -> Result<(), GatewayError> {
    if !is_plain_name(&price.provider, 64) {
        return Err(GatewayError::InvalidPrice(
            "provider is 1 to 64 printable ASCII characters without spaces".into(),
        ));
    }
    if price.upstreams.len() > 8 || price.upstreams.iter().any(|u| !is_plain_name(u, 64)) {
        return Err(GatewayError::InvalidPrice(
            "upstreams is a list of at most 8 names of 1 to 64 printable ASCII characters".into(),
        ));
    }
    if let Some(model) = &price.upstream_model {
        check_model(model)?;
    }
    Ok(())
}

/// How long a price read from the store answers calls before it is read
/// again: a change made on another node reaches every call within it.
pub const PRICE_FRESH_FOR: Duration = Duration::from_secs(1);

/// The most models kept in memory; beyond it the cache starts over.
const CACHED_MAX: usize = 10_000;

/// A price as read, and when: none when the catalog has no such model.
type Cached = (Instant, Option<Arc<ModelPrice>>);

/// Prices by model, read through to the store at most once a second per
/// model, so that a call reads no price from the database.
#[derive(Default)]
pub struct Catalog {
    cached: RwLock<HashMap<String, Cached>>,
}

impl Catalog {
    /// The model's price, or none when the catalog has none.
    pub async fn price(
        &self,
        store: &dyn Store,
        model: &str,
    ) -> Result<Option<Arc<ModelPrice>>, StoreError> {
        {
            let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
            if let Some((at, price)) = cached.get(model)
                && at.elapsed() < PRICE_FRESH_FOR
            {
                return Ok(price.clone());
            }
        }
        let price = records::get::<ModelPrice>(store, model)
            .await?
            .map(|doc| Arc::new(doc.body));
        self.note(model, price.clone());
        Ok(price)
    }

    /// Takes in a price this node just wrote (or deleted).
    pub fn note(&self, model: &str, price: Option<Arc<ModelPrice>>) {
        let mut cached = self.cached.write().unwrap_or_else(|e| e.into_inner());
        if cached.len() >= CACHED_MAX {
            cached.clear();
        }
        cached.insert(model.to_owned(), (Instant::now(), price));
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Models whose price was written (new or changed).
    pub written: usize,
    /// Models whose price was already the same.
    pub unchanged: usize,
    /// Models of the list left out by the provider filter.
    pub filtered: usize,
    /// Entries that cannot be used, each with the reason.
    pub skipped: Vec<Skipped>,
}

/// What importing one model's price did.
enum Step {
    /// The same price was there already, or another write won the race.
    Unchanged,
    /// Written.
    Written(String, Box<ModelPrice>),
}

/// How many price writes an import has in flight at once.
const IMPORT_WRITES_AT_ONCE: usize = 64;

/// The starter catalog shipped with creditd: current models of OpenAI and
/// Anthropic, in LiteLLM's format.
pub const STARTER: &str = include_str!("../catalog/starter.json");

/// Imports a price list: writes the price of every usable model (of
/// `providers`, when given), keeping what an operator set on an existing
/// entry (its upstreams, upstream model name and markup).
pub async fn import(
    store: &dyn Store,
    catalog: &Catalog,
    text: &str,
    format: Option<Format>,
    providers: Option<&BTreeSet<String>>,
) -> Result<ImportReport, GatewayError> {
    let format = match format {
        Some(format) => format,
        None => import::detect(text).map_err(|e| GatewayError::InvalidPriceList(e.0))?,
    };
    let list = import::read(text, format).map_err(|e| GatewayError::InvalidPriceList(e.0))?;
    let mut report = ImportReport {
        skipped: list.skipped,
        ..ImportReport::default()
    };
    let mut wanted = Vec::new();
    for (model, price) in list.prices {
        if providers.is_some_and(|p| !p.contains(&price.provider)) {
            report.filtered += 1;
        } else if let Err(refused) = check_model(&model).and_then(|()| check_price(&price)) {
            report.skipped.push(Skipped {
                model,
                reason: refused.message(),
            });
        } else {
            wanted.push((model, price));
        }
    }
    let writes = wanted.into_iter().map(|(model, mut price)| async move {
        let existing = records::get::<ModelPrice>(store, &model).await?;
        let expect = match &existing {
            Some(doc) => {
                price.upstreams = doc.body.upstreams.clone();
                price.upstream_model = doc.body.upstream_model.clone().or(price.upstream_model);
                price.markup_percent = doc.body.markup_percent;
                if doc.body == price {
                    return Ok::<_, StoreError>(Step::Unchanged);
                }
                Expect::Version(doc.version)
            }
            None => Expect::Absent,
        };
        match records::write::<ModelPrice>(store, records::put(&model, &price, expect)).await? {
            Written::Stored(doc) => Ok(Step::Written(model, Box::new(doc.body))),
            // Written meanwhile by someone else: theirs stands.
            _ => Ok(Step::Unchanged),
        }
    });
    let results: Vec<Result<Step, StoreError>> = futures_util::stream::iter(writes)
        .buffer_unordered(IMPORT_WRITES_AT_ONCE)
        .collect()
        .await;
    for result in results {
        match result
            .map_err(|e| GatewayError::InvalidPriceList(format!("writing prices failed: {e}")))?
        {
            Step::Unchanged => report.unchanged += 1,
            Step::Written(model, price) => {
                catalog.note(&model, Some(Arc::new(*price)));
                report.written += 1;
            }
        }
    }
    report.skipped.sort_by(|a, b| a.model.cmp(&b.model));
    Ok(report)
}

/// Every catalog entry of `mode` (all when none), in model order.
pub async fn all(
    store: &dyn Store,
    mode: Option<Mode>,
) -> Result<Vec<Doc<ModelPrice>>, StoreError> {
    let mut entries = records::list_all::<ModelPrice>(store, RecordFilter::All).await?;
    entries.retain(|d| mode.is_none_or(|m| d.body.mode == m));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_catalog_reads_without_a_skip() {
        let list = import::read(STARTER, Format::Litellm).unwrap();
        assert!(list.skipped.is_empty(), "{:?}", list.skipped);
        assert!(list.prices.len() >= 10);
        assert!(list.prices.values().any(|p| p.provider == "anthropic"));
        assert!(list.prices.values().any(|p| p.mode == Mode::Embedding));
    }

    #[test]
    fn model_names_are_checked() {
        assert!(check_model("gpt-4o").is_ok());
        assert!(check_model("openrouter/anthropic/claude-3.5:beta").is_ok());
        assert!(check_model("").is_err());
        assert!(check_model("a b").is_err());
        assert!(check_model(&"x".repeat(201)).is_err());
    }
}
