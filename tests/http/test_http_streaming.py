"""Streamed responses: backpressure, client disconnects, and bodies always closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from kestrel.http import AccessEntry, Handler, Request, Response

from serverkit import Client, captured, request, run, serving

CHUNK = 256 * 1024


def test_backpressure_holds_the_producer_to_the_clients_pace() -> None:
    produced = 0

    async def handler(req: Request) -> Response:
        async def endless() -> AsyncIterator[bytes]:
            nonlocal produced
            while True:
                produced += 1
                yield b"x" * CHUNK
        return Response(200, [], endless())

    async def scenario() -> None:
        async with serving(handler) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=CHUNK)
            try:
                writer.write(request())
                await writer.drain()
                await asyncio.sleep(0.5)  # and read nothing
                stalled = produced
                # Without backpressure this would be thousands of chunks (gigabytes) by now;
                # with it, only what the socket buffers on both ends hold.
                assert 0 < stalled < 128, stalled
                async with asyncio.timeout(3):  # reading lets the producer go on
                    while produced <= stalled:
                        await reader.readexactly(CHUNK)
            finally:
                writer.close()
                await writer.wait_closed()

    run(scenario())


def test_client_disconnect_stops_an_endless_stream_within_a_second() -> None:
    cleaned = asyncio.Event()
    stopped_at: list[float] = []

    async def handler(req: Request) -> Response:
        async def endless() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"data: ping\n\n"
                    await asyncio.sleep(0.05)
            finally:
                stopped_at.append(time.monotonic())
                cleaned.set()
        return Response(200, [("content-type", "text/event-stream")], endless())

    entries: list[AccessEntry] = []

    async def scenario() -> None:
        async with serving(handler, access_log=entries.append) as server:
            client = await Client.connect(server.port)
            await client.send(request("GET", "/events"))
            await client.reader.readuntil(b"data: ping")
            await client.close()
            gone = time.monotonic()
            async with asyncio.timeout(1.0):
                await cleaned.wait()
            assert stopped_at[0] - gone < 1.0
            for _ in range(20):
                if server.active_connections == 0:
                    break
                await asyncio.sleep(0.05)
            assert server.active_connections == 0

    run(scenario())
    [entry] = entries
    assert (entry.method, entry.path, entry.status) == ("GET", "/events", 499)


def waiting(cancelled: asyncio.Event, *, read_body: bool) -> Handler:
    """A handler still working (waiting on an upstream, say) that notes its cancellation."""
    async def handler(req: Request) -> Response:
        if read_body:
            await req.body()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200, [], b"too late")
    return handler


def test_client_disconnect_cancels_a_handler_still_working() -> None:
    cancelled = asyncio.Event()

    async def scenario() -> None:
        async with serving(waiting(cancelled, read_body=False)) as server:
            client = await Client.connect(server.port)
            await client.send(request("POST", "/", body=b"small body, read by no one"))
            await asyncio.sleep(0.1)
            await client.close()
            async with asyncio.timeout(1.0):
                await cancelled.wait()

    run(scenario())


def test_a_request_arriving_with_the_end_of_input_cancels_its_handler() -> None:
    # The client sends its request and half-closes at once (FIN right behind the body): the
    # end of input is already there when the body completes, before the handler runs.
    cancelled = asyncio.Event()

    async def scenario() -> None:
        async with serving(waiting(cancelled, read_body=True)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("POST", "/", body=b"body"))
            writer.write_eof()
            async with asyncio.timeout(1.0):
                await cancelled.wait()
                assert await reader.read() == b""  # no answer: the connection is closed
            writer.close()

    run(scenario())


def test_a_handler_that_swallows_the_cancellation_costs_only_its_connection() -> None:
    # The server cancels the task that serves the connection; a handler that catches that and
    # answers anyway must not leave the cancellation pending for the next await.
    swallowed = asyncio.Event()

    async def handler(req: Request) -> Response:
        if req.path == "/slow":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                swallowed.set()
                await asyncio.sleep(0.05)  # still working after being told to stop
            return Response(200, [], b"answered anyway")
        return Response(200, [], b"fine")

    async def scenario() -> None:
        async with serving(handler) as server:
            client = await Client.connect(server.port)
            await client.send(request("GET", "/slow"))
            await asyncio.sleep(0.1)
            await client.close()
            async with asyncio.timeout(2.0):
                await swallowed.wait()
            await asyncio.sleep(0.3)  # the handler's 0.05 s, and the connection's close
            assert server.active_connections == 0
            async with await Client.connect(server.port) as other:
                await other.send(request("GET", "/"))
                assert (await other.response()).body == b"fine"

    run(scenario())


class Tracked:
    """An async iterable that is not a generator, recording whether `aclose()` was called."""

    def __init__(self, pieces: list[bytes], fail: bool = False) -> None:
        self.pieces = list(pieces)
        self.fail = fail
        self.closed = False

    def __aiter__(self) -> Tracked:
        return self

    async def __anext__(self) -> bytes:
        if self.pieces:
            return self.pieces.pop(0)
        if self.fail:
            raise RuntimeError("source failed")
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


def test_aclose_is_called_at_normal_end_and_on_error() -> None:
    bodies: dict[str, Tracked] = {}

    async def handler(req: Request) -> Response:
        bodies[req.path] = Tracked([b"a", b"b"], fail=req.path == "/fail")
        return Response(200, [], bodies[req.path])

    async def scenario() -> None:
        with captured("kestrel.http"):
            async with serving(handler) as server:
                async with await Client.connect(server.port) as client:
                    await client.send(request("GET", "/ok"))
                    resp = await client.response()
                    assert resp.complete and resp.body == b"ab"
                async with await Client.connect(server.port) as client:
                    await client.send(request("GET", "/fail"))
                    resp = await client.response()
                    assert not resp.complete and resp.body == b"ab"

    run(scenario())
    assert bodies["/ok"].closed and bodies["/fail"].closed


def test_stream_that_cannot_be_sent_is_still_closed() -> None:
    """The handler's header is invalid, so a 500 goes out instead of its stream; the stream
    (already started, with cleanup pending) is closed all the same."""
    cleaned: list[str] = []

    async def handler(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b"x"
            finally:
                cleaned.append("closed")
        stream = gen()
        await stream.__anext__()  # started, so its finally is pending
        return Response(200, [("bad header", "v")], stream)

    async def scenario() -> None:
        with captured("kestrel.http"):
            async with serving(handler) as server, await Client.connect(server.port) as client:
                await client.send(request())
                assert (await client.response()).status == 500
        assert cleaned == ["closed"]

    run(scenario())
