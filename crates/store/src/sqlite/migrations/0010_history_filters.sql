-- A grant's transaction carries its lot's source, so that a page of an
-- account's grants of some sources is read from an index of grants alone
-- rather than from the whole journal. Grants are few beside consumes, so
-- this index, keyed by account, costs the write path little.
ALTER TABLE transactions ADD COLUMN grant_source TEXT;
UPDATE transactions
   SET grant_source = (SELECT source FROM lots WHERE lots.id = transactions.lot_id)
 WHERE kind = 'grant';
CREATE INDEX transactions_grants_by_source ON transactions (account_id, grant_source, id)
    WHERE grant_source IS NOT NULL;
-- What an account spent in a time window is read from its usage
-- transactions of that window only. Keyed first by the journal block, as
-- transactions_by_block is, so that a new entry lands among the pages of the
-- newest block.
CREATE INDEX transactions_usage_by_block ON transactions ((id >> 16), account_id, created_at)
    WHERE usage <> 0;
