//! Identifiers: operator-chosen account and feature ids, and numbered lots, holds and transactions.

use std::fmt;

/// The longest account or feature id accepted.
pub const NAME_ID_LEN_MAX: usize = 128;

/// Why a piece of text is not an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdError;

fn is_name_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= NAME_ID_LEN_MAX
        && text
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
        // `.` and `..` are path segments that clients resolve away, so an
        // id made only of dots could never be named in a URL.
        && !text.bytes().all(|c| c == b'.')
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Shared, so that copying one (every lot, hold and transaction names
        /// its account) costs a reference count, not an allocation.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Accepts 1 to 128 characters of `A-Za-z0-9_.:-`, not all of them dots.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                if is_name_id(text) {
                    Ok(Self(std::sync::Arc::from(text)))
                } else {
                    Err(IdError)
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

name_id!(
    /// The operator's own id for one of its customers (a user or an organisation).
    AccountId
);
name_id!(
    /// The id of a priced feature, such as `small-model-tokens`.
    FeatureId
);

/// The longest external id accepted.
pub const EXTERNAL_ID_LEN_MAX: usize = 255;

/// What caused a grant, a consume or a claw-back, in the caller's own terms
/// (a payment's id, a subscription period, a day, a gateway call, a refund):
/// unique per account and kept forever, so that the same cause is applied
/// once however often it is sent. Shared, as an account id is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExternalId(std::sync::Arc<str>);

impl ExternalId {
    /// Accepts 1 to 255 printable ASCII characters other than space.
    pub fn parse(text: &str) -> Result<ExternalId, IdError> {
        if !text.is_empty()
            && text.len() <= EXTERNAL_ID_LEN_MAX
            && text.bytes().all(|c| c.is_ascii_graphic())
        {
            Ok(ExternalId(std::sync::Arc::from(text)))
        } else {
            Err(IdError)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExternalId({:?})", self.0)
    }
}

macro_rules! number_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl $name {
            /// The text prefix, such as `lot_`.
            pub const PREFIX: &'static str = $prefix;

            /// Parses the prefixed text form, such as `lot_12`.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let digits = text.strip_prefix($prefix).ok_or(IdError)?;
                if digits.is_empty()
                    || digits.len() > 18
                    || digits.starts_with('0')
                    || !digits.bytes().all(|c| c.is_ascii_digit())
                {
                    return Err(IdError);
                }
                digits.parse().map(Self).map_err(|_| IdError)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }
    };
}

number_id!(
    /// A credit lot, created by a grant.
    LotId,
    "lot_"
);
number_id!(
    /// A hold (reservation).
    HoldId,
    "hold_"
);
number_id!(
    /// A journal transaction.
    TxId,
    "tx_"
);

/// Hands out fresh ids. The store decides where they come from (a counter, a
/// sequence); the core only asks for the next one.
pub trait IdSource {
    /// A new transaction id, larger than every one handed out before.
    fn next_tx(&mut self) -> TxId;
    /// A new lot id, larger than every one handed out before.
    fn next_lot(&mut self) -> LotId;
    /// A new hold id, larger than every one handed out before.
    fn next_hold(&mut self) -> HoldId;
}

/// Counters starting after given values: the store's ids when it is the only
/// writer, and throwaway ids for what-if calculations.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// The last transaction id handed out.
    pub tx: i64,
    /// The last lot id handed out.
    pub lot: i64,
    /// The last hold id handed out.
    pub hold: i64,
}

impl IdSource for Counters {
    fn next_tx(&mut self) -> TxId {
        self.tx += 1;
        TxId(self.tx)
    }
    fn next_lot(&mut self) -> LotId {
        self.lot += 1;
        LotId(self.lot)
    }
    fn next_hold(&mut self) -> HoldId {
        self.hold += 1;
        HoldId(self.hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_allow_the_documented_characters() {
        assert!(AccountId::parse("user_42").is_ok());
        assert!(AccountId::parse("org:acme.eu-1").is_ok());
        assert!(AccountId::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn account_ids_reject_empty_long_and_odd_characters() {
        assert_eq!(AccountId::parse(""), Err(IdError));
        assert_eq!(AccountId::parse(&"a".repeat(129)), Err(IdError));
        for bad in ["a b", "a/b", "ü", "a?b", "a#", "%20", ".", "..", "..."] {
            assert_eq!(AccountId::parse(bad), Err(IdError), "{bad:?}");
        }
    }

    #[test]
    fn external_ids_take_printable_ascii_without_spaces() {
        assert!(ExternalId::parse("cs_test_a1B2/period:2026-11-30").is_ok());
        assert!(ExternalId::parse(&"x".repeat(255)).is_ok());
        for bad in ["", "a b", "tab\t", "é", "nul\0"] {
            assert_eq!(ExternalId::parse(bad), Err(IdError), "{bad:?}");
        }
        assert_eq!(ExternalId::parse(&"x".repeat(256)), Err(IdError));
    }

    #[test]
    fn numbered_ids_round_trip_through_text() {
        assert_eq!(LotId::parse("lot_12"), Ok(LotId(12)));
        assert_eq!(LotId(12).to_string(), "lot_12");
        assert_eq!(HoldId::parse("hold_7"), Ok(HoldId(7)));
        assert_eq!(TxId::parse("tx_1"), Ok(TxId(1)));
    }

    #[test]
    fn numbered_ids_reject_wrong_prefix_and_garbage() {
        for bad in [
            "12",
            "lot_",
            "lot_x",
            "lot_01",
            "hold_1",
            "lot_-1",
            "lot_1 ",
            "lot_99999999999999999999",
        ] {
            assert_eq!(LotId::parse(bad), Err(IdError), "{bad:?}");
        }
    }
}
