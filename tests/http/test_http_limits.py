"""Limits, malformed input and deadlines: each ends in the right status and a closed socket."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import suppress

import pytest

from kestrel.http import BadRequest, BodyTooLarge, Request, RequestTimeout, Response

from serverkit import Client, chunked, echo, request, run, serving


def test_oversized_head_gets_431_and_close() -> None:
    async def scenario() -> None:
        async with serving(echo, max_header_bytes=2048) as server:
            # A complete head that arrives in one piece, over the limit.
            async with await Client.connect(server.port) as client:
                await client.send(request("GET", "/", [("x-pad", "a" * 4000)]))
                resp = await client.response()
                assert resp.status == 431 and resp.header("connection") == "close"
                assert json.loads(resp.body)["error"]["type"] == "headers_too_large"
                assert await client.closed_by_server()
            # A head that never ends: refused while still incomplete.
            async with await Client.connect(server.port) as client:
                await client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 10_000)
                resp = await client.response()
                assert resp.status == 431
                assert await client.closed_by_server()
            # Just under the limit is fine.
            async with await Client.connect(server.port) as client:
                await client.send(request("GET", "/", [("x-pad", "a" * 1500)]))
                assert (await client.response()).status == 200

    run(scenario())


def test_declared_body_over_limit_is_413_before_reading_and_without_100() -> None:
    outcomes: list[str] = []

    async def handler(req: Request) -> Response:
        if req.path == "/app-shaped":
            try:
                await req.body()
            except BodyTooLarge:
                outcomes.append("raised")
                return Response(413, [], b"the application's own 413")
        return await echo(req)  # BodyTooLarge not caught: the server answers 413

    async def scenario() -> None:
        async with serving(handler, max_body_bytes=1000) as server:
            async with await Client.connect(server.port) as client:
                await client.send(request("POST", "/", [("expect", "100-continue"),
                                                        ("content-length", "1001")],
                                          length=False))
                resp = await client.response()  # 413 directly, no 100 Continue first
                assert resp.status == 413 and resp.header("connection") == "close"
                assert json.loads(resp.body)["error"]["type"] == "body_too_large"
                assert await client.closed_by_server()
            async with await Client.connect(server.port) as client:
                await client.send(request("POST", "/app-shaped", [("expect", "100-continue"),
                                                                  ("content-length", "5000")],
                                          length=False))
                resp = await client.response()
                assert (resp.status, resp.body) == (413, b"the application's own 413")
                assert resp.header("connection") == "close"
            # A client that goes on sending its body after the 413 is not reset: the server
            # half-closes and swallows the rest for a moment (lingering close).
            async with await Client.connect(server.port) as client:
                await client.send(request("POST", "/", [("content-length", "1000000")],
                                          length=False))
                resp = await client.response()
                assert resp.status == 413
                await asyncio.sleep(0.1)  # long after the server answered
                for _ in range(10):
                    await client.send(b"z" * 64 * 1024)  # raises if the server had reset
                    await asyncio.sleep(0.01)
                assert await client.closed_by_server()
            async with await Client.connect(server.port) as client:
                await client.send(request("POST", "/", body=b"z" * 1000))
                assert (await client.response()).body == b"z" * 1000
        assert outcomes == ["raised"]

    run(scenario())


def test_chunked_body_over_limit_raises_in_the_handler() -> None:
    seen: list[str] = []

    async def handler(req: Request) -> Response:
        try:
            await req.body()
        except BodyTooLarge:
            seen.append("too large")
            if req.path == "/reraise":
                raise
            return Response(418, [], b"caught")
        return Response(200, [], b"ok")

    async def scenario() -> None:
        async with serving(handler, max_body_bytes=100) as server:
            for path, status in (("/catch", 418), ("/reraise", 413)):
                async with await Client.connect(server.port) as client:
                    await client.send(request("POST", path, [("transfer-encoding", "chunked")],
                                              chunked(b"a" * 60, b"b" * 60), length=False))
                    resp = await client.response()
                    assert resp.status == status
                    assert resp.header("connection") == "close"
                    assert await client.closed_by_server()
            async with await Client.connect(server.port) as client:
                await client.send(request("POST", "/", [("transfer-encoding", "chunked")],
                                          chunked(b"a" * 50, b"b" * 50), length=False))
                assert (await client.response()).status == 200
        assert seen == ["too large", "too large"]

    run(scenario())


@pytest.mark.parametrize("raw", [
    b"NOT-HTTP\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
], ids=["not-http", "no-version", "no-colon", "space-in-name", "cl-and-te", "cl-not-number",
        "cl-conflict", "no-host"])
def test_malformed_requests_get_400_and_close(raw: bytes) -> None:
    called: list[str] = []

    async def handler(req: Request) -> Response:
        called.append(req.path)
        return Response(200, [], b"")

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(raw)
            resp = await client.response()
            assert resp.status == 400 and resp.header("connection") == "close"
            assert json.loads(resp.body) == {"error": {"type": "bad_request",
                                                       "message": "malformed request"}}
            assert await client.closed_by_server()
        assert called == []

    run(scenario())


def test_unsupported_transfer_coding_is_501() -> None:
    async def scenario() -> None:
        async with serving(echo) as server, await Client.connect(server.port) as client:
            await client.send(request("POST", "/", [("transfer-encoding", "gzip")], length=False))
            assert (await client.response()).status == 501
            assert await client.closed_by_server()

    run(scenario())


def test_body_cut_short_is_bad_request_in_the_handler() -> None:
    errors: list[Exception] = []

    async def handler(req: Request) -> Response:
        try:
            await req.body()
        except BadRequest as exc:
            errors.append(exc)
            raise
        return Response(200, [], b"")

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(request("POST", "/", [("content-length", "100")], length=False)
                              + b"only ten b")
            client.writer.write_eof()  # half-close: the body can never be completed
            resp = await client.response()
            assert resp.status == 400
            assert await client.closed_by_server()
        assert len(errors) == 1 and "cut short" in str(errors[0])

    run(scenario())


def test_garbage_never_stops_the_server() -> None:
    rng = random.Random(1234)
    blobs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(25)]
    blobs += [b"\r\n" * 50, b"GET / HTTP/1.1\r\n" * 100, b"\x00" * 5000, b"GET",
              b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
              b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n"]

    async def one(port: int, blob: bytes, close_at_once: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(blob)
            if not close_at_once:
                await writer.drain()
                async with asyncio.timeout(3):
                    await reader.read()  # whatever the answer, the server must end it
        except ConnectionError:
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    async def scenario() -> None:
        async with serving(echo, header_timeout=0.5, body_timeout=0.5) as server:
            await asyncio.gather(*(one(server.port, blob, i % 3 == 0)
                                   for i, blob in enumerate(blobs)))
            async with await Client.connect(server.port) as client:
                await client.send(request("POST", "/", body=b"still here"))
                assert (await client.response()).body == b"still here"
            for _ in range(50):  # the garbage connections are all let go
                if server.active_connections == 0:
                    break
                await asyncio.sleep(0.05)
            assert server.active_connections == 0

    run(scenario())


def test_slowloris_head_is_cut_at_header_timeout() -> None:
    async def scenario() -> None:
        async with serving(echo, header_timeout=0.5) as server, \
                await Client.connect(server.port) as client:
            started = time.monotonic()
            dribble = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40

            async def slowly() -> None:
                for byte in dribble:  # one byte every 50 ms: would take 3 s in all
                    await client.send(bytes([byte]))
                    await asyncio.sleep(0.05)

            sender = asyncio.create_task(slowly())
            try:
                resp = await client.response()
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            assert resp.status == 408 and resp.header("connection") == "close"
            assert await client.closed_by_server()
            assert time.monotonic() - started < 2.0

    run(scenario())


def test_silent_new_connection_is_closed_quietly_at_header_timeout() -> None:
    async def scenario() -> None:
        async with serving(echo, header_timeout=0.3) as server, \
                await Client.connect(server.port) as client:
            started = time.monotonic()
            assert await client.closed_by_server(within=2)  # no bytes at all: no 408
            assert 0.25 < time.monotonic() - started < 1.5

    run(scenario())


def test_body_gap_over_body_timeout_is_408() -> None:
    seen: list[Exception] = []

    async def handler(req: Request) -> Response:
        try:
            return Response(200, [], await req.body())
        except RequestTimeout as exc:
            seen.append(exc)
            raise

    async def scenario() -> None:
        async with serving(handler, body_timeout=0.3) as server, \
                await Client.connect(server.port) as client:
            await client.send(request("POST", "/", [("content-length", "10")], length=False)
                              + b"12")
            started = time.monotonic()
            resp = await client.response()
            assert resp.status == 408 and resp.header("connection") == "close"
            assert 0.25 < time.monotonic() - started < 1.5
            assert await client.closed_by_server()
        assert len(seen) == 1

    run(scenario())


def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout() -> None:
    async def scenario() -> None:
        async with serving(echo, keepalive_timeout=0.3) as server, \
                await Client.connect(server.port) as client:
            await client.send(request())
            assert (await client.response()).status == 200
            started = time.monotonic()
            assert await client.closed_by_server(within=2)  # quietly: no 408
            assert 0.25 < time.monotonic() - started < 1.5
            assert server.active_connections == 0

    run(scenario())


def test_timers_never_cut_a_long_response() -> None:
    async def handler(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            for n in range(8):
                await asyncio.sleep(0.1)
                yield b"%d" % n
        return Response(200, [], gen())

    async def scenario() -> None:
        async with serving(handler, header_timeout=0.2, body_timeout=0.2,
                           keepalive_timeout=0.2) as server, \
                await Client.connect(server.port) as client:
            # The connection's first head deadline (0.2 s from accept) and the keep-alive
            # deadline both pass while the 0.8 s response is being written.
            await client.send(request())
            resp = await client.response()
            assert resp.complete and resp.body == b"01234567"
            await client.send(request())
            resp = await client.response()
            assert resp.complete and resp.body == b"01234567"

    run(scenario())
