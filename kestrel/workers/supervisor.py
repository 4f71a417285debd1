"""The supervisor behind WORKERS: it binds, spawns, watches and passes signals on. It holds no
application state: no database connection once the workers start, no pool, no counters.

- Before any worker starts it creates and migrates the database and proves the encryption key
  opens it, so a broken start is reported once, here; `load_settings` has already made the
  first-run secrets, so every worker reads the same ones.
- It binds the listening sockets once and every worker inherits them. Not SO_REUSEPORT: each
  reuseport listener has its own accept queue, and closing one resets the connections waiting
  in it, which would drop requests whenever a worker is replaced. One shared socket keeps its
  queue as long as any process holds it, so a draining worker only stops taking from it.
- A worker is this same program started again (`sys.orig_argv`: `python -m kestrel`, the
  `kestrel` script and `python kestrel.pyz` alike), so code replaced on disk takes effect with
  the next worker. It says when it serves (`handoff.py`); `started` is logged once all do.
- A worker that dies is started again after a backoff, each time logged with its exit status.
- SIGTERM or SIGINT: every worker gets SIGTERM and drains; the supervisor exits 0 once they are
  gone, and only then closes the listening sockets.
- SIGHUP replaces the workers one by one: a new worker starts, and only once it serves does the
  old one get SIGTERM and drain. The socket never stops listening, so no client sees a refusal.
  A new worker that fails to start stops the replacement; the running workers keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from kestrel.announce import announce_started
from kestrel.config import Settings
from kestrel.crypto import Sealer
from kestrel.http.server import ACCEPT_BACKLOG, CANCEL_WAIT_SECONDS
from kestrel.store.database import Database
from kestrel.store.meta import check_encryption_key
from kestrel.workers.handoff import ENV_VAR, READY, Handoff
from kestrel.workers.siblings import remove_sockets

log = logging.getLogger("kestrel.supervisor")

# A worker that died is started again after 1 s, then 2, 4, ... up to 30 s while it keeps
# dying: a release that cannot start (a broken file, a full disk) costs a few log lines a
# minute instead of a busy loop, and a rare crash is still replaced within a second.
RESTART_DELAY_FIRST = 1.0
RESTART_DELAY_MAX = 30.0
# A worker that served this long before it died was healthy: the next restart is quick again.
HEALTHY_AFTER_SECONDS = 60.0
# Longest wait for a new worker to serve. Opening the database may wait behind its siblings'
# writes (the store's busy timeout is 5 s a statement); a start that takes longer is stuck,
# and the worker is killed.
READY_TIMEOUT_SECONDS = 60.0
# What a worker's shutdown may take beyond SHUTDOWN_GRACE_SECONDS: cancelling the streams that
# outlived it (CANCEL_WAIT_SECONDS), writing the last request logs, closing the database. A
# worker still running after that is killed.
STOP_MARGIN_SECONDS = CANCEL_WAIT_SECONDS + 10.0


def supervise(settings: Settings) -> int:
    """Run the supervisor until SIGTERM or SIGINT; the process's exit status."""
    return asyncio.run(Supervisor(settings).run())


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    ready: asyncio.Future[bool]  # True once it serves, False if it ended before
    started: float  # loop time
    watcher: asyncio.Task[None] | None = field(default=None)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        assert settings.workers is not None
        self._settings = settings
        self._count = settings.workers
        self._argv = [sys.executable, *sys.orig_argv[1:]]
        self._sockets: list[socket.socket] = []
        self._runtime_dir = ""
        self._parent_fd = -1  # the read end every worker inherits; we hold the write end
        self._current: dict[int, _Worker] = {}  # the worker serving (or starting) each index
        self._live: set[_Worker] = set()  # every worker process not yet reaped
        self._delays: dict[int, float] = {}  # the last restart delay of each index
        self._tasks: set[asyncio.Task[None]] = set()  # restarts and reloads under way
        self._reload: asyncio.Task[None] | None = None
        self._reload_again = False
        self._serving = False  # every worker of the first start is ready
        self._stopping = False

    async def run(self) -> int:
        await _prepare_database(self._settings)  # a StoreError ends the start, as without us
        host, port = self._settings.host, self._settings.port
        try:
            self._sockets = _bind(host, port)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", host, port, exc.strerror)
            return 1
        self._runtime_dir = tempfile.mkdtemp(prefix="kestrel-workers-")  # mode 0700
        self._parent_fd, parent_write = os.pipe()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        try:
            starting = loop.create_task(self._start_all())
            stopped = loop.create_task(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                return 0
            stopped.cancel()
            if not starting.result():
                log.error("a worker did not start; stopping the others")
                return 1
            self._serving = True
            announce_started(self._settings, self._sockets[0].getsockname()[1],
                             workers=self._count)
            await stop.wait()
            log.info("stopping: the workers drain", extra={"event": {"name": "stopping"}})
            return 0
        finally:
            await self._stop_all()
            for sock in self._sockets:  # only now: a draining worker still answered on it
                sock.close()
            os.close(parent_write)
            os.close(self._parent_fd)
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            log.info("stopped", extra={"event": {"name": "stopped"}})

    # -- starting workers ----------------------------------------------------------------------

    async def _start_all(self) -> bool:
        try:
            for index in range(1, self._count + 1):
                self._current[index] = await self._spawn(index)
        except OSError as exc:
            log.error("cannot start a worker: %s", exc)
            return False
        for ready in asyncio.as_completed([self._await_ready(w)
                                           for w in self._current.values()]):
            if not await ready:
                return False
        return True

    async def _spawn(self, index: int) -> _Worker:
        loop = asyncio.get_running_loop()
        ready_read, ready_write = os.pipe()
        handoff = Handoff(index=index, configured=self._count,
                          listen_fds=tuple(s.fileno() for s in self._sockets),
                          ready_fd=ready_write, parent_fd=self._parent_fd,
                          runtime_dir=self._runtime_dir)
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv, env={**os.environ, ENV_VAR: handoff.encode()},
                pass_fds=(*handoff.listen_fds, ready_write, self._parent_fd))
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)  # the worker holds it now: EOF means it ended
        worker = _Worker(index, process, _ready_future(ready_read), loop.time())
        self._live.add(worker)
        worker.watcher = loop.create_task(self._watch(worker))
        return worker

    async def _await_ready(self, worker: _Worker) -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                return await asyncio.shield(worker.ready)
        except TimeoutError:
            log.error("worker %d (pid %d) did not serve within %.0f s; killing it",
                      worker.index, worker.process.pid, READY_TIMEOUT_SECONDS)
            _signal(worker, signal.SIGKILL)
            return False

    # -- watching ------------------------------------------------------------------------------

    async def _watch(self, worker: _Worker) -> None:
        code = await worker.process.wait()
        self._live.discard(worker)
        remove_sockets(self._runtime_dir, worker.process.pid)
        event: dict[str, Any] = {"name": "worker_exited", "index": worker.index,
                                 "pid": worker.process.pid, "exit_code": code,
                                 "restart_in": None}
        expected = self._stopping or self._current.get(worker.index) is not worker
        if expected or not self._serving:
            level = logging.INFO if expected and code == 0 else logging.WARNING
            log.log(level, "worker %d (pid %d) %s", worker.index, worker.process.pid,
                    _describe(code), extra={"event": event})
            return
        delay = self._next_delay(worker)
        event["restart_in"] = delay
        log.error("worker %d (pid %d) %s; starting another in %g s", worker.index,
                  worker.process.pid, _describe(code), delay, extra={"event": event})
        self._later(self._restart(worker, delay))

    def _next_delay(self, dead: _Worker) -> float:
        previous = self._delays.get(dead.index)
        lived = asyncio.get_running_loop().time() - dead.started
        if previous is None or lived >= HEALTHY_AFTER_SECONDS:
            delay = RESTART_DELAY_FIRST
        else:
            delay = min(previous * 2, RESTART_DELAY_MAX)
        self._delays[dead.index] = delay
        return delay

    async def _restart(self, dead: _Worker, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping or self._current.get(dead.index) is not dead:
            return  # replaced meanwhile (a reload)
        try:
            worker = await self._spawn(dead.index)
        except OSError as exc:
            log.error("cannot start worker %d: %s; trying again in %g s", dead.index, exc,
                      RESTART_DELAY_MAX)
            self._later(self._restart(dead, RESTART_DELAY_MAX))
            return
        self._current[dead.index] = worker
        await self._await_ready(worker)  # if it dies instead, its watcher starts another

    # -- reload (SIGHUP) -----------------------------------------------------------------------

    def _request_reload(self) -> None:
        if self._stopping or not self._serving:
            log.warning("SIGHUP ignored: Kestrel is starting or stopping")
        elif self._reload is not None and not self._reload.done():
            # New code may have landed after the replacement under way started its workers.
            self._reload_again = True
        else:
            self._reload = self._later(self._reload_all())

    async def _reload_all(self) -> None:
        again = True
        while again and not self._stopping:
            self._reload_again = False
            log.info("SIGHUP: replacing the workers one by one",
                     extra={"event": {"name": "reload_started"}})
            if await self._replace_all():
                log.info("every worker has been replaced",
                         extra={"event": {"name": "reload_finished", "pids": sorted(
                             w.process.pid for w in self._current.values())}})
            again = self._reload_again

    async def _replace_all(self) -> bool:
        for index in range(1, self._count + 1):
            try:
                new = await self._spawn(index)
            except OSError as exc:
                log.error("reload stopped: cannot start a worker: %s", exc,
                          extra={"event": {"name": "reload_failed"}})
                return False
            if not await self._await_ready(new):
                code = await new.process.wait()
                log.error("reload stopped: the new worker %d (pid %d) %s before it served; the "
                          "running workers keep serving", index, new.process.pid,
                          _describe(code), extra={"event": {"name": "reload_failed"}})
                return False
            old = self._current[index]
            self._current[index] = new
            self._delays.pop(index, None)
            _signal(old, signal.SIGTERM)  # it drains; its watcher logs the exit
            log.info("worker %d: pid %d replaced by pid %d", index, old.process.pid,
                     new.process.pid, extra={"event": {"name": "worker_replaced", "index": index,
                                                       "old_pid": old.process.pid,
                                                       "new_pid": new.process.pid}})
        return True

    # -- stopping ------------------------------------------------------------------------------

    async def _stop_all(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        watchers = {w.watcher for w in self._live if w.watcher is not None}
        for worker in list(self._live):
            _signal(worker, signal.SIGTERM)
        if not watchers:
            return
        _, late = await asyncio.wait(
            watchers, timeout=self._settings.shutdown_grace + STOP_MARGIN_SECONDS)
        if late:
            for worker in list(self._live):
                log.error("worker %d (pid %d) did not stop in time; killing it", worker.index,
                          worker.process.pid)
                _signal(worker, signal.SIGKILL)
            await asyncio.wait(late)

    def _later(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _prepare_database(settings: Settings) -> None:
    """Create and migrate the database before any worker opens it, and prove the encryption key
    opens it: a problem is reported once, by the supervisor, as a single process reports it."""
    db = await Database.open(settings.database)
    try:
        await check_encryption_key(db, Sealer(settings.encryption_key))
    finally:
        await db.close()


def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address `host` names, as asyncio's `start_server` binds
    them, but on one port even for PORT=0 (asyncio would pick one per address)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(ACCEPT_BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _ready_future(fd: int) -> asyncio.Future[bool]:
    """Resolves to True when the worker writes READY on the pipe, False on EOF (it ended)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bool] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, len(READY))
        except OSError:
            data = b""
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result(data == READY)

    loop.add_reader(fd, readable)
    return future


def _signal(worker: _Worker, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just ended on its own
        worker.process.send_signal(signum)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
