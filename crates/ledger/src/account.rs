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

impl NewAccount {
    /// Checks the fields: the name is at most 256 bytes and the overdraft
    /// limit is not negative.
    pub fn new(
        id: AccountId,
        name: Option<String>,
        metadata: Metadata,
        overdraft_limit: Amount,
    ) -> Result<NewAccount, Reject> {
        if overdraft_limit.is_negative() {
            return Err(Reject::InvalidAmount(
                "overdraft_limit must not be negative",
            ));
        }
        if name.as_ref().is_some_and(|n| n.len() > NAME_LEN_MAX) {
            return Err(Reject::InvalidRequest("name is longer than 256 bytes"));
        }
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
