-- Kestrel schema 9: what the operator sees.

-- Why a request failed in words (the upstream's error message, or why Kestrel answered itself),
-- bounded and scrubbed of credentials before it is written.
ALTER TABLE request_logs ADD COLUMN error_message TEXT;
-- Every account the request tried, in order, as ",3,1,": the logs' account filter matches a
-- request any of them failed, not only the one that served it. NULL in rows written before.
ALTER TABLE request_logs ADD COLUMN tried TEXT;

-- A name tells keys in use apart: duplicates among them get their id appended, then the index
-- refuses new ones. Revoked keys keep their names, so a name can be used again.
UPDATE api_keys SET name = name || ' #' || id
WHERE revoked_at IS NULL AND EXISTS (
    SELECT 1 FROM api_keys AS older
    WHERE older.name = api_keys.name AND older.revoked_at IS NULL AND older.id < api_keys.id);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

-- An API-key account's rate-limit headroom (anthropic-ratelimit-requests-*, -tokens-*...) as
-- its latest answer reported it, JSON; the subscription windows are in usage_windows.
ALTER TABLE accounts ADD COLUMN rate_limits TEXT;

-- The dashboard that started a redirect login (`//host:port/app/accounts`): the callback page
-- links back to it, as the callback may run on another host name than the one signed in on.
ALTER TABLE oauth_states ADD COLUMN return_to TEXT;
