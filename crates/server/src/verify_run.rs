//! The outcome of the last `creditd verify`, kept as the record `verify_run/latest` so that
//! the API (`GET /v1/health/ledger`) can tell when the ledger was last checked and what was found.

use ledger::Timestamp;
use serde::{Deserialize, Serialize};
use store::records::{self, Expect, Kind, Written};
use store::{AuditReport, Store, StoreError};

/// The id of the one record of kind [`VerifyRun`]: each run replaces it.
pub const LATEST: &str = "latest";

/// How many of a run's violations the record keeps, as text.
pub const VIOLATIONS_KEPT_MAX: usize = 10;

/// What one run of `creditd verify` found: a record of kind `verify_run`,
/// id `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRun {
    /// When the run checked the ledger, in microseconds since the epoch.
    pub ran_at_micros: i64,
    /// Accounts checked.
    pub accounts: u64,
    /// Lots checked.
    pub lots: u64,
    /// Transactions checked.
    pub transactions: u64,
    /// Every violation found, counted.
    pub violations: u64,
    /// The first violations, at most [`VIOLATIONS_KEPT_MAX`], as `verify`
    /// prints them.
    pub first_violations: Vec<String>,
}

impl Kind for VerifyRun {
    const KIND: &'static str = "verify_run";
}

impl VerifyRun {
    /// The run that produced `report` at `at`.
    pub fn of(report: &AuditReport, at: Timestamp) -> VerifyRun {
        let texts = report
            .violations
            .iter()
            .map(|(account, violation)| format!("account {account}: {violation}"))
            .chain(report.orphans.iter().cloned());
        VerifyRun {
            ran_at_micros: at.micros(),
            accounts: report.accounts,
            lots: report.lots,
            transactions: report.transactions,
            violations: (report.violations.len() + report.orphans.len()) as u64,
            first_violations: texts.take(VIOLATIONS_KEPT_MAX).collect(),
        }
    }

    /// When the run checked the ledger.
    pub fn ran_at(&self) -> Timestamp {
        Timestamp::from_micros(self.ran_at_micros)
    }
}

/// Keeps `run` as the latest, whatever was kept before.
pub async fn keep(store: &dyn Store, run: &VerifyRun) -> Result<(), StoreError> {
    let write = records::put(LATEST, run, Expect::Any);
    match records::write::<VerifyRun>(store, write).await? {
        Written::Stored(_) | Written::Deleted => Ok(()),
        // At any version and with no lookup, nothing should refuse it.
        Written::Refused(refused) => Err(StoreError::Internal(format!(
            "the verify run was refused: {refused:?}"
        ))),
    }
}

/// The latest run kept; none before the first.
pub async fn latest(store: &dyn Store) -> Result<Option<VerifyRun>, StoreError> {
    Ok(records::get::<VerifyRun>(store, LATEST)
        .await?
        .map(|doc| doc.body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::AccountId;

    #[test]
    fn a_run_counts_every_violation_and_keeps_the_first_ten() {
        let account = AccountId::parse("a").unwrap();
        let report = AuditReport {
            accounts: 3,
            lots: 4,
            transactions: 5,
            violations: (0..12)
                .map(|n| {
                    let tx = ledger::TxId(n);
                    (account.clone(), ledger::Violation::ForeignPosting { tx })
                })
                .collect(),
            orphans: vec!["2 rows of holds belong to no account".into()],
        };
        let run = VerifyRun::of(&report, Timestamp::from_secs(7));
        assert_eq!((run.accounts, run.lots, run.transactions), (3, 4, 5));
        assert_eq!(run.violations, 13);
        assert_eq!(run.first_violations.len(), VIOLATIONS_KEPT_MAX);
        assert!(run.first_violations[0].starts_with("account a: "));
        assert_eq!(run.ran_at(), Timestamp::from_secs(7));
    }
}
