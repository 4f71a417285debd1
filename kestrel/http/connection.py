"""One client connection: read a request head, run the handler, write the response, repeat.

One task per connection runs `run()`, the handler and the writing of its response included.
The socket is a `Channel` (a protocol, not a stream), which hears the client leave while the
handler runs; the connection then cancels its own task, and tells that cancellation apart
from a shutdown's by the count `Task.cancelling()` keeps.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass, field

import h11

from kestrel.http.body import COMPLETE, FAILED, PENDING, RequestBody
from kestrel.http.channel import Channel
from kestrel.http.limits import LINGER_MAX_BYTES, LINGER_SECONDS, ServerLimits
from kestrel.http.messages import (
    AccessEntry,
    AccessLog,
    Handler,
    Headers,
    HTTPError,
    Request,
    RequestTimeout,
    Response,
)
from kestrel.http.wire import (
    DateCache,
    InvalidResponse,
    ResponseHead,
    choose_request_id,
    error_response,
    internal_error_response,
    protocol_error,
    refuse_before_handler,
    response_head,
)

log = logging.getLogger("kestrel.http")

# Largest single write. asyncio's transport pauses writers at 64 KiB buffered, so a slice
# drains as soon as the client takes most of it.
WRITE_SLICE = 64 * 1024

# Waiting for a closed socket to be released: a client that stopped reading can keep our
# unsent bytes queued forever, so past this the transport is aborted instead.
CLOSE_WAIT_SECONDS = 1.0


# Every response ends with the same event (no trailers): one instance, not one per response.
_END = h11.EndOfMessage()


class Phase(enum.Enum):
    """Where a connection is in its life; what may interrupt it depends on this alone."""

    IDLE = "idle"  # between requests, nothing of the next one received: may be closed
    READING_HEAD = "reading_head"  # part of a request head received
    HANDLING = "handling"  # handler running, nothing of the response sent
    RESPONDING = "responding"  # response head sent, body going out
    DRAINING = "draining"  # response done, discarding a request body the handler left
    CLOSED = "closed"


# Set and read several times a request: plain names (see `kestrel/domain.py` on enum members
# in Python 3.11).
IDLE, READING_HEAD, HANDLING = Phase.IDLE, Phase.READING_HEAD, Phase.HANDLING
RESPONDING, DRAINING, CLOSED = Phase.RESPONDING, Phase.DRAINING, Phase.CLOSED


class _ClientGone(Exception):
    """The client went away (EOF, reset, failed or stalled write)."""


class _StreamBroken(Exception):
    """The response body failed after its head was sent; already logged."""


@dataclass
class _Exchange:
    """What the access log says about one request."""

    started: float
    method: str = "-"
    path: str = "-"
    # Even a request too broken to parse gets an id, so its 400 can be found in the log.
    request_id: str = field(default_factory=lambda: choose_request_id(None))
    status: int = 0
    bytes_sent: int = 0
    finished: bool = False  # the whole response, end of body included, was written


class Connection:
    def __init__(
        self,
        channel: Channel,
        *,
        handler: Handler,
        limits: ServerLimits,
        server_header: str,
        access_log: AccessLog | None,
        dates: DateCache,
    ) -> None:
        self._channel = channel
        self._handler = handler
        self._limits = limits
        self._server_header = server_header
        self._access = access_log
        self._dates = dates
        # Header-size trap: h11 refuses a head that grows past this while incomplete, with
        # error_status_hint 431.
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        peer = channel.peer
        self.client: tuple[str, int] | None = (
            (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
        )
        self.phase = IDLE
        self._loop = asyncio.get_running_loop()
        self._accepted_at = self._loop.time()
        self._served = 0
        self._closing = False  # shutdown: what is on its way is answered with `close`, no more
        self._client_gone = False
        # The body of the exchange whose handler or response is under way, while one is.
        self._watched: RequestBody | None = None
        self._cancelled_for_client = False  # a cancellation of ours is pending or delivered
        self._task: asyncio.Task[None] | None = None
        channel.on_gone = self._client_left

    def start(self) -> asyncio.Task[None]:
        self._task = self._loop.create_task(self.run())
        return self._task

    def begin_shutdown(self) -> None:
        """Let the exchange under way finish, and answer no more than one request after it.

        Idle, the connection waits `shutdown_idle_linger` for a request already on its way,
        answers it with `Connection: close`, and otherwise closes quietly (a FIN, not a reset)
        once the linger is over. A busy one does the same after its exchange, unless its
        response could still say `close` itself.
        """
        self._closing = True
        # Timer-vs-state trap: only the wait for a next request is shortened, and only while
        # it is under way; a busy connection is never cut mid-response.
        if self.phase is IDLE:
            self._channel.hurry(self._loop.time() + self._limits.shutdown_idle_linger)

    def abort(self) -> None:
        """Last resort (the task never ran, or gave up): release the socket without waiting."""
        self._channel.abort()

    async def run(self) -> None:
        abort = False
        try:
            while await self._exchange():
                pass
        except asyncio.CancelledError:
            abort = True
            raise
        except Exception:
            # A bug of ours; it must cost this connection only, never the server.
            abort = True
            log.exception("connection failed")
        finally:
            self.phase = CLOSED
            await self._close(abort=abort or self._client_gone)

    # -- one exchange ------------------------------------------------------------------------

    async def _exchange(self) -> bool:
        """Serve one request. True if the connection can carry another."""
        try:
            head = await self._read_head()
        except TimeoutError:
            # The head was started but not finished in time (slowloris): 408, then close.
            await self._answer_directly(_Exchange(self._loop.time()),
                                        error_response(RequestTimeout("request head timed out")))
            return False
        except h11.RemoteProtocolError as exc:
            # Malformed request line or headers, conflicting framing, or a head over the size
            # limit: h11's hint says which status (400, 431, 501). Answer and close.
            await self._answer_directly(_Exchange(self._loop.time()),
                                        error_response(protocol_error(exc)))
            return False
        if head is None:
            return False
        event, received = head
        self._served += 1
        self.phase = HANDLING
        method = event.method.decode("ascii")
        target = event.target.decode("latin-1")
        headers = Headers.from_raw(event.headers.raw_items())
        # The exchange, the body and the request are made by position: Python 3.11 packs the
        # keywords of a call to a class into a dict and matches them to parameters one by one,
        # a few hundred instructions each. The path never has the query string: it may carry
        # keys or other secrets.
        exchange = _Exchange(self._loop.time(), method, target.partition("?")[0],
                             choose_request_id(headers.get("x-request-id")))
        refusal = refuse_before_handler(event, headers, self._limits, received=received)
        if refusal is not None:
            await self._answer_directly(exchange, error_response(refusal))
            return False
        length = headers.get("content-length")
        body = RequestBody(self._h11, self._channel.read, self._send_continue, self._limits,
                           int(length) if length is not None else None, self._body_complete)
        request = Request(method, target, headers, self.client, exchange.request_id,
                          body.receive)
        self._watched = body
        body.take_buffered()
        completed = False
        try:
            await self._cycle(request, body, exchange)
            completed = True
        except asyncio.CancelledError:
            if not self._forgive_our_cancel():
                raise  # shutdown cut the exchange short: the connection closes
        except _ClientGone:
            self._client_gone = True
        except _StreamBroken:
            pass  # already logged; the connection closes
        except Exception:
            log.exception("exchange failed")
        finally:
            self._watched = None
            body.detach()
            self._log_access(exchange)
        # A handler may have swallowed ours and returned: withdraw it all the same, so the
        # task's count of cancellations says only what a shutdown asked for.
        self._forgive_our_cancel()
        if not completed or self._client_gone:
            return False
        return await self._next_cycle(body)

    def _client_left(self) -> None:
        """The channel's word that input ended or the socket broke (a loop callback).

        Disconnect trap: while a handler runs or a stream is written nobody reads the socket,
        so a client that left would go unnoticed until a write fails (for a quiet stream,
        perhaps never) and the upstream work behind it would go on. Its body must be in first:
        until then an end of input is the body cut short, which the body's reader reports.
        """
        body = self._watched
        if body is None or body.state is not COMPLETE or self._client_gone:
            return
        self._client_gone = True
        if self._task is not None and not self._task.done():
            self._cancelled_for_client = True
            self._task.cancel()

    def _body_complete(self) -> None:
        # The request and the end of input arrived together: the client is gone already.
        # Called from the connection's own task; the cancellation waits for its next pause.
        if self._channel.at_eof:
            self._loop.call_soon(self._client_left)

    def _forgive_our_cancel(self) -> bool:
        """Withdraw the cancellation `_client_left` requested, if any. True if there was one
        and no other (a shutdown's) is pending."""
        if not self._cancelled_for_client:
            return False
        self._cancelled_for_client = False
        assert self._task is not None
        return self._task.uncancel() == 0

    async def _next_cycle(self, body: RequestBody) -> bool:
        """After a complete response: make the connection ready for the next request."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.SEND_BODY:
            # Pipelining trap: the handler answered without reading the whole body, and the
            # next request only starts after it. Drain a little, or close.
            self.phase = DRAINING
            if not await body.drain(self._limits.drain_limit_bytes):
                return False
        # Shutting down, a response that went out without `close` (its head left before the
        # shutdown began) still leaves the connection open for the linger: its client may
        # already be sending the next request.
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            return True
        return False

    async def _read_head(self) -> tuple[h11.Request, int] | None:
        """The next request head and the bytes received when it was parsed, or None when the
        connection should just close.

        Raises TimeoutError when a started head is not finished in time, and h11's
        RemoteProtocolError when it is malformed or too large.
        """
        loop = self._loop
        # A pipelined request already arrived (h11 holds it, or the channel does).
        held, ended = self._h11.trailing_data
        received = len(held)
        buffered = bool(held) or self._channel.buffered
        self.phase = READING_HEAD if buffered else IDLE
        if self._served == 0:
            # Slowloris trap: a new connection must deliver its first head within
            # header_timeout of being accepted.
            idle_deadline = head_deadline = self._accepted_at + self._limits.header_timeout
        else:
            # Between requests the client may idle for keepalive_timeout; once the next head
            # starts it has header_timeout to finish it.
            idle_deadline = loop.time() + self._limits.keepalive_timeout
            head_deadline = loop.time() + self._limits.header_timeout
        if self._closing:  # shutting down: wait only for a request already on its way
            idle_deadline = min(idle_deadline, loop.time() + self._limits.shutdown_idle_linger)
        # h11 holding no bytes and no end of input can only answer NEED_DATA: it is not asked
        # (about 3 % of what h11 costs an exchange).
        event = self._h11.next_event() if held or ended else h11.NEED_DATA
        while event is h11.NEED_DATA:
            # Timer-vs-state trap: these deadlines exist only around this read, so no idle or
            # head timer can be left running to fire during a response.
            idle = self.phase is IDLE
            try:
                data = await self._channel.read(idle_deadline if idle else head_deadline)
            except TimeoutError:
                if idle:
                    # Nothing of a request: close quietly. A 408 here could cross the
                    # client's next request on the wire and be taken as its answer.
                    return None
                raise
            if idle and data:
                self.phase = READING_HEAD
                if self._served:
                    head_deadline = loop.time() + self._limits.header_timeout
            self._h11.receive_data(data)
            received += len(data)
            event = self._h11.next_event()
        # Anything else is ConnectionClosed: the client ended the connection between requests.
        return (event, received) if isinstance(event, h11.Request) else None

    async def _cycle(self, request: Request, body: RequestBody, exchange: _Exchange) -> None:
        """Run the handler and write its response (the child task a disconnect cancels)."""
        response: Response | None = None
        try:
            try:
                response = await self._handler(request)
                if not isinstance(response, Response):
                    raise TypeError(f"handler returned {type(response).__name__}, not Response")
            except _ClientGone:
                raise
            except HTTPError as exc:
                # An HTTP error the application did not render itself: plain JSON.
                response = error_response(exc)
            except Exception:
                log.exception("unhandled error in handler for %s %s", request.method,
                              request.path)
                response = internal_error_response()
            if self._client_gone:
                raise _ClientGone  # the handler swallowed our cancellation
            await self._respond(request.method, response, exchange, close=self._must_close(body))
        finally:
            # Always close a generator body (end, error, disconnect, shutdown), so its
            # `finally` (closing an upstream stream, say) runs now and not at garbage collection.
            if response is not None:
                await _close_iterator(response.body)

    def _must_close(self, body: RequestBody) -> bool:
        """Decided before the head goes out, so the response itself can say `close`."""
        if self._closing or self._served >= self._limits.max_requests_per_connection:
            return True
        if body.state is FAILED:
            return True
        if body.state is PENDING:
            if self._h11.they_are_waiting_for_100_continue:
                # 100-continue trap: the client never got its 100 and may or may not send the
                # body now; the next bytes on this connection are ambiguous, so close.
                return True
            remaining = body.remaining
            if remaining is not None and remaining > self._limits.drain_limit_bytes:
                return True
        return False

    async def _answer_directly(self, exchange: _Exchange, response: Response) -> None:
        """A response the handler never sees (refused or unparsable request), then close."""
        try:
            await self._respond(exchange.method, response, exchange, close=True)
        except _ClientGone:
            self._client_gone = True
        self._log_access(exchange)

    # -- writing -----------------------------------------------------------------------------

    async def _respond(self, method: str, response: Response, exchange: _Exchange, *,
                       close: bool) -> None:
        def head_of(resp: Response) -> ResponseHead:
            return response_head(method, resp, request_id=exchange.request_id,
                                 date=self._dates.get(time.time()),
                                 server=self._server_header, close=close)

        try:
            head = head_of(response)
        except InvalidResponse as exc:
            log.error("%s (%s %s)", exc, method, exchange.path)
            response = internal_error_response()  # the caller still closes the original body
            head = head_of(response)
        body = response.body
        if head.send_body and not isinstance(body, bytes):
            await self._send(head)
            exchange.status = head.status
            self.phase = RESPONDING
            # h11 chunks a body of unknown length for an HTTP/1.1 client, and for an HTTP/1.0
            # one writes it as it is and closes the connection after it.
            await self._stream(body, exchange,
                               chunked=self._h11.their_http_version == b"1.1")
            await self._send(_END)
        else:
            whole = body if head.send_body and isinstance(body, bytes) else b""
            await self._send_whole(head, whole, exchange)
        exchange.finished = True

    async def _send_whole(self, head: ResponseHead, data: bytes, exchange: _Exchange) -> None:
        """Head, body and end in as few writes as WRITE_SLICE allows, one for most answers:
        each write is a system call, and on a quiet connection a packet of its own."""
        first, rest = data[:WRITE_SLICE], data[WRITE_SLICE:]
        events: list[h11.Event | ResponseHead] = [head]
        if first:
            events.append(h11.Data(data=first))
        if not rest:
            events.append(_END)
        await self._send(*events)
        exchange.status = head.status
        exchange.bytes_sent += len(first)
        self.phase = RESPONDING
        if rest:
            await self._send_data(rest, exchange)
            await self._send(_END)

    async def _stream(self, body: AsyncIterable[bytes], exchange: _Exchange, *,
                      chunked: bool) -> None:
        iterator = aiter(body)
        try:
            while True:
                try:
                    chunk = await anext(iterator)
                    if type(chunk) is not bytes:
                        if not isinstance(chunk, bytes | bytearray | memoryview):
                            raise TypeError(f"response body yielded {type(chunk).__name__}")
                        chunk = bytes(chunk)
                except StopAsyncIteration:
                    return
                except Exception:
                    # After-the-head trap: the status is already on the wire, so this cannot
                    # become a 500. Closing without the last chunk tells the client the body
                    # is incomplete.
                    log.exception("response body failed after its head was sent (%s %s)",
                                  exchange.method, exchange.path)
                    raise _StreamBroken from None
                # Backpressure trap: each chunk is written and drained before the next one is
                # asked for, so a slow client slows the producer; nothing queues up.
                if chunked and 0 < len(chunk) <= WRITE_SLICE:
                    # A stream's usual chunk, framed here: the chunked coding keeps no count
                    # and moves h11 to no other state, and h11's own `send(Data)` cost several
                    # times what the framing does, once per event of every stream. h11 still
                    # chose the framing and writes the last chunk (EndOfMessage).
                    await self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    exchange.bytes_sent += len(chunk)
                else:
                    await self._send_data(chunk, exchange)
        finally:
            if iterator is not body:
                await _close_iterator(iterator)

    async def _send_data(self, data: bytes, exchange: _Exchange) -> None:
        if 0 < len(data) <= WRITE_SLICE:  # a stream's usual chunk: one write, no slicing
            await self._send(h11.Data(data=data))
            exchange.bytes_sent += len(data)
            return
        # In slices, so write_timeout bounds a stall (no progress), not a slow but steady
        # download of a large body.
        for start in range(0, len(data), WRITE_SLICE):
            piece = data[start:start + WRITE_SLICE]
            await self._send(h11.Data(data=piece))
            exchange.bytes_sent += len(piece)

    async def _send_continue(self) -> None:
        await self._send(h11.InformationalResponse(status_code=100, headers=[]))

    async def _send(self, *events: h11.Event | ResponseHead) -> None:
        self._refuse_if_gone()  # before h11 takes the events as sent
        await self._write(self._encode(events[0]) if len(events) == 1 else b"".join(
            [self._encode(event) for event in events]))

    def _refuse_if_gone(self) -> None:
        if self._client_gone or self._channel.closing():
            self._h11.send_failed()
            raise _ClientGone

    async def _write(self, data: bytes) -> None:
        self._refuse_if_gone()
        channel = self._channel
        try:
            if data:
                channel.write(data)
            # The write usually went straight to the socket; only a backlog past asyncio's
            # high-water mark needs a wait, and a client that stops reading must not hold the
            # response (and whatever feeds it) forever. Skipping the wait otherwise saves a
            # timer per chunk.
            if channel.write_blocked:
                async with asyncio.timeout(self._limits.write_timeout):
                    await channel.drain()
        except (OSError, TimeoutError):
            # Failed-write trap: h11 believes those bytes went out. Tell it, and never reuse
            # this connection.
            self._h11.send_failed()
            self._client_gone = True
            raise _ClientGone from None

    def _encode(self, event: h11.Event | ResponseHead) -> bytes:
        if isinstance(event, ResponseHead):
            return event.encode(self._h11.send(event.framing) or b"")
        return self._h11.send(event) or b""

    # -- closing -----------------------------------------------------------------------------

    async def _close(self, *, abort: bool) -> None:
        channel = self._channel
        if abort:
            channel.abort()
        else:
            if self._h11.their_state in (h11.SEND_BODY, h11.ERROR):
                await self._linger()
            channel.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await channel.closed()
        except TimeoutError:
            channel.abort()

    async def _linger(self) -> None:
        """Half-close and swallow what the client is still sending, briefly.

        We answered without reading all the client sent (a 413 before the body, a 400 on a
        broken head). Closing at once with unread input makes the kernel send a reset, which
        can destroy our response before the client reads it.
        """
        try:
            if not self._channel.write_eof():
                return
            swallowed = 0
            async with asyncio.timeout(LINGER_SECONDS):
                while swallowed < LINGER_MAX_BYTES:
                    data = await self._channel.read()
                    if not data:
                        return
                    swallowed += len(data)
        except (OSError, TimeoutError):
            return

    def _log_access(self, exchange: _Exchange) -> None:
        if self._access is None:
            return
        # 499 (nginx's "client closed request"): the client left before the response ended.
        status = 499 if self._client_gone and not exchange.finished else exchange.status
        self._access(AccessEntry(
            exchange.method, exchange.path, status,
            round((self._loop.time() - exchange.started) * 1000, 1), exchange.request_id,
            self.client[0] if self.client else None, exchange.bytes_sent))


async def _close_iterator(body: object) -> None:
    """`aclose()` an async generator (or any iterator that has it), logging its failures."""
    if isinstance(body, bytes):  # first: a failed attribute lookup builds an exception
        return
    aclose = getattr(body, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.exception("closing a response body failed")

