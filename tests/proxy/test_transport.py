"""The upstream transport against a raw socket server that answers with exact bytes.

The server below is deliberately not an HTTP library: each test scripts the bytes of every
answer (or the lack of one), so keep-alive, framing and failure handling are checked against
what really crossed the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from kestrel.proxy.transport import UpstreamTransport, destination

# One scripted answer: given the connection and the request head, write (or not).
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@dataclass
class RawServer:
    answers: list[Answer]
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests.append(head)
                await self.answers.pop(0)(reader, writer, head)
                if writer.is_closing():
                    return
            await reader.read()  # no more answers: wait for the client to hang up
        finally:
            self.closed.set()
            writer.close()


@asynccontextmanager
async def raw_server(*answers: Answer) -> AsyncIterator[RawServer]:
    state = RawServer(list(answers))
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()


def send(data: bytes, *, close: bool = False) -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     head: bytes) -> None:
        writer.write(data)
        await writer.drain()
        if close:
            writer.close()
    return answer


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 head: bytes) -> None:
    """Never answer; return once the client hangs up."""
    await reader.read()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  head: bytes) -> None:
    writer.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


@asynccontextmanager
async def pooled(read_timeout: float = 5.0) -> AsyncIterator[UpstreamTransport]:
    t = UpstreamTransport(connect_timeout=2.0, read_timeout=read_timeout)
    try:
        yield t
    finally:
        await t.aclose()
        await asyncio.sleep(0.01)  # let the closed sockets be released before the loop ends


@dataclass
class Answered:
    status: int
    content: bytes


async def post(t: UpstreamTransport, url: str, headers: dict[str, str] | None = None
               ) -> Answered:
    """One request the way the proxy sends it (`send`), its body read whole."""
    fields = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    response = await t.send("POST", destination(url + "/v1/messages"), fields, b'{"a":1}')
    return Answered(response.status, await response.aread())


def run(coro: Awaitable[None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(15):
            await coro
    asyncio.run(bounded())


def test_a_finished_response_leaves_its_connection_for_the_next_request() -> None:
    async def scenario() -> None:
        async with raw_server(send(OK), send(OK), send(OK)) as server, pooled() as t:
            for _ in range(3):
                response = await post(t, server.url)
                assert (response.status, response.content) == (200, b"ok")
            assert server.connections == 1
            first = server.requests[0]
            assert first.startswith(b"POST /v1/messages HTTP/1.1\r\n")
            assert b"\r\nhost: 127.0.0.1:" in first.lower()
            assert b"\r\ncontent-length: 7\r\n" in first.lower()
            assert b"\r\naccept-encoding: gzip, deflate\r\n" in first.lower()
    run(scenario())


def test_chunked_and_until_close_bodies_are_read_whole() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n")
    until_close = b"HTTP/1.1 200 OK\r\n\r\nthe rest of the stream"

    async def scenario() -> None:
        async with raw_server(send(chunked), send(until_close, close=True),
                              send(OK)) as server, pooled() as t:
            assert (await post(t, server.url)).content == b"hello, world"
            assert (await post(t, server.url)).content == b"the rest of the stream"
            assert server.connections == 1  # the chunked answer kept the connection
            assert (await post(t, server.url)).content == b"ok"
            assert server.connections == 2  # the until-close one could not
    run(scenario())


def test_a_gzip_body_is_decoded() -> None:
    packed = gzip.compress(b'{"type":"message"}')
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
              % len(packed)) + packed

    async def scenario() -> None:
        async with raw_server(send(answer)) as server, pooled() as t:
            assert (await post(t, server.url)).content == b'{"type":"message"}'
    run(scenario())


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    closing = OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)

    async def scenario() -> None:
        async with raw_server(send(OK, close=True), send(closing),
                              send(OK)) as server, pooled() as t:
            await post(t, server.url)
            await server.closed.wait()
            await asyncio.sleep(0.05)  # the EOF reaches the idle connection's reader
            assert (await post(t, server.url)).status == 200
            assert (await post(t, server.url)).status == 200  # after `Connection: close`
            assert server.connections == 3
    run(scenario())


def test_a_reused_connection_closed_without_an_answer_is_retried_once_on_a_new_one() -> None:
    async def scenario() -> None:
        async with raw_server(send(OK), hang_up, send(OK)) as server, pooled() as t:
            await post(t, server.url)
            response = await post(t, server.url)
            assert response.status == 200
            assert (server.connections, len(server.requests)) == (2, 3)
    run(scenario())


def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_retry() -> None:
    async def scenario() -> None:
        async with raw_server(hang_up, send(OK)) as server, pooled() as t:
            with pytest.raises(httpx.RemoteProtocolError):
                await post(t, server.url)
            assert len(server.requests) == 1
    run(scenario())


@pytest.mark.parametrize(("answer", "error"), [
    (b"this is not http\r\n\r\n", httpx.RemoteProtocolError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", httpx.RemoteProtocolError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", httpx.RemoteProtocolError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n",
     httpx.RemoteProtocolError),
    (b"HTTP/1.1 200 OK\r\nContent-Le", httpx.RemoteProtocolError),
])
def test_broken_answers_are_protocol_errors(answer: bytes, error: type[Exception]) -> None:
    async def scenario() -> None:
        async with raw_server(send(answer, close=True)) as server, pooled() as t:
            with pytest.raises(error):
                await post(t, server.url)
    run(scenario())


def test_silence_past_the_read_timeout_is_a_read_timeout_and_closes_the_connection() -> None:
    head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    head: bytes) -> None:
        writer.write(head_only)
        await reader.read()

    async def scenario() -> None:
        async with raw_server(silent) as before_head, raw_server(stall) as mid_body, \
                pooled(read_timeout=0.3) as t:
            loop = asyncio.get_running_loop()
            for server in (before_head, mid_body):
                started = loop.time()
                with pytest.raises(httpx.ReadTimeout):
                    await post(t, server.url)
                assert loop.time() - started < 3
    run(scenario())


def test_a_stream_may_outlast_the_read_timeout_while_bytes_keep_coming() -> None:
    async def slow_chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          head: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.1)
            writer.write(b"1\r\n.\r\n")
        writer.write(b"0\r\n\r\n")

    async def scenario() -> None:
        async with raw_server(slow_chunks) as server, pooled(read_timeout=0.3) as t:
            assert (await post(t, server.url)).content == b"......"
    run(scenario())


def test_a_body_nobody_reads_stops_being_read_from_the_socket() -> None:
    # Backpressure: a client that reads a stream slowly must slow the upstream down through
    # TCP, not make the transport hold the stream in memory.
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    head: bytes) -> None:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(piece)
                await writer.drain()
                sent += len(piece)

    async def scenario() -> None:
        async with raw_server(flood) as server, pooled() as t:
            response = await t.send("POST", destination(server.url + "/v1/messages"), [], b"{}")
            chunks = response.aiter_bytes()
            await anext(chunks)
            await asyncio.sleep(0.5)  # and read nothing more
            stalled = sent
            await asyncio.sleep(0.3)
            assert sent == stalled  # the upstream is held back...
            assert stalled < 32 * 1024 * 1024  # ...by the socket buffers, not by our memory
            await anext(chunks)  # reading again lets it go on
            await response.aclose()
    run(scenario())


def test_closing_a_body_early_closes_the_upstream_connection() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      head: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        hung_up = asyncio.ensure_future(reader.read())
        while not hung_up.done():
            writer.write(b"5\r\ntick\n\r\n")
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        async with raw_server(endless) as server, pooled() as t:
            response = await t.send("POST", destination(server.url + "/v1/messages"), [], b"{}")
            async for chunk in response.aiter_bytes():
                assert chunk.startswith(b"tick")
                break
            await response.aclose()
            await asyncio.wait_for(server.closed.wait(), 5)
    run(scenario())


def test_a_cancelled_request_closes_its_connection() -> None:
    async def scenario() -> None:
        async with raw_server(silent) as server, pooled() as t:
            task = asyncio.create_task(post(t, server.url))
            while not server.requests:  # noqa: ASYNC110 (the raw server has no event for it)
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(server.closed.wait(), 5)
    run(scenario())


def test_refused_connections_are_connect_errors() -> None:
    async def scenario() -> None:
        async with raw_server() as server:
            url = server.url
        async with pooled() as t:
            with pytest.raises(httpx.ConnectError):
                await post(t, url)
    run(scenario())


@pytest.mark.parametrize("value", ["sk-ant\r\nx-injected: 1", "sk-ant\nx-injected: 1",
                                   "sk-ant\rx-injected: 1", "sk-ant\x00x-injected: 1"])
def test_a_header_with_a_line_break_is_never_sent(value: str) -> None:
    async def scenario() -> None:
        async with raw_server(send(OK)) as server, pooled() as t:
            with pytest.raises(httpx.LocalProtocolError):
                await post(t, server.url, headers={"x-api-key": value})
            assert server.requests == []
    run(scenario())


def test_the_oauth_client_can_use_the_transport_through_httpx() -> None:
    packed = gzip.compress(b'{"access_token":"x"}')
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
              % len(packed)) + packed

    async def scenario() -> None:
        async with raw_server(send(OK), send(answer)) as server, pooled() as t:
            async with httpx.AsyncClient(transport=t) as client:
                response = await client.post(server.url + "/token", json={"a": 1}, timeout=2)
                assert (response.status_code, response.text) == (200, "ok")
                # httpx's Response undoes the coding itself; the transport hands it the bytes.
                response = await client.post(server.url + "/token", json={"a": 1}, timeout=2)
                assert response.json() == {"access_token": "x"}
            first = server.requests[0].lower()
            assert b"\r\ncontent-length: 7\r\n" in first and b"\r\nhost: 127.0.0.1:" in first
    run(scenario())


def test_an_answer_in_a_coding_that_was_not_offered_is_a_protocol_error() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\n\x0b\x01\x80\x03"

    async def scenario() -> None:
        async with raw_server(send(answer), send(OK)) as server, pooled() as t:
            with pytest.raises(httpx.RemoteProtocolError, match="br"):
                await post(t, server.url)
            assert (await post(t, server.url)).content == b"ok"
            assert server.connections == 2  # the refused answer's connection was not reused
    run(scenario())


def test_a_corrupt_gzip_body_is_a_protocol_error() -> None:
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n"
              b"not gzip!")

    async def scenario() -> None:
        async with raw_server(send(answer)) as server, pooled() as t:
            with pytest.raises(httpx.RemoteProtocolError, match="corrupt"):
                await post(t, server.url)
    run(scenario())
