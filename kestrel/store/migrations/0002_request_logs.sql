-- Kestrel schema 2: one row per client request on a proxy route, whatever became of it.
-- Written in batches by kestrel/store/log_writer.py; read by the admin logs and stats API.
--
-- No foreign keys on purpose: deleting an account or revoking/deleting a key must leave its
-- history in place, so `key_id` and `account_id` may name rows that no longer exist.
CREATE TABLE request_logs (
    id                    INTEGER PRIMARY KEY,
    ts                    REAL    NOT NULL,  -- epoch seconds
    request_id            TEXT    NOT NULL,
    route                 TEXT    NOT NULL,
    status                INTEGER NOT NULL,
    key_id                INTEGER,
    account_id            INTEGER,           -- the account that gave the final answer, if any
    model                 TEXT,
    stream                INTEGER NOT NULL,  -- 0/1
    error_type            TEXT,
    input_tokens          INTEGER NOT NULL DEFAULT 0,
    output_tokens         INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms            REAL    NOT NULL,
    ttfb_ms               REAL,
    client                TEXT,
    user_agent            TEXT,
    -- JSON array of {"account_id", "status", "error_type", "duration_ms"}, one per upstream try.
    attempts              TEXT    NOT NULL
);

-- Every index ends in `ts` and, implicitly, in the rowid `id`: the listing pages newest first by
-- (ts, id) with one filter, and the stats read a time window, so each query is one index range
-- scan in the order it needs, with no sort.
CREATE INDEX request_logs_ts ON request_logs (ts);
CREATE INDEX request_logs_account_ts ON request_logs (account_id, ts);
CREATE INDEX request_logs_key_ts ON request_logs (key_id, ts);
CREATE INDEX request_logs_model_ts ON request_logs (model, ts);
CREATE INDEX request_logs_status_ts ON request_logs (status, ts);
