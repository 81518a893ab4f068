//! What became of a checkout session, from what creditd holds and what the provider says.

/// Where a checkout session stands, as `GET …/checkout/{session_id}`
/// answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// Waiting for the customer.
    Open,
    /// Completed, its payment not yet confirmed (a bank debit).
    Processing,
    /// Paid at the provider; creditd has not yet applied it (its webhook is
    /// on its way).
    PaidPending,
    /// Its credits are in the balance.
    Granted,
    /// A setup session's card is saved.
    CardSaved,
    /// A delayed payment failed.
    PaymentFailed,
    /// Closed unpaid.
    Expired,
}

impl SessionStatus {
    /// The name the API writes.
    pub const fn code(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Processing => "processing",
            SessionStatus::PaidPending => "paid_pending",
            SessionStatus::Granted => "granted",
            SessionStatus::CardSaved => "card_saved",
            SessionStatus::PaymentFailed => "payment_failed",
            SessionStatus::Expired => "expired",
        }
    }
}

/// What creditd itself holds about a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Its credits were granted (for a plan: its subscription was opened).
    pub granted: bool,
    /// Its card was saved (a setup session).
    pub card_saved: bool,
    /// The provider said its delayed payment failed.
    pub payment_failed: bool,
}

/// The provider's word on a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtProvider {
    /// `status: open`.
    Open,
    /// `status: complete`, with whether it was paid (`paid`, or
    /// `no_payment_required` for a setup session).
    Complete {
        /// Whether the payment went through.
        paid: bool,
    },
    /// `status: expired`.
    Expired,
}

impl AtProvider {
    /// Reads Stripe's `status` and `payment_status`; `None` for values it
    /// does not know.
    pub fn read(status: &str, payment_status: &str) -> Option<AtProvider> {
        match status {
            "open" => Some(AtProvider::Open),
            "expired" => Some(AtProvider::Expired),
            "complete" => Some(AtProvider::Complete {
                paid: matches!(payment_status, "paid" | "no_payment_required"),
            }),
            _ => None,
        }
    }
}

/// The session's status from what creditd holds alone, when that settles
/// it; `None` when the provider must be asked.
pub fn settled(held: Held) -> Option<SessionStatus> {
    if held.granted {
        Some(SessionStatus::Granted)
    } else if held.card_saved {
        Some(SessionStatus::CardSaved)
    } else if held.payment_failed {
        Some(SessionStatus::PaymentFailed)
    } else {
        None
    }
}

/// The status of a session creditd has not settled, from the provider's word.
pub fn unsettled(at_provider: AtProvider) -> SessionStatus {
    match at_provider {
        AtProvider::Open => SessionStatus::Open,
        AtProvider::Expired => SessionStatus::Expired,
        AtProvider::Complete { paid: true } => SessionStatus::PaidPending,
        AtProvider::Complete { paid: false } => SessionStatus::Processing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_creditd_applied_wins_over_the_providers_word() {
        let granted = Held {
            granted: true,
            ..Held::default()
        };
        assert_eq!(settled(granted), Some(SessionStatus::Granted));
        let saved = Held {
            card_saved: true,
            ..Held::default()
        };
        assert_eq!(settled(saved), Some(SessionStatus::CardSaved));
        let failed = Held {
            payment_failed: true,
            ..Held::default()
        };
        assert_eq!(settled(failed), Some(SessionStatus::PaymentFailed));
        assert_eq!(settled(Held::default()), None);
    }

    #[test]
    fn a_paid_session_not_yet_applied_is_pending_and_an_unpaid_one_processing() {
        let read = |status, payment| unsettled(AtProvider::read(status, payment).unwrap());
        assert_eq!(read("open", "unpaid"), SessionStatus::Open);
        assert_eq!(read("complete", "paid"), SessionStatus::PaidPending);
        assert_eq!(
            read("complete", "no_payment_required"),
            SessionStatus::PaidPending
        );
        assert_eq!(read("complete", "unpaid"), SessionStatus::Processing);
        assert_eq!(read("expired", "unpaid"), SessionStatus::Expired);
        assert_eq!(AtProvider::read("weird", "paid"), None);
    }
}
