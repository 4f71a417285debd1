"""The fake Anthropic server: connections, scripting per credential, and what it recorded."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import ssl
import threading
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

from .answers import Answer, AnswerBook
from .replies import DEFAULT_MODELS
from .steps import OURS, Step, error, success
from .wire import READ_SIZE, respond, send, watch_for_close

ANY = "*"
"""A credential whose script serves requests whose own credential has nothing queued."""

# Bursts of new connections from a proxy under load: asyncio's default backlog of 100 would
# drop SYNs beyond it, and the proxy would see slow connects that are the fake's doing.
LISTEN_BACKLOG = 2048
# At shutdown, how long a connection's close may wait for its client to take our last bytes.
CLOSE_WAIT_SECONDS = 1.0
# At shutdown, loop turns in a row that must find no connection before none is left: an accepted
# connection takes three to reach its handler (see `_main`).
ACCEPT_TURNS = 5


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    """The request target exactly as sent: path with query."""
    headers: list[tuple[str, str]]
    """As received, in order; names lower-cased (h11 normalizes them)."""
    body: bytes
    credential: str | None
    step: str
    """What the fake did: a Step kind, or "auth_error" / "not_found" / "bad_request"."""
    request_id: str
    usage: dict[str, int] | None = None
    """The usage this request was answered with (successful messages only)."""
    status: int = 200
    """The status the answer carries (or would have, for steps that never send one)."""
    answer: bytes = b""
    """The body the client is sent (decoded), up to where the step breaks off: what a client
    of this very request may receive, byte for byte."""

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def streamed(self) -> bool:
        """The request asked for an SSE stream."""
        parsed = _parse_json(self.body)
        return isinstance(parsed, dict) and parsed.get("stream") is True

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeAnthropic:
    def __init__(
        self,
        *,
        valid_credentials: Iterable[str] | None = None,
        models: Iterable[tuple[str, str, str]] = DEFAULT_MODELS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: a server context (support/test_ca.py): serve HTTPS, as the real API does,
        under the certificate's name `localhost`, for tests of what an egress proxy carries."""
        self.tls = tls
        self.valid_credentials = set(valid_credentials) if valid_credentials is not None else None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._scripts: dict[str, deque[Step]] = {}
        self._defaults: dict[str, Step] = {}
        self._requests: list[RecordedRequest] = []
        self._disconnects = 0
        self._in_flight = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, int]] = []
        self._ids = itertools.count(1)
        self._book = AnswerBook(list(models), self._next_id)
        self.errors: list[BaseException] = []
        """Unexpected exceptions inside the server; a test may assert it stays empty."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        # Every transport a connection was given (the plain one, and TLS's over it): whatever
        # path a connection's end took, shutdown aborts any left open.
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self.port = 0

    @property
    def models(self) -> list[tuple[str, str, str]]:
        return self._book.models

    @models.setter
    def models(self, models: Iterable[tuple[str, str, str]]) -> None:
        self._book.models = list(models)

    # lifecycle

    @property
    def base_url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAnthropic:
        self._thread = threading.Thread(target=self._run, name="fake-anthropic", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._start_error is not None:
            raise RuntimeError("fake Anthropic server failed to start") from self._start_error
        if not self.port:
            raise RuntimeError("fake Anthropic server did not start in time")
        return self

    def close(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may be finishing already
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # scripting

    def script(self, credential: str, steps: Iterable[Step]) -> None:
        with self._lock:
            self._scripts.setdefault(credential, deque()).extend(steps)

    def set_default(self, credential: str, step: Step | None) -> None:
        """What `credential` gets once its queue is empty (None: back to success)."""
        with self._lock:
            if step is None:
                self._defaults.pop(credential, None)
            else:
                self._defaults[credential] = step

    def pending(self, credential: str) -> int:
        with self._lock:
            return len(self._scripts.get(credential, ()))

    def reset(self) -> None:
        """Forget scripts, defaults, records and the disconnect count."""
        with self._lock:
            self._scripts.clear()
            self._defaults.clear()
            self._requests.clear()
            self._disconnects = 0

    # observations

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, credential: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.credential == credential]

    def request_by_id(self, request_id: str) -> RecordedRequest | None:
        """The request answered with this `request-id` header (None if it was not ours)."""
        return next((r for r in self.requests if r.request_id == request_id), None)

    @property
    def disconnects(self) -> int:
        """Clients that went away while an answer was in progress (hang, delay, mid-stream)."""
        with self._lock:
            return self._disconnects

    @property
    def in_flight(self) -> int:
        """Answers being sent right now (a hang or a stream counts until it ends or is cut)."""
        with self._lock:
            return self._in_flight

    def wait_for_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no answer is in progress: e.g. the proxy closed its upstream stream."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)

    def wait_for_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._disconnects >= count, timeout)

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= count, timeout)

    async def await_disconnects(self, count: int = 1, within: float = 5.0) -> bool:
        """`wait_for_disconnects` for code on its own event loop: it never blocks that loop."""
        waiter = (asyncio.get_running_loop(), asyncio.Event(), count)
        with self._lock:
            if self._disconnects >= count:
                return True
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                await waiter[1].wait()
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    # --- the loop thread -------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start(), or kept for the tests to see
            self._start_error = exc
            self.errors.append(exc)
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0,
                                            backlog=LISTEN_BACKLOG)
        self.port = server.sockets[0].getsockname()[1]
        servers = [server]
        if self.tls is not None:
            # `localhost` may resolve to ::1 first, and a client that tries one address only
            # (microsocks resolving a socks5h name) would then miss us: listen there too.
            with contextlib.suppress(OSError):
                servers.append(await asyncio.start_server(
                    self._on_connection, "::1", self.port, backlog=LISTEN_BACKLOG))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            # Stop accepting, but keep the servers open for now: a connection accepted in the
            # same loop turn gets its transport in a task of a later turn, and on 3.11 that
            # transport fails half-made if its server is closed by then (an assertion in
            # `Server._attach`), leaving its socket to the garbage collector: an
            # unclosed-transport warning in whichever test runs then.
            loop = asyncio.get_running_loop()
            for each in servers:
                for listening in each.sockets:
                    loop.remove_reader(listening.fileno())
            # On 3.11 Server.close() leaves accepted connections open: cancel them ourselves,
            # until none is left. A connection accepted just before we stopped reaches its
            # handler a few loop turns later (the accept's own task, `connection_made`, the
            # handler's first step, where it registers): none is left only once several turns
            # in a row found none.
            quiet_turns = 0
            while quiet_turns < ACCEPT_TURNS:
                await asyncio.sleep(0)
                tasks = list(self._conn_tasks)
                if not tasks:
                    quiet_turns += 1
                    continue
                quiet_turns = 0
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for each in servers:
                each.close()
            for each in servers:
                await each.wait_closed()
            # A TLS transport closing waits for the client's close_notify, and a handshake
            # that failed closes the plain one in a later callback: anything still open now
            # would be left to the garbage collector (an unclosed-transport warning in
            # whichever test runs then).
            for transport in list(self._transports):
                transport.abort()
            # A closed transport lets go of its socket in a callback of the next loop turns:
            # give them those turns before the loop stops, or the socket is left to the GC.
            for _ in range(3):
                await asyncio.sleep(0)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        self._transports.add(writer.transport)
        if self.tls is not None and not await self._handshake(writer):
            self._conn_tasks.discard(task)
            return
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                got = await self._read_request(conn, reader, writer)
                if got is None:
                    return
                request, body = got
                if not await self._exchange(conn, reader, writer, request, body):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Server shutdown. Ending normally matters: on 3.11 asyncio's own done-callback for
            # this task calls task.exception(), which raises on a cancelled task.
            pass
        except Exception as exc:  # a fake must not die silently
            self.errors.append(exc)
        finally:
            # Still registered until its transport is closed, so that shutdown waits for this:
            # a task left pending in wait_closed() when the loop stops leaves its socket to the
            # garbage collector (an unclosed-transport warning in whichever test runs then).
            writer.close()
            try:
                # A client that stopped reading would hold unsent bytes, and the close, forever.
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    await writer.wait_closed()
            except (Exception, asyncio.CancelledError):
                writer.transport.abort()
            self._conn_tasks.discard(task)

    async def _handshake(self, writer: asyncio.StreamWriter) -> bool:
        """TLS on an accepted connection. Done here rather than by start_server(ssl=...), so
        that a handshake still running at shutdown is cancelled with its task instead of being
        left to the garbage collector. False: the client left, did not trust us (not the
        fake's fault) or we are shutting down; the connection is closed."""
        assert self.tls is not None
        try:
            await writer.start_tls(self.tls)
            self._transports.add(writer.transport)
            return True
        except (OSError, asyncio.CancelledError):  # ssl.SSLError is an OSError
            # The stream never saw the connection made: closing it would wait forever.
            writer.transport.abort()
            return False

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    await send(
                        conn, writer, h11.InformationalResponse(status_code=100, headers=[])
                    )
                conn.receive_data(await reader.read(READ_SIZE))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            else:  # ConnectionClosed, or PAUSED after a close
                return None

    async def _exchange(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> bool:
        """Answer one request while watching for the client going away. True: keep alive."""
        answer = self._decide(request, body)
        self._add_in_flight(1)
        responding = asyncio.create_task(respond(conn, writer, answer))
        watch = asyncio.create_task(watch_for_close(reader, conn))
        try:
            await asyncio.wait({responding, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not responding.done():
                responding.cancel()
            watch.cancel()
            await asyncio.gather(responding, watch, return_exceptions=True)
            self._add_in_flight(-1)
        # A client leaving is a "disconnect" only when it was not our own doing (cut, reset...).
        ours = answer.step.kind in OURS
        if responding.cancelled():  # the watcher saw the client leave first
            if not ours:
                self._count_disconnect()
            return False
        exc = responding.exception()
        if isinstance(exc, ConnectionError):
            if not ours:
                self._count_disconnect()
            return False
        if exc is not None:
            raise exc
        return responding.result()

    def _add_in_flight(self, delta: int) -> None:
        with self._changed:
            self._in_flight += delta
            self._changed.notify_all()

    def _count_disconnect(self) -> None:
        with self._changed:
            self._disconnects += 1
            self._changed.notify_all()
            for loop, event, count in self._waiters:
                if self._disconnects >= count:
                    with contextlib.suppress(RuntimeError):  # that loop is gone already
                        loop.call_soon_threadsafe(event.set)

    # --- deciding ---------------------------------------------------------------------------

    def _decide(self, request: h11.Request, body: bytes) -> Answer:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        lookup = dict(headers)
        credential = lookup.get("x-api-key")
        if credential is None:
            auth = lookup.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                credential = auth[7:].strip()
        request_id = self._next_id("req_fake")
        route = urlsplit(target).path
        parsed: dict[str, Any] = {}
        answer: Answer
        book = self._book
        if credential is None or (
            self.valid_credentials is not None and credential not in self.valid_credentials
        ):
            message = "x-api-key header is required" if credential is None else "invalid x-api-key"
            answer = book.error_answer(
                error(401, "authentication_error", message), request_id, "auth_error"
            )
        elif _route_known(method, route) is None:
            answer = book.error_answer(
                error(404, "not_found_error", f"Not found: {method} {route}"),
                request_id,
                "not_found",
            )
        elif method == "POST" and not isinstance(parsed := _parse_json(body), dict):
            answer = book.error_answer(
                error(400, "invalid_request_error", "The request body is not valid JSON."),
                request_id,
                "bad_request",
            )
        else:
            step = self._next_step(credential, RecordedRequest(
                method=method, path=target, headers=headers, body=body, credential=credential,
                step="", request_id=request_id))
            answer = book.plan(step, method, route, target, parsed, body, lookup, request_id)
        record = RecordedRequest(
            method=method,
            path=target,
            headers=headers,
            body=body,
            credential=credential,
            step=answer.step.kind,
            request_id=request_id,
            usage=answer.usage,
            status=answer.status,
            answer=answer.sent_body(),
        )
        with self._changed:
            self._requests.append(record)
            self._changed.notify_all()
        return answer

    def _next_step(self, credential: str, request: RecordedRequest) -> Step:
        """The request's own queue, then ANY's, then the defaults; a step made by `only_for`
        is passed by (left queued) when its predicate refuses the request."""

        def takes(step: Step) -> bool:
            return step.when is None or step.when(request)

        with self._lock:
            for key in (credential, ANY):
                queue = self._scripts.get(key)
                if queue and takes(queue[0]):
                    return queue.popleft()
            for key in (credential, ANY):
                default = self._defaults.get(key)
                if default is not None and takes(default):
                    return default
            return success()

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids):016d}"


def _route_known(method: str, route: str) -> str | None:
    if method == "POST" and route in ("/v1/messages", "/v1/messages/count_tokens"):
        return route
    if method == "GET" and (route == "/v1/models" or re.fullmatch(r"/v1/models/[^/]+", route)):
        return route
    return None


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
