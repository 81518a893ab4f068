//! JSON views of ledger types, and the renderers that turn a write's outcome into a response.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use ledger::{
    Account, Amount, Balance, Feature, Hold, HoldStatus, LedgerAccount, Lot, Metadata, Origin,
    Timestamp, Transaction,
};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use store::{Outcome, Refused, StoredResponse};

use crate::error::ApiError;

/// An amount written as a decimal string.
#[derive(Debug, Clone, Copy)]
pub struct Decimal(pub Amount);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An instant written as RFC 3339.
#[derive(Debug, Clone, Copy)]
pub struct Instant(pub Timestamp);

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Anything written with `Display`, as a string (ids, codes).
pub struct Text<T>(pub T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Metadata written back as the JSON object it was given as.
pub struct Meta<'a>(pub &'a Metadata);

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&RawValue>(self.0.as_str()) {
            Ok(raw) => raw.serialize(s),
            Err(_) => serde_json::Map::new().serialize(s),
        }
    }
}

#[derive(Serialize)]
pub struct AccountView<'a> {
    id: &'a str,
    name: Option<&'a str>,
    metadata: Meta<'a>,
    overdraft_limit: Decimal,
    created_at: Instant,
}

impl<'a> AccountView<'a> {
    pub fn new(a: &'a Account) -> Self {
        AccountView {
            id: a.id.as_str(),
            name: a.name.as_deref(),
            metadata: Meta(&a.metadata),
            overdraft_limit: Decimal(a.overdraft_limit),
            created_at: Instant(a.created_at),
        }
    }
}

#[derive(Serialize)]
pub struct GrantView<'a> {
    id: Text<ledger::LotId>,
    account_id: &'a str,
    status: &'static str,
    amount: Decimal,
    remaining: Decimal,
    source: &'static str,
    priority: u8,
    effective_at: Instant,
    expires_at: Option<Instant>,
    voided_at: Option<Instant>,
    created_at: Instant,
    metadata: Meta<'a>,
    external_id: Option<&'a str>,
}

impl<'a> GrantView<'a> {
    /// The grant as it stands at `now`: a lot past its expiry shows nothing
    /// remaining even before its expiry is written.
    pub fn new(l: &'a Lot, now: Timestamp) -> Self {
        let (status, remaining) = if l.voided_at.is_some() {
            ("voided", l.remaining)
        } else if l.is_expired_at(now) {
            ("expired", Amount::ZERO)
        } else if l.effective_at > now {
            ("scheduled", l.remaining)
        } else if l.remaining.is_zero() {
            ("spent", l.remaining)
        } else {
            ("active", l.remaining)
        };
        GrantView {
            id: Text(l.id),
            account_id: l.account.as_str(),
            status,
            amount: Decimal(l.amount),
            remaining: Decimal(remaining),
            source: l.source.code(),
            priority: l.priority,
            effective_at: Instant(l.effective_at),
            expires_at: l.expires_at.map(Instant),
            voided_at: l.voided_at.map(Instant),
            created_at: Instant(l.created_at),
            metadata: Meta(&l.metadata),
            external_id: l.external_id.as_ref().map(ledger::ExternalId::as_str),
        }
    }
}

#[derive(Serialize)]
pub struct LotShareView {
    id: Text<ledger::LotId>,
    source: &'static str,
    remaining: Decimal,
    priority: u8,
    effective_at: Instant,
    expires_at: Option<Instant>,
}

#[derive(Serialize)]
pub struct BalanceView<'a> {
    account_id: &'a str,
    available: Decimal,
    held: Decimal,
    debt: Decimal,
    at: Instant,
    lots: Vec<LotShareView>,
}

impl<'a> BalanceView<'a> {
    /// The balance, with the lots that still hold credits (including those
    /// not yet effective), in burn-down order.
    pub fn new(account: &'a str, balance: Balance, lots: &[Lot], at: Timestamp) -> Self {
        BalanceView {
            account_id: account,
            available: Decimal(balance.available),
            held: Decimal(balance.held),
            debt: Decimal(balance.debt),
            at: Instant(at),
            lots: lots
                .iter()
                .filter(|l| l.remaining.is_positive() && l.is_live_at(at))
                .map(|l| LotShareView {
                    id: Text(l.id),
                    source: l.source.code(),
                    remaining: Decimal(l.remaining),
                    priority: l.priority,
                    effective_at: Instant(l.effective_at),
                    expires_at: l.expires_at.map(Instant),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct BalanceSummary {
    available: Decimal,
    held: Decimal,
    debt: Decimal,
}

impl BalanceSummary {
    pub fn new(b: Balance) -> Self {
        BalanceSummary {
            available: Decimal(b.available),
            held: Decimal(b.held),
            debt: Decimal(b.debt),
        }
    }
}

#[derive(Serialize)]
pub struct HoldView<'a> {
    id: Text<ledger::HoldId>,
    account_id: &'a str,
    status: &'static str,
    amount: Decimal,
    committed_amount: Option<Decimal>,
    created_at: Instant,
    expires_at: Instant,
    resolved_at: Option<Instant>,
    metadata: Meta<'a>,
}

impl<'a> HoldView<'a> {
    /// The hold as it stands at `now`. An expired hold was resolved at its
    /// expiry instant, whether or not the sweep has written its release
    /// yet (the release transaction carries the instant it was written), so
    /// that `resolved_at` never changes between reads.
    pub fn new(h: &'a Hold, now: Timestamp) -> Self {
        let status = h.status_at(now);
        let resolved_at = match status {
            HoldStatus::Expired => Some(h.expires_at),
            _ => h.resolved_at,
        };
        HoldView {
            id: Text(h.id),
            account_id: h.account.as_str(),
            status: status.code(),
            amount: Decimal(h.amount),
            committed_amount: h.committed_amount.map(Decimal),
            created_at: Instant(h.created_at),
            expires_at: Instant(h.expires_at),
            resolved_at: resolved_at.map(Instant),
            metadata: Meta(&h.metadata),
        }
    }
}

#[derive(Serialize)]
struct PostingView {
    account: Text<LedgerAccount>,
    amount: Decimal,
}

#[derive(Serialize)]
struct LotMoveView {
    lot_id: Text<ledger::LotId>,
    amount: Decimal,
}

#[derive(Serialize)]
struct SourceView {
    from: String,
    amount: Decimal,
}

#[derive(Serialize)]
pub struct TransactionView<'a> {
    id: Text<ledger::TxId>,
    account_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    amount: Decimal,
    balance_after: Decimal,
    created_at: Instant,
    metadata: Meta<'a>,
    lots: Vec<LotMoveView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceView>,
    postings: Vec<PostingView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant_id: Option<Text<ledger::LotId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_id: Option<Text<ledger::HoldId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_of: Option<Text<ledger::TxId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
}

impl<'a> TransactionView<'a> {
    pub fn new(tx: &'a Transaction) -> Self {
        TransactionView {
            id: Text(tx.id),
            account_id: tx.account.as_str(),
            kind: tx.kind.code(),
            amount: Decimal(tx.amount),
            balance_after: Decimal(tx.balance_after),
            created_at: Instant(tx.created_at),
            metadata: Meta(&tx.metadata),
            lots: tx
                .postings
                .iter()
                .filter_map(|p| match p.account {
                    LedgerAccount::Lot(id) => Some(LotMoveView {
                        lot_id: Text(id),
                        amount: Decimal(p.amount),
                    }),
                    _ => None,
                })
                .collect(),
            sources: tx
                .sources
                .iter()
                .map(|s| SourceView {
                    from: match s.origin {
                        Origin::Lot(id) => id.to_string(),
                        Origin::Debt => "debt".to_owned(),
                    },
                    amount: Decimal(s.amount),
                })
                .collect(),
            postings: tx
                .postings
                .iter()
                .map(|p| PostingView {
                    account: Text(p.account),
                    amount: Decimal(p.amount),
                })
                .collect(),
            grant_id: tx.lot.map(Text),
            hold_id: tx.hold.map(Text),
            refund_of: tx.refund_of.map(Text),
            feature: tx.feature.as_ref().map(|(f, _)| f.as_str()),
            quantity: tx.feature.as_ref().map(|(_, q)| Decimal(*q)),
            external_id: tx.external_id.as_ref().map(ledger::ExternalId::as_str),
        }
    }
}

#[derive(Serialize)]
pub struct FeatureView<'a> {
    id: &'a str,
    credits_per_unit: Decimal,
    updated_at: Instant,
}

impl<'a> FeatureView<'a> {
    pub fn new(f: &'a Feature) -> Self {
        FeatureView {
            id: f.id.as_str(),
            credits_per_unit: Decimal(f.credits_per_unit),
            updated_at: Instant(f.updated_at),
        }
    }
}

/// A page of a list.
#[derive(Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Renders `items` with `view`. A full page points to the next one
    /// through the id of its last item (`cursor`).
    pub fn new<'a, I, C: std::fmt::Display>(
        items: &'a [I],
        limit: usize,
        cursor: impl Fn(&I) -> C,
        view: impl Fn(&'a I) -> T,
    ) -> Page<T> {
        Page {
            data: items.iter().map(view).collect(),
            next_cursor: (items.len() == limit)
                .then(|| items.last().map(|i| cursor(i).to_string()))
                .flatten(),
        }
    }
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Serializes a view as a 200 or 201 response.
pub fn json<T: Serialize>(status: StatusCode, view: &T) -> Response {
    json_response(status, to_vec(view))
}

fn to_vec<T: Serialize>(view: &T) -> Vec<u8> {
    serde_json::to_vec(view).expect("views serialize")
}

fn stored<T: Serialize>(status: StatusCode, view: &T) -> StoredResponse {
    StoredResponse {
        status: status.as_u16(),
        body: to_vec(view),
    }
}

fn refused(refused: &Refused) -> StoredResponse {
    let error = ApiError::from(refused.clone());
    StoredResponse {
        status: error.status().as_u16(),
        body: error.body(),
    }
}

/// A hold write's answer: the hold, the transaction that moved its
/// credits, and the balance right after. Placing, committing and releasing
/// a hold all answer in this shape.
#[derive(Serialize)]
struct HoldWritten<'a> {
    hold: HoldView<'a>,
    transaction: TransactionView<'a>,
    balance: BalanceSummary,
}

/// Renders any write's outcome; used both for the first answer and for the
/// copy an idempotency key keeps.
pub fn outcome(result: &Result<Outcome, Refused>) -> StoredResponse {
    let ok = StatusCode::OK;
    let created = StatusCode::CREATED;
    match result {
        Err(reason) => refused(reason),
        Ok(Outcome::AccountCreated(account)) => stored(created, &AccountView::new(account)),
        Ok(Outcome::AccountUpdated(account)) => stored(ok, &AccountView::new(account)),
        Ok(Outcome::Granted { lot, tx }) => stored(created, &GrantView::new(lot, tx.created_at)),
        Ok(Outcome::Consumed { tx, balance }) => {
            #[derive(Serialize)]
            struct Consumed<'a> {
                transaction: TransactionView<'a>,
                balance: BalanceSummary,
            }
            stored(
                ok,
                &Consumed {
                    transaction: TransactionView::new(tx),
                    balance: BalanceSummary::new(*balance),
                },
            )
        }
        Ok(Outcome::Held { hold, tx, balance }) => stored(
            created,
            &HoldWritten {
                hold: HoldView::new(hold, hold.created_at),
                transaction: TransactionView::new(tx),
                balance: BalanceSummary::new(*balance),
            },
        ),
        Ok(Outcome::Committed { hold, tx, balance })
        | Ok(Outcome::Released { hold, tx, balance }) => stored(
            ok,
            &HoldWritten {
                hold: HoldView::new(hold, tx.created_at),
                transaction: TransactionView::new(tx),
                balance: BalanceSummary::new(*balance),
            },
        ),
        Ok(Outcome::Voided { lot, tx }) => stored(ok, &GrantView::new(lot, tx.created_at)),
        Ok(Outcome::Refunded { tx }) => stored(created, &TransactionView::new(tx)),
        Ok(Outcome::FeatureSet(feature)) => stored(ok, &FeatureView::new(feature)),
        Ok(Outcome::Settled { transactions }) => {
            stored(ok, &serde_json::json!({ "transactions": transactions }))
        }
        // Record writes are answered by the handlers of their kinds; this
        // form is only what an idempotency key keeps when one is used.
        Ok(Outcome::RecordPut(record)) => stored(
            ok,
            &serde_json::json!({ "kind": record.kind, "id": record.id, "version": record.version }),
        ),
        Ok(Outcome::RecordDeleted) => stored(ok, &serde_json::json!({ "deleted": true })),
    }
}
