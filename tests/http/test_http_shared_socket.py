"""Several servers on one listening socket (`Server.start_on`), as WORKERS runs them: a burst is
shared out, and one server's shutdown leaves the socket listening for the others."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from dataclasses import replace

from kestrel.http import Request, Response, Server
from kestrel.http.server import ACCEPT_BACKLOG

from serverkit import FAST, Client, request, run


def listening_socket() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0), backlog=ACCEPT_BACKLOG)
    sock.setblocking(False)
    return sock


def named(name: str) -> Server:
    async def handler(req: Request) -> Response:
        return Response(200, [], name.encode())

    return Server(handler, limits=replace(FAST, shutdown_idle_linger=0.0))


async def ask(port: int) -> bytes:
    async with await Client.connect(port) as client:
        await client.send(request(headers=[("connection", "close")]))
        return (await client.response()).body


def test_a_burst_of_connections_is_shared_out() -> None:
    async def scenario(shared: bool) -> Counter[bytes]:
        sock = listening_socket()
        servers = [named("a"), named("b")]
        for server in servers:
            # Each server gets a handle of its own, as each worker process has.
            await server.start_on([sock.dup()], shared=shared)
        sock.close()
        # The connections queue up before either server gets to run: one burst.
        clients = [socket.create_connection(("127.0.0.1", servers[0].port)) for _ in range(32)]
        try:
            for client in clients:
                client.sendall(request(headers=[("connection", "close")]))
            answers = await asyncio.gather(*(asyncio.to_thread(_body, c) for c in clients))
        finally:
            for client in clients:
                client.close()
            for server in servers:
                await server.shutdown()
        return Counter(answers)

    fair = run(scenario(shared=True))
    assert fair[b"a"] >= 8 and fair[b"b"] >= 8, fair
    greedy = run(scenario(shared=False))  # as asyncio would: the first awake takes them all
    assert sorted(greedy.values()) == [32], greedy


def test_one_server_shutting_down_leaves_the_socket_to_the_other() -> None:
    async def scenario() -> None:
        sock = listening_socket()
        first, second = named("first"), named("second")
        await first.start_on([sock.dup()])
        await second.start_on([sock.dup()])
        sock.close()
        port = first.port
        await first.shutdown()
        # Every new connection is still accepted, and by the one left.
        assert [await ask(port) for _ in range(10)] == [b"second"] * 10
        await second.shutdown()

    run(scenario())


def _body(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data.partition(b"\r\n\r\n")[2]
