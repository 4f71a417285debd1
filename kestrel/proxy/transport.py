"""Kestrel's upstream HTTP/1.1 transport: keep-alive connections on asyncio streams.

httpx stays the upstream client's vocabulary: its URLs, timeouts and error tree, and for the
OAuth token client its `Request` and `Response` too (`handle_async_request`). Its default
transport, httpcore on anyio, cost about 2 ms of CPU per request on the benchmark machine:
its pool polls every pooled socket on every request and close, so the cost grew with the
number of open streams (see bench/RESULTS.md). This transport does the one thing Kestrel needs:
HTTP/1.1 to a handful of origins, a LIFO stack of idle connections per origin, no cap on busy
ones (each stream holds its connection for its whole life).

The proxy itself calls `send`, which answers with an `UpstreamResponse`: the head as it came
and the body as it is read. httpx's `Request` and `Response` around the same bytes (header
objects built and decoded, two generators per chunk) were a sixth of a proxied request's CPU.

Errors leave as httpx's own exception types, which the forwarder classifies: `ConnectError` /
`ConnectTimeout` (no connection), `ProxyFailed` (an `httpx.ProxyError`: the proxy could not be
reached, refused the tunnel or the login), `ReadTimeout`, `RemoteProtocolError` (the bytes were
not a response, or the connection ended early) and `ReadError` / `WriteError` (the socket
failed).

Through a proxy (kestrel/egress.py chooses which): an HTTP proxy gets CONNECT for an https
origin, then TLS to the origin inside the tunnel, and absolute-form requests for a plain-http
one; a SOCKS5 proxy gets its handshake (kestrel/proxy/socks5.py), then the same as a direct
connection. Idle connections are pooled per origin and proxy, so accounts behind different
proxies never share one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import httpx

from kestrel.egress import PROXY_EXTENSION, EnvProxies, Proxy
from kestrel.proxy import socks5
from kestrel.proxy.codings import ACCEPT_ENCODING, Decoder, UndecodableBody, content_decoder
from kestrel.proxy.http1 import (
    BY_LENGTH,
    CHUNKED,
    MAX_HEAD_BYTES,
    NO_BODY,
    ChunkedDecoder,
    MalformedResponse,
    ResponseHead,
    parse_head,
)

# What one read asks for: asyncio's own StreamReader buffer size.
READ_SIZE = 64 * 1024
# Idle connections kept per origin. Above it a finished response's connection is closed; the
# number only needs to cover the requests that start together after a burst.
MAX_IDLE_PER_ORIGIN = 100
# An idle connection older than this is closed rather than reused: servers and load balancers
# drop idle connections after tens of seconds (Cloudflare after about 100 s, nginx after 75 s),
# and a request sent just as the other side closes fails for no fault of the account.
IDLE_SECONDS = 30.0

# scheme, host, port, and the proxy the connection goes through (None: direct)
Origin = tuple[bytes, bytes, int, Proxy | None]


class Destination(NamedTuple):
    """Where a request goes: the parts of its URL the transport reads, worked out once.
    `httpx.URL` works each of them out anew when asked (about 17,000 instructions a request,
    for a URL that is the same for every request to an account), so the forwarder keeps one
    of these per URL (`destination`)."""

    scheme: str
    host: str
    netloc: bytes
    raw_path: bytes  # the path and query, as the request line carries them
    raw_scheme: bytes
    raw_host: bytes
    port: int  # the scheme's default port when the URL names none

    @classmethod
    def of(cls, url: httpx.URL) -> Destination:
        raw_scheme = url.raw_scheme
        return cls(url.scheme, url.host, url.netloc, url.raw_path, raw_scheme,
                   url.raw_host, url.port or (443 if raw_scheme == b"https" else 80))


def destination(url: str) -> Destination:
    """The destination of a URL given as text; raises `httpx.InvalidURL`."""
    return Destination.of(httpx.URL(url))


# No proxy from the environment: every origin is reached directly.
DIRECT = EnvProxies()
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _Connection:
    """One socket to an origin, with the read deadline of whatever is being read from it.

    The deadline is a single timer per connection, pushed forward by each read, instead of an
    `asyncio.timeout()` around every read: a stream relays thousands of small reads a second,
    and a timeout context per read was a quarter of the CPU a stream cost.
    """

    __slots__ = ("reader", "writer", "idle_since", "timed_out", "_deadline", "_timer", "_loop",
                 "_socket")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 quick_ack: bool = False) -> None:
        self.reader = reader
        self.writer = writer
        self._socket = writer.get_extra_info("socket") if quick_ack and QUICKACK else None
        self.idle_since = 0.0
        self.timed_out = False
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    async def read(self, operation: Awaitable[bytes], patience: float | None) -> bytes:
        """Await one read; `patience` seconds without it completing, the connection is aborted
        and `httpx.ReadTimeout` raised. Socket errors become `httpx.ReadError`."""
        if patience is not None:
            self._deadline = self._loop.time() + patience
            if self._timer is None:
                self._timer = self._loop.call_at(self._deadline, self._expire)
        if self._socket is not None:
            self._ack_quickly()
        try:
            data = await operation
        except OSError as exc:  # resets included (ConnectionError is an OSError)
            self.close()
            if self.timed_out:
                raise httpx.ReadTimeout("the upstream went silent") from None
            raise httpx.ReadError(f"reading from the upstream failed: {type(exc).__name__}"
                                  ) from None
        except asyncio.IncompleteReadError:
            if self.timed_out:
                raise httpx.ReadTimeout("the upstream went silent") from None
            raise
        finally:
            self._deadline = None
        if self.timed_out:
            raise httpx.ReadTimeout("the upstream went silent")
        return data

    def _ack_quickly(self) -> None:
        """Acknowledge what arrives at once instead of up to 40 ms later. Through a proxy that
        leaves Nagle's algorithm on (tinyproxy, microsocks do), the proxy holds the next piece
        of an answer until the last one is acknowledged: with the receiver's delayed ACK, 40 ms
        a response. Linux resets the mode as it pleases, so it is asked for before each read."""
        sock = self._socket
        try:
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        except OSError:
            self._socket = None

    def _expire(self) -> None:
        self._timer = None
        if self._deadline is None:
            return  # nothing is being read: the next read arms the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        # Aborting ends the pending read with EOF, which `read` reports as a timeout.
        self.timed_out = True
        self.writer.transport.abort()

    def reusable(self, now: float) -> bool:
        # An idle socket the server closed has already delivered its EOF to the reader: the
        # event loop keeps reading idle connections, so no poll is needed to find out.
        return (not self.writer.is_closing() and not self.reader.at_eof()
                and now - self.idle_since < IDLE_SECONDS)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.writer.close()


class UpstreamTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` for plain and TLS HTTP/1.1 with keep-alive.

    Timeouts come from the request's `timeout` extension when it has one (httpx clients set
    it), else from the defaults given here; `read` bounds every single read, so a stream may
    last as long as its events keep coming.
    """

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 ssl_context: ssl.SSLContext | None = None, egress: EnvProxies = DIRECT,
                 ca_bundle: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`egress`: the environment's proxies, for requests whose account has none of its
        own; `ca_bundle`: a PEM file of certificates to trust besides the default ones."""
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl_context = ssl_context
        self._egress = egress
        self._ca_bundle = ca_bundle
        self._clock = clock
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    async def send(self, method: str, url: Destination, headers: list[tuple[bytes, bytes]],
                   body: bytes, proxy: Proxy | None = None) -> UpstreamResponse:
        """One request with the transport's timeouts; `headers` without `host`, framing or
        `accept-encoding`, which are added here. `proxy`: the account's own (None: the
        environment's, if any). Raises httpx's transport errors."""
        fields = [(b"host", url.netloc), *headers, (b"accept-encoding", ACCEPT_ENCODING)]
        if body or method != "GET":
            fields.append((b"content-length", b"%d" % len(body)))
        head, stream = await self._round_trip(url, proxy, method, fields, body,
                                              self._connect_timeout, self._read_timeout)
        try:
            decoder = content_decoder(head.codings)
        except UndecodableBody as exc:
            await stream.aclose()
            raise httpx.RemoteProtocolError(str(exc)) from None
        return UpstreamResponse(head.status, head.headers, stream, decoder)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's transport interface, for the OAuth token client: its `Request` carries
        `host` and framing already, and its `Response` undoes content codings itself."""
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        fields = list(request.headers.raw)
        if not any(name.lower() == b"accept-encoding" for name, _ in fields):
            fields.append((b"accept-encoding", ACCEPT_ENCODING))
        body = await request.aread()
        if body and "content-length" not in request.headers:
            fields.append((b"content-length", b"%d" % len(body)))
        head, stream = await self._round_trip(
            Destination.of(request.url), request.extensions.get(PROXY_EXTENSION),
            request.method, fields, body,
            timeouts.get("connect", self._connect_timeout),
            timeouts.get("read", self._read_timeout))
        return httpx.Response(head.status, headers=head.headers, stream=stream,
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": head.reason})

    async def _round_trip(self, url: Destination, proxy: Proxy | None, method: str,
                          fields: list[tuple[bytes, bytes]], body: bytes,
                          connect_timeout: float | None, read_timeout: float | None
                          ) -> tuple[ResponseHead, _Body]:
        """Send the request on a pooled or new connection, through `proxy` (None: the
        environment's, if any); the answer's head and its body."""
        route = proxy or self._egress.for_origin(url.scheme, url.host)
        payload = _request_bytes(method, _target(url, route, fields), fields, body)
        origin: Origin = (url.raw_scheme, url.raw_host, url.port, route)
        connection = self._idle_connection(origin)
        if connection is not None:
            try:
                head = await self._exchange(connection, payload, method, read_timeout)
            except _NotAnswered:
                # The server closed this idle connection as we reused it; it never saw the
                # request, so a fresh connection may send it without sending it twice.
                # (`_exchange` closed the connection already, as on any failure.)
                connection = None
        if connection is None:
            connection = await self._connect(origin, connect_timeout)
            try:
                head = await self._exchange(connection, payload, method, read_timeout)
            except _NotAnswered:
                raise httpx.RemoteProtocolError(
                    "the upstream closed the connection without answering") from None
        stream = _Body(self, origin, connection, head, read_timeout)
        if head.status == 407 and route is not None and _absolute_form(url, route):
            # The HTTP proxy answered for the plain-http origin: it refused the login.
            await stream.aclose()
            raise ProxyFailed(route, "auth", "it answered 407")
        return head, stream

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def release(self, origin: Origin, connection: _Connection) -> None:
        """Take back a connection whose response was read to its end."""
        idle = self._idle.setdefault(origin, [])
        if self._closed or len(idle) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = self._clock()
        idle.append(connection)

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = self._clock()
        while idle:
            connection = idle.pop()  # LIFO: the warmest connection, least likely closed
            if connection.reusable(now):
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, patience: float | None) -> _Connection:
        scheme, host, port, route = origin
        tls = self._tls() if scheme == b"https" else None
        hostname = host.decode("ascii")
        if route is not None:
            return await self._connect_through(route, hostname, port, tls, patience)
        try:
            async with asyncio.timeout(patience):
                reader, writer = await asyncio.open_connection(
                    hostname, port, ssl=tls, server_hostname=hostname if tls else None,
                    limit=MAX_HEAD_BYTES)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {hostname}:{port} in time") from None
        except (OSError, ssl.SSLError, UnicodeError) as exc:  # UnicodeError: a name the
            # resolver refuses (an empty or overlong label), found only when connecting
            raise httpx.ConnectError(f"cannot connect to {hostname}:{port}: "
                                     f"{type(exc).__name__}") from None
        return _Connection(reader, writer)

    async def _connect_through(self, proxy: Proxy, host: str, port: int,
                               tls: ssl.SSLContext | None, patience: float | None
                               ) -> _Connection:
        """A connection to `host:port` through `proxy`, TLS to the origin inside the tunnel
        when `tls`; the whole of it within `patience` seconds."""
        stage = "unreachable"
        try:
            async with asyncio.timeout(patience):
                outer = self._tls() if proxy.scheme == "https" else None
                reader, writer = await asyncio.open_connection(
                    proxy.host, proxy.port, ssl=outer,
                    server_hostname=proxy.host if outer else None, limit=MAX_HEAD_BYTES)
                stage = "refused"
                try:
                    if proxy.is_socks:
                        await _socks_handshake(reader, writer, proxy, host, port)
                    elif tls is not None:
                        await _http_tunnel(reader, writer, proxy, host, port)
                    stage = "tls"
                    if tls is not None:
                        await writer.start_tls(tls, server_hostname=host)
                except BaseException:
                    writer.close()
                    raise
        except TimeoutError:
            if stage == "tls":
                raise httpx.ConnectTimeout(f"no TLS connection to {host}:{port} through "
                                           f"{proxy.label} in time") from None
            raise ProxyFailed(proxy, stage, "no answer in time") from None
        except socks5.SocksError as exc:
            raise ProxyFailed(proxy, "auth" if exc.auth else "refused", str(exc)) from None
        except _TunnelRefused as exc:
            # 407 is the proxy asking for a login; tinyproxy answers a CONNECT with 401.
            raise ProxyFailed(proxy, "auth" if exc.status in (401, 407) else "refused",
                              f"it answered {exc.status} to CONNECT") from None
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, UnicodeError) as exc:
            if stage == "tls":  # the proxy did its part: the origin's TLS failed
                raise httpx.ConnectError(f"cannot connect to {host}:{port} through "
                                         f"{proxy.label}: {type(exc).__name__}") from None
            raise ProxyFailed(proxy, stage, type(exc).__name__) from None
        return _Connection(reader, writer, quick_ack=True)

    def _tls(self) -> ssl.SSLContext:
        # Loading the CA bundle takes tens of milliseconds: only when an https origin is used.
        if self._ssl_context is None:
            context = httpx.create_ssl_context()
            if self._ca_bundle is not None:
                context.load_verify_locations(cafile=self._ca_bundle)
            self._ssl_context = context
        return self._ssl_context

    async def _exchange(self, connection: _Connection, payload: bytes, method: str,
                        read_timeout: float | None) -> ResponseHead:
        """Send the request and read the final response head (1xx heads are skipped)."""
        try:
            return await self._send_and_read_head(connection, payload, method, read_timeout)
        except BaseException:
            # Failed or cancelled (the client went away): the connection is in an unknown
            # state, and closing it is what stops the upstream from working on the request.
            connection.close()
            raise

    async def _send_and_read_head(self, connection: _Connection, payload: bytes, method: str,
                                  read_timeout: float | None) -> ResponseHead:
        try:
            connection.writer.write(payload)
            await connection.writer.drain()
        except OSError as exc:
            raise _NotAnswered from exc
        raw_method = method.encode("ascii")
        first = True
        while True:
            try:
                block = await connection.read(connection.reader.readuntil(b"\r\n\r\n"),
                                              read_timeout)
            except asyncio.IncompleteReadError as exc:
                if first and not exc.partial:
                    raise _NotAnswered from None
                raise httpx.RemoteProtocolError(
                    "the upstream closed the connection in the middle of the response head"
                ) from None
            except asyncio.LimitOverrunError:
                raise httpx.RemoteProtocolError("the upstream's response head is too large"
                                                ) from None
            except httpx.ReadError:
                if first:
                    raise _NotAnswered from None  # reset before a byte came back
                raise
            first = False
            try:
                head = parse_head(block, method=raw_method)
            except MalformedResponse as exc:
                raise httpx.RemoteProtocolError(str(exc)) from None
            if head.status >= 200 or head.status == 101:
                return head


class _NotAnswered(Exception):
    """The connection ended before a single byte of response: the request can be resent."""


class ProxyFailed(httpx.ProxyError):
    """The proxy, not the origin, failed: `stage` says how (`unreachable`, `refused`, `auth`).
    The message names the proxy by scheme, host and port, never by its password."""

    def __init__(self, proxy: Proxy, stage: str, detail: str) -> None:
        super().__init__(f"proxy {proxy.label} {STAGES[stage]}: {detail}")
        self.proxy = proxy
        self.stage = stage


STAGES = {"unreachable": "cannot be reached", "refused": "refused the connection",
          "auth": "refused the login"}


class _TunnelRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _http_tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       proxy: Proxy, host: str, port: int) -> None:
    """CONNECT host:port through an HTTP proxy; returns once it answered 2xx."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1".encode("ascii"),
             b"Host: " + authority.encode("ascii")]
    if (authorization := proxy.authorization()) is not None:
        lines.append(b"Proxy-Authorization: " + authorization)
    writer.write(b"\r\n".join([*lines, b"", b""]))
    await writer.drain()
    try:
        block = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _TunnelRefused(0) from None
    head = parse_head(block, method=b"CONNECT")
    if not 200 <= head.status < 300:
        raise _TunnelRefused(head.status)


async def _socks_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           proxy: Proxy, host: str, port: int) -> None:
    """RFC 1928 CONNECT (and RFC 1929 login) to host:port through a SOCKS5 proxy."""
    with_password = proxy.username is not None
    writer.write(socks5.greeting(with_password))
    await writer.drain()
    if socks5.chosen_method(await reader.readexactly(2)) == socks5.USER_PASSWORD:
        if not with_password:
            raise socks5.SocksError("the proxy wants a user name and password", auth=True)
        writer.write(socks5.password_request(proxy.username or "", proxy.password or ""))
        await writer.drain()
        socks5.check_password_answer(await reader.readexactly(2))
    target = host
    if proxy.scheme == "socks5":  # the name is resolved here, the proxy gets an address
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
        target = str(infos[0][4][0])
    writer.write(socks5.connect_request(target, port, remote_dns=True))
    await writer.drain()
    head = await reader.readexactly(5)
    await reader.readexactly(socks5.reply_length(head) - 5)


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection as the consumer asks for it.

    Read to its end, the connection goes back to the pool; closed before that (the client went
    away, an error body was read only in part), the connection is closed, which is also what
    tells Anthropic to stop generating.
    """

    def __init__(self, transport: UpstreamTransport, origin: Origin, connection: _Connection,
                 head: ResponseHead, read_timeout: float | None) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._head = head
        self._read_timeout = read_timeout
        self._complete = head.framing is NO_BODY
        self._reusable = head.keep_alive

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None or self._complete:
            return
        try:
            if self._head.framing is BY_LENGTH:
                remaining = self._head.length
                while remaining > 0:
                    data = await self._read(connection, min(remaining, READ_SIZE))
                    remaining -= len(data)
                    yield data
            elif self._head.framing is CHUNKED:
                decoder = ChunkedDecoder()
                while not decoder.done:
                    payload = decoder.feed(await self._read(connection, READ_SIZE))
                    if payload:
                        yield payload
                self._reusable = self._reusable and not decoder.surplus
            else:
                while data := await connection.read(connection.reader.read(READ_SIZE),
                                                    self._read_timeout):
                    yield data
        except MalformedResponse as exc:
            self._discard()
            raise httpx.RemoteProtocolError(str(exc)) from None
        except httpx.HTTPError:
            self._discard()
            raise
        self._complete = True

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._complete and self._reusable:
            self._transport.release(self._origin, connection)
        else:
            connection.close()

    async def read_small(self) -> bytes | None:
        """The whole body in one read when its length is known and at most READ_SIZE (most
        answers that are not streams), else None: the iterator reads it. One await instead of
        an async generator and the list it fills."""
        connection = self._connection
        head = self._head
        if (connection is None or self._complete or head.framing is not BY_LENGTH
                or head.length > READ_SIZE):
            return None
        try:
            data = await connection.read(connection.reader.readexactly(head.length),
                                         self._read_timeout)
        except asyncio.IncompleteReadError:
            self._discard()
            raise _cut_short() from None
        except httpx.HTTPError:
            self._discard()
            raise
        self._complete = True
        return data

    async def _read(self, connection: _Connection, size: int) -> bytes:
        """Up to `size` bytes; the connection ending here means the body was cut short."""
        data = await connection.read(connection.reader.read(size), self._read_timeout)
        if not data:
            raise _cut_short()
        return data

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class UpstreamResponse:
    """An upstream answer as the proxy reads it: status and headers as they came on the wire
    (names in lower case), the body read (and its content coding undone) as the proxy asks for
    it."""

    __slots__ = ("status", "headers", "_stream", "_decoder")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], stream: _Body,
                 decoder: Decoder | None) -> None:
        self.status = status
        self.headers = headers
        self._stream = stream
        self._decoder = decoder

    def header(self, name: bytes) -> str | None:
        """The first value of the header `name` (lower case), if the answer has one."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def header_items(self) -> list[tuple[str, str]]:
        """Every header as text, names in lower case, in the order they came."""
        return [(key.decode("latin-1"), value.decode("latin-1"))
                for key, value in self.headers]

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, decoded. Raises httpx's transport errors."""
        if self._decoder is None:
            return aiter(self._stream)
        return self._decoded(self._decoder)

    async def aread(self) -> bytes:
        """The whole body, decoded; the connection goes back to the pool (or is closed)."""
        try:
            if self._decoder is None and (whole := await self._stream.read_small()) is not None:
                return whole
            return b"".join([chunk async for chunk in self.aiter_bytes()])
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def _decoded(self, decoder: Decoder) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                if data := decoder.decode(chunk):
                    yield data
            if data := decoder.flush():
                yield data
        except UndecodableBody as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None


def _cut_short() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(
        "the upstream closed the connection before the end of the body")


_FIELD_LINE = b"%s: %s\r\n"


def _request_bytes(method: str, target: bytes, fields: list[tuple[bytes, bytes]],
                   body: bytes) -> bytes:
    """The request's bytes on the wire: request line, header fields, body."""
    # Each field line written by a C call (`map` over the format's `%`), not by a loop of ours.
    block = b"".join(map(_FIELD_LINE.__mod__, fields))
    # Header values come from clients (through h11, which refuses CR/LF) and from stored
    # credentials; a line break in either would let it write headers of its own. So the block
    # holds exactly one CR and one LF a field, and no NUL. Looked for by their codes: with
    # `b"\r"`, `in` first tries to read it as an integer, and builds and drops a TypeError.
    lines = len(fields)
    if block.count(13) != lines or block.count(10) != lines or 0 in block:
        raise httpx.LocalProtocolError("a request header holds a line break")
    return b"%s %s HTTP/1.1\r\n%s\r\n%s" % (method.encode("ascii"), target, block, body)


def _target(url: Destination, route: Proxy | None, fields: list[tuple[bytes, bytes]]
            ) -> bytes:
    """The request target: absolute-form, with the proxy's login added to `fields`, for a
    plain-http origin through an HTTP proxy (which reads the origin from it); else the path."""
    if route is None or not _absolute_form(url, route):
        return url.raw_path
    if (authorization := route.authorization()) is not None:
        fields.append((b"proxy-authorization", authorization))
    return b"http://" + url.netloc + url.raw_path


def _absolute_form(url: Destination, route: Proxy) -> bool:
    """The request goes to an HTTP proxy, which reads the origin from its target, rather than
    through a tunnel (CONNECT, SOCKS) to the origin itself."""
    return not route.is_socks and url.raw_scheme == b"http"

