"""Raw HTTP/1.1 over real sockets, for any server under test (in-process or a real process).

Responses are parsed by hand here (not with h11) so the tests check the bytes the server
really wrote, not what a lenient parser would make of them. `exchange()` is the fuzzer's view
of one connection: send some bytes, collect whatever comes back, and find out whether the
server lets go of the connection once the client is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"

# No test should come near this; a deadlock fails the test instead of hanging the suite.
TEST_DEADLINE = 10.0


def run(coro: Coroutine[Any, Any, T], deadline: float = TEST_DEADLINE) -> T:
    """Run `coro` on a fresh event loop, from synchronous test code; a deadlock past
    `deadline` seconds fails the test instead of hanging the suite."""
    async def bounded() -> T:
        async with asyncio.timeout(deadline):
            return await coro

    return asyncio.run(bounded())


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
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
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


async def parse_responses(data: bytes, *, heads: bool = False) -> list[RawResponse]:
    """Every response in `data`, which must be nothing but whole, well-formed responses.

    Raises AssertionError naming the offending bytes otherwise: a server that writes a
    truncated or garbled response is as broken as one that crashes. With `heads` (some of the
    requests may have been HEAD), a response whose body bytes are missing is taken for an
    answer to HEAD when the next response, or the end, follows its head at once.
    """
    responses: list[RawResponse] = []
    rest = data
    while rest:
        head_end = rest.find(b"\r\n\r\n")
        after = rest[head_end + 4:]
        bodiless = heads and head_end >= 0 and (not after or after.startswith(b"HTTP/1.1 "))
        reader = asyncio.StreamReader()
        reader.feed_data(rest)
        reader.feed_eof()
        try:
            response = await read_response(reader, head=bodiless)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                AssertionError) as exc:
            raise AssertionError(f"unparsable bytes after {len(responses)} response(s) "
                                 f"({type(exc).__name__}): {rest[:300]!r}") from None
        assert response.complete, f"response {len(responses) + 1} is cut short: {rest[:300]!r}"
        responses.append(response)
        rest = await reader.read()
    return responses


@dataclass
class Exchange:
    """What one connection saw: the responses, and who ended it when."""

    responses: list[RawResponse]
    closed_by_server: bool
    """The server closed the connection by itself, before the client said it was done."""
    closed_after_eof: bool
    """Only meaningful when not `closed_by_server`: the server let go of the connection
    within the allowed time once the client half-closed (sent EOF)."""

    @property
    def statuses(self) -> list[int]:
        return [response.status for response in self.responses]

    @property
    def released(self) -> bool:
        """The connection did not hang: the server ended it, by itself or after the client."""
        return self.closed_by_server or self.closed_after_eof


MAX_COLLECT = 8 * 1024 * 1024


async def _collect(reader: asyncio.StreamReader, into: bytearray, quiet: float) -> bool:
    """Read into `into` until the server closes (True) or sends nothing for `quiet` s."""
    while len(into) < MAX_COLLECT:
        try:
            async with asyncio.timeout(quiet):
                data = await reader.read(64 * 1024)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        if not data:
            return True
        into += data
    raise AssertionError(f"the server sent more than {MAX_COLLECT} bytes")


async def exchange(port: int, data: bytes, *, quiet: float = 0.2,
                   close_within: float = 3.0) -> Exchange:
    """Send `data` on a new connection and collect what comes back.

    Reading stops when the server closes, or after `quiet` seconds of silence: then the
    server is either idle between requests or waiting for the rest of one, so the client
    half-closes (EOF) and the server must let go within `close_within` seconds. That is how a
    fuzz case ends without waiting out the server's own header, body and keep-alive
    timeouts: whatever state the connection is in, the end of its input must end it promptly.

    A half-close counts as leaving for Kestrel (its disconnect watcher cancels a response
    being made), so `quiet` must outlast the responses the bytes ask for.
    """
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    received = bytearray()
    closed_after_eof = False
    try:
        try:
            writer.write(data)
            async with asyncio.timeout(close_within):
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the server answered and closed before taking it all (a 431, a 413)
        closed_by_server = await _collect(reader, received, quiet)
        if not closed_by_server:
            with suppress(OSError):
                writer.write_eof()
            try:
                async with asyncio.timeout(close_within):
                    closed_after_eof = await _collect(reader, received, close_within + 1)
            except TimeoutError:
                closed_after_eof = False
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()
    responses = await parse_responses(bytes(received), heads=b"HEAD " in data)
    return Exchange(responses, closed_by_server, closed_after_eof)
