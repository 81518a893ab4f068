-- Accounts are found by any part of their id, name or metadata, whatever
-- its case, through a trigram index: account_search holds each account's
-- searchable text under a rowid of its own, and account_search_text
-- indexes that text (an external-content FTS5 table). The triggers keep
-- both in step with accounts in the same transaction; an update that
-- leaves name and metadata as they were (a debt write) touches neither.
CREATE TABLE account_search (
    id         INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL
);
CREATE VIRTUAL TABLE account_search_text USING fts5(
    body, content = 'account_search', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER account_search_on_insert AFTER INSERT ON accounts BEGIN
    INSERT INTO account_search (account_id, body)
        VALUES (new.id, new.id || ' ' || coalesce(new.name, '') || ' ' || new.metadata);
    INSERT INTO account_search_text (rowid, body)
        SELECT id, body FROM account_search WHERE account_id = new.id;
END;
CREATE TRIGGER account_search_on_update AFTER UPDATE OF name, metadata ON accounts
    WHEN old.name IS NOT new.name OR old.metadata IS NOT new.metadata BEGIN
    INSERT INTO account_search_text (account_search_text, rowid, body)
        SELECT 'delete', id, body FROM account_search WHERE account_id = old.id;
    UPDATE account_search
       SET body = new.id || ' ' || coalesce(new.name, '') || ' ' || new.metadata
     WHERE account_id = old.id;
    INSERT INTO account_search_text (rowid, body)
        SELECT id, body FROM account_search WHERE account_id = old.id;
END;
INSERT INTO account_search (account_id, body)
    SELECT id, id || ' ' || coalesce(name, '') || ' ' || metadata FROM accounts;
INSERT INTO account_search_text (account_search_text) VALUES ('rebuild');
