-- Kestrel schema 4: several processes on one database, each keeping caches of it.

-- The change feed: every write that changes what a process caches (an account's settings,
-- credential or state; a client key) adds a row here in the same transaction. Each process
-- reads the rows after the last one it saw a few times a second and refreshes its caches.
-- AUTOINCREMENT: ids never go back, even after old rows are pruned, so "after id N" stays true.
CREATE TABLE changes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT    NOT NULL,  -- 'account' or 'key'
    entity_id INTEGER NOT NULL,
    at        REAL    NOT NULL
);
CREATE INDEX changes_at ON changes (at);

-- `version`: the id of the change that last touched the row, so a process can tell which of
-- two copies of an account is newer. `credential_version`: the same, for the credential alone
-- (a cooldown must not throw away an opened credential).
ALTER TABLE accounts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0;

-- The OAuth refresh lease: one process at a time refreshes an account's tokens. A process
-- claims it with a conditional UPDATE (free, or its time is up); while it refreshes,
-- `refresh_owner` names it. After a failed refresh the lease is kept without an owner until
-- the backoff ends, so no process tries again sooner; `refresh_error` says why.
ALTER TABLE accounts ADD COLUMN refresh_owner TEXT;
ALTER TABLE accounts ADD COLUMN refresh_until REAL;
ALTER TABLE accounts ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN refresh_error TEXT;

-- Wrong admin keys, per client address, from every process: the lock-out counts them all.
-- Rows older than the lock-out window are deleted as new ones arrive.
CREATE TABLE admin_failures (
    address TEXT NOT NULL,
    at      REAL NOT NULL
);
CREATE INDEX admin_failures_address_at ON admin_failures (address, at);
CREATE INDEX admin_failures_at ON admin_failures (at);
