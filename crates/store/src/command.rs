//! Commands: the writes a store applies, and what each one answers.

use ledger::{
    Account, AccountId, Amount, Balance, Feature, FeatureId, Hold, HoldId, HoldTtl, Lot, LotId,
    Metadata, NewAccount, NewGrant, Reject, Transaction, TxId,
};

/// What a consume charges: an amount, or a quantity of a priced feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    /// A number of credits.
    Amount(Amount),
    /// Units of a feature, priced when the consume is applied.
    Feature {
        /// The feature.
        feature: FeatureId,
        /// How many units.
        quantity: Amount,
    },
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Opens an account.
    CreateAccount(NewAccount),
    /// Grants credits.
    Grant {
        /// The account.
        account: AccountId,
        /// The grant.
        grant: NewGrant,
    },
    /// Spends credits.
    Consume {
        /// The account.
        account: AccountId,
        /// What to charge.
        charge: Charge,
        /// Operator metadata.
        metadata: Metadata,
    },
    /// Reserves credits.
    Hold {
        /// The account.
        account: AccountId,
        /// Credits to reserve.
        amount: Amount,
        /// How long until the hold releases by itself.
        ttl: HoldTtl,
        /// Operator metadata.
        metadata: Metadata,
    },
    /// Turns a hold into usage.
    Commit {
        /// The hold.
        hold: HoldId,
        /// The final amount.
        amount: Amount,
        /// Operator metadata.
        metadata: Metadata,
    },
    /// Cancels a hold.
    Release {
        /// The hold.
        hold: HoldId,
        /// Operator metadata.
        metadata: Metadata,
    },
    /// Voids what remains of a grant.
    Void {
        /// The grant's lot.
        lot: LotId,
        /// Operator metadata.
        metadata: Metadata,
    },
    /// Refunds usage.
    Refund {
        /// The usage transaction.
        tx: TxId,
        /// How much; all that is left when absent.
        amount: Option<Amount>,
        /// Operator metadata.
        metadata: Metadata,
    },
    /// Sets a feature's price.
    PutFeature(Feature),
    /// Writes what time has done to an account (the background sweep).
    Settle {
        /// The account.
        account: AccountId,
    },
}

/// What a successful write produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The account opened.
    AccountCreated(Account),
    /// The grant's lot and its transaction.
    Granted {
        /// The lot, as it stands after the grant (debt repaid).
        lot: Lot,
        /// The grant transaction.
        tx: Transaction,
    },
    /// The consume's transaction and the balance after it.
    Consumed {
        /// The usage transaction.
        tx: Transaction,
        /// The balance right after.
        balance: Balance,
    },
    /// The hold placed.
    Held {
        /// The hold.
        hold: Hold,
        /// The balance right after.
        balance: Balance,
    },
    /// The hold committed.
    Committed {
        /// The hold.
        hold: Hold,
        /// The usage transaction.
        tx: Transaction,
        /// The balance right after.
        balance: Balance,
    },
    /// The hold released.
    Released {
        /// The hold.
        hold: Hold,
    },
    /// The grant voided.
    Voided {
        /// The lot, now voided.
        lot: Lot,
        /// The void transaction.
        tx: Transaction,
    },
    /// The refund transaction.
    Refunded {
        /// The refund.
        tx: Transaction,
    },
    /// The feature as stored.
    FeatureSet(Feature),
    /// How many transactions settling wrote.
    Settled {
        /// Their number.
        transactions: usize,
    },
}

/// A response as the client first received it, kept for idempotent replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// Turns a write's result into the response the client receives. The store
/// calls it inside the batch, so the response is stored in the same database
/// transaction as the write it describes.
pub type Render = fn(&Result<Outcome, Reject>) -> StoredResponse;

/// An idempotency key with the fingerprint of the request that carried it.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    /// The key, scoped by the caller (for example by API key).
    pub key: String,
    /// A digest of the request (method, path, body).
    pub fingerprint: Vec<u8>,
    /// Renders the response to keep.
    pub render: Render,
}

/// A write with its optional idempotency key.
#[derive(Clone, Debug)]
pub struct Command {
    /// The write.
    pub op: Op,
    /// Makes retries safe: the same key with the same request replays the
    /// first response; with a different request, it is a conflict.
    pub idempotency: Option<IdempotencyKey>,
}

impl Command {
    /// A command without an idempotency key.
    pub fn new(op: Op) -> Command {
        Command {
            op,
            idempotency: None,
        }
    }
}

/// How a command was answered.
// Moved once per request from the writer to the handler, so the size
// difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Executed {
    /// Applied now (or rejected now, with nothing changed).
    Fresh(Result<Outcome, Reject>),
    /// The idempotency key was seen before with the same request: here is
    /// the first response, and nothing changed.
    Replayed(StoredResponse),
}
