"""Graceful shutdown: stop accepting, close idle connections, finish or cut busy ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from kestrel.http import Handler, Request, Response, Server

from serverkit import FAST, Client, echo, request, run


async def started(handler: Handler, **limits: Any) -> Server:
    server = Server(handler, limits=replace(FAST, **limits))
    await server.start("127.0.0.1", 0)
    return server


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def ends_with_eof(client: Client, within: float) -> bool:
    """The server closed with a FIN (a plain end of input), not a reset, within `within` s."""
    try:
        async with asyncio.timeout(within):
            return await client.reader.read() == b""
    except (TimeoutError, ConnectionError):
        return False


def test_shutdown_finishes_streams_closes_idle_and_refuses_new() -> None:
    async def handler(req: Request) -> Response:
        if req.path != "/stream":
            return Response(200, [], b"ok")

        async def six() -> AsyncIterator[bytes]:
            for n in range(6):
                yield b"%d" % n
                await asyncio.sleep(0.1)
        return Response(200, [], six())

    async def scenario() -> None:
        server = await started(handler, shutdown_grace=3.0, shutdown_idle_linger=0.2)
        idle = await Client.connect(server.port)
        busy = await Client.connect(server.port)
        try:
            await idle.send(request())
            assert (await idle.response()).status == 200
            await busy.send(request("GET", "/stream"))
            await busy.reader.readuntil(b"\r\n\r\n")  # the stream's head is out
            t0 = time.monotonic()
            shutting = asyncio.create_task(server.shutdown())
            assert await ends_with_eof(idle, within=0.5)  # idle: closed after the linger
            assert 0.15 < time.monotonic() - t0 < 0.5
            assert await refused(server.port)  # listening socket closed
            rest = await busy.reader.read()  # the stream runs to its end, then EOF
            assert rest.endswith(b"5\r\n0\r\n\r\n"), rest
            await shutting
            assert time.monotonic() - t0 < 1.5
            assert server.active_connections == 0
        finally:
            await idle.close()
            await busy.close()

    run(scenario())


def test_a_request_on_an_idle_connection_during_the_linger_is_answered_with_close() -> None:
    async def scenario() -> None:
        server = await started(echo, shutdown_idle_linger=1.0)
        async with await Client.connect(server.port) as client:
            await client.send(request("POST", "/", body=b"first"))
            assert (await client.response()).status == 200
            shutting = asyncio.create_task(server.shutdown())
            await asyncio.sleep(0.1)  # shutdown under way, the connection still idle
            # A client that reused its kept-alive connection just as the drain began.
            await client.send(request("POST", "/", body=b"second"))
            resp = await client.response()
            assert (resp.status, resp.body, resp.header("connection")) == (200, b"second",
                                                                           "close")
            assert await ends_with_eof(client, within=0.5)
            await asyncio.wait_for(shutting, 1.0)  # no need to wait out the linger now
            assert server.active_connections == 0

    run(scenario())


def test_shutdown_cuts_a_stream_longer_than_the_grace() -> None:
    cleaned = asyncio.Event()

    async def handler(req: Request) -> Response:
        async def endless() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"tick\n"
                    await asyncio.sleep(0.05)
            finally:
                cleaned.set()
        return Response(200, [], endless())

    async def scenario() -> None:
        server = await started(handler, shutdown_grace=0.3)
        async with await Client.connect(server.port) as client:
            await client.send(request())
            await client.reader.readuntil(b"tick\n")
            t0 = time.monotonic()
            await server.shutdown()
            took = time.monotonic() - t0
            assert 0.25 < took < 1.0, took
            assert cleaned.is_set()
            resp_tail = await client.reader.read()
            assert not resp_tail.endswith(b"0\r\n\r\n")  # cut: no terminating chunk
            assert server.active_connections == 0

    run(scenario())


def test_busy_request_during_shutdown_is_answered_with_connection_close() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def handler(req: Request) -> Response:
        entered.set()
        await release.wait()
        return Response(200, [], b"done")

    async def scenario() -> None:
        server = await started(handler)
        async with await Client.connect(server.port) as client:
            await client.send(request())
            await entered.wait()
            shutting = asyncio.create_task(server.shutdown())
            await asyncio.sleep(0.1)
            assert not shutting.done()  # waiting for the busy request
            release.set()
            resp = await client.response()
            assert (resp.status, resp.body) == (200, b"done")
            assert resp.header("connection") == "close"
            assert await client.closed_by_server()
            await shutting

    run(scenario())


def test_serve_until_stop_then_shutdown_is_idempotent() -> None:
    async def scenario() -> None:
        server = await started(echo)
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve_until(stop))
        async with await Client.connect(server.port) as client:
            await client.send(request("POST", "/", body=b"hi"))
            assert (await client.response()).body == b"hi"
        stop.set()
        await asyncio.wait_for(serving, 2)
        assert await refused(server.port)
        await asyncio.gather(server.shutdown(), server.shutdown())  # again, and concurrently
        assert server.active_connections == 0

    run(scenario())


def test_serve_until_requires_start() -> None:
    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await Server(echo).serve_until(asyncio.Event())

    run(scenario())
