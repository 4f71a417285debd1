-- Kestrel schema 10: one index fewer for every request log row to keep up.

-- The logs' model filter matches any model name containing the text, whatever its case, which no
-- index on (model, ts) can serve; the stats group by model within a time range, which the `ts`
-- index serves. Each index costs every insert a B-tree descent and pages in the batch's commit.
DROP INDEX request_logs_model_ts;
