"""The listener: accept connections, keep track of them, and shut down gracefully.

Everything about a single connection lives in `connection.py`; this module owns what spans
them all: the listening socket, the set of live connections, and the shutdown sequence.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from kestrel.http.acceptor import Acceptor, fair_share
from kestrel.http.channel import Channel
from kestrel.http.connection import Connection
from kestrel.http.limits import PIPELINE_BUFFER_FACTOR, ServerLimits
from kestrel.http.messages import AccessLog, Handler
from kestrel.http.wire import DateCache

__all__ = ["DEFAULT_LIMITS", "Server", "ServerLimits"]

log = logging.getLogger("kestrel.http")

DEFAULT_LIMITS = ServerLimits()

# After the grace period the remaining connections are cancelled; their handlers' and
# generators' `finally` blocks then get this long before shutdown stops waiting for them.
CANCEL_WAIT_SECONDS = 5.0


# asyncio's default listen backlog is 100: a burst of new connections beyond it (a client
# opening hundreds of streams at once) waits a second or more for TCP to retry. The kernel
# caps the value at net.core.somaxconn anyway.
ACCEPT_BACKLOG = 2048


class Server:
    """An HTTP/1.1 server for one `Handler`.

    `start()` binds (or `start_on()` takes sockets bound elsewhere), `serve_until(stop)` serves
    until the event is set and then shuts down gracefully; `shutdown()` can also be called
    directly and is idempotent.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ServerLimits = DEFAULT_LIMITS,
        access_log: AccessLog | None = None,
        server_header: str = "kestrel",
    ) -> None:
        self._handler = handler
        self._limits = limits
        self._access_log = access_log
        self._server_header = server_header
        self._dates = DateCache()
        self._listeners: list[asyncio.Server | Acceptor] = []
        # Shutdown trap: on 3.11 asyncio's Server.close() leaves accepted sockets open, so
        # the server keeps its own record of every live connection.
        self._connections: dict[Connection, asyncio.Task[None]] = {}
        self._closing = False
        self._shutdown_task: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting. Port 0 picks a free port; `self.port` tells which."""
        self._check_not_started()
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(self._channel, host, port, backlog=ACCEPT_BACKLOG)
        self._listeners = [listener]
        name = listener.sockets[0].getsockname()
        self.host, self.port = str(name[0]), int(name[1])

    async def start_on(self, sockets: Sequence[socket.socket], *, shared: bool = True) -> None:
        """Accept on sockets already bound and listening, such as ones inherited from a parent
        process. `shared`: other processes accept from them too, and each takes only its share
        of a burst (see `acceptor.py`); otherwise all that wait, as `start()` does.

        Shutdown closes this process's handle on them only: while another process holds the
        socket it keeps listening, and connections waiting in its queue go to that process.
        """
        self._check_not_started()
        if not sockets:
            raise ValueError("start_on() needs at least one socket")

        def budget() -> int:
            return fair_share(len(self._connections)) if shared else ACCEPT_BACKLOG

        acceptors = [Acceptor(sock, self._channel, budget) for sock in sockets]
        self._listeners = list(acceptors)
        self.host, self.port = acceptors[0].getsockname()

    def _check_not_started(self) -> None:
        if self._listeners:
            raise RuntimeError("server already started")

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then shut down gracefully and return."""
        if not self._listeners:
            raise RuntimeError("call start() before serve_until()")
        try:
            await stop.wait()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, close idle connections, let busy ones finish within the grace
        period, then cancel the rest. Safe to call more than once, also concurrently."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown())
        # Shielded: a caller that is itself cancelled must not abandon shutdown halfway.
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        self._closing = True
        for listener in self._listeners:
            # Closes our handle on the listening socket: new connects are refused, unless
            # another process shares the socket (start_on), which then takes them.
            listener.close()
        for connection in list(self._connections):
            connection.begin_shutdown()
        for listener in self._listeners:
            if isinstance(listener, Acceptor):
                await listener.accepted()  # registered now, so the wait below covers them
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.shutdown_grace
        # Not a set taken once: a connection the kernel handed over just before the close
        # still reaches `_accept` a step later, and is served and waited for like the rest.
        while self._connections and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._connections.values()), timeout=left)
        if pending := set(self._connections.values()):
            log.warning("shutdown grace of %.1fs is over; cutting %d connection(s)",
                        self._limits.shutdown_grace, len(pending))
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT_SECONDS)
            for connection, task in list(self._connections.items()):
                if task in pending:
                    connection.abort()
        for listener in self._listeners:
            if isinstance(listener, asyncio.Server):
                # On 3.12+ this waits for every accepted connection to be closed, which by now
                # they are; on 3.11 it returns at once.
                await listener.wait_closed()

    def _channel(self) -> Channel:
        """The protocol of a new client socket; it calls `_accept` once connected."""
        return Channel(self._accept,
                       max_buffer=self._limits.max_header_bytes * PIPELINE_BUFFER_FACTOR)

    def _accept(self, channel: Channel) -> None:
        # A plain function, not a coroutine: the connection is registered in the same step
        # as the accept, so a shutdown starting right now cannot miss it.
        connection = Connection(
            channel,
            handler=self._handler,
            limits=self._limits,
            server_header=self._server_header,
            access_log=self._access_log,
            dates=self._dates,
        )
        task = connection.start()
        self._connections[connection] = task
        if self._closing:
            # Accepted by the kernel before the listener closed: its client already sent, or
            # is sending, a request. Answered with `close` rather than reset.
            connection.begin_shutdown()

        def forget(done: asyncio.Task[None]) -> None:
            self._connections.pop(connection, None)
            # If the task was cancelled before it ever ran, its `finally` never closed the
            # socket; this does.
            connection.abort()
            if not done.cancelled() and done.exception() is not None:
                log.error("connection task failed", exc_info=done.exception())

        task.add_done_callback(forget)
