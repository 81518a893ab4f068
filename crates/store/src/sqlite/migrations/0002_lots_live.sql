-- Lots carry `live` (remaining > 0), kept apart so that the partial indexes
-- name a column that changes only when a lot empties or refills. SQLite
-- rewrites a partial index's entry whenever an UPDATE sets a column its
-- WHERE clause names; spending from a lot sets only `remaining`, and so now
-- touches no index: two fewer pages written per consume.
ALTER TABLE lots ADD COLUMN live INTEGER NOT NULL DEFAULT 0;
UPDATE lots SET live = (remaining > 0);
DROP INDEX lots_live;
DROP INDEX lots_expiring;
CREATE INDEX lots_live ON lots (account_id) WHERE live;
CREATE INDEX lots_expiring ON lots (expires_at) WHERE live AND expires_at IS NOT NULL;
