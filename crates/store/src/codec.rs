//! The compact text form of postings, sources and legs that both stores keep.

use std::fmt::Write;

use ledger::{Amount, LedgerAccount, Leg, LotId, Origin, Posting, Share, Transaction};

use crate::StoreError;

/// A store error for text that does not decode.
pub(crate) fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what}: {text:?}"))
}

/// Writes `name=micros` pairs joined by commas.
fn encode_pairs<N: std::fmt::Display>(pairs: impl Iterator<Item = (N, Amount)>) -> String {
    let mut out = String::with_capacity(48);
    write_pairs(&mut out, pairs);
    out
}

fn write_pairs<N: std::fmt::Display>(out: &mut String, pairs: impl Iterator<Item = (N, Amount)>) {
    for (i, (name, amount)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}={}", amount.micros());
    }
}

/// Writes postings into `out`, replacing what it held: for a writer that
/// reuses one buffer for every row.
pub fn write_postings(out: &mut String, postings: &[Posting]) {
    out.clear();
    write_pairs(out, postings.iter().map(|p| (p.account, p.amount)));
}

/// Writes sources into `out`, replacing what it held.
pub fn write_sources(out: &mut String, sources: &[Share]) {
    out.clear();
    write_pairs(
        out,
        sources.iter().map(|s| (origin_account(s.origin), s.amount)),
    );
}

fn origin_account(origin: Origin) -> LedgerAccount {
    match origin {
        Origin::Lot(lot) => LedgerAccount::Lot(lot),
        Origin::Debt => LedgerAccount::Debt,
    }
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
    encode_pairs(sources.iter().map(|s| (origin_account(s.origin), s.amount)))
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

/// What a transaction moved into (positive) or out of (negative) `usage`.
pub fn usage_of(tx: &Transaction) -> i64 {
    tx.posted_to(LedgerAccount::Usage)
        .unwrap_or_default()
        .micros()
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
