-- Kestrel schema 1: settings, upstream accounts, client keys.
-- Times are epoch seconds (REAL). Booleans are INTEGER 0/1.

-- Small key/value facts about this database itself (for example the encryption key check).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- Upstream Anthropic accounts. `credential` is sealed JSON (see kestrel/crypto.py), opened only
-- in memory; `credential_hint` is what an operator sees instead.
CREATE TABLE accounts (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    type                 TEXT    NOT NULL CHECK (type IN ('api_key', 'oauth')),
    credential           BLOB    NOT NULL,
    credential_hint      TEXT    NOT NULL,
    base_url             TEXT,
    priority             INTEGER NOT NULL DEFAULT 0,
    enabled              INTEGER NOT NULL DEFAULT 1,
    state                TEXT    NOT NULL DEFAULT 'ok',
    cooldown_until       REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT,
    last_used_at         REAL,
    created_at           REAL    NOT NULL,
    updated_at           REAL    NOT NULL
);

-- Keys that clients present to Kestrel. Only the SHA-256 of a key is kept (a key is 256 random
-- bits, so a fast hash is enough), plus a short prefix to recognise it in lists.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     BLOB NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
);
