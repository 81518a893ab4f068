-- The holds' status check written as comparisons rather than `IN (...)`:
-- SQLite checks a list with a temporary table it builds for every row it
-- writes, and a hold is written twice, placed and resolved.
CREATE TABLE holds_next (
    id               INTEGER PRIMARY KEY,
    account_id       TEXT NOT NULL,
    amount           INTEGER NOT NULL CHECK (amount > 0),
    legs             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status = 'pending' OR status = 'committed'
                                          OR status = 'released' OR status = 'expired'),
    committed_amount INTEGER,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    resolved_at      INTEGER,
    metadata         TEXT NOT NULL
);
INSERT INTO holds_next (id, account_id, amount, legs, status, committed_amount, created_at,
                        expires_at, resolved_at, metadata)
    SELECT id, account_id, amount, legs, status, committed_amount, created_at, expires_at,
           resolved_at, metadata
    FROM holds;
DROP TABLE holds;
ALTER TABLE holds_next RENAME TO holds;
CREATE INDEX holds_by_account ON holds (account_id, id);
CREATE INDEX holds_pending ON holds (account_id) WHERE status = 'pending';
CREATE INDEX holds_expiring ON holds (expires_at) WHERE status = 'pending';
