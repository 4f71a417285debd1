"""Client keys on a real database file: only hashes stored, revocation, authentication."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from kestrel.domain import Conflict, NotFound
from kestrel.store.database import Database
from kestrel.store.keys import KeyStore
from kestrel.store.migrations import load_migrations
from kestrel.store.session import Session

from support.db import raw, with_db

T = TypeVar("T")


def with_keys(path: Path, body: Callable[[KeyStore], Awaitable[T]]) -> T:
    return with_db(path, lambda db: body(KeyStore(db)))


def test_create_returns_the_key_once_and_stores_only_its_hash_and_prefix(tmp_path: Path) -> None:
    path = tmp_path / "k.db"

    async def body(keys: KeyStore) -> str:
        row, key = await keys.create(name="laptop", now=10.0)
        assert key.startswith("kst_") and len(key) == 4 + 43
        assert (row.name, row.prefix, row.created_at, row.last_used_at, row.revoked) == (
            "laptop", key[:12], 10.0, None, False)
        assert await keys.get(row.id) == row
        other_row, other = await keys.create(name="desktop", now=11.0)
        assert other != key and other_row.id != row.id
        return key
    key = with_keys(path, body)
    with raw(path) as conn:
        stored = conn.execute("SELECT key_hash, prefix FROM api_keys ORDER BY id").fetchone()
    assert stored == (hashlib.sha256(key.encode()).digest(), key[:12])
    for file in tmp_path.iterdir():
        content = file.read_bytes()
        assert key.encode() not in content and key[12:].encode() not in content, file.name


def test_the_key_is_not_in_the_wal_while_the_database_is_open(tmp_path: Path) -> None:
    async def body(keys: KeyStore) -> None:
        _, key = await keys.create(name="k", now=1.0)
        wal = (tmp_path / "k.db-wal").read_bytes()
        assert hashlib.sha256(key.encode()).digest() in wal  # proof we read the right bytes
        assert key.encode() not in wal and key[12:].encode() not in wal
    with_keys(tmp_path / "k.db", body)


def test_authenticate_accepts_a_live_key_only(db_target: str) -> None:
    async def body(keys: KeyStore) -> None:
        row, key = await keys.create(name="ci", now=1.0)
        _, other = await keys.create(name="other", now=1.0)
        assert await keys.authenticate(key) == row
        assert await keys.authenticate("kst_" + "A" * 43) is None   # well-formed, unknown
        assert await keys.authenticate(key[:-1]) is None
        assert await keys.authenticate(key + "x") is None
        assert await keys.authenticate("sk-ant-api03-whatever") is None
        assert await keys.authenticate("") is None
        await keys.revoke(row.id, now=5.0)
        assert await keys.authenticate(key) is None
        assert await keys.authenticate(other) is not None  # revoking one leaves the others
    with_keys(db_target, body)


def test_revoke_is_idempotent_and_keeps_the_first_time(db_target: str) -> None:
    async def body(keys: KeyStore) -> None:
        row, _ = await keys.create(name="k", now=1.0)
        first = await keys.revoke(row.id, now=5.0)
        again = await keys.revoke(row.id, now=9.0)
        assert first.revoked_at == again.revoked_at == 5.0 and again.revoked
        with pytest.raises(NotFound, match="^key 42 not found$"):
            await keys.revoke(42, now=9.0)
        with pytest.raises(NotFound):
            await keys.get(42)
    with_keys(db_target, body)


def test_list_is_newest_first(db_target: str) -> None:
    async def body(keys: KeyStore) -> None:
        assert await keys.list() == []
        await keys.create(name="old", now=1.0)
        await keys.create(name="new", now=2.0)
        await keys.create(name="same-time", now=2.0)
        assert [k.name for k in await keys.list()] == ["same-time", "new", "old"]
    with_keys(db_target, body)


def test_a_revoked_key_is_refused_at_once_even_after_it_was_cached(db_target: str) -> None:
    async def body(keys: KeyStore) -> None:
        row, key = await keys.create(name="k", now=1.0)
        other, other_key = await keys.create(name="other", now=1.0)
        for _ in range(3):  # authenticated repeatedly: served from memory after the first
            assert await keys.authenticate(key) == row
        await keys.authenticate(other_key)
        await keys.revoke(row.id, now=2.0)
        assert await keys.authenticate(key) is None
        assert await keys.authenticate(other_key) == other
    with_keys(db_target, body)


def test_a_resync_applies_what_the_change_feed_missed(db_target: str) -> None:
    """The feed's resync (`follow(None)`) is its safety net: a revocation or a new control
    written without a change row still reaches the cache."""
    async def body(db: Database) -> None:
        keys = KeyStore(db)
        revoked, revoked_key = await keys.create(name="revoked", now=1.0)
        narrowed, narrowed_key = await keys.create(name="narrowed", now=1.0)
        assert await keys.authenticate(revoked_key) == revoked
        assert await keys.authenticate(narrowed_key) == narrowed

        def behind_the_feed(conn: Session) -> None:
            conn.execute("UPDATE api_keys SET revoked_at = 2 WHERE id = ?", (revoked.id,))
            conn.execute("UPDATE api_keys SET models = ? WHERE id = ?",
                         ('["claude-haiku"]', narrowed.id))
        await db.write(behind_the_feed)
        assert await keys.authenticate(revoked_key) == revoked  # cached: not seen yet
        await keys.follow(None)
        assert await keys.authenticate(revoked_key) is None
        found = await keys.authenticate(narrowed_key)
        assert found is not None and found.models == ("claude-haiku",)
    with_db(db_target, body)


def test_a_resync_keeps_the_cache_when_the_database_cannot_be_read(tmp_path: Path) -> None:
    """A resync that finds the database away must not leave every client's next request to
    read it: the keys checked before keep working, as through any failed poll."""
    path = tmp_path / "k.db"

    async def body(db: Database) -> None:
        keys = KeyStore(db)
        row, key = await keys.create(name="k", now=1.0)
        assert await keys.authenticate(key) == row
        with raw(path) as conn:
            conn.execute("ALTER TABLE api_keys RENAME TO api_keys_away")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await keys.follow(None)
        assert await keys.authenticate(key) == row
        with raw(path) as conn:
            conn.execute("ALTER TABLE api_keys_away RENAME TO api_keys")
    with_db(path, body)


def test_a_name_tells_the_keys_in_use_apart(db_target: str) -> None:
    """Two keys in use may not share a name (the dashboard and `kestrel keys revoke NAME` find
    a key by it); a revoked key's name is free again."""
    async def body(keys: KeyStore) -> None:
        laptop, _ = await keys.create(name="laptop", now=1.0)
        desktop, _ = await keys.create(name="desktop", now=1.0)
        with pytest.raises(Conflict) as taken:
            await keys.create(name="laptop", now=2.0)
        assert taken.value.field == "name" and "'laptop'" in taken.value.message
        with pytest.raises(Conflict):
            await keys.update(desktop.id, name="laptop", now=2.0)
        assert (await keys.update(laptop.id, name="laptop", now=2.0)).name == "laptop"  # itself
        assert (await keys.update(desktop.id, name="tower", now=2.0)).name == "tower"
        await keys.revoke(laptop.id, now=3.0)
        again, key = await keys.create(name="laptop", now=4.0)
        assert again.id != laptop.id and await keys.authenticate(key) == again
        # a refusal can tell a revoked key from an unknown one
        assert await keys.lookup(key) == again
        assert await keys.lookup("kst_" + "B" * 43) is None
    with_keys(db_target, body)


def test_duplicate_names_of_keys_in_use_are_told_apart_by_the_migration(tmp_path: Path) -> None:
    """A database of schema 8 may hold keys in use that share a name: schema 9 appends the id
    to every one but the oldest, leaves revoked keys alone, and then refuses new duplicates."""
    path = tmp_path / "k.db"
    with raw(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                     "applied_at REAL NOT NULL)")
        for migration in load_migrations():
            if migration.version <= 8:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, 0)", (migration.version,))
        for index, (name, revoked) in enumerate([("ci", None), ("ci", None), ("ci", 5.0),
                                                 ("ci", None), ("solo", None)], start=1):
            conn.execute("INSERT INTO api_keys (name, key_hash, prefix, created_at, revoked_at) "
                         "VALUES (?, ?, 'kst_x', 1, ?)", (name, bytes([index]) * 32, revoked))

    async def body(keys: KeyStore) -> None:
        assert [(k.id, k.name) for k in sorted(await keys.list(), key=lambda k: k.id)] == [
            (1, "ci"), (2, "ci #2"), (3, "ci"), (4, "ci #4"), (5, "solo")]
        with pytest.raises(Conflict):
            await keys.create(name="ci #2", now=9.0)
    with_keys(path, body)
