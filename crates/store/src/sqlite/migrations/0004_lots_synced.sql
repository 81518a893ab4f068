-- A lot's row may lag the journal, so that spending from a lot need not
-- write its page at once (see the SQLite store's deferred lot writes): the
-- row's remaining reflects every transaction up to synced_tx, or up to
-- lots_synced.through_tx if that is later. Every row is up to date now.
ALTER TABLE lots ADD COLUMN synced_tx INTEGER NOT NULL DEFAULT 0;
CREATE TABLE lots_synced (through_tx INTEGER NOT NULL);
INSERT INTO lots_synced (through_tx) SELECT coalesce(max(id), 0) FROM transactions;
