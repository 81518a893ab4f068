//! Tokens of one call by class, each counted once, from each provider's way of reporting them.

use serde::{Deserialize, Serialize};

/// The tokens of one call, in disjoint classes: no token is in two of them,
/// so each is priced once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tokens {
    /// Input tokens neither read from nor written to a prompt cache.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cached: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// Output tokens other than reasoning.
    pub output: u64,
    /// Reasoning tokens the provider counted apart.
    pub reasoning: u64,
}

impl Tokens {
    /// From OpenAI's `usage`, where `prompt_tokens` includes the cached
    /// tokens and `completion_tokens` includes the reasoning tokens.
    pub fn openai(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> Tokens {
        let cached = cached.min(prompt);
        let reasoning = reasoning.min(completion);
        Tokens {
            input: prompt - cached,
            cached,
            cache_write: 0,
            output: completion - reasoning,
            reasoning,
        }
    }

    /// From Anthropic's `usage`, where `input_tokens` excludes what was read
    /// from or written to the cache, and `output_tokens` includes thinking.
    pub fn anthropic(input: u64, cache_read: u64, cache_creation: u64, output: u64) -> Tokens {
        Tokens {
            input,
            cached: cache_read,
            cache_write: cache_creation,
            output,
            reasoning: 0,
        }
    }

    /// Every input token, whatever its class.
    pub fn total_input(&self) -> u64 {
        self.input
            .saturating_add(self.cached)
            .saturating_add(self.cache_write)
    }

    /// Every output token, reasoning included.
    pub fn total_output(&self) -> u64 {
        self.output.saturating_add(self.reasoning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_cached_tokens_are_taken_out_of_the_prompt_tokens() {
        let tokens = Tokens::openai(1000, 800, 50, 20);
        assert_eq!(tokens.input, 200);
        assert_eq!(tokens.cached, 800);
        assert_eq!(tokens.output, 30);
        assert_eq!(tokens.reasoning, 20);
        assert_eq!(tokens.total_input(), 1000);
        assert_eq!(tokens.total_output(), 50);
    }

    #[test]
    fn anthropic_cache_tokens_are_added_to_the_input_tokens() {
        let tokens = Tokens::anthropic(10, 800, 200, 50);
        assert_eq!(tokens.input, 10);
        assert_eq!(tokens.total_input(), 1010);
        assert_eq!(tokens.output, 50);
    }

    #[test]
    fn counts_that_do_not_add_up_are_clamped_not_wrapped() {
        let tokens = Tokens::openai(10, 50, 5, 9);
        assert_eq!((tokens.input, tokens.cached), (0, 10));
        assert_eq!((tokens.output, tokens.reasoning), (0, 5));
    }
}
