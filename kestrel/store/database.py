"""SQLite from async code: one writer thread fed by a queue, reads on a small pool of threads.

This is datasette's pattern. SQLite allows one writer at a time anyway, so funnelling every write
through one thread and one connection turns lock contention into an orderly queue (no
SQLITE_BUSY between our own writes), while WAL lets the readers keep reading during a write.
Every sqlite3 call, opening and migrating included, runs on one of these threads: the event loop
never waits on the disk.

Callers hand over a plain function of a connection; `write` runs it inside BEGIN IMMEDIATE …
COMMIT (ROLLBACK and re-raise on any exception), `read` inside a deferred transaction so several
SELECTs see one snapshot. Cancelling the awaiting task before the function starts drops it; once
it has started it runs to its end (a half-cancelled transaction is worse than a late one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from kestrel.domain import StoreError
from kestrel.store.migrations import migrate

T = TypeVar("T")

# Long enough to ride out another process's checkpoint or a `kestrel` CLI command writing at the
# same moment; short enough that a stuck lock surfaces as an error rather than a hung request.
BUSY_TIMEOUT_MS = 5000

_Job = tuple[Callable[[sqlite3.Connection], Any], "concurrent.futures.Future[Any]"]
_Queue = queue.Queue[_Job | None]


def _connect(path: str, *, read_only: bool) -> sqlite3.Connection:
    """A connection set up the same way everywhere.

    `isolation_level=None` switches off the sqlite3 module's implicit transactions: we issue
    BEGIN/COMMIT ourselves, so DDL and multi-statement writes are really atomic.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        # busy_timeout first, so that switching to WAL waits for a lock instead of failing.
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: SQLite could not switch to WAL mode (it stays in {mode!r});"
                             f" is the file on a network or read-only filesystem?")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash or power
        # loss may lose the last commits, never corrupt the file (sqlite.org/pragma.html).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if read_only:
            # A write slipped into `read()` fails at once instead of racing the writer thread.
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _in_transaction(begin: str, fn: Callable[[sqlite3.Connection], T],
                    conn: sqlite3.Connection) -> T:
    conn.execute(begin)
    try:
        result = fn(conn)
        if conn.in_transaction:
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


class _Worker(threading.Thread):
    """A thread that owns one connection and runs jobs from a queue until it meets `None`.

    Daemon, so a forgotten `close()` cannot keep the process alive; SQLite's journal makes an
    abandoned transaction harmless.
    """

    def __init__(self, path: str, jobs: _Queue, *, read_only: bool, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._path = path
        self._jobs = jobs
        self._read_only = read_only
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run(self) -> None:
        try:
            try:
                conn = _connect(self._path, read_only=self._read_only)
            except BaseException as exc:  # reported to `Database.open`, never to threading
                self.ready.set_exception(exc)
                return
            self.ready.set_result(None)
            try:
                while (job := self._jobs.get()) is not None:
                    fn, future = job
                    if not future.set_running_or_notify_cancel():
                        continue  # the caller gave up before we started
                    try:
                        result = fn(conn)
                    except BaseException as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                conn.close()
        finally:
            self.stopped.set_result(None)


class Database:
    """The one handle on Kestrel's SQLite file; build it with `await Database.open(path)`."""

    def __init__(self, path: str, readers: int) -> None:
        self._path = path
        self._writes: _Queue = queue.Queue()
        self._reads: _Queue = queue.Queue()
        self._writer = _Worker(path, self._writes, read_only=False, name="kestrel-db-writer")
        self._readers = [_Worker(path, self._reads, read_only=True, name=f"kestrel-db-reader-{i}")
                         for i in range(readers)]
        self._schema_version = 0
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, readers: int = 2) -> Database:
        """Create the file if missing and migrate it; `StoreError` if it cannot be used.

        The error is one line an operator can act on: a newer schema, or a file that is not a
        SQLite database or cannot be opened.
        """
        if readers < 1:
            raise ValueError("a Database needs at least one reader thread")
        db = cls(os.fspath(path), readers)
        try:
            db._writer.start()
            await asyncio.wrap_future(db._writer.ready)
            # Migrate before any reader connects, so no reader ever sees a half-made schema.
            db._schema_version = await db._submit(
                db._writes, functools.partial(migrate, path=db._path))
            for reader in db._readers:
                reader.start()
            await asyncio.gather(*(asyncio.wrap_future(r.ready) for r in db._readers))
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"cannot use {db._path} as a database: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def path(self) -> str:
        return self._path

    @property
    def schema_version(self) -> int:
        return self._schema_version

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the writer thread inside BEGIN IMMEDIATE … COMMIT; return its result.

        Writes run one at a time in submission order. An exception from `fn` rolls the whole
        transaction back and is raised here.
        """
        return await self._submit(self._writes,
                                  functools.partial(_in_transaction, "BEGIN IMMEDIATE", fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on a reader thread, in one read transaction (a consistent snapshot).

        Reader connections are `query_only`: writing here raises.
        """
        return await self._submit(self._reads, functools.partial(_in_transaction, "BEGIN", fn))

    async def probe(self) -> None:
        """Prove the file can still be opened and read, as a new process would.

        The long-lived connections keep working on a file that was deleted, replaced or made
        unreadable underneath them (they hold it open, and WAL serves pages from memory), so
        a health check that reused them would say "ok" about a database that is gone.
        """
        def fresh_read(_: sqlite3.Connection) -> None:
            uri = "file:" + urllib.parse.quote(os.path.abspath(self._path)) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                conn.close()

        await self._submit(self._reads, fresh_read)

    async def close(self) -> None:
        """Finish every write and read already queued, then close all connections. Idempotent."""
        if not self._closed:
            self._closed = True
            # FIFO queues: each `None` comes after every job submitted before close().
            self._writes.put(None)
            for _ in self._readers:
                self._reads.put(None)
        started = [w for w in (self._writer, *self._readers) if w.ident is not None]
        # shield: a cancelled close() must not cancel the futures the threads still resolve.
        await asyncio.shield(asyncio.gather(*(asyncio.wrap_future(w.stopped) for w in started)))

    def _submit(self, jobs: _Queue, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._closed:
            raise StoreError(f"the database {self._path} is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        jobs.put((fn, future))
        return asyncio.wrap_future(future)
