"""Numbered schema migrations, each applied in one transaction together with its version row.

The scripts are package data (`migrations/NNNN_name.sql`) read through `importlib.resources`
Traversable methods only, so they load the same from a source checkout, a wheel, or the
extracted zipapp. Everything here runs on the database's writer thread.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from kestrel.domain import StoreError

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    """The known migrations in order; a gap or a duplicate number is a packaging bug, so it fails
    loudly rather than leaving some database a step behind."""
    folder = folder if folder is not None else resources.files("kestrel.store") / "migrations"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None or not entry.is_file():
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations numbered {version}: {entry.name}, "
                               f"{found[version].name}")
        found[version] = Migration(version, entry.name,
                                   split_statements(entry.read_text("utf-8"), entry.name))
    ordered = [found[v] for v in sorted(found)]
    if [m.version for m in ordered] != list(range(1, len(ordered) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, 3… without gaps: "
                           f"{[m.name for m in ordered]}")
    return ordered


def split_statements(script: str, name: str = "<script>") -> tuple[str, ...]:
    """One string per SQL statement.

    `executescript` would be simpler but it COMMITs first and runs outside our transaction, so a
    migration failing halfway would leave half a schema. Cutting at every `;` and gluing pieces
    back until `sqlite3.complete_statement` agrees keeps semicolons inside strings, comments and
    trigger bodies where they belong.
    """
    statements: list[str] = []
    pending = ""
    *terminated, tail = script.split(";")
    for piece in terminated:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    # After the last complete statement only comments and space may remain.
    rest = "\n".join(line for line in (pending + tail).splitlines()
                     if not line.strip().startswith("--"))
    if rest.strip():
        raise RuntimeError(f"migration {name} ends with an unterminated statement")
    return tuple(statements)


def _current_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, path: str,
            migrations: list[Migration] | None = None) -> int:
    """Bring the database up to the newest known migration; return the schema version.

    Safe to run again and from two processes at once: each step takes the write lock (BEGIN
    IMMEDIATE) and re-reads the version inside it, so a migration applied meanwhile is skipped.
    """
    known = load_migrations() if migrations is None else migrations
    newest = known[-1].version if known else 0
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                     "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        current = _current_version(conn)
    if current > newest:
        raise StoreError(f"{path} has schema version {current} but this Kestrel knows only up "
                         f"to {newest}; use a newer Kestrel or another DB_PATH")
    for migration in known:
        if migration.version <= current:
            continue
        with _transaction(conn):
            current = _current_version(conn)
            if migration.version <= current:
                continue  # another process got here first
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                         (migration.version, time.time()))
            current = migration.version
    return current


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, ROLLBACK on any exception.

    The connection is in autocommit mode (`isolation_level=None`), so DDL really runs inside this
    transaction instead of the sqlite3 module committing around it.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
