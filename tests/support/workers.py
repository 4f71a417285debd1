"""Kestrel under WORKERS, seen from outside: its workers as its log tells them, and client load
from keep-alive clients whose every request is recorded for `support.burst.tally` to judge."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fake_upstream import ANY, success
from support.burst import DEADLINE_SECONDS, Sent
from support.process import KestrelProcess
from support.stack import Stack, running_stack

EVENT_WAIT_SECONDS = 15.0
# Issue 13: a change made through one process is in force in every other within 1 s. The
# accounts a test adds through one worker must be known to all before the load starts.
SPREAD_SECONDS = 1.0
# Streams of the fake upstream paced like a short real answer (about half a second), so that
# a load keeps every worker busy at once and a signal finds streams under way.
STREAM_PACE = 0.03


@contextmanager
def worker_stack(workdir: Path, workers: int = 2, accounts: tuple[str, ...] = ("a", "b"),
                 env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Fake Anthropic with paced streams, Kestrel with `workers` workers, its accounts."""
    with running_stack(workdir, accounts=accounts,
                       env={**(env or {}), "WORKERS": str(workers)}) as stack:
        stack.up.set_default(ANY, success(event_interval=STREAM_PACE))
        time.sleep(SPREAD_SECONDS)
        yield stack


def events(kestrel: KestrelProcess, name: str) -> list[dict[str, Any]]:
    """The `event` fields of the log records with this event name, oldest first."""
    return [r["event"] for r in kestrel.records()
            if isinstance(r.get("event"), dict) and r["event"].get("name") == name]


def wait_for(kestrel: KestrelProcess, name: str, count: int = 1,
             timeout: float = EVENT_WAIT_SECONDS) -> list[dict[str, Any]]:
    """The events called `name`, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while len(found := events(kestrel, name)) < count:
        assert time.monotonic() < deadline, f"no {count} {name!r} events:\n" + "\n".join(
            kestrel.lines[-30:])
        time.sleep(0.05)
    return found


def worker_pids(kestrel: KestrelProcess) -> dict[int, int]:
    """Worker index → pid of the latest worker started under it."""
    return {e["index"]: e["pid"] for e in events(kestrel, "worker_started")}


def served_by(kestrel: KestrelProcess, path: str = "/v1/messages") -> dict[str, int]:
    """Request id → index of the worker whose access log has it."""
    return {r["http"]["request_id"]: r["worker"] for r in kestrel.records()
            if r.get("logger") == "kestrel.access" and r["http"]["path"] == path}


def per_worker(kestrel: KestrelProcess, path: str = "/v1/messages") -> Counter[int]:
    return Counter(served_by(kestrel, path).values())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not serving anything.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the two looks
        return False


def client_connections(pid: int, port: int) -> int:
    """Established connections the process holds on its listening port (from /proc): which
    worker clients are talking to right now."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                local, state, inode = (line.split()[i] for i in (1, 3, 9))
                established = state == "01"
                count += int(local.rsplit(":", 1)[1], 16) == port and established and (
                    inode in inodes)
    return count


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One `/metrics` on a new connection, so successive scrapes reach either worker."""
    with httpx.Client(base_url=stack.url, headers={"X-Admin-Key": stack.admin_key},
                      timeout=10) as client:
        text = client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def request_id(sent: Sent) -> str:
    return f"load-{sent.index}"


async def keepalive_load(url: str, key: str, batch: Sequence[Sent], *, connections: int,
                         deadline: float = DEADLINE_SECONDS) -> None:
    """Send `batch` over a pool of `connections` kept-alive connections, as an SDK would,
    filling in each `Sent` (its `x-request-id` is `request_id(sent)`). At most `connections`
    requests are under way at once, so `started` is when a request was sent, not queued."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    gate = asyncio.Semaphore(connections)
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01",
               "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=deadline) as client:

        async def one(sent: Sent) -> None:
            await gate.acquire()
            sent.started = time.time()
            received = bytearray()
            try:
                async with asyncio.timeout(deadline), client.stream(
                        "POST", "/v1/messages", content=sent.body,
                        headers={"x-request-id": request_id(sent)}) as response:
                    sent.status = response.status_code
                    sent.headers = {k.lower(): v for k, v in response.headers.items()}
                    async for chunk in response.aiter_raw():
                        received += chunk
            except TimeoutError:
                sent.hung = True
            except httpx.HTTPError as exc:
                sent.error = f"{type(exc).__name__}: {exc}"
            finally:
                gate.release()
            sent.received = bytes(received)
            sent.ended = time.time()

        await asyncio.gather(*(one(sent) for sent in batch))


class Background:
    """`keepalive_load` on a thread of its own, while the test signals processes."""

    def __init__(self, url: str, key: str, batch: Sequence[Sent], *, connections: int) -> None:
        self.batch = batch
        self._thread = threading.Thread(
            target=lambda: asyncio.run(keepalive_load(url, key, batch, connections=connections)),
            daemon=True)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def wait_started(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` requests have got their answer's head (streams are under way)."""
        deadline = time.monotonic() + timeout
        while sum(s.status is not None for s in self.batch) < count:
            assert time.monotonic() < deadline, "the load did not get going"
            time.sleep(0.01)

    def join(self) -> None:
        self._thread.join(DEADLINE_SECONDS + 10)
        assert not self._thread.is_alive(), "the load did not end"

    def __exit__(self, *exc: object) -> None:
        self.join()
