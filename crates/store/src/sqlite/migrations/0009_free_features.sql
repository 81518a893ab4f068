-- A feature may be free (0 credits per unit): its use is recorded and moves
-- no credits. SQLite changes a CHECK only by rebuilding the table.
CREATE TABLE features_next (
    id               TEXT PRIMARY KEY,
    credits_per_unit INTEGER NOT NULL CHECK (credits_per_unit >= 0),
    updated_at       INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO features_next (id, credits_per_unit, updated_at)
    SELECT id, credits_per_unit, updated_at FROM features;
DROP TABLE features;
ALTER TABLE features_next RENAME TO features;
