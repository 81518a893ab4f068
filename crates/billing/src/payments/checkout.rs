//! Checkout: one provider customer per account, and checkout sessions that creditd creates and
//! remembers, so that a webhook grants only what a session of its own was paid for.

use ledger::{AccountId, Amount};
use serde::{Deserialize, Serialize};
use server::error::ApiError;
use store::records::{self, Expect, Kind, Lookup, Written};

use super::Payments;
use super::objects;
use super::provider::{Form, PaymentError};
use crate::Billing;
use crate::domain::topup::{TOPUP_MIN_CENTS, credits_of};
use crate::error::BillingError;
use crate::package::Package;
use crate::plan::MoneyJson;
use crate::settings;

/// An account's customer at the payment provider: a record of kind
/// `payment_customer` under the account's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCustomer {
    /// The provider's customer id (`cus_…`).
    pub customer_id: String,
}

impl Kind for PaymentCustomer {
    const KIND: &'static str = "payment_customer";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::unique("customer", self.customer_id.clone())]
    }
}

/// What a checkout buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purchase {
    /// A credit package.
    Package,
    /// Credits for a custom amount of money.
    Topup,
    /// A plan, paid every period by a provider subscription.
    Plan,
    /// A card saved for later payments, nothing bought.
    Setup,
}

impl Purchase {
    /// The name in the session's metadata (`creditd_kind`).
    pub fn code(self) -> &'static str {
        match self {
            Purchase::Package => "package",
            Purchase::Topup => "topup",
            Purchase::Plan => "plan",
            Purchase::Setup => "setup",
        }
    }
}

/// A checkout session creditd created: a record of kind `checkout_session`
/// under the session's id. A webhook about a session with no such record
/// grants nothing: metadata alone is not proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutSession {
    /// The account buying.
    pub account: String,
    /// What it buys.
    pub purchase: Purchase,
    /// The package, for a package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The plan, for a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The credits it grants once paid (a plan's: each period), kept as a
    /// plain decimal.
    #[serde(with = "crate::stored::amount")]
    pub credits: Amount,
    /// What it costs.
    pub price: MoneyJson,
    /// What became of it that the ledger does not show, once the provider's
    /// webhook said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<Settled>,
}

/// What became of a checkout session beside a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// A setup session's card was saved.
    CardSaved,
    /// A delayed payment (a bank debit) failed after the session completed.
    PaymentFailed,
}

impl Kind for CheckoutSession {
    const KIND: &'static str = "checkout_session";

    fn lookups(&self) -> Vec<Lookup> {
        vec![Lookup::ordered("account", self.account.clone())]
    }
}

/// The card an account saved for off-session payments: a record of kind
/// `payment_method` under the account's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCard {
    /// The provider's payment method id (`pm_…`).
    pub payment_method: String,
    /// The card's brand (`visa`).
    pub brand: String,
    /// Its last four digits.
    pub last4: String,
    /// Its expiry month.
    pub exp_month: u32,
    /// Its expiry year.
    pub exp_year: u32,
}

impl Kind for SavedCard {
    const KIND: &'static str = "payment_method";

    fn lookups(&self) -> Vec<Lookup> {
        Vec::new()
    }
}

/// Where the customer comes back to from the provider's page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Returns {
    /// After paying (or saving a card); `{CHECKOUT_SESSION_ID}` in it is
    /// replaced by the session's id.
    pub success_url: String,
    /// After giving up.
    pub cancel_url: String,
}

impl Returns {
    /// The URLs a request names, each checked to be under the public URL or
    /// on a listed origin; the public URL's `/checkout/success` and
    /// `/checkout/cancel` for those it leaves out.
    pub fn of(
        config: &super::PaymentsConfig,
        success_url: Option<String>,
        cancel_url: Option<String>,
    ) -> Result<Returns, ApiError> {
        use crate::domain::returns::{ReturnRefused, check_return_url};
        let public = config.public_url.trim_end_matches('/');
        let checked = |url: Option<String>, field: &str, default: String| match url {
            None => Ok(default),
            Some(url) => match check_return_url(&url, &config.public_url, &config.return_origins) {
                Ok(()) => Ok(url),
                Err(ReturnRefused::Malformed) => Err(BillingError::InvalidReturnUrl(format!(
                    "{field} must be an absolute http or https URL of at most {} bytes, \
                     without credentials or a fragment",
                    crate::domain::returns::RETURN_URL_LEN_MAX
                ))),
                Err(ReturnRefused::NotAllowed) => Err(BillingError::InvalidReturnUrl(format!(
                    "{field} must be under CREDITD_PUBLIC_URL ({public}) or on an origin \
                     listed in CREDITD_CHECKOUT_RETURN_ORIGINS"
                ))),
            },
        };
        Ok(Returns {
            success_url: checked(
                success_url,
                "success_url",
                format!("{public}/checkout/success?session_id={{CHECKOUT_SESSION_ID}}"),
            )?,
            cancel_url: checked(
                cancel_url,
                "cancel_url",
                format!("{public}/checkout/cancel"),
            )?,
        })
    }
}

/// Creates a setup session, which saves (or replaces) the account's card
/// without a payment; answers its id and URL.
pub async fn create_setup_session(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    request_key: &str,
    returns: &Returns,
    locale: &str,
) -> Result<(String, String), ApiError> {
    let customer = customer_of(billing, payments, account).await?;
    let mut form: Form = vec![
        ("mode".into(), "setup".into()),
        ("customer".into(), customer),
        ("client_reference_id".into(), account.as_str().to_owned()),
        ("currency".into(), "usd".into()),
        ("payment_method_types[0]".into(), "card".into()),
        (
            "metadata[creditd_account]".into(),
            account.as_str().to_owned(),
        ),
        (
            "metadata[creditd_kind]".into(),
            Purchase::Setup.code().into(),
        ),
        (
            "setup_intent_data[metadata][creditd_account]".into(),
            account.as_str().to_owned(),
        ),
        ("success_url".into(), returns.success_url.clone()),
        ("cancel_url".into(), returns.cancel_url.clone()),
    ];
    if let Some(locale) = crate::domain::checkout_locale(locale) {
        form.push(("locale".into(), locale.to_owned()));
    }
    let key = format!("creditd:setup:{account}:{request_key}");
    let (id, url) = open_session(payments, form, &key).await?;
    let session = CheckoutSession {
        account: account.as_str().to_owned(),
        purchase: Purchase::Setup,
        package: None,
        plan: None,
        credits: Amount::ZERO,
        price: usd(0),
        settled: None,
    };
    match records::write::<CheckoutSession>(
        billing.store.as_ref(),
        records::put(&id, &session, Expect::Any),
    )
    .await?
    {
        Written::Stored(_) => Ok((id, url)),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a session put answered deleted".into())),
    }
}

/// Has the provider create a checkout session of `form`, once for `key`,
/// and answers its id and URL; a reply without them is the provider's
/// failure, not creditd's.
async fn open_session(
    payments: &Payments,
    form: Form,
    key: &str,
) -> Result<(String, String), ApiError> {
    let created = payments
        .provider
        .post("/v1/checkout/sessions", form, key)
        .await
        .map_err(provider_error)?;
    let session: objects::CheckoutSession =
        created.read("a checkout session").map_err(provider_error)?;
    match (session.url, super::is_provider_id(&session.id)) {
        (Some(url), true) => Ok((session.id, url)),
        _ => Err(provider_error(
            created.unreadable("a checkout session without an id or a url"),
        )),
    }
}

/// Saves the card a completed setup session collected: reads it from the
/// provider, makes it the customer's default for invoices, and keeps it.
/// Saving the same card again changes nothing.
pub async fn save_card(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    setup_intent: &str,
) -> Result<SavedCard, ApiError> {
    save_method_of(billing, payments, account, IntentOf::Setup, setup_intent).await
}

/// Saves the card a paid checkout's payment used, when the account has none
/// saved yet (the session asked to keep it for off-session payments): auto
/// top-up then needs no separate setup. Best effort: a failure is logged,
/// and the purchase stands.
pub async fn keep_card_of_payment(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    payment_intent: Option<&str>,
) {
    let Some(intent) = payment_intent else {
        return;
    };
    match records::get::<SavedCard>(billing.store.as_ref(), account.as_str()).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(error) => {
            tracing::warn!(%error, %account, "reading a saved card failed");
            return;
        }
    }
    if let Err(error) = save_method_of(billing, payments, account, IntentOf::Payment, intent).await
    {
        tracing::info!(
            %account,
            code = error.code(),
            "the card of a paid checkout was not kept"
        );
    }
}

/// Which intent collected a card.
#[derive(Clone, Copy, Debug)]
enum IntentOf {
    /// A setup session's setup intent.
    Setup,
    /// A paid checkout's payment intent.
    Payment,
}

/// Saves the card of a setup or payment intent (`intent` says which).
async fn save_method_of(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    intent: IntentOf,
    intent_id: &str,
) -> Result<SavedCard, ApiError> {
    let provider = &payments.provider;
    if !super::is_provider_id(intent_id) {
        return Err(ApiError::InvalidRequest("a malformed intent id".into()));
    }
    let method = match intent {
        IntentOf::Setup => payments
            .retrieve::<objects::SetupIntent>(intent_id)
            .await
            .map(|intent| intent.payment_method),
        IntentOf::Payment => payments
            .retrieve::<objects::PaymentIntent>(intent_id)
            .await
            .map(|intent| intent.payment_method),
    }
    .map_err(provider_error)?;
    let Some(method) = method.filter(|m| super::is_provider_id(m)) else {
        return Err(ApiError::Internal(
            "an intent without a payment method".into(),
        ));
    };
    let method = payments
        .retrieve::<objects::PaymentMethod>(&method)
        .await
        .map_err(provider_error)?;
    let card = method.card.unwrap_or_default();
    let saved = SavedCard {
        payment_method: method.id,
        brand: card.brand.unwrap_or_else(|| "card".to_owned()),
        last4: card.last4.unwrap_or_default(),
        exp_month: card.exp_month.unwrap_or(0),
        exp_year: card.exp_year.unwrap_or(0),
    };
    let customer = customer_of(billing, payments, account).await?;
    provider
        .post(
            &format!("/v1/customers/{customer}"),
            vec![(
                "invoice_settings[default_payment_method]".into(),
                saved.payment_method.clone(),
            )],
            &format!("creditd:default-card:{account}:{}", saved.payment_method),
        )
        .await
        .map_err(provider_error)?;
    // A subscription made by a checkout pays with its own card: the new one
    // pays its next invoices too.
    if let Some(doc) =
        records::get::<crate::subscription::Subscription>(billing.store.as_ref(), account.as_str())
            .await?
        && let Some(link) = doc.body.provider
        && super::is_provider_id(&link.subscription)
    {
        // Best effort: a subscription the provider has ended refuses it,
        // and the card is saved all the same.
        if let Err(error) = provider
            .post(
                &format!("/v1/subscriptions/{}", link.subscription),
                vec![(
                    "default_payment_method".into(),
                    saved.payment_method.clone(),
                )],
                &format!(
                    "creditd:default-card:{}:{}",
                    link.subscription, saved.payment_method
                ),
            )
            .await
        {
            tracing::info!(%error, "a saved card could not be made the subscription's");
        }
    }
    match records::write::<SavedCard>(
        billing.store.as_ref(),
        records::put(account.as_str(), &saved, Expect::Any),
    )
    .await?
    {
        Written::Stored(_) => Ok(saved),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a card put answered deleted".into())),
    }
}

/// `cents` US cents, as money is written.
pub fn usd(cents: i64) -> MoneyJson {
    MoneyJson {
        amount: cents,
        currency: crate::plan::CurrencyJson(
            crate::domain::Currency::parse("usd").expect("usd is a currency"),
        ),
    }
}

/// The address a customer opens for a provider object (an invoice's
/// hosted page, a charge's receipt), read from the provider by `page`;
/// none when the id is missing or the provider does not answer: a link is
/// for the customer's history, and its absence never holds up a grant.
async fn customer_link<T: objects::Retrieve>(
    payments: &Payments,
    id: Option<&str>,
    page: impl FnOnce(T) -> Option<String>,
) -> Option<String> {
    let id = id.filter(|id| super::is_provider_id(id))?;
    match payments.retrieve::<T>(id).await {
        Ok(object) => page(object),
        Err(error) => {
            tracing::info!(%error, what = T::WHAT, "a customer link could not be read");
            None
        }
    }
}

/// The page the customer opens for invoice `id`.
pub async fn invoice_link(payments: &Payments, id: Option<&str>) -> Option<String> {
    customer_link(payments, id, |invoice: objects::Invoice| {
        invoice.hosted_invoice_url
    })
    .await
}

/// The receipt page of charge `id`.
pub async fn receipt_link(payments: &Payments, id: Option<&str>) -> Option<String> {
    customer_link(payments, id, |charge: objects::Charge| charge.receipt_url).await
}

/// The id of the checkout session the provider says made an object: the
/// session whose `field` (`subscription`, `payment_intent`) is `id`.
/// Whether that session is creditd's own is for its record to say.
pub async fn session_that_made(
    payments: &Payments,
    field: &str,
    id: &str,
) -> Result<Option<String>, ApiError> {
    let sessions: objects::List<objects::Created> = payments
        .provider
        .get(&format!("/v1/checkout/sessions?{field}={id}&limit=1"))
        .await
        .and_then(|reply| reply.read("a list of checkout sessions"))
        .map_err(provider_error)?;
    Ok(sessions.data.into_iter().next().map(|session| session.id))
}

/// A provider error as the API answers it.
pub fn provider_error(error: PaymentError) -> ApiError {
    tracing::warn!(%error, "a payment provider call failed");
    BillingError::PaymentProvider(error.to_string()).into()
}

/// The account's provider customer, created once: concurrent first
/// checkouts send one idempotency key, so the provider creates one
/// customer, and the record is written once.
pub async fn customer_of(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
) -> Result<String, ApiError> {
    let store = billing.store.as_ref();
    if let Some(doc) = records::get::<PaymentCustomer>(store, account.as_str()).await? {
        return Ok(doc.body.customer_id);
    }
    let form: Form = vec![
        (
            "metadata[creditd_account]".into(),
            account.as_str().to_owned(),
        ),
        ("description".into(), format!("creditd account {account}")),
    ];
    let key = format!("creditd:customer:{account}");
    let customer = payments
        .provider
        .post("/v1/customers", form, &key)
        .await
        .map_err(provider_error)?;
    let id = customer
        .read::<objects::Created>("a customer")
        .map_err(provider_error)?
        .id;
    let record = PaymentCustomer {
        customer_id: id.clone(),
    };
    match records::write::<PaymentCustomer>(
        store,
        records::put(account.as_str(), &record, Expect::Absent),
    )
    .await?
    {
        Written::Stored(_) => Ok(id),
        // Written first by a concurrent checkout: that one stands.
        _ => records::get::<PaymentCustomer>(store, account.as_str())
            .await?
            .map(|d| d.body.customer_id)
            .ok_or_else(|| ApiError::Internal("a payment customer vanished".into())),
    }
}

/// What a checkout is for, checked: the record to keep and the line to sell.
pub struct Sale {
    /// The record of the session, once created.
    pub session: CheckoutSession,
    /// The line item's name, in the checkout's locale.
    pub name: String,
    /// The line item's description, in the checkout's locale.
    pub description: Option<String>,
    /// The provider's price to sell, when the package or plan names one:
    /// the line item is then that price, not one made from the sale.
    pub provider_price_id: Option<String>,
    /// The plan, for a plan: its line recurs every period.
    pub plan: Option<crate::plan::Plan>,
}

/// The package `package_id`, refused when it is not for sale or `account`
/// may not buy it, with the credit settings in force that allowed it.
pub async fn buyable_package(
    billing: &Billing,
    account: &AccountId,
    package_id: &str,
) -> Result<(Package, settings::CreditSettings), ApiError> {
    let store = billing.store.as_ref();
    let package = records::get::<Package>(store, package_id)
        .await?
        .ok_or(BillingError::PackageNotFound)?
        .body;
    if !package.active {
        return Err(BillingError::PackageInactive.into());
    }
    let settings = settings::read(store, &billing.env).await?;
    if !settings.allow_free_user_purchase && !billing.has_paid_plan(account).await? {
        return Err(BillingError::PurchaseNotAllowed.into());
    }
    Ok((package, settings))
}

/// A package's sale, named in `locale`, refused when it is not for sale or
/// the account may not buy it.
pub async fn package_sale(
    billing: &Billing,
    account: &AccountId,
    package_id: &str,
    locale: &str,
) -> Result<Sale, ApiError> {
    let (package, _) = buyable_package(billing, account, package_id).await?;
    Ok(Sale {
        name: package.name.localized().map_or_else(
            |_| package_id.to_owned(),
            |text| text.pick(Some(locale)).to_owned(),
        ),
        description: package
            .description
            .as_ref()
            .and_then(|d| d.localized().ok())
            .map(|text| text.pick(Some(locale)).to_owned()),
        provider_price_id: package.provider_price_id.clone(),
        session: CheckoutSession {
            account: account.as_str().to_owned(),
            purchase: Purchase::Package,
            package: Some(package_id.to_owned()),
            plan: None,
            credits: package.credits,
            price: package.price,
            settled: None,
        },
        plan: None,
    })
}

/// A plan's sale: a plan with a price, which the account is not already
/// paying for through the provider.
pub async fn plan_sale(
    billing: &Billing,
    account: &AccountId,
    plan_id: &str,
) -> Result<Sale, ApiError> {
    let store = billing.store.as_ref();
    let plan = crate::subscription::plan(store, plan_id).await??;
    let Some(price) = plan.price else {
        return Err(BillingError::InvalidCheckout(
            "the plan has no price: subscribe to a free plan with PUT /subscription".into(),
        )
        .into());
    };
    if price.amount <= 0 {
        return Err(BillingError::InvalidCheckout("the plan's price is zero".into()).into());
    }
    if let Some(current) =
        records::get::<crate::subscription::Subscription>(store, account.as_str()).await?
        && current.body.provider.is_some()
    {
        return Err(BillingError::InvalidCheckout(
            "the account already pays for a plan through the provider: change it with PUT \
             /subscription"
                .into(),
        )
        .into());
    }
    Ok(Sale {
        name: plan.name.clone(),
        description: None,
        provider_price_id: plan.provider_price_id.clone(),
        session: CheckoutSession {
            account: account.as_str().to_owned(),
            purchase: Purchase::Plan,
            package: None,
            plan: Some(plan_id.to_owned()),
            credits: plan.credits,
            price,
            settled: None,
        },
        plan: Some(plan),
    })
}

/// A custom top-up's sale: at least 5 USD, its credits at the rate.
pub fn topup_sale(
    account: &AccountId,
    price: MoneyJson,
    credits_per_usd: Amount,
) -> Result<Sale, ApiError> {
    if price.currency.0.as_str() != "usd" {
        return Err(BillingError::InvalidCheckout("a custom amount is in usd".into()).into());
    }
    if price.amount < TOPUP_MIN_CENTS {
        return Err(BillingError::InvalidCheckout(
            "a custom amount is at least 5 usd (500)".into(),
        )
        .into());
    }
    let credits = credits_of(price.amount, credits_per_usd).ok_or(
        BillingError::InvalidCheckout("the amount is too large".into()),
    )?;
    Ok(Sale {
        name: format!("{credits} credits"),
        description: None,
        provider_price_id: None,
        session: CheckoutSession {
            account: account.as_str().to_owned(),
            purchase: Purchase::Topup,
            package: None,
            plan: None,
            credits,
            price,
            settled: None,
        },
        plan: None,
    })
}

/// Creates a checkout session for `sale` and keeps its record; answers the
/// session's id and URL. `request_key` names the request (its
/// Idempotency-Key), so that a retry gets the same session; the provider's
/// page is shown in `locale` when it speaks it.
pub async fn create_session(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    sale: Sale,
    request_key: &str,
    returns: &Returns,
    locale: &str,
) -> Result<(String, String), ApiError> {
    let customer = customer_of(billing, payments, account).await?;
    let session = &sale.session;
    let mut form: Form = vec![
        ("customer".into(), customer),
        ("client_reference_id".into(), account.as_str().to_owned()),
        (
            "metadata[creditd_account]".into(),
            account.as_str().to_owned(),
        ),
        (
            "metadata[creditd_kind]".into(),
            session.purchase.code().into(),
        ),
        (
            "metadata[creditd_credits]".into(),
            session.credits.to_string(),
        ),
        ("line_items[0][quantity]".into(), "1".into()),
        ("tax_id_collection[enabled]".into(), "true".into()),
        ("billing_address_collection".into(), "required".into()),
        ("customer_update[address]".into(), "auto".into()),
        ("customer_update[name]".into(), "auto".into()),
        ("success_url".into(), returns.success_url.clone()),
        ("cancel_url".into(), returns.cancel_url.clone()),
    ];
    if let Some(locale) = crate::domain::checkout_locale(locale) {
        form.push(("locale".into(), locale.to_owned()));
    }
    let price_data = |form: &mut Form| {
        if let Some(description) = &sale.description {
            form.push((
                "line_items[0][price_data][product_data][description]".into(),
                description.clone(),
            ));
        }
        form.extend([
            (
                "line_items[0][price_data][currency]".into(),
                session.price.currency.0.as_str().to_owned(),
            ),
            (
                "line_items[0][price_data][unit_amount]".into(),
                session.price.amount.to_string(),
            ),
            (
                "line_items[0][price_data][product_data][name]".into(),
                sale.name.clone(),
            ),
        ]);
    };
    match (&sale.plan, &session.plan) {
        (Some(plan), Some(plan_id)) => {
            // A subscription: the provider bills every period and its paid
            // invoices renew the plan.
            form.push(("mode".into(), "subscription".into()));
            form.push(("metadata[creditd_plan]".into(), plan_id.clone()));
            for (key, value) in [
                (
                    "subscription_data[metadata][creditd_account]",
                    account.as_str(),
                ),
                (
                    "subscription_data[metadata][creditd_plan]",
                    plan_id.as_str(),
                ),
            ] {
                form.push((key.into(), value.to_owned()));
            }
            match &sale.provider_price_id {
                Some(price) => form.push(("line_items[0][price]".into(), price.clone())),
                None => {
                    price_data(&mut form);
                    form.push((
                        "line_items[0][price_data][recurring][interval]".into(),
                        plan.interval.clone(),
                    ));
                    form.push((
                        "line_items[0][price_data][recurring][interval_count]".into(),
                        plan.interval_count.to_string(),
                    ));
                }
            }
        }
        _ => {
            form.push(("mode".into(), "payment".into()));
            match &sale.provider_price_id {
                Some(price) => form.push(("line_items[0][price]".into(), price.clone())),
                None => price_data(&mut form),
            }
            form.extend([
                ("invoice_creation[enabled]".into(), "true".into()),
                (
                    "payment_intent_data[setup_future_usage]".into(),
                    "off_session".into(),
                ),
            ]);
        }
    }
    if let Some(package) = &session.package {
        form.push(("metadata[creditd_package]".into(), package.clone()));
    }
    let key = format!("creditd:checkout:{account}:{request_key}");
    let (id, url) = open_session(payments, form, &key).await?;
    // Kept before the URL is given out: a session's webhook always finds it.
    match records::write::<CheckoutSession>(
        billing.store.as_ref(),
        records::put(&id, session, Expect::Any),
    )
    .await?
    {
        Written::Stored(_) => Ok((id, url)),
        Written::Refused(refused) => Err(refused.into()),
        Written::Deleted => Err(ApiError::Internal("a session put answered deleted".into())),
    }
}

/// A checkout session of the account and where it stands.
pub struct SessionState {
    /// The session as creditd created it.
    pub session: CheckoutSession,
    /// Where it stands.
    pub status: crate::domain::checkout::SessionStatus,
    /// Its grant's transaction, once granted.
    pub transaction: Option<ledger::Transaction>,
}

/// Where the account's checkout session `session_id` stands: what creditd
/// applied of it, else what the provider says of it.
pub async fn status(
    billing: &Billing,
    payments: &Payments,
    account: &AccountId,
    session_id: &str,
) -> Result<SessionState, ApiError> {
    use crate::domain::checkout::{AtProvider, Held, settled, unsettled};
    let store = billing.store.as_ref();
    let session = records::get::<CheckoutSession>(store, session_id)
        .await?
        .filter(|doc| doc.body.account == account.as_str())
        .ok_or(BillingError::CheckoutSessionNotFound)?
        .body;
    let transaction = granted(billing, account, session_id, &session).await?;
    let held = Held {
        granted: transaction.is_some(),
        card_saved: session.settled == Some(Settled::CardSaved),
        payment_failed: session.settled == Some(Settled::PaymentFailed),
    };
    let status = match settled(held) {
        Some(status) => status,
        None => {
            let remote = payments
                .retrieve::<objects::CheckoutSession>(session_id)
                .await
                .map_err(provider_error)?;
            let at_provider = AtProvider::read(
                remote.status.as_deref().unwrap_or(""),
                remote.payment_status.as_deref().unwrap_or(""),
            )
            .ok_or_else(|| {
                provider_error(super::provider::PaymentError::Unreadable(
                    "a checkout session's status".into(),
                ))
            })?;
            unsettled(at_provider)
        }
    };
    Ok(SessionState {
        session,
        status,
        transaction: transaction.flatten(),
    })
}

/// The grant a session made, when it made one: `Some(Some(tx))` with its
/// transaction, `Some(None)` for a plan whose subscription opened but whose
/// first grant is no longer to be found (the plan changed since), `None`
/// before.
async fn granted(
    billing: &Billing,
    account: &AccountId,
    session_id: &str,
    session: &CheckoutSession,
) -> Result<Option<Option<ledger::Transaction>>, ApiError> {
    let store = billing.store.as_ref();
    match session.purchase {
        Purchase::Setup => Ok(None),
        Purchase::Package | Purchase::Topup => {
            let external = ledger::ExternalId::parse(&format!("checkout:{session_id}"))
                .map_err(|_| ApiError::Internal("a session id that is no external id".into()))?;
            Ok(store.external(account.clone(), external).await?.map(Some))
        }
        Purchase::Plan => {
            let filter = records::RecordFilter::Equals {
                name: "account".into(),
                value: account.as_str().to_owned(),
            };
            let links =
                records::list_all::<super::subscriptions::PaymentSubscription>(store, filter)
                    .await?;
            let Some(link) = links
                .into_iter()
                .find(|doc| doc.body.checkout_session == session_id)
            else {
                return Ok(None);
            };
            let Some(current) =
                records::get::<crate::subscription::Subscription>(store, account.as_str()).await?
            else {
                return Ok(None);
            };
            let Some(provider) = current
                .body
                .provider
                .as_ref()
                .filter(|p| p.subscription == link.id)
            else {
                return Ok(None);
            };
            let start = ledger::Timestamp::from_micros(
                provider
                    .billing_start_micros
                    .unwrap_or(current.body.period_start_micros),
            );
            let external = crate::subscription::period_external_id(&link.body.plan_id, start);
            Ok(Some(store.external(account.clone(), external).await?))
        }
    }
}
