"""Request logs leave the request path through a bounded in-memory queue, reach SQLite in batches.

A request only appends to a list (`submit`): no await, no I/O, no exception. A background task
writes whatever waits every `flush_interval`, or sooner once a full batch waits, so a crash loses
about the last half second of logs and the database sees one transaction per batch instead of one
per request. A busy server writes full batches only (the rows past the last one wait for the
next), and a full batch of `max_batch` (a power of two) rows is a few INSERT statements of
equal size: see `SqliteSession.insert_rows` for why statements count. Turning rows into the
values stored is the store's work, on the database's thread, not the event loop's.

The queue is bounded: when the database cannot keep up or refuses writes (read-only, locked, disk
full), rows wait and are retried on the next tick, and once `max_queue` rows wait, new ones are
dropped and counted. Losing log rows is always preferred to slowing or failing the
requests they describe.

Call `submit` from the event loop's thread only (it touches an `asyncio.Event`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from kestrel.domain import RequestLog
from kestrel.store.request_logs import RequestLogStore

log = logging.getLogger("kestrel.logwriter")

SECONDS_PER_DAY = 86_400.0
# Pruning is cheap when done often (an hour's worth of rows) and nobody needs it to the minute.
PRUNE_EVERY_SECONDS = 3_600.0

def _describe(exc: BaseException) -> str:
    # The type and SQLite's message only: rows never appear in the log line, nor do credentials.
    return f"{type(exc).__name__}: {exc}"


class LogWriter:
    def __init__(
        self,
        store: RequestLogStore,
        *,
        flush_interval: float = 0.5,
        max_batch: int = 512,
        max_queue: int = 50_000,
        retention_days: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`retention_days` <= 0 keeps rows forever (no pruning)."""
        if flush_interval <= 0 or max_batch < 1 or max_queue < 1:
            raise ValueError("flush_interval, max_batch and max_queue must be positive")
        self._store = store
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._retention_seconds = retention_days * SECONDS_PER_DAY if retention_days > 0 else None
        self._clock = clock
        self._pending: list[RequestLog] = []
        self._batch_ready = asyncio.Event()  # a full batch waits (or we are closing)
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._closed = False  # the final flush is done: rows submitted now are dropped
        self._written = 0
        self._dropped = 0
        self._flush_failures = 0
        self._failing = 0  # consecutive failed attempts, to log a streak once, not every tick
        self._dropping = 0  # rows dropped since the queue last had room

    # --- counters, for metrics ------------------------------------------------------------------

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def flush_failures(self) -> int:
        """Write attempts the database refused (each retried, or its rows dropped)."""
        return self._flush_failures

    # --- the request path -----------------------------------------------------------------------

    def submit(self, row: RequestLog) -> None:
        """Queue a row for writing. Never blocks, never raises: a full queue drops the row."""
        try:
            if self._closed or len(self._pending) >= self._max_queue:
                self._drop_new_row()
                return
            self._pending.append(row)
            if len(self._pending) >= self._max_batch:
                self._batch_ready.set()
        except Exception:  # a bug here must not fail the request it logs
            self._dropped += 1
            log.exception("could not queue a request log")

    def _drop_new_row(self) -> None:
        self._dropped += 1
        self._dropping += 1
        if self._dropping == 1:
            reason = "the writer is closed" if self._closed else (
                f"{len(self._pending)} rows already wait (max_queue)")
            log.warning("dropping request logs: %s", reason)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task (pruning once right away). Calling it again does nothing."""
        if self._task is None and not self._closing.is_set():
            self._task = asyncio.create_task(self._run(), name="kestrel-log-writer")

    async def close(self) -> None:
        """Write what waits (one attempt), stop the task. Idempotent; never raises for the DB."""
        self._closing.set()
        self._batch_ready.set()
        if self._task is None:  # never started: the final flush still runs
            self._task = asyncio.create_task(self._final_flush(), name="kestrel-log-writer")
        try:
            # shield: cancelling close() must not cut the final flush in half.
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise  # close() itself was cancelled
        if self._prune_task is not None:
            self._prune_task.cancel()
            await asyncio.gather(self._prune_task, return_exceptions=True)
        if self._pending:  # the task was cancelled from outside before it could flush
            self._dropped += len(self._pending)
            self._pending.clear()
        self._closed = True

    # --- the background task --------------------------------------------------------------------

    async def _run(self) -> None:
        next_prune = self._clock()
        retry = False
        while not self._closing.is_set():
            try:
                if self._retention_seconds is not None and self._clock() >= next_prune:
                    next_prune = self._clock() + PRUNE_EVERY_SECONDS
                    if self._prune_task is None or self._prune_task.done():
                        # A task of its own: a first prune of a big table must not hold up flushes
                        # (it deletes in chunks, so batches get their turn in between).
                        self._prune_task = asyncio.create_task(self._prune())
                # After a failure, wait the whole tick even when a batch fills up meanwhile: a
                # locked or read-only database must not turn this loop into a busy retry.
                full = await self._wait(self._closing if retry else self._batch_ready)
                if self._closing.is_set():
                    break
                retry = not await self._flush(whole_batches=full)
            except Exception:  # the process must outlive any bug in here
                log.exception("request log writer failed; it carries on")
                retry = True
        await self._final_flush()

    async def _wait(self, wake: asyncio.Event) -> bool:
        """Wait for `wake` or the end of the tick; True if a full batch is what woke us."""
        if self._closing.is_set():
            return False
        if wake is self._batch_ready and len(self._pending) < self._max_batch:
            self._batch_ready.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), self._flush_interval)
        return wake is self._batch_ready and len(self._pending) >= self._max_batch

    async def _final_flush(self) -> None:
        # One attempt per batch: shutdown must not wait out a locked database tick after tick.
        while self._pending and await self._flush():
            pass
        if self._pending:
            log.error("dropping %d request logs at shutdown: the database refused them",
                      len(self._pending))
            self._dropped += len(self._pending)
            self._pending.clear()
        self._closed = True

    async def _flush(self, *, whole_batches: bool = False) -> bool:
        """Write the rows waiting now, batch by batch; False if the database refused (rows kept).

        Rows submitted during the writes wait for the next tick, so a steady trickle still
        becomes one transaction per tick rather than many tiny ones. With `whole_batches`, the
        rows past the last full batch wait too: under load they would otherwise become a small
        transaction of their own after every full one.
        """
        todo = len(self._pending)
        if whole_batches:
            todo -= todo % self._max_batch
        while todo > 0:
            batch = self._pending[:min(todo, self._max_batch)]
            handled = await self._write(batch)
            # Only appends happen meanwhile, so the batch is still at the front.
            del self._pending[:handled]
            todo -= handled
            if handled < len(batch):
                return False
        if self._dropping and len(self._pending) < self._max_queue and not self._closed:
            log.warning("the request log queue has room again; %d rows were dropped",
                        self._dropping)
            self._dropping = 0
        return True

    async def _write(self, batch: list[RequestLog]) -> int:
        """Write `batch`; return how many rows at its front are done with (written or dropped)."""
        try:
            await self._store.insert_many(batch)
        except Exception as exc:
            # The database's state (a read-only file, a lock held too long, a full disk, a
            # server away) keeps the rows: they go in once it recovers. Anything else means the
            # rows themselves are bad (say, a count too large for an INTEGER): retrying would
            # fail forever.
            if not self._store.is_transient(exc):
                return await self._refused(batch, exc)
            self._flush_failures += 1
            self._failing += 1
            if self._failing == 1:
                log.warning("cannot write request logs (%s); keeping %d rows, retrying every "
                            "%gs", _describe(exc), len(self._pending), self._flush_interval)
            return 0
        self._written += len(batch)
        if self._failing:
            log.warning("request logs are written again, after %d failed attempts",
                        self._failing)
            self._failing = 0
        return len(batch)

    async def _refused(self, batch: list[RequestLog], exc: Exception) -> int:
        """Drop the rows the database refuses for what they are, and only those."""
        self._flush_failures += 1
        if len(batch) == 1:
            self._dropped += 1
            log.error("dropped request log %s: the database refused it (%s)",
                      batch[0].request_id, _describe(exc))
            return 1
        # Some row is unwritable: one by one, so only that row is lost, not its neighbours.
        log.error("a batch of %d request logs was refused (%s); writing them one by one",
                  len(batch), _describe(exc))
        handled = 0
        for row in batch:
            step = await self._write([row])
            if step == 0:
                break
            handled += step
        return handled

    async def _prune(self) -> None:
        assert self._retention_seconds is not None
        try:
            deleted = await self._store.prune(self._clock() - self._retention_seconds)
        except Exception as exc:
            log.warning("could not prune old request logs (%s); trying again in an hour",
                        _describe(exc))
        else:
            if deleted:
                log.info("pruned %d request logs older than %g days", deleted,
                         self._retention_seconds / SECONDS_PER_DAY)
