"""Ordinary exchanges over real sockets: keep-alive, pipelining, bodies, HEAD, headers, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from kestrel.http import (
    AccessEntry,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    Request,
    Response,
    Router,
)

from serverkit import Client, captured, chunked, echo, request, run, serving


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    peers: list[tuple[str, int] | None] = []

    async def handler(req: Request) -> Response:
        peers.append(req.client)
        return Response(200, [], f"n={len(peers)}".encode())

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            for n in (1, 2, 3):
                await client.send(request())
                resp = await client.response()
                assert (resp.status, resp.body) == (200, f"n={n}".encode())
                assert resp.header("connection") is None
            assert server.active_connections == 1
        assert len(set(peers)) == 1  # same client port: one connection

    run(scenario())


def test_httpx_client_round_trip() -> None:
    async def scenario() -> None:
        async with serving(echo) as server, httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{server.port}/echo"
            first = await http.post(url, content=b"payload")
            second = await http.get(url)
            assert (first.status_code, first.content) == (200, b"payload")
            assert (second.status_code, second.content) == (200, b"")
            assert second.headers["x-seen-method"] == "GET"

    run(scenario())


def test_pipelined_requests_are_answered_in_order() -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/slow":
            await asyncio.sleep(0.2)  # the second request is already buffered by now
        return Response(200, [], req.path.encode() + b":" + await req.body())

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(request("POST", "/slow", body=b"one")
                              + request("POST", "/fast", body=b"two")
                              + request("GET", "/last", [("connection", "close")]))
            bodies = [(await client.response()).body for _ in range(3)]
            assert bodies == [b"/slow:one", b"/fast:two", b"/last:"]
            assert await client.closed_by_server()

    run(scenario())


def test_request_arriving_while_the_previous_is_handled_is_kept() -> None:
    """The disconnect watcher reads the socket during a response; what it reads of a
    pipelined request must go to the next exchange, not be lost."""
    async def handler(req: Request) -> Response:
        if req.path == "/slow":
            async def gen() -> AsyncIterator[bytes]:
                for piece in (b"a", b"b", b"c"):
                    await asyncio.sleep(0.1)
                    yield piece
            return Response(200, [], gen())
        return Response(200, [], req.path.encode() + b":" + await req.body())

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(request("GET", "/slow"))
            await asyncio.sleep(0.15)  # mid-stream
            await client.send(request("POST", "/next", body=b"payload"))
            first = await client.response()
            assert first.complete and first.body == b"abc"
            assert (await client.response()).body == b"/next:payload"

    run(scenario())


def test_fixed_length_and_chunked_request_bodies() -> None:
    async def scenario() -> None:
        async with serving(echo) as server, await Client.connect(server.port) as client:
            await client.send(request("POST", "/", body=b"fixed-length body"))
            assert (await client.response()).body == b"fixed-length body"
            await client.send(request("POST", "/", [("transfer-encoding", "chunked")],
                                      chunked(b"chunk one, ", b"chunk two"), length=False))
            assert (await client.response()).body == b"chunk one, chunk two"
            # The connection is still in step after a chunked body.
            await client.send(request())
            assert (await client.response()).status == 200

    run(scenario())


def test_expect_100_continue_is_sent_when_the_handler_reads() -> None:
    async def scenario() -> None:
        async with serving(echo) as server, await Client.connect(server.port) as client:
            await client.send(request("POST", "/", [("expect", "100-continue"),
                                                    ("content-length", "5")], length=False))
            interim = await client.response()
            assert interim.status == 100
            await client.send(b"hello")
            final = await client.response()
            assert (final.status, final.body) == (200, b"hello")

    run(scenario())


def test_expect_100_continue_refused_without_reading_gets_final_status_and_close() -> None:
    async def deny(req: Request) -> Response:
        return Response(401, [("content-type", "text/plain")], b"no key")

    async def scenario() -> None:
        async with serving(deny) as server, await Client.connect(server.port) as client:
            await client.send(request("POST", "/", [("expect", "100-continue"),
                                                    ("content-length", "5")], length=False))
            resp = await client.response()
            assert (resp.status, resp.body) == (401, b"no key")  # no 100 before it
            assert resp.header("connection") == "close"
            assert await client.closed_by_server()

    run(scenario())


def test_small_unread_body_is_drained_and_the_connection_reused() -> None:
    async def deny(req: Request) -> Response:
        return Response(401, [], b"no")

    async def scenario() -> None:
        async with serving(deny) as server, await Client.connect(server.port) as client:
            # The body is sent only after the answer, so the server must drain it from the
            # socket (not merely find it buffered with the head) before the next request.
            await client.send(request("POST", "/", [("content-length", "1000")], length=False))
            first = await client.response()
            assert first.status == 401 and first.header("connection") is None
            await client.send(b"x" * 1000)
            await client.send(request("POST", "/", [("transfer-encoding", "chunked")],
                                      length=False))
            assert (await client.response()).status == 401
            await client.send(chunked(b"y" * 500))
            await client.send(request())
            assert (await client.response()).status == 401
            assert server.active_connections == 1

    run(scenario())


def test_large_unread_body_closes_the_connection() -> None:
    async def deny(req: Request) -> Response:
        return Response(401, [], b"no")

    async def scenario() -> None:
        async with serving(deny, drain_limit_bytes=1000) as server, \
                await Client.connect(server.port) as client:
            # Bigger than one socket read, so it cannot all have arrived with the head.
            await client.send(request("POST", "/", body=b"x" * 300_000))
            resp = await client.response()
            assert resp.status == 401 and resp.header("connection") == "close"
            assert await client.closed_by_server()

    run(scenario())


def test_head_sends_get_headers_and_no_body() -> None:
    streams: list[AsyncIterator[bytes]] = []

    async def handler(req: Request) -> Response:
        if req.path == "/stream":
            async def gen() -> AsyncIterator[bytes]:
                yield b"never sent"
            streams.append(gen())
            return Response(200, [], streams[-1])
        return Response(200, [("content-type", "text/plain")], b"twelve bytes")

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(request("HEAD", "/"))
            resp = await client.response(head=True)
            assert resp.status == 200
            assert resp.header("content-length") == "12"
            assert resp.header("content-type") == "text/plain"
            await client.send(request("HEAD", "/stream"))
            resp = await client.response(head=True)
            assert resp.status == 200 and resp.header("content-length") is None
            # Had any body byte been sent, this response would be misread.
            await client.send(request("GET", "/"))
            resp = await client.response()
            assert (resp.status, resp.body) == (200, b"twelve bytes")
        # Never iterated, but closed all the same (a closed async generator has no frame).
        assert streams and streams[0].ag_frame is None  # type: ignore[attr-defined]

    run(scenario())


def test_streamed_body_is_chunked_and_framing_headers_are_the_servers() -> None:
    async def handler(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            yield b"first,"
            yield b""  # empty pieces are skipped, not sent as a terminating chunk
            yield b"second"
        given = [("content-length", "999"), ("transfer-encoding", "identity"),
                 ("connection", "keep-alive"), ("x-app", "yes")]
        if req.path == "/bytes":
            return Response(200, given, b"plain body")
        return Response(200, given, gen())

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(request("GET", "/stream"))
            resp = await client.response()
            assert resp.complete and resp.chunks == [b"first,", b"second"]
            assert resp.header("transfer-encoding") == "chunked"
            assert "content-length" not in resp.names()
            assert resp.header("connection") is None and resp.header("x-app") == "yes"
            await client.send(request("GET", "/bytes"))
            resp = await client.response()
            assert resp.header("content-length") == "10" and resp.body == b"plain body"
            assert "transfer-encoding" not in resp.names()

    run(scenario())


def test_request_id_date_and_server_headers() -> None:
    async def scenario() -> None:
        async with serving(echo, server_header="kestrel/9") as server, \
                await Client.connect(server.port) as client:
            await client.send(request("GET", "/", [("X-Request-ID", "client.id:42")]))
            resp = await client.response()
            assert resp.header("x-request-id") == "client.id:42"
            assert resp.header("x-seen-request-id") == "client.id:42"
            assert resp.header("server") == "kestrel/9"
            date = resp.header("date")
            assert date is not None and date.endswith(" GMT")
            assert abs(parsedate_to_datetime(date).timestamp() - __import__("time").time()) < 5

            await client.send(request("GET", "/", [("X-Request-ID", "bad id with spaces")]))
            resp = await client.response()
            rid = resp.header("x-request-id")
            assert rid is not None and re.fullmatch(r"req_[0-9a-f]{24}", rid)
            assert resp.header("x-seen-request-id") == rid

    run(scenario())


def test_unhandled_http_errors_become_json() -> None:
    router = Router()

    async def bad(req: Request) -> Response:
        raise BadRequest("field 'model' is required")

    router.add("POST", "/v1/things", bad)

    async def handler(req: Request) -> Response:
        found, params = router.match(req.method, req.path)
        return await found(req)

    async def scenario() -> None:
        async with serving(handler) as server, httpx.AsyncClient() as http:
            base = f"http://127.0.0.1:{server.port}"
            resp = await http.get(base + "/nowhere")
            assert resp.status_code == 404
            assert resp.json() == {"error": {"type": "not_found",
                                             "message": "no route for /nowhere"}}
            resp = await http.delete(base + "/v1/things")
            assert resp.status_code == 405 and resp.headers["allow"] == "POST"
            assert resp.json()["error"]["type"] == "method_not_allowed"
            resp = await http.post(base + "/v1/things")
            assert resp.status_code == 400
            assert resp.json()["error"]["message"] == "field 'model' is required"
            assert resp.headers["content-type"] == "application/json"

    assert issubclass(MethodNotAllowed, Exception) and issubclass(NotFound, Exception)
    run(scenario())


def test_handler_crash_is_a_generic_500_and_logged_with_traceback() -> None:
    async def crash(req: Request) -> Response:
        raise RuntimeError("secret detail sk-ant-123")

    async def scenario() -> None:
        with captured("kestrel.http") as logs:
            async with serving(crash) as server, await Client.connect(server.port) as client:
                await client.send(request())
                resp = await client.response()
                assert resp.status == 500
                assert b"secret" not in resp.body
                assert json.loads(resp.body)["error"]["type"] == "internal_error"
                # The connection survives a handler crash.
                await client.send(request())
                assert (await client.response()).status == 500
        errors = [r for r in logs.records if r.levelno >= logging.ERROR]
        assert errors and errors[0].exc_info is not None
        assert errors[0].exc_info[0] is RuntimeError

    run(scenario())


def test_invalid_response_from_handler_is_a_500() -> None:
    async def bad(req: Request) -> Response:
        return Response(200, [("x-bad", "line\r\nbreak")], b"")

    async def scenario() -> None:
        with captured("kestrel.http"):
            async with serving(bad) as server, await Client.connect(server.port) as client:
                await client.send(request())
                assert (await client.response()).status == 500

    run(scenario())


def test_error_after_headers_truncates_the_body_and_closes() -> None:
    async def handler(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            yield b"partial"
            raise RuntimeError("upstream broke")
        return Response(200, [], gen())

    async def scenario() -> None:
        with captured("kestrel.http") as logs:
            async with serving(handler) as server, await Client.connect(server.port) as client:
                await client.send(request())
                resp = await client.response()
                assert resp.status == 200  # the status was on the wire before the error
                assert resp.body == b"partial" and not resp.complete
        assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in logs.records)

    run(scenario())


def test_access_log_entry() -> None:
    entries: list[AccessEntry] = []

    async def scenario() -> None:
        async with serving(echo, access_log=entries.append) as server, \
                await Client.connect(server.port) as client:
            await client.send(request("POST", "/v1/messages?key=secret-in-query",
                                      [("authorization", "Bearer secret-token"),
                                       ("x-request-id", "rid-7")], body=b"12345"))
            await client.response()

    run(scenario())
    [entry] = entries
    assert entry.method == "POST" and entry.path == "/v1/messages"
    assert entry.status == 200 and entry.request_id == "rid-7"
    assert entry.client == "127.0.0.1" and entry.bytes_sent == 5
    assert isinstance(entry.duration_ms, float) and entry.duration_ms >= 0
    assert "secret" not in repr(entry)


def test_max_requests_per_connection() -> None:
    async def scenario() -> None:
        async with serving(echo, max_requests_per_connection=2) as server, \
                await Client.connect(server.port) as client:
            await client.send(request())
            assert (await client.response()).header("connection") is None
            await client.send(request())
            resp = await client.response()
            assert resp.status == 200 and resp.header("connection") == "close"
            assert await client.closed_by_server()

    run(scenario())


def test_request_body_cannot_be_read_after_its_exchange() -> None:
    kept: list[Request] = []

    async def handler(req: Request) -> Response:
        kept.append(req)
        return Response(204, [], b"")

    async def scenario() -> None:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(request("POST", "/", [("content-length", "4")], length=False))
            assert (await client.response()).status == 204
            await client.send(b"body" + request("POST", "/", body=b"next"))
            assert (await client.response()).status == 204
            with pytest.raises(RuntimeError):
                await kept[0].body()  # would otherwise steal the next request's bytes

    run(scenario())


def streamed_answer(pieces: list[bytes | bytearray], request_bytes: bytes) -> tuple[bytes, bytes]:
    """The head and body a client reading to the end of the connection gets for a handler
    whose body yields `pieces`."""
    async def handler(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes | bytearray]:
            for piece in pieces:
                yield piece
        return Response(200, [], gen())  # type: ignore[arg-type]

    async def scenario() -> bytes:
        async with serving(handler) as server, await Client.connect(server.port) as client:
            await client.send(request_bytes)
            return await asyncio.wait_for(client.reader.read(), 3)

    head, _, body = run(scenario()).partition(b"\r\n\r\n")
    return head, body


def test_a_streamed_body_is_chunked_exactly_as_h11_would() -> None:
    big = b"x" * (200 * 1024)  # past one write: sliced, each slice a chunk of its own
    # An empty piece puts nothing on the wire: an empty chunk would end the body.
    head, body = streamed_answer([b"a", b"", bytearray(b"bc"), big],
                                 b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    slices = [big[i:i + 64 * 1024] for i in range(0, len(big), 64 * 1024)]
    assert body == b"".join([b"1\r\na\r\n", b"2\r\nbc\r\n",
                             *(b"%x\r\n%b\r\n" % (len(p), p) for p in slices), b"0\r\n\r\n"])


def test_http_10_client_gets_a_close_delimited_stream() -> None:
    head, body = streamed_answer([b"old ", b"client"], b"GET / HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in head.lower() and body == b"old client"
