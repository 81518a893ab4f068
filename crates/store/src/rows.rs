//! Rows of either store's tables to ledger types. Both stores keep the same
//! columns, so one set of mappers serves them through [`Columns`].

use crate::StoreError;
use crate::codec::{corrupt, decode_legs, decode_postings, decode_sources};
use ledger::{
    Account, AccountId, Amount, ExternalId, Feature, FeatureId, Hold, HoldId, HoldStatus, Lot,
    LotId, Metadata, Source, Timestamp, Transaction, TxId, TxKind,
};

use crate::records::Record;

/// Typed access to the columns of a result row.
pub trait Columns {
    /// An integer column.
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn int_opt(&self, i: usize) -> Result<Option<i64>, StoreError>;
    /// A text column.
    fn text(&self, i: usize) -> Result<String, StoreError>;
    /// A nullable text column.
    fn text_opt(&self, i: usize) -> Result<Option<String>, StoreError>;
}

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

pub fn account_from_row(row: &impl Columns) -> Result<Account, StoreError> {
    Ok(Account {
        id: account_id(row.text(0)?)?,
        name: row.text_opt(1)?,
        metadata: metadata(row.text(2)?),
        overdraft_limit: Amount::from_micros(row.int(3)?),
        debt: Amount::from_micros(row.int(4)?),
        created_at: ts(row.int(5)?),
    })
}

/// Column list matching [`lot_from_row`].
pub const LOT_COLUMNS: &str = "id, account_id, source, priority, amount, remaining, effective_at, \
                               expires_at, voided_at, created_at, metadata, external_id";

pub fn lot_from_row(row: &impl Columns) -> Result<Lot, StoreError> {
    let source = row.text(2)?;
    Ok(Lot {
        id: LotId(row.int(0)?),
        account: account_id(row.text(1)?)?,
        source: Source::parse(&source).ok_or_else(|| corrupt("source", &source))?,
        priority: u8::try_from(row.int(3)?).map_err(|_| corrupt("priority", "out of range"))?,
        amount: Amount::from_micros(row.int(4)?),
        remaining: Amount::from_micros(row.int(5)?),
        effective_at: ts(row.int(6)?),
        expires_at: row.int_opt(7)?.map(ts),
        voided_at: row.int_opt(8)?.map(ts),
        created_at: ts(row.int(9)?),
        metadata: metadata(row.text(10)?),
        external_id: external_id(row.text_opt(11)?)?,
    })
}

fn external_id(text: Option<String>) -> Result<Option<ExternalId>, StoreError> {
    text.map(|t| ExternalId::parse(&t).map_err(|_| corrupt("external id", &t)))
        .transpose()
}

/// Column list matching [`hold_from_row`].
pub const HOLD_COLUMNS: &str = "id, account_id, amount, legs, status, committed_amount, \
                                created_at, expires_at, resolved_at, metadata";

pub fn hold_from_row(row: &impl Columns) -> Result<Hold, StoreError> {
    let status = row.text(4)?;
    let legs = row.text(3)?;
    Ok(Hold {
        id: HoldId(row.int(0)?),
        account: account_id(row.text(1)?)?,
        amount: Amount::from_micros(row.int(2)?),
        legs: decode_legs(&legs)?,
        status: HoldStatus::parse(&status).ok_or_else(|| corrupt("hold status", &status))?,
        committed_amount: row.int_opt(5)?.map(Amount::from_micros),
        created_at: ts(row.int(6)?),
        expires_at: ts(row.int(7)?),
        resolved_at: row.int_opt(8)?.map(ts),
        metadata: metadata(row.text(9)?),
    })
}

/// How many columns [`TX_COLUMNS`] names.
pub const TX_COLUMN_COUNT: usize = 18;

/// Column list matching [`tx_from_row`].
pub const TX_COLUMNS: &str = "id, account_id, kind, amount, balance_after, postings, sources, \
                              created_at, metadata, lot_id, hold_id, refund_of, feature_id, quantity, \
                              external_id, reason, actor, grant_source";

pub fn tx_from_row(row: &impl Columns) -> Result<Transaction, StoreError> {
    let kind = row.text(2)?;
    let postings = row.text(5)?;
    let sources = row.text(6)?;
    let feature = match (row.text_opt(12)?, row.int_opt(13)?) {
        (Some(id), Some(quantity)) => Some((
            FeatureId::parse(&id).map_err(|_| corrupt("feature id", &id))?,
            Amount::from_micros(quantity),
        )),
        _ => None,
    };
    Ok(Transaction {
        id: TxId(row.int(0)?),
        account: account_id(row.text(1)?)?,
        kind: TxKind::parse(&kind).ok_or_else(|| corrupt("transaction kind", &kind))?,
        amount: Amount::from_micros(row.int(3)?),
        balance_after: Amount::from_micros(row.int(4)?),
        postings: decode_postings(&postings)?,
        sources: decode_sources(&sources)?,
        created_at: ts(row.int(7)?),
        metadata: metadata(row.text(8)?),
        lot: row.int_opt(9)?.map(LotId),
        hold: row.int_opt(10)?.map(HoldId),
        refund_of: row.int_opt(11)?.map(TxId),
        feature,
        external_id: external_id(row.text_opt(14)?)?,
        reason: row.text_opt(15)?,
        actor: row.text_opt(16)?,
        source: match row.text_opt(17)? {
            Some(code) => {
                Some(ledger::Source::parse(&code).ok_or_else(|| corrupt("grant source", &code))?)
            }
            None => None,
        },
    })
}

/// Column list matching [`record_from_row`].
pub const RECORD_COLUMNS: &str = "kind, id, version, body, created_at, updated_at";

/// A record without its lookups, which live in another table.
pub fn record_from_row(row: &impl Columns) -> Result<Record, StoreError> {
    Ok(Record {
        kind: row.text(0)?,
        id: row.text(1)?,
        version: u64::try_from(row.int(2)?).map_err(|_| corrupt("record version", "negative"))?,
        body: row.text(3)?,
        lookups: Vec::new(),
        created_at: ts(row.int(4)?),
        updated_at: ts(row.int(5)?),
    })
}

pub fn feature_from_row(row: &impl Columns) -> Result<Feature, StoreError> {
    let id = row.text(0)?;
    Ok(Feature {
        id: FeatureId::parse(&id).map_err(|_| corrupt("feature id", &id))?,
        credits_per_unit: Amount::from_micros(row.int(1)?),
        updated_at: ts(row.int(2)?),
    })
}
