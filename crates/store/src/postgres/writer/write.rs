//! Round trip 3 of a batch: every write, each one statement over arrays of
//! column values, and `COMMIT`, sent together.

use std::collections::HashSet;

use ledger::{Account, AccountId, Amount, ExternalId, Feature, Hold, Lot, Timestamp, Transaction};
use tokio_postgres::{Client, Statement};

use super::Failure;
use super::pipeline::{Column, Pipeline};
use super::statements::{LedgerWrites, SideWrites, Statements};
use crate::batch::{RecordKey, Writes};
use crate::codec::{encode_legs, encode_postings, encode_sources, usage_of};
use crate::records::{Lookup, Record};
use crate::usage::{Bucket, Call};

/// Sends every write and `COMMIT` in one round trip. If any write fails,
/// PostgreSQL turns the `COMMIT` into a rollback and the error is reported.
pub(super) async fn write_and_commit(
    pg: &Client,
    st: &Statements<Statement>,
    writes: &Writes<'_>,
    claimed: &HashSet<String>,
    now: Timestamp,
) -> Result<(), Failure> {
    let ledger = LedgerColumns::of(writes);
    let records = RecordColumns::of(&writes.records);
    let buckets = crate::usage::rollup(writes.calls);
    let calls = CallColumns::of(writes.calls);
    let rollup = BucketColumns::of(&buckets);
    let keys = KeyColumns::of(writes, claimed, now);
    // The writes go out in this order, and run in it.
    let mut out = Pipeline::default();
    ledger.send(&mut out, pg, &st.ledger);
    records.send(&mut out, pg, &st.side);
    if !writes.calls.is_empty() {
        calls.send(&mut out, pg, &st.side.insert_calls);
        rollup.send(&mut out, pg, &st.side.add_buckets);
    }
    keys.send(&mut out, pg, &st.side);
    out.push_execute(async { pg.batch_execute("COMMIT").await.map(|()| 0) });
    out.run().await?;
    Ok(())
}

/// The ledger's rows a batch writes, as columns.
struct LedgerColumns<'a> {
    new_accounts: NewAccounts<'a>,
    changed_accounts: AccountColumns<'a>,
    new_lots: NewLots<'a>,
    changed_lots: ChangedLots,
    holds: HoldColumns<'a>,
    transactions: TransactionColumns<'a>,
    features: FeatureColumns<'a>,
}

impl<'a> LedgerColumns<'a> {
    fn of(writes: &'a Writes<'_>) -> LedgerColumns<'a> {
        let (new_lots, changed_lots): (Vec<&Lot>, Vec<&Lot>) = writes
            .lots
            .iter()
            .partition(|l| writes.new_lots.contains(&l.id));
        LedgerColumns {
            new_accounts: NewAccounts::of(&writes.new_accounts),
            changed_accounts: AccountColumns::of(&writes.accounts),
            new_lots: NewLots::of(&new_lots),
            changed_lots: ChangedLots::of(&changed_lots),
            holds: HoldColumns::of(&writes.holds),
            transactions: TransactionColumns::of(writes),
            features: FeatureColumns::of(writes.features),
        }
    }

    /// Adds each non-empty write, in the order they run.
    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p LedgerWrites<Statement>) {
        self.new_accounts.send(out, pg, &st.insert_accounts);
        self.changed_accounts.send(out, pg, &st.update_accounts);
        self.new_lots.send(out, pg, &st.insert_lots);
        self.changed_lots.send(out, pg, &st.update_lots);
        self.holds.send(out, pg, &st.upsert_holds);
        self.transactions.send(out, pg, &st.insert_transactions);
        self.features.send(out, pg, &st.upsert_features);
    }
}

/// Accounts opened, in id order.
struct NewAccounts<'a> {
    columns: AccountColumns<'a>,
    created: Vec<i64>,
}

impl<'a> NewAccounts<'a> {
    fn of(accounts: &[&'a Account]) -> NewAccounts<'a> {
        let mut accounts = accounts.to_vec();
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        NewAccounts {
            columns: AccountColumns::of(&accounts),
            created: accounts.iter().map(|a| a.created_at.micros()).collect(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let [id, name, metadata, overdraft, debt] = self.columns.params();
        let columns: [Column<'_>; 6] = [id, name, metadata, overdraft, debt, &self.created];
        out.push_columns(pg, st, self.columns.id.len(), columns);
    }
}

/// The columns of accounts that opening one and changing one both write;
/// alone, the existing accounts changed.
struct AccountColumns<'a> {
    id: Vec<&'a str>,
    name: Vec<Option<&'a str>>,
    metadata: Vec<&'a str>,
    overdraft: Vec<i64>,
    debt: Vec<i64>,
}

impl<'a> AccountColumns<'a> {
    fn of(accounts: &[&'a Account]) -> AccountColumns<'a> {
        AccountColumns {
            id: accounts.iter().map(|a| a.id.as_str()).collect(),
            name: accounts.iter().map(|a| a.name.as_deref()).collect(),
            metadata: accounts.iter().map(|a| a.metadata.as_str()).collect(),
            overdraft: accounts
                .iter()
                .map(|a| a.overdraft_limit.micros())
                .collect(),
            debt: accounts.iter().map(|a| a.debt.micros()).collect(),
        }
    }

    /// The columns as statement parameters, in the order both statements
    /// take them.
    fn params(&self) -> [Column<'_>; 5] {
        [
            &self.id,
            &self.name,
            &self.metadata,
            &self.overdraft,
            &self.debt,
        ]
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        out.push_columns(pg, st, self.id.len(), self.params());
    }
}

/// Lots created.
struct NewLots<'a> {
    id: Vec<i64>,
    account: Vec<&'a str>,
    source: Vec<&'a str>,
    priority: Vec<i64>,
    amount: Vec<i64>,
    remaining: Vec<i64>,
    effective: Vec<i64>,
    expires: Vec<Option<i64>>,
    voided: Vec<Option<i64>>,
    created: Vec<i64>,
    metadata: Vec<&'a str>,
    external: Vec<Option<&'a str>>,
}

impl<'a> NewLots<'a> {
    fn of(lots: &[&'a Lot]) -> NewLots<'a> {
        NewLots {
            id: lots.iter().map(|x| x.id.0).collect(),
            account: lots.iter().map(|x| x.account.as_str()).collect(),
            source: lots.iter().map(|x| x.source.code()).collect(),
            priority: lots.iter().map(|x| i64::from(x.priority)).collect(),
            amount: lots.iter().map(|x| x.amount.micros()).collect(),
            remaining: lots.iter().map(|x| x.remaining.micros()).collect(),
            effective: lots.iter().map(|x| x.effective_at.micros()).collect(),
            expires: lots
                .iter()
                .map(|x| x.expires_at.map(Timestamp::micros))
                .collect(),
            voided: lots
                .iter()
                .map(|x| x.voided_at.map(Timestamp::micros))
                .collect(),
            created: lots.iter().map(|x| x.created_at.micros()).collect(),
            metadata: lots.iter().map(|x| x.metadata.as_str()).collect(),
            external: lots
                .iter()
                .map(|x| x.external_id.as_ref().map(ExternalId::as_str))
                .collect(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let columns: [Column<'_>; 12] = [
            &self.id,
            &self.account,
            &self.source,
            &self.priority,
            &self.amount,
            &self.remaining,
            &self.effective,
            &self.expires,
            &self.voided,
            &self.created,
            &self.metadata,
            &self.external,
        ];
        out.push_columns(pg, st, self.id.len(), columns);
    }
}

/// Existing lots changed: what remains of them, and when they were voided.
struct ChangedLots {
    id: Vec<i64>,
    remaining: Vec<i64>,
    voided: Vec<Option<i64>>,
}

impl ChangedLots {
    fn of(lots: &[&Lot]) -> ChangedLots {
        ChangedLots {
            id: lots.iter().map(|x| x.id.0).collect(),
            remaining: lots.iter().map(|x| x.remaining.micros()).collect(),
            voided: lots
                .iter()
                .map(|x| x.voided_at.map(Timestamp::micros))
                .collect(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let columns: [Column<'_>; 3] = [&self.id, &self.remaining, &self.voided];
        out.push_columns(pg, st, self.id.len(), columns);
    }
}

/// Holds placed or resolved.
struct HoldColumns<'a> {
    id: Vec<i64>,
    account: Vec<&'a str>,
    amount: Vec<i64>,
    legs: Vec<String>,
    status: Vec<&'a str>,
    committed: Vec<Option<i64>>,
    created: Vec<i64>,
    expires: Vec<i64>,
    resolved: Vec<Option<i64>>,
    metadata: Vec<&'a str>,
}

impl<'a> HoldColumns<'a> {
    fn of(holds: &[&'a Hold]) -> HoldColumns<'a> {
        HoldColumns {
            id: holds.iter().map(|x| x.id.0).collect(),
            account: holds.iter().map(|x| x.account.as_str()).collect(),
            amount: holds.iter().map(|x| x.amount.micros()).collect(),
            legs: holds.iter().map(|x| encode_legs(&x.legs)).collect(),
            status: holds.iter().map(|x| x.status.code()).collect(),
            committed: holds
                .iter()
                .map(|x| x.committed_amount.map(Amount::micros))
                .collect(),
            created: holds.iter().map(|x| x.created_at.micros()).collect(),
            expires: holds.iter().map(|x| x.expires_at.micros()).collect(),
            resolved: holds
                .iter()
                .map(|x| x.resolved_at.map(Timestamp::micros))
                .collect(),
            metadata: holds.iter().map(|x| x.metadata.as_str()).collect(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let columns: [Column<'_>; 10] = [
            &self.id,
            &self.account,
            &self.amount,
            &self.legs,
            &self.status,
            &self.committed,
            &self.created,
            &self.expires,
            &self.resolved,
            &self.metadata,
        ];
        out.push_columns(pg, st, self.id.len(), columns);
    }
}

/// New transactions, with the digest of the write behind each external id.
struct TransactionColumns<'a> {
    id: Vec<i64>,
    account: Vec<&'a str>,
    kind: Vec<&'a str>,
    amount: Vec<i64>,
    usage: Vec<i64>,
    balance: Vec<i64>,
    postings: Vec<String>,
    sources: Vec<String>,
    created: Vec<i64>,
    metadata: Vec<&'a str>,
    lot: Vec<Option<i64>>,
    hold: Vec<Option<i64>>,
    refund_of: Vec<Option<i64>>,
    feature: Vec<Option<&'a str>>,
    quantity: Vec<Option<i64>>,
    external: Vec<Option<&'a str>>,
    digest: Vec<Option<&'a str>>,
    reason: Vec<Option<&'a str>>,
    actor: Vec<Option<&'a str>>,
    grant_source: Vec<Option<&'static str>>,
}

impl<'a> TransactionColumns<'a> {
    fn of(writes: &'a Writes<'_>) -> TransactionColumns<'a> {
        let t: &'a [Transaction] = writes.transactions;
        let digest_of = |x: &Transaction| writes.external_digests.get(&x.id).map(String::as_str);
        TransactionColumns {
            id: t.iter().map(|x| x.id.0).collect(),
            account: t.iter().map(|x| x.account.as_str()).collect(),
            kind: t.iter().map(|x| x.kind.code()).collect(),
            amount: t.iter().map(|x| x.amount.micros()).collect(),
            usage: t.iter().map(usage_of).collect(),
            balance: t.iter().map(|x| x.balance_after.micros()).collect(),
            postings: t.iter().map(|x| encode_postings(&x.postings)).collect(),
            sources: t.iter().map(|x| encode_sources(&x.sources)).collect(),
            created: t.iter().map(|x| x.created_at.micros()).collect(),
            metadata: t.iter().map(|x| x.metadata.as_str()).collect(),
            lot: t.iter().map(|x| x.lot.map(|l| l.0)).collect(),
            hold: t.iter().map(|x| x.hold.map(|h| h.0)).collect(),
            refund_of: t.iter().map(|x| x.refund_of.map(|r| r.0)).collect(),
            feature: t
                .iter()
                .map(|x| x.feature.as_ref().map(|(f, _)| f.as_str()))
                .collect(),
            quantity: t
                .iter()
                .map(|x| x.feature.as_ref().map(|(_, q)| q.micros()))
                .collect(),
            external: t
                .iter()
                .map(|x| x.external_id.as_ref().map(ExternalId::as_str))
                .collect(),
            digest: t.iter().map(digest_of).collect(),
            reason: t.iter().map(|x| x.reason.as_deref()).collect(),
            actor: t.iter().map(|x| x.actor.as_deref()).collect(),
            grant_source: writes.grant_sources(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let columns: [Column<'_>; 20] = [
            &self.id,
            &self.account,
            &self.kind,
            &self.amount,
            &self.usage,
            &self.balance,
            &self.postings,
            &self.sources,
            &self.created,
            &self.metadata,
            &self.lot,
            &self.hold,
            &self.refund_of,
            &self.feature,
            &self.quantity,
            &self.external,
            &self.digest,
            &self.reason,
            &self.actor,
            &self.grant_source,
        ];
        out.push_columns(pg, st, self.id.len(), columns);
    }
}

/// Features set, each once with the last price the batch set.
struct FeatureColumns<'a> {
    id: Vec<&'a str>,
    price: Vec<i64>,
    updated: Vec<i64>,
}

impl<'a> FeatureColumns<'a> {
    fn of(features: &'a [Feature]) -> FeatureColumns<'a> {
        let mut features: Vec<&Feature> = features.iter().collect();
        features.sort_by(|a, b| a.id.cmp(&b.id));
        // Several puts of one feature in a batch: the last one counts.
        features.dedup_by(|later, earlier| {
            if later.id == earlier.id {
                *earlier = *later;
                true
            } else {
                false
            }
        });
        FeatureColumns {
            id: features.iter().map(|f| f.id.as_str()).collect(),
            price: features
                .iter()
                .map(|f| f.credits_per_unit.micros())
                .collect(),
            updated: features.iter().map(|f| f.updated_at.micros()).collect(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let columns: [Column<'_>; 3] = [&self.id, &self.price, &self.updated];
        out.push_columns(pg, st, self.id.len(), columns);
    }
}

/// Records written: every one touched, those stored, those deleted, and the
/// lookups of those stored.
struct RecordColumns<'a> {
    touched_kind: Vec<&'a str>,
    touched_id: Vec<&'a str>,
    stored_kind: Vec<&'a str>,
    stored_id: Vec<&'a str>,
    version: Vec<i64>,
    body: Vec<&'a str>,
    created: Vec<i64>,
    updated: Vec<i64>,
    deleted_kind: Vec<&'a str>,
    deleted_id: Vec<&'a str>,
    lookup_kind: Vec<&'a str>,
    lookup_name: Vec<&'a str>,
    lookup_value: Vec<&'a str>,
    lookup_id: Vec<&'a str>,
    lookup_unique: Vec<bool>,
}

impl<'a> RecordColumns<'a> {
    fn of(records: &[(&'a RecordKey, Option<&'a Record>)]) -> RecordColumns<'a> {
        let stored: Vec<&Record> = records.iter().filter_map(|(_, r)| *r).collect();
        let (deleted_kind, deleted_id) = records
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|((k, i), _)| (k.as_str(), i.as_str()))
            .unzip();
        let indexed: Vec<(&Record, &Lookup)> = stored
            .iter()
            .flat_map(|r| r.lookups.iter().map(move |l| (*r, l)))
            .collect();
        RecordColumns {
            touched_kind: records.iter().map(|((k, _), _)| k.as_str()).collect(),
            touched_id: records.iter().map(|((_, i), _)| i.as_str()).collect(),
            stored_kind: stored.iter().map(|r| r.kind.as_str()).collect(),
            stored_id: stored.iter().map(|r| r.id.as_str()).collect(),
            version: stored.iter().map(|r| r.version as i64).collect(),
            body: stored.iter().map(|r| r.body.as_str()).collect(),
            created: stored.iter().map(|r| r.created_at.micros()).collect(),
            updated: stored.iter().map(|r| r.updated_at.micros()).collect(),
            deleted_kind,
            deleted_id,
            lookup_kind: indexed.iter().map(|(r, _)| r.kind.as_str()).collect(),
            lookup_name: indexed.iter().map(|(_, l)| l.name.as_str()).collect(),
            lookup_value: indexed.iter().map(|(_, l)| l.value.as_str()).collect(),
            lookup_id: indexed.iter().map(|(r, _)| r.id.as_str()).collect(),
            lookup_unique: indexed.iter().map(|(_, l)| l.unique).collect(),
        }
    }

    /// Adds each non-empty write, in the order they run.
    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p SideWrites<Statement>) {
        // Lookups go first, so that a unique value moving from one record to
        // another in the batch is never held by both.
        out.push_columns(
            pg,
            &st.forget_lookups,
            self.touched_kind.len(),
            [&self.touched_kind, &self.touched_id],
        );
        out.push_columns(
            pg,
            &st.upsert_records,
            self.stored_kind.len(),
            [
                &self.stored_kind,
                &self.stored_id,
                &self.version,
                &self.body,
                &self.created,
                &self.updated,
            ],
        );
        out.push_columns(
            pg,
            &st.delete_records,
            self.deleted_kind.len(),
            [&self.deleted_kind, &self.deleted_id],
        );
        out.push_columns(
            pg,
            &st.insert_lookups,
            self.lookup_kind.len(),
            [
                &self.lookup_kind,
                &self.lookup_name,
                &self.lookup_value,
                &self.lookup_id,
                &self.lookup_unique,
            ],
        );
    }
}

/// Gateway calls recorded.
struct CallColumns<'a> {
    id: Vec<&'a str>,
    account: Vec<&'a str>,
    key: Vec<Option<&'a str>>,
    project: Vec<Option<&'a str>>,
    provider: Vec<&'a str>,
    model: Vec<&'a str>,
    mode: Vec<&'a str>,
    /// Input, cached, cache-write, output and reasoning tokens.
    tokens: [Vec<i64>; 5],
    cost: Vec<i64>,
    list_cost: Vec<i64>,
    status: Vec<i64>,
    outcome: Vec<&'a str>,
    latency: Vec<i64>,
    tx: Vec<Option<i64>>,
    at: Vec<i64>,
}

impl<'a> CallColumns<'a> {
    fn of(calls: &'a [Call]) -> CallColumns<'a> {
        CallColumns {
            id: calls.iter().map(|c| c.id.as_str()).collect(),
            account: calls.iter().map(|c| c.account.as_str()).collect(),
            key: calls.iter().map(|c| c.key_id.as_deref()).collect(),
            project: calls.iter().map(|c| c.project.as_deref()).collect(),
            provider: calls.iter().map(|c| c.provider.as_str()).collect(),
            model: calls.iter().map(|c| c.model.as_str()).collect(),
            mode: calls.iter().map(|c| c.mode.as_str()).collect(),
            tokens: [
                calls.iter().map(|c| c.tokens.input).collect(),
                calls.iter().map(|c| c.tokens.cached).collect(),
                calls.iter().map(|c| c.tokens.cache_write).collect(),
                calls.iter().map(|c| c.tokens.output).collect(),
                calls.iter().map(|c| c.tokens.reasoning).collect(),
            ],
            cost: calls.iter().map(|c| c.cost.micros()).collect(),
            list_cost: calls.iter().map(|c| c.list_cost.micros()).collect(),
            status: calls.iter().map(|c| i64::from(c.status)).collect(),
            outcome: calls.iter().map(|c| c.outcome.as_str()).collect(),
            latency: calls.iter().map(|c| c.latency_ms).collect(),
            tx: calls.iter().map(|c| c.tx.map(|t| t.0)).collect(),
            at: calls.iter().map(|c| c.at.micros()).collect(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let [input, cached, cache_write, output, reasoning] = &self.tokens;
        out.push_execute(async move {
            pg.execute(
                st,
                &[
                    &self.id,
                    &self.account,
                    &self.key,
                    &self.project,
                    &self.provider,
                    &self.model,
                    &self.mode,
                    input,
                    cached,
                    cache_write,
                    output,
                    reasoning,
                    &self.cost,
                    &self.list_cost,
                    &self.status,
                    &self.outcome,
                    &self.latency,
                    &self.tx,
                    &self.at,
                ],
            )
            .await
        });
    }
}

/// What the calls add to the hourly rollup, one row per bucket.
struct BucketColumns<'a> {
    account: Vec<&'a str>,
    hour: Vec<i64>,
    model: Vec<&'a str>,
    key: Vec<&'a str>,
    project: Vec<&'a str>,
    mode: Vec<&'a str>,
    calls: Vec<i64>,
    /// Input, cached, cache-write, output and reasoning tokens.
    tokens: [Vec<i64>; 5],
    cost: Vec<i64>,
    list_cost: Vec<i64>,
}

impl<'a> BucketColumns<'a> {
    fn of(buckets: &'a [(AccountId, Bucket)]) -> BucketColumns<'a> {
        BucketColumns {
            account: buckets.iter().map(|(a, _)| a.as_str()).collect(),
            hour: buckets.iter().map(|(_, b)| b.hour).collect(),
            model: buckets.iter().map(|(_, b)| b.model.as_str()).collect(),
            key: buckets.iter().map(|(_, b)| b.key_id.as_str()).collect(),
            project: buckets.iter().map(|(_, b)| b.project.as_str()).collect(),
            mode: buckets.iter().map(|(_, b)| b.mode.as_str()).collect(),
            calls: buckets.iter().map(|(_, b)| b.calls).collect(),
            tokens: [
                buckets.iter().map(|(_, b)| b.tokens.input).collect(),
                buckets.iter().map(|(_, b)| b.tokens.cached).collect(),
                buckets.iter().map(|(_, b)| b.tokens.cache_write).collect(),
                buckets.iter().map(|(_, b)| b.tokens.output).collect(),
                buckets.iter().map(|(_, b)| b.tokens.reasoning).collect(),
            ],
            cost: buckets.iter().map(|(_, b)| b.cost.micros()).collect(),
            list_cost: buckets.iter().map(|(_, b)| b.list_cost.micros()).collect(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p Statement) {
        let [input, cached, cache_write, output, reasoning] = &self.tokens;
        out.push_execute(async move {
            pg.execute(
                st,
                &[
                    &self.account,
                    &self.hour,
                    &self.model,
                    &self.key,
                    &self.project,
                    &self.mode,
                    &self.calls,
                    input,
                    cached,
                    cache_write,
                    output,
                    reasoning,
                    &self.cost,
                    &self.list_cost,
                ],
            )
            .await
        });
    }
}

/// The answers kept under idempotency keys, and the keys claimed for
/// commands whose answer is not kept (a bug), to release.
struct KeyColumns<'a> {
    key: Vec<&'a str>,
    fingerprint: Vec<&'a [u8]>,
    status: Vec<i64>,
    body: Vec<&'a [u8]>,
    unkept: Vec<&'a str>,
    now: i64,
}

impl<'a> KeyColumns<'a> {
    fn of(writes: &Writes<'a>, claimed: &'a HashSet<String>, now: Timestamp) -> KeyColumns<'a> {
        let kept = &writes.idempotency;
        let key: Vec<&str> = kept.iter().map(|(k, _, _)| *k).collect();
        let kept_keys: HashSet<&str> = key.iter().copied().collect();
        KeyColumns {
            fingerprint: kept.iter().map(|(_, f, _)| *f).collect(),
            status: kept.iter().map(|(_, _, r)| i64::from(r.status)).collect(),
            body: kept.iter().map(|(_, _, r)| r.body.as_slice()).collect(),
            unkept: claimed
                .iter()
                .map(String::as_str)
                .filter(|k| !kept_keys.contains(k))
                .collect(),
            key,
            now: now.micros(),
        }
    }

    fn send<'p>(&'p self, out: &mut Pipeline<'p>, pg: &'p Client, st: &'p SideWrites<Statement>) {
        out.push_columns(
            pg,
            &st.keep_responses,
            self.key.len(),
            [
                &self.key,
                &self.fingerprint,
                &self.status,
                &self.body,
                &self.now,
            ],
        );
        out.push_columns(pg, &st.release_keys, self.unkept.len(), [&self.unkept]);
    }
}
