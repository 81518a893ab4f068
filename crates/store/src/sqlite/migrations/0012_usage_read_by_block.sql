-- What an account spent in a time window is read from its rows of the
-- journal blocks of that window (transactions_by_block), the blocks found
-- by the time of their first transaction. The index of usage by time that
-- migration 10 added cost every consume a third of SQLite's write
-- throughput for a read the Credits page makes once.
DROP INDEX transactions_usage_by_block;
