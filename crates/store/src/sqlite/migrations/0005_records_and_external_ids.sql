-- Records: low-volume entities (settings, API keys, plans, prices, payment
-- events) kept as versioned JSON documents, and the values they are found
-- by. Every kind shares these two tables; a new kind needs no migration.
CREATE TABLE records (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version > 0),
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

-- What changed since an instant: how nodes keep their caches of records
-- (API keys) up to date.
CREATE INDEX records_by_update ON records (kind, updated_at, id);

CREATE TABLE record_lookups (
    kind      TEXT NOT NULL,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    id        TEXT NOT NULL,
    is_unique INTEGER NOT NULL,
    PRIMARY KEY (kind, name, value, id)
) WITHOUT ROWID;

CREATE UNIQUE INDEX record_lookups_unique ON record_lookups (kind, name, value) WHERE is_unique;
CREATE INDEX record_lookups_by_record ON record_lookups (kind, id);

-- The admin key generated on an earlier start becomes an API key record;
-- the settings table, which held only its hash, goes.
INSERT INTO records (kind, id, version, body, created_at, updated_at)
SELECT 'api_key', 'key_initial', 1,
       json_object('kind', 'admin', 'name', 'generated at first start', 'hash', value),
       CAST(strftime('%s', 'now') AS INTEGER) * 1000000,
       CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM settings WHERE key = 'admin_key_sha256';
INSERT INTO record_lookups (kind, name, value, id, is_unique)
SELECT 'api_key', 'hash', value, 'key_initial', 1 FROM settings WHERE key = 'admin_key_sha256'
UNION ALL
SELECT 'api_key', 'kind', 'admin', 'key_initial', 0 FROM settings WHERE key = 'admin_key_sha256'
UNION ALL
SELECT 'api_key', 'scope', 'operator', 'key_initial', 0 FROM settings WHERE key = 'admin_key_sha256';
DROP TABLE settings;

-- External ids: what caused a grant or a consume, unique per account and
-- kept forever, with a digest of the write's content to tell a retry from a
-- different write. Only rows that carry one are indexed.
ALTER TABLE lots ADD COLUMN external_id TEXT;
ALTER TABLE transactions ADD COLUMN external_id TEXT;
ALTER TABLE transactions ADD COLUMN external_digest TEXT;
CREATE UNIQUE INDEX transactions_by_external ON transactions (account_id, external_id)
    WHERE external_id IS NOT NULL;
