//! What the commands of a batch name, gathered before anything is read, so
//! that every read the batch needs goes out in two round trips.

use std::collections::{BTreeSet, HashMap};

use crate::records::{Lookup, RecordWrite};
use crate::{Charge, Command, Op};

/// What the commands of a batch name, before anything is read.
#[derive(Default)]
pub(super) struct Named {
    pub accounts: BTreeSet<String>,
    pub holds: BTreeSet<i64>,
    pub lots: BTreeSet<i64>,
    pub transactions: BTreeSet<i64>,
    pub features: BTreeSet<String>,
    /// Distinct idempotency keys in key order, with the first fingerprint sent for each.
    pub keys: Vec<(String, Vec<u8>)>,
    pub lot_ids: usize,
    pub hold_ids: usize,
    /// (account, external id) of grants, consumes and claw-backs that name
    /// one, and of the grants claw-backs take back.
    pub externals: BTreeSet<(String, String)>,
    /// (kind, id) of records written.
    pub records: BTreeSet<(String, String)>,
    /// (kind, name, value) of unique lookups records are written with.
    pub lookups: BTreeSet<(String, String, String)>,
}

impl Named {
    pub fn of(commands: &[&Command]) -> Named {
        let mut named = Named::default();
        let mut keys: HashMap<&str, &[u8]> = HashMap::new();
        for command in commands {
            if let Some(key) = &command.idempotency {
                keys.entry(&key.key).or_insert(&key.fingerprint);
            }
            named.note_records(command);
            named.note_op(&command.op);
        }
        let mut keys: Vec<(String, Vec<u8>)> = keys
            .into_iter()
            .map(|(k, f)| (k.to_owned(), f.to_vec()))
            .collect();
        keys.sort_unstable();
        named.keys = keys;
        named
    }

    /// Notes the records a command writes, and the unique values they take.
    fn note_records(&mut self, command: &Command) {
        let own = match &command.op {
            Op::Record(write) => Some(write),
            _ => None,
        };
        for write in own.into_iter().chain(&command.records) {
            let (kind, id) = write.key();
            self.records.insert((kind.to_owned(), id.to_owned()));
            if let RecordWrite::Put { lookups, .. } = write {
                for Lookup { name, value, .. } in lookups.iter().filter(|l| l.unique) {
                    self.lookups
                        .insert((kind.to_owned(), name.clone(), value.clone()));
                }
            }
        }
    }

    /// Notes what an operation names, and the ids it may draw.
    fn note_op(&mut self, op: &Op) {
        match op {
            Op::CreateAccount { account, grants } => {
                self.accounts.insert(account.id.to_string());
                self.lot_ids += grants.len();
            }
            Op::Renew { account, renewal } => {
                self.accounts.insert(account.to_string());
                // The new period's lot and a rollover lot.
                self.lot_ids += 2;
                let external = renewal.grant.as_ref().and_then(|g| g.external_id.as_ref());
                self.note_external(account, external);
            }
            Op::UpdateAccount { account, .. } | Op::Settle { account } => {
                self.accounts.insert(account.to_string());
            }
            Op::Grant { account, grant } => {
                self.accounts.insert(account.to_string());
                self.lot_ids += 1;
                self.note_external(account, grant.external_id.as_ref());
            }
            Op::Consume {
                account,
                charge,
                external_id,
                ..
            } => {
                self.accounts.insert(account.to_string());
                if let Charge::Feature { feature, .. } = charge {
                    self.features.insert(feature.to_string());
                }
                self.note_external(account, external_id.as_ref());
            }
            Op::Hold { account, .. } => {
                self.accounts.insert(account.to_string());
                self.hold_ids += 1;
            }
            Op::Commit { hold, .. } | Op::Release { hold, .. } => {
                self.holds.insert(hold.0);
            }
            Op::Void { lot, .. } => {
                self.lots.insert(lot.0);
            }
            Op::ClawBack {
                account,
                grant,
                external_id,
                ..
            } => {
                // The grant's transaction and lot are read by the grant's
                // external id, as is the claw-back's own.
                self.accounts.insert(account.to_string());
                self.note_external(account, Some(grant));
                self.note_external(account, external_id.as_ref());
            }
            Op::Refund { tx, .. } => {
                self.transactions.insert(tx.0);
                self.lot_ids += 1;
            }
            Op::PutFeature(_) | Op::Record(_) => {}
        }
    }

    fn note_external(&mut self, account: &impl ToString, external: Option<&impl ToString>) {
        if let Some(external) = external {
            self.externals
                .insert((account.to_string(), external.to_string()));
        }
    }
}
