"""Slow-loris against a real Kestrel process: hundreds of connections dribbling a request head
must neither stop a normal client from being served within a second nor grow memory without
bound, and each must be cut at the server's header timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass

import pytest

from kestrel.http import ServerLimits
from kestrel.http.limits import PIPELINE_BUFFER_FACTOR

from support.figures import report
from support.hostile import assert_alive, open_files_limit, rss_kib
from support.rawhttp import Client, parse_responses, request, run
from support.stack import Stack, message_body, running_stack

DRIBBLERS = 500
SILENT = 20
# serve.py passes only the body limit and the shutdown grace; every deadline is the default.
LIMITS = ServerLimits()
# One byte per connection about every second, for long enough to measure the normal client
# well inside the header timeout; then silence, so the server has read every byte when its
# timer fires and its 408 is not lost to a reset over unread input.
DRIBBLE_EVERY = 1.0
DRIBBLE_SECONDS = LIMITS.header_timeout - 3.0
# The requirement: a normal client is served within this while the attack goes on.
SERVED_WITHIN = 1.0
NORMAL_EVERY = 0.2
# The server must cut a dribbling head at header_timeout; allow scheduling slack on a busy box.
CUT_SLACK = 2.0
# Memory bound. The most a connection can make Kestrel hold by its own limits is its unread
# input (PIPELINE_BUFFER_FACTOR head limits) plus an unfinished head (max_header_bytes),
# 192 KiB; these connections send a few dozen bytes each, so real growth is far below it.
# Over it, memory is not bounded per connection (a buffer per connection that grows, a leak).
RSS_GROWTH_BOUND_KIB = ((DRIBBLERS + SILENT) * (PIPELINE_BUFFER_FACTOR + 1)
                        * LIMITS.max_header_bytes // 1024)
# Sockets this test holds at once, plus the fake upstream's, the database's and slack.
FILES_NEEDED = DRIBBLERS + SILENT + 256


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack started after the open-files limit was raised, so Kestrel inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= FILES_NEEDED, (
        f"the hard limit on open files ({hard}) is below the {FILES_NEEDED} this test needs")
    if soft != resource.RLIM_INFINITY and soft < FILES_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))
    try:
        with running_stack(tmp_path_factory.mktemp("slowloris"), accounts=("a",)) as s:
            yield s
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class Loris:
    statuses: list[int]
    closed_after: float | None  # seconds from connecting to the server's close; None: never


async def loris(port: int, index: int, dribble: bool) -> Loris:
    """One slow client: a head started and never finished (or nothing at all)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connected = time.monotonic()

    async def send_slowly() -> None:
        writer.write(f"GET /health HTTP/1.1\r\nHost: kestrel\r\nX-Slow-{index}: ".encode())
        await asyncio.sleep(random.uniform(0, DRIBBLE_EVERY))
        while time.monotonic() - connected < DRIBBLE_SECONDS:
            writer.write(b"a")
            await asyncio.sleep(DRIBBLE_EVERY)

    sender = asyncio.create_task(send_slowly()) if dribble else None
    closed_after: float | None = None
    data = b""
    try:
        async with asyncio.timeout(LIMITS.header_timeout + CUT_SLACK):
            data = await reader.read()  # until the server closes
        closed_after = time.monotonic() - connected
    except ConnectionError:
        closed_after = time.monotonic() - connected
    except TimeoutError:
        pass
    finally:
        if sender is not None:
            sender.cancel()
            with suppress(asyncio.CancelledError, ConnectionError):
                await sender
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()
    return Loris([r.status for r in await parse_responses(data)], closed_after)


async def normal_client(stack: Stack, until: float) -> list[float]:
    """Ordinary requests on new connections, one after another: seconds each took."""
    assert stack.kestrel.port is not None
    payload = json.dumps(message_body("during the slow-loris")).encode()
    proxied = request("POST", "/v1/messages", [("x-api-key", stack.key),
                                               ("anthropic-version", "2023-06-01"),
                                               ("content-type", "application/json")], payload)
    latencies: list[float] = []
    while time.monotonic() < until:
        for data in (request("GET", "/health"), proxied):
            started = time.monotonic()
            async with await Client.connect(stack.kestrel.port) as client:
                await client.send(data)
                response = await client.response(within=10)
            latencies.append(time.monotonic() - started)
            assert response.status == 200, response.body
        await asyncio.sleep(NORMAL_EVERY)
    return latencies


async def sample_rss(pid: int, samples: list[int], until: float) -> None:
    while time.monotonic() < until:
        samples.append(rss_kib(pid)[0])
        await asyncio.sleep(0.25)


def test_slowloris_does_not_starve_a_normal_client(stack: Stack) -> None:
    kestrel = stack.kestrel
    assert kestrel.proc is not None and kestrel.port is not None
    port, pid = kestrel.port, kestrel.proc.pid
    kestrel_files = open_files_limit(pid)
    assert kestrel_files >= DRIBBLERS + SILENT + 64, (
        f"kestrel may open only {kestrel_files} files: it would refuse the attack's sockets")

    async def main() -> tuple[list[Loris], list[float], int, list[int]]:
        await normal_client(stack, time.monotonic())  # warm: first request, connections
        before = rss_kib(pid)[0]
        start = time.monotonic()
        attackers = [asyncio.create_task(loris(port, i, dribble=i < DRIBBLERS))
                     for i in range(DRIBBLERS + SILENT)]
        samples: list[int] = []
        window_end = start + DRIBBLE_SECONDS
        sampler = asyncio.create_task(sample_rss(pid, samples, window_end))
        await asyncio.sleep(1.0)  # every attacker connected and dribbling
        latencies = await normal_client(stack, window_end)
        await sampler
        return await asyncio.gather(*attackers), latencies, before, samples

    outcomes, latencies, before, samples = run(main(), deadline=60)
    assert_alive(kestrel)
    hwm = rss_kib(pid)[1]
    dribbled, silent = outcomes[:DRIBBLERS], outcomes[DRIBBLERS:]
    cut = [o.closed_after for o in outcomes if o.closed_after is not None]
    report("Slow-loris", ("dribbling", "silent", "normal requests", "slowest normal (s)",
                          "RSS before (MiB)", "RSS peak (MiB)", "VmHWM (MiB)",
                          "growth bound (MiB)", "kestrel open-files limit",
                          "dribblers cut with 408", "silent closed", "cut after (s, max)"),
           (DRIBBLERS, SILENT, len(latencies), f"{max(latencies):.3f}", f"{before / 1024:.1f}",
            f"{max(samples) / 1024:.1f}", f"{hwm / 1024:.1f}",
            f"{RSS_GROWTH_BOUND_KIB / 1024:.0f}", kestrel_files,
            sum(o.statuses == [408] for o in dribbled),
            sum(o.statuses == [] and o.closed_after is not None for o in silent),
            f"{max(cut):.2f}" if cut else "-"))
    slow = [f"{t:.3f}" for t in latencies if t > SERVED_WITHIN]
    assert not slow, f"normal requests slower than {SERVED_WITHIN} s: {slow}"
    # The attack really held its connections while the normal client was measured.
    early = [o.closed_after for o in outcomes
             if o.closed_after is not None and o.closed_after < DRIBBLE_SECONDS]
    assert not early, f"{len(early)} attacking connections were gone before the measurement"
    assert max(samples) - before <= RSS_GROWTH_BOUND_KIB, (before, max(samples))
    # Cut at the header timeout: a 408 for a started head, a quiet close for a silent one.
    assert [o for o in dribbled if o.statuses != [408] or o.closed_after is None] == []
    assert [o for o in silent if o.statuses != [] or o.closed_after is None] == []
