-- A grant's transaction carries its lot's source, so that a page of an
-- account's grants of some sources is read from an index of grants alone
-- rather than from the whole journal. Grants are few beside consumes, so
-- the index costs the write path little.
ALTER TABLE transactions ADD COLUMN grant_source TEXT;
UPDATE transactions t SET grant_source = l.source
  FROM lots l
 WHERE l.id = t.lot_id AND t.kind = 'grant';
CREATE INDEX transactions_grants_by_source ON transactions (account_id, grant_source, id)
    WHERE grant_source IS NOT NULL;
-- What an account spent in a time window is read from its usage
-- transactions of that window only.
CREATE INDEX transactions_usage_by_time ON transactions (account_id, created_at)
    WHERE usage <> 0;
