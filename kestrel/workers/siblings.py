"""How a worker sees the workers beside it: their counters, for one whole `/metrics`, and how
many of them serve, for `/health`.

Each worker answers on a Unix socket in the supervisor's private runtime directory with a JSON
snapshot of its counters. The worker a scrape reaches asks all the others at once, briefly,
and adds their snapshots to its own. A stopping worker first folds its final counters into
`retired.json` there, and only then stops answering, so the totals never go down while
workers are replaced (Prometheus would take a drop for a counter reset and count the rest
again). A worker killed outright loses its counts, as a single process would.

Without a supervisor (WORKERS unset) the process is alone: 1 up of 1, its own counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kestrel.proxy.metrics import Snapshot, Workers, from_json, merge, to_json
from kestrel.workers.handoff import Handoff

log = logging.getLogger("kestrel.workers")

# How long a scrape waits for a sibling. Well inside Prometheus's default scrape timeout
# (10 s); a worker whose event loop stalls longer than this is not one to wait for, and it
# shows as not up.
SIBLING_TIMEOUT_SECONDS = 2.0
SOCKET_SUFFIX = ".sock"
RETIRED = "retired.json"
RETIRED_LOCK = "retired.lock"


def remove_sockets(runtime_dir: str, pid: int) -> None:
    """Remove the socket of the worker with this pid, which has ended (the supervisor calls
    this: a killed worker could not remove its own)."""
    for path in Path(runtime_dir).glob(f"{pid}-*{SOCKET_SUFFIX}"):
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Reply:
    instance: str
    serving: bool
    snapshot: Snapshot


class Siblings:
    """This process's view of the workers serving beside it."""

    def __init__(self, handoff: Handoff | None) -> None:
        self._dir = Path(handoff.runtime_dir) if handoff is not None else None
        self.configured = handoff.configured if handoff is not None else 1
        # The pid and a random part: pids come back, and the retired file must never take a
        # new worker for one whose counts it already holds.
        self._instance = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._own: Callable[[], Snapshot] | None = None
        self._server: asyncio.Server | None = None
        self._draining = False

    def provide(self, own: Callable[[], Snapshot]) -> None:
        """Where this process's own snapshot comes from (the metrics endpoint)."""
        self._own = own

    def _snapshot(self) -> Snapshot:
        if self._own is None:
            raise RuntimeError("Siblings.provide() was not called")
        return self._own()

    @property
    def _socket_path(self) -> Path | None:
        return None if self._dir is None else self._dir / f"{self._instance}{SOCKET_SUFFIX}"

    async def start(self) -> None:
        """Start answering the siblings (a worker does, once it serves)."""
        if (path := self._socket_path) is not None:
            self._server = await asyncio.start_unix_server(self._answer, path=str(path))

    def drain(self) -> None:
        """This worker no longer takes new connections: it no longer counts as up."""
        self._draining = True

    async def gather(self) -> tuple[Snapshot, Workers]:
        """Every worker's counts added up, and how many workers serve."""
        own = self._snapshot()
        if self._dir is None:
            return own, self._workers([])
        replies = await self._ask_siblings(self._dir)
        # Read after the replies: a sibling that retired meanwhile is in the file by now, and
        # its reply is the older figure of the two.
        retired_ids, retired = self._read_retired()
        live = [r for r in replies if r.instance not in retired_ids]
        parts = [own, *(r.snapshot for r in live), *([retired] if retired else [])]
        return merge(parts), self._workers(live)

    async def count(self) -> Workers:
        """How many workers serve, for `/health`: no counts of this process are copied, and
        the retired workers' file is not read."""
        if self._dir is None:
            return self._workers([])
        return self._workers(await self._ask_siblings(self._dir))

    async def _ask_siblings(self, runtime_dir: Path) -> list[_Reply]:
        paths = self._sibling_sockets(runtime_dir)
        return [r for r in await asyncio.gather(*map(_ask, paths)) if r is not None]

    def _sibling_sockets(self, runtime_dir: Path) -> list[Path]:
        # A listing of the supervisor's private temporary directory: a handful of entries.
        return [p for p in runtime_dir.glob(f"*{SOCKET_SUFFIX}") if p != self._socket_path]

    def _workers(self, replies: list[_Reply]) -> Workers:
        mine = 0 if self._draining else 1
        return Workers(mine + sum(r.serving for r in replies), self.configured)

    async def retire(self) -> None:
        """Fold this worker's final counts into the retired file, then stop answering. Call
        once the application is closed, so the counts are final."""
        if self._server is None or self._dir is None:
            return
        await asyncio.to_thread(self._fold, self._snapshot().retired())
        self._server.close()
        await self._server.wait_closed()
        if (path := self._socket_path) is not None:
            path.unlink(missing_ok=True)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        report = {"instance": self._instance, "serving": not self._draining,
                  "snapshot": to_json(self._snapshot())}
        try:
            writer.write(json.dumps(report, separators=(",", ":")).encode())
            async with asyncio.timeout(SIBLING_TIMEOUT_SECONDS):
                await writer.drain()
        except (OSError, TimeoutError):
            pass  # the asking sibling gave up; it counts us as not answering
        finally:
            writer.close()

    def _fold(self, final: Snapshot) -> None:
        assert self._dir is not None
        with open(self._dir / RETIRED_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two workers retiring at once: one after the other
            ids, earlier = self._read_retired()
            total = final if earlier is None else merge([earlier, final])
            data = {"instances": sorted({*ids, self._instance}), "snapshot": to_json(total)}
            path = self._dir / RETIRED
            tmp = path.with_name(f".{RETIRED}.{self._instance}")
            tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)  # readers take no lock: they see the old file or the new

    def _read_retired(self) -> tuple[set[str], Snapshot | None]:
        assert self._dir is not None
        try:
            data: Any = json.loads((self._dir / RETIRED).read_text(encoding="utf-8"))
            return {str(i) for i in data["instances"]}, from_json(data["snapshot"])
        except FileNotFoundError:
            return set(), None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the retired workers' counts cannot be read (%s); they are left out",
                        exc)
            return set(), None


async def _ask(path: Path) -> _Reply | None:
    """A sibling's report, or None if it is gone or does not answer in time."""
    try:
        async with asyncio.timeout(SIBLING_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                data = await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        report = json.loads(data)
        return _Reply(str(report["instance"]), report["serving"] is True,
                      from_json(report["snapshot"]))
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # a worker that has just stopped, or was killed and not yet cleaned up
    except (OSError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        log.warning("worker socket %s did not answer with its counts (%s)", path.name,
                    type(exc).__name__)
        return None
