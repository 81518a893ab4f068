-- The journal's index by account put each new transaction after the last
-- entry of its account: over a million accounts, a page no other consume of
-- the batch shared, read from disk and written back for every consume.
-- Keyed first by the block of 65,536 transaction ids it falls in, a new
-- entry lands among the pages of the newest block, which stay in memory; an
-- account's transactions are read block by block, newest first.
DROP INDEX transactions_by_account;
CREATE INDEX transactions_by_block ON transactions ((id >> 16), account_id);
