//! What people look at: the customer's Credits page (`/dashboard`), the
//! operator's admin panel (`/admin`) and the balance an operator embeds in
//! their own app (`/embed/creditd.js`), rendered on the server from
//! compile-time checked templates.
//!
//! The dashboard is a client of the API: every figure it shows and every
//! change it makes goes through the API's own routes, in process
//! ([`server::in_process`]), acting for the signed-in session. A customer's
//! session acts as that account's customer key, so the API's access check
//! keeps it to its own account whatever a page is asked for; the dashboard
//! reads no other capability's tables or records.

pub mod api;
pub mod client;
pub mod domain;
pub mod error;
pub mod pages;
pub mod security;
pub mod session;

use std::sync::Arc;

use server::in_process::InProcess;
use server::routes::Routes;
use store::records;
use store::{Clock, Store};

/// The kinds of record the dashboard keeps. A kind's name is its records'
/// key in the store, shared with every other crate's: a test where all the
/// crates meet checks that no two kinds share a name.
pub const RECORD_KINDS: &[&str] = &[
    <session::DashboardLink as records::Kind>::KIND,
    <session::DashboardSession as records::Kind>::KIND,
    <session::EmbedToken as records::Kind>::KIND,
];

/// Where Stripe's hosted Checkout pages are.
pub const STRIPE_CHECKOUT_ORIGIN: &str = "https://checkout.stripe.com";

/// The dashboard's state.
pub struct Dashboard {
    /// Where its sessions, links and embed tokens are kept.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The API, called in process.
    pub api: client::Api,
    /// Where customers reach this server (`CREDITD_PUBLIC_URL`, else the
    /// address it listens on), without a trailing slash: links are made
    /// under it, and cookies are `Secure` when it is `https`.
    pub public_url: String,
    /// Failed sign-ins to the admin panel, limited per node.
    pub sign_ins: security::SignInLimit,
    /// Whether payments are configured: the pages offer purchases only then.
    pub payments: bool,
    /// Where the payment provider's hosted pages live, which the pages' forms
    /// may be sent on to.
    pub checkout_origins: Vec<String>,
}

impl Dashboard {
    /// The dashboard over a store, reached at `public_url`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, public_url: &str) -> Dashboard {
        Dashboard {
            store,
            clock,
            api: client::Api::new(InProcess::new()),
            public_url: public_url.trim_end_matches('/').to_owned(),
            sign_ins: security::SignInLimit::default(),
            payments: false,
            checkout_origins: Vec::new(),
        }
    }

    /// The same dashboard, offering purchases through a payment provider
    /// whose hosted pages are on `checkout_origins`.
    pub fn with_payments(mut self, checkout_origins: Vec<String>) -> Dashboard {
        self.payments = true;
        self.checkout_origins = checkout_origins;
        self
    }

    /// The API keys in memory, once the server is assembled: an operator's
    /// session is held to the key it signed in with.
    pub fn keys(&self) -> Option<&server::Keys> {
        self.api.state().map(|state| &state.keys)
    }

    /// Whether cookies must be `Secure`: the public URL is `https`.
    pub fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The dashboard as the server plugs it in: its API routes (dashboard
    /// sessions, embed tokens, the embedded balance), its pages, the API
    /// it calls in process, and the pruning of what has expired.
    pub fn capability(self: &Arc<Dashboard>) -> server::Capability {
        let routes = Routes::with(self.clone());
        server::Capability::new(api::routes(&routes), error::DashboardError::codes())
            .with_pages(pages::router(self.clone()))
            .with_in_process(self.api.handle())
            .with_job(session::pruning(self))
    }
}

impl server::extract::HasStore for Dashboard {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

#[cfg(test)]
mod record_kinds {
    #[test]
    fn the_list_of_record_kinds_names_every_kind_the_dashboard_declares() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut listed: Vec<&str> = super::RECORD_KINDS.to_vec();
        listed.sort_unstable();
        assert_eq!(testkit::kinds::declared_in(&src), listed);
    }
}
