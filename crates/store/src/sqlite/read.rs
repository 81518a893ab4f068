//! Queries: each takes a connection, so the writer and the readers share them.

use std::collections::{HashMap, HashSet};

use ledger::{
    Account, AccountId, Amount, Book, ExternalId, Feature, FeatureId, Hold, HoldId, LedgerAccount,
    Lot, LotId, Timestamp, Transaction, TxId,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::decode_postings;
use crate::records::{Lookup, RECORD_PAGE_MAX, Record, RecordFilter, RecordQuery};
use crate::rows::{
    ACCOUNT_COLUMNS, HOLD_COLUMNS, LOT_COLUMNS, RECORD_COLUMNS, TX_COLUMNS, account_from_row,
    feature_from_row, hold_from_row, lot_from_row, record_from_row, tx_from_row,
};
use crate::{
    ACCOUNT_TABLES, AuditReport, PENDING_HOLDS_SQL, PendingHolds, StoreError, StoredResponse,
    TxFilter, orphans_query,
};

/// Runs a query and maps each row, turning both SQL and decoding errors into store errors.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

fn first<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => Ok(Some(map(row)?)),
        None => Ok(None),
    }
}

pub fn account(conn: &Connection, id: &AccountId) -> Result<Option<Account>, StoreError> {
    first(
        conn,
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
        [id.as_str()],
        |row| account_from_row(row),
    )
}

pub fn accounts(
    conn: &Connection,
    after: Option<&AccountId>,
    limit: usize,
) -> Result<Vec<Account>, StoreError> {
    collect(
        conn,
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2"),
        params![after.map_or("", AccountId::as_str), limit as i64],
        |row| account_from_row(row),
    )
}

/// Accounts whose searchable text (id, name, metadata) holds `text`, read
/// through the trigram index `account_search_text`: a phrase of the
/// trigram tokenizer matches wherever it occurs, in any case.
pub fn search_accounts(
    conn: &Connection,
    text: &str,
    after: Option<&AccountId>,
    limit: usize,
) -> Result<Vec<Account>, StoreError> {
    let phrase = format!("\"{}\"", text.replace('"', "\"\""));
    collect(
        conn,
        &format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts \
             WHERE id IN (SELECT s.account_id FROM account_search_text t \
                          JOIN account_search s ON s.id = t.rowid \
                          WHERE account_search_text MATCH ?1) \
               AND id > ?2 ORDER BY id LIMIT ?3"
        ),
        params![phrase, after.map_or("", AccountId::as_str), limit as i64],
        |row| account_from_row(row),
    )
}

/// The point up to which every lot's row reflects the journal, whatever
/// its own `synced_tx` says (see the writer's deferred lot writes).
pub fn synced_through(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT through_tx FROM lots_synced")?
        .query_row([], |row| row.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0))
}

/// Lots as their rows stand, each with the last transaction its row reflects.
fn lot_rows(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(Lot, i64)>, StoreError> {
    // synced_tx follows the shared lot columns.
    static SYNCED_AT: std::sync::LazyLock<usize> =
        std::sync::LazyLock::new(|| LOT_COLUMNS.split(',').count());
    collect(
        conn,
        &format!("SELECT {LOT_COLUMNS}, synced_tx FROM lots WHERE {filter}"),
        params,
        |row| Ok((lot_from_row(row)?, row.get(*SYNCED_AT)?)),
    )
}

/// An account's lots as they stand: what each row holds, plus what the
/// account's journal posted to the lot after the row was last written.
/// Reads in the caller's snapshot, so rows and journal agree.
fn current_lots(
    conn: &Connection,
    account: &AccountId,
    mut rows: Vec<(Lot, i64)>,
) -> Result<Vec<Lot>, StoreError> {
    let through = synced_through(conn)?;
    for (_, synced) in &mut rows {
        *synced = (*synced).max(through);
    }
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM transactions")?
        .query_row([], |row| row.get(0))?;
    let from = rows.iter().map(|(_, synced)| *synced).min();
    if let (Some(from), Some(last)) = (from, last)
        && from < last
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, postings FROM transactions \
             WHERE (id >> {JOURNAL_BLOCK_SHIFT}) = ?1 AND account_id = ?2 AND id > ?3"
        ))?;
        for block in ((from + 1) >> JOURNAL_BLOCK_SHIFT)..=(last >> JOURNAL_BLOCK_SHIFT) {
            let mut txs = stmt.query(params![block, account.as_str(), from])?;
            while let Some(tx) = txs.next()? {
                let (id, postings): (i64, String) = (tx.get(0)?, tx.get(1)?);
                for posting in decode_postings(&postings)? {
                    let LedgerAccount::Lot(lot) = posting.account else {
                        continue;
                    };
                    if let Some((lot, _)) = rows
                        .iter_mut()
                        .find(|(row, synced)| row.id == lot && id > *synced)
                    {
                        lot.remaining = lot
                            .remaining
                            .checked_add(posting.amount)
                            .ok_or_else(|| StoreError::Corrupt(format!("{} overflows", lot.id)))?;
                    }
                }
            }
        }
    }
    Ok(rows.into_iter().map(|(lot, _)| lot).collect())
}

pub fn lot(conn: &Connection, id: LotId) -> Result<Option<Lot>, StoreError> {
    let Some(row) = lot_rows(conn, "id = ?1", [id.0])?.pop() else {
        return Ok(None);
    };
    let account = row.0.account.clone();
    Ok(current_lots(conn, &account, vec![row])?.pop())
}

pub fn lots(
    conn: &Connection,
    account: &AccountId,
    before: Option<LotId>,
    limit: usize,
) -> Result<Vec<Lot>, StoreError> {
    let rows = lot_rows(
        conn,
        "account_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        params![
            account.as_str(),
            before.map_or(i64::MAX, |l| l.0),
            limit as i64
        ],
    )?;
    current_lots(conn, account, rows)
}

pub fn hold(conn: &Connection, id: HoldId) -> Result<Option<Hold>, StoreError> {
    first(
        conn,
        &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"),
        [id.0],
        |row| hold_from_row(row),
    )
}

/// A page of `filter`'s holds, read through `holds_by_account`.
pub fn holds(conn: &Connection, filter: &crate::HoldFilter) -> Result<Vec<Hold>, StoreError> {
    let sql = format!(
        "SELECT {HOLD_COLUMNS} FROM holds \
         WHERE account_id = ?1 AND id < ?2 AND {} ORDER BY id DESC LIMIT ?4",
        filter.status_sql("?3")
    );
    collect(
        conn,
        &sql,
        params![
            filter.account.as_str(),
            filter.before.map_or(i64::MAX, |h| h.0),
            filter.now.micros(),
            filter.limit.min(crate::PAGE_LIMIT_MAX) as i64
        ],
        |row| hold_from_row(row),
    )
}

pub fn transaction(conn: &Connection, id: TxId) -> Result<Option<Transaction>, StoreError> {
    first(
        conn,
        &format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = ?1"),
        [id.0],
        |row| tx_from_row(row),
    )
}

/// Where the journal ends: its newest transaction.
pub fn journal_head(conn: &Connection) -> Result<crate::JournalPosition, StoreError> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM transactions")?
        .query_row([], |row| row.get(0))?;
    Ok(crate::JournalPosition {
        commit: 0,
        id: last.unwrap_or(0),
    })
}

/// The transactions after `after`, by id: the one writer commits them in
/// the order of their ids, so none can appear later below the last read.
pub fn journal_after(
    conn: &Connection,
    after: crate::JournalPosition,
    limit: usize,
) -> Result<(Vec<Transaction>, crate::JournalPosition), StoreError> {
    let limit = limit.clamp(1, crate::JOURNAL_PAGE_MAX);
    let txs = collect(
        conn,
        &format!("SELECT {TX_COLUMNS} FROM transactions WHERE id > ?1 ORDER BY id LIMIT ?2"),
        params![after.id, limit as i64],
        |row| tx_from_row(row),
    )?;
    let next = txs.last().map_or(after, |t| crate::JournalPosition {
        commit: 0,
        id: t.id.0,
    });
    Ok((txs, next))
}

/// The journal is indexed by block of ids, then account (see migration 3):
/// an account's transactions are found block by block.
const JOURNAL_BLOCK_SHIFT: u32 = 16;

/// The block of the newest transaction, if there is one.
fn last_journal_block(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM transactions")?
        .query_row([], |row| row.get(0))?;
    Ok(last.map(|id| id >> JOURNAL_BLOCK_SHIFT))
}

/// Every transaction of `account` for which `keep` holds, oldest first.
fn journal_of(
    conn: &Connection,
    account: &AccountId,
    keep: impl Fn(&Transaction) -> bool,
) -> Result<Vec<Transaction>, StoreError> {
    let mut journal = Vec::new();
    let Some(last) = last_journal_block(conn)? else {
        return Ok(journal);
    };
    for block in 0..=last {
        let txs = collect(
            conn,
            &format!(
                "SELECT {TX_COLUMNS} FROM transactions \
                 WHERE (id >> {JOURNAL_BLOCK_SHIFT}) = ?1 AND account_id = ?2 ORDER BY id"
            ),
            params![block, account.as_str()],
            |row| tx_from_row(row),
        )?;
        journal.extend(txs.into_iter().filter(&keep));
    }
    Ok(journal)
}

/// A page of `filter`'s transactions. Filtered by source, it is read from
/// the index of grants by source; otherwise block by block, newest first,
/// until the page is full.
pub fn transactions(conn: &Connection, filter: &TxFilter) -> Result<Vec<Transaction>, StoreError> {
    let limit = filter.limit.min(crate::PAGE_LIMIT_MAX);
    let kinds = match filter.kinds_kept() {
        Some(kinds) if kinds.is_empty() => return Ok(Vec::new()),
        None => String::new(),
        Some(kinds) => format!(
            "AND kind IN ({})",
            sql_codes(kinds.iter().map(|k| k.code()))
        ),
    };
    if !filter.sources.is_empty() {
        let sources = sql_codes(filter.sources.iter().map(|s| s.code()));
        return page_of(
            conn,
            &source_page_sql(&sources, &kinds),
            filter,
            None,
            limit,
        );
    }
    let sql = format!(
        "SELECT {TX_COLUMNS} FROM transactions \
         WHERE (id >> {JOURNAL_BLOCK_SHIFT}) = ?6 AND account_id = ?1 AND id < ?2 \
           AND created_at >= ?3 AND created_at < ?4 {kinds} \
         ORDER BY id DESC LIMIT ?5"
    );
    let mut page = Vec::new();
    let Some(last) = last_journal_block(conn)? else {
        return Ok(page);
    };
    let before = filter.before.map_or(i64::MAX, |t| t.0);
    let first = before.saturating_sub(1).max(0) >> JOURNAL_BLOCK_SHIFT;
    // Newest block first, until the page is full.
    for block in (0..=last.min(first)).rev() {
        if page.len() >= limit {
            break;
        }
        page.extend(page_of(
            conn,
            &sql,
            filter,
            Some(block),
            limit - page.len(),
        )?);
    }
    Ok(page)
}

/// The transactions `sql` selects for `filter`: its parameters are the
/// account, the cursor, the time window, the page size and, when
/// `block` is given, the journal block.
fn page_of(
    conn: &Connection,
    sql: &str,
    filter: &TxFilter,
    block: Option<i64>,
    limit: usize,
) -> Result<Vec<Transaction>, StoreError> {
    let account = filter.account.as_str();
    let before = filter.before.map_or(i64::MAX, |t| t.0);
    let from = filter.from.map_or(i64::MIN, Timestamp::micros);
    let to = filter.to.map_or(i64::MAX, Timestamp::micros);
    let limit = limit as i64;
    match block {
        Some(block) => collect(
            conn,
            sql,
            params![account, before, from, to, limit, block],
            |row| tx_from_row(row),
        ),
        None => collect(
            conn,
            sql,
            params![account, before, from, to, limit],
            |row| tx_from_row(row),
        ),
    }
}

/// The statement of a journal page of grants of `sources` (SQL string
/// literals) and `kinds` (a condition), read from the index of grants by
/// source: its parameters are the account, the cursor, the time window and
/// the page size.
fn source_page_sql(sources: &str, kinds: &str) -> String {
    format!(
        "SELECT {TX_COLUMNS} FROM transactions \
         WHERE account_id = ?1 AND grant_source IS NOT NULL AND grant_source IN ({sources}) \
           AND id < ?2 AND created_at >= ?3 AND created_at < ?4 {kinds} \
         ORDER BY id DESC LIMIT ?5"
    )
}

/// `codes` as a list of SQL string literals. The codes are the ledger's
/// own constants (kinds, sources), never caller text, so they are written
/// into the statement; a statement per combination keeps its plan on the
/// index that fits.
fn sql_codes(codes: impl Iterator<Item = &'static str>) -> String {
    codes
        .map(|code| {
            debug_assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            format!("'{code}'")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How much of a usage transaction refunds have already handed back.
pub fn refunded(conn: &Connection, tx: TxId) -> Result<Amount, StoreError> {
    let usage: i64 = conn
        .prepare_cached("SELECT coalesce(sum(usage), 0) FROM transactions WHERE refund_of = ?1")?
        .query_row([tx.0], |row| row.get(0))?;
    Ok(Amount::from_micros(-usage))
}

pub fn feature(conn: &Connection, id: &FeatureId) -> Result<Option<Feature>, StoreError> {
    first(
        conn,
        "SELECT id, credits_per_unit, updated_at FROM features WHERE id = ?1",
        [id.as_str()],
        |row| feature_from_row(row),
    )
}

pub fn features(conn: &Connection) -> Result<Vec<Feature>, StoreError> {
    collect(
        conn,
        "SELECT id, credits_per_unit, updated_at FROM features ORDER BY id",
        [],
        |row| feature_from_row(row),
    )
}

/// The account's book as stored: its lots with credits left, its pending
/// holds, and every lot those holds escrowed from.
pub fn book(conn: &Connection, id: &AccountId) -> Result<Option<Book>, StoreError> {
    let Some(account) = account(conn, id)? else {
        return Ok(None);
    };
    let live = lot_rows(conn, "account_id = ?1 AND live", [id.as_str()])?;
    let mut lots = current_lots(conn, id, live)?;
    let holds = collect(
        conn,
        &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = ?1 AND status = 'pending'"),
        [id.as_str()],
        |row| hold_from_row(row),
    )?;
    let loaded: HashSet<LotId> = lots.iter().map(|l| l.id).collect();
    let missing: HashSet<LotId> = holds
        .iter()
        .flat_map(|h| &h.legs)
        .map(|leg| leg.lot)
        .filter(|lot| !loaded.contains(lot))
        .collect();
    for id in missing {
        lots.extend(lot(conn, id)?);
    }
    Book::new(account, lots, holds)
        .map(Some)
        .map_err(|reject| StoreError::Corrupt(reject.to_string()))
}

/// The account's book as it stood at `at`, rebuilt by the ledger from the
/// account's lots, holds and journal up to then.
pub fn book_at(
    conn: &Connection,
    id: &AccountId,
    at: Timestamp,
) -> Result<Option<Book>, StoreError> {
    let Some(account) = account(conn, id)? else {
        return Ok(None);
    };
    let journal = journal_of(conn, id, |tx| tx.created_at <= at)?;
    let lots = collect(
        conn,
        &format!("SELECT {LOT_COLUMNS} FROM lots WHERE account_id = ?1 AND created_at <= ?2"),
        params![id.as_str(), at.micros()],
        |row| lot_from_row(row),
    )?;
    let holds = collect(
        conn,
        &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = ?1 AND created_at <= ?2"),
        params![id.as_str(), at.micros()],
        |row| hold_from_row(row),
    )?;
    ledger::book_at(account, lots, holds, &journal, at)
        .map(Some)
        .map_err(|reject| StoreError::Corrupt(reject.to_string()))
}

pub fn due_accounts(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<AccountId>, StoreError> {
    collect(
        conn,
        "SELECT account_id FROM holds WHERE status = 'pending' AND expires_at <= ?1 \
         UNION \
         SELECT account_id FROM lots \
          WHERE live AND expires_at IS NOT NULL AND expires_at <= ?1 \
         UNION \
         SELECT a.id FROM accounts a WHERE a.debt > 0 AND EXISTS ( \
           SELECT 1 FROM lots l WHERE l.account_id = a.id AND l.live \
             AND l.effective_at <= ?1 AND l.voided_at IS NULL \
             AND (l.expires_at IS NULL OR l.expires_at > ?1)) \
         LIMIT ?2",
        params![now.micros(), limit as i64],
        |row| {
            let id: String = row.get(0)?;
            AccountId::parse(&id).map_err(|_| StoreError::Corrupt(format!("bad account id {id:?}")))
        },
    )
}

/// The holds pending across every account, read through the index of
/// pending holds.
pub fn pending_holds(conn: &Connection) -> Result<PendingHolds, StoreError> {
    let (count, amount): (i64, i64) = conn
        .prepare_cached(PENDING_HOLDS_SQL)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(PendingHolds {
        count: u64::try_from(count).map_err(|_| StoreError::Corrupt("negative count".into()))?,
        amount: Amount::from_micros(amount),
    })
}

pub fn idempotent_response(
    conn: &Connection,
    key: &str,
) -> Result<Option<(Vec<u8>, StoredResponse)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT fingerprint, status, body FROM idempotency_keys WHERE key = ?1")?
        .query_row([key], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                StoredResponse {
                    status: row.get(1)?,
                    body: row.get(2)?,
                },
            ))
        })
        .optional()?)
}

/// The account's lifetime totals, from all its lots and its whole journal.
pub fn totals(
    conn: &Connection,
    id: &AccountId,
    at: Option<Timestamp>,
) -> Result<Option<(Book, ledger::Totals)>, StoreError> {
    let book = match at {
        None => book(conn, id)?,
        Some(at) => book_at(conn, id, at)?,
    };
    let Some(book) = book else {
        return Ok(None);
    };
    let journal = journal_of(conn, id, |tx| at.is_none_or(|at| tx.created_at <= at))?;
    let lots = collect(
        conn,
        &format!("SELECT {LOT_COLUMNS} FROM lots WHERE account_id = ?1"),
        [id.as_str()],
        |row| lot_from_row(row),
    )?;
    ledger::totals(&lots, &journal)
        .map(|totals| Some((book, totals)))
        .map_err(|reject| StoreError::Corrupt(reject.to_string()))
}

/// How far a transaction's time may fall behind that of one written before
/// it: the writer stamps its batches in order, never going back, but a
/// clock stepped back between two runs of the server could. Blocks are
/// skipped by time only with this much to spare.
const JOURNAL_CLOCK_SLACK_MICROS: i64 = 3_600 * 1_000_000;

/// The journal blocks that may hold transactions written in `from..to`.
/// Ids and times grow together, so a block is left out when the next one
/// began before `from`, or when it began itself at or after `to` (each
/// with [`JOURNAL_CLOCK_SLACK_MICROS`] to spare); the start of a block is
/// the time of its first transaction, found by id.
fn blocks_within(
    conn: &Connection,
    from: Timestamp,
    to: Timestamp,
) -> Result<std::ops::RangeInclusive<i64>, StoreError> {
    let Some(mut last) = last_journal_block(conn)? else {
        #[allow(clippy::reversed_empty_ranges)]
        return Ok(1..=0);
    };
    let mut start = conn
        .prepare_cached("SELECT created_at FROM transactions WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    let mut began = |block: i64| -> Result<Option<i64>, StoreError> {
        Ok(start
            .query_row([block << JOURNAL_BLOCK_SHIFT], |row| row.get(0))
            .optional()?)
    };
    let early = from.micros().saturating_sub(JOURNAL_CLOCK_SLACK_MICROS);
    let late = to.micros().saturating_add(JOURNAL_CLOCK_SLACK_MICROS);
    while last > 0 && began(last)?.is_some_and(|t| t >= late) {
        last -= 1;
    }
    let mut first = last;
    while first > 0 && began(first)?.is_none_or(|t| t >= early) {
        first -= 1;
    }
    Ok(first..=last)
}

/// Credits spent (net of refunds) by the account's transactions written in
/// `from..to`: the account's rows of the journal blocks of that time, read
/// through `transactions_by_block`.
pub fn usage_between(
    conn: &Connection,
    id: &AccountId,
    from: Timestamp,
    to: Timestamp,
) -> Result<Amount, StoreError> {
    let mut total: i64 = 0;
    let mut stmt = conn.prepare_cached(&usage_between_sql())?;
    for block in blocks_within(conn, from, to)? {
        let sum: i64 = stmt.query_row(
            params![block, id.as_str(), from.micros(), to.micros()],
            |row| row.get(0),
        )?;
        total = total
            .checked_add(sum)
            .ok_or_else(|| StoreError::Corrupt("usage overflows".into()))?;
    }
    Ok(Amount::from_micros(total))
}

/// What an account spent in one journal block in `?3..?4`.
fn usage_between_sql() -> String {
    format!(
        "SELECT coalesce(sum(usage), 0) FROM transactions \
         WHERE (id >> {JOURNAL_BLOCK_SHIFT}) = ?1 AND account_id = ?2 \
           AND created_at >= ?3 AND created_at < ?4 AND usage <> 0"
    )
}

/// The account's feature consumes written in `from..to`, per feature.
pub fn feature_usage(
    conn: &Connection,
    id: &AccountId,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<crate::usage::FeatureUse>, StoreError> {
    let mut sums = std::collections::BTreeMap::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT feature_id, count(*), coalesce(sum(quantity), 0), coalesce(sum(usage), 0) \
         FROM transactions \
         WHERE (id >> {JOURNAL_BLOCK_SHIFT}) = ?1 AND account_id = ?2 \
           AND created_at >= ?3 AND created_at < ?4 AND feature_id IS NOT NULL \
         GROUP BY feature_id"
    ))?;
    for block in blocks_within(conn, from, to)? {
        let rows = stmt.query_map(
            params![block, id.as_str(), from.micros(), to.micros()],
            |row| {
                Ok(crate::usage::FeatureUse {
                    feature: row.get(0)?,
                    uses: row.get(1)?,
                    quantity: Amount::from_micros(row.get(2)?),
                    credits: Amount::from_micros(row.get(3)?),
                })
            },
        )?;
        for part in rows {
            crate::usage::add_feature_use(&mut sums, part?)?;
        }
    }
    Ok(sums.into_values().collect())
}

/// A page of an account's gateway calls, newest first.
pub fn calls(
    conn: &Connection,
    query: &crate::usage::CallQuery,
) -> Result<Vec<crate::usage::Call>, StoreError> {
    use crate::usage::{CALL_COLUMNS, call_from_row};
    let limit = query.limit.min(crate::PAGE_LIMIT_MAX) as i64;
    let account = query.account.as_str();
    match &query.before {
        None => collect(
            conn,
            &format!(
                "SELECT {CALL_COLUMNS} FROM gateway_calls \
                 WHERE account_id = ?1 AND at >= ?2 AND at < ?3 \
                 ORDER BY at DESC, id DESC LIMIT ?4"
            ),
            params![account, query.from.micros(), query.to.micros(), limit],
            |row| call_from_row(row),
        ),
        Some((at, id)) => collect(
            conn,
            &format!(
                "SELECT {CALL_COLUMNS} FROM gateway_calls \
                 WHERE account_id = ?1 AND at >= ?2 AND at < ?3 AND (at, id) < (?4, ?5) \
                 ORDER BY at DESC, id DESC LIMIT ?6"
            ),
            params![
                account,
                query.from.micros(),
                query.to.micros(),
                at.micros(),
                id,
                limit
            ],
            |row| call_from_row(row),
        ),
    }
}

/// The account's hourly usage buckets of hours `from..to`.
pub fn usage_buckets(
    conn: &Connection,
    id: &AccountId,
    from: i64,
    to: i64,
) -> Result<Vec<crate::usage::Bucket>, StoreError> {
    use crate::usage::{BUCKET_COLUMNS, bucket_from_row};
    collect(
        conn,
        &format!(
            "SELECT {BUCKET_COLUMNS} FROM gateway_usage_hourly \
             WHERE account_id = ?1 AND hour >= ?2 AND hour < ?3"
        ),
        params![id.as_str(), from, to],
        |row| bucket_from_row(row),
    )
}

/// The account's hourly buckets of hours `from..to`, summed per `by`.
pub fn usage_sums(
    conn: &Connection,
    id: &AccountId,
    from: i64,
    to: i64,
    by: crate::usage::SumBy,
) -> Result<Vec<crate::usage::Bucket>, StoreError> {
    collect(
        conn,
        &by.sql(["?1", "?2", "?3"]),
        params![id.as_str(), from, to],
        |row| crate::usage::bucket_from_row(row),
    )
}

/// The account's transaction carrying `external`, with its content digest.
pub fn external(
    conn: &Connection,
    account: &AccountId,
    external: &ExternalId,
) -> Result<Option<(Transaction, String)>, StoreError> {
    // external_digest follows the shared transaction columns.
    static DIGEST_AT: std::sync::LazyLock<usize> =
        std::sync::LazyLock::new(|| TX_COLUMNS.split(',').count());
    first(
        conn,
        &format!(
            "SELECT {TX_COLUMNS}, external_digest FROM transactions \
             WHERE account_id = ?1 AND external_id = ?2"
        ),
        [account.as_str(), external.as_str()],
        |row| Ok((tx_from_row(row)?, row.get(*DIGEST_AT)?)),
    )
}

/// Fills in each record's lookups.
fn with_lookups(conn: &Connection, mut records: Vec<Record>) -> Result<Vec<Record>, StoreError> {
    for record in &mut records {
        record.lookups = collect(
            conn,
            "SELECT name, value, is_unique FROM record_lookups WHERE kind = ?1 AND id = ?2 \
             ORDER BY name, value",
            [record.kind.as_str(), record.id.as_str()],
            |row| {
                Ok(Lookup {
                    name: row.get(0)?,
                    value: row.get(1)?,
                    unique: row.get(2)?,
                })
            },
        )?;
    }
    Ok(records)
}

pub fn record(conn: &Connection, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
    let found = collect(
        conn,
        &format!("SELECT {RECORD_COLUMNS} FROM records WHERE kind = ?1 AND id = ?2"),
        [kind, id],
        |row| record_from_row(row),
    )?;
    Ok(with_lookups(conn, found)?.pop())
}

pub fn records(conn: &Connection, query: &RecordQuery) -> Result<Vec<Record>, StoreError> {
    let limit = query.limit.min(RECORD_PAGE_MAX) as i64;
    let (key, after) = query
        .after
        .as_ref()
        .map_or(("", ""), |c| (c.key.as_str(), c.id.as_str()));
    let columns = "r.kind, r.id, r.version, r.body, r.created_at, r.updated_at";
    let found = match &query.filter {
        RecordFilter::All => collect(
            conn,
            &format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE kind = ?1 AND id > ?2 \
                 ORDER BY id LIMIT ?3"
            ),
            params![query.kind, after, limit],
            |row| record_from_row(row),
        )?,
        RecordFilter::Equals { name, value } => collect(
            conn,
            &format!(
                "SELECT {columns} FROM record_lookups l JOIN records r \
                   ON r.kind = l.kind AND r.id = l.id \
                 WHERE l.kind = ?1 AND l.name = ?2 AND l.value = ?3 AND l.id > ?4 \
                 ORDER BY l.id LIMIT ?5"
            ),
            params![query.kind, name, value, after, limit],
            |row| record_from_row(row),
        )?,
        RecordFilter::Range { name, from, to } => {
            // Past the cursor: a later value, or the same value and a later id.
            collect(
                conn,
                &format!(
                    "SELECT {columns} FROM record_lookups l JOIN records r \
                       ON r.kind = l.kind AND r.id = l.id \
                     WHERE l.kind = ?1 AND l.name = ?2 \
                       AND (?3 IS NULL OR l.value >= ?3) AND (?4 IS NULL OR l.value < ?4) \
                       AND (?5 IS NULL OR l.value > ?5 OR (l.value = ?5 AND l.id > ?6)) \
                     ORDER BY l.value, l.id LIMIT ?7"
                ),
                params![
                    query.kind,
                    name,
                    from,
                    to,
                    query.after.as_ref().map(|_| key),
                    after,
                    limit
                ],
                |row| record_from_row(row),
            )?
        }
        RecordFilter::ChangedSince(since) => {
            let after_at: Option<i64> = query
                .after
                .as_ref()
                .map(|c| c.key.parse())
                .transpose()
                .map_err(|_| StoreError::Internal("a bad record cursor".into()))?;
            collect(
                conn,
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM records WHERE kind = ?1 AND updated_at >= ?2 \
                       AND (?3 IS NULL OR updated_at > ?3 OR (updated_at = ?3 AND id > ?4)) \
                     ORDER BY updated_at, id LIMIT ?5"
                ),
                params![query.kind, since.micros(), after_at, after, limit],
                |row| record_from_row(row),
            )?
        }
    };
    with_lookups(conn, found)
}

pub fn lookup_owner(
    conn: &Connection,
    kind: &str,
    name: &str,
    value: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM record_lookups \
             WHERE kind = ?1 AND name = ?2 AND value = ?3 AND is_unique",
        )?
        .query_row([kind, name, value], |row| row.get(0))
        .optional()?)
}

/// Checks every account against its whole journal, one account at a time so
/// memory stays bounded, then looks for rows that belong to no account.
pub fn audit(conn: &Connection) -> Result<AuditReport, StoreError> {
    let mut report = AuditReport::default();
    let mut after: Option<AccountId> = None;
    let through = synced_through(conn)?;
    // The whole journal in account order, read beside the accounts: the
    // journal's index is by block of ids first (see migration 3), so one
    // sorted pass costs less than a look in every block for every account.
    let mut journal_stmt = conn.prepare(&format!(
        "SELECT {TX_COLUMNS} FROM transactions ORDER BY account_id, id"
    ))?;
    let mut journal_rows = journal_stmt.query([])?;
    let mut next_tx: Option<Transaction> = None;
    loop {
        let page = accounts(conn, after.as_ref(), 500)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for account in page {
            let id = account.id.as_str();
            let rows = lot_rows(conn, "account_id = ?1", [id])?;
            let holds = collect(
                conn,
                &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = ?1"),
                [id],
                |row| hold_from_row(row),
            )?;
            let mut journal = Vec::new();
            loop {
                if next_tx.is_none() {
                    next_tx = journal_rows.next()?.map(tx_from_row).transpose()?;
                }
                match &next_tx {
                    // Of no account: counted with the orphans below.
                    Some(tx) if tx.account.as_str() < id => next_tx = None,
                    Some(tx) if tx.account.as_str() == id => journal.extend(next_tx.take()),
                    _ => break,
                }
            }
            // Each row plus what the journal posted to its lot after the row
            // was last written: the rows' own figures are checked that way.
            let synced: HashMap<LotId, i64> = rows
                .iter()
                .map(|(lot, synced)| (lot.id, (*synced).max(through)))
                .collect();
            let mut later: HashMap<LotId, i64> = HashMap::new();
            for tx in &journal {
                for posting in &tx.postings {
                    if let LedgerAccount::Lot(lot) = posting.account
                        && synced.get(&lot).is_some_and(|synced| tx.id.0 > *synced)
                    {
                        *later.entry(lot).or_default() += posting.amount.micros();
                    }
                }
            }
            let lots: Vec<Lot> = rows
                .into_iter()
                .map(|(mut lot, _)| {
                    let added = later.get(&lot.id).copied().unwrap_or(0);
                    lot.remaining =
                        Amount::from_micros(lot.remaining.micros().saturating_add(added));
                    lot
                })
                .collect();
            report.check_account(&account, &lots, &holds, &journal);
        }
    }
    for table in ACCOUNT_TABLES {
        let orphans: i64 = conn.query_row(&orphans_query(table), [], |row| row.get(0))?;
        report.note_orphans(table, orphans);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated database holding one account's 10,000 transactions, few
    /// of them grants, with statistics gathered as a live one has them.
    fn long_history() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate_conn(&mut conn).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO transactions (id, account_id, kind, amount, usage, balance_after,
                 postings, sources, created_at, metadata, grant_source)
             SELECT i, 'a', CASE WHEN i % 500 = 0 THEN 'grant' ELSE 'consume' END, 1,
                    CASE WHEN i % 500 = 0 THEN 0 ELSE 1 END, 0, '', '', i * 1000000, '{}',
                    CASE WHEN i % 500 = 0 THEN 'purchase' END
             FROM n;
             ANALYZE;",
        )
        .unwrap();
        conn
    }

    /// The plan SQLite would run `sql` with, one step a line.
    fn plan(conn: &Connection, sql: &str) -> String {
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        let params = conn.prepare(&sql).unwrap().parameter_count();
        let nulls = vec![rusqlite::types::Null; params];
        collect(conn, &sql, rusqlite::params_from_iter(nulls), |row| {
            Ok(row.get::<_, String>(3)?)
        })
        .unwrap()
        .join("\n")
    }

    #[test]
    fn a_page_of_grants_by_source_is_read_from_the_grants_index() {
        let conn = long_history();
        let sql = source_page_sql("'purchase'", "AND kind IN ('grant')");
        let plan = plan(&conn, &sql);
        assert!(plan.contains("transactions_grants_by_source"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn spending_in_a_block_is_read_from_the_accounts_rows_of_the_block() {
        let conn = long_history();
        let plan = plan(&conn, &usage_between_sql());
        assert!(plan.contains("transactions_by_block"), "{plan}");
    }

    const DAY: i64 = 86_400 * 1_000_000;

    /// A journal of 40 blocks, one a day, of 4 transactions each (two
    /// accounts' usage, a grant, a refund), at day `b` plus `k` seconds.
    fn forty_days() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate_conn(&mut conn).unwrap();
        let mut insert = conn
            .prepare(
                "INSERT INTO transactions (id, account_id, kind, amount, usage, balance_after, \
                     postings, sources, created_at, metadata) \
                 VALUES (?1, ?2, 'consume', 0, ?3, 0, '', '', ?4, '{}')",
            )
            .unwrap();
        for block in 0..40_i64 {
            for (k, (account, usage)) in [("a", 3), ("b", 5), ("a", 0), ("a", -1)]
                .into_iter()
                .enumerate()
            {
                let k = k as i64;
                let id = (block << JOURNAL_BLOCK_SHIFT) + k + 1;
                let at = block * DAY + k * 1_000_000;
                insert.execute(params![id, account, usage, at]).unwrap();
            }
        }
        drop(insert);
        conn
    }

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_micros(micros)
    }

    #[test]
    fn only_the_journal_blocks_of_a_window_are_read() {
        let conn = forty_days();
        // Days 10 and 11: block 9 may run until block 10 began, and block
        // 12 began within the slack after the window's end.
        assert_eq!(
            blocks_within(&conn, at(10 * DAY), at(12 * DAY)).unwrap(),
            9..=12
        );
        // Past the end of the journal, the newest block alone.
        assert_eq!(
            blocks_within(&conn, at(100 * DAY), at(107 * DAY)).unwrap(),
            39..=39
        );
        // Before it began, the first block alone.
        assert_eq!(
            blocks_within(&conn, at(-7 * DAY), at(-6 * DAY)).unwrap(),
            0..=0
        );
        let empty = Connection::open_in_memory().unwrap();
        let mut empty = empty;
        super::super::migrate_conn(&mut empty).unwrap();
        assert!(blocks_within(&empty, at(0), at(DAY)).unwrap().is_empty());
    }

    #[test]
    fn spending_read_by_block_is_what_the_whole_journal_holds() {
        let conn = forty_days();
        let brute = |account: &str, from: i64, to: i64| -> i64 {
            conn.query_row(
                "SELECT coalesce(sum(usage), 0) FROM transactions \
                 WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3",
                params![account, from, to],
                |row| row.get(0),
            )
            .unwrap()
        };
        let windows = [
            (0, 40 * DAY),
            (10 * DAY, 12 * DAY),
            (10 * DAY + 1_000_000, 10 * DAY + 3_000_001),
            (39 * DAY, 39 * DAY + 1),
            (-DAY, 0),
            (33 * DAY, 40 * DAY + 7 * DAY),
        ];
        for (from, to) in windows {
            for account in ["a", "b", "c"] {
                let read =
                    usage_between(&conn, &AccountId::parse(account).unwrap(), at(from), at(to))
                        .unwrap();
                assert_eq!(
                    read.micros(),
                    brute(account, from, to),
                    "{account} {from}..{to}"
                );
            }
        }
        assert_eq!(brute("a", 10 * DAY, 12 * DAY), 4);
    }
}
