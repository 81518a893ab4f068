-- The ledger: accounts, lots, holds, the journal, features, idempotency keys.
-- Amounts are integer micro-credits; instants are integer microseconds since the Unix epoch.

CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    metadata        TEXT NOT NULL,
    overdraft_limit INTEGER NOT NULL CHECK (overdraft_limit >= 0),
    debt            INTEGER NOT NULL CHECK (debt >= 0),
    created_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- Accounts whose debt a newly effective lot might repay.
CREATE INDEX accounts_in_debt ON accounts (id) WHERE debt > 0;

CREATE TABLE lots (
    id           INTEGER PRIMARY KEY,
    account_id   TEXT NOT NULL,
    source       TEXT NOT NULL,
    priority     INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 100),
    amount       INTEGER NOT NULL CHECK (amount > 0),
    remaining    INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    effective_at INTEGER NOT NULL,
    expires_at   INTEGER,
    voided_at    INTEGER,
    created_at   INTEGER NOT NULL,
    metadata     TEXT NOT NULL
);

CREATE INDEX lots_by_account ON lots (account_id, id);
-- Lots with credits left: what a book loads.
CREATE INDEX lots_live ON lots (account_id) WHERE remaining > 0;
-- Lots the sweep must expire.
CREATE INDEX lots_expiring ON lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;

CREATE TABLE holds (
    id               INTEGER PRIMARY KEY,
    account_id       TEXT NOT NULL,
    amount           INTEGER NOT NULL CHECK (amount > 0),
    legs             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'committed', 'released', 'expired')),
    committed_amount INTEGER,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    resolved_at      INTEGER,
    metadata         TEXT NOT NULL
);

CREATE INDEX holds_by_account ON holds (account_id, id);
CREATE INDEX holds_pending ON holds (account_id) WHERE status = 'pending';
CREATE INDEX holds_expiring ON holds (expires_at) WHERE status = 'pending';

-- The journal. `postings` is the double entry, `sources` where usage came
-- from; both as `ledger_account=micros` pairs joined by commas.
CREATE TABLE transactions (
    id            INTEGER PRIMARY KEY,
    account_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    usage         INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    postings      TEXT NOT NULL,
    sources       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    metadata      TEXT NOT NULL,
    lot_id        INTEGER,
    hold_id       INTEGER,
    refund_of     INTEGER,
    feature_id    TEXT,
    quantity      INTEGER
);

CREATE INDEX transactions_by_account ON transactions (account_id, id);
CREATE INDEX transactions_refunds ON transactions (refund_of) WHERE refund_of IS NOT NULL;

CREATE TABLE features (
    id               TEXT PRIMARY KEY,
    credits_per_unit INTEGER NOT NULL CHECK (credits_per_unit > 0),
    updated_at       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint BLOB NOT NULL,
    status      INTEGER NOT NULL,
    body        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
