"""The database from async code: one writer thread fed by a queue, reads on a small pool of threads.

This is datasette's pattern, for either engine (`sqlite_engine.py`, `postgres_engine.py`).
SQLite allows one writer at a time anyway, so funnelling every write through one thread and one
connection turns lock contention into an orderly queue (no SQLITE_BUSY between our own writes),
while WAL lets the readers keep reading during a write; PostgreSQL's writes are serialised the
same way across instances by a lock (see there). Every driver call, opening and migrating
included, runs on one of these threads: the event loop never waits on the database.

Callers hand over a plain function of a `Session`; `write` runs it inside a write transaction
(COMMIT, or ROLLBACK and re-raise on any exception), `read` inside a read transaction so several
SELECTs see one snapshot. Cancelling the awaiting task before the function starts drops it; once
it has started it runs to its end (a half-cancelled transaction is worse than a late one).

A connection that broke (a PostgreSQL restart, a network cut) is dropped, and the next job on
that thread connects again; a failed connect holds off the next attempt for a growing delay, so
a server that is down is not hammered, and jobs meanwhile fail at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kestrel.database_url import is_postgres_url
from kestrel.domain import StoreError
from kestrel.store.migrations import migrate
from kestrel.store.session import Engine, NotBegun, OwnSession, Session, in_transaction

T = TypeVar("T")

# After a failed connect, the next waits this long, doubled per failure up to the cap.
RECONNECT_FIRST_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0

_Job = tuple[Callable[[Session], Any], "concurrent.futures.Future[Any]"]
_Queue = queue.Queue[_Job | None]


class _Worker(threading.Thread):
    """A thread that owns one connection and runs jobs from a queue until it meets `None`.

    Daemon, so a forgotten `close()` cannot keep the process alive; the database's journal
    makes an abandoned transaction harmless.
    """

    def __init__(self, engine: Engine, jobs: _Queue, *, read_only: bool, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._engine = engine
        self._jobs = jobs
        self._read_only = read_only
        self._session: OwnSession | None = None
        self._next_connect = 0.0
        self._connect_delay = RECONNECT_FIRST_DELAY
        self._connect_error: BaseException | None = None
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run(self) -> None:
        try:
            try:
                self._session = self._engine.connect(read_only=self._read_only)
            except BaseException as exc:  # reported to `Database.open`, never to threading
                self.ready.set_exception(exc)
                return
            self.ready.set_result(None)
            while (job := self._jobs.get()) is not None:
                fn, future = job
                if not future.set_running_or_notify_cancel():
                    continue  # the caller gave up before we started
                try:
                    result = self._run(fn)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            self._drop_session()
            self.stopped.set_result(None)

    def _run(self, fn: Callable[[Session], T]) -> T:
        """`fn` on this thread's connection. A connection that broke while it sat idle (the
        server restarted, a network path timed out) fails at its next BEGIN: then, and only
        then, since nothing of the work was sent, the work runs once more on a new one."""
        fresh = self._session is None
        try:
            return self._attempt(fn)
        except NotBegun as exc:
            cause = exc.__cause__ or exc
            if fresh or not self._engine.is_broken(cause):
                raise cause from None
        try:
            return self._attempt(fn)
        except NotBegun as exc:
            raise (exc.__cause__ or exc) from None

    def _attempt(self, fn: Callable[[Session], T]) -> T:
        try:
            return fn(self._connected())
        except BaseException as exc:
            cause = exc.__cause__ if isinstance(exc, NotBegun) else exc
            if cause is not None and self._engine.is_broken(cause):
                self._drop_session()
            raise

    def _connected(self) -> Session:
        if self._session is not None:
            return self._session
        if time.monotonic() < self._next_connect and self._connect_error is not None:
            raise self._connect_error.with_traceback(None)
        try:
            self._session = self._engine.connect(read_only=self._read_only)
        except Exception as exc:
            self._connect_error = exc
            self._next_connect = time.monotonic() + self._connect_delay
            self._connect_delay = min(self._connect_delay * 2, RECONNECT_MAX_DELAY)
            raise
        self._connect_error = None
        self._connect_delay = RECONNECT_FIRST_DELAY
        return self._session

    def _drop_session(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            with contextlib.suppress(Exception):  # a broken connection may fail to say goodbye
                session.close()


class Database:
    """The one handle on Kestrel's database; build it with `await Database.open(target)`."""

    def __init__(self, engine: Engine, readers: int) -> None:
        self._engine = engine
        self._writes: _Queue = queue.Queue()
        self._reads: _Queue = queue.Queue()
        self._writer = _Worker(engine, self._writes, read_only=False, name="kestrel-db-writer")
        self._readers = [_Worker(engine, self._reads, read_only=True,
                                 name=f"kestrel-db-reader-{i}") for i in range(readers)]
        self._schema_version = 0
        self._closed = False

    @classmethod
    async def open(cls, target: str | os.PathLike[str], *, readers: int = 2) -> Database:
        """Open and migrate the database `target` names: a `postgresql://` URL, else the path
        of a SQLite file (created if missing). `StoreError` if it cannot be used.

        The error is one line an operator can act on: a newer schema, a file that is not a
        SQLite database or cannot be opened, a server that cannot be reached or refuses us.
        """
        if readers < 1:
            raise ValueError("a Database needs at least one reader thread")
        db = cls(_engine_for(target), readers)
        try:
            db._writer.start()
            await asyncio.wrap_future(db._writer.ready)
            # Migrate before any reader connects, so no reader ever sees a half-made schema.
            db._schema_version = await db._submit(
                db._writes, functools.partial(migrate, engine=db._engine))
            for reader in db._readers:
                reader.start()
            await asyncio.gather(*(asyncio.wrap_future(r.ready) for r in db._readers))
        except (db._engine.error, OSError) as exc:  # OSError: a TLS handshake refused, say
            await db.close()
            raise StoreError(f"cannot use {db.where} as a database: {db.describe(exc)}"
                             ) from exc
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def where(self) -> str:
        """The file's path, or the server's URL without its password."""
        return self._engine.where

    @property
    def engine(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.name

    @property
    def schema_version(self) -> int:
        return self._schema_version

    def is_transient(self, exc: BaseException) -> bool:
        """Whether `exc` from `read` or `write` describes the database's state rather than the
        work: the same work may succeed once it recovers (a lock, a full disk, a server away)."""
        return isinstance(exc, StoreError | OSError) or self._engine.is_transient(exc)

    def describe(self, exc: BaseException) -> str:
        """An error from `read` or `write` in one line, for an operator."""
        return self._engine.describe(exc) if isinstance(exc, self._engine.error) else str(exc)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` on the writer thread inside a write transaction; return its result.

        Writes run one at a time in submission order. An exception from `fn` rolls the whole
        transaction back and is raised here.
        """
        return await self._submit(self._writes,
                                  functools.partial(in_transaction, self._engine, fn, write=True))

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` on a reader thread, in one read transaction (a consistent snapshot).

        Reader connections are read-only: writing here raises.
        """
        return await self._submit(self._reads,
                                  functools.partial(in_transaction, self._engine, fn, write=False))

    async def probe(self) -> None:
        """Prove the database can still be opened and read, as a new process would.

        On a thread of its own, not a reader's: a reader whose connection broke holds off its
        next connect for a while, and the probe must see a server that is back at once.
        """
        if self._closed:
            raise StoreError(f"the database {self.where} is closed")
        await asyncio.to_thread(self._engine.probe)

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

    def _submit(self, jobs: _Queue, fn: Callable[[Session], T]) -> asyncio.Future[T]:
        if self._closed:
            raise StoreError(f"the database {self.where} is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        jobs.put((fn, future))
        return asyncio.wrap_future(future)


def _engine_for(target: str | os.PathLike[str]) -> Engine:
    from kestrel.store.sqlite_engine import SqliteEngine

    if isinstance(target, str) and is_postgres_url(target):
        try:
            # Imported only here: a SQLite deployment never loads the PostgreSQL driver.
            from kestrel.store.postgres_engine import PostgresEngine
            return PostgresEngine(target)
        except ValueError as exc:
            raise StoreError(f"DATABASE_URL: {exc}") from None
    return SqliteEngine(os.fspath(target))
