//! What the operator configures for the gateway: the credit rate and markup, and the upstreams.

use std::collections::BTreeMap;

use server::Secret;

use crate::domain::{Percent, Rate, Wire};

/// Where a model's calls go: a base URL speaking a wire format, with the
/// operator's key.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The wire format it speaks.
    pub wire: Wire,
    /// For OpenAI's format, the base including the version path, as the
    /// OpenAI SDK takes it (`https://api.openai.com/v1`); for Anthropic's,
    /// the base without it (`https://api.anthropic.com`), as Anthropic's does.
    pub base_url: String,
    /// The operator's key; never printed.
    pub api_key: Option<Secret>,
    /// Declared to need no key (a local model server): called without one.
    /// An upstream with neither a key nor this is never called.
    pub keyless: bool,
}

impl Upstream {
    /// Whether calls may go to it: it has a key, or is declared keyless.
    pub fn usable(&self) -> bool {
        self.api_key.is_some() || self.keyless
    }

    /// The URL of an endpoint of this upstream: `chat/completions`,
    /// `embeddings` (OpenAI) or `messages` (Anthropic).
    pub fn url(&self, endpoint: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.wire {
            Wire::Openai => format!("{base}/{endpoint}"),
            Wire::Anthropic => format!("{base}/v1/{endpoint}"),
        }
    }
}

/// The name of the upstream `CREDITD_UPSTREAM_BASE_URL` configures.
pub const OPENAI_UPSTREAM: &str = "openai";

/// The name of the upstream `CREDITD_ANTHROPIC_BASE_URL` configures.
pub const ANTHROPIC_UPSTREAM: &str = "anthropic";

/// The setting that holds the operator's key for the upstream `name`.
pub fn key_setting(name: &str) -> String {
    match name {
        OPENAI_UPSTREAM => "CREDITD_UPSTREAM_API_KEY".to_owned(),
        ANTHROPIC_UPSTREAM => "CREDITD_ANTHROPIC_API_KEY".to_owned(),
        other => format!("CREDITD_UPSTREAM_{}_API_KEY", other.to_ascii_uppercase()),
    }
}

/// The setting that declares the upstream `name` keyless.
pub fn keyless_setting(name: &str) -> String {
    match name {
        OPENAI_UPSTREAM => "CREDITD_UPSTREAM_KEYLESS".to_owned(),
        ANTHROPIC_UPSTREAM => "CREDITD_ANTHROPIC_KEYLESS".to_owned(),
        other => format!("CREDITD_UPSTREAM_{}_KEYLESS", other.to_ascii_uppercase()),
    }
}

impl GatewayConfig {
    /// The upstreams `prices` route to that have no key and are not
    /// declared keyless: their calls answer `503 upstream_not_configured`,
    /// which an operator should hear of at start.
    pub fn keyless_in_use<'a>(
        &'a self,
        prices: impl IntoIterator<Item = (&'a [String], Wire)>,
    ) -> Vec<&'a str> {
        let mut names: Vec<&str> = prices
            .into_iter()
            .flat_map(|(upstreams, wire)| self.route_of(upstreams, wire))
            .filter(|(_, u)| !u.usable())
            .map(|(name, _)| name)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The hold a call places lives this long at most (seconds): the backstop
/// when a node stops before settling it.
pub const HOLD_TTL_SECS_DEFAULT: i64 = 900;

/// Everything the gateway is configured with.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Credits per USD and the default markup.
    pub rate: Rate,
    /// The upstreams by name: `openai`, `anthropic`, and those the operator
    /// names for models in the catalog.
    pub upstreams: BTreeMap<String, Upstream>,
    /// How long a call's hold lives at most.
    pub hold_ttl_secs: i64,
    /// The platform fee on BYOK calls, a share of their list-price cost.
    pub byok_fee: Percent,
    /// Whether customers' upstreams at private, loopback or link-local
    /// addresses are allowed.
    pub allow_private_upstreams: bool,
    /// The master keys that seal provider keys; BYOK is off without them.
    pub keyring: Option<crate::byok::Keyring>,
    /// Tokens a minute a customer key's calls may use when the key has no
    /// `token_rate_limit` of its own; none when `None`.
    pub tokens_per_minute: Option<u32>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let mut upstreams = BTreeMap::new();
        upstreams.insert(
            OPENAI_UPSTREAM.to_owned(),
            Upstream {
                wire: Wire::Openai,
                base_url: "https://api.openai.com/v1".to_owned(),
                api_key: None,
                keyless: false,
            },
        );
        upstreams.insert(
            ANTHROPIC_UPSTREAM.to_owned(),
            Upstream {
                wire: Wire::Anthropic,
                base_url: "https://api.anthropic.com".to_owned(),
                api_key: None,
                keyless: false,
            },
        );
        GatewayConfig {
            rate: Rate {
                credits_per_usd: crate::domain::CreditsPerUsd::default(),
                markup: Percent::whole(10),
            },
            upstreams,
            hold_ttl_secs: HOLD_TTL_SECS_DEFAULT,
            byok_fee: Percent::ZERO,
            allow_private_upstreams: false,
            keyring: None,
            tokens_per_minute: None,
        }
    }
}

impl GatewayConfig {
    /// The upstream names a model's calls try, in order: the catalog's list,
    /// or the default upstream of the provider's wire format.
    pub fn route_of<'a>(&'a self, names: &'a [String], wire: Wire) -> Vec<(&'a str, &'a Upstream)> {
        if names.is_empty() {
            let name = match wire {
                Wire::Openai => OPENAI_UPSTREAM,
                Wire::Anthropic => ANTHROPIC_UPSTREAM,
            };
            return self
                .upstreams
                .get(name)
                .map(|u| (name, u))
                .into_iter()
                .collect();
        }
        names
            .iter()
            .filter_map(|n| self.upstreams.get(n).map(|u| (n.as_str(), u)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_follow_each_sdks_base_url_convention() {
        let config = GatewayConfig::default();
        assert_eq!(
            config.upstreams[OPENAI_UPSTREAM].url("chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            config.upstreams[ANTHROPIC_UPSTREAM].url("messages"),
            "https://api.anthropic.com/v1/messages"
        );
    }

    #[test]
    fn a_model_without_upstreams_goes_to_its_wire_formats_default() {
        let config = GatewayConfig::default();
        let route = config.route_of(&[], Wire::Anthropic);
        assert_eq!(route.len(), 1);
        assert_eq!(route[0].0, ANTHROPIC_UPSTREAM);
        let named = vec!["missing".to_owned(), OPENAI_UPSTREAM.to_owned()];
        let route = config.route_of(&named, Wire::Openai);
        assert_eq!(
            route.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [OPENAI_UPSTREAM]
        );
    }
}
