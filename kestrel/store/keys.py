"""Client API keys: only a hash and a display prefix are stored, never the key.

A key is `kst_` + 32 random bytes (URL-safe base64). With 256 bits of entropy a plain SHA-256 is
enough: there is nothing to brute-force that a slow password hash would protect, and a fast hash
keeps authentication a single indexed lookup per request.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from kestrel.domain import UNSET, ApiKey, Conflict, NotFound, Unset
from kestrel.store.changes import ChangeKind, announce
from kestrel.store.database import Database
from kestrel.store.session import Session

KEY_PREFIX = "kst_"
KEY_RANDOM_BYTES = 32
# `kst_` plus 8 random characters: enough to tell keys apart in a list, far too little to guess
# the remaining 35 characters from.
DISPLAY_PREFIX_LENGTH = 12

# The controls an operator sets on a key (KeyControls' fields), as columns.
_CONTROLS = ("models", "expires_at", "allowed_ips", "owner", "note", "rpm", "tpm",
             "max_concurrency", "daily_tokens", "daily_budget_usd", "monthly_budget_usd")
_COLUMNS = ", ".join(("id", "name", "prefix", "created_at", "last_used_at", "revoked_at",
                      *_CONTROLS))
_LISTS = ("models", "allowed_ips")  # stored as JSON arrays


@dataclass(frozen=True)
class KeyControls:
    """What an operator sets on a key; in an update, only the fields given change (`UNSET`
    leaves one as it is, None clears it)."""

    models: tuple[str, ...] | None | Unset = UNSET
    expires_at: float | None | Unset = UNSET
    allowed_ips: tuple[str, ...] | None | Unset = UNSET
    owner: str | None | Unset = UNSET
    note: str | None | Unset = UNSET
    rpm: int | None | Unset = UNSET
    tpm: int | None | Unset = UNSET
    max_concurrency: int | None | Unset = UNSET
    daily_tokens: int | None | Unset = UNSET
    daily_budget_usd: float | None | Unset = UNSET
    monthly_budget_usd: float | None | Unset = UNSET

    def columns(self) -> dict[str, Any]:
        """The given fields as column values."""
        given = {name: getattr(self, name) for name in _CONTROLS
                 if not isinstance(getattr(self, name), Unset)}
        for name in _LISTS:
            if given.get(name) is not None:
                given[name] = json.dumps(list(given[name]))
        return given


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _api_key(row: tuple[Any, ...]) -> ApiKey:
    id_, name, prefix, created_at, last_used_at, revoked_at, *controls = row
    given = dict(zip(_CONTROLS, controls, strict=True))
    for column in _LISTS:
        if given[column] is not None:
            given[column] = tuple(json.loads(given[column]))
    return ApiKey(id=id_, name=name, prefix=prefix, created_at=created_at,
                  last_used_at=last_used_at, revoked_at=revoked_at, **given)


def _fetch(conn: Session, key_id: int) -> ApiKey:
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"key {key_id} not found")
    return _api_key(row)


def _check_name_free(conn: Session, name: str, key_id: int | None) -> None:
    """Names tell the keys in use apart (a revoked key's name is free again). Checked inside the
    write transaction, which holds the write lock; the unique index of schema 9 backs it."""
    row = conn.execute("SELECT id FROM api_keys WHERE name = ? AND revoked_at IS NULL",
                       (name,)).fetchone()
    if row is not None and row[0] != key_id:
        raise Conflict(f"a key in use is named {name!r}; choose another name, or revoke that "
                       "key first", field="name")


class KeyStore:
    """The api_keys table: issue, list, revoke and check the keys clients present."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # hash → live key. Every proxied request authenticates, and a database round trip
        # per request is the largest cost a proxy hop can avoid. Only keys that passed are
        # kept (their number is what operators created). `revoke` drops a key at once here;
        # other processes drop it when the change feed calls `follow`.
        self._live: dict[bytes, ApiKey] = {}
        # Bumped by every `_forget` and resync: a lookup that was reading while a key was
        # revoked must not put the revoked key back into the cache when it finishes.
        self._forgotten = 0

    async def create(self, *, name: str, now: float,
                     controls: KeyControls = KeyControls()) -> tuple[ApiKey, str]:
        """The stored row and the plaintext key: this return value is the only place it exists."""
        key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
        given = controls.columns()

        def run(conn: Session) -> ApiKey:
            _check_name_free(conn, name, None)
            columns = ("name", "key_hash", "prefix", "created_at", *given)
            key_id = conn.insert(
                f"INSERT INTO api_keys ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                (name, _hash(key), key[:DISPLAY_PREFIX_LENGTH], now, *given.values()))
            announce(conn, ChangeKind.KEY, key_id, now)
            return _fetch(conn, key_id)
        return await self._db.write(run), key

    async def update(self, key_id: int, *, now: float, name: str | None = None,
                     controls: KeyControls = KeyControls()) -> ApiKey:
        """Change the name and the given controls; every process applies them from its next
        request on (the change feed drops the key from their caches)."""
        given = controls.columns()
        if name is not None:
            given["name"] = name

        def run(conn: Session) -> ApiKey:
            if name is not None:
                _check_name_free(conn, name, key_id)
            # Column names come from the fixed fields above, never from the caller.
            if given and conn.execute(
                    f"UPDATE api_keys SET {', '.join(f'{c} = ?' for c in given)} WHERE id = ?",
                    (*given.values(), key_id)).rowcount:
                announce(conn, ChangeKind.KEY, key_id, now)
            return _fetch(conn, key_id)  # NotFound for a key that does not exist
        updated = await self._db.write(run)
        self._forget(frozenset({key_id}))
        return updated

    async def list(self) -> builtins.list[ApiKey]:
        """Newest first: the key just made is the one an operator looks for."""
        def run(conn: Session) -> builtins.list[ApiKey]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at DESC, "
                                "id DESC")
            return [_api_key(row) for row in rows]
        return await self._db.read(run)

    async def get(self, key_id: int) -> ApiKey:
        return await self._db.read(lambda conn: _fetch(conn, key_id))

    async def revoke(self, key_id: int, *, now: float) -> ApiKey:
        """Idempotent: revoking twice keeps the first `revoked_at`, the moment access ended."""
        def run(conn: Session) -> ApiKey:
            if conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND "
                            "revoked_at IS NULL", (now, key_id)).rowcount:
                announce(conn, ChangeKind.KEY, key_id, now)
            return _fetch(conn, key_id)
        revoked = await self._db.write(run)
        self._forget(frozenset({key_id}))
        return revoked

    async def follow(self, changed: frozenset[int] | None) -> None:
        """The change feed's listener for keys: the keys named are dropped from the cache, so
        their next use asks the database; None (the feed's resync) re-reads every cached key.

        A resync re-reads rather than empties: emptying would make every client's next
        request read the database, and if the database is away at that moment (a PostgreSQL
        restart), each would fail although its key had been checked seconds before. A read
        that fails leaves the cache as it was, as a poll that fails does.
        """
        if changed is not None:
            self._forget(changed)
            return
        # Bumped first, as `_forget` does: a lookup that read before this re-read may hold a
        # state the resync is there to repair, so it must not cache it.
        self._forgotten += 1
        started = self._forgotten
        cached = frozenset(self._live)
        if not cached:
            return

        def run(conn: Session) -> dict[bytes, ApiKey]:
            live = {}
            for row in conn.execute(f"SELECT key_hash, {_COLUMNS} FROM api_keys "
                                    "WHERE revoked_at IS NULL"):
                if (key_hash := bytes(row[0])) in cached:
                    live[key_hash] = _api_key(row[1:])
            return live
        live = await self._db.read(run)
        if self._forgotten == started:
            self._live = live
        else:
            self._live = {}  # a key changed while this read ran: its state here may be older

    def _forget(self, key_ids: frozenset[int]) -> None:
        self._forgotten += 1
        self._live = {h: k for h, k in self._live.items() if k.id not in key_ids}

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The live key matching `presented`, or None when it is unknown or revoked."""
        key = await self.lookup(presented)
        return None if key is None or key.revoked else key

    async def lookup(self, presented: str) -> ApiKey | None:
        """The key matching `presented`, revoked or not (a refusal says which), or None."""
        if not presented.startswith(KEY_PREFIX):
            return None  # not one of ours: no need to touch the database
        wanted = _hash(presented)
        if (cached := self._live.get(wanted)) is not None:
            return cached
        forgotten = self._forgotten

        def run(conn: Session) -> tuple[bytes, ApiKey] | None:
            row = conn.execute(f"SELECT key_hash, {_COLUMNS} FROM api_keys WHERE key_hash = ?",
                               (wanted,)).fetchone()
            return None if row is None else (bytes(row[0]), _api_key(row[1:]))
        found = await self._db.read(run)
        # The index lookup already matched; compare_digest makes the final word constant-time
        # should the lookup ever become a prefix or range search.
        if found is None or not hmac.compare_digest(found[0], wanted):
            return None
        key = found[1]
        if not key.revoked and forgotten == self._forgotten:
            self._live[wanted] = key
        return key
