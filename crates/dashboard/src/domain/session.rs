//! How long links, sessions and embed tokens live, and what opening a link
//! decides.

use ledger::Timestamp;

/// A dashboard link opens a session within this long of being made.
pub const LINK_TTL_SECS: i64 = 10 * 60;

/// A customer's session ends this long after it was opened.
pub const CUSTOMER_SESSION_TTL_SECS: i64 = 2 * 60 * 60;

/// An operator's session ends this long after sign-in.
pub const ADMIN_SESSION_TTL_SECS: i64 = 8 * 60 * 60;

/// An embed token reads the balance for this long.
pub const EMBED_TOKEN_TTL_SECS: i64 = 60 * 60;

/// Where a link stands when someone opens it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Never opened and not expired: it opens a session now, and never again.
    Opens,
    /// Opened before: it opens nothing.
    Used,
    /// Past its ten minutes: it opens nothing.
    Expired,
}

/// What opening a link made at `created` and opened before or not does at
/// `now`.
pub fn open_link(created: Timestamp, used: bool, now: Timestamp) -> LinkState {
    if used {
        LinkState::Used
    } else if !is_live(created.plus_secs(LINK_TTL_SECS), now) {
        LinkState::Expired
    } else {
        LinkState::Opens
    }
}

/// Whether something that ends at `expires_at` is still good at `now`.
pub fn is_live(expires_at: Timestamp, now: Timestamp) -> bool {
    now < expires_at
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);

    #[test]
    fn a_fresh_link_opens_once() {
        assert_eq!(open_link(T0, false, T0.plus_secs(60)), LinkState::Opens);
        assert_eq!(open_link(T0, true, T0.plus_secs(60)), LinkState::Used);
    }

    #[test]
    fn a_link_ten_minutes_old_has_expired() {
        assert_eq!(
            open_link(T0, false, T0.plus_secs(LINK_TTL_SECS - 1)),
            LinkState::Opens
        );
        assert_eq!(
            open_link(T0, false, T0.plus_secs(LINK_TTL_SECS)),
            LinkState::Expired
        );
    }

    #[test]
    fn a_used_link_says_used_even_when_it_has_expired_too() {
        assert_eq!(open_link(T0, true, T0.plus_secs(3600)), LinkState::Used);
    }

    #[test]
    fn a_session_ends_at_its_expiry_exactly() {
        let end = T0.plus_secs(CUSTOMER_SESSION_TTL_SECS);
        assert!(is_live(end, end.plus_secs(-1)));
        assert!(!is_live(end, end));
    }
}
