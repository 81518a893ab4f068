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
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::openapi::schema;

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

/// An account: one of the operator's customers.
#[derive(Serialize, ToSchema)]
#[schema(as = Account)]
pub struct AccountView<'a> {
    #[schema(value_type = schema::AccountId)]
    id: &'a str,
    /// The display name; null when none was given.
    #[schema(required = true)]
    name: Option<&'a str>,
    metadata: Meta<'a>,
    /// How far below zero consumes and holds may take the available
    /// balance; the shortfall is owed as debt.
    overdraft_limit: Decimal,
    /// When the account was opened.
    created_at: Instant,
    /// How its gateway calls are paid for: `credits` or `byok`. Shown when
    /// one account is read or changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    billing_mode: Option<crate::account_billing::BillingMode>,
    /// Its own BYOK platform fee in percent; null when the operator's
    /// default applies. Shown when one account is read or changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    byok_fee_percent: Option<Option<String>>,
    /// The available balance at or below which `balance.low` is sent; null
    /// when the operator's default applies. Shown when one account is read
    /// or changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    low_balance_threshold: Option<Option<Decimal>>,
}

impl<'a> AccountView<'a> {
    pub fn new(a: &'a Account) -> Self {
        AccountView {
            id: a.id.as_str(),
            name: a.name.as_deref(),
            metadata: Meta(&a.metadata),
            overdraft_limit: Decimal(a.overdraft_limit),
            created_at: Instant(a.created_at),
            billing_mode: None,
            byok_fee_percent: None,
            low_balance_threshold: None,
        }
    }

    /// The same view, with the account's billing mode and fee.
    pub fn with_billing(mut self, billing: &crate::account_billing::AccountBilling) -> Self {
        self.billing_mode = Some(billing.billing_mode);
        self.byok_fee_percent = Some(billing.byok_fee_percent.clone());
        self.low_balance_threshold = Some(
            billing
                .low_balance_threshold_micros
                .map(|m| Decimal(ledger::Amount::from_micros(m))),
        );
        self
    }
}

/// Where a lot stands when it is read.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Spendable now, with credits left.
    Active,
    /// Not yet effective.
    Scheduled,
    /// Effective, with nothing left.
    Spent,
    /// Past its expiry.
    Expired,
    /// Voided.
    Voided,
}

/// A lot of credits created by a grant (or by a refund of debt-funded usage).
#[derive(Serialize, ToSchema)]
#[schema(as = Grant)]
pub struct GrantView<'a> {
    #[schema(value_type = schema::GrantId)]
    id: Text<ledger::LotId>,
    #[schema(value_type = schema::AccountId)]
    account_id: &'a str,
    /// Where the lot stands when it is read: `scheduled` before
    /// `effective_at`, `expired` from `expires_at` on (with `remaining`
    /// shown as 0 even before the expiry is written to the journal),
    /// `voided` once voided, `spent` when nothing remains, otherwise `active`.
    status: GrantStatus,
    /// Credits granted.
    amount: Decimal,
    /// Credits still in the lot, between 0 and `amount`; credits moved into
    /// a hold's escrow are not counted, and an expired lot shows 0.
    remaining: Decimal,
    #[schema(value_type = schema::GrantSource)]
    source: &'static str,
    #[schema(value_type = schema::Priority)]
    priority: u8,
    /// When the credits become spendable.
    effective_at: Instant,
    /// The first instant the credits are no longer spendable; null for no expiry.
    #[schema(required = true)]
    expires_at: Option<Instant>,
    /// When the lot was voided; null if it was not.
    #[schema(required = true)]
    voided_at: Option<Instant>,
    /// When the grant was written.
    created_at: Instant,
    metadata: Meta<'a>,
    /// What caused the grant, if the grant named it; null otherwise.
    #[schema(required = true, value_type = Option<schema::ExternalId>)]
    external_id: Option<&'a str>,
}

impl<'a> GrantView<'a> {
    /// The grant as it stands at `now`: a lot past its expiry shows nothing
    /// remaining even before its expiry is written.
    pub fn new(l: &'a Lot, now: Timestamp) -> Self {
        let (status, remaining) = if l.voided_at.is_some() {
            (GrantStatus::Voided, l.remaining)
        } else if l.is_expired_at(now) {
            (GrantStatus::Expired, Amount::ZERO)
        } else if l.effective_at > now {
            (GrantStatus::Scheduled, l.remaining)
        } else if l.remaining.is_zero() {
            (GrantStatus::Spent, l.remaining)
        } else {
            (GrantStatus::Active, l.remaining)
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

/// A lot that still holds credits, as a balance lists it.
#[derive(Serialize, ToSchema)]
#[schema(as = LotShare)]
pub struct LotShareView {
    #[schema(value_type = schema::GrantId)]
    id: Text<ledger::LotId>,
    #[schema(value_type = schema::GrantSource)]
    source: &'static str,
    /// Credits left in the lot.
    remaining: Decimal,
    #[schema(value_type = schema::Priority)]
    priority: u8,
    /// When the credits become spendable.
    effective_at: Instant,
    /// The first instant the credits are no longer spendable; null for no expiry.
    #[schema(required = true)]
    expires_at: Option<Instant>,
}

/// An account's balance at an instant, with the lots behind it.
#[derive(Serialize, ToSchema)]
#[schema(as = Balance)]
pub struct BalanceView<'a> {
    #[schema(value_type = schema::AccountId)]
    account_id: &'a str,
    /// Credits in spendable lots, minus debt, minus the part of pending
    /// holds not covered by escrow; negative while in overdraft.
    available: Decimal,
    /// Credits reserved by pending holds.
    held: Decimal,
    /// Credits owed; zero or more.
    debt: Decimal,
    /// The instant the balance is for.
    at: Instant,
    /// Lots with credits left that are neither expired nor voided at `at`,
    /// including lots not yet effective, in burn-down order (priority, then
    /// earliest expiry, then oldest).
    lots: Vec<LotShareView>,
    /// With `?include=totals`: what the account's whole journal adds up to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    totals: Option<TotalsView>,
    /// With `?include=forecast`: the recent daily spending and when the
    /// available credits run out at that rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    forecast: Option<ForecastView>,
}

/// How fast an account spent lately, and when its credits run out at that rate.
#[derive(Serialize, ToSchema)]
#[schema(as = Forecast)]
pub struct ForecastView {
    /// The days the spending is measured over, ending at the balance's `at`.
    window_days: u32,
    /// Credits spent a day on average over the window: consumes and
    /// committed holds, less the refunds written in the window, divided by
    /// `window_days` and rounded down to the micro-credit; "0" when refunds
    /// handed back at least as much as was spent.
    daily_rate: Decimal,
    /// When `available` runs out at the window's exact rate: the balance's
    /// `at` when nothing is available; null when nothing was spent in the
    /// window (or the instant is past year 9999).
    #[schema(required = true)]
    runs_out_at: Option<Instant>,
}

impl ForecastView {
    pub fn new(forecast: &ledger::forecast::Forecast) -> ForecastView {
        ForecastView {
            window_days: forecast.window_days.get(),
            daily_rate: Decimal(forecast.daily_rate),
            runs_out_at: forecast.runs_out_at.map(Instant),
        }
    }
}

/// An account's lifetime totals, added up from its whole journal.
#[derive(Serialize, ToSchema)]
#[schema(as = Totals)]
pub struct TotalsView {
    /// Credits granted, by the source of their grant; sources never granted
    /// are left out.
    #[schema(value_type = std::collections::BTreeMap<String, Decimal>)]
    granted: serde_json::Map<String, serde_json::Value>,
    /// Credits spent by consumes and committed holds.
    spent: Decimal,
    /// Credits refunds handed back.
    refunded: Decimal,
    /// Credits that expired.
    expired: Decimal,
    /// Credits voided, including those clawed back when the payment for
    /// them was returned.
    voided: Decimal,
    /// Debt settled at a period's end and billed as an overage charge.
    settled: Decimal,
}

impl TotalsView {
    pub fn new(totals: &ledger::Totals) -> TotalsView {
        TotalsView {
            granted: totals
                .granted
                .iter()
                .map(|(source, amount)| {
                    (
                        source.code().to_owned(),
                        serde_json::Value::String(amount.to_string()),
                    )
                })
                .collect(),
            spent: Decimal(totals.spent),
            refunded: Decimal(totals.refunded),
            expired: Decimal(totals.expired),
            voided: Decimal(totals.voided),
            settled: Decimal(totals.settled),
        }
    }
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
            totals: None,
            forecast: None,
        }
    }

    /// The same balance, with the account's lifetime totals.
    pub fn with_totals(mut self, totals: &ledger::Totals) -> Self {
        self.totals = Some(TotalsView::new(totals));
        self
    }

    /// The same balance, with the account's spending forecast.
    pub fn with_forecast(mut self, forecast: &ledger::forecast::Forecast) -> Self {
        self.forecast = Some(ForecastView::new(forecast));
        self
    }
}

/// The balance right after a write.
#[derive(Serialize, ToSchema)]
pub struct BalanceSummary {
    /// Credits that can be spent now: spendable lots minus debt minus the
    /// part of pending holds not covered by escrow; negative while in overdraft.
    available: Decimal,
    /// Credits reserved by pending holds.
    held: Decimal,
    /// Credits owed; zero or more. New spendable credits repay it first.
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

/// A reservation of credits, committed or released later.
#[derive(Serialize, ToSchema)]
#[schema(as = Hold)]
pub struct HoldView<'a> {
    #[schema(value_type = schema::HoldId)]
    id: Text<ledger::HoldId>,
    #[schema(value_type = schema::AccountId)]
    account_id: &'a str,
    /// Where the hold stands when it is read; a pending hold past its expiry
    /// reads as `expired` even before its release is written.
    #[schema(value_type = schema::HoldStatus)]
    status: &'static str,
    /// Credits reserved.
    amount: Decimal,
    /// The final amount, once committed; null otherwise.
    #[schema(required = true)]
    committed_amount: Option<Decimal>,
    /// When the hold was placed.
    created_at: Instant,
    /// When a still pending hold releases by itself.
    expires_at: Instant,
    /// When the hold was committed, released or expired (for a hold past its
    /// expiry, its `expires_at`); null while pending.
    #[schema(required = true)]
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

/// One movement of the double entry.
#[derive(Serialize, ToSchema)]
#[schema(as = Posting)]
struct PostingView {
    #[schema(value_type = schema::LedgerAccount)]
    account: Text<LedgerAccount>,
    /// Signed: into (positive) or out of (negative) the ledger account.
    amount: Decimal,
}

/// One movement into or out of a lot.
#[derive(Serialize, ToSchema)]
#[schema(as = LotMove)]
struct LotMoveView {
    #[schema(value_type = schema::GrantId)]
    lot_id: Text<ledger::LotId>,
    /// Signed: positive into the lot, negative out of it.
    amount: Decimal,
}

/// Where some of the credits a usage spent, or a claw-back took, came from.
#[derive(Serialize, ToSchema)]
#[schema(as = UsageSource)]
struct SourceView {
    /// The lot the credits came from (directly or through a hold's escrow),
    /// or `debt` for credits the account did not have.
    #[schema(pattern = "^(lot_[1-9][0-9]*|debt)$")]
    from: String,
    /// Positive.
    amount: Decimal,
}

/// One journal entry. Its postings always sum to zero.
#[derive(Serialize, ToSchema)]
#[schema(as = Transaction)]
pub struct TransactionView<'a> {
    #[schema(value_type = schema::TransactionId)]
    id: Text<ledger::TxId>,
    #[schema(value_type = schema::AccountId)]
    account_id: &'a str,
    #[serde(rename = "type")]
    #[schema(value_type = schema::TransactionType)]
    kind: &'static str,
    /// The signed net change to the account's credits (its lots and hold
    /// escrow, minus its debt): positive for grants and refunds, negative
    /// for consumes, commits, expiries, voids and claw-backs. A hold and a debt
    /// repayment only move credits within the account, so theirs is zero. A
    /// hold release, a commit that returns unused escrow and a refund put
    /// credits back into lots; credits that go back to a lot that has
    /// expired or been voided meanwhile leave it again at once, and count
    /// here as they leave: such a release is negative by that much, and
    /// such a refund smaller.
    amount: Decimal,
    /// The account's available balance right after the transaction.
    balance_after: Decimal,
    /// When the transaction was written.
    created_at: Instant,
    metadata: Meta<'a>,
    /// The postings on lots, in posting order; a lot can appear twice when
    /// credits returned to an expired or voided lot leave it again.
    lots: Vec<LotMoveView>,
    /// Only on usage (`consume`, `hold_commit`) that spent something and on
    /// a `claw_back`: where the credits came from, in the order taken.
    /// Refunds of usage retrace these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceView>,
    /// The full double entry.
    postings: Vec<PostingView>,
    /// The lot the transaction is about (`grant`, `expire`, `void`, the
    /// grant a `claw_back` takes back), or the new `refund` lot a refund
    /// created.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::GrantId>, nullable = false)]
    grant_id: Option<Text<ledger::LotId>>,
    /// The hold the transaction is about (`hold`, `hold_commit`, `hold_release`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::HoldId>, nullable = false)]
    hold_id: Option<Text<ledger::HoldId>>,
    /// On a refund: the usage transaction it refunds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::TransactionId>, nullable = false)]
    refund_of: Option<Text<ledger::TxId>>,
    /// On a consume priced by a feature: the feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::FeatureId>, nullable = false)]
    feature: Option<&'a str>,
    /// On a consume priced by a feature: the units charged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    quantity: Option<Decimal>,
    /// On a grant, consume or claw-back that named one: what caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::ExternalId>, nullable = false)]
    external_id: Option<&'a str>,
    /// On a grant that gave one: why it was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<&'a str>,
    /// On a grant made through the API: the id of the key that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    actor: Option<&'a str>,
    /// On a grant: where its credits come from (`purchase`, `daily_reward`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::GrantSource>, nullable = false)]
    source: Option<&'static str>,
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
            reason: tx.reason.as_deref(),
            actor: tx.actor.as_deref(),
            source: tx.source.map(ledger::Source::code),
        }
    }
}

/// A priced feature.
#[derive(Serialize, ToSchema)]
#[schema(as = Feature)]
pub struct FeatureView<'a> {
    #[schema(value_type = schema::FeatureId)]
    id: &'a str,
    /// The price of one unit in credits; positive.
    credits_per_unit: Decimal,
    /// When the price was last set.
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

/// A page of a list: `{"data": [...], "next_cursor"}`.
#[derive(Serialize)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub data: Vec<T>,
    /// Where the next page starts, when this one is full.
    pub next_cursor: Option<String>,
}

/// A page of accounts.
pub type AccountPage<'a> = Page<AccountView<'a>>;
/// A page of grants.
pub type GrantPage<'a> = Page<GrantView<'a>>;
/// A page of holds.
pub type HoldPage<'a> = Page<HoldView<'a>>;
/// A page of transactions.
pub type TransactionPage<'a> = Page<TransactionView<'a>>;
/// A page of features.
pub type FeaturePage<'a> = Page<FeatureView<'a>>;

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
#[derive(Serialize, ToSchema)]
#[schema(as = HoldWritten)]
pub struct HoldWritten<'a> {
    hold: HoldView<'a>,
    /// The `hold`, `hold_commit` or `hold_release` transaction.
    transaction: TransactionView<'a>,
    balance: BalanceSummary,
}

/// An account as opened, with the lots it opened with.
#[derive(Serialize, ToSchema)]
#[schema(as = AccountOpened)]
pub struct AccountOpened<'a> {
    #[serde(flatten)]
    account: AccountView<'a>,
    /// The lots the account opened with (a sign-up bonus, the first period
    /// of a default plan), in the same transaction; empty when none.
    grants: Vec<GrantView<'a>>,
}

/// A consume's answer: the usage transaction and the balance right after it.
#[derive(Serialize, ToSchema)]
#[schema(as = Consumed)]
pub struct Consumed<'a> {
    /// The `consume` transaction.
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
        Ok(Outcome::AccountCreated { account, lots }) => stored(
            created,
            &AccountOpened {
                account: AccountView::new(account),
                grants: lots
                    .iter()
                    .map(|l| GrantView::new(l, account.created_at))
                    .collect(),
            },
        ),
        Ok(Outcome::AccountUpdated(account)) => stored(ok, &AccountView::new(account)),
        Ok(Outcome::Granted { lot, tx }) => stored(created, &GrantView::new(lot, tx.created_at)),
        Ok(Outcome::Consumed { tx, balance }) => stored(
            ok,
            &Consumed {
                transaction: TransactionView::new(tx),
                balance: BalanceSummary::new(*balance),
            },
        ),
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
        // Claw-backs are made by billing; this form is what an idempotency
        // key keeps.
        Ok(Outcome::ClawedBack { tx, balance }) => stored(
            ok,
            &serde_json::json!({
                "transaction": TransactionView::new(tx),
                "balance": BalanceSummary::new(*balance),
            }),
        ),
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
        // Renewals are answered by billing; this form is what an
        // idempotency key keeps.
        Ok(Outcome::Renewed { renewed, lot, .. }) => stored(
            ok,
            &serde_json::json!({
                "grant_id": lot.as_ref().map(|l| l.id.to_string()),
                "settled": renewed.settled.to_string(),
                "carried": renewed.carried.to_string(),
                "expired": renewed.expired.to_string(),
            }),
        ),
    }
}
