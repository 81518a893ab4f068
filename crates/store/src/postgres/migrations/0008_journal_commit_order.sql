-- Nodes draw transaction ids before they commit, so ids are not the order
-- in which transactions become visible. Each row now keeps the database
-- transaction that wrote it; whoever reads the journal as it grows (the
-- outbound webhooks) reads by it, only below the oldest transaction still
-- running, and so never skips a batch that drew lower ids but committed
-- later. Rows written before this migration keep NULL and are never read
-- that way. Neither statement rewrites the table.
ALTER TABLE transactions ADD COLUMN xid xid8;
ALTER TABLE transactions ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX transactions_by_commit ON transactions (xid, id) WHERE xid IS NOT NULL;
