//! Where credits come from: plans and their periods, subscriptions,
//! packages, the sign-up bonus, the daily reward and overage, built on the
//! ledger's grants and their external ids.

pub mod domain;
