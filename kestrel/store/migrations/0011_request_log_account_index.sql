-- Kestrel schema 11: one index fewer again for every request log row to keep up.

-- Since schema 9 the logs' account filter matches every account a request tried, through the
-- `tried` text (`,3,1,`) with LIKE, which no index on (account_id, ts) can serve: the listing
-- walks the `ts` index for it, and nothing else reads by account. Each index costs every insert
-- a B-tree descent and pages in the batch's commit.
DROP INDEX request_logs_account_ts;
