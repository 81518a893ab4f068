//! Commands: the writes a store applies, and what each one answers.

use ledger::{
    Account, AccountId, AccountPatch, Amount, Balance, ExternalId, Feature, FeatureId, Hold,
    HoldId, HoldTtl, Lot, LotId, Metadata, NewAccount, NewGrant, Reject, Renewal, Renewed,
    Transaction, TxId,
};

use crate::records::{Record, RecordWrite};

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
    /// Opens an account, with the grants it opens with (a sign-up bonus,
    /// a plan's first period): all of them or none.
    CreateAccount {
        /// The account.
        account: NewAccount,
        /// Its opening grants.
        grants: Vec<NewGrant>,
    },
    /// Changes an account's name, metadata or overdraft limit.
    UpdateAccount {
        /// The account.
        account: AccountId,
        /// What changes.
        patch: AccountPatch,
    },
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
        /// What caused it, unique per account.
        external_id: Option<ExternalId>,
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
    /// Takes back credits a grant gave: from the grant's own lot first, then
    /// the account's other available credits in burn-down order, and what
    /// they cannot cover becomes debt whatever the overdraft limit (the
    /// credits were paid for and the payment was returned).
    ClawBack {
        /// The account.
        account: AccountId,
        /// The external id the grant was made with (e.g. "checkout:cs_123").
        grant: ExternalId,
        /// How many credits to take back; positive.
        amount: Amount,
        /// Operator metadata.
        metadata: Metadata,
        /// What caused it, unique per account (makes a retried claw-back the
        /// same write).
        external_id: Option<ExternalId>,
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
    /// Writes one record.
    Record(RecordWrite),
    /// Renews a subscription's period: settles debt, closes the ending
    /// period's plan lots, grants the new period's credits.
    Renew {
        /// The account.
        account: AccountId,
        /// What the renewal does.
        renewal: Renewal,
    },
}

/// What a successful write produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The account opened, and the lots of its opening grants.
    AccountCreated {
        /// The account.
        account: Account,
        /// One lot per opening grant, in their order.
        lots: Vec<Lot>,
    },
    /// The account as changed.
    AccountUpdated(Account),
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
        /// The transaction that moved the credits into escrow.
        tx: Transaction,
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
        /// The transaction that returned the escrow.
        tx: Transaction,
        /// The balance right after.
        balance: Balance,
    },
    /// The grant voided.
    Voided {
        /// The lot, now voided.
        lot: Lot,
        /// The void transaction.
        tx: Transaction,
    },
    /// Credits of a grant taken back.
    ClawedBack {
        /// The claw-back transaction.
        tx: Transaction,
        /// The balance right after.
        balance: Balance,
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
    /// A period renewed.
    Renewed {
        /// What the renewal did.
        renewed: Renewed,
        /// The new period's lot, as it stands after the renewal.
        lot: Option<Lot>,
        /// The new period's grant.
        tx: Option<Transaction>,
        /// The balance right after.
        balance: Balance,
    },
    /// The record as stored.
    RecordPut(Record),
    /// The record is gone.
    RecordDeleted,
}

/// Why a command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The ledger refused the operation.
    Ledger(Reject),
    /// A record was not at the version the write expected.
    VersionConflict {
        /// The record's kind.
        kind: String,
        /// The record's id.
        id: String,
        /// Its version now; none when it does not exist.
        current: Option<u64>,
    },
    /// Another record of the kind holds a value of a unique lookup.
    LookupTaken {
        /// The record's kind.
        kind: String,
        /// The lookup's name.
        name: String,
    },
}

impl From<Reject> for Refused {
    fn from(reject: Reject) -> Self {
        Refused::Ledger(reject)
    }
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
pub type Render = fn(&Result<Outcome, Refused>) -> StoredResponse;

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
    /// Record writes committed in the same transaction as `op`, and only
    /// if `op` applies now: when its external id shows it was applied
    /// before (checked first), or when it is refused, none of them is
    /// written; when one of them is not at its expected version, nothing is
    /// applied.
    pub records: Vec<RecordWrite>,
    /// A gateway call recorded in the same transaction as `op`, and only if
    /// `op` applies now; the store sets its instant and the transaction
    /// `op` wrote.
    pub call: Option<Box<crate::usage::Call>>,
    /// Makes retries safe: the same key with the same request replays the
    /// first response; with a different request, it is a conflict.
    pub idempotency: Option<IdempotencyKey>,
}

impl Command {
    /// A command without an idempotency key or record writes.
    pub fn new(op: Op) -> Command {
        Command {
            op,
            records: Vec::new(),
            call: None,
            idempotency: None,
        }
    }

    /// The same command, with record writes joined to it.
    pub fn with_records(mut self, records: Vec<RecordWrite>) -> Command {
        self.records = records;
        self
    }

    /// The same command, recording a gateway call when it applies.
    pub fn with_call(mut self, call: crate::usage::Call) -> Command {
        self.call = Some(Box::new(call));
        self
    }
}

/// How a command was answered.
// Moved once per request from the writer to the handler, so the size
// difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Executed {
    /// Applied now (or refused now, with nothing changed).
    Fresh(Result<Outcome, Refused>),
    /// A grant, consume or claw-back whose external id was applied before
    /// with the same content: that first write's outcome, and nothing
    /// changed.
    Existing(Outcome),
    /// The idempotency key was seen before with the same request: here is
    /// the first response, and nothing changed.
    Replayed(StoredResponse),
}
