"""Attacking a real Kestrel process: one hostile case, then proof the server is still whole.

After every case the process must be alive and answer a valid request on a *new* connection:
a crash, a wedged event loop or a leaked lock shows up there, not on the attacking socket.
"""

from __future__ import annotations

import http.client
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.process import KestrelProcess, _parse
from support.rawhttp import LOOPBACK, Client, Exchange, exchange, request

# A valid request on a fresh connection right after a case: well above a loopback round trip
# on a busy CI machine, well below anything a client would call a hang.
SERVES_WITHIN = 3.0
# Once the client half-closes, the server has nothing left to wait for. Kestrel lingers up to
# 1 s after an error to let a client finish sending, so allow that and some scheduling slack.
RELEASE_WITHIN = 3.0


async def assert_serves(port: int, within: float = SERVES_WITHIN) -> None:
    """A new connection gets `GET /health` (which reads the database) answered 200 in time."""
    async with await Client.connect(port) as client:
        await client.send(request("GET", "/health"))
        response = await client.response(within=within)
    assert response.status == 200, f"GET /health answered {response.status}: {response.body!r}"


def assert_alive(kestrel: KestrelProcess) -> None:
    """The process has not exited (its last log lines say why if it has)."""
    assert kestrel.proc is not None and kestrel.proc.poll() is None, (
        "kestrel exited:\n" + "\n".join(kestrel.lines[-30:]))


async def attack(kestrel: KestrelProcess, data: bytes, *, quiet: float) -> Exchange:
    """Send one hostile case on its own connection; then the server must still serve."""
    assert kestrel.port is not None
    result = await exchange(kestrel.port, data, quiet=quiet, close_within=RELEASE_WITHIN)
    assert_alive(kestrel)
    await assert_serves(kestrel.port)
    return result


def error_records(kestrel: KestrelProcess) -> list[dict[str, Any]]:
    """Log records at error level: a handler or connection that failed on the input.

    Call `sync_logs` first: the process writes its log through a pipe that a thread reads.
    """
    levels = ("error", "critical")
    # A cheap filter first: the log grows by a line per request, and this runs after each test.
    lines = [line for line in list(kestrel.lines) if any(level in line for level in levels)]
    records = (_parse(line) for line in lines)
    return [r for r in records if r is not None and r.get("level") in levels]


def sync_logs(kestrel: KestrelProcess, within: float = 5.0) -> None:
    """Wait until every line Kestrel logged so far has been read: a request to a path of its
    own is answered after them, so once its access record is in, so are they."""
    marker = f"/log-sync-{uuid.uuid4().hex}"
    assert kestrel.port is not None
    # http.client, not httpx: this runs twice per test, and an httpx client costs far more.
    connection = http.client.HTTPConnection(LOOPBACK, kestrel.port, timeout=within)
    try:
        connection.request("GET", marker)
        connection.getresponse().read()
    finally:
        connection.close()
    deadline = time.monotonic() + within
    while not any(marker in line for line in reversed(kestrel.lines)):
        assert time.monotonic() < deadline, "the access log never showed the sync request"
        time.sleep(0.01)


@contextmanager
def no_errors_logged(kestrel: KestrelProcess) -> Iterator[None]:
    """The block makes Kestrel log no error: no 500 caught by the app, no failed connection
    (which the client may never notice)."""
    sync_logs(kestrel)
    before = len(error_records(kestrel))
    yield
    sync_logs(kestrel)
    new = error_records(kestrel)[before:]
    assert not new, "\n".join(f"{r.get('msg')}: {str(r.get('exc', ''))[-400:]}" for r in new)


def access_paths(kestrel: KestrelProcess) -> list[str]:
    """The path of every request Kestrel answered, from its access log."""
    return [str(r["http"]["path"]) for r in kestrel.records()
            if isinstance(r.get("http"), dict) and "path" in r["http"]]


@dataclass
class Tally:
    """Outcomes of many fuzz cases, for the figures table."""

    cases: int = 0
    closed_by_server: int = 0
    released_after_eof: int = 0
    hung: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def add(self, result: Exchange) -> None:
        self.cases += 1
        self.closed_by_server += result.closed_by_server
        self.released_after_eof += not result.closed_by_server and result.closed_after_eof
        self.hung += not result.released
        self.statuses.update(result.statuses)

    def server_errors(self) -> int:
        return self.statuses[500]

    def common_statuses(self, top: int = 6) -> str:
        return " ".join(f"{status}x{n}" for status, n in self.statuses.most_common(top)) or "-"


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: resident memory now, and its high-water mark."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def open_files_limit(pid: int) -> int:
    """The soft limit on open files of a running process (it inherited ours at start)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit for pid {pid}")

