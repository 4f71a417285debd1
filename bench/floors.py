"""What the dependencies cost on their own, on this machine: the floors under Kestrel's figures.

    python3 bench/floors.py [--seconds 5]

- upstream clients, in this process, against the mock: httpx.AsyncClient configured as
  Kestrel's (`app.py`), a minimal asyncio + h11 keep-alive client, and one that parses the
  answer by hand;
- servers under wrk, each its own process: asyncio with no HTTP parsing, h11 on asyncio
  streams and on a Protocol with a canned answer, and a minimal asyncio + h11 proxy in front
  of the mock;
- JSON: parsing the request body and the upstream answer, as Kestrel does once each.

Prints one Markdown table: requests/s and CPU µs per request (user + system).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import h11
import httpx
from floor_servers import MESSAGE
from load import MESSAGES_BODY, run_wrk
from procs import Meter, Process, free_port, raise_fd_limit, wait_until_ready
from services import Target, build_tools, start_mock

BENCH_DIR = Path(__file__).resolve().parent
REQUEST_HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01",
                   "x-api-key": "sk-floor"}


@dataclass
class Floor:
    name: str
    concurrency: int
    rps: float
    cpu_us: float
    note: str = ""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(one: Callable[[], Awaitable[None]], concurrency: int,
                 seconds: float) -> tuple[float, float]:
    """Run `one` back to back on `concurrency` tasks; (requests/s, CPU µs per request)."""
    count = 0
    stop = 0.0

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop:
            await one()
            count += 1

    stop = time.monotonic() + min(1.0, seconds)  # warm-up: connections, caches
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    count, cpu0, wall0 = 0, _cpu(), time.monotonic()
    stop = wall0 + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.monotonic() - wall0, _cpu() - cpu0
    return count / wall, cpu * 1e6 / max(count, 1)


async def httpx_floor(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    # As Kestrel's app.py builds it.
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None,
                                                     max_keepalive_connections=100)) as client:
        async def one() -> None:
            request = client.build_request("POST", url, headers=REQUEST_HEADERS,
                                           content=MESSAGES_BODY.encode())
            response = await client.send(request, stream=True)
            await response.aread()
            await response.aclose()
        return await _drive(one, concurrency, seconds)


async def h11_client_floor(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]] = []
    headers = [("host", f"{host}:{port}"), *REQUEST_HEADERS.items(),
               ("content-length", str(len(MESSAGES_BODY)))]

    async def one() -> None:
        if idle:
            reader, writer, conn = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(host, int(port))
            conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(method="POST", target="/v1/messages",
                                           headers=headers)) or b"")
        writer.write(conn.send(h11.Data(data=MESSAGES_BODY.encode())) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif not isinstance(event, h11.Response):
                raise ConnectionError("upstream closed")
        conn.start_next_cycle()
        idle.append((reader, writer, conn))

    try:
        return await _drive(one, concurrency, seconds)
    finally:
        for _, writer, _ in idle:
            writer.close()


class _LeanClient(asyncio.Protocol):
    """A keep-alive client that parses the answer by hand: status line, headers, and a
    Content-Length body (what the mock sends; a real one needs chunked bodies too)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.done is None:
            return
        head = bytes(self.buf[:end])
        lines = head.split(b"\r\n")
        headers = dict(line.split(b":", 1) for line in lines[1:])
        length = int(headers.get(b"content-length", b"0"))
        if len(self.buf) >= end + 4 + length:
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.done.set_result((int(lines[0][9:12]), body))


async def lean_client_floor(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    loop = asyncio.get_running_loop()
    idle: list[_LeanClient] = []
    head = "".join(f"{k}: {v}\r\n" for k, v in REQUEST_HEADERS.items())

    async def one() -> None:
        if idle:
            conn = idle.pop()
        else:
            _, conn = await loop.create_connection(_LeanClient, host, int(port))
        conn.done = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(
            f"POST /v1/messages HTTP/1.1\r\nhost: {host}:{port}\r\n{head}"
            f"content-length: {len(MESSAGES_BODY)}\r\n\r\n{MESSAGES_BODY}".encode())
        await conn.done
        idle.append(conn)

    try:
        return await _drive(one, concurrency, seconds)
    finally:
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()


def server_floor(name: str, argv: list[str], workdir: Path, concurrency: int,
                 seconds: float) -> Floor:
    port = free_port()
    process = Process(name, [*argv, "--port", str(port)], log_path=workdir / f"{name}.log")
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/", process)
        run_wrk(f"http://127.0.0.1:{port}", "messages", concurrency=concurrency, seconds=1,
                api_key=None, cpus=None)
        meter = Meter(process.pid)
        meter.start()
        result = run_wrk(f"http://127.0.0.1:{port}", "messages", concurrency=concurrency,
                         seconds=seconds, api_key=None, cpus=None)
        usage = meter.stop()
        assert usage is not None
        return Floor(name, concurrency, result.rps, usage.cpu_s * 1e6 / max(result.requests, 1),
                     f"p50 {result.p50_ms:.2f} ms, {result.errors} errors")
    finally:
        process.stop()


def json_floor() -> list[Floor]:
    body = MESSAGES_BODY.encode()
    n = 20000
    parse_request = timeit.timeit(lambda: json.loads(body), number=n) / n * 1e6
    parse_answer = timeit.timeit(lambda: json.loads(MESSAGE), number=n) / n * 1e6
    return [Floor("json.loads(request body)", 1, 0, parse_request, "once per request"),
            Floor("json.loads(upstream answer)", 1, 0, parse_answer,
                  "summarize_message, once per non-streaming request")]


def render(floors: list[Floor]) -> str:
    lines = ["| floor | c | req/s | CPU µs/req | note |", "|---|--:|--:|--:|---|"]
    for f in floors:
        lines.append(f"| {f.name} | {f.concurrency} | {f.rps:,.0f} | {f.cpu_us:,.1f} "
                     f"| {f.note} |" if f.rps else
                     f"| {f.name} | — | — | {f.cpu_us:,.1f} | {f.note} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("floors: wrk is not installed (sudo apt-get install wrk)", file=sys.stderr)
        return 2
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="kestrel-floors-"))
    floors: list[Floor] = []
    mock: Target | None = None
    try:
        tools = build_tools(workdir / "build")
        mock = start_mock(tools, workdir, deltas=50, interval_ms=20, delay_ms=0, cpus=None)
        url = mock.base_url + "/v1/messages"
        # httpcore checks every pooled connection on each request and response: the cost per
        # request grows with the number of connections, hence c=100 (as 100 streams hold).
        for c in (1, 16, 100):
            rps, cpu = asyncio.run(httpx_floor(url, c, args.seconds))
            floors.append(Floor("httpx.AsyncClient → mock (Kestrel's settings)", c, rps, cpu,
                                "client side only"))
            rps, cpu = asyncio.run(h11_client_floor(url, c, args.seconds))
            floors.append(Floor("asyncio streams + h11 client → mock", c, rps, cpu,
                                "client side only"))
            rps, cpu = asyncio.run(lean_client_floor(url, c, args.seconds))
            floors.append(Floor("asyncio Protocol client, parsed by hand → mock", c, rps, cpu,
                                "client side only"))
        servers = BENCH_DIR / "floor_servers.py"
        for c in (1, 16):
            floors.append(server_floor("asyncio, no parsing", [sys.executable, str(servers),
                                                               "raw"], workdir, c, args.seconds))
            floors.append(server_floor("asyncio streams + h11 server", [
                sys.executable, str(servers), "h11"], workdir, c, args.seconds))
            floors.append(server_floor("asyncio Protocol + h11 server", [
                sys.executable, str(servers), "h11-protocol"], workdir, c, args.seconds))
            floors.append(server_floor("asyncio + h11 proxy → mock", [
                sys.executable, str(servers), "proxy", "--upstream", mock.base_url], workdir, c,
                args.seconds))
        floors += json_floor()
    finally:
        if mock is not None:
            mock.process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(floors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
