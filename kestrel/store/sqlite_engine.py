"""SQLite, the default engine: one file beside the server, nothing to run.

Writes take SQLite's one write lock with BEGIN IMMEDIATE, so a write transaction that reads and
then writes sees no other process's write in between; WAL lets reads go on meanwhile.
"""

from __future__ import annotations

import functools
import itertools
import os
import sqlite3
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

from kestrel.domain import StoreError
from kestrel.store.session import Rows, Session

# Long enough to ride out another process's checkpoint or a `kestrel` CLI command writing at the
# same moment; short enough that a stuck lock surfaces as an error rather than a hung request.
BUSY_TIMEOUT_MS = 5000
# Rows per INSERT statement at most. The sqlite3 module binds a statement's values with the
# interpreter lock held, in one C call the event loop cannot interrupt: 512 request log rows
# (about 12,000 values) held it 1.3 ms, 64 rows 0.2 ms, and 64 cost the least CPU a row of the
# sizes tried (bench/RESULTS.md, run 17).
MAX_ROWS_PER_INSERT = 64


# The sqlite3 module binds int, float and str values as they are, and sends every other value
# through its adapters first. For None, having none, it builds an AttributeError (no
# `__adapt__` on its protocol type) and throws it away: about 0.3 µs for each NULL bound, and a
# request log row holds several. With an adapter of its own, None costs what the others do and
# still binds NULL. Adapters are the whole process's; None binds as it did everywhere.
def _null(_: None) -> None:
    return None


sqlite3.register_adapter(type(None), _null)


class SqliteSession:
    """A `Session` over one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        row_id = self._conn.execute(sql, params).lastrowid
        assert row_id is not None
        return row_id

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        """Multi-row INSERTs of a few fixed sizes (64, 32, … 1 rows).

        Why not `executemany`: it steps the statement once per row, and the sqlite3 module
        lets go of the interpreter lock around each step. This thread then waits for the lock
        again after every row, while the event loop holds it, and each wait wakes it once per
        system call the loop makes: three context switches per request log row, a tenth of a
        proxied request's CPU (bench/RESULTS.md, run 10). One statement per chunk takes the lock
        back a few times per chunk (reset, step, counting columns, the last row id). Sizes are
        powers of two so that the module's statement cache holds a handful of texts whatever
        the batch size (run 11); MAX_ROWS_PER_INSERT says why they stop at 64. `rows` is read
        a chunk at a time, by slices.
        """
        width = len(columns)
        most = max(1, min(MAX_ROWS_PER_INSERT,
                          self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
        start = 0
        while start < len(rows):
            size = min(most, 1 << ((len(rows) - start).bit_length() - 1))
            chunk = rows[start:start + size]
            self._conn.execute(_insert_text(table, tuple(columns), size),
                               list(itertools.chain.from_iterable(chunk)))
            start += size
            # Another statement may follow: on a machine with one CPU, the event loop's thread
            # gets it first if it waits for it (without, it waited until this thread's time
            # slice ended, a few milliseconds; bench/RESULTS.md, run 17).
            os.sched_yield()

    def ids_copied(self, table: str) -> None:
        pass  # SQLite hands out max(id) + 1 (AUTOINCREMENT tables keep their own count up)

    def close(self) -> None:
        self._conn.close()


@functools.lru_cache(maxsize=64)
def _insert_text(table: str, columns: tuple[str, ...], rows: int) -> str:
    one = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)}"


class SqliteEngine:
    """Opens sessions on the SQLite file at `path`."""

    name = "sqlite"
    setting = "DB_PATH"
    error = sqlite3.Error

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = path  # how messages name the database

    def connect(self, *, read_only: bool) -> SqliteSession:
        """A connection set up the same way everywhere.

        `isolation_level=None` switches off the sqlite3 module's implicit transactions: we issue
        BEGIN/COMMIT ourselves, so DDL and multi-statement writes are really atomic.
        """
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            # busy_timeout first, so that switching to WAL waits for a lock instead of failing.
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: SQLite could not switch to WAL mode (it stays in "
                                 f"{mode!r}); is the file on a network or read-only filesystem?")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash or
            # power loss may lose the last commits, never corrupt the file
            # (sqlite.org/pragma.html).
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if read_only:
                # A write slipped into `read()` fails at once instead of racing the writer.
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return SqliteSession(conn)

    @staticmethod
    def begin(session: Session, *, write: bool) -> None:
        session.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def probe(self) -> None:
        """Open the file afresh and read it, as a new process would.

        The long-lived connections keep working on a file that was deleted, replaced or made
        unreadable underneath them (they hold it open, and WAL serves pages from memory), so
        a health check that reused them would say "ok" about a database that is gone.
        """
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()

    @staticmethod
    def ddl(statement: str) -> str:
        """Migrations are written in SQLite's types: nothing to change."""
        return statement

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        # The database's state, not the work: a read-only file, a lock held too long, a full
        # disk or an I/O error (all OperationalError). The same work succeeds once it recovers.
        return isinstance(exc, sqlite3.OperationalError)

    @staticmethod
    def is_broken(exc: BaseException) -> bool:
        return False  # a file does not hang up: the connection stays usable

    @staticmethod
    def describe(exc: BaseException) -> str:
        return str(exc)
