"""WORKERS=2: one port, two serving processes, and one scrape that answers for both."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from support.burst import fire, new_batch, tally
from support.stack import Stack
from support.workers import (
    Background,
    events,
    per_worker,
    scrape,
    served_by,
    total,
    worker_pids,
    worker_stack,
)


def wait_logged(stack: Stack, count: int, timeout: float = 5.0) -> dict[str, int]:
    """The access log lines are written just after the answer: wait for all of them."""
    deadline = time.monotonic() + timeout
    while len(found := served_by(stack.kestrel)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_both_workers_serve_and_every_scrape_counts_each_request_once(tmp_path: Path) -> None:
    with worker_stack(tmp_path) as stack:
        (started,) = events(stack.kestrel, "started")
        assert started["workers"] == 2
        pids = worker_pids(stack.kestrel)
        assert sorted(pids) == [1, 2] and stack.kestrel.proc is not None
        assert stack.kestrel.proc.pid not in pids.values()
        # One connection per request: the kernel hands each to whichever worker accepts first.
        batch = new_batch("serve", 60)
        asyncio.run(fire(stack.url, stack.key, batch, concurrency=20))
        assert tally(batch, stack.up).served == 60
        assert len(wait_logged(stack, 60)) == 60
        by_worker = per_worker(stack.kestrel)
        assert set(by_worker) == {1, 2}, by_worker  # both served
        for _ in range(6):  # whichever worker a scrape reaches counts all 60, once
            got = scrape(stack)
            assert total(got, "kestrel_requests_total") == 60
            assert got[("kestrel_workers", (("state", "up"),))] == 2
            assert got[("kestrel_workers", (("state", "configured"),))] == 2
            with httpx.Client(base_url=stack.url) as client:
                assert client.get("/health").json()["workers"] == {"up": 2, "configured": 2}
        every_line_names_its_worker = [r for r in stack.kestrel.records()
                                       if r.get("logger") == "kestrel.access"]
        assert all(r["worker"] in (1, 2) for r in every_line_names_its_worker)


def test_two_writers_keep_every_request_log_row(
        tmp_path: Path, shared_database: dict[str, str]) -> None:
    """Issue 13, point 7: both workers write request logs into one database under load (a
    SQLite file, or PostgreSQL); no row is lost and no "database is locked" reaches a client or
    the log."""
    with worker_stack(tmp_path, env=shared_database) as stack:
        batch = new_batch("rows", 300)
        with Background(stack.url, stack.key, batch, connections=60):
            pass
        assert tally(batch, stack.up).served == 300
        assert set(per_worker(stack.kestrel)) == {1, 2}
        deadline = time.monotonic() + 10
        while (total(got := scrape(stack), "kestrel_log_rows_written_total") < 300
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert total(got, "kestrel_log_rows_written_total") == 300
        assert total(got, "kestrel_log_rows_dropped_total") == 0
        with stack.admin() as admin:  # what the database holds, whichever engine it is
            rows = admin.get("/admin/logs", params={"limit": 500}).json()["data"]
        assert len(rows) == 300
        assert not [line for line in stack.kestrel.lines if "locked" in line.lower()]
