//! Accounts: the operator's customers, each with an overdraft limit and a debt.

use crate::{AccountId, Amount, Metadata, Reject, Timestamp};

/// The longest account name accepted, in bytes.
pub const NAME_LEN_MAX: usize = 256;

/// One of the operator's customers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The operator's id for the customer.
    pub id: AccountId,
    /// A display name.
    pub name: Option<String>,
    /// Operator metadata.
    pub metadata: Metadata,
    /// How far below zero a consume may take the available balance; never negative.
    pub overdraft_limit: Amount,
    /// Credits owed, never negative. Granted credits repay it first.
    pub debt: Amount,
    /// When the account was created.
    pub created_at: Timestamp,
}

/// A request to open an account, already checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    /// The operator's id for the customer.
    pub id: AccountId,
    /// A display name.
    pub name: Option<String>,
    /// Operator metadata.
    pub metadata: Metadata,
    /// The overdraft limit; zero unless the operator allows overage.
    pub overdraft_limit: Amount,
}

/// Checks an overdraft limit: never negative.
fn check_overdraft_limit(limit: Amount) -> Result<(), Reject> {
    if limit.is_negative() {
        return Err(Reject::InvalidAmount(
            "overdraft_limit must not be negative",
        ));
    }
    Ok(())
}

/// Checks a name: at most 256 bytes, no control characters, and no
/// invisible formatting ones (bidirectional overrides, zero-width spaces).
fn check_name(name: Option<&str>) -> Result<(), Reject> {
    match name {
        Some(n) if n.chars().count() > NAME_LEN_MAX => {
            Err(Reject::InvalidRequest("name is longer than 256 characters"))
        }
        Some(n) if crate::has_hidden_or_control(n) => Err(Reject::InvalidRequest(
            "name must not contain control characters, bidirectional controls or zero-width \
             characters",
        )),
        _ => Ok(()),
    }
}

impl NewAccount {
    /// Checks the fields: the name is at most 256 bytes with no control
    /// characters, and the overdraft limit is not negative.
    pub fn new(
        id: AccountId,
        name: Option<String>,
        metadata: Metadata,
        overdraft_limit: Amount,
    ) -> Result<NewAccount, Reject> {
        check_overdraft_limit(overdraft_limit)?;
        check_name(name.as_deref())?;
        Ok(NewAccount {
            id,
            name,
            metadata,
            overdraft_limit,
        })
    }

    /// The account as opened at `now`, with no debt.
    pub fn open(self, now: Timestamp) -> Account {
        Account {
            id: self.id,
            name: self.name,
            metadata: self.metadata,
            overdraft_limit: self.overdraft_limit,
            debt: Amount::ZERO,
            created_at: now,
        }
    }
}

/// A change to an account's own fields; what is absent stays as it is.
/// Debt and the account's credits are the ledger's, not a patch's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountPatch {
    /// A new name, or `Some(None)` to remove it.
    pub name: Option<Option<String>>,
    /// New metadata, replacing the old.
    pub metadata: Option<Metadata>,
    /// A new overdraft limit. Lowering it below what the account owes is
    /// allowed: the debt stays, and consumes are refused until it is repaid.
    pub overdraft_limit: Option<Amount>,
}

impl AccountPatch {
    /// Checks the fields as [`NewAccount::new`] does.
    pub fn new(
        name: Option<Option<String>>,
        metadata: Option<Metadata>,
        overdraft_limit: Option<Amount>,
    ) -> Result<AccountPatch, Reject> {
        if let Some(limit) = overdraft_limit {
            check_overdraft_limit(limit)?;
        }
        if let Some(name) = &name {
            check_name(name.as_deref())?;
        }
        Ok(AccountPatch {
            name,
            metadata,
            overdraft_limit,
        })
    }
}

impl Account {
    /// Applies a checked patch.
    pub fn apply(&mut self, patch: &AccountPatch) {
        if let Some(name) = &patch.name {
            self.name = name.clone();
        }
        if let Some(metadata) = &patch.metadata {
            self.metadata = metadata.clone();
        }
        if let Some(limit) = patch.overdraft_limit {
            self.overdraft_limit = limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_overdraft_limit_is_rejected() {
        let result = NewAccount::new(
            AccountId::parse("a").unwrap(),
            None,
            Metadata::empty(),
            Amount::credits(-1),
        );
        assert!(matches!(result, Err(Reject::InvalidAmount(_))));
    }

    #[test]
    fn long_name_is_rejected() {
        let result = NewAccount::new(
            AccountId::parse("a").unwrap(),
            Some("n".repeat(257)),
            Metadata::empty(),
            Amount::ZERO,
        );
        assert!(matches!(result, Err(Reject::InvalidRequest(_))));
    }

    #[test]
    fn a_name_with_a_control_character_is_rejected() {
        for name in ["a\0b", "tab\there", "bell\u{7}", "c1\u{85}"] {
            let result = NewAccount::new(
                AccountId::parse("a").unwrap(),
                Some(name.into()),
                Metadata::empty(),
                Amount::ZERO,
            );
            assert!(matches!(result, Err(Reject::InvalidRequest(_))), "{name:?}");
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_is_checked_as_a_new_account() {
        let mut account = NewAccount::new(
            AccountId::parse("a").unwrap(),
            Some("Acme".into()),
            Metadata::empty(),
            Amount::credits(5),
        )
        .unwrap()
        .open(Timestamp::from_secs(10));
        account.debt = Amount::credits(3);
        let patch = AccountPatch::new(None, None, Some(Amount::ZERO)).unwrap();
        account.apply(&patch);
        assert_eq!(account.overdraft_limit, Amount::ZERO);
        assert_eq!(account.name.as_deref(), Some("Acme"));
        assert_eq!(account.debt, Amount::credits(3));
        account.apply(&AccountPatch::new(Some(None), None, None).unwrap());
        assert_eq!(account.name, None);
        assert!(matches!(
            AccountPatch::new(None, None, Some(Amount::credits(-1))),
            Err(Reject::InvalidAmount(_))
        ));
        assert!(matches!(
            AccountPatch::new(Some(Some("x".repeat(257))), None, None),
            Err(Reject::InvalidRequest(_))
        ));
    }

    #[test]
    fn opened_account_owes_nothing() {
        let account = NewAccount::new(
            AccountId::parse("a").unwrap(),
            Some("Acme".into()),
            Metadata::empty(),
            Amount::credits(5),
        )
        .unwrap()
        .open(Timestamp::from_secs(10));
        assert_eq!(account.debt, Amount::ZERO);
        assert_eq!(account.overdraft_limit, Amount::credits(5));
        assert_eq!(account.created_at, Timestamp::from_secs(10));
    }
}
