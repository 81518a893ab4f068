//! The AI gateway: OpenAI- and Anthropic-compatible endpoints that price every call per model
//! and charge it in credits through a hold, or pass it through with the customer's own key.

pub mod domain;
