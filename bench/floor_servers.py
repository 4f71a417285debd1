"""Bare servers that show what the dependencies cost without Kestrel around them.

    python3 bench/floor_servers.py raw --port P           # asyncio, no HTTP parsing at all
    python3 bench/floor_servers.py h11 --port P           # asyncio streams + h11, canned reply
    python3 bench/floor_servers.py h11-protocol --port P  # asyncio Protocol + h11, canned reply
    python3 bench/floor_servers.py proxy --port P --upstream http://127.0.0.1:U
        # asyncio streams + h11 on both sides, a keep-alive pool: the least a proxy in
        # Kestrel's design (one process, asyncio, h11) can cost
    python3 bench/floor_servers.py lean-proxy --port P --upstream http://127.0.0.1:U
        # the same with h11 on the client side only (the design's part); the upstream's
        # request is written and its answer parsed by hand, as Kestrel's own transport does

Each answers `POST /v1/messages` the way the mock does (the proxy relays the mock's answer,
streams included, without reading them). `floors.py` runs them under wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import h11

MESSAGE = (b'{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-6",'
           b'"content":[{"type":"text","text":"Hello! How can I help you today?"}],'
           b'"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":8,'
           b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":12}}')
HEADERS = [(b"content-type", b"application/json"), (b"request-id", b"req_floor")]
RAW_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nrequest-id: req_floor\r\n"
                b"content-length: " + str(len(MESSAGE)).encode() + b"\r\n\r\n" + MESSAGE)
READ_SIZE = 65536
# Response headers that are the hop's own business, never relayed (a Content-Length is kept:
# the body is relayed whole, so it stays true).
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})
_CONTENT_LENGTH = re.compile(rb"content-length: *(\d+)", re.I)


class RawServer(asyncio.Protocol):
    """Finds the end of each request by its Content-Length and writes a prebuilt answer."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            match = _CONTENT_LENGTH.search(self.buf, 0, end)
            length = int(match.group(1)) if match else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            assert self.transport is not None
            self.transport.write(RAW_RESPONSE)


class H11Protocol(asyncio.Protocol):
    """h11 on an asyncio Protocol (callbacks) instead of streams: what streams cost on top."""

    def __init__(self) -> None:
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.conn.receive_data(data)
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.EndOfMessage):
                self.transport.write(b"".join((
                    self.conn.send(h11.Response(status_code=200, headers=[
                        *HEADERS, (b"content-length", str(len(MESSAGE)).encode())])) or b"",
                    self.conn.send(h11.Data(data=MESSAGE)) or b"",
                    self.conn.send(h11.EndOfMessage()) or b"")))
                self.conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader
                        ) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(READ_SIZE)
            conn.receive_data(data)
            if not data and conn.their_state is not h11.DONE:
                return None
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        else:
            return None


async def serve_h11(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while await _read_request(conn, reader) is not None:
            writer.write(conn.send(h11.Response(status_code=200, headers=[
                *HEADERS, (b"content-length", str(len(MESSAGE)).encode())])) or b"")
            writer.write(conn.send(h11.Data(data=MESSAGE)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            conn.start_next_cycle()
    except (ConnectionError, h11.ProtocolError):
        pass
    finally:
        writer.close()


class Upstream:
    """A keep-alive pool for one origin: idle connections on a stack, O(1) in and out."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.authority = parts.netloc.encode()
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]] = (
            deque())

    async def acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]:
        if self.idle:
            return self.idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return reader, writer, h11.Connection(h11.CLIENT)


Relay = Callable[["Upstream", h11.Connection, asyncio.StreamWriter, h11.Request, bytes],
                Awaitable[None]]


async def serve_relay(upstream: Upstream, relay: Relay, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    """A client connection: read each request with h11, let `relay` answer it from upstream."""
    conn = h11.Connection(h11.SERVER)
    try:
        while (got := await _read_request(conn, reader)) is not None:
            await relay(upstream, conn, writer, *got)
            conn.start_next_cycle()
    except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError):
        pass
    finally:
        writer.close()


async def relay_h11(upstream: Upstream, conn: h11.Connection, writer: asyncio.StreamWriter,
                    request: h11.Request, body: bytes) -> None:
    """h11 on the upstream side too."""
    up_reader, up_writer, up = await upstream.acquire()
    headers = [(n, v) for n, v in request.headers if n not in (b"host", b"x-api-key")]
    up_writer.write(up.send(h11.Request(method=request.method, target=request.target,
                                        headers=[(b"host", upstream.authority),
                                                 *headers, (b"x-api-key", b"sk-floor")]))
                    or b"")
    up_writer.write(up.send(h11.Data(data=body)) or b"")
    up_writer.write(up.send(h11.EndOfMessage()) or b"")
    while True:
        event = up.next_event()
        if event is h11.NEED_DATA:
            up.receive_data(await up_reader.read(READ_SIZE))
            continue
        if isinstance(event, h11.Response):
            kept = [(n, v) for n, v in event.headers if n not in HOP_BY_HOP]
            writer.write(conn.send(h11.Response(status_code=event.status_code,
                                                headers=kept)) or b"")
        elif isinstance(event, h11.Data):
            writer.write(conn.send(h11.Data(data=event.data)) or b"")
            await writer.drain()
        elif isinstance(event, h11.EndOfMessage):
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            break
        else:
            raise ConnectionError("upstream closed")
    await writer.drain()
    up.start_next_cycle()
    upstream.idle.append((up_reader, up_writer, up))


async def _upstream_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The status and headers (names lower-cased) of an answer, parsed by hand."""
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n"))[:-4].split(b"\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return int(status_line.split(b" ", 2)[1]), headers


async def _upstream_body(reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]],
                         ) -> AsyncIterator[bytes]:
    """The answer's body as it arrives: Content-Length bytes, or chunk by chunk."""
    length = next((int(v) for n, v in headers if n == b"content-length"), None)
    if length is not None:
        yield await reader.readexactly(length)
        return
    while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
        yield (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")  # the end of the (empty) trailer section


async def relay_lean(upstream: Upstream, conn: h11.Connection, writer: asyncio.StreamWriter,
                     request: h11.Request, body: bytes) -> None:
    """The upstream's request written and its answer parsed by hand."""
    up_reader, up_writer, up = await upstream.acquire()
    head = [request.method + b" " + request.target + b" HTTP/1.1",
            b"host: " + upstream.authority]
    head += [n + b": " + v for n, v in request.headers
             if n not in (b"host", b"x-api-key", b"content-length") and n not in HOP_BY_HOP]
    head += [b"x-api-key: sk-floor", b"content-length: " + str(len(body)).encode()]
    up_writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    status, headers = await _upstream_head(up_reader)
    kept = [(n, v) for n, v in headers if n not in HOP_BY_HOP]
    writer.write(conn.send(h11.Response(status_code=status, headers=kept)) or b"")
    async for chunk in _upstream_body(up_reader, headers):
        writer.write(conn.send(h11.Data(data=chunk)) or b"")
        await writer.drain()
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    if (b"connection", b"close") in headers:
        up_writer.close()
    else:
        upstream.idle.append((up_reader, up_writer, up))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("raw", "h11", "h11-protocol", "proxy", "lean-proxy"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    if args.kind == "raw":
        server = await loop.create_server(RawServer, "127.0.0.1", args.port, backlog=4096)
    elif args.kind == "h11-protocol":
        server = await loop.create_server(H11Protocol, "127.0.0.1", args.port, backlog=4096)
    elif args.kind == "h11":
        server = await asyncio.start_server(serve_h11, "127.0.0.1", args.port, backlog=4096)
    else:
        upstream = Upstream(args.upstream)
        relay = relay_h11 if args.kind == "proxy" else relay_lean
        server = await asyncio.start_server(
            lambda r, w: serve_relay(upstream, relay, r, w), "127.0.0.1", args.port,
            backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # Started in the background by a shell without job control, a process inherits SIGINT
    # ignored, and Python then leaves it so: the bench's SIGINT, which ends a floor counted
    # under valgrind, would never arrive.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
