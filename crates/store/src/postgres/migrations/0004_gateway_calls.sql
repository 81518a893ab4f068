-- Gateway calls, one row per call, written with the ledger transaction that settled it.
CREATE TABLE gateway_calls (
    account_id  TEXT    NOT NULL,
    at          BIGINT NOT NULL,
    id          TEXT    NOT NULL,
    key_id      TEXT,
    project     TEXT,
    provider    TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    input       BIGINT NOT NULL,
    cached      BIGINT NOT NULL,
    cache_write BIGINT NOT NULL,
    output      BIGINT NOT NULL,
    reasoning   BIGINT NOT NULL,
    cost        BIGINT NOT NULL,
    list_cost   BIGINT NOT NULL,
    status      BIGINT NOT NULL,
    outcome     TEXT    NOT NULL,
    latency_ms  BIGINT NOT NULL,
    tx_id       BIGINT,
    PRIMARY KEY (account_id, at, id)
);

-- What the calls of each hour add up to, per model, key, project and billing mode.
CREATE TABLE gateway_usage_hourly (
    account_id  TEXT    NOT NULL,
    hour        BIGINT NOT NULL,
    model       TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    project     TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    calls       BIGINT NOT NULL,
    input       BIGINT NOT NULL,
    cached      BIGINT NOT NULL,
    cache_write BIGINT NOT NULL,
    output      BIGINT NOT NULL,
    reasoning   BIGINT NOT NULL,
    cost        BIGINT NOT NULL,
    list_cost   BIGINT NOT NULL,
    PRIMARY KEY (account_id, hour, model, key_id, project, mode)
);
