"""Test kit for the HTTP server: a real `Server` on 127.0.0.1, raw HTTP over real sockets.

Responses are parsed by hand here (not with h11) so the tests check the bytes the server
really wrote, not what a lenient parser would make of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from kestrel.http import Handler, Request, Response, Server, ServerLimits

T = TypeVar("T")

# Tight deadlines keep the suite fast; tests that exercise one of them shrink it further.
FAST = ServerLimits(
    header_timeout=2.0,
    body_timeout=2.0,
    keepalive_timeout=5.0,
    shutdown_grace=2.0,
)

# No test should come near this; a deadlock fails the test instead of hanging the suite.
TEST_DEADLINE = 10.0


def run(coro: Coroutine[Any, Any, T], deadline: float = TEST_DEADLINE) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(deadline):
            return await coro

    return asyncio.run(bounded())


@asynccontextmanager
async def serving(
    handler: Handler,
    *,
    access_logger: logging.Logger | None = None,
    server_header: str = "kestrel-test",
    **limits: Any,
) -> AsyncIterator[Server]:
    server = Server(handler, limits=replace(FAST, **limits), access_logger=access_logger,
                    server_header=server_header)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.shutdown()


def request(method: str = "GET", path: str = "/", headers: list[tuple[str, str]] | None = None,
            body: bytes = b"", *, length: bool = True) -> bytes:
    """A raw HTTP/1.1 request; Content-Length is added for a non-empty body unless told."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in (headers or [])]
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*pieces: bytes) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces if piece)
    return out + b"0\r\n\r\n"


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool  # the body's framing ended properly (terminating chunk, full length)
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def names(self) -> list[str]:
        return [key for key, _ in self.headers]


class Client:
    """One raw TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False, within: float = 5.0) -> RawResponse:
        async with asyncio.timeout(within):
            return await read_response(self.reader, head=head)

    async def closed_by_server(self, within: float = 3.0) -> bool:
        """True if the server closes (EOF or reset) within `within` s, with no more bytes."""
        try:
            async with asyncio.timeout(within):
                rest = await self.reader.read()
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        assert rest == b"", f"unexpected bytes before close: {rest[:200]!r}"
        return True

    async def close(self) -> None:
        self.writer.close()
        with suppress(OSError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> RawResponse:
    raw_head = await reader.readuntil(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    assert version == "HTTP/1.1", lines[0]
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
    response = RawResponse(int(status), reason, headers, b"", complete=True)
    if head or response.status in (204, 304) or response.status < 200:
        return response
    if (length := response.header("content-length")) is not None:
        try:
            response.body = await reader.readexactly(int(length))
        except asyncio.IncompleteReadError as exc:
            response.body, response.complete = exc.partial, False
        return response
    if response.header("transfer-encoding") == "chunked":
        try:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return response
                data = await reader.readexactly(size + 2)
                assert data.endswith(b"\r\n")
                response.chunks.append(data[:-2])
                response.body += data[:-2]
        except (asyncio.IncompleteReadError, ConnectionError):
            response.complete = False
            return response
    response.body = await reader.read()
    return response


async def echo(request: Request) -> Response:
    """Answers with what it got: the body, and what it saw in headers the tests care about."""
    body = await request.body()
    return Response(200, [("content-type", "application/octet-stream"),
                          ("x-seen-method", request.method),
                          ("x-seen-request-id", request.request_id)], body)


class ListHandler(logging.Handler):
    """Collects log records for assertions."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured(name: str) -> Iterator[ListHandler]:
    logger = logging.getLogger(name)
    handler = ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
