//! Billing's refusals, each with a stable code and the HTTP status it answers with.

use axum::http::StatusCode;
use server::error::ApiError;

use crate::domain::DomainError;

/// Why billing refused a request. Codes are stable and never renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillingError {
    /// 400: a rule of the billing domain (interval, money, price, locale).
    Domain(DomainError),
    /// 400 `invalid_plan`: fields of a plan that do not go together.
    InvalidPlan(String),
    /// 400 `invalid_package`: a package that cannot be sold.
    InvalidPackage(String),
    /// 400 `invalid_settings`: a setting that does not exist or a bad value.
    InvalidSettings(String),
    /// 404 `plan_not_found`.
    PlanNotFound,
    /// 404 `package_not_found`.
    PackageNotFound,
    /// 404 `subscription_not_found`: the account has no plan.
    SubscriptionNotFound,
    /// 409 `default_plan_exists`: another plan is already the default.
    DefaultPlanExists(String),
    /// 409 `package_inactive`: the package is not for sale.
    PackageInactive,
    /// 409 `purchase_not_allowed`: the account has no paid plan and free
    /// accounts may not buy packages.
    PurchaseNotAllowed,
    /// 409 `daily_reward_disabled`.
    DailyRewardDisabled,
    /// 503 `payments_not_configured`: no payment provider is configured.
    PaymentsNotConfigured,
    /// 502 `payment_provider_error`: the payment provider failed or refused.
    PaymentProvider(String),
    /// 400 `invalid_checkout`: a checkout that cannot be made.
    InvalidCheckout(String),
    /// 400 `invalid_signature`: a webhook whose signature does not hold.
    InvalidSignature(String),
    /// 409 `payment_method_required`: auto top-up needs a saved card.
    PaymentMethodRequired,
    /// 400 `invalid_auto_topup`: auto top-up settings that cannot be used.
    InvalidAutoTopup(String),
    /// 400 `invalid_return_url`: a checkout's `success_url` or `cancel_url`
    /// that is malformed, or neither under `CREDITD_PUBLIC_URL` nor on an
    /// origin of `CREDITD_CHECKOUT_RETURN_ORIGINS`.
    InvalidReturnUrl(String),
    /// 404 `checkout_session_not_found`: no checkout session of the
    /// account has this id.
    CheckoutSessionNotFound,
}

impl BillingError {
    /// Every code billing answers with beside the core's, with its status;
    /// a code the core answers too (`invalid_amount`) is the core's, with
    /// the same status.
    pub fn codes() -> Vec<(&'static str, StatusCode)> {
        let core: Vec<&str> = ApiError::codes().into_iter().map(|(c, _)| c).collect();
        let mut codes: Vec<(&'static str, StatusCode)> = DomainError::every()
            .iter()
            .map(|e| (e.code(), StatusCode::BAD_REQUEST))
            .filter(|(code, _)| !core.contains(code))
            .collect();
        for error in [
            BillingError::InvalidPlan(String::new()),
            BillingError::InvalidPackage(String::new()),
            BillingError::InvalidSettings(String::new()),
            BillingError::PlanNotFound,
            BillingError::PackageNotFound,
            BillingError::SubscriptionNotFound,
            BillingError::DefaultPlanExists(String::new()),
            BillingError::PackageInactive,
            BillingError::PurchaseNotAllowed,
            BillingError::DailyRewardDisabled,
            BillingError::PaymentsNotConfigured,
            BillingError::PaymentProvider(String::new()),
            BillingError::InvalidCheckout(String::new()),
            BillingError::InvalidSignature(String::new()),
            BillingError::PaymentMethodRequired,
            BillingError::InvalidAutoTopup(String::new()),
            BillingError::InvalidReturnUrl(String::new()),
            BillingError::CheckoutSessionNotFound,
        ] {
            codes.push((error.code(), error.status()));
        }
        codes
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            BillingError::Domain(e) => e.code(),
            BillingError::InvalidPlan(_) => "invalid_plan",
            BillingError::InvalidPackage(_) => "invalid_package",
            BillingError::InvalidSettings(_) => "invalid_settings",
            BillingError::PlanNotFound => "plan_not_found",
            BillingError::PackageNotFound => "package_not_found",
            BillingError::SubscriptionNotFound => "subscription_not_found",
            BillingError::DefaultPlanExists(_) => "default_plan_exists",
            BillingError::PackageInactive => "package_inactive",
            BillingError::PurchaseNotAllowed => "purchase_not_allowed",
            BillingError::DailyRewardDisabled => "daily_reward_disabled",
            BillingError::PaymentsNotConfigured => "payments_not_configured",
            BillingError::PaymentProvider(_) => "payment_provider_error",
            BillingError::InvalidCheckout(_) => "invalid_checkout",
            BillingError::InvalidSignature(_) => "invalid_signature",
            BillingError::PaymentMethodRequired => "payment_method_required",
            BillingError::InvalidAutoTopup(_) => "invalid_auto_topup",
            BillingError::InvalidReturnUrl(_) => "invalid_return_url",
            BillingError::CheckoutSessionNotFound => "checkout_session_not_found",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            BillingError::Domain(_)
            | BillingError::InvalidPlan(_)
            | BillingError::InvalidPackage(_)
            | BillingError::InvalidSettings(_)
            | BillingError::InvalidCheckout(_)
            | BillingError::InvalidSignature(_)
            | BillingError::InvalidAutoTopup(_)
            | BillingError::InvalidReturnUrl(_) => StatusCode::BAD_REQUEST,
            BillingError::PaymentMethodRequired => StatusCode::CONFLICT,
            BillingError::PaymentsNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            BillingError::PaymentProvider(_) => StatusCode::BAD_GATEWAY,
            BillingError::PlanNotFound
            | BillingError::PackageNotFound
            | BillingError::SubscriptionNotFound
            | BillingError::CheckoutSessionNotFound => StatusCode::NOT_FOUND,
            BillingError::DefaultPlanExists(_)
            | BillingError::PackageInactive
            | BillingError::PurchaseNotAllowed
            | BillingError::DailyRewardDisabled => StatusCode::CONFLICT,
        }
    }

    fn message(&self) -> String {
        match self {
            BillingError::Domain(e) => e.to_string(),
            BillingError::InvalidPlan(m)
            | BillingError::InvalidPackage(m)
            | BillingError::InvalidSettings(m)
            | BillingError::InvalidCheckout(m)
            | BillingError::InvalidSignature(m)
            | BillingError::InvalidAutoTopup(m)
            | BillingError::InvalidReturnUrl(m) => m.clone(),
            BillingError::CheckoutSessionNotFound => {
                "no checkout session of this account has this id".into()
            }
            BillingError::PaymentMethodRequired => {
                "auto top-up needs a saved card: POST /v1/accounts/{account_id}/payment-method/setup"
                    .into()
            }
            BillingError::PaymentsNotConfigured => {
                "payments need STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and CREDITD_PUBLIC_URL"
                    .into()
            }
            BillingError::PaymentProvider(m) => m.clone(),
            BillingError::PlanNotFound => "no plan with this id".into(),
            BillingError::PackageNotFound => "no package with this id".into(),
            BillingError::SubscriptionNotFound => "the account has no plan".into(),
            BillingError::DefaultPlanExists(plan) => format!(
                "plan {plan} is the default plan: unset it there, or move the default with \
                 PATCH /v1/settings/credits"
            ),
            BillingError::PackageInactive => "the package is not for sale".into(),
            BillingError::PurchaseNotAllowed => {
                "the account has no paid plan, and free accounts may not buy packages \
                 (allow_free_user_purchase)"
                    .into()
            }
            BillingError::DailyRewardDisabled => "the daily reward is turned off".into(),
        }
    }
}

impl From<DomainError> for BillingError {
    fn from(error: DomainError) -> Self {
        BillingError::Domain(error)
    }
}

impl From<BillingError> for ApiError {
    fn from(error: BillingError) -> Self {
        // The ledger's own code for an overflow, so that one code keeps one meaning.
        if let BillingError::Domain(DomainError::AmountOverflow) = error {
            return ApiError::Rejected(ledger::Reject::Overflow);
        }
        ApiError::Capability {
            status: error.status(),
            code: error.code(),
            message: error.message(),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        BillingError::Domain(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_each_has_its_status() {
        let codes = BillingError::codes();
        let mut seen = std::collections::BTreeSet::new();
        for (code, _) in &codes {
            assert!(seen.insert(*code), "{code} twice");
        }
        assert!(codes.contains(&("plan_not_found", StatusCode::NOT_FOUND)));
        assert!(codes.contains(&("invalid_interval", StatusCode::BAD_REQUEST)));
    }

    #[test]
    fn a_code_billing_shares_with_the_core_has_the_cores_status() {
        let core = ApiError::codes();
        for (code, _) in BillingError::codes() {
            assert!(core.iter().all(|(c, _)| *c != code), "{code} listed twice");
        }
        for error in DomainError::every() {
            let api = ApiError::from(error);
            if let Some((_, status)) = core.iter().find(|(c, _)| *c == api.code()) {
                assert_eq!(*status, api.status(), "{}", api.code());
            }
        }
    }
}
