-- Gateway calls, one row per call, written with the ledger transaction that settled it.
CREATE TABLE gateway_calls (
    account_id  TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    id          TEXT    NOT NULL,
    key_id      TEXT,
    project     TEXT,
    provider    TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    input       INTEGER NOT NULL,
    cached      INTEGER NOT NULL,
    cache_write INTEGER NOT NULL,
    output      INTEGER NOT NULL,
    reasoning   INTEGER NOT NULL,
    cost        INTEGER NOT NULL,
    list_cost   INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    latency_ms  INTEGER NOT NULL,
    tx_id       INTEGER,
    PRIMARY KEY (account_id, at, id)
) WITHOUT ROWID;

-- What the calls of each hour add up to, per model, key, project and billing mode.
CREATE TABLE gateway_usage_hourly (
    account_id  TEXT    NOT NULL,
    hour        INTEGER NOT NULL,
    model       TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    project     TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    calls       INTEGER NOT NULL,
    input       INTEGER NOT NULL,
    cached      INTEGER NOT NULL,
    cache_write INTEGER NOT NULL,
    output      INTEGER NOT NULL,
    reasoning   INTEGER NOT NULL,
    cost        INTEGER NOT NULL,
    list_cost   INTEGER NOT NULL,
    PRIMARY KEY (account_id, hour, model, key_id, project, mode)
) WITHOUT ROWID;
