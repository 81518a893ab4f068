//! Queries: reads for the API, and the bulk loads a write batch needs.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use ledger::{
    Account, AccountId, Book, Feature, FeatureId, Hold, HoldId, Lot, LotId, Timestamp, Transaction,
    TxId,
};

use crate::records::{Lookup, RECORD_PAGE_MAX, Record, RecordFilter, RecordQuery};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::pg_error;
use crate::rows::{
    ACCOUNT_COLUMNS, HOLD_COLUMNS, LOT_COLUMNS, RECORD_COLUMNS, TX_COLUMN_COUNT, TX_COLUMNS,
    account_from_row, feature_from_row, hold_from_row, lot_from_row, record_from_row, tx_from_row,
};
use crate::{
    ACCOUNT_TABLES, AuditReport, PENDING_HOLDS_SQL, PendingHolds, StoreError, StoredResponse,
    TxFilter, orphans_query,
};

/// Runs a statement prepared once per connection.
pub async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(pg_error)?;
    c.query(&statement, params).await.map_err(pg_error)
}

fn map<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

pub async fn account(
    c: &impl GenericClient,
    id: &AccountId,
) -> Result<Option<Account>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
    Ok(map(rows(c, &sql, &[&id.as_str()]).await?, account_from_row)?.pop())
}

pub async fn accounts(
    c: &impl GenericClient,
    after: Option<&AccountId>,
    limit: usize,
) -> Result<Vec<Account>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > $1 ORDER BY id LIMIT $2");
    let after = after.map_or("", AccountId::as_str);
    map(
        rows(c, &sql, &[&after, &(limit as i64)]).await?,
        account_from_row,
    )
}

pub async fn lot(c: &impl GenericClient, id: LotId) -> Result<Option<Lot>, StoreError> {
    let sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE id = $1");
    Ok(map(rows(c, &sql, &[&id.0]).await?, lot_from_row)?.pop())
}

/// The search of accounts whose searchable text is like `$1`, after `$2`,
/// at most `$3`: the filter repeats the expression of the trigram index
/// `accounts_search`, so that the index serves it.
pub(crate) fn search_accounts_sql() -> String {
    format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts \
         WHERE (id || ' ' || coalesce(name, '') || ' ' || metadata) ILIKE $1 \
           AND id > $2 ORDER BY id LIMIT $3"
    )
}

/// Accounts whose searchable text (id, name, metadata) holds `text`, in
/// any case, read through the trigram index `accounts_search`.
pub async fn search_accounts(
    c: &impl GenericClient,
    text: &str,
    after: Option<&AccountId>,
    limit: usize,
) -> Result<Vec<Account>, StoreError> {
    let sql = search_accounts_sql();
    let mut pattern = String::from("%");
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    let after = after.map_or("", AccountId::as_str);
    map(
        rows(c, &sql, &[&pattern, &after, &(limit as i64)]).await?,
        account_from_row,
    )
}

pub async fn lots(
    c: &impl GenericClient,
    account: &AccountId,
    before: Option<LotId>,
    limit: usize,
) -> Result<Vec<Lot>, StoreError> {
    let sql = format!(
        "SELECT {LOT_COLUMNS} FROM lots WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    );
    let before = before.map_or(i64::MAX, |l| l.0);
    map(
        rows(c, &sql, &[&account.as_str(), &before, &(limit as i64)]).await?,
        lot_from_row,
    )
}

pub async fn hold(c: &impl GenericClient, id: HoldId) -> Result<Option<Hold>, StoreError> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1");
    Ok(map(rows(c, &sql, &[&id.0]).await?, hold_from_row)?.pop())
}

/// A page of `filter`'s holds, read through `holds_by_account`.
pub async fn holds(
    c: &impl GenericClient,
    filter: &crate::HoldFilter,
) -> Result<Vec<Hold>, StoreError> {
    let sql = format!(
        "SELECT {HOLD_COLUMNS} FROM holds \
         WHERE account_id = $1 AND id < $2 AND {} ORDER BY id DESC LIMIT $4",
        filter.status_sql("$3")
    );
    let before = filter.before.map_or(i64::MAX, |h| h.0);
    let limit = filter.limit.min(crate::PAGE_LIMIT_MAX) as i64;
    map(
        rows(
            c,
            &sql,
            &[
                &filter.account.as_str(),
                &before,
                &filter.now.micros(),
                &limit,
            ],
        )
        .await?,
        hold_from_row,
    )
}

pub async fn transaction(
    c: &impl GenericClient,
    id: TxId,
) -> Result<Option<Transaction>, StoreError> {
    let sql = format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = $1");
    Ok(map(rows(c, &sql, &[&id.0]).await?, tx_from_row)?.pop())
}

/// The oldest database transaction still running: every one below it has
/// committed or rolled back.
async fn oldest_running(c: &impl GenericClient) -> Result<i64, StoreError> {
    let found = rows(
        c,
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        &[],
    )
    .await?;
    let row = found
        .first()
        .ok_or_else(|| StoreError::Corrupt("no snapshot".into()))?;
    row.try_get(0)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Where the journal ends: at the next database transaction to begin, after
/// every one committed so far.
pub async fn journal_head(c: &impl GenericClient) -> Result<crate::JournalPosition, StoreError> {
    let found = rows(
        c,
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
        &[],
    )
    .await?;
    let row = found
        .first()
        .ok_or_else(|| StoreError::Corrupt("no snapshot".into()))?;
    Ok(crate::JournalPosition {
        commit: row
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        id: 0,
    })
}

/// The transactions committed after `after`, in the order of the database
/// transactions that wrote them (`xid`, migration 8), then of id: only those
/// below the oldest database transaction still running, so a batch that drew
/// lower ids but commits later is read after, never skipped.
pub async fn journal_after(
    c: &impl GenericClient,
    after: crate::JournalPosition,
    limit: usize,
) -> Result<(Vec<Transaction>, crate::JournalPosition), StoreError> {
    let limit = limit.clamp(1, crate::JOURNAL_PAGE_MAX);
    // Read first: whatever is below it has finished, so the next statement's
    // snapshot sees all of it.
    let horizon = oldest_running(c).await?;
    let sql = format!(
        "SELECT {TX_COLUMNS}, xid::text::bigint FROM transactions \
         WHERE xid IS NOT NULL AND (xid, id) > ($1::text::xid8, $2) AND xid < $3::text::xid8 \
         ORDER BY xid, id LIMIT $4"
    );
    let commit = after.commit.to_string();
    let until = horizon.to_string();
    let found = rows(c, &sql, &[&commit, &after.id, &until, &(limit as i64)]).await?;
    let mut txs = Vec::with_capacity(found.len());
    let mut next = after;
    for row in &found {
        let xid: i64 = row
            .try_get(TX_COLUMN_COUNT)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        txs.push(tx_from_row(row)?);
        next = crate::JournalPosition {
            commit: xid,
            id: row
                .try_get(0)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        };
    }
    // A page not full has read everything below the horizon.
    if found.len() < limit && horizon > next.commit {
        next = crate::JournalPosition {
            commit: horizon,
            id: 0,
        };
    }
    Ok((txs, next))
}

/// A page of `filter`'s transactions. Filtered by source, it is read from
/// the index of grants by source (`transactions_grants_by_source`), so an
/// account's consumes are never read for it.
pub async fn transactions(
    c: &impl GenericClient,
    filter: &TxFilter,
) -> Result<Vec<Transaction>, StoreError> {
    let kinds: Option<Vec<&str>> = filter
        .kinds_kept()
        .map(|kinds| kinds.iter().map(|k| k.code()).collect());
    if kinds.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let sources: Vec<&str> = filter.sources.iter().map(|s| s.code()).collect();
    let sql = transactions_sql(!sources.is_empty());
    let before = filter.before.map_or(i64::MAX, |t| t.0);
    let from = filter.from.map_or(i64::MIN, Timestamp::micros);
    let to = filter.to.map_or(i64::MAX, Timestamp::micros);
    let limit = filter.limit.min(crate::PAGE_LIMIT_MAX) as i64;
    let account = filter.account.as_str();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&account, &before, &kinds, &from, &to, &limit];
    if !sources.is_empty() {
        params.push(&sources);
    }
    map(rows(c, &sql, &params).await?, tx_from_row)
}

/// The statement of a journal page: its parameters are the account, the
/// cursor, the kinds (or null), the time window and the page size, and
/// `by_source` adds the sources, which the index of grants answers.
pub(crate) fn transactions_sql(by_source: bool) -> String {
    let by_source = if by_source {
        "AND grant_source IS NOT NULL AND grant_source = ANY($7)"
    } else {
        ""
    };
    format!(
        "SELECT {TX_COLUMNS} FROM transactions \
         WHERE account_id = $1 AND id < $2 AND ($3::text[] IS NULL OR kind = ANY($3)) \
           AND created_at >= $4 AND created_at < $5 {by_source} \
         ORDER BY id DESC LIMIT $6"
    )
}

/// What an account spent in `$2..$3`, read through the index of usage
/// transactions by time.
pub(crate) const USAGE_BETWEEN_SQL: &str = "SELECT coalesce(sum(usage), 0)::int8 FROM transactions \
     WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 AND usage <> 0";

pub async fn feature(
    c: &impl GenericClient,
    id: &FeatureId,
) -> Result<Option<Feature>, StoreError> {
    let sql = "SELECT id, credits_per_unit, updated_at FROM features WHERE id = $1";
    Ok(map(rows(c, sql, &[&id.as_str()]).await?, feature_from_row)?.pop())
}

pub async fn features(c: &impl GenericClient) -> Result<Vec<Feature>, StoreError> {
    let sql = "SELECT id, credits_per_unit, updated_at FROM features ORDER BY id";
    map(rows(c, sql, &[]).await?, feature_from_row)
}

/// Assembles books from what was loaded for several accounts at once.
pub fn assemble_books(
    accounts: Vec<Account>,
    lots: Vec<Lot>,
    holds: Vec<Hold>,
) -> Result<HashMap<AccountId, Book>, StoreError> {
    let mut lots_of: HashMap<AccountId, Vec<Lot>> = HashMap::new();
    for lot in lots {
        lots_of.entry(lot.account.clone()).or_default().push(lot);
    }
    let mut holds_of: HashMap<AccountId, Vec<Hold>> = HashMap::new();
    for hold in holds {
        holds_of.entry(hold.account.clone()).or_default().push(hold);
    }
    accounts
        .into_iter()
        .map(|account| {
            let id = account.id.clone();
            let book = Book::new(
                account,
                lots_of.remove(&id).unwrap_or_default(),
                holds_of.remove(&id).unwrap_or_default(),
            )
            .map_err(|r| StoreError::Corrupt(r.to_string()))?;
            Ok((id, book))
        })
        .collect()
}

/// Lots by id that a set of pending holds escrowed from but `loaded` lacks.
pub fn missing_leg_lots(holds: &[Hold], loaded: &[Lot]) -> Vec<i64> {
    let have: HashSet<LotId> = loaded.iter().map(|l| l.id).collect();
    let mut missing: Vec<i64> = holds
        .iter()
        .flat_map(|h| &h.legs)
        .map(|leg| leg.lot)
        .filter(|lot| !have.contains(lot))
        .map(|lot| lot.0)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

/// The account's book now, or rebuilt as it stood at `at`, read from one snapshot.
pub async fn book_snapshot(
    client: &mut deadpool_postgres::Client,
    id: &AccountId,
    at: Option<Timestamp>,
) -> Result<Option<Book>, StoreError> {
    if at.is_none()
        && let Some(book) = book_in_one_round_trip(client, id).await?
    {
        return Ok(book);
    }
    let tx = snapshot(client).await?;
    let book = match at {
        None => book_now(&tx, id).await?,
        Some(at) => book_at(&tx, id, at).await?,
    };
    tx.commit().await.map_err(pg_error)?;
    Ok(book)
}

/// A read-only transaction whose statements all see one snapshot.
pub async fn snapshot(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)
}

/// The account, its live lots and its pending holds as one statement, so
/// that they come from one snapshot with no transaction around them: a row's
/// first column says which it is, and its columns start at 1, 7 or 19.
fn book_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        const ACCOUNT_NULLS: &str = "NULL::text, NULL::text, NULL::text, NULL::int8, NULL::int8, \
                                     NULL::int8";
        const LOT_NULLS: &str = "NULL::int8, NULL::text, NULL::text, NULL::int8, NULL::int8, \
                                 NULL::int8, NULL::int8, NULL::int8, NULL::int8, NULL::int8, \
                                 NULL::text, NULL::text";
        const HOLD_NULLS: &str = "NULL::int8, NULL::text, NULL::int8, NULL::text, NULL::text, \
                                  NULL::int8, NULL::int8, NULL::int8, NULL::int8, NULL::text";
        format!(
            "SELECT 0, {ACCOUNT_COLUMNS}, {LOT_NULLS}, {HOLD_NULLS} FROM accounts WHERE id = $1 \
             UNION ALL \
             SELECT 1, {ACCOUNT_NULLS}, {LOT_COLUMNS}, {HOLD_NULLS} FROM lots \
             WHERE account_id = $1 AND live \
             UNION ALL \
             SELECT 2, {ACCOUNT_NULLS}, {LOT_NULLS}, {HOLD_COLUMNS} FROM holds \
             WHERE account_id = $1 AND status = 'pending'"
        )
    })
}

/// The columns of a row of [`book_sql`] from where one kind's start.
struct Shifted<'a> {
    row: &'a Row,
    by: usize,
}

impl crate::rows::Columns for Shifted<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.row.int(i + self.by)
    }
    fn int_opt(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.row.int_opt(i + self.by)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.row.text(i + self.by)
    }
    fn text_opt(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.row.text_opt(i + self.by)
    }
}

/// The current book in one statement. `None` when a pending hold escrowed
/// from a lot that is empty now, which needs a second read; the caller then
/// takes the slower path.
async fn book_in_one_round_trip(
    client: &deadpool_postgres::Client,
    id: &AccountId,
) -> Result<Option<Option<Book>>, StoreError> {
    let (mut account, mut lots, mut holds) = (None, Vec::new(), Vec::new());
    for row in rows(client, book_sql(), &[&id.as_str()]).await? {
        let kind: i32 = row
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match kind {
            0 => account = Some(account_from_row(&Shifted { row: &row, by: 1 })?),
            1 => lots.push(lot_from_row(&Shifted { row: &row, by: 7 })?),
            2 => holds.push(hold_from_row(&Shifted { row: &row, by: 19 })?),
            other => return Err(StoreError::Corrupt(format!("book row of kind {other}"))),
        }
    }
    let Some(account) = account else {
        return Ok(Some(None));
    };
    if !missing_leg_lots(&holds, &lots).is_empty() {
        return Ok(None);
    }
    Ok(Some(assemble_books(vec![account], lots, holds)?.remove(id)))
}

async fn book_now(c: &impl GenericClient, id: &AccountId) -> Result<Option<Book>, StoreError> {
    let Some(account) = account(c, id).await? else {
        return Ok(None);
    };
    let lots_sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE account_id = $1 AND live");
    let holds_sql =
        format!("SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = $1 AND status = 'pending'");
    let mut lots = map(rows(c, &lots_sql, &[&id.as_str()]).await?, lot_from_row)?;
    let holds = map(rows(c, &holds_sql, &[&id.as_str()]).await?, hold_from_row)?;
    let missing = missing_leg_lots(&holds, &lots);
    if !missing.is_empty() {
        lots.extend(lots_by_id(c, &missing).await?);
    }
    Ok(assemble_books(vec![account], lots, holds)?.remove(id))
}

/// Lots by id.
pub async fn lots_by_id(c: &impl GenericClient, ids: &[i64]) -> Result<Vec<Lot>, StoreError> {
    let sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE id = ANY($1)");
    map(rows(c, &sql, &[&ids]).await?, lot_from_row)
}

/// The account's book as it stood at `at`, rebuilt by the ledger from the
/// account's lots, holds and journal up to then.
async fn book_at(
    c: &impl GenericClient,
    id: &AccountId,
    at: Timestamp,
) -> Result<Option<Book>, StoreError> {
    let Some(account) = account(c, id).await? else {
        return Ok(None);
    };
    let at_micros = at.micros();
    let journal_sql =
        format!("SELECT {TX_COLUMNS} FROM transactions WHERE account_id = $1 AND created_at <= $2");
    let journal = map(
        rows(c, &journal_sql, &[&id.as_str(), &at_micros]).await?,
        tx_from_row,
    )?;
    let lots_sql =
        format!("SELECT {LOT_COLUMNS} FROM lots WHERE account_id = $1 AND created_at <= $2");
    let lots = map(
        rows(c, &lots_sql, &[&id.as_str(), &at_micros]).await?,
        lot_from_row,
    )?;
    let holds_sql =
        format!("SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = $1 AND created_at <= $2");
    let holds = map(
        rows(c, &holds_sql, &[&id.as_str(), &at_micros]).await?,
        hold_from_row,
    )?;
    ledger::book_at(account, lots, holds, &journal, at)
        .map(Some)
        .map_err(|reject| StoreError::Corrupt(reject.to_string()))
}

pub async fn due_accounts(
    c: &impl GenericClient,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<AccountId>, StoreError> {
    let sql = "SELECT account_id FROM holds WHERE status = 'pending' AND expires_at <= $1 \
               UNION \
               SELECT account_id FROM lots \
                WHERE live AND expires_at IS NOT NULL AND expires_at <= $1 \
               UNION \
               SELECT a.id FROM accounts a WHERE a.debt > 0 AND EXISTS ( \
                 SELECT 1 FROM lots l WHERE l.account_id = a.id AND l.live \
                   AND l.effective_at <= $1 AND l.voided_at IS NULL \
                   AND (l.expires_at IS NULL OR l.expires_at > $1)) \
               LIMIT $2";
    map(
        rows(c, sql, &[&now.micros(), &(limit as i64)]).await?,
        |row| {
            let id: String = row
                .try_get(0)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            AccountId::parse(&id).map_err(|_| StoreError::Corrupt(format!("bad account id {id:?}")))
        },
    )
}

pub async fn prune_idempotency(
    c: &impl GenericClient,
    before: Timestamp,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        let statement = c
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE key IN ( \
                   SELECT key FROM idempotency_keys WHERE created_at < $1 LIMIT 1000)",
            )
            .await
            .map_err(pg_error)?;
        let deleted = c
            .execute(&statement, &[&before.micros()])
            .await
            .map_err(pg_error)?;
        total += deleted;
        if deleted < 1000 {
            return Ok(total);
        }
    }
}

/// The account's lifetime totals, from all its lots and its whole journal.
pub async fn totals(
    c: &impl GenericClient,
    id: &AccountId,
    at: Option<Timestamp>,
) -> Result<Option<(Book, ledger::Totals)>, StoreError> {
    let book = match at {
        None => book_now(c, id).await?,
        Some(at) => book_at(c, id, at).await?,
    };
    let Some(book) = book else {
        return Ok(None);
    };
    let journal_sql =
        format!("SELECT {TX_COLUMNS} FROM transactions WHERE account_id = $1 AND created_at <= $2");
    let until = at.map_or(i64::MAX, Timestamp::micros);
    let journal = map(
        rows(c, &journal_sql, &[&id.as_str(), &until]).await?,
        tx_from_row,
    )?;
    let lots_sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE account_id = $1");
    let lots = map(rows(c, &lots_sql, &[&id.as_str()]).await?, lot_from_row)?;
    ledger::totals(&lots, &journal)
        .map(|totals| Some((book, totals)))
        .map_err(|reject| StoreError::Corrupt(reject.to_string()))
}

/// The holds pending across every account, read through the index of
/// pending holds.
pub async fn pending_holds(c: &impl GenericClient) -> Result<PendingHolds, StoreError> {
    let found = rows(c, PENDING_HOLDS_SQL, &[]).await?;
    let row = found
        .first()
        .ok_or_else(|| StoreError::Corrupt("an aggregate answered no row".into()))?;
    let count: i64 = row
        .try_get(0)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let amount: i64 = row
        .try_get(1)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(PendingHolds {
        count: u64::try_from(count).map_err(|_| StoreError::Corrupt("negative count".into()))?,
        amount: ledger::Amount::from_micros(amount),
    })
}

/// Credits spent (net of refunds) by the account's transactions written in
/// `from..to`.
pub async fn usage_between(
    c: &impl GenericClient,
    id: &AccountId,
    from: Timestamp,
    to: Timestamp,
) -> Result<ledger::Amount, StoreError> {
    let found = rows(
        c,
        USAGE_BETWEEN_SQL,
        &[&id.as_str(), &from.micros(), &to.micros()],
    )
    .await?;
    let sum: i64 = found
        .first()
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .unwrap_or(0);
    Ok(ledger::Amount::from_micros(sum))
}

/// The account's feature consumes written in `from..to`, per feature.
pub async fn feature_usage(
    c: &impl GenericClient,
    id: &AccountId,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<crate::usage::FeatureUse>, StoreError> {
    let found = rows(
        c,
        "SELECT feature_id, count(*)::int8, coalesce(sum(quantity), 0)::int8, \
                coalesce(sum(usage), 0)::int8 \
         FROM transactions \
         WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 \
           AND feature_id IS NOT NULL \
         GROUP BY feature_id ORDER BY feature_id",
        &[&id.as_str(), &from.micros(), &to.micros()],
    )
    .await?;
    found
        .iter()
        .map(|row| {
            let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(e.to_string());
            Ok(crate::usage::FeatureUse {
                feature: row.try_get(0).map_err(corrupt)?,
                uses: row.try_get(1).map_err(corrupt)?,
                quantity: ledger::Amount::from_micros(row.try_get(2).map_err(corrupt)?),
                credits: ledger::Amount::from_micros(row.try_get(3).map_err(corrupt)?),
            })
        })
        .collect()
}

/// A page of an account's gateway calls, newest first.
pub async fn calls(
    c: &impl GenericClient,
    query: &crate::usage::CallQuery,
) -> Result<Vec<crate::usage::Call>, StoreError> {
    use crate::usage::{CALL_COLUMNS, call_from_row};
    let limit = query.limit.min(crate::PAGE_LIMIT_MAX) as i64;
    let account = query.account.as_str();
    let (from, to) = (query.from.micros(), query.to.micros());
    let found = match &query.before {
        None => {
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM gateway_calls \
                 WHERE account_id = $1 AND at >= $2 AND at < $3 \
                 ORDER BY at DESC, id DESC LIMIT $4"
            );
            rows(c, &sql, &[&account, &from, &to, &limit]).await?
        }
        Some((at, id)) => {
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM gateway_calls \
                 WHERE account_id = $1 AND at >= $2 AND at < $3 AND (at, id) < ($4, $5) \
                 ORDER BY at DESC, id DESC LIMIT $6"
            );
            let at = at.micros();
            rows(c, &sql, &[&account, &from, &to, &at, id, &limit]).await?
        }
    };
    map(found, call_from_row)
}

/// The account's hourly usage buckets of hours `from..to`.
pub async fn usage_buckets(
    c: &impl GenericClient,
    id: &AccountId,
    from: i64,
    to: i64,
) -> Result<Vec<crate::usage::Bucket>, StoreError> {
    use crate::usage::{BUCKET_COLUMNS, bucket_from_row};
    let sql = format!(
        "SELECT {BUCKET_COLUMNS} FROM gateway_usage_hourly \
         WHERE account_id = $1 AND hour >= $2 AND hour < $3"
    );
    let found = rows(c, &sql, &[&id.as_str(), &from, &to]).await?;
    map(found, bucket_from_row)
}

/// The account's hourly buckets of hours `from..to`, summed per `by`.
pub async fn usage_sums(
    c: &impl GenericClient,
    id: &AccountId,
    from: i64,
    to: i64,
    by: crate::usage::SumBy,
) -> Result<Vec<crate::usage::Bucket>, StoreError> {
    let found = rows(c, &by.sql(["$1", "$2", "$3"]), &[&id.as_str(), &from, &to]).await?;
    map(found, crate::usage::bucket_from_row)
}

/// The account's transaction carrying an external id.
pub async fn external(
    c: &impl GenericClient,
    id: &AccountId,
    external: &ledger::ExternalId,
) -> Result<Option<Transaction>, StoreError> {
    let sql =
        format!("SELECT {TX_COLUMNS} FROM transactions WHERE account_id = $1 AND external_id = $2");
    Ok(map(
        rows(c, &sql, &[&id.as_str(), &external.as_str()]).await?,
        tx_from_row,
    )?
    .pop())
}

/// Fills in the lookups of records read together.
pub async fn with_lookups(
    c: &impl GenericClient,
    mut records: Vec<Record>,
) -> Result<Vec<Record>, StoreError> {
    if records.is_empty() {
        return Ok(records);
    }
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let found = rows(
        c,
        "SELECT l.kind, l.id, l.name, l.value, l.is_unique \
         FROM UNNEST($1::text[], $2::text[]) AS r(kind, id) \
         JOIN record_lookups l ON l.kind = r.kind AND l.id = r.id \
         ORDER BY l.kind, l.id, l.name, l.value",
        &[&kinds, &ids],
    )
    .await?;
    let mut by_record: HashMap<(String, String), Vec<Lookup>> = HashMap::new();
    for row in &found {
        let get = |i: usize| -> Result<String, StoreError> {
            row.try_get(i)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        };
        by_record
            .entry((get(0)?, get(1)?))
            .or_default()
            .push(Lookup {
                name: get(2)?,
                value: get(3)?,
                unique: row
                    .try_get(4)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
    }
    for record in &mut records {
        if let Some(lookups) = by_record.remove(&(record.kind.clone(), record.id.clone())) {
            record.lookups = lookups;
        }
    }
    Ok(records)
}

pub async fn record(
    c: &impl GenericClient,
    kind: &str,
    id: &str,
) -> Result<Option<Record>, StoreError> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1 AND id = $2");
    let found = map(rows(c, &sql, &[&kind, &id]).await?, record_from_row)?;
    Ok(with_lookups(c, found).await?.pop())
}

pub async fn records(
    c: &impl GenericClient,
    query: &RecordQuery,
) -> Result<Vec<Record>, StoreError> {
    let limit = query.limit.min(RECORD_PAGE_MAX) as i64;
    let after = query.after.as_ref().map_or("", |c| c.id.as_str());
    let key = query.after.as_ref().map(|c| c.key.as_str());
    let kind = query.kind.as_str();
    let columns = "r.kind, r.id, r.version, r.body, r.created_at, r.updated_at";
    let found = match &query.filter {
        RecordFilter::All => {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1 AND id > $2 \
                 ORDER BY id LIMIT $3"
            );
            rows(c, &sql, &[&kind, &after, &limit]).await?
        }
        RecordFilter::Equals { name, value } => {
            let sql = format!(
                "SELECT {columns} FROM record_lookups l JOIN records r \
                   ON r.kind = l.kind AND r.id = l.id \
                 WHERE l.kind = $1 AND l.name = $2 AND l.value = $3 AND l.id > $4 \
                 ORDER BY l.id LIMIT $5"
            );
            rows(c, &sql, &[&kind, name, value, &after, &limit]).await?
        }
        RecordFilter::Range { name, from, to } => {
            // Past the cursor: a later value, or the same value and a later id.
            let sql = format!(
                "SELECT {columns} FROM record_lookups l JOIN records r \
                   ON r.kind = l.kind AND r.id = l.id \
                 WHERE l.kind = $1 AND l.name = $2 \
                   AND ($3::text IS NULL OR l.value >= $3) AND ($4::text IS NULL OR l.value < $4) \
                   AND ($5::text IS NULL OR l.value > $5 OR (l.value = $5 AND l.id > $6)) \
                 ORDER BY l.value, l.id LIMIT $7"
            );
            rows(c, &sql, &[&kind, name, from, to, &key, &after, &limit]).await?
        }
        RecordFilter::ChangedSince(since) => {
            let after_at: Option<i64> = key
                .map(str::parse)
                .transpose()
                .map_err(|_| StoreError::Internal("a bad record cursor".into()))?;
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1 AND updated_at >= $2 \
                   AND ($3::int8 IS NULL OR updated_at > $3 OR (updated_at = $3 AND id > $4)) \
                 ORDER BY updated_at, id LIMIT $5"
            );
            rows(
                c,
                &sql,
                &[&kind, &since.micros(), &after_at, &after, &limit],
            )
            .await?
        }
    };
    with_lookups(c, map(found, record_from_row)?).await
}

/// Checks every account against its whole journal, from one snapshot, one
/// page of accounts at a time.
pub async fn audit(client: &mut deadpool_postgres::Client) -> Result<AuditReport, StoreError> {
    let tx = snapshot(client).await?;
    let mut report = AuditReport::default();
    let mut after: Option<AccountId> = None;
    let lots_sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE account_id = ANY($1)");
    let holds_sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = ANY($1)");
    let txs_sql =
        format!("SELECT {TX_COLUMNS} FROM transactions WHERE account_id = ANY($1) ORDER BY id");
    loop {
        let page = accounts(&tx, after.as_ref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let ids: Vec<&str> = page.iter().map(|a| a.id.as_str()).collect();
        let mut lots: HashMap<AccountId, Vec<Lot>> = HashMap::new();
        for lot in map(rows(&tx, &lots_sql, &[&ids]).await?, lot_from_row)? {
            lots.entry(lot.account.clone()).or_default().push(lot);
        }
        let mut holds: HashMap<AccountId, Vec<Hold>> = HashMap::new();
        for hold in map(rows(&tx, &holds_sql, &[&ids]).await?, hold_from_row)? {
            holds.entry(hold.account.clone()).or_default().push(hold);
        }
        let mut journals: HashMap<AccountId, Vec<Transaction>> = HashMap::new();
        for t in map(rows(&tx, &txs_sql, &[&ids]).await?, tx_from_row)? {
            journals.entry(t.account.clone()).or_default().push(t);
        }
        for account in page {
            let lots = lots.remove(&account.id).unwrap_or_default();
            let holds = holds.remove(&account.id).unwrap_or_default();
            let journal = journals.remove(&account.id).unwrap_or_default();
            report.check_account(&account, &lots, &holds, &journal);
        }
    }
    for table in ACCOUNT_TABLES {
        let orphans: i64 = rows(&tx, &orphans_query(table), &[]).await?[0]
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        report.note_orphans(table, orphans);
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(report)
}

/// The stored fingerprint and response of each key.
pub fn stored_responses(
    rows: Vec<Row>,
) -> Result<HashMap<String, (Vec<u8>, StoredResponse)>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(e.to_string());
            let status: i64 = row.try_get(2).map_err(corrupt)?;
            Ok((
                row.try_get::<_, String>(0).map_err(corrupt)?,
                (
                    row.try_get::<_, Vec<u8>>(1).map_err(corrupt)?,
                    StoredResponse {
                        status: u16::try_from(status)
                            .map_err(|_| StoreError::Corrupt("bad stored status".into()))?,
                        body: row.try_get::<_, Vec<u8>>(3).map_err(corrupt)?,
                    },
                ),
            ))
        })
        .collect()
}
