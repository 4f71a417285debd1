"""A fake Anthropic API: a real HTTP/1.1 server on 127.0.0.1 speaking Anthropic's wire format.

It runs on stdlib asyncio + h11 in a background thread with its own event loop, so synchronous
tests and tests running their own loop (`asyncio.run`) can both talk to it:

    with FakeAnthropic() as up:
        up.script("sk-ant-a", [error(429, "rate_limit_error", "slow down",
                                     headers={"retry-after": "30"}), success()])
        client = anthropic.Anthropic(base_url=up.base_url, api_key="sk-ant-a", max_retries=0)
        ...
        assert up.requests[-1].credential == "sk-ant-a"

Behaviour is scripted per credential (the `x-api-key` header, else an `Authorization: Bearer`
token): `script()` queues steps, one consumed per request (any endpoint), then the credential's
default applies (`set_default()`), else success. The `ANY` credential's queue serves requests
whose own queue is empty.

Routes: `POST /v1/messages` (JSON message, or an SSE stream when the body says `"stream": true`),
`POST /v1/messages/count_tokens`, `GET /v1/models`, `GET /v1/models/{id}`; anything else is a
404 in Anthropic's error shape. The query string is ignored for routing (Claude Code sends
`?beta=true`) but kept in the record.

Canned replies are deterministic functions of the request: `input_tokens = len(body) // 10`
(at least 1), `output_tokens = generated characters // 4` (at least 1); a `thinking` block when
the request enables thinking; a `tool_use` block (input streamed as `input_json_delta` pieces)
when the request has `tools` and the last user text contains "use tool" (one `tool_use` block per
tool, in parallel, when it contains "use all tools"). The usage each
request was answered with is recorded, so tests can check that logs add up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import gzip as gzip_lib
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

ANY = "*"
"""A credential whose script serves requests whose own credential has nothing queued."""

DEFAULT_MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
)
DEFAULT_MODEL = "claude-sonnet-4-6"

DEFAULT_TEXT = "Hello from the fake Anthropic upstream. Ünïcödé survives chunking: ✓."
TOOL_PREAMBLE = "I'll use the tool for that."
THINKING_TEXT = "The user wants a reply. Let me think about it step by step."

# Status Anthropic uses for each error type, for steps that only name a type.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_READ_SIZE = 65536


# --- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One scripted behaviour. Build them with the functions below rather than by hand."""

    kind: str
    status: int = 200
    error_type: str | None = None
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    n_events: int = 0
    delay: float = 0.0
    gzip: bool = False
    text: str | None = None
    usage: tuple[tuple[str, int], ...] = ()
    event_interval: float = 0.0
    chunk_size: int | None = None
    retry_after: int | None = None


def success(
    *,
    text: str | None = None,
    usage: Mapping[str, int] | None = None,
    headers: Mapping[str, str] | None = None,
    gzip: bool = False,
    event_interval: float = 0.0,
    chunk_size: int | None = None,
) -> Step:
    """The canned reply (JSON or SSE, as the request asks).

    `text` replaces the text block; `usage` overrides usage fields (e.g. cache tokens);
    `gzip` compresses a JSON body when the request accepts gzip; `event_interval` paces the SSE
    events; `chunk_size` writes the stream in pieces of that many bytes, splitting events.
    """
    return Step(
        "success",
        text=text,
        usage=tuple((usage or {}).items()),
        headers=tuple((headers or {}).items()),
        gzip=gzip,
        event_interval=event_interval,
        chunk_size=chunk_size,
    )


def error(
    status: int,
    type: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    gzip: bool = False,
) -> Step:
    """An Anthropic error answer: `{"type": "error", "error": {...}, "request_id": ...}`."""
    return Step(
        "error",
        status=status,
        error_type=type,
        message=message,
        headers=tuple((headers or {}).items()),
        gzip=gzip,
    )


def rate_limited(retry_after: int = 30, *, message: str | None = None) -> Step:
    """A 429 as Anthropic sends it for a per-minute window: `retry-after` and the exhausted
    `anthropic-ratelimit-requests-*` headers (reset in RFC 3339)."""
    return Step(
        "rate_limited",
        status=429,
        error_type="rate_limit_error",
        message=message
        or "This request would exceed the rate limit for your organization of 50 requests "
        "per minute.",
        retry_after=retry_after,
    )


def overloaded() -> Step:
    return error(529, "overloaded_error", "Overloaded")


def stream_error_after(
    n_events: int, type: str = "overloaded_error", message: str | None = None
) -> Step:
    """A 200 stream that sends `n_events` events, then `event: error`, then ends cleanly.
    A non-streaming request gets the error as a plain error answer instead."""
    return Step(
        "stream_error",
        status=ERROR_STATUS.get(type, 500),
        error_type=type,
        message=message or ("Overloaded" if type == "overloaded_error" else "Internal error"),
        n_events=n_events,
    )


def hang() -> Step:
    """Read the request, never answer (until the client goes away or the server stops)."""
    return Step("hang")


def reset_before_headers() -> Step:
    """Read the request, then reset the connection (TCP RST) without a byte of answer."""
    return Step("reset")


def cut_stream_after(n_events: int) -> Step:
    """Send `n_events` events, then close the connection without ending the chunked body.
    A non-streaming request gets half its JSON body, then the close."""
    return Step("cut", n_events=n_events)


def stall_stream_after(n_events: int) -> Step:
    """Send `n_events` events, then nothing more, forever: for client-disconnect tests."""
    return Step("stall", n_events=n_events)


def delay(seconds: float, then: Step | None = None) -> Step:
    """Wait `seconds` before answering with `then` (default: success)."""
    return replace(then if then is not None else success(), delay=seconds)


def garbage() -> Step:
    """Answer with bytes that are not HTTP, then close."""
    return Step("garbage")


# --- records --------------------------------------------------------------------------------


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

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Answer:
    """What to send for one request, decided (and recorded) before sending starts."""

    step: Step
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    events: list[bytes] = field(default_factory=list)
    stream: bool = False
    usage: dict[str, int] | None = None


# --- the server -----------------------------------------------------------------------------


class FakeAnthropic:
    def __init__(
        self,
        *,
        valid_credentials: Iterable[str] | None = None,
        models: Iterable[tuple[str, str, str]] = DEFAULT_MODELS,
    ) -> None:
        self.valid_credentials = set(valid_credentials) if valid_credentials is not None else None
        self.models = list(models)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._scripts: dict[str, deque[Step]] = {}
        self._defaults: dict[str, Step] = {}
        self._requests: list[RecordedRequest] = []
        self._disconnects = 0
        self._in_flight = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, int]] = []
        self._ids = itertools.count(1)
        self.errors: list[BaseException] = []
        """Unexpected exceptions inside the server; a test may assert it stays empty."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # lifecycle

    @property
    def base_url(self) -> str:
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
        server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            # On 3.11 Server.close() leaves accepted connections open: cancel them ourselves.
            tasks = list(self._conn_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
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
            self._conn_tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    await _send(
                        conn, writer, h11.InformationalResponse(status_code=100, headers=[])
                    )
                conn.receive_data(await reader.read(_READ_SIZE))
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
        respond = asyncio.create_task(self._respond(conn, writer, answer))
        watch = asyncio.create_task(_watch_for_close(reader, conn))
        try:
            await asyncio.wait({respond, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not respond.done():
                respond.cancel()
            watch.cancel()
            await asyncio.gather(respond, watch, return_exceptions=True)
            self._add_in_flight(-1)
        # A client leaving is a "disconnect" only when it was not our own doing (cut, reset...).
        ours = answer.step.kind in ("reset", "garbage", "cut")
        if respond.cancelled():  # the watcher saw the client leave first
            if not ours:
                self._count_disconnect()
            return False
        exc = respond.exception()
        if isinstance(exc, ConnectionError):
            if not ours:
                self._count_disconnect()
            return False
        if exc is not None:
            raise exc
        return respond.result()

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

    def _decide(self, request: h11.Request, body: bytes) -> _Answer:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        lookup = dict(headers)
        credential = lookup.get("x-api-key")
        if credential is None:
            auth = lookup.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                credential = auth[7:].strip()
        with self._lock:
            request_id = f"req_fake{next(self._ids):016d}"
        route = urlsplit(target).path
        parsed: dict[str, Any] = {}
        answer: _Answer
        if credential is None or (
            self.valid_credentials is not None and credential not in self.valid_credentials
        ):
            message = "x-api-key header is required" if credential is None else "invalid x-api-key"
            answer = self._error_answer(
                error(401, "authentication_error", message), request_id, "auth_error"
            )
        elif _route_known(method, route) is None:
            answer = self._error_answer(
                error(404, "not_found_error", f"Not found: {method} {route}"),
                request_id,
                "not_found",
            )
        elif method == "POST" and not isinstance(parsed := _parse_json(body), dict):
            answer = self._error_answer(
                error(400, "invalid_request_error", "The request body is not valid JSON."),
                request_id,
                "bad_request",
            )
        else:
            step = self._next_step(credential)
            answer = self._plan(step, method, route, target, parsed, body, lookup, request_id)
        usage = answer.usage
        record = RecordedRequest(
            method=method,
            path=target,
            headers=headers,
            body=body,
            credential=credential,
            step=answer.step.kind,
            request_id=request_id,
            usage=usage,
        )
        with self._changed:
            self._requests.append(record)
            self._changed.notify_all()
        return answer

    def _next_step(self, credential: str) -> Step:
        with self._lock:
            for key in (credential, ANY):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
            return self._defaults.get(credential) or self._defaults.get(ANY) or success()

    def _plan(
        self,
        step: Step,
        method: str,
        route: str,
        target: str,
        req: dict[str, Any],
        body: bytes,
        headers: Mapping[str, str],
        request_id: str,
    ) -> _Answer:
        kind = step.kind
        accepts_gzip = "gzip" in headers.get("accept-encoding", "").lower()
        if kind in ("error", "rate_limited") or (kind == "stream_error" and not req.get("stream")):
            return self._error_answer(step, request_id, kind, accepts_gzip)
        if kind in ("hang", "reset", "garbage"):
            return _Answer(step)
        if route == "/v1/messages":
            if req.get("stream") is True:
                return self._stream_answer(step, req, body, request_id)
            message = self._message(step, req, body)
            answer = self._json_answer(step, 200, message, request_id, accepts_gzip)
            answer.usage = dict(message["usage"])
            return answer
        elif route == "/v1/messages/count_tokens":
            payload = {"input_tokens": _input_tokens(body)}
        elif route == "/v1/models":
            payload = self._model_list(target)
        else:
            model = self._model(route.rsplit("/", 1)[-1])
            if model is None:
                return self._error_answer(
                    error(404, "not_found_error", f"model: {route.rsplit('/', 1)[-1]}"),
                    request_id,
                    kind,
                )
            payload = model
        return self._json_answer(step, 200, payload, request_id, accepts_gzip)

    # --- building answers -------------------------------------------------------------------

    def _common_headers(self, request_id: str) -> list[tuple[str, str]]:
        reset = datetime.fromtimestamp(time.time() + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = [
            ("date", email.utils.formatdate(usegmt=True)),
            ("request-id", request_id),
            ("anthropic-organization-id", "00000000-0000-4000-8000-000000000000"),
        ]
        for window, limit in (("requests", 50), ("input-tokens", 40000), ("output-tokens", 8000)):
            headers += [
                (f"anthropic-ratelimit-{window}-limit", str(limit)),
                (f"anthropic-ratelimit-{window}-remaining", str(limit - 1)),
                (f"anthropic-ratelimit-{window}-reset", reset),
            ]
        return headers

    def _json_answer(
        self,
        step: Step,
        status: int,
        payload: object,
        request_id: str,
        accepts_gzip: bool,
        extra: Iterable[tuple[str, str]] = (),
    ) -> _Answer:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = self._common_headers(request_id)
        headers.append(("content-type", "application/json"))
        if step.gzip and accepts_gzip:
            body = gzip_lib.compress(body)
            headers.append(("content-encoding", "gzip"))
        headers.append(("content-length", str(len(body))))
        headers = _merge(headers, [*extra, *step.headers])
        return _Answer(step, status=status, headers=headers, body=body)

    def _error_answer(
        self, step: Step, request_id: str, kind: str, accepts_gzip: bool = False
    ) -> _Answer:
        payload = {
            "type": "error",
            "error": {"type": step.error_type, "message": step.message},
            "request_id": request_id,
        }
        extra: list[tuple[str, str]] = []
        if step.retry_after is not None:
            reset = datetime.fromtimestamp(time.time() + step.retry_after, UTC)
            extra = [
                ("retry-after", str(step.retry_after)),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", reset.strftime("%Y-%m-%dT%H:%M:%SZ")),
            ]
        answer = self._json_answer(step, step.status, payload, request_id, accepts_gzip, extra)
        answer.step = Step(kind) if kind != step.kind else step
        return answer

    def _message(self, step: Step, req: dict[str, Any], body: bytes) -> dict[str, Any]:
        blocks, stop_reason = _reply_blocks(step, req, body, self._next_id)
        return {
            "id": self._next_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "model": req.get("model") or DEFAULT_MODEL,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": _usage(step, body, blocks),
        }

    def _stream_answer(
        self, step: Step, req: dict[str, Any], body: bytes, request_id: str
    ) -> _Answer:
        message = self._message(step, req, body)
        usage = message["usage"]
        start_usage = {**usage, "output_tokens": 1}  # message_start's count is provisional
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        **message,
                        "content": [],
                        "stop_reason": None,
                        "usage": start_usage,
                    },
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(message["content"]):
            events += _block_events(index, block)
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": usage,
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        if step.kind in ("stream_error", "cut", "stall"):
            events = events[: step.n_events]
        if step.kind == "stream_error":
            events.append(
                (
                    "error",
                    {"type": "error", "error": {"type": step.error_type, "message": step.message}},
                )
            )
        sent_usage: dict[str, int] | None = None  # what the client was told, not what was planned
        for name, data in events:
            if name == "message_start":
                sent_usage = dict(data["message"]["usage"])
            elif name == "message_delta" and sent_usage is not None:
                sent_usage.update(data["usage"])
        wire = [_sse(name, data) for name, data in events]
        headers = self._common_headers(request_id) + [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ]
        return _Answer(
            step, headers=_merge(headers, step.headers), events=wire, stream=True, usage=sent_usage
        )

    def _model_list(self, target: str) -> dict[str, Any]:
        query = parse_qs(urlsplit(target).query)
        items = [self._model_object(m) for m in self.models]
        after, before = query.get("after_id", [None])[0], query.get("before_id", [None])[0]
        ids = [m["id"] for m in items]
        if after in ids:
            items = items[ids.index(after) + 1 :]
        elif before in ids:
            items = items[: ids.index(before)]
        try:
            limit = max(1, min(1000, int(query.get("limit", ["20"])[0])))
        except ValueError:
            limit = 20
        page = items[:limit]
        return {
            "data": page,
            "has_more": len(items) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }

    def _model(self, model_id: str) -> dict[str, Any] | None:
        return next((self._model_object(m) for m in self.models if m[0] == model_id), None)

    @staticmethod
    def _model_object(model: tuple[str, str, str]) -> dict[str, Any]:
        model_id, name, created = model
        return {"type": "model", "id": model_id, "display_name": name, "created_at": created}

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids):016d}"

    # --- sending ----------------------------------------------------------------------------

    async def _respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, a: _Answer
    ) -> bool:
        step = a.step
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.kind == "hang":
            await asyncio.Event().wait()
        if step.kind == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:  # linger 0 turns the close into a RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if step.kind == "garbage":
            writer.write(b"\x16\x03\x01 this is not HTTP at all \xff\xfe\r\n\r\n")
            await writer.drain()
            return False
        await _send(conn, writer, h11.Response(status_code=a.status, headers=a.headers))
        if not a.stream:
            if step.kind in ("cut", "stall"):
                writer.write(a.body[: len(a.body) // 2])
                await writer.drain()
                if step.kind == "stall":
                    await asyncio.Event().wait()
                return False
            await _send(conn, writer, h11.Data(data=a.body))
            await _send(conn, writer, h11.EndOfMessage())
            return True
        for i, event in enumerate(a.events):
            if i and step.event_interval:
                await asyncio.sleep(step.event_interval)
            size = step.chunk_size or len(event)
            for start in range(0, len(event), size):
                await _send(conn, writer, h11.Data(data=event[start : start + size]))
        if step.kind == "stall":
            await asyncio.Event().wait()
        if step.kind == "cut":
            return False  # close without the last chunk: the body is visibly incomplete
        await _send(conn, writer, h11.EndOfMessage())
        return True


# --- helpers ----------------------------------------------------------------------------------


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
        await writer.drain()


async def _watch_for_close(reader: asyncio.StreamReader, conn: h11.Connection) -> None:
    """Returns when the client closed its side; bytes of a next request are kept for h11."""
    while True:
        data = await reader.read(_READ_SIZE)
        if not data:
            return
        conn.receive_data(data)


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


def _merge(
    headers: list[tuple[str, str]], extra: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Headers with `extra` replacing same-named ones (case-insensitively)."""
    extra = list(extra)
    names = {k.lower() for k, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra


def _sse(name: str, data: dict[str, Any]) -> bytes:
    if name == "ping":
        return b'event: ping\ndata: {"type": "ping"}\n\n'  # spaced, as Anthropic sends it
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {text}\n\n".encode()


def _input_tokens(body: bytes) -> int:
    return max(1, len(body) // 10)


def _usage(step: Step, body: bytes, blocks: list[dict[str, Any]]) -> dict[str, int]:
    generated = 0
    for block in blocks:
        if block["type"] == "text":
            generated += len(block["text"])
        elif block["type"] == "thinking":
            generated += len(block["thinking"])
        elif block["type"] == "tool_use":
            generated += len(json.dumps(block["input"]))
    usage = {
        "input_tokens": _input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": max(1, generated // 4),
    }
    usage.update(dict(step.usage))
    return usage


def _last_user_text(req: dict[str, Any]) -> str:
    messages = req.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                b.get("text", "")
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
        return ""
    return ""


def _fake_input(schema: object) -> dict[str, Any]:
    """A deterministic input that fits a tool's JSON schema well enough for tests."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or not props:
        return {"query": "kestrel"}
    values: dict[str, Any] = {}
    for name, spec in props.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("enum"), list) and spec["enum"]:
            values[name] = spec["enum"][0]
        elif kind == "integer":
            values[name] = 42
        elif kind == "number":
            values[name] = 4.5
        elif kind == "boolean":
            values[name] = True
        elif kind == "array":
            values[name] = ["a", "b"]
        elif kind == "object":
            values[name] = {}
        else:
            values[name] = f"fake {name}"
    return values


def _reply_blocks(
    step: Step, req: dict[str, Any], body: bytes, next_id: Callable[[str], str]
) -> tuple[list[dict[str, Any]], str]:
    blocks: list[dict[str, Any]] = []
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        signature = base64.b64encode(hashlib.sha256(body).digest() * 3).decode()
        blocks.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": signature})
    tools = req.get("tools")
    named = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)] \
        if isinstance(tools, list) else []
    asked = _last_user_text(req).lower()
    chosen = named if "use all tools" in asked else named[:1] if "use tool" in asked else []
    text = step.text if step.text is not None else (TOOL_PREAMBLE if chosen else DEFAULT_TEXT)
    blocks.append({"type": "text", "text": text})
    for tool in chosen:
        blocks.append(
            {
                "type": "tool_use",
                "id": next_id("toolu_fake"),
                "name": tool["name"],
                "input": _fake_input(tool.get("input_schema")),
            }
        )
    return blocks, "tool_use" if chosen else "end_turn"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    def delta(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})

    kind = block["type"]
    events: list[tuple[str, dict[str, Any]]] = []
    start: dict[str, Any]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for piece in re.findall(r"\s*\S+\s*", block["thinking"]) or [block["thinking"]]:
            events.append(delta({"type": "thinking_delta", "thinking": piece}))
        events.append(delta({"type": "signature_delta", "signature": block["signature"]}))
    elif kind == "text":
        start = {"type": "text", "text": ""}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for piece in re.findall(r"\s*\S+\s*", block["text"]) or [block["text"]]:
            events.append(delta({"type": "text_delta", "text": piece}))
    else:  # tool_use: input arrives as partial JSON strings, the first one empty
        start = {**block, "input": {}}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        raw = json.dumps(block["input"], ensure_ascii=False)
        for piece in ["", *_pieces(raw, 7)]:
            events.append(delta({"type": "input_json_delta", "partial_json": piece}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events
