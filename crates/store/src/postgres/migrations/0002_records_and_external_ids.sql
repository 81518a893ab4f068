-- Records: low-volume entities (settings, API keys, plans, prices, payment
-- events) kept as versioned JSON documents, and the values they are found
-- by. Every kind shares these two tables; a new kind needs no migration.
-- The columns match the SQLite store's.
CREATE TABLE records (
    kind       TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL CHECK (version > 0),
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- What changed since an instant: how nodes keep their caches of records
-- (API keys) up to date.
CREATE INDEX records_by_update ON records (kind, updated_at, id);

CREATE TABLE record_lookups (
    kind      TEXT COLLATE "C" NOT NULL,
    name      TEXT COLLATE "C" NOT NULL,
    value     TEXT COLLATE "C" NOT NULL,
    id        TEXT COLLATE "C" NOT NULL,
    is_unique BOOLEAN NOT NULL,
    PRIMARY KEY (kind, name, value, id)
);

CREATE UNIQUE INDEX record_lookups_unique ON record_lookups (kind, name, value) WHERE is_unique;
CREATE INDEX record_lookups_by_record ON record_lookups (kind, id);

-- The admin key generated on an earlier start becomes an API key record;
-- the settings table, which held only its hash, goes.
INSERT INTO records (kind, id, version, body, created_at, updated_at)
SELECT 'api_key', 'key_initial', 1,
       json_build_object('kind', 'admin', 'name', 'generated at first start', 'hash', value)::text,
       (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
       (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
FROM settings WHERE key = 'admin_key_sha256';
INSERT INTO record_lookups (kind, name, value, id, is_unique)
SELECT 'api_key', 'hash', value, 'key_initial', true FROM settings WHERE key = 'admin_key_sha256'
UNION ALL
SELECT 'api_key', 'kind', 'admin', 'key_initial', false FROM settings WHERE key = 'admin_key_sha256'
UNION ALL
SELECT 'api_key', 'scope', 'operator', 'key_initial', false FROM settings WHERE key = 'admin_key_sha256';
DROP TABLE settings;

-- External ids: what caused a grant or a consume, unique per account and
-- kept forever, with a digest of the write's content to tell a retry from a
-- different write. Only rows that carry one are indexed.
ALTER TABLE lots ADD COLUMN external_id TEXT;
ALTER TABLE transactions ADD COLUMN external_id TEXT;
ALTER TABLE transactions ADD COLUMN external_digest TEXT;
CREATE UNIQUE INDEX transactions_by_external ON transactions (account_id, external_id)
    WHERE external_id IS NOT NULL;
