-- Accounts are found by any part of their id, name or metadata, whatever
-- its case, through a trigram index (pg_trgm, a trusted extension: the
-- database's owner may create it). The expression is the one
-- read::search_accounts filters on.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX accounts_search ON accounts
    USING gin ((id || ' ' || coalesce(name, '') || ' ' || metadata) gin_trgm_ops);
