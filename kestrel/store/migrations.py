"""Numbered schema migrations, each applied in one transaction together with its version row.

The scripts are package data (`migrations/NNNN_name.sql`) read through `importlib.resources`
Traversable methods only, so they load the same from a source checkout, a wheel, or the
extracted zipapp. Everything here runs on the database's writer thread.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from kestrel.domain import StoreError
from kestrel.store.session import Engine, Session, in_transaction

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


def _current_version(session: Session) -> int:
    (version,) = session.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(version)


def migrate(session: Session, engine: Engine, migrations: list[Migration] | None = None) -> int:
    """Bring the database up to the newest known migration; return the schema version.

    Safe to run again and from many processes and instances at once: each step is a write
    transaction (which takes the engine's write lock) and re-reads the version inside it, so a
    migration applied meanwhile is skipped.
    """
    known = load_migrations() if migrations is None else migrations
    newest = known[-1].version if known else 0

    def version_table(session: Session) -> int:
        session.execute(engine.ddl("CREATE TABLE IF NOT EXISTS schema_version ("
                                   "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"))
        return _current_version(session)

    def apply(migration: Migration, session: Session) -> int:
        current = _current_version(session)
        if migration.version <= current:
            return current  # another process got here first
        for statement in migration.statements:
            session.execute(engine.ddl(statement))
        session.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                        (migration.version, time.time()))
        return migration.version

    # Each step a write transaction: the engine's write lock held, ROLLBACK on any exception.
    current = in_transaction(engine, version_table, session, write=True)
    if current > newest:
        raise StoreError(f"{engine.where} has schema version {current} but this Kestrel knows "
                         f"only up to {newest}; use a newer Kestrel or another {engine.setting}")
    for migration in known:
        if migration.version > current:
            current = in_transaction(engine, functools.partial(apply, migration), session,
                                     write=True)
    return current

