-- Kestrel schema 3: OAuth (Claude subscription) accounts.

-- Who signed in, as the token response said: shown to the operator, never used to route.
ALTER TABLE accounts ADD COLUMN email TEXT;
ALTER TABLE accounts ADD COLUMN organization TEXT;
-- The latest `anthropic-ratelimit-unified-*` headers seen for the account, as JSON
-- (see kestrel/store/accounts.py for the shape). NULL until an answer carried them.
ALTER TABLE accounts ADD COLUMN usage_windows TEXT;

-- Logins in progress: one row per authorization request, consumed by the first callback or
-- paste that names its `state`. `verifier` is the PKCE code verifier sealed like a credential
-- (associated data `kestrel:oauth_state:<state>`): with a stolen code it would buy tokens.
-- Used and expired rows stay a day, so a replay is told apart from a typo, then are purged.
CREATE TABLE oauth_states (
    state        TEXT PRIMARY KEY,
    verifier     BLOB NOT NULL,
    account_name TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    used_at      REAL
);
CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);
