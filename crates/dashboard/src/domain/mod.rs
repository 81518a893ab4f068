//! The dashboard's rules, with no IO: which language a page speaks and its
//! texts, how a secret token is kept, how sessions and links live and die,
//! what a history filter asks the API for, how figures are shown, and the
//! usage chart drawn as SVG, and the few figures the health page reads
//! from the server's metrics.

pub mod chart;
pub mod format;
pub mod history;
pub mod locale;
pub mod metrics;
pub mod session;
pub mod text;
pub mod token;
