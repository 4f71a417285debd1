"""Accepting from a listening socket that other processes may accept from too.

asyncio's own accept loop takes every connection waiting in the queue each time the socket is
readable. On a socket of its own that is what one wants. On a socket several processes share,
it hands a whole burst to whichever process gets a CPU first: wrk's 16 and 64 connections,
opened at once, all went to one of two workers, and the second added nothing. An `Acceptor`
takes only a budget of connections per wakeup, so every free process gets its turn. The
socket stays readable while connections wait, so none waits longer than a few turns of some
process's event loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("kestrel.http")

# Out of file descriptors or memory, accept() fails at once while the socket stays readable;
# asyncio then pauses accepting for a second (ACCEPT_RETRY_DELAY), and so do we.
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_RETRY_SECONDS = 1.0
# The budget of a process sharing the socket: one connection per wakeup, plus one for every
# this many it already serves. Measured with two workers on 2 cores (bench/run.py --quick):
# - one per wakeup (nginx's `multi_accept off`): wrk's 16 and 64 connections split 8/8 and
#   33/31, but a worker relaying 500 streams turns its loop slowly, and 1,000 new streams
#   waited 1.9 s for their first byte at p99;
# - a fixed four: wrk's 16 split 12/4 in one run, 0/16 in another; 0.9 to 1.1 s at p99;
# - one plus one per 16 served: 8/8 and 31/33 in every run; 0.35 s at p99 (one process
#   without WORKERS: 0.65 s).
CONNECTIONS_PER_EXTRA_ACCEPT = 16


def fair_share(serving: int) -> int:
    """Connections a process serving `serving` takes from a shared socket at one wakeup."""
    return 1 + serving // CONNECTIONS_PER_EXTRA_ACCEPT


class Acceptor:
    """Connects sockets accepted from `sock` to protocols from `protocol_factory`, at most
    `budget()` each time the socket is readable."""

    def __init__(self, sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol],
                 budget: Callable[[], int]) -> None:
        self._sock = sock
        self._protocol_factory = protocol_factory
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        self._adopting: set[asyncio.Task[None]] = set()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(self._budget()):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # the queue is empty: another process took the rest
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    raise
                log.error("cannot accept connections (%s); trying again in %.0f s",
                          exc.strerror, ACCEPT_RETRY_SECONDS)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(ACCEPT_RETRY_SECONDS, self._resume)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._adopt(conn))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._readable)

    async def _adopt(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._protocol_factory, sock=conn)
        except OSError:
            conn.close()  # reset before we got to it

    def getsockname(self) -> tuple[str, int]:
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    def close(self) -> None:
        """Stop accepting and close this process's handle on the socket; other processes
        holding it keep listening, and what waits in its queue goes to them."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    async def accepted(self) -> None:
        """Until every connection accepted so far has reached the callback (after `close()`:
        no connection this process took is left out of its shutdown)."""
        if self._adopting:
            await asyncio.wait(set(self._adopting))
