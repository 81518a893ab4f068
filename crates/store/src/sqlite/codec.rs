//! Rows to ledger types and back, and the compact text form of postings, sources and legs.

use ledger::{
    Account, AccountId, Amount, Feature, FeatureId, Hold, HoldId, HoldStatus, LedgerAccount, Leg,
    Lot, LotId, Metadata, Origin, Posting, Share, Source, Timestamp, Transaction, TxId, TxKind,
};
use rusqlite::Row;
use std::fmt::Write;

use crate::StoreError;

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what}: {text:?}"))
}

/// Writes `name=micros` pairs joined by commas.
fn encode_pairs<N: std::fmt::Display>(pairs: impl Iterator<Item = (N, Amount)>) -> String {
    let mut out = String::with_capacity(48);
    for (i, (name, amount)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}={}", amount.micros());
    }
    out
}

fn decode_pairs(text: &str) -> impl Iterator<Item = Option<(&str, Amount)>> {
    text.split(',').filter(|p| !p.is_empty()).map(|pair| {
        let (name, micros) = pair.split_once('=')?;
        Some((name, Amount::from_micros(micros.parse().ok()?)))
    })
}

pub fn encode_postings(postings: &[Posting]) -> String {
    encode_pairs(postings.iter().map(|p| (p.account, p.amount)))
}

pub fn decode_postings(text: &str) -> Result<Vec<Posting>, StoreError> {
    decode_pairs(text)
        .map(|pair| {
            let (name, amount) = pair.ok_or_else(|| corrupt("postings", text))?;
            let account = LedgerAccount::parse(name).ok_or_else(|| corrupt("postings", text))?;
            Ok(Posting { account, amount })
        })
        .collect()
}

pub fn encode_sources(sources: &[Share]) -> String {
    encode_pairs(sources.iter().map(|s| {
        let origin = match s.origin {
            Origin::Lot(lot) => LedgerAccount::Lot(lot),
            Origin::Debt => LedgerAccount::Debt,
        };
        (origin, s.amount)
    }))
}

pub fn decode_sources(text: &str) -> Result<Vec<Share>, StoreError> {
    decode_pairs(text)
        .map(|pair| {
            let (name, amount) = pair.ok_or_else(|| corrupt("sources", text))?;
            let origin = if name == "debt" {
                Origin::Debt
            } else {
                Origin::Lot(LotId::parse(name).map_err(|_| corrupt("sources", text))?)
            };
            Ok(Share { origin, amount })
        })
        .collect()
}

pub fn encode_legs(legs: &[Leg]) -> String {
    encode_pairs(legs.iter().map(|l| (l.lot, l.amount)))
}

pub fn decode_legs(text: &str) -> Result<Vec<Leg>, StoreError> {
    decode_pairs(text)
        .map(|pair| {
            let (name, amount) = pair.ok_or_else(|| corrupt("legs", text))?;
            let lot = LotId::parse(name).map_err(|_| corrupt("legs", text))?;
            Ok(Leg { lot, amount })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_round_trip_through_text() {
        let postings = vec![
            Posting {
                account: LedgerAccount::Lot(LotId(3)),
                amount: Amount::from_micros(-5),
            },
            Posting {
                account: LedgerAccount::Debt,
                amount: Amount::from_micros(-1),
            },
            Posting {
                account: LedgerAccount::Usage,
                amount: Amount::from_micros(6),
            },
        ];
        let text = encode_postings(&postings);
        assert_eq!(text, "lot_3=-5,debt=-1,usage=6");
        assert_eq!(decode_postings(&text).unwrap(), postings);
        assert_eq!(decode_postings("").unwrap(), vec![]);
    }

    #[test]
    fn sources_and_legs_round_trip_through_text() {
        let sources = vec![
            Share {
                origin: Origin::Lot(LotId(1)),
                amount: Amount::credits(2),
            },
            Share {
                origin: Origin::Debt,
                amount: Amount::credits(1),
            },
        ];
        assert_eq!(decode_sources(&encode_sources(&sources)).unwrap(), sources);
        let legs = vec![Leg {
            lot: LotId(9),
            amount: Amount::credits(4),
        }];
        assert_eq!(decode_legs(&encode_legs(&legs)).unwrap(), legs);
    }

    #[test]
    fn damaged_text_is_reported_as_corrupt() {
        assert!(matches!(
            decode_postings("lot_1=abc"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_postings("bank=5"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(decode_legs("debt=5"), Err(StoreError::Corrupt(_))));
    }
}
