-- Kestrel schema 7: what client keys may use, and what requests cost.

-- A key's limits (NULL: unlimited). Tokens are input (uncached and cache writes) plus output.
ALTER TABLE api_keys ADD COLUMN rpm INTEGER;
ALTER TABLE api_keys ADD COLUMN tpm INTEGER;
ALTER TABLE api_keys ADD COLUMN max_concurrency INTEGER;
ALTER TABLE api_keys ADD COLUMN daily_tokens INTEGER;
ALTER TABLE api_keys ADD COLUMN daily_budget_usd REAL;
ALTER TABLE api_keys ADD COLUMN monthly_budget_usd REAL;

-- Each request's cost in dollars, from its final usage; priced = 0 when its model was not in
-- the price table (the cost is then 0, not what the request cost).
ALTER TABLE request_logs ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE request_logs ADD COLUMN priced INTEGER NOT NULL DEFAULT 1;

-- What was used, per calendar day (in TIME_ZONE), key, account and model: the totals budgets
-- are held to and /admin/usage reports. Kept apart from request_logs, which are pruned.
-- key_id and account_id are 0 and model '' where a request had none (a key is a primary key
-- column, and NULLs never conflict).
CREATE TABLE usage_days (
    day                   TEXT    NOT NULL,
    key_id                INTEGER NOT NULL,
    account_id            INTEGER NOT NULL,
    model                 TEXT    NOT NULL,
    requests              INTEGER NOT NULL DEFAULT 0,
    input_tokens          INTEGER NOT NULL DEFAULT 0,
    output_tokens         INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd              REAL    NOT NULL DEFAULT 0,
    unpriced              INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, account_id, model)
);

-- Requests and tokens per key and calendar minute (epoch seconds of its start), for rpm / tpm.
CREATE TABLE key_minutes (
    key_id   INTEGER NOT NULL,
    minute   REAL    NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, minute)
);

-- Requests in flight per key and process (`holder`), rewritten while any is; a row not seen
-- for a few seconds is a process that died and counts no more.
CREATE TABLE key_in_flight (
    key_id   INTEGER NOT NULL,
    holder   TEXT    NOT NULL,
    requests INTEGER NOT NULL,
    seen_at  REAL    NOT NULL,
    PRIMARY KEY (key_id, holder)
);
