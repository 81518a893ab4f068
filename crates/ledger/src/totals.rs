//! An account's lifetime totals: what it was granted by source, spent, had refunded, lost to expiry and voids, and had settled.

use std::collections::HashMap;

use crate::{Amount, LedgerAccount, Lot, LotId, Reject, Source, Transaction, TxKind};

/// What an account's journal adds up to over its whole life, as billing
/// dashboards show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Credits granted, by the source of their grant, in [`Source::ALL`]
    /// order; sources never granted are left out.
    pub granted: Vec<(Source, Amount)>,
    /// Credits spent by consumes and committed holds.
    pub spent: Amount,
    /// Credits refunds handed back.
    pub refunded: Amount,
    /// Credits that expired.
    pub expired: Amount,
    /// Credits voided, including those clawed back when the payment for
    /// them was returned (both leave to the `void` ledger account).
    pub voided: Amount,
    /// Debt settled to the receivable, billed as charges.
    pub settled: Amount,
}

/// The totals of one account, from its lots (for each grant's source) and
/// its whole journal.
pub fn totals(lots: &[Lot], journal: &[Transaction]) -> Result<Totals, Reject> {
    let sources: HashMap<LotId, Source> = lots.iter().map(|l| (l.id, l.source)).collect();
    let mut granted: HashMap<Source, i128> = HashMap::new();
    let (mut spent, mut refunded, mut expired, mut voided, mut settled) = (0i128, 0, 0, 0, 0);
    for tx in journal {
        for posting in &tx.postings {
            let micros = i128::from(posting.amount.micros());
            match (posting.account, tx.kind) {
                (LedgerAccount::Issuance, TxKind::Grant) => {
                    let lot = tx.lot.ok_or(Reject::Inconsistent("a grant names no lot"))?;
                    let source = sources
                        .get(&lot)
                        .ok_or(Reject::Inconsistent("a grant's lot is not loaded"))?;
                    *granted.entry(*source).or_default() -= micros;
                }
                (LedgerAccount::Usage, TxKind::Refund) => refunded -= micros,
                (LedgerAccount::Usage, _) => spent += micros,
                (LedgerAccount::Expiry, _) => expired += micros,
                (LedgerAccount::Void, _) => voided += micros,
                (LedgerAccount::Receivable, _) => settled -= micros,
                _ => {}
            }
        }
    }
    let amount = |micros: i128| {
        i64::try_from(micros)
            .map(Amount::from_micros)
            .map_err(|_| Reject::Overflow)
    };
    let mut by_source = Vec::new();
    for source in Source::ALL {
        if let Some(micros) = granted.get(&source) {
            by_source.push((source, amount(*micros)?));
        }
    }
    Ok(Totals {
        granted: by_source,
        spent: amount(spent)?,
        refunded: amount(refunded)?,
        expired: amount(expired)?,
        voided: amount(voided)?,
        settled: amount(settled)?,
    })
}

impl Totals {
    /// Adds what a read's settlement moves (the expiries, releases of
    /// expired holds and debt repayments that [`crate::Book::settlement`]
    /// applies before the background sweep writes them), so that totals
    /// read with a book agree with the balance the settled book shows.
    /// A settlement grants nothing: a grant among `pending` is refused.
    pub fn add_settlement(&mut self, pending: &[Transaction]) -> Result<(), Reject> {
        let more = totals(&[], pending)?;
        if !more.granted.is_empty() {
            return Err(Reject::Inconsistent("a settlement granted credits"));
        }
        let add = |a: Amount, b: Amount| a.checked_add(b).ok_or(Reject::Overflow);
        self.spent = add(self.spent, more.spent)?;
        self.refunded = add(self.refunded, more.refunded)?;
        self.expired = add(self.expired, more.expired)?;
        self.voided = add(self.voided, more.voided)?;
        self.settled = add(self.settled, more.settled)?;
        Ok(())
    }
}
