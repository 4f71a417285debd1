"""The request log writer on a real database: batching, shutdown, overflow, failures, pruning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kestrel.domain import Attempt, RequestLog
from kestrel.store.database import Database
from kestrel.store.keys import KeyStore
from kestrel.store.log_writer import SECONDS_PER_DAY, LogWriter
from kestrel.store.request_logs import RequestLogStore

from support.db import with_db

NOW = 1_750_000_000.0


def entry(n: int, **fields: Any) -> RequestLog:
    return RequestLog(**{"ts": NOW + n, "request_id": f"req-{n}", "route": "/v1/messages",
                         "status": 200, **fields})


POLL = 0.005


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    """Poll: the writer's progress has nothing to await from outside, by design."""
    for _ in range(int(within / POLL)):
        if condition():
            return
        await asyncio.sleep(POLL)
    raise AssertionError("condition not met in time")


async def stored_ids(db: Database) -> list[str]:
    return await db.read(lambda c: [r[0] for r in c.execute(
        "SELECT request_id FROM request_logs ORDER BY id")])


async def count_transactions(db: Database) -> int:
    """Make every write transaction of `insert_many` leave a mark, seen from SQL itself.

    `insert_many` updates each key's `last_used_at` once per batch; with every row on one key, a
    trigger on that update records how many log rows exist at the end of each transaction.
    """
    key, _ = await KeyStore(db).create(name="batch-counter", now=0.0)

    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE test_batches (rows_so_far INTEGER NOT NULL)")
        conn.execute("CREATE TRIGGER test_count_batches AFTER UPDATE OF last_used_at ON api_keys "
                     "BEGIN INSERT INTO test_batches SELECT count(*) FROM request_logs; END")
    await db.write(setup)
    return key.id


async def batch_ends(db: Database) -> list[int]:
    return await db.read(lambda c: [r[0] for r in c.execute(
        "SELECT rows_so_far FROM test_batches ORDER BY rowid")])


def test_many_submits_become_few_transactions(tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        key_id = await count_transactions(db)
        # A long interval: only a full batch may trigger a write before close().
        writer = LogWriter(RequestLogStore(db), flush_interval=30, max_batch=100)
        await writer.start()
        for n in range(1030):  # a burst, all queued before the writer runs
            writer.submit(entry(n, key_id=key_id))
        await eventually(lambda: writer.written == 1000)
        assert await batch_ends(db) == list(range(100, 1001, 100))  # ten full batches
        # The 30 rows past the last full batch are not a small transaction of their own: they
        # wait for the next full batch or the tick, as a trickle below the batch size does.
        for n in range(1030, 1050):
            writer.submit(entry(n, key_id=key_id))
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert (writer.written, writer.queue_depth) == (1000, 50)
        await writer.close()
        assert (writer.written, writer.queue_depth, writer.dropped) == (1050, 0, 0)
        assert await batch_ends(db) == [*range(100, 1001, 100), 1050]
        assert await stored_ids(db) == [f"req-{n}" for n in range(1050)]
    with_db(tmp_path / "k.db", body)


def test_the_interval_flushes_a_trickle_in_one_transaction_per_tick(tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        key_id = await count_transactions(db)
        writer = LogWriter(RequestLogStore(db), flush_interval=0.05, max_batch=500)
        await writer.start()
        for n in range(20):
            writer.submit(entry(n, key_id=key_id))
        await eventually(lambda: writer.written == 20)
        assert await batch_ends(db) == [20]
        await writer.close()
    with_db(tmp_path / "k.db", body)


def test_a_batch_longer_than_a_statement_is_stored_whole_and_in_order(db_target: str) -> None:
    """SQLite writes a batch by statements of at most 64 rows, each step's rows converted as
    it is read; PostgreSQL by one COPY. Either way every row reads back as it went in."""
    async def body(db: Database) -> None:
        rows = [entry(n, status=200 + n % 3, input_tokens=n, error_message=f"m{n}",
                      attempts=(Attempt(1, 200, None, float(n)),)) for n in range(150)]
        store = RequestLogStore(db)
        await store.insert_many(rows)
        stored, _ = await store.query(limit=500)
        assert [s.log for s in reversed(stored)] == rows
        assert await stored_ids(db) == [row.request_id for row in rows]
    with_db(db_target, body)


def test_close_flushes_is_idempotent_and_later_rows_are_dropped(db_target: str) -> None:
    async def body(db: Database) -> None:
        writer = LogWriter(RequestLogStore(db), flush_interval=30)
        await writer.start()
        for n in range(5):
            writer.submit(entry(n))
        await asyncio.sleep(0.02)
        assert writer.written == 0  # not yet: the tick is far away
        await asyncio.gather(writer.close(), writer.close())
        await writer.close()
        assert (writer.written, writer.queue_depth, writer.dropped) == (5, 0, 0)
        writer.submit(entry(99))  # after close: counted, never raised
        assert (writer.written, writer.dropped) == (5, 1)
        assert await stored_ids(db) == [f"req-{n}" for n in range(5)]

        never_started = LogWriter(RequestLogStore(db))
        never_started.submit(entry(6))
        await never_started.close()
        assert never_started.written == 1
    with_db(db_target, body)


def test_a_full_queue_drops_new_rows_and_counts_them(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async def body(db: Database) -> None:
        writer = LogWriter(RequestLogStore(db), max_queue=5, max_batch=3)
        for n in range(8):  # not started: nothing drains the queue
            writer.submit(entry(n))
        assert (writer.queue_depth, writer.dropped, writer.written) == (5, 3, 0)
        await writer.close()
        assert (writer.queue_depth, writer.dropped, writer.written) == (0, 3, 5)
        assert await stored_ids(db) == [f"req-{n}" for n in range(5)]  # the first ones kept

    with caplog.at_level(logging.WARNING, logger="kestrel.logwriter"):
        with_db(tmp_path / "k.db", body)
    # One line for the streak, not one per dropped row.
    assert len([r for r in caplog.records if "dropping request logs" in r.message]) == 1


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock, as another process could."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
    finally:
        conn.close()  # also ends the transaction


async def short_busy_timeout(db: Database) -> None:
    # The writer waits 5 s for a lock before failing; the test does not need to wait that long.
    await db.write(lambda c: c.execute("PRAGMA busy_timeout = 20"))


def test_a_locked_database_is_retried_without_losing_rows(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "k.db"

    async def body(db: Database) -> None:
        await short_busy_timeout(db)
        writer = LogWriter(RequestLogStore(db), flush_interval=0.02, max_batch=4, max_queue=10)
        await writer.start()
        with write_lock(path):
            for n in range(12):
                writer.submit(entry(n))
            await eventually(lambda: writer.flush_failures >= 3)
            # Kept, not written, and bounded: the two rows past max_queue are dropped.
            assert (writer.written, writer.queue_depth, writer.dropped) == (0, 10, 2)
        await eventually(lambda: writer.written == 10)
        assert (writer.queue_depth, writer.dropped) == (0, 2)
        await writer.close()
        assert await stored_ids(db) == [f"req-{n}" for n in range(10)]

    with caplog.at_level(logging.WARNING, logger="kestrel.logwriter"):
        with_db(path, body)
    messages = [r.getMessage() for r in caplog.records]
    # The failure streak is logged once when it starts and once when it ends, not every tick.
    assert len([m for m in messages if m.startswith("cannot write request logs")]) == 1
    assert "database is locked" in " ".join(messages)
    assert len([m for m in messages if m.startswith("request logs are written again")]) == 1


def test_a_full_disk_is_retried_until_there_is_room(tmp_path: Path) -> None:
    # chmod cannot make the file read-only under root, and SQLite's own query_only would also
    # lock the test out of undoing it. A page limit is a real refusal from SQLite (SQLITE_FULL,
    # as on a full disk) that the test can lift again through the same writer connection.
    async def body(db: Database) -> None:
        (pages,) = await db.read(lambda c: c.execute("PRAGMA page_count").fetchone())
        await db.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
        writer = LogWriter(RequestLogStore(db), flush_interval=0.02, retention_days=0)
        await writer.start()
        for n in range(3):  # rows too long for the pages that are left
            writer.submit(entry(n, user_agent="x" * 20_000))
        await eventually(lambda: writer.flush_failures >= 2)
        assert (writer.written, writer.queue_depth) == (0, 3)
        await db.write(lambda c: c.execute("PRAGMA max_page_count = 1000000"))
        await eventually(lambda: writer.written == 3)
        await writer.close()
        assert writer.dropped == 0
        assert await stored_ids(db) == ["req-0", "req-1", "req-2"]
    with_db(tmp_path / "k.db", body)


def test_close_on_a_refusing_database_drops_and_returns(tmp_path: Path) -> None:
    path = tmp_path / "k.db"

    async def body(db: Database) -> None:
        await short_busy_timeout(db)
        writer = LogWriter(RequestLogStore(db), flush_interval=30)
        await writer.start()
        for n in range(4):
            writer.submit(entry(n))
        with write_lock(path):
            await writer.close()  # one attempt, then the rows are given up, no exception
        assert (writer.written, writer.dropped, writer.queue_depth) == (0, 4, 0)

        # A database closed under the writer is no crash either.
        second = LogWriter(RequestLogStore(db), flush_interval=0.02)
        await second.start()
        await db.close()
        second.submit(entry(5))
        await eventually(lambda: second.flush_failures >= 1)
        await second.close()
        assert (second.written, second.dropped) == (0, 1)
    with_db(path, body)


def test_an_unwritable_row_is_dropped_alone(db_target: str) -> None:
    async def body(db: Database) -> None:
        writer = LogWriter(RequestLogStore(db), flush_interval=0.02)
        await writer.start()
        writer.submit(entry(0))
        writer.submit(entry(1, input_tokens=2**70))  # larger than SQLite's INTEGER
        writer.submit(entry(2))
        await eventually(lambda: writer.written + writer.dropped == 3)
        assert (writer.written, writer.dropped) == (2, 1)
        writer.submit(entry(3))  # and the writer carries on
        await writer.close()
        assert await stored_ids(db) == ["req-0", "req-2", "req-3"]
    with_db(db_target, body)


def test_old_rows_are_pruned_at_start_and_then_hourly(tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        store = RequestLogStore(db)
        day = SECONDS_PER_DAY
        await store.insert_many([
            RequestLog(ts=NOW - 31 * day, request_id="old", route="/v1/messages", status=200),
            RequestLog(ts=NOW - 29.99 * day, request_id="aging", route="/v1/messages",
                       status=200),
            RequestLog(ts=NOW - 1, request_id="fresh", route="/v1/messages", status=200)])
        now = [NOW]
        writer = LogWriter(store, flush_interval=0.01, retention_days=30, clock=lambda: now[0])
        await writer.start()
        await _until_ids(db, ["aging", "fresh"])
        now[0] += 1800  # half an hour later "aging" is past 30 days, but no prune is due yet
        await asyncio.sleep(0.05)
        assert await stored_ids(db) == ["aging", "fresh"]
        now[0] += 1801
        await _until_ids(db, ["fresh"])
        await writer.close()

        keep_all = LogWriter(store, flush_interval=0.01, retention_days=0,
                             clock=lambda: NOW + 1000 * day)
        await keep_all.start()
        await asyncio.sleep(0.05)
        await keep_all.close()
        assert await stored_ids(db) == ["fresh"]
    with_db(tmp_path / "k.db", body)


async def _until_ids(db: Database, wanted: list[str]) -> None:
    for _ in range(int(3 / POLL)):
        if await stored_ids(db) == wanted:
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"{await stored_ids(db)} != {wanted}")
