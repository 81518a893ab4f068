//! The history's filters: what a customer picks, and what the API's
//! transaction list is asked for.

/// A kind of entry the history can be narrowed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryKind {
    /// Every entry.
    All,
    /// Credits bought: packages and custom amounts.
    Purchase,
    /// Credits an automatic top-up bought.
    AutoTopup,
    /// Credits spent: consumes and the committed parts of holds.
    Usage,
    /// Every other grant: the sign-up bonus, daily rewards, a plan's
    /// credits and what carried over, an operator's grant, a promotion.
    OtherGrants,
    /// Credits that expired.
    Expiry,
    /// Usage handed back, and credits of a refunded purchase taken back.
    Refund,
}

impl HistoryKind {
    /// Every kind, in the order the filter shows them.
    pub const ALL: [HistoryKind; 7] = [
        HistoryKind::All,
        HistoryKind::Purchase,
        HistoryKind::AutoTopup,
        HistoryKind::Usage,
        HistoryKind::OtherGrants,
        HistoryKind::Expiry,
        HistoryKind::Refund,
    ];

    /// The kind's name in a page's query (`?type=purchase`).
    pub fn code(self) -> &'static str {
        match self {
            HistoryKind::All => "all",
            HistoryKind::Purchase => "purchase",
            HistoryKind::AutoTopup => "auto_topup",
            HistoryKind::Usage => "usage",
            HistoryKind::OtherGrants => "other_grants",
            HistoryKind::Expiry => "expiry",
            HistoryKind::Refund => "refund",
        }
    }

    /// The kind a page's query names; every entry for anything else.
    pub fn parse(code: Option<&str>) -> HistoryKind {
        code.and_then(|code| HistoryKind::ALL.into_iter().find(|k| k.code() == code))
            .unwrap_or(HistoryKind::All)
    }

    /// The filter of the API's transaction list that lists this kind:
    /// its `type` and `source` parameters.
    pub fn query(self) -> (Option<&'static str>, Option<&'static str>) {
        match self {
            HistoryKind::All => (None, None),
            HistoryKind::Purchase => (Some("grant"), Some("purchase")),
            HistoryKind::AutoTopup => (Some("grant"), Some("auto_topup")),
            HistoryKind::Usage => (Some("consume,hold_commit"), None),
            HistoryKind::OtherGrants => (
                Some("grant"),
                Some("signup_bonus,daily_reward,subscription,admin,promo,rollover,refund"),
            ),
            HistoryKind::Expiry => (Some("expire"), None),
            HistoryKind::Refund => (Some("refund,claw_back"), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_back_from_its_code() {
        for kind in HistoryKind::ALL {
            assert_eq!(HistoryKind::parse(Some(kind.code())), kind);
        }
    }

    #[test]
    fn an_unknown_filter_shows_everything() {
        assert_eq!(HistoryKind::parse(Some("bogus")), HistoryKind::All);
        assert_eq!(HistoryKind::parse(None), HistoryKind::All);
    }

    #[test]
    fn purchases_are_grants_of_purchased_credits() {
        assert_eq!(
            HistoryKind::Purchase.query(),
            (Some("grant"), Some("purchase"))
        );
    }

    #[test]
    fn other_grants_leave_out_bought_credits() {
        let (_, sources) = HistoryKind::OtherGrants.query();
        let sources: Vec<&str> = sources.unwrap().split(',').collect();
        assert!(!sources.contains(&"purchase"));
        assert!(!sources.contains(&"auto_topup"));
        assert!(sources.contains(&"signup_bonus") && sources.contains(&"admin"));
    }
}
