//! Rows of the SQLite tables to ledger types.

use ledger::{
    Account, AccountId, Amount, Feature, FeatureId, Hold, HoldId, HoldStatus, Lot, LotId, Metadata,
    Source, Timestamp, Transaction, TxId, TxKind,
};
use rusqlite::Row;

use crate::StoreError;
use crate::codec::{corrupt, decode_legs, decode_postings, decode_sources};

fn account_id(text: String) -> Result<AccountId, StoreError> {
    AccountId::parse(&text).map_err(|_| corrupt("account id", &text))
}

fn metadata(text: String) -> Metadata {
    Metadata::from_json_object(text).unwrap_or_default()
}

fn ts(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros)
}

/// Column list matching [`account_from_row`].
pub const ACCOUNT_COLUMNS: &str = "id, name, metadata, overdraft_limit, debt, created_at";

pub fn account_from_row(row: &Row<'_>) -> Result<Account, StoreError> {
    Ok(Account {
        id: account_id(row.get(0)?)?,
        name: row.get(1)?,
        metadata: metadata(row.get(2)?),
        overdraft_limit: Amount::from_micros(row.get(3)?),
        debt: Amount::from_micros(row.get(4)?),
        created_at: ts(row.get(5)?),
    })
}

/// Column list matching [`lot_from_row`].
pub const LOT_COLUMNS: &str = "id, account_id, source, priority, amount, remaining, effective_at, \
                               expires_at, voided_at, created_at, metadata";

pub fn lot_from_row(row: &Row<'_>) -> Result<Lot, StoreError> {
    let source: String = row.get(2)?;
    Ok(Lot {
        id: LotId(row.get(0)?),
        account: account_id(row.get(1)?)?,
        source: Source::parse(&source).ok_or_else(|| corrupt("source", &source))?,
        priority: row.get(3)?,
        amount: Amount::from_micros(row.get(4)?),
        remaining: Amount::from_micros(row.get(5)?),
        effective_at: ts(row.get(6)?),
        expires_at: row.get::<_, Option<i64>>(7)?.map(ts),
        voided_at: row.get::<_, Option<i64>>(8)?.map(ts),
        created_at: ts(row.get(9)?),
        metadata: metadata(row.get(10)?),
    })
}

/// Column list matching [`hold_from_row`].
pub const HOLD_COLUMNS: &str = "id, account_id, amount, legs, status, committed_amount, \
                                created_at, expires_at, resolved_at, metadata";

pub fn hold_from_row(row: &Row<'_>) -> Result<Hold, StoreError> {
    let status: String = row.get(4)?;
    let legs: String = row.get(3)?;
    Ok(Hold {
        id: HoldId(row.get(0)?),
        account: account_id(row.get(1)?)?,
        amount: Amount::from_micros(row.get(2)?),
        legs: decode_legs(&legs)?,
        status: HoldStatus::parse(&status).ok_or_else(|| corrupt("hold status", &status))?,
        committed_amount: row.get::<_, Option<i64>>(5)?.map(Amount::from_micros),
        created_at: ts(row.get(6)?),
        expires_at: ts(row.get(7)?),
        resolved_at: row.get::<_, Option<i64>>(8)?.map(ts),
        metadata: metadata(row.get(9)?),
    })
}

/// Column list matching [`tx_from_row`].
pub const TX_COLUMNS: &str = "id, account_id, kind, amount, balance_after, postings, sources, \
                              created_at, metadata, lot_id, hold_id, refund_of, feature_id, quantity";

pub fn tx_from_row(row: &Row<'_>) -> Result<Transaction, StoreError> {
    let kind: String = row.get(2)?;
    let postings: String = row.get(5)?;
    let sources: String = row.get(6)?;
    let feature = match (
        row.get::<_, Option<String>>(12)?,
        row.get::<_, Option<i64>>(13)?,
    ) {
        (Some(id), Some(quantity)) => Some((
            FeatureId::parse(&id).map_err(|_| corrupt("feature id", &id))?,
            Amount::from_micros(quantity),
        )),
        _ => None,
    };
    Ok(Transaction {
        id: TxId(row.get(0)?),
        account: account_id(row.get(1)?)?,
        kind: TxKind::parse(&kind).ok_or_else(|| corrupt("transaction kind", &kind))?,
        amount: Amount::from_micros(row.get(3)?),
        balance_after: Amount::from_micros(row.get(4)?),
        postings: decode_postings(&postings)?,
        sources: decode_sources(&sources)?,
        created_at: ts(row.get(7)?),
        metadata: metadata(row.get(8)?),
        lot: row.get::<_, Option<i64>>(9)?.map(LotId),
        hold: row.get::<_, Option<i64>>(10)?.map(HoldId),
        refund_of: row.get::<_, Option<i64>>(11)?.map(TxId),
        feature,
    })
}

pub fn feature_from_row(row: &Row<'_>) -> Result<Feature, StoreError> {
    let id: String = row.get(0)?;
    Ok(Feature {
        id: FeatureId::parse(&id).map_err(|_| corrupt("feature id", &id))?,
        credits_per_unit: Amount::from_micros(row.get(1)?),
        updated_at: ts(row.get(2)?),
    })
}
