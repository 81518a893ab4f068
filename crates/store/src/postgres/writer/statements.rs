//! The writers' statements, each named beside its SQL, grouped by the round
//! trip that sends them.

use std::sync::OnceLock;

use tokio_postgres::Statement;

use super::Failure;
use crate::rows::{ACCOUNT_COLUMNS, HOLD_COLUMNS, LOT_COLUMNS, RECORD_COLUMNS, TX_COLUMNS};

/// Every statement a batch may send. `S` is the SQL text ([`sql`]) or the
/// statement prepared on a connection ([`prepare`]).
pub(super) struct Statements<S> {
    /// Round trip 1, before any lock.
    pub lookups: Lookups<S>,
    /// Round trip 2: the locks and what they protect.
    pub reads: LockedReads<S>,
    /// Round trip 3: the ledger's rows.
    pub ledger: LedgerWrites<S>,
    /// Round trip 3: what is written beside the ledger.
    pub side: SideWrites<S>,
}

/// Idempotency keys claimed, and what the commands name looked up by id.
pub(super) struct Lookups<S> {
    pub claim_keys: S,
    pub stored_keys: S,
    pub hold_owners: S,
    pub lot_owners: S,
    pub transactions: S,
    pub features: S,
}

/// The advisory locks, what they protect, and fresh ids.
pub(super) struct LockedReads<S> {
    pub lock_accounts: S,
    pub read_accounts: S,
    pub live_lots: S,
    pub pending_holds: S,
    pub holds_by_id: S,
    pub refunded: S,
    pub allocate_ids: S,
    pub lots_by_id: S,
    pub externals: S,
    pub external_lots: S,
    pub records: S,
    pub record_lookups: S,
    pub lookup_owners: S,
}

/// Accounts, lots, holds, transactions and features, each written in bulk.
pub(super) struct LedgerWrites<S> {
    pub insert_accounts: S,
    pub update_accounts: S,
    pub insert_lots: S,
    pub update_lots: S,
    pub upsert_holds: S,
    pub insert_transactions: S,
    pub upsert_features: S,
}

/// Records and their lookups, gateway calls and their hourly rollup, and
/// the answers kept for idempotency keys.
pub(super) struct SideWrites<S> {
    pub forget_lookups: S,
    pub upsert_records: S,
    pub delete_records: S,
    pub insert_lookups: S,
    pub insert_calls: S,
    pub add_buckets: S,
    pub keep_responses: S,
    pub release_keys: S,
}

/// The SQL of every statement, built once.
pub(super) fn sql() -> &'static Statements<String> {
    static SQL: OnceLock<Statements<String>> = OnceLock::new();
    SQL.get_or_init(|| Statements {
        lookups: Lookups::sql(),
        reads: LockedReads::sql(),
        ledger: LedgerWrites::sql(),
        side: SideWrites::sql(),
    })
}

/// Every statement prepared on `client`, from the driver's per-connection
/// cache after the first batch.
pub(super) async fn prepare(
    client: &deadpool_postgres::Client,
) -> Result<Statements<Statement>, Failure> {
    let sql = sql();
    Ok(Statements {
        lookups: sql.lookups.prepare(client).await?,
        reads: sql.reads.prepare(client).await?,
        ledger: sql.ledger.prepare(client).await?,
        side: sql.side.prepare(client).await?,
    })
}

/// The SQL of every statement with its name, for checks of their plans.
#[cfg(test)]
pub(crate) fn named_sql() -> Vec<(&'static str, &'static str)> {
    let sql = sql();
    let mut named = sql.lookups.named();
    named.extend(sql.reads.named());
    named.extend(sql.ledger.named());
    named.extend(sql.side.named());
    named
        .into_iter()
        .map(|(name, sql)| (name, sql.as_str()))
        .collect()
}

async fn prepared(
    client: &deadpool_postgres::Client,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    client.prepare_cached(sql).await
}

/// A column list with every column prefixed by a table's alias.
fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Lookups<String> {
    fn sql() -> Self {
        Lookups {
            claim_keys:
                "INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at) \
                 SELECT k, f, 0, '', $3 FROM UNNEST($1::text[], $2::bytea[]) AS u(k, f) \
                 ON CONFLICT (key) DO NOTHING RETURNING key"
                    .to_owned(),
            stored_keys:
                "SELECT key, fingerprint, status, body FROM idempotency_keys WHERE key = ANY($1)"
                    .to_owned(),
            hold_owners: "SELECT id, account_id FROM holds WHERE id = ANY($1)".to_owned(),
            lot_owners: "SELECT id, account_id FROM lots WHERE id = ANY($1)".to_owned(),
            transactions: format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = ANY($1)"),
            features: "SELECT id, credits_per_unit, updated_at FROM features WHERE id = ANY($1)"
                .to_owned(),
        }
    }

    async fn prepare(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<Lookups<Statement>, tokio_postgres::Error> {
        Ok(Lookups {
            claim_keys: prepared(client, &self.claim_keys).await?,
            stored_keys: prepared(client, &self.stored_keys).await?,
            hold_owners: prepared(client, &self.hold_owners).await?,
            lot_owners: prepared(client, &self.lot_owners).await?,
            transactions: prepared(client, &self.transactions).await?,
            features: prepared(client, &self.features).await?,
        })
    }

    #[cfg(test)]
    fn named(&self) -> Vec<(&'static str, &String)> {
        // Taken apart without `..`, so that a statement added to the group
        // and left out here does not compile.
        let Lookups {
            claim_keys,
            stored_keys,
            hold_owners,
            lot_owners,
            transactions,
            features,
        } = self;
        vec![
            ("claim_keys", claim_keys),
            ("stored_keys", stored_keys),
            ("hold_owners", hold_owners),
            ("lot_owners", lot_owners),
            ("transactions", transactions),
            ("features", features),
        ]
    }
}

impl LockedReads<String> {
    fn sql() -> Self {
        LockedReads {
            lock_accounts: "SELECT pg_advisory_xact_lock(k) FROM UNNEST($1::int8[]) AS k"
                .to_owned(),
            read_accounts: format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1)"),
            live_lots: format!(
                "SELECT {LOT_COLUMNS} FROM lots \
                 WHERE (account_id = ANY($1) AND live) OR id = ANY($2)"
            ),
            pending_holds: format!(
                "SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = ANY($1) AND status = 'pending' \
                 ORDER BY account_id"
            ),
            holds_by_id: format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ANY($1)"),
            refunded: "SELECT refund_of, sum(usage)::bigint FROM transactions \
                 WHERE refund_of = ANY($1) GROUP BY refund_of"
                .to_owned(),
            allocate_ids: "SELECT \
                 ARRAY(SELECT nextval('transaction_ids') FROM generate_series(1, $1::int8)), \
                 ARRAY(SELECT nextval('lot_ids') FROM generate_series(1, $2::int8)), \
                 ARRAY(SELECT nextval('hold_ids') FROM generate_series(1, $3::int8))"
                .to_owned(),
            lots_by_id: format!("SELECT {LOT_COLUMNS} FROM lots WHERE id = ANY($1)"),
            externals: format!(
                "SELECT {}, t.external_digest \
                 FROM UNNEST($1::text[], $2::text[]) AS u(a, e) \
                 JOIN transactions t ON t.account_id = u.a AND t.external_id = u.e \
                 WHERE t.external_id IS NOT NULL",
                qualified(TX_COLUMNS, "t")
            ),
            external_lots: format!(
                "SELECT {} FROM UNNEST($1::text[], $2::text[]) AS u(a, e) \
                 JOIN transactions t ON t.account_id = u.a AND t.external_id = u.e \
                 JOIN lots l ON l.id = t.lot_id \
                 WHERE t.external_id IS NOT NULL",
                qualified(LOT_COLUMNS, "l")
            ),
            records: format!(
                "SELECT {} FROM UNNEST($1::text[], $2::text[]) AS u(k, i) \
                 JOIN records r ON r.kind = u.k AND r.id = u.i",
                qualified(RECORD_COLUMNS, "r")
            ),
            record_lookups: "SELECT l.kind, l.id, l.name, l.value, l.is_unique \
                 FROM UNNEST($1::text[], $2::text[]) AS u(k, i) \
                 JOIN record_lookups l ON l.kind = u.k AND l.id = u.i"
                .to_owned(),
            lookup_owners: "SELECT l.kind, l.name, l.value, l.id \
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, n, v) \
                 JOIN record_lookups l ON l.kind = u.k AND l.name = u.n AND l.value = u.v \
                 WHERE l.is_unique"
                .to_owned(),
        }
    }

    async fn prepare(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<LockedReads<Statement>, tokio_postgres::Error> {
        Ok(LockedReads {
            lock_accounts: prepared(client, &self.lock_accounts).await?,
            read_accounts: prepared(client, &self.read_accounts).await?,
            live_lots: prepared(client, &self.live_lots).await?,
            pending_holds: prepared(client, &self.pending_holds).await?,
            holds_by_id: prepared(client, &self.holds_by_id).await?,
            refunded: prepared(client, &self.refunded).await?,
            allocate_ids: prepared(client, &self.allocate_ids).await?,
            lots_by_id: prepared(client, &self.lots_by_id).await?,
            externals: prepared(client, &self.externals).await?,
            external_lots: prepared(client, &self.external_lots).await?,
            records: prepared(client, &self.records).await?,
            record_lookups: prepared(client, &self.record_lookups).await?,
            lookup_owners: prepared(client, &self.lookup_owners).await?,
        })
    }

    #[cfg(test)]
    fn named(&self) -> Vec<(&'static str, &String)> {
        let LockedReads {
            lock_accounts,
            read_accounts,
            live_lots,
            pending_holds,
            holds_by_id,
            refunded,
            allocate_ids,
            lots_by_id,
            externals,
            external_lots,
            records,
            record_lookups,
            lookup_owners,
        } = self;
        vec![
            ("lock_accounts", lock_accounts),
            ("read_accounts", read_accounts),
            ("live_lots", live_lots),
            ("pending_holds", pending_holds),
            ("holds_by_id", holds_by_id),
            ("refunded", refunded),
            ("allocate_ids", allocate_ids),
            ("lots_by_id", lots_by_id),
            ("externals", externals),
            ("external_lots", external_lots),
            ("records", records),
            ("record_lookups", record_lookups),
            ("lookup_owners", lookup_owners),
        ]
    }
}

impl LedgerWrites<String> {
    fn sql() -> Self {
        LedgerWrites {
            insert_accounts: "INSERT INTO accounts \
                     (id, name, metadata, overdraft_limit, debt, created_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], \
                                      $5::int8[], $6::int8[])"
                .to_owned(),
            update_accounts: "UPDATE accounts a SET name = u.name, metadata = u.metadata, \
                     overdraft_limit = u.overdraft_limit, debt = u.debt \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) \
                     AS u(id, name, metadata, overdraft_limit, debt) WHERE a.id = u.id"
                .to_owned(),
            insert_lots: "INSERT INTO lots (id, account_id, source, priority, amount, remaining, \
                     effective_at, expires_at, voided_at, created_at, metadata, external_id, live) \
                 SELECT *, r > 0 FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], \
                     $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], \
                     $11::text[], $12::text[]) \
                     AS u(i, a, s, p, m, r, e, x, v, c, d, ext)"
                .to_owned(),
            update_lots: "UPDATE lots l SET remaining = u.r, voided_at = u.v, live = u.r > 0 \
                 FROM UNNEST($1::int8[], $2::int8[], $3::int8[]) AS u(i, r, v) WHERE l.id = u.i"
                .to_owned(),
            upsert_holds: "INSERT INTO holds (id, account_id, amount, legs, status, \
                     committed_amount, created_at, expires_at, resolved_at, metadata) \
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[], \
                                      $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::text[]) \
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, \
                     committed_amount = EXCLUDED.committed_amount, \
                     resolved_at = EXCLUDED.resolved_at"
                .to_owned(),
            insert_transactions: "INSERT INTO transactions (id, account_id, kind, amount, usage, \
                     balance_after, postings, sources, created_at, metadata, lot_id, hold_id, \
                     refund_of, feature_id, quantity, external_id, external_digest, reason, actor, \
                     grant_source) \
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
                     $6::int8[], $7::text[], $8::text[], $9::int8[], $10::text[], $11::int8[], \
                     $12::int8[], $13::int8[], $14::text[], $15::int8[], $16::text[], $17::text[], \
                     $18::text[], $19::text[], $20::text[])"
                .to_owned(),
            upsert_features: "INSERT INTO features (id, credits_per_unit, updated_at) \
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[]) \
                 ON CONFLICT (id) DO UPDATE SET credits_per_unit = EXCLUDED.credits_per_unit, \
                                                updated_at = EXCLUDED.updated_at"
                .to_owned(),
        }
    }

    async fn prepare(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<LedgerWrites<Statement>, tokio_postgres::Error> {
        Ok(LedgerWrites {
            insert_accounts: prepared(client, &self.insert_accounts).await?,
            update_accounts: prepared(client, &self.update_accounts).await?,
            insert_lots: prepared(client, &self.insert_lots).await?,
            update_lots: prepared(client, &self.update_lots).await?,
            upsert_holds: prepared(client, &self.upsert_holds).await?,
            insert_transactions: prepared(client, &self.insert_transactions).await?,
            upsert_features: prepared(client, &self.upsert_features).await?,
        })
    }

    #[cfg(test)]
    fn named(&self) -> Vec<(&'static str, &String)> {
        let LedgerWrites {
            insert_accounts,
            update_accounts,
            insert_lots,
            update_lots,
            upsert_holds,
            insert_transactions,
            upsert_features,
        } = self;
        vec![
            ("insert_accounts", insert_accounts),
            ("update_accounts", update_accounts),
            ("insert_lots", insert_lots),
            ("update_lots", update_lots),
            ("upsert_holds", upsert_holds),
            ("insert_transactions", insert_transactions),
            ("upsert_features", upsert_features),
        ]
    }
}

impl SideWrites<String> {
    fn sql() -> Self {
        SideWrites {
            forget_lookups: "DELETE FROM record_lookups l \
                 USING UNNEST($1::text[], $2::text[]) AS u(k, i) \
                 WHERE l.kind = u.k AND l.id = u.i"
                .to_owned(),
            upsert_records:
                "INSERT INTO records (kind, id, version, body, created_at, updated_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], \
                                      $6::int8[]) \
                 ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version, \
                     body = EXCLUDED.body, updated_at = EXCLUDED.updated_at"
                    .to_owned(),
            delete_records:
                "DELETE FROM records r USING UNNEST($1::text[], $2::text[]) AS u(k, i) \
                 WHERE r.kind = u.k AND r.id = u.i"
                    .to_owned(),
            insert_lookups: "INSERT INTO record_lookups (kind, name, value, id, is_unique) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[])"
                .to_owned(),
            insert_calls: "INSERT INTO gateway_calls (id, account_id, key_id, project, provider, \
                     model, mode, input, cached, cache_write, output, reasoning, cost, list_cost, \
                     status, outcome, latency_ms, tx_id, at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
                     $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::text[], $17::int8[], \
                     $18::int8[], $19::int8[])"
                .to_owned(),
            add_buckets: "INSERT INTO gateway_usage_hourly AS h (account_id, hour, model, key_id, \
                     project, mode, calls, input, cached, cache_write, output, reasoning, cost, \
                     list_cost) \
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
                     $12::int8[], $13::int8[], $14::int8[]) \
                 ON CONFLICT (account_id, hour, model, key_id, project, mode) DO UPDATE SET \
                     calls = h.calls + EXCLUDED.calls, input = h.input + EXCLUDED.input, \
                     cached = h.cached + EXCLUDED.cached, \
                     cache_write = h.cache_write + EXCLUDED.cache_write, \
                     output = h.output + EXCLUDED.output, \
                     reasoning = h.reasoning + EXCLUDED.reasoning, \
                     cost = h.cost + EXCLUDED.cost, list_cost = h.list_cost + EXCLUDED.list_cost"
                .to_owned(),
            keep_responses: "UPDATE idempotency_keys k SET fingerprint = u.f, status = u.s, \
                     body = u.b, created_at = $5 \
                 FROM UNNEST($1::text[], $2::bytea[], $3::int8[], $4::bytea[]) AS u(key, f, s, b) \
                 WHERE k.key = u.key"
                .to_owned(),
            release_keys: "DELETE FROM idempotency_keys WHERE key = ANY($1)".to_owned(),
        }
    }

    async fn prepare(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<SideWrites<Statement>, tokio_postgres::Error> {
        Ok(SideWrites {
            forget_lookups: prepared(client, &self.forget_lookups).await?,
            upsert_records: prepared(client, &self.upsert_records).await?,
            delete_records: prepared(client, &self.delete_records).await?,
            insert_lookups: prepared(client, &self.insert_lookups).await?,
            insert_calls: prepared(client, &self.insert_calls).await?,
            add_buckets: prepared(client, &self.add_buckets).await?,
            keep_responses: prepared(client, &self.keep_responses).await?,
            release_keys: prepared(client, &self.release_keys).await?,
        })
    }

    #[cfg(test)]
    fn named(&self) -> Vec<(&'static str, &String)> {
        let SideWrites {
            forget_lookups,
            upsert_records,
            delete_records,
            insert_lookups,
            insert_calls,
            add_buckets,
            keep_responses,
            release_keys,
        } = self;
        vec![
            ("forget_lookups", forget_lookups),
            ("upsert_records", upsert_records),
            ("delete_records", delete_records),
            ("insert_lookups", insert_lookups),
            ("insert_calls", insert_calls),
            ("add_buckets", add_buckets),
            ("keep_responses", keep_responses),
            ("release_keys", release_keys),
        ]
    }
}
