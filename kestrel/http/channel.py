"""The socket of one client connection: an asyncio protocol that its connection's task awaits.

asyncio's StreamReader and StreamWriter could do the reading and writing, but a stream only
learns that its client went away when someone reads it, and while a handler runs nobody does.
Noticing it took a second task per request reading the socket beside the handler; that task
and the waits around it cost a tenth of a request's CPU. A protocol hears the end of input
and a reset the moment they happen, and says so through `on_gone`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Channel(asyncio.Protocol):
    """Buffered reads, flow-controlled writes, and word of the client leaving.

    `on_open` receives the channel once its socket is connected. Input is kept until `read()`
    takes it; past `max_buffer` unread bytes the socket is no longer read, so the kernel's
    buffers push back on the client.
    """

    def __init__(self, on_open: Callable[[Channel], None], *, max_buffer: int) -> None:
        self._on_open = on_open
        self._max_buffer = max_buffer
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._reading_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed = self._loop.create_future()
        # The deadline of the read under way, and one timer per channel that enforces it: a
        # timer per read (what `asyncio.timeout()` makes) was a twentieth of a request's CPU.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.at_eof = False  # the client sent all it will send (FIN) or the socket is gone
        self.lost = False  # the socket is closed; nothing more can be written
        # Called at the end of input and at a reset: the connection decides what that means.
        self.on_gone: Callable[[], None] | None = None
        self.peer: Any = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.peer = transport.get_extra_info("peername")
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake_reader()
        if self._buffered > self._max_buffer and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.at_eof = True
        self._wake_reader()
        self._tell_gone()
        return True  # keep the sending side open: what to do next is the connection's call

    def connection_lost(self, exc: Exception | None) -> None:
        self.at_eof = self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_reader()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the client connection was lost"))
        if not self._closed.done():
            self._closed.set_result(None)
        self._tell_gone()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- what the connection uses ------------------------------------------------------------

    @property
    def transport(self) -> asyncio.Transport:
        assert self._transport is not None, "the channel is not connected yet"
        return self._transport

    @property
    def buffered(self) -> bool:
        return self._buffered > 0

    async def read(self, deadline: float | None = None) -> bytes:
        """Everything received and not yet read; waits for more if there is none. b"" once
        the input has ended (EOF, reset, or the socket closed). Raises TimeoutError if
        nothing came by `deadline` (event loop time)."""
        if not self._chunks and not self.at_eof:
            waiter = self._read_waiter = self._loop.create_future()
            if deadline is not None:
                self._deadline = deadline
                self._arm(deadline)
            try:
                await waiter
            finally:
                self._read_waiter = None
                self._deadline = None
        if not self._chunks:
            return b""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._reading_paused and not self.lost:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def hurry(self, deadline: float) -> None:
        """Bring the deadline of the read under way forward to `deadline`, if it is later."""
        if self._read_waiter is not None and (self._deadline is None
                                              or deadline < self._deadline):
            self._deadline = deadline
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first, and then waits on for the deadline
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # nothing is being waited for: the next read arms the timer again
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._expire)
            return
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    @property
    def write_blocked(self) -> bool:
        """More waits to be sent than asyncio's high-water mark: `drain()` would wait."""
        return self._writing_paused or self.lost

    async def drain(self) -> None:
        """Until the client has taken enough of what waits (asyncio's high-water mark).
        Raises ConnectionResetError if the connection is lost meanwhile."""
        if self.lost:
            raise ConnectionResetError("the client connection was lost")
        if not self._writing_paused:
            return
        waiter = self._drain_waiter = self._loop.create_future()
        await waiter

    def closing(self) -> bool:
        return self.lost or self.transport.is_closing()

    def write_eof(self) -> bool:
        """Half-close, if the transport can: True when it did."""
        if self.closing() or not self.transport.can_write_eof():
            return False
        self.transport.write_eof()
        return True

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        if self._transport is not None and not self.lost:
            self._transport.abort()

    async def closed(self) -> None:
        """Until the socket is released (`connection_lost`). Call it once: a cancelled wait
        cancels the future it waits on."""
        await self._closed

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _tell_gone(self) -> None:
        if self.on_gone is not None:
            self.on_gone()
