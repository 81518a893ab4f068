//! An account's book: its lots and holds, and every operation that changes them.
//!
//! Each operation first settles the book at `now` (expired holds release,
//! expired lots expire, debt is repaid from spendable lots), then decides
//! everything that can fail, and only then changes the book. A rejected
//! operation therefore leaves the book as settlement left it, and every
//! change is written as a [`Transaction`] appended to `out`.

use crate::{
    Account, Amount, ExternalId, FeatureId, Hold, HoldId, HoldStatus, HoldTtl, IdSource,
    LedgerAccount, Leg, Lot, LotId, Metadata, NewGrant, Origin, PRIORITY_MAX, Posting, Reject,
    Share, Source, Standing, Timestamp, Transaction, TxId, TxKind,
};

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

/// The most credits one account may hold in lots and escrow together, and
/// the most it may owe: a quarter of the integer range, so that no sum of
/// balances can overflow.
pub const ACCOUNT_CREDITS_MAX: Amount = Amount::from_micros(i64::MAX / 4);

/// An account's balance at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    /// Credits that can be spent now, net of debt and of holds beyond the
    /// escrowed credits; negative while in overdraft.
    pub available: Amount,
    /// Credits reserved by pending holds.
    pub held: Amount,
    /// Credits owed.
    pub debt: Amount,
}

/// The answer to "could this amount be consumed now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// Whether a consume of `required` would succeed.
    pub allowed: bool,
    /// The amount asked about.
    pub required: Amount,
    /// The available balance.
    pub available: Amount,
}

/// A consume: how much, and what the journal keeps about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Credits to spend; must be positive.
    pub amount: Amount,
    /// The feature and quantity the amount was priced from.
    pub feature: Option<(FeatureId, Amount)>,
    /// Operator metadata.
    pub metadata: Metadata,
    /// What caused the consume, unique per account.
    pub external_id: Option<ExternalId>,
}

impl Usage {
    /// A plain consume of `amount`, with nothing else recorded.
    pub fn of(amount: Amount) -> Usage {
        Usage {
            amount,
            feature: None,
            metadata: Metadata::empty(),
            external_id: None,
        }
    }
}

/// What a renewal does with what is left of the ending period's plan credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carry {
    /// They expire: the new period's credits replace them.
    Reset,
    /// They carry into the account's rollover credits, which hold at most
    /// `cap` in all; what would exceed the cap expires.
    Rollover {
        /// The most rollover credits the account may hold.
        cap: Amount,
    },
}

/// A subscription period's renewal, decided by billing and applied as one
/// operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// Whether the ending period's plan credits close: every live lot of
    /// source `subscription` with credits left (a plan's credits are what
    /// reset and rollover touch, never purchased, bonus or admin credits).
    pub close: bool,
    /// What becomes of what they hold.
    pub carry: Carry,
    /// Debt first cleared to the receivable, billed as a charge by a plan
    /// with overage: exactly this much, which the account must owe.
    pub settle_debt: Option<Amount>,
    /// The account's overdraft limit from the renewal on (the new plan's
    /// overage cap), if it changes.
    pub overdraft_limit: Option<Amount>,
    /// The new period's credits, if any; its external id makes the
    /// renewal happen once.
    pub grant: Option<NewGrant>,
}

/// What a renewal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The new period's lot.
    pub lot: Option<LotId>,
    /// Debt cleared to the receivable.
    pub settled: Amount,
    /// Credits carried into a rollover lot.
    pub carried: Amount,
    /// Credits of the ending period that expired.
    pub expired: Amount,
}

/// What a refund did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefundDone {
    /// The refund transaction.
    pub tx: TxId,
    /// How much of the original usage is refunded now, this refund included.
    pub refunded_total: Amount,
}

/// One account with the lots and holds the store loaded for it.
///
/// The store loads every lot with credits left, every pending hold, and any
/// other lot an operation names (a lot to void or claw back, the lots a
/// refund returns to), including every lot a pending hold's escrow came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Book {
    /// The account.
    pub account: Account,
    lots: Vec<Lot>,
    holds: Vec<Hold>,
}

impl Book {
    /// Builds a book, checking that every pending hold's lots are loaded and
    /// that every lot and hold belongs to the account.
    pub fn new(account: Account, mut lots: Vec<Lot>, holds: Vec<Hold>) -> Result<Book, Reject> {
        lots.sort_by_key(Lot::burn_key);
        lots.dedup_by_key(|l| l.id);
        if lots.iter().any(|l| l.account != account.id)
            || holds.iter().any(|h| h.account != account.id)
        {
            return Err(Reject::Inconsistent("a lot or hold of another account"));
        }
        let book = Book {
            account,
            lots,
            holds,
        };
        let missing_leg = book
            .holds
            .iter()
            .filter(|h| h.status == HoldStatus::Pending)
            .flat_map(|h| &h.legs)
            .any(|leg| book.lot(leg.lot).is_none());
        if missing_leg {
            return Err(Reject::Inconsistent("a pending hold's lot is not loaded"));
        }
        Ok(book)
    }

    /// The lots, in burn-down order.
    pub fn lots(&self) -> &[Lot] {
        &self.lots
    }

    /// The holds loaded with the book.
    pub fn holds(&self) -> &[Hold] {
        &self.holds
    }

    /// The lot with this id, if loaded.
    pub fn lot(&self, id: LotId) -> Option<&Lot> {
        self.lots.iter().find(|l| l.id == id)
    }

    /// The hold with this id, if loaded.
    pub fn hold(&self, id: HoldId) -> Option<&Hold> {
        self.holds.iter().find(|h| h.id == id)
    }

    /// Adds a lot the store loaded late (for a refund, a void or a
    /// claw-back), keeping the burn-down order. A lot already present is
    /// left as it is.
    pub fn load_lot(&mut self, lot: Lot) -> Result<(), Reject> {
        if lot.account != self.account.id {
            return Err(Reject::Inconsistent("a lot of another account"));
        }
        if self.lot(lot.id).is_none() {
            self.insert_lot(lot);
        }
        Ok(())
    }

    /// Adds a hold the store loaded late (to commit or release it).
    pub fn load_hold(&mut self, hold: Hold) -> Result<(), Reject> {
        if hold.account != self.account.id {
            return Err(Reject::Inconsistent("a hold of another account"));
        }
        if hold.status == HoldStatus::Pending && hold.legs.iter().any(|l| self.lot(l.lot).is_none())
        {
            return Err(Reject::Inconsistent("a pending hold's lot is not loaded"));
        }
        if self.hold(hold.id).is_none() {
            self.holds.push(hold);
        }
        Ok(())
    }

    /// Drops lots and holds that can no longer change: holds no longer
    /// pending, and lots that are empty, not coming into effect later and not
    /// holding back a pending hold's escrow. The store calls this
    /// when it keeps a book between operations.
    pub fn compact(&mut self, now: Timestamp) {
        self.holds.retain(|h| h.status == HoldStatus::Pending);
        let escrowed: std::collections::HashSet<LotId> = self
            .holds
            .iter()
            .flat_map(|h| h.legs.iter().map(|leg| leg.lot))
            .collect();
        self.lots.retain(|l| {
            l.remaining.is_positive()
                || (l.effective_at > now && l.is_live_at(now))
                || escrowed.contains(&l.id)
        });
    }

    /// The balance at `now`, as if settled at `now`.
    pub fn balance(&self, now: Timestamp) -> Balance {
        self.settled_view(now).current_balance(now)
    }

    /// True when settling at `now` would change nothing, so reads can skip
    /// the copy that settling needs.
    pub fn is_settled_at(&self, now: Timestamp) -> bool {
        let hold_due = self
            .holds
            .iter()
            .any(|h| h.status == HoldStatus::Pending && h.expires_at <= now);
        let lot_due = self
            .lots
            .iter()
            .any(|l| l.remaining.is_positive() && l.is_expired_at(now));
        let repayable = self.account.debt.is_positive()
            && self
                .lots
                .iter()
                .any(|l| l.remaining.is_positive() && l.is_spendable_at(now));
        !(hold_due || lot_due || repayable)
    }

    /// The book as settled at `now`: itself when settling would change
    /// nothing, else a settled copy.
    fn settled_view(&self, now: Timestamp) -> std::borrow::Cow<'_, Book> {
        if self.is_settled_at(now) {
            std::borrow::Cow::Borrowed(self)
        } else {
            std::borrow::Cow::Owned(self.settled(now))
        }
    }

    /// A copy of the book settled at `now`: what a read shows before any
    /// background job has written expiries and releases.
    pub fn settled(&self, now: Timestamp) -> Book {
        self.settlement(now).0
    }

    /// A copy of the book settled at `now`, with the transactions the
    /// settlement would write (their ids are placeholders: nothing is
    /// written).
    pub fn settlement(&self, now: Timestamp) -> (Book, Vec<Transaction>) {
        let mut copy = self.clone();
        let mut ids = crate::Counters::default();
        let mut pending = Vec::new();
        copy.settle_now(now, &mut ids, &mut pending);
        (copy, pending)
    }

    /// Whether `amount` could be consumed at `now`. Changes nothing.
    pub fn check(&self, amount: Amount, now: Timestamp) -> Result<Check, Reject> {
        if amount.is_negative() {
            return Err(Reject::InvalidAmount("amount must not be negative"));
        }
        let settled = self.settled_view(now);
        // Zero is a free feature's use, which spends nothing and is always allowed.
        Ok(Check {
            allowed: amount == Amount::ZERO || i128::from(amount.micros()) <= settled.headroom(now),
            required: amount,
            available: settled.available(now),
        })
    }

    /// The book's answers to checks around `now`, for a store to keep in
    /// place of the book: from the last instant at or before `now` that the
    /// book names to the first after it.
    pub fn standing(&self, now: Timestamp) -> Standing {
        let instants = self
            .lots
            .iter()
            .flat_map(|l| [Some(l.effective_at), l.expires_at])
            .chain(
                self.holds
                    .iter()
                    .filter(|h| h.status == HoldStatus::Pending)
                    .map(|h| Some(h.expires_at)),
            )
            .flatten();
        let (mut from, mut until) = (
            Timestamp::from_micros(i64::MIN),
            Timestamp::from_micros(i64::MAX),
        );
        for instant in instants {
            if instant <= now {
                from = from.max(instant);
            } else {
                until = until.min(instant);
            }
        }
        let settled = self.settled_view(now);
        let headroom = settled.headroom(now);
        Standing {
            from,
            until,
            headroom_micros: headroom.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            available: settled.available(now),
        }
    }

    /// Writes what time has done by `now`: pending holds past their expiry
    /// release (status `expired`), lots past their expiry expire, and debt is
    /// repaid from spendable lots. Every operation starts with this.
    ///
    /// Settling cannot fail; the `Result` lets it run as any other operation.
    pub fn settle(
        &mut self,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<(), Reject> {
        self.settle_now(now, ids, out);
        Ok(())
    }

    fn settle_now(&mut self, now: Timestamp, ids: &mut dyn IdSource, out: &mut Vec<Transaction>) {
        for i in 0..self.holds.len() {
            let hold = &self.holds[i];
            if hold.status == HoldStatus::Pending && hold.expires_at <= now {
                let tx = self.release_at(i, HoldStatus::Expired, Metadata::empty(), now, ids);
                out.push(tx);
            }
        }
        for i in 0..self.lots.len() {
            let lot = &self.lots[i];
            if lot.is_expired_at(now) && lot.remaining.is_positive() {
                let (id, remaining) = (lot.id, lot.remaining);
                self.lots[i].remaining = Amount::ZERO;
                let postings = vec![
                    posting(LedgerAccount::Lot(id), neg(remaining)),
                    posting(LedgerAccount::Expiry, remaining),
                ];
                let mut tx = self.record(ids, TxKind::Expire, postings, now, Metadata::empty());
                tx.lot = Some(id);
                out.push(tx);
            }
        }
        self.repay_debt(now, ids, out);
    }

    /// Creates a lot from a grant; the new credits repay debt first.
    pub fn grant(
        &mut self,
        grant: NewGrant,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<LotId, Reject> {
        self.settle(now, ids, out)?;
        if grant.expires_at.is_some_and(|e| e <= now) {
            return Err(Reject::InvalidTimestamp(
                "expires_at must be in the future and after effective_at",
            ));
        }
        self.check_grant(&grant, now)?;
        Ok(self.issue(grant, now, ids, out))
    }

    /// Checks what a grant can fail on, other than lying in the past.
    fn check_grant(&self, grant: &NewGrant, now: Timestamp) -> Result<(), Reject> {
        if !grant.amount.is_positive() {
            return Err(Reject::InvalidAmount("amount must be positive"));
        }
        if grant.priority.is_some_and(|p| p > PRIORITY_MAX) {
            return Err(Reject::InvalidRequest("priority must be between 0 and 100"));
        }
        let effective_at = grant.effective_at.unwrap_or(now);
        if grant.expires_at.is_some_and(|e| e <= effective_at) {
            return Err(Reject::InvalidTimestamp(
                "expires_at must be in the future and after effective_at",
            ));
        }
        if self.credits_held() + i128::from(grant.amount.micros())
            > i128::from(ACCOUNT_CREDITS_MAX.micros())
        {
            return Err(Reject::Overflow);
        }
        Ok(())
    }

    /// Creates a checked grant's lot and its transaction; the new credits
    /// repay debt first.
    fn issue(
        &mut self,
        grant: NewGrant,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> LotId {
        let priority = grant.priority.unwrap_or(grant.source.default_priority());
        let id = ids.next_lot();
        self.insert_lot(Lot {
            id,
            account: self.account.id.clone(),
            source: grant.source,
            priority,
            amount: grant.amount,
            remaining: grant.amount,
            effective_at: grant.effective_at.unwrap_or(now),
            expires_at: grant.expires_at,
            voided_at: None,
            created_at: now,
            metadata: grant.metadata.clone(),
            external_id: grant.external_id.clone(),
        });
        let postings = vec![
            posting(LedgerAccount::Issuance, neg(grant.amount)),
            posting(LedgerAccount::Lot(id), grant.amount),
        ];
        let mut tx = self.record(ids, TxKind::Grant, postings, now, grant.metadata);
        tx.lot = Some(id);
        tx.source = Some(grant.source);
        tx.external_id = grant.external_id;
        tx.reason = grant.reason;
        tx.actor = grant.actor;
        out.push(tx);
        self.repay_debt(now, ids, out);
        id
    }

    /// Clears the account's debt to the receivable account: what it owed is
    /// billed as a charge instead (an overage settled at a period's end).
    /// Answers what was cleared; nothing is written when there is no debt.
    pub fn settle_debt(
        &mut self,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<Amount, Reject> {
        self.settle(now, ids, out)?;
        let debt = self.account.debt;
        self.clear_debt(debt, now, ids, out);
        Ok(debt)
    }

    /// Clears `debt` of what the account owes (never more than it owes).
    fn clear_debt(
        &mut self,
        debt: Amount,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) {
        if !debt.is_positive() {
            return;
        }
        self.account.debt = sub(self.account.debt, debt);
        let postings = vec![
            posting(LedgerAccount::Debt, debt),
            posting(LedgerAccount::Receivable, neg(debt)),
        ];
        out.push(self.record(
            ids,
            TxKind::DebtSettlement,
            postings,
            now,
            Metadata::empty(),
        ));
    }

    /// Renews a subscription's period in one operation: settles the debt
    /// (if asked), closes the ending period's plan lots (their credits expire,
    /// or roll over up to the cap), and grants the new period's credits, which
    /// may already lie in the past when a renewal catches up: a grant whose
    /// expiry has passed expires at once.
    pub fn renew(
        &mut self,
        renewal: Renewal,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<Renewed, Reject> {
        self.settle(now, ids, out)?;
        if let Some(grant) = &renewal.grant {
            self.check_grant(grant, now)?;
        }
        let settled = renewal.settle_debt.unwrap_or(Amount::ZERO);
        if settled.is_negative() || settled > self.account.debt {
            return Err(Reject::InvalidAmount(
                "the debt to settle is not what the account owes",
            ));
        }
        if renewal.overdraft_limit.is_some_and(|l| l.is_negative()) {
            return Err(Reject::InvalidAmount(
                "overdraft_limit must not be negative",
            ));
        }
        let cap = match renewal.carry {
            Carry::Reset => None,
            Carry::Rollover { cap } if cap.is_negative() => {
                return Err(Reject::InvalidAmount("rollover_cap must not be negative"));
            }
            Carry::Rollover { cap } => Some(cap),
        };

        self.clear_debt(settled, now, ids, out);
        if let Some(limit) = renewal.overdraft_limit {
            self.account.overdraft_limit = limit;
        }
        let closing: Vec<(LotId, Amount)> = if renewal.close {
            self.lots
                .iter()
                .filter(|l| {
                    l.source == Source::Subscription
                        && l.remaining.is_positive()
                        && l.is_live_at(now)
                })
                .map(|l| (l.id, l.remaining))
                .collect()
        } else {
            Vec::new()
        };
        let left = sum_of(closing.iter().map(|(_, r)| *r));
        let carried = match cap {
            None => Amount::ZERO,
            Some(cap) => {
                let held: i128 = self
                    .lots
                    .iter()
                    .filter(|l| l.source == Source::Rollover && l.is_live_at(now))
                    .map(|l| i128::from(l.remaining.micros()))
                    .sum();
                let room = (i128::from(cap.micros()) - held).max(0);
                Amount::from_micros(room.min(i128::from(left.micros())) as i64)
            }
        };
        // Carried credits come from the closing lots in order; the rest of
        // each expires.
        let mut to_carry = carried;
        let mut carry_postings = Vec::new();
        for (id, remaining) in &closing {
            let part = (*remaining).min(to_carry);
            to_carry = sub(to_carry, part);
            let index = self.lots.iter().position(|l| l.id == *id).expect("loaded");
            self.lots[index].remaining = Amount::ZERO;
            if part.is_positive() {
                carry_postings.push(posting(LedgerAccount::Lot(*id), neg(part)));
            }
            let rest = sub(*remaining, part);
            if rest.is_positive() {
                let postings = vec![
                    posting(LedgerAccount::Lot(*id), neg(rest)),
                    posting(LedgerAccount::Expiry, rest),
                ];
                let mut tx = self.record(ids, TxKind::Expire, postings, now, Metadata::empty());
                tx.lot = Some(*id);
                out.push(tx);
            }
        }
        if carried.is_positive() {
            let id = ids.next_lot();
            let effective_at = renewal
                .grant
                .as_ref()
                .and_then(|g| g.effective_at)
                .unwrap_or(now);
            self.insert_lot(Lot {
                id,
                account: self.account.id.clone(),
                source: Source::Rollover,
                priority: Source::Rollover.default_priority(),
                amount: carried,
                remaining: carried,
                effective_at,
                expires_at: None,
                voided_at: None,
                created_at: now,
                metadata: Metadata::empty(),
                external_id: None,
            });
            carry_postings.push(posting(LedgerAccount::Lot(id), carried));
            let mut tx = self.record(
                ids,
                TxKind::Rollover,
                carry_postings,
                now,
                Metadata::empty(),
            );
            tx.lot = Some(id);
            out.push(tx);
        }
        let lot = renewal.grant.map(|grant| self.issue(grant, now, ids, out));
        // A grant for a period already over expires at once.
        self.settle_now(now, ids, out);
        Ok(Renewed {
            lot,
            settled,
            carried,
            expired: sub(left, carried),
        })
    }

    /// Spends `amount`, lot by lot in burn-down order; with an overdraft
    /// limit, what the lots cannot cover becomes debt.
    pub fn consume(
        &mut self,
        usage: Usage,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<TxId, Reject> {
        self.settle(now, ids, out)?;
        let Usage {
            amount,
            feature,
            metadata,
            external_id,
        } = usage;
        if amount.is_negative() || (amount == Amount::ZERO && feature.is_none()) {
            return Err(Reject::InvalidAmount("amount must be positive"));
        }
        if amount == Amount::ZERO {
            // A free feature's use: recorded, with no posting, moving nothing.
            let mut tx = self.record(ids, TxKind::Consume, Vec::new(), now, metadata);
            tx.feature = feature;
            tx.external_id = external_id;
            let id = tx.id;
            out.push(tx);
            return Ok(id);
        }
        self.ensure_headroom(amount, now)?;
        let (plan, uncovered) = self.plan_draw(amount, now);
        let debt = self.debt_after(uncovered)?;

        let mut postings = Vec::with_capacity(plan.len() + 2);
        let mut sources = Vec::with_capacity(plan.len() + 1);
        self.draw(&plan, &mut postings, &mut sources);
        self.owe(uncovered, debt, &mut postings, &mut sources);
        postings.push(posting(LedgerAccount::Usage, amount));
        let mut tx = self.record(ids, TxKind::Consume, postings, now, metadata);
        tx.sources = sources;
        tx.feature = feature;
        tx.external_id = external_id;
        let id = tx.id;
        out.push(tx);
        Ok(id)
    }

    /// Reserves `amount` until `now + ttl`. Lots cover what they can, moved
    /// into the hold's escrow; the overdraft limit may allow the rest.
    pub fn place_hold(
        &mut self,
        amount: Amount,
        ttl: HoldTtl,
        metadata: Metadata,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<HoldId, Reject> {
        self.settle(now, ids, out)?;
        if !amount.is_positive() {
            return Err(Reject::InvalidAmount("amount must be positive"));
        }
        self.ensure_headroom(amount, now)?;
        let (plan, _unfunded) = self.plan_draw(amount, now);

        let id = ids.next_hold();
        let mut postings = Vec::with_capacity(plan.len() + 1);
        self.draw(&plan, &mut postings, &mut Vec::new());
        let legs: Vec<Leg> = plan
            .iter()
            .map(|&(i, amount)| Leg {
                lot: self.lots[i].id,
                amount,
            })
            .collect();
        let funded = sum_of(legs.iter().map(|l| l.amount));
        if funded.is_positive() {
            postings.push(posting(LedgerAccount::Hold(id), funded));
        }
        self.holds.push(Hold {
            id,
            account: self.account.id.clone(),
            amount,
            legs,
            status: HoldStatus::Pending,
            committed_amount: None,
            created_at: now,
            expires_at: now.plus_secs(ttl.secs()),
            resolved_at: None,
            metadata: metadata.clone(),
        });
        let mut tx = self.record(ids, TxKind::Hold, postings, now, metadata);
        tx.hold = Some(id);
        out.push(tx);
        Ok(id)
    }

    /// Turns a pending hold into usage of `amount`. Less than held returns
    /// the rest to its lots; more than held charges the excess from available
    /// credits, and what they cannot cover becomes debt whatever the overdraft
    /// limit, because the usage already happened.
    pub fn commit(
        &mut self,
        hold: HoldId,
        amount: Amount,
        metadata: Metadata,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<TxId, Reject> {
        self.settle(now, ids, out)?;
        let index = self.pending_hold_index(hold)?;
        if amount.is_negative() {
            return Err(Reject::InvalidAmount("amount must not be negative"));
        }
        let legs = self.holds[index].legs.clone();
        let funded = sum_of(legs.iter().map(|l| l.amount));
        let from_escrow = amount.min(funded);
        let excess = amount.checked_sub(from_escrow).ok_or(Reject::Overflow)?;
        let (plan, uncovered) = self.plan_draw(excess, now);
        let debt = self.debt_after(uncovered)?;

        let mut postings = Vec::with_capacity(legs.len() * 2 + plan.len() + 2);
        let mut sources = Vec::with_capacity(legs.len() + plan.len() + 1);
        let mut to_spend = from_escrow;
        for leg in &legs {
            let spent = leg.amount.min(to_spend);
            to_spend = sub(to_spend, spent);
            if spent.is_positive() {
                postings.push(posting(LedgerAccount::Hold(hold), neg(spent)));
                sources.push(Share {
                    origin: Origin::Lot(leg.lot),
                    amount: spent,
                });
            }
            let rest = sub(leg.amount, spent);
            if rest.is_positive() {
                postings.push(posting(LedgerAccount::Hold(hold), neg(rest)));
                self.return_to_lot(leg.lot, rest, now, &mut postings);
            }
        }
        self.draw(&plan, &mut postings, &mut sources);
        self.owe(uncovered, debt, &mut postings, &mut sources);
        if amount.is_positive() {
            postings.push(posting(LedgerAccount::Usage, amount));
        }
        let held = &mut self.holds[index];
        held.status = HoldStatus::Committed;
        held.committed_amount = Some(amount);
        held.resolved_at = Some(now);
        let mut tx = self.record(ids, TxKind::HoldCommit, postings, now, metadata);
        tx.sources = sources;
        tx.hold = Some(hold);
        let id = tx.id;
        out.push(tx);
        Ok(id)
    }

    /// Cancels a pending hold, returning its escrow to its lots.
    pub fn release(
        &mut self,
        hold: HoldId,
        metadata: Metadata,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<TxId, Reject> {
        self.settle(now, ids, out)?;
        let index = self.pending_hold_index(hold)?;
        let tx = self.release_at(index, HoldStatus::Released, metadata, now, ids);
        let id = tx.id;
        out.push(tx);
        Ok(id)
    }

    /// Removes what remains of a lot; what was already spent stays spent,
    /// and credits that come back to it later (a refund, a released hold) are
    /// voided at once.
    pub fn void(
        &mut self,
        lot: LotId,
        metadata: Metadata,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<TxId, Reject> {
        let index = self.settle_for_lot(lot, now, ids, out)?;
        if self.lots[index].voided_at.is_some() {
            return Err(Reject::GrantVoided);
        }
        let remaining = self.lots[index].remaining;
        self.lots[index].remaining = Amount::ZERO;
        self.lots[index].voided_at = Some(now);
        let mut postings = Vec::with_capacity(2);
        if remaining.is_positive() {
            postings.push(posting(LedgerAccount::Lot(lot), neg(remaining)));
            postings.push(posting(LedgerAccount::Void, remaining));
        }
        let mut tx = self.record(ids, TxKind::Void, postings, now, metadata);
        tx.lot = Some(lot);
        let id = tx.id;
        out.push(tx);
        Ok(id)
    }

    /// Takes back `amount` of the credits a grant gave, because the payment
    /// for them was returned: first from the grant's own lot, then from the
    /// account's other spendable credits in burn-down order (never from a
    /// hold's escrow), and what they cannot cover becomes debt whatever the
    /// overdraft limit. The credits leave to `void`. A voided or expired lot
    /// has nothing left to give, so all of it comes from elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub fn claw_back(
        &mut self,
        lot: LotId,
        amount: Amount,
        metadata: Metadata,
        external_id: Option<ExternalId>,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<TxId, Reject> {
        let index = self.settle_for_lot(lot, now, ids, out)?;
        if !amount.is_positive() {
            return Err(Reject::InvalidAmount("amount must be positive"));
        }
        let from_lot = self.lots[index].remaining.min(amount);
        let (plan, uncovered) = self.plan_draw_except(sub(amount, from_lot), now, Some(index));
        let debt = self.debt_after(uncovered)?;

        let mut postings = Vec::with_capacity(plan.len() + 3);
        let mut sources = Vec::with_capacity(plan.len() + 2);
        if from_lot.is_positive() {
            self.draw(&[(index, from_lot)], &mut postings, &mut sources);
        }
        self.draw(&plan, &mut postings, &mut sources);
        self.owe(uncovered, debt, &mut postings, &mut sources);
        postings.push(posting(LedgerAccount::Void, amount));
        let mut tx = self.record(ids, TxKind::ClawBack, postings, now, metadata);
        tx.lot = Some(lot);
        tx.sources = sources;
        tx.external_id = external_id;
        let id = tx.id;
        out.push(tx);
        Ok(id)
    }

    /// Refunds `amount` (by default all that is left) of a usage transaction,
    /// of which `already` was refunded before.
    ///
    /// Credits go back to where they came from, latest share first. A share
    /// whose lot has expired or been voided since expires or is voided again
    /// at once. A share that was debt reduces the debt; if the debt was repaid
    /// in the meantime, the rest comes back as a new permanent lot (source
    /// `refund`).
    #[allow(clippy::too_many_arguments)]
    pub fn refund(
        &mut self,
        original: &Transaction,
        already: Amount,
        amount: Option<Amount>,
        metadata: Metadata,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<RefundDone, Reject> {
        self.settle(now, ids, out)?;
        if original.account != self.account.id {
            return Err(Reject::TransactionNotFound);
        }
        if !original.kind.is_usage() {
            return Err(Reject::NotRefundable);
        }
        let usage = original.usage_amount().ok_or(Reject::Overflow)?;
        let refundable = usage.checked_sub(already).ok_or(Reject::Overflow)?;
        let amount = match amount {
            Some(a) if !a.is_positive() => {
                return Err(Reject::InvalidAmount("amount must be positive"));
            }
            Some(a) => a,
            None => refundable,
        };
        if amount > refundable || !amount.is_positive() {
            return Err(Reject::RefundTooLarge { refundable });
        }
        if self.credits_held() + i128::from(amount.micros())
            > i128::from(ACCOUNT_CREDITS_MAX.micros())
        {
            return Err(Reject::Overflow);
        }

        // Decide each share's part before changing anything.
        let mut skip = already;
        let mut left = amount;
        let mut parts = Vec::new();
        for share in original.sources.iter().rev() {
            let skipped = skip.min(share.amount);
            skip = sub(skip, skipped);
            let part = sub(share.amount, skipped).min(left);
            left = sub(left, part);
            if part.is_positive() {
                if let Origin::Lot(lot) = share.origin
                    && self.lot(lot).is_none()
                {
                    return Err(Reject::Inconsistent("a refunded lot is not loaded"));
                }
                parts.push((share.origin, part));
            }
        }

        let mut postings = Vec::with_capacity(parts.len() * 3 + 1);
        postings.push(posting(LedgerAccount::Usage, neg(amount)));
        let mut new_lot = None;
        for (origin, part) in parts {
            match origin {
                Origin::Lot(lot) => self.return_to_lot(lot, part, now, &mut postings),
                Origin::Debt => {
                    let repaid = part.min(self.account.debt);
                    if repaid.is_positive() {
                        self.account.debt = sub(self.account.debt, repaid);
                        postings.push(posting(LedgerAccount::Debt, repaid));
                    }
                    let rest = sub(part, repaid);
                    if rest.is_positive() {
                        let id = ids.next_lot();
                        self.insert_lot(Lot {
                            id,
                            account: self.account.id.clone(),
                            source: Source::Refund,
                            priority: Source::Refund.default_priority(),
                            amount: rest,
                            remaining: rest,
                            effective_at: now,
                            expires_at: None,
                            voided_at: None,
                            created_at: now,
                            metadata: Metadata::empty(),
                            external_id: None,
                        });
                        postings.push(posting(LedgerAccount::Lot(id), rest));
                        new_lot = Some(id);
                    }
                }
            }
        }
        let mut tx = self.record(ids, TxKind::Refund, postings, now, metadata);
        tx.refund_of = Some(original.id);
        tx.lot = new_lot;
        let id = tx.id;
        out.push(tx);
        Ok(RefundDone {
            tx: id,
            refunded_total: already.checked_add(amount).ok_or(Reject::Overflow)?,
        })
    }

    /// The balance of a book already settled at `now`.
    fn current_balance(&self, now: Timestamp) -> Balance {
        let held: i128 = self
            .holds
            .iter()
            .filter(|h| h.is_pending_at(now))
            .map(|h| i128::from(h.amount.micros()))
            .sum();
        Balance {
            available: self.available(now),
            held: clamp_amount(held),
            debt: self.account.debt,
        }
    }

    /// Spendable credits minus debt minus the unfunded part of pending holds.
    fn available_micros(&self, now: Timestamp) -> i128 {
        let spendable: i128 = self
            .lots
            .iter()
            .filter(|l| l.is_spendable_at(now))
            .map(|l| i128::from(l.remaining.micros()))
            .sum();
        let unfunded: i128 = self
            .holds
            .iter()
            .filter(|h| h.is_pending_at(now))
            .map(|h| i128::from(h.unfunded().micros()))
            .sum();
        spendable - i128::from(self.account.debt.micros()) - unfunded
    }

    fn available(&self, now: Timestamp) -> Amount {
        clamp_amount(self.available_micros(now))
    }

    /// How much a consume could take: available plus the overdraft limit.
    fn headroom(&self, now: Timestamp) -> i128 {
        self.available_micros(now) + i128::from(self.account.overdraft_limit.micros())
    }

    fn ensure_headroom(&self, amount: Amount, now: Timestamp) -> Result<(), Reject> {
        if i128::from(amount.micros()) > self.headroom(now) {
            return Err(Reject::InsufficientCredits {
                required: amount,
                available: self.available(now),
            });
        }
        Ok(())
    }

    /// Credits in lots and in escrow, the quantity capped by [`ACCOUNT_CREDITS_MAX`].
    fn credits_held(&self) -> i128 {
        let in_lots: i128 = self
            .lots
            .iter()
            .map(|l| i128::from(l.remaining.micros()))
            .sum();
        let in_escrow: i128 = self
            .holds
            .iter()
            .filter(|h| h.status == HoldStatus::Pending)
            .map(|h| i128::from(h.funded().micros()))
            .sum();
        in_lots + in_escrow
    }

    fn debt_after(&self, uncovered: Amount) -> Result<Amount, Reject> {
        self.account
            .debt
            .checked_add(uncovered)
            .filter(|d| *d <= ACCOUNT_CREDITS_MAX)
            .ok_or(Reject::Overflow)
    }

    /// Settles the book, as every operation does first, and finds `lot` in
    /// it, for the operations on one grant's lot.
    fn settle_for_lot(
        &mut self,
        lot: LotId,
        now: Timestamp,
        ids: &mut dyn IdSource,
        out: &mut Vec<Transaction>,
    ) -> Result<usize, Reject> {
        self.settle(now, ids, out)?;
        self.lots
            .iter()
            .position(|l| l.id == lot)
            .ok_or(Reject::GrantNotFound)
    }

    fn pending_hold_index(&self, hold: HoldId) -> Result<usize, Reject> {
        let index = self
            .holds
            .iter()
            .position(|h| h.id == hold)
            .ok_or(Reject::HoldNotFound)?;
        match self.holds[index].status {
            HoldStatus::Pending => Ok(index),
            status => Err(Reject::HoldNotPending { status }),
        }
    }

    /// Posts `uncovered` (when positive) as owed: a debt leg and its share,
    /// the account's debt becoming `debt` (what `debt_after` answered).
    fn owe(
        &mut self,
        uncovered: Amount,
        debt: Amount,
        postings: &mut Vec<Posting>,
        sources: &mut Vec<Share>,
    ) {
        if uncovered.is_positive() {
            postings.push(posting(LedgerAccount::Debt, neg(uncovered)));
            sources.push(Share {
                origin: Origin::Debt,
                amount: uncovered,
            });
            self.account.debt = debt;
        }
    }

    /// Which lots would give what towards `amount`, in burn-down order, and
    /// the part they cannot cover. Changes nothing.
    fn plan_draw(&self, amount: Amount, now: Timestamp) -> (Vec<(usize, Amount)>, Amount) {
        self.plan_draw_except(amount, now, None)
    }

    /// As [`Book::plan_draw`], leaving out the lot at index `except`.
    fn plan_draw_except(
        &self,
        amount: Amount,
        now: Timestamp,
        except: Option<usize>,
    ) -> (Vec<(usize, Amount)>, Amount) {
        let mut left = amount;
        let mut plan = Vec::new();
        for (i, lot) in self.lots.iter().enumerate() {
            if !left.is_positive() {
                break;
            }
            if Some(i) != except && lot.remaining.is_positive() && lot.is_spendable_at(now) {
                let take = lot.remaining.min(left);
                left = sub(left, take);
                plan.push((i, take));
            }
        }
        (plan, left)
    }

    /// Takes a planned draw out of the lots, posting each share.
    fn draw(
        &mut self,
        plan: &[(usize, Amount)],
        postings: &mut Vec<Posting>,
        sources: &mut Vec<Share>,
    ) {
        for &(i, take) in plan {
            let lot = &mut self.lots[i];
            lot.remaining = sub(lot.remaining, take);
            postings.push(posting(LedgerAccount::Lot(lot.id), neg(take)));
            sources.push(Share {
                origin: Origin::Lot(lot.id),
                amount: take,
            });
        }
    }

    /// Puts credits back into a lot; if the lot is expired or voided they
    /// leave again in the same transaction.
    fn return_to_lot(
        &mut self,
        lot: LotId,
        amount: Amount,
        now: Timestamp,
        postings: &mut Vec<Posting>,
    ) {
        let Some(target) = self.lots.iter_mut().find(|l| l.id == lot) else {
            // Book::new, load_hold and refund check that these lots are loaded.
            unreachable!("credits returned to {lot}, which is not loaded");
        };
        postings.push(posting(LedgerAccount::Lot(lot), amount));
        if target.is_live_at(now) {
            target.remaining = target
                .remaining
                .checked_add(amount)
                .expect("a lot never holds more than its amount");
        } else {
            postings.push(posting(LedgerAccount::Lot(lot), neg(amount)));
            let sink = if target.voided_at.is_some() {
                LedgerAccount::Void
            } else {
                LedgerAccount::Expiry
            };
            postings.push(posting(sink, amount));
        }
    }

    fn release_at(
        &mut self,
        index: usize,
        status: HoldStatus,
        metadata: Metadata,
        now: Timestamp,
        ids: &mut dyn IdSource,
    ) -> Transaction {
        let hold_id = self.holds[index].id;
        let legs = std::mem::take(&mut self.holds[index].legs);
        let mut postings = Vec::with_capacity(legs.len() * 3);
        for leg in &legs {
            postings.push(posting(LedgerAccount::Hold(hold_id), neg(leg.amount)));
            self.return_to_lot(leg.lot, leg.amount, now, &mut postings);
        }
        let hold = &mut self.holds[index];
        hold.legs = legs;
        hold.status = status;
        hold.resolved_at = Some(now);
        let mut tx = self.record(ids, TxKind::HoldRelease, postings, now, metadata);
        tx.hold = Some(hold_id);
        tx
    }

    fn repay_debt(&mut self, now: Timestamp, ids: &mut dyn IdSource, out: &mut Vec<Transaction>) {
        if !self.account.debt.is_positive() {
            return;
        }
        let (plan, unpaid) = self.plan_draw(self.account.debt, now);
        if plan.is_empty() {
            return;
        }
        let repaid = sub(self.account.debt, unpaid);
        let mut postings = Vec::with_capacity(plan.len() + 1);
        self.draw(&plan, &mut postings, &mut Vec::new());
        postings.push(posting(LedgerAccount::Debt, repaid));
        self.account.debt = unpaid;
        out.push(self.record(ids, TxKind::DebtRepayment, postings, now, Metadata::empty()));
    }

    fn insert_lot(&mut self, lot: Lot) {
        let key = lot.burn_key();
        let at = self.lots.partition_point(|l| l.burn_key() < key);
        self.lots.insert(at, lot);
    }

    /// Wraps postings already applied to the book into a transaction.
    fn record(
        &self,
        ids: &mut dyn IdSource,
        kind: TxKind,
        postings: Vec<Posting>,
        now: Timestamp,
        metadata: Metadata,
    ) -> Transaction {
        let total: i128 = postings.iter().map(|p| i128::from(p.amount.micros())).sum();
        assert_eq!(total, 0, "{kind:?} postings must sum to zero: {postings:?}");
        let account_side: i128 = postings
            .iter()
            .filter(|p| p.account.is_account_side())
            .map(|p| i128::from(p.amount.micros()))
            .sum();
        Transaction {
            id: ids.next_tx(),
            account: self.account.id.clone(),
            kind,
            postings,
            sources: Vec::new(),
            amount: clamp_amount(account_side),
            balance_after: clamp_amount(self.available_micros(now)),
            created_at: now,
            metadata,
            lot: None,
            hold: None,
            refund_of: None,
            feature: None::<(FeatureId, Amount)>,
            external_id: None,
            reason: None,
            actor: None,
            source: None,
        }
    }
}

fn posting(account: LedgerAccount, amount: Amount) -> Posting {
    Posting { account, amount }
}

/// Negates an amount already known to be within the amount range.
fn neg(amount: Amount) -> Amount {
    Amount::from_micros(-amount.micros())
}

/// Subtracts a part already known to be no larger than the whole.
fn sub(whole: Amount, part: Amount) -> Amount {
    Amount::from_micros(whole.micros() - part.micros())
}

fn sum_of(items: impl Iterator<Item = Amount>) -> Amount {
    Amount::from_micros(items.map(Amount::micros).sum())
}

/// Every credit-adding operation keeps the account within
/// [`ACCOUNT_CREDITS_MAX`] in lots and escrow and in debt, so balances stay well
/// inside the integer range and clamping never changes a value; it only keeps
/// reporting infallible.
fn clamp_amount(micros: i128) -> Amount {
    Amount::from_micros(micros.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}
