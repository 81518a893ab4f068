-- The ledger: accounts, lots, holds, the journal, features, idempotency keys.
-- Amounts are integer micro-credits; instants are integer microseconds since the Unix epoch.
-- The columns match the SQLite store's, so both read through the same row mappers.
-- Text ids compare bytewise (COLLATE "C"), as in SQLite, so pages and lock order agree.

CREATE TABLE accounts (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT,
    metadata        TEXT NOT NULL,
    overdraft_limit BIGINT NOT NULL CHECK (overdraft_limit >= 0),
    debt            BIGINT NOT NULL CHECK (debt >= 0),
    created_at      BIGINT NOT NULL
);

-- Accounts whose debt a newly effective lot might repay.
CREATE INDEX accounts_in_debt ON accounts (id) WHERE debt > 0;

-- Ids come from sequences, drawn while the batch holds its account locks,
-- so one account's ids grow in the order its transactions commit.
CREATE SEQUENCE lot_ids;
CREATE SEQUENCE hold_ids;
CREATE SEQUENCE transaction_ids;

CREATE TABLE lots (
    id           BIGINT PRIMARY KEY,
    account_id   TEXT COLLATE "C" NOT NULL,
    source       TEXT NOT NULL,
    priority     BIGINT NOT NULL CHECK (priority BETWEEN 0 AND 100),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    remaining    BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    effective_at BIGINT NOT NULL,
    expires_at   BIGINT,
    voided_at    BIGINT,
    created_at   BIGINT NOT NULL,
    metadata     TEXT NOT NULL,
    -- remaining > 0, kept apart so that the partial indexes below name a
    -- column that changes only when a lot empties: every other change to
    -- remaining is then a HOT update, with no index to touch.
    live         BOOLEAN NOT NULL,
    CHECK (live = (remaining > 0))
) WITH (fillfactor = 80);

CREATE INDEX lots_by_account ON lots (account_id, id);
CREATE INDEX lots_live ON lots (account_id) WHERE live;
CREATE INDEX lots_expiring ON lots (expires_at) WHERE live AND expires_at IS NOT NULL;

CREATE TABLE holds (
    id               BIGINT PRIMARY KEY,
    account_id       TEXT COLLATE "C" NOT NULL,
    amount           BIGINT NOT NULL CHECK (amount > 0),
    legs             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'committed', 'released', 'expired')),
    committed_amount BIGINT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    resolved_at      BIGINT,
    metadata         TEXT NOT NULL
);

CREATE INDEX holds_by_account ON holds (account_id, id);
CREATE INDEX holds_pending ON holds (account_id) WHERE status = 'pending';
CREATE INDEX holds_expiring ON holds (expires_at) WHERE status = 'pending';

CREATE TABLE transactions (
    id            BIGINT PRIMARY KEY,
    account_id    TEXT COLLATE "C" NOT NULL,
    kind          TEXT NOT NULL,
    amount        BIGINT NOT NULL,
    usage         BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    postings      TEXT NOT NULL,
    sources       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    metadata      TEXT NOT NULL,
    lot_id        BIGINT,
    hold_id       BIGINT,
    refund_of     BIGINT,
    feature_id    TEXT,
    quantity      BIGINT
);

CREATE INDEX transactions_by_account ON transactions (account_id, id);
CREATE INDEX transactions_refunds ON transactions (refund_of) WHERE refund_of IS NOT NULL;

CREATE TABLE features (
    id               TEXT COLLATE "C" PRIMARY KEY,
    credits_per_unit BIGINT NOT NULL CHECK (credits_per_unit > 0),
    updated_at       BIGINT NOT NULL
);

CREATE TABLE idempotency_keys (
    key         TEXT COLLATE "C" PRIMARY KEY,
    fingerprint BYTEA NOT NULL,
    status      BIGINT NOT NULL,
    body        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
