"""Running a serving process: start, announce, wait for a signal, shut down gracefully.

The process is either Kestrel alone (it binds the port itself) or, with WORKERS, one worker of
a supervisor (`kestrel.workers`): it then serves on the sockets it inherited, says when it is
ready, and drains when told to or when the supervisor is gone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable

from kestrel import __version__
from kestrel.announce import announce_started
from kestrel.app import App
from kestrel.config import Settings
from kestrel.http.server import Server, ServerLimits
from kestrel.logs import access_log
from kestrel.workers.handoff import Handoff
from kestrel.workers.siblings import Siblings

log = logging.getLogger("kestrel.serve")

# Allocations between two collections of the youngest generation (CPython's default is 700).
# A request allocates a few hundred objects that die with it; at 700 a collection ran every few
# requests and found them still alive, in flight, and carried them into older generations that
# are scanned again later. See `_settle_heap`.
YOUNG_COLLECTION_EVERY = 10_000
# How long another thread may keep the interpreter while the event loop waits for it (CPython's
# default: 5 ms). Every request in flight waits with the loop; the threads that write the logs
# and the database do not mind waiting, and their Python work comes in bursts of milliseconds
# (a batch of access lines formatted, request log rows converted, pg8000 talking to PostgreSQL).
# With a request log batch converted at once on the database's thread, 5 ms let it hold the
# loop over 2 ms 16 to 20 times in 4 s; 0.5 ms, once (bench/RESULTS.md, run 17).
SWITCH_INTERVAL_SECONDS = 0.0005


async def serve(settings: Settings, handoff: Handoff | None = None) -> int:
    siblings = Siblings(handoff)
    app = await App.open(settings, siblings)
    _settle_heap()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    server = Server(
        app.handle,
        limits=ServerLimits(max_body_bytes=settings.max_body_bytes,
                            shutdown_grace=settings.shutdown_grace),
        access_log=access_log(),
        server_header=f"kestrel/{__version__}",
    )
    stop = asyncio.Event()

    def stopping() -> None:
        siblings.drain()
        stop.set()

    # Signals are caught from before the first "listening" line: a supervisor that reacts to
    # it by stopping us at once must still get a graceful exit.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    try:
        if handoff is None:
            try:
                await server.start(settings.host, settings.port)
            except OSError as exc:
                log.error("cannot listen on %s:%s: %s", settings.host, settings.port,
                          exc.strerror)
                return 1
            announce_started(settings, server.port)
        else:
            await _start_worker(server, siblings, handoff, stopping)
        await server.serve_until(stop)
        log.info("stopped", extra={"event": {"name": "worker_stopped" if handoff else "stopped",
                                             "pid": os.getpid()}})
        return 0
    finally:
        await app.close()
        await siblings.retire()  # after close: the request log's last rows are counted


def _settle_heap() -> None:
    """Keep the cyclic garbage collector off the request path as far as it can be.

    What start-up built (modules, the app, its caches) lives as long as the process: frozen, it
    is never scanned again. Requests then collect the young generation every
    YOUNG_COLLECTION_EVERY allocations instead of 700. Nothing else changes: reference counting
    still frees almost everything at once, and cycles are still collected, a little later.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)


async def _start_worker(server: Server, siblings: Siblings, handoff: Handoff,
                        stopping: Callable[[], None]) -> None:
    # A hang-up is the supervisor's signal (replace the workers one by one); one that reaches
    # the whole process group must not end a worker without its drain.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def orphaned() -> None:
        log.warning("the supervisor is gone; draining and stopping")
        stopping()

    handoff.on_parent_exit(orphaned)
    # A lone worker takes every connection that waits; several share each burst out.
    await server.start_on(handoff.sockets(), shared=handoff.configured > 1)
    await siblings.start()
    # Logged before the supervisor hears of it, so this line precedes its "started" line.
    log.info("worker %d serving", handoff.index,
             extra={"event": {"name": "worker_started", "index": handoff.index,
                              "pid": os.getpid(), "version": __version__}})
    handoff.notify_ready()
