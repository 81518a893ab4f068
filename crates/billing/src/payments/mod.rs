//! Payments: the payment-provider trait and its Stripe client, checkout, and the signed
//! webhook that grants what was paid for, exactly once however the provider delivers its events.

pub mod api;
pub mod checkout;
pub mod objects;
pub mod overage;
pub mod provider;
pub mod refund;
pub mod stripe;
pub mod subscriptions;
pub mod topup;
pub mod webhook;

use std::sync::Arc;

use ledger::Reject;
use server::Secret;
use server::error::ApiError;
use store::records::Modified;
use store::{Executed, Refused};

pub use provider::{PaymentError, PaymentProvider};

/// Where Stripe's API is, unless `STRIPE_API_BASE` says otherwise.
pub const STRIPE_API_BASE: &str = "https://api.stripe.com";

/// What the operator configures for payments.
#[derive(Clone, Debug)]
pub struct PaymentsConfig {
    /// `STRIPE_SECRET_KEY`.
    pub secret_key: Secret,
    /// `STRIPE_WEBHOOK_SECRET`: the webhook endpoint's signing secret.
    pub webhook_secret: Secret,
    /// `CREDITD_PUBLIC_URL`: where customers come back to after a checkout.
    pub public_url: String,
    /// `STRIPE_API_BASE`: Stripe's API, or a local server in tests.
    pub api_base: String,
    /// `CREDITD_CHECKOUT_RETURN_ORIGINS`: origins besides the public URL's
    /// that a checkout request may name as its return URLs
    /// (`https://shop.example.com`).
    pub return_origins: Vec<String>,
}

/// Payments as the server runs them: the provider and its webhook secret.
pub struct Payments {
    /// The provider's API.
    pub provider: Arc<dyn PaymentProvider>,
    /// The configuration.
    pub config: PaymentsConfig,
}

impl Payments {
    /// Payments through Stripe with `config`.
    pub fn stripe(config: PaymentsConfig) -> Payments {
        Payments {
            provider: Arc::new(stripe::Stripe::new(
                &config.api_base,
                config.secret_key.clone(),
            )),
            config,
        }
    }

    /// Reads the provider's object `id` (an invoice, a payment intent, …)
    /// as creditd reads it; an id not shaped as the provider's is never
    /// sent, and reads as one the provider does not have.
    pub async fn retrieve<T: objects::Retrieve>(&self, id: &str) -> Result<T, PaymentError> {
        if !is_provider_id(id) {
            return Err(PaymentError::Refused {
                status: 404,
                kind: "invalid_request_error".into(),
                code: Some("resource_missing".into()),
                message: format!("{} with a malformed id", T::WHAT),
            });
        }
        self.provider
            .get(&format!("/v1/{}/{id}", T::COLLECTION))
            .await?
            .read(T::WHAT)
    }
}

/// True for an id as the provider writes them (`sub_1Pgc…`, `pi_3M…`):
/// safe to put in a path or a query.
pub fn is_provider_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What a read-modify-write whose ledger operation carries an external id
/// answered: the step's outcome; `duplicate` when that operation was
/// already done (the same command again, or another with its external id);
/// or the ledger's refusal.
fn once<R>(modified: Modified<R>, duplicate: R) -> Result<R, ApiError> {
    match modified {
        Modified::Done(outcome) | Modified::Written(Executed::Fresh(Ok(_)), outcome) => Ok(outcome),
        Modified::Written(
            Executed::Existing(_)
            | Executed::Replayed(_)
            | Executed::Fresh(Err(Refused::Ledger(Reject::ExternalIdConflict))),
            _,
        ) => Ok(duplicate),
        Modified::Written(Executed::Fresh(Err(refused)), _) => Err(refused.into()),
    }
}
