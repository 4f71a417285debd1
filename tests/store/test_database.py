"""The database handle on real files: migrations, connection settings, threads, transactions."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kestrel.domain import StoreError
from kestrel.store.database import Database
from kestrel.store.migrations import Migration, load_migrations, migrate, split_statements
from kestrel.store.sqlite_engine import SqliteEngine, SqliteSession

from support.db import raw, with_db

NEWEST = len(load_migrations())


def scalar(conn: sqlite3.Connection, sql: str) -> Any:
    return conn.execute(sql).fetchone()[0]


def test_open_creates_the_file_and_applies_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "k.db"

    async def body(db: Database) -> None:
        assert db.schema_version == NEWEST >= 1
        assert db.where == str(path)
        tables = await db.read(lambda c: {r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")})
        assert {"schema_version", "meta", "accounts", "api_keys"} <= tables
    with_db(path, body)
    with raw(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, NEWEST + 1))


def test_reopening_is_a_no_op_that_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with_db(path, lambda db: db.write(lambda c: c.execute(
        "INSERT INTO meta (key, value) VALUES ('kept', x'01')")))
    with raw(path) as conn:
        applied = conn.execute("SELECT * FROM schema_version").fetchall()

    async def body(db: Database) -> Any:
        assert db.schema_version == NEWEST
        return await db.read(lambda c: scalar(c, "SELECT value FROM meta WHERE key = 'kept'"))
    assert with_db(path, body) == b"\x01"
    with raw(path) as conn:
        assert conn.execute("SELECT * FROM schema_version").fetchall() == applied


def test_a_database_newer_than_this_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with_db(path, lambda db: asyncio.sleep(0))
    with raw(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)")
    with pytest.raises(StoreError) as caught:
        asyncio.run(Database.open(path))
    assert str(caught.value) == (
        f"{path} has schema version 999 but this Kestrel knows only up to {NEWEST}; "
        "use a newer Kestrel or another DB_PATH")


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(StoreError) as caught:
        asyncio.run(Database.open(path))
    message = str(caught.value)
    assert str(path) in message and "not a database" in message and "\n" not in message
    assert path.read_bytes() == content


def test_a_path_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open"):
        asyncio.run(Database.open(tmp_path / "missing-dir" / "k.db"))


def test_every_connection_uses_wal_foreign_keys_busy_timeout_and_normal_sync(
        tmp_path: Path) -> None:
    def settings(conn: sqlite3.Connection) -> tuple[Any, ...]:
        return tuple(scalar(conn, f"PRAGMA {name}") for name in (
            "journal_mode", "foreign_keys", "busy_timeout", "synchronous"))

    async def body(db: Database) -> None:
        expected = ("wal", 1, 5000, 1)  # synchronous 1 == NORMAL
        assert await db.write(settings) == expected
        assert await db.read(settings) == expected
    with_db(tmp_path / "k.db", body)


def test_no_sqlite_call_runs_on_the_event_loop_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connected_on: list[int] = []
    real_connect = sqlite3.connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connected_on.append(threading.get_ident())
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        return conn
    monkeypatch.setattr(sqlite3, "connect", spy)

    async def main() -> None:
        loop_thread = threading.get_ident()
        db = await Database.open(tmp_path / "k.db", readers=3)
        try:
            writes = {await db.write(lambda c: threading.get_ident()) for _ in range(5)}
            reads = set(await asyncio.gather(*(db.read(lambda c: threading.get_ident())
                                               for _ in range(20))))
        finally:
            await db.close()
        assert loop_thread not in connected_on and len(connected_on) == 4
        assert len(writes) == 1 and loop_thread not in writes  # one writer thread
        assert loop_thread not in reads and not reads & writes
    asyncio.run(main())


def test_a_failed_write_rolls_back_and_reraises(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('half', x'00')")
        raise Boom("stop")

    async def body(db: Database) -> int:
        with pytest.raises(Boom):
            await db.write(half_then_fail)
        # The writer is healthy afterwards and the half-write is gone.
        await db.write(lambda c: c.execute("INSERT INTO meta (key, value) VALUES ('ok', x'00')"))
        return int(await db.read(
            lambda c: scalar(c, "SELECT count(*) FROM meta WHERE key = 'half'")))
    assert with_db(tmp_path / "k.db", body) == 0


def test_concurrent_writes_from_many_tasks_all_land_one_at_a_time(tmp_path: Path) -> None:
    def increment(conn: sqlite3.Connection) -> None:
        # Read-modify-write: would lose updates if two writes ever interleaved.
        row = conn.execute("SELECT value FROM meta WHERE key = 'n'").fetchone()
        n = 0 if row is None else int(row[0])
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('n', ?)", (n + 1,))

    async def body(db: Database) -> Any:
        await asyncio.gather(*(db.write(increment) for _ in range(200)))
        return await db.read(lambda c: scalar(c, "SELECT value FROM meta WHERE key = 'n'"))
    assert with_db(tmp_path / "k.db", body) == 200


def test_reads_cannot_write(tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.read(lambda c: c.execute("INSERT INTO meta (key, value) VALUES ('x', 1)"))
    with_db(tmp_path / "k.db", body)


def test_close_finishes_queued_writes_is_idempotent_and_then_refuses(tmp_path: Path) -> None:
    path = tmp_path / "k.db"

    async def main() -> None:
        db = await Database.open(path)
        def insert(i: int) -> Callable[[sqlite3.Connection], int]:
            return lambda c: c.execute("INSERT INTO meta (key, value) VALUES (?, x'00')",
                                       (f"k{i}",)).rowcount
        tasks = [asyncio.ensure_future(db.write(insert(i))) for i in range(30)]
        await asyncio.sleep(0)  # let every task queue its write
        await db.close()
        await db.close()
        assert await asyncio.gather(*tasks) == [1] * 30
        with pytest.raises(StoreError, match="closed"):
            await db.read(lambda c: None)
    asyncio.run(main())
    with raw(path) as conn:
        assert scalar(conn, "SELECT count(*) FROM meta") == 30


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    broken = [Migration(1, "0001_ok.sql", ("CREATE TABLE one (x)",)),
              Migration(2, "0002_broken.sql", ("CREATE TABLE two (x)", "CREATE TABLE (")),
              ]
    with raw(tmp_path / "k.db") as conn:
        with pytest.raises(sqlite3.OperationalError):
            migrate(SqliteSession(conn), SqliteEngine("k.db"), broken)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "one" in tables and "two" not in tables
        assert scalar(conn, "SELECT max(version) FROM schema_version") == 1
        # And re-running is a no-op.
        assert migrate(SqliteSession(conn), SqliteEngine("k.db"), broken[:1]) == 1


def test_split_statements_respects_strings_comments_and_triggers() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN
            UPDATE t SET x = 'c;d'; DELETE FROM t WHERE x = ';';
        END;
        -- trailing comment
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].endswith("DEFAULT 'a;b');")
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(RuntimeError, match="unterminated"):
        split_statements("CREATE TABLE t (x);\nCREATE TABLE u (y)")


def test_packaged_migrations_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_initial.sql"
    assert all(m.statements for m in migrations)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 511, 512, 513, 1300])
@pytest.mark.parametrize("variables", [250_000, 7])
def test_insert_rows_lands_every_row_in_order_across_statements(count: int,
                                                                variables: int) -> None:
    """Rows go in by multi-row statements of a few sizes, within the engine's limit on bound
    values (7 here allows three rows of two values per statement)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, label TEXT)")
    rows = [(i, f"row {i}") for i in range(count)]
    SqliteSession(conn).insert_rows("t", ["n", "label"], rows)
    assert conn.execute("SELECT n, label FROM t ORDER BY id").fetchall() == rows
