"""A request body, pulled from h11 only as fast as the handler asks for it.

Nothing is read before the handler wants it: that is what makes `Expect: 100-continue` honest
and lets size limits act on a body as it arrives rather than after buffering it.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NoReturn

import h11

from kestrel.http.limits import ServerLimits
from kestrel.http.messages import BadRequest, BodyTooLarge, HTTPError, RequestTimeout


class BodyState(enum.Enum):
    PENDING = "pending"  # more of the body may come
    COMPLETE = "complete"  # h11 gave EndOfMessage: the connection's input is free again
    FAILED = "failed"  # too large, too slow or malformed: the connection cannot be reused


# Read several times a request: plain names (see `kestrel/domain.py` on enum members in
# Python 3.11).
PENDING, COMPLETE, FAILED = BodyState.PENDING, BodyState.COMPLETE, BodyState.FAILED


class RequestBody:
    """Reads one request's body through the connection's h11 state machine.

    `read` returns the next bytes from the socket (b"" at EOF); `send_continue` writes the
    `100 Continue` interim response. Both belong to the connection; this class only decides
    when to call them. `on_complete` is called once the whole body is in: from then on the
    connection's input is free again, and its end means the client left.
    """

    def __init__(
        self,
        conn: h11.Connection,
        read: Callable[[], Awaitable[bytes]],
        send_continue: Callable[[], Awaitable[None]],
        limits: ServerLimits,
        declared_length: int | None,
        on_complete: Callable[[], None] = lambda: None,
    ) -> None:
        self._conn = conn
        self._read = read
        self._send_continue = send_continue
        self._limits = limits
        self._declared = declared_length
        self._pending: deque[bytes] = deque()
        self._failure: tuple[type[HTTPError], str] | None = None
        self._detached = False
        self.state = PENDING
        self.received = 0
        self._on_complete = on_complete
        if declared_length is not None and declared_length > limits.max_body_bytes:
            # Body-size trap, first half: a declared length over the limit fails the first
            # read before a byte of the body is read, and before any `100 Continue` invites
            # the client to send it. The connection is then closed, not drained.
            self._mark_failed(BodyTooLarge,
                              f"request body is larger than {limits.max_body_bytes} bytes")

    @property
    def remaining(self) -> int | None:
        """Bytes of a Content-Length body not yet received; None when chunked (unknown)."""
        if self._declared is None:
            return None
        return max(0, self._declared - self.received)

    def take_buffered(self) -> None:
        """Parse body events that already arrived with the head, without touching the socket.

        A bodyless GET (or a small POST sent in one packet) is thus complete before the
        handler runs, so a client leaving is noticed from the start.
        """
        while self.state is PENDING:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError:
                self._mark_failed(BadRequest, "malformed request body")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            try:
                chunk = self._accept(event)
            except HTTPError:
                return
            if chunk:
                self._pending.append(chunk)

    async def receive(self) -> bytes | None:
        """The next piece of the body, or None at its end. This is `Request.receive`."""
        if self._detached:
            raise RuntimeError("the request is over; its body can no longer be read")
        self._raise_if_failed()
        if self._pending:
            return self._pending.popleft()
        if self.state is COMPLETE:
            return None
        if self._conn.they_are_waiting_for_100_continue:
            # 100-continue trap: the client holds its body back until told to send it. Tell it
            # only now, when the handler really reads; a request refused without reading gets
            # its final status instead, and no body ever crosses the network.
            await self._send_continue()
        while True:
            event = await self._next_event()
            if type(event) is h11.EndOfMessage:
                self._finish()
                return None
            chunk = self._accept(event)
            if chunk:  # h11 may hand out empty Data; the handler only ever sees bytes
                return chunk

    async def drain(self, limit: int) -> bool:
        """Discard what the handler left unread, up to `limit` bytes. True if the body ended.

        Pipelining trap: the next request starts after this body, so an unread body must be
        consumed before the connection can be reused, or the connection must be closed.
        """
        if self.state is FAILED:
            return False
        discarded = sum(len(chunk) for chunk in self._pending)
        self._pending.clear()
        while self.state is PENDING:
            if discarded > limit:
                return False
            try:
                event = await self._next_event()
            except HTTPError:
                return False
            if type(event) is h11.Data:
                discarded += len(event.data)
            elif type(event) is h11.EndOfMessage:
                self._finish()
        return discarded <= limit

    def detach(self) -> None:
        """The exchange is over: a handler that kept the request must not read the next one's
        bytes as its body."""
        self._detached = True

    async def _next_event(self) -> h11.Event:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError:
                # Bad chunk framing, or EOF before Content-Length bytes came ("peer closed
                # connection without sending complete message body").
                self._fail(BadRequest, "request body is malformed or was cut short")
            if event is h11.NEED_DATA:
                try:
                    # Slow-client trap: a deadline for each gap between pieces of the body.
                    async with asyncio.timeout(self._limits.body_timeout):
                        data = await self._read()
                except TimeoutError:
                    self._fail(RequestTimeout, "request body timed out")
                # b"" tells h11 about EOF; its next answer is then the error above.
                self._conn.receive_data(data)
                continue
            if type(event) is h11.Data or type(event) is h11.EndOfMessage:
                return event
            self._fail(BadRequest, "unexpected data in request body")

    def _accept(self, event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]) -> bytes:
        # By exact type, here and in the methods above: h11's events are abstract base classes,
        # and `isinstance` with one the event is not runs ABCMeta's check, in Python (h11
        # never subclasses them).
        if type(event) is h11.EndOfMessage:
            self._finish()
            return b""
        if type(event) is not h11.Data:
            self._fail(BadRequest, "unexpected data in request body")
        self.received += len(event.data)
        # Body-size trap, second half: h11 sets no limit, so a chunked body is counted as it
        # arrives and refused the moment it passes the limit, before it is ever buffered.
        if self.received > self._limits.max_body_bytes:
            self._fail(BodyTooLarge,
                       f"request body is larger than {self._limits.max_body_bytes} bytes")
        return bytes(event.data)

    def _finish(self) -> None:
        self.state = COMPLETE
        self._on_complete()

    def _mark_failed(self, kind: type[HTTPError], message: str) -> None:
        if self._failure is None:
            self._failure = (kind, message)
        self.state = FAILED
        self._pending.clear()

    def _fail(self, kind: type[HTTPError], message: str) -> NoReturn:
        self._mark_failed(kind, message)
        self._raise_if_failed()
        raise AssertionError("unreachable")

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            kind, message = self._failure
            # A fresh exception each time (no growing traceback chain), and not chained to
            # h11's error, whose message may quote the client's bytes.
            raise kind(message) from None
