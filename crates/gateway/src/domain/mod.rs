//! The pure rules of the gateway: exact decimal prices, token classes, what a call costs,
//! and reading the community price lists. No IO, no clock.

pub mod cost;
pub mod decimal;
pub mod import;
pub mod price;
pub mod token_rate;
pub mod tokens;

pub use cost::{CostOverflow, Rate, cost, fee, list_cost, worst_case};
pub use decimal::DecimalError;
pub use price::{CreditsPerUsd, Mode, ModelPrice, Percent, UsdPerMtok, Wire};
pub use token_rate::{TokenBucket, TokenCheck};
pub use tokens::Tokens;
